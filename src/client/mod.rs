//! `Client`: the store, the protocol and a relay connection, put together.
//!
//! Where each part lives:
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`Client`]: opening a profile, connecting, receiving by hand |
//! | `send.rs` | sending: offline-first, refused early when too large |
//! | `contacts.rs` | contacts, safety numbers, history, read marks |
//! | `devices.rs` | the account's device list (docs/devices.md) |
//! | `identity.rs` | a contact's identity change: announced, accepted or refused |
//! | `disappearing.rs` | disappearing messages: the timer, the countdowns, the deletions |
//! | `attachments.rs` | files: encrypted into the profile, up to the relay and down, resumably |
//! | `types.rs` | options, events, messages, history rows |
//! | `receive.rs` | the receive pipeline: envelope bytes in, typed outcome out, no network |
//! | `mailbox.rs` | receiving over the relay: fetch, pipeline, acknowledge, announce |
//! | `outbox.rs` | committed messages on their way out, and what a refusal means |
//! | `receipts.rs` | delivery and read receipts |
//! | `recovery.rs` | decryption-error notices, resets and resends |
//! | `prekeys.rs` | signed prekey schedule, one-time prekey stock |
//! | `supervisor.rs` | the connection in the background: push, retry, reconnect |
//! | `shared.rs` | state shared by every clone, store access |

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sotto_core::AccessKey;
use sotto_relay::{Envelope, RelayClient};
use sotto_store::Store;
use tokio::sync::broadcast;
use tokio_stream::{Stream, StreamExt, wrappers::BroadcastStream};

mod archive;
mod attachments;
mod contacts;
mod devices;
mod disappearing;
mod groups;
mod identity;
mod link;
mod mailbox;
mod outbox;
mod prekeys;
mod receipts;
mod receive;
mod recovery;
mod send;
mod shared;
mod supervisor;
mod transfer;
mod types;

pub use attachments::{ATTACHMENTS_DIR, Attachment, FileFailure, UploadId, media_type_for};
pub use groups::{GroupChange, GroupHistoryItem, GroupInfo, IncomingGroupMessage, group_id_hex};
pub use link::{JoinedAccount, LinkedDevice};
pub use transfer::HistoryTransfer;
#[cfg(feature = "test-hooks")]
pub use types::Fault;
pub use types::{
    ClientEvent, ClientOptions, Clock, ContactInfo, DisconnectReason, DropReason, Events,
    HistoryItem, IdentityChange, IncomingMessage, SendStatus, Sent, Step, Undecryptable,
    UnreadableRow,
};

use self::mailbox::Settled;
use self::shared::{Shared, blocking, lock};
use crate::address::Address;
use crate::connection::SavedRelay;
use crate::error::{Error, Result};

/// File name of the encrypted store inside a profile directory.
pub const PROFILE_DB: &str = "sotto.db";
/// File name of the remembered relay inside a profile directory: the
/// address on the first line, then `server-id ID`, the id the relay
/// announced at registration, and `max-frame N`, its frame limit.
pub const RELAY_FILE: &str = "relay";

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
            if let Some(h) = lock(&shared.sweeper).take() {
                h.abort();
            }
            if let Some(h) = lock(&shared.files_task).take() {
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
            return Err(Error::NoProfile(dir));
        }
        crate::profile::prepare(&dir)?;
        let pass = zeroize::Zeroizing::new(passphrase.to_vec());
        let store_options = options.store;
        let store = blocking(move || Store::open(&path, &pass, &store_options)).await?;
        Self::from_store(store, dir, options)
    }

    fn from_store(store: Store, profile_dir: PathBuf, options: ClientOptions) -> Result<Self> {
        let identity = store.identity()?;
        let account = store.account_key()?;
        let device_id = store.own_device_id()?;
        let access_key = match store.account_access_key()? {
            Some(key) => key,
            None => AccessKey::derive(&identity).map_err(sotto_store::Error::Protocol)?,
        };
        let address = Address::of(&account);
        let speaks_v2 = store.has_kem_prekeys()?;
        let (events, _) = broadcast::channel(options.event_capacity.max(1));
        let max_frame = SavedRelay::load(&profile_dir)
            .and_then(|saved| saved.max_frame)
            .unwrap_or(0);
        let shared = Arc::new(Shared {
            store: Arc::new(Mutex::new(store)),
            identity,
            account,
            device_id,
            access_key,
            address,
            speaks_v2: AtomicBool::new(speaks_v2),
            options,
            profile_dir,
            events,
            connection: Mutex::new(None),
            supervisor: Mutex::new(None),
            sweeper: Mutex::new(None),
            files_task: Mutex::new(None),
            files: Arc::new(tokio::sync::Notify::new()),
            moving_files: tokio::sync::Mutex::new(()),
            processing: tokio::sync::Mutex::new(()),
            publishing: tokio::sync::Mutex::new(()),
            notices: Mutex::new(Default::default()),
            dropped: AtomicU64::new(0),
            receipts: Mutex::new(Default::default()),
            outbox_held: AtomicBool::new(false),
            max_frame: AtomicU64::new(u64::from(max_frame)),
            lists_fetched: Mutex::new(Default::default()),
            link: Mutex::new(Default::default()),
            history_held: AtomicBool::new(false),
            held: tokio::sync::Notify::new(),
            group_members: Default::default(),
            static_secrets: Mutex::new(std::collections::HashMap::new()),
        });
        // Disappearing messages go on time whether connected or not.
        *lock(&shared.sweeper) = Some(tokio::spawn(disappearing::sweep(Arc::downgrade(&shared))));
        *lock(&shared.files_task) = Some(tokio::spawn(attachments::run(
            Arc::downgrade(&shared),
            shared.files.clone(),
        )));
        Ok(Self {
            _lifetime: Arc::new(Lifetime {
                shared: Arc::downgrade(&shared),
            }),
            shared,
        })
    }

    /// This profile's address, to give to contacts in its
    /// [`shareable`](Address::shareable) form. Once the profile publishes
    /// protocol v2 bundles (after registering with a relay that serves KEM
    /// prekeys) the address says it speaks versions 1 and 2, so that a
    /// contact who adds it from that form refuses a bundle a relay
    /// stripped of its KEM prekey (docs/protocol.md 16.7).
    pub fn address(&self) -> Address {
        self.shared.own_address()
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
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// True while a relay connection is up.
    pub fn is_connected(&self) -> bool {
        self.shared.live_connection().is_some()
    }

    /// Subscribes to events (messages, connection changes). Subscribe
    /// before connecting to see everything from the first fetch on.
    pub fn events(&self) -> Events {
        Events {
            rx: self.shared.events.subscribe(),
        }
    }

    /// The stream of incoming messages, each already committed to history.
    pub fn incoming(&self) -> impl Stream<Item = IncomingMessage> + Send + Unpin + use<> {
        BroadcastStream::new(self.shared.events.subscribe()).filter_map(|e| match e {
            Ok(ClientEvent::Message(m)) => Some(m),
            _ => None,
        })
    }

    /// Connects to the relay at `relay_addr` (`host:port`, `tcp://host:port`
    /// or `tls://host:port`), publishes this profile's signed prekey and a
    /// full set of fresh one-time prekeys that replaces the relay's stock
    /// (so a relay that lost its data is repopulated), and remembers the
    /// relay, the server id it announced and its frame limit for later
    /// sessions.
    ///
    /// No one-time prekey is ever published twice: the keys published
    /// before stay in the store, retired, for first messages already made
    /// with them (until used, or for
    /// [`RETIRED_ONE_TIME_PREKEY_GRACE`](sotto_store::RETIRED_ONE_TIME_PREKEY_GRACE)).
    pub async fn register(&self, relay_addr: &str) -> Result<()> {
        self.connect(relay_addr).await?;
        let conn = self.connection()?;
        self.shared.replace_prekeys(&conn).await?;
        let welcome = conn.welcome();
        crate::connection::remember(
            &self.shared.profile_dir,
            relay_addr,
            &welcome.server_id,
            welcome.max_frame_size,
        )?;
        Ok(())
    }

    /// Connects to the remembered relay (see [`register`](Self::register)).
    pub async fn connect_saved(&self) -> Result<()> {
        let relay = self.saved_relay().ok_or(Error::NoSavedRelay)?;
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
        let (caught_up, sent) = shared.catch_up(&conn).await;
        let handle = tokio::spawn(supervisor::supervise(
            shared,
            addr,
            Some(((conn, events, caught_up), sent)),
        ));
        *lock(&self.shared.supervisor) = Some(handle);
        Ok(())
    }

    /// Keeps a connection to `relay_addr` in the background without
    /// waiting for it: tries at once, then with jittered exponential
    /// backoff until the relay answers, and from then on as
    /// [`connect`](Self::connect) does. For an app that works offline
    /// first: sends are stored and queued meanwhile, and
    /// [`ClientEvent::Connected`] says when the relay is back (with how
    /// many queued messages went out). The address is checked now.
    pub async fn keep_connected(&self, relay_addr: &str) -> Result<()> {
        relay_addr.parse::<crate::RelayAddress>()?;
        self.disconnect().await;
        let handle = tokio::spawn(supervisor::supervise(
            self.shared.clone(),
            relay_addr.to_owned(),
            None,
        ));
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
    pub async fn fetch_envelopes(&self) -> Result<Vec<Envelope>> {
        let conn = self.connection()?;
        Ok(conn.fetch_pending().await?)
    }

    /// Stores one envelope fetched with
    /// [`fetch_envelopes`](Self::fetch_envelopes) (in any order), then
    /// acknowledges it to the relay. Returns the message if it was new;
    /// `None` for a duplicate, a receipt or a notice. An envelope that can
    /// never be stored is acknowledged and reported as an error
    /// ([`Error::Dropped`] or [`Error::Undecryptable`]).
    pub async fn receive_envelope(&self, envelope: Envelope) -> Result<Option<IncomingMessage>> {
        let conn = self.connection()?;
        let _guard = self.shared.processing.lock().await;
        let settled = self.shared.receive_one(&conn, envelope).await;
        self.shared.flush_receipts(&conn).await;
        match settled? {
            Settled::Stored(message) => Ok(Some(*message)),
            Settled::Nothing => Ok(None),
            Settled::Dropped(reason) => Err(Error::Dropped(reason)),
            Settled::Undecryptable(reason) => Err(Error::Undecryptable(reason)),
        }
    }

    /// Hands the outbox to the relay now; returns how many went out.
    /// Entries the relay refuses for good are given up (each raises
    /// [`ClientEvent::SendFailed`]); when the relay refuses one for now,
    /// the rest goes out and the refusal is returned.
    pub async fn flush_outbox(&self) -> Result<usize> {
        let conn = self.connection()?;
        let flushed = self.shared.flush_outbox(&conn).await?;
        match flushed.held {
            Some(error) => Err(error),
            None => Ok(flushed.sent.len()),
        }
    }

    fn connection(&self) -> Result<Arc<RelayClient>> {
        self.shared.live_connection().ok_or(Error::NotConnected)
    }
}
