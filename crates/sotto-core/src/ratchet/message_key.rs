//! Message keys and the AEAD they drive.
//!
//! `HKDF-SHA256(salt = 0x00*32, ikm = MK, info = "Sotto_Message_v1", L = 44)
//! -> key = out[0..32], nonce = out[32..44]`

use zeroize::Zeroize;

use crate::error::{Error, Result};
use crate::keys::Secret32;
use crate::wire::TAG_LEN;

/// HKDF info string of message keys.
pub const MESSAGE_INFO: &[u8] = b"Sotto_Message_v1";

/// A message key MK with the chain index it belongs to.
#[derive(Clone, Debug)]
pub(crate) struct MessageKey {
    index: u32,
    key: Secret32,
}

impl MessageKey {
    pub(crate) fn new(index: u32, mut bytes: [u8; 32]) -> Self {
        let key = Secret32::new(bytes);
        bytes.zeroize();
        Self { index, key }
    }

    pub(crate) fn from_secret(index: u32, key: Secret32) -> Self {
        Self { index, key }
    }

    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    pub(crate) fn secret(&self) -> &Secret32 {
        &self.key
    }

    /// Encrypts `buf` in place and returns the tag.
    pub(crate) fn seal(&self, aad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN]> {
        let len = buf.len();
        crate::message_aead::seal(MESSAGE_INFO, &self.key, aad, buf).map_err(|_| {
            Error::PlaintextTooLarge {
                len,
                max: crate::pad::MAX_PLAINTEXT_LEN,
            }
        })
    }

    /// Decrypts `ciphertext` (without tag) into `out`, which must have the
    /// same length, checking `tag`. Reading the wire and writing the
    /// plaintext in one pass saves a copy of the message. On failure `out`
    /// holds garbage the caller must discard.
    pub(crate) fn open(
        &self,
        aad: &[u8],
        ciphertext: &[u8],
        out: &mut [u8],
        tag: &[u8],
    ) -> Result<()> {
        crate::message_aead::open(MESSAGE_INFO, &self.key, aad, ciphertext, out, tag)
            .map_err(|_| Error::AuthenticationFailed)
    }
}
