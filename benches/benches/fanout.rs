//! Fan-out: one 1 MiB message to a contact with 1, 3 and 10 devices, with
//! its body detached (encrypted once, docs/protocol.md "Detached bodies")
//! and, for comparison in the same run, encrypted in full once per device.
//! And the receiving side: one 1 MiB message received by the store, with
//! its body detached or inline.
//!
//! - `fanout/detached/{n}`: what a client does to send one 1 MiB body
//!   today. `Store::send_within` to a contact with `n` devices (one
//!   transaction: every session loaded, advanced and saved, the message in
//!   history, one outbox row per device, `Durability::Full`; the blob is
//!   sealed and digested once, before the sessions encrypt the reference
//!   to it), then for every outbox entry what travels: the payload
//!   (kind 0x09) around its ciphertext, `sealed::seal` of it to the
//!   device's key, and the frame `0xD0 || u32be(len) || sealed || blob`.
//! - `fanout/detached_crypto/{n}`: the same without the store: the body
//!   key drawn and the blob sealed and digested once, then per device the
//!   session's encryption of the 69-byte reference, the payload, the seal
//!   and the frame.
//! - `fanout/naive/{n}`: what the same message would cost without detached
//!   bodies, and without the store: per device, the session's encryption
//!   of the whole 1 MiB body, the payload (kind 0x05) around it and
//!   `sealed::seal` of that payload.
//! - `receive_1mib/{inline,detached}`: `Store::receive_with_body` of one
//!   1 MiB message, `Durability::Full` (decrypt, history row, dedupe
//!   record, session save, one durable commit): inline, the session's
//!   ciphertext holds the body; detached, it holds the reference and the
//!   blob comes next to it.
//!
//! The payload bytes are built as the client builds them (src/payload.rs);
//! only their layout is copied here, every cryptographic step is the
//! library's. Sessions of `detached` come from bundles and were never
//! answered, so they send PreKeyMessages (75 bytes more than a Message, on
//! a 69-byte reference); the sessions of the other two have had one
//! message each way. After every measured send or receive the message is
//! deleted again, outside the timed region, so that the store does not
//! grow by a megabyte per iteration. Every store uses light Argon2id
//! parameters (64 KiB, t = 1): the key derivation runs only when a store
//! is created.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use rand::rngs::ChaCha20Rng;
use sotto_benches::{established_pair, rng};
use sotto_core::{
    BodyKey, BodyReference, DeviceId, IdentityKey, IdentityKeyPair, Session, body, sealed,
};
use sotto_store::{
    Durability, Envelope, EnvelopeId, KdfParams, OpenOptions, PeerDevice, Received, Store,
};
use tempfile::TempDir;

/// The body: 1 MiB.
const BODY_LEN: usize = 1024 * 1024;
/// The devices of the contact.
const DEVICES: [usize; 3] = [1, 3, 10];
/// The vectors' clock: 2023-11-14T22:13:20Z in milliseconds.
const T0: u64 = 1_700_000_000_000;

/// Payload kinds and frame byte of the client (src/payload.rs).
const PAYLOAD_VERSION: u8 = 0x02;
const KIND_DEVICE_MESSAGE: u8 = 0x05;
const KIND_DETACHED_MESSAGE: u8 = 0x09;
const DETACHED_FRAME: u8 = 0xD0;

fn options() -> OpenOptions {
    OpenOptions::new()
        .kdf(KdfParams::new(64, 1, 1).expect("kdf params"))
        .durability(Durability::Full)
}

fn body() -> Vec<u8> {
    (0..BODY_LEN).map(|i| (i % 251) as u8).collect()
}

/// A device message payload as the client encodes it: version, kind, id,
/// sent_at, access key, from account and device, to account, the
/// sotto-core message.
fn device_payload(
    kind: u8,
    id: &[u8; 16],
    sent_at: u64,
    from: &IdentityKey,
    to: &IdentityKey,
    message: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(26 + 84 + message.len());
    out.push(PAYLOAD_VERSION);
    out.push(kind);
    out.extend_from_slice(id);
    out.extend_from_slice(&sent_at.to_be_bytes());
    out.extend_from_slice(&[0x5a; 16]);
    out.extend_from_slice(from.as_bytes());
    out.extend_from_slice(&DeviceId::PRIMARY.get().to_be_bytes());
    out.extend_from_slice(to.as_bytes());
    out.extend_from_slice(message);
    out
}

/// `0xD0 || u32be(len(sealed)) || sealed || blob`.
fn frame(sealed: &[u8], blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + sealed.len() + blob.len());
    out.push(DETACHED_FRAME);
    out.extend_from_slice(&u32::try_from(sealed.len()).unwrap().to_be_bytes());
    out.extend_from_slice(sealed);
    out.extend_from_slice(blob);
    out
}

/// Alice (one device) and Bob's account of `n` devices: Alice's store
/// holds Bob's signed device list and a session with each of his devices.
struct Fanout {
    alice: Store,
    alice_identity: IdentityKeyPair,
    bob_account: IdentityKey,
    /// Bob's devices as Alice's store names them, with their keys.
    devices: Vec<(PeerDevice, IdentityKey)>,
    /// Sending sessions with `n` other parties (for the two measurements
    /// without the store), and the keys their payloads are sealed to.
    sessions: Vec<(Session, IdentityKey)>,
    rng: ChaCha20Rng,
    now: u64,
    _dir: TempDir,
}

impl Fanout {
    fn new(n: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut alice =
            Store::create(dir.path().join("alice.db"), b"alice", &options()).expect("alice store");
        let mut bob: Vec<Store> = (0..n)
            .map(|i| {
                Store::create(dir.path().join(format!("bob-{i}.db")), b"bob", &options())
                    .expect("bob store")
            })
            .collect();
        let bob_account = bob[0].identity_key().expect("account key");
        let mut signed = bob[0].own_device_list(T0).expect("first list");
        let mut list = signed.verify(&bob_account).expect("verify");
        if n > 1 {
            for store in &bob[1..] {
                let key = store.identity_key().expect("device key");
                list = list.with_device(&key, T0).expect("with device");
            }
            signed = bob[0].set_own_device_list(&list).expect("own list").0;
        }
        alice
            .add_contact("bob", "Bob", Some(&bob_account))
            .expect("contact");
        alice
            .set_contact_device_list("bob", &signed)
            .expect("contact list");
        let mut devices = Vec::new();
        for (store, device) in bob.iter_mut().zip(list.devices()) {
            let peer = PeerDevice::Contact(device.id);
            let published = store.fresh_one_time_prekeys(1, T0).expect("prekeys");
            let bundle = store.prekey_bundle(Some(published[0].0)).expect("bundle");
            alice
                .start_session_with("bob", peer, &bundle)
                .expect("session");
            devices.push((peer, device.identity));
        }
        let mut rng = rng(7);
        let sessions = devices
            .iter()
            .map(|(_, key)| (established_pair(&mut rng).expect("sessions").0, *key))
            .collect();
        Self {
            alice_identity: alice.identity().expect("identity"),
            alice,
            bob_account,
            devices,
            sessions,
            rng,
            now: T0,
            _dir: dir,
        }
    }

    fn device_key(&self, device: PeerDevice) -> &IdentityKey {
        &self
            .devices
            .iter()
            .find(|(d, _)| *d == device)
            .expect("a listed device")
            .1
    }

    /// The store's send and what travels to each device; returns the
    /// message's seq and the bytes sent.
    fn send_detached(&mut self, body: &[u8]) -> (u64, usize) {
        self.now += 1;
        let out = self
            .alice
            .send_within("bob", body, self.now, usize::MAX)
            .expect("send");
        assert_eq!(out.entries.len(), self.devices.len());
        let mut sent = 0;
        for entry in &out.entries {
            let blob = entry.detached_body.as_deref().expect("a detached body");
            let payload = device_payload(
                KIND_DETACHED_MESSAGE,
                entry.id.as_bytes(),
                self.now,
                self.alice_identity.public(),
                &self.bob_account,
                &entry.ciphertext,
            );
            let to = *self.device_key(entry.to);
            let sealed =
                sealed::seal(&self.alice_identity, &to, &payload, &mut self.rng).expect("seal");
            sent += black_box(frame(&sealed, blob)).len();
        }
        (out.seq, sent)
    }

    /// The detached body without the store.
    fn send_detached_crypto(&mut self, body: &[u8]) -> usize {
        self.now += 1;
        let key = BodyKey::generate(&mut self.rng);
        let blob = key.seal(body).expect("blob");
        let reference = BodyReference::new(&key, &blob)
            .expect("reference")
            .to_bytes();
        let mut sent = 0;
        for (session, to) in &mut self.sessions {
            let ciphertext = session.encrypt(reference.as_slice()).expect("encrypt");
            let payload = device_payload(
                KIND_DETACHED_MESSAGE,
                &[1; 16],
                self.now,
                self.alice_identity.public(),
                &self.bob_account,
                &ciphertext,
            );
            let sealed =
                sealed::seal(&self.alice_identity, to, &payload, &mut self.rng).expect("seal");
            sent += black_box(frame(&sealed, &blob)).len();
        }
        sent
    }

    /// The whole body encrypted for each device, without the store.
    fn send_naive(&mut self, body: &[u8]) -> usize {
        self.now += 1;
        let mut sent = 0;
        for (session, to) in &mut self.sessions {
            let ciphertext = session.encrypt(body).expect("encrypt");
            let payload = device_payload(
                KIND_DEVICE_MESSAGE,
                &[1; 16],
                self.now,
                self.alice_identity.public(),
                &self.bob_account,
                &ciphertext,
            );
            sent += black_box(
                sealed::seal(&self.alice_identity, to, &payload, &mut self.rng).expect("seal"),
            )
            .len();
        }
        sent
    }
}

fn bench_fanout(c: &mut Criterion) {
    let body = body();
    let mut group = c.benchmark_group("fanout");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    // The three measurements of one n run one after the other, so that a
    // change of load between them is as unlikely as it can be.
    for n in DEVICES {
        let mut fixture = Fanout::new(n);
        group.bench_function(BenchmarkId::new("detached", n), |b| {
            b.iter_custom(|iters| {
                let mut measured = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let (seq, sent) = fixture.send_detached(&body);
                    measured += start.elapsed();
                    assert!(sent > n * BODY_LEN);
                    assert!(fixture.alice.delete_message("bob", seq).expect("delete"));
                }
                measured
            })
        });
        group.bench_function(BenchmarkId::new("detached_crypto", n), |b| {
            b.iter(|| fixture.send_detached_crypto(&body))
        });
        group.bench_function(BenchmarkId::new("naive", n), |b| {
            b.iter(|| fixture.send_naive(&body))
        });
        assert!(fixture.alice.outbox().expect("outbox").is_empty());
    }
    group.finish();
}

/// Bob's store, and Alice as a sotto-core session with it (one message
/// each way, so she sends plain Messages).
struct Receiver {
    bob: Store,
    alice: Option<Session>,
    rng: ChaCha20Rng,
    next_id: u64,
    _dir: TempDir,
}

impl Receiver {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let bob = Store::create(dir.path().join("bob.db"), b"bob", &options()).expect("bob");
        let mut rng = rng(9);
        let alice_identity = IdentityKeyPair::generate(&mut rng);
        let mut receiver = Self {
            bob,
            alice: None,
            rng,
            next_id: 0,
            _dir: dir,
        };
        let published = receiver.bob.fresh_one_time_prekeys(1, T0).expect("prekeys");
        let bundle = receiver
            .bob
            .prekey_bundle(Some(published[0].0))
            .expect("bundle");
        let mut alice =
            Session::initiate(&alice_identity, &bundle, &mut receiver.rng).expect("initiate");
        let first = alice.encrypt(b"hello").expect("first");
        receiver.receive(&first, None);
        let reply = receiver.bob.send("alice", b"hi", T0).expect("reply");
        alice
            .decrypt(&reply.ciphertext, &mut receiver.rng)
            .expect("reply decrypts");
        receiver.alice = Some(alice);
        receiver
    }

    /// Alice's next ciphertext of `plaintext`.
    fn encrypt(&mut self, plaintext: &[u8]) -> Vec<u8> {
        self.alice
            .as_mut()
            .expect("alice")
            .encrypt(plaintext)
            .expect("encrypt")
    }

    /// Receives one message; returns its seq.
    fn receive(&mut self, ciphertext: &[u8], blob: Option<&[u8]>) -> u64 {
        self.next_id += 1;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next_id.to_be_bytes());
        let envelope = Envelope {
            id: EnvelopeId(id),
            sender: "alice",
            device: PeerDevice::CONTACT_PRIMARY,
            ciphertext,
            sent_at: T0,
            received_at: T0,
        };
        match self
            .bob
            .receive_with_body(&envelope, blob)
            .expect("receive")
        {
            Received::Stored(message) => message.seq,
            other => panic!("not stored: {other:?}"),
        }
    }
}

fn bench_receive(c: &mut Criterion) {
    let body = body();
    let mut group = c.benchmark_group("receive_1mib");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    let mut fixture = Receiver::new();
    group.bench_function("inline", |b| {
        b.iter_custom(|iters| {
            let mut measured = Duration::ZERO;
            for _ in 0..iters {
                let ciphertext = fixture.encrypt(&body);
                let start = Instant::now();
                let seq = fixture.receive(&ciphertext, None);
                measured += start.elapsed();
                assert!(fixture.bob.delete_message("alice", seq).expect("delete"));
            }
            measured
        })
    });
    group.bench_function("detached", |b| {
        b.iter_custom(|iters| {
            let mut measured = Duration::ZERO;
            for _ in 0..iters {
                let key = BodyKey::generate(&mut fixture.rng);
                let blob = key.seal(&body).expect("blob");
                assert_eq!(blob.len(), body::blob_len(BODY_LEN).expect("length"));
                let reference = BodyReference::new(&key, &blob).expect("reference");
                let ciphertext = fixture.encrypt(reference.to_bytes().as_slice());
                let start = Instant::now();
                let seq = fixture.receive(&ciphertext, Some(&blob));
                measured += start.elapsed();
                assert!(fixture.bob.delete_message("alice", seq).expect("delete"));
            }
            measured
        })
    });
    group.finish();
}

criterion_group!(benches, bench_fanout, bench_receive);
criterion_main!(benches);
