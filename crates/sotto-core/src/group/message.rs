//! The group message wire format (docs/protocol.md section 14), parsed
//! strictly.
//!
//! ```text
//! GroupMessage = header(42) || ciphertext || signature(64)
//! header       = 0x01 (version) || 0x03 (type) || group_id(32)
//!                || u32be(chain_id) || u32be(iteration)
//! AD           = header || 0x00*22                                  (64 bytes)
//! ciphertext   = ChaCha20-Poly1305(key, nonce, AD, pad(plaintext)) with its tag
//! signature    = Ed25519-Sign(chain signing key, header || ciphertext)
//! ```

use super::error::{GroupError, GroupResult};
use super::id::{ChainId, GROUP_ID_LEN, GroupId};
use super::signing_key::GROUP_SIGNATURE_LEN;
use crate::pad::padded_len;
use crate::wire::{MAX_CIPHERTEXT_LEN, MIN_CIPHERTEXT_LEN, TAG_LEN};

/// Version byte of a group message (the protocol's version, section 6).
pub const GROUP_MESSAGE_VERSION: u8 = 0x01;
/// Type byte of a group message: neither a PreKeyMessage (0x01) nor a
/// Message (0x02), so that no group message parses as a one-to-one one.
pub const TYPE_GROUP_MESSAGE: u8 = 0x03;
/// Length of a group message header.
pub const GROUP_HEADER_LEN: usize = 2 + GROUP_ID_LEN + 4 + 4;
/// Length of the associated data: the header, then zeros up to 64 bytes,
/// so that Poly1305 starts the ciphertext on a 64-byte boundary.
pub const GROUP_AD_LEN: usize = 64;
const _: () = assert!(GROUP_AD_LEN >= GROUP_HEADER_LEN && GROUP_AD_LEN.is_multiple_of(64));
/// The shortest group message: an empty plaintext (256 bytes padded).
pub const MIN_GROUP_MESSAGE_LEN: usize =
    GROUP_HEADER_LEN + MIN_CIPHERTEXT_LEN + GROUP_SIGNATURE_LEN;
/// The longest group message: a plaintext of 16 MiB.
pub const MAX_GROUP_MESSAGE_LEN: usize =
    GROUP_HEADER_LEN + MAX_CIPHERTEXT_LEN + GROUP_SIGNATURE_LEN;

/// A parsed group message, borrowing its bytes. Parsing checks the form
/// only; [`SenderKeyReceiver::decrypt`](super::SenderKeyReceiver::decrypt)
/// checks the signature and decrypts.
#[derive(Debug, Clone, Copy)]
pub struct GroupMessage<'a> {
    group_id: GroupId,
    chain_id: ChainId,
    iteration: u32,
    header: &'a [u8; GROUP_HEADER_LEN],
    signed: &'a [u8],
    ciphertext: &'a [u8],
    signature: &'a [u8; GROUP_SIGNATURE_LEN],
}

impl<'a> GroupMessage<'a> {
    /// Parses a group message. Refused, in this order: a version byte
    /// other than 0x01 ([`GroupError::UnsupportedVersion`]), a type byte
    /// other than 0x03 ([`GroupError::UnknownMessageType`]), fewer than
    /// [`MIN_GROUP_MESSAGE_LEN`] bytes ([`GroupError::Truncated`]), a
    /// ciphertext longer than the largest ([`GroupError::CiphertextTooLong`])
    /// or whose length is not a padded length plus the tag
    /// ([`GroupError::InvalidCiphertextLength`]).
    pub fn parse(bytes: &'a [u8]) -> GroupResult<Self> {
        let truncated = |needed: usize| GroupError::Truncated {
            needed,
            got: bytes.len(),
        };
        let version = *bytes.first().ok_or_else(|| truncated(1))?;
        if version != GROUP_MESSAGE_VERSION {
            return Err(GroupError::UnsupportedVersion(version));
        }
        let kind = *bytes.get(1).ok_or_else(|| truncated(2))?;
        if kind != TYPE_GROUP_MESSAGE {
            return Err(GroupError::UnknownMessageType(kind));
        }
        if bytes.len() < MIN_GROUP_MESSAGE_LEN {
            return Err(truncated(MIN_GROUP_MESSAGE_LEN));
        }
        let (signed, signature) = bytes.split_at(bytes.len() - GROUP_SIGNATURE_LEN);
        let (header, ciphertext) = signed.split_at(GROUP_HEADER_LEN);
        if ciphertext.len() > MAX_CIPHERTEXT_LEN {
            return Err(GroupError::CiphertextTooLong {
                len: ciphertext.len(),
                max: MAX_CIPHERTEXT_LEN,
            });
        }
        // Every padded length is a fixed point of `padded_len` (and at
        // least 256): anything else was cut or lengthened on the way.
        let padded = ciphertext.len() - TAG_LEN;
        if padded_len(padded) != padded {
            return Err(GroupError::InvalidCiphertextLength {
                len: ciphertext.len(),
            });
        }
        let header: &[u8; GROUP_HEADER_LEN] =
            header.try_into().map_err(|_| truncated(GROUP_HEADER_LEN))?;
        let signature: &[u8; GROUP_SIGNATURE_LEN] = signature
            .try_into()
            .map_err(|_| truncated(MIN_GROUP_MESSAGE_LEN))?;
        let mut group = [0u8; GROUP_ID_LEN];
        group.copy_from_slice(&header[2..2 + GROUP_ID_LEN]);
        let at = 2 + GROUP_ID_LEN;
        let chain_id =
            u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
        let iteration = u32::from_be_bytes([
            header[at + 4],
            header[at + 5],
            header[at + 6],
            header[at + 7],
        ]);
        Ok(Self {
            group_id: GroupId::from_bytes(group),
            chain_id: ChainId::new(chain_id),
            iteration,
            header,
            signed,
            ciphertext,
            signature,
        })
    }

    /// The group the message is for: which receivers to try.
    pub fn group_id(&self) -> &GroupId {
        &self.group_id
    }

    /// The sender key chain that encrypted it.
    pub fn chain_id(&self) -> ChainId {
        self.chain_id
    }

    /// Its 0-based iteration in the chain.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The header exactly as received.
    pub fn header(&self) -> &'a [u8; GROUP_HEADER_LEN] {
        self.header
    }

    /// The ciphertext with its 16-byte tag at the end.
    pub fn ciphertext(&self) -> &'a [u8] {
        self.ciphertext
    }

    /// The signature over [`signed_bytes`](Self::signed_bytes).
    pub fn signature(&self) -> &'a [u8; GROUP_SIGNATURE_LEN] {
        self.signature
    }

    /// What the signature covers: `header || ciphertext`, every byte of
    /// the message before the signature.
    pub fn signed_bytes(&self) -> &'a [u8] {
        self.signed
    }
}

/// Appends `0x01 || 0x03 || group_id || u32be(chain_id) || u32be(iteration)`.
pub(crate) fn write_header(out: &mut Vec<u8>, group: &GroupId, chain: ChainId, iteration: u32) {
    out.push(GROUP_MESSAGE_VERSION);
    out.push(TYPE_GROUP_MESSAGE);
    out.extend_from_slice(group.as_bytes());
    out.extend_from_slice(&chain.get().to_be_bytes());
    out.extend_from_slice(&iteration.to_be_bytes());
}

/// The associated data of a message: its header, then zeros to 64 bytes.
pub(crate) fn associated_data(header: &[u8]) -> [u8; GROUP_AD_LEN] {
    let mut ad = [0u8; GROUP_AD_LEN];
    let len = header.len().min(GROUP_HEADER_LEN);
    ad[..len].copy_from_slice(&header[..len]);
    ad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_those_of_the_spec() {
        assert_eq!(GROUP_HEADER_LEN, 42);
        assert_eq!(MIN_GROUP_MESSAGE_LEN, 42 + 272 + 64);
    }

    #[test]
    fn the_header_reads_back_and_the_ad_is_the_header_then_zeros() {
        let group = GroupId::from_bytes([7; 32]);
        let mut bytes = Vec::new();
        write_header(&mut bytes, &group, ChainId::new(0x0102_0304), 0x0506_0708);
        assert_eq!(bytes.len(), GROUP_HEADER_LEN);
        let ad = associated_data(&bytes);
        assert_eq!(&ad[..42], &bytes[..]);
        assert!(ad[42..].iter().all(|&b| b == 0));
        bytes.resize(GROUP_HEADER_LEN + MIN_CIPHERTEXT_LEN, 0xAA);
        bytes.extend_from_slice(&[0xBB; 64]);
        let m = GroupMessage::parse(&bytes).unwrap();
        assert_eq!(m.group_id(), &group);
        assert_eq!(m.chain_id(), ChainId::new(0x0102_0304));
        assert_eq!(m.iteration(), 0x0506_0708);
        assert_eq!(m.ciphertext().len(), MIN_CIPHERTEXT_LEN);
        assert_eq!(m.signature(), &[0xBB; 64]);
        assert_eq!(m.signed_bytes().len(), bytes.len() - 64);
        assert_eq!(&m.header()[..], &bytes[..42]);
    }
}
