//! The Ed25519 key pair of one sender key chain: the sender signs every
//! group message with it, the receivers verify with the public half they
//! got in the chain's distribution.
//!
//! The chain key alone would let every member encrypt messages that
//! authenticate as any other member's (the AEAD key is shared); the
//! signature is what makes a group message the sender's.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::error::{GroupError, GroupResult};
use crate::keys::random_secret;

/// Length of a signature of a group message.
pub const GROUP_SIGNATURE_LEN: usize = 64;

/// The private half: kept by the sender only, never distributed.
pub(crate) struct SenderSigningKey(SigningKey);

impl SenderSigningKey {
    /// A fresh key pair: one 32-byte draw, the Ed25519 seed.
    pub(crate) fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let seed = random_secret(rng);
        Self::from_seed(seed.as_bytes())
    }

    pub(crate) fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The seed, for the serialized sender key; wiped on drop.
    pub(crate) fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    pub(crate) fn verifying_key(&self) -> SenderVerifyingKey {
        let key = self.0.verifying_key();
        SenderVerifyingKey {
            bytes: key.to_bytes(),
            key,
        }
    }

    /// Deterministic Ed25519 (RFC 8032) over `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; GROUP_SIGNATURE_LEN] {
        self.0.sign(message).to_bytes()
    }
}

impl core::fmt::Debug for SenderSigningKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SenderSigningKey(<redacted>)")
    }
}

/// The public half of a chain's signing key, as a distribution carries it.
///
/// Construction applies the strict key check of section 1: the encoding
/// must decode, be canonical (re-encode to the same 32 bytes) and not be
/// of small order.
#[derive(Clone, Copy)]
pub struct SenderVerifyingKey {
    key: VerifyingKey,
    bytes: [u8; 32],
}

impl SenderVerifyingKey {
    /// Parses and checks a 32-byte Ed25519 public key
    /// ([`GroupError::InvalidSigningKey`]).
    pub fn from_bytes(bytes: &[u8; 32]) -> GroupResult<Self> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| GroupError::InvalidSigningKey)?;
        // `from_bytes` accepts some non-canonical encodings that
        // `is_weak` does not catch: require the exact re-encoding.
        if key.is_weak() || key.to_edwards().compress().to_bytes() != *bytes {
            return Err(GroupError::InvalidSigningKey);
        }
        Ok(Self { key, bytes: *bytes })
    }

    /// The 32-byte Ed25519 public key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Strict Ed25519 verification ([`GroupError::InvalidSignature`]).
    pub(crate) fn verify(
        &self,
        message: &[u8],
        signature: &[u8; GROUP_SIGNATURE_LEN],
    ) -> GroupResult<()> {
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        self.key
            .verify_strict(message, &signature)
            .map_err(|_| GroupError::InvalidSignature)
    }
}

impl PartialEq for SenderVerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        // Public values: no constant-time requirement.
        self.bytes == other.bytes
    }
}

impl Eq for SenderVerifyingKey {}

impl core::fmt::Debug for SenderVerifyingKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SenderVerifyingKey(")?;
        for b in &self.bytes[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_and_non_canonical_keys_are_refused() {
        let mut small_order = [0u8; 32];
        small_order[0] = 1; // the neutral point
        assert_eq!(
            SenderVerifyingKey::from_bytes(&small_order).unwrap_err(),
            GroupError::InvalidSigningKey
        );
        // y = 3 + p: a point of large order, encoded non-canonically.
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xf0;
        non_canonical[31] = 0x7f;
        assert_eq!(
            SenderVerifyingKey::from_bytes(&non_canonical).unwrap_err(),
            GroupError::InvalidSigningKey
        );
        let good = SenderSigningKey::from_seed(&[3; 32]).verifying_key();
        assert_eq!(
            SenderVerifyingKey::from_bytes(good.as_bytes()).unwrap(),
            good
        );
    }

    #[test]
    fn signatures_verify_under_their_key_only() {
        let a = SenderSigningKey::from_seed(&[1; 32]);
        let b = SenderSigningKey::from_seed(&[2; 32]);
        let sig = a.sign(b"message");
        a.verifying_key().verify(b"message", &sig).unwrap();
        assert_eq!(
            b.verifying_key().verify(b"message", &sig),
            Err(GroupError::InvalidSignature)
        );
        assert_eq!(
            a.verifying_key().verify(b"messagf", &sig),
            Err(GroupError::InvalidSignature)
        );
        assert_eq!(format!("{a:?}"), "SenderSigningKey(<redacted>)");
    }
}
