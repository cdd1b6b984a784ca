//! The tokio runtime the bindings own.
//!
//! `sotto::Client` is tokio code: it spawns its background connection
//! task, runs store work on tokio's blocking pool, and its sockets and
//! timers need tokio's drivers. A foreign caller (Kotlin coroutines, Swift
//! async, Python asyncio) has no tokio runtime, and UniFFI polls an
//! exported future from the caller's executor. So the library owns one
//! multi-threaded runtime, started on first use and kept for the life of
//! the process: its workers run the connection in the background and its
//! blocking pool the store (and Argon2id), and every exported future is
//! polled inside its context. The caller's thread runs only the short
//! synchronous steps between two waits (encoding, a message's
//! encryption); it never waits on the network or the disk.
//!
//! A caller that cancels its await (a cancelled coroutine, a dropped
//! Python task) stops waiting; the call itself runs to its end on the
//! runtime ([`run`]), so a send that was started is committed and sent or
//! queued, never cut in the middle. Only calls that lose nothing when
//! dropped ([`here`]) are dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::runtime::{Builder, Handle, Runtime};

use crate::error::{Result, SottoError};

/// Worker threads of the runtime: the client's work is mostly waiting on
/// the network and the store's blocking pool, so two are enough on any
/// device.
const WORKER_THREADS: usize = 2;

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

/// The runtime, started on the first call.
pub(crate) fn runtime() -> Result<&'static Runtime> {
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(WORKER_THREADS)
                .thread_name("sotto-ffi")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| SottoError::Internal {
            detail: format!("cannot start the tokio runtime: {e}"),
        })
}

/// Runs `future` to its end: polled where the caller polls it (no hop to
/// a worker thread and back: that hop and its wake-ups cost about 200 us
/// per call from Python on a busy 2-core machine), inside the runtime's
/// context so that what it spawns, its timers, its sockets and its store
/// work belong to the runtime. If the caller stops waiting (a cancelled
/// coroutine or task), what is left of the call is handed to the runtime
/// and finishes there: a `send` that started is committed and handed to
/// the relay or queued, never cut between two steps.
pub(crate) async fn run<T, F>(future: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let handle = runtime()?.handle().clone();
    Completing {
        handle,
        future: Some(Box::pin(future)),
    }
    .await
}

/// A future that, dropped before it is ready, finishes on the runtime.
struct Completing<F: Future<Output = Result<T>> + Send + 'static, T: Send + 'static> {
    handle: Handle,
    /// `None` once it returned its output.
    future: Option<Pin<Box<F>>>,
}

impl<F, T> Future for Completing<F, T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = &mut *self;
        let _context = this.handle.enter();
        let Some(future) = this.future.as_mut() else {
            return Poll::Ready(Err(SottoError::Internal {
                detail: "a finished call was polled again".into(),
            }));
        };
        let output = future.as_mut().poll(cx);
        if output.is_ready() {
            this.future = None;
        }
        output
    }
}

impl<F, T> Drop for Completing<F, T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    fn drop(&mut self) {
        if let Some(unfinished) = self.future.take() {
            // The caller no longer waits for the result.
            drop(self.handle.spawn(unfinished));
        }
    }
}

/// Polls `future` where the caller polls it, inside the runtime's
/// context, like [`run`]; but a cancelled await drops it. For calls that
/// lose nothing when dropped and must not go on unseen: `next_event`
/// finished on the runtime would take an event that nobody receives.
pub(crate) async fn here<F: Future>(future: F) -> Result<F::Output> {
    let handle = runtime()?.handle().clone();
    Ok(InRuntime {
        handle,
        future: Box::pin(future),
    }
    .await)
}

struct InRuntime<F> {
    handle: Handle,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let _context = this.handle.enter();
        this.future.as_mut().poll(cx)
    }
}
