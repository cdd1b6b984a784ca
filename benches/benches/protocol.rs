//! Handshake and state costs: X3DH (bundle verify + initiator + responder
//! with the first message), session serialize / deserialize.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sotto_benches::{Parties, established_pair, rng};
use sotto_core::Session;

fn bench_handshake(c: &mut Criterion) {
    let mut r = rng(3);
    let parties = Parties::new(&mut r);
    let bundle = parties.bundle();
    c.bench_function("x3dh/handshake", |b| {
        b.iter(|| {
            let mut alice = Session::initiate(&parties.alice, &bundle, &mut r).expect("initiate");
            let first = alice.encrypt(b"hello").expect("encrypt");
            let (bob, _) =
                Session::respond(&parties.bob, &parties.keys, &first, &mut r).expect("respond");
            black_box(bob)
        })
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

criterion_group!(benches, bench_handshake, bench_state);
criterion_main!(benches);
