//! The TLS handshake with a relay (feature `tls`), and why one failed: a
//! certificate that is not trusted, a relay without TLS, or no relay at
//! all.
//!
//! A peer that is no relay fails fast over TLS too: one that says nothing
//! in reply to the ClientHello within the hello deadline is
//! [`NotARelay::Silent`], and one whose answer is not TLS is told apart
//! from a plain relay by its first bytes, which the handshake's stream
//! keeps ([`Recorded`]) and which are judged like a plain connection's
//! (module `hello`).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, InvalidMessage};

use super::ClientError;
use super::hello::{NotARelay, Verdict, judge};
use crate::tls::TlsError;

/// A stream that keeps a copy of the first bytes it reads (at most
/// [`NotARelay::KEPT`]), so a failed handshake can tell what answered.
pub(super) struct Recorded<S> {
    inner: S,
    first: Arc<Mutex<Vec<u8>>>,
    full: bool,
}

fn lock(first: &Mutex<Vec<u8>>) -> MutexGuard<'_, Vec<u8>> {
    // The critical section is one append.
    first.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if !this.full
            && let Poll::Ready(Ok(())) = polled
        {
            let mut first = lock(&this.first);
            let arrived = &buf.filled()[before..];
            let room = NotARelay::KEPT.saturating_sub(first.len());
            first.extend_from_slice(&arrived[..arrived.len().min(room)]);
            this.full = first.len() >= NotARelay::KEPT;
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Runs the TLS handshake over `stream`. The peer must start answering
/// within `hello_timeout`; the caller bounds the whole handshake.
pub(super) async fn handshake<S>(
    stream: S,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    hello_timeout: Duration,
) -> Result<TlsStream<Recorded<S>>, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = Arc::new(Mutex::new(Vec::new()));
    let stream = Recorded {
        inner: stream,
        first: first.clone(),
        full: false,
    };
    let connecting = tokio_rustls::TlsConnector::from(tls).connect(server_name, stream);
    tokio::pin!(connecting);
    let done = match tokio::time::timeout(hello_timeout, &mut connecting).await {
        Ok(done) => done,
        // It has started answering: it may finish within the caller's
        // deadline.
        Err(_) if !lock(&first).is_empty() => connecting.await,
        Err(_) => {
            return Err(ClientError::NotARelay(NotARelay::Silent {
                waited: hello_timeout,
            }));
        }
    };
    done.map_err(|e| handshake_error(e, &lock(&first)))
}

/// Sorts a failed TLS handshake: an untrusted certificate, a peer that
/// does not speak TLS (a plain relay, or no relay at all, by its first
/// bytes `first`), or any other TLS failure; a network error stays one.
fn handshake_error(e: io::Error, first: &[u8]) -> ClientError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(reason)) => {
            ClientError::UntrustedCertificate(reason.clone())
        }
        Some(rustls::Error::InvalidMessage(
            InvalidMessage::InvalidContentType | InvalidMessage::UnknownProtocolVersion,
        )) => match judge(first) {
            Verdict::Foreign => ClientError::NotARelay(NotARelay::Answered {
                start: first.to_vec(),
            }),
            // A plain relay answers a ClientHello with an error frame.
            Verdict::Relay | Verdict::Tls | Verdict::NeedMore(_) => ClientError::RelayWithoutTls,
        },
        Some(other) => ClientError::TlsHandshake(TlsError::Rustls(other.clone())),
        None => ClientError::Io(e),
    }
}
