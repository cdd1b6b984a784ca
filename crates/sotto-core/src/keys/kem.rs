//! ML-KEM-768 prekeys of protocol v2 (PROTOCOL.md section 16).
//!
//! A KEM prekey is an ML-KEM-768 key pair (FIPS 203) with a u32 id, whose
//! encapsulation key is signed by the identity key:
//! `sig = Ed25519-Sign(IK, EncodeKEM(ek))`, `EncodeKEM(ek) = 0x0A || ek`.
//! Its private part is kept as the 64-byte seed `d || z` of FIPS 203's
//! `ML-KEM.KeyGen_internal`, drawn from the caller's RNG in one read.

use ml_kem::kem::{Decapsulate, Encapsulate, KeyExport};
use ml_kem::{DecapsulationKey768, EncapsulationKey768};
use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{IdentityKey, IdentityKeyPair, KemPreKeyId, Secret32, Signature};
use crate::error::{Error, Result};

/// Length of an ML-KEM-768 encapsulation key.
pub const KEM_PUBLIC_LEN: usize = 1184;
/// Length of an ML-KEM-768 ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = 1088;
/// Length of the seed a KEM prekey's private part is kept as.
pub const KEM_SEED_LEN: usize = 64;
/// Type byte of `EncodeKEM`: ML-KEM-768.
pub const KEM_TYPE_ML_KEM_768: u8 = 0x0A;

/// Version byte of a serialized [`KemPreKey`].
const KEM_PREKEY_STATE_VERSION: u8 = 0x01;
/// Length of a serialized [`KemPreKey`].
const KEM_PREKEY_STATE_LEN: usize = 1 + 4 + KEM_SEED_LEN + 64;

/// An ML-KEM-768 encapsulation key, checked (FIPS 203's modulus check)
/// when it was decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct KemPublic(Box<[u8; KEM_PUBLIC_LEN]>);

impl KemPublic {
    /// The key from its 1184 bytes; refuses anything FIPS 203's input
    /// check refuses (`Error::InvalidKemKey`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let array: &[u8; KEM_PUBLIC_LEN] = bytes.try_into().map_err(|_| Error::InvalidKemKey)?;
        EncapsulationKey768::new(&(*array).into()).map_err(|_| Error::InvalidKemKey)?;
        Ok(Self(Box::new(*array)))
    }

    /// The 1184 bytes.
    pub fn as_bytes(&self) -> &[u8; KEM_PUBLIC_LEN] {
        &self.0
    }

    /// `EncodeKEM(ek) = 0x0A || ek`: what the identity key signs.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + KEM_PUBLIC_LEN);
        out.push(KEM_TYPE_ML_KEM_768);
        out.extend_from_slice(self.as_bytes());
        out
    }

    fn key(&self) -> Result<EncapsulationKey768> {
        EncapsulationKey768::new(&(*self.0).into()).map_err(|_| Error::InvalidKemKey)
    }
}

impl core::fmt::Debug for KemPublic {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "KemPublic({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// An ML-KEM-768 ciphertext, as a PreKeyMessage of protocol v2 carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct KemCiphertext(Box<[u8; KEM_CIPHERTEXT_LEN]>);

impl KemCiphertext {
    /// The ciphertext from its 1088 bytes (any such bytes: ML-KEM's
    /// decapsulation turns a forged one into an unrelated secret, which
    /// then fails the first message's authentication).
    pub fn from_bytes(bytes: &[u8; KEM_CIPHERTEXT_LEN]) -> Self {
        Self(Box::new(*bytes))
    }

    /// The 1088 bytes.
    pub fn as_bytes(&self) -> &[u8; KEM_CIPHERTEXT_LEN] {
        &self.0
    }
}

impl core::fmt::Debug for KemCiphertext {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("KemCiphertext(..)")
    }
}

/// The public half of a KEM prekey, as a bundle carries it: id, key and
/// the identity key's signature over `EncodeKEM(key)`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SignedKemPreKey {
    /// The prekey id.
    pub id: KemPreKeyId,
    /// The encapsulation key.
    pub key: KemPublic,
    /// `Ed25519-Sign(IK, EncodeKEM(key))`.
    pub signature: Signature,
}

impl SignedKemPreKey {
    /// Checks the signature with `identity`.
    pub fn verify(&self, identity: &IdentityKey) -> Result<()> {
        identity.verify(&self.key.encode(), &self.signature)
    }
}

/// A KEM prekey's private seed `d || z`, on the heap, wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct KemSeed(Box<[u8; KEM_SEED_LEN]>);

impl KemSeed {
    fn zero() -> Self {
        Self(Box::new([0u8; KEM_SEED_LEN]))
    }
}

/// An ML-KEM-768 prekey with its private seed (wiped on drop).
#[derive(Clone)]
pub struct KemPreKey {
    id: KemPreKeyId,
    seed: KemSeed,
    public: KemPublic,
    signature: Signature,
}

impl KemPreKey {
    /// A fresh KEM prekey with `id`, signed by `identity`: draws the 64
    /// bytes `d || z` in one read.
    pub fn generate<R: CryptoRng + ?Sized>(
        id: KemPreKeyId,
        identity: &IdentityKeyPair,
        rng: &mut R,
    ) -> Self {
        let mut seed = KemSeed::zero();
        rng.fill_bytes(seed.0.as_mut_slice());
        Self::from_seed(id, identity, &seed.0)
    }

    /// The KEM prekey whose seed is `seed` (`d || z`), signed by `identity`
    /// (test vectors, and restoring from storage).
    pub fn from_seed(
        id: KemPreKeyId,
        identity: &IdentityKeyPair,
        seed: &[u8; KEM_SEED_LEN],
    ) -> Self {
        let public = public_of(seed);
        let signature = identity.sign(&public.encode());
        Self {
            id,
            seed: KemSeed(Box::new(*seed)),
            public,
            signature,
        }
    }

    /// The prekey id.
    pub fn id(&self) -> KemPreKeyId {
        self.id
    }

    /// The encapsulation key.
    pub fn public(&self) -> &KemPublic {
        &self.public
    }

    /// The identity key's signature over `EncodeKEM(public)`.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// What a bundle carries of it.
    pub fn signed_public(&self) -> SignedKemPreKey {
        SignedKemPreKey {
            id: self.id,
            key: self.public.clone(),
            signature: self.signature,
        }
    }

    /// The shared secret of `ciphertext` (ML-KEM.Decaps; a ciphertext made
    /// for another key gives an unrelated secret, not an error).
    pub(crate) fn decapsulate(&self, ciphertext: &KemCiphertext) -> Secret32 {
        let key = decapsulation_key(&self.seed.0);
        let shared = key.decapsulate(&(*ciphertext.0).into());
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(shared.as_slice());
        Secret32::new(*bytes)
    }

    /// Serializes the key for storage: `0x01 || u32be(id) || seed(64) ||
    /// signature(64)`. The result holds a secret and is wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(KEM_PREKEY_STATE_LEN));
        out.push(KEM_PREKEY_STATE_VERSION);
        out.extend_from_slice(&self.id.get().to_be_bytes());
        out.extend_from_slice(self.seed.0.as_slice());
        out.extend_from_slice(self.signature.as_bytes());
        out
    }

    /// Restores a key serialized by [`KemPreKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != KEM_PREKEY_STATE_LEN {
            return Err(Error::CorruptState("KEM prekey length"));
        }
        if bytes[0] != KEM_PREKEY_STATE_VERSION {
            return Err(Error::UnsupportedVersion(bytes[0]));
        }
        let id = KemPreKeyId::new(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]));
        let mut seed = KemSeed::zero();
        seed.0.copy_from_slice(&bytes[5..5 + KEM_SEED_LEN]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[5 + KEM_SEED_LEN..]);
        Ok(Self {
            id,
            public: public_of(&seed.0),
            seed,
            signature: Signature::from_bytes(signature),
        })
    }
}

impl core::fmt::Debug for KemPreKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KemPreKey")
            .field("id", &self.id)
            .field("seed", &"<redacted>")
            .finish()
    }
}

fn decapsulation_key(seed: &[u8; KEM_SEED_LEN]) -> DecapsulationKey768 {
    DecapsulationKey768::from_seed((*seed).into())
}

fn public_of(seed: &[u8; KEM_SEED_LEN]) -> KemPublic {
    let key = decapsulation_key(seed);
    let bytes = key.encapsulation_key().to_bytes();
    let mut out = Box::new([0u8; KEM_PUBLIC_LEN]);
    out.copy_from_slice(bytes.as_slice());
    KemPublic(out)
}

/// ML-KEM.Encaps to `key`: draws the 32-byte message `m` from `rng` in one
/// read, returns the ciphertext and the shared secret.
pub(crate) fn encapsulate<R: CryptoRng + ?Sized>(
    key: &KemPublic,
    rng: &mut R,
) -> Result<(KemCiphertext, Secret32)> {
    let (ciphertext, shared) = key.key()?.encapsulate_with_rng(rng);
    let mut ct = Box::new([0u8; KEM_CIPHERTEXT_LEN]);
    ct.copy_from_slice(ciphertext.as_slice());
    let mut bytes = Zeroizing::new([0u8; 32]);
    bytes.copy_from_slice(shared.as_slice());
    Ok((KemCiphertext(ct), Secret32::new(*bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn encapsulated_secrets_agree_and_keys_round_trip() {
        let mut rng = StdRng::seed_from_u64(1);
        let identity = IdentityKeyPair::generate(&mut rng);
        let key = KemPreKey::generate(KemPreKeyId::new(7), &identity, &mut rng);
        key.signed_public().verify(identity.public()).unwrap();
        let (ct, sent) = encapsulate(key.public(), &mut rng).unwrap();
        assert_eq!(key.decapsulate(&ct).as_bytes(), sent.as_bytes());

        let restored = KemPreKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(restored.id(), key.id());
        assert_eq!(restored.public(), key.public());
        assert_eq!(restored.decapsulate(&ct).as_bytes(), sent.as_bytes());
        assert!(format!("{key:?}").contains("redacted"));

        // Another key's ciphertext gives another secret, not an error.
        let other = KemPreKey::generate(KemPreKeyId::new(8), &identity, &mut rng);
        assert_ne!(other.decapsulate(&ct).as_bytes(), sent.as_bytes());
    }

    #[test]
    fn bad_keys_and_signatures_are_refused() {
        let mut rng = StdRng::seed_from_u64(2);
        let identity = IdentityKeyPair::generate(&mut rng);
        let key = KemPreKey::generate(KemPreKeyId::new(1), &identity, &mut rng);
        assert!(matches!(
            KemPublic::from_bytes(&key.public().as_bytes()[1..]),
            Err(Error::InvalidKemKey)
        ));
        // A coefficient of 4095 (>= q = 3329) fails the modulus check.
        let mut bad = *key.public().as_bytes();
        bad[0] = 0xff;
        bad[1] |= 0x0f;
        assert!(matches!(
            KemPublic::from_bytes(&bad),
            Err(Error::InvalidKemKey)
        ));
        let mut signed = key.signed_public();
        signed.signature = Signature::from_bytes([0u8; 64]);
        assert!(signed.verify(identity.public()).is_err());
        let stranger = IdentityKeyPair::generate(&mut rng);
        assert!(key.signed_public().verify(stranger.public()).is_err());
        assert!(KemPreKey::from_bytes(&key.to_bytes()[1..]).is_err());
    }
}
