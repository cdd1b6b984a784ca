//! The TCP (layer 4) balancer in front of several relay processes, as an
//! operator deploys them (docs/relay.md §10, "Several relays behind a load
//! balancer"): it passes bytes through and knows nothing of the protocol.
//!
//! Each front listens on a port of its own and prefers one relay: front
//! `j` sends a new connection to relay `j`, or, if that one does not
//! accept, to the next one that does (`j + 1`, `j + 2`, ...). Clients are
//! spread over the relays by being given different fronts; when a relay is
//! killed its clients' connections break, and their reconnections land on
//! the next relay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long connecting to one relay may take before the next is tried.
const BACKEND_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The fronts of a group of relays, with the connections each relay got.
pub struct Fronts {
    /// Front `j`'s address (it prefers relay `j`).
    pub addrs: Vec<SocketAddr>,
    /// Connections passed to each relay so far.
    pub connections: Arc<Vec<AtomicUsize>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Fronts {
    /// One front per relay in `relays`, each on a free loopback port.
    pub async fn start(relays: &[SocketAddr]) -> Result<Self, String> {
        let relays: Arc<Vec<SocketAddr>> = Arc::new(relays.to_vec());
        let connections: Arc<Vec<AtomicUsize>> =
            Arc::new(relays.iter().map(|_| AtomicUsize::new(0)).collect());
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for preferred in 0..relays.len() {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("front {preferred}: {e}"))?;
            addrs.push(listener.local_addr().map_err(|e| e.to_string())?);
            let (relays, connections) = (relays.clone(), connections.clone());
            tasks.push(tokio::spawn(serve(
                listener,
                relays,
                preferred,
                connections,
            )));
        }
        Ok(Self {
            addrs,
            connections,
            tasks,
        })
    }

    /// Connections each relay got so far.
    pub fn counts(&self) -> Vec<usize> {
        self.connections
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect()
    }
}

impl Drop for Fronts {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve(
    listener: TcpListener,
    relays: Arc<Vec<SocketAddr>>,
    preferred: usize,
    connections: Arc<Vec<AtomicUsize>>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (relays, connections) = (relays.clone(), connections.clone());
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            for k in 0..relays.len() {
                let which = (preferred + k) % relays.len();
                let connected = tokio::time::timeout(
                    BACKEND_CONNECT_TIMEOUT,
                    TcpStream::connect(relays[which]),
                )
                .await;
                if let Ok(Ok(relay)) = connected {
                    let _ = relay.set_nodelay(true);
                    connections[which].fetch_add(1, Ordering::SeqCst);
                    pass_through(client, relay).await;
                    return;
                }
            }
            // No relay accepts: the client sees the connection close.
        });
    }
}

/// Copies both ways until either side closes or fails, then closes both.
async fn pass_through(mut client: TcpStream, mut relay: TcpStream) {
    let _ = tokio::io::copy_bidirectional(&mut client, &mut relay).await;
}
