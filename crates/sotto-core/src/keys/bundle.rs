//! The prekey bundle a relay serves to an initiator.

use super::{
    IdentityKey, IdentityKeyPair, KemPreKey, KemPreKeyId, KemPublic, OneTimePreKey,
    OneTimePreKeyId, PreKeyPublic, Signature, SignedKemPreKey, SignedPreKey, SignedPreKeyId,
    check_x25519_public,
};
use crate::error::{Error, Result};

/// Version byte of the bundle encoding of protocol v1.
pub const BUNDLE_VERSION: u8 = 0x01;
/// Version byte of the bundle encoding of protocol v2 (with a KEM prekey).
pub const BUNDLE_VERSION_V2: u8 = 0x02;

/// What the signed prekey's signature covers when its owner speaks
/// protocol v2 only: `V2_ONLY_DOMAIN || Encode(SPK)`, so that no v1 bundle
/// of that key verifies (PROTOCOL.md section 16, "Downgrade").
pub const V2_ONLY_DOMAIN: &[u8] = b"Sotto_SPK_v2_only";

/// The protocol versions a bundle's owner speaks: bit 0 is v1, bit 1 v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolVersions(u8);

impl ProtocolVersions {
    /// Version 1 only (every v1 bundle).
    pub const V1: Self = Self(0x01);
    /// Versions 1 and 2: a v2 bundle whose signed prekey v1 initiators can
    /// use too.
    pub const V1_AND_V2: Self = Self(0x03);
    /// Version 2 only: the signed prekey's signature is over
    /// [`V2_ONLY_DOMAIN`]` || Encode(SPK)`, so no v1 bundle verifies.
    pub const V2_ONLY: Self = Self(0x02);

    /// The byte on the wire; `None` for a combination that does not exist.
    pub fn from_byte(byte: u8) -> Option<Self> {
        [Self::V1, Self::V1_AND_V2, Self::V2_ONLY]
            .into_iter()
            .find(|v| v.0 == byte)
    }

    /// The byte on the wire.
    pub fn to_byte(self) -> u8 {
        self.0
    }

    /// Whether version 1 is among them.
    pub fn speaks_v1(self) -> bool {
        self.0 & 0x01 != 0
    }

    /// Whether version 2 is among them.
    pub fn speaks_v2(self) -> bool {
        self.0 & 0x02 != 0
    }

    /// The highest of them.
    pub fn highest(self) -> u8 {
        if self.speaks_v2() { 2 } else { 1 }
    }
}

/// The message the signed prekey's signature covers for `versions`.
pub(crate) fn signed_prekey_message(versions: ProtocolVersions, spk: &PreKeyPublic) -> Vec<u8> {
    if versions.speaks_v1() {
        spk.encode().to_vec()
    } else {
        [V2_ONLY_DOMAIN, &spk.encode()[..]].concat()
    }
}

/// A responder's published keys: identity, signed prekey with signature,
/// at most one one-time prekey, and in protocol v2 an ML-KEM prekey.
///
/// Encoding (v1): `0x01 || IK(32) || u32be(spk_id) || SPK(32) || sig(64) ||
/// has_opk(0x00|0x01) || [u32be(opk_id) || OPK(32)]` — 134 or 170 bytes.
/// Encoding (v2): `0x02 || versions(1) ||` the same fields `|| u32be(kem_id)
/// || EK(1184) || kem_sig(64)` — 1387 or 1423 bytes.
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
    /// The versions its owner speaks (v1 for a v1 bundle).
    pub versions: ProtocolVersions,
    /// The ML-KEM prekey of a v2 bundle: a one-time one if the relay had
    /// one left, else the last-resort one.
    pub kem_prekey: Option<SignedKemPreKey>,
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
            versions: ProtocolVersions::V1,
            kem_prekey: None,
        }
    }

    /// This bundle as protocol v2's, with `kem_prekey` and the versions its
    /// owner speaks (`V1_AND_V2` or `V2_ONLY`; with `V2_ONLY` the signed
    /// prekey's signature must be [`SignedPreKey::v2_only_signature`]).
    pub fn with_kem_prekey(
        mut self,
        versions: ProtocolVersions,
        kem_prekey: SignedKemPreKey,
    ) -> Self {
        self.versions = versions;
        self.kem_prekey = Some(kem_prekey);
        self
    }

    /// The v2 bundle for a local identity and its keys (`V1_AND_V2`: the
    /// signed prekey keeps its v1 signature).
    pub fn new_v2(
        identity: &IdentityKeyPair,
        signed_prekey: &SignedPreKey,
        one_time_prekey: Option<&OneTimePreKey>,
        kem_prekey: &KemPreKey,
    ) -> Self {
        Self::new(identity, signed_prekey, one_time_prekey)
            .with_kem_prekey(ProtocolVersions::V1_AND_V2, kem_prekey.signed_public())
    }

    /// The highest protocol version this bundle lets an initiator use.
    pub fn version(&self) -> u8 {
        if self.kem_prekey.is_some() { 2 } else { 1 }
    }

    /// Checks the signed prekey's signature, then that the signed and the
    /// one-time prekey are canonical and not of small order
    /// ([`check_x25519_public`]). The initiator calls this (via
    /// `Session::initiate`) before any Diffie-Hellman; a relay calls the same
    /// checks before publishing keys.
    ///
    /// In a v2 bundle the signed prekey's signature covers what
    /// `versions` says (the v1 message, or the v2-only one), and the KEM
    /// prekey's signature is checked too; a bundle whose versions and KEM
    /// prekey disagree (v2 without one, or one without v2) is refused.
    pub fn verify(&self) -> Result<()> {
        if self.versions.speaks_v2() != self.kem_prekey.is_some() {
            return Err(Error::InvalidBundle("versions and KEM prekey disagree"));
        }
        self.identity_key.verify(
            &signed_prekey_message(self.versions, &self.signed_prekey),
            &self.signed_prekey_signature,
        )?;
        check_x25519_public(&self.signed_prekey)?;
        if let Some((_, key)) = &self.one_time_prekey {
            check_x25519_public(key)?;
        }
        if let Some(kem) = &self.kem_prekey {
            kem.verify(&self.identity_key)?;
        }
        Ok(())
    }

    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1423);
        match &self.kem_prekey {
            None => out.push(BUNDLE_VERSION),
            Some(_) => {
                out.push(BUNDLE_VERSION_V2);
                out.push(self.versions.to_byte());
            }
        }
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
        if let Some(kem) = &self.kem_prekey {
            out.extend_from_slice(&kem.id.get().to_be_bytes());
            out.extend_from_slice(kem.key.as_bytes());
            out.extend_from_slice(kem.signature.as_bytes());
        }
        out
    }

    /// Strict decoding (does not verify the signature: call [`verify`](Self::verify)).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = crate::wire::Reader::new(bytes);
        let version = r.u8()?;
        let versions = match version {
            BUNDLE_VERSION => ProtocolVersions::V1,
            BUNDLE_VERSION_V2 => match ProtocolVersions::from_byte(r.u8()?) {
                Some(v) if v.speaks_v2() => v,
                _ => return Err(Error::InvalidBundle("unknown protocol versions")),
            },
            other => return Err(Error::UnsupportedVersion(other)),
        };
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
        let kem_prekey = if versions.speaks_v2() {
            Some(SignedKemPreKey {
                id: KemPreKeyId::new(r.u32()?),
                key: KemPublic::from_bytes(r.take(super::KEM_PUBLIC_LEN)?)?,
                signature: Signature::from_bytes(*r.array::<64>()?),
            })
        } else {
            None
        };
        r.finish()?;
        let bundle = Self::from_parts(
            identity_key,
            signed_prekey_id,
            signed_prekey,
            signed_prekey_signature,
            one_time_prekey,
        );
        Ok(match kem_prekey {
            Some(kem) => bundle.with_kem_prekey(versions, kem),
            None => bundle,
        })
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
            .field("versions", &self.versions)
            .field("kem_prekey_id", &self.kem_prekey.as_ref().map(|k| k.id))
            .finish()
    }
}
