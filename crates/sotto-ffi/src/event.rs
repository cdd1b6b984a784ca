//! Events: what happened in the background, as one enum, delivered to a
//! foreign listener (a callback interface) or awaited with
//! `Client::next_event`.

use crate::types::{IdentityChange, IncomingMessage, SendFailure, count};

/// Something that happened in the background.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Event {
    /// A message was committed to history (before the relay was
    /// acknowledged).
    Message {
        /// The message.
        message: IncomingMessage,
    },
    /// A message this account sent from another of its devices was stored
    /// here as outgoing (`message.contact` is whom it went to).
    SentFromOtherDevice {
        /// The message.
        message: IncomingMessage,
    },
    /// The contact's device confirmed it stored messages of ours.
    Delivered {
        /// The contact's address.
        contact: String,
        /// The messages (seqs in the conversation).
        seqs: Vec<u64>,
    },
    /// The contact read messages of ours.
    Read {
        /// The contact's address.
        contact: String,
        /// The messages (seqs in the conversation).
        seqs: Vec<u64>,
    },
    /// A message of ours was refused for good (it is `Failed` in history).
    SendFailed {
        /// The contact's address.
        contact: String,
        /// The message.
        seq: u64,
        /// Why.
        reason: SendFailure,
    },
    /// Someone claims to be a contact under a new address; their messages
    /// are kept apart until the user accepts or refuses the change.
    IdentityChanged {
        /// The claim, with both safety numbers.
        change: IdentityChange,
    },
    /// A group message was committed to the group's history.
    GroupMessage {
        /// The group's id (hex).
        group: String,
        /// The group's name.
        group_name: String,
        /// The member who wrote it.
        from: String,
        /// Its sequence number in the group's history.
        seq: u64,
        /// The plaintext.
        body: Vec<u8>,
        /// When it arrived (ms since the Unix epoch).
        received_at: u64,
    },
    /// A group's membership or name changed, or this account joined or
    /// left one.
    GroupChanged {
        /// The group's id (hex).
        group: String,
        /// Its name after the change.
        name: String,
        /// Who made the change.
        by: String,
        /// Accounts that joined.
        added: Vec<String>,
        /// Accounts that left or were removed.
        removed: Vec<String>,
        /// This account joined with this change.
        joined: bool,
        /// This account is no longer a member.
        left: bool,
    },
    /// An account's device list changed (a contact's, or this account's
    /// own when `own`).
    DevicesChanged {
        /// The account's address.
        account: String,
        /// This profile's own account.
        own: bool,
        /// The list's new version.
        version: u64,
        /// Devices added.
        added: Vec<u32>,
        /// Devices removed.
        removed: Vec<u32>,
    },
    /// This device was removed from its account.
    Unlinked,
    /// A history transfer to or from a linked device went on.
    HistoryTransfer {
        /// On the sending device.
        outgoing: bool,
        /// Messages applied so far (receiver).
        messages_done: u64,
        /// Messages in the transfer (receiver).
        messages_total: u64,
        /// The new device has all of it.
        complete: bool,
    },
    /// An envelope was dropped unread (not authenticated, not readable,
    /// or from someone it cannot be from).
    Dropped {
        /// Why, in the client's words.
        reason: String,
    },
    /// An authenticated message could not be decrypted and was dropped.
    Undecryptable {
        /// The sender's address.
        from: String,
        /// Why, in the client's words.
        reason: String,
        /// The sender was asked to start a new session and resend.
        resend_requested: bool,
    },
    /// A contact could not decrypt a message of ours; it was answered.
    PeerCouldNotDecrypt {
        /// The contact's address.
        contact: String,
        /// The message resent, if any.
        seq: Option<u64>,
        /// A new session was started before resending.
        session_reset: bool,
    },
    /// Connected (or reconnected) and authenticated to the relay.
    Connected {
        /// Messages from the outbox handed to the relay on connecting.
        sent_from_outbox: u64,
    },
    /// The relay connection ended or could not be made; the client
    /// reconnects with backoff. Once per outage.
    Disconnected {
        /// Why, as far as known.
        reason: String,
    },
    /// Fresh one-time prekeys were published.
    PreKeysPublished {
        /// How many.
        count: u64,
    },
    /// Messages waiting in the outbox were handed to the relay.
    OutboxFlushed {
        /// How many.
        count: u64,
    },
    /// A background step failed; it is retried later.
    BackgroundError {
        /// Which step (`prekeys`, `outbox`, `mailbox`, ...).
        step: String,
        /// What went wrong.
        detail: String,
    },
    /// An event this version of the bindings does not name.
    Other {
        /// The event's kind.
        kind: String,
    },
}

impl From<sotto::ClientEvent> for Event {
    fn from(event: sotto::ClientEvent) -> Self {
        use sotto::ClientEvent as E;
        match event {
            E::Message(m) => Self::Message { message: m.into() },
            E::SentFromOtherDevice(m) => Self::SentFromOtherDevice { message: m.into() },
            E::Delivered { contact, seqs } => Self::Delivered {
                contact: contact.to_string(),
                seqs,
            },
            E::Read { contact, seqs } => Self::Read {
                contact: contact.to_string(),
                seqs,
            },
            E::SendFailed {
                contact,
                seq,
                reason,
            } => Self::SendFailed {
                contact: contact.to_string(),
                seq,
                reason: reason.into(),
            },
            E::IdentityChanged(change) => Self::IdentityChanged {
                change: (*change).into(),
            },
            E::GroupMessage(m) => Self::GroupMessage {
                group: sotto::group_id_hex(&m.group),
                group_name: m.group_name,
                from: m.from.to_string(),
                seq: m.seq,
                body: m.body,
                received_at: m.received_at,
            },
            E::GroupChanged(c) => Self::GroupChanged {
                group: sotto::group_id_hex(&c.group),
                name: c.name,
                by: c.by.to_string(),
                added: c.added.iter().map(ToString::to_string).collect(),
                removed: c.removed.iter().map(ToString::to_string).collect(),
                joined: c.joined,
                left: c.left,
            },
            E::DevicesChanged {
                account,
                own,
                version,
                added,
                removed,
            } => Self::DevicesChanged {
                account: account.to_string(),
                own,
                version,
                added: added.iter().map(|d| d.get()).collect(),
                removed: removed.iter().map(|d| d.get()).collect(),
            },
            E::Unlinked => Self::Unlinked,
            E::HistoryTransfer(t) => Self::HistoryTransfer {
                outgoing: t.outgoing,
                messages_done: t.messages_done,
                messages_total: t.messages_total,
                complete: t.complete,
            },
            E::Dropped { reason } => Self::Dropped {
                reason: reason.to_string(),
            },
            E::Undecryptable {
                from,
                reason,
                resend_requested,
            } => Self::Undecryptable {
                from: from.to_string(),
                reason: reason.to_string(),
                resend_requested,
            },
            E::PeerCouldNotDecrypt {
                contact,
                seq,
                session_reset,
            } => Self::PeerCouldNotDecrypt {
                contact: contact.to_string(),
                seq,
                session_reset,
            },
            E::Connected { sent_from_outbox } => Self::Connected {
                sent_from_outbox: count(sent_from_outbox),
            },
            E::Disconnected { reason } => Self::Disconnected {
                reason: reason.to_string(),
            },
            E::PreKeysPublished { count: n } => Self::PreKeysPublished { count: count(n) },
            E::OutboxFlushed { count: n } => Self::OutboxFlushed { count: count(n) },
            E::Error { step, error } => Self::BackgroundError {
                step: step.to_string(),
                detail: error.to_string(),
            },
            other => Self::Other {
                kind: format!("{other:?}")
                    .split(|c: char| !c.is_alphanumeric())
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            },
        }
    }
}

/// Receives a client's events on a thread of the bindings (not the
/// caller's): implement it in Kotlin, Swift or Python and pass it to
/// `Client::set_listener`. Calls come one at a time, in order; a slow
/// `on_event` holds back later events of this listener only.
#[uniffi::export(with_foreign)]
pub trait EventListener: Send + Sync {
    /// One event.
    fn on_event(&self, event: Event);
}
