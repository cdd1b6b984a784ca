//! Checks of the `group_message` fuzz target, shared with the corpus
//! replay in `crates/sotto-core/tests/fuzz_corpus.rs`.
//!
//! A sender key and a receiver for it are built from fixed seeds, so every
//! run and every corpus file sees the same keys: the receiver holds two
//! chains (the sender rotated once) and skipped keys in both. Any input is
//!
//! - parsed as a group message and decrypted on a clone of the receiver:
//!   on error the receiver must be byte-identical; on success the same
//!   bytes must not decrypt a second time, and that refusal must not change
//!   it either;
//! - decoded as a distribution and, if it decodes, taken in by a clone of
//!   the receiver: a refusal changes nothing;
//! - decoded as a serialized receiver and sender key: what decodes
//!   serializes back to exactly the input, and a decoded sender key's
//!   next message decrypts under its own distribution.

use std::sync::LazyLock;

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sotto_core::group::{
    GroupId, GroupMessage, SenderKey, SenderKeyDistribution, SenderKeyReceiver,
};
use sotto_core::pad::MAX_PLAINTEXT_LEN;

/// The receiver and what it took to build it.
pub(crate) struct Fixture {
    /// Holds both of the sender's chains and skipped keys of each.
    pub(crate) receiver: SenderKeyReceiver,
    /// Every group message the sender made, in order. Three of them (the
    /// skipped ones) decrypt on a copy of the receiver.
    pub(crate) transcript: Vec<Vec<u8>>,
    /// The two distributions, in order.
    pub(crate) distributions: Vec<Vec<u8>>,
    /// The sender key after the last message.
    pub(crate) sender: SenderKey,
}

fn build() -> Fixture {
    let mut rng = ChaCha20Rng::from_seed([0x6A; 32]);
    let group = GroupId::generate(&mut rng);
    let mut sender = SenderKey::generate(group, &mut rng);
    let mut distributions = vec![sender.distribution().to_bytes().to_vec()];
    let mut receiver = SenderKeyReceiver::new(&sender.distribution());
    let mut transcript = Vec::new();
    for text in [&b"zero"[..], b"one", b"two", b"three"] {
        transcript.push(sender.encrypt(text).expect("encrypt"));
    }
    // Iteration 3 then 0: 1 and 2 stay skipped.
    receiver.decrypt(&transcript[3]).expect("decrypt");
    receiver.decrypt(&transcript[0]).expect("decrypt");
    sender.rotate(&mut rng);
    distributions.push(sender.distribution().to_bytes().to_vec());
    receiver
        .process(&sender.distribution())
        .expect("a new chain");
    for text in [&b"new zero"[..], b"new one"] {
        transcript.push(sender.encrypt(text).expect("encrypt"));
    }
    // The new chain's iteration 1: its 0 stays skipped.
    receiver.decrypt(&transcript[5]).expect("decrypt");
    Fixture {
        receiver,
        transcript,
        distributions,
        sender,
    }
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(build);

pub(crate) fn fixture() -> &'static Fixture {
    &FIXTURE
}

pub(crate) fn check(data: &[u8]) {
    let f = fixture();

    if let Ok(message) = GroupMessage::parse(data) {
        assert_eq!(message.signed_bytes().len() + 64, data.len());
    }
    let before = f.receiver.to_bytes();
    let mut receiver = f.receiver.clone();
    match receiver.decrypt(data) {
        Ok(plaintext) => {
            assert!(plaintext.len() <= MAX_PLAINTEXT_LEN);
            let after = receiver.to_bytes();
            assert!(
                receiver.decrypt(data).is_err(),
                "the same group message decrypted twice"
            );
            assert_eq!(
                receiver.to_bytes(),
                after,
                "a refused replay changed the receiver"
            );
        }
        Err(e) => {
            let _ = format!("{e} {e:?}");
            assert_eq!(
                receiver.to_bytes(),
                before,
                "a failed decrypt changed the receiver: {e}"
            );
        }
    }

    if let Ok(distribution) = SenderKeyDistribution::from_bytes(data) {
        assert_eq!(
            &distribution.to_bytes()[..],
            data,
            "distribution did not round-trip"
        );
        let _ = format!("{distribution:?}");
        let mut receiver = f.receiver.clone();
        if receiver.process(&distribution).is_err() {
            assert_eq!(
                receiver.to_bytes(),
                before,
                "a refused distribution changed the receiver"
            );
        }
    }

    if let Ok(restored) = SenderKeyReceiver::from_bytes(data) {
        assert_eq!(
            &restored.to_bytes()[..],
            data,
            "receiver did not round-trip"
        );
        let _ = format!("{restored:?}");
    }

    if let Ok(mut sender) = SenderKey::from_bytes(data) {
        assert_eq!(
            &sender.to_bytes()[..],
            data,
            "sender key did not round-trip"
        );
        let _ = format!("{sender:?}");
        let mut own = SenderKeyReceiver::new(&sender.distribution());
        // A chain at its last iteration cannot send: refused, unchanged.
        match sender.encrypt(b"fuzz") {
            Ok(wire) => assert_eq!(own.decrypt(&wire).ok().as_deref(), Some(&b"fuzz"[..])),
            Err(_) => assert_eq!(&sender.to_bytes()[..], data),
        }
    }
}
