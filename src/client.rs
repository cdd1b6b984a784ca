//! `Client`: the store, the protocol and a relay connection, put together.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sotto_core::{
    AccessKey, IdentityKey, IdentityKeyPair, OneTimePreKeyId, PreKeyPublic, SafetyNumber,
};
use sotto_relay::protocol::{OneTimePreKeyPublic, SignedPreKeyPublic};
use sotto_relay::{ClientConfig, MailboxAddress, MessageId, PreKeyUpload, RelayClient, RelayEvent};
use sotto_store::{
    CiphertextDigest, Contact, DeliveryState, Direction, EnvelopeId, OpenOptions, OutboxEntry,
    RETIRED_ONE_TIME_PREKEY_GRACE, Received, Recovery, ResendPolicy, SignedPreKeyPolicy, Store,
};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_stream::{Stream, StreamExt, wrappers::BroadcastStream};

use crate::address::Address;
use crate::connection::{RelayTrust, SavedRelay};
use crate::error::{Error, Result};
use crate::payload;

/// File name of the encrypted store inside a profile directory.
pub const PROFILE_DB: &str = "sotto.db";
/// File name of the remembered relay inside a profile directory: the
/// address on the first line, then `server-id ID`, the id the relay
/// announced at registration.
pub const RELAY_FILE: &str = "relay";

/// How a [`Client`] behaves.
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
    /// Send read receipts from [`Client::mark_read`] (off by default).
    /// Delivery receipts are always sent: they are what makes delivery
    /// independent of the relay.
    pub read_receipts: bool,
    /// First delay before reconnecting after the relay connection drops.
    pub reconnect_min: Duration,
    /// Longest delay between reconnection attempts (the delay doubles).
    pub reconnect_max: Duration,
    /// Capacity of the event channel of each subscriber.
    pub event_capacity: usize,
    /// Receive automatically (default): fetch the mailbox on connect and
    /// store every pushed envelope. When false the app receives itself with
    /// [`Client::fetch_envelopes`] and [`Client::receive_envelope`] (for
    /// example in a background task that batches work).
    pub auto_receive: bool,
    /// Fault injection for crash tests; `None` in any real use.
    #[doc(hidden)]
    pub fault: Option<Fault>,
}

/// A crash to simulate (tests only).
#[doc(hidden)]
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
            event_capacity: 1024,
            auto_receive: true,
            fault: None,
        }
    }
}

/// A message that arrived, was decrypted and committed to history.
#[derive(Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    /// The contact's address (its id in the store).
    pub contact: String,
    /// The contact's display name (empty for a sender not yet named).
    pub name: String,
    /// Sequence number in the conversation's history.
    pub seq: u64,
    /// The plaintext.
    pub body: Vec<u8>,
    /// When it arrived, milliseconds since the Unix epoch.
    pub received_at: u64,
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
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A message was stored (committed to history; announced once, before
    /// the relay is acknowledged).
    Message(IncomingMessage),
    /// An envelope was dropped without a trace in history and without any
    /// answer to anyone: it did not come from whom it claims (the sealed
    /// layer did not authenticate it), or its format is not one this client
    /// reads. A hostile relay can cause these; it learns nothing from them.
    /// Counted in [`Client::dropped_envelopes`].
    Dropped {
        /// Why.
        reason: DropReason,
    },
    /// An envelope could not be decrypted and was dropped from the relay.
    Undecryptable {
        /// The claimed sender's address, if the envelope named one.
        from: Option<String>,
        /// Why.
        reason: String,
        /// A signed decryption-error notice went to the sender, asking it
        /// to start a new session and send the message again.
        resend_requested: bool,
    },
    /// The contact's device confirmed it stored messages of ours (a
    /// delivery receipt): they are now `DeliveryState::Delivered`.
    Delivered {
        /// The contact's address.
        contact: String,
        /// The messages (seqs in the conversation).
        seqs: Vec<u64>,
    },
    /// The contact read messages of ours (a read receipt).
    Read {
        /// The contact's address.
        contact: String,
        /// The messages (seqs in the conversation).
        seqs: Vec<u64>,
    },
    /// A contact reported (in a signed notice) that it could not decrypt a
    /// message of ours.
    PeerCouldNotDecrypt {
        /// The contact's address.
        contact: String,
        /// The message resent, or `None` when the notice called for nothing
        /// (already resent, unknown, or stale).
        seq: Option<u64>,
        /// A new session was started (fresh X3DH) before resending.
        session_reset: bool,
    },
    /// Connected (or reconnected) and authenticated to the relay.
    Connected,
    /// The relay connection ended; the client reconnects with backoff.
    Disconnected {
        /// Why, as far as known.
        reason: String,
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
    Error(String),
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
    /// An authenticated receipt from someone who is not a contact.
    NotAContact,
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Unauthenticated => "sender not authenticated",
            Self::UnsupportedVersion => "unsupported envelope version",
            Self::Malformed => "malformed payload",
            Self::NotAContact => "receipt from someone who is not a contact",
        })
    }
}

/// What happened to a sent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// The relay accepted it.
    Delivered,
    /// Stored in the outbox; it goes out when the relay is reachable, or
    /// when the relay refused it as a first contact over the recipient's
    /// allowance (`AccessDenied`, docs/client.md "Access keys"), once the
    /// relay takes it: the client tries again in the background.
    Queued,
}

/// The result of [`Client::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Its sequence number in the conversation.
    pub seq: u64,
    /// Delivered to the relay or waiting in the outbox.
    pub status: SendStatus,
}

/// One message of a conversation's history.
#[derive(Clone, PartialEq, Eq)]
pub struct HistoryItem {
    /// Sequence number in the conversation.
    pub seq: u64,
    /// Sent by us or received.
    pub outgoing: bool,
    /// Milliseconds since the Unix epoch (sent or received).
    pub timestamp: u64,
    /// Where the message stands (`None` for an unreadable row).
    pub state: Option<DeliveryState>,
    /// The plaintext, or why this row could not be read.
    pub body: core::result::Result<Vec<u8>, String>,
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

/// A contact as the app shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ContactInfo {
    /// Display name.
    pub name: String,
    /// Address.
    pub address: String,
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
    rx: broadcast::Receiver<ClientEvent>,
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

struct Shared {
    store: Arc<Mutex<Store>>,
    identity: IdentityKeyPair,
    /// This profile's unidentified-access key (derived from the identity,
    /// never stored): its verifier is published with the signed prekey,
    /// the key itself goes into every message we send.
    access_key: AccessKey,
    address: Address,
    options: ClientOptions,
    profile_dir: PathBuf,
    events: broadcast::Sender<ClientEvent>,
    connection: Mutex<Option<Arc<RelayClient>>>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    /// Serializes envelope processing and outbox flushing.
    processing: tokio::sync::Mutex<()>,
    /// Serializes prekey uploads: a stock count and the top-up it leads to,
    /// or a replacement and the retirement after it, never interleave.
    publishing: tokio::sync::Mutex<()>,
    notices: Mutex<NoticeLimiter>,
    /// Envelopes dropped as [`ClientEvent::Dropped`].
    dropped: std::sync::atomic::AtomicU64,
    /// Delivery receipts owed, per sender, sent in batches.
    receipts: Mutex<OwedReceipts>,
    /// Outbox entries were left for later because the relay refused them
    /// (e.g. `AccessDenied`): the background retries the outbox.
    outbox_held: std::sync::atomic::AtomicBool,
}

/// An end-to-end encrypted messaging client: one profile (an encrypted
/// store), one relay.
///
/// Every received message is committed to the store before the relay is
/// acknowledged, and every sent message is committed (with the session
/// state that produced it) before its ciphertext leaves. Cheap to clone;
/// clones share the profile and the connection.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    /// Dropped with the last clone: stops the background connection task,
    /// which itself holds `shared`.
    _lifetime: Arc<Lifetime>,
}

/// Ends the background work when the last `Client` clone goes away.
struct Lifetime {
    shared: std::sync::Weak<Shared>,
}

impl Drop for Lifetime {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            if let Some(h) = lock(&shared.supervisor).take() {
                h.abort();
            }
            lock(&shared.connection).take();
        }
    }
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.shared.address)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Store operations are transactions: a panic inside one leaves the
    // file consistent, so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn contact_id(identity: &IdentityKey) -> String {
    Address::of(identity).to_string()
}

/// The access key contact `id` gave us, if `identity` is the identity
/// pinned for it.
fn access_key_of(
    s: &Store,
    id: &str,
    identity: &IdentityKey,
) -> sotto_store::Result<Option<AccessKey>> {
    Ok(s.contact(id)?
        .filter(|c| c.identity_key.as_ref() == Some(identity))
        .and_then(|c| c.access_key))
}

impl Client {
    /// Creates a new profile in `profile_dir` (created if missing): a new
    /// identity, signed prekey and store locked by `passphrase`.
    pub async fn create(
        profile_dir: impl AsRef<Path>,
        passphrase: &[u8],
        options: ClientOptions,
    ) -> Result<Self> {
        let dir = profile_dir.as_ref().to_path_buf();
        crate::profile::prepare(&dir)?;
        let path = dir.join(PROFILE_DB);
        let pass = zeroize::Zeroizing::new(passphrase.to_vec());
        let store_options = options.store;
        let store = blocking(move || Store::create(&path, &pass, &store_options)).await?;
        Self::from_store(store, dir, options)
    }

    /// Opens an existing profile.
    pub async fn open(
        profile_dir: impl AsRef<Path>,
        passphrase: &[u8],
        options: ClientOptions,
    ) -> Result<Self> {
        let dir = profile_dir.as_ref().to_path_buf();
        let path = dir.join(PROFILE_DB);
        if !path.exists() {
            return Err(Error::Profile(format!(
                "no profile in {} (run `init` first)",
                dir.display()
            )));
        }
        crate::profile::prepare(&dir)?;
        let pass = zeroize::Zeroizing::new(passphrase.to_vec());
        let store_options = options.store;
        let store = blocking(move || Store::open(&path, &pass, &store_options)).await?;
        Self::from_store(store, dir, options)
    }

    fn from_store(store: Store, profile_dir: PathBuf, options: ClientOptions) -> Result<Self> {
        let identity = store.identity()?;
        let access_key = AccessKey::derive(&identity).map_err(sotto_store::Error::Protocol)?;
        let address = Address::of(identity.public());
        let (events, _) = broadcast::channel(options.event_capacity.max(1));
        let shared = Arc::new(Shared {
            store: Arc::new(Mutex::new(store)),
            identity,
            access_key,
            address,
            options,
            profile_dir,
            events,
            connection: Mutex::new(None),
            supervisor: Mutex::new(None),
            processing: tokio::sync::Mutex::new(()),
            publishing: tokio::sync::Mutex::new(()),
            notices: Mutex::new(NoticeLimiter::default()),
            dropped: std::sync::atomic::AtomicU64::new(0),
            receipts: Mutex::new(std::collections::HashMap::new()),
            outbox_held: std::sync::atomic::AtomicBool::new(false),
        });
        Ok(Self {
            _lifetime: Arc::new(Lifetime {
                shared: Arc::downgrade(&shared),
            }),
            shared,
        })
    }

    /// This profile's address, to give to contacts.
    pub fn address(&self) -> Address {
        self.shared.address
    }

    /// The profile directory.
    pub fn profile_dir(&self) -> &Path {
        &self.shared.profile_dir
    }

    /// The relay address remembered by [`register`](Self::register), if any,
    /// in the canonical form of [`RelayAddress`](crate::RelayAddress):
    /// `host:port`, or `tls://host:port` for TLS.
    pub fn saved_relay(&self) -> Option<String> {
        SavedRelay::load(&self.shared.profile_dir).map(|saved| saved.address)
    }

    /// How many envelopes were dropped since this client was opened because
    /// they did not authenticate their sender or could not be read
    /// ([`ClientEvent::Dropped`]). Anyone who can reach the mailbox (the
    /// relay above all) can make this grow; it cannot make anything else
    /// happen with such envelopes.
    pub fn dropped_envelopes(&self) -> u64 {
        self.shared
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// True while a relay connection is up.
    pub fn is_connected(&self) -> bool {
        lock(&self.shared.connection)
            .as_ref()
            .is_some_and(|c| !c.is_closed())
    }

    /// Subscribes to events (messages, connection changes). Subscribe
    /// before connecting to see everything from the first fetch on.
    pub fn events(&self) -> Events {
        Events {
            rx: self.shared.events.subscribe(),
        }
    }

    /// The stream of incoming messages, each already committed to history.
    pub fn incoming(&self) -> impl Stream<Item = IncomingMessage> + Send + Unpin + 'static {
        BroadcastStream::new(self.shared.events.subscribe()).filter_map(|e| match e {
            Ok(ClientEvent::Message(m)) => Some(m),
            _ => None,
        })
    }

    /// Connects to the relay at `relay_addr` (`host:port`, `tcp://host:port`
    /// or `tls://host:port`), publishes this profile's signed prekey and a
    /// full set of fresh one-time prekeys that replaces the relay's stock
    /// (so a relay that lost its data is repopulated), and remembers the
    /// relay and the server id it announced for later sessions.
    ///
    /// No one-time prekey is ever published twice: the keys published
    /// before stay in the store, retired, for first messages already made
    /// with them (until used, or for
    /// [`RETIRED_ONE_TIME_PREKEY_GRACE`](sotto_store::RETIRED_ONE_TIME_PREKEY_GRACE)).
    pub async fn register(&self, relay_addr: &str) -> Result<()> {
        self.connect(relay_addr).await?;
        let conn = self.connection()?;
        self.shared.replace_prekeys(&conn).await?;
        crate::connection::remember(
            &self.shared.profile_dir,
            relay_addr,
            &conn.welcome().server_id,
        )?;
        Ok(())
    }

    /// Connects to the remembered relay (see [`register`](Self::register)).
    pub async fn connect_saved(&self) -> Result<()> {
        let relay = self.saved_relay().ok_or(Error::NotConnected)?;
        self.connect(&relay).await
    }

    /// Connects and authenticates to `relay_addr` (any form
    /// [`RelayAddress`](crate::RelayAddress) parses), then keeps the
    /// connection in the background: sends what waits in the outbox,
    /// receives what waits in the mailbox, reconnects with backoff when the
    /// connection drops. Returns once the first connection is up, or with
    /// the error of the first attempt.
    pub async fn connect(&self, relay_addr: &str) -> Result<()> {
        self.disconnect().await;
        let conn = self.shared.open_connection(relay_addr).await?;
        let events = conn.take_events();
        self.shared.set_connection(Some(conn.clone()));
        let shared = self.shared.clone();
        let addr = relay_addr.to_owned();
        // Catch up before returning, so a caller that connects and then
        // reads history sees what was waiting.
        let caught_up = shared.catch_up(&conn).await;
        let handle = tokio::spawn(supervise(shared, addr, Some((conn, events, caught_up))));
        *lock(&self.shared.supervisor) = Some(handle);
        Ok(())
    }

    /// Closes the relay connection and stops reconnecting. An envelope
    /// being received is finished first (stored, announced, acknowledged),
    /// so stopping never leaves a stored message unannounced.
    pub async fn disconnect(&self) {
        let handle = lock(&self.shared.supervisor).take();
        if let Some(h) = handle {
            // The background task stores envelopes under this lock: holding
            // it, the task is between envelopes when it is stopped.
            let _between_envelopes = self.shared.processing.lock().await;
            h.abort();
            let _ = h.await;
        }
        let conn = lock(&self.shared.connection).take();
        if let Some(c) = conn
            && let Ok(c) = Arc::try_unwrap(c)
        {
            c.close().await;
        }
    }

    /// Fetches and stores whatever waits in the mailbox now (the
    /// background connection also does this as envelopes arrive).
    pub async fn sync(&self) -> Result<usize> {
        let conn = self.connection()?;
        self.shared.drain_mailbox(&conn).await
    }

    /// The envelopes waiting in the mailbox, without storing them.
    pub async fn fetch_envelopes(&self) -> Result<Vec<sotto_relay::Envelope>> {
        let conn = self.connection()?;
        Ok(conn.fetch_pending().await?)
    }

    /// Stores one envelope fetched with
    /// [`fetch_envelopes`](Self::fetch_envelopes) (in any order), then
    /// acknowledges it to the relay. Returns the message if it was new;
    /// `None` for a duplicate. An envelope that can never be decrypted is
    /// acknowledged and reported as an error.
    pub async fn receive_envelope(
        &self,
        envelope: sotto_relay::Envelope,
    ) -> Result<Option<IncomingMessage>> {
        let conn = self.connection()?;
        let _guard = self.shared.processing.lock().await;
        let relay_id = envelope.id;
        let outcome = self.shared.store_envelope(envelope.payload).await;
        let settled = self.shared.settle(&conn, relay_id, outcome).await;
        self.shared.flush_receipts(&conn).await;
        match settled? {
            Settled::Stored(message) => Ok(Some(message)),
            Settled::Nothing => Ok(None),
            Settled::Dropped(reason) => Err(Error::Undecryptable(reason.to_string())),
            Settled::Undecryptable(reason) => Err(Error::Undecryptable(reason)),
        }
    }

    /// Hands the outbox to the relay now; returns how many went out.
    pub async fn flush_outbox(&self) -> Result<usize> {
        let conn = self.connection()?;
        self.shared.flush_outbox(&conn).await
    }

    fn connection(&self) -> Result<Arc<RelayClient>> {
        lock(&self.shared.connection)
            .as_ref()
            .filter(|c| !c.is_closed())
            .cloned()
            .ok_or(Error::NotConnected)
    }

    /// Adds a contact under a display name.
    pub async fn add_contact(&self, name: &str, address: &Address) -> Result<()> {
        let id = address.to_string();
        let name = name.trim().to_owned();
        if name.is_empty() || name.starts_with(crate::address::ADDRESS_PREFIX) {
            return Err(Error::Profile(
                "a contact name must not be empty or look like an address".into(),
            ));
        }
        let identity = *address.identity_key();
        if identity == *self.shared.identity.public() {
            return Err(Error::Profile("that is this profile's own address".into()));
        }
        self.shared
            .with_store_result(move |s| {
                if s.contacts()?
                    .into_iter()
                    .flatten()
                    .any(|c| c.name == name && c.id != id)
                {
                    return Ok(Err(Error::ContactExists(name)));
                }
                match s.contact(&id)? {
                    // Someone who wrote first: give them the name now.
                    Some(c) if c.name.is_empty() => s.rename_contact(&id, &name)?,
                    Some(_) => return Ok(Err(Error::ContactExists(name))),
                    None => s.add_contact(&id, &name, Some(&identity))?,
                }
                Ok(Ok(()))
            })
            .await
    }

    /// Every contact. A contact row that cannot be read (the store file is
    /// damaged) is reported in place, never left out.
    pub async fn contacts(
        &self,
    ) -> Result<Vec<core::result::Result<ContactInfo, sotto_store::Error>>> {
        self.shared
            .with_store(|s| {
                Ok(s.contacts()?
                    .into_iter()
                    .map(|c| {
                        c.map(|c| ContactInfo {
                            name: c.name,
                            address: c.id,
                            verified: c.verified,
                        })
                    })
                    .collect())
            })
            .await
    }

    /// Checks the whole profile store (see [`Store::check`]): SQLite's
    /// integrity check, every sealed row, every conversation's messages
    /// against its sequence numbers. Reads everything; for a `check`
    /// command or a periodic check, not for every start.
    pub async fn check(&self) -> Result<sotto_store::CheckReport> {
        self.shared.with_store(|s| s.check()).await
    }

    /// Encrypts `text` for `contact` (a name or an address) and sends it.
    ///
    /// On first contact the recipient's prekey bundle is fetched from the
    /// relay and X3DH runs. The message and the advanced session are
    /// committed to the store (outbox) before the ciphertext goes to the
    /// relay; without a connection it waits in the outbox
    /// ([`SendStatus::Queued`]).
    pub async fn send(&self, contact: &str, text: &[u8]) -> Result<Sent> {
        let contact = self.resolve(contact).await?;
        let identity = contact
            .identity_key
            .ok_or_else(|| Error::UnknownContact(contact.name.clone()))?;
        let id = contact.id.clone();
        let has_session = {
            let id = id.clone();
            self.shared.with_store(move |s| s.has_session(&id)).await?
        };
        if !has_session {
            let conn = self.connection()?;
            let bundle = conn
                .fetch_bundle(&MailboxAddress::of(&identity))
                .await
                .map_err(|e| match e {
                    sotto_relay::ClientError::Server {
                        code: sotto_relay::ErrorCode::NotFound,
                        ..
                    } => Error::ContactNotRegistered(contact.name.clone()),
                    other => Error::Relay(other),
                })?;
            if bundle.identity_key != identity {
                return Err(Error::BundleMismatch);
            }
            let id = id.clone();
            self.shared
                .with_store(move |s| s.start_session(&id, &bundle))
                .await?;
        }
        let body = text.to_vec();
        let entry = self
            .shared
            .with_store(move |s| s.send(&id, &body, now_ms()))
            .await?;
        let seq = entry.seq;
        let conn = lock(&self.shared.connection).clone();
        let status = match conn {
            Some(conn) if !conn.is_closed() => {
                // Through the outbox: older entries of this conversation
                // still waiting there go first, in order.
                match self
                    .shared
                    .flush_conversation(&conn, &entry.recipient, &identity)
                    .await
                {
                    Ok(()) => SendStatus::Delivered,
                    // Refused (e.g. `AccessDenied`: we are a stranger to
                    // them and their first-contact allowance is used up):
                    // it stays in the outbox and is tried again later.
                    Err(_) => {
                        self.shared
                            .outbox_held
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        SendStatus::Queued
                    }
                }
            }
            _ => SendStatus::Queued,
        };
        Ok(Sent { seq, status })
    }

    /// A page of history with `contact`, newest first: at most `limit`
    /// messages older than `before` (a seq), or the newest when `None`.
    pub async fn history(
        &self,
        contact: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<HistoryItem>> {
        let contact = self.resolve(contact).await?;
        self.shared
            .with_store(move |s| {
                let page = s.history(&contact.id, before, limit)?;
                Ok(page
                    .entries
                    .into_iter()
                    .map(|e| match e.message {
                        Ok(m) => HistoryItem {
                            seq: e.seq,
                            outgoing: m.direction == Direction::Outgoing,
                            timestamp: m.timestamp,
                            state: Some(m.state),
                            body: Ok(m.body.to_vec()),
                        },
                        Err(err) => HistoryItem {
                            seq: e.seq,
                            outgoing: false,
                            timestamp: 0,
                            state: None,
                            body: Err(err.to_string()),
                        },
                    })
                    .collect())
            })
            .await
    }

    /// The safety number with `contact`; compare it out of band, then
    /// call [`mark_verified`](Self::mark_verified).
    pub async fn safety_number(&self, contact: &str) -> Result<SafetyNumber> {
        let contact = self.resolve(contact).await?;
        let identity = contact
            .identity_key
            .ok_or_else(|| Error::UnknownContact(contact.name.clone()))?;
        Ok(sotto_core::safety_number(
            self.shared.identity.public(),
            &identity,
        ))
    }

    /// Marks the incoming message `seq` of the conversation with `contact`
    /// as read. With [`ClientOptions::read_receipts`] the contact is told
    /// (a read receipt, if the relay is reachable now; read receipts are
    /// best effort). Returns whether the state changed.
    pub async fn mark_read(&self, contact: &str, seq: u64) -> Result<bool> {
        let contact = self.resolve(contact).await?;
        let id = contact.id.clone();
        let envelope = self
            .shared
            .with_store(move |s| {
                let Some(message) = s.message(&id, seq)? else {
                    return Err(sotto_store::Error::UnknownMessage(seq));
                };
                if message.direction != Direction::Incoming || message.state == DeliveryState::Read
                {
                    return Ok(None);
                }
                s.set_delivery_state(&id, seq, DeliveryState::Read)?;
                Ok(Some(message.envelope_id))
            })
            .await?;
        let Some(envelope) = envelope else {
            return Ok(false);
        };
        if self.shared.options.read_receipts
            && let Some(identity) = contact.identity_key
            && let Ok(conn) = self.connection()
        {
            // Best effort: a lost read receipt only leaves the sender's
            // mark at Delivered.
            let _ = self
                .shared
                .send_receipt(&conn, &identity, payload::ReceiptKind::Read, &[envelope])
                .await;
        }
        Ok(true)
    }

    /// Records that the safety number with `contact` was compared.
    pub async fn mark_verified(&self, contact: &str) -> Result<()> {
        let contact = self.resolve(contact).await?;
        self.shared
            .with_store(move |s| s.set_contact_verified(&contact.id, true))
            .await
    }

    /// True once the safety number with `contact` was marked verified.
    pub async fn is_verified(&self, contact: &str) -> Result<bool> {
        Ok(self.resolve(contact).await?.verified)
    }

    async fn resolve(&self, contact: &str) -> Result<Contact> {
        let wanted = contact.trim().to_owned();
        self.shared
            .with_store_result(move |s| {
                if let Ok(address) = wanted.parse::<Address>() {
                    return Ok(s
                        .contact(&address.to_string())?
                        .ok_or(Error::UnknownContact(wanted)));
                }
                let mut unreadable = None;
                let mut matches: Vec<Contact> = Vec::new();
                for c in s.contacts()? {
                    match c {
                        Ok(c) if c.name == wanted => matches.push(c),
                        Ok(_) => {}
                        Err(e) => {
                            unreadable.get_or_insert(e);
                        }
                    }
                }
                Ok(match matches.len() {
                    // The one wanted may be in a row that cannot be read:
                    // say so rather than "no such contact".
                    0 => Err(unreadable.map_or(Error::UnknownContact(wanted), Error::Store)),
                    1 => matches
                        .into_iter()
                        .next()
                        .ok_or(Error::UnknownContact(wanted)),
                    _ => Err(Error::AmbiguousContact(wanted)),
                })
            })
            .await
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(h) = lock(&self.supervisor).take() {
            h.abort();
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> sotto_store::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
        .map_err(Error::from)
}

/// What processing one envelope came to.
enum Outcome {
    /// Stored; a delivery receipt is owed to the sender.
    Stored(IncomingMessage, Owed),
    /// Stored before; for a message, the receipt is owed again (the first
    /// may have been lost: that is why the sender sent it again).
    Duplicate(Option<Owed>),
    /// An authenticated receipt from a contact.
    Receipt {
        contact: String,
        kind: payload::ReceiptKind,
        ids: Vec<EnvelopeId>,
    },
    /// Not authenticated or not readable: acknowledge, count, say nothing
    /// to anyone.
    Dropped(DropReason),
    /// Will never decrypt: acknowledge and report; with `notify`, ask the
    /// sender (identity, digest of the failed ciphertext) to resend.
    Undecryptable {
        from: Option<String>,
        reason: String,
        notify: Option<(IdentityKey, CiphertextDigest)>,
    },
    /// An authenticated decryption-error notice from a known contact.
    Notice {
        contact: String,
        sender: IdentityKey,
        failed: CiphertextDigest,
    },
    /// A local failure (disk, lock): leave it on the relay for later.
    Retry(Error),
}

/// A delivery receipt owed: to whom, for which envelope.
type Owed = (IdentityKey, EnvelopeId);

/// The delivery receipts owed, by sender.
type OwedReceipts = std::collections::HashMap<[u8; 32], (IdentityKey, Vec<EnvelopeId>)>;

/// How an envelope ended, once acknowledged.
enum Settled {
    Stored(IncomingMessage),
    Nothing,
    Dropped(DropReason),
    Undecryptable(String),
}

/// Notices sent per contact within [`NOTICE_WINDOW`], at most.
const MAX_NOTICES_PER_WINDOW: usize = 10;
const NOTICE_WINDOW: Duration = Duration::from_secs(60);
/// Failed envelope ids remembered so that each is reported once.
const NOTICED_IDS_REMEMBERED: usize = 1024;

/// Bounds the decryption-error notices this client sends, so that no
/// sender (or attacker) can make it flood anyone.
#[derive(Default)]
struct NoticeLimiter {
    recent: std::collections::HashMap<[u8; 32], std::collections::VecDeque<std::time::Instant>>,
    noticed: std::collections::VecDeque<CiphertextDigest>,
}

impl NoticeLimiter {
    fn allow(&mut self, sender: &IdentityKey, failed: &CiphertextDigest) -> bool {
        if self.noticed.contains(failed) {
            return false;
        }
        let now = std::time::Instant::now();
        let times = self.recent.entry(*sender.as_bytes()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) > NOTICE_WINDOW)
        {
            times.pop_front();
        }
        if times.len() >= MAX_NOTICES_PER_WINDOW {
            return false;
        }
        times.push_back(now);
        if self.noticed.len() >= NOTICED_IDS_REMEMBERED {
            self.noticed.pop_front();
        }
        self.noticed.push_back(*failed);
        true
    }
}

impl Shared {
    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> sotto_store::Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.store.clone();
        blocking(move || f(&mut lock(&store))).await
    }

    async fn with_store_result<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> sotto_store::Result<Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.with_store(f).await?
    }

    fn emit(&self, event: ClientEvent) {
        // No subscriber is fine: everything is in the store.
        let _ = self.events.send(event);
    }

    fn set_connection(&self, conn: Option<Arc<RelayClient>>) {
        *lock(&self.connection) = conn;
    }

    async fn open_connection(&self, relay_addr: &str) -> Result<Arc<RelayClient>> {
        let conn = crate::connection::connect(relay_addr, &self.options, &self.profile_dir).await?;
        conn.authenticate(&self.identity).await?;
        Ok(Arc::new(conn))
    }

    /// The prekey schedule, on every connection and hourly: rotates the
    /// signed prekey when due and publishes the current one (a no-op for
    /// the relay when it did not change; after a rotation, or an upload
    /// that failed before, it brings the relay up to date), prunes retired
    /// one-time prekeys, and tops the relay's one-time stock up to the
    /// target from the count the relay reports. After a rotation the
    /// one-time stock is replaced too, so keys handed out to senders who
    /// never wrote are retired and eventually leave the store. Replaced
    /// keys stay in the store for first messages in flight.
    async fn maintain_prekeys(&self, conn: &RelayClient) -> Result<()> {
        let publishing = self.publishing.lock().await;
        let policy = self.options.signed_prekeys;
        let (signed, rotated) = self
            .with_store(move |s| {
                let now = now_ms();
                let rotated = s.maintain_signed_prekeys(now, &policy)?.is_some();
                s.prune_one_time_prekeys(now, RETIRED_ONE_TIME_PREKEY_GRACE)?;
                Ok((s.signed_prekey()?, rotated))
            })
            .await?;
        let count = if rotated {
            self.replace_prekeys_locked(conn, &publishing).await?
        } else {
            let stock = conn
                .upload_prekeys(
                    PreKeyUpload::new(Some(&signed), &[])
                        // Only contacts (who got our key in our messages)
                        // write without limit.
                        .with_access_verifier(self.access_key.verifier()),
                )
                .await?;
            self.top_up(conn, stock.remaining, &publishing).await?
        };
        if count > 0 {
            self.emit(ClientEvent::PreKeysPublished { count });
        }
        Ok(())
    }

    /// After (re)connecting: outbox out, mailbox in. Returns false when
    /// the mailbox was not read to the end.
    async fn catch_up(&self, conn: &Arc<RelayClient>) -> bool {
        if let Err(e) = self.maintain_prekeys(conn).await {
            self.emit(ClientEvent::Error(format!("signed prekey: {e}")));
        }
        match self.flush_outbox(conn).await {
            Ok(0) => {}
            Ok(count) => self.emit(ClientEvent::OutboxFlushed { count }),
            Err(e) => self.emit(ClientEvent::Error(format!("outbox: {e}"))),
        }
        if let Err(e) = self.resend_overdue(conn).await {
            self.emit(ClientEvent::Error(format!("resend: {e}")));
        }
        if self.options.auto_receive
            && let Err(e) = self.drain_mailbox(conn).await
        {
            self.emit(ClientEvent::Error(format!("mailbox: {e}")));
            return false;
        }
        true
    }

    /// Seals an outbox entry (with our access key inside) and hands it to
    /// the relay, presenting the recipient's access key if we have it.
    async fn deliver(
        &self,
        conn: &RelayClient,
        recipient: &IdentityKey,
        access: Option<&AccessKey>,
        entry: &OutboxEntry,
    ) -> Result<()> {
        let payload = payload::seal(
            &self.identity,
            recipient,
            &payload::encode(
                entry.id.as_bytes(),
                now_ms(),
                &self.access_key,
                &entry.ciphertext,
            ),
        )?;
        conn.send(
            &MailboxAddress::of(recipient),
            payload::relay_message_id(&entry.ciphertext),
            access,
            &payload,
        )
        .await?;
        let id = entry.id;
        self.with_store(move |s| s.mark_sent(&id, now_ms())).await?;
        Ok(())
    }

    /// Hands the outbox entries for `recipient` to the relay, oldest
    /// first, stopping at the first failure. Under the processing lock, like
    /// [`flush_outbox`](Self::flush_outbox): a message sent while older ones
    /// still wait in the outbox (relay down, reconnect under way) must not
    /// overtake them, or the recipient would store them out of order.
    async fn flush_conversation(
        &self,
        conn: &RelayClient,
        recipient: &str,
        identity: &IdentityKey,
    ) -> Result<()> {
        let _guard = self.processing.lock().await;
        let recipient = recipient.to_owned();
        let pinned = *identity;
        let (entries, access) = self
            .with_store(move |s| {
                let access = access_key_of(s, &recipient, &pinned)?;
                let entries = s
                    .outbox()?
                    .into_iter()
                    .flatten()
                    .filter(|e| e.recipient == recipient)
                    .collect::<Vec<_>>();
                Ok((entries, access))
            })
            .await?;
        for entry in entries {
            self.deliver(conn, identity, access.as_ref(), &entry)
                .await?;
        }
        Ok(())
    }

    /// Hands the whole outbox to the relay, oldest first per
    /// conversation. A conversation whose entry the relay refuses (e.g.
    /// `AccessDenied`: its first-contact allowance is used up) keeps that
    /// entry and the ones after it for a later try, without holding back
    /// the other conversations; the first refusal is returned after the
    /// rest went out. A lost connection stops everything at once.
    async fn flush_outbox(&self, conn: &RelayClient) -> Result<usize> {
        let _guard = self.processing.lock().await;
        let entries = self.outbox_with_recipients(|s| s.outbox()).await?;
        let (sent, refused) = self.deliver_in_order(conn, entries).await?;
        self.outbox_held
            .store(refused.is_some(), std::sync::atomic::Ordering::Relaxed);
        refused.map_or(Ok(sent), Err)
    }

    /// Delivers `entries` in their order. When the relay refuses one, the
    /// rest of that conversation waits (so nothing overtakes it) and the
    /// other conversations go on. Returns how many went out and the first
    /// refusal; a lost connection is an error at once.
    async fn deliver_in_order(
        &self,
        conn: &RelayClient,
        entries: Vec<(OutboxEntry, IdentityKey, Option<AccessKey>)>,
    ) -> Result<(usize, Option<Error>)> {
        let mut sent = 0;
        let mut held = std::collections::HashSet::new();
        let mut first_refusal = None;
        for (entry, identity, access) in entries {
            if held.contains(&entry.recipient) {
                continue;
            }
            match self.deliver(conn, &identity, access.as_ref(), &entry).await {
                Ok(()) => sent += 1,
                Err(e) if conn.is_closed() => return Err(e),
                Err(e) => {
                    held.insert(entry.recipient.clone());
                    first_refusal.get_or_insert(e);
                }
            }
        }
        Ok((sent, first_refusal))
    }

    /// The outbox entries `list` picks, each with its recipient's pinned
    /// identity and access key; entries whose contact has no pinned
    /// identity are left out (they cannot be sealed).
    async fn outbox_with_recipients(
        &self,
        list: impl FnOnce(&Store) -> sotto_store::Result<Vec<sotto_store::Result<OutboxEntry>>>
        + Send
        + 'static,
    ) -> Result<Vec<(OutboxEntry, IdentityKey, Option<AccessKey>)>> {
        self.with_store(|s| {
            let mut out = Vec::new();
            for entry in list(s)?.into_iter().flatten() {
                let Some(contact) = s.contact(&entry.recipient)? else {
                    continue;
                };
                if let Some(identity) = contact.identity_key {
                    out.push((entry, identity, contact.access_key));
                }
            }
            Ok(out)
        })
        .await
    }

    /// The access key of the contact with identity `identity`, if it gave
    /// us one.
    async fn access_key_for(&self, identity: &IdentityKey) -> Option<AccessKey> {
        let pinned = *identity;
        self.with_store(move |s| access_key_of(s, &contact_id(&pinned), &pinned))
            .await
            .ok()
            .flatten()
    }

    /// Reads the whole mailbox. Every envelope is settled on its own: one
    /// that fails costs only itself, never the ones behind it. An envelope
    /// that could not be stored because of a local failure (disk, lock)
    /// stays on the relay for the next catch-up, and the first such failure
    /// is returned after the rest of the mailbox was processed.
    async fn drain_mailbox(&self, conn: &RelayClient) -> Result<usize> {
        let envelopes = conn.fetch_pending().await?;
        let mut stored = 0;
        let mut left = 0;
        let mut first_error = None;
        for envelope in envelopes {
            match self.process(conn, envelope).await {
                Ok(true) => stored += 1,
                Ok(false) => {}
                // Without a connection nothing more can be acknowledged:
                // the rest stays queued and comes again, in order.
                Err(e) if conn.is_closed() => return Err(e),
                Err(e) => {
                    left += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        self.flush_receipts(conn).await;
        match first_error {
            None => Ok(stored),
            Some(error) => Err(Error::ReceiveIncomplete {
                stored,
                left,
                error: Box::new(error),
            }),
        }
    }

    /// Stores one envelope (or recognises it as a duplicate), then
    /// acknowledges it. Returns true when a new message was stored.
    async fn process(&self, conn: &RelayClient, envelope: sotto_relay::Envelope) -> Result<bool> {
        let _guard = self.processing.lock().await;
        let relay_id = envelope.id;
        let outcome = self.store_envelope(envelope.payload).await;
        Ok(matches!(
            self.settle(conn, relay_id, outcome).await?,
            Settled::Stored(_)
        ))
    }

    /// Acknowledges (or not) and reports what storing an envelope came to.
    async fn settle(&self, conn: &RelayClient, relay_id: u64, outcome: Outcome) -> Result<Settled> {
        match outcome {
            Outcome::Stored(..) if self.options.fault == Some(Fault::CrashBeforeAck) => {
                Err(Error::Task("simulated crash before ack".into()))
            }
            Outcome::Stored(message, owed) => {
                // Announced before the ack: if the ack fails, the relay
                // delivers it again as a duplicate, which is not announced.
                self.emit(ClientEvent::Message(message.clone()));
                conn.ack(&[relay_id]).await?;
                self.owe_receipt(owed);
                Ok(Settled::Stored(message))
            }
            Outcome::Duplicate(owed) => {
                conn.ack(&[relay_id]).await?;
                if let Some(owed) = owed {
                    self.owe_receipt(owed);
                }
                Ok(Settled::Nothing)
            }
            Outcome::Receipt { contact, kind, ids } => {
                let id = contact.clone();
                let seqs = self
                    .with_store(move |s| match kind {
                        payload::ReceiptKind::Delivered => s.mark_delivered(&id, &ids),
                        payload::ReceiptKind::Read => s.mark_read_by_contact(&id, &ids),
                    })
                    .await;
                match seqs {
                    Ok(seqs) if seqs.is_empty() => {}
                    Ok(seqs) => self.emit(match kind {
                        payload::ReceiptKind::Delivered => ClientEvent::Delivered { contact, seqs },
                        payload::ReceiptKind::Read => ClientEvent::Read { contact, seqs },
                    }),
                    // Not acknowledged: it comes again once the store works.
                    Err(e) => return Err(e),
                }
                conn.ack(&[relay_id]).await?;
                Ok(Settled::Nothing)
            }
            Outcome::Dropped(reason) => {
                conn.ack(&[relay_id]).await?;
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.emit(ClientEvent::Dropped { reason });
                Ok(Settled::Dropped(reason))
            }
            Outcome::Undecryptable {
                from,
                reason,
                notify,
            } => {
                conn.ack(&[relay_id]).await?;
                let resend_requested = match notify {
                    Some((sender, failed)) => self.request_resend(conn, &sender, &failed).await,
                    None => false,
                };
                self.emit(ClientEvent::Undecryptable {
                    from,
                    reason: reason.clone(),
                    resend_requested,
                });
                Ok(Settled::Undecryptable(reason))
            }
            Outcome::Notice {
                contact,
                sender,
                failed,
            } => {
                // Answer first: if the connection drops meanwhile, the
                // notice stays queued and is answered after reconnecting.
                // Any other failure (a contact whose keys cannot start a
                // session, a relay that refuses) is reported and the
                // notice is consumed: it must not hold back the mailbox.
                if let Err(e) = self.answer_notice(conn, contact, sender, failed).await {
                    if conn.is_closed() {
                        return Err(e);
                    }
                    self.emit(ClientEvent::Error(format!("recovery: {e}")));
                }
                conn.ack(&[relay_id]).await?;
                Ok(Settled::Nothing)
            }
            Outcome::Retry(error) => {
                self.emit(ClientEvent::Error(format!("receive: {error}")));
                Err(error)
            }
        }
    }

    /// Sends a decryption-error notice for the ciphertext with digest
    /// `failed` to `sender`, within the rate limit. Returns whether one was
    /// sent.
    async fn request_resend(
        &self,
        conn: &RelayClient,
        sender: &IdentityKey,
        failed: &CiphertextDigest,
    ) -> bool {
        if !lock(&self.notices).allow(sender, failed) {
            return false;
        }
        let Ok(notice_id) = MessageId::random() else {
            return false;
        };
        let notice = payload::encode_notice(&notice_id.0, now_ms(), failed);
        let Ok(payload) = payload::seal(&self.identity, sender, &notice) else {
            return false;
        };
        let access = self.access_key_for(sender).await;
        conn.send(
            &MailboxAddress::of(sender),
            notice_id,
            access.as_ref(),
            &payload,
        )
        .await
        .is_ok()
    }

    /// Notes a delivery receipt to send with the next batch.
    fn owe_receipt(&self, (sender, id): Owed) {
        lock(&self.receipts)
            .entry(*sender.as_bytes())
            .or_insert_with(|| (sender, Vec::new()))
            .1
            .push(id);
    }

    /// Sends the delivery receipts owed, one envelope per sender (split at
    /// [`payload::MAX_RECEIPT_IDS`]). What cannot be sent now stays owed
    /// for the next try; a receipt lost for good only means the sender
    /// sends its message again, which is stored once and confirmed again.
    async fn flush_receipts(&self, conn: &RelayClient) {
        let owed = std::mem::take(&mut *lock(&self.receipts));
        let mut failed = Vec::new();
        for (_, (sender, ids)) in owed {
            for chunk in ids.chunks(payload::MAX_RECEIPT_IDS) {
                if self
                    .send_receipt(conn, &sender, payload::ReceiptKind::Delivered, chunk)
                    .await
                    .is_err()
                {
                    failed.push((sender, chunk.to_vec()));
                }
            }
        }
        for (sender, ids) in failed {
            for id in ids {
                self.owe_receipt((sender, id));
            }
        }
    }

    async fn send_receipt(
        &self,
        conn: &RelayClient,
        to: &IdentityKey,
        kind: payload::ReceiptKind,
        ids: &[EnvelopeId],
    ) -> Result<()> {
        let receipt_id = MessageId::random().map_err(|_| Error::Task("no randomness".into()))?;
        let receipt = payload::encode_receipt(&receipt_id.0, now_ms(), kind, ids);
        let sealed = payload::seal(&self.identity, to, &receipt)?;
        let access = self.access_key_for(to).await;
        conn.send(
            &MailboxAddress::of(to),
            receipt_id,
            access.as_ref(),
            &sealed,
        )
        .await?;
        Ok(())
    }

    /// Sends again, under the same envelope id and ciphertext, every
    /// message the relay accepted whose delivery receipt is overdue.
    /// Returns how many went out.
    async fn resend_overdue(&self, conn: &RelayClient) -> Result<usize> {
        let _guard = self.processing.lock().await;
        let policy = self.options.resend;
        let entries = self
            .outbox_with_recipients(move |s| s.overdue(now_ms(), &policy))
            .await?;
        // A refused resend stays overdue and is tried at the next check.
        let (sent, refused) = self.deliver_in_order(conn, entries).await?;
        refused.map_or(Ok(sent), Err)
    }

    /// A contact could not decrypt our ciphertext with digest `failed`:
    /// reset the session and/or resend it, as the store's recovery rules
    /// decide. A digest that names none of our recent ciphertexts does
    /// nothing.
    async fn answer_notice(
        &self,
        conn: &RelayClient,
        contact: String,
        sender: IdentityKey,
        failed: CiphertextDigest,
    ) -> Result<()> {
        let plan = {
            let contact = contact.clone();
            self.with_store(move |s| s.plan_recovery(&contact, &failed))
                .await?
        };
        let bundle = match plan {
            Recovery::ResetAndResend { .. } => {
                let bundle = conn.fetch_bundle(&MailboxAddress::of(&sender)).await?;
                if bundle.identity_key != sender {
                    return Err(Error::BundleMismatch);
                }
                Some(bundle)
            }
            _ => None,
        };
        let session_reset = bundle.is_some();
        let entry = {
            let contact = contact.clone();
            self.with_store(move |s| s.recover(&contact, &failed, bundle.as_ref()))
                .await?
        };
        let seq = entry.as_ref().map(|e| e.seq);
        if let Some(entry) = entry {
            // If the relay refuses now, the entry waits in the outbox.
            let access = self.access_key_for(&sender).await;
            if self
                .deliver(conn, &sender, access.as_ref(), &entry)
                .await
                .is_err()
            {
                self.outbox_held
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.emit(ClientEvent::PeerCouldNotDecrypt {
            contact,
            seq,
            session_reset: session_reset && seq.is_some(),
        });
        Ok(())
    }

    /// Opens, authenticates and stores one envelope. The receive rules:
    ///
    /// 1. The sealed layer must open and authenticate its sender, and the
    ///    payload must parse; otherwise the envelope is dropped and nobody
    ///    is told (a relay can make such envelopes; answering them would
    ///    let it steer us).
    /// 2. A decryption-error notice counts only from a contact whose
    ///    identity is pinned to the authenticated sender.
    /// 3. A message from an unknown sender creates a nameless contact; if
    ///    it does not decrypt, the contact is removed again.
    /// 4. A message that does not decrypt asks its sender to resend only
    ///    when that can help and cannot be provoked by a relay: not for a
    ///    replayed chain index (`Duplicate`), not for a gap beyond the
    ///    protocol's limit (`TooManySkipped`, which a relay withholding
    ///    messages can cause), and not for a message older (by the
    ///    sender's clock) than one already decrypted from that sender —
    ///    then the session evidently works and the message is merely late.
    async fn store_envelope(&self, payload_bytes: Vec<u8>) -> Outcome {
        let identity = self.identity.clone();
        let result = self
            .with_store(move |s| {
                let opened = match payload::unseal(&identity, &payload_bytes) {
                    Ok(opened) => opened,
                    Err(payload::PayloadError::Sealed(sotto_core::Error::UnsupportedVersion(
                        _,
                    ))) => {
                        return Ok(Outcome::Dropped(DropReason::UnsupportedVersion));
                    }
                    Err(_) => return Ok(Outcome::Dropped(DropReason::Unauthenticated)),
                };
                let payload = match payload::decode(&opened.contents) {
                    Ok(p) => p,
                    Err(payload::PayloadError::UnsupportedVersion(_)) => {
                        return Ok(Outcome::Dropped(DropReason::UnsupportedVersion));
                    }
                    Err(_) => return Ok(Outcome::Dropped(DropReason::Malformed)),
                };
                let sender = opened.sender;
                let id = contact_id(&sender);
                let contact = s.contact(&id)?;
                if payload.kind == payload::KIND_RECEIPT {
                    let known = contact
                        .as_ref()
                        .is_some_and(|c| c.identity_key == Some(sender));
                    return Ok(match (known, payload.receipt()) {
                        (true, Some((kind, ids))) => Outcome::Receipt {
                            contact: id,
                            kind,
                            ids,
                        },
                        (true, None) => Outcome::Dropped(DropReason::Malformed),
                        (false, _) => Outcome::Dropped(DropReason::NotAContact),
                    });
                }
                if payload.kind == payload::KIND_DECRYPTION_ERROR {
                    let known = contact
                        .as_ref()
                        .is_some_and(|c| c.identity_key == Some(sender));
                    return Ok(match (known, payload.notice_digest()) {
                        (true, Some(failed)) => Outcome::Notice {
                            contact: id,
                            sender,
                            failed,
                        },
                        (true, None) => Outcome::Dropped(DropReason::Malformed),
                        (false, _) => Outcome::Undecryptable {
                            from: Some(id),
                            reason: "decryption-error notice from someone who is not a contact"
                                .into(),
                            notify: None,
                        },
                    });
                }
                // A message: the sender's access key, then the sotto-core
                // message.
                let Some((access_key, ciphertext)) = payload.message() else {
                    return Ok(Outcome::Dropped(DropReason::Malformed));
                };
                // A first message from someone not yet in the contacts:
                // keep it under their address until the user names them.
                let (created, name) = match contact {
                    Some(c) => (false, c.name),
                    None => {
                        s.add_contact(&id, "", Some(&sender))?;
                        (true, String::new())
                    }
                };
                let envelope = sotto_store::Envelope {
                    id: sotto_store::EnvelopeId(payload.message_id),
                    sender: &id,
                    ciphertext,
                    sent_at: payload.sent_at,
                    received_at: now_ms(),
                };
                let result = s.receive(&envelope);
                if result.is_err() && created {
                    let _ = s.delete_contact(&id);
                }
                // A message that decrypted, from the identity pinned for
                // this contact (the sealed layer authenticated it): from
                // now on we present its access key when we write to it.
                // Best effort: the message is stored already, and every
                // later message carries the key again.
                if matches!(result, Ok(Received::Stored(_) | Received::Duplicate)) {
                    let _ = s.set_contact_access_key(&id, &sender, &access_key);
                }
                Ok(match result {
                    Ok(Received::Stored(m)) => Outcome::Stored(
                        IncomingMessage {
                            contact: id.clone(),
                            name,
                            seq: m.seq,
                            body: m.body.to_vec(),
                            received_at: m.timestamp,
                        },
                        (sender, envelope.id),
                    ),
                    Ok(Received::Duplicate) => Outcome::Duplicate(Some((sender, envelope.id))),
                    Err(sotto_store::Error::Protocol(e)) => {
                        let provocable = matches!(
                            e,
                            sotto_core::Error::Duplicate(_)
                                | sotto_core::Error::TooManySkipped { .. }
                        );
                        let late = !created && payload.sent_at < s.newest_sent_at(&id)?;
                        Outcome::Undecryptable {
                            from: Some(id.clone()),
                            reason: e.to_string(),
                            notify: (!created && !provocable && !late)
                                .then(|| (sender, CiphertextDigest::of(ciphertext))),
                        }
                    }
                    // A replayed first message: nothing to resend.
                    Err(e @ sotto_store::Error::ReplayedFirstMessage) => Outcome::Undecryptable {
                        from: Some(id.clone()),
                        reason: e.to_string(),
                        notify: None,
                    },
                    Err(sotto_store::Error::IdentityMismatch) => Outcome::Undecryptable {
                        from: Some(id.clone()),
                        reason: "sender's identity key changed".into(),
                        notify: None,
                    },
                    Err(e) => Outcome::Retry(Error::Store(e)),
                    Ok(_) => Outcome::Retry(Error::Task("unrecognised receive outcome".into())),
                })
            })
            .await;
        result.unwrap_or_else(Outcome::Retry)
    }

    /// Tops the relay's one-time prekey stock up to the target with fresh
    /// keys, going by the relay's count (the store's own count includes
    /// keys the relay already handed out); returns how many were published.
    async fn replenish(&self, conn: &RelayClient) -> Result<usize> {
        let publishing = self.publishing.lock().await;
        // Asked under the lock, not taken from the push: a pushed count
        // may predate an upload made since.
        let stock = conn.prekey_count().await?;
        self.top_up(conn, stock.remaining, &publishing).await
    }

    /// Publishes `target - remaining` fresh one-time prekeys, where
    /// `remaining` is the relay's stock as it just reported it.
    async fn top_up(
        &self,
        conn: &RelayClient,
        remaining: u32,
        _publishing: &tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<usize> {
        let remaining = usize::try_from(remaining).unwrap_or(usize::MAX);
        let missing = self.options.one_time_prekeys.saturating_sub(remaining);
        if missing == 0 {
            return Ok(0);
        }
        let fresh = self
            .with_store(move |s| s.fresh_one_time_prekeys(missing, now_ms()))
            .await?;
        conn.upload_prekeys(PreKeyUpload::from_public(None, one_time_public(&fresh)))
            .await?;
        Ok(fresh.len())
    }

    /// Publishes the current signed prekey and a full set of fresh one-time
    /// prekeys that replaces the relay's stock; once the relay confirmed
    /// it, every key published before is retired (kept for first messages
    /// in flight, then pruned). Returns how many one-time prekeys were
    /// published.
    async fn replace_prekeys(&self, conn: &RelayClient) -> Result<usize> {
        let publishing = self.publishing.lock().await;
        self.replace_prekeys_locked(conn, &publishing).await
    }

    async fn replace_prekeys_locked(
        &self,
        conn: &RelayClient,
        _publishing: &tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<usize> {
        let count = self.options.one_time_prekeys;
        let (signed, fresh) = self
            .with_store(move |s| {
                Ok((
                    s.signed_prekey()?,
                    s.fresh_one_time_prekeys(count, now_ms())?,
                ))
            })
            .await?;
        // Ids grow: every key below the first fresh one was published
        // before this upload.
        let first_fresh = fresh.first().map_or(OneTimePreKeyId::MAX, |(id, _)| *id);
        conn.upload_prekeys(
            PreKeyUpload::from_public(
                Some(SignedPreKeyPublic::from(&signed)),
                one_time_public(&fresh),
            )
            .with_replace_one_time_prekeys(true)
            .with_access_verifier(self.access_key.verifier()),
        )
        .await?;
        // Only now are the older keys out of the relay's stock. If the
        // upload failed they stay live, as they may still be handed out.
        self.with_store(move |s| {
            let now = now_ms();
            s.retire_published_one_time_prekeys(first_fresh, now)?;
            s.prune_one_time_prekeys(now, RETIRED_ONE_TIME_PREKEY_GRACE)
        })
        .await?;
        Ok(fresh.len())
    }
}

/// The public halves of fresh one-time prekeys, for an upload.
fn one_time_public(fresh: &[(OneTimePreKeyId, PreKeyPublic)]) -> Vec<OneTimePreKeyPublic> {
    fresh
        .iter()
        .copied()
        .map(OneTimePreKeyPublic::from)
        .collect()
}

/// A connection, its pushes, and whether its catch-up read the mailbox to
/// the end.
type Connected = (
    Arc<RelayClient>,
    Option<tokio::sync::mpsc::Receiver<RelayEvent>>,
    bool,
);

/// How often a connected client checks the signed prekey schedule.
const PREKEY_SCHEDULE_PERIOD: Duration = Duration::from_secs(3600);

/// How often a connected client looks for overdue receipts: half the first
/// wait, between 10 ms and a minute.
fn resend_check_period(policy: &ResendPolicy) -> Duration {
    (policy.first / 2).clamp(Duration::from_millis(10), Duration::from_secs(60))
}

/// Keeps a connection: handles pushes while it lives, reconnects with
/// exponential backoff when it ends.
async fn supervise(shared: Arc<Shared>, relay_addr: String, mut current: Option<Connected>) {
    let mut backoff = shared.options.reconnect_min;
    loop {
        let (conn, events, mut in_order) = match current.take() {
            Some(c) => c,
            None => match shared.open_connection(&relay_addr).await {
                Ok(conn) => {
                    backoff = shared.options.reconnect_min;
                    let events = conn.take_events();
                    shared.set_connection(Some(conn.clone()));
                    let caught_up = shared.catch_up(&conn).await;
                    (conn, events, caught_up)
                }
                Err(e) => {
                    shared.emit(ClientEvent::Disconnected {
                        reason: e.to_string(),
                    });
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(shared.options.reconnect_max);
                    continue;
                }
            },
        };
        shared.emit(ClientEvent::Connected);
        let mut schedule = tokio::time::interval_at(
            tokio::time::Instant::now() + PREKEY_SCHEDULE_PERIOD,
            PREKEY_SCHEDULE_PERIOD,
        );
        let resend_period = resend_check_period(&shared.options.resend);
        let mut resends =
            tokio::time::interval_at(tokio::time::Instant::now() + resend_period, resend_period);
        let reason = match events {
            Some(mut events) => loop {
                let event = tokio::select! {
                    event = events.recv() => event,
                    _ = schedule.tick() => {
                        if let Err(e) = shared.maintain_prekeys(&conn).await {
                            shared.emit(ClientEvent::Error(format!("signed prekey: {e}")));
                        }
                        continue;
                    }
                    _ = resends.tick() => {
                        // Entries the relay refused before (e.g. a first
                        // contact over the recipient's allowance) are tried
                        // again, oldest first, before anything is resent.
                        if shared.outbox_held.load(std::sync::atomic::Ordering::Relaxed) {
                            match shared.flush_outbox(&conn).await {
                                Ok(0) => {}
                                Ok(count) => shared.emit(ClientEvent::OutboxFlushed { count }),
                                Err(e) => shared.emit(ClientEvent::Error(format!("outbox: {e}"))),
                            }
                        }
                        if let Err(e) = shared.resend_overdue(&conn).await {
                            shared.emit(ClientEvent::Error(format!("resend: {e}")));
                        }
                        continue;
                    }
                };
                match event {
                    Some(RelayEvent::Envelope(envelope)) => {
                        if !shared.options.auto_receive {
                            continue;
                        }
                        // A pushed envelope is newer than any left in the
                        // mailbox by a failed catch-up or receive: read the
                        // mailbox first, or it would be stored out of order.
                        if !in_order {
                            match shared.drain_mailbox(&conn).await {
                                Ok(_) => in_order = true,
                                Err(e) => {
                                    shared.emit(ClientEvent::Error(format!("mailbox: {e}")));
                                    // Connection gone: it stays queued, and
                                    // comes in order after reconnecting.
                                    // Otherwise something in the mailbox
                                    // keeps failing; do not hold back
                                    // everything newer because of it.
                                    if conn.is_closed() {
                                        continue;
                                    }
                                }
                            }
                        }
                        if let Err(e) = shared.process(&conn, envelope).await {
                            in_order = false;
                            shared.emit(ClientEvent::Error(format!("receive: {e}")));
                        }
                        // Receipts go out in one batch per burst of pushes.
                        if events.is_empty() {
                            shared.flush_receipts(&conn).await;
                        }
                    }
                    Some(RelayEvent::PreKeysLow(_)) => match shared.replenish(&conn).await {
                        Ok(count) if count > 0 => {
                            shared.emit(ClientEvent::PreKeysPublished { count })
                        }
                        Ok(_) => {}
                        Err(e) => shared.emit(ClientEvent::Error(format!("prekeys: {e}"))),
                    },
                    Some(RelayEvent::Closed { reason }) => {
                        break reason.map_or_else(
                            || "closed".to_owned(),
                            |r| format!("{:?}: {}", r.code, r.message),
                        );
                    }
                    Some(_) => {}
                    None => break "closed".to_owned(),
                }
            },
            None => "no event channel".to_owned(),
        };
        shared.set_connection(None);
        shared.emit(ClientEvent::Disconnected { reason });
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(shared.options.reconnect_max);
    }
}
