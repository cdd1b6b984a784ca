//! The names of a blob: its id, the tokens that open it, and what the
//! relay says of its upload.

use rand::TryRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The domain of a token's verifier: `SHA-256(BLOB_TOKEN_DOMAIN || token)`.
pub const BLOB_TOKEN_DOMAIN: &[u8] = b"sotto-relay/blob-token/v1";

/// A blob's id: 16 bytes the relay draws at random when the blob is
/// created (`BlobCreate`). Knowing it opens nothing: a download needs a
/// [`BlobToken`] too. Displayed as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobId(pub [u8; 16]);

impl BlobId {
    /// A fresh random id from the operating system's RNG.
    pub fn random() -> Result<Self, rand::rngs::SysError> {
        let mut id = [0u8; 16];
        rand::rngs::SysRng.try_fill_bytes(&mut id)?;
        Ok(Self(id))
    }

    /// The id a 32-digit hex string names (either case); `None` for
    /// anything else.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let bytes = hex.as_bytes();
        if bytes.len() != 32 {
            return None;
        }
        let mut id = [0u8; 16];
        for (out, pair) in id.iter_mut().zip(bytes.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16);
            *out = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
        }
        Some(Self(id))
    }
}

impl core::fmt::Display for BlobId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What the relay keeps of a [`BlobToken`]: `SHA-256("sotto-relay/blob-
/// token/v1" || token)`. It recognises the token by it and cannot make a
/// token from it.
pub type BlobVerifier = [u8; 32];

/// The capability to download one blob and to say one's download is done:
/// 32 random bytes the uploader makes, one per recipient, and sends each
/// recipient end-to-end encrypted. The relay is given only their
/// [verifiers](Self::verifier) at creation, and sees a token when its
/// holder downloads.
///
/// Secret: zeroized on drop, compared in constant time, and `Debug` does
/// not show it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct BlobToken(Box<[u8; 32]>);

impl BlobToken {
    /// A fresh token from the operating system's RNG.
    pub fn random() -> Result<Self, rand::rngs::SysError> {
        let mut token = Box::new([0u8; 32]);
        rand::rngs::SysRng.try_fill_bytes(token.as_mut())?;
        Ok(Self(token))
    }

    /// The token with these bytes (as received from the uploader).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut bytes = bytes;
        let token = Self(Box::new(bytes));
        bytes.zeroize();
        token
    }

    /// The token's bytes, to send to its recipient (end-to-end encrypted).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// What the relay stores instead of the token:
    /// `SHA-256(BLOB_TOKEN_DOMAIN || token)`. Public: it reveals nothing
    /// of the token, and opens nothing.
    pub fn verifier(&self) -> BlobVerifier {
        verifier_of(&self.0)
    }
}

/// `SHA-256(BLOB_TOKEN_DOMAIN || token)`.
pub(crate) fn verifier_of(token: &[u8; 32]) -> BlobVerifier {
    let mut hash = Sha256::new();
    hash.update(BLOB_TOKEN_DOMAIN);
    hash.update(token);
    hash.finalize().into()
}

/// Whether two verifiers are equal, in time that does not depend on where
/// they differ.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) fn verifiers_equal(a: &BlobVerifier, b: &BlobVerifier) -> bool {
    a.ct_eq(b).into()
}

impl PartialEq for BlobToken {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_slice().ct_eq(other.0.as_slice()).into()
    }
}

impl Eq for BlobToken {}

impl core::fmt::Debug for BlobToken {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("BlobToken(<redacted>)")
    }
}

/// Where a blob's upload stands: `stored_len` of its `total_len` bytes are
/// on the relay (durably). Complete, and downloadable, when they are
/// equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobState {
    /// Bytes stored, from the start of the blob.
    pub stored_len: u64,
    /// The blob's length, fixed when it was created.
    pub total_len: u64,
}

impl BlobState {
    /// Every byte is stored: the blob can be downloaded.
    pub fn is_complete(&self) -> bool {
        self.stored_len == self.total_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_id_shows_as_hex_and_reads_back() {
        let id = BlobId([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(BlobId::from_hex(&id.to_string()), Some(id));
        assert_eq!(BlobId::from_hex(&"AB".repeat(16)), Some(id));
        for bad in ["", "ab", &"zz".repeat(16), &"ab".repeat(17)] {
            assert_eq!(BlobId::from_hex(bad), None, "{bad}");
        }
        assert_ne!(BlobId::random().unwrap(), BlobId::random().unwrap());
    }

    #[test]
    fn a_tokens_debug_is_redacted() {
        let token = BlobToken::from_bytes([0x42; 32]);
        let shown = format!("{token:?}");
        assert_eq!(shown, "BlobToken(<redacted>)");
        assert!(!shown.contains("42"));
    }

    #[test]
    fn the_verifier_is_the_domain_separated_hash_of_the_token() {
        let token = BlobToken::from_bytes([7; 32]);
        let mut hash = Sha256::new();
        hash.update(b"sotto-relay/blob-token/v1");
        hash.update([7; 32]);
        let expected: [u8; 32] = hash.finalize().into();
        assert_eq!(token.verifier(), expected);
        assert_ne!(token.verifier(), BlobToken::from_bytes([8; 32]).verifier());
        assert!(verifiers_equal(&expected, &token.verifier()));
        assert!(!verifiers_equal(&expected, &[0; 32]));
    }

    #[test]
    fn random_tokens_differ_and_compare_by_value() {
        let a = BlobToken::random().unwrap();
        let b = BlobToken::random().unwrap();
        assert_ne!(a, b);
        assert_eq!(a, BlobToken::from_bytes(*a.as_bytes()));
    }
}
