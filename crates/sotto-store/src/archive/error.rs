//! Why an archive could not be written or read.

use core::fmt;

/// What locks an archive (its header's kdf byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArchiveLock {
    /// A passphrase, stretched with Argon2id (kdf byte 1).
    Passphrase,
    /// A key given by the application, e.g. from a device-linking exchange
    /// (kdf byte 0; [`ArchiveKey`](crate::ArchiveKey)).
    Key,
}

impl fmt::Display for ArchiveLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Passphrase => "a passphrase",
            Self::Key => "a key given by the application",
        })
    }
}

/// What an archive stream is for (the magic at the start of its header).
/// Each kind is refused where the other is expected
/// ([`ArchiveError::WrongKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArchiveKind {
    /// A backup: identity, prekey ids, contacts and history, to make a new
    /// store from ([`Store::export_archive`](crate::Store::export_archive)).
    Backup,
    /// A history transfer to a linked device: contacts and history only,
    /// merged into the device's own store
    /// ([`Store::export_history_transfer`](crate::Store::export_history_transfer)).
    Transfer,
}

impl fmt::Display for ArchiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Backup => "a backup archive",
            Self::Transfer => "a history transfer",
        })
    }
}

/// An archive that cannot be read (or written), with what is known about
/// where. Wrapped in [`Error::Archive`](crate::Error::Archive). Nothing of a
/// failed import is left behind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The input does not start like a Sotto history archive.
    #[error("not a Sotto history archive")]
    NotAnArchive,
    /// The header names a key derivation this library does not know.
    #[error("the archive uses key derivation {0}, which this version does not know")]
    UnsupportedKdf(u8),
    /// The header's key derivation parameters are out of range (see
    /// [`KdfParams::new`](crate::KdfParams::new)): refused before any
    /// memory is spent on them.
    #[error("the archive's header is malformed")]
    MalformedHeader,
    /// The stream is of the other kind: a history transfer given to an
    /// archive import, or a backup archive given to a transfer.
    #[error("this is {found}, not {expected}")]
    WrongKind {
        /// What was expected here.
        expected: ArchiveKind,
        /// What the header says.
        found: ArchiveKind,
    },
    /// The archive is locked with another kind of secret than the one given.
    #[error("this archive is locked with {expected}")]
    WrongLock {
        /// What the archive is locked with.
        expected: ArchiveLock,
    },
    /// The first chunk does not open: a wrong passphrase or key, or an
    /// archive whose header or first chunk was altered.
    #[error("wrong passphrase or key (or the archive was altered)")]
    WrongSecret,
    /// A chunk after the first does not open: altered, moved, or taken
    /// from another archive.
    #[error("chunk {chunk} of the archive was altered, moved or comes from another archive")]
    Tampered {
        /// The chunk's index (from 0).
        chunk: u64,
    },
    /// The archive ends before its final chunk: `chunks` whole chunks were
    /// read.
    #[error("the archive is cut short after {chunks} chunk(s)")]
    Truncated {
        /// Whole chunks read before the end.
        chunks: u64,
    },
    /// Bytes follow the archive's final chunk.
    #[error("the archive has data after its final chunk")]
    TrailingData,
    /// A chunk's length field is larger than a chunk can be.
    #[error("chunk {chunk} claims {len} bytes, more than the {max} a chunk can hold")]
    ChunkTooLarge {
        /// The chunk's index.
        chunk: u64,
        /// The length it claims.
        len: u32,
        /// The largest possible.
        max: u32,
    },
    /// Authenticated content this version cannot read (written by a
    /// different version of the format): `what` says which rule it broke.
    #[error("the archive's content is malformed in chunk {chunk}: {what}")]
    MalformedRecord {
        /// The chunk where the record was read.
        chunk: u64,
        /// The rule it broke.
        what: &'static str,
    },
    /// The archive holds another number of contacts or messages than its
    /// header says.
    #[error("the archive holds {found} {what}, its header says {expected}")]
    CountMismatch {
        /// `"contacts"` or `"messages"`.
        what: &'static str,
        /// The header's count.
        expected: u64,
        /// What the archive holds.
        found: u64,
    },
    /// A transfer chunk came before the one the transfer needs next: keep
    /// it (or ask for it again) and apply chunk `expected` first. Nothing
    /// was changed.
    #[error("transfer chunk {chunk} came before chunk {expected}")]
    ChunkAhead {
        /// The chunk given.
        chunk: u64,
        /// The chunk the transfer needs next.
        expected: u64,
    },
    /// No history transfer is in progress: none was begun, or it was
    /// completed or abandoned. A chunk that arrives now is a late copy (or
    /// comes from elsewhere) and can be dropped.
    #[error("no history transfer is in progress")]
    NoTransfer,
    /// Another history transfer is in progress; abandon it first
    /// ([`Store::abandon_history_transfer`](crate::Store::abandon_history_transfer)).
    #[error("another history transfer is in progress")]
    TransferInProgress {
        /// The transfer in progress.
        id: super::ArchiveId,
    },
    /// Reading or writing the archive failed.
    #[error("reading or writing the archive: {0}")]
    Io(#[source] std::io::Error),
    /// The restored store could not be moved to its place.
    #[error("cannot put the restored store in place: {0}")]
    Place(#[source] std::io::Error),
}
