//! What the client API takes and gives: options, events, messages,
//! history rows, contacts, send results.

use std::sync::Arc;
use std::time::Duration;

use sotto_core::{DeviceId, SafetyNumber};
use sotto_relay::{ClientConfig, ErrorCode};
use sotto_store::{
    ConversationEvent, DeliveryState, OpenOptions, ResendPolicy, SendFailure, SignedPreKeyPolicy,
};
use tokio::sync::broadcast;

use crate::address::Address;
use crate::connection::RelayTrust;
use crate::error::Error;

/// How a [`Client`](crate::Client) behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Store options (Argon2id parameters, durability).
    pub store: OpenOptions,
    /// Relay connection options (timeouts, expected server id). Without an
    /// expected server id, a plain-TCP connection to the registered relay
    /// expects the id it announced at registration.
    pub relay: ClientConfig,
    /// Which certificates a `tls://` relay must present one chaining to:
    /// the platform's trust store (default) or pinned PEM certificates.
    pub relay_trust: RelayTrust,
    /// How many one-time prekeys to keep in the relay's stock: `register`
    /// publishes this many fresh ones, and the client tops the relay's
    /// count back up to it when told the stock is low, on every connection
    /// and hourly.
    pub one_time_prekeys: usize,
    /// When the signed prekey is rotated and how long replaced ones still
    /// decrypt first messages (checked on every connection and hourly).
    pub signed_prekeys: SignedPreKeyPolicy,
    /// When a message the relay accepted but the recipient's device has
    /// not confirmed (no delivery receipt) is sent again, under the same
    /// envelope id (5 minutes, doubling up to 6 hours by default).
    pub resend: ResendPolicy,
    /// Send read receipts from [`Client::mark_read`](crate::Client::mark_read)
    /// (off by default). Delivery receipts are always sent: they are what
    /// makes delivery independent of the relay.
    pub read_receipts: bool,
    /// First delay before reconnecting after the relay connection drops
    /// (each later delay doubles, with random jitter).
    pub reconnect_min: Duration,
    /// Longest delay between reconnection attempts.
    pub reconnect_max: Duration,
    /// First delay before the outbox is tried again after the relay
    /// refused an entry for a reason that can pass (a full mailbox, a
    /// first-contact allowance used up); it doubles up to
    /// [`reconnect_max`](Self::reconnect_max).
    pub outbox_retry_min: Duration,
    /// Capacity of the event channel of each subscriber.
    pub event_capacity: usize,
    /// Receive automatically (default): fetch the mailbox on connect and
    /// store every pushed envelope. When false the app receives itself with
    /// [`Client::fetch_envelopes`](crate::Client::fetch_envelopes) and
    /// [`Client::receive_envelope`](crate::Client::receive_envelope) (for
    /// example in a background task that batches work).
    pub auto_receive: bool,
    /// The clock disappearing messages count by (docs/client.md,
    /// "Disappearing messages"), which also dates received messages and
    /// the relay's acceptance of sent ones: the system's by default; a
    /// [`Clock::manual`] lets a test or an app move time itself.
    pub clock: Clock,
    /// Fault injection for crash tests.
    #[cfg(feature = "test-hooks")]
    pub fault: Option<Fault>,
}

/// A crash to simulate (feature `test-hooks`, for tests only).
#[cfg(feature = "test-hooks")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// After a received message is committed to the store, drop the relay
    /// connection instead of acknowledging it, as if the process died.
    CrashBeforeAck,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            store: OpenOptions::new(),
            relay: ClientConfig::default(),
            relay_trust: RelayTrust::Platform,
            one_time_prekeys: 100,
            signed_prekeys: SignedPreKeyPolicy::default(),
            resend: ResendPolicy::default(),
            read_receipts: false,
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
            outbox_retry_min: Duration::from_secs(1),
            event_capacity: 1024,
            auto_receive: true,
            clock: Clock::system(),
            #[cfg(feature = "test-hooks")]
            fault: None,
        }
    }
}

/// Where the client reads the time for disappearing messages: when a
/// message's countdown starts and when it has run out. The system clock
/// by default; a manual clock moves only when told to (tests, or an app
/// with a trusted time source of its own). Clones share the time.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that reads `start_ms` (milliseconds since the Unix epoch)
    /// until [`set`](Self::set) or [`advance`](Self::advance) moves it.
    pub fn manual(start_ms: u64) -> Self {
        Self {
            manual: Some(Arc::new(std::sync::atomic::AtomicU64::new(start_ms))),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match &self.manual {
            Some(ms) => ms.load(std::sync::atomic::Ordering::SeqCst),
            None => super::shared::now_ms(),
        }
    }

    /// Moves a manual clock forward by `by`; returns false (and does
    /// nothing) for the system clock.
    pub fn advance(&self, by: Duration) -> bool {
        let Some(ms) = &self.manual else {
            return false;
        };
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        ms.fetch_add(by, std::sync::atomic::Ordering::SeqCst);
        true
    }

    /// Sets a manual clock to `ms`; returns false (and does nothing) for
    /// the system clock.
    pub fn set(&self, ms: u64) -> bool {
        let Some(clock) = &self.manual else {
            return false;
        };
        clock.store(ms, std::sync::atomic::Ordering::SeqCst);
        true
    }
}

/// A message that arrived, was decrypted and committed to history.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IncomingMessage {
    /// The sender's address (its contact id in the store).
    pub contact: Address,
    /// The contact's display name (empty for a sender not yet named).
    pub name: String,
    /// Sequence number in the conversation's history.
    pub seq: u64,
    /// The plaintext (empty for a file).
    pub body: Vec<u8>,
    /// When it arrived, milliseconds since the Unix epoch.
    pub received_at: u64,
    /// `Some` when the message is a file: name, type and length (not on
    /// this device yet; [`ClientEvent::FileReceived`] says when it is).
    pub attachment: Option<super::attachments::Attachment>,
}

impl core::fmt::Debug for IncomingMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IncomingMessage")
            .field("seq", &self.seq)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Something that happened in the background.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A message was stored (committed to history; announced once, before
    /// the relay is acknowledged).
    Message(IncomingMessage),
    /// A message this account sent from another of its devices was stored
    /// in this device's history as an outgoing message ("sent" copy):
    /// `contact` is whom it was sent to.
    SentFromOtherDevice(IncomingMessage),
    /// The device list of `account` changed: devices were added or removed
    /// (a contact's, or this account's own when `own`). Nothing to compare:
    /// the account key signed it, and the safety number is unchanged.
    DevicesChanged {
        /// The account.
        account: Address,
        /// True for this profile's own account.
        own: bool,
        /// The list's new version.
        version: u64,
        /// Devices added.
        added: Vec<DeviceId>,
        /// Devices removed: they get nothing new from now on.
        removed: Vec<DeviceId>,
    },
    /// This device was removed from its account's device list: it gets
    /// nothing new and can send nothing any more.
    Unlinked,
    /// A history transfer to or from a linked device went on (or ended:
    /// `complete`).
    HistoryTransfer(super::HistoryTransfer),
    /// A group message was stored (docs/groups.md).
    GroupMessage(super::groups::IncomingGroupMessage),
    /// A group's membership or name changed, or this account joined or
    /// left a group.
    GroupChanged(super::groups::GroupChange),
    /// An envelope was dropped without a trace in history and without any
    /// answer to anyone: it did not come from whom it claims (the sealed
    /// layer did not authenticate it), or its format is not one this client
    /// reads. A hostile relay can cause these; it learns nothing from them.
    /// Counted in [`Client::dropped_envelopes`](crate::Client::dropped_envelopes).
    Dropped {
        /// Why.
        reason: DropReason,
    },
    /// An authenticated envelope could not be decrypted and was dropped
    /// from the relay.
    Undecryptable {
        /// The sender's address (authenticated by the sealed layer).
        from: Address,
        /// Why.
        reason: Undecryptable,
        /// A signed decryption-error notice went to the sender, asking it
        /// to start a new session and send the message again.
        resend_requested: bool,
    },
    /// The contact's device confirmed it stored messages of ours (a
    /// delivery receipt): they are now `DeliveryState::Delivered`.
    Delivered {
        /// The contact.
        contact: Address,
        /// The messages (seqs in the conversation).
        seqs: Vec<u64>,
    },
    /// The contact read messages of ours (a read receipt).
    Read {
        /// The contact.
        contact: Address,
        /// The messages (seqs in the conversation).
        seqs: Vec<u64>,
    },
    /// A contact reported (in a signed notice) that it could not decrypt a
    /// message of ours.
    PeerCouldNotDecrypt {
        /// The contact.
        contact: Address,
        /// The message resent, or `None` when the notice called for nothing
        /// (already resent, unknown, or stale).
        seq: Option<u64>,
        /// A new session was started (fresh X3DH) before resending.
        session_reset: bool,
    },
    /// Someone claims to be a contact under a new identity (a new
    /// address): its messages are kept apart, under the new address, until
    /// the user accepts ([`Client::accept_identity_change`](crate::Client::accept_identity_change))
    /// or refuses the change. Compare the new safety number with the
    /// contact out of band first: nothing proves the claim.
    IdentityChanged(Box<IdentityChange>),
    /// The disappearing messages timer of the conversation with `contact`
    /// changed (by this account, from this or another of its devices,
    /// when `by_us`); it is also an event in the conversation's history.
    DisappearingTimerChanged {
        /// The contact.
        contact: Address,
        /// Seconds a message stays once read or sent; `None`: off.
        timer: Option<Duration>,
        /// True when this account changed it.
        by_us: bool,
    },
    /// A file went on its way: `done` of `total` blob bytes put on the
    /// relay (`outgoing`, before its message exists: `seq` is `None`) or
    /// fetched from it (`seq` is the message's). About every 1%.
    FileProgress {
        /// The contact.
        contact: Address,
        /// True while sending.
        outgoing: bool,
        /// The message, once there is one.
        seq: Option<u64>,
        /// Bytes moved so far.
        done: u64,
        /// Bytes in all (the encrypted blob's length).
        total: u64,
    },
    /// A file is on the relay and the message that carries it was sent.
    FileSent {
        /// The contact.
        contact: Address,
        /// The message (seq in the conversation).
        seq: u64,
    },
    /// A file arrived whole and checked: it is on this device.
    FileReceived {
        /// The contact.
        contact: Address,
        /// The message (seq in the conversation).
        seq: u64,
    },
    /// A file will not arrive; the message stays, without it.
    FileFailed {
        /// The contact.
        contact: Address,
        /// The message (seq in the conversation).
        seq: u64,
        /// Why.
        reason: super::attachments::FileFailure,
    },
    /// Messages of the conversation with `contact` disappeared: their
    /// timer ran out and they were deleted from the store.
    MessagesExpired {
        /// The contact.
        contact: Address,
        /// The messages (seqs in the conversation).
        seqs: Vec<u64>,
    },
    /// A message of ours was given up for good: the relay refused it in a
    /// way sending again cannot change. It is `DeliveryState::Failed` in
    /// history; the messages after it were not held back.
    SendFailed {
        /// The contact.
        contact: Address,
        /// The message (seq in the conversation).
        seq: u64,
        /// Why.
        reason: SendFailure,
    },
    /// Connected (or reconnected) and authenticated to the relay.
    Connected {
        /// Messages from the outbox handed to the relay on connecting.
        sent_from_outbox: usize,
    },
    /// The relay connection ended, or could not be made; the client
    /// reconnects with backoff. Sent once per outage, not per attempt.
    Disconnected {
        /// Why, as far as known.
        reason: DisconnectReason,
    },
    /// Fresh one-time prekeys were published.
    PreKeysPublished {
        /// How many.
        count: usize,
    },
    /// Messages waiting in the outbox were handed to the relay.
    OutboxFlushed {
        /// How many.
        count: usize,
    },
    /// A background step failed; it is retried later.
    Error {
        /// Which step.
        step: Step,
        /// What went wrong.
        error: Arc<Error>,
    },
}

/// A claimed identity change of a contact (see
/// [`ClientEvent::IdentityChanged`]).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdentityChange {
    /// The contact as known so far (its old address).
    pub contact: Address,
    /// The contact's display name.
    pub name: String,
    /// The new address that claims to be the contact.
    pub new_address: Address,
    /// The safety number with the old identity.
    pub old_safety_number: SafetyNumber,
    /// The safety number with the new identity: compare it with the
    /// contact before accepting.
    pub new_safety_number: SafetyNumber,
}

impl core::fmt::Debug for IdentityChange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Names and safety numbers are not for logs.
        f.debug_struct("IdentityChange").finish_non_exhaustive()
    }
}

/// A background step of the client (see [`ClientEvent::Error`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Publishing or rotating prekeys.
    PreKeys,
    /// Handing the outbox to the relay.
    Outbox,
    /// Sending again a message whose delivery receipt is overdue.
    Resend,
    /// Reading the mailbox.
    Mailbox,
    /// Storing or acknowledging one envelope.
    Receive,
    /// Answering a contact's decryption-error notice.
    Recovery,
    /// Publishing the account's device list.
    Devices,
    /// Acting on a group's controls (membership, sender keys).
    Groups,
    /// Putting a file on the relay, or fetching one.
    Files,
}

impl core::fmt::Display for Step {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::PreKeys => "prekeys",
            Self::Outbox => "outbox",
            Self::Resend => "resend",
            Self::Mailbox => "mailbox",
            Self::Receive => "receive",
            Self::Recovery => "recovery",
            Self::Devices => "devices",
            Self::Groups => "groups",
            Self::Files => "files",
        })
    }
}

/// Why the relay connection ended (see [`ClientEvent::Disconnected`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The relay closed the connection (with an error code when it gave
    /// one).
    Closed(Option<ErrorCode>),
    /// The relay could not be reached or refused the login.
    Unreachable(Arc<Error>),
}

impl core::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Closed(None) => f.write_str("connection closed"),
            Self::Closed(Some(code)) => write!(f, "closed by the relay ({code})"),
            Self::Unreachable(e) => write!(f, "{e}"),
        }
    }
}

/// Why an envelope was dropped (see [`ClientEvent::Dropped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The sealed envelope did not open for this profile or did not
    /// authenticate its sender: not for us, forged, altered, or truncated.
    Unauthenticated,
    /// A sealed envelope or payload version this client does not read
    /// (version 1 envelopes, whose sender was not authenticated, included).
    UnsupportedVersion,
    /// An authenticated payload that does not parse.
    Malformed,
    /// An authenticated receipt or decryption-error notice from someone
    /// who is not a contact.
    NotAContact,
    /// A message from a device that the sender's account's device list
    /// does not vouch for, even after fetching the newest list
    /// (docs/devices.md: a device nobody linked, or one that was unlinked).
    UnknownDevice,
    /// A message addressed to another account than this profile's.
    Misdirected,
    /// A message to this device after it was unlinked from its account.
    Unlinked,
    /// A group message of a group this account is not in, or from an
    /// account that is not (or no longer) a member: set aside, not shown.
    NotAMember,
    /// A group message that does not verify under its sender's key (a
    /// forgery by another member, an altered message).
    BadGroupMessage,
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Unauthenticated => "sender not authenticated",
            Self::UnsupportedVersion => "unsupported envelope version",
            Self::Malformed => "malformed payload",
            Self::NotAContact => "receipt or notice from someone who is not a contact",
            Self::UnknownDevice => "message from a device no device list vouches for",
            Self::Misdirected => "message addressed to another account",
            Self::Unlinked => "message to a device that was unlinked",
            Self::NotAMember => "group message from someone not in the group",
            Self::BadGroupMessage => "group message that does not verify",
        })
    }
}

/// Why an authenticated message could not be decrypted (see
/// [`ClientEvent::Undecryptable`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Undecryptable {
    /// The protocol refused it: no matching session, a tampered or
    /// replayed ciphertext, a gap beyond the skip limit...
    Protocol(sotto_core::Error),
    /// A first message whose key agreement ran before (a replay).
    ReplayedFirstMessage,
    /// It starts a session for another identity than the sender the sealed
    /// layer authenticated.
    IdentityMismatch,
}

impl core::fmt::Display for Undecryptable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Protocol(e) => write!(f, "{e}"),
            Self::ReplayedFirstMessage => f.write_str("replayed first message"),
            Self::IdentityMismatch => {
                f.write_str("it starts a session for another identity than its sender's")
            }
        }
    }
}

/// What happened to a sent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendStatus {
    /// The relay accepted it (the recipient's device confirms delivery
    /// later: [`ClientEvent::Delivered`]).
    Accepted,
    /// Stored in the outbox; it goes out when the relay is reachable, or
    /// when the relay takes it after refusing it for a reason that can
    /// pass (a first contact over the recipient's allowance, a full
    /// mailbox): the client tries again in the background.
    Queued,
    /// The relay refused it for good (it is `DeliveryState::Failed` in
    /// history; [`ClientEvent::SendFailed`] was raised). Only possible when
    /// the relay's limits changed since they were last seen: a message too
    /// large for the known limit is refused by `send` before it is stored.
    Failed(SendFailure),
}

/// The result of [`Client::send`](crate::Client::send).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sent {
    /// Its sequence number in the conversation.
    pub seq: u64,
    /// Accepted by the relay or waiting in the outbox.
    pub status: SendStatus,
}

/// Why a history row could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnreadableRow {
    /// The row is gone from the file (its seq was never deleted on
    /// purpose).
    Missing,
    /// The row is there but does not open: damaged or altered.
    Damaged,
}

impl core::fmt::Display for UnreadableRow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Missing => "missing from the store",
            Self::Damaged => "damaged",
        })
    }
}

/// One message of a conversation's history.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryItem {
    /// Sequence number in the conversation.
    pub seq: u64,
    /// Sent by us or received.
    pub outgoing: bool,
    /// Milliseconds since the Unix epoch (sent or received).
    pub timestamp: u64,
    /// Where the message stands (`None` for an unreadable row).
    pub state: Option<DeliveryState>,
    /// The plaintext, or why this row could not be read. Empty for an
    /// event.
    pub body: Result<Vec<u8>, UnreadableRow>,
    /// `Some` when the row is an event of the conversation rather than a
    /// message: its disappearing messages timer changed (by us when
    /// `outgoing`).
    pub event: Option<ConversationEvent>,
    /// `Some` when the message is a file (its `body` is then empty):
    /// name, type, length, and whether it is on this device.
    pub attachment: Option<super::attachments::Attachment>,
}

impl core::fmt::Debug for HistoryItem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HistoryItem")
            .field("seq", &self.seq)
            .field("outgoing", &self.outgoing)
            .field("state", &self.state)
            .field("event", &self.event)
            .finish_non_exhaustive()
    }
}

/// A contact as the app shows it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContactInfo {
    /// Display name (empty for someone who wrote first and was not named
    /// yet).
    pub name: String,
    /// Address.
    pub address: Address,
    /// Safety number compared and confirmed.
    pub verified: bool,
}

impl core::fmt::Debug for ContactInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Names are user data: never printed.
        f.debug_struct("ContactInfo")
            .field("name_len", &self.name.len())
            .field("verified", &self.verified)
            .finish_non_exhaustive()
    }
}

/// The events of a client, as an async receiver.
pub struct Events {
    pub(crate) rx: broadcast::Receiver<ClientEvent>,
}

impl Events {
    /// The next event; `None` once the client is gone. Events missed
    /// because this receiver fell behind are skipped (messages are in the
    /// history regardless).
    pub async fn next(&mut self) -> Option<ClientEvent> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
