//! Measures how many messages per second the store receives in batches
//! (one durable commit per batch) and one by one, and how fast it sends.
//!
//! `cargo run --release -p sotto-store --example store_throughput [N] [BATCH]`
//!
//! The sender is a bare sotto-core session, so only the receiving store
//! is measured. Two phases: PreKeyMessages (before the sender has seen a
//! reply, each one carries and re-validates the sender's identity key) and
//! plain Messages (the steady state of a conversation).

use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sotto_store::sotto_core::{
    IdentityKeyPair, OneTimePreKey, OneTimePreKeyId, PreKeySource, SessionSet, SignedPreKey,
    SignedPreKeyId,
};
use sotto_store::{Envelope, EnvelopeId, KdfParams, OpenOptions, Received, Store};

type Wire = Vec<(EnvelopeId, Vec<u8>)>;

/// The sender never answers a PreKeyMessage here.
struct NoPreKeys;

impl PreKeySource for NoPreKeys {
    fn signed_prekey(&self, _: SignedPreKeyId) -> Option<SignedPreKey> {
        None
    }
    fn one_time_prekey(&self, _: OneTimePreKeyId) -> Option<OneTimePreKey> {
        None
    }
}

fn encrypt_many(
    session: &mut SessionSet,
    rng: &mut ChaCha20Rng,
    n: usize,
) -> Result<Wire, sotto_store::sotto_core::Error> {
    let body = [b'x'; 100];
    (0..n)
        .map(|_| Ok((EnvelopeId::random(rng), session.encrypt(&body)?)))
        .collect()
}

fn envelopes(wire: &Wire) -> Vec<Envelope<'_>> {
    wire.iter()
        .map(|(id, ciphertext)| Envelope {
            id: *id,
            sender: "alice",
            device: sotto_store::PeerDevice::CONTACT_PRIMARY,
            ciphertext,
            sent_at: 0,
            received_at: 0,
        })
        .collect()
}

fn receive_batches(
    store: &mut Store,
    envelopes: &[Envelope<'_>],
    batch: usize,
    label: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let mut stored = 0usize;
    for chunk in envelopes.chunks(batch) {
        for result in store.receive_batch(chunk)? {
            if matches!(result?, Received::Stored(_)) {
                stored += 1;
            }
        }
    }
    println!(
        "receive_batch, {label}: {stored} messages in batches of {batch}: {:.0} messages/s",
        stored as f64 / start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(50_000);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000);
    let single = 2_000.min(total / 5).max(1);

    let dir = tempfile::tempdir()?;
    let options = OpenOptions::new().kdf(KdfParams::new(1024, 1, 1)?);
    let mut bob = Store::create(dir.path().join("bob.db"), b"bob", &options)?;
    let otk = bob.fresh_one_time_prekeys(1, 1_700_000_000_000)?;
    let bundle = bob.prekey_bundle(Some(otk[0].0))?;

    let mut rng = ChaCha20Rng::from_seed([7; 32]);
    let alice = IdentityKeyPair::generate(&mut rng);
    let mut to_bob = SessionSet::new();
    to_bob.initiate(&alice, &bundle, &mut rng)?;

    // Phase 1: PreKeyMessages.
    let prekey_wire = encrypt_many(&mut to_bob, &mut rng, total)?;
    receive_batches(&mut bob, &envelopes(&prekey_wire), batch, "PreKeyMessages")?;

    // Bob replies once; from then on Alice sends plain Messages.
    let reply = bob.send("alice", b"reply", 0)?;
    to_bob.decrypt(&alice, &NoPreKeys, &reply.ciphertext, &mut rng)?;

    // Phase 2: plain Messages.
    let plain_wire = encrypt_many(&mut to_bob, &mut rng, total + single)?;
    let plain = envelopes(&plain_wire);
    receive_batches(&mut bob, &plain[..total], batch, "Messages")?;

    let start = Instant::now();
    for envelope in &plain[total..] {
        bob.receive(envelope)?;
    }
    println!(
        "receive, one commit each: {single} messages: {:.0} messages/s",
        single as f64 / start.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    for _ in 0..single {
        let entry = bob.send("alice", b"x", 0)?;
        bob.mark_sent(&entry.id, 0)?;
    }
    println!(
        "send + mark_sent, two commits each: {single} messages: {:.0} messages/s",
        single as f64 / start.elapsed().as_secs_f64()
    );
    Ok(())
}
