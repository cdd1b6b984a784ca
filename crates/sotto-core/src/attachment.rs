//! Attachments: a file encrypted on the sender's device under a fresh key,
//! in fixed-size chunks, each authenticated and bound to its place in the
//! file (docs/protocol.md, "Attachments").
//!
//! ```text
//! key      = 32 random bytes, one per file
//! file id  = 16 random bytes, one per file
//! n        = max(1, ceil(len / CHUNK_LEN)) chunks; chunk i holds the
//!            plaintext bytes [i × CHUNK_LEN, min(len, (i + 1) × CHUNK_LEN))
//! chunk i  = ChaCha20-Poly1305(key, nonce = u64be(i) || 0^4,
//!            AD = chunk_ad(file id, len, i), plaintext of chunk i)
//! chunk_ad = "sotto/attachment/v1" || 0^5 || file id(16) || u64be(len)
//!            || u64be(i) || 0^8                                 (64 bytes)
//! blob     = chunk 0 || chunk 1 || ... || chunk n-1     (what the relay holds)
//! digest   = SHA-256(blob)
//! ```
//!
//! Every chunk's associated data names the file, the file's length and the
//! chunk's index, so a chunk moved to another place or another file, a
//! chunk left out, or a blob cut short does not open: the reader knows the
//! length (from the reference in the message) and so how many chunks, of
//! which sizes, to expect. The key encrypts one file only, so nonces from
//! the index never repeat under it. The 64-byte associated data starts the
//! ciphertext on a 64-byte boundary for Poly1305, as for detached bodies.
//!
//! As for detached bodies, the AEAD is not key-committing and every
//! recipient learns the key, so the reference also names the blob by its
//! digest: only the sender's session can say which blob is the one. A
//! reader checks each chunk as it comes (a relay's tampering shows at
//! once) and the digest at the end.

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};

/// Plaintext bytes per chunk (the last chunk may hold fewer, or none for
/// an empty file).
pub const CHUNK_LEN: usize = 64 * 1024;
/// Bytes a chunk's tag adds.
pub const CHUNK_TAG_LEN: usize = 16;
/// Largest file: 4 GiB less 1 MiB, so that its blob (the file and a tag
/// per chunk, 1 MiB of tags at most) fits in a relay's default
/// `max_blob_size` of 4 GiB.
pub const MAX_FILE_LEN: u64 = (4 << 30) - (1 << 20);
/// Length of a file id.
pub const FILE_ID_LEN: usize = 16;
/// Length of the blob's digest (SHA-256).
pub const DIGEST_LEN: usize = 32;

const LABEL: &[u8] = b"sotto/attachment/v1";

/// The key of one file, wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AttachmentKey([u8; 32]);

impl AttachmentKey {
    /// A fresh random key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        Self(key)
    }

    /// A key from its bytes (as a reference carries it).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl core::fmt::Debug for AttachmentKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("AttachmentKey(..)")
    }
}

/// How many chunks a file of `len` bytes has.
pub fn chunk_count(len: u64) -> u64 {
    len.div_ceil(CHUNK_LEN as u64).max(1)
}

/// The blob's length for a file of `len` bytes.
pub fn blob_len(len: u64) -> u64 {
    len + chunk_count(len) * CHUNK_TAG_LEN as u64
}

/// The plaintext length of chunk `index` of a file of `len` bytes (`None`
/// past the last chunk).
pub fn plain_chunk_len(len: u64, index: u64) -> Option<usize> {
    if index >= chunk_count(len) {
        return None;
    }
    let start = index * CHUNK_LEN as u64;
    Some((len - start).min(CHUNK_LEN as u64) as usize)
}

/// Where chunk `index` starts in the blob.
pub fn blob_offset(index: u64) -> u64 {
    index * (CHUNK_LEN + CHUNK_TAG_LEN) as u64
}

fn chunk_ad(file_id: &[u8; FILE_ID_LEN], len: u64, index: u64) -> [u8; 64] {
    let mut ad = [0u8; 64];
    ad[..LABEL.len()].copy_from_slice(LABEL);
    ad[24..40].copy_from_slice(file_id);
    ad[40..48].copy_from_slice(&len.to_be_bytes());
    ad[48..56].copy_from_slice(&index.to_be_bytes());
    ad
}

fn nonce(index: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&index.to_be_bytes());
    Nonce::from(n)
}

/// Encrypts and decrypts the chunks of one file: its key, its id and its
/// length.
pub struct ChunkCipher {
    aead: ChaCha20Poly1305,
    file_id: [u8; FILE_ID_LEN],
    len: u64,
}

impl ChunkCipher {
    /// The cipher of the file `file_id` of `len` bytes under `key`.
    /// [`Error::TooLong`] past [`MAX_FILE_LEN`].
    pub fn new(key: &AttachmentKey, file_id: [u8; FILE_ID_LEN], len: u64) -> Result<Self> {
        if len > MAX_FILE_LEN {
            return Err(Error::PlaintextTooLarge {
                len: usize::try_from(len).unwrap_or(usize::MAX),
                max: MAX_FILE_LEN as usize,
            });
        }
        Ok(Self {
            aead: ChaCha20Poly1305::new(&key.0.into()),
            file_id,
            len,
        })
    }

    /// The file's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many chunks the file has.
    pub fn chunks(&self) -> u64 {
        chunk_count(self.len)
    }

    /// Encrypts chunk `index`, whose plaintext must be exactly
    /// [`plain_chunk_len`] bytes, in place: `buf` grows by the tag.
    pub fn seal(&self, index: u64, buf: &mut Vec<u8>) -> Result<()> {
        let Some(expected) = plain_chunk_len(self.len, index) else {
            return Err(Error::PlaintextTooLarge {
                len: buf.len(),
                max: 0,
            });
        };
        if expected != buf.len() {
            return Err(Error::Truncated {
                needed: expected,
                got: buf.len(),
            });
        }
        let tag = self
            .aead
            .encrypt_inout_detached(
                &nonce(index),
                &chunk_ad(&self.file_id, self.len, index),
                buf.as_mut_slice().into(),
            )
            .map_err(|_| Error::PlaintextTooLarge {
                len: buf.len(),
                max: CHUNK_LEN,
            })?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// Checks and decrypts chunk `index` (its plaintext and tag, as in the
    /// blob) in place: `buf` shrinks to the plaintext. A chunk of the
    /// wrong length, from another place or file, or altered is
    /// [`Error::AuthenticationFailed`] and `buf` is wiped.
    pub fn open(&self, index: u64, buf: &mut Vec<u8>) -> Result<()> {
        let Some(plain) = plain_chunk_len(self.len, index) else {
            buf.zeroize();
            return Err(Error::AuthenticationFailed);
        };
        if buf.len() != plain + CHUNK_TAG_LEN {
            buf.zeroize();
            return Err(Error::AuthenticationFailed);
        }
        let Ok(tag) = Tag::try_from(&buf[plain..]) else {
            buf.zeroize();
            return Err(Error::AuthenticationFailed);
        };
        buf.truncate(plain);
        let opened = self.aead.decrypt_inout_detached(
            &nonce(index),
            &chunk_ad(&self.file_id, self.len, index),
            buf.as_mut_slice().into(),
            &tag,
        );
        if opened.is_err() {
            buf.zeroize();
            return Err(Error::AuthenticationFailed);
        }
        Ok(())
    }
}

/// The SHA-256 of a blob, computed as its bytes go by.
#[derive(Clone, Default)]
pub struct BlobDigest(Sha256);

impl BlobDigest {
    /// A digest of nothing yet.
    pub fn new() -> Self {
        Self(Sha256::new())
    }

    /// Adds the blob's next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of every byte given.
    pub fn finish(self) -> [u8; DIGEST_LEN] {
        self.0.finalize().into()
    }

    /// Whether the bytes given are the blob `expected` names (constant
    /// time).
    pub fn matches(self, expected: &[u8; DIGEST_LEN]) -> bool {
        bool::from(self.finish().ct_eq(expected))
    }
}

/// A fresh file id.
pub fn random_file_id<R: CryptoRng + ?Sized>(rng: &mut R) -> [u8; FILE_ID_LEN] {
    let mut id = [0u8; FILE_ID_LEN];
    rng.fill_bytes(&mut id);
    id
}

/// The first bytes of a message body that is an attachment's reference:
/// `0xFF` never occurs in UTF-8, so no text message starts this way.
pub const REFERENCE_MAGIC: [u8; 4] = [0xFF, b'S', b'A', 0x00];
/// Format byte of a reference, after the magic.
pub const REFERENCE_VERSION: u8 = 0x01;
/// Longest file name a reference carries, in bytes (UTF-8).
pub const MAX_NAME_LEN: usize = 255;
/// Longest media type a reference carries, in bytes.
pub const MAX_TYPE_LEN: usize = 127;
/// Most download tokens (recipient devices) a reference carries.
pub const MAX_TOKENS: usize = 64;
/// Length of a device's tag in a reference.
pub const DEVICE_TAG_LEN: usize = 8;

/// Whether a message body is an attachment's reference (by its first
/// bytes only; [`AttachmentRef::decode`] checks the rest).
pub fn is_reference(body: &[u8]) -> bool {
    body.starts_with(&REFERENCE_MAGIC)
}

/// The tag that picks a device's download token out of a reference: the
/// first bytes of SHA-256 over a label and the device's identity key.
pub fn device_tag(device: &crate::IdentityKey) -> [u8; DEVICE_TAG_LEN] {
    let digest = Sha256::new()
        .chain_update(b"sotto/attachment-token/v1")
        .chain_update(device.as_bytes())
        .finalize();
    let mut tag = [0u8; DEVICE_TAG_LEN];
    tag.copy_from_slice(&digest[..DEVICE_TAG_LEN]);
    tag
}

/// What a message says about its attachment (the message's body):
///
/// ```text
/// reference = REFERENCE_MAGIC || 0x01 || blob id(16) || file id(16) || key(32)
///             || u64be(len) || digest(32) || u8(len) || name || u8(len) || type
///             || u8(n) || n × (device tag(8) || token(32))     1 <= n <= 64
/// ```
///
/// The blob is on the relay under `blob_id`; each recipient device (the
/// contact's, and the sender's own other devices) fetches it with the
/// token after its tag and tells the relay when done, which deletes the
/// blob once every token is done. Everyone the message reaches learns
/// every token: a device could release another's, which only makes it
/// fetch from a blob that is gone.
#[derive(Clone, PartialEq, Eq)]
pub struct AttachmentRef {
    /// The blob's id on the relay.
    pub blob_id: [u8; 16],
    /// The file's id (in every chunk's associated data).
    pub file_id: [u8; FILE_ID_LEN],
    /// The file's key.
    pub key: AttachmentKey,
    /// The file's length in bytes.
    pub len: u64,
    /// SHA-256 of the blob.
    pub digest: [u8; DIGEST_LEN],
    /// The file's name (UTF-8, no path), as the sender gave it.
    pub name: String,
    /// Its media type (`application/octet-stream` when unknown).
    pub media_type: String,
    /// Each recipient device's tag ([`device_tag`]) and download token.
    pub tokens: Vec<([u8; DEVICE_TAG_LEN], [u8; 32])>,
}

impl PartialEq for AttachmentKey {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl Eq for AttachmentKey {}

impl core::fmt::Debug for AttachmentRef {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AttachmentRef")
            .field("len", &self.len)
            .field("media_type", &self.media_type)
            .field("tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

impl AttachmentRef {
    /// The reference as a message body, wiped on drop.
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>> {
        if self.name.len() > MAX_NAME_LEN {
            return Err(Error::PlaintextTooLarge {
                len: self.name.len(),
                max: MAX_NAME_LEN,
            });
        }
        if self.media_type.len() > MAX_TYPE_LEN {
            return Err(Error::PlaintextTooLarge {
                len: self.media_type.len(),
                max: MAX_TYPE_LEN,
            });
        }
        if self.tokens.is_empty() || self.tokens.len() > MAX_TOKENS {
            return Err(Error::PlaintextTooLarge {
                len: self.tokens.len(),
                max: MAX_TOKENS,
            });
        }
        let mut out = Zeroizing::new(Vec::with_capacity(
            160 + self.name.len() + self.media_type.len() + 40 * self.tokens.len(),
        ));
        out.extend_from_slice(&REFERENCE_MAGIC);
        out.push(REFERENCE_VERSION);
        out.extend_from_slice(&self.blob_id);
        out.extend_from_slice(&self.file_id);
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.digest);
        out.push(self.name.len() as u8);
        out.extend_from_slice(self.name.as_bytes());
        out.push(self.media_type.len() as u8);
        out.extend_from_slice(self.media_type.as_bytes());
        out.push(self.tokens.len() as u8);
        for (tag, token) in &self.tokens {
            out.extend_from_slice(tag);
            out.extend_from_slice(token);
        }
        Ok(out)
    }

    /// Reads a reference; anything but exactly one is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = crate::wire::Reader::new(bytes);
        if r.take(4)? != REFERENCE_MAGIC {
            return Err(Error::UnknownMessageType(
                bytes.first().copied().unwrap_or(0),
            ));
        }
        let version = r.u8()?;
        if version != REFERENCE_VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let blob_id = *r.array::<16>()?;
        let file_id = *r.array::<FILE_ID_LEN>()?;
        let key = AttachmentKey::from_bytes(*r.array::<32>()?);
        let len = r.u64()?;
        if len > MAX_FILE_LEN {
            return Err(Error::PlaintextTooLarge {
                len: usize::try_from(len).unwrap_or(usize::MAX),
                max: MAX_FILE_LEN as usize,
            });
        }
        let digest = *r.array::<DIGEST_LEN>()?;
        let name_len = usize::from(r.u8()?);
        let name = String::from_utf8(r.take(name_len)?.to_vec())
            .map_err(|_| Error::InvalidBundle("attachment name is not UTF-8"))?;
        let type_len = usize::from(r.u8()?);
        if type_len > MAX_TYPE_LEN {
            return Err(Error::PlaintextTooLarge {
                len: type_len,
                max: MAX_TYPE_LEN,
            });
        }
        let media_type = String::from_utf8(r.take(type_len)?.to_vec())
            .map_err(|_| Error::InvalidBundle("attachment type is not UTF-8"))?;
        let n = usize::from(r.u8()?);
        if n == 0 || n > MAX_TOKENS {
            return Err(Error::InvalidBundle("attachment token count"));
        }
        let mut tokens = Vec::with_capacity(n);
        for _ in 0..n {
            tokens.push((*r.array::<DEVICE_TAG_LEN>()?, *r.array::<32>()?));
        }
        r.finish()?;
        Ok(Self {
            blob_id,
            file_id,
            key,
            len,
            digest,
            name,
            media_type,
            tokens,
        })
    }

    /// The download token of the device tagged `tag`, if the sender gave
    /// it one.
    pub fn token_for(&self, tag: &[u8; DEVICE_TAG_LEN]) -> Option<&[u8; 32]> {
        self.tokens
            .iter()
            .find(|(t, _)| t == tag)
            .map(|(_, token)| token)
    }
}

/// Encrypts a whole file in memory (for tests and small files): the blob.
pub fn seal_all(
    key: &AttachmentKey,
    file_id: [u8; FILE_ID_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let cipher = ChunkCipher::new(key, file_id, plaintext.len() as u64)?;
    let mut blob = Vec::with_capacity(blob_len(plaintext.len() as u64) as usize);
    let mut chunk = Vec::with_capacity(CHUNK_LEN + CHUNK_TAG_LEN);
    for index in 0..cipher.chunks() {
        let start = (index as usize) * CHUNK_LEN;
        let end = (start + CHUNK_LEN).min(plaintext.len());
        chunk.clear();
        chunk.extend_from_slice(&plaintext[start..end]);
        cipher.seal(index, &mut chunk)?;
        blob.extend_from_slice(&chunk);
    }
    Ok(blob)
}

/// Decrypts a whole blob in memory (for tests and small files).
pub fn open_all(
    key: &AttachmentKey,
    file_id: [u8; FILE_ID_LEN],
    len: u64,
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let cipher = ChunkCipher::new(key, file_id, len)?;
    if blob.len() as u64 != blob_len(len) {
        return Err(Error::AuthenticationFailed);
    }
    let mut out = Zeroizing::new(Vec::with_capacity(len as usize));
    let mut chunk = Vec::with_capacity(CHUNK_LEN + CHUNK_TAG_LEN);
    let mut offset = 0usize;
    for index in 0..cipher.chunks() {
        let n = plain_chunk_len(len, index).unwrap_or(0) + CHUNK_TAG_LEN;
        chunk.clear();
        chunk.extend_from_slice(&blob[offset..offset + n]);
        cipher.open(index, &mut chunk)?;
        out.extend_from_slice(&chunk);
        chunk.zeroize();
        offset += n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::from_seed([9; 32])
    }

    #[test]
    fn files_of_every_shape_round_trip() {
        let mut rng = rng();
        let key = AttachmentKey::generate(&mut rng);
        let id = random_file_id(&mut rng);
        for len in [
            0,
            1,
            CHUNK_LEN - 1,
            CHUNK_LEN,
            CHUNK_LEN + 1,
            3 * CHUNK_LEN + 17,
        ] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let blob = seal_all(&key, id, &plain).unwrap();
            assert_eq!(blob.len() as u64, blob_len(len as u64));
            assert_eq!(*open_all(&key, id, len as u64, &blob).unwrap(), plain);
        }
    }

    #[test]
    fn a_chunk_moved_dropped_altered_or_cut_does_not_open() {
        let mut rng = rng();
        let key = AttachmentKey::generate(&mut rng);
        let id = random_file_id(&mut rng);
        let len = 3 * CHUNK_LEN as u64;
        let plain = vec![7u8; len as usize];
        let blob = seal_all(&key, id, &plain).unwrap();
        let c = CHUNK_LEN + CHUNK_TAG_LEN;
        let cipher = ChunkCipher::new(&key, id, len).unwrap();
        // Reordered: chunk 1 where chunk 0 belongs.
        let mut chunk = blob[c..2 * c].to_vec();
        assert!(cipher.open(0, &mut chunk).is_err());
        assert!(chunk.iter().all(|&b| b == 0));
        // Altered: one bit.
        let mut altered = blob.clone();
        altered[c + 5] ^= 1;
        assert!(open_all(&key, id, len, &altered).is_err());
        // Dropped: the blob without its last chunk, read as a shorter file.
        let short = &blob[..2 * c];
        assert!(open_all(&key, id, 2 * CHUNK_LEN as u64, short).is_err());
        // Cut: fewer bytes than the length says.
        assert!(open_all(&key, id, len, &blob[..blob.len() - 1]).is_err());
        // Another file (id) or another key.
        assert!(open_all(&key, [0; 16], len, &blob).is_err());
        assert!(open_all(&AttachmentKey::generate(&mut rng), id, len, &blob).is_err());
        // A chunk from another file with the same key and length.
        let other = seal_all(&key, random_file_id(&mut rng), &plain).unwrap();
        let mut spliced = blob.clone();
        spliced[..c].copy_from_slice(&other[..c]);
        assert!(open_all(&key, id, len, &spliced).is_err());
    }

    #[test]
    fn a_reference_round_trips_and_every_cut_or_change_of_shape_is_refused() {
        let mut rng = rng();
        let reference = AttachmentRef {
            blob_id: [1; 16],
            file_id: random_file_id(&mut rng),
            key: AttachmentKey::generate(&mut rng),
            len: 5 * CHUNK_LEN as u64 + 3,
            digest: [2; 32],
            name: "photo of the lake.jpg".into(),
            media_type: "image/jpeg".into(),
            tokens: vec![([3; 8], [4; 32]), ([5; 8], [6; 32])],
        };
        let bytes = reference.encode().unwrap();
        assert!(is_reference(&bytes));
        assert!(!is_reference("plain text".as_bytes()));
        let back = AttachmentRef::decode(&bytes).unwrap();
        assert_eq!(back, reference);
        assert_eq!(back.token_for(&[5; 8]), Some(&[6; 32]));
        assert_eq!(back.token_for(&[9; 8]), None);
        for cut in 0..bytes.len() {
            assert!(AttachmentRef::decode(&bytes[..cut]).is_err());
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(AttachmentRef::decode(&longer).is_err());
        let mut no_tokens = reference.clone();
        no_tokens.tokens.clear();
        assert!(no_tokens.encode().is_err());
        let mut long_name = reference;
        long_name.name = "x".repeat(MAX_NAME_LEN + 1);
        assert!(long_name.encode().is_err());
    }

    #[test]
    fn the_digest_names_exactly_one_blob_and_sizes_add_up() {
        let mut rng = rng();
        let key = AttachmentKey::generate(&mut rng);
        let blob = seal_all(&key, random_file_id(&mut rng), b"hello").unwrap();
        let mut d = BlobDigest::new();
        d.update(&blob[..3]);
        d.update(&blob[3..]);
        let digest = d.clone().finish();
        assert!(d.matches(&digest));
        let mut other = BlobDigest::new();
        other.update(&blob[1..]);
        assert!(!other.matches(&digest));
        assert_eq!(chunk_count(0), 1);
        assert_eq!(blob_len(0), CHUNK_TAG_LEN as u64);
        assert_eq!(plain_chunk_len(0, 0), Some(0));
        assert_eq!(plain_chunk_len(0, 1), None);
        assert!(ChunkCipher::new(&key, [0; 16], MAX_FILE_LEN + 1).is_err());
    }
}
