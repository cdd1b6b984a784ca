//! Signed prekeys and one-time prekeys.

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::{
    IdentityKeyPair, OneTimePreKeyId, PreKeyPublic, Secret32, Signature, SignedPreKeyId,
    random_secret, x25519_public,
};
use crate::error::{Error, Result};

/// Version byte of the serialized prekey formats below.
const PREKEY_STATE_VERSION: u8 = 0x01;

/// A medium-term X25519 prekey, signed by the identity key:
/// `sig = Ed25519-Sign(IK, Encode(SPK_pub))`.
#[derive(Clone)]
pub struct SignedPreKey {
    id: SignedPreKeyId,
    private: Secret32,
    public: PreKeyPublic,
    signature: Signature,
}

impl SignedPreKey {
    /// A fresh signed prekey with `id`, signed by `identity` (32 bytes drawn).
    pub fn generate<R: CryptoRng + ?Sized>(
        id: SignedPreKeyId,
        identity: &IdentityKeyPair,
        rng: &mut R,
    ) -> Self {
        Self::from_private(id, identity, random_secret(rng))
    }

    /// The signed prekey whose private key is `private` (used by test
    /// vectors and by restoring from storage).
    pub fn from_private_bytes(
        id: SignedPreKeyId,
        identity: &IdentityKeyPair,
        private: &[u8; 32],
    ) -> Self {
        Self::from_private(id, identity, Secret32::new(*private))
    }

    fn from_private(id: SignedPreKeyId, identity: &IdentityKeyPair, private: Secret32) -> Self {
        let public = PreKeyPublic::from_bytes(x25519_public(&private));
        let signature = identity.sign(&public.encode());
        Self {
            id,
            private,
            public,
            signature,
        }
    }

    /// The prekey id.
    pub fn id(&self) -> SignedPreKeyId {
        self.id
    }

    /// The X25519 public key.
    pub fn public(&self) -> &PreKeyPublic {
        &self.public
    }

    /// The identity key's signature over `Encode(public)`.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The signature a v2-only owner publishes instead
    /// ([`ProtocolVersions::V2_ONLY`](super::ProtocolVersions::V2_ONLY)):
    /// over `V2_ONLY_DOMAIN || Encode(public)`, which no v1 initiator
    /// accepts.
    pub fn v2_only_signature(&self, identity: &IdentityKeyPair) -> Signature {
        identity.sign(&super::signed_prekey_message(
            super::ProtocolVersions::V2_ONLY,
            &self.public,
        ))
    }

    pub(crate) fn private(&self) -> &Secret32 {
        &self.private
    }

    /// Serializes the key pair for storage: `0x01 || u32be(id) || private(32)
    /// || signature(64)`. The result holds a secret and is wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(101));
        out.push(PREKEY_STATE_VERSION);
        out.extend_from_slice(&self.id.get().to_be_bytes());
        out.extend_from_slice(self.private.as_bytes());
        out.extend_from_slice(self.signature.as_bytes());
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
        let id = SignedPreKeyId::new(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]));
        let private = Secret32::from_slice(&bytes[5..37]).ok_or(Error::CorruptState("spk"))?;
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[37..101]);
        let public = PreKeyPublic::from_bytes(x25519_public(&private));
        Ok(Self {
            id,
            private,
            public,
            signature: Signature::from_bytes(signature),
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
    id: OneTimePreKeyId,
    private: Secret32,
    public: PreKeyPublic,
}

impl OneTimePreKey {
    /// A fresh one-time prekey with `id` (32 bytes drawn).
    pub fn generate<R: CryptoRng + ?Sized>(id: OneTimePreKeyId, rng: &mut R) -> Self {
        Self::from_private(id, random_secret(rng))
    }

    /// The one-time prekey whose private key is `private`.
    pub fn from_private_bytes(id: OneTimePreKeyId, private: &[u8; 32]) -> Self {
        Self::from_private(id, Secret32::new(*private))
    }

    fn from_private(id: OneTimePreKeyId, private: Secret32) -> Self {
        let public = PreKeyPublic::from_bytes(x25519_public(&private));
        Self {
            id,
            private,
            public,
        }
    }

    /// The prekey id.
    pub fn id(&self) -> OneTimePreKeyId {
        self.id
    }

    /// The X25519 public key.
    pub fn public(&self) -> &PreKeyPublic {
        &self.public
    }

    pub(crate) fn private(&self) -> &Secret32 {
        &self.private
    }

    /// Serializes the key pair for storage: `0x01 || u32be(id) || private(32)`.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(37));
        out.push(PREKEY_STATE_VERSION);
        out.extend_from_slice(&self.id.get().to_be_bytes());
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
        let id = OneTimePreKeyId::new(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]));
        let private = Secret32::from_slice(&bytes[5..37]).ok_or(Error::CorruptState("opk"))?;
        Ok(Self::from_private(id, private))
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
    fn signed_prekey(&self, id: SignedPreKeyId) -> Option<SignedPreKey>;
    /// The unused one-time prekey with `id`.
    fn one_time_prekey(&self, id: OneTimePreKeyId) -> Option<OneTimePreKey>;
    /// Protocol v2: the KEM prekey with `id` (the last-resort one, or an
    /// unused one-time one). The default has none: a source of a profile
    /// that publishes no KEM prekeys.
    fn kem_prekey(&self, id: super::KemPreKeyId) -> Option<super::KemPreKey> {
        let _ = id;
        None
    }
}
