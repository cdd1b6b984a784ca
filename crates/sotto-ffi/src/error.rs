//! The one error type every exported call raises: `SottoError`, a typed
//! enum in each language (a sealed class of exceptions in Kotlin, an
//! `Error` enum in Swift, exception subclasses in Python).
//!
//! Each variant that an app acts on has its own name and the numbers that
//! explain it (`MessageTooLarge { len, max }`); the rest carry the facade's
//! one-sentence message. Nothing secret is in any of them: contact names
//! and paths are what the app passed in.

use std::sync::Arc;

/// Everything a call through the bindings can refuse.
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[non_exhaustive]
pub enum SottoError {
    /// The client was closed ([`Client::close`](crate::Client::close)):
    /// nothing more can be done with this object.
    #[error("the client is closed")]
    Closed,
    /// The passphrase does not open this profile's store.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// No profile in that folder (create one first).
    #[error("no profile in {path}")]
    NoProfile {
        /// The folder.
        path: String,
    },
    /// A profile exists in that folder already (open it instead).
    #[error("a profile exists in that folder already")]
    ProfileExists,
    /// The profile folder can be written by other users; nothing was
    /// opened (`chmod 700` it).
    #[error("the profile folder {path} is writable by other users")]
    InsecureProfile {
        /// The folder.
        path: String,
    },
    /// A malformed address (`sotto:...`).
    #[error("invalid address: {reason}")]
    InvalidAddress {
        /// What is wrong with it.
        reason: String,
    },
    /// A malformed relay address (`host:port`, `tcp://host:port` or
    /// `tls://host:port`).
    #[error("invalid relay address: {reason}")]
    InvalidRelayAddress {
        /// What is wrong with it.
        reason: String,
    },
    /// A contact name must not be empty or look like an address.
    #[error("a contact name must not be empty or look like an address")]
    InvalidContactName,
    /// The address given is this profile's own.
    #[error("that is this profile's own address")]
    OwnAddress,
    /// No contact by that name or address.
    #[error("no contact named {contact:?}")]
    UnknownContact {
        /// The name or address asked for.
        contact: String,
    },
    /// Several contacts share that name; use the address.
    #[error("several contacts are named {contact:?}")]
    AmbiguousContact {
        /// The name.
        contact: String,
    },
    /// A contact with that name or address exists already.
    #[error("a contact named {contact:?} or with that address exists already")]
    ContactExists {
        /// The name.
        contact: String,
    },
    /// The call needs a relay connection and there is none.
    #[error("not connected to a relay")]
    NotConnected,
    /// The profile never registered with a relay.
    #[error("this profile has not registered with a relay yet")]
    NoSavedRelay,
    /// A first message needs the contact's keys, and the relay has none.
    #[error("{contact:?} has not registered with this relay")]
    ContactNotRegistered {
        /// The contact.
        contact: String,
    },
    /// A first message needs the contact's keys from the relay, which
    /// cannot be reached now; nothing was stored.
    #[error("a first message to {contact:?} needs the relay, which cannot be reached now")]
    FirstMessageNeedsRelay {
        /// The contact.
        contact: String,
    },
    /// The message is larger than the relay takes; nothing was stored.
    #[error("a message of {len} bytes is too large: this relay takes at most {max} bytes")]
    MessageTooLarge {
        /// The message's length.
        len: u64,
        /// The longest message that fits.
        max: u64,
    },
    /// The relay served keys without the post-quantum prekey the
    /// contact's address promises; no session was started.
    #[error("the relay served {contact:?}'s keys without their post-quantum prekey")]
    Downgrade {
        /// The contact.
        contact: String,
    },
    /// Over plain TCP, the relay announced another server id than at
    /// registration; nothing was signed.
    #[error("the relay identifies as {actual:?}, not {registered:?} as at registration")]
    RelayIdChanged {
        /// The id seen at registration.
        registered: String,
        /// The id announced now.
        actual: String,
    },
    /// The relay or the connection to it failed.
    #[error("relay: {detail}")]
    Relay {
        /// What happened.
        detail: String,
    },
    /// TLS for the relay cannot be set up (unreadable pinned
    /// certificates, no usable trust store).
    #[error("relay TLS: {detail}")]
    Tls {
        /// What happened.
        detail: String,
    },
    /// The encrypted store refused (a damaged file, a full disk, ...).
    #[error("store: {detail}")]
    Store {
        /// What happened.
        detail: String,
    },
    /// A file could not be read or written.
    #[error("I/O: {detail}")]
    Io {
        /// What happened.
        detail: String,
    },
    /// No group has that name or id.
    #[error("no group named {group:?}")]
    UnknownGroup {
        /// The name or id asked for.
        group: String,
    },
    /// Several groups share that name; use the group's id.
    #[error("several groups are named {group:?}")]
    AmbiguousGroup {
        /// The name.
        group: String,
    },
    /// This account is not (or no longer) a member of the group.
    #[error("this account is not a member of the group")]
    NotAGroupMember,
    /// Only the account's primary device can do this.
    #[error("only the account's primary device can do this")]
    NotAccountDevice,
    /// The group's membership rules refused the change.
    #[error("group membership: {detail}")]
    Membership {
        /// Which rule.
        detail: String,
    },
    /// Any other refusal of the client, as its one-sentence message.
    #[error("{detail}")]
    Other {
        /// What happened.
        detail: String,
    },
    /// The bindings' own runtime could not start or lost a task (the
    /// process is shutting down).
    #[error("internal: {detail}")]
    Internal {
        /// What happened.
        detail: String,
    },
}

impl From<sotto::Error> for SottoError {
    fn from(error: sotto::Error) -> Self {
        use sotto::Error as E;
        use sotto::store::Error as S;
        match error {
            E::Store(S::WrongPassphrase) => Self::WrongPassphrase,
            E::Store(S::AlreadyExists) => Self::ProfileExists,
            E::Store(e) => Self::Store {
                detail: e.to_string(),
            },
            E::NoProfile(path) => Self::NoProfile {
                path: path.display().to_string(),
            },
            E::InsecureProfile { path, .. } => Self::InsecureProfile {
                path: path.display().to_string(),
            },
            E::Address(e) => Self::InvalidAddress {
                reason: e.to_string(),
            },
            E::RelayAddress(e) => Self::InvalidRelayAddress {
                reason: e.to_string(),
            },
            E::InvalidContactName => Self::InvalidContactName,
            E::OwnAddress => Self::OwnAddress,
            E::UnknownContact(contact) => Self::UnknownContact { contact },
            E::AmbiguousContact(contact) => Self::AmbiguousContact { contact },
            E::ContactExists(contact) => Self::ContactExists { contact },
            E::NotConnected => Self::NotConnected,
            E::NoSavedRelay => Self::NoSavedRelay,
            E::ContactNotRegistered(contact) => Self::ContactNotRegistered { contact },
            E::FirstMessageNeedsRelay(contact) => Self::FirstMessageNeedsRelay { contact },
            E::MessageTooLarge { len, max } => Self::MessageTooLarge {
                len: to_u64(len),
                max: to_u64(max),
            },
            E::Downgrade(contact) => Self::Downgrade { contact },
            E::RelayIdChanged {
                registered, actual, ..
            } => Self::RelayIdChanged { registered, actual },
            e @ E::Relay(_) => Self::Relay {
                detail: e.to_string(),
            },
            e @ E::TlsConfig(_) => Self::Tls {
                detail: e.to_string(),
            },
            E::Io(e) => Self::Io {
                detail: e.to_string(),
            },
            E::UnknownGroup(group) => Self::UnknownGroup { group },
            E::AmbiguousGroup(group) => Self::AmbiguousGroup { group },
            E::NotAGroupMember => Self::NotAGroupMember,
            E::NotAccountDevice => Self::NotAccountDevice,
            E::Membership(e) => Self::Membership {
                detail: e.to_string(),
            },
            e => Self::Other {
                detail: e.to_string(),
            },
        }
    }
}

impl From<Arc<sotto::Error>> for SottoError {
    fn from(error: Arc<sotto::Error>) -> Self {
        match Arc::try_unwrap(error) {
            Ok(error) => error.into(),
            Err(shared) => Self::Other {
                detail: shared.to_string(),
            },
        }
    }
}

impl From<sotto::AddressError> for SottoError {
    fn from(error: sotto::AddressError) -> Self {
        Self::InvalidAddress {
            reason: error.to_string(),
        }
    }
}

/// A length or count as the bindings carry it (every platform's `usize`
/// fits).
pub(crate) fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The result of every exported call.
pub type Result<T, E = SottoError> = std::result::Result<T, E>;
