//! Detached bodies: a large message body encrypted once, under a fresh
//! key, for every device it goes to (docs/protocol.md, "Detached bodies").
//!
//! ```text
//! body key  = 32 random bytes, one per message
//! blob      = ChaCha20-Poly1305(body key, nonce = 0^12, AD = BODY_AD, pad(body))
//! reference = 0x01 || body key(32) || u32be(len(blob)) || SHA-256(blob)(32)
//!             (what each session encrypts)
//! ```
//!
//! A message to n devices would otherwise be encrypted n times by the
//! sessions (and n more by the sealed layer around each). With a detached
//! body, each device's session encrypts only the 69-byte reference, and the
//! one blob travels next to each device's envelope. The key is used for one
//! plaintext only, so the fixed nonce is safe: encrypting the same body
//! again under the same key gives the same blob (a resend is byte for byte
//! the same). The body is padded first, as every message is, so the blob's
//! length tells no more than a message's would. The associated data is a
//! fixed 64-byte label: Poly1305 then starts the ciphertext on a 64-byte
//! boundary, where its widest code paths run.
//!
//! The reference names the blob by its digest, not only by its key: every
//! device the message goes to learns the key, and a ChaCha20-Poly1305 tag
//! (the AEAD is not key-committing) shows only that a blob was made by
//! someone holding it, so any of them could make another blob that opens
//! under it. Only the sender's session can say which blob is the one, and
//! the digest is how it says it.

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};

/// Format byte of a body reference.
pub const BODY_REFERENCE_VERSION: u8 = 0x01;
/// Length of the blob's digest in a body reference (SHA-256).
pub const BLOB_DIGEST_LEN: usize = 32;
/// Length of an encoded body reference.
pub const BODY_REFERENCE_LEN: usize = 1 + 32 + 4 + BLOB_DIGEST_LEN;
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
    ///
    /// Not public: a blob that authenticates under the key is not yet the
    /// sender's (every recipient holds the key), so bodies are opened only
    /// through [`BodyReference::open`], which checks the digest first.
    pub(crate) fn open(&self, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
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

/// What each device's session encrypts instead of a detached body: its
/// key, and the blob's length and SHA-256 digest.
///
/// Made from the key and the blob ([`new`](Self::new)), or decoded from
/// what a session decrypted ([`from_bytes`](Self::from_bytes)): the length
/// and the digest are always the blob's, never the caller's word for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyReference {
    key: BodyKey,
    blob_len: u32,
    digest: [u8; BLOB_DIGEST_LEN],
}

impl BodyReference {
    /// The reference to `blob`, sealed under `key`: its length and digest
    /// are computed here. [`Error::CiphertextTooLong`] for a blob whose
    /// length does not fit the reference's four bytes.
    pub fn new(key: &BodyKey, blob: &[u8]) -> Result<Self> {
        let blob_len = u32::try_from(blob.len()).map_err(|_| Error::CiphertextTooLong {
            len: blob.len(),
            max: usize::try_from(u32::MAX).unwrap_or(usize::MAX),
        })?;
        Ok(Self {
            key: key.clone(),
            blob_len,
            digest: Sha256::digest(blob).into(),
        })
    }

    /// The body's key.
    pub fn key(&self) -> &BodyKey {
        &self.key
    }

    /// The length of the blob this reference names.
    pub fn blob_len(&self) -> u32 {
        self.blob_len
    }

    /// `0x01 || key || u32be(blob_len) || digest`, wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<[u8; BODY_REFERENCE_LEN]> {
        let mut out = Zeroizing::new([0u8; BODY_REFERENCE_LEN]);
        out[0] = BODY_REFERENCE_VERSION;
        out[1..33].copy_from_slice(self.key.as_bytes());
        out[33..37].copy_from_slice(&self.blob_len.to_be_bytes());
        out[37..].copy_from_slice(&self.digest);
        out
    }

    /// Strict decoding: exactly [`BODY_REFERENCE_LEN`] bytes
    /// ([`Error::Truncated`], also when longer), format byte 0x01
    /// ([`Error::UnsupportedVersion`]).
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
        len.copy_from_slice(&bytes[33..37]);
        let mut digest = [0u8; BLOB_DIGEST_LEN];
        digest.copy_from_slice(&bytes[37..]);
        Ok(Self {
            key: BodyKey::from_bytes(&key),
            blob_len: u32::from_be_bytes(len),
            digest,
        })
    }

    /// The body of `blob`, if it is the blob this reference names: its
    /// length, then its digest (in constant time), then its authentication
    /// under the key, then its padding. [`Error::AuthenticationFailed`]
    /// for anything else.
    ///
    /// The digest comes before the key is used: the key is shared by every
    /// device of the message and the AEAD is not key-committing, so a blob
    /// that authenticates under the key may still be one another recipient
    /// made.
    pub fn open(&self, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if u32::try_from(blob.len()).ok() != Some(self.blob_len) {
            return Err(Error::AuthenticationFailed);
        }
        let digest: [u8; BLOB_DIGEST_LEN] = Sha256::digest(blob).into();
        if !bool::from(digest.ct_eq(&self.digest)) {
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
        let reference = BodyReference::new(&key, &blob).unwrap();
        assert_eq!(reference.key(), &key);
        assert_eq!(reference.blob_len() as usize, blob.len());
        let bytes = reference.to_bytes();
        assert_eq!(bytes.len(), 69);
        assert_eq!(&bytes[37..], Sha256::digest(&blob).as_slice());
        let decoded = BodyReference::from_bytes(bytes.as_slice()).unwrap();
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
        let mut other_key = *bytes;
        other_key[1] ^= 1;
        let other_key = BodyReference::from_bytes(&other_key).unwrap();
        assert_eq!(other_key.open(&blob), Err(Error::AuthenticationFailed));
        assert_eq!(
            reference.key.open(&[1, 2, 3]),
            Err(Error::AuthenticationFailed)
        );
        // A reference whose digest is not the blob's: refused, although
        // the blob authenticates under its key.
        let mut other_digest = *bytes;
        other_digest[BODY_REFERENCE_LEN - 1] ^= 1;
        let other_digest = BodyReference::from_bytes(&other_digest).unwrap();
        assert_eq!(other_digest.open(&blob), Err(Error::AuthenticationFailed));
        // Malformed references.
        assert_eq!(
            BodyReference::from_bytes(&bytes[..BODY_REFERENCE_LEN - 1]),
            Err(Error::Truncated {
                needed: BODY_REFERENCE_LEN,
                got: BODY_REFERENCE_LEN - 1
            })
        );
        assert!(BodyReference::from_bytes(&[&bytes[..], &[0]].concat()).is_err());
        // The reference of the format before the digest: too short.
        assert!(BodyReference::from_bytes(&bytes[..37]).is_err());
        let mut wrong = *bytes;
        wrong[0] = 2;
        assert_eq!(
            BodyReference::from_bytes(&wrong),
            Err(Error::UnsupportedVersion(2))
        );
    }

    #[test]
    fn another_body_of_the_same_length_under_the_same_key_is_refused() {
        // What a recipient device that holds the key could make, with the
        // relay's help, for another device of the same message: a blob of
        // the same length that authenticates under the same key.
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([4; 32]);
        let key = BodyKey::generate(&mut rng);
        let body = vec![0x5a; 50_000];
        let forged_body = vec![0xa5; 50_000];
        let blob = key.seal(&body).unwrap();
        let forged = key.seal(&forged_body).unwrap();
        assert_eq!(forged.len(), blob.len());
        assert_eq!(
            key.open(&forged).unwrap().as_slice(),
            &forged_body[..],
            "the key alone accepts it"
        );
        let reference = BodyReference::new(&key, &blob).unwrap();
        assert_eq!(reference.open(&forged), Err(Error::AuthenticationFailed));
        // Decoded from the bytes a session carries: the same.
        let decoded = BodyReference::from_bytes(reference.to_bytes().as_slice()).unwrap();
        assert_eq!(decoded.open(&forged), Err(Error::AuthenticationFailed));
        assert_eq!(decoded.open(&blob).unwrap().as_slice(), &body[..]);
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
