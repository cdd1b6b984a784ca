//! # Sotto
//!
//! End-to-end encrypted messaging whose history lives only on the user's
//! devices. [`Client`] puts together the protocol ([`core`]), the encrypted
//! on-device store ([`store`]) and a relay connection ([`relay`]).
//!
//! ```no_run
//! # async fn demo() -> sotto::Result<()> {
//! use sotto::{Client, ClientOptions};
//!
//! let alice = Client::create("alice-profile", b"correct horse", ClientOptions::default()).await?;
//! alice.register("127.0.0.1:7447").await?;
//! println!("my address: {}", alice.address().shareable());
//!
//! let bob_address = "sotto:...".parse()?;
//! alice.add_contact("bob", &bob_address).await?;
//! alice.send("bob", b"hello").await?;
//!
//! use tokio_stream::StreamExt;
//! let mut incoming = alice.incoming();
//! while let Some(message) = incoming.next().await {
//!     println!("{}: {}", message.name, String::from_utf8_lossy(&message.body));
//! }
//! # Ok(()) }
//! ```
//!
//! ## Guarantees
//! - A received message is committed to the store before the relay is
//!   acknowledged; a crash in between redelivers it, and the store keeps it
//!   once.
//! - A sent message and the session state that produced it are committed
//!   before the ciphertext leaves; the outbox is retried under the same id
//!   until the relay accepts it, and the recipient stores it once.
//! - The relay sees only ciphertext, the recipient's mailbox, and the
//!   sender's identity key inside each envelope (see `docs/threat-model.md`).
#![forbid(unsafe_code)]

mod address;
mod client;
mod connection;
mod error;
mod payload;
mod profile;
mod relay_address;

pub use address::{ADDRESS_PREFIX, Address, AddressError};
#[cfg(feature = "test-hooks")]
pub use client::Fault;
pub use client::{
    ATTACHMENTS_DIR, Attachment, Client, ClientEvent, ClientOptions, Clock, ContactInfo,
    DisconnectReason, DropReason, Events, FileFailure, GroupChange, GroupHistoryItem, GroupInfo,
    HistoryItem, HistoryTransfer, IdentityChange, IncomingGroupMessage, IncomingMessage,
    JoinedAccount, LinkedDevice, PROFILE_DB, RELAY_FILE, SendStatus, Sent, Step, Undecryptable,
    UnreadableRow, UploadId, group_id_hex, media_type_for,
};
pub use connection::RelayTrust;
pub use error::{Error, Result, TlsConfigError};
pub use payload::{
    DETACHED_FRAME, DETACHED_FRAME_OVERHEAD, KIND_DECRYPTION_ERROR, KIND_DETACHED_MESSAGE,
    KIND_DEVICE_LIST, KIND_DEVICE_MESSAGE, KIND_GROUP_CONTROL, KIND_GROUP_MESSAGE,
    KIND_HISTORY_CHUNK, KIND_HISTORY_STATUS, KIND_IDENTITY_CHANGE, KIND_LINK_ACCEPT,
    KIND_LINK_OFFER, KIND_MESSAGE, KIND_RECEIPT, MAX_RECEIPT_IDS, PAYLOAD_OVERHEAD,
    PAYLOAD_VERSION, PayloadError,
};
pub use relay_address::{RelayAddress, RelayAddressError, RelayTransport};
pub use sotto_core::group::GroupId;

pub use sotto_core as core;
pub use sotto_relay as relay;
pub use sotto_store as store;
pub use sotto_store::ConversationEvent;

// The README's examples compile and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
struct ReadmeDoctests;
