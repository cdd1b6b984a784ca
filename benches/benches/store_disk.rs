//! Bytes on disk per stored message, by body size: `store_disk`.
//!
//! Not a timing: for each body size, a fresh store takes `n` messages
//! through the public `Store` API, is checkpointed (the write-ahead log
//! emptied into the file), and the pages it uses (the file's pages less
//! its free list, read with a second, read-only connection) are divided
//! among the messages after subtracting what the store used before them.
//! The result is compared with the message's padded sealed size: what one
//! message row must hold at least (docs/storage.md, section 4):
//!
//! ```text
//! sealed = 41 (format, nonce, tag) + record header + pad(body)
//! record header = 27 bytes (incoming or imported), 59 (sent: + digest)
//! ```
//!
//! Three ways of filling the store, one column pair each:
//!
//! - `1 conv`: `import_messages` into one conversation (records as a
//!   received message's);
//! - `8 conv`: the same, round-robin over 8 conversations, 8 messages to
//!   each in turn, so every conversation grows in the middle of the table,
//!   as a store that receives from several contacts does;
//! - `sent`: `send` to one contact over a real session, each message then
//!   confirmed delivered (its outbox entry removed), as a sender's store
//!   holds them.
//!
//! `cargo bench -p sotto-benches --bench store_disk` prints the table;
//! with `-- --test` (CI's smoke run) fewer messages and sizes, in seconds.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};

use sotto_store::sotto_core::pad::padded_len_for_plaintext;
use sotto_store::{
    DeliveryState, Direction, Durability, Envelope, KdfParams, NewMessage, OpenOptions, PeerDevice,
    Received, Store,
};
use tempfile::TempDir;

/// Body sizes measured: the issue's list, both sides of the 256-byte
/// padding floor and of Padmé steps, and sizes around the old overflow
/// cliff and the detached-body threshold.
const SIZES: &[usize] = &[
    0, 100, 255, 256, 300, 500, 700, 800, 900, 1000, 1023, 1024, 1100, 1500, 2000, 2048, 2500,
    3000, 3500, 4095, 4096, 5000, 6000, 8191, 8192, 12_000, 16_383, 16_384, 24_000, 32_768, 49_152,
    65_535, 65_536,
];

/// The sizes of the quick (`--test`) run.
const QUICK_SIZES: &[usize] = &[0, 100, 900, 2048, 65_536];

/// Sealed value overhead: format byte, 24-byte nonce, 16-byte tag.
const SEAL_OVERHEAD: usize = 1 + 24 + 16;
/// A received (or imported) message's record header.
const RECORD_HEADER: usize = 27;
/// A sent message's record header (with the ciphertext's digest).
const SENT_RECORD_HEADER: usize = RECORD_HEADER + 32;

fn options() -> OpenOptions {
    OpenOptions::new()
        .kdf(KdfParams::new(64, 1, 1).expect("kdf params"))
        .durability(Durability::Normal)
}

fn padded(body: usize) -> usize {
    padded_len_for_plaintext(body).expect("body within the protocol's limit")
}

/// Pages in use in the checkpointed file at `path`, in bytes.
fn used_bytes(store: &Store, path: &Path) -> u64 {
    assert!(
        store.checkpoint().expect("checkpoint"),
        "checkpoint blocked"
    );
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("read-only connection");
    let pragma = |name: &str| -> u64 {
        conn.pragma_query_value(None, name, |row| row.get::<_, i64>(0))
            .expect(name)
            .try_into()
            .expect("non-negative")
    };
    (pragma("page_count") - pragma("freelist_count")) * pragma("page_size")
}

/// `n` messages of `body` bytes imported into `conversations`
/// conversations, 8 at a time to each in turn; bytes per message.
fn imported(body: usize, n: usize, conversations: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("disk.db");
    let mut store = Store::create(&path, b"pw", &options()).expect("store");
    let contacts: Vec<String> = (0..conversations).map(|i| format!("contact-{i}")).collect();
    // Each conversation exists (one message) before the baseline.
    let text = vec![b'x'; body];
    let message = |i: usize| NewMessage {
        direction: Direction::Incoming,
        state: DeliveryState::Read,
        timestamp: 1_700_000_000_000 + i as u64,
        body: &text,
    };
    for contact in &contacts {
        store
            .import_messages(contact, &[message(0)])
            .expect("import");
    }
    let before = used_bytes(&store, &path);
    let batch: Vec<NewMessage<'_>> = (0..8).map(message).collect();
    let mut stored = 0;
    'fill: loop {
        for contact in &contacts {
            let take = (n - stored).min(batch.len());
            store
                .import_messages(contact, &batch[..take])
                .expect("import");
            stored += take;
            if stored == n {
                break 'fill;
            }
        }
    }
    let after = used_bytes(&store, &path);
    (after - before) as f64 / n as f64
}

/// Alice and Bob with a session; Alice's store and its path.
struct Sender {
    alice: Store,
    path: PathBuf,
    bob_key: sotto_store::sotto_core::IdentityKey,
    _dir: TempDir,
}

impl Sender {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alice.db");
        let mut alice = Store::create(&path, b"alice", &options()).expect("alice");
        let mut bob = Store::create(dir.path().join("bob.db"), b"bob", &options()).expect("bob");
        let published = bob.fresh_one_time_prekeys(1, 0).expect("prekeys");
        let bundle = bob.prekey_bundle(Some(published[0].0)).expect("bundle");
        alice.add_contact("bob", "Bob", None).expect("contact");
        alice.start_session("bob", &bundle).expect("session");
        // One message each way: Alice's later messages are plain Messages.
        let first = alice.send("bob", b"hello", 0).expect("send");
        let envelope = Envelope {
            id: first.id,
            sender: "alice",
            device: PeerDevice::CONTACT_PRIMARY,
            ciphertext: &first.ciphertext,
            sent_at: 0,
            received_at: 0,
        };
        assert!(matches!(
            bob.receive(&envelope).expect("receive"),
            Received::Stored(_)
        ));
        let reply = bob.send("alice", b"hi", 0).expect("reply");
        let envelope = Envelope {
            id: reply.id,
            sender: "bob",
            device: PeerDevice::CONTACT_PRIMARY,
            ciphertext: &reply.ciphertext,
            sent_at: 0,
            received_at: 0,
        };
        assert!(matches!(
            alice.receive(&envelope).expect("receive"),
            Received::Stored(_)
        ));
        let bob_key = bob.identity_key().expect("bob's key");
        alice
            .confirm_delivery(&bob_key, &[first.id])
            .expect("receipt");
        Self {
            alice,
            path,
            bob_key,
            _dir: dir,
        }
    }
}

/// `n` messages of `body` bytes sent and confirmed delivered; bytes per
/// message.
fn sent(body: usize, n: usize) -> f64 {
    let mut s = Sender::new();
    let before = used_bytes(&s.alice, &s.path);
    let text = vec![b'x'; body];
    for chunk in 0..n.div_ceil(32) {
        let ids: Vec<_> = (0..32.min(n - chunk * 32))
            .map(|i| {
                s.alice
                    .send("bob", &text, (chunk * 32 + i) as u64)
                    .expect("send")
                    .id
            })
            .collect();
        s.alice.confirm_delivery(&s.bob_key, &ids).expect("receipt");
    }
    let after = used_bytes(&s.alice, &s.path);
    (after - before) as f64 / n as f64
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let sizes = if quick { QUICK_SIZES } else { SIZES };
    // Enough messages that a few pages more or less do not move the
    // result: at least 4 MB of sealed values, at least 256 messages.
    let count = |sealed: usize| {
        if quick {
            48
        } else {
            (4_000_000 / sealed).clamp(256, 4096)
        }
    };
    println!("store_disk: bytes per message on disk (pages in use after a checkpoint)");
    println!(
        "{:>6} | {:>6} | {:>14} | {:>14} | {:>6} | {:>14}",
        "body", "sealed", "1 conv", "8 conv", "sent", "sent"
    );
    let mut worst: f64 = 0.0;
    for &body in sizes {
        let sealed = SEAL_OVERHEAD + RECORD_HEADER + padded(body);
        let sealed_sent = SEAL_OVERHEAD + SENT_RECORD_HEADER + padded(body);
        let one = imported(body, count(sealed), 1);
        let eight = imported(body, count(sealed), 8);
        let out = sent(body, if quick { 16 } else { count(sealed) / 4 });
        let ratios = [
            one / sealed as f64,
            eight / sealed as f64,
            out / sealed_sent as f64,
        ];
        worst = ratios.iter().copied().fold(worst, f64::max);
        println!(
            "{body:>6} | {sealed:>6} | {one:>7.0} {:>5.2}x | {eight:>7.0} {:>5.2}x | {sealed_sent:>6} | {out:>7.0} {:>5.2}x",
            ratios[0], ratios[1], ratios[2]
        );
    }
    if quick {
        // 48 messages are a few pages: whole pages swamp the ratios.
        println!("worst ratio: {worst:.2}x (quick run: too few messages to compare)");
    } else {
        println!("worst ratio: {worst:.2}x (target: <= 1.30x)");
    }
}
