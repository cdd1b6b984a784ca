//! The operator's HTTP endpoint (docs/relay.md §10, "Monitoring"):
//! `GET /health` and `GET /metrics`, nothing else.
//!
//! A minimal HTTP/1.1 responder rather than a web framework: it reads one
//! request head (at most 8 KiB, within 5 s), answers it and closes the
//! connection. At most [`MAX_CONNECTIONS`] are served at once; more are
//! closed unanswered. It is meant for a monitoring system on a private
//! address, not for the internet: it has no TLS and no authentication,
//! and what it shows (counts, no user data) is harmless but not public.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::Shared;
use crate::store::StoreTotals;

/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// Time a client has to send its request and read the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Time the store has to answer `/health` or `/metrics`.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// Connections served at once.
const MAX_CONNECTIONS: usize = 16;

/// An answer: status line, content type, body.
struct Answer {
    status: &'static str,
    content_type: &'static str,
    body: String,
    allow: bool,
}

impl Answer {
    fn text(status: &'static str, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            allow: false,
        }
    }
}

/// Serves the endpoint on `listener` until the task is aborted (the
/// server does when it has stopped). `shutdown` turns `/health` to 503
/// while the relay drains its connections.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Dropped (and so aborted) with this task: nothing outlives the server.
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics endpoint: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    // Busy: closed unanswered.
                    continue;
                };
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    let _ = timeout(REQUEST_TIMEOUT, answer(stream, &shared, &shutdown)).await;
                });
            }
        }
    }
}

async fn answer(
    mut stream: TcpStream,
    shared: &Arc<Shared>,
    shutdown: &watch::Receiver<bool>,
) -> std::io::Result<()> {
    let head = read_head(&mut stream).await?;
    let request_line = head
        .as_deref()
        .and_then(|head| head.split(|&b| b == b'\n').next())
        .and_then(|line| std::str::from_utf8(line).ok())
        .map(str::trim_end);
    let mut parts = request_line.unwrap_or_default().split(' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next());
    let path = target.map(|t| t.split('?').next().unwrap_or_default());
    let head_only = method == "HEAD";
    let answer = match (method, path) {
        (_, None) => Answer::text("400 Bad Request", "bad request\n"),
        ("GET" | "HEAD", Some("/health")) => health(shared, shutdown).await,
        ("GET" | "HEAD", Some("/metrics")) => metrics(shared).await,
        (_, Some("/health" | "/metrics")) => Answer {
            allow: true,
            ..Answer::text("405 Method Not Allowed", "only GET\n")
        },
        _ => Answer::text("404 Not Found", "not found: try /health or /metrics\n"),
    };
    let mut response = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        answer.status,
        answer.content_type,
        answer.body.len()
    );
    if answer.allow {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("\r\n");
    if !head_only {
        response.push_str(&answer.body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads up to the end of the request head; `None` if the client closed
/// first or sent more than [`MAX_HEAD`] bytes without ending it.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(head));
        }
        if head.len() >= MAX_HEAD {
            return Ok(None);
        }
    }
}

/// The store's totals, if it answers within [`STORE_TIMEOUT`].
async fn store_totals(shared: &Arc<Shared>) -> Option<StoreTotals> {
    let store = shared.store.clone();
    let asked = tokio::task::spawn_blocking(move || store.totals());
    match timeout(STORE_TIMEOUT, asked).await {
        Ok(Ok(Ok(totals))) => Some(totals),
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "the store did not answer the metrics endpoint");
            None
        }
        Ok(Err(_)) | Err(_) => {
            tracing::warn!("the store did not answer the metrics endpoint in time");
            None
        }
    }
}

/// 200 `ok` while the store answers (one cheap read: its totals), 503
/// otherwise, and while the relay shuts down.
async fn health(shared: &Arc<Shared>, shutdown: &watch::Receiver<bool>) -> Answer {
    if *shutdown.borrow() {
        return Answer::text("503 Service Unavailable", "shutting down\n");
    }
    match store_totals(shared).await {
        Some(_) => Answer::text("200 OK", "ok\n"),
        None => Answer::text("503 Service Unavailable", "store unavailable\n"),
    }
}

/// The blob store's totals, if there is one and it answers within
/// [`STORE_TIMEOUT`].
async fn blob_totals(shared: &Arc<Shared>) -> Option<crate::blob::BlobTotals> {
    let blobs = shared.blobs.clone()?;
    let asked = tokio::task::spawn_blocking(move || blobs.totals());
    match timeout(STORE_TIMEOUT, asked).await {
        Ok(Ok(Ok(totals))) => Some(totals),
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "the blob store did not answer the metrics endpoint");
            None
        }
        Ok(Err(_)) | Err(_) => None,
    }
}

async fn metrics(shared: &Arc<Shared>) -> Answer {
    let totals = store_totals(shared).await;
    let blobs = blob_totals(shared).await;
    Answer {
        status: "200 OK",
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        body: shared
            .metrics
            .render(totals, blobs, shared.hub.feed_up(), shared.frames.memory()),
        allow: false,
    }
}
