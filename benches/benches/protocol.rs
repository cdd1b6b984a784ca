//! Handshake and state costs: X3DH (bundle verify + initiator + responder
//! with the first message), and protocol v2's hybrid handshake the same
//! way; ML-KEM-768 key generation, encapsulation and decapsulation on
//! their own (the `ml-kem` crate, as sotto-core calls it); session
//! serialize / deserialize. The bundle and first-message sizes of both
//! versions are printed after the handshake group.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ml_kem::kem::{Decapsulate, Encapsulate};
use ml_kem::{DecapsulationKey768, Seed};
use sotto_benches::{Parties, established_pair, rng};
use sotto_core::Session;

fn bench_handshake(c: &mut Criterion) {
    let mut r = rng(3);
    let parties = Parties::new(&mut r);
    let mut sizes = Vec::new();
    for (name, bundle) in [
        ("x3dh/handshake", parties.bundle()),
        ("pqxdh/handshake", parties.bundle_v2()),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                let mut alice =
                    Session::initiate(&parties.alice, &bundle, &mut r).expect("initiate");
                let first = alice.encrypt(b"hello").expect("encrypt");
                let (bob, _) =
                    Session::respond(&parties.bob, &parties.keys, &first, &mut r).expect("respond");
                black_box(bob)
            })
        });
        let mut alice = Session::initiate(&parties.alice, &bundle, &mut r).expect("initiate");
        let first = alice.encrypt(&[0u8; 64]).expect("encrypt");
        sizes.push(format!(
            "{name}: bundle {} bytes, first message (64-byte plaintext) {} bytes",
            bundle.encode().len(),
            first.len()
        ));
    }
    for line in sizes {
        println!("{line}");
    }
}

fn bench_ml_kem(c: &mut Criterion) {
    let mut r = rng(5);
    let seed = Seed::from([7u8; 64]);
    c.bench_function("ml_kem_768/keygen", |b| {
        b.iter(|| black_box(DecapsulationKey768::from_seed(black_box(seed))))
    });
    let dk = DecapsulationKey768::from_seed(seed);
    let ek = dk.encapsulation_key().clone();
    c.bench_function("ml_kem_768/encapsulate", |b| {
        b.iter(|| black_box(ek.encapsulate_with_rng(&mut r)))
    });
    let (ct, _) = ek.encapsulate_with_rng(&mut r);
    c.bench_function("ml_kem_768/decapsulate", |b| {
        b.iter(|| black_box(dk.decapsulate(black_box(&ct))))
    });
}

fn bench_state(c: &mut Criterion) {
    let mut r = rng(4);
    let (mut alice, mut bob) = established_pair(&mut r).expect("pair");
    // Leave some skipped keys in Bob's state, as a real session has.
    let mut late = Vec::new();
    for i in 0..10 {
        let m = alice.encrypt(b"skipped later").expect("encrypt");
        if i % 2 == 0 {
            late.push(m);
        } else {
            bob.decrypt(&m, &mut r).expect("decrypt");
        }
    }
    let bytes = bob.to_bytes();
    c.bench_function("session/serialize", |b| {
        b.iter(|| black_box(bob.to_bytes()))
    });
    c.bench_function("session/deserialize", |b| {
        b.iter(|| black_box(Session::from_bytes(&bytes).expect("restore")))
    });
}

criterion_group!(benches, bench_handshake, bench_ml_kem, bench_state);
criterion_main!(benches);
