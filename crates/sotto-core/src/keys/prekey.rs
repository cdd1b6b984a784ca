//! Signed prekeys and one-time prekeys.

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::{IdentityKeyPair, Secret32, encode_x25519, random_secret, x25519_public};
use crate::error::{Error, Result};

/// Version byte of the serialized prekey formats below.
const PREKEY_STATE_VERSION: u8 = 0x01;

/// A medium-term X25519 prekey, signed by the identity key:
/// `sig = Ed25519-Sign(IK, Encode(SPK_pub))`.
#[derive(Clone)]
pub struct SignedPreKey {
    id: u32,
    private: Secret32,
    public: [u8; 32],
    signature: [u8; 64],
}

impl SignedPreKey {
    /// A fresh signed prekey with `id`, signed by `identity` (32 bytes drawn).
    pub fn generate<R: CryptoRng + ?Sized>(
        id: u32,
        identity: &IdentityKeyPair,
        rng: &mut R,
    ) -> Self {
        Self::from_private(id, identity, random_secret(rng))
    }

    /// The signed prekey whose private key is `private` (used by test
    /// vectors and by restoring from storage).
    pub fn from_private_bytes(id: u32, identity: &IdentityKeyPair, private: &[u8; 32]) -> Self {
        Self::from_private(id, identity, Secret32::new(*private))
    }

    fn from_private(id: u32, identity: &IdentityKeyPair, private: Secret32) -> Self {
        let public = x25519_public(&private);
        let signature = identity.sign(&encode_x25519(&public));
        Self {
            id,
            private,
            public,
            signature,
        }
    }

    /// The prekey id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The X25519 public key.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    /// The identity key's signature over `Encode(public)`.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    pub(crate) fn private(&self) -> &Secret32 {
        &self.private
    }

    /// Serializes the key pair for storage: `0x01 || u32be(id) || private(32)
    /// || signature(64)`. The result holds a secret and is wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(101));
        out.push(PREKEY_STATE_VERSION);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(self.private.as_bytes());
        out.extend_from_slice(&self.signature);
        out
    }

    /// Restores a key serialized by [`SignedPreKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 101 {
            return Err(Error::CorruptState("signed prekey length"));
        }
        if bytes[0] != PREKEY_STATE_VERSION {
            return Err(Error::UnsupportedVersion(bytes[0]));
        }
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let private = Secret32::from_slice(&bytes[5..37]).ok_or(Error::CorruptState("spk"))?;
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[37..101]);
        let public = x25519_public(&private);
        Ok(Self {
            id,
            private,
            public,
            signature,
        })
    }
}

impl core::fmt::Debug for SignedPreKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SignedPreKey")
            .field("id", &self.id)
            .field("private", &"<redacted>")
            .finish()
    }
}

/// A one-time X25519 prekey. The responder deletes it once the first
/// message that used it decrypts.
#[derive(Clone)]
pub struct OneTimePreKey {
    id: u32,
    private: Secret32,
    public: [u8; 32],
}

impl OneTimePreKey {
    /// A fresh one-time prekey with `id` (32 bytes drawn).
    pub fn generate<R: CryptoRng + ?Sized>(id: u32, rng: &mut R) -> Self {
        let private = random_secret(rng);
        let public = x25519_public(&private);
        Self {
            id,
            private,
            public,
        }
    }

    /// The one-time prekey whose private key is `private`.
    pub fn from_private_bytes(id: u32, private: &[u8; 32]) -> Self {
        let private = Secret32::new(*private);
        let public = x25519_public(&private);
        Self {
            id,
            private,
            public,
        }
    }

    /// The prekey id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The X25519 public key.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    pub(crate) fn private(&self) -> &Secret32 {
        &self.private
    }

    /// Serializes the key pair for storage: `0x01 || u32be(id) || private(32)`.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(37));
        out.push(PREKEY_STATE_VERSION);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(self.private.as_bytes());
        out
    }

    /// Restores a key serialized by [`OneTimePreKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 37 {
            return Err(Error::CorruptState("one-time prekey length"));
        }
        if bytes[0] != PREKEY_STATE_VERSION {
            return Err(Error::UnsupportedVersion(bytes[0]));
        }
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let private = Secret32::from_slice(&bytes[5..37]).ok_or(Error::CorruptState("opk"))?;
        let public = x25519_public(&private);
        Ok(Self {
            id,
            private,
            public,
        })
    }
}

impl core::fmt::Debug for OneTimePreKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OneTimePreKey")
            .field("id", &self.id)
            .field("private", &"<redacted>")
            .finish()
    }
}

/// Where a responder finds its prekeys when a PreKeyMessage arrives (the
/// store implements it over its database).
pub trait PreKeySource {
    /// The signed prekey with `id`, current or kept from before a rotation.
    fn signed_prekey(&self, id: u32) -> Option<SignedPreKey>;
    /// The unused one-time prekey with `id`.
    fn one_time_prekey(&self, id: u32) -> Option<OneTimePreKey>;
}
