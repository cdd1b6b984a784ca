//! What the calls take and give: plain records and enums, each the
//! bindings' form of a `sotto` type. Addresses are strings in their
//! shareable form (`sotto:...`); message bodies are bytes.

use crate::error::to_u64;

/// How a client behaves; every field has a default, so
/// `ClientOptions()` (Python), `ClientOptions()` (Kotlin) or
/// `ClientOptions()` (Swift) is the usual value.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ClientOptions {
    /// PEM certificates (a private CA, or the relay's own certificate)
    /// that a `tls://` relay must chain to, instead of the platform's
    /// trust store. Public certificates, not a secret.
    #[uniffi(default = None)]
    pub relay_ca_pem: Option<Vec<u8>>,
    /// Send read receipts from `mark_read` (off by default).
    #[uniffi(default = false)]
    pub read_receipts: bool,
    /// Argon2id memory in KiB for a new store (default: the store's
    /// default, 64 MiB). Small values make a stolen file cheap to attack:
    /// for tests and very weak devices only.
    #[uniffi(default = None)]
    pub kdf_memory_kib: Option<u32>,
    /// Argon2id iterations for a new store (default: the store's, 3).
    #[uniffi(default = None)]
    pub kdf_iterations: Option<u32>,
    /// Events kept for a listener or `next_event` caller that falls
    /// behind; older ones are skipped (messages stay in the history).
    #[uniffi(default = 1024)]
    pub event_capacity: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            relay_ca_pem: None,
            read_receipts: false,
            kdf_memory_kib: None,
            kdf_iterations: None,
            event_capacity: 1024,
        }
    }
}

impl ClientOptions {
    /// The facade's options.
    pub(crate) fn to_sotto(&self) -> crate::Result<sotto::ClientOptions> {
        let mut options = sotto::ClientOptions::default();
        if let Some(pem) = &self.relay_ca_pem {
            options.relay_trust = sotto::RelayTrust::PinnedPem(pem.clone());
        }
        options.read_receipts = self.read_receipts;
        if self.kdf_memory_kib.is_some() || self.kdf_iterations.is_some() {
            let default = sotto::store::KdfParams::DEFAULT;
            let kdf = sotto::store::KdfParams::new(
                self.kdf_memory_kib.unwrap_or(default.memory_kib()),
                self.kdf_iterations.unwrap_or(default.iterations()),
                default.parallelism(),
            )
            .map_err(|e| crate::SottoError::Store {
                detail: e.to_string(),
            })?;
            options.store = options.store.kdf(kdf);
        }
        options.event_capacity = usize::try_from(self.event_capacity)
            .unwrap_or(usize::MAX)
            .max(1);
        Ok(options)
    }
}

/// A message that arrived, was decrypted and committed to history.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct IncomingMessage {
    /// The sender's address.
    pub contact: String,
    /// The contact's display name (empty for a sender not yet named).
    pub name: String,
    /// Its sequence number in the conversation.
    pub seq: u64,
    /// The plaintext.
    pub body: Vec<u8>,
    /// When it arrived, milliseconds since the Unix epoch.
    pub received_at: u64,
}

impl core::fmt::Debug for IncomingMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Bodies and names are user data: never printed.
        f.debug_struct("IncomingMessage")
            .field("seq", &self.seq)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl From<sotto::IncomingMessage> for IncomingMessage {
    fn from(m: sotto::IncomingMessage) -> Self {
        Self {
            contact: m.contact.to_string(),
            name: m.name,
            seq: m.seq,
            body: m.body,
            received_at: m.received_at,
        }
    }
}

/// Where a message stands.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum DeliveryState {
    /// Outgoing, waiting in the outbox for the relay.
    Pending,
    /// Outgoing, accepted by the relay.
    Sent,
    /// Outgoing, the contact's device confirmed it.
    Delivered,
    /// Incoming, stored.
    Received,
    /// Read by its recipient (either direction).
    Read,
    /// Outgoing, refused for good: it never left and never will.
    Failed {
        /// Why.
        reason: SendFailure,
    },
    /// A state this version of the bindings does not name.
    Other {
        /// The state's name.
        detail: String,
    },
}

impl From<sotto::store::DeliveryState> for DeliveryState {
    fn from(state: sotto::store::DeliveryState) -> Self {
        use sotto::store::DeliveryState as D;
        match state {
            D::Pending => Self::Pending,
            D::Sent => Self::Sent,
            D::Delivered => Self::Delivered,
            D::Received => Self::Received,
            D::Read => Self::Read,
            D::Failed(reason) => Self::Failed {
                reason: reason.into(),
            },
            other => Self::Other {
                detail: format!("{other:?}"),
            },
        }
    }
}

/// Why an outgoing message was given up.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SendFailure {
    /// Larger than what the relay takes in one envelope.
    TooLarge,
    /// The relay refused the envelope as invalid.
    Rejected,
    /// It had not left the device when the history was exported, and the
    /// profile was restored from that archive: write it again.
    ExportedUnsent,
    /// The relay has no mailbox for the device any more.
    NoSuchDevice,
    /// A reason this version of the bindings does not name.
    Other {
        /// The client's words for it.
        detail: String,
    },
}

impl From<sotto::store::SendFailure> for SendFailure {
    fn from(reason: sotto::store::SendFailure) -> Self {
        use sotto::store::SendFailure as F;
        match reason {
            F::TooLarge => Self::TooLarge,
            F::Rejected => Self::Rejected,
            F::ExportedUnsent => Self::ExportedUnsent,
            F::NoSuchDevice => Self::NoSuchDevice,
            other => Self::Other {
                detail: other.to_string(),
            },
        }
    }
}

/// What happened to a sent message.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SendStatus {
    /// The relay accepted it; the recipient's device confirms delivery
    /// later (`Event::Delivered`).
    Accepted,
    /// Stored in the outbox; it goes out when the relay takes it.
    Queued,
    /// The relay refused it for good.
    Failed {
        /// Why.
        reason: SendFailure,
    },
}

/// The result of `send`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Sent {
    /// Its sequence number in the conversation.
    pub seq: u64,
    /// Accepted by the relay or waiting in the outbox.
    pub status: SendStatus,
}

impl From<sotto::Sent> for Sent {
    fn from(sent: sotto::Sent) -> Self {
        let status = match sent.status {
            sotto::SendStatus::Accepted => SendStatus::Accepted,
            sotto::SendStatus::Failed(reason) => SendStatus::Failed {
                reason: reason.into(),
            },
            // `Queued`, and any state a later facade adds: the message is
            // stored and the client keeps trying.
            _ => SendStatus::Queued,
        };
        Self {
            seq: sent.seq,
            status,
        }
    }
}

/// Why a history row could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum UnreadableRow {
    /// The row is gone from the file.
    Missing,
    /// The row is there but does not open: damaged or altered.
    Damaged,
}

impl From<sotto::UnreadableRow> for UnreadableRow {
    fn from(row: sotto::UnreadableRow) -> Self {
        match row {
            sotto::UnreadableRow::Missing => Self::Missing,
            _ => Self::Damaged,
        }
    }
}

/// One message of a conversation's history. A row that cannot be read is
/// reported in place (`body` is `None`, `unreadable` says why), never
/// left out.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct HistoryItem {
    /// Its sequence number in the conversation.
    pub seq: u64,
    /// Sent by this account, or received.
    pub outgoing: bool,
    /// Milliseconds since the Unix epoch (sent or received).
    pub timestamp: u64,
    /// Where it stands (`None` for an unreadable row).
    pub state: Option<DeliveryState>,
    /// The plaintext (`None` for an unreadable row).
    pub body: Option<Vec<u8>>,
    /// Why the row could not be read.
    pub unreadable: Option<UnreadableRow>,
    /// Who wrote it, in a group's history (`None` in a conversation with
    /// one contact, and for an unreadable row).
    pub author: Option<String>,
}

impl core::fmt::Debug for HistoryItem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HistoryItem")
            .field("seq", &self.seq)
            .field("outgoing", &self.outgoing)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl From<sotto::HistoryItem> for HistoryItem {
    fn from(item: sotto::HistoryItem) -> Self {
        let (body, unreadable) = match item.body {
            Ok(body) => (Some(body), None),
            Err(why) => (None, Some(why.into())),
        };
        Self {
            seq: item.seq,
            outgoing: item.outgoing,
            timestamp: item.timestamp,
            state: item.state.map(Into::into),
            body,
            unreadable,
            author: None,
        }
    }
}

impl From<sotto::GroupHistoryItem> for HistoryItem {
    fn from(item: sotto::GroupHistoryItem) -> Self {
        let (body, unreadable) = match item.body {
            Ok(body) => (Some(body), None),
            Err(why) => (None, Some(why.into())),
        };
        Self {
            seq: item.seq,
            outgoing: item.outgoing,
            timestamp: item.timestamp,
            state: item.state.map(Into::into),
            body,
            unreadable,
            author: item.author.map(|a| a.to_string()),
        }
    }
}

/// A contact as the app shows it.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct Contact {
    /// Display name (empty for someone who wrote first and was not named
    /// yet).
    pub name: String,
    /// Address.
    pub address: String,
    /// The safety number was compared and confirmed.
    pub verified: bool,
}

impl core::fmt::Debug for Contact {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Contact")
            .field("verified", &self.verified)
            .finish_non_exhaustive()
    }
}

/// A claimed identity change of a contact: compare the new safety number
/// with the contact before accepting.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct IdentityChange {
    /// The contact as known so far (its old address).
    pub contact: String,
    /// The contact's display name.
    pub name: String,
    /// The new address that claims to be the contact.
    pub new_address: String,
    /// The safety number with the old identity (60 digits in groups).
    pub old_safety_number: String,
    /// The safety number with the new identity.
    pub new_safety_number: String,
}

impl core::fmt::Debug for IdentityChange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IdentityChange").finish_non_exhaustive()
    }
}

impl From<sotto::IdentityChange> for IdentityChange {
    fn from(c: sotto::IdentityChange) -> Self {
        Self {
            contact: c.contact.to_string(),
            name: c.name,
            new_address: c.new_address.to_string(),
            old_safety_number: c.old_safety_number.to_string(),
            new_safety_number: c.new_safety_number.to_string(),
        }
    }
}

/// One device of an account's signed device list.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Device {
    /// Its id in the list (1 is the device the account was created on).
    pub id: u32,
    /// When it was added (ms since the Unix epoch, as the account's
    /// device's clock said).
    pub added_at: u64,
}

/// An account's device list.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DeviceList {
    /// The list's version (grows with each change).
    pub version: u64,
    /// The devices, by id.
    pub devices: Vec<Device>,
}

impl From<&sotto::core::DeviceList> for DeviceList {
    fn from(list: &sotto::core::DeviceList) -> Self {
        Self {
            version: list.version(),
            devices: list
                .devices()
                .iter()
                .map(|d| Device {
                    id: d.id.get(),
                    added_at: d.added_at,
                })
                .collect(),
        }
    }
}

/// A group as the app shows it.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct GroupInfo {
    /// The group's id in hex (the same for every member).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its members' addresses, this account's included while it is one.
    pub members: Vec<String>,
    /// This account left the group or was removed.
    pub left: bool,
}

impl core::fmt::Debug for GroupInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GroupInfo")
            .field("members", &self.members.len())
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

impl From<sotto::GroupInfo> for GroupInfo {
    fn from(g: sotto::GroupInfo) -> Self {
        Self {
            id: sotto::group_id_hex(&g.id),
            name: g.name,
            members: g.members.iter().map(ToString::to_string).collect(),
            left: g.left,
        }
    }
}

/// A count as the bindings carry it.
pub(crate) fn count(n: usize) -> u64 {
    to_u64(n)
}
