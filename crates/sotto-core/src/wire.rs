//! The wire format (PROTOCOL.md "Wire format"), parsed strictly.
//!
//! ```text
//! Message       = 0x01 || 0x02 || header(40) || ciphertext
//! PreKeyMessage = 0x01 || 0x01 || IK_A(32) || EK_A(32) || u32be(spk_id)
//!                 || has_opk (0x00 | 0x01) || [u32be(opk_id)] || Message
//! header        = ratchet_pub(32) || u32be(PN) || u32be(N)
//! ```
//!
//! Protocol v2 (section 16) has the version byte 0x02 in both, and its
//! PreKeyMessage names the KEM prekey and carries the KEM ciphertext:
//!
//! ```text
//! PreKeyMessage = 0x02 || 0x01 || IK_A(32) || EK_A(32) || u32be(spk_id)
//!                 || has_opk || [u32be(opk_id)] || u32be(kem_id) || CT(1088)
//!                 || Message (version 0x02)
//! ```

use crate::error::{Error, Result};
use crate::keys::{IdentityKey, KEM_CIPHERTEXT_LEN, KemPreKeyId, OneTimePreKeyId, SignedPreKeyId};
use crate::pad::{MAX_PLAINTEXT_LEN, MIN_PADDED_LEN, padded_len};

/// Protocol version byte of version 1.
pub const VERSION: u8 = 0x01;
/// Protocol version byte of version 2 (hybrid handshake, section 16).
pub const VERSION_V2: u8 = 0x02;

/// Whether `version` is a protocol version this crate speaks.
fn check_version(version: u8) -> Result<u8> {
    match version {
        VERSION | VERSION_V2 => Ok(version),
        other => Err(Error::UnsupportedVersion(other)),
    }
}
/// Type byte of a PreKeyMessage.
pub const TYPE_PREKEY_MESSAGE: u8 = 0x01;
/// Type byte of a Message.
pub const TYPE_MESSAGE: u8 = 0x02;
/// Length of a ratchet header.
pub const HEADER_LEN: usize = 40;
/// Length of the AEAD tag.
pub const TAG_LEN: usize = 16;
/// The smallest ciphertext: one minimum padded block plus the tag.
pub const MIN_CIPHERTEXT_LEN: usize = MIN_PADDED_LEN + TAG_LEN;
/// The largest ciphertext: the padded maximum plaintext plus the tag.
pub const MAX_CIPHERTEXT_LEN: usize = padded_len(MAX_PLAINTEXT_LEN + 1) + TAG_LEN;
/// Bytes of a Message before its ciphertext.
pub const MESSAGE_OVERHEAD: usize = 2 + HEADER_LEN;

/// A Double Ratchet message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The sender's current ratchet public key.
    pub ratchet_key: [u8; 32],
    /// PN: length of the sender's previous sending chain.
    pub previous_chain_length: u32,
    /// N: 0-based index of this message in the sending chain.
    pub index: u32,
}

impl Header {
    /// `ratchet_pub(32) || u32be(PN) || u32be(N)`.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..32].copy_from_slice(&self.ratchet_key);
        out[32..36].copy_from_slice(&self.previous_chain_length.to_be_bytes());
        out[36..40].copy_from_slice(&self.index.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8; HEADER_LEN]) -> Self {
        let mut ratchet_key = [0u8; 32];
        ratchet_key.copy_from_slice(&bytes[..32]);
        Self {
            ratchet_key,
            previous_chain_length: u32::from_be_bytes([bytes[32], bytes[33], bytes[34], bytes[35]]),
            index: u32::from_be_bytes([bytes[36], bytes[37], bytes[38], bytes[39]]),
        }
    }
}

/// A parsed Message, borrowing its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The protocol version byte (1 or 2).
    pub version: u8,
    /// The decoded header.
    pub header: Header,
    /// The header exactly as received (part of the AEAD associated data).
    pub header_bytes: &'a [u8; HEADER_LEN],
    /// Ciphertext with its 16-byte tag at the end.
    pub ciphertext: &'a [u8],
}

/// A parsed PreKeyMessage, borrowing its bytes.
#[derive(Debug, Clone, Copy)]
pub struct PreKeyMessage<'a> {
    /// The initiator's identity key (validated).
    pub identity_key: IdentityKey,
    /// The initiator's ephemeral (base) key EK_A.
    pub base_key: [u8; 32],
    /// Which signed prekey of the responder was used.
    pub signed_prekey_id: SignedPreKeyId,
    /// Which one-time prekey was used, if any.
    pub one_time_prekey_id: Option<OneTimePreKeyId>,
    /// Protocol v2: the KEM prekey encapsulated to and the ciphertext.
    pub kem: Option<(KemPreKeyId, &'a [u8; KEM_CIPHERTEXT_LEN])>,
    /// The embedded Message.
    pub message: Message<'a>,
}

/// Either kind of protocol message.
// Parsing happens once per received message and the value lives on the
// stack; boxing the larger variant would add an allocation instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy)]
pub enum WireMessage<'a> {
    /// A session-establishing message from an initiator.
    PreKey(PreKeyMessage<'a>),
    /// A message of an established session.
    Message(Message<'a>),
}

impl<'a> WireMessage<'a> {
    /// Parses either message kind; rejects anything that is not exactly one
    /// well-formed message.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        check_version(r.u8()?)?;
        match r.u8()? {
            TYPE_MESSAGE => Ok(Self::Message(Message::parse(bytes)?)),
            TYPE_PREKEY_MESSAGE => Ok(Self::PreKey(PreKeyMessage::parse(bytes)?)),
            other => Err(Error::UnknownMessageType(other)),
        }
    }

    /// The embedded or plain Message.
    pub fn message(&self) -> &Message<'a> {
        match self {
            Self::PreKey(p) => &p.message,
            Self::Message(m) => m,
        }
    }
}

impl<'a> Message<'a> {
    /// Parses a Message.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let version = check_version(r.u8()?)?;
        let kind = r.u8()?;
        if kind != TYPE_MESSAGE {
            return Err(Error::UnknownMessageType(kind));
        }
        let header_bytes = r.array::<HEADER_LEN>()?;
        let ciphertext = r.rest();
        if ciphertext.len() < MIN_CIPHERTEXT_LEN {
            return Err(Error::CiphertextTooShort {
                len: ciphertext.len(),
                min: MIN_CIPHERTEXT_LEN,
            });
        }
        if ciphertext.len() > MAX_CIPHERTEXT_LEN {
            return Err(Error::CiphertextTooLong {
                len: ciphertext.len(),
                max: MAX_CIPHERTEXT_LEN,
            });
        }
        Ok(Self {
            version,
            header: Header::decode(header_bytes),
            header_bytes,
            ciphertext,
        })
    }
}

impl<'a> PreKeyMessage<'a> {
    /// Parses a PreKeyMessage.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let version = check_version(r.u8()?)?;
        let kind = r.u8()?;
        if kind != TYPE_PREKEY_MESSAGE {
            return Err(Error::UnknownMessageType(kind));
        }
        let identity_key = IdentityKey::from_bytes(r.array::<32>()?)?;
        let base_key = *r.array::<32>()?;
        if !is_canonical_x25519(&base_key) {
            return Err(Error::InvalidBaseKey);
        }
        let signed_prekey_id = SignedPreKeyId::new(r.u32()?);
        let one_time_prekey_id = match r.u8()? {
            0x00 => None,
            0x01 => Some(OneTimePreKeyId::new(r.u32()?)),
            other => return Err(Error::InvalidFlag(other)),
        };
        let kem = if version == VERSION_V2 {
            Some((KemPreKeyId::new(r.u32()?), r.array::<KEM_CIPHERTEXT_LEN>()?))
        } else {
            None
        };
        let message = Message::parse(r.rest())?;
        // The embedded Message is of the same version.
        if message.version != version {
            return Err(Error::UnsupportedVersion(message.version));
        }
        Ok(Self {
            identity_key,
            base_key,
            signed_prekey_id,
            one_time_prekey_id,
            kem,
            message,
        })
    }

    /// Length of the v1 PreKeyMessage prefix before the embedded Message.
    pub fn prefix_len(has_opk: bool) -> usize {
        2 + 32 + 32 + 4 + 1 + if has_opk { 4 } else { 0 }
    }

    /// Length of the v2 PreKeyMessage prefix before the embedded Message.
    pub fn prefix_len_v2(has_opk: bool) -> usize {
        Self::prefix_len(has_opk) + 4 + KEM_CIPHERTEXT_LEN
    }
}

/// True if `key` is the canonical encoding of an X25519 u-coordinate: top
/// bit clear and value below p = 2^255 - 19. X25519 itself accepts the
/// other encodings as aliases (RFC 7748 masks the top bit and reduces mod p).
pub(crate) fn is_canonical_x25519(key: &[u8; 32]) -> bool {
    if key[31] & 0x80 != 0 {
        return false;
    }
    // Values >= p are 0x7f, then 30 bytes of 0xff, then a low byte >= 0xed.
    let at_least_p = key[31] == 0x7f && key[1..31].iter().all(|&b| b == 0xff) && key[0] >= 0xed;
    !at_least_p
}

/// Appends the PreKeyMessage prefix (everything before the embedded
/// Message) to `out`.
pub(crate) fn write_prekey_prefix(
    out: &mut Vec<u8>,
    identity_key: &IdentityKey,
    base_key: &[u8; 32],
    signed_prekey_id: SignedPreKeyId,
    one_time_prekey_id: Option<OneTimePreKeyId>,
    kem: Option<(KemPreKeyId, &[u8; KEM_CIPHERTEXT_LEN])>,
) {
    out.push(if kem.is_some() { VERSION_V2 } else { VERSION });
    out.push(TYPE_PREKEY_MESSAGE);
    out.extend_from_slice(identity_key.as_bytes());
    out.extend_from_slice(base_key);
    out.extend_from_slice(&signed_prekey_id.get().to_be_bytes());
    match one_time_prekey_id {
        None => out.push(0x00),
        Some(id) => {
            out.push(0x01);
            out.extend_from_slice(&id.get().to_be_bytes());
        }
    }
    if let Some((id, ciphertext)) = kem {
        out.extend_from_slice(&id.get().to_be_bytes());
        out.extend_from_slice(ciphertext);
    }
}

/// A bounds-checked cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(Error::Truncated {
            needed: usize::MAX,
            got: self.bytes.len(),
        })?;
        let out = self.bytes.get(self.pos..end).ok_or(Error::Truncated {
            needed: end,
            got: self.bytes.len(),
        })?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<&'a [u8; N]> {
        let s = self.take(N)?;
        s.try_into().map_err(|_| Error::Truncated {
            needed: N,
            got: s.len(),
        })
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(*self.array::<2>()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(*self.array::<4>()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(*self.array::<8>()?))
    }

    pub(crate) fn flag(&mut self) -> Result<bool> {
        match self.u8()? {
            0x00 => Ok(false),
            0x01 => Ok(true),
            other => Err(Error::InvalidFlag(other)),
        }
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = self.bytes.get(self.pos..).unwrap_or(&[]);
        self.pos = self.bytes.len();
        out
    }

    pub(crate) fn finish(&self) -> Result<()> {
        if self.pos != self.bytes.len() {
            return Err(Error::TrailingBytes(self.bytes.len() - self.pos));
        }
        Ok(())
    }
}
