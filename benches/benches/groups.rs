//! Groups: a message encrypted once with a sender key against the 1:1
//! Double Ratchet, what sending one message to n member devices costs with
//! and without sender keys, and what a membership change costs at 10, 100
//! and 1000 members. All in one process, so the ratios are same-run.
//!
//! - `group_message/{encrypt,decrypt}/{64,1024}`: `SenderKey::encrypt`
//!   (chain step, AEAD, Ed25519 signature) and `SenderKeyReceiver::decrypt`
//!   (signature check, chain step, AEAD) of one message, in order, steady
//!   state. Next to them `one_to_one/{encrypt,decrypt}/{64,1024}`: the
//!   Double Ratchet session sending in one direction (symmetric chain
//!   steps only, no DH ratchet step per message). Decrypting measures
//!   only the decryption: each ciphertext is made outside the timed
//!   region.
//! - `group_send/{10,100}`: what a device does to send one 64-byte group
//!   message to n member devices, as the client does (src/client/groups/
//!   message.rs), without store or network: the sender-key encryption
//!   once, the body key drawn and the group message sealed as a detached
//!   blob once, its reference (with the blob's SHA-256) once; then per
//!   device the payload (kind 0x0D: 26-byte payload head, 84-byte device
//!   header, 69-byte reference: 179 bytes), `sealed::seal` of it to the
//!   device's key and the frame header `0xD0 || u32be(len) || sealed` (the
//!   relay's multi-recipient send uploads the blob once). Next to it
//!   `one_to_one_fanout/{10,100}`: the same 64 bytes sent to n devices
//!   without sender keys: per device, the session's encryption of the
//!   body, the payload (kind 0x05) around it and `sealed::seal` of that.
//! - `group_send_cached/{10,100}`: `group_send` with the static part of
//!   each seal computed before (`sealed::StaticSecret`), as the client keeps
//!   it from one message to the next: one Diffie-Hellman operation per
//!   device instead of two.
//! - `group_send_parts/{body_key,seal_one_device}`: the two parts of
//!   `group_send` that are not the sender-key encryption, once each: the
//!   body key, blob and reference of one group message; one device's
//!   payload, seal and frame header.
//! - `group_receive/64` and `one_to_one_receive/64`: what a member device
//!   does with one envelope, without the store: `sealed::open`, then for
//!   the group the reference read, the blob opened (digest, AEAD) and the
//!   sender key's decryption; for 1:1 the session's decryption. The
//!   envelope is made outside the timed region.
//! - `membership/add/{10,100,1000}`: `propose_add` of one account and
//!   `apply` of that change by its author, on a group of n − 1 members
//!   (n members after it: a group holds at most 1000).
//!   `membership/remove/{10,100,1000}`: the same for the removal of one
//!   member of n. The state is cloned outside the timed region.
//! - `membership/state_roundtrip/{10,100,1000}`: `GroupState::to_bytes`
//!   and `from_bytes` of a group of n just created (one change kept: the
//!   create, which lists the members). `membership/state_roundtrip_full/
//!   {10,100,1000}`: the same group after 63 renames, so that 64 changes
//!   are kept, the most a state keeps; decoding checks one signature per
//!   change kept.
//! - `membership/rekey/{10,100}`: after a removal every remaining device
//!   makes a new sender key and sends its distribution to every other
//!   member device through the pairwise sessions. One device's share:
//!   `rotate`, then per device the control (`0x01 || 0x01 ||
//!   distribution`, 107 bytes), the session's encryption of it, the
//!   payload (kind 0x0C) and `sealed::seal`. Any control (a change, a
//!   distribution) costs its sender this per device.
//!
//! Payload bytes are laid out as the client lays them out (src/payload.rs);
//! every cryptographic step is the library's. Each member has one device,
//! whose key is the account's. Sessions have had one message each way, so
//! they send plain Messages.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::ChaCha20Rng;
use sotto_benches::{established_pair, rng};
use sotto_core::group::membership::GroupState;
use sotto_core::group::{GroupId, SenderKey, SenderKeyReceiver};
use sotto_core::{BodyKey, BodyReference, DeviceId, IdentityKey, IdentityKeyPair, Session, sealed};

/// Message sizes of the encryption groups.
const SIZES: [usize; 2] = [64, 1024];
/// Member devices a message goes to.
const DEVICES: [usize; 2] = [10, 100];
/// Group sizes of the membership groups.
const MEMBERS: [usize; 3] = [10, 100, 1000];
/// The body of `group_send` and the receive groups.
const SEND_LEN: usize = 64;
/// The vectors' clock: 2023-11-14T22:13:20Z in milliseconds.
const T0: u64 = 1_700_000_000_000;

/// Payload kinds and frame byte of the client (src/payload.rs).
const PAYLOAD_VERSION: u8 = 0x02;
const KIND_DEVICE_MESSAGE: u8 = 0x05;
const KIND_GROUP_CONTROL: u8 = 0x0C;
const KIND_GROUP_MESSAGE: u8 = 0x0D;
const DETACHED_FRAME: u8 = 0xD0;
/// Payload head (version, kind, id, sent_at) and device header (access
/// key, from account and device, to account).
const PAYLOAD_HEAD: usize = 1 + 1 + 16 + 8;
const DEVICE_HEADER: usize = 16 + 32 + 4 + 32;
/// Group control format and the kind of a sender key (docs/groups.md).
const CONTROL_FORMAT: u8 = 0x01;
const CONTROL_SENDER_KEY: u8 = 0x01;

fn plaintext(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// A device message payload as the client encodes it: version, kind, id,
/// sent_at, access key, from account and device, to account, the message.
fn device_payload(kind: u8, from: &IdentityKey, to: &IdentityKey, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PAYLOAD_HEAD + DEVICE_HEADER + message.len());
    out.push(PAYLOAD_VERSION);
    out.push(kind);
    out.extend_from_slice(&[1; 16]);
    out.extend_from_slice(&T0.to_be_bytes());
    out.extend_from_slice(&[0x5a; 16]);
    out.extend_from_slice(from.as_bytes());
    out.extend_from_slice(&DeviceId::PRIMARY.get().to_be_bytes());
    out.extend_from_slice(to.as_bytes());
    out.extend_from_slice(message);
    out
}

/// `0xD0 || u32be(len(sealed)) || sealed`: the header of a detached
/// envelope, whose blob the relay's multi-recipient send carries once.
fn frame_header(sealed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + sealed.len());
    out.push(DETACHED_FRAME);
    out.extend_from_slice(&u32::try_from(sealed.len()).unwrap().to_be_bytes());
    out.extend_from_slice(sealed);
    out
}

/// A fresh sender key in a fresh group.
fn sender_key(rng: &mut ChaCha20Rng) -> SenderKey {
    SenderKey::generate(GroupId::generate(rng), rng)
}

fn bench_messages(c: &mut Criterion) {
    for size in SIZES {
        let data = plaintext(size);

        let mut group = c.benchmark_group("group_message");
        group.throughput(Throughput::Elements(1));
        let mut r = rng(1);
        let mut sender = sender_key(&mut r);
        let mut wire = Vec::new();
        group.bench_with_input(BenchmarkId::new("encrypt", size), &data, |b, data| {
            b.iter(|| {
                sender.encrypt_into(data, &mut wire).expect("encrypt");
                black_box(wire.len())
            })
        });
        let mut sender = sender_key(&mut r);
        let mut receiver = SenderKeyReceiver::new(&sender.distribution());
        let mut out = Vec::new();
        group.bench_with_input(BenchmarkId::new("decrypt", size), &data, |b, data| {
            b.iter_batched(
                || sender.encrypt(data).expect("encrypt"),
                |message| {
                    receiver.decrypt_into(&message, &mut out).expect("decrypt");
                    black_box(out.len())
                },
                BatchSize::SmallInput,
            )
        });
        group.finish();

        let mut group = c.benchmark_group("one_to_one");
        group.throughput(Throughput::Elements(1));
        let (mut alice, _) = established_pair(&mut r).expect("pair");
        group.bench_with_input(BenchmarkId::new("encrypt", size), &data, |b, data| {
            b.iter(|| {
                alice.encrypt_into(data, &mut wire).expect("encrypt");
                black_box(wire.len())
            })
        });
        let (mut alice, mut bob) = established_pair(&mut r).expect("pair");
        group.bench_with_input(BenchmarkId::new("decrypt", size), &data, |b, data| {
            b.iter_batched(
                || alice.encrypt(data).expect("encrypt"),
                |message| {
                    bob.decrypt_into(&message, &mut out, &mut r)
                        .expect("decrypt");
                    black_box(out.len())
                },
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

/// One sending device and n member devices, with a sender key for the
/// group and a pairwise session with each device.
struct Sender {
    identity: IdentityKeyPair,
    sender_key: SenderKey,
    /// The member devices' keys.
    devices: Vec<IdentityKey>,
    /// The static part of sealing to each of them.
    statics: Vec<sealed::StaticSecret>,
    /// Sending sessions with n other parties, for the sends without sender
    /// keys and the controls.
    sessions: Vec<Session>,
    rng: ChaCha20Rng,
}

impl Sender {
    fn new(n: usize) -> Self {
        let mut rng = rng(3);
        let identity = IdentityKeyPair::generate(&mut rng);
        let sender_key = sender_key(&mut rng);
        let devices: Vec<IdentityKey> = (0..n)
            .map(|_| *IdentityKeyPair::generate(&mut rng).public())
            .collect();
        let sessions = (0..n)
            .map(|_| established_pair(&mut rng).expect("sessions").0)
            .collect();
        let statics = devices
            .iter()
            .map(|d| sealed::StaticSecret::new(&identity, d).expect("static"))
            .collect();
        Self {
            identity,
            sender_key,
            devices,
            statics,
            sessions,
            rng,
        }
    }

    /// The body key, blob and reference of one group message.
    fn detach(&mut self, message: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let key = BodyKey::generate(&mut self.rng);
        let blob = key.seal(message).expect("blob");
        let reference = BodyReference::new(&key, &blob)
            .expect("reference")
            .to_bytes()
            .to_vec();
        (blob, reference)
    }

    /// One device's envelope header of a group message.
    fn seal_to(&mut self, device: usize, reference: &[u8]) -> Vec<u8> {
        let to = self.devices[device];
        let payload = device_payload(KIND_GROUP_MESSAGE, self.identity.public(), &to, reference);
        let sealed = sealed::seal(&self.identity, &to, &payload, &mut self.rng).expect("seal");
        frame_header(&sealed)
    }

    /// One device's envelope header, sealed with the static part to that
    /// device computed before, as the client keeps it.
    fn seal_to_cached(&mut self, device: usize, reference: &[u8]) -> Vec<u8> {
        let to = self.devices[device];
        let payload = device_payload(KIND_GROUP_MESSAGE, self.identity.public(), &to, reference);
        let sealed = sealed::seal_with(
            &self.identity,
            &self.statics[device],
            &payload,
            &mut self.rng,
        )
        .expect("seal");
        frame_header(&sealed)
    }

    /// `send_group` as the client does it: the static part of each seal
    /// kept from one message to the next.
    fn send_group_cached(&mut self, body: &[u8]) -> usize {
        let message = self.sender_key.encrypt(body).expect("encrypt");
        let (blob, reference) = self.detach(&message);
        let mut sent = blob.len();
        for device in 0..self.devices.len() {
            sent += black_box(self.seal_to_cached(device, &reference)).len();
        }
        sent
    }

    /// A group message to every device; returns the bytes sent (each
    /// header, and the blob once).
    fn send_group(&mut self, body: &[u8]) -> usize {
        let message = self.sender_key.encrypt(body).expect("encrypt");
        let (blob, reference) = self.detach(&message);
        let mut sent = blob.len();
        for device in 0..self.devices.len() {
            sent += black_box(self.seal_to(device, &reference)).len();
        }
        sent
    }

    /// `plaintext` through each pairwise session, each sealed; returns the
    /// bytes sent.
    fn send_pairwise(&mut self, kind: u8, plaintext: &[u8]) -> usize {
        let mut sent = 0;
        for (session, to) in self.sessions.iter_mut().zip(&self.devices) {
            let ciphertext = session.encrypt(plaintext).expect("encrypt");
            let payload = device_payload(kind, self.identity.public(), to, &ciphertext);
            sent +=
                black_box(sealed::seal(&self.identity, to, &payload, &mut self.rng).expect("seal"))
                    .len();
        }
        sent
    }

    /// A new sender key, its distribution to every device as a control.
    fn rekey(&mut self) -> usize {
        self.sender_key.rotate(&mut self.rng);
        let distribution = self.sender_key.distribution().to_bytes();
        let mut control = Vec::with_capacity(2 + distribution.len());
        control.push(CONTROL_FORMAT);
        control.push(CONTROL_SENDER_KEY);
        control.extend_from_slice(&*distribution);
        self.send_pairwise(KIND_GROUP_CONTROL, &control)
    }
}

fn bench_send(c: &mut Criterion) {
    let body = plaintext(SEND_LEN);
    let mut senders: Vec<(usize, Sender)> = DEVICES.iter().map(|&n| (n, Sender::new(n))).collect();
    // Group and 1:1 of one n run one after the other, so that a change of
    // load between them is as unlikely as it can be.
    for (n, sender) in &mut senders {
        let mut group = c.benchmark_group("group_send");
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::from_parameter(*n), |b| {
            b.iter(|| sender.send_group(&body))
        });
        group.finish();
        let mut group = c.benchmark_group("group_send_cached");
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::from_parameter(*n), |b| {
            b.iter(|| sender.send_group_cached(&body))
        });
        group.finish();
        let mut group = c.benchmark_group("one_to_one_fanout");
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::from_parameter(*n), |b| {
            b.iter(|| sender.send_pairwise(KIND_DEVICE_MESSAGE, &body))
        });
        group.finish();
    }
    let (_, sender) = &mut senders[0];
    let message = sender.sender_key.encrypt(&body).expect("encrypt");
    let (_, reference) = sender.detach(&message);
    let mut group = c.benchmark_group("group_send_parts");
    group.throughput(Throughput::Elements(1));
    group.bench_function("body_key", |b| b.iter(|| sender.detach(&message)));
    group.bench_function("seal_one_device", |b| {
        b.iter(|| sender.seal_to(0, &reference))
    });
    group.finish();
}

fn bench_receive(c: &mut Criterion) {
    let body = plaintext(SEND_LEN);
    let mut setup_rng = rng(5);
    let mut r = rng(6);
    let alice = IdentityKeyPair::generate(&mut setup_rng);
    let bob = IdentityKeyPair::generate(&mut setup_rng);

    let mut sender_key = sender_key(&mut setup_rng);
    let mut receiver = SenderKeyReceiver::new(&sender_key.distribution());
    let mut group = c.benchmark_group("group_receive");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::from_parameter(SEND_LEN), |b| {
        b.iter_batched(
            || {
                let message = sender_key.encrypt(&body).expect("encrypt");
                let key = BodyKey::generate(&mut setup_rng);
                let blob = key.seal(&message).expect("blob");
                let reference = BodyReference::new(&key, &blob).expect("reference");
                let payload = device_payload(
                    KIND_GROUP_MESSAGE,
                    alice.public(),
                    bob.public(),
                    reference.to_bytes().as_slice(),
                );
                let sealed =
                    sealed::seal(&alice, bob.public(), &payload, &mut setup_rng).expect("seal");
                (sealed, blob)
            },
            |(sealed, blob)| {
                let opened = sealed::open(&bob, &sealed).expect("open");
                let reference =
                    BodyReference::from_bytes(&opened.contents[PAYLOAD_HEAD + DEVICE_HEADER..])
                        .expect("reference");
                let message = reference.open(&blob).expect("blob");
                black_box(receiver.decrypt(&message).expect("decrypt").len())
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let (mut alice_session, mut bob_session) = established_pair(&mut setup_rng).expect("pair");
    let mut group = c.benchmark_group("one_to_one_receive");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::from_parameter(SEND_LEN), |b| {
        b.iter_batched(
            || {
                let ciphertext = alice_session.encrypt(&body).expect("encrypt");
                let payload = device_payload(
                    KIND_DEVICE_MESSAGE,
                    alice.public(),
                    bob.public(),
                    &ciphertext,
                );
                sealed::seal(&alice, bob.public(), &payload, &mut setup_rng).expect("seal")
            },
            |sealed| {
                let opened = sealed::open(&bob, &sealed).expect("open");
                let message = &opened.contents[PAYLOAD_HEAD + DEVICE_HEADER..];
                black_box(bob_session.decrypt(message, &mut r).expect("decrypt").len())
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A group of `members` accounts created by `author`, and the other
/// members' keys.
fn group_of(
    author: &IdentityKeyPair,
    members: usize,
    rng: &mut ChaCha20Rng,
) -> (GroupState, Vec<IdentityKey>) {
    let others: Vec<IdentityKey> = (1..members)
        .map(|_| *IdentityKeyPair::generate(rng).public())
        .collect();
    let (state, _) = GroupState::create(author, "bench", &others, rng).expect("create");
    assert_eq!(state.members().len(), members);
    (state, others)
}

fn bench_membership(c: &mut Criterion) {
    let mut r = rng(8);
    let author = IdentityKeyPair::generate(&mut r);
    let newcomer = *IdentityKeyPair::generate(&mut r).public();
    let mut group = c.benchmark_group("membership");
    group.throughput(Throughput::Elements(1));
    for n in MEMBERS {
        let (before_add, _) = group_of(&author, n - 1, &mut r);
        group.bench_function(BenchmarkId::new("add", n), |b| {
            b.iter_batched(
                || before_add.clone(),
                |mut state| {
                    let change = state
                        .propose_add(&author, &[newcomer])
                        .expect("propose add");
                    state.apply(&change, author.public()).expect("apply add");
                    state
                },
                BatchSize::SmallInput,
            )
        });

        let (state, others) = group_of(&author, n, &mut r);
        let leaving = others[others.len() / 2];
        group.bench_function(BenchmarkId::new("remove", n), |b| {
            b.iter_batched(
                || state.clone(),
                |mut state| {
                    let change = state
                        .propose_remove(&author, &[leaving])
                        .expect("propose remove");
                    state.apply(&change, author.public()).expect("apply remove");
                    state
                },
                BatchSize::SmallInput,
            )
        });

        group.bench_function(BenchmarkId::new("state_roundtrip", n), |b| {
            b.iter(|| {
                let bytes = state.to_bytes();
                black_box(GroupState::from_bytes(&bytes).expect("decode"))
            })
        });

        let mut full = state.clone();
        for i in 0..63 {
            let change = full
                .propose_rename(&author, &format!("bench {i}"))
                .expect("rename");
            full.apply(&change, author.public()).expect("apply rename");
        }
        assert_eq!(full.history().count(), 64);
        group.bench_function(BenchmarkId::new("state_roundtrip_full", n), |b| {
            b.iter(|| {
                let bytes = full.to_bytes();
                black_box(GroupState::from_bytes(&bytes).expect("decode"))
            })
        });
    }
    for n in DEVICES {
        let mut sender = Sender::new(n);
        group.bench_function(BenchmarkId::new("rekey", n), |b| b.iter(|| sender.rekey()));
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_messages,
    bench_send,
    bench_receive,
    bench_membership
);
criterion_main!(benches);
