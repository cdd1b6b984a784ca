//! Sealed values: XChaCha20-Poly1305 with a fresh random nonce and
//! associated data that names the value's place in the database.
//!
//! ```text
//! sealed = 0x01 (format) || nonce(24) || ciphertext || tag(16)
//! AD     = 0x01 || u8(len table) || table || u8(len column) || column
//!               || u8(len row) || row
//! ```
//! `row` is the row's lookup key, or `conversation lookup || u64be(seq)`
//! for messages, so a sealed value copied to another row, column or table
//! does not open.

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{KeyInit, Tag, XChaCha20Poly1305, XNonce};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Format byte of a sealed value (also the first byte of its AD).
pub(crate) const SEALED_VERSION: u8 = 0x01;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes a sealed value adds to its plaintext.
pub(crate) const SEAL_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;
/// Largest value the store seals (bounded well below the AEAD's limit).
const MAX_SEALED_PLAINTEXT: usize = 64 * 1024 * 1024;

/// Where a sealed value lives: the associated data it is bound to.
#[derive(Clone, Copy)]
pub(crate) struct Place<'a> {
    pub(crate) table: &'static str,
    pub(crate) column: &'static str,
    pub(crate) row: &'a [u8],
}

impl<'a> Place<'a> {
    pub(crate) fn new(table: &'static str, column: &'static str, row: &'a [u8]) -> Self {
        Self { table, column, row }
    }

    fn associated_data(&self) -> Vec<u8> {
        let mut ad = Vec::with_capacity(4 + self.table.len() + self.column.len() + self.row.len());
        ad.push(SEALED_VERSION);
        for part in [self.table.as_bytes(), self.column.as_bytes(), self.row] {
            // Every part is a fixed name or at most 40 bytes of row id.
            ad.push(u8::try_from(part.len()).unwrap_or(u8::MAX));
            ad.extend_from_slice(&part[..part.len().min(255)]);
        }
        ad
    }
}

/// An XChaCha20-Poly1305 key. The cipher state is wiped on drop.
pub(crate) struct SealingKey {
    cipher: XChaCha20Poly1305,
}

impl SealingKey {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// Seals `plaintext` for `place` under a fresh random nonce.
    pub(crate) fn seal<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        place: Place<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        if plaintext.len() > MAX_SEALED_PLAINTEXT {
            return Err(Error::TooLong {
                what: "sealed value",
                len: plaintext.len(),
                max: MAX_SEALED_PLAINTEXT,
            });
        }
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_inout_detached(
                &XNonce::from(nonce),
                &place.associated_data(),
                (&mut out[1 + NONCE_LEN..]).into(),
            )
            .map_err(|_| Error::TooLong {
                what: "sealed value",
                len: plaintext.len(),
                max: MAX_SEALED_PLAINTEXT,
            })?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens a value sealed for `place`; `None` if it is truncated, of an
    /// unknown format, tampered with, sealed for another place or under
    /// another key.
    pub(crate) fn open(&self, place: Place<'_>, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < SEAL_OVERHEAD || sealed[0] != SEALED_VERSION {
            return None;
        }
        let (head, rest) = sealed.split_at(1 + NONCE_LEN);
        let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce: [u8; NONCE_LEN] = head[1..].try_into().ok()?;
        let tag = Tag::try_from(tag).ok()?;
        let mut plaintext = Zeroizing::new(body.to_vec());
        self.cipher
            .decrypt_inout_detached(
                &XNonce::from(nonce),
                &place.associated_data(),
                plaintext.as_mut_slice().into(),
                &tag,
            )
            .ok()?;
        Some(plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn roundtrip_and_place_binding() {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([1; 32]);
        let key = SealingKey::new(&[7; 32]);
        let here = Place::new("messages", "sealed", b"row-1");
        let sealed = key.seal(&mut rng, here, b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(key.open(here, &sealed).unwrap().as_slice(), b"hello");

        for other in [
            Place::new("messages", "sealed", b"row-2"),
            Place::new("messages", "other", b"row-1"),
            Place::new("contacts", "sealed", b"row-1"),
        ] {
            assert!(key.open(other, &sealed).is_none());
        }
        assert!(SealingKey::new(&[8; 32]).open(here, &sealed).is_none());
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(key.open(here, &bad).is_none(), "flip at {i}");
        }
        assert!(key.open(here, &sealed[..sealed.len() - 1]).is_none());
        assert!(key.open(here, &[]).is_none());
    }

    #[test]
    fn fresh_nonce_per_seal() {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([2; 32]);
        let key = SealingKey::new(&[7; 32]);
        let here = Place::new("t", "c", b"r");
        assert_ne!(
            key.seal(&mut rng, here, b"same").unwrap(),
            key.seal(&mut rng, here, b"same").unwrap()
        );
    }

    #[test]
    fn ad_parts_are_length_prefixed() {
        // "ab" + "c" must not collide with "a" + "bc".
        let a = Place::new("ab", "c", b"").associated_data();
        let b = Place::new("a", "bc", b"").associated_data();
        assert_ne!(a, b);
    }
}
