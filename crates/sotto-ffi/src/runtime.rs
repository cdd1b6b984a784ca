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
use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

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
