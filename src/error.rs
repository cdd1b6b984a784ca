//! The facade's error type.

use crate::address::AddressError;
use crate::relay_address::RelayAddressError;

/// Everything `sotto::Client` can refuse, in words a user can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The encrypted store refused (wrong passphrase, corrupt file, ...).
    #[error("{0}")]
    Store(#[from] sotto_store::Error),
    /// The relay or the connection to it failed.
    #[error("relay: {0}")]
    Relay(#[from] sotto_relay::ClientError),
    /// A payload could not be built or read.
    #[error("envelope: {0}")]
    Payload(#[from] crate::payload::PayloadError),
    /// A malformed address.
    #[error("invalid address: {0}")]
    Address(#[from] AddressError),
    /// A malformed relay address.
    #[error("invalid relay address: {0}")]
    RelayAddress(#[from] RelayAddressError),
    /// TLS cannot be set up: unreadable pinned certificates, no usable
    /// platform trust store, or a build without TLS.
    #[error("relay TLS: {0}")]
    TlsConfig(TlsConfigError),
    /// Over plain TCP, the relay at the address this profile registered
    /// with announced another server id than it did then: possibly another
    /// relay's challenge, forwarded to log in there as this profile. Nothing
    /// was signed.
    #[error(
        "the relay at {relay} identifies as {actual:?}, not {registered:?} as when this profile \
         registered; refusing to log in (if its operator renamed it, delete the profile's \
         `relay` file and register again)"
    )]
    RelayIdChanged {
        /// The relay address.
        relay: String,
        /// The server id seen at registration.
        registered: String,
        /// The server id announced now.
        actual: String,
    },
    /// No profile in that folder.
    #[error("no profile in {} (run `init` first)", .0.display())]
    NoProfile(std::path::PathBuf),
    /// The profile has no remembered relay: it never registered.
    #[error("this profile has not registered with a relay yet (run `register --relay ADDR`)")]
    NoSavedRelay,
    /// A contact name must not be empty or look like an address.
    #[error("a contact name must not be empty or look like an address")]
    InvalidContactName,
    /// The address given is this profile's own.
    #[error("that is this profile's own address")]
    OwnAddress,
    /// No contact by that name or address.
    #[error("no contact named {0:?}")]
    UnknownContact(String),
    /// Several contacts share that name.
    #[error("several contacts are named {0:?}; use the address")]
    AmbiguousContact(String),
    /// That address claims no identity change.
    #[error("that address claims no identity change")]
    NoIdentityChange,
    /// A contact with that name or address exists already.
    #[error("a contact named {0:?} or with that address exists already")]
    ContactExists(String),
    /// The operation needs a relay connection and there is none.
    #[error("not connected to a relay (run `register --relay ADDR` first?)")]
    NotConnected,
    /// A first message needs the contact's keys, and the relay has none:
    /// the contact has not registered with this relay.
    #[error("{0:?} has not registered with this relay: a first message needs their keys from it")]
    ContactNotRegistered(String),
    /// A first message to a contact needs their keys from the relay, and
    /// the relay cannot be reached now; nothing was stored. (Once a session
    /// exists, messages written offline wait in the outbox.)
    #[error(
        "a first message to {0:?} needs their keys from the relay, which cannot be reached now; nothing was stored"
    )]
    FirstMessageNeedsRelay(String),
    /// The message is larger than the relay takes in one envelope; nothing
    /// was stored.
    #[error("a message of {len} bytes is too large: this relay takes at most {max} bytes")]
    MessageTooLarge {
        /// The message's length.
        len: usize,
        /// The longest message that fits.
        max: usize,
    },
    /// The relay served a bundle for another identity than the contact's.
    #[error("the relay returned keys of another identity for this contact")]
    BundleMismatch,
    /// The contact's address says they speak protocol version 2, and the
    /// relay served keys for version 1 only: it stripped their
    /// post-quantum prekey (docs/protocol.md 16.7), or the contact moved
    /// to a relay without version 2. No session was started and nothing
    /// was stored.
    #[error(
        "the relay served {0:?}'s keys without the post-quantum prekey their address promises; \
         refusing to start a weaker session"
    )]
    Downgrade(String),
    /// An authenticated envelope that can never be decrypted (it was
    /// acknowledged and dropped).
    #[error("undecryptable message: {0}")]
    Undecryptable(crate::client::Undecryptable),
    /// An envelope dropped unread: not authenticated, or in a format this
    /// client does not read (it was acknowledged).
    #[error("envelope dropped: {0}")]
    Dropped(crate::client::DropReason),
    /// Part of the mailbox could not be stored or acknowledged (a full disk
    /// here or at the relay, a failing relay): those envelopes stay on the
    /// relay and are tried again; everything else was stored and
    /// acknowledged.
    #[error(
        "{left} envelope(s) stay queued on the relay, not stored or not acknowledged ({stored} new message(s) stored): {error}"
    )]
    ReceiveIncomplete {
        /// New messages stored.
        stored: usize,
        /// Envelopes left on the relay.
        left: usize,
        /// The first failure.
        error: Box<Error>,
    },
    /// The profile folder can be written by other users: they could have
    /// replaced its files. Nothing was opened.
    #[error("the profile folder {} is writable by other users (mode {mode:o}); run `chmod 700` on it", path.display())]
    InsecureProfile {
        /// The folder.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// An I/O error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A store operation's worker thread ended before finishing it (the
    /// runtime is shutting down); its transaction did not commit.
    #[error("a store operation was interrupted before it finished")]
    TaskFailed,

    /// The message is not an attachment.
    #[error("message {0} is not a file")]
    NotAnAttachment(u64),

    /// The attachment's file is not on this device (yet): its download has
    /// not finished, or it failed.
    #[error(
        "the file of message {0} is not on this device (not downloaded yet, or its download failed)"
    )]
    AttachmentNotHere(u64),

    /// A file too large to attach.
    #[error("a file of {len} bytes is too large to send: at most {max} bytes")]
    FileTooLarge {
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },

    /// A text message whose first bytes are those of an attachment's
    /// reference (`0xFF 'S' 'A' 0x00`), which no UTF-8 text has: send a
    /// file with `send_file`.
    #[error("a message may not start with the bytes that mark a file (0xFF 'S' 'A' 0x00)")]
    ReservedBody,

    /// The relay does not store files (it speaks an older protocol).
    #[error("this relay does not store files (protocol version 5 needed)")]
    RelayWithoutBlobs,
    /// The operating system's random number generator failed.
    #[error("the system's random number generator failed")]
    NoRandomness,
    /// Only the account's primary device (the one holding the account key)
    /// links and unlinks devices, and exports a history archive.
    #[error("only the account's primary device can do this (link, unlink, export)")]
    NotAccountDevice,
    /// This profile cannot be linked to an account: it already belongs to
    /// one with other devices, was linked before, or holds contacts or
    /// history of its own (link a new profile instead).
    #[error("this profile cannot be linked: use a new, empty profile")]
    NotLinkable,
    /// No link is under way to wait for (call `start_linking` first).
    #[error("no link is under way")]
    NoLinkUnderWay,
    /// The other device did not answer within the time given.
    #[error("the other device did not answer in time")]
    LinkTimedOut,
    /// A link message did not verify (a wrong code, another account's
    /// offer, an altered message): the link did not happen.
    #[error("the link did not verify: {0}")]
    Link(sotto_core::Error),
    /// No group has that name or id here.
    #[error("no group named {0:?}")]
    UnknownGroup(String),
    /// Several groups share that name.
    #[error("several groups are named {0:?}; use the group's id")]
    AmbiguousGroup(String),
    /// This account is not (or no longer) a member of the group.
    #[error("this account is not a member of the group")]
    NotAGroupMember,
    /// The group's membership rules refused the change (docs/groups.md).
    #[error("group membership: {0}")]
    Membership(sotto_core::group::membership::MembershipError),
}

/// Why TLS for a relay cannot be set up (see [`Error::TlsConfig`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// This build of sotto has no TLS support (cargo feature `tls`).
    #[error("this build of sotto has no TLS support (feature `tls`)")]
    NotBuilt,
    /// The pinned relay certificates cannot be used.
    #[cfg(feature = "tls")]
    #[error("the pinned relay certificates: {0}")]
    PinnedCertificates(sotto_relay::tls::TlsError),
    /// rustls refused the client configuration.
    #[cfg(feature = "tls")]
    #[error("{0}")]
    Config(sotto_relay::tls::TlsError),
    /// The platform's trust store cannot be used (no CA certificates).
    #[cfg(feature = "tls")]
    #[error("cannot use the platform's trust store ({0}); pin the relay's CA instead")]
    PlatformTrustStore(sotto_relay::tls::rustls::Error),
}

/// Result alias of the facade.
pub type Result<T> = core::result::Result<T, Error>;
