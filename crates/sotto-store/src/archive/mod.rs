//! History archives: a profile's identity, contacts and whole history in
//! one encrypted file, to keep as a backup or to move the profile to a new
//! device without the old one online.
//!
//! [`Store::export_archive`](crate::Store::export_archive) writes one,
//! [`Store::import_archive`](crate::Store::import_archive) makes a new
//! store from one. The format (`docs/storage.md`, "History archive"):
//!
//! ```text
//! header  = "SOTTOHA1" || u8(kdf) || u32be(m KiB) || u32be(t) || u32be(p)
//!           || salt(16) || archive id(16) || u64be(messages) || u64be(contacts)
//! key     = Argon2id(passphrase, salt, m, t, p)                   kdf = 1
//!         | HKDF-SHA256(salt, key given by the caller, info)      kdf = 0
//! chunk i = u32be(len) || ChaCha20-Poly1305(key, nonce = 0(4) || u64be(i),
//!             AD = "sotto/history-archive/v1" || header || u64be(i) || u8(final),
//!             up to 256 KiB of the record stream)
//! record  = u8(type) || u32be(len) || payload
//! ```
//!
//! The chunk layer ([`chunks`]) knows nothing of stores: it carries any
//! byte stream under a header and a key, so a device-to-device transfer
//! uses it with a key from a linking exchange ([`ArchiveKey`], kdf 0).
//!
//! A **history transfer** ([`transfer`]) is the same format with its own
//! magic (`"SOTTOHT1"`) and without the identity and prekey ids: a linked
//! device merges it into its own store, chunk by chunk, resumably.
//!
//! What an archive holds, and why sessions, prekeys and the outbox's
//! ciphertexts are left out: see `docs/storage.md`.

mod chunks;
mod error;
mod export;
mod header;
mod import;
mod parallel;
mod records;
mod rows;
mod transfer;

use core::fmt;

use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub use error::{ArchiveError, ArchiveKind, ArchiveLock};
pub use transfer::{TransferFrames, TransferProgress};

/// A 32-byte key that locks an archive instead of a passphrase (header kdf
/// byte 0): for a transfer between devices whose key comes from a linking
/// exchange. Each archive derives its own chunk key from it and the
/// archive's random salt, so one `ArchiveKey` may lock several archives.
///
/// Secret: wiped on drop, not shown by `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ArchiveKey(Box<[u8; 32]>);

impl ArchiveKey {
    /// The key with these bytes (copy them from where they were agreed,
    /// then wipe the original).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let mut key = Box::new([0u8; 32]);
        key.copy_from_slice(bytes);
        Self(key)
    }

    /// A random key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = Box::new([0u8; 32]);
        rng.fill_bytes(key.as_mut_slice());
        Self(key)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ArchiveKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ArchiveKey(<redacted>)")
    }
}

/// The random id an archive carries in its header: tells two archives
/// apart (a transfer can name the one it expects). Not secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArchiveId(pub [u8; 16]);

impl ArchiveId {
    /// The 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for ArchiveId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArchiveId(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// How far an export or import got, for a progress bar. Reported after
/// each chunk (every 256 KiB of history) and once at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiveProgress {
    /// Messages written or read so far.
    pub messages_done: u64,
    /// Messages in the archive (from its header).
    pub messages_total: u64,
    /// Archive bytes written or read so far, header included.
    pub bytes: u64,
}

impl ArchiveProgress {
    /// The share done, from 0.0 to 1.0 (1.0 for an archive without
    /// messages).
    pub fn fraction(&self) -> f64 {
        if self.messages_total == 0 {
            1.0
        } else {
            (self.messages_done.min(self.messages_total) as f64) / (self.messages_total as f64)
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiveSummary {
    /// The archive's id.
    pub id: ArchiveId,
    /// Contacts written.
    pub contacts: u64,
    /// Conversations written.
    pub conversations: u64,
    /// Messages written.
    pub messages: u64,
    /// Messages whose row could not be read (a damaged store): the archive
    /// names their seqs, and the restored history reports each as missing,
    /// as this store does.
    pub unreadable_messages: u64,
    /// Contacts whose row could not be read: not in the archive.
    pub unreadable_contacts: u64,
    /// Conversations whose row (and so whose key) could not be read: not in
    /// the archive, nor any of their messages.
    pub unreadable_conversations: u64,
    /// Bytes written, header included.
    pub bytes: u64,
}

impl ArchiveSummary {
    /// True when every row of the store went into the archive.
    pub fn is_complete(&self) -> bool {
        self.unreadable_messages == 0
            && self.unreadable_contacts == 0
            && self.unreadable_conversations == 0
    }
}

/// Changes `stream` one to three times at random: a flipped bit, a byte
/// replaced, a cut, a few bytes inserted (for the tests that check that no
/// altered record stream makes an import panic).
#[cfg(test)]
pub(crate) fn mutate(stream: &mut Vec<u8>, rng: &mut impl rand::Rng) {
    use rand::RngExt;
    for _ in 0..rng.random_range(1..4) {
        if stream.is_empty() {
            return;
        }
        let at = rng.random_range(0..stream.len());
        match rng.random_range(0..4) {
            0 => stream[at] ^= 1 << rng.random_range(0..8),
            1 => stream[at] = rng.random(),
            2 => stream.truncate(at),
            _ => {
                let mut extra = [0u8; 8];
                rng.fill_bytes(&mut extra);
                let n = rng.random_range(1..8);
                stream.splice(at..at, extra[..n].iter().copied());
            }
        }
    }
}
