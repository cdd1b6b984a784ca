//! The on-device store: the receive path and history paging.
//!
//! - `store_receive`: Bob's store takes Alice's ciphertexts, each one
//!   decrypted, stored in history and deduplicated, with `Durability::Full`
//!   (every commit on stable storage before it returns): one transaction per
//!   message (`receive`) and one per batch of 100 or 1000 (`receive_batch`);
//!   `receive_normal` is `receive` with `Durability::Normal` (no fsync per
//!   commit), and `send` is Alice's send (encrypt, history, outbox; one
//!   `Normal` transaction).
//!   Every iteration receives ciphertexts Alice has just encrypted (a
//!   replayed envelope would be a cheap duplicate, not a receive); Alice's
//!   sends happen outside the timed region.
//! - `store_history`: a 50-message page, newest first, from a conversation of
//!   10 000 messages: the newest page and one from the middle.
//!
//! Both stores use light Argon2id parameters: the key derivation runs only
//! when a store is created, never in a measured path.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use sotto_store::{
    DeliveryState, Direction, Durability, Envelope, KdfParams, NewMessage, OpenOptions,
    OutboxEntry, Received, Store,
};
use tempfile::TempDir;

/// A short text message: it pads to 256 bytes, the common case.
const BODY: [u8; 100] = [b'x'; 100];

/// The batch sizes of `receive_batch`.
const BATCHES: [usize; 2] = [100, 1000];

/// Messages in the conversation that history pages are read from.
const HISTORY_LEN: u64 = 10_000;

/// Messages per page.
const PAGE: usize = 50;

fn options(durability: Durability) -> OpenOptions {
    OpenOptions::new()
        .kdf(KdfParams::new(64, 1, 1).expect("kdf params"))
        .durability(durability)
}

/// Alice and Bob with an established session (one message each way, so
/// Alice sends plain Messages from now on), each with a store of their own.
struct Conversation {
    alice: Store,
    bob: Store,
    now: u64,
    _dir: TempDir,
}

impl Conversation {
    fn new() -> Self {
        Self::with_durability(Durability::Full)
    }

    /// Bob's store with `durability` (Alice's is always `Normal`).
    fn with_durability(durability: Durability) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // Bob is measured: every commit durable. Alice only produces
        // ciphertexts outside the timed region, so her commits need not wait
        // for the disk.
        let mut alice = Store::create(
            dir.path().join("alice.db"),
            b"alice",
            &options(Durability::Normal),
        )
        .expect("alice store");
        let mut bob = Store::create(dir.path().join("bob.db"), b"bob", &options(durability))
            .expect("bob store");

        let published = bob
            .fresh_one_time_prekeys(1, 1_700_000_000_000)
            .expect("prekeys");
        let bundle = bob.prekey_bundle(Some(published[0].0)).expect("bundle");
        alice.add_contact("bob", "Bob", None).expect("contact");
        alice.start_session("bob", &bundle).expect("session");

        let mut conversation = Self {
            alice,
            bob,
            now: 1_700_000_000_000,
            _dir: dir,
        };
        let first = conversation.send(1);
        assert_eq!(conversation.receive_batch(&first), 1);
        let reply = conversation.bob.send("alice", b"hi", 0).expect("reply");
        let envelope = Envelope {
            id: reply.id,
            sender: "bob",
            device: sotto_store::PeerDevice::CONTACT_PRIMARY,
            ciphertext: &reply.ciphertext,
            sent_at: 0,
            received_at: 0,
        };
        let received = conversation
            .alice
            .receive(&envelope)
            .expect("alice receives");
        assert!(matches!(received, Received::Stored(_)));
        conversation
    }

    /// `n` fresh ciphertexts from Alice to Bob.
    fn send(&mut self, n: u64) -> Vec<OutboxEntry> {
        (0..n)
            .map(|_| {
                self.now += 1;
                self.alice.send("bob", &BODY, self.now).expect("send")
            })
            .collect()
    }

    fn envelopes(entries: &[OutboxEntry]) -> Vec<Envelope<'_>> {
        entries
            .iter()
            .map(|entry| Envelope {
                id: entry.id,
                sender: "alice",
                device: sotto_store::PeerDevice::CONTACT_PRIMARY,
                ciphertext: &entry.ciphertext,
                sent_at: 0,
                received_at: 1_700_000_000_000,
            })
            .collect()
    }

    /// Receives `entries` in one transaction; returns how many were stored.
    fn receive_batch(&mut self, entries: &[OutboxEntry]) -> usize {
        self.bob
            .receive_batch(&Self::envelopes(entries))
            .expect("receive_batch")
            .into_iter()
            .filter(|r| matches!(r, Ok(Received::Stored(_))))
            .count()
    }
}

fn bench_receive(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_receive");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);

    // One transaction per message: with `Durability::Full` (one fsync
    // each), and with `Normal` (no fsync per commit, so what is left is
    // the store's own work).
    group.throughput(Throughput::Elements(1));
    for (name, durability) in [
        ("receive", Durability::Full),
        ("receive_normal", Durability::Normal),
    ] {
        let mut fixture: Option<Conversation> = None;
        group.bench_function(name, |b| {
            let conversation =
                fixture.get_or_insert_with(|| Conversation::with_durability(durability));
            b.iter_custom(|iters| {
                let entries = conversation.send(iters);
                let envelopes = Conversation::envelopes(&entries);
                let start = Instant::now();
                for envelope in &envelopes {
                    let received = conversation.bob.receive(envelope).expect("receive");
                    assert!(matches!(received, Received::Stored(_)));
                }
                start.elapsed()
            })
        });
        drop(fixture.take());
    }

    // Alice's send (`Durability::Normal`): encrypt, store in history and
    // the outbox, one transaction.
    let mut fixture: Option<Conversation> = None;
    group.bench_function("send", |b| {
        let conversation = fixture.get_or_insert_with(Conversation::new);
        b.iter_custom(|iters| {
            let start = Instant::now();
            let entries = conversation.send(iters);
            let elapsed = start.elapsed();
            black_box(entries);
            elapsed
        })
    });
    drop(fixture.take());

    // One transaction per batch.
    for batch in BATCHES {
        group.throughput(Throughput::Elements(batch as u64));
        let mut fixture: Option<Conversation> = None;
        group.bench_function(BenchmarkId::new("receive_batch", batch), |b| {
            let conversation = fixture.get_or_insert_with(Conversation::new);
            b.iter_custom(|iters| {
                let mut measured = Duration::ZERO;
                for _ in 0..iters {
                    let entries = conversation.send(batch as u64);
                    let envelopes = Conversation::envelopes(&entries);
                    let start = Instant::now();
                    let results = conversation
                        .bob
                        .receive_batch(&envelopes)
                        .expect("receive_batch");
                    measured += start.elapsed();
                    let stored = results
                        .iter()
                        .filter(|r| matches!(r, Ok(Received::Stored(_))))
                        .count();
                    assert_eq!(stored, batch);
                }
                measured
            })
        });
        drop(fixture.take());
    }
    group.finish();
}

/// A store holding a conversation of `HISTORY_LEN` messages with "alice".
fn history_store() -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::create(
        dir.path().join("history.db"),
        b"bob",
        &options(Durability::Full),
    )
    .expect("store");
    let body: Vec<u8> = (0..200u8).collect();
    let messages: Vec<NewMessage<'_>> = (0..1000u64)
        .map(|i| NewMessage {
            direction: if i % 2 == 0 {
                Direction::Incoming
            } else {
                Direction::Outgoing
            },
            state: DeliveryState::Read,
            timestamp: 1_700_000_000_000 + i,
            body: &body[..50 + (i % 150) as usize],
        })
        .collect();
    for _ in 0..HISTORY_LEN / 1000 {
        store.import_messages("alice", &messages).expect("import");
    }
    assert_eq!(store.message_count("alice").expect("count"), HISTORY_LEN);
    (dir, store)
}

fn bench_history(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_history");
    group.throughput(Throughput::Elements(PAGE as u64));
    let mut fixture: Option<(TempDir, Store)> = None;
    // Seqs run from 1 to HISTORY_LEN: the newest page, and the page just
    // below the middle of the conversation.
    for (name, before) in [("newest", None), ("middle", Some(HISTORY_LEN / 2 + 1))] {
        group.bench_function(BenchmarkId::new("page50", name), |b| {
            let (_, store) = fixture.get_or_insert_with(history_store);
            b.iter(|| {
                let page = store.history("alice", before, PAGE).expect("history");
                assert_eq!(page.entries.len(), PAGE);
                black_box(page)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_receive, bench_history);
criterion_main!(benches);
