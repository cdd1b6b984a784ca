//! The values the store's API takes and returns.

use core::fmt;

use rand_core::CryptoRng;
use sotto_core::{AccessKey, DeviceId, IdentityKey, OneTimePreKeyId};
use zeroize::Zeroizing;

use crate::error::Error;

/// The id under which a ciphertext travels: chosen at random by the sender
/// when the message is first stored, reused on every retry, so the
/// recipient stores each message once however often it is delivered.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnvelopeId(pub [u8; 16]);

impl EnvelopeId {
    /// A random id.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        Self(id)
    }

    /// The 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for EnvelopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ids are random and carry no user data; the prefix helps logs.
        write!(f, "EnvelopeId(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// Names one ciphertext a sender produced, without revealing it:
/// `SHA-256("sotto/ciphertext-digest/v1" || ciphertext)`.
///
/// A recipient that cannot decrypt a message names it by this digest in its
/// decryption-error notice; the sender answers only if the digest matches a
/// ciphertext it really sent (kept with each outgoing message), so a notice
/// cannot point at a message the recipient never received.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CiphertextDigest(pub [u8; 32]);

/// Domain string of [`CiphertextDigest`].
const CIPHERTEXT_DIGEST_DOMAIN: &[u8] = b"sotto/ciphertext-digest/v1";

impl CiphertextDigest {
    /// The digest of a sotto-core Message or PreKeyMessage.
    pub fn of(ciphertext: &[u8]) -> Self {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(CIPHERTEXT_DIGEST_DOMAIN);
        h.update(ciphertext);
        Self(h.finalize().into())
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Equality in constant time.
    pub(crate) fn matches(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for CiphertextDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CiphertextDigest(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// One device at the other end of a session, seen from a conversation
/// (docs/devices.md): a device of the conversation's contact, or another
/// device of this profile's own account (which sends and receives "sent"
/// copies of the conversation's outgoing messages).
///
/// A contact's primary device (the one whose key is the contact's account
/// key, [`DeviceId::PRIMARY`]) is the only device of every contact that
/// has not linked others, and the one sessions made before linked devices
/// existed belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerDevice {
    /// Device `0` of the conversation's contact.
    Contact(DeviceId),
    /// Device `0` of this profile's own account.
    Own(DeviceId),
}

impl PeerDevice {
    /// The contact's primary device.
    pub const CONTACT_PRIMARY: Self = Self::Contact(DeviceId::PRIMARY);

    /// The device id, whoever's it is.
    pub fn id(&self) -> DeviceId {
        match self {
            Self::Contact(id) | Self::Own(id) => *id,
        }
    }

    /// True for a device of this profile's own account.
    pub fn is_own(&self) -> bool {
        matches!(self, Self::Own(_))
    }
}

/// A message as delivered by the relay: which conversation it belongs to
/// and which device sent it, its envelope id, the protocol ciphertext,
/// when the sender says it sent it and when it arrived (milliseconds since
/// the Unix epoch).
#[derive(Clone, Copy)]
pub struct Envelope<'a> {
    /// The sender's envelope id.
    pub id: EnvelopeId,
    /// The contact id of the conversation: the sender's, or for a "sent"
    /// copy from one of our own devices ([`PeerDevice::Own`]) the contact
    /// the message was sent to.
    pub sender: &'a str,
    /// The device that sent it: one of the contact's (an incoming message)
    /// or one of our own (a copy of a message we sent from there, stored
    /// as outgoing).
    pub device: PeerDevice,
    /// A sotto-core Message or PreKeyMessage.
    pub ciphertext: &'a [u8],
    /// When the sender sent it, by the sender's clock (authenticated with
    /// the envelope; 0 if unknown). The store remembers the newest per
    /// contact, see [`Store::newest_sent_at`](crate::Store::newest_sent_at).
    pub sent_at: u64,
    /// Arrival time, milliseconds since the Unix epoch.
    pub received_at: u64,
}

impl fmt::Debug for Envelope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("id", &self.id)
            .field("sender", &"<redacted>")
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received from the contact.
    Incoming,
    /// Written by the local user.
    Outgoing,
}

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryState {
    /// Outgoing, waiting in the outbox for the relay to accept it.
    Pending,
    /// Outgoing, accepted by the relay ([`Store::mark_sent`](crate::Store::mark_sent)).
    Sent,
    /// Outgoing, the contact's device confirmed it.
    Delivered,
    /// Incoming, stored.
    Received,
    /// Read by its recipient (either direction).
    Read,
    /// Outgoing, refused for good: it never left and never will
    /// ([`Store::fail_outbox_entry`](crate::Store::fail_outbox_entry)).
    Failed(SendFailure),
}

/// Why an outgoing message was given up ([`DeliveryState::Failed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SendFailure {
    /// Larger than what the relay takes in one envelope.
    TooLarge,
    /// The relay refused the envelope itself as invalid; sending it again
    /// cannot succeed.
    Rejected,
    /// It had not left the device when the history was exported to an
    /// archive, and the profile was restored from that archive: its
    /// ciphertext and the session it was made with are not in an archive,
    /// so the restored profile cannot send it (write it again).
    ExportedUnsent,
    /// The relay has no mailbox for the device any more (it was unlinked
    /// from its account): reported for a message only when no other
    /// device of the contact could take it.
    NoSuchDevice,
}

impl core::fmt::Display for SendFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::TooLarge => "too large for the relay",
            Self::Rejected => "refused by the relay",
            Self::ExportedUnsent => "not sent before the history was exported",
            Self::NoSuchDevice => "the recipient's device is gone",
        })
    }
}

impl DeliveryState {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::Sent => 1,
            Self::Delivered => 2,
            Self::Received => 3,
            Self::Read => 4,
            Self::Failed(SendFailure::TooLarge) => 5,
            Self::Failed(SendFailure::Rejected) => 6,
            Self::Failed(SendFailure::ExportedUnsent) => 7,
            Self::Failed(SendFailure::NoSuchDevice) => 8,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Pending,
            1 => Self::Sent,
            2 => Self::Delivered,
            3 => Self::Received,
            4 => Self::Read,
            5 => Self::Failed(SendFailure::TooLarge),
            6 => Self::Failed(SendFailure::Rejected),
            7 => Self::Failed(SendFailure::ExportedUnsent),
            8 => Self::Failed(SendFailure::NoSuchDevice),
            _ => return None,
        })
    }
}

/// A stored message, decrypted.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// Its sequence number in the conversation (increasing, never reused).
    pub seq: u64,
    /// Incoming or outgoing.
    pub direction: Direction,
    /// Delivery state.
    pub state: DeliveryState,
    /// Milliseconds since the Unix epoch: when it was sent (outgoing) or
    /// received (incoming), as given by the caller.
    pub timestamp: u64,
    /// The envelope id it travelled (or will travel) under.
    pub envelope_id: EnvelopeId,
    /// In a group's history, the account that wrote it (ours for an
    /// outgoing message); `None` in a conversation with a contact.
    pub author: Option<sotto_core::IdentityKey>,
    /// `Some` for an entry that is an event of the conversation (its
    /// disappearing messages timer changed: `Outgoing` when this account
    /// changed it) rather than a message; its body is then empty.
    pub event: Option<ConversationEvent>,
    /// The message body, wiped on drop.
    pub body: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("seq", &self.seq)
            .field("direction", &self.direction)
            .field("state", &self.state)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// An event of a conversation, kept in its history among the messages
/// ([`Message::event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConversationEvent {
    /// The disappearing messages timer was set to `seconds` (0: off).
    TimerChanged {
        /// Seconds a message stays once read (incoming) or sent
        /// (outgoing); 0 turns disappearing messages off.
        seconds: u32,
    },
}

/// A conversation's disappearing messages timer: messages read (incoming)
/// or sent (outgoing) while it is on are deleted `seconds` later
/// (docs/storage.md, "Disappearing messages").
///
/// Either side may change it; of two changes the one with the later
/// `set_at` wins, and of two with the same `set_at` the one whose setter's
/// key is greater, so both sides end with the same timer whatever order
/// the changes arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisappearingTimer {
    /// Seconds a message stays once read or sent; 0 = off.
    pub seconds: u32,
    /// When it was set: milliseconds since the Unix epoch by the setter's
    /// clock.
    pub set_at: u64,
    /// The account that set it.
    pub set_by: sotto_core::IdentityKey,
}

impl DisappearingTimer {
    /// Whether this timer wins over `other` (a later change).
    pub fn supersedes(&self, other: &DisappearingTimer) -> bool {
        (self.set_at, self.set_by.as_bytes()) > (other.set_at, other.set_by.as_bytes())
    }

    /// Whether messages disappear under it.
    pub fn is_on(&self) -> bool {
        self.seconds > 0
    }
}

/// A message deleted because its disappearing messages timer ran out
/// ([`Store::expire_messages`](crate::Store::expire_messages)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The conversation's contact id.
    pub contact: String,
    /// The message's seq.
    pub seq: u64,
    /// The digest of its attachment's blob, when the message was one (its
    /// file beside the store is the caller's to delete).
    pub attachment: Option<[u8; 32]>,
}

/// A message to add to history without the protocol (restoring a backup,
/// importing from another app).
#[derive(Clone, Copy)]
pub struct NewMessage<'a> {
    /// Incoming or outgoing.
    pub direction: Direction,
    /// Delivery state to record.
    pub state: DeliveryState,
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The body.
    pub body: &'a [u8],
}

impl fmt::Debug for NewMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewMessage")
            .field("direction", &self.direction)
            .field("state", &self.state)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// The outcome of receiving one envelope.
#[derive(Debug)]
#[non_exhaustive]
// Short-lived (one per envelope, moved once): the size of its variants
// does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Received {
    /// Decrypted and stored. Acknowledge the envelope to the relay.
    Stored(Message),
    /// This envelope id from this sender was already stored: nothing was
    /// changed. Acknowledge it to the relay.
    Duplicate,
}

/// A ciphertext waiting for the relay to accept it.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The envelope id to send it under (the same on every retry).
    pub id: EnvelopeId,
    /// The contact it goes to (the contact id of the message's
    /// conversation, or of the contact whose control conversation holds
    /// it).
    pub recipient: String,
    /// A control message ([`Store::send_control`](crate::Store::send_control)),
    /// not a chat message: sent as payload kind 0x0C.
    pub control: bool,
    /// The device it is encrypted to: one of the contact's, or one of our
    /// own (a "sent" copy).
    pub to: PeerDevice,
    /// The message's seq in the recipient's conversation.
    pub seq: u64,
    /// The protocol ciphertext to hand to the relay.
    pub ciphertext: Vec<u8>,
    /// For a large message: its body, encrypted once for all its devices
    /// (sotto-core `body`), to send next to the ciphertext, which then
    /// holds only the body's key and the blob's digest. The same bytes for
    /// every entry of the message and every retry.
    pub detached_body: Option<std::sync::Arc<[u8]>>,
}

impl fmt::Debug for OutboxEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxEntry")
            .field("id", &self.id)
            .field("recipient", &"<redacted>")
            .field("to", &self.to)
            .field("seq", &self.seq)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// A message sent: its seq in the conversation, and one outbox entry per
/// device it goes to (each of the contact's devices with a session, and
/// each of our own other devices with one, as "sent" copies), to hand to
/// the relay once the transaction committed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outgoing {
    /// The message's seq in the conversation.
    pub seq: u64,
    /// The envelopes to send, the contact's devices first (primary
    /// first), then our own.
    pub entries: Vec<OutboxEntry>,
    /// Devices in the lists that got no copy because there is no session
    /// with them yet (start one from their prekey bundle first).
    pub without_session: Vec<PeerDevice>,
}

/// What accepting a new device list changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DeviceListChange {
    /// The new list's version.
    pub version: u64,
    /// Devices that were not in the previous list.
    pub added: Vec<DeviceId>,
    /// Devices that are no longer in it: their sessions, and whatever
    /// still waited in the outbox for them, were dropped.
    pub removed: Vec<DeviceId>,
}

/// A contact.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Contact {
    /// The app's id for the contact (e.g. their relay account).
    pub id: String,
    /// The display name chosen by the user (empty for a contact created by
    /// an incoming first message).
    pub name: String,
    /// The identity key pinned for the contact, once known.
    pub identity_key: Option<IdentityKey>,
    /// True once the user compared safety numbers.
    pub verified: bool,
    /// The contact's unidentified-access key, once a message from it
    /// carried one ([`Store::set_contact_access_key`](crate::Store::set_contact_access_key)).
    /// Presented to the relay when sending to the contact. Secret; not
    /// shown by `Debug`.
    pub access_key: Option<AccessKey>,
    /// The id of another contact whose new identity this contact claims to
    /// be, while the user has not accepted or refused it
    /// ([`Store::set_contact_claim`](crate::Store::set_contact_claim)).
    pub claims_to_succeed: Option<String>,
    /// The lowest protocol version a new session with the contact's
    /// primary device may run: 2 once
    /// [`Store::require_protocol_version`](crate::Store::require_protocol_version)
    /// recorded that the contact speaks version 2 (docs/protocol.md 16.7),
    /// else 1.
    pub min_protocol_version: u8,
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contact")
            .field("id", &"<redacted>")
            .field("name", &"<redacted>")
            .field("has_identity_key", &self.identity_key.is_some())
            .field("verified", &self.verified)
            .field("has_access_key", &self.access_key.is_some())
            .field("has_claim", &self.claims_to_succeed.is_some())
            .finish()
    }
}

/// One row of a history page: its seq and either the message or why it
/// could not be read.
#[derive(Debug)]
pub struct HistoryEntry {
    /// The row's sequence number.
    pub seq: u64,
    /// The message, or the error for this row alone (typically
    /// [`Error::Corrupt`]).
    pub message: Result<Message, Error>,
}

/// A page of history, newest first.
#[derive(Debug)]
pub struct HistoryPage {
    /// The rows, newest first; unreadable rows are reported in place.
    pub entries: Vec<HistoryEntry>,
    /// Pass this as `before` to get the next (older) page; `None` when the
    /// page was not full, i.e. there is nothing older.
    pub next_before: Option<u64>,
}

impl HistoryPage {
    /// The readable messages of the page, newest first.
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.entries.iter().filter_map(|e| e.message.as_ref().ok())
    }

    /// The rows that could not be read, with their errors.
    pub fn failures(&self) -> impl Iterator<Item = (u64, &Error)> {
        self.entries
            .iter()
            .filter_map(|e| e.message.as_ref().err().map(|err| (e.seq, err)))
    }
}

/// What the store records about one of its one-time prekeys (no key
/// material): every one it holds was published once, under an id never
/// used before or after.
///
/// A key is *live* while the relay may still hand it out, and *retired*
/// once an upload that replaced the relay's stock was confirmed; a retired
/// key still decrypts the first messages made with it until
/// [`Store::prune_one_time_prekeys`](crate::Store::prune_one_time_prekeys)
/// deletes it after its grace period. A used key is deleted by `receive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneTimePreKeyInfo {
    /// The key's id.
    pub id: OneTimePreKeyId,
    /// When it was published (ms since the Unix epoch); `None` for a key
    /// from before schema version 3, whose publication time is unknown.
    pub published_at: Option<u64>,
    /// When it was retired (ms since the Unix epoch); `None` while live.
    pub retired_at: Option<u64>,
}
