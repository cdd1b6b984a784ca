//! Unidentified-access keys: who may queue envelopes for a mailbox without
//! telling the relay who they are (docs/relay.md §5 and §6, docs/client.md
//! "Access keys").
//!
//! ```text
//! access_key = HKDF-SHA256(salt = none, ikm = identity seed,
//!                          info = "sotto/unidentified-access/v1", L = 16)
//! verifier   = SHA-256("sotto/access-verifier/v1" || access_key)    (32 bytes)
//! ```
//!
//! A profile's owner publishes the verifier with its signed prekey and gives
//! the key, inside end-to-end encrypted messages, to the people it writes
//! to. A sender that presents the key proves to the relay that the owner
//! wrote to it, and nothing else: the key is the same for every contact,
//! so the relay cannot tell contacts apart by it, and the verifier does not
//! reveal the key. A relay sees the key of each `Send` that carries one, so
//! the key is a spam filter, not a secret from the relay.

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};
use crate::keys::IdentityKeyPair;

/// Length of an access key.
pub const ACCESS_KEY_LEN: usize = 16;
/// Length of an access verifier.
pub const ACCESS_VERIFIER_LEN: usize = 32;
/// HKDF info string of the access key.
pub const ACCESS_KEY_INFO: &[u8] = b"sotto/unidentified-access/v1";
/// Domain string hashed in front of the key to make its verifier.
pub const ACCESS_VERIFIER_DOMAIN: &[u8] = b"sotto/access-verifier/v1";

/// A profile's unidentified-access key: 16 secret bytes derived from its
/// identity seed. Whoever holds it may queue envelopes for the profile's
/// mailbox without using up the mailbox's first-contact allowance.
///
/// Lives in a `Box`, is wiped on drop, compares in constant time, and its
/// `Debug` is redacted.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AccessKey(Box<[u8; ACCESS_KEY_LEN]>);

impl AccessKey {
    /// The access key of `identity`: HKDF-SHA256 over its seed with the
    /// info string [`ACCESS_KEY_INFO`]. The same identity always gives the
    /// same key, so it never has to be stored.
    pub fn derive(identity: &IdentityKeyPair) -> Result<Self> {
        let seed = identity.to_seed();
        let hk = Hkdf::<Sha256>::new(None, seed.as_slice());
        let mut key = Box::new([0u8; ACCESS_KEY_LEN]);
        hk.expand(ACCESS_KEY_INFO, key.as_mut_slice())
            .map_err(|_| Error::CorruptState("hkdf length"))?;
        Ok(Self(key))
    }

    /// A key received from its owner (in a message) or read back from
    /// storage. The array passed in is wiped.
    pub fn from_bytes(mut bytes: [u8; ACCESS_KEY_LEN]) -> Self {
        let key = Self(Box::new(bytes));
        bytes.zeroize();
        key
    }

    /// A key from a slice of exactly [`ACCESS_KEY_LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; ACCESS_KEY_LEN] = bytes.try_into().ok()?;
        let mut key = Box::new([0u8; ACCESS_KEY_LEN]);
        key.copy_from_slice(bytes);
        Some(Self(key))
    }

    /// The key's bytes, to put on the wire or into a sealed record. This
    /// exposes the secret: callers copy it only into buffers that are
    /// encrypted or wiped.
    pub fn as_bytes(&self) -> &[u8; ACCESS_KEY_LEN] {
        &self.0
    }

    /// The verifier the owner publishes: `SHA-256("sotto/access-verifier/v1"
    /// || key)`. Public: it proves a key without revealing it.
    pub fn verifier(&self) -> AccessVerifier {
        let mut h = Sha256::new();
        h.update(ACCESS_VERIFIER_DOMAIN);
        h.update(self.0.as_slice());
        let digest = Zeroizing::new(<[u8; ACCESS_VERIFIER_LEN]>::from(h.finalize()));
        AccessVerifier(*digest)
    }
}

impl PartialEq for AccessKey {
    /// In constant time.
    fn eq(&self, other: &Self) -> bool {
        self.0.as_slice().ct_eq(other.0.as_slice()).into()
    }
}

impl Eq for AccessKey {}

impl core::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("AccessKey(<redacted>)")
    }
}

/// What a mailbox owner publishes so that the relay can check access keys:
/// the SHA-256 of its [`AccessKey`] under a domain string. Public.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccessVerifier([u8; ACCESS_VERIFIER_LEN]);

impl AccessVerifier {
    /// A verifier as published (read from an upload or from storage).
    pub fn from_bytes(bytes: [u8; ACCESS_VERIFIER_LEN]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; ACCESS_VERIFIER_LEN] {
        &self.0
    }

    /// Whether `key` is the key this verifier was made from, compared in
    /// constant time (the relay's check of a `Send`).
    pub fn admits(&self, key: &AccessKey) -> bool {
        self.0.ct_eq(&key.verifier().0).into()
    }
}

impl core::fmt::Debug for AccessVerifier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "AccessVerifier(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_the_identity_and_only_its_verifier_admits_it() {
        let alice = IdentityKeyPair::from_seed(&[1; 32]);
        let bob = IdentityKeyPair::from_seed(&[2; 32]);
        let key = AccessKey::derive(&alice).unwrap();
        assert_eq!(key, AccessKey::derive(&alice).unwrap());
        let other = AccessKey::derive(&bob).unwrap();
        assert_ne!(key, other);
        let verifier = key.verifier();
        assert!(verifier.admits(&key));
        assert!(!verifier.admits(&other));
        let mut flipped = *key.as_bytes();
        flipped[15] ^= 1;
        assert!(!verifier.admits(&AccessKey::from_bytes(flipped)));
        // The verifier is not the key, nor a prefix of it.
        assert_ne!(&verifier.as_bytes()[..16], key.as_bytes());
    }

    #[test]
    fn the_derivation_matches_its_definition() {
        let id = IdentityKeyPair::from_seed(&[9; 32]);
        let mut expected = [0u8; 16];
        Hkdf::<Sha256>::new(None, &[9; 32])
            .expand(b"sotto/unidentified-access/v1", &mut expected)
            .unwrap();
        let key = AccessKey::derive(&id).unwrap();
        assert_eq!(key.as_bytes(), &expected);
        let mut h = Sha256::new();
        h.update(b"sotto/access-verifier/v1");
        h.update(expected);
        let verifier: [u8; 32] = h.finalize().into();
        assert_eq!(key.verifier().as_bytes(), &verifier);
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let key = AccessKey::from_bytes([0xAB; 16]);
        let shown = format!("{key:?}");
        assert_eq!(shown, "AccessKey(<redacted>)");
        assert!(!shown.to_lowercase().contains("ab"));
        assert!(AccessKey::from_slice(&[1; 15]).is_none());
        assert_eq!(
            AccessKey::from_slice(&[1; 16]),
            Some(AccessKey::from_bytes([1; 16]))
        );
    }
}
