//! The abuse scenario of the load harness: attackers beside the honest
//! clients, each kind from its own loopback address (Linux routes all of
//! 127.0.0.0/8 to the loopback interface), while the honest clients
//! connect from 127.0.0.1:
//!
//! - 127.0.0.2, idle floods: connections that say `Hello` and then nothing;
//!   when the relay closes one (or refuses it), it is opened again.
//! - 127.0.0.3, slowloris: connections that announce the largest frame and
//!   send all of it but the last byte, then wait; opened again when closed.
//! - 127.0.0.4, send floods: anonymous connections sending envelopes as
//!   fast as the relay takes them, to mailboxes the attacker registered,
//!   each until its connection's send budget is used up; then a new
//!   connection.
//!
//! Everything is bounded: the attack stops when told to or at the run's
//! deadline, the flood after `flood_max_bytes`, and every socket operation
//! has a timeout. Loopback only.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sotto::core::{IdentityKeyPair, SignedPreKey, SignedPreKeyId};
use sotto::relay::protocol::{ChannelBinding, PROTOCOL_VERSION, Request, Response, ServerFrame};
use sotto::relay::{
    ClientConfig, ErrorCode, MailboxAddress, MessageId, PreKeyUpload, RelayClient, RelayEvent,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Source address of the idle floods.
pub const IDLE_SOURCE: [u8; 4] = [127, 0, 0, 2];
/// Source address of the slowloris connections.
pub const SLOWLORIS_SOURCE: [u8; 4] = [127, 0, 0, 3];
/// Source address of the send floods.
pub const FLOOD_SOURCE: [u8; 4] = [127, 0, 0, 4];

/// The largest frame of a relay with default settings.
const MAX_FRAME: usize = 1 << 20;
/// A pause before an attacker tries again after a refusal or an error.
const RETRY: Duration = Duration::from_millis(500);
/// Longest any single socket operation of an attacker may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What to attack with.
#[derive(Debug, Clone)]
pub struct Abuse {
    /// Idle connections the attacker tries to hold open at once.
    pub idle_connections: usize,
    /// Slowloris connections it tries to hold open at once.
    pub slowloris_connections: usize,
    /// Anonymous connections flooding sends at once.
    pub flood_connections: usize,
    /// Size of each flooded envelope, bytes.
    pub flood_envelope: usize,
    /// The flood stops after storing this many bytes in all.
    pub flood_max_bytes: u64,
}

impl Default for Abuse {
    fn default() -> Self {
        Self {
            idle_connections: 1000,
            slowloris_connections: 100,
            flood_connections: 4,
            flood_envelope: 16 * 1024,
            flood_max_bytes: 256 << 20,
        }
    }
}

/// What the attackers did and what the relay answered.
#[derive(Debug, Clone, Default)]
pub struct AttackReport {
    pub seconds: f64,
    pub idle_attempts: u64,
    pub idle_welcomed: u64,
    /// Refused with `ServerBusy` (the per-address limit).
    pub idle_refused: u64,
    /// Closed by the relay after `Welcome` (its unauthenticated deadline).
    pub idle_closed: u64,
    pub slowloris_attempts: u64,
    pub slowloris_refused: u64,
    /// Closed by the relay mid-frame (frame deadline, or no frame memory).
    pub slowloris_closed: u64,
    pub slowloris_bytes: u64,
    pub flood_connections: u64,
    pub flood_envelopes: u64,
    pub flood_bytes: u64,
    /// Connections cut off at their send budget.
    pub flood_cut_off: u64,
    /// Sends refused for another reason (storage or mailbox full).
    pub flood_refused: u64,
    /// Flood connections the relay closed with `ServerBusy` (no frame
    /// memory).
    pub flood_busy: u64,
    /// Connections closed without an answer (beyond the refusals the
    /// relay writes at once, it just closes), connect failures and
    /// timeouts, per attacker.
    pub idle_errors: u64,
    pub slowloris_errors: u64,
    pub flood_errors: u64,
}

impl fmt::Display for AttackReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "attack over {:.1} s:", self.seconds)?;
        writeln!(
            f,
            "  idle floods (127.0.0.2): {} connections tried, {} welcomed, {} refused busy, {} closed by the relay, {} closed without an answer or failed",
            self.idle_attempts,
            self.idle_welcomed,
            self.idle_refused,
            self.idle_closed,
            self.idle_errors
        )?;
        writeln!(
            f,
            "  slowloris (127.0.0.3): {} connections tried, {} refused busy, {} closed by the relay mid-frame, {:.1} MiB sent, {} failed",
            self.slowloris_attempts,
            self.slowloris_refused,
            self.slowloris_closed,
            self.slowloris_bytes as f64 / f64::from(1 << 20),
            self.slowloris_errors
        )?;
        write!(
            f,
            "  send floods (127.0.0.4): {} connections, {} envelopes stored ({:.1} MiB), {} cut off at their send budget, {} closed busy (no frame memory), {} refused (storage), {} failed",
            self.flood_connections,
            self.flood_envelopes,
            self.flood_bytes as f64 / f64::from(1 << 20),
            self.flood_cut_off,
            self.flood_busy,
            self.flood_refused,
            self.flood_errors
        )
    }
}

#[derive(Default)]
struct Counters {
    idle_attempts: AtomicU64,
    idle_welcomed: AtomicU64,
    idle_refused: AtomicU64,
    idle_closed: AtomicU64,
    slowloris_attempts: AtomicU64,
    slowloris_refused: AtomicU64,
    slowloris_closed: AtomicU64,
    slowloris_bytes: AtomicU64,
    flood_connections: AtomicU64,
    flood_envelopes: AtomicU64,
    flood_bytes: AtomicU64,
    flood_cut_off: AtomicU64,
    flood_refused: AtomicU64,
    flood_busy: AtomicU64,
    idle_errors: AtomicU64,
    slowloris_errors: AtomicU64,
    flood_errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// When the attack ends.
#[derive(Clone)]
struct Stop {
    flag: Arc<AtomicBool>,
    deadline: Instant,
}

impl Stop {
    fn now(&self) -> bool {
        self.flag.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }

    /// Sleeps `pause`, or less if the attack ends meanwhile.
    async fn sleep(&self, pause: Duration) {
        let until = Instant::now() + pause;
        while !self.now() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50).min(until - Instant::now())).await;
        }
    }

    /// Resolves when the attack ends.
    async fn wait(&self) {
        while !self.now() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Starts the attack on its own thread and runtime (so its work is not
/// scheduled among the honest clients' tasks); it runs until `stop` is set
/// or `deadline` passes, then returns what happened.
pub fn spawn(
    relay: SocketAddr,
    abuse: Abuse,
    stop: Arc<AtomicBool>,
    deadline: Instant,
) -> std::thread::JoinHandle<AttackReport> {
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(_) => {
                return AttackReport::default();
            }
        };
        runtime.block_on(attack(
            relay,
            abuse,
            Stop {
                flag: stop,
                deadline,
            },
        ))
    })
}

async fn attack(relay: SocketAddr, abuse: Abuse, stop: Stop) -> AttackReport {
    if !relay.ip().is_loopback() {
        // The attack stays on loopback.
        return AttackReport::default();
    }
    let started = Instant::now();
    let counters = Arc::new(Counters::default());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..abuse.idle_connections {
        tasks.spawn(idle_slot(relay, stop.clone(), counters.clone()));
    }
    for _ in 0..abuse.slowloris_connections {
        tasks.spawn(slowloris_slot(relay, stop.clone(), counters.clone()));
    }
    let mailboxes = register_mailboxes(relay, abuse.flood_connections.max(1), &counters).await;
    if !mailboxes.is_empty() {
        let mailboxes = Arc::new(mailboxes);
        for i in 0..abuse.flood_connections {
            tasks.spawn(flood(
                relay,
                mailboxes.clone(),
                i,
                abuse.clone(),
                stop.clone(),
                counters.clone(),
            ));
        }
    }
    while tasks.join_next().await.is_some() {}
    let c = &counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    AttackReport {
        seconds: started.elapsed().as_secs_f64(),
        idle_attempts: get(&c.idle_attempts),
        idle_welcomed: get(&c.idle_welcomed),
        idle_refused: get(&c.idle_refused),
        idle_closed: get(&c.idle_closed),
        slowloris_attempts: get(&c.slowloris_attempts),
        slowloris_refused: get(&c.slowloris_refused),
        slowloris_closed: get(&c.slowloris_closed),
        slowloris_bytes: get(&c.slowloris_bytes),
        flood_connections: get(&c.flood_connections),
        flood_envelopes: get(&c.flood_envelopes),
        flood_bytes: get(&c.flood_bytes),
        flood_cut_off: get(&c.flood_cut_off),
        flood_refused: get(&c.flood_refused),
        flood_busy: get(&c.flood_busy),
        idle_errors: get(&c.idle_errors),
        slowloris_errors: get(&c.slowloris_errors),
        flood_errors: get(&c.flood_errors),
    }
}

/// A TCP connection to `relay` from the loopback address `source`.
async fn connect_from(source: [u8; 4], relay: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    match tokio::time::timeout(IO_TIMEOUT, socket.connect(relay)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

async fn write_frame(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    match tokio::time::timeout(IO_TIMEOUT, stream.write_all(&frame)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// The next frame from the relay; `None` at end of stream or on an error.
async fn read_frame(stream: &mut TcpStream) -> Option<ServerFrame> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return None;
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.ok()?;
    ServerFrame::decode(&body).ok()
}

/// What the relay answered a `Hello`.
enum Greeting {
    Welcome,
    Busy,
    Other,
}

/// Connects from `source` and says `Hello`.
async fn hello(source: [u8; 4], relay: SocketAddr) -> Result<(TcpStream, Greeting), ()> {
    let mut stream = connect_from(source, relay).await.map_err(drop)?;
    let hello = Request::Hello {
        versions: vec![PROTOCOL_VERSION],
    };
    // A refused connection may already be closed: its answer is still read.
    let _ = write_frame(&mut stream, &hello.encode(0)).await;
    let greeting = match tokio::time::timeout(IO_TIMEOUT, read_frame(&mut stream)).await {
        Ok(Some(ServerFrame::Response {
            response: Response::Welcome(_),
            ..
        })) => Greeting::Welcome,
        Ok(Some(ServerFrame::Response {
            response: Response::Error(e),
            ..
        })) if e.code == ErrorCode::ServerBusy => Greeting::Busy,
        _ => Greeting::Other,
    };
    Ok((stream, greeting))
}

/// Resolves when the relay closes `stream` (whatever it says first).
async fn closed_by_relay(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// One idle connection, opened again whenever the relay closes or refuses
/// it, until the attack ends.
async fn idle_slot(relay: SocketAddr, stop: Stop, c: Arc<Counters>) {
    while !stop.now() {
        bump(&c.idle_attempts);
        match hello(IDLE_SOURCE, relay).await {
            Ok((mut stream, Greeting::Welcome)) => {
                bump(&c.idle_welcomed);
                tokio::select! {
                    () = closed_by_relay(&mut stream) => bump(&c.idle_closed),
                    () = stop.wait() => return,
                }
            }
            Ok((_, Greeting::Busy)) => {
                bump(&c.idle_refused);
                stop.sleep(RETRY).await;
            }
            Ok((_, Greeting::Other)) | Err(()) => {
                bump(&c.idle_errors);
                stop.sleep(RETRY).await;
            }
        }
    }
}

/// One slowloris connection: announces the largest frame, sends all of it
/// but the last byte, and waits to be closed; then starts over.
async fn slowloris_slot(relay: SocketAddr, stop: Stop, c: Arc<Counters>) {
    let mut frame = (MAX_FRAME as u32).to_be_bytes().to_vec();
    frame.resize(4 + MAX_FRAME - 1, 0x5A);
    while !stop.now() {
        bump(&c.slowloris_attempts);
        let mut stream = match hello(SLOWLORIS_SOURCE, relay).await {
            Ok((stream, Greeting::Welcome)) => stream,
            Ok((_, Greeting::Busy)) => {
                bump(&c.slowloris_refused);
                stop.sleep(RETRY).await;
                continue;
            }
            Ok((_, Greeting::Other)) | Err(()) => {
                bump(&c.slowloris_errors);
                stop.sleep(RETRY).await;
                continue;
            }
        };
        let (mut reader, mut writer) = stream.split();
        let send = async {
            for chunk in frame.chunks(64 * 1024) {
                if writer.write_all(chunk).await.is_err() {
                    break;
                }
                c.slowloris_bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            // All but the last byte is out: now just wait.
            std::future::pending::<()>().await;
        };
        let closed = async {
            let mut buf = [0u8; 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::select! {
            () = send => {}
            () = closed => bump(&c.slowloris_closed),
            () = stop.wait() => return,
        }
    }
}

fn client_config() -> ClientConfig {
    ClientConfig {
        connect_timeout: IO_TIMEOUT,
        request_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    }
}

/// A relay client connected from `source`.
async fn client_from(source: [u8; 4], relay: SocketAddr) -> Result<RelayClient, ()> {
    let stream = connect_from(source, relay).await.map_err(drop)?;
    RelayClient::handshake(stream, ChannelBinding::None, client_config())
        .await
        .map_err(drop)
}

/// Registers `n` mailboxes of the attacker's own (from 127.0.0.4), for the
/// send floods to fill.
async fn register_mailboxes(relay: SocketAddr, n: usize, c: &Counters) -> Vec<MailboxAddress> {
    let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
    let mut mailboxes = Vec::new();
    for i in 0..n {
        let mut seed = [0xA7u8; 32];
        seed[0] = i as u8;
        let identity = IdentityKeyPair::from_seed(&seed);
        let spk = SignedPreKey::generate(SignedPreKeyId::new(1), &identity, &mut rng);
        let Ok(client) = client_from(FLOOD_SOURCE, relay).await else {
            bump(&c.flood_errors);
            continue;
        };
        let registered = async {
            client.authenticate(&identity).await?;
            client
                .upload_prekeys(PreKeyUpload::new(Some(&spk), &[]))
                .await
        };
        if registered.await.is_ok() {
            mailboxes.push(MailboxAddress::of(identity.public()));
        } else {
            bump(&c.flood_errors);
        }
        client.close().await;
    }
    mailboxes
}

/// One send flood: anonymous envelopes, as fast as the relay takes them,
/// to the attacker's mailboxes in turn; a new connection whenever one is
/// cut off; until `flood_max_bytes` are stored or the attack ends.
async fn flood(
    relay: SocketAddr,
    mailboxes: Arc<Vec<MailboxAddress>>,
    first: usize,
    abuse: Abuse,
    stop: Stop,
    c: Arc<Counters>,
) {
    let payload = vec![0xF1u8; abuse.flood_envelope.max(1)];
    let mut next = first;
    while !stop.now() && c.flood_bytes.load(Ordering::Relaxed) < abuse.flood_max_bytes {
        let Ok(client) = client_from(FLOOD_SOURCE, relay).await else {
            bump(&c.flood_errors);
            stop.sleep(RETRY).await;
            continue;
        };
        bump(&c.flood_connections);
        let mut events = client.take_events();
        while !stop.now() && c.flood_bytes.load(Ordering::Relaxed) < abuse.flood_max_bytes {
            let to = &mailboxes[next % mailboxes.len()];
            next += 1;
            let Ok(id) = MessageId::random() else {
                bump(&c.flood_errors);
                break;
            };
            match client.send(to, id, None, &payload).await {
                Ok(_) => {
                    bump(&c.flood_envelopes);
                    c.flood_bytes
                        .fetch_add(payload.len() as u64, Ordering::Relaxed);
                }
                Err(e) if e.code() == Some(ErrorCode::SendBudgetExceeded) => {
                    bump(&c.flood_cut_off);
                    break;
                }
                Err(e)
                    if matches!(
                        e.code(),
                        Some(
                            ErrorCode::StorageFull
                                | ErrorCode::MailboxFull
                                | ErrorCode::AccessDenied
                        )
                    ) =>
                {
                    bump(&c.flood_refused);
                    stop.sleep(Duration::from_millis(100)).await;
                }
                Err(_) => {
                    // Closed by the relay: say why, if it said.
                    let busy = tokio::time::timeout(Duration::from_secs(1), async {
                        while let Some(event) = events.as_mut()?.recv().await {
                            if let RelayEvent::Closed { reason } = event {
                                return Some(reason?.code == ErrorCode::ServerBusy);
                            }
                        }
                        None
                    })
                    .await;
                    if let Ok(Some(true)) = busy {
                        bump(&c.flood_busy);
                    } else {
                        bump(&c.flood_errors);
                    }
                    break;
                }
            }
        }
        client.close().await;
    }
}
