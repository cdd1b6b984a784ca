//! The identity key: Ed25519 for signatures, its X25519 form for X3DH.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::{ED25519_PREFIX, Secret32, Signature};
use crate::error::{Error, Result};

/// A party's long-term identity key pair.
///
/// Built from a 32-byte seed (RFC 8032). The X25519 form used in X3DH is
/// derived from the same seed: `clamp(SHA-512(seed)[0..32])`.
pub struct IdentityKeyPair {
    signing: SigningKey,
    dh_private: Secret32,
    public: IdentityKey,
}

impl IdentityKeyPair {
    /// A fresh identity from the caller's RNG (32 bytes drawn).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let seed = super::random_secret(rng);
        Self::from_seed(seed.as_bytes())
    }

    /// The identity whose Ed25519 seed is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let dh_private = Secret32::new(signing.to_scalar_bytes());
        let verifying = signing.verifying_key();
        let public = IdentityKey {
            bytes: verifying.to_bytes(),
            dh_public: verifying.to_montgomery().to_bytes(),
            key: Some(verifying),
        };
        Self {
            signing,
            dh_private,
            public,
        }
    }

    /// The seed, for persisting the identity (the store seals it).
    ///
    /// This exposes the secret on purpose: it is the only way to keep an
    /// identity across restarts. The returned buffer is wiped on drop.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> &IdentityKey {
        &self.public
    }

    /// Deterministic Ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature::from_bytes(self.signing.sign(message).to_bytes())
    }

    pub(crate) fn dh_private(&self) -> &Secret32 {
        &self.dh_private
    }
}

impl Clone for IdentityKeyPair {
    /// A copy of the key material (no derivation); both copies are wiped
    /// on drop.
    fn clone(&self) -> Self {
        Self {
            signing: self.signing.clone(),
            dh_private: self.dh_private.clone(),
            public: self.public,
        }
    }
}

impl core::fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("public", &self.public)
            .field("private", &"<redacted>")
            .finish()
    }
}

/// A validated Ed25519 identity public key.
///
/// Construction rejects encodings that are not canonical and keys of small
/// order (PROTOCOL.md "Primitives": verify strictly).
#[derive(Clone, Copy)]
pub struct IdentityKey {
    /// The decompressed key, when it was parsed here; `None` for a key
    /// restored by [`IdentityKey::from_validated_parts`], which parses it
    /// only when a signature is verified.
    key: Option<VerifyingKey>,
    bytes: [u8; 32],
    dh_public: [u8; 32],
}

impl IdentityKey {
    /// Parses and validates a 32-byte Ed25519 public key.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| Error::InvalidIdentityKey)?;
        // `from_bytes` accepts some non-canonical encodings; require that the
        // point re-encodes to exactly the bytes given.
        if key.is_weak() || key.to_edwards().compress().to_bytes() != *bytes {
            return Err(Error::InvalidIdentityKey);
        }
        Ok(Self {
            key: Some(key),
            bytes: *bytes,
            dh_public: key.to_montgomery().to_bytes(),
        })
    }

    /// A key validated earlier by [`IdentityKey::from_bytes`], restored
    /// from its two forms ([`as_bytes`](Self::as_bytes) and
    /// [`dh_public`](Self::dh_public)) without curve arithmetic.
    ///
    /// Only for values this library validated and the caller kept
    /// authenticated since (state sealed by the store, which opens only
    /// what it wrote); never for bytes from the network or a file others
    /// can write: nothing here checks that the two forms belong together
    /// or that the key is valid. A signature check with a key that is not
    /// a valid point fails ([`Error::InvalidSignature`]).
    pub fn from_validated_parts(bytes: [u8; 32], dh_public: [u8; 32]) -> Self {
        Self {
            key: None,
            bytes,
            dh_public,
        }
    }

    /// Parses a key from a slice that must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let arr: &[u8; 32] = bytes.try_into().map_err(|_| Error::InvalidIdentityKey)?;
        Self::from_bytes(arr)
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.bytes
    }

    /// The raw 32-byte Ed25519 public key, borrowed.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// `Encode(IK) = 0xED || key`.
    pub fn encode(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out[0] = ED25519_PREFIX;
        out[1..].copy_from_slice(&self.bytes);
        out
    }

    /// The X25519 form of this key (Montgomery u-coordinate).
    pub fn dh_public(&self) -> &[u8; 32] {
        &self.dh_public
    }

    /// Strict Ed25519 verification of `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<()> {
        let sig = ed25519_dalek::Signature::from_bytes(signature.as_bytes());
        let key = match self.key {
            Some(key) => key,
            None => VerifyingKey::from_bytes(&self.bytes).map_err(|_| Error::InvalidSignature)?,
        };
        key.verify_strict(message, &sig)
            .map_err(|_| Error::InvalidSignature)
    }
}

impl PartialEq for IdentityKey {
    fn eq(&self, other: &Self) -> bool {
        // Public values: no constant-time requirement.
        self.bytes == other.bytes
    }
}

impl Eq for IdentityKey {}

impl core::hash::Hash for IdentityKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl core::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "IdentityKey(")?;
        for b in &self.bytes[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}
