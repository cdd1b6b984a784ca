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
//!
//! Envelopes are `PAYLOAD_LEN` bytes, the wire size of a Sotto Message with
//! a short text. The per-connection rate limits and send budget are lifted
//! (the defaults allow 100 requests/s and 64 MiB per connection) and the
//! mailbox limit is raised, so the relay's own cost is measured; everything
//! else is the default configuration. The recipient publishes a signed
//! prekey first, as the relay queues envelopes only for registered
//! mailboxes.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use sotto_benches::{established_pair, rng};
use sotto_core::{IdentityKeyPair, SignedPreKey, SignedPreKeyId};
use sotto_relay::{
    ClientConfig, MailboxAddress, MailboxLimits, MailboxStore, MemoryStore, MessageId,
    PreKeyUpload, RateLimit, RelayClient, RelayEvent, Server, ServerConfig, ServerHandle,
    SqliteStore,
};
use tempfile::TempDir;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

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
        ..ServerConfig::default()
    }
}

#[derive(Clone, Copy)]
enum Backend {
    Memory,
    Sqlite,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite => "sqlite",
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
        let (store, dir): (Arc<dyn MailboxStore>, _) = match backend {
            Backend::Memory => (Arc::new(MemoryStore::new()), None),
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = SqliteStore::open(dir.path().join("relay.db")).expect("sqlite");
                (Arc::new(store), Some(dir))
            }
        };
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

criterion_group!(benches, bench_relay);
criterion_main!(benches);
