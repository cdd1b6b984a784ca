//! The load-and-fault harness: many clients exchanging messages through one
//! relay process on loopback while the relay is SIGKILLed and restarted and
//! clients are killed mid-send and mid-receive; then every history is read
//! back and checked. Shared by `examples/load.rs` (any size) and
//! `tests/load.rs` (a small run in the test suite). See
//! `docs/reliability.md`, "Load and faults".
//!
//! Fault model:
//! - Relay: a separate process, killed with SIGKILL (no shutdown, no flush)
//!   and started again on the same port and the same SQLite file. Or
//!   several relay processes sharing one Redis store, each client reaching
//!   them through a TCP balancer that prefers one of them (`front.rs`):
//!   each kill takes down one relay, its clients reconnect to the next one
//!   while it is down, and it is started again.
//! - Client: all of its tasks are aborted at whatever await point they are
//!   (the app's send, the background receive), its connection is dropped,
//!   and the profile is opened again with `Client::open`. A store
//!   transaction already running on a blocking thread still finishes (a real
//!   crash could stop it before the commit instead; the store's commits are
//!   atomic either way, and its crash points are tested in sotto-store).
//!
//! Bookkeeping: every body carries `(sender, counter, recipient)`. A send
//! whose `Client::send` returned `Ok` is *tracked* and must arrive exactly
//! once. A send interrupted by a kill gave the app no answer: if the store
//! had committed it (it is in the sender's history) it must arrive exactly
//! once too, otherwise never. Everything found in any history is checked
//! against that, per-sender order included.
#![allow(dead_code, unreachable_pub, clippy::print_stderr, clippy::print_stdout)]

mod abuse;
mod front;

pub use abuse::{Abuse, AttackReport};

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sotto::relay::{
    ClientConfig, MailboxStore, RedisOptions, RedisStore, Server, ServerConfig, SqliteStore,
};
use sotto::store::{DeliveryState, KdfParams, OpenOptions};
use sotto::{
    Address, Client, ClientEvent, ClientOptions, Events, HistoryItem, IncomingMessage, SendStatus,
};
use tokio::task::JoinHandle;

/// Set in the environment of a relay process that shares a Redis store
/// instead of a SQLite file: the server's URL, and the store's key prefix.
pub const RELAY_REDIS_ENV: &str = "SOTTO_LOAD_RELAY_REDIS";
pub const RELAY_REDIS_PREFIX_ENV: &str = "SOTTO_LOAD_RELAY_REDIS_PREFIX";

/// Set in the environment of a relay process: the address to listen on.
pub const RELAY_LISTEN_ENV: &str = "SOTTO_LOAD_RELAY_LISTEN";
/// Set in the environment of a relay process: its SQLite file.
pub const RELAY_DB_ENV: &str = "SOTTO_LOAD_RELAY_DB";
/// Set in the environment of a relay process: seconds before it exits by
/// itself (it also exits when its parent goes away).
pub const RELAY_LIFETIME_ENV: &str = "SOTTO_LOAD_RELAY_LIFETIME";
/// Set in the environment of a relay process: its
/// `max_connections_per_address`. Every honest client connects from
/// 127.0.0.1, so the harness raises it to the number of clients plus
/// [`PER_ADDRESS_MARGIN`]; attackers come from other addresses.
pub const RELAY_PER_ADDRESS_ENV: &str = "SOTTO_LOAD_RELAY_PER_ADDRESS";
/// Connections beyond one per client allowed from 127.0.0.1 (a killed
/// client's connection may still be closing when it reconnects).
pub const PER_ADDRESS_MARGIN: usize = 64;

/// How long one attempt to (re)connect a client may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages per history page when reading histories back.
const PAGE: usize = 500;
/// Problems listed in the report (they are all counted).
const MAX_PROBLEMS: usize = 20;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Clients (profiles), at least 2.
    pub clients: usize,
    /// Messages each client sends, at least `fanout`.
    pub messages: usize,
    /// Each client sends to the next `fanout` clients of a ring (so it also
    /// receives from the previous `fanout`); round-robin over them.
    pub fanout: usize,
    /// Times a relay process is SIGKILLed and restarted (with several,
    /// each kill takes the next one, round-robin).
    pub relay_kills: usize,
    /// Relay processes (at least 1). One keeps its mailboxes in a SQLite
    /// file; several share the Redis store `redis`, and each client
    /// reaches them through a balancer that prefers relay `client mod
    /// relays`.
    pub relays: usize,
    /// The Redis store several relays share (needed when `relays` > 1).
    pub redis: Option<SharedRedis>,
    /// Client kills; even ones aim at a send in flight, odd ones at a
    /// receive in flight.
    pub client_kills: usize,
    /// Longest random pause of a client between two sends.
    pub think: Duration,
    /// Size of every message body in bytes (at least 48).
    pub size: usize,
    /// The whole run must end within this; otherwise it fails.
    pub timeout: Duration,
    /// Seed of every random choice (victims, kill points, pauses).
    pub seed: u64,
    /// Where profiles and the relay database go (created, must be empty);
    /// a temporary directory, removed at the end, when `None`.
    pub dir: Option<PathBuf>,
    /// The program that runs the relay when started with the
    /// `SOTTO_LOAD_RELAY_*` variables set (see [`relay_child_main`]).
    pub relay_program: PathBuf,
    /// Its arguments.
    pub relay_args: Vec<String>,
    /// Progress lines on stderr.
    pub verbose: bool,
    /// Attackers beside the honest clients, from other loopback addresses,
    /// from registration until the last send (`None`: no attack).
    pub abuse: Option<Abuse>,
}

/// A Redis store for relays to share: the server and a key prefix (every
/// key the run writes starts with it).
#[derive(Debug, Clone)]
pub struct SharedRedis {
    pub url: String,
    pub prefix: String,
}

impl Config {
    fn validate(&self) -> Result<(), String> {
        if self.relays == 0 {
            return Err("at least 1 relay".into());
        }
        if self.relays > 1 && self.redis.is_none() {
            return Err("several relays share a Redis store: give one".into());
        }
        if self.clients < 2 {
            return Err("at least 2 clients".into());
        }
        if self.fanout == 0 || self.fanout >= self.clients {
            return Err("fanout must be between 1 and clients - 1".into());
        }
        if self.messages < self.fanout {
            return Err("messages must be at least fanout (one to each contact)".into());
        }
        if self.size < 48 {
            return Err("size must be at least 48 bytes".into());
        }
        Ok(())
    }
}

/// What a run found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub clients: usize,
    pub fanout: usize,
    pub messages_per_client: usize,
    /// `Client::send` calls made (including interrupted ones).
    pub attempted: usize,
    /// Sends that returned `Ok(Accepted)`.
    pub sent_delivered: usize,
    /// Sends that returned `Ok(Queued)` (relay unreachable at that moment).
    pub sent_queued: usize,
    /// Sends that returned an error.
    pub send_errors: usize,
    /// Sends interrupted by a client kill (no answer reached the app).
    pub interrupted: usize,
    /// Interrupted sends the store had committed anyway (so they count).
    pub interrupted_committed: usize,
    /// Messages in the senders' histories: everything that must arrive.
    pub committed: usize,
    /// Distinct committed messages found in their recipients' histories.
    pub delivered: usize,
    /// Committed or tracked messages missing at the recipient (or at the
    /// sender, for a tracked one).
    pub lost: usize,
    /// Extra copies in recipients' histories.
    pub duplicated: usize,
    /// Messages stored before an earlier one of the same sender.
    pub out_of_order: usize,
    /// Messages in a recipient's history that no sender committed.
    pub phantom: usize,
    /// Outgoing messages still waiting in an outbox at the end.
    pub stuck: usize,
    /// History rows that could not be read, or unexpected bodies.
    pub unreadable: usize,
    pub relay_kills: usize,
    pub relay_starts: usize,
    /// Connections the balancer passed to each relay (with several).
    pub relay_connections: Vec<usize>,
    pub client_kills: usize,
    /// Kills aimed at a send; `sends_interrupted` of all kills hit one.
    pub kills_aimed_send: usize,
    pub sends_interrupted: usize,
    /// Kills aimed at a receive; of those, how many stopped a catch-up
    /// after it had stored at least one message and before it finished.
    pub kills_aimed_receive: usize,
    pub receives_interrupted: usize,
    /// Client restarts (profile opened again).
    pub client_restarts: usize,
    /// Contact pairs checked at the end, and how many exchanged a message
    /// both ways.
    pub sessions_checked: usize,
    pub sessions_working: usize,
    /// From the first send to the last tracked message stored.
    pub load_seconds: f64,
    /// Tracked messages stored per second over `load_seconds`.
    pub messages_per_second: f64,
    /// Send-to-stored latency of tracked messages, milliseconds.
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// Tracked messages seen on the recipient's `incoming()` stream (their
    /// latency is measured there); the rest were found only in the
    /// history (latency from its timestamp, millisecond resolution).
    pub latency_from_events: usize,
    pub latency_from_history: usize,
    /// Whole run, setup and checks included.
    pub wall_seconds: f64,
    /// Errors the clients reported in the background (`ClientEvent::Error`
    /// and `Undecryptable`), by reason (digits masked), most frequent first.
    /// Retried by the client; listed to explain latencies.
    pub background_errors: Vec<(String, usize)>,
    /// The first problems found, in words.
    pub problems: Vec<String>,
    /// What the attackers did, if there was an attack.
    pub attack: Option<AttackReport>,
}

impl Report {
    /// Nothing lost, duplicated, reordered or invented, every outbox empty,
    /// every session working.
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.out_of_order == 0
            && self.phantom == 0
            && self.stuck == 0
            && self.unreadable == 0
            && self.sessions_working == self.sessions_checked
            && self.problems.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "clients {} (each sends {} messages to {} contacts), wall {:.1} s",
            self.clients, self.messages_per_client, self.fanout, self.wall_seconds
        )?;
        writeln!(
            f,
            "sends: {} attempted, {} delivered to the relay, {} queued, {} errors, {} interrupted ({} of them committed)",
            self.attempted,
            self.sent_delivered,
            self.sent_queued,
            self.send_errors,
            self.interrupted,
            self.interrupted_committed
        )?;
        writeln!(
            f,
            "faults: relay SIGKILLed {} times ({} starts); clients killed {} times ({} aimed at a send, {} sends interrupted; {} aimed at a receive, {} catch-ups interrupted), {} restarts",
            self.relay_kills,
            self.relay_starts,
            self.client_kills,
            self.kills_aimed_send,
            self.sends_interrupted,
            self.kills_aimed_receive,
            self.receives_interrupted,
            self.client_restarts
        )?;
        if !self.relay_connections.is_empty() {
            writeln!(
                f,
                "relays: {} sharing a Redis store; connections each got through the balancer: {:?}",
                self.relay_connections.len(),
                self.relay_connections
            )?;
        }
        writeln!(
            f,
            "check: {} committed, {} delivered; lost {}, duplicated {}, out of order {}, phantom {}, stuck in outbox {}, unreadable {}",
            self.committed,
            self.delivered,
            self.lost,
            self.duplicated,
            self.out_of_order,
            self.phantom,
            self.stuck,
            self.unreadable
        )?;
        writeln!(
            f,
            "sessions: {}/{} contact pairs exchanged a message both ways after the run",
            self.sessions_working, self.sessions_checked
        )?;
        writeln!(
            f,
            "throughput: {:.0} messages/s over {:.1} s; send-to-stored latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} seen on incoming(), {} only in history)",
            self.messages_per_second,
            self.load_seconds,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.latency_max_ms,
            self.latency_from_events,
            self.latency_from_history
        )?;
        for (reason, count) in &self.background_errors {
            writeln!(f, "background error x{count}: {reason}")?;
        }
        if let Some(attack) = &self.attack {
            writeln!(f, "{attack}")?;
        }
        for p in &self.problems {
            writeln!(f, "problem: {p}")?;
        }
        write!(
            f,
            "verdict: {}",
            if self.is_clean() { "PASS" } else { "FAIL" }
        )
    }
}

// ---------------------------------------------------------------------------
// The relay process
// ---------------------------------------------------------------------------

/// In a relay process (the `SOTTO_LOAD_RELAY_*` variables are set): runs the
/// relay until it is killed, its parent goes away, or its lifetime ends, and
/// returns `Some`. Elsewhere returns `None` at once.
pub fn relay_child_main() -> Option<Result<(), String>> {
    let listen = std::env::var(RELAY_LISTEN_ENV).ok()?;
    Some(relay_child(&listen))
}

fn relay_child(listen: &str) -> Result<(), String> {
    let redis = std::env::var(RELAY_REDIS_ENV).ok();
    let db = std::env::var_os(RELAY_DB_ENV);
    let lifetime = std::env::var(RELAY_LIFETIME_ENV)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(Duration::from_secs(600), Duration::from_secs);
    let mut config = ServerConfig::default();
    if let Some(per_address) = std::env::var(RELAY_PER_ADDRESS_ENV)
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        config.max_connections_per_address = per_address;
    }
    let listen: SocketAddr = listen
        .parse()
        .map_err(|e| format!("bad listen address {listen}: {e}"))?;
    if !listen.ip().is_loopback() {
        return Err("the load relay listens on loopback only".into());
    }
    // The parent holds our stdin open; when it exits, so do we.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let store: Arc<dyn MailboxStore> = match (redis, db) {
            (Some(url), _) => {
                let options = RedisOptions {
                    key_prefix: std::env::var(RELAY_REDIS_PREFIX_ENV)
                        .map_err(|_| "no Redis key prefix given")?,
                    ..RedisOptions::default()
                };
                Arc::new(RedisStore::open_with(&url, &options).map_err(|e| e.to_string())?)
            }
            (None, Some(db)) => {
                Arc::new(SqliteStore::open(PathBuf::from(db)).map_err(|e| e.to_string())?)
            }
            (None, None) => return Err("no relay database given".into()),
        };
        // Each client writes to the next ones on a ring, and none of them
        // writes back: without their access keys, every message would be a
        // first contact, of which a mailbox takes 20 and then one per
        // 3 minutes (docs/relay.md §6). This run is about loss and order
        // under faults, so the allowance is lifted.
        let config = ServerConfig {
            first_contact: sotto::relay::FirstContactLimit {
                burst: u32::MAX,
                ..Default::default()
            },
            ..config
        };
        // The previous process may have held the port a moment ago.
        let mut last_error = String::new();
        for _ in 0..100 {
            match Server::bind(listen, config.clone(), store.clone()).await {
                Ok(server) => {
                    server.run_until(tokio::time::sleep(lifetime)).await;
                    return Ok(());
                }
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("cannot listen on {listen}: {last_error}"))
    })
}

/// The relay as the harness sees it: a child process it can kill.
struct Relay {
    addr: SocketAddr,
    db: PathBuf,
    redis: Option<SharedRedis>,
    per_address: usize,
    program: PathBuf,
    args: Vec<String>,
    lifetime: Duration,
    child: Option<Child>,
    starts: usize,
    kills: usize,
}

impl Relay {
    async fn start(&mut self, deadline: Instant) -> Result<(), String> {
        let mut command = Command::new(&self.program);
        if let Some(redis) = &self.redis {
            command
                .env(RELAY_REDIS_ENV, &redis.url)
                .env(RELAY_REDIS_PREFIX_ENV, &redis.prefix);
        }
        let mut child = command
            .args(&self.args)
            .env(RELAY_LISTEN_ENV, self.addr.to_string())
            .env(RELAY_DB_ENV, &self.db)
            .env(RELAY_LIFETIME_ENV, self.lifetime.as_secs().to_string())
            .env(RELAY_PER_ADDRESS_ENV, self.per_address.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the relay process: {e}"))?;
        let until = deadline.min(Instant::now() + Duration::from_secs(20));
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the relay process exited: {status}"));
            }
            let probe = tokio::time::timeout(
                Duration::from_millis(200),
                tokio::net::TcpStream::connect(self.addr),
            )
            .await;
            if let Ok(Ok(_)) = probe {
                break;
            }
            if Instant::now() >= until {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the relay did not start listening in time".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// SIGKILL (`Child::kill` on Unix), then reap.
    fn kill(&mut self) -> Result<(), String> {
        if let Some(mut child) = self.child.take() {
            child
                .kill()
                .map_err(|e| format!("cannot kill the relay: {e}"))?;
            child
                .wait()
                .map_err(|e| format!("cannot reap the relay: {e}"))?;
            self.kills += 1;
        }
        Ok(())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free loopback port (bound, read, released).
fn free_port() -> Result<SocketAddr, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener.local_addr().map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------
// Bookkeeping
// ---------------------------------------------------------------------------

/// `(sender, counter)`.
type Key = (usize, usize);

enum Body {
    Load {
        sender: usize,
        counter: usize,
        recipient: usize,
    },
    Check {
        from: usize,
        to: usize,
    },
}

fn load_body(sender: usize, counter: usize, recipient: usize, size: usize) -> Vec<u8> {
    let mut body = format!("load:{sender}:{counter}:{recipient}:").into_bytes();
    body.resize(size.max(body.len()), b'.');
    body
}

fn parse_body(body: &[u8]) -> Option<Body> {
    let text = std::str::from_utf8(body).ok()?;
    let mut parts = text.split(':');
    match parts.next()? {
        "load" => Some(Body::Load {
            sender: parts.next()?.parse().ok()?,
            counter: parts.next()?.parse().ok()?,
            recipient: parts.next()?.parse().ok()?,
        }),
        "check" => Some(Body::Check {
            from: parts.next()?.parse().ok()?,
            to: parts.next()?.parse().ok()?,
        }),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    InFlight,
    Sent(SendStatus),
    Failed(String),
    Interrupted,
}

struct SendRecord {
    recipient: usize,
    /// Milliseconds since the run started.
    started_ms: f64,
    outcome: Outcome,
}

#[derive(Default)]
struct Tracker {
    sends: HashMap<Key, SendRecord>,
    /// First `incoming()` event per message, ms since the run started.
    stored: HashMap<Key, f64>,
    /// Events for a message already seen (a second store would show here).
    repeated_events: usize,
    /// Events with a body the harness did not write.
    strange_events: usize,
    /// Errors the clients reported in the background, by reason.
    errors: HashMap<String, usize>,
    /// `(from, to)` of the end-of-run check messages received.
    checks: HashSet<(usize, usize)>,
    last_event_ms: f64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Live {
    client: Client,
    listener: JoinHandle<()>,
    sender: Option<JoinHandle<()>>,
}

struct Node {
    name: String,
    dir: PathBuf,
    address: Address,
    /// Contacts it sends to.
    out: Vec<usize>,
    /// Everyone it has as a contact (senders to it and recipients of it).
    contacts: Vec<usize>,
    /// Next message counter to send.
    next: AtomicUsize,
    /// `Client::send` is being awaited.
    in_send: AtomicBool,
    live: Mutex<Option<Live>>,
}

#[derive(Default)]
struct FaultCounts {
    relay_kills: usize,
    relay_starts: usize,
    client_kills: usize,
    kills_aimed_send: usize,
    sends_interrupted: usize,
    kills_aimed_receive: usize,
    receives_interrupted: usize,
    client_restarts: usize,
}

struct Ctx {
    clients: usize,
    messages: usize,
    size: usize,
    think: Duration,
    verbose: bool,
    /// The address each client connects to (a relay, or its balancer).
    relay_addrs: Vec<String>,
    options: ClientOptions,
    start: Instant,
    deadline: Instant,
    nodes: Vec<Node>,
    tracker: Mutex<Tracker>,
    faults: Mutex<FaultCounts>,
    /// Counters done (answered, failed or interrupted), all clients.
    attempted: AtomicUsize,
}

fn ms_between(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}

fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Ctx {
    fn log(&self, message: impl fmt::Display) {
        if self.verbose {
            eprintln!("[{:7.2}s] {message}", self.start.elapsed().as_secs_f64());
        }
    }

    fn now_ms(&self) -> f64 {
        ms_between(self.start, Instant::now())
    }

    fn tracker(&self) -> MutexGuard<'_, Tracker> {
        lock(&self.tracker)
    }

    fn check_deadline(&self, what: &str) -> Result<(), String> {
        if Instant::now() >= self.deadline {
            Err(format!("deadline passed while {what}"))
        } else {
            Ok(())
        }
    }

    fn total(&self) -> usize {
        self.clients * self.messages
    }

    /// Something `me` stored (seen on its `incoming()` stream).
    fn on_stored(&self, me: usize, message: &IncomingMessage) {
        let at = self.now_ms();
        let mut t = self.tracker();
        t.last_event_ms = at;
        match parse_body(&message.body) {
            Some(Body::Load {
                sender,
                counter,
                recipient,
            }) if recipient == me => {
                if t.stored.insert((sender, counter), at).is_some() {
                    t.repeated_events += 1;
                }
            }
            Some(Body::Check { from, to }) if to == me => {
                t.checks.insert((from, to));
            }
            _ => t.strange_events += 1,
        }
    }

    /// An event of `me`'s; true for a stored message.
    fn on_event(&self, me: usize, event: ClientEvent) -> bool {
        match event {
            ClientEvent::Message(message) => {
                self.on_stored(me, &message);
                true
            }
            ClientEvent::Error { step, error } => {
                self.background_error(format!("{step}: {error}"));
                false
            }
            ClientEvent::SendFailed { reason, .. } => {
                self.background_error(format!("send failed: {reason}"));
                false
            }
            ClientEvent::Undecryptable { reason, .. } => {
                self.background_error(format!("undecryptable: {reason}"));
                false
            }
            _ => false,
        }
    }

    fn background_error(&self, reason: String) {
        let mut reason: String = reason
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect();
        reason.truncate(100);
        *self.tracker().errors.entry(reason).or_default() += 1;
    }

    fn spawn_listener(self: &Arc<Self>, me: usize, mut events: Events) -> JoinHandle<()> {
        let ctx = self.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                ctx.on_event(me, event);
            }
        })
    }

    fn client(&self, me: usize) -> Result<Client, String> {
        lock(&self.nodes[me].live)
            .as_ref()
            .map(|l| l.client.clone())
            .ok_or_else(|| format!("client {me} is not running"))
    }

    /// Sends message `counter` of `me` and records what happened.
    async fn send_one(&self, me: usize, client: &Client, counter: usize) {
        let node = &self.nodes[me];
        let to = node.out[counter % node.out.len()];
        let body = load_body(me, counter, to, self.size);
        self.tracker().sends.insert(
            (me, counter),
            SendRecord {
                recipient: to,
                started_ms: self.now_ms(),
                outcome: Outcome::InFlight,
            },
        );
        node.in_send.store(true, Ordering::SeqCst);
        // A kill aborts the task here; the record then stays `InFlight`.
        let result = client.send(&self.nodes[to].name, &body).await;
        node.in_send.store(false, Ordering::SeqCst);
        let outcome = match result {
            Ok(sent) => Outcome::Sent(sent.status),
            Err(e) => Outcome::Failed(e.to_string()),
        };
        if let Some(record) = self.tracker().sends.get_mut(&(me, counter)) {
            record.outcome = outcome;
        }
        node.next.store(counter + 1, Ordering::SeqCst);
        self.attempted.fetch_add(1, Ordering::SeqCst);
    }

    fn spawn_sender(self: &Arc<Self>, me: usize, client: Client, seed: u64) -> JoinHandle<()> {
        let ctx = self.clone();
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            loop {
                let counter = ctx.nodes[me].next.load(Ordering::SeqCst);
                if counter >= ctx.messages || Instant::now() >= ctx.deadline {
                    return;
                }
                if !ctx.think.is_zero() {
                    let pause = rng.random_range(0..=ctx.think.as_micros() as u64);
                    tokio::time::sleep(Duration::from_micros(pause)).await;
                }
                ctx.send_one(me, &client, counter).await;
            }
        })
    }

    /// The address client `me` connects to.
    fn relay_addr(&self, me: usize) -> &str {
        &self.relay_addrs[me % self.relay_addrs.len()]
    }

    /// (Re)connects client `me`, retrying while the relay is down.
    async fn connect(&self, me: usize, client: &Client) -> Result<(), String> {
        loop {
            match tokio::time::timeout(CONNECT_TIMEOUT, client.connect(self.relay_addr(me))).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(_)) | Err(_) => {
                    self.check_deadline("reconnecting a client")?;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Kills client `me`: its sender task, its background connection (at
    /// whatever point either is), its listener. Returns whether a send was
    /// in flight (the app got no answer for it).
    async fn crash(&self, me: usize) -> bool {
        let node = &self.nodes[me];
        let live = lock(&node.live).take();
        let Some(live) = live else { return false };
        if let Some(sender) = live.sender {
            sender.abort();
            let _ = sender.await;
        }
        // Aborts the background task wherever it is (mid-receive included).
        live.client.disconnect().await;
        // The last handle: the event channel closes once the listener has
        // read what was announced before the kill.
        drop(live.client);
        let mut listener = live.listener;
        if tokio::time::timeout(Duration::from_secs(2), &mut listener)
            .await
            .is_err()
        {
            listener.abort();
            let _ = listener.await;
        }
        node.in_send.store(false, Ordering::SeqCst);
        let interrupted: Vec<usize> = {
            let mut t = self.tracker();
            t.sends
                .iter_mut()
                .filter(|((sender, _), r)| *sender == me && r.outcome == Outcome::InFlight)
                .map(|((_, counter), r)| {
                    r.outcome = Outcome::Interrupted;
                    *counter
                })
                .collect()
        };
        for counter in &interrupted {
            // Never reuse a counter: the interrupted message may exist.
            node.next.fetch_max(counter + 1, Ordering::SeqCst);
            self.attempted.fetch_add(1, Ordering::SeqCst);
        }
        let mut f = lock(&self.faults);
        f.client_kills += 1;
        if !interrupted.is_empty() {
            f.sends_interrupted += 1;
        }
        !interrupted.is_empty()
    }

    /// Opens client `me`'s profile again, connects, and resumes its sends.
    async fn restart(self: &Arc<Self>, me: usize, seed: u64) -> Result<(), String> {
        let node = &self.nodes[me];
        let client = Client::open(&node.dir, node.name.as_bytes(), self.options.clone())
            .await
            .map_err(|e| format!("reopening client {me}: {e}"))?;
        let listener = self.spawn_listener(me, client.events());
        if let Err(e) = self.connect(me, &client).await {
            listener.abort();
            return Err(e);
        }
        let sender = self.spawn_sender(me, client.clone(), seed);
        *lock(&node.live) = Some(Live {
            client,
            listener,
            sender: Some(sender),
        });
        lock(&self.faults).client_restarts += 1;
        Ok(())
    }

    /// Messages the relay accepted for `me` that were not seen stored yet.
    fn pending_for(&self, me: usize) -> usize {
        let t = self.tracker();
        t.sends
            .iter()
            .filter(|(key, r)| {
                r.recipient == me
                    && r.outcome == Outcome::Sent(SendStatus::Accepted)
                    && !t.stored.contains_key(key)
            })
            .count()
    }

    /// Kill aimed at a send: waits for one to be in flight, lets it run a
    /// random moment, kills.
    async fn kill_mid_send(self: &Arc<Self>, me: usize, rng: &mut StdRng) -> Result<(), String> {
        lock(&self.faults).kills_aimed_send += 1;
        let node = &self.nodes[me];
        let until = self.deadline.min(Instant::now() + Duration::from_secs(3));
        while !node.in_send.load(Ordering::SeqCst)
            && node.next.load(Ordering::SeqCst) < self.messages
            && Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        match rng.random_range(0..3u8) {
            0 => {}
            1 => {
                for _ in 0..rng.random_range(1..30u32) {
                    tokio::task::yield_now().await;
                }
            }
            _ => {
                let pause = rng.random_range(0..4000u64);
                tokio::time::sleep(Duration::from_micros(pause)).await;
            }
        }
        let hit = self.crash(me).await;
        self.log(format_args!(
            "client {me} killed (aimed at a send; {})",
            if hit {
                "a send was in flight"
            } else {
                "no send in flight"
            }
        ));
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300u64))).await;
        self.restart(me, rng.random()).await
    }

    /// Kill aimed at a receive: kills the client, lets messages for it pile
    /// up on the relay, opens it again and kills it a second time in the
    /// middle of the catch-up (after a random number of messages were
    /// stored), then opens it for good. If the catch-up finished before the
    /// chosen point, tries again (at most three times).
    async fn kill_mid_receive(self: &Arc<Self>, me: usize, rng: &mut StdRng) -> Result<(), String> {
        lock(&self.faults).kills_aimed_receive += 1;
        self.crash(me).await;
        for _ in 0..3 {
            let (interrupted, pending) = self.catch_up_and_kill(me, rng).await?;
            if interrupted || pending < 2 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..200u64))).await;
        self.restart(me, rng.random()).await
    }

    /// With client `me` down: waits for messages to queue for it, opens it,
    /// connects, and kills it after a random number of them were stored.
    /// Returns whether the catch-up was interrupted, and how many messages
    /// were waiting.
    async fn catch_up_and_kill(
        &self,
        me: usize,
        rng: &mut StdRng,
    ) -> Result<(bool, usize), String> {
        let until = self.deadline.min(Instant::now() + Duration::from_secs(3));
        while self.pending_for(me) < 4 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pending = self.pending_for(me);
        let target = if pending >= 2 {
            rng.random_range(1..pending)
        } else {
            1
        };
        let node = &self.nodes[me];
        let client = Client::open(&node.dir, node.name.as_bytes(), self.options.clone())
            .await
            .map_err(|e| format!("reopening client {me}: {e}"))?;
        let mut events = client.events();
        let mut stored = 0;
        let mut interrupted = false;
        let limit =
            tokio::time::sleep_until(self.deadline.min(Instant::now() + CONNECT_TIMEOUT).into());
        tokio::pin!(limit);
        'attempts: loop {
            let connect = client.connect(self.relay_addr(me));
            tokio::pin!(connect);
            let connected = loop {
                tokio::select! {
                    result = &mut connect => break result.is_ok(),
                    event = events.next() => {
                        let Some(event) = event else { break 'attempts };
                        if !self.on_event(me, event) {
                            continue;
                        }
                        stored += 1;
                        if stored >= target {
                            let extra = Duration::from_micros(rng.random_range(0..2000u64));
                            interrupted = tokio::time::timeout(extra, &mut connect).await.is_err();
                            break 'attempts;
                        }
                    }
                    () = &mut limit => break 'attempts,
                }
            };
            if connected {
                // The whole catch-up ran before the chosen point.
                break;
            }
            // The relay is down: try again (the catch-up has not started).
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Dropping the connect future (above) stopped the catch-up wherever
        // it was: between storing a message and acknowledging it, or in the
        // middle of a store transaction.
        client.disconnect().await;
        drop(client);
        // Bookkeeping only: what was announced before the kill.
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_secs(2), events.next()).await
        {
            self.on_event(me, event);
        }
        {
            let mut f = lock(&self.faults);
            f.client_kills += 1;
            if interrupted {
                f.receives_interrupted += 1;
            }
        }
        self.log(format_args!(
            "client {me} killed during its catch-up after storing {stored} of ~{pending} waiting messages ({})",
            if interrupted {
                "catch-up interrupted"
            } else {
                "catch-up had finished"
            }
        ));
        Ok((interrupted, pending))
    }

    /// Waits until `count` counters are done (or everything is).
    async fn wait_progress(&self, count: usize) -> Result<(), String> {
        while self.attempted.load(Ordering::SeqCst) < count.min(self.total()) {
            self.check_deadline("waiting for the sends to progress")?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    async fn relay_faults(
        self: Arc<Self>,
        relays: Arc<Vec<tokio::sync::Mutex<Relay>>>,
        kills: usize,
        from: usize,
        mut rng: StdRng,
    ) -> Result<(), String> {
        let span = self.total().saturating_sub(from);
        for i in 0..kills {
            self.wait_progress(from + span * (i + 1) / (kills + 1))
                .await?;
            let which = i % relays.len();
            let mut relay = relays[which].lock().await;
            relay.kill()?;
            // With several relays, down long enough for its clients to
            // notice and reconnect to another one.
            let down = if relays.len() > 1 {
                Duration::from_millis(rng.random_range(1000..=2000u64))
            } else {
                Duration::from_millis(rng.random_range(50..=500u64))
            };
            self.log(format_args!(
                "relay {which} SIGKILLed ({} sends done), down for {} ms",
                self.attempted.load(Ordering::SeqCst),
                down.as_millis()
            ));
            tokio::time::sleep(down).await;
            relay.start(self.deadline).await?;
            self.log(format_args!(
                "relay {which} restarted ({} sends done)",
                self.attempted.load(Ordering::SeqCst)
            ));
            drop(relay);
            // Sends run ahead while the relay is down (they queue): give the
            // clients time to reconnect and flush before the next kill.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(())
    }

    /// Client kills at points spread over the run; they may overlap in
    /// time, but never two at once on the same client.
    async fn client_faults(
        self: Arc<Self>,
        kills: usize,
        from: usize,
        mut rng: StdRng,
    ) -> Result<(), String> {
        let span = (self.total().saturating_sub(from)) as f64;
        // Clients killed so far (a kill may still be running on them).
        let mut killed = HashSet::new();
        let mut running = tokio::task::JoinSet::new();
        for j in 0..kills {
            let at = from + (span * (0.05 + 0.8 * (j as f64 + 0.5) / kills as f64)) as usize;
            self.wait_progress(at).await?;
            if killed.len() == self.clients {
                // Everyone was a victim: let those kills end, start over.
                while let Some(done) = running.join_next().await {
                    done.map_err(|e| e.to_string())??;
                }
                killed.clear();
            }
            let aim_receive = j % 2 == 1;
            let fresh: Vec<usize> = (0..self.clients).filter(|i| !killed.contains(i)).collect();
            // Prefer one that still sends (or that someone still writes to).
            let active: Vec<usize> = fresh
                .iter()
                .copied()
                .filter(|&i| {
                    if aim_receive {
                        self.nodes.iter().any(|n| {
                            n.out.contains(&i) && n.next.load(Ordering::SeqCst) < self.messages
                        })
                    } else {
                        self.nodes[i].next.load(Ordering::SeqCst) < self.messages
                    }
                })
                .collect();
            let pool = if active.is_empty() { &fresh } else { &active };
            let victim = pool[rng.random_range(0..pool.len())];
            killed.insert(victim);
            let ctx = self.clone();
            let mut rng = StdRng::seed_from_u64(rng.random());
            running.spawn(async move {
                if aim_receive {
                    ctx.kill_mid_receive(victim, &mut rng).await
                } else {
                    ctx.kill_mid_send(victim, &mut rng).await
                }
            });
        }
        while let Some(done) = running.join_next().await {
            done.map_err(|e| e.to_string())??;
        }
        Ok(())
    }

    /// A conversation's whole history, oldest first.
    async fn history(client: &Client, contact: &str) -> Result<Vec<HistoryItem>, String> {
        let mut all = Vec::new();
        let mut before = None;
        for _ in 0..100_000 {
            let page = client
                .history(contact, before, PAGE)
                .await
                .map_err(|e| format!("reading history: {e}"))?;
            let full = page.len() == PAGE;
            before = page.last().map(|i| i.seq);
            all.extend(page);
            if !full || before.is_none() {
                break;
            }
        }
        all.reverse();
        Ok(all)
    }

    /// A message's send, for a problem report.
    fn describe(&self, key: Key) -> String {
        let t = self.tracker();
        let Some(record) = t.sends.get(&key) else {
            return "never sent".into();
        };
        let outcome = match &record.outcome {
            Outcome::InFlight => "in flight".to_owned(),
            Outcome::Sent(SendStatus::Accepted) => "accepted".to_owned(),
            Outcome::Sent(SendStatus::Queued) => "queued".to_owned(),
            Outcome::Sent(status) => format!("{status:?}"),
            Outcome::Failed(e) => format!("failed: {e}"),
            Outcome::Interrupted => "interrupted".to_owned(),
        };
        match t.stored.get(&key) {
            Some(at) => format!(
                "{outcome} at {:.0} ms, announced at {at:.0} ms",
                record.started_ms
            ),
            None => format!("{outcome} at {:.0} ms, not announced", record.started_ms),
        }
    }

    /// Reads every history and compares it with the bookkeeping.
    async fn verify(&self) -> Result<Verdict, String> {
        let mut v = Verdict::default();
        // Outgoing rows: what each sender committed (and whether it still
        // waits in the outbox).
        let mut committed: HashMap<Key, bool> = HashMap::new();
        let mut received: HashMap<Key, usize> = HashMap::new();
        for (me, node) in self.nodes.iter().enumerate() {
            let client = self.client(me)?;
            for &other in &node.contacts {
                let mut newest: Option<usize> = None;
                for item in Self::history(&client, &self.nodes[other].name).await? {
                    let body = match &item.body {
                        Ok(body) => body,
                        Err(e) => {
                            v.unreadable += 1;
                            v.problem(format!("client {me}, row {} with {other}: {e}", item.seq));
                            continue;
                        }
                    };
                    match parse_body(body) {
                        Some(Body::Load {
                            sender,
                            counter,
                            recipient,
                        }) if item.outgoing && sender == me && recipient == other => {
                            let pending = item.state == Some(DeliveryState::Pending);
                            if committed.insert((me, counter), pending).is_some() {
                                v.problem(format!(
                                    "message {me}/{counter} twice in its sender's history"
                                ));
                            }
                        }
                        Some(Body::Load {
                            sender,
                            counter,
                            recipient,
                        }) if !item.outgoing && sender == other && recipient == me => {
                            *received.entry((sender, counter)).or_default() += 1;
                            if let Some(n) = newest.filter(|&n| counter < n) {
                                v.out_of_order += 1;
                                let p = format!(
                                    "message {sender}/{counter} ({}) stored by {me} after {sender}/{n} ({})",
                                    self.describe((sender, counter)),
                                    self.describe((sender, n)),
                                );
                                v.problem(p);
                            }
                            newest = newest.max(Some(counter));
                            v.history_ms.insert((sender, counter), item.timestamp);
                        }
                        Some(Body::Check { .. }) => {}
                        _ => {
                            v.unreadable += 1;
                            v.problem(format!(
                                "client {me}: unexpected row {} with {other}",
                                item.seq
                            ));
                        }
                    }
                }
            }
        }
        let t = self.tracker();
        for (key, pending) in &committed {
            match received.get(key).copied().unwrap_or(0) {
                0 => {
                    v.lost += 1;
                    v.problem(format!(
                        "message {}/{} committed, never stored",
                        key.0, key.1
                    ));
                }
                1 => v.delivered += 1,
                n => {
                    v.delivered += 1;
                    v.duplicated += n - 1;
                    v.problem(format!("message {}/{} stored {n} times", key.0, key.1));
                }
            }
            if *pending {
                v.stuck += 1;
            }
            if t.sends
                .get(key)
                .is_some_and(|r| r.outcome == Outcome::Interrupted)
            {
                v.interrupted_committed += 1;
            }
        }
        for (key, record) in &t.sends {
            if matches!(record.outcome, Outcome::Sent(_)) && !committed.contains_key(key) {
                v.lost += 1;
                v.problem(format!(
                    "message {}/{} was sent (Ok) but is not in its sender's history",
                    key.0, key.1
                ));
            }
        }
        for key in received.keys() {
            if !committed.contains_key(key) {
                v.phantom += 1;
                v.problem(format!(
                    "message {}/{} stored but never committed",
                    key.0, key.1
                ));
            }
        }
        v.committed = committed.len();
        Ok(v)
    }

    /// Waits until every tracked message was seen stored (or nothing new
    /// arrives for a while), then until the histories check out, at most
    /// until the deadline. Returns the last verdict.
    async fn settle(&self) -> Result<Verdict, String> {
        loop {
            let (missing, quiet_ms) = {
                let t = self.tracker();
                let missing = t
                    .sends
                    .iter()
                    .filter(|(k, r)| {
                        matches!(r.outcome, Outcome::Sent(_)) && !t.stored.contains_key(k)
                    })
                    .count();
                (missing, self.now_ms() - t.last_event_ms)
            };
            if missing == 0 || quiet_ms > 2000.0 || Instant::now() >= self.deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        loop {
            let verdict = self.verify().await?;
            if (verdict.lost == 0 && verdict.stuck == 0) || Instant::now() >= self.deadline {
                // A last look after a pause, for late duplicates.
                tokio::time::sleep(Duration::from_millis(500)).await;
                return self.verify().await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every contact pair exchanges one message each way.
    async fn check_sessions(self: &Arc<Self>) -> Result<(usize, usize), String> {
        let pairs: BTreeSet<(usize, usize)> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(a, n)| n.out.iter().map(move |&b| (a.min(b), a.max(b))))
            .collect();
        let mut tasks = Vec::new();
        for &(a, b) in &pairs {
            for (from, to) in [(a, b), (b, a)] {
                let client = self.client(from)?;
                let name = self.nodes[to].name.clone();
                tasks.push(tokio::spawn(async move {
                    let body = format!("check:{from}:{to}");
                    client.send(&name, body.as_bytes()).await.is_ok()
                }));
            }
        }
        for task in tasks {
            let _ = task.await;
        }
        let until = self.deadline.min(Instant::now() + Duration::from_secs(60));
        loop {
            let working = {
                let t = self.tracker();
                pairs
                    .iter()
                    .filter(|&&(a, b)| t.checks.contains(&(a, b)) && t.checks.contains(&(b, a)))
                    .count()
            };
            if working == pairs.len() || Instant::now() >= until {
                return Ok((pairs.len(), working));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop_all(&self) {
        for node in &self.nodes {
            let live = lock(&node.live).take();
            if let Some(live) = live {
                if let Some(sender) = live.sender {
                    sender.abort();
                }
                live.client.disconnect().await;
                live.listener.abort();
            }
        }
    }
}

#[derive(Default)]
struct Verdict {
    committed: usize,
    delivered: usize,
    lost: usize,
    duplicated: usize,
    out_of_order: usize,
    phantom: usize,
    stuck: usize,
    unreadable: usize,
    interrupted_committed: usize,
    /// Recipient's stored-at timestamp (ms since the epoch) per message.
    history_ms: HashMap<Key, u64>,
    problems: Vec<String>,
}

impl Verdict {
    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        }
    }
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

/// Sets the flag when dropped: the attack thread stops with the run, also
/// when the run fails early.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn client_options() -> Result<ClientOptions, String> {
    Ok(ClientOptions {
        store: OpenOptions::new().kdf(KdfParams::new(256, 1, 1).map_err(|e| e.to_string())?),
        relay: ClientConfig {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            ..ClientConfig::default()
        },
        one_time_prekeys: 20,
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(500),
        ..ClientOptions::default()
    })
}

/// Runs the harness: blocks until it is done, at most `config.timeout`
/// (plus a few seconds to clean up). `Err` when it could not finish.
pub fn run(config: &Config) -> Result<Report, String> {
    config.validate()?;
    let temp;
    let root = match &config.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let empty = std::fs::read_dir(dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?
                .next()
                .is_none();
            if !empty {
                return Err(format!("{} is not empty", dir.display()));
            }
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
            temp.path().to_path_buf()
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let outcome = runtime.block_on(async {
        match tokio::time::timeout(
            config.timeout + Duration::from_secs(15),
            run_async(config, &root),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err("the run did not finish in time".to_owned()),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(10));
    outcome
}

async fn run_async(config: &Config, root: &Path) -> Result<Report, String> {
    let start = Instant::now();
    let deadline = start + config.timeout;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut relays = Vec::with_capacity(config.relays);
    for k in 0..config.relays {
        let mut relay = Relay {
            addr: free_port()?,
            db: root.join(format!("relay-{k}.db")),
            redis: config.redis.clone().filter(|_| config.relays > 1),
            per_address: config.clients + PER_ADDRESS_MARGIN,
            program: config.relay_program.clone(),
            args: config.relay_args.clone(),
            lifetime: config.timeout + Duration::from_secs(60),
            child: None,
            starts: 0,
            kills: 0,
        };
        relay.start(deadline).await?;
        relays.push(relay);
    }
    let relay_addrs: Vec<SocketAddr> = relays.iter().map(|r| r.addr).collect();
    let addr = relay_addrs[0];
    // Several relays: clients reach them through the balancer's fronts.
    let fronts = if config.relays > 1 {
        Some(front::Fronts::start(&relay_addrs).await?)
    } else {
        None
    };
    let client_addrs: Vec<String> = match &fronts {
        Some(fronts) => fronts.addrs.iter().map(ToString::to_string).collect(),
        None => vec![addr.to_string()],
    };
    let relays: Arc<Vec<tokio::sync::Mutex<Relay>>> =
        Arc::new(relays.into_iter().map(tokio::sync::Mutex::new).collect());

    let n = config.clients;
    let options = client_options()?;
    let mut nodes = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    // Create and register every client, a few at a time.
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let mut tasks = Vec::new();
        for &i in chunk {
            let name = format!("c{i:04}");
            let dir = root.join("clients").join(&name);
            let options = options.clone();
            let relay_addr = client_addrs[i % client_addrs.len()].clone();
            tasks.push(tokio::spawn(async move {
                let client = Client::create(&dir, name.as_bytes(), options)
                    .await
                    .map_err(|e| format!("creating client {i}: {e}"))?;
                client
                    .register(&relay_addr)
                    .await
                    .map_err(|e| format!("registering client {i}: {e}"))?;
                Ok::<_, String>((name, dir, client))
            }));
        }
        for task in tasks {
            created.push(task.await.map_err(|e| e.to_string())??);
        }
    }
    for (i, (name, dir, client)) in created.iter().enumerate() {
        let out: Vec<usize> = (1..=config.fanout).map(|d| (i + d) % n).collect();
        let mut contacts: BTreeSet<usize> = out.iter().copied().collect();
        contacts.extend((1..=config.fanout).map(|d| (i + n - d) % n));
        nodes.push(Node {
            name: name.clone(),
            dir: dir.clone(),
            address: client.address(),
            out,
            contacts: contacts.into_iter().collect(),
            next: AtomicUsize::new(0),
            in_send: AtomicBool::new(false),
            live: Mutex::new(None),
        });
    }
    let ctx = Arc::new(Ctx {
        clients: n,
        messages: config.messages,
        size: config.size,
        think: config.think,
        verbose: config.verbose,
        relay_addrs: client_addrs.clone(),
        options,
        start,
        deadline,
        nodes,
        tracker: Mutex::new(Tracker::default()),
        faults: Mutex::new(FaultCounts::default()),
        attempted: AtomicUsize::new(0),
    });
    for (i, (_, _, client)) in created.into_iter().enumerate() {
        for &c in &ctx.nodes[i].contacts {
            client
                .add_contact(&ctx.nodes[c].name, &ctx.nodes[c].address)
                .await
                .map_err(|e| format!("client {i} adding {c}: {e}"))?;
        }
        let listener = ctx.spawn_listener(i, client.events());
        *lock(&ctx.nodes[i].live) = Some(Live {
            client,
            listener,
            sender: None,
        });
    }
    ctx.log(format_args!(
        "{n} clients registered on {}",
        client_addrs.join(", ")
    ));

    // The attack runs from now until the last send (or until this run
    // ends early).
    let stop_attack = Arc::new(AtomicBool::new(false));
    let _stop_attack_on_exit = StopOnDrop(stop_attack.clone());
    let attack = config.abuse.clone().map(|abuse| {
        ctx.log(format_args!("attack begins: {abuse:?}"));
        abuse::spawn(addr, abuse, stop_attack.clone(), deadline)
    });

    // Warm-up, no faults yet: the first message to each contact starts the
    // session (X3DH needs the relay for the bundle).
    let load_start = ctx.now_ms();
    let mut tasks = Vec::new();
    for i in 0..n {
        let ctx = ctx.clone();
        let client = ctx.client(i)?;
        tasks.push(tokio::spawn(async move {
            for counter in 0..ctx.nodes[i].out.len() {
                ctx.send_one(i, &client, counter).await;
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())?;
    }
    let warm = ctx.attempted.load(Ordering::SeqCst);
    ctx.log(format_args!(
        "sessions started ({warm} messages); load and faults begin"
    ));

    for i in 0..n {
        let client = ctx.client(i)?;
        let sender = ctx.spawn_sender(i, client, rng.random());
        if let Some(live) = lock(&ctx.nodes[i].live).as_mut() {
            live.sender = Some(sender);
        }
    }
    let relay_faults = tokio::spawn(ctx.clone().relay_faults(
        relays.clone(),
        config.relay_kills,
        warm,
        StdRng::seed_from_u64(rng.random()),
    ));
    let client_faults = tokio::spawn(ctx.clone().client_faults(
        config.client_kills,
        warm,
        StdRng::seed_from_u64(rng.random()),
    ));
    relay_faults.await.map_err(|e| e.to_string())??;
    client_faults.await.map_err(|e| e.to_string())??;
    while ctx
        .nodes
        .iter()
        .any(|node| node.next.load(Ordering::SeqCst) < config.messages)
    {
        ctx.check_deadline("waiting for the senders to finish")?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ctx.log("all sends done; waiting for delivery");
    let attack = match attack {
        Some(attack) => {
            stop_attack.store(true, Ordering::SeqCst);
            let report = tokio::task::spawn_blocking(move || attack.join())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|_| "the attack thread panicked".to_owned())?;
            ctx.log("attack stopped");
            Some(report)
        }
        None => None,
    };

    let verdict = ctx.settle().await?;
    ctx.log("histories checked; checking every session both ways");
    let (sessions_checked, sessions_working) = ctx.check_sessions().await?;
    ctx.stop_all().await;
    let (mut relay_kills, mut relay_starts) = (0, 0);
    for relay in relays.iter() {
        let mut relay = relay.lock().await;
        relay.kill()?;
        relay_kills += relay.kills - 1;
        relay_starts += relay.starts;
    }
    let relay_connections = fronts
        .as_ref()
        .map(front::Fronts::counts)
        .unwrap_or_default();

    // Numbers.
    let start_epoch_ms = epoch_ms() - ctx.now_ms();
    let t = ctx.tracker();
    let mut report = Report {
        clients: n,
        fanout: config.fanout,
        messages_per_client: config.messages,
        attempted: t.sends.len(),
        relay_kills,
        relay_starts,
        relay_connections,
        sessions_checked,
        sessions_working,
        committed: verdict.committed,
        delivered: verdict.delivered,
        lost: verdict.lost,
        duplicated: verdict.duplicated,
        out_of_order: verdict.out_of_order,
        phantom: verdict.phantom,
        stuck: verdict.stuck,
        unreadable: verdict.unreadable,
        interrupted_committed: verdict.interrupted_committed,
        problems: verdict.problems.clone(),
        attack,
        ..Report::default()
    };
    {
        let f = lock(&ctx.faults);
        report.client_kills = f.client_kills;
        report.kills_aimed_send = f.kills_aimed_send;
        report.sends_interrupted = f.sends_interrupted;
        report.kills_aimed_receive = f.kills_aimed_receive;
        report.receives_interrupted = f.receives_interrupted;
        report.client_restarts = f.client_restarts;
    }
    let mut latencies = Vec::new();
    let mut last_stored_ms = load_start;
    for (key, record) in &t.sends {
        match &record.outcome {
            Outcome::Sent(SendStatus::Accepted) => report.sent_delivered += 1,
            Outcome::Sent(SendStatus::Queued) => report.sent_queued += 1,
            Outcome::Sent(status) => {
                report.send_errors += 1;
                if report.problems.len() < MAX_PROBLEMS {
                    report
                        .problems
                        .push(format!("send {}/{} ended {status:?}", key.0, key.1));
                }
            }
            Outcome::Failed(e) => {
                report.send_errors += 1;
                if report.problems.len() < MAX_PROBLEMS {
                    report
                        .problems
                        .push(format!("send {}/{} failed: {e}", key.0, key.1));
                }
            }
            Outcome::Interrupted => report.interrupted += 1,
            Outcome::InFlight => {}
        }
        if !matches!(record.outcome, Outcome::Sent(_)) {
            continue;
        }
        let stored_ms = if let Some(at) = t.stored.get(key) {
            report.latency_from_events += 1;
            *at
        } else if let Some(at) = verdict.history_ms.get(key) {
            report.latency_from_history += 1;
            *at as f64 - start_epoch_ms
        } else {
            continue;
        };
        last_stored_ms = last_stored_ms.max(stored_ms);
        latencies.push((stored_ms - record.started_ms).max(0.0));
    }
    if t.repeated_events > 0 {
        report.problems.push(format!(
            "{} messages were announced as stored more than once",
            t.repeated_events
        ));
    }
    if t.strange_events > 0 {
        report
            .problems
            .push(format!("{} unexpected incoming messages", t.strange_events));
    }
    let mut errors: Vec<(String, usize)> = t.errors.iter().map(|(r, n)| (r.clone(), *n)).collect();
    errors.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    errors.truncate(MAX_PROBLEMS);
    report.background_errors = errors;
    latencies.sort_by(f64::total_cmp);
    report.latency_p50_ms = percentile(&latencies, 50.0);
    report.latency_p99_ms = percentile(&latencies, 99.0);
    report.latency_max_ms = latencies.last().copied().unwrap_or(0.0);
    report.load_seconds = (last_stored_ms - load_start) / 1000.0;
    if report.load_seconds > 0.0 {
        report.messages_per_second = latencies.len() as f64 / report.load_seconds;
    }
    report.wall_seconds = start.elapsed().as_secs_f64();
    Ok(report)
}
