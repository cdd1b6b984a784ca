//! The AEAD a message key drives, shared by one-to-one messages (section
//! 4) and group messages (section 14); each names its own HKDF info
//! string, so a key of one kind can never be taken for the other.
//!
//! `HKDF-SHA256(salt = 0x00*32, ikm = MK, info, L = 44) -> key = out[0..32],
//! nonce = out[32..44]`, then ChaCha20-Poly1305 with that key and nonce.

use std::sync::LazyLock;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::aead::inout::InOutBuf;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use hkdf::HkdfExtract;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::keys::Secret32;
use crate::wire::TAG_LEN;

/// The HKDF-Extract state keyed with the all-zero salt: it depends only on
/// a constant, so it is built once and cloned per message.
static ZERO_SALT_EXTRACT: LazyLock<HkdfExtract<Sha256>> =
    LazyLock::new(|| HkdfExtract::<Sha256>::new(Some(&[0u8; 32])));

/// The AEAD key and nonce derived from a message key; wiped on drop.
pub(crate) struct AeadKey {
    pub(crate) key: [u8; 32],
    pub(crate) nonce: [u8; 12],
}

impl Drop for AeadKey {
    fn drop(&mut self) {
        self.key.zeroize();
        self.nonce.zeroize();
    }
}

/// The plaintext was too large for the AEAD.
pub(crate) struct TooLarge;

/// The ciphertext did not authenticate.
pub(crate) struct Unauthentic;

/// Derives the AEAD key and nonce of message key `mk` under `info`.
pub(crate) fn aead_key(info: &[u8], mk: &Secret32) -> AeadKey {
    let mut extract = ZERO_SALT_EXTRACT.clone();
    extract.input_ikm(mk.as_bytes());
    let (_prk, hkdf) = extract.finalize();
    let mut okm = Zeroizing::new([0u8; 44]);
    // 44 <= 255 * 32: expand cannot fail for this length.
    let _ = hkdf.expand(info, okm.as_mut());
    let mut out = AeadKey {
        key: [0u8; 32],
        nonce: [0u8; 12],
    };
    out.key.copy_from_slice(&okm[..32]);
    out.nonce.copy_from_slice(&okm[32..]);
    out
}

/// Encrypts `buf` in place under `mk` (with `info`) and returns the tag.
pub(crate) fn seal(
    info: &[u8],
    mk: &Secret32,
    aad: &[u8],
    buf: &mut [u8],
) -> Result<[u8; TAG_LEN], TooLarge> {
    let k = aead_key(info, mk);
    let tag = ChaCha20Poly1305::new((&k.key).into())
        .encrypt_inout_detached(&Nonce::from(k.nonce), aad, buf.into())
        .map_err(|_| TooLarge)?;
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&tag);
    Ok(out)
}

/// Decrypts `ciphertext` (without its tag) into `out`, which must have the
/// same length, checking `tag`. Reading the wire and writing the plaintext
/// in one pass saves a copy of the message. On failure `out` holds garbage
/// the caller must discard.
pub(crate) fn open(
    info: &[u8],
    mk: &Secret32,
    aad: &[u8],
    ciphertext: &[u8],
    out: &mut [u8],
    tag: &[u8],
) -> Result<(), Unauthentic> {
    let k = aead_key(info, mk);
    let tag = Tag::try_from(tag).map_err(|_| Unauthentic)?;
    let buf = InOutBuf::new(ciphertext, out).map_err(|_| Unauthentic)?;
    ChaCha20Poly1305::new((&k.key).into())
        .decrypt_inout_detached(&Nonce::from(k.nonce), aad, buf, &tag)
        .map_err(|_| Unauthentic)
}
