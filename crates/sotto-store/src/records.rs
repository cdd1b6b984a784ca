//! What is inside each sealed value (the plaintext formats).
//!
//! Every record starts with a version byte `0x01`. Variable-size records
//! are padded with `sotto_core::pad` before sealing, so their sizes reveal
//! as little as protocol ciphertexts do.
//!
//! ```text
//! identity      0x01 || Ed25519 seed(32)
//! prekey_ids    0x01 || u32be(next signed prekey id) || u32be(next one-time prekey id)
//! contact       pad(0x01 || flags(bit0 verified, bit1 has key) || [identity key(32)]
//!                   || u16be(len) || contact id || u16be(len) || name)
//! conversation  pad(0x01 || conversation key(32) || u16be(len) || contact id)
//! session       pad(SessionSet::to_bytes())
//! message       0x01 || direction(0 in | 1 out) || state(1) || u64be(timestamp ms)
//!                   || envelope id(16) || pad(body)
//! outbox        0x01 || u64be(seq) || envelope id(16) || ciphertext
//! signed prekey SignedPreKey::to_bytes()      one-time prekey OneTimePreKey::to_bytes()
//! ```

use sotto_core::IdentityKey;
use sotto_core::pad::{MAX_PLAINTEXT_LEN, pad_into, unpad};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::types::{DeliveryState, Direction, EnvelopeId, Message};

const RECORD_VERSION: u8 = 0x01;

/// Longest contact id accepted, in bytes.
pub const MAX_CONTACT_ID_LEN: usize = 1024;
/// Longest contact name accepted, in bytes.
pub const MAX_CONTACT_NAME_LEN: usize = 4096;

/// A malformed record; the caller names table and row.
#[derive(Debug)]
pub(crate) struct Malformed;

type Decoded<T> = core::result::Result<T, Malformed>;

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn take(&mut self, n: usize) -> Decoded<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(Malformed);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Decoded<u8> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Decoded<[u8; N]> {
        self.take(N)?.try_into().map_err(|_| Malformed)
    }

    fn u16(&mut self) -> Decoded<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Decoded<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Decoded<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn string(&mut self) -> Decoded<String> {
        let len = usize::from(self.u16()?);
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| Malformed)
    }

    fn version(&mut self) -> Decoded<()> {
        if self.u8()? == RECORD_VERSION {
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn rest(self) -> &'a [u8] {
        self.bytes
    }

    fn finish(self) -> Decoded<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(Malformed)
        }
    }
}

/// Pads `record` into a buffer that is wiped on drop.
pub(crate) fn padded(record: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::new());
    pad_into(record, &mut out)?;
    Ok(out)
}

/// The record inside a padded plaintext.
pub(crate) fn unpadded(plaintext: &[u8]) -> Decoded<&[u8]> {
    unpad(plaintext).map_err(|_| Malformed)
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    // Lengths are checked against the limits above before encoding.
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn check_contact_id(id: &str) -> Result<()> {
    if id.len() > MAX_CONTACT_ID_LEN {
        return Err(Error::TooLong {
            what: "contact id",
            len: id.len(),
            max: MAX_CONTACT_ID_LEN,
        });
    }
    Ok(())
}

pub(crate) fn check_contact_name(name: &str) -> Result<()> {
    if name.len() > MAX_CONTACT_NAME_LEN {
        return Err(Error::TooLong {
            what: "contact name",
            len: name.len(),
            max: MAX_CONTACT_NAME_LEN,
        });
    }
    Ok(())
}

pub(crate) fn check_body(body: &[u8]) -> Result<()> {
    if body.len() > MAX_PLAINTEXT_LEN {
        return Err(Error::TooLong {
            what: "message body",
            len: body.len(),
            max: MAX_PLAINTEXT_LEN,
        });
    }
    Ok(())
}

// ---- identity -------------------------------------------------------------

pub(crate) fn encode_identity(seed: &[u8; 32]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(33));
    out.push(RECORD_VERSION);
    out.extend_from_slice(seed);
    out
}

pub(crate) fn decode_identity(bytes: &[u8]) -> Decoded<Zeroizing<[u8; 32]>> {
    let mut r = Reader::new(bytes);
    r.version()?;
    let seed = Zeroizing::new(r.array::<32>()?);
    r.finish()?;
    Ok(seed)
}

// ---- prekey id counters ---------------------------------------------------

/// The next unused prekey ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PreKeyIds {
    pub(crate) next_signed: u32,
    pub(crate) next_one_time: u32,
}

pub(crate) fn encode_prekey_ids(ids: &PreKeyIds) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&ids.next_signed.to_be_bytes());
    out.extend_from_slice(&ids.next_one_time.to_be_bytes());
    out
}

pub(crate) fn decode_prekey_ids(bytes: &[u8]) -> Decoded<PreKeyIds> {
    let mut r = Reader::new(bytes);
    r.version()?;
    let ids = PreKeyIds {
        next_signed: r.u32()?,
        next_one_time: r.u32()?,
    };
    r.finish()?;
    Ok(ids)
}

// ---- contacts -------------------------------------------------------------

pub(crate) struct ContactRecord {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) identity_key: Option<IdentityKey>,
    pub(crate) verified: bool,
    /// Session recovery bookkeeping (see `recovery.rs`).
    pub(crate) recovery: RecoveryState,
}

/// Most resent seqs remembered per contact since the last reset.
pub(crate) const MAX_RESENT_REMEMBERED: usize = 1024;

/// What session recovery remembers about a contact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RecoveryState {
    /// Outgoing messages with `seq <= boundary` were sent before the last
    /// session reset.
    pub(crate) boundary: u64,
    /// Seqs already resent since that reset (each is resent at most once).
    pub(crate) resent: Vec<u64>,
}

pub(crate) fn encode_contact(c: &ContactRecord) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(72 + c.id.len() + c.name.len()));
    out.push(RECORD_VERSION);
    let has_recovery = c.recovery != RecoveryState::default();
    out.push(
        u8::from(c.verified)
            | (u8::from(c.identity_key.is_some()) << 1)
            | (u8::from(has_recovery) << 2),
    );
    if let Some(key) = &c.identity_key {
        out.extend_from_slice(key.as_bytes());
    }
    push_str(&mut out, &c.id);
    push_str(&mut out, &c.name);
    if has_recovery {
        out.extend_from_slice(&c.recovery.boundary.to_be_bytes());
        let resent = &c.recovery.resent[..c.recovery.resent.len().min(MAX_RESENT_REMEMBERED)];
        out.extend_from_slice(&(resent.len() as u16).to_be_bytes());
        for seq in resent {
            out.extend_from_slice(&seq.to_be_bytes());
        }
    }
    out
}

pub(crate) fn decode_contact(bytes: &[u8]) -> Decoded<ContactRecord> {
    let mut r = Reader::new(bytes);
    r.version()?;
    let flags = r.u8()?;
    if flags & !0b111 != 0 {
        return Err(Malformed);
    }
    let identity_key = if flags & 0b10 != 0 {
        Some(IdentityKey::from_bytes(&r.array::<32>()?).map_err(|_| Malformed)?)
    } else {
        None
    };
    let id = r.string()?;
    let name = r.string()?;
    let mut recovery = RecoveryState::default();
    if flags & 0b100 != 0 {
        recovery.boundary = u64::from_be_bytes(r.array::<8>()?);
        let count = usize::from(u16::from_be_bytes(r.array::<2>()?));
        if count > MAX_RESENT_REMEMBERED {
            return Err(Malformed);
        }
        for _ in 0..count {
            recovery.resent.push(u64::from_be_bytes(r.array::<8>()?));
        }
    }
    r.finish()?;
    Ok(ContactRecord {
        id,
        name,
        identity_key,
        verified: flags & 0b01 != 0,
        recovery,
    })
}

// ---- conversations --------------------------------------------------------

pub(crate) fn encode_conversation(key: &[u8; 32], contact: &str) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(35 + contact.len()));
    out.push(RECORD_VERSION);
    out.extend_from_slice(key);
    push_str(&mut out, contact);
    out
}

pub(crate) fn decode_conversation(bytes: &[u8]) -> Decoded<(Zeroizing<[u8; 32]>, String)> {
    let mut r = Reader::new(bytes);
    r.version()?;
    let key = Zeroizing::new(r.array::<32>()?);
    let contact = r.string()?;
    r.finish()?;
    Ok((key, contact))
}

// ---- messages -------------------------------------------------------------

const MESSAGE_HEADER_LEN: usize = 1 + 1 + 1 + 8 + 16;

/// The message record: header, then the padded body.
pub(crate) fn encode_message(
    direction: Direction,
    state: DeliveryState,
    timestamp: u64,
    id: &EnvelopeId,
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::with_capacity(
        MESSAGE_HEADER_LEN + sotto_core::pad::padded_len_for_plaintext(body.len())?,
    ));
    out.push(RECORD_VERSION);
    out.push(match direction {
        Direction::Incoming => 0,
        Direction::Outgoing => 1,
    });
    out.push(state.to_byte());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(id.as_bytes());
    pad_into(body, &mut out)?;
    Ok(out)
}

pub(crate) fn decode_message(seq: u64, bytes: &[u8]) -> Decoded<Message> {
    let mut r = Reader::new(bytes);
    r.version()?;
    let direction = match r.u8()? {
        0 => Direction::Incoming,
        1 => Direction::Outgoing,
        _ => return Err(Malformed),
    };
    let state = DeliveryState::from_byte(r.u8()?).ok_or(Malformed)?;
    let timestamp = r.u64()?;
    let envelope_id = EnvelopeId(r.array::<16>()?);
    let body = unpadded(r.rest())?;
    Ok(Message {
        seq,
        direction,
        state,
        timestamp,
        envelope_id,
        body: Zeroizing::new(body.to_vec()),
    })
}

/// Rewrites the state byte of an encoded message record in place.
pub(crate) fn set_message_state(record: &mut [u8], state: DeliveryState) -> Decoded<()> {
    if record.len() < MESSAGE_HEADER_LEN || record[0] != RECORD_VERSION {
        return Err(Malformed);
    }
    record[2] = state.to_byte();
    Ok(())
}

// ---- outbox ---------------------------------------------------------------

pub(crate) fn encode_outbox(seq: u64, id: &EnvelopeId, ciphertext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(25 + ciphertext.len());
    out.push(RECORD_VERSION);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(ciphertext);
    out
}

pub(crate) fn decode_outbox(bytes: &[u8]) -> Decoded<(u64, EnvelopeId, Vec<u8>)> {
    let mut r = Reader::new(bytes);
    r.version()?;
    let seq = r.u64()?;
    let id = EnvelopeId(r.array::<16>()?);
    Ok((seq, id, r.rest().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_roundtrip_and_state_rewrite() {
        let id = EnvelopeId([4; 16]);
        let mut rec = encode_message(
            Direction::Outgoing,
            DeliveryState::Pending,
            1234,
            &id,
            b"body",
        )
        .unwrap();
        assert_eq!(rec.len(), MESSAGE_HEADER_LEN + 256);
        set_message_state(&mut rec, DeliveryState::Sent).unwrap();
        let m = decode_message(9, &rec).unwrap();
        assert_eq!(m.seq, 9);
        assert_eq!(m.direction, Direction::Outgoing);
        assert_eq!(m.state, DeliveryState::Sent);
        assert_eq!(m.timestamp, 1234);
        assert_eq!(m.envelope_id, id);
        assert_eq!(m.body.as_slice(), b"body");
        assert!(decode_message(9, &rec[..rec.len() - 1]).is_err());
    }

    #[test]
    fn contact_and_counters_roundtrip() {
        let key = *sotto_core::IdentityKeyPair::from_seed(&[1; 32]).public();
        let rec = ContactRecord {
            id: "id".into(),
            name: "Name".into(),
            identity_key: Some(key),
            verified: true,
            recovery: RecoveryState {
                boundary: 7,
                resent: vec![3, 5],
            },
        };
        let back = decode_contact(&encode_contact(&rec)).unwrap();
        assert_eq!(back.id, "id");
        assert_eq!(back.name, "Name");
        assert_eq!(back.identity_key, Some(key));
        assert!(back.verified);
        assert_eq!(back.recovery, rec.recovery);
        let ids = PreKeyIds {
            next_signed: 3,
            next_one_time: 77,
        };
        assert_eq!(decode_prekey_ids(&encode_prekey_ids(&ids)).unwrap(), ids);
        assert!(decode_prekey_ids(&[1, 0, 0]).is_err());
    }
}
