//! Shared setup for the integration tests: deterministic randomness, a
//! responder's prekey store, and a pair of established sessions.
#![allow(dead_code)]

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sotto_core::{
    Error, IdentityKeyPair, KemPreKey, KemPreKeyId, OneTimePreKey, OneTimePreKeyId, PreKeyBundle,
    PreKeySource, Session, SignedPreKey, SignedPreKeyId,
};

/// Id of the signed prekey every test party publishes.
pub(crate) const SPK_ID: SignedPreKeyId = SignedPreKeyId::new(1);
/// Id of the first one-time prekey of a party.
pub(crate) const FIRST_OPK_ID: OneTimePreKeyId = OneTimePreKeyId::new(100);

/// A seeded CSPRNG: every test run draws the same keys.
pub(crate) fn rng(seed: u64) -> ChaCha20Rng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(b"sotto-it");
    ChaCha20Rng::from_seed(bytes)
}

/// A responder's prekeys as a store would keep them: signed prekeys kept
/// across rotations, one-time prekeys until the caller deletes them.
#[derive(Clone, Default)]
pub(crate) struct PreKeys {
    signed: BTreeMap<SignedPreKeyId, SignedPreKey>,
    one_time: BTreeMap<OneTimePreKeyId, OneTimePreKey>,
    kem: BTreeMap<KemPreKeyId, KemPreKey>,
}

impl PreKeys {
    pub(crate) fn add_signed(&mut self, key: SignedPreKey) {
        self.signed.insert(key.id(), key);
    }

    pub(crate) fn add_one_time(&mut self, key: OneTimePreKey) {
        self.one_time.insert(key.id(), key);
    }

    /// Deletes a used one-time prekey, as the caller must after a
    /// successful `Session::respond`.
    pub(crate) fn delete_one_time(&mut self, id: OneTimePreKeyId) -> Option<OneTimePreKey> {
        self.one_time.remove(&id)
    }

    pub(crate) fn add_kem(&mut self, key: KemPreKey) {
        self.kem.insert(key.id(), key);
    }

    pub(crate) fn delete_kem(&mut self, id: KemPreKeyId) -> Option<KemPreKey> {
        self.kem.remove(&id)
    }

    pub(crate) fn has_one_time(&self, id: OneTimePreKeyId) -> bool {
        self.one_time.contains_key(&id)
    }

    pub(crate) fn one_time_count(&self) -> usize {
        self.one_time.len()
    }
}

impl PreKeySource for PreKeys {
    fn signed_prekey(&self, id: SignedPreKeyId) -> Option<SignedPreKey> {
        self.signed.get(&id).cloned()
    }

    fn one_time_prekey(&self, id: OneTimePreKeyId) -> Option<OneTimePreKey> {
        self.one_time.get(&id).cloned()
    }

    fn kem_prekey(&self, id: KemPreKeyId) -> Option<KemPreKey> {
        self.kem.get(&id).cloned()
    }
}

/// One party: an identity with a signed prekey and some one-time prekeys.
pub(crate) struct Party {
    pub(crate) identity: IdentityKeyPair,
    pub(crate) prekeys: PreKeys,
}

impl Party {
    /// A party with signed prekey `SPK_ID` and `one_time` one-time prekeys
    /// numbered from `FIRST_OPK_ID`.
    pub(crate) fn new(rng: &mut ChaCha20Rng, one_time: u32) -> Self {
        let identity = IdentityKeyPair::generate(rng);
        let mut prekeys = PreKeys::default();
        prekeys.add_signed(SignedPreKey::generate(SPK_ID, &identity, rng));
        for i in 0..one_time {
            prekeys.add_one_time(OneTimePreKey::generate(
                OneTimePreKeyId::new(FIRST_OPK_ID.get() + i),
                rng,
            ));
        }
        Self { identity, prekeys }
    }

    /// The bundle a relay would serve, with the one-time prekey `opk` if
    /// given (it must exist).
    pub(crate) fn bundle(&self, opk: Option<OneTimePreKeyId>) -> PreKeyBundle {
        let spk = self
            .prekeys
            .signed_prekey(SPK_ID)
            .expect("party has its signed prekey");
        let opk = opk.map(|id| {
            self.prekeys
                .one_time_prekey(id)
                .expect("party has the one-time prekey")
        });
        PreKeyBundle::new(&self.identity, &spk, opk.as_ref())
    }

    /// Runs `Session::respond` and, on success, deletes the one-time prekey
    /// it used, as a real responder does.
    pub(crate) fn respond(
        &mut self,
        wire: &[u8],
        rng: &mut ChaCha20Rng,
    ) -> Result<(Session, Vec<u8>), Error> {
        let (session, decrypted) = Session::respond(&self.identity, &self.prekeys, wire, rng)?;
        assert!(decrypted.new_session);
        if let Some(id) = decrypted.used_one_time_prekey {
            assert!(
                self.prekeys.delete_one_time(id).is_some(),
                "the used one-time prekey was in the store"
            );
        }
        Ok((session, decrypted.plaintext))
    }
}

/// Two parties with established sessions: Alice initiated (with a one-time
/// prekey), Bob responded, Bob's reply decrypted at Alice. Alice sends plain
/// Messages from now on; her next message starts a new chain.
pub(crate) struct Pair {
    pub(crate) alice: Party,
    pub(crate) bob: Party,
    /// Alice's session with Bob.
    pub(crate) a: Session,
    /// Bob's session with Alice.
    pub(crate) b: Session,
    pub(crate) rng: ChaCha20Rng,
}

impl Pair {
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = rng(seed);
        let alice = Party::new(&mut rng, 2);
        let mut bob = Party::new(&mut rng, 2);
        let mut a = Session::initiate(&alice.identity, &bob.bundle(Some(FIRST_OPK_ID)), &mut rng)
            .expect("initiate");
        let first = a.encrypt(b"hello bob").expect("encrypt");
        let (mut b, text) = bob.respond(&first, &mut rng).expect("respond");
        assert_eq!(text, b"hello bob");
        let reply = b.encrypt(b"hello alice").expect("encrypt");
        assert_eq!(
            a.decrypt(&reply, &mut rng).expect("decrypt"),
            b"hello alice"
        );
        assert!(!a.is_pending_prekey());
        Self {
            alice,
            bob,
            a,
            b,
            rng,
        }
    }

    /// Alice encrypts `text`.
    pub(crate) fn a_sends(&mut self, text: &[u8]) -> Vec<u8> {
        self.a.encrypt(text).expect("alice encrypts")
    }

    /// Bob encrypts `text`.
    pub(crate) fn b_sends(&mut self, text: &[u8]) -> Vec<u8> {
        self.b.encrypt(text).expect("bob encrypts")
    }

    /// Bob decrypts `wire`, which must succeed with `expected`.
    pub(crate) fn b_receives(&mut self, wire: &[u8], expected: &[u8]) {
        let got = self.b.decrypt(wire, &mut self.rng).expect("bob decrypts");
        assert_eq!(got, expected);
    }

    /// Alice decrypts `wire`, which must succeed with `expected`.
    pub(crate) fn a_receives(&mut self, wire: &[u8], expected: &[u8]) {
        let got = self.a.decrypt(wire, &mut self.rng).expect("alice decrypts");
        assert_eq!(got, expected);
    }

    /// One message each way, checked.
    pub(crate) fn round_trip(&mut self, tag: &str) {
        let text = format!("{tag}: alice to bob");
        let wire = self.a_sends(text.as_bytes());
        self.b_receives(&wire, text.as_bytes());
        let text = format!("{tag}: bob to alice");
        let wire = self.b_sends(text.as_bytes());
        self.a_receives(&wire, text.as_bytes());
    }
}

/// Plaintext number `i` of a test conversation (distinct for every `i`).
pub(crate) fn text(i: usize) -> Vec<u8> {
    format!("message number {i}").into_bytes()
}

/// Decrypts `wire` with `session`, asserts that it fails and that the
/// session's serialized state is byte-identical afterwards; returns the error.
pub(crate) fn reject_unchanged(session: &mut Session, wire: &[u8], rng: &mut ChaCha20Rng) -> Error {
    let before = session.to_bytes();
    let result = session.decrypt(wire, rng);
    let after = session.to_bytes();
    assert!(
        *before == *after,
        "a rejected message changed the session state"
    );
    match result {
        Ok(plaintext) => panic!("expected an error, decrypted {plaintext:?}"),
        Err(e) => e,
    }
}
