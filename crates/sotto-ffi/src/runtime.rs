//! The tokio runtime the bindings own.
//!
//! `sotto::Client` is tokio code: it spawns its background connection
//! task and runs store work on tokio's blocking pool. A foreign caller
//! (Kotlin coroutines, Swift async, Python asyncio) has no tokio runtime,
//! and UniFFI polls an exported future from the caller's executor. So
//! every async call is spawned onto one runtime owned by this library,
//! started on first use and kept for the life of the process, and the
//! caller's executor only awaits the task's join handle: the sotto code
//! never runs on the caller's threads, and the caller's event loop is
//! never blocked by it.
//!
//! A caller that cancels its await (a cancelled coroutine, a dropped
//! Python task) stops waiting; the call itself runs to its end on the
//! runtime, so a send that was started is committed and sent or queued,
//! never cut in the middle.

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

/// Runs `future` on the runtime and waits for it from whatever executor
/// polls the returned future.
pub(crate) async fn run<T, F>(future: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    runtime()?
        .spawn(future)
        .await
        .map_err(|e| SottoError::Internal {
            detail: format!("the call's task ended early: {e}"),
        })?
}

/// Polls `future` where the caller polls it (no hop to a worker thread
/// and back), inside the runtime's context so that what it spawns, its
/// timers and its sockets belong to the runtime. For calls that are
/// cancel-safe and usually ready at once, such as reading an event that
/// is already waiting: a cancelled await drops the future.
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
