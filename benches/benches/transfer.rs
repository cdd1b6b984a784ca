//! A new device's history, end to end: `Client::send_history` on the
//! account's device until the new device has applied the last chunk,
//! through a relay on loopback (127.0.0.1) with the SQLite mailbox store.
//!
//! The history is `MESSAGES` messages of `BODY_LEN` bytes with one
//! contact. Each sample links a fresh profile to the account (outside the
//! timed region), then times the transfer: the sender writes the transfer
//! file and sends the header and chunks, the relay commits each chunk,
//! the new device applies each in one transaction and acknowledges it.
//! The relay's per-connection rate limits and send budget are lifted, as
//! in the `relay` benchmark: the default limits (4 MiB/s per connection, 64
//! MiB per connection) would bound the transfer, not the devices.
//! Throughput is in bytes of message bodies.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use sotto::store::{DeliveryState, Direction, KdfParams, NewMessage, OpenOptions, Store};
use sotto::{Client, ClientEvent, ClientOptions};
use sotto_relay::{MailboxLimits, RateLimit, Server, ServerConfig, ServerHandle, SqliteStore};
use tempfile::TempDir;
use tokio::runtime::Runtime;

const MESSAGES: usize = 10_000;
const BODY_LEN: usize = 200;
const WAIT: Duration = Duration::from_secs(120);

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

fn options() -> ClientOptions {
    ClientOptions {
        store: OpenOptions::new().kdf(KdfParams::new(64, 1, 1).expect("kdf")),
        ..ClientOptions::default()
    }
}

struct Setup {
    runtime: Runtime,
    _relay: ServerHandle,
    relay: String,
    dir: TempDir,
    phone: Client,
    next: usize,
}

/// The account's phone with its history, and a contact, on a fresh relay.
fn setup() -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, relay, phone) = runtime.block_on(async {
        let store = SqliteStore::open(dir.path().join("relay.db")).expect("sqlite");
        let server = Server::bind("127.0.0.1:0", config(), Arc::new(store))
            .await
            .expect("bind")
            .spawn();
        let relay = server.local_addr().to_string();
        let phone = Client::create(dir.path().join("phone"), b"pw", options())
            .await
            .expect("phone");
        let bob = Client::create(dir.path().join("bob"), b"pw", options())
            .await
            .expect("bob");
        phone.register(&relay).await.expect("register");
        bob.register(&relay).await.expect("register");
        phone
            .add_contact("bob", &bob.address())
            .await
            .expect("contact");
        phone.disconnect().await;
        fill(
            &dir.path().join("phone").join(sotto::PROFILE_DB),
            &bob.address().to_string(),
        );
        let phone = Client::open(dir.path().join("phone"), b"pw", options())
            .await
            .expect("open");
        phone.connect(&relay).await.expect("connect");
        (server, relay, phone)
    });
    Setup {
        runtime,
        _relay: server,
        relay,
        dir,
        phone,
        next: 0,
    }
}

fn fill(path: &Path, contact: &str) {
    let mut store = Store::open(path, b"pw", &options().store).expect("store");
    let body = vec![b'h'; BODY_LEN];
    let messages: Vec<NewMessage<'_>> = (0..MESSAGES)
        .map(|i| NewMessage {
            direction: if i % 2 == 0 {
                Direction::Outgoing
            } else {
                Direction::Incoming
            },
            state: DeliveryState::Delivered,
            timestamp: 1_700_000_000_000 + i as u64,
            body: &body,
        })
        .collect();
    store.import_messages(contact, &messages).expect("import");
}

impl Setup {
    /// Links a new profile and returns it, open as the account's device and
    /// connected (not timed).
    fn link(&mut self) -> Client {
        self.next += 1;
        let path = self.dir.path().join(format!("laptop-{}", self.next));
        let (phone, relay) = (&self.phone, &self.relay);
        self.runtime.block_on(async {
            let laptop = Client::create(&path, b"pw", options())
                .await
                .expect("laptop");
            laptop.register(relay).await.expect("register");
            let code = laptop.start_linking().await.expect("code");
            let waiting = {
                let laptop = laptop.clone();
                tokio::spawn(async move { laptop.wait_for_link(WAIT).await })
            };
            phone.link_device(&code, WAIT).await.expect("link");
            waiting.await.expect("task").expect("joined");
            laptop.disconnect().await;
            drop(laptop);
            let laptop = Client::open(&path, b"pw", options()).await.expect("open");
            laptop.connect(relay).await.expect("connect");
            laptop
        })
    }

    /// Times one transfer to `laptop`, then unlinks it (not timed), so the
    /// account never reaches its device limit.
    fn transfer(&mut self, laptop: Client) -> Duration {
        self.runtime.block_on(async {
            let mut events = laptop.events();
            let start = Instant::now();
            self.phone.send_history().await.expect("send");
            tokio::time::timeout(WAIT, async {
                while let Some(event) = events.next().await {
                    if let ClientEvent::HistoryTransfer(t) = event
                        && t.complete
                    {
                        return;
                    }
                }
                panic!("events ended");
            })
            .await
            .expect("the transfer in time");
            let took = start.elapsed();
            let id = laptop.device_id();
            laptop.disconnect().await;
            self.phone.unlink_device(id).await.expect("unlink");
            took
        })
    }
}

fn bench_transfer(c: &mut Criterion) {
    let mut setup = setup();
    let mut group = c.benchmark_group("history_transfer");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.throughput(Throughput::Bytes((MESSAGES * BODY_LEN) as u64));
    group.bench_function("relay_sqlite_10k_x_200B", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let laptop = setup.link();
                total += setup.transfer(laptop);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench_transfer);
criterion_main!(benches);
