//! # sotto-relay
//!
//! The relay of Sotto: the only server. It keeps a directory of prekey
//! bundles (public keys and signatures) and a queue of opaque envelopes per
//! mailbox, and forgets each envelope once its recipient acknowledges it.
//! It never sees a plaintext, a key that could produce one, or who sent an
//! envelope (sending needs no account).
//!
//! This crate holds the [wire protocol](protocol) and the async
//! [client](RelayClient) that `sotto::Client` uses, and, behind the
//! `server` feature, the [server](Server) and its [storage
//! backends](store). The byte-level protocol is specified in
//! `docs/relay.md`.
//!
//! ## Features
//!
//! - `server` (default): the relay server, its mailbox stores (SQLite and
//!   in-memory), its [`clock`] and the `sotto-relay` binary; it brings in
//!   SQLite (`rusqlite`) and `tracing-subscriber`. An app that only talks
//!   to a relay turns the default features off and compiles the protocol
//!   and the client alone:
//!   `sotto-relay = { version = "0.1", default-features = false }`.
//! - `redis` (default; implies `server`): the Redis (or Valkey) mailbox
//!   store, `RedisStore`, for relays that share one server.
//! - `tls`: TLS 1.3 with rustls and the *ring* provider (the `tls`
//!   module), for the client and, with `server`, for the server.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sotto_core::{
//!     IdentityKeyPair, OneTimePreKey, OneTimePreKeyId, SignedPreKey, SignedPreKeyId,
//! };
//! use sotto_relay::{
//!     ClientConfig, MailboxAddress, MemoryStore, MessageId, PreKeyUpload, RelayClient, Server,
//!     ServerConfig,
//! };
//!
//! let server = Server::bind("127.0.0.1:0", ServerConfig::default(), Arc::new(MemoryStore::new()))
//!     .await?
//!     .spawn();
//! let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
//!
//! // Bob publishes his prekeys.
//! let bob = IdentityKeyPair::generate(&mut rng);
//! let spk = SignedPreKey::generate(SignedPreKeyId::new(1), &bob, &mut rng);
//! let opks: Vec<_> = (0..20)
//!     .map(|i| OneTimePreKey::generate(OneTimePreKeyId::new(i), &mut rng))
//!     .collect();
//! let bob_conn = RelayClient::connect(server.local_addr(), ClientConfig::default()).await?;
//! bob_conn.authenticate(&bob).await?;
//! bob_conn.upload_prekeys(PreKeyUpload::new(Some(&spk), &opks)).await?;
//!
//! // Alice, without an account, fetches his bundle and sends him an envelope.
//! let bob_address = MailboxAddress::of(bob.public());
//! let alice_conn = RelayClient::connect(server.local_addr(), ClientConfig::default()).await?;
//! let bundle = alice_conn.fetch_bundle(&bob_address).await?;
//! // Without Bob's access key: a first contact (Bob published no verifier
//! // here, so any sender may queue; see `RelayClient::send`).
//! alice_conn.send(&bob_address, MessageId::random()?, None, b"ciphertext").await?;
//!
//! // Bob fetches, stores, acknowledges.
//! for envelope in bob_conn.fetch_pending().await? {
//!     bob_conn.ack(&[envelope.id]).await?;
//! }
//! server.shutdown().await;
//! # let _ = bundle;
//! # Ok(()) }
//! ```
//!
//! ## Security considerations
//!
//! - A mailbox is read, acknowledged and re-keyed only over a connection
//!   that signed the relay's fresh challenge with the mailbox owner's
//!   identity key ([`protocol::auth_message`]). Over TLS (1.3 only) the
//!   signature also covers the session's exporter value
//!   ([`protocol::ChannelBinding`]), so a relay that forwards another
//!   relay's challenge to its clients cannot log in there as them. Plain
//!   TCP has no such binding: a client should then expect the relay's
//!   server id ([`ClientConfig::expected_server_id`]).
//! - Bundles are checked by the client ([`RelayClient::fetch_bundle`]):
//!   the identity key must hash to the requested address and the signed
//!   prekey signature must verify. A relay can still withhold or replay
//!   bundles; it cannot forge one.
//! - The relay learns who receives how much and when, and the network
//!   address of senders; it does not learn senders' identities from the
//!   protocol. TLS (feature `tls`) hides the traffic from the network.
//! - Anyone may send, but only to a registered mailbox (one whose owner
//!   published a signed prekey), within the mailbox's limits, the
//!   store-wide [`ServerConfig::max_total_bytes`] and the per-connection
//!   [`ServerConfig::connection_send_budget`]; unacknowledged envelopes
//!   expire after [`ServerConfig::envelope_ttl`]. An anonymous client
//!   cannot fill the relay.
//! - Nor can it exhaust it: connections are limited per source address
//!   ([`ServerConfig::max_connections_per_address`]), unauthenticated
//!   connections that do nothing useful and frames that arrive too slowly
//!   are closed ([`ServerConfig::unauthenticated_timeout`],
//!   [`ServerConfig::frame_timeout`]), and the memory request frames hold
//!   is bounded per connection and relay-wide
//!   ([`ServerConfig::unauthenticated_frame_budget`],
//!   [`ServerHandle::frame_memory`]). A full disk refuses new envelopes
//!   with `StorageFull` and keeps delivering and deleting
//!   ([`SqliteStore::open_with`]).
//! - A mailbox whose owner published an access verifier takes envelopes
//!   without limit only from senders that present its access key (which
//!   the owner gives to the people it writes to, end-to-end encrypted);
//!   anyone else is a first contact, of which the mailbox takes
//!   [`ServerConfig::first_contact`] (a burst of 20, then one per 3 min),
//!   so a stranger cannot fill it. The key does not say which contact
//!   sent an envelope.
//! - Envelopes are deleted on acknowledgement or expiry (SQLite
//!   `secure_delete`); besides the bytes, only the recipient, the message
//!   id and the hour the envelope expires are kept.
//! - [`RelayClient::send_multi`] queues one body with a header per
//!   recipient in one request (protocol version 3), so the body is
//!   uploaded and stored once; each recipient gets `header || body` as if
//!   it had been sent alone. The relay then knows those recipients share
//!   a conversation with one sender (docs/relay.md §11): a client that
//!   must hide it sends one [`RelayClient::send`] per recipient.
//! - Blobs (protocol version 5, [`RelayClient::blob_create`] and the
//!   other `blob_` methods) are opaque files a logged-in mailbox uploads
//!   for up to 64 recipients. The relay keeps only the verifiers of the
//!   recipients' [`BlobToken`]s, answers a put only once its bytes are
//!   durable, and deletes a blob once every token's holder said it is
//!   done or when it expires; it learns the blob's size, timing and
//!   number of recipients, not its content (docs/relay.md §11, §12).
#![forbid(unsafe_code)]

pub mod address;
pub mod blob;
pub mod client;
#[cfg(feature = "server")]
pub mod clock;
pub mod envelope;
pub mod protocol;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "tls")]
pub mod tls;

pub use address::MailboxAddress;
pub use blob::{BlobId, BlobState, BlobToken};
#[cfg(feature = "server")]
pub use blob::{BlobStore, DirBlobStore, MemoryBlobStore};
pub use client::{
    ClientConfig, ClientError, NotARelay, ProtocolViolation, RelayClient, RelayEvent, SendReceipt,
};
#[cfg(feature = "server")]
pub use clock::{Clock, SystemClock, UnixTime};
pub use envelope::{Envelope, FetchedPage, MessageId};
pub use protocol::{
    AuthInfo, ErrorCode, MultiRecipient, PreKeyStock, PreKeyUpload, RecipientOutcome,
};
#[cfg(feature = "server")]
pub use server::{
    BlobStorage, FirstContactLimit, FrameMemory, RateLimit, Server, ServerConfig, ServerError,
    ServerHandle,
};
#[cfg(feature = "server")]
pub use store::{
    Access, ChangeFeed, MailboxLimits, MailboxStore, MemoryStore, QueuePolicy, SqliteOptions,
    SqliteStore, StoreError, StoreTotals, open_store,
};
#[cfg(feature = "redis")]
pub use store::{Durability, RedisOptions, RedisStore};
