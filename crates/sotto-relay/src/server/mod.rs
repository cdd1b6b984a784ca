//! The relay server: accepts connections and serves each in its own task.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sotto_relay::{Server, ServerConfig, SqliteStore};
//!
//! let store = Arc::new(SqliteStore::open("relay.db")?);
//! let server = Server::bind("127.0.0.1:0", ServerConfig::default(), store).await?;
//! let handle = server.spawn();
//! println!("listening on {}", handle.local_addr());
//! // ...
//! handle.shutdown().await;
//! # Ok(()) }
//! ```

mod config;
mod connection;
mod first_contact;
mod frame_budget;
mod http;
mod hub;
mod metrics;
mod rate_limit;
pub mod settings;
mod source_limit;

pub use config::{
    BlobStorage, DEFAULT_AUTHENTICATED_FRAME_BUDGET, DEFAULT_CONNECTION_SEND_BUDGET,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, DEFAULT_UNAUTHENTICATED_FRAME_BUDGET, FirstContactLimit,
    RateLimit, ServerConfig,
};
pub use frame_budget::FrameMemory;
pub use settings::{RelaySettings, SettingsError, StoreSpec};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::blob::BlobStore;
use crate::clock::{Clock, SystemClock};
use crate::protocol::{ChannelBinding, ErrorCode, Response};
use crate::store::{MailboxStore, Swept};

/// Most expired envelopes deleted in one storage transaction.
const SWEEP_BATCH: usize = 1000;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is unusable.
    #[error("invalid relay configuration: {0}")]
    InvalidConfig(&'static str),
    /// Binding the listening socket failed.
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}

/// State shared by every connection of one server.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) store: Arc<dyn MailboxStore>,
    /// Where blobs are kept; `None` if the relay takes none.
    pub(crate) blobs: Option<Arc<dyn BlobStore>>,
    pub(crate) hub: hub::Hub,
    /// The time envelopes are stored and expire by.
    pub(crate) clock: Arc<dyn Clock>,
    /// Memory budgets of request frames.
    pub(crate) frames: Arc<frame_budget::FrameBudgets>,
    /// Open connections per source address.
    sources: Arc<source_limit::SourceLimiter>,
    /// Each mailbox's allowance of envelopes without its access key.
    pub(crate) first_contacts: std::sync::Mutex<first_contact::FirstContacts>,
    /// What the operator's `/metrics` shows.
    pub(crate) metrics: Arc<metrics::Metrics>,
}

/// A bound relay that is not yet accepting connections.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// The operator's HTTP endpoint, if asked for.
    metrics_listener: Option<TcpListener>,
    shared: Shared,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl core::fmt::Debug for Server {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("metrics_addr", &self.metrics_addr())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Validates `config` and binds `addr` (use port 0 for any free port,
    /// then [`Server::local_addr`]).
    pub async fn bind(
        addr: impl ToSocketAddrs,
        config: ServerConfig,
        store: Arc<dyn MailboxStore>,
    ) -> Result<Self, ServerError> {
        config.validate().map_err(ServerError::InvalidConfig)?;
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let frames = Arc::new(frame_budget::FrameBudgets::new(
            config.unauthenticated_frame_budget,
            config.authenticated_frame_budget,
        ));
        let sources = Arc::new(source_limit::SourceLimiter::new(
            config.max_connections_per_address,
        ));
        Ok(Self {
            listener,
            local_addr,
            metrics_listener: None,
            shared: Shared {
                first_contacts: std::sync::Mutex::new(first_contact::FirstContacts::new(
                    config.first_contact,
                )),
                blobs: config.blobs.open(),
                config,
                hub: hub::Hub::new(store.change_feed()),
                store,
                clock: Arc::new(SystemClock),
                frames,
                sources,
                metrics: Arc::new(metrics::Metrics::new()),
            },
            #[cfg(feature = "tls")]
            tls: None,
        })
    }

    /// Serves TLS (rustls) instead of plain TCP on this listener. See
    /// [`crate::tls::server_config`] to build `config` from PEM files.
    /// Only TLS 1.3 sessions are served (the login signature is bound to
    /// the session's exporter, [`crate::tls::channel_binding`]); a session
    /// that negotiated anything older is closed after the handshake.
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, config: Arc<tokio_rustls::rustls::ServerConfig>) -> Self {
        self.tls = Some(tokio_rustls::TlsAcceptor::from(config));
        self
    }

    /// Also serves the operator's HTTP endpoint on `addr` (port 0 for any
    /// free port, then [`Server::metrics_addr`]): `GET /health` answers
    /// 200 `ok` while the store answers and 503 otherwise (and while the
    /// server shuts down), `GET /metrics` the relay's counters in
    /// Prometheus' text format (docs/relay.md §10, "Monitoring"). Without
    /// it nothing is served, but the counters still count. It has no TLS
    /// and no authentication: bind it to a private address.
    pub async fn with_metrics(mut self, addr: impl ToSocketAddrs) -> Result<Self, ServerError> {
        self.metrics_listener = Some(TcpListener::bind(addr).await?);
        Ok(self)
    }

    /// The address of the HTTP endpoint, if [`Server::with_metrics`] bound
    /// one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Reads the time (for envelope expiry) from `clock` instead of the
    /// system clock; tests use it to move time forward without waiting.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.shared.clock = clock;
        self
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Runs the server in a background task. Dropping the returned handle
    /// also shuts the server down (without waiting for it).
    pub fn spawn(self) -> ServerHandle {
        let (shutdown, signal) = watch::channel(false);
        let local_addr = self.local_addr;
        let metrics_addr = self.metrics_addr();
        let frames = self.shared.frames.clone();
        let task = tokio::spawn(self.accept_loop(signal));
        ServerHandle {
            local_addr,
            metrics_addr,
            shutdown,
            task,
            frames,
        }
    }

    /// Runs the server in the current task until `signal` completes, then
    /// shuts down gracefully, as [`ServerHandle::shutdown`] describes.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        let (shutdown, rx) = watch::channel(false);
        let server = self.accept_loop(rx);
        tokio::pin!(server);
        tokio::select! {
            () = &mut server => return,
            () = signal => {}
        }
        let _ = shutdown.send(true);
        server.await;
    }

    async fn accept_loop(self, mut shutdown: watch::Receiver<bool>) {
        let shared = Arc::new(self.shared);
        let counts = shared.metrics.clone();
        let slots = Arc::new(Semaphore::new(shared.config.max_connections));
        #[cfg(feature = "tls")]
        let plain = self.tls.is_none();
        #[cfg(not(feature = "tls"))]
        let plain = true;
        let mut tasks = JoinSet::new();
        let sweeper = tokio::spawn(sweep_loop(shared.clone(), shutdown.clone()));
        // Pushes from other relay processes sharing the store.
        let feed = shared.hub.start();
        let endpoint = self.metrics_listener.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "metrics endpoint listening");
            }
            tokio::spawn(http::serve(listener, shared.clone(), shutdown.clone()))
        });
        tracing::info!(addr = %self.local_addr, "relay listening");
        loop {
            tokio::select! {
                () = shutdown_requested(&mut shutdown) => break,
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = joined
                        && e.is_panic()
                    {
                        tracing::error!("a connection task panicked");
                    }
                }
                accepted = self.listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(conn) => conn,
                        Err(e) => {
                            // E.g. out of file descriptors: back off, keep serving.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    // Checked first, before anything is allocated for the
                    // connection: one source cannot take everyone's slots.
                    let source_slot = match shared.sources.try_acquire(peer.ip()) {
                        Ok(slot) => slot,
                        Err(full) => {
                            counts.connection_refused(metrics::Refusal::AddressLimit);
                            tracing::debug!(open = full.open, max = full.max, "per-address connection limit reached");
                            let message = format!(
                                "too many connections from this address: {} open, at most {}",
                                full.open, full.max
                            );
                            refuse(plain, tcp, &message);
                            continue;
                        }
                    };
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        counts.connection_refused(metrics::Refusal::ConnectionLimit);
                        tracing::warn!("connection limit reached");
                        let message = format!(
                            "relay is at its connection limit of {}",
                            shared.config.max_connections
                        );
                        refuse(plain, tcp, &message);
                        continue;
                    };
                    let shared = shared.clone();
                    let shutdown = shutdown.clone();
                    #[cfg(feature = "tls")]
                    let tls = self.tls.clone();
                    let open = counts.connection_accepted();
                    tasks.spawn(async move {
                        let _permit = permit;
                        let _source_slot = source_slot;
                        let _open = open;
                        #[cfg(feature = "tls")]
                        if let Some(acceptor) = tls {
                            let timeout = shared.config.handshake_timeout;
                            match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                                Ok(Ok(stream)) => {
                                    match crate::tls::channel_binding(stream.get_ref().1) {
                                        Ok(binding) => {
                                            connection::serve(stream, peer, binding, shared, shutdown).await;
                                        }
                                        Err(e) => tracing::debug!(%peer, error = %e, "TLS session refused"),
                                    }
                                }
                                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                            return;
                        }
                        connection::serve(tcp, peer, ChannelBinding::None, shared, shutdown).await;
                    });
                }
            }
        }
        drop(self.listener);
        tracing::info!(connections = tasks.len(), "relay shutting down");
        let grace = tokio::time::sleep(shared.config.shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                () = &mut grace => {
                    tasks.abort_all();
                    break;
                }
                next = tasks.join_next() => if next.is_none() { break },
            }
        }
        while tasks.join_next().await.is_some() {}
        // It stops between two batches once shutdown is requested.
        let _ = sweeper.await;
        for task in [endpoint, feed].into_iter().flatten() {
            task.abort();
            let _ = task.await;
        }
        tracing::info!("relay stopped");
    }
}

/// Tells a refused client why (`ServerBusy`) and closes the connection at
/// once. The frame goes into the new socket's empty send buffer without
/// waiting, so a flood of refused connections costs no task, timer or
/// buffer each. A TLS listener has no session yet to say it in: it just
/// closes.
fn refuse(plain: bool, tcp: TcpStream, message: &str) {
    if plain {
        let body = Response::error(ErrorCode::ServerBusy, message).encode(0);
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        let _ = tcp.try_write(&frame);
    }
    // Dropping the stream closes it.
}

/// Deletes expired envelopes every `sweep_interval` (the first time at
/// start-up), until shutdown.
async fn sweep_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(shared.config.sweep_interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown_requested(&mut shutdown) => return,
            _ = ticks.tick() => {}
        }
        let now = shared.clock.now();
        let mut total = Swept::default();
        loop {
            let store = shared.store.clone();
            let swept =
                tokio::task::spawn_blocking(move || store.sweep_expired(now, SWEEP_BATCH)).await;
            match swept {
                Ok(Ok(swept)) => {
                    shared.metrics.envelopes_expired(swept.envelopes);
                    total.envelopes += swept.envelopes;
                    total.bytes += swept.bytes;
                    if swept.envelopes < SWEEP_BATCH as u64 {
                        break;
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "deleting expired envelopes failed");
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the expiry sweep task failed");
                    break;
                }
            }
            if *shutdown.borrow() {
                return;
            }
        }
        if total.envelopes > 0 {
            tracing::info!(
                envelopes = total.envelopes,
                bytes = total.bytes,
                "expired envelopes deleted"
            );
        }
        if let Some(blobs) = shared.blobs.clone() {
            match tokio::task::spawn_blocking(move || blobs.sweep_expired(now)).await {
                Ok(Ok(swept)) => {
                    shared.metrics.blobs_expired(swept.blobs);
                    if swept.blobs > 0 {
                        tracing::info!(
                            blobs = swept.blobs,
                            bytes = swept.bytes,
                            "expired blobs deleted"
                        );
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "deleting expired blobs failed"),
                Err(e) => tracing::error!(error = %e, "the blob expiry sweep task failed"),
            }
        }
    }
}

/// Resolves once shutdown was requested (or the handle was dropped).
pub(crate) async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Controls a running server.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    frames: Arc<frame_budget::FrameBudgets>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the HTTP endpoint for `/health` and `/metrics`, if
    /// the server has one ([`Server::with_metrics`]).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The bytes of buffer that request frames hold right now (being read,
    /// queued or handled), for monitoring and for tests that check the
    /// memory bounds of docs/relay.md §8.
    pub fn frame_memory(&self) -> FrameMemory {
        self.frames.memory()
    }

    /// Stops gracefully and returns when the server has stopped and
    /// released its store:
    ///
    /// 1. the listener is closed at once: new connections are refused by
    ///    the operating system, and `/health` answers 503;
    /// 2. a connection that is handling a request finishes it and sends
    ///    its answer (requests it had read but not begun are not
    ///    answered), then gets `ShuttingDown` (request id 0) and is
    ///    closed; an idle connection gets `ShuttingDown` at once;
    /// 3. connections still open after
    ///    [`shutdown_grace`](ServerConfig::shutdown_grace) (default 5 s)
    ///    are cut;
    /// 4. the expiry sweep, the HTTP endpoint and the subscription to a
    ///    shared store's changes stop.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// A stream the relay can serve: TCP, TLS over TCP, or anything else.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}
