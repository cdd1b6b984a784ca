//! Session state as versioned bytes, for the store.
//!
//! Written as state version 0x03:
//!
//! ```text
//! 0x03 (version) || protocol version (0x01 | 0x02)
//! || role (0x00 initiator | 0x01 responder)
//! || local IK(32) || local IK as X25519(32)
//! || remote IK(32) || remote IK as X25519(32)
//! || base key EK_A(32) || RK(32)
//! || sending ratchet private(32) || sending ratchet public(32)
//! || has_remote(1) [|| remote ratchet public(32)]
//! || has_sending(1) [|| CKs(32) || u32be(Ns)] || u32be(PN)
//! || has_receiving(1) [|| CKr(32) || u32be(Nr)]
//! || has_pending(1) [|| u32be(spk_id) || has_opk(1) [|| u32be(opk_id)]
//!                     [|| u32be(kem_id) || CT(1088), protocol 0x02 only]]
//! || u16be(count) || count * (ratchet public(32) || u32be(N) || MK(32))
//! ```
//!
//! Version 0x03 keeps every value that costs curve arithmetic to compute
//! (the X25519 forms of the identity keys, the sending ratchet's public
//! key), so loading is parsing: the state is trusted to be what
//! [`Session::to_bytes`] wrote (the store seals it, and opens only what it
//! sealed). Versions 0x01 (a protocol 1 session: the fields above without
//! the protocol byte and the derived values) and 0x02 (a protocol 2
//! session: 0x02 || 0x02 || the same) are still read, validating the
//! identity keys and deriving the rest as before; the next save writes
//! 0x03.
//!
//! Decoding is strict (no trailing bytes, flags 0/1, count <= 2000, known
//! versions, a canonical base key) and returns `CorruptState` on any
//! violation.

use zeroize::Zeroizing;

use super::chain_key::ChainKey;
use super::message_key::MessageKey;
use super::root_key::RootKey;
use super::skipped::{MAX_SKIPPED_KEYS, SkippedKey, SkippedKeys};
use super::{PendingPreKey, RatchetKeyPair, Role, Session};
use crate::error::{Error, Result};
use crate::keys::{
    IdentityKey, KEM_CIPHERTEXT_LEN, KemCiphertext, KemPreKeyId, OneTimePreKeyId, Secret32,
    SignedPreKeyId,
};
use crate::wire::Reader;
use crate::x3dh::AD_LEN;

/// Version byte of the session format written before state version 0x03,
/// for protocol 1 sessions (still read).
pub const SESSION_STATE_VERSION: u8 = 0x01;
/// Version byte of the session format written before state version 0x03,
/// for protocol 2 sessions (still read).
pub const SESSION_STATE_VERSION_V2: u8 = 0x02;
/// Version byte of the session format [`Session::to_bytes`] writes: every
/// protocol version, with the values that cost curve arithmetic stored.
pub const SESSION_STATE_VERSION_V3: u8 = 0x03;

fn secret(r: &mut Reader<'_>) -> Result<Secret32> {
    Secret32::from_slice(r.take(32)?).ok_or(Error::CorruptState("secret length"))
}

fn corrupt(e: Error) -> Error {
    match e {
        Error::CorruptState(_) | Error::UnsupportedVersion(_) => e,
        Error::InvalidIdentityKey => Error::CorruptState("identity key"),
        Error::InvalidFlag(_) => Error::CorruptState("flag"),
        Error::TrailingBytes(_) => Error::CorruptState("trailing bytes"),
        _ => Error::CorruptState("truncated"),
    }
}

impl Session {
    /// Serializes the whole session. The bytes contain secrets (root,
    /// chain and message keys): seal them before they touch disk. The
    /// buffer is wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(1500 + self.skipped.len() * 68));
        out.push(SESSION_STATE_VERSION_V3);
        out.push(self.version);
        out.push(match self.role {
            Role::Initiator => 0x00,
            Role::Responder => 0x01,
        });
        out.extend_from_slice(self.local_identity.as_bytes());
        out.extend_from_slice(self.local_identity.dh_public());
        out.extend_from_slice(self.remote_identity.as_bytes());
        out.extend_from_slice(self.remote_identity.dh_public());
        out.extend_from_slice(&self.base_key);
        out.extend_from_slice(self.root_key.0.as_bytes());
        out.extend_from_slice(self.sending_ratchet.private.as_bytes());
        out.extend_from_slice(&self.sending_ratchet.public);
        match &self.remote_ratchet {
            None => out.push(0x00),
            Some(key) => {
                out.push(0x01);
                out.extend_from_slice(key);
            }
        }
        write_chain(&mut out, self.sending_chain.as_ref());
        out.extend_from_slice(&self.previous_counter.to_be_bytes());
        write_chain(&mut out, self.receiving_chain.as_ref());
        match &self.pending_prekey {
            None => out.push(0x00),
            Some(p) => {
                out.push(0x01);
                out.extend_from_slice(&p.signed_prekey_id.get().to_be_bytes());
                match p.one_time_prekey_id {
                    None => out.push(0x00),
                    Some(id) => {
                        out.push(0x01);
                        out.extend_from_slice(&id.get().to_be_bytes());
                    }
                }
                if let Some((id, ciphertext)) = &p.kem {
                    out.extend_from_slice(&id.get().to_be_bytes());
                    out.extend_from_slice(ciphertext.as_bytes());
                }
            }
        }
        // The count fits: the store never holds more than 2000 keys.
        let count = u16::try_from(self.skipped.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for k in self.skipped.iter().take(usize::from(count)) {
            out.extend_from_slice(&k.ratchet_key);
            out.extend_from_slice(&k.key.index().to_be_bytes());
            out.extend_from_slice(k.key.secret().as_bytes());
        }
        out
    }

    /// Restores a session from [`Session::to_bytes`] output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::decode(bytes).map_err(corrupt)
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let state_version = r.u8()?;
        let protocol = match state_version {
            SESSION_STATE_VERSION => crate::wire::VERSION,
            SESSION_STATE_VERSION_V2 => match r.u8()? {
                crate::wire::VERSION_V2 => crate::wire::VERSION_V2,
                _ => return Err(Error::CorruptState("protocol version")),
            },
            SESSION_STATE_VERSION_V3 => match r.u8()? {
                v @ (crate::wire::VERSION | crate::wire::VERSION_V2) => v,
                _ => return Err(Error::CorruptState("protocol version")),
            },
            other => return Err(Error::UnsupportedVersion(other)),
        };
        // Version 0x03 stores the derived values; the older ones are
        // validated and derived here.
        let derived = state_version == SESSION_STATE_VERSION_V3;
        let role = match r.u8()? {
            0x00 => Role::Initiator,
            0x01 => Role::Responder,
            _ => return Err(Error::CorruptState("role")),
        };
        let identity = |r: &mut Reader<'_>| -> Result<IdentityKey> {
            if derived {
                let bytes = *r.array::<32>()?;
                Ok(IdentityKey::from_validated_parts(bytes, *r.array::<32>()?))
            } else {
                IdentityKey::from_bytes(r.array::<32>()?)
            }
        };
        let local_identity = identity(&mut r)?;
        let remote_identity = identity(&mut r)?;
        let base_key = *r.array::<32>()?;
        // Sessions only ever hold a canonical EK_A (the wire refuses any
        // other); an initiator restored with another would send
        // PreKeyMessages that no responder can parse.
        if !crate::wire::is_canonical_x25519(&base_key) {
            return Err(Error::CorruptState("base key"));
        }
        let root_key = RootKey(secret(&mut r)?);
        let sending_private = secret(&mut r)?;
        let sending_ratchet = if derived {
            RatchetKeyPair::from_parts(sending_private, *r.array::<32>()?)
        } else {
            RatchetKeyPair::from_private(sending_private)
        };
        let remote_ratchet = if r.flag()? {
            Some(*r.array::<32>()?)
        } else {
            None
        };
        let sending_chain = read_chain(&mut r)?;
        let previous_counter = r.u32()?;
        let receiving_chain = read_chain(&mut r)?;
        let pending_prekey = if r.flag()? {
            let signed_prekey_id = SignedPreKeyId::new(r.u32()?);
            let one_time_prekey_id = if r.flag()? {
                Some(OneTimePreKeyId::new(r.u32()?))
            } else {
                None
            };
            let kem = if protocol == crate::wire::VERSION_V2 {
                let id = KemPreKeyId::new(r.u32()?);
                Some((
                    id,
                    KemCiphertext::from_bytes(r.array::<KEM_CIPHERTEXT_LEN>()?),
                ))
            } else {
                None
            };
            Some(PendingPreKey {
                signed_prekey_id,
                one_time_prekey_id,
                kem,
            })
        } else {
            None
        };
        let count = usize::from(r.u16()?);
        if count > MAX_SKIPPED_KEYS {
            return Err(Error::CorruptState("too many skipped keys"));
        }
        let mut skipped = SkippedKeys::default();
        for _ in 0..count {
            let ratchet_key = *r.array::<32>()?;
            let index = r.u32()?;
            let key = MessageKey::from_secret(index, secret(&mut r)?);
            skipped.push_restored(SkippedKey { ratchet_key, key });
        }
        r.finish()?;

        if role == Role::Responder && pending_prekey.is_some() {
            return Err(Error::CorruptState("responder with pending prekey"));
        }
        if role == Role::Initiator && (sending_chain.is_none() || remote_ratchet.is_none()) {
            return Err(Error::CorruptState("initiator without sending chain"));
        }
        if receiving_chain.is_some() != remote_ratchet.is_some() && role == Role::Responder {
            return Err(Error::CorruptState("receiving chain without ratchet key"));
        }

        let mut associated_data = [0u8; AD_LEN];
        let (first, second) = match role {
            Role::Initiator => (&local_identity, &remote_identity),
            Role::Responder => (&remote_identity, &local_identity),
        };
        associated_data[..33].copy_from_slice(&first.encode());
        associated_data[33..].copy_from_slice(&second.encode());

        Ok(Self {
            version: protocol,
            role,
            local_identity,
            remote_identity,
            associated_data,
            base_key,
            root_key,
            sending_ratchet,
            remote_ratchet,
            sending_chain,
            previous_counter,
            receiving_chain,
            skipped,
            pending_prekey,
        })
    }
}

fn write_chain(out: &mut Vec<u8>, chain: Option<&ChainKey>) {
    match chain {
        None => out.push(0x00),
        Some(c) => {
            out.push(0x01);
            out.extend_from_slice(c.key().as_bytes());
            out.extend_from_slice(&c.index().to_be_bytes());
        }
    }
}

fn read_chain(r: &mut Reader<'_>) -> Result<Option<ChainKey>> {
    if !r.flag()? {
        return Ok(None);
    }
    let key = secret(r)?;
    let index = r.u32()?;
    Ok(Some(ChainKey::new(key, index)))
}
