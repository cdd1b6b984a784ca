//! Checks of the `relay_requests` fuzz target, shared with the corpus
//! replay in `crates/sotto-relay/tests/fuzz_corpus.rs`.
//!
//! The input drives one connection to an in-process relay (a `MemoryStore`
//! server on loopback, started once and replaced every
//! [`INPUTS_PER_RELAY`] inputs so its memory stays bounded):
//!
//! ```text
//! input = mode(u8) || frames
//! mode bit 0: send a valid Hello first; bit 1 (with bit 0): authenticate
//!             as a fixed identity first
//! frames = *(u16be(len) || body)   (the last body is whatever is left)
//! ```
//!
//! The fixed identity's mailbox is registered (a signed prekey published)
//! on every fresh relay, so `Send`s to it are queued as they would be for
//! any real recipient; a `Send` to any other address is refused with
//! `UnknownRecipient`.
//!
//! Each body goes out as a frame (the true length prefix, so a zero-length
//! body is an empty frame and a body over 1024 bytes is over the relay's
//! limit), then a `Ping` with request id [`MARKER`]. The relay must answer
//! with well-formed frames only, must either answer that Ping or close
//! after a fatal error frame, and afterwards must still answer a `Ping` on
//! a fresh connection. Nothing may panic, including the relay's own tasks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Once, PoisonError};
use std::time::Duration;

use sotto_core::{IdentityKeyPair, SignedPreKey, SignedPreKeyId};
use sotto_relay::protocol::{
    ChannelBinding, MIN_MAX_FRAME_SIZE, PROTOCOL_VERSION, Request, Response, ServerFrame,
    auth_message,
};
use sotto_relay::{
    MailboxLimits, MailboxStore, MemoryStore, PreKeyUpload, RateLimit, Server, ServerConfig,
    ServerHandle,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

/// Inputs served by one relay before it is replaced by a fresh one.
pub(crate) const INPUTS_PER_RELAY: u32 = 256;
/// Request id of the closing `Ping`.
pub(crate) const MARKER: u32 = 0xFFFF_FFF0;
/// At most this many frames are taken from one input.
const MAX_FRAMES: usize = 32;
/// Anything the relay is waited for longer than this is a hang.
const LIMIT: Duration = Duration::from_secs(10);

/// A loopback connection without Nagle's delay (each frame is one write).
async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the relay");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
}

/// The identity mode bit 1 authenticates as (seeds may carry prekey uploads
/// signed by it).
pub(crate) fn identity() -> IdentityKeyPair {
    IdentityKeyPair::from_seed(&[0x77; 32])
}

/// A store in which [`identity`]'s mailbox is registered.
fn store() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    let id = identity();
    let signed = SignedPreKey::from_private_bytes(SignedPreKeyId::new(1), &id, &[0x5B; 32]);
    store
        .publish_prekeys(id.public(), &PreKeyUpload::new(Some(&signed), &[]), 16)
        .expect("register the fuzz identity");
    store
}

fn config() -> ServerConfig {
    ServerConfig {
        server_id: "fuzz-relay".to_owned(),
        max_frame_size: MIN_MAX_FRAME_SIZE,
        mailbox_limits: MailboxLimits {
            max_envelopes: 16,
            max_bytes: 16 * 1024,
        },
        max_one_time_prekeys: 16,
        prekey_low_threshold: 4,
        fetch_page_size: 8,
        rate_limit: RateLimit {
            requests_per_second: 1e9,
            request_burst: 1e9,
            bytes_per_second: 1e12,
            byte_burst: 1e12,
        },
        shutdown_grace: Duration::from_millis(100),
        ..ServerConfig::default()
    }
}

struct Relay {
    runtime: Runtime,
    server: Option<ServerHandle>,
    served: u32,
}

impl Relay {
    /// The address of a relay that has served fewer than
    /// `INPUTS_PER_RELAY` inputs, starting a fresh one if needed.
    fn address(&mut self) -> SocketAddr {
        if self.served >= INPUTS_PER_RELAY
            && let Some(old) = self.server.take()
        {
            self.runtime.block_on(old.shutdown());
        }
        if self.server.is_none() {
            let server = self.runtime.block_on(async {
                Server::bind("127.0.0.1:0", config(), store())
                    .await
                    .expect("bind the relay")
                    .spawn()
            });
            self.server = Some(server);
            self.served = 0;
        }
        self.served += 1;
        self.server
            .as_ref()
            .map(ServerHandle::local_addr)
            .expect("a relay is running")
    }
}

static RELAY: LazyLock<Mutex<Relay>> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    Mutex::new(Relay {
        runtime,
        server: None,
        served: 0,
    })
});

/// Set by the panic hook: a panic in a relay task is caught by the relay
/// (it logs and drops the connection), so it is noticed here.
static PANICKED: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

pub(crate) fn check(data: &[u8]) {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            previous(info);
        }));
    });
    let mut relay = RELAY.lock().unwrap_or_else(PoisonError::into_inner);
    let addr = relay.address();
    relay.runtime.block_on(async {
        tokio::time::timeout(LIMIT, exchange(addr, data))
            .await
            .expect("the relay hung on the fuzzed connection");
        tokio::time::timeout(LIMIT, ping(addr))
            .await
            .expect("the relay stopped answering new connections");
    });
    assert!(
        !PANICKED.swap(false, Ordering::SeqCst),
        "a relay task panicked"
    );
}

/// Splits the frame part of an input into bodies.
pub(crate) fn frames(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !rest.is_empty() && out.len() < MAX_FRAMES {
        let len = match rest {
            [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
            _ => 0,
        };
        let body = rest.get(2..).unwrap_or(&[]);
        let (frame, tail) = body.split_at(len.min(body.len()));
        out.push(frame);
        rest = tail;
    }
    out
}

async fn write_body<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(body);
    w.write_all(&frame).await?;
    w.flush().await
}

/// Reads one frame; `None` at a clean or broken end of stream. A frame
/// from the relay must never exceed the limit it announced.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Option<ServerFrame> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.ok()?;
    let len = u32::from_be_bytes(len);
    assert!(
        (1..=MIN_MAX_FRAME_SIZE).contains(&len),
        "relay sent a frame of {len} bytes"
    );
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).await.ok()?;
    match ServerFrame::decode(&body) {
        Ok(frame) => Some(frame),
        Err(e) => panic!("relay sent a malformed frame ({e}): {body:02x?}"),
    }
}

/// The response to `id`, skipping pushes.
async fn response_to(stream: &mut TcpStream, id: u32) -> Response {
    loop {
        match read_frame(stream).await {
            Some(ServerFrame::Response {
                request_id,
                response,
            }) if request_id == id => return response,
            Some(_) => {}
            None => panic!("relay closed before answering request {id}"),
        }
    }
}

/// Hello (and authentication) as a well-behaved client does them.
async fn handshake(stream: &mut TcpStream, authenticate: bool) {
    let hello = Request::Hello {
        versions: vec![PROTOCOL_VERSION],
    };
    write_body(stream, &hello.encode(1))
        .await
        .expect("send Hello");
    let Response::Welcome(welcome) = response_to(stream, 1).await else {
        panic!("Hello not answered with Welcome");
    };
    if !authenticate {
        return;
    }
    let id = identity();
    // Plain TCP: the signature is bound to no channel.
    let message = auth_message(
        &welcome.server_id,
        &welcome.challenge,
        &ChannelBinding::None,
    );
    let signature = id.sign(&message);
    let request = Request::Authenticate {
        identity_key: id.public().to_bytes(),
        signature,
    };
    write_body(stream, &request.encode(2))
        .await
        .expect("send Authenticate");
    let response = response_to(stream, 2).await;
    assert!(
        matches!(response, Response::Authenticated(_)),
        "authentication refused: {response:?}"
    );
}

async fn exchange(addr: SocketAddr, data: &[u8]) {
    let (mode, rest) = data.split_first().map_or((0, &[][..]), |(m, r)| (*m, r));
    let mut stream = connect(addr).await;
    if mode & 0x01 != 0 {
        handshake(&mut stream, mode & 0x02 != 0).await;
    }
    let bodies = frames(rest);
    let (mut reader, mut writer) = stream.split();
    let write = async {
        for body in &bodies {
            if write_body(&mut writer, body).await.is_err() {
                return;
            }
        }
        let _ = write_body(&mut writer, &Request::Ping.encode(MARKER)).await;
    };
    let read = async {
        // Whether the relay sent an error that ends the connection.
        let mut fatal = false;
        loop {
            match read_frame(&mut reader).await {
                None => return (false, fatal),
                // Answered (an error too: the input may have left the
                // connection in a state where Ping is refused).
                Some(ServerFrame::Response {
                    request_id: MARKER, ..
                }) => return (true, fatal),
                Some(ServerFrame::Response {
                    response: Response::Error(e),
                    ..
                }) => fatal |= e.code.is_fatal(),
                Some(_) => {}
            }
        }
    };
    let ((), (answered, fatal)) = tokio::join!(write, read);
    assert!(
        answered || fatal,
        "the relay closed the connection without a fatal error frame"
    );
}

async fn ping(addr: SocketAddr) {
    let mut stream = connect(addr).await;
    handshake(&mut stream, false).await;
    write_body(&mut stream, &Request::Ping.encode(2))
        .await
        .expect("send Ping");
    assert_eq!(response_to(&mut stream, 2).await, Response::Pong);
}
