//! Message keys and the AEAD they drive.
//!
//! `HKDF-SHA256(salt = 0x00*32, ikm = MK, info = "Sotto_Message_v1", L = 44)
//! -> key = out[0..32], nonce = out[32..44]`

use std::sync::LazyLock;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::aead::inout::InOutBuf;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use hkdf::HkdfExtract;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::keys::Secret32;
use crate::wire::TAG_LEN;

/// HKDF info string of message keys.
pub const MESSAGE_INFO: &[u8] = b"Sotto_Message_v1";

/// The HKDF-Extract state keyed with the all-zero salt: it depends only on
/// a constant, so it is built once and cloned per message.
static ZERO_SALT_EXTRACT: LazyLock<HkdfExtract<Sha256>> =
    LazyLock::new(|| HkdfExtract::<Sha256>::new(Some(&[0u8; 32])));

/// A message key MK with the chain index it belongs to.
#[derive(Clone, Debug)]
pub(crate) struct MessageKey {
    index: u32,
    key: Secret32,
}

/// The AEAD key and nonce derived from a message key; wiped on drop.
struct AeadKey {
    key: [u8; 32],
    nonce: [u8; 12],
}

impl Drop for AeadKey {
    fn drop(&mut self) {
        self.key.zeroize();
        self.nonce.zeroize();
    }
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

    fn aead_key(&self) -> AeadKey {
        let mut extract = ZERO_SALT_EXTRACT.clone();
        extract.input_ikm(self.key.as_bytes());
        let (_prk, hkdf) = extract.finalize();
        let mut okm = Zeroizing::new([0u8; 44]);
        // 44 <= 255 * 32: expand cannot fail for this length.
        let _ = hkdf.expand(MESSAGE_INFO, okm.as_mut());
        let mut out = AeadKey {
            key: [0u8; 32],
            nonce: [0u8; 12],
        };
        out.key.copy_from_slice(&okm[..32]);
        out.nonce.copy_from_slice(&okm[32..]);
        out
    }

    /// Encrypts `buf` in place and returns the tag.
    pub(crate) fn seal(&self, aad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN]> {
        let k = self.aead_key();
        let cipher = ChaCha20Poly1305::new((&k.key).into());
        let tag = cipher
            .encrypt_inout_detached(&Nonce::from(k.nonce), aad, buf.into())
            .map_err(|_| Error::PlaintextTooLarge {
                len: buf.len(),
                max: crate::pad::MAX_PLAINTEXT_LEN,
            })?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&tag);
        Ok(out)
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
        let k = self.aead_key();
        let cipher = ChaCha20Poly1305::new((&k.key).into());
        let tag = Tag::try_from(tag).map_err(|_| Error::AuthenticationFailed)?;
        let buf = InOutBuf::new(ciphertext, out).map_err(|_| Error::AuthenticationFailed)?;
        cipher
            .decrypt_inout_detached(&Nonce::from(k.nonce), aad, buf, &tag)
            .map_err(|_| Error::AuthenticationFailed)
    }
}
