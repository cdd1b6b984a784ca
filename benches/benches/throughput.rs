//! Encryption throughput: Sotto, vodozemac (Olm) and raw ChaCha20-Poly1305,
//! interleaved in one run at 64 B, 1 KiB, 16 KiB and 1 MiB.
//!
//! - `one_way`: the sender encrypts, the receiver decrypts; symmetric chain
//!   steps only.
//! - `ping_pong`: senders alternate, so every message costs a DH ratchet step.
//! - `raw_aead`: ChaCha20-Poly1305 encrypt + decrypt in place of the same
//!   plaintext, the floor for large messages.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::hint::black_box;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sotto_benches::{SIZES, established_pair, rng};

mod common;
use common::{olm_pair, plaintext};

fn bench_one_way(c: &mut Criterion) {
    for size in SIZES {
        let data = plaintext(size);
        let mut group = c.benchmark_group("one_way");
        group.throughput(Throughput::Bytes(size as u64));
        if size >= 1024 * 1024 {
            group.sample_size(20);
        }

        let mut r = rng(1);
        let (mut alice, mut bob) = established_pair(&mut r).expect("pair");
        let mut wire = Vec::new();
        let mut out = Vec::new();
        group.bench_with_input(BenchmarkId::new("sotto", size), &data, |b, data| {
            b.iter(|| {
                alice.encrypt_into(data, &mut wire).expect("encrypt");
                bob.decrypt_into(&wire, &mut out, &mut r).expect("decrypt");
                black_box(out.len())
            })
        });

        let (mut oa, mut ob) = olm_pair();
        group.bench_with_input(BenchmarkId::new("vodozemac", size), &data, |b, data| {
            b.iter(|| {
                let m = oa.encrypt(data).expect("encrypt");
                black_box(ob.decrypt(&m).expect("decrypt").len())
            })
        });

        let cipher = ChaCha20Poly1305::new(&[7u8; 32].into());
        let nonce = Nonce::from([9u8; 12]);
        let mut buf = data.clone();
        group.bench_with_input(BenchmarkId::new("raw_aead", size), &data, |b, _| {
            b.iter(|| {
                let tag = cipher
                    .encrypt_inout_detached(&nonce, b"", buf.as_mut_slice().into())
                    .expect("encrypt");
                cipher
                    .decrypt_inout_detached(&nonce, b"", buf.as_mut_slice().into(), &tag)
                    .expect("decrypt");
                black_box(buf.len())
            })
        });
        group.finish();
    }
}

fn bench_ping_pong(c: &mut Criterion) {
    for size in SIZES {
        let data = plaintext(size);
        let mut group = c.benchmark_group("ping_pong");
        // One iteration = two messages, one each way.
        group.throughput(Throughput::Bytes(2 * size as u64));
        if size >= 1024 * 1024 {
            group.sample_size(20);
        }

        let mut r = rng(2);
        let (mut alice, mut bob) = established_pair(&mut r).expect("pair");
        let mut wire = Vec::new();
        let mut out = Vec::new();
        group.bench_with_input(BenchmarkId::new("sotto", size), &data, |b, data| {
            b.iter(|| {
                alice.encrypt_into(data, &mut wire).expect("encrypt");
                bob.decrypt_into(&wire, &mut out, &mut r).expect("decrypt");
                bob.encrypt_into(data, &mut wire).expect("encrypt");
                alice
                    .decrypt_into(&wire, &mut out, &mut r)
                    .expect("decrypt");
                black_box(out.len())
            })
        });

        let (mut oa, mut ob) = olm_pair();
        group.bench_with_input(BenchmarkId::new("vodozemac", size), &data, |b, data| {
            b.iter(|| {
                let m = oa.encrypt(data).expect("encrypt");
                black_box(ob.decrypt(&m).expect("decrypt").len());
                let m = ob.encrypt(data).expect("encrypt");
                black_box(oa.decrypt(&m).expect("decrypt").len())
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_one_way, bench_ping_pong);
criterion_main!(benches);
