//! Files end to end: `Client::send_file` on one client until the other
//! has fetched and checked the whole file, through a relay on loopback
//! (127.0.0.1; SQLite mailboxes, blobs in a directory, both synced before
//! the relay answers), against, in the same run, the raw AEAD over the
//! same bytes in 64 KiB chunks (ChaCha20-Poly1305, what the file's
//! encryption costs at the least) and copying the file (`std::fs::copy`,
//! what moving its bytes on this disk costs at the least).
//!
//! Throughput is in bytes of the file (MB/s = 10^6 bytes/s). The relay's
//! per-connection rate limits are lifted, as in the `relay` benchmark.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use sotto::store::{KdfParams, OpenOptions};
use sotto::{Client, ClientEvent, ClientOptions};
use sotto_relay::{BlobStorage, RateLimit, Server, ServerConfig, ServerHandle, SqliteStore};
use tempfile::TempDir;
use tokio::runtime::Runtime;

/// The file: 64 MiB (`--test` runs 1 MiB).
fn file_len() -> usize {
    if std::env::args().any(|a| a == "--test") {
        1 << 20
    } else {
        64 << 20
    }
}

const WAIT: Duration = Duration::from_secs(300);

fn options() -> ClientOptions {
    ClientOptions {
        store: OpenOptions::new().kdf(KdfParams::new(64, 1, 1).expect("kdf")),
        ..ClientOptions::default()
    }
}

struct Setup {
    runtime: Runtime,
    _relay: ServerHandle,
    _dir: TempDir,
    alice: Client,
    bob: Client,
    file: PathBuf,
}

fn setup(len: usize) -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file.bin");
    let mut bytes = vec![0u8; len];
    rand::rand_core::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
    std::fs::write(&file, &bytes).expect("file");
    let (relay, alice, bob) = runtime.block_on(async {
        let config = ServerConfig {
            rate_limit: RateLimit {
                requests_per_second: 1e9,
                request_burst: 1e9,
                bytes_per_second: 1e12,
                byte_burst: 1e12,
            },
            blobs: BlobStorage::dir(dir.path().join("blobs")).expect("blobs"),
            ..ServerConfig::default()
        };
        let store = SqliteStore::open(dir.path().join("relay.db")).expect("sqlite");
        let relay = Server::bind("127.0.0.1:0", config, Arc::new(store))
            .await
            .expect("bind")
            .spawn();
        let addr = relay.local_addr().to_string();
        let alice = Client::create(dir.path().join("alice"), b"pw", options())
            .await
            .expect("alice");
        let bob = Client::create(dir.path().join("bob"), b"pw", options())
            .await
            .expect("bob");
        alice.register(&addr).await.expect("register");
        bob.register(&addr).await.expect("register");
        alice.add_contact("bob", &bob.address()).await.expect("add");
        bob.add_contact("alice", &alice.address())
            .await
            .expect("add");
        alice.connect(&addr).await.expect("connect");
        bob.connect(&addr).await.expect("connect");
        let mut incoming = bob.incoming();
        alice.send("bob", b"hello").await.expect("send");
        tokio_stream::StreamExt::next(&mut incoming)
            .await
            .expect("hello");
        (relay, alice, bob)
    });
    Setup {
        runtime,
        _relay: relay,
        _dir: dir,
        alice,
        bob,
        file,
    }
}

impl Setup {
    /// One file from Alice to Bob, until Bob has it; then deletes it on
    /// both sides (not timed).
    fn send_one(&self) -> Duration {
        self.runtime.block_on(async {
            let mut events = self.bob.events();
            let start = Instant::now();
            self.alice.send_file("bob", &self.file).await.expect("send");
            let seq = tokio::time::timeout(WAIT, async {
                loop {
                    match events.next().await {
                        Some(ClientEvent::FileReceived { seq, .. }) => return seq,
                        Some(ClientEvent::FileFailed { reason, .. }) => panic!("{reason}"),
                        Some(_) => {}
                        None => panic!("events ended"),
                    }
                }
            })
            .await
            .expect("the file in time");
            let took = start.elapsed();
            self.bob.delete_message("alice", seq).await.expect("delete");
            for item in self.alice.history("bob", None, 10).await.expect("history") {
                if item.attachment.is_some() {
                    self.alice
                        .delete_message("bob", item.seq)
                        .await
                        .expect("delete");
                }
            }
            took
        })
    }
}

fn aead_chunks(key: &ChaCha20Poly1305, data: &mut [u8]) {
    for (i, chunk) in data.chunks_mut(64 * 1024).enumerate() {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let tag = key
            .encrypt_inout_detached(&nonce.into(), &[0u8; 64], chunk.into())
            .expect("encrypt");
        std::hint::black_box(tag);
    }
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).expect("copy");
    std::fs::File::open(to)
        .expect("open")
        .sync_all()
        .expect("sync");
    std::fs::remove_file(to).expect("remove");
}

fn bench_files(c: &mut Criterion) {
    let len = file_len();
    let setup = setup(len);
    let mut group = c.benchmark_group("files");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.throughput(Throughput::Bytes(len as u64));
    group.bench_function("end_to_end", |b| {
        b.iter_custom(|iterations| (0..iterations).map(|_| setup.send_one()).sum())
    });
    let key = ChaCha20Poly1305::new(&[7u8; 32].into());
    let mut data = vec![1u8; len];
    group.bench_function("aead_raw", |b| b.iter(|| aead_chunks(&key, &mut data)));
    let copy_to = setup.file.with_extension("copy");
    group.bench_function("copy", |b| b.iter(|| copy(&setup.file, &copy_to)));
    group.finish();
}

criterion_group!(benches, bench_files);
criterion_main!(benches);
