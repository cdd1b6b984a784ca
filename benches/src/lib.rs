//! Shared setup for Sotto's criterion benchmarks (`cargo bench -p sotto-benches`).
#![forbid(unsafe_code)]

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sotto_core::{
    IdentityKeyPair, KemPreKey, KemPreKeyId, OneTimePreKey, OneTimePreKeyId, PreKeyBundle,
    PreKeySource, Session, SignedPreKey, SignedPreKeyId,
};

/// The plaintext sizes every throughput benchmark uses.
pub const SIZES: [usize; 4] = [64, 1024, 16 * 1024, 1024 * 1024];

/// A deterministic CSPRNG for reproducible runs.
pub fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

/// Bob's prekeys for one handshake.
pub struct BobKeys {
    /// Signed prekey.
    pub signed: SignedPreKey,
    /// One-time prekey.
    pub one_time: OneTimePreKey,
    /// ML-KEM-768 prekey (protocol v2).
    pub kem: KemPreKey,
}

impl PreKeySource for BobKeys {
    fn signed_prekey(&self, id: SignedPreKeyId) -> Option<SignedPreKey> {
        (id == self.signed.id()).then(|| self.signed.clone())
    }

    fn one_time_prekey(&self, id: OneTimePreKeyId) -> Option<OneTimePreKey> {
        (id == self.one_time.id()).then(|| self.one_time.clone())
    }

    fn kem_prekey(&self, id: KemPreKeyId) -> Option<KemPreKey> {
        (id == self.kem.id()).then(|| self.kem.clone())
    }
}

/// Two identities and Bob's published keys.
pub struct Parties {
    /// Alice's identity.
    pub alice: IdentityKeyPair,
    /// Bob's identity.
    pub bob: IdentityKeyPair,
    /// Bob's prekeys.
    pub keys: BobKeys,
}

impl Parties {
    /// Fresh parties from `rng`.
    pub fn new(rng: &mut ChaCha20Rng) -> Self {
        let alice = IdentityKeyPair::generate(rng);
        let bob = IdentityKeyPair::generate(rng);
        let keys = BobKeys {
            signed: SignedPreKey::generate(SignedPreKeyId::new(1), &bob, rng),
            one_time: OneTimePreKey::generate(OneTimePreKeyId::new(1), rng),
            kem: KemPreKey::generate(KemPreKeyId::new(1), &bob, rng),
        };
        Self { alice, bob, keys }
    }

    /// Bob's bundle.
    pub fn bundle(&self) -> PreKeyBundle {
        PreKeyBundle::new(&self.bob, &self.keys.signed, Some(&self.keys.one_time))
    }

    /// Bob's bundle of protocol v2 (with his KEM prekey).
    pub fn bundle_v2(&self) -> PreKeyBundle {
        PreKeyBundle::new_v2(
            &self.bob,
            &self.keys.signed,
            Some(&self.keys.one_time),
            &self.keys.kem,
        )
    }
}

/// Two sessions past the handshake (one message each way), so that what
/// follows is plain Messages.
pub fn established_pair(rng: &mut ChaCha20Rng) -> Result<(Session, Session), sotto_core::Error> {
    established(rng, false)
}

/// [`established_pair`] of protocol v2 (the hybrid handshake, v2 messages).
pub fn established_pair_v2(rng: &mut ChaCha20Rng) -> Result<(Session, Session), sotto_core::Error> {
    established(rng, true)
}

fn established(rng: &mut ChaCha20Rng, v2: bool) -> Result<(Session, Session), sotto_core::Error> {
    let parties = Parties::new(rng);
    let bundle = if v2 {
        parties.bundle_v2()
    } else {
        parties.bundle()
    };
    let mut alice = Session::initiate(&parties.alice, &bundle, rng)?;
    let first = alice.encrypt(b"hello")?;
    let (mut bob, _) = Session::respond(&parties.bob, &parties.keys, &first, rng)?;
    let reply = bob.encrypt(b"hi")?;
    alice.decrypt(&reply, rng)?;
    Ok((alice, bob))
}
