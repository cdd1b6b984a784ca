//! The relay on loopback (127.0.0.1): messages per second through one
//! server, with the in-memory and the SQLite mailbox store.
//!
//! - `relay_send`: `SENDERS` connections, each with `WINDOW` requests in
//!   flight, send envelopes to one mailbox; the time until every `Sent`
//!   answer has arrived (for SQLite: every envelope committed with
//!   `synchronous = FULL`). The recipient empties the mailbox afterwards,
//!   outside the timed region.
//! - `relay_end_to_end`: the same senders while the recipient, authenticated
//!   on its own connection, fetches and acknowledges concurrently; the time
//!   until the recipient has acknowledged every envelope.
//! - `relay_64x64/end_to_end`: `MANY` sender connections, each with
//!   `MANY_WINDOW` requests in flight, send to `MANY` recipients, each
//!   authenticated on its own connection (message k of sender task j goes
//!   to recipient (j + k) mod `MANY`). Every recipient acknowledges what
//!   the relay pushes to it (with a fetch when nothing came for a while,
//!   as pushes the client could not take are dropped); the time until
//!   every envelope is acknowledged. The relay runs on a runtime of its
//!   own (2 worker threads, its blocking pool), the clients on another
//!   (2 worker threads), so the CPU time of the relay's threads can be
//!   read from `/proc` and reported per message after the group.
//! - `relay_64x64/end_to_end/redis_1_relay` and `.../redis_3_relays`: the
//!   same on the Redis store (the server `SOTTO_TEST_REDIS_URL` names, as
//!   for the tests; skipped, saying so, without it), through
//!   one relay or three, each relay a server on a runtime of its own (2
//!   worker threads each) with a `RedisStore` of its own on one key prefix,
//!   as separate relay processes would be. With three, recipient j is
//!   connected to relay j mod 3 and sender j to relay (j + 1) mod 3, so
//!   every message is pushed across relays (through Redis pub/sub). The
//!   Redis server's CPU time (all its threads, from `/proc/<pid>`) is
//!   reported per message beside the relays' and the clients'.
//! - `relay_64x64/end_to_end/redis_cluster_1_relay`: the same through one
//!   relay on a Redis Cluster (the nodes `SOTTO_TEST_REDIS_CLUSTER_URL`
//!   names, comma-separated; skipped, saying so, without it); the CPU time
//!   of every node's process on this machine is added up.
//! - `relay_queued/<backend>`: the memory of the relay with many envelopes
//!   queued. Four senders fill one mailbox (nobody fetches) to 1k, 10k,
//!   100k and 1M envelopes (1k and 10k in `--test` mode), and after each
//!   step the process's resident memory (`VmRSS`: the relay and the four
//!   sender connections), the store's size (the SQLite files, or Redis's
//!   `used_memory`) are printed; the time measured is that of sending 1000
//!   more at each depth.
//!
//! Envelopes are `PAYLOAD_LEN` bytes, the wire size of a Sotto Message with
//! a short text. The per-connection rate limits and send budget are lifted
//! (the defaults allow 100 requests/s and 64 MiB per connection) and the
//! mailbox limit is raised, so the relay's own cost is measured; so is the
//! limit of connections per address, for the 128 connections of
//! `relay_64x64` from 127.0.0.1. Everything else is the default
//! configuration. Recipients publish a signed prekey first, as the relay
//! queues envelopes only for registered mailboxes.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use sotto_benches::{established_pair, rng};
use sotto_core::{IdentityKeyPair, SignedPreKey, SignedPreKeyId};
use sotto_relay::{
    ClientConfig, MailboxAddress, MailboxLimits, MailboxStore, MemoryStore, MessageId,
    PreKeyUpload, RateLimit, RedisOptions, RedisStore, RelayClient, RelayEvent, Server,
    ServerConfig, ServerHandle, SqliteStore,
};
use tempfile::TempDir;
use tokio::runtime::Runtime;
use tokio::sync::{Notify, mpsc};

/// Sending connections.
const SENDERS: usize = 4;
/// Requests each sending connection keeps in flight.
const WINDOW: usize = 8;
/// The most envelopes in the mailbox between two timed runs of `relay_send`.
const SEND_CHUNK: u64 = 5_000;

/// The wire size of a Sotto Message carrying up to 255 bytes of text.
fn payload() -> Vec<u8> {
    let (mut alice, _) = established_pair(&mut rng(5)).expect("pair");
    alice.encrypt(&[b'x'; 100]).expect("encrypt")
}

fn config() -> ServerConfig {
    ServerConfig {
        rate_limit: RateLimit {
            requests_per_second: 1e9,
            request_burst: 1e9,
            bytes_per_second: 1e12,
            byte_burst: 1e12,
        },
        mailbox_limits: MailboxLimits {
            max_envelopes: 10_000_000,
            max_bytes: 16 << 30,
        },
        connection_send_budget: u64::MAX,
        max_connections_per_address: 1024,
        ..ServerConfig::default()
    }
}

#[derive(Clone, Copy)]
enum Backend {
    Memory,
    Sqlite,
    Redis,
    RedisCluster,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite => "sqlite",
            Self::Redis => "redis",
            Self::RedisCluster => "redis_cluster",
        }
    }

    /// The store, and the directory its file is in.
    fn store(self) -> (Arc<dyn MailboxStore>, Option<TempDir>) {
        match self {
            Self::Memory => (Arc::new(MemoryStore::new()), None),
            Self::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = SqliteStore::open(dir.path().join("relay.db")).expect("sqlite");
                (Arc::new(store), Some(dir))
            }
            Self::Redis | Self::RedisCluster => {
                panic!("a Redis store comes from BenchRedis::store")
            }
        }
    }
}

#[path = "../../crates/sotto-relay/tests/support/redis.rs"]
mod test_redis;

/// The Redis server of the Redis benchmarks, under a key prefix of the
/// run's own (its keys deleted on drop).
struct BenchRedis {
    redis: test_redis::TestRedis,
    /// The server's processes (a cluster's nodes), for their CPU time.
    pids: Vec<u32>,
    /// A cluster's node URLs (empty for one server): its keys are deleted
    /// node by node on drop.
    nodes: Vec<String>,
}

/// The variable that names the test cluster's nodes.
const CLUSTER_URL_VAR: &str = "SOTTO_TEST_REDIS_CLUSTER_URL";

impl BenchRedis {
    /// `None`, with a note, when no server is named.
    fn new() -> Option<Self> {
        let redis = test_redis::TestRedis::new("bench")?;
        let pids = redis
            .info("server", "process_id")
            .and_then(|p| p.parse().ok())
            .into_iter()
            .collect();
        Some(Self {
            redis,
            pids,
            nodes: Vec::new(),
        })
    }

    /// The test cluster; `None`, with a note, when none is named.
    fn cluster() -> Option<Self> {
        let Some(url) = std::env::var(CLUSTER_URL_VAR)
            .ok()
            .filter(|u| !u.is_empty())
        else {
            eprintln!(
                "redis_cluster skipped: set {CLUSTER_URL_VAR}=redis://HOST:PORT,... to run it"
            );
            return None;
        };
        let nodes: Vec<String> = url.split(',').map(|u| u.trim().to_owned()).collect();
        let pids = nodes
            .iter()
            .filter_map(|node| {
                let mut conn = redis::Client::open(node.as_str())
                    .ok()?
                    .get_connection()
                    .ok()?;
                let info: String = redis::cmd("INFO").arg("server").query(&mut conn).ok()?;
                info.lines()
                    .find_map(|l| l.trim().strip_prefix("process_id:"))
                    .and_then(|p| p.parse().ok())
            })
            .collect();
        let prefix = format!("sotto-bench-cluster-{}", std::process::id());
        Some(Self {
            // Its own clean-up does nothing for a list of nodes: ours does.
            redis: test_redis::TestRedis { url, prefix },
            pids,
            nodes,
        })
    }

    /// A store on the run's keys: one relay's.
    fn store(&self) -> Arc<dyn MailboxStore> {
        let options = RedisOptions {
            key_prefix: self.redis.prefix.clone(),
            ..RedisOptions::default()
        };
        Arc::new(RedisStore::open_with(&self.redis.url, &options).expect("Redis store"))
    }

    /// CPU time of the servers' threads, if they run on this machine.
    fn cpu_ns(&self) -> u64 {
        self.pids
            .iter()
            .map(|pid| cpu_ns_in(&format!("/proc/{pid}/task"), None))
            .sum()
    }

    /// The server's `used_memory`, in bytes.
    fn used_memory(&self) -> u64 {
        self.redis
            .info("memory", "used_memory")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for BenchRedis {
    fn drop(&mut self) {
        // A cluster node refuses keys of several slots in one command:
        // one UNLINK each.
        let pattern = format!("{}:*", self.redis.prefix);
        for node in &self.nodes {
            let Ok(mut conn) = redis::Client::open(node.as_str()).and_then(|c| c.get_connection())
            else {
                continue;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query(&mut conn)
                .unwrap_or_default();
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("UNLINK").arg(key).ignore();
            }
            let _ = pipe.query::<()>(&mut conn);
        }
    }
}

/// A running relay, its senders and the recipient.
struct Relay {
    runtime: Runtime,
    server: Option<ServerHandle>,
    senders: Vec<Arc<RelayClient>>,
    recipient: Option<RelayClient>,
    events: mpsc::Receiver<RelayEvent>,
    address: MailboxAddress,
    payload: Arc<Vec<u8>>,
    next_id: Arc<AtomicU64>,
    _dir: Option<TempDir>,
}

impl Relay {
    fn new(backend: Backend) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (store, dir) = backend.store();
        let identity = IdentityKeyPair::generate(&mut rng(6));
        let address = MailboxAddress::of(identity.public());
        let (server, senders, recipient, events) = runtime.block_on(async {
            let server = Server::bind("127.0.0.1:0", config(), store)
                .await
                .expect("bind")
                .spawn();
            let addr = server.local_addr();
            let recipient = RelayClient::connect(addr, ClientConfig::default())
                .await
                .expect("connect");
            recipient
                .authenticate(&identity)
                .await
                .expect("authenticate");
            let signed = SignedPreKey::generate(SignedPreKeyId::new(1), &identity, &mut rng(7));
            recipient
                .upload_prekeys(PreKeyUpload::new(Some(&signed), &[]))
                .await
                .expect("register the mailbox");
            let events = recipient.take_events().expect("events");
            let mut senders = Vec::new();
            for _ in 0..SENDERS {
                let client = RelayClient::connect(addr, ClientConfig::default())
                    .await
                    .expect("connect");
                senders.push(Arc::new(client));
            }
            (server, senders, recipient, events)
        });
        Self {
            runtime,
            server: Some(server),
            senders,
            recipient: Some(recipient),
            events,
            address,
            payload: Arc::new(payload()),
            next_id: Arc::new(AtomicU64::new(1)),
            _dir: dir,
        }
    }

    /// Sends `count` envelopes from all senders, `WINDOW` in flight per
    /// connection; returns once every one was answered `Sent`.
    async fn send(
        senders: &[Arc<RelayClient>],
        address: MailboxAddress,
        payload: &Arc<Vec<u8>>,
        next_id: &Arc<AtomicU64>,
        count: u64,
    ) {
        let tasks = (senders.len() * WINDOW) as u64;
        let mut handles = Vec::new();
        for task in 0..tasks {
            let share = count / tasks + u64::from(task < count % tasks);
            let client = senders[task as usize % senders.len()].clone();
            let payload = payload.clone();
            let next_id = next_id.clone();
            handles.push(tokio::spawn(async move {
                for _ in 0..share {
                    let mut id = [0u8; 16];
                    id[..8].copy_from_slice(&next_id.fetch_add(1, Ordering::Relaxed).to_be_bytes());
                    let receipt = client
                        .send(&address, MessageId(id), None, &payload)
                        .await
                        .expect("send");
                    assert!(!receipt.duplicate);
                }
            }));
        }
        for handle in handles {
            handle.await.expect("sender task");
        }
    }

    /// Fetches and acknowledges until `count` envelopes were acknowledged.
    async fn drain(recipient: &RelayClient, events: &mut mpsc::Receiver<RelayEvent>, count: u64) {
        let mut acked = 0u64;
        while acked < count {
            // Pushed copies of the envelopes also arrive; they only tell
            // the recipient to fetch again.
            while events.try_recv().is_ok() {}
            let page = recipient.fetch(0, 0).await.expect("fetch");
            if page.envelopes.is_empty() {
                let _ = tokio::time::timeout(Duration::from_millis(2), events.recv()).await;
                continue;
            }
            let ids: Vec<u64> = page.envelopes.iter().map(|e| e.id).collect();
            let removed = recipient.ack(&ids).await.expect("ack");
            acked += u64::from(removed);
        }
    }

    /// Timed sends, untimed drain, in chunks that keep the mailbox small.
    fn measure_send(&mut self, iters: u64) -> Duration {
        let mut measured = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let chunk = left.min(SEND_CHUNK);
            left -= chunk;
            let recipient = self.recipient.as_ref().expect("recipient");
            let events = &mut self.events;
            let (senders, address, payload, next_id) =
                (&self.senders, self.address, &self.payload, &self.next_id);
            measured += self.runtime.block_on(async {
                let start = Instant::now();
                Self::send(senders, address, payload, next_id, chunk).await;
                let elapsed = start.elapsed();
                Self::drain(recipient, events, chunk).await;
                elapsed
            });
        }
        measured
    }

    /// Senders and recipient concurrently, until all `iters` are acknowledged.
    fn measure_end_to_end(&mut self, iters: u64) -> Duration {
        let recipient = self.recipient.as_ref().expect("recipient");
        let events = &mut self.events;
        let (senders, address, payload, next_id) =
            (&self.senders, self.address, &self.payload, &self.next_id);
        self.runtime.block_on(async {
            let start = Instant::now();
            let send = tokio::spawn({
                let senders = senders.clone();
                let payload = payload.clone();
                let next_id = next_id.clone();
                async move { Self::send(&senders, address, &payload, &next_id, iters).await }
            });
            Self::drain(recipient, events, iters).await;
            send.await.expect("senders");
            start.elapsed()
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let senders = std::mem::take(&mut self.senders);
        let recipient = self.recipient.take();
        let server = self.server.take();
        self.runtime.block_on(async {
            for sender in senders {
                if let Ok(client) = Arc::try_unwrap(sender) {
                    client.close().await;
                }
            }
            if let Some(recipient) = recipient {
                recipient.close().await;
            }
            if let Some(server) = server {
                server.shutdown().await;
            }
        });
    }
}

fn bench_relay(c: &mut Criterion) {
    for backend in [Backend::Memory, Backend::Sqlite] {
        let mut group = c.benchmark_group("relay");
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10);
        group.throughput(Throughput::Elements(1));
        let mut fixture: Option<Relay> = None;
        group.bench_function(BenchmarkId::new("send", backend.name()), |b| {
            let relay = fixture.get_or_insert_with(|| Relay::new(backend));
            b.iter_custom(|iters| relay.measure_send(iters))
        });
        group.bench_function(BenchmarkId::new("end_to_end", backend.name()), |b| {
            let relay = fixture.get_or_insert_with(|| Relay::new(backend));
            b.iter_custom(|iters| relay.measure_end_to_end(iters))
        });
        drop(fixture.take());
        group.finish();
    }
}

/// Senders, and recipients, of `relay_64x64`.
const MANY: usize = 64;
/// Requests each sending connection of `relay_64x64` keeps in flight.
const MANY_WINDOW: usize = 4;
/// How long a recipient of `relay_64x64` waits for a push before it
/// fetches (pushes the client could not take are dropped).
const PUSH_WAIT: Duration = Duration::from_millis(20);
/// The name of the relay's threads (workers and blocking pool).
const RELAY_THREAD: &str = "relay-server";
/// The names of the SQLite store's own threads (writer and reader), whose
/// CPU time is the relay's too.
const STORE_THREADS: [&str; 2] = ["sqlite-writer", "sqlite-reader"];
/// The name of the clients' threads.
const CLIENT_THREAD: &str = "relay-clients";

/// CPU time, in nanoseconds, of this process's threads named `name`
/// (`/proc/self/task/*/schedstat`: time on a CPU).
fn cpu_ns(name: &str) -> u64 {
    cpu_ns_in("/proc/self/task", Some(name))
}

/// CPU time, in nanoseconds, of the threads in `tasks` (a `/proc/<pid>/task`
/// directory), only those named `name` if given.
fn cpu_ns_in(tasks: &str, name: Option<&str>) -> u64 {
    let Ok(tasks) = std::fs::read_dir(tasks) else {
        return 0;
    };
    let mut total = 0;
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if name.is_some_and(|name| comm.trim_end() != name) {
            continue;
        }
        let schedstat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        total += schedstat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

/// CPU time, in nanoseconds, of the relay's threads: its runtime's and
/// its store's.
fn relay_cpu_ns() -> u64 {
    cpu_ns(RELAY_THREAD) + STORE_THREADS.iter().map(|t| cpu_ns(t)).sum::<u64>()
}

fn runtime(name: &'static str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        // Blocking threads stay, so their CPU time stays readable.
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all()
        .build()
        .expect("runtime")
}

/// A new identity's connection to the relay at `addr`, authenticated, with
/// its mailbox registered (a signed prekey published), and the mailbox's
/// address.
async fn owner(
    addr: std::net::SocketAddr,
    keys: &mut impl rand::CryptoRng,
) -> (RelayClient, MailboxAddress) {
    let identity = IdentityKeyPair::generate(keys);
    let client = RelayClient::connect(addr, ClientConfig::default())
        .await
        .expect("connect");
    client.authenticate(&identity).await.expect("authenticate");
    let signed = SignedPreKey::generate(SignedPreKeyId::new(1), &identity, keys);
    client
        .upload_prekeys(PreKeyUpload::new(Some(&signed), &[]))
        .await
        .expect("register the mailbox");
    (client, MailboxAddress::of(identity.public()))
}

/// A recipient of `relay_64x64`: its connection and its pushes.
struct Recipient {
    client: Arc<RelayClient>,
    events: mpsc::Receiver<RelayEvent>,
}

/// What the runs of one fixture added up to.
#[derive(Default)]
struct Totals {
    messages: u64,
    wall: Duration,
    relay_cpu_ns: u64,
    client_cpu_ns: u64,
    redis_cpu_ns: u64,
}

/// `MANY` senders and `MANY` recipients around one relay, or several on
/// one Redis store.
struct ManyToMany {
    name: String,
    /// One per relay (each relay on a runtime of its own, as a process).
    relay_runtimes: Vec<Runtime>,
    client_runtime: Runtime,
    servers: Vec<ServerHandle>,
    redis: Option<BenchRedis>,
    senders: Vec<Arc<RelayClient>>,
    recipients: Vec<Recipient>,
    addresses: Arc<Vec<MailboxAddress>>,
    payload: Arc<Vec<u8>>,
    next_id: Arc<AtomicU64>,
    totals: Totals,
    _dir: Option<TempDir>,
}

impl ManyToMany {
    /// `relays` relays: more than one only on Redis (`redis`).
    fn new(backend: Backend, relays: usize, redis: Option<BenchRedis>) -> Self {
        let name = many_name(backend, relays);
        let client_runtime = runtime(CLIENT_THREAD);
        let mut dir = None;
        let mut relay_runtimes = Vec::new();
        let mut servers = Vec::new();
        for _ in 0..relays {
            let store = match &redis {
                Some(redis) => redis.store(),
                None => {
                    let (store, d) = backend.store();
                    dir = d;
                    store
                }
            };
            let relay_runtime = runtime(RELAY_THREAD);
            servers.push(relay_runtime.block_on(async {
                Server::bind("127.0.0.1:0", config(), store)
                    .await
                    .expect("bind")
                    .spawn()
            }));
            relay_runtimes.push(relay_runtime);
        }
        let addrs: Vec<_> = servers.iter().map(ServerHandle::local_addr).collect();
        let (senders, recipients, addresses) = client_runtime.block_on(async {
            let mut recipients = Vec::new();
            let mut addresses = Vec::new();
            let mut keys = rng(100);
            for j in 0..MANY {
                let (client, address) = owner(addrs[j % addrs.len()], &mut keys).await;
                let events = client.take_events().expect("events");
                addresses.push(address);
                recipients.push(Recipient {
                    client: Arc::new(client),
                    events,
                });
            }
            let mut senders = Vec::new();
            for j in 0..MANY {
                let addr = addrs[(j + 1) % addrs.len()];
                let client = RelayClient::connect(addr, ClientConfig::default())
                    .await
                    .expect("connect");
                senders.push(Arc::new(client));
            }
            (senders, recipients, addresses)
        });
        Self {
            name,
            relay_runtimes,
            client_runtime,
            servers,
            redis,
            senders,
            recipients,
            addresses: Arc::new(addresses),
            payload: Arc::new(payload()),
            next_id: Arc::new(AtomicU64::new(1)),
            totals: Totals::default(),
            _dir: dir,
        }
    }

    /// Acknowledges what `recipient` is pushed (or fetches, after
    /// `PUSH_WAIT` without a push) until `acked` reaches `count`; the one
    /// that gets it there records the time in `done_at` and wakes the
    /// others.
    async fn receive(
        mut recipient: Recipient,
        count: u64,
        acked: Arc<AtomicU64>,
        done: Arc<Notify>,
        done_at: Arc<Mutex<Option<Instant>>>,
    ) -> Recipient {
        let mut ids = Vec::new();
        while acked.load(Ordering::SeqCst) < count {
            ids.clear();
            tokio::select! {
                event = recipient.events.recv() => {
                    if let Some(RelayEvent::Envelope(e)) = event {
                        ids.push(e.id);
                    }
                    while let Ok(event) = recipient.events.try_recv() {
                        if let RelayEvent::Envelope(e) = event {
                            ids.push(e.id);
                        }
                    }
                }
                () = done.notified() => break,
                () = tokio::time::sleep(PUSH_WAIT) => {
                    let page = recipient.client.fetch(0, 0).await.expect("fetch");
                    ids.extend(page.envelopes.iter().map(|e| e.id));
                }
            }
            if ids.is_empty() {
                continue;
            }
            let removed = u64::from(recipient.client.ack(&ids).await.expect("ack"));
            let before = acked.fetch_add(removed, Ordering::SeqCst);
            if before < count && before + removed >= count {
                *done_at.lock().expect("done_at") = Some(Instant::now());
                done.notify_waiters();
            }
        }
        recipient
    }

    /// Sends `count` envelopes spread over every sender and recipient, and
    /// waits until all are acknowledged.
    fn measure(&mut self, count: u64) -> Duration {
        let recipients = std::mem::take(&mut self.recipients);
        let (senders, addresses, payload, next_id) = (
            self.senders.clone(),
            self.addresses.clone(),
            self.payload.clone(),
            self.next_id.clone(),
        );
        let redis_cpu = self.redis.as_ref().map_or(0, BenchRedis::cpu_ns);
        let cpu = (relay_cpu_ns(), cpu_ns(CLIENT_THREAD));
        let (elapsed, recipients) = self.client_runtime.block_on(async move {
            let acked = Arc::new(AtomicU64::new(0));
            let done = Arc::new(Notify::new());
            let done_at = Arc::new(Mutex::new(None));
            let start = Instant::now();
            let receivers: Vec<_> = recipients
                .into_iter()
                .map(|r| {
                    tokio::spawn(Self::receive(
                        r,
                        count,
                        acked.clone(),
                        done.clone(),
                        done_at.clone(),
                    ))
                })
                .collect();
            let tasks = (senders.len() * MANY_WINDOW) as u64;
            let mut sending = Vec::new();
            for task in 0..tasks {
                let share = count / tasks + u64::from(task < count % tasks);
                let client = senders[task as usize % senders.len()].clone();
                let (addresses, payload, next_id) =
                    (addresses.clone(), payload.clone(), next_id.clone());
                sending.push(tokio::spawn(async move {
                    for k in 0..share {
                        let to = addresses[((task + k) % addresses.len() as u64) as usize];
                        let mut id = [0u8; 16];
                        id[..8].copy_from_slice(
                            &next_id.fetch_add(1, Ordering::Relaxed).to_be_bytes(),
                        );
                        let receipt = client
                            .send(&to, MessageId(id), None, &payload)
                            .await
                            .expect("send");
                        assert!(!receipt.duplicate);
                    }
                }));
            }
            for task in sending {
                task.await.expect("sender task");
            }
            let mut recipients = Vec::new();
            for task in receivers {
                recipients.push(task.await.expect("recipient task"));
            }
            let end = done_at
                .lock()
                .expect("done_at")
                .unwrap_or_else(Instant::now);
            (end - start, recipients)
        });
        self.recipients = recipients;
        let totals = &mut self.totals;
        totals.messages += count;
        totals.wall += elapsed;
        totals.relay_cpu_ns += relay_cpu_ns().saturating_sub(cpu.0);
        totals.client_cpu_ns += cpu_ns(CLIENT_THREAD).saturating_sub(cpu.1);
        totals.redis_cpu_ns += self
            .redis
            .as_ref()
            .map_or(0, BenchRedis::cpu_ns)
            .saturating_sub(redis_cpu);
        elapsed
    }

    /// One line with the CPU time per message, over every run.
    fn report(&self) {
        let t = &self.totals;
        if t.messages == 0 {
            return;
        }
        let per = |ns: u64| ns as f64 / t.messages as f64 / 1000.0;
        let wall = t.wall.as_secs_f64();
        let redis = if self.redis.is_some() {
            format!(
                "; Redis server {:.1} µs per message, busy {:.2} cores",
                per(t.redis_cpu_ns),
                t.redis_cpu_ns as f64 / 1e9 / wall
            )
        } else {
            String::new()
        };
        println!(
            "relay_64x64/end_to_end/{}: {} messages in {:.2} s ({:.0}/s over all runs); \
             CPU per message: relays {:.1} µs, clients {:.1} µs; \
             relay threads busy {:.2} cores, clients {:.2} cores{redis}",
            self.name,
            t.messages,
            wall,
            t.messages as f64 / wall,
            per(t.relay_cpu_ns),
            per(t.client_cpu_ns),
            t.relay_cpu_ns as f64 / 1e9 / wall,
            t.client_cpu_ns as f64 / 1e9 / wall,
        );
    }
}

impl Drop for ManyToMany {
    fn drop(&mut self) {
        let senders = std::mem::take(&mut self.senders);
        let recipients = std::mem::take(&mut self.recipients);
        self.client_runtime.block_on(async {
            for client in senders
                .into_iter()
                .chain(recipients.into_iter().map(|r| r.client))
            {
                if let Ok(client) = Arc::try_unwrap(client) {
                    client.close().await;
                }
            }
        });
        for (server, runtime) in self.servers.drain(..).zip(&self.relay_runtimes) {
            runtime.block_on(server.shutdown());
        }
    }
}

/// The name of a `relay_64x64` fixture.
fn many_name(backend: Backend, relays: usize) -> String {
    match backend {
        Backend::Redis if relays == 1 => "redis_1_relay".to_owned(),
        Backend::Redis => format!("redis_{relays}_relays"),
        Backend::RedisCluster => format!("redis_cluster_{relays}_relay"),
        other => other.name().to_owned(),
    }
}

fn bench_many_to_many(c: &mut Criterion) {
    let mut redis_runs = if BenchRedis::new().is_some() {
        vec![(Backend::Redis, 1), (Backend::Redis, 3)]
    } else {
        Vec::new()
    };
    if BenchRedis::cluster().is_some() {
        redis_runs.push((Backend::RedisCluster, 1));
    }
    for (backend, relays) in [(Backend::Memory, 1), (Backend::Sqlite, 1)]
        .into_iter()
        .chain(redis_runs)
    {
        let mut group = c.benchmark_group("relay_64x64");
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10);
        group.throughput(Throughput::Elements(1));
        let mut fixture: Option<ManyToMany> = None;
        group.bench_function(
            BenchmarkId::new("end_to_end", many_name(backend, relays)),
            |b| {
                let relay = fixture.get_or_insert_with(|| {
                    let redis = match backend {
                        Backend::Redis => BenchRedis::new(),
                        Backend::RedisCluster => BenchRedis::cluster(),
                        _ => None,
                    };
                    ManyToMany::new(backend, relays, redis)
                });
                b.iter_custom(|iters| relay.measure(iters))
            },
        );
        if let Some(relay) = fixture.take() {
            relay.report();
        }
        group.finish();
    }
}

/// Mailboxes `relay_queued` fills, in turn.
const QUEUED_MAILBOXES: usize = 16;

/// Whether criterion runs each benchmark once (`cargo bench -- --test`).
fn test_mode() -> bool {
    std::env::args().any(|a| a == "--test")
}

/// The resident memory of this process, in bytes (`VmRSS`).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A relay with `QUEUED_MAILBOXES` mailboxes that nobody empties, and
/// `SENDERS` connections that fill them.
struct Queued {
    name: &'static str,
    runtime: Runtime,
    server: Option<ServerHandle>,
    store: Arc<dyn MailboxStore>,
    senders: Vec<Arc<RelayClient>>,
    addresses: Vec<MailboxAddress>,
    payload: Arc<Vec<u8>>,
    next_id: Arc<AtomicU64>,
    redis: Option<BenchRedis>,
    dir: Option<TempDir>,
}

impl Queued {
    fn new(backend: Backend, redis: Option<BenchRedis>) -> Self {
        let runtime = runtime(RELAY_THREAD);
        let (store, dir) = match &redis {
            Some(redis) => (redis.store(), None),
            None => backend.store(),
        };
        let (server, senders, addresses) = runtime.block_on(async {
            let server = Server::bind("127.0.0.1:0", config(), store.clone())
                .await
                .expect("bind")
                .spawn();
            let addr = server.local_addr();
            let mut keys = rng(200);
            let mut addresses = Vec::new();
            for _ in 0..QUEUED_MAILBOXES {
                let (owner, address) = owner(addr, &mut keys).await;
                owner.close().await;
                addresses.push(address);
            }
            let mut senders = Vec::new();
            for _ in 0..SENDERS {
                let client = RelayClient::connect(addr, ClientConfig::default())
                    .await
                    .expect("connect");
                senders.push(Arc::new(client));
            }
            (server, senders, addresses)
        });
        Self {
            name: backend.name(),
            runtime,
            server: Some(server),
            store,
            senders,
            addresses,
            payload: Arc::new(payload()),
            next_id: Arc::new(AtomicU64::new(1)),
            redis,
            dir,
        }
    }

    /// Sends `count` envelopes, `WINDOW` in flight per sender, spread over
    /// the mailboxes.
    fn send(&self, count: u64) -> Duration {
        let per_mailbox = count / self.addresses.len() as u64;
        let extra = count % self.addresses.len() as u64;
        self.runtime.block_on(async {
            let start = Instant::now();
            let mut tasks = Vec::new();
            for (i, address) in self.addresses.iter().enumerate() {
                let n = per_mailbox + u64::from((i as u64) < extra);
                let (senders, address, payload, next_id) = (
                    self.senders.clone(),
                    *address,
                    self.payload.clone(),
                    self.next_id.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    Relay::send(&senders, address, &payload, &next_id, n).await;
                }));
            }
            for task in tasks {
                task.await.expect("senders");
            }
            start.elapsed()
        })
    }

    fn queued(&self) -> u64 {
        self.store.totals().expect("totals").envelopes
    }

    /// Fills the mailboxes to `depth` envelopes in all (if below).
    fn fill_to(&self, depth: u64) {
        let mut queued = self.queued();
        while queued < depth {
            self.send((depth - queued).min(100_000));
            queued = self.queued();
        }
    }

    /// One line: envelopes queued, the process's memory, the store's size.
    fn report(&self) {
        let store = match (&self.redis, &self.dir) {
            (Some(redis), _) => format!(
                "Redis used_memory {:.1} MiB",
                redis.used_memory() as f64 / 1048576.0
            ),
            (None, Some(dir)) => {
                let bytes: u64 = std::fs::read_dir(dir.path())
                    .map(|entries| {
                        entries
                            .flatten()
                            .filter_map(|e| e.metadata().ok())
                            .map(|m| m.len())
                            .sum()
                    })
                    .unwrap_or(0);
                format!("SQLite files {:.1} MiB", bytes as f64 / 1048576.0)
            }
            (None, None) => String::new(),
        };
        println!(
            "relay_queued/{}: {} envelopes queued; process RSS {:.1} MiB; {store}",
            self.name,
            self.queued(),
            rss_bytes() as f64 / 1048576.0,
        );
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        let senders = std::mem::take(&mut self.senders);
        let server = self.server.take();
        self.runtime.block_on(async {
            for sender in senders {
                if let Ok(client) = Arc::try_unwrap(sender) {
                    client.close().await;
                }
            }
            if let Some(server) = server {
                server.shutdown().await;
            }
        });
    }
}

fn bench_queued(c: &mut Criterion) {
    let depths: &[u64] = if test_mode() {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000, 1_000_000]
    };
    let mut backends = vec![Backend::Sqlite];
    if BenchRedis::new().is_some() {
        backends.push(Backend::Redis);
    }
    for backend in backends {
        let redis = matches!(backend, Backend::Redis)
            .then(BenchRedis::new)
            .flatten();
        let fixture = Queued::new(backend, redis);
        let mut group = c.benchmark_group("relay_queued");
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10);
        group.throughput(Throughput::Elements(1));
        for &depth in depths {
            fixture.fill_to(depth);
            fixture.report();
            group.bench_function(BenchmarkId::new(backend.name(), depth), |b| {
                b.iter_custom(|iters| fixture.send(iters))
            });
        }
        fixture.report();
        group.finish();
    }
}

criterion_group!(benches, bench_relay, bench_many_to_many, bench_queued);
criterion_main!(benches);
