//! History archives: exporting a store's history to an encrypted archive,
//! and importing one into a new store.
//!
//! - `archive/export`: 10 000 messages of 200 bytes (one conversation)
//!   written to an archive in memory: one read snapshot, every row opened,
//!   every chunk sealed.
//! - `archive/import`: the same archive read into a new store file with
//!   `Durability::Full`: chunks opened, every row sealed again under the
//!   new store's keys, one transaction, the file synced and moved into
//!   place. The removal of the previous iteration's file is not timed.
//!
//! - `transfer/export`: the same history written as a history transfer
//!   (the archive format without the identity) into memory.
//! - `transfer/apply`: that transfer begun and applied chunk by chunk, as
//!   the frames a linked device receives, into an empty store with
//!   `Durability::Full`: one transaction and one durable commit per
//!   chunk. Making the empty store is not timed.
//! - `transfer/export_and_apply`: both, one after the other, with the
//!   cutting into frames: the whole transfer on one machine.
//!
//! Throughput counts message bodies (10 000 × 200 bytes = 2 MB). The
//! archive and both stores use light Argon2id parameters (64 KiB, t = 1):
//! with the default (64 MiB, t = 3) each export and import would add one
//! key derivation of a few hundred milliseconds, whatever the history's
//! size.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use sotto_store::{
    ArchiveKey, DeliveryState, Direction, KdfParams, NewMessage, OpenOptions, Store, TransferFrames,
};
use tempfile::TempDir;

/// Messages in the history.
const MESSAGES: usize = 10_000;
/// Bytes per message body.
const BODY_LEN: usize = 200;

fn light() -> KdfParams {
    KdfParams::new(64, 1, 1).expect("kdf params")
}

fn options() -> OpenOptions {
    OpenOptions::new().kdf(light())
}

/// A store with `MESSAGES` messages of `BODY_LEN` bytes, both directions.
fn history() -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store =
        Store::create(dir.path().join("history.db"), b"store", &options()).expect("store");
    store.add_contact("bob", "Bob", None).expect("contact");
    let bodies: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|i| {
            let mut body = format!("message {i} ").into_bytes();
            body.resize(BODY_LEN, b'a' + (i % 26) as u8);
            body
        })
        .collect();
    for (n, batch) in bodies.chunks(1000).enumerate() {
        let messages: Vec<NewMessage<'_>> = batch
            .iter()
            .enumerate()
            .map(|(i, body)| NewMessage {
                direction: if i % 2 == 0 {
                    Direction::Incoming
                } else {
                    Direction::Outgoing
                },
                state: if i % 2 == 0 {
                    DeliveryState::Read
                } else {
                    DeliveryState::Delivered
                },
                timestamp: 1_700_000_000_000 + (n * 1000 + i) as u64,
                body,
            })
            .collect();
        store.import_messages("bob", &messages).expect("history");
    }
    (dir, store)
}

fn export(store: &Store) -> Vec<u8> {
    let mut out = Vec::with_capacity(MESSAGES * (BODY_LEN + 64));
    let summary = store
        .export_archive(&mut out, b"archive", light(), |_| {})
        .expect("export");
    assert_eq!(summary.messages, MESSAGES as u64);
    out
}

fn remove_store(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(file));
    }
}

fn bench_archive(c: &mut Criterion) {
    let (dir, store) = history();
    let archive = export(&store);

    let mut group = c.benchmark_group("archive");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.throughput(Throughput::Bytes((MESSAGES * BODY_LEN) as u64));

    group.bench_function("export", |b| b.iter(|| black_box(export(&store))));

    let target = dir.path().join("restored.db");
    group.bench_function("import", |b| {
        b.iter_custom(|iters| {
            let mut measured = Duration::ZERO;
            for _ in 0..iters {
                remove_store(&target);
                let start = Instant::now();
                let restored = Store::import_archive(
                    &target,
                    &mut &archive[..],
                    b"archive",
                    b"restored",
                    &options(),
                    |_| {},
                )
                .expect("import");
                measured += start.elapsed();
                drop(black_box(restored));
            }
            measured
        })
    });
    group.finish();
}

fn transfer_key() -> ArchiveKey {
    ArchiveKey::from_bytes(&[7; 32])
}

fn export_transfer(store: &Store) -> Vec<u8> {
    let mut out = Vec::with_capacity(MESSAGES * (BODY_LEN + 64));
    let summary = store
        .export_history_transfer(&mut out, &transfer_key(), |_| {})
        .expect("export");
    assert_eq!(summary.messages, MESSAGES as u64);
    out
}

/// The header and the chunk frames of a written transfer.
fn frames(transfer: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut reader = TransferFrames::new(transfer).expect("frames");
    let header = reader.header().to_vec();
    let chunks = reader.by_ref().map(|f| f.expect("frame").1).collect();
    (header, chunks)
}

/// Begins and applies a whole transfer.
fn apply(store: &mut Store, header: &[u8], chunks: &[Vec<u8>]) {
    store
        .begin_history_transfer(header, &transfer_key())
        .expect("begin");
    let mut complete = false;
    for (i, chunk) in chunks.iter().enumerate() {
        complete = store
            .apply_history_chunk(i as u64, chunk)
            .expect("apply")
            .complete;
    }
    assert!(complete);
}

/// An empty store at `path` (the previous one removed).
fn receiver(path: &Path) -> Store {
    remove_store(path);
    Store::create(path, b"receiver", &options()).expect("receiver")
}

fn bench_transfer(c: &mut Criterion) {
    let (dir, store) = history();
    let transfer = export_transfer(&store);
    let (header, chunks) = frames(&transfer);

    let mut group = c.benchmark_group("transfer");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.throughput(Throughput::Bytes((MESSAGES * BODY_LEN) as u64));

    group.bench_function("export", |b| b.iter(|| black_box(export_transfer(&store))));

    let target = dir.path().join("receiver.db");
    group.bench_function("apply", |b| {
        b.iter_custom(|iters| {
            let mut measured = Duration::ZERO;
            for _ in 0..iters {
                let mut phone = receiver(&target);
                let start = Instant::now();
                apply(&mut phone, &header, &chunks);
                measured += start.elapsed();
                drop(black_box(phone));
            }
            measured
        })
    });
    group.bench_function("export_and_apply", |b| {
        b.iter_custom(|iters| {
            let mut measured = Duration::ZERO;
            for _ in 0..iters {
                let mut phone = receiver(&target);
                let start = Instant::now();
                let transfer = export_transfer(&store);
                let (header, chunks) = frames(&transfer);
                apply(&mut phone, &header, &chunks);
                measured += start.elapsed();
                drop(black_box(phone));
            }
            measured
        })
    });
    group.finish();
}

criterion_group!(benches, bench_archive, bench_transfer);
criterion_main!(benches);
