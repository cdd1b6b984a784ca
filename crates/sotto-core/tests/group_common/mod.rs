//! Shared setup for the group tests: a seeded RNG, a sender with a
//! receiver built from its distribution, and the "refused and unchanged"
//! check.
#![allow(dead_code)]

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sotto_core::group::{GroupError, GroupId, SenderKey, SenderKeyDistribution, SenderKeyReceiver};

/// A seeded CSPRNG: every run draws the same keys.
pub(crate) fn rng(seed: u64) -> ChaCha20Rng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(b"sotto-gr");
    ChaCha20Rng::from_seed(bytes)
}

/// The plaintext of message `i`.
pub(crate) fn text(i: usize) -> Vec<u8> {
    format!("group message {i}").into_bytes()
}

/// A group with one sender (Alice's device) and one member device that
/// holds a receiver for her, built from her first distribution after it
/// went through its bytes, as it would through a pairwise session.
pub(crate) struct Group {
    pub(crate) id: GroupId,
    pub(crate) alice: SenderKey,
    pub(crate) bob: SenderKeyReceiver,
    pub(crate) rng: ChaCha20Rng,
}

impl Group {
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = rng(seed);
        let id = GroupId::generate(&mut rng);
        let alice = SenderKey::generate(id, &mut rng);
        let bob = SenderKeyReceiver::new(&through_bytes(&alice.distribution()));
        Self {
            id,
            alice,
            bob,
            rng,
        }
    }

    /// Alice encrypts message `i`.
    pub(crate) fn send(&mut self, i: usize) -> Vec<u8> {
        self.alice.encrypt(&text(i)).expect("encrypt")
    }

    /// Alice encrypts `n` messages, numbered from `from`.
    pub(crate) fn send_many(&mut self, from: usize, n: usize) -> Vec<Vec<u8>> {
        (from..from + n).map(|i| self.send(i)).collect()
    }

    /// Bob decrypts `wire` and must get message `i`.
    pub(crate) fn receive(&mut self, wire: &[u8], i: usize) {
        let plaintext = self.bob.decrypt(wire).expect("decrypt");
        assert_eq!(plaintext, text(i));
    }
}

/// A distribution encoded and decoded again.
pub(crate) fn through_bytes(d: &SenderKeyDistribution) -> SenderKeyDistribution {
    SenderKeyDistribution::from_bytes(d.to_bytes().as_slice()).expect("a distribution decodes")
}

/// Decrypting `wire` fails, and the receiver is byte for byte what it was.
pub(crate) fn reject_unchanged(receiver: &mut SenderKeyReceiver, wire: &[u8]) -> GroupError {
    let before = receiver.to_bytes();
    let mut out = b"left over".to_vec();
    let err = receiver
        .decrypt_into(wire, &mut out)
        .expect_err("the message must be refused");
    assert!(out.is_empty(), "a refused decrypt leaves no output");
    assert_eq!(
        receiver.to_bytes(),
        before,
        "a refused decrypt changed the receiver ({err})"
    );
    err
}
