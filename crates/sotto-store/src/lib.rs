//! # sotto-store
//!
//! The only place Sotto's history exists: one SQLite file per profile
//! holding the identity, prekeys, contacts, sessions, conversations,
//! messages and outbox, every sensitive value sealed with
//! XChaCha20-Poly1305 and bound to its row. Someone who copies the file
//! without the passphrase (or app key) learns its approximate size and
//! row counts, not who talked to whom, when, or what. `docs/storage.md`
//! describes the formats and the threat model in full.
//!
//! ```
//! use sotto_store::{Envelope, KdfParams, OpenOptions, PeerDevice, Received, Store};
//! # fn main() -> Result<(), sotto_store::Error> {
//! # let dir = tempfile::tempdir().map_err(|_| sotto_store::Error::NotFound)?;
//! // Light Argon2id parameters keep this example fast; use the default
//! // (64 MiB, t = 3) in an application.
//! let options = OpenOptions::new().kdf(KdfParams::new(64, 1, 1)?);
//! let mut alice = Store::create(dir.path().join("alice.db"), b"alice's passphrase", &options)?;
//! let mut bob = Store::create(dir.path().join("bob.db"), b"bob's passphrase", &options)?;
//!
//! // Bob publishes one-time prekeys; Alice fetches his bundle and starts a session.
//! let published = bob.fresh_one_time_prekeys(1, 1_700_000_000_000)?;
//! let bundle = bob.prekey_bundle(Some(published[0].0))?;
//! alice.add_contact("bob", "Bob", None)?;
//! alice.start_session("bob", &bundle)?;
//!
//! // send: committed (session, history, outbox) before the ciphertext is returned.
//! let out = alice.send("bob", b"hello", 1_700_000_000_000)?;
//! // ... the relay carries (out.id, out.ciphertext) to Bob's mailbox ...
//! alice.mark_sent(&out.id, 1_700_000_000_100)?;
//!
//! // receive: decrypt, store and dedupe in one transaction; then ack the relay.
//! let envelope = Envelope {
//!     id: out.id,
//!     sender: "alice",
//!     device: PeerDevice::CONTACT_PRIMARY,
//!     ciphertext: &out.ciphertext,
//!     sent_at: 1_700_000_000_000,
//!     received_at: 1_700_000_000_500,
//! };
//! let Received::Stored(message) = bob.receive(&envelope)? else { unreachable!() };
//! assert_eq!(message.body.as_slice(), b"hello");
//! assert!(matches!(bob.receive(&envelope)?, Received::Duplicate));
//!
//! let page = bob.history("alice", None, 50)?;
//! assert_eq!(page.messages().count(), 1);
//!
//! // Bob's device confirms (a delivery receipt, carried back by the app):
//! // the message is Delivered and no longer offered for resending.
//! assert_eq!(alice.mark_delivered("bob", &[out.id])?, vec![out.seq]);
//! # Ok(()) }
//! ```
//!
//! ## Guarantees
//! - [`Store::receive`] and [`Store::send`] each run in one `BEGIN
//!   IMMEDIATE` transaction; a crash at any point leaves either all of
//!   their effects or none. Sessions are always read from the file inside
//!   that transaction, so several handles (processes) never use stale
//!   session state.
//! - A wrong passphrase is [`Error::WrongPassphrase`] and writes nothing.
//! - A row that was tampered with, truncated, or copied from another row
//!   is [`Error::Corrupt`] naming table and row; history still returns the
//!   other rows.
//! - Deleting a conversation deletes its key; copies of its rows left in
//!   free pages, the WAL or elsewhere can no longer be opened.
//! - [`Store::export_archive`] writes the identity, contacts and whole
//!   history to one encrypted, authenticated archive;
//!   [`Store::import_archive`] makes a new store from it, and leaves no
//!   file behind when it refuses one (wrong passphrase, altered, cut
//!   short). See `docs/storage.md`, "History archive".
//! - [`Store::export_history_transfer`] writes the same format without the
//!   identity, for a newly linked device; there
//!   [`Store::apply_history_chunk`] merges it chunk by chunk into the
//!   device's own store, each chunk in one transaction, resumable after a
//!   crash, the transferred history before what the device already held.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod archive;
mod attachments;
mod check;
mod checkpoint;
mod contacts;
mod controls;
mod crypto;
mod db;
mod devices;
mod disappearing;
mod error;
mod groups;
mod history;
mod layout;
mod options;
mod prekeys;
mod receipts;
mod receive;
mod records;
mod recovery;
mod schema;
mod seen;
mod send;
mod store;
#[cfg(feature = "test-hooks")]
pub mod testing;
// Without `test-hooks` the fault points stay in the code as no-ops.
#[cfg(not(feature = "test-hooks"))]
#[allow(unreachable_pub)]
mod testing;
mod types;

pub use archive::{
    ArchiveError, ArchiveId, ArchiveKey, ArchiveKind, ArchiveLock, ArchiveProgress, ArchiveSummary,
    TransferFrames, TransferProgress,
};
pub use check::CheckReport;
pub use controls::{
    CONTROL_CONVERSATION_PREFIX, Control, SENT_CONTROL_CONVERSATION_PREFIX, control_conversation_id,
};
pub use devices::OutgoingTransfer;
pub use error::{Error, Result, Row, UnlockMethod};
pub use groups::{
    GROUP_CONVERSATION_PREFIX, GroupOutboxEntry, GroupReceive, GroupRecipient, GroupSend,
    MAX_DEFERRED_PER_GROUP, StoredGroup, group_conversation_id,
};
pub use history::MAX_PAGE;
pub use options::{
    Durability, KdfParams, MAX_ITERATIONS, MAX_MEMORY_KIB, MAX_PARALLELISM, OpenOptions,
};
pub use prekeys::{
    MAX_ONE_TIME_PREKEYS_PER_CALL, RETIRED_ONE_TIME_PREKEY_GRACE, SignedPreKeyPolicy,
};
pub use receipts::ResendPolicy;
pub use receive::MAX_BATCH;
pub use records::{MAX_CONTACT_ID_LEN, MAX_CONTACT_NAME_LEN};
pub use recovery::{MAX_RESETS_IN_ROW, RECOVERY_WINDOW, Recovery};
pub use schema::SCHEMA_VERSION;
pub use send::DETACHED_BODY_MIN;
pub use sotto_core::group::GroupId;
pub use store::Store;
pub use types::{
    CiphertextDigest, Contact, ConversationEvent, DeliveryState, DeviceListChange, Direction,
    DisappearingTimer, Envelope, EnvelopeId, Expired, HistoryEntry, HistoryPage, Message,
    NewMessage, OneTimePreKeyInfo, OutboxEntry, Outgoing, PeerDevice, Received, SendFailure,
};

/// Re-exported so callers can name protocol types without a direct dependency.
pub use sotto_core;
