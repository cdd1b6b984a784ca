//! The state every clone of a client shares, and the small helpers the
//! other parts use to reach the store and announce events.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sotto_core::{AccessKey, DeviceId, IdentityKey, IdentityKeyPair};
use sotto_relay::RelayClient;
use sotto_store::Store;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::receipts::OwedReceipts;
use super::recovery::NoticeLimiter;
use super::types::{ClientEvent, ClientOptions, Step};
use crate::address::Address;
use crate::error::{Error, Result};

pub(crate) struct Shared {
    pub(crate) store: Arc<Mutex<Store>>,
    /// This device's identity key pair (its device key; the account key on
    /// the account's primary device).
    pub(crate) identity: IdentityKeyPair,
    /// The account key this device speaks for (docs/devices.md).
    pub(crate) account: IdentityKey,
    /// This device's id in the account's device list.
    pub(crate) device_id: DeviceId,
    /// The account's unidentified-access key (derived from the account
    /// key on the primary device, given to linked devices when they are
    /// linked): its verifier is published with the signed prekey, the key
    /// itself goes into every message we send.
    pub(crate) access_key: AccessKey,
    /// The account's address (short form: no versions).
    pub(crate) address: Address,
    /// Whether this profile publishes protocol v2 bundles (it made a
    /// last-resort KEM prekey for a relay that serves them): its address
    /// then says it speaks versions 1 and 2.
    pub(crate) speaks_v2: AtomicBool,
    pub(crate) options: ClientOptions,
    pub(crate) profile_dir: PathBuf,
    pub(crate) events: broadcast::Sender<ClientEvent>,
    pub(crate) connection: Mutex<Option<Arc<RelayClient>>>,
    pub(crate) supervisor: Mutex<Option<JoinHandle<()>>>,
    /// The task that deletes disappearing messages whose time ran out.
    pub(crate) sweeper: Mutex<Option<JoinHandle<()>>>,
    /// The task that moves files up and down, and what wakes it.
    pub(crate) files_task: Mutex<Option<JoinHandle<()>>>,
    pub(crate) files: Arc<tokio::sync::Notify>,
    /// Files move one at a time.
    pub(crate) moving_files: tokio::sync::Mutex<()>,
    /// Serializes envelope processing and outbox flushing.
    pub(crate) processing: tokio::sync::Mutex<()>,
    /// Serializes prekey uploads: a stock count and the top-up it leads to,
    /// or a replacement and the retirement after it, never interleave.
    pub(crate) publishing: tokio::sync::Mutex<()>,
    pub(crate) notices: Mutex<NoticeLimiter>,
    /// Envelopes dropped as [`ClientEvent::Dropped`].
    pub(crate) dropped: AtomicU64,
    /// Delivery receipts owed, per sender, sent in batches.
    pub(crate) receipts: Mutex<OwedReceipts>,
    /// Outbox entries were left for later because the relay refused them
    /// for a reason that can pass: the background retries the outbox.
    pub(crate) outbox_held: AtomicBool,
    /// The largest frame the relay takes, as it last announced it (0 when
    /// unknown): a message that cannot fit is refused at `send`.
    pub(crate) max_frame: AtomicU64,
    /// When each account's device list was last fetched from the relay.
    pub(crate) lists_fetched: Mutex<HashMap<[u8; 32], Instant>>,
    /// A link in progress, either side.
    pub(crate) link: Mutex<super::link::LinkState>,
    /// Chunks of the outgoing history transfer wait after the relay refused
    /// one for now: the background tries again with the outbox's backoff.
    pub(crate) history_held: AtomicBool,
    /// Wakes the background when something starts waiting to be retried.
    pub(crate) held: tokio::sync::Notify,
    /// Each group's members and name, parsed once per state.
    pub(crate) group_members: super::groups::cache::MemberCache,
    /// The static part of sealing to each device a group message went to
    /// (one Diffie-Hellman operation saved per envelope), at most
    /// [`MAX_STATIC_SECRETS`]; wiped on drop.
    pub(crate) static_secrets: Mutex<HashMap<[u8; 32], Arc<sotto_core::sealed::StaticSecret>>>,
}

/// Most static sealing secrets kept ([`Shared::static_secrets`]).
pub(crate) const MAX_STATIC_SECRETS: usize = 4096;

impl Shared {
    /// This profile's address, saying it speaks versions 1 and 2 once it
    /// publishes v2 bundles ([`Shared::speaks_v2`]).
    pub(crate) fn own_address(&self) -> Address {
        if self.speaks_v2.load(Ordering::Relaxed) {
            self.address
                .with_versions(sotto_core::ProtocolVersions::V1_AND_V2)
        } else {
            self.address
        }
    }

    /// The static part of sealing from this device to `device`, computed
    /// once and kept.
    pub(crate) fn static_secret(
        &self,
        device: &IdentityKey,
    ) -> Result<Arc<sotto_core::sealed::StaticSecret>> {
        if let Some(secret) = lock(&self.static_secrets).get(device.as_bytes()) {
            return Ok(secret.clone());
        }
        let secret = Arc::new(
            sotto_core::sealed::StaticSecret::new(&self.identity, device)
                .map_err(|e| Error::Payload(crate::payload::PayloadError::Sealed(e)))?,
        );
        let mut secrets = lock(&self.static_secrets);
        if secrets.len() >= MAX_STATIC_SECRETS {
            secrets.clear();
        }
        secrets.insert(*device.as_bytes(), secret.clone());
        Ok(secret)
    }
}

impl Shared {
    pub(crate) async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> sotto_store::Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.store.clone();
        blocking(move || f(&mut lock(&store))).await
    }

    pub(crate) async fn with_store_result<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> sotto_store::Result<Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.with_store(f).await?
    }

    pub(crate) fn emit(&self, event: ClientEvent) {
        // No subscriber is fine: everything is in the store.
        let _ = self.events.send(event);
    }

    /// Reports a background step that failed (it is retried later).
    pub(crate) fn report(&self, step: Step, error: Error) {
        tracing::warn!(%step, error = %error, "background step failed");
        self.emit(ClientEvent::Error {
            step,
            error: Arc::new(error),
        });
    }

    pub(crate) fn set_connection(&self, conn: Option<Arc<RelayClient>>) {
        if let Some(conn) = &conn {
            self.max_frame
                .store(u64::from(conn.welcome().max_frame_size), Ordering::Relaxed);
        }
        *lock(&self.connection) = conn;
    }

    /// The live connection, if any.
    pub(crate) fn live_connection(&self) -> Option<Arc<RelayClient>> {
        lock(&self.connection)
            .as_ref()
            .filter(|c| !c.is_closed())
            .cloned()
    }

    pub(crate) fn hold_outbox(&self, held: bool) {
        self.outbox_held.store(held, Ordering::Relaxed);
        if held {
            self.held.notify_one();
        }
    }

    pub(crate) fn outbox_is_held(&self) -> bool {
        self.outbox_held.load(Ordering::Relaxed)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(h) = lock(&self.supervisor).take() {
            h.abort();
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Store operations are transactions: a panic inside one leaves the
    // file consistent, so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs a store operation on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> sotto_store::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Error::TaskFailed)?
        .map_err(Error::from)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The contact id (printed address) of an identity.
pub(crate) fn contact_id(identity: &IdentityKey) -> String {
    Address::of(identity).to_string()
}

/// The access key contact `id` gave us, if `identity` is the identity
/// pinned for it.
pub(crate) fn access_key_of(
    s: &Store,
    id: &str,
    identity: &IdentityKey,
) -> sotto_store::Result<Option<AccessKey>> {
    Ok(s.contact(id)?
        .filter(|c| c.identity_key.as_ref() == Some(identity))
        .and_then(|c| c.access_key))
}
