//! Detached bodies: a large message body encrypted once, under a fresh
//! key, for every device it goes to (docs/protocol.md, "Detached bodies").
//!
//! ```text
//! body key  = 32 random bytes, one per message
//! blob      = ChaCha20-Poly1305(body key, nonce = 0^12, AD = BODY_AD, pad(body))
//! reference = 0x01 || body key(32) || u32be(len(blob))       (what each session encrypts)
//! ```
//!
//! A message to n devices would otherwise be encrypted n times by the
//! sessions (and n more by the sealed layer around each). With a detached
//! body, each device's session encrypts only the 37-byte reference, and the
//! one blob travels next to each device's envelope. The key is used for one
//! plaintext only, so the fixed nonce is safe: encrypting the same body
//! again under the same key gives the same blob (a resend is byte for byte
//! the same). The body is padded first, as every message is, so the blob's
//! length tells no more than a message's would. The associated data is a
//! fixed 64-byte label: Poly1305 then starts the ciphertext on a 64-byte
//! boundary, where its widest code paths run.

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};

/// Format byte of a body reference.
pub const BODY_REFERENCE_VERSION: u8 = 0x01;
/// Length of an encoded body reference.
pub const BODY_REFERENCE_LEN: usize = 1 + 32 + 4;
/// Length of the tag after the padded body.
pub const BODY_TAG_LEN: usize = 16;
/// The associated data of every blob: `"sotto/detached-body/v1"`, then
/// zeros up to 64 bytes.
pub const BODY_AD: [u8; 64] = body_ad();

const fn body_ad() -> [u8; 64] {
    let label = b"sotto/detached-body/v1";
    let mut ad = [0u8; 64];
    let mut i = 0;
    while i < label.len() {
        ad[i] = label[i];
        i += 1;
    }
    ad
}

/// The key of one detached body. Secret: wiped on drop, not shown by
/// `Debug`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct BodyKey(Box<[u8; 32]>);

impl core::fmt::Debug for BodyKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("BodyKey(<redacted>)")
    }
}

impl BodyKey {
    /// A fresh random key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = Box::new([0u8; 32]);
        rng.fill_bytes(key.as_mut_slice());
        Self(key)
    }

    /// The key with these bytes (read back from storage).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(Box::new(*bytes))
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Pads `body` and encrypts it: the blob.
    pub fn seal(&self, body: &[u8]) -> Result<Vec<u8>> {
        let mut blob = crate::pad::pad(body)?;
        let tag = ChaCha20Poly1305::new(self.0.as_ref().into())
            .encrypt_inout_detached(&Nonce::default(), &BODY_AD, blob.as_mut_slice().into())
            .map_err(|_| Error::PlaintextTooLarge {
                len: body.len(),
                max: crate::pad::MAX_PLAINTEXT_LEN,
            })?;
        blob.extend_from_slice(&tag);
        Ok(blob)
    }

    /// Decrypts and unpads a blob made by [`seal`](Self::seal) under this
    /// key; [`Error::AuthenticationFailed`] for anything else.
    pub fn open(&self, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let split = blob
            .len()
            .checked_sub(BODY_TAG_LEN)
            .ok_or(Error::AuthenticationFailed)?;
        let (ciphertext, tag) = blob.split_at(split);
        let tag = Tag::try_from(tag).map_err(|_| Error::AuthenticationFailed)?;
        let mut padded = Zeroizing::new(ciphertext.to_vec());
        ChaCha20Poly1305::new(self.0.as_ref().into())
            .decrypt_inout_detached(
                &Nonce::default(),
                &BODY_AD,
                padded.as_mut_slice().into(),
                &tag,
            )
            .map_err(|_| Error::AuthenticationFailed)?;
        // The body stays in the buffer it was decrypted in: a copy would
        // cost as much as the decryption. The padding cut off is spare
        // capacity, which `Zeroizing` wipes with the rest.
        let len = crate::pad::unpadded_len(&padded).map_err(|_| Error::AuthenticationFailed)?;
        padded.truncate(len);
        Ok(padded)
    }
}

/// What each device's session encrypts instead of a detached body: its key
/// and the blob's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyReference {
    /// The body's key.
    pub key: BodyKey,
    /// The blob's length, checked before it is decrypted.
    pub blob_len: u32,
}

impl BodyReference {
    /// `0x01 || key || u32be(blob_len)`, wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<[u8; BODY_REFERENCE_LEN]> {
        let mut out = Zeroizing::new([0u8; BODY_REFERENCE_LEN]);
        out[0] = BODY_REFERENCE_VERSION;
        out[1..33].copy_from_slice(self.key.as_bytes());
        out[33..].copy_from_slice(&self.blob_len.to_be_bytes());
        out
    }

    /// Strict decoding: format byte, exactly [`BODY_REFERENCE_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bytes: &[u8; BODY_REFERENCE_LEN] = bytes.try_into().map_err(|_| Error::Truncated {
            needed: BODY_REFERENCE_LEN,
            got: bytes.len(),
        })?;
        if bytes[0] != BODY_REFERENCE_VERSION {
            return Err(Error::UnsupportedVersion(bytes[0]));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&bytes[1..33]);
        let mut len = [0u8; 4];
        len.copy_from_slice(&bytes[33..]);
        Ok(Self {
            key: BodyKey::from_bytes(&key),
            blob_len: u32::from_be_bytes(len),
        })
    }

    /// The body of `blob`, if it is the blob this reference names (its
    /// length, then its authentication under the key).
    pub fn open(&self, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if u32::try_from(blob.len()).ok() != Some(self.blob_len) {
            return Err(Error::AuthenticationFailed);
        }
        self.key.open(blob)
    }
}

/// The length of the blob of a body of `len` bytes.
pub fn blob_len(len: usize) -> Result<usize> {
    Ok(crate::pad::padded_len_for_plaintext(len)? + BODY_TAG_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_body_roundtrips_and_anything_else_is_refused() {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([3; 32]);
        let key = BodyKey::generate(&mut rng);
        let body = vec![0x5a; 100_000];
        let blob = key.seal(&body).unwrap();
        assert_eq!(blob.len(), blob_len(body.len()).unwrap());
        // The same body under the same key: the same blob (a resend).
        assert_eq!(key.seal(&body).unwrap(), blob);
        let reference = BodyReference {
            key: key.clone(),
            blob_len: u32::try_from(blob.len()).unwrap(),
        };
        let decoded = BodyReference::from_bytes(reference.to_bytes().as_slice()).unwrap();
        assert_eq!(decoded, reference);
        assert_eq!(decoded.open(&blob).unwrap().as_slice(), &body[..]);

        // A flipped bit anywhere, a cut, another key: refused.
        for i in [0, blob.len() / 2, blob.len() - 1] {
            let mut bad = blob.clone();
            bad[i] ^= 1;
            assert_eq!(reference.open(&bad), Err(Error::AuthenticationFailed));
        }
        assert_eq!(
            reference.open(&blob[..blob.len() - 1]),
            Err(Error::AuthenticationFailed)
        );
        let other = BodyReference {
            key: BodyKey::generate(&mut rng),
            blob_len: reference.blob_len,
        };
        assert_eq!(other.open(&blob), Err(Error::AuthenticationFailed));
        assert_eq!(
            reference.key.open(&[1, 2, 3]),
            Err(Error::AuthenticationFailed)
        );
        // Malformed references.
        let bytes = reference.to_bytes();
        assert!(BodyReference::from_bytes(&bytes[..36]).is_err());
        let mut wrong = *bytes;
        wrong[0] = 2;
        assert_eq!(
            BodyReference::from_bytes(&wrong),
            Err(Error::UnsupportedVersion(2))
        );
    }

    #[test]
    fn the_blob_hides_the_exact_length_like_a_message() {
        let key = BodyKey::from_bytes(&[1; 32]);
        assert_eq!(
            key.seal(&[7; 20_000]).unwrap().len(),
            key.seal(&[7; 20_001]).unwrap().len()
        );
        assert_eq!(BODY_AD.len() % 64, 0);
        assert!(BODY_AD.starts_with(b"sotto/detached-body/v1"));
        assert_eq!(format!("{key:?}"), "BodyKey(<redacted>)");
    }
}
