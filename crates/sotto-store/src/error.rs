//! The error type of the store.

use core::fmt;

/// Which secret unlocks a store file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnlockMethod {
    /// A passphrase stretched with Argon2id.
    Passphrase,
    /// A 32-byte key supplied by the application (e.g. from the OS keychain).
    AppKey,
}

impl fmt::Display for UnlockMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Passphrase => "a passphrase",
            Self::AppKey => "an application key",
        })
    }
}

/// Names the row an error is about, without user data: a message sequence
/// number, the first bytes of a lookup key (a keyed hash, not the name it
/// was computed from), or a fixed row such as the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Row {
    /// A message or outbox row, by its sequence number in its conversation.
    Seq(u64),
    /// A row keyed by a lookup key; the first 8 bytes of that key.
    Lookup([u8; 8]),
    /// A singleton row, such as `"identity"` or a `meta` entry.
    Named(&'static str),
}

impl Row {
    /// The row whose lookup key is `lookup`.
    pub(crate) fn lookup(lookup: &[u8; 32]) -> Self {
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&lookup[..8]);
        Self::Lookup(prefix)
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Seq(seq) => write!(f, "seq {seq}"),
            Self::Lookup(prefix) => {
                f.write_str("lookup ")?;
                for b in prefix {
                    write!(f, "{b:02x}")?;
                }
                f.write_str("…")
            }
            Self::Named(name) => f.write_str(name),
        }
    }
}

/// Everything that can go wrong in `sotto-store`.
///
/// Display strings never contain message text, contact names or keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The passphrase does not unlock this store. Nothing was modified.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// The application key does not unlock this store. Nothing was modified.
    #[error("wrong application key")]
    WrongKey,
    /// The store is unlocked by another kind of secret than the one given.
    #[error("this store is unlocked with {expected}")]
    WrongUnlockMethod {
        /// What the store expects.
        expected: UnlockMethod,
    },
    /// `open` was given a path where no file exists.
    #[error("no store file at the given path")]
    NotFound,
    /// `create` was given a path that already holds a database.
    #[error("a database already exists at the given path")]
    AlreadyExists,
    /// The file is not a Sotto store (not SQLite, or another application's).
    #[error("the file is not a Sotto store")]
    NotAStore,
    /// The file was written by a newer version of this library.
    #[error("store schema version {found} is newer than the supported version {supported}")]
    SchemaTooNew {
        /// The version in the file.
        found: u32,
        /// The newest version this library reads.
        supported: u32,
    },
    /// The file has a schema version no migration starts from.
    #[error("store schema version {found} cannot be migrated (oldest supported: {oldest})")]
    SchemaTooOld {
        /// The version in the file.
        found: u32,
        /// The oldest version a migration starts from.
        oldest: u32,
    },
    /// A stored value failed to authenticate or decode: it was tampered
    /// with, truncated, moved from another row, or its key is gone.
    #[error("corrupt or foreign value in table {table}, row {row}")]
    Corrupt {
        /// The table holding the row.
        table: &'static str,
        /// Which row.
        row: Row,
    },
    /// The protocol refused the operation (decrypt failed, unknown prekey,
    /// replayed message, ...). The store is unchanged.
    #[error("protocol: {0}")]
    Protocol(#[from] sotto_core::Error),
    /// A message or bundle carries an identity key other than the one
    /// pinned for this contact: the safety number has changed.
    #[error("the contact's identity key differs from the one on record")]
    IdentityMismatch,
    /// A first message (PreKeyMessage) whose X3DH run already started a
    /// session here: a replay, refused without touching any session.
    #[error("replayed first message: its key agreement was already used")]
    ReplayedFirstMessage,
    /// SQLite's own integrity check reported this (see `Store::check`).
    #[error("SQLite integrity check: {0}")]
    IntegrityCheck(String),
    /// A row that must exist is not there (it was not deleted through the
    /// store): the file is damaged. Reported in place of the row.
    #[error("row {row} of table {table} is missing: the store file is damaged")]
    MissingRow {
        /// The table.
        table: &'static str,
        /// Which row.
        row: Row,
    },
    /// The store's file or its journal could not be created or given
    /// owner-only permissions.
    #[error("cannot secure the store file: {0}")]
    Io(#[source] std::io::Error),
    /// No contact with this id.
    #[error("unknown contact")]
    UnknownContact,
    /// A contact with this id already exists.
    #[error("contact already exists")]
    ContactExists,
    /// There is no session with this contact to send with.
    #[error("no session with this contact")]
    NoSession,
    /// A device that no device list held here vouches for (a contact's
    /// device the contact's list does not name, or one of our own the
    /// account's list does not name). Nothing was changed.
    #[error("no device list held here vouches for this device")]
    UnknownDevice,
    /// This profile already belongs to an account (it made its own, or was
    /// linked to one): it cannot be linked to another.
    #[error("this profile already belongs to an account")]
    AlreadyLinked,
    /// No such group is stored here (or this device left it).
    #[error("no such group")]
    NoSuchGroup,
    /// Contact ids that begin with `#` name group conversations.
    #[error("a contact id cannot begin with '#'")]
    ReservedContactId,
    /// No message with this sequence number in the conversation.
    #[error("no message with seq {0}")]
    UnknownMessage(u64),
    /// A number beyond what the message layout can hold (a seq above
    /// 268 435 455 in one conversation, more than 524 286 conversations,
    /// a message of more than 32 MiB sealed): nothing was written.
    #[error("{what} {value} is beyond the store's limit of {max}")]
    LayoutLimit {
        /// What was out of range.
        what: &'static str,
        /// The value.
        value: u64,
        /// The largest value the layout holds.
        max: u64,
    },
    /// Argon2id parameters outside the accepted range.
    #[error("invalid key derivation parameters: {0}")]
    InvalidKdfParams(&'static str),
    /// An input longer than the store accepts (message body, contact id
    /// or name).
    #[error("{what} of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Length given.
        len: usize,
        /// Maximum length.
        max: usize,
    },
    /// A message whose envelope would be larger than the caller's limit
    /// (the relay's): nothing was stored and the session did not advance.
    #[error("a message of {len} bytes is too large: this relay takes at most {max} bytes")]
    MessageTooLarge {
        /// The body's length.
        len: usize,
        /// The longest body that fits.
        max: usize,
    },
    /// The operating system's random number generator failed.
    #[error("system random number generator failed")]
    Rng,
    /// SQLite reported an error (I/O, busy past the timeout, disk full, ...).
    #[error("database: {0}")]
    Database(rusqlite::Error),
    /// The disk (or the file system holding the store) is full: nothing
    /// was written. Reading still works; free some space to write again.
    #[error("the disk is full: nothing was written (free some space and try again)")]
    DiskFull,
    /// A history archive could not be written or read (wrong passphrase,
    /// altered, cut short, ...). Nothing of a failed import is left behind.
    #[error("{0}")]
    Archive(#[from] crate::archive::ArchiveError),
    /// A fault injected by a test hook (feature `test-hooks`); the
    /// operation was abandoned there.
    #[cfg(feature = "test-hooks")]
    #[error("injected fault at {0:?}")]
    InjectedFault(crate::testing::FaultPoint),
}

impl Error {
    /// True if the error concerns the whole store (database failure, RNG,
    /// injected crash) rather than one envelope or row; a batch stops on it.
    pub(crate) fn is_fatal(&self) -> bool {
        match self {
            Self::Database(_) | Self::DiskFull | Self::Rng => true,
            #[cfg(feature = "test-hooks")]
            Self::InjectedFault(_) => true,
            _ => false,
        }
    }

    /// A failure that a full disk causes: SQLite's "database or disk is
    /// full", or an I/O error while it needed more space.
    pub(crate) fn is_out_of_space(&self) -> bool {
        match self {
            Self::DiskFull => true,
            Self::Database(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure)
            ),
            _ => false,
        }
    }
}

impl From<rusqlite::Error> for Error {
    /// "Database or disk is full" becomes [`Error::DiskFull`], in words a
    /// user can act on; every other SQLite error stays
    /// [`Error::Database`].
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Self::DiskFull,
            _ => Self::Database(e),
        }
    }
}

/// Result alias for `sotto-store`.
pub type Result<T, E = Error> = core::result::Result<T, E>;
