//! Helpers shared by the relay tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sotto_core::{IdentityKeyPair, OneTimePreKey, OneTimePreKeyId, SignedPreKey, SignedPreKeyId};
use sotto_relay::protocol::{Request, Response, ServerFrame, Welcome};
use sotto_relay::{
    ClientConfig, Clock, MailboxAddress, MailboxStore, MemoryStore, MessageId, PreKeyUpload,
    RateLimit, RelayClient, RelayEvent, Server, ServerConfig, ServerHandle, UnixTime,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound for anything a test waits on.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A configuration with a generous rate limit, so only tests about rate
/// limits see it.
pub(crate) fn config() -> ServerConfig {
    ServerConfig {
        server_id: "test-relay".into(),
        rate_limit: RateLimit {
            requests_per_second: 10_000.0,
            request_burst: 10_000.0,
            bytes_per_second: 1e9,
            byte_burst: 1e9,
        },
        ..ServerConfig::default()
    }
}

pub(crate) async fn start_with(config: ServerConfig, store: Arc<dyn MailboxStore>) -> ServerHandle {
    Server::bind("127.0.0.1:0", config, store)
        .await
        .unwrap()
        .spawn()
}

/// A relay whose time is `clock`.
pub(crate) async fn start_with_clock(
    config: ServerConfig,
    store: Arc<dyn MailboxStore>,
    clock: TestClock,
) -> ServerHandle {
    Server::bind("127.0.0.1:0", config, store)
        .await
        .unwrap()
        .with_clock(Arc::new(clock))
        .spawn()
}

pub(crate) async fn start() -> ServerHandle {
    start_with(config(), Arc::new(MemoryStore::new())).await
}

pub(crate) fn identity(seed: u8) -> IdentityKeyPair {
    IdentityKeyPair::from_seed(&[seed; 32])
}

pub(crate) fn address(id: &IdentityKeyPair) -> MailboxAddress {
    MailboxAddress::of(id.public())
}

pub(crate) fn client_config() -> ClientConfig {
    ClientConfig {
        request_timeout: WAIT,
        ..ClientConfig::default()
    }
}

pub(crate) async fn connect(addr: SocketAddr) -> RelayClient {
    RelayClient::connect(addr, client_config()).await.unwrap()
}

pub(crate) async fn owner(addr: SocketAddr, id: &IdentityKeyPair) -> RelayClient {
    let client = connect(addr).await;
    client.authenticate(id).await.unwrap();
    client
}

/// Connects as `id`'s owner and publishes a signed prekey (no one-time
/// prekeys): from then on the relay queues envelopes for `id`'s mailbox.
pub(crate) async fn registered(addr: SocketAddr, id: &IdentityKeyPair) -> RelayClient {
    let client = owner(addr, id).await;
    client.upload_prekeys(prekeys(id, 0, 0)).await.unwrap();
    client
}

/// Registers `id`'s mailbox (see [`registered`]) on a connection of its own,
/// closed again.
pub(crate) async fn register(addr: SocketAddr, id: &IdentityKeyPair) {
    registered(addr, id).await.close().await;
}

/// A clock the test moves by hand.
#[derive(Clone, Debug)]
pub(crate) struct TestClock(Arc<AtomicU64>);

impl TestClock {
    pub(crate) fn at(time: UnixTime) -> Self {
        Self(Arc::new(AtomicU64::new(time.as_secs())))
    }

    pub(crate) fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_secs(self.0.load(Ordering::SeqCst))
    }
}

/// Polls `condition` every 10 ms until it holds, failing after [`WAIT`].
pub(crate) async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !condition() {
        assert!(started.elapsed() < WAIT, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) fn rng() -> impl rand::CryptoRng {
    rand::rand_core::UnwrapErr(rand::rngs::SysRng)
}

/// A signed prekey and `n` one-time prekeys with ids `first..first + n`.
pub(crate) fn prekeys(id: &IdentityKeyPair, first: u32, n: u32) -> PreKeyUpload {
    let mut rng = rng();
    let spk = SignedPreKey::generate(SignedPreKeyId::new(1), id, &mut rng);
    let opks: Vec<_> = (first..first + n)
        .map(|i| OneTimePreKey::generate(OneTimePreKeyId::new(i), &mut rng))
        .collect();
    PreKeyUpload::new(Some(&spk), &opks)
}

pub(crate) fn mid(n: u8) -> MessageId {
    MessageId([n; 16])
}

/// The next event, failing the test after [`WAIT`].
pub(crate) async fn next_event(events: &mut tokio::sync::mpsc::Receiver<RelayEvent>) -> RelayEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("event in time")
        .expect("event channel open")
}

/// A hand-driven connection for sending arbitrary bytes.
pub(crate) struct Raw {
    pub(crate) stream: TcpStream,
}

impl Raw {
    pub(crate) async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
        }
    }

    /// Connects from the loopback address `source` (Linux routes all of
    /// 127.0.0.0/8 to the loopback interface), so the relay sees a client
    /// from another address than 127.0.0.1.
    pub(crate) async fn connect_from(source: [u8; 4], addr: SocketAddr) -> Self {
        Self {
            stream: connect_from(source, addr).await.unwrap(),
        }
    }

    /// Sends `body` with its length prefix.
    pub(crate) async fn send(&mut self, body: &[u8]) {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        self.stream.write_all(&frame).await.unwrap();
    }

    pub(crate) async fn request(&mut self, id: u32, request: &Request) {
        self.send(&request.encode(id)).await;
    }

    /// The next frame, or `None` at end of stream (or reset).
    pub(crate) async fn recv(&mut self) -> Option<ServerFrame> {
        tokio::time::timeout(WAIT, async {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await.ok()?;
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            self.stream.read_exact(&mut body).await.ok()?;
            Some(ServerFrame::decode(&body).unwrap())
        })
        .await
        .expect("frame or close in time")
    }

    /// The next frame must be a response to `id`.
    pub(crate) async fn response(&mut self, id: u32) -> Response {
        match self.recv().await {
            Some(ServerFrame::Response {
                request_id,
                response,
            }) => {
                assert_eq!(request_id, id);
                response
            }
            other => panic!("expected a response to {id}, got {other:?}"),
        }
    }

    pub(crate) async fn hello(&mut self) -> Welcome {
        self.request(
            0,
            // Every version: a relay on a store without KEM prekeys (the
            // tests' wrapping stores) speaks protocol 3 at most.
            &Request::Hello {
                versions: sotto_relay::protocol::SUPPORTED_VERSIONS.to_vec(),
            },
        )
        .await;
        match self.response(0).await {
            Response::Welcome(w) => w,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// The relay closes the connection (in time).
    pub(crate) async fn expect_closed(&mut self) {
        tokio::time::timeout(WAIT, async {
            let mut buf = [0u8; 1024];
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("relay closed the connection");
    }
}

/// A TCP connection to `addr` from the loopback address `source`.
pub(crate) async fn connect_from(source: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
    assert_eq!(source[0], 127, "tests stay on loopback");
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(addr).await
}

/// The error code and message of a response that must be an error.
pub(crate) fn error_of(response: Response) -> (sotto_relay::ErrorCode, String) {
    match response {
        Response::Error(e) => (e.code, e.message),
        other => panic!("expected an error, got {other:?}"),
    }
}
