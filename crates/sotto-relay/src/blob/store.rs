//! What the relay asks of a blob store, and its defaults.

use std::time::Duration;

use super::{BlobId, BlobState, BlobVerifier};
use crate::address::MailboxAddress;
use crate::clock::UnixTime;

/// Default of `ServerConfig::max_blob_size`: 4 GiB.
pub const DEFAULT_MAX_BLOB_SIZE: u64 = 4 << 30;

/// Default of `ServerConfig::max_blob_ttl`: 30 days.
pub const DEFAULT_MAX_BLOB_TTL: Duration = Duration::from_secs(30 * 86_400);

/// Default of `ServerConfig::max_blob_bytes_per_mailbox`: 8 GiB.
pub const DEFAULT_MAX_BLOB_BYTES_PER_MAILBOX: u64 = 8 << 30;

/// Default of `ServerConfig::max_total_blob_bytes`: 64 GiB.
pub const DEFAULT_MAX_TOTAL_BLOB_BYTES: u64 = 64 << 30;

/// What the in-memory blob store of `ServerConfig::default()` holds at
/// most: 1 GiB.
pub const DEFAULT_MEMORY_BLOB_BYTES: u64 = 1 << 30;

/// A blob to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBlob {
    /// The mailbox that uploads it; the only one whose `BlobPut` counts.
    pub uploader: MailboxAddress,
    /// Its length.
    pub total_len: u64,
    /// The hour (since the Unix epoch) from which it is gone:
    /// `ceil((now + ttl) / 3600)`, as for envelopes.
    pub expiry_hour: u64,
    /// One verifier per token (1 to 64).
    pub verifiers: Vec<BlobVerifier>,
}

/// The limits a new blob is checked against, atomically with its creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLimits {
    /// Bytes one mailbox's blobs may reserve together (their full
    /// lengths, stored or not).
    pub max_bytes_per_mailbox: u64,
    /// Bytes all blobs may reserve together.
    pub max_total_bytes: u64,
}

/// What a store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobTotals {
    /// Blobs, expired ones until they are swept.
    pub blobs: u64,
    /// Their full lengths together: what the limits count.
    pub reserved_bytes: u64,
    /// Bytes of them actually stored.
    pub stored_bytes: u64,
}

/// What a sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweptBlobs {
    /// Expired blobs deleted.
    pub blobs: u64,
    /// Their stored bytes.
    pub bytes: u64,
}

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The bytes of the blob stored now.
    pub stored_len: u64,
    /// Bytes this put added (0 for a resend).
    pub written: u64,
}

impl Appended {
    /// A put that added nothing to the `stored_len` bytes stored.
    pub fn nothing(stored_len: u64) -> Self {
        Self {
            stored_len,
            written: 0,
        }
    }
}

/// Why a blob operation failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// No such blob for this caller: unknown, expired, deleted, not the
    /// uploader's, or a token that is not one of its own. One error for
    /// all, so the relay is no oracle of which blobs exist.
    #[error("no such blob")]
    NotFound,
    /// A download of a blob whose upload is not complete.
    #[error("blob incomplete: {stored_len} of {total_len} bytes stored")]
    Incomplete {
        /// Bytes stored.
        stored_len: u64,
        /// The blob's length.
        total_len: u64,
    },
    /// A put starting after the stored bytes (the uploader lost track:
    /// it asks the state and goes on from there).
    #[error("offset {offset} is past the {stored_len} bytes stored")]
    Gap {
        /// The put's offset.
        offset: u64,
        /// Bytes stored.
        stored_len: u64,
    },
    /// A put, or a read, beyond the blob's length.
    #[error("{end} is past the blob's length of {total_len} bytes")]
    PastEnd {
        /// Where the put would end, or the read start.
        end: u64,
        /// The blob's length.
        total_len: u64,
    },
    /// The uploader's blobs would reserve more than its limit.
    #[error("the uploader's blobs would take {would_be} bytes, at most {max}")]
    MailboxFull {
        /// Reserved with the new blob.
        would_be: u64,
        /// `max_bytes_per_mailbox`.
        max: u64,
    },
    /// All blobs would reserve more than the store-wide limit (or the
    /// memory store's own cap).
    #[error("blobs would take {would_be} bytes, at most {max}")]
    StorageFull {
        /// Reserved with the new blob.
        would_be: u64,
        /// The limit.
        max: u64,
    },
    /// The disk is full; nothing was written.
    #[error("the disk is full")]
    DiskFull,
    /// A stored blob's metadata does not parse.
    #[error("blob metadata is corrupt: {0}")]
    Corrupt(&'static str),
    /// The file system failed.
    #[error("blob storage failed: {0}")]
    Io(#[from] std::io::Error),
}

impl BlobError {
    /// An I/O error, or [`BlobError::DiskFull`] if it says the disk is full
    /// (`ENOSPC`, `EDQUOT`).
    pub(crate) fn from_io(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Self::DiskFull,
            _ => Self::Io(e),
        }
    }
}

/// Where the relay keeps blobs: a byte string per blob, appended to by its
/// uploader, read by the holders of its tokens, deleted when all of them
/// are done or when it expires (docs/relay.md §12).
///
/// Every method is synchronous and may block on the disk: the relay calls
/// them on its blocking pool. A method answers `Ok` only once what it did
/// is durable (for a directory store, synced to disk). None of them holds
/// more than one read's or one put's bytes in memory, whatever the blob's
/// size.
pub trait BlobStore: Send + Sync + core::fmt::Debug + 'static {
    /// Creates an empty blob and returns the id it drew at random, if
    /// the uploader's and the store's limits allow its full length
    /// (`MailboxFull`, `StorageFull`).
    fn create(&self, blob: NewBlob, limits: &BlobLimits) -> Result<BlobId, BlobError>;

    /// Appends `data` at `offset` to `uploader`'s blob `id` and returns the
    /// bytes stored now (and how many it added), once they are durable. `offset` below what is
    /// stored is a resend: nothing is written or compared, and the answer
    /// is what is stored. `Gap` above it, `PastEnd` beyond the blob's
    /// length; another mailbox's blob is `NotFound`.
    fn append(
        &self,
        id: &BlobId,
        uploader: &MailboxAddress,
        offset: u64,
        data: &[u8],
        now: UnixTime,
    ) -> Result<Appended, BlobError>;

    /// How much of blob `id` is stored, for its uploader (`uploader` is the
    /// asking connection's mailbox) or the holder of one of its tokens
    /// (`verifier`, the token's verifier); `NotFound` for anyone else.
    fn state(
        &self,
        id: &BlobId,
        uploader: Option<&MailboxAddress>,
        verifier: Option<&BlobVerifier>,
        now: UnixTime,
    ) -> Result<BlobState, BlobError>;

    /// At most `max_len` bytes of complete blob `id` from `offset`, for the
    /// holder of one of its tokens; fewer at its end, none at its length.
    /// `Incomplete` before every byte is stored. Reads only what it
    /// returns.
    fn read(
        &self,
        id: &BlobId,
        verifier: &BlobVerifier,
        offset: u64,
        max_len: usize,
        now: UnixTime,
    ) -> Result<Vec<u8>, BlobError>;

    /// Marks the download of the holder of `verifier` done (again: no
    /// change) and deletes the blob once every token's is; `true` if this
    /// call deleted it.
    fn done(&self, id: &BlobId, verifier: &BlobVerifier, now: UnixTime) -> Result<bool, BlobError>;

    /// Deletes every blob whose expiry hour has begun at `now`, complete
    /// or not (and whatever a crash left half made).
    fn sweep_expired(&self, now: UnixTime) -> Result<SweptBlobs, BlobError>;

    /// What the store holds.
    fn totals(&self) -> Result<BlobTotals, BlobError>;
}

/// Whether a blob expiring at `expiry_hour` is gone at `now`: from the
/// start of that hour on, as for envelopes.
pub(crate) fn is_expired(expiry_hour: u64, now: UnixTime) -> bool {
    expiry_hour <= now.hour()
}

/// The index of `verifier` among `verifiers`, compared in constant time
/// each (all are compared, whichever matches).
pub(crate) fn find_verifier(verifiers: &[BlobVerifier], verifier: &BlobVerifier) -> Option<usize> {
    let mut found = None;
    for (i, v) in verifiers.iter().enumerate() {
        if super::id::verifiers_equal(v, verifier) && found.is_none() {
            found = Some(i);
        }
    }
    found
}

/// Checks `blob` against `limits` given what is reserved already, by its
/// uploader (`mailbox`) and in all (`total`).
pub(crate) fn check_limits(
    blob: &NewBlob,
    limits: &BlobLimits,
    mailbox: u64,
    total: u64,
) -> Result<(), BlobError> {
    let would_be = mailbox.saturating_add(blob.total_len);
    if would_be > limits.max_bytes_per_mailbox {
        return Err(BlobError::MailboxFull {
            would_be,
            max: limits.max_bytes_per_mailbox,
        });
    }
    let would_be = total.saturating_add(blob.total_len);
    if would_be > limits.max_total_bytes {
        return Err(BlobError::StorageFull {
            would_be,
            max: limits.max_total_bytes,
        });
    }
    Ok(())
}

/// What every blob store must do, run against each (the directory store's
/// and the memory store's unit tests call it).
#[cfg(test)]
pub(crate) mod suite {
    use super::*;

    pub(crate) const LIMITS: BlobLimits = BlobLimits {
        max_bytes_per_mailbox: 1 << 20,
        max_total_bytes: 3 << 19,
    };

    pub(crate) fn alice() -> MailboxAddress {
        MailboxAddress::from_bytes([1; 32])
    }

    pub(crate) fn bob() -> MailboxAddress {
        MailboxAddress::from_bytes([2; 32])
    }

    pub(crate) const NOW: UnixTime = UnixTime::from_secs(1_000 * 3600);

    pub(crate) fn new_blob(total_len: u64, tokens: &[u8]) -> NewBlob {
        NewBlob {
            uploader: alice(),
            total_len,
            expiry_hour: NOW.hour() + 2,
            verifiers: tokens.iter().map(|t| verifier(*t)).collect(),
        }
    }

    pub(crate) fn verifier(token: u8) -> BlobVerifier {
        super::super::id::verifier_of(&[token; 32])
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    /// Runs every case on a fresh store from `make`.
    pub(crate) fn run(make: &dyn Fn() -> Box<dyn BlobStore>) {
        upload_in_pieces_and_read_back(make().as_ref());
        resends_change_nothing_and_gaps_are_refused(make().as_ref());
        only_the_uploader_puts_and_only_tokens_read(make().as_ref());
        reads_wait_for_the_whole_blob(make().as_ref());
        every_token_done_deletes(make().as_ref());
        limits_are_enforced(make().as_ref());
        expired_blobs_are_gone_and_swept(make().as_ref());
    }

    fn upload_in_pieces_and_read_back(s: &dyn BlobStore) {
        let data = pattern(100_000, 7);
        let id = s.create(new_blob(100_000, &[1, 2]), &LIMITS).unwrap();
        let mut offset = 0;
        for piece in data.chunks(30_000) {
            let stored = s
                .append(&id, &alice(), offset, piece, NOW)
                .unwrap()
                .stored_len;
            offset += piece.len() as u64;
            assert_eq!(stored, offset);
        }
        let state = s.state(&id, None, Some(&verifier(2)), NOW).unwrap();
        assert_eq!(
            state,
            BlobState {
                stored_len: 100_000,
                total_len: 100_000
            }
        );
        let mut back = Vec::new();
        while back.len() < data.len() {
            let chunk = s
                .read(&id, &verifier(1), back.len() as u64, 7_000, NOW)
                .unwrap();
            assert!(!chunk.is_empty() && chunk.len() <= 7_000);
            assert!(
                chunk.capacity() <= 7_000,
                "a read holds no more than it returns"
            );
            back.extend_from_slice(&chunk);
        }
        assert_eq!(back, data);
        assert!(
            s.read(&id, &verifier(1), 100_000, 10, NOW)
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            s.read(&id, &verifier(1), 100_001, 10, NOW),
            Err(BlobError::PastEnd { .. })
        ));
        let totals = s.totals().unwrap();
        assert_eq!(
            (totals.blobs, totals.reserved_bytes, totals.stored_bytes),
            (1, 100_000, 100_000)
        );
    }

    fn resends_change_nothing_and_gaps_are_refused(s: &dyn BlobStore) {
        let id = s.create(new_blob(10, &[1]), &LIMITS).unwrap();
        assert_eq!(
            s.append(&id, &alice(), 0, b"abcd", NOW).unwrap().stored_len,
            4
        );
        // A resend of other bytes: nothing written, nothing compared.
        assert_eq!(
            s.append(&id, &alice(), 0, b"XXXXXX", NOW).unwrap(),
            Appended::nothing(4)
        );
        assert_eq!(
            s.append(&id, &alice(), 2, b"XX", NOW).unwrap().stored_len,
            4
        );
        assert!(matches!(
            s.append(&id, &alice(), 5, b"e", NOW),
            Err(BlobError::Gap {
                offset: 5,
                stored_len: 4
            })
        ));
        assert!(matches!(
            s.append(&id, &alice(), 4, b"efghijk", NOW),
            Err(BlobError::PastEnd {
                end: 11,
                total_len: 10
            })
        ));
        assert_eq!(
            s.append(&id, &alice(), 4, b"efghij", NOW)
                .unwrap()
                .stored_len,
            10
        );
        assert_eq!(
            s.read(&id, &verifier(1), 0, 100, NOW).unwrap(),
            b"abcdefghij"
        );
    }

    fn only_the_uploader_puts_and_only_tokens_read(s: &dyn BlobStore) {
        let id = s.create(new_blob(3, &[1]), &LIMITS).unwrap();
        assert!(matches!(
            s.append(&id, &bob(), 0, b"abc", NOW),
            Err(BlobError::NotFound)
        ));
        let unknown = BlobId([9; 16]);
        assert!(matches!(
            s.append(&unknown, &alice(), 0, b"a", NOW),
            Err(BlobError::NotFound)
        ));
        s.append(&id, &alice(), 0, b"abc", NOW).unwrap();
        for (uploader, token) in [(Some(bob()), None), (None, Some(verifier(2))), (None, None)] {
            assert!(matches!(
                s.state(&id, uploader.as_ref(), token.as_ref(), NOW),
                Err(BlobError::NotFound)
            ));
        }
        assert!(s.state(&id, Some(&alice()), None, NOW).is_ok());
        assert!(s.state(&id, Some(&bob()), Some(&verifier(1)), NOW).is_ok());
        assert!(matches!(
            s.read(&id, &verifier(2), 0, 3, NOW),
            Err(BlobError::NotFound)
        ));
        assert!(matches!(
            s.read(&unknown, &verifier(1), 0, 3, NOW),
            Err(BlobError::NotFound)
        ));
        assert!(matches!(
            s.done(&id, &verifier(2), NOW),
            Err(BlobError::NotFound)
        ));
    }

    fn reads_wait_for_the_whole_blob(s: &dyn BlobStore) {
        let id = s.create(new_blob(4, &[1]), &LIMITS).unwrap();
        s.append(&id, &alice(), 0, b"abc", NOW).unwrap();
        assert!(matches!(
            s.read(&id, &verifier(1), 0, 3, NOW),
            Err(BlobError::Incomplete {
                stored_len: 3,
                total_len: 4
            })
        ));
    }

    fn every_token_done_deletes(s: &dyn BlobStore) {
        let id = s.create(new_blob(2, &[1, 2, 3]), &LIMITS).unwrap();
        s.append(&id, &alice(), 0, b"ab", NOW).unwrap();
        assert!(!s.done(&id, &verifier(1), NOW).unwrap());
        assert!(!s.done(&id, &verifier(1), NOW).unwrap(), "idempotent");
        assert!(!s.done(&id, &verifier(3), NOW).unwrap());
        assert_eq!(s.read(&id, &verifier(2), 0, 2, NOW).unwrap(), b"ab");
        assert!(s.done(&id, &verifier(2), NOW).unwrap());
        assert!(matches!(
            s.done(&id, &verifier(2), NOW),
            Err(BlobError::NotFound)
        ));
        assert!(matches!(
            s.read(&id, &verifier(2), 0, 2, NOW),
            Err(BlobError::NotFound)
        ));
        assert_eq!(s.totals().unwrap(), BlobTotals::default());
    }

    fn limits_are_enforced(s: &dyn BlobStore) {
        let half = 1 << 19;
        s.create(new_blob(half, &[1]), &LIMITS).unwrap();
        s.create(new_blob(half, &[1]), &LIMITS).unwrap();
        assert!(matches!(
            s.create(new_blob(1, &[1]), &LIMITS),
            Err(BlobError::MailboxFull { .. })
        ));
        let mut bobs = new_blob(half, &[1]);
        bobs.uploader = bob();
        s.create(bobs.clone(), &LIMITS).unwrap();
        assert!(matches!(
            s.create(bobs, &LIMITS),
            Err(BlobError::StorageFull { .. })
        ));
        assert_eq!(s.totals().unwrap().reserved_bytes, 3 * half);
    }

    fn expired_blobs_are_gone_and_swept(s: &dyn BlobStore) {
        let soon = s.create(new_blob(3, &[1]), &LIMITS).unwrap();
        let mut later = new_blob(3, &[1]);
        later.expiry_hour = NOW.hour() + 10;
        let later = s.create(later, &LIMITS).unwrap();
        s.append(&soon, &alice(), 0, b"abc", NOW).unwrap();
        let then = UnixTime::from_secs(NOW.as_secs() + 2 * 3600);
        assert!(matches!(
            s.read(&soon, &verifier(1), 0, 3, then),
            Err(BlobError::NotFound)
        ));
        assert!(matches!(
            s.append(&soon, &alice(), 3, b"", then),
            Err(BlobError::NotFound)
        ));
        assert_eq!(
            s.sweep_expired(then).unwrap(),
            SweptBlobs { blobs: 1, bytes: 3 }
        );
        assert_eq!(s.sweep_expired(then).unwrap(), SweptBlobs::default());
        assert!(s.state(&later, Some(&alice()), None, then).is_ok());
        assert_eq!(s.totals().unwrap().blobs, 1);
    }
}
