//! Group message keys and the AEAD they drive.
//!
//! `HKDF-SHA256(salt = 0x00*32, ikm = MK, info = "Sotto_GroupMessage_v1",
//! L = 44) -> key = out[0..32], nonce = out[32..44]`
//!
//! The same construction as one-to-one message keys (section 4) with an
//! info string of its own, so a group message key can never be taken for
//! a one-to-one one or the other way round.

use zeroize::Zeroize;

use super::error::{GroupError, GroupResult};
use crate::keys::Secret32;
use crate::wire::TAG_LEN;

/// HKDF info string of group message keys.
pub const GROUP_MESSAGE_INFO: &[u8] = b"Sotto_GroupMessage_v1";

/// A message key MK of a sender key chain, with its iteration.
#[derive(Clone, Debug)]
pub(crate) struct GroupMessageKey {
    iteration: u32,
    key: Secret32,
}

impl GroupMessageKey {
    pub(crate) fn new(iteration: u32, mut bytes: [u8; 32]) -> Self {
        let key = Secret32::new(bytes);
        bytes.zeroize();
        Self { iteration, key }
    }

    pub(crate) fn from_secret(iteration: u32, key: Secret32) -> Self {
        Self { iteration, key }
    }

    pub(crate) fn iteration(&self) -> u32 {
        self.iteration
    }

    pub(crate) fn secret(&self) -> &Secret32 {
        &self.key
    }

    #[cfg(test)]
    fn aead_key(&self) -> crate::message_aead::AeadKey {
        crate::message_aead::aead_key(GROUP_MESSAGE_INFO, &self.key)
    }

    /// Encrypts `buf` in place and returns the tag.
    pub(crate) fn seal(&self, aad: &[u8], buf: &mut [u8]) -> GroupResult<[u8; TAG_LEN]> {
        let len = buf.len();
        crate::message_aead::seal(GROUP_MESSAGE_INFO, &self.key, aad, buf).map_err(|_| {
            GroupError::PlaintextTooLarge {
                len,
                max: crate::pad::MAX_PLAINTEXT_LEN,
            }
        })
    }

    /// Decrypts `ciphertext` (without its tag) into `out`, which must have
    /// the same length, checking `tag`. On failure `out` holds garbage the
    /// caller must wipe.
    pub(crate) fn open(
        &self,
        aad: &[u8],
        ciphertext: &[u8],
        out: &mut [u8],
        tag: &[u8],
    ) -> GroupResult<()> {
        crate::message_aead::open(GROUP_MESSAGE_INFO, &self.key, aad, ciphertext, out, tag)
            .map_err(|_| GroupError::AuthenticationFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_info_string_is_not_the_one_to_one_one() {
        assert_ne!(GROUP_MESSAGE_INFO, crate::MESSAGE_INFO);
        assert_ne!(GROUP_MESSAGE_INFO, crate::RATCHET_INFO);
    }

    #[test]
    fn key_and_nonce_are_hkdf_of_the_message_key() {
        let mk = GroupMessageKey::new(3, [9; 32]);
        let k = mk.aead_key();
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&[0u8; 32]), &[9; 32]);
        let mut okm = [0u8; 44];
        hk.expand(b"Sotto_GroupMessage_v1", &mut okm).unwrap();
        assert_eq!(k.key, okm[..32]);
        assert_eq!(k.nonce, okm[32..]);
    }

    #[test]
    fn sealed_bytes_open_only_with_the_same_associated_data() {
        let mk = GroupMessageKey::new(0, [5; 32]);
        let mut buf = b"sixteen bytes!!!".to_vec();
        let tag = mk.seal(b"ad", &mut buf).unwrap();
        let mut out = vec![0; buf.len()];
        mk.open(b"ad", &buf, &mut out, &tag).unwrap();
        assert_eq!(out, b"sixteen bytes!!!");
        assert_eq!(
            mk.open(b"AD", &buf, &mut out, &tag),
            Err(GroupError::AuthenticationFailed)
        );
        assert_eq!(
            mk.open(b"ad", &buf, &mut out, &tag[..15]),
            Err(GroupError::AuthenticationFailed)
        );
    }
}
