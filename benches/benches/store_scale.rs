//! The store at scale: batched receive and the newest history page on top
//! of histories of 1 000 to 1 000 000 received messages, reported as
//! ratios against the same run's in-memory protocol cost and X25519 DH, so
//! that results carry over between noisy machines.
//!
//! Each history is built once (Alice sends, Bob receives in batches of
//! 1 000, every message through the protocol, so the store holds what a
//! real one does: messages, seen envelope ids, sessions) and kept in
//! `CARGO_TARGET_TMPDIR/store-scale-v{FORMAT}-s{SCHEMA_VERSION}/`; a schema
//! change or a change of `FORMAT` builds it again. A measurement copies
//! the two store files and works on the copies, so the cached history
//! stays as built.
//!
//! `cargo bench -p sotto-benches --bench store_scale` measures 1k, 10k,
//! 100k and 1M (building the 1M history takes a few minutes the first
//! time); `SOTTO_SCALE_MAX=100000` stops earlier. With `-- --test` (CI)
//! only the 1k history is built and measured once, not a measurement.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sotto_store::{
    Durability, Envelope, KdfParams, OpenOptions, OutboxEntry, PeerDevice, Received, Store,
};

/// Bump when the way a history is built changes.
const FORMAT: u32 = 1;

/// A short text message: it pads to 256 bytes, the common case.
const BODY: [u8; 100] = [b'x'; 100];

const BATCH: usize = 1000;

/// Batches received and timed per history size (after one untimed).
const BATCHES: usize = 20;

const T0: u64 = 1_700_000_000_000;

fn options(durability: Durability) -> OpenOptions {
    OpenOptions::new()
        .kdf(KdfParams::new(64, 1, 1).expect("kdf params"))
        .durability(durability)
}

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "store-scale-v{FORMAT}-s{}",
        sotto_store::SCHEMA_VERSION
    ))
}

fn envelopes(entries: &[OutboxEntry], received_at: u64) -> Vec<Envelope<'_>> {
    entries
        .iter()
        .map(|entry| Envelope {
            id: entry.id,
            sender: "alice",
            device: PeerDevice::CONTACT_PRIMARY,
            ciphertext: &entry.ciphertext,
            sent_at: 0,
            received_at,
        })
        .collect()
}

/// Alice sends `n` messages, Bob receives them; returns the time Bob spent.
fn exchange(alice: &mut Store, bob: &mut Store, n: usize, now: &mut u64) -> Duration {
    let entries: Vec<OutboxEntry> = (0..n)
        .map(|_| {
            *now += 1;
            alice.send("bob", &BODY, *now).expect("send")
        })
        .collect();
    let envelopes = envelopes(&entries, *now);
    let start = Instant::now();
    let results = bob.receive_batch(&envelopes).expect("receive_batch");
    let spent = start.elapsed();
    assert!(results.iter().all(|r| matches!(r, Ok(Received::Stored(_)))));
    // The delivery receipts: Alice's outbox does not grow with the history.
    let ids: Vec<_> = entries.iter().map(|e| e.id).collect();
    alice.mark_delivered("bob", &ids).expect("receipts");
    spent
}

/// The cached history of `n` messages: (Alice's file, Bob's file).
fn history(n: usize) -> (PathBuf, PathBuf) {
    let dir = cache_dir().join(n.to_string());
    let (alice_path, bob_path) = (dir.join("alice.db"), dir.join("bob.db"));
    if dir.join("complete").exists() {
        return (alice_path, bob_path);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("cache dir");
    let started = Instant::now();
    {
        let mut alice =
            Store::create(&alice_path, b"alice", &options(Durability::Normal)).expect("alice");
        let mut bob = Store::create(&bob_path, b"bob", &options(Durability::Normal)).expect("bob");
        let published = bob.fresh_one_time_prekeys(1, T0).expect("prekeys");
        let bundle = bob.prekey_bundle(Some(published[0].0)).expect("bundle");
        alice.add_contact("bob", "Bob", None).expect("contact");
        alice.start_session("bob", &bundle).expect("session");
        let mut now = T0;
        exchange(&mut alice, &mut bob, 1, &mut now);
        let reply = bob.send("alice", b"hi", now).expect("reply");
        let reply = envelopes(std::slice::from_ref(&reply), now);
        let reply = Envelope {
            sender: "bob",
            ..reply[0]
        };
        assert!(matches!(
            alice.receive(&reply).expect("alice receives"),
            Received::Stored(_)
        ));
        let mut left = n - 1;
        while left > 0 {
            let step = left.min(BATCH);
            exchange(&mut alice, &mut bob, step, &mut now);
            left -= step;
        }
        // n received, and the reply.
        assert_eq!(bob.message_count("alice").expect("count"), n as u64 + 1);
        bob.checkpoint().expect("checkpoint");
        alice.checkpoint().expect("checkpoint");
    }
    std::fs::write(dir.join("complete"), b"").expect("marker");
    eprintln!(
        "built the {n}-message history in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    (alice_path, bob_path)
}

struct Row {
    n: usize,
    per_message: Duration,
    newest_page: Duration,
}

/// Batched receive and the newest page on a copy of the `n` history.
fn measure(n: usize, batches: usize) -> Row {
    let (alice_src, bob_src) = history(n);
    let work = tempfile::tempdir().expect("tempdir");
    let (alice_path, bob_path) = (work.path().join("alice.db"), work.path().join("bob.db"));
    std::fs::copy(&alice_src, &alice_path).expect("copy");
    std::fs::copy(&bob_src, &bob_path).expect("copy");
    let mut alice = Store::open(&alice_path, b"alice", &options(Durability::Normal)).expect("a");
    // Bob as the benchmarks of store.rs measure him: every commit durable.
    let mut bob = Store::open(&bob_path, b"bob", &options(Durability::Full)).expect("b");
    let mut now = T0 + 10 * n as u64;
    exchange(&mut alice, &mut bob, BATCH, &mut now);
    let mut spent = Duration::ZERO;
    for _ in 0..batches {
        spent += exchange(&mut alice, &mut bob, BATCH, &mut now);
    }
    let per_message = spent / (batches * BATCH) as u32;

    let mut pages = Vec::new();
    for _ in 0..200.min(batches * 10) {
        let start = Instant::now();
        let page = bob.history("alice", None, 50).expect("history");
        pages.push(start.elapsed());
        assert_eq!(page.entries.len(), 50);
        black_box(page);
    }
    pages.sort();
    Row {
        n,
        per_message,
        newest_page: pages[pages.len() / 2],
    }
}

/// X25519 DH, median of 2 000.
fn dh() -> Duration {
    use x25519_dalek::{PublicKey, StaticSecret};
    let ours = StaticSecret::from([7u8; 32]);
    let theirs = PublicKey::from(&StaticSecret::from([9u8; 32]));
    median(2000, || {
        black_box(ours.diffie_hellman(black_box(&theirs)));
    })
}

/// One 100-byte message encrypted and decrypted by two in-memory sessions.
fn protocol() -> Duration {
    let mut rng = sotto_benches::rng(3);
    let (mut alice, mut bob) = sotto_benches::established_pair(&mut rng).expect("pair");
    median(2000, || {
        let c = alice.encrypt(&BODY).expect("encrypt");
        black_box(bob.decrypt(&c, &mut rng).expect("decrypt"));
    })
}

fn median(n: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

fn main() {
    let test = std::env::args().any(|a| a == "--test");
    let max: usize = std::env::var("SOTTO_SCALE_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let sizes: Vec<usize> = if test {
        vec![1_000]
    } else {
        [1_000, 10_000, 100_000, 1_000_000]
            .into_iter()
            .filter(|&n| n <= max)
            .collect()
    };
    let batches = if test { 1 } else { BATCHES };
    let dh = dh();
    let protocol = protocol();
    let rows: Vec<Row> = sizes.iter().map(|&n| measure(n, batches)).collect();
    let dh_after = self::dh();
    let protocol_after = self::protocol();
    if test {
        println!("store_scale --test: the 1k history once, not a measurement");
    }
    println!(
        "X25519 DH {:.1} µs, then {:.1} µs; protocol round trip (100 B, in memory) {:.1} µs, then {:.1} µs",
        micros(dh),
        micros(dh_after),
        micros(protocol),
        micros(protocol_after)
    );
    let dh = (dh + dh_after) / 2;
    let protocol = (protocol + protocol_after) / 2;
    println!(
        "{:>9} | {:>12} | {:>8} | {:>9} | {:>10} | {:>9} | {:>11}",
        "history", "receive/s", "µs/msg", "vs 1k", "DH units", "protocol", "newest page"
    );
    let base = rows.first().map(|r| r.per_message);
    for row in &rows {
        let per = row.per_message.as_secs_f64();
        println!(
            "{:>9} | {:>12.0} | {:>8.2} | {:>8.2}x | {:>10.3} | {:>8.2}x | {:>8.3} ms",
            row.n,
            1.0 / per,
            per * 1e6,
            base.map_or(1.0, |b| b.as_secs_f64() / per),
            per / dh.as_secs_f64(),
            per / protocol.as_secs_f64(),
            row.newest_page.as_secs_f64() * 1e3,
        );
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
