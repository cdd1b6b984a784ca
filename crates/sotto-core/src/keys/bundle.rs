//! The prekey bundle a relay serves to an initiator.

use super::{
    IdentityKey, IdentityKeyPair, OneTimePreKey, OneTimePreKeyId, PreKeyPublic, Signature,
    SignedPreKey, SignedPreKeyId, check_x25519_public,
};
use crate::error::{Error, Result};

/// Version byte of the bundle encoding.
pub const BUNDLE_VERSION: u8 = 0x01;

/// A responder's published keys: identity, signed prekey with signature,
/// and at most one one-time prekey.
///
/// Encoding: `0x01 || IK(32) || u32be(spk_id) || SPK(32) || sig(64) ||
/// has_opk(0x00|0x01) || [u32be(opk_id) || OPK(32)]` — 134 or 170 bytes.
///
/// The fields can be read (and changed) directly; outside this crate a
/// bundle is built with [`new`](Self::new), [`from_parts`](Self::from_parts)
/// or [`decode`](Self::decode), so that a later version can add a field
/// without breaking callers.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PreKeyBundle {
    /// The responder's identity key.
    pub identity_key: IdentityKey,
    /// Id of the signed prekey.
    pub signed_prekey_id: SignedPreKeyId,
    /// The signed prekey (X25519).
    pub signed_prekey: PreKeyPublic,
    /// `Ed25519-Sign(IK, Encode(SPK))`.
    pub signed_prekey_signature: Signature,
    /// One one-time prekey `(id, key)`, if the relay had one left.
    pub one_time_prekey: Option<(OneTimePreKeyId, PreKeyPublic)>,
}

impl PreKeyBundle {
    /// The bundle for a local identity and its keys.
    pub fn new(
        identity: &IdentityKeyPair,
        signed_prekey: &SignedPreKey,
        one_time_prekey: Option<&OneTimePreKey>,
    ) -> Self {
        Self::from_parts(
            *identity.public(),
            signed_prekey.id(),
            *signed_prekey.public(),
            *signed_prekey.signature(),
            one_time_prekey.map(|k| (k.id(), *k.public())),
        )
    }

    /// A bundle from its public parts, as a relay stores them. Nothing is
    /// checked here: call [`verify`](Self::verify) before using it.
    pub fn from_parts(
        identity_key: IdentityKey,
        signed_prekey_id: SignedPreKeyId,
        signed_prekey: PreKeyPublic,
        signed_prekey_signature: Signature,
        one_time_prekey: Option<(OneTimePreKeyId, PreKeyPublic)>,
    ) -> Self {
        Self {
            identity_key,
            signed_prekey_id,
            signed_prekey,
            signed_prekey_signature,
            one_time_prekey,
        }
    }

    /// Checks the signed prekey's signature, then that the signed and the
    /// one-time prekey are canonical and not of small order
    /// ([`check_x25519_public`]). The initiator calls this (via
    /// `Session::initiate`) before any Diffie-Hellman; a relay calls the same
    /// checks before publishing keys.
    pub fn verify(&self) -> Result<()> {
        self.identity_key
            .verify(&self.signed_prekey.encode(), &self.signed_prekey_signature)?;
        check_x25519_public(&self.signed_prekey)?;
        if let Some((_, key)) = &self.one_time_prekey {
            check_x25519_public(key)?;
        }
        Ok(())
    }

    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(170);
        out.push(BUNDLE_VERSION);
        out.extend_from_slice(self.identity_key.as_bytes());
        out.extend_from_slice(&self.signed_prekey_id.get().to_be_bytes());
        out.extend_from_slice(self.signed_prekey.as_bytes());
        out.extend_from_slice(self.signed_prekey_signature.as_bytes());
        match &self.one_time_prekey {
            None => out.push(0x00),
            Some((id, key)) => {
                out.push(0x01);
                out.extend_from_slice(&id.get().to_be_bytes());
                out.extend_from_slice(key.as_bytes());
            }
        }
        out
    }

    /// Strict decoding (does not verify the signature: call [`verify`](Self::verify)).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = crate::wire::Reader::new(bytes);
        let version = r.u8()?;
        if version != BUNDLE_VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let identity_key = IdentityKey::from_bytes(r.array::<32>()?)?;
        let signed_prekey_id = SignedPreKeyId::new(r.u32()?);
        let signed_prekey = PreKeyPublic::from_bytes(*r.array::<32>()?);
        let signed_prekey_signature = Signature::from_bytes(*r.array::<64>()?);
        let one_time_prekey = match r.u8()? {
            0x00 => None,
            0x01 => Some((
                OneTimePreKeyId::new(r.u32()?),
                PreKeyPublic::from_bytes(*r.array::<32>()?),
            )),
            other => return Err(Error::InvalidFlag(other)),
        };
        r.finish()?;
        Ok(Self::from_parts(
            identity_key,
            signed_prekey_id,
            signed_prekey,
            signed_prekey_signature,
            one_time_prekey,
        ))
    }
}

impl core::fmt::Debug for PreKeyBundle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PreKeyBundle")
            .field("identity_key", &self.identity_key)
            .field("signed_prekey_id", &self.signed_prekey_id)
            .field(
                "one_time_prekey_id",
                &self.one_time_prekey.map(|(id, _)| id),
            )
            .finish()
    }
}
