//! Mailbox storage: the queues of envelopes and the prekey directory.
//!
//! The relay talks to storage only through [`MailboxStore`]. Three backends
//! ship: [`SqliteStore`] (the default; one file, durable, survives a
//! restart), `RedisStore` (feature `redis`: a Redis or Valkey server that
//! several relay processes share; docs/relay.md §9) and [`MemoryStore`]
//! (tests, throwaway relays). [`open_store`] opens one from a spec such as
//! `sqlite:relay.db`, `memory:` or `redis://127.0.0.1:6379`.
//!
//! # Contract for backends
//!
//! The trait is synchronous; the server calls it from
//! `tokio::task::spawn_blocking`, so a backend may block on disk or network.
//! The exceptions are the calls the server makes for every message,
//! `enqueue`, `ack` and `fetch`, which it makes through
//! [`enqueue_async`](MailboxStore::enqueue_async),
//! [`ack_async`](MailboxStore::ack_async) and
//! [`fetch_async`](MailboxStore::fetch_async): by default the same call on
//! the blocking pool, overridden by a backend that can take the call
//! without a thread waiting for it ([`SqliteStore`] hands writes to its
//! writer thread, reads to its read thread). Either way a write is
//! answered once it is durable.
//! A backend must not assume it is the only process using the data: every method is
//! one atomic operation against shared state (the SQLite backend runs the
//! writes of concurrent calls in one `BEGIN IMMEDIATE` transaction, each in
//! a savepoint of its own, and answers each after the commit; several relay
//! processes can share a database file; the Redis backend runs each call
//! as one script). In particular:
//!
//! - [`take_bundle`](MailboxStore::take_bundle) removes the one-time prekey
//!   it returns in the same atomic step, so no key is handed out twice, even
//!   to concurrent callers in different processes. For an owner whose
//!   signed prekey is signed for protocol v2 only it returns nothing and
//!   takes nothing: no v1 bundle of that prekey verifies.
//! - [`enqueue`](MailboxStore::enqueue) checks that the recipient is
//!   registered (has a published signed prekey), that the sender may queue
//!   for it ([`Access`]: the access key against the published verifier),
//!   the mailbox limits and the store-wide byte limit, and inserts, all in
//!   the same atomic step; it returns only once the envelope is durable
//!   (for a durable backend). A refused envelope changes nothing.
//! - [`enqueue_many`](MailboxStore::enqueue_many) does the same for every
//!   recipient of a `SendMulti`, in order, in one atomic step: each
//!   recipient is admitted or refused as by `enqueue`, independently of
//!   the others, and what is stored for one is durable together with the
//!   rest.
//! - Every queued envelope carries its expiry, a whole hour
//!   ([`QueuePolicy::expiry_hour`]). From that hour on, `fetch` no longer
//!   returns it, and [`sweep_expired`](MailboxStore::sweep_expired) deletes
//!   it and takes it off the usage counters. Until swept it still counts
//!   against the limits. Storage methods never read a clock: the caller
//!   passes the current time.
//! - [`publish_device_list`](MailboxStore::publish_device_list) stores a
//!   newer device list and removes the mailboxes of the devices it unlinks
//!   in the same atomic step: a refused or failed publish removes nothing.
//! - Envelope ids are positive, unique, never reused, and become visible in
//!   a mailbox in increasing order: once a reader has seen id `n`, no
//!   envelope with a smaller id appears later in that mailbox. The server
//!   relies on this to push only envelopes newer than what a client was told
//!   to fetch.
//!
//! Live push: a relay process wakes the connections of a mailbox's owner
//! when it stores an envelope there. A store that several processes share
//! also tells each of them about the others' writes
//! ([`MailboxStore::change_feed`]; the Redis store does, over pub/sub), so
//! a client gets a message at once whichever relay process it is
//! connected to. Several processes sharing one SQLite file have no such
//! feed: a client there gets what another process stored at its next
//! `Fetch` or login.

mod memory;
#[cfg(feature = "redis")]
mod redis;
mod sqlite;
mod unlinking;

#[cfg(feature = "redis")]
pub(crate) use self::redis::{Change, Feed, FeedListener};
#[cfg(feature = "redis")]
pub use self::redis::{Durability, RedisOptions, RedisStore};
pub use memory::MemoryStore;
pub use sqlite::{SqliteOptions, SqliteStore};

pub use crate::envelope::FetchedPage;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sotto_core::{AccessKey, AccessVerifier, IdentityKey, PreKeyBundle, ProtocolVersions};

use crate::address::MailboxAddress;
use crate::clock::UnixTime;
use crate::envelope::MessageId;
use crate::protocol::{MultiRecipient, PreKeyUpload};

/// Per-mailbox queue limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxLimits {
    /// Most envelopes queued in one mailbox (default 10 000).
    pub max_envelopes: u64,
    /// Most payload bytes queued in one mailbox (default 256 MiB).
    pub max_bytes: u64,
}

impl Default for MailboxLimits {
    fn default() -> Self {
        Self {
            max_envelopes: 10_000,
            max_bytes: 256 << 20,
        }
    }
}

/// How long an envelope stays queued by default: 30 days.
pub const DEFAULT_ENVELOPE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The default limit on the payload bytes queued in the whole store:
/// 16 GiB.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 16 << 30;

/// Everything [`MailboxStore::enqueue`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuePolicy {
    /// Limits of the recipient's mailbox.
    pub mailbox: MailboxLimits,
    /// Most bytes the whole store holds for queued envelopes, over every
    /// mailbox (default [`DEFAULT_MAX_TOTAL_BYTES`]): each envelope's own
    /// bytes, and the shared body of a `SendMulti` once
    /// ([`StoreTotals::bytes`]).
    pub max_total_bytes: u64,
    /// How long an envelope stays queued at least (default
    /// [`DEFAULT_ENVELOPE_TTL`]); see [`expiry_hour`](Self::expiry_hour).
    pub envelope_ttl: Duration,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        Self {
            mailbox: MailboxLimits::default(),
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            envelope_ttl: DEFAULT_ENVELOPE_TTL,
        }
    }
}

impl QueuePolicy {
    /// The expiry stored with an envelope queued at `now`: the hour (since
    /// the epoch) of `now + envelope_ttl`, rounded up. Storing hours, not
    /// seconds, keeps what the store knows about when an envelope arrived
    /// coarse. The envelope is kept at least `envelope_ttl` and less than
    /// one hour longer.
    pub fn expiry_hour(&self, now: UnixTime) -> u64 {
        now.saturating_add(self.envelope_ttl).hour_rounded_up()
    }
}

/// Whether an envelope stored with `expiry_hour` has expired at `now`.
pub(crate) fn is_expired(expiry_hour: u64, now: UnixTime) -> bool {
    expiry_hour <= now.hour()
}

/// What the whole store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreTotals {
    /// Envelopes queued, in every mailbox (expired ones included until
    /// they are swept).
    pub envelopes: u64,
    /// The bytes held for them, what [`QueuePolicy::max_total_bytes`]
    /// limits: each envelope's payload, except that the envelopes of one
    /// `SendMulti` hold their shared body once between them (it is freed
    /// with the last of them). For envelopes from single sends, the sum of
    /// their lengths.
    pub bytes: u64,
}

/// Result of [`MailboxStore::sweep_expired`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Expired envelopes deleted.
    pub envelopes: u64,
    /// The bytes that freed in the store (as [`StoreTotals::bytes`]
    /// counts them).
    pub bytes: u64,
}

/// What a mailbox currently holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxUsage {
    /// Envelopes queued.
    pub envelopes: u64,
    /// Their length, each counted in full (a `SendMulti`'s body in every
    /// recipient's envelope): what [`MailboxLimits::max_bytes`] limits.
    pub bytes: u64,
    /// The highest queued envelope id (0 when empty).
    pub last_id: u64,
}

/// What a sender showed to be allowed to queue for a mailbox
/// (docs/relay.md §6, "Access").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access<'a> {
    /// The recipient's access key as the sender presented it, if it did.
    /// Admitted when the mailbox published no access verifier, or the key
    /// matches it; otherwise [`StoreError::AccessDenied`].
    Key(Option<&'a AccessKey>),
    /// The relay's first-contact allowance for the mailbox admitted this
    /// envelope: it is queued without an access key.
    FirstContact,
}

impl Access<'_> {
    /// Whether this access lets a sender queue for a mailbox that
    /// published `verifier` (`None`: it published none, and takes anyone).
    pub(crate) fn admits(self, verifier: Option<&AccessVerifier>) -> bool {
        match (self, verifier) {
            (Access::Key(key), Some(verifier)) => key.is_some_and(|key| verifier.admits(key)),
            _ => true,
        }
    }
}

/// An [`Access`] that owns its key, for a write that outlives the
/// borrow it was made with ([`EnqueueRequest`]).
#[derive(Debug, Clone)]
pub enum OwnedAccess {
    /// [`Access::Key`].
    Key(Option<AccessKey>),
    /// [`Access::FirstContact`].
    FirstContact,
}

impl OwnedAccess {
    /// The same access, owning a copy of its key.
    pub fn of(access: Access<'_>) -> Self {
        match access {
            Access::Key(key) => Self::Key(key.cloned()),
            Access::FirstContact => Self::FirstContact,
        }
    }

    /// The access it stands for.
    pub fn as_access(&self) -> Access<'_> {
        match self {
            Self::Key(key) => Access::Key(key.as_ref()),
            Self::FirstContact => Access::FirstContact,
        }
    }
}

/// What [`MailboxStore::enqueue`] takes, owned, for
/// [`MailboxStore::enqueue_async`]: the write may run after its caller
/// has moved on, on another thread.
#[derive(Debug, Clone)]
pub struct EnqueueRequest {
    /// The mailbox to queue for.
    pub recipient: MailboxAddress,
    /// The envelope's message id (dedupe).
    pub message_id: MessageId,
    /// The envelope.
    pub payload: Arc<Vec<u8>>,
    /// What the sender showed to be allowed to queue.
    pub access: OwnedAccess,
    /// The limits and the time to live.
    pub policy: QueuePolicy,
    /// The current time.
    pub now: UnixTime,
}

/// What the asynchronous methods of [`MailboxStore`] return: the call's
/// result (for a write, once it is durable). It owns everything it needs
/// (`'static`) and may be awaited on any thread.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'static>>;

/// `call` on tokio's blocking pool (started now, not when first polled),
/// or, outside a tokio runtime, right away on this thread.
fn on_blocking_pool<T, F>(call: F) -> StoreFuture<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let running = runtime.spawn_blocking(call);
            Box::pin(async move {
                running
                    .await
                    .map_err(|e| StoreError::Backend(Box::new(e)))?
            })
        }
        Err(_) => Box::pin(std::future::ready(call())),
    }
}

/// Whether one more envelope fits: `len` bytes long, into a mailbox
/// holding `envelopes` envelopes of `bytes` bytes; and `stored_len` more
/// bytes into a store holding `stored_bytes`. The two lengths differ for
/// the envelopes of a `SendMulti`, whose shared body counts in full
/// against every recipient's mailbox and once against the store. The one
/// check of the limits, for every backend and for `enqueue` and
/// `enqueue_many` alike.
pub(crate) fn check_room(
    (envelopes, bytes): (u64, u64),
    len: u64,
    stored_bytes: u64,
    stored_len: u64,
    policy: &QueuePolicy,
) -> Result<(), StoreError> {
    let limits = &policy.mailbox;
    if envelopes.saturating_add(1) > limits.max_envelopes
        || bytes.saturating_add(len) > limits.max_bytes
    {
        return Err(StoreError::MailboxFull {
            envelopes,
            bytes,
            max_envelopes: limits.max_envelopes,
            max_bytes: limits.max_bytes,
        });
    }
    if stored_bytes.saturating_add(stored_len) > policy.max_total_bytes {
        return Err(StoreError::StorageFull {
            queued_bytes: stored_bytes,
            len: stored_len,
            max_bytes: policy.max_total_bytes,
        });
    }
    Ok(())
}

/// Result of [`MailboxStore::enqueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The envelope's id.
    pub id: u64,
    /// An envelope with the same message id was already queued; nothing new
    /// was stored and `id` is that envelope's.
    pub duplicate: bool,
}

/// Result of [`MailboxStore::take_bundle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenBundle {
    /// The bundle, with the one-time prekey just removed from the store (if
    /// any was left).
    pub bundle: PreKeyBundle,
    /// One-time prekeys left after this one.
    pub remaining: u32,
}

/// The prekey stock a handed-out bundle left, as the owner's connections
/// are told of it (the `PreKeysLow` push, docs/relay.md §5): in this
/// process through the hub, across processes through the store's change
/// feed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PreKeysLeft {
    /// One-time prekeys left.
    pub(crate) one_time: u32,
    /// One-time KEM prekeys left, as far as the hand-out knew.
    pub(crate) kem: KemPreKeysLeft,
}

/// [`PreKeysLeft::kem`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum KemPreKeysLeft {
    /// Not said: a v1 bundle (which takes no KEM prekey and does not count
    /// them), or a signal from a relay that predates the KEM stock. A
    /// connection that reports KEM stock reads it from the store.
    #[default]
    NotSaid,
    /// The owner has no last-resort KEM prekey: no KEM stock to report
    /// ([`TakenBundleV2::kem_remaining`] `None`).
    NoKemPreKeys,
    /// This many one-time KEM prekeys left.
    Left(u32),
}

impl PreKeysLeft {
    /// What a v1 bundle left: `one_time`, the KEM stock not said.
    pub(crate) fn one_time(one_time: u32) -> Self {
        Self {
            one_time,
            kem: KemPreKeysLeft::NotSaid,
        }
    }

    /// What a v2 hand-out left ([`TakenBundleV2`]'s counts).
    pub(crate) fn of_v2(one_time: u32, kem: Option<u32>) -> Self {
        Self {
            one_time,
            kem: kem.map_or(KemPreKeysLeft::NoKemPreKeys, KemPreKeysLeft::Left),
        }
    }
}

/// The default limit on the one-time KEM prekeys of one mailbox: 100
/// (each takes about 1.25 KB).
pub const DEFAULT_MAX_KEM_PREKEYS: u32 = 100;

/// Limits of [`MailboxStore::publish_prekeys_with_kem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreKeyLimits {
    /// Most one-time (X25519) prekeys stored per mailbox.
    pub max_one_time: u32,
    /// Most one-time KEM prekeys stored per mailbox (default
    /// [`DEFAULT_MAX_KEM_PREKEYS`]).
    pub max_kem: u32,
}

/// What a mailbox's prekey directory entry holds after
/// [`MailboxStore::publish_prekeys_with_kem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreKeyCounts {
    /// One-time prekeys stored.
    pub one_time: u32,
    /// One-time KEM prekeys stored, if the owner has a last-resort KEM
    /// prekey published; `None` if it has none (it takes no part in the
    /// KEM directory: no stock to report).
    pub kem: Option<u32>,
}

/// Result of [`MailboxStore::take_bundle_v2`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TakenBundleV2 {
    /// The bundle: v2 (with a KEM prekey: the one-time one just removed
    /// from the store, or the last-resort one when none was left) if its
    /// owner published a KEM prekey, else v1.
    pub bundle: PreKeyBundle,
    /// One-time prekeys left after this one.
    pub remaining: u32,
    /// One-time KEM prekeys left, if the owner has a last-resort KEM
    /// prekey (as [`PreKeyCounts::kem`]).
    pub kem_remaining: Option<u32>,
}

impl TakenBundleV2 {
    /// A taken bundle with these parts.
    pub fn new(bundle: PreKeyBundle, remaining: u32, kem_remaining: Option<u32>) -> Self {
        Self {
            bundle,
            remaining,
            kem_remaining,
        }
    }
}

/// The versions a v2 bundle of a signed prekey says: `V2_ONLY` if its
/// owner uploaded it as signed for protocol v2 only, else `V1_AND_V2`.
pub(crate) fn bundle_versions(v2_only: bool) -> ProtocolVersions {
    if v2_only {
        ProtocolVersions::V2_ONLY
    } else {
        ProtocolVersions::V1_AND_V2
    }
}

/// Why a storage operation failed. Every failure leaves the stored state as
/// it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The recipient has published no signed prekey, so there is no
    /// mailbox to queue for.
    #[error("no such mailbox: the recipient has published no signed prekey")]
    UnknownRecipient,
    /// The recipient published an access verifier and the sender presented
    /// no access key, or a wrong one ([`Access::Key`]).
    #[error("no access: the sender did not present the recipient's access key")]
    AccessDenied,
    /// One more envelope of this size would bring the bytes queued in the
    /// whole store over its limit.
    #[error(
        "storage full: {queued_bytes} bytes queued, {len} more would exceed the limit of {max_bytes}"
    )]
    StorageFull {
        /// Payload bytes queued in the whole store.
        queued_bytes: u64,
        /// The refused envelope's payload bytes.
        len: u64,
        /// The store-wide limit.
        max_bytes: u64,
    },
    /// The recipient's mailbox is at a limit.
    #[error(
        "mailbox full: {envelopes} envelopes / {bytes} bytes queued, limits {max_envelopes} / {max_bytes}"
    )]
    MailboxFull {
        /// Envelopes queued.
        envelopes: u64,
        /// Bytes queued.
        bytes: u64,
        /// The envelope limit.
        max_envelopes: u64,
        /// The byte limit.
        max_bytes: u64,
    },
    /// A device list no newer than the one stored.
    #[error("a device list of version {stored} or higher is stored")]
    StaleDeviceList {
        /// The stored version.
        stored: u64,
    },
    /// The upload would leave more one-time prekeys than allowed.
    #[error("{would_have} one-time prekeys exceed the maximum of {max}")]
    TooManyPreKeys {
        /// Stored keys after the upload.
        would_have: u64,
        /// The limit.
        max: u32,
    },
    /// The upload would leave more one-time KEM prekeys than allowed.
    #[error("{would_have} one-time KEM prekeys exceed the maximum of {max}")]
    TooManyKemPreKeys {
        /// Stored keys after the upload.
        would_have: u64,
        /// The limit.
        max: u32,
    },
    /// The upload carries KEM prekeys and this store keeps none (a store
    /// that does not implement [`MailboxStore::publish_prekeys_with_kem`]).
    #[error("this store keeps no KEM prekeys")]
    KemPreKeysUnsupported,
    /// The database, or the disk it is on, is full: the operation changed
    /// nothing. Space comes back as envelopes are acknowledged or expire
    /// (deleting needs no new space), or when the operator makes room; no
    /// restart is needed.
    #[error("the relay's database or disk is full")]
    DiskFull,
    /// A stored record does not decode.
    #[error("corrupt stored record: {0}")]
    Corrupt(&'static str),
    /// The backend failed (I/O, database, lock).
    #[error("storage backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Whether this is a refusal of one envelope (no such mailbox, no
    /// access, a limit), as opposed to a failure of the store. Of a
    /// [`MailboxStore::enqueue_many`], a refusal concerns one recipient;
    /// a failure, the whole call.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::UnknownRecipient
                | Self::AccessDenied
                | Self::MailboxFull { .. }
                | Self::StorageFull { .. }
        )
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        // SQLITE_FULL: the disk has no room, or the database reached its
        // `max_page_count`.
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            return Self::DiskFull;
        }
        Self::Backend(Box::new(e))
    }
}

/// Storage of mailboxes and the prekey directory. See the module docs for
/// the atomicity and ordering every backend must provide.
pub trait MailboxStore: Send + Sync + 'static {
    /// Publishes `owner`'s prekeys: replaces the signed prekey if one is
    /// given, and the access verifier if one is given (it is kept with the
    /// signed prekey: a verifier is stored only while a signed prekey is
    /// published, and an upload without one keeps the stored one),
    /// optionally deletes the stored one-time prekeys, then adds the
    /// uploaded ones (replacing stored keys with the same id). Fails with
    /// [`StoreError::TooManyPreKeys`], storing nothing, if more than
    /// `max_one_time` one-time prekeys would be stored. Returns how many are
    /// stored. The signature must already have been checked.
    fn publish_prekeys(
        &self,
        owner: &IdentityKey,
        upload: &PreKeyUpload,
        max_one_time: u32,
    ) -> Result<u32, StoreError>;

    /// The bundle of `address`, with the oldest stored one-time prekey, which
    /// is removed atomically. `None` if no signed prekey was published, or
    /// if the published one is signed for protocol v2 only
    /// ([`PreKeyUpload::signed_prekey_v2_only`]): no v1 bundle of it
    /// verifies, so there is none, and no one-time prekey is taken.
    fn take_bundle(&self, address: &MailboxAddress) -> Result<Option<TakenBundle>, StoreError>;

    /// How many one-time prekeys `address` has left.
    fn one_time_prekey_count(&self, address: &MailboxAddress) -> Result<u32, StoreError>;

    /// [`publish_prekeys`](Self::publish_prekeys) with protocol 4's KEM
    /// prekeys, all in one atomic step: also replaces the last-resort KEM
    /// prekey if one is given, optionally deletes the stored one-time KEM
    /// prekeys, then adds the uploaded ones (replacing stored keys with
    /// the same id); with a signed prekey, records whether it is signed
    /// for protocol v2 only ([`PreKeyUpload::signed_prekey_v2_only`]).
    /// Fails, storing nothing, with [`StoreError::TooManyPreKeys`] or
    /// [`StoreError::TooManyKemPreKeys`] if more than `limits` allow
    /// would be stored. Signatures and keys must already have been
    /// checked.
    ///
    /// The provided implementation is `publish_prekeys` for an upload
    /// without a KEM part ([`PreKeyUpload::has_kem_part`]), and refuses
    /// one with one ([`StoreError::KemPreKeysUnsupported`]); every store
    /// of this crate overrides it.
    fn publish_prekeys_with_kem(
        &self,
        owner: &IdentityKey,
        upload: &PreKeyUpload,
        limits: &PreKeyLimits,
    ) -> Result<PreKeyCounts, StoreError> {
        if upload.has_kem_part() {
            return Err(StoreError::KemPreKeysUnsupported);
        }
        Ok(PreKeyCounts {
            one_time: self.publish_prekeys(owner, upload, limits.max_one_time)?,
            kem: None,
        })
    }

    /// The bundle of `address` for a protocol v2 initiator, taking in one
    /// atomic step the oldest stored one-time prekey, as
    /// [`take_bundle`](Self::take_bundle) does, and the oldest stored
    /// one-time KEM prekey: each is handed out at most once. Without a
    /// one-time KEM prekey left the bundle carries the last-resort one;
    /// without either, it is a v1 bundle. `None` if no signed prekey was
    /// published, or if it is signed for protocol v2 only and there is no
    /// KEM prekey to make a v2 bundle with (nothing is taken then).
    ///
    /// The provided implementation is `take_bundle` (a v1 bundle): a store
    /// that keeps no KEM prekeys.
    fn take_bundle_v2(
        &self,
        address: &MailboxAddress,
    ) -> Result<Option<TakenBundleV2>, StoreError> {
        Ok(self
            .take_bundle(address)?
            .map(|taken| TakenBundleV2::new(taken.bundle, taken.remaining, None)))
    }

    /// How many one-time KEM prekeys `address` has left, if it has a
    /// last-resort KEM prekey published (`None` otherwise, and from the
    /// provided implementation, for a store that keeps no KEM prekeys).
    fn kem_prekey_count(&self, address: &MailboxAddress) -> Result<Option<u32>, StoreError> {
        let _ = address;
        Ok(None)
    }

    /// Whether this store keeps KEM prekeys (overrides
    /// [`publish_prekeys_with_kem`](Self::publish_prekeys_with_kem),
    /// [`take_bundle_v2`](Self::take_bundle_v2) and
    /// [`kem_prekey_count`](Self::kem_prekey_count)). A relay on a store
    /// that does not speaks relay protocol 3 at most, so that clients do
    /// not upload KEM prekeys it would refuse. `false` by default; every
    /// store of this crate says `true`.
    fn keeps_kem_prekeys(&self) -> bool {
        false
    }

    /// Queues `payload` for `recipient` at time `now`, to expire at
    /// [`QueuePolicy::expiry_hour`], unless an unexpired envelope with the
    /// same `message_id` is still queued there (then returns that one's id
    /// with `duplicate`; an expired one is replaced). In the same atomic
    /// step, fails, storing nothing:
    ///
    /// - with [`StoreError::UnknownRecipient`] if no signed prekey is
    ///   published for `recipient`;
    /// - with [`StoreError::AccessDenied`] if `access` is
    ///   [`Access::Key`] and `recipient` published an access verifier that
    ///   the key (absent, or another one) does not match; this check comes
    ///   before the duplicate check, so without access nothing is learnt
    ///   about what is queued;
    /// - with [`StoreError::MailboxFull`] if one more envelope of this size
    ///   would exceed `policy.mailbox`;
    /// - with [`StoreError::StorageFull`] if it would bring the payload
    ///   bytes of the whole store over `policy.max_total_bytes`.
    fn enqueue(
        &self,
        recipient: &MailboxAddress,
        message_id: &MessageId,
        payload: &[u8],
        access: Access<'_>,
        policy: &QueuePolicy,
        now: UnixTime,
    ) -> Result<Enqueued, StoreError>;

    /// [`enqueue`](Self::enqueue) for an asynchronous caller: the same
    /// write, checks and result, with its arguments owned. The write is
    /// started when this is called, before the future is first polled,
    /// and goes on if the future is dropped; the future resolves once it
    /// is durable, as `enqueue` returns.
    ///
    /// The provided implementation calls `enqueue` on tokio's blocking
    /// pool (`spawn_blocking`; outside a tokio runtime, at once on this
    /// thread). A backend that can queue a write without a thread waiting
    /// for it overrides it, as [`SqliteStore`] does (its writer thread
    /// runs the write in its next group commit and completes the future).
    fn enqueue_async(self: Arc<Self>, request: EnqueueRequest) -> StoreFuture<Enqueued> {
        on_blocking_pool(move || {
            let EnqueueRequest {
                recipient,
                message_id,
                payload,
                access,
                policy,
                now,
            } = request;
            self.enqueue(
                &recipient,
                &message_id,
                &payload,
                access.as_access(),
                &policy,
                now,
            )
        })
    }

    /// Queues, for each of `recipients` in order, the envelope `header ||
    /// body` at time `now`, as [`enqueue`](Self::enqueue) would with its
    /// message id and `Access::Key(its access key)`, all in one atomic
    /// step that is durable when it returns. [`fetch`](Self::fetch)
    /// returns `header || body` as the envelope, byte for byte; how the
    /// body is kept is the backend's choice, but each envelope counts its
    /// whole length against its mailbox's limits, the body once against
    /// the store-wide limit ([`StoreTotals::bytes`]), and is deleted by its
    /// own [`ack`](Self::ack) or expiry alone (the body with the last of
    /// them).
    ///
    /// A recipient that `enqueue` would refuse with
    /// [`StoreError::AccessDenied`] (it published an access verifier its
    /// key does not match) is first offered to `first_contact`, with its
    /// index in `recipients`: `true` admits it as [`Access::FirstContact`]
    /// does, `false` refuses it. `first_contact` is called at most once
    /// per recipient, in order, inside the atomic step (it must not use
    /// the store).
    ///
    /// Returns one result per recipient, in order: what `enqueue` would
    /// have returned, its refusals included ([`StoreError::UnknownRecipient`],
    /// [`StoreError::AccessDenied`], [`StoreError::MailboxFull`],
    /// [`StoreError::StorageFull`]), each refusal storing nothing for that
    /// recipient and changing nothing for the others. Recipients are taken
    /// in order as consecutive `enqueue`s would be: a recipient named
    /// twice with one message id gets the first one's envelope as a
    /// duplicate, and what the earlier ones stored counts against the
    /// limits of the later ones. Any other failure (the disk is full, the
    /// backend fails) fails the whole call and stores nothing.
    ///
    /// The provided implementation is one [`enqueue`](Self::enqueue) of
    /// `header || body` per recipient (and a second one, as
    /// [`Access::FirstContact`], for a recipient `first_contact` admits):
    /// the same outcome for each recipient, but not one atomic step, and
    /// the body stored once per recipient. A failure part-way leaves the
    /// earlier recipients' envelopes stored, which a resent request finds
    /// as duplicates. It is there so that stores wrapping another (to
    /// observe or alter what is enqueued) see every envelope through
    /// `enqueue`; a backend should override it with one atomic step, as
    /// [`SqliteStore`] and [`MemoryStore`] do.
    fn enqueue_many(
        &self,
        recipients: &[MultiRecipient],
        body: &[u8],
        first_contact: &mut dyn FnMut(usize) -> bool,
        policy: &QueuePolicy,
        now: UnixTime,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        let mut results = Vec::with_capacity(recipients.len());
        for (i, r) in recipients.iter().enumerate() {
            let envelope = [&r.header[..], body].concat();
            let (address, id) = (&r.address, &r.message_id);
            let access = Access::Key(r.access_key.as_ref());
            let result = match self.enqueue(address, id, &envelope, access, policy, now) {
                Err(StoreError::AccessDenied) if first_contact(i) => {
                    self.enqueue(address, id, &envelope, Access::FirstContact, policy, now)
                }
                result => result,
            };
            match result {
                Err(e) if !e.is_refusal() => return Err(e),
                result => results.push(result),
            }
        }
        Ok(results)
    }

    /// Queued envelopes of `address` with id greater than `after` that have
    /// not expired at `now`, oldest first: at most `max_count`, and stopping
    /// before the one that would bring the sum of
    /// [`Envelope::encoded_len`](crate::Envelope::encoded_len) over
    /// `max_bytes` (but always at least one, if any is queued).
    fn fetch(
        &self,
        address: &MailboxAddress,
        after: u64,
        max_count: usize,
        max_bytes: usize,
        now: UnixTime,
    ) -> Result<FetchedPage, StoreError>;

    /// [`fetch`](Self::fetch) for an asynchronous caller, with its
    /// arguments owned; started when called. The provided implementation
    /// calls `fetch` on tokio's blocking pool, as for
    /// [`enqueue_async`](Self::enqueue_async).
    fn fetch_async(
        self: Arc<Self>,
        address: MailboxAddress,
        after: u64,
        max_count: usize,
        max_bytes: usize,
        now: UnixTime,
    ) -> StoreFuture<FetchedPage> {
        on_blocking_pool(move || self.fetch(&address, after, max_count, max_bytes, now))
    }

    /// Deletes up to `max_count` envelopes that have expired at `now`
    /// (oldest expiry first) and takes them off the mailbox and store-wide
    /// usage, in one atomic step. Call it again while it returns
    /// `max_count` envelopes.
    fn sweep_expired(&self, now: UnixTime, max_count: usize) -> Result<Swept, StoreError>;

    /// What the whole store holds.
    fn totals(&self) -> Result<StoreTotals, StoreError>;

    /// Whether the envelopes of one `SendMulti` share one stored copy of
    /// its body, counted once in [`totals`](Self::totals) (`true`, the
    /// default: SQLite, memory, Redis on one server), or each holds a copy
    /// of its own, counted with it (`RedisStore` on a Redis Cluster, where
    /// the recipients' mailboxes live in different slots; docs/relay.md
    /// §9). What a recipient fetches, and its mailbox's usage, are the
    /// same either way.
    fn shares_multi_send_bodies(&self) -> bool {
        true
    }

    /// Deletes the envelopes of `address` with these ids; ids that are not
    /// queued in this mailbox are ignored. Returns how many were deleted.
    fn ack(&self, address: &MailboxAddress, ids: &[u64]) -> Result<u32, StoreError>;

    /// [`ack`](Self::ack) for an asynchronous caller, with its arguments
    /// owned; started when called, resolved once the deletes are durable,
    /// as for [`enqueue_async`](Self::enqueue_async). The provided
    /// implementation calls `ack` on tokio's blocking pool.
    fn ack_async(self: Arc<Self>, address: MailboxAddress, ids: Vec<u64>) -> StoreFuture<u32> {
        on_blocking_pool(move || self.ack(&address, &ids))
    }

    /// What `address` currently holds (expired envelopes included until
    /// they are swept).
    fn usage(&self, address: &MailboxAddress) -> Result<MailboxUsage, StoreError>;

    /// Stores `list`, version `version`, as the device list of `owner`'s
    /// mailbox, unless one of the same or a higher version is stored
    /// (then fails with [`StoreError::StaleDeviceList`], storing nothing);
    /// the very list already stored again is accepted and changes nothing.
    /// The caller checked that `list` is `owner`'s.
    ///
    /// In the same atomic step, the devices the stored list names and
    /// `list` does not (compared by identity key) are unlinked, and each
    /// loses its mailbox: its registration (signed prekey, access verifier,
    /// one-time prekeys) and every envelope queued for it are deleted, and
    /// taken off the usage counters. Afterwards the mailbox is as one never
    /// registered: [`enqueue`](Self::enqueue) refuses it with
    /// [`StoreError::UnknownRecipient`] and [`take_bundle`](Self::take_bundle)
    /// finds nothing, until its owner publishes a signed prekey again.
    /// Kept are:
    ///
    /// - `owner`'s own mailbox (the account key's), even if `list` leaves
    ///   the account key out;
    /// - an account's mailbox: one with a device list stored for it;
    /// - a mailbox that another account's stored list still names.
    ///
    /// (A list is signed by its account alone, so it may name any key:
    /// without the last two, an account could name someone else's device
    /// or account in one list and leave it out of the next to have its
    /// mailbox deleted.) Both lists are decoded as signed device lists of
    /// `owner`'s account (the account key's mailbox is `owner`, its
    /// signature verifies); one that does not decode names no device, so
    /// if either does not, nothing is unlinked. A device that never
    /// registered has nothing to delete.
    fn publish_device_list(
        &self,
        owner: &MailboxAddress,
        version: u64,
        list: &[u8],
    ) -> Result<(), StoreError>;

    /// The device list stored for `address`, if any.
    fn device_list(&self, address: &MailboxAddress) -> Result<Option<Vec<u8>>, StoreError>;

    /// How relay processes that share this store hear of each other's
    /// writes, for live push across processes (see the module docs):
    /// `None`, the default, for a store that only this process writes or
    /// whose processes cannot tell each other. A store with a feed
    /// announces every envelope it stores on the feed itself; a server
    /// on it then wakes its connections from the feed alone.
    fn change_feed(&self) -> Option<ChangeFeed> {
        None
    }
}

/// Where a store that relay processes share announces its changes
/// ([`MailboxStore::change_feed`]). Only this crate's stores make one.
#[derive(Clone, Debug)]
pub struct ChangeFeed(pub(crate) FeedKind);

/// The kinds of [`ChangeFeed`].
#[derive(Clone, Debug)]
pub(crate) enum FeedKind {
    /// Redis pub/sub ([`RedisStore`]).
    #[cfg(feature = "redis")]
    Redis(redis::FeedSource),
}

/// `publish_prekeys` of a store whose `publish_prekeys_with_kem` does the
/// work: the same upload under the default KEM prekey limit
/// ([`DEFAULT_MAX_KEM_PREKEYS`]).
pub(crate) fn publish_prekeys_with_default_kem_limit(
    store: &(impl MailboxStore + ?Sized),
    owner: &IdentityKey,
    upload: &PreKeyUpload,
    max_one_time: u32,
) -> Result<u32, StoreError> {
    let limits = PreKeyLimits {
        max_one_time,
        max_kem: DEFAULT_MAX_KEM_PREKEYS,
    };
    Ok(store
        .publish_prekeys_with_kem(owner, upload, &limits)?
        .one_time)
}

/// Whether `prefix` may start a shared store's keys (a Redis store's):
/// letters, digits, `-`, `_`, `.` and `:`, at least one.
pub(crate) fn is_valid_key_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

/// Opens the store that `spec` names, for a relay's configuration:
///
/// - `sqlite:PATH`: [`SqliteStore::open`] of the file at `PATH`;
/// - `memory:`: a new [`MemoryStore`];
/// - `redis://…`, `rediss://…`, `redis+unix://…` (feature `redis`): a
///   [`RedisStore::open`] of that server, with the default options (key
///   prefix `sotto`); a node of a Redis Cluster opens the cluster, as do
///   `redis+cluster://HOST:PORT,HOST:PORT,…` (`rediss+cluster://` with
///   TLS) and comma-separated `redis://` node URLs.
///
/// Anything else fails with [`StoreError::Backend`], naming the forms
/// above. The spec may hold a password (in a Redis URL): it is never
/// logged nor put in an error.
pub fn open_store(spec: &str) -> Result<Arc<dyn MailboxStore>, StoreError> {
    if let Some(path) = spec.strip_prefix("sqlite:") {
        return Ok(Arc::new(SqliteStore::open(path)?));
    }
    if spec == "memory:" {
        return Ok(Arc::new(MemoryStore::new()));
    }
    let scheme = spec.split_once("://").map(|(scheme, _)| scheme);
    if let Some("redis" | "rediss" | "redis+unix" | "redis+cluster" | "rediss+cluster") = scheme {
        #[cfg(feature = "redis")]
        return Ok(Arc::new(RedisStore::open(spec)?));
        #[cfg(not(feature = "redis"))]
        return Err(StoreError::Backend(
            "this relay was built without the `redis` feature".into(),
        ));
    }
    Err(StoreError::Backend(
        "unknown store: expected sqlite:PATH, memory:, redis://HOST:PORT or redis+cluster://HOST:PORT,HOST:PORT"
            .into(),
    ))
}

/// Checks the one-time prekey ids of an upload are distinct.
pub(crate) fn has_duplicate_ids(upload: &PreKeyUpload) -> bool {
    let mut ids: Vec<_> = upload.one_time_prekeys.iter().map(|k| k.id).collect();
    ids.sort_unstable();
    ids.windows(2).any(|w| w[0] == w[1])
}

/// Checks the one-time KEM prekey ids of an upload are distinct.
pub(crate) fn has_duplicate_kem_ids(upload: &PreKeyUpload) -> bool {
    let mut ids: Vec<_> = upload.one_time_kem_prekeys.iter().map(|k| k.id).collect();
    ids.sort_unstable();
    ids.windows(2).any(|w| w[0] == w[1])
}

#[cfg(test)]
mod open_store_tests {
    use super::*;

    #[test]
    fn a_spec_names_its_backend() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let sqlite = open_store(&format!("sqlite:{}", path.display())).unwrap();
        assert_eq!(sqlite.totals().unwrap(), StoreTotals::default());
        assert!(path.exists());
        assert!(open_store("memory:").is_ok());
        for bad in ["", "memory", "postgres://localhost/x", "/var/lib/relay.db"] {
            assert!(
                matches!(open_store(bad), Err(StoreError::Backend(_))),
                "{bad}"
            );
        }
        // A Redis URL is opened as one (nothing listens on port 1).
        let refused = open_store("redis://127.0.0.1:1").err().unwrap();
        assert!(!refused.to_string().contains("unknown store"), "{refused}");
        // So is a Redis Cluster's.
        let refused = open_store("redis+cluster://127.0.0.1:1,127.0.0.1:2")
            .err()
            .unwrap();
        assert!(!refused.to_string().contains("unknown store"), "{refused}");
    }
}

/// One `#[test]` per contract of `contract_tests` for a backend:
/// `contract_suite!(open, |held| store)` where `open()` gives
/// `Option<held>` (`None`: no such backend here, the test returns) and
/// `store` borrows the store from `held`.
#[cfg(test)]
macro_rules! contract_suite {
    ($open:ident, |$held:ident| $store:expr) => {
        $crate::store::contract_suite!(
            @each $open, |$held| $store,
            queue_limits_order_and_ack,
            prekeys_are_handed_out_once,
            device_lists_only_move_forward,
            unlinked_devices_lose_their_mailbox,
            unlinking_spares_mailboxes_other_accounts_claim,
            device_lists_that_do_not_decode_unlink_nothing,
            unregistered_recipients_are_refused,
            storage_limit_is_store_wide,
            expired_envelopes_are_hidden_then_swept,
            access_keys_guard_mailboxes_with_a_verifier,
            multi_send_queues_header_and_body_for_each_recipient,
            multi_send_refusals_concern_one_recipient,
            multi_send_envelopes_are_acked_one_by_one,
            multi_send_envelopes_expire_as_single_ones,
            unlinking_removes_a_devices_multi_send_envelopes,
            kem_prekeys_are_handed_out_once_then_the_last_resort_one,
            kem_prekey_limits_and_replace,
            owners_without_kem_prekeys_get_v1_bundles,
            unlinking_removes_kem_prekeys,
            v2_only_owners_have_no_v1_bundle,
        );
    };
    (@each $open:ident, |$held:ident| $store:expr, $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let Some($held) = $open() else { return };
                $crate::store::contract_tests::$name($store);
            }
        )*
    };
}
#[cfg(test)]
pub(crate) use contract_suite;

#[cfg(test)]
pub(crate) mod contract_tests {
    //! The behaviour every backend must show, run against both.

    use super::unlinking::test_lists::signed_list;
    use super::*;
    use sotto_core::{
        IdentityKeyPair, OneTimePreKey, OneTimePreKeyId, SignedPreKey, SignedPreKeyId,
    };

    /// A time on an hour boundary (1_800_000_000 = 500_000 hours).
    pub(crate) const T0: UnixTime = UnixTime::from_secs(1_800_000_000);
    /// A sender without an access key, as every sender is to a mailbox that
    /// published no access verifier.
    pub(crate) const OPEN: Access<'static> = Access::Key(None);
    const HOUR: u64 = 3600;

    fn at(secs_after_t0: u64) -> UnixTime {
        UnixTime::from_secs(T0.as_secs() + secs_after_t0)
    }

    /// What `holders` envelopes of one `SendMulti` hold of its body of
    /// `len` bytes in the store's totals: the body once, or a copy each
    /// ([`MailboxStore::shares_multi_send_bodies`]).
    fn body_held(store: &dyn MailboxStore, len: u64, holders: u64) -> u64 {
        if store.shares_multi_send_bodies() {
            len
        } else {
            len * holders
        }
    }

    /// Device lists only move forward, per mailbox; reading one changes
    /// nothing.
    pub(crate) fn device_lists_only_move_forward(store: &dyn MailboxStore) {
        let (_, a) = owner();
        let b = MailboxAddress::from_bytes([9; 32]);
        assert_eq!(store.device_list(&a).unwrap(), None);
        store.publish_device_list(&a, 2, b"list v2").unwrap();
        // The same list again: fine, nothing changes.
        store.publish_device_list(&a, 2, b"list v2").unwrap();
        store.publish_device_list(&b, 1, b"other").unwrap();
        for stale in [1, 2] {
            assert!(matches!(
                store.publish_device_list(&a, stale, b"older"),
                Err(StoreError::StaleDeviceList { stored: 2 })
            ));
        }
        assert_eq!(
            store.device_list(&a).unwrap().as_deref(),
            Some(&b"list v2"[..])
        );
        store.publish_device_list(&a, 7, b"list v7").unwrap();
        assert_eq!(
            store.device_list(&a).unwrap().as_deref(),
            Some(&b"list v7"[..])
        );
        assert_eq!(
            store.device_list(&b).unwrap().as_deref(),
            Some(&b"other"[..])
        );
    }

    fn key(seed: u8) -> (IdentityKeyPair, MailboxAddress) {
        let id = IdentityKeyPair::from_seed(&[seed; 32]);
        let address = MailboxAddress::of(id.public());
        (id, address)
    }

    /// A newer device list that leaves a device out removes that device's
    /// mailbox (docs/devices.md §5): its registration and its queue, in
    /// the step that stores the list. Nothing else changes, and only
    /// registering afresh makes a mailbox of it again.
    pub(crate) fn unlinked_devices_lose_their_mailbox(store: &dyn MailboxStore) {
        let (account, owner) = key(30);
        let (laptop, laptop_box) = key(31);
        let (tablet, tablet_box) = key(32);
        // Listed, never registered: nothing to remove.
        let (phone, phone_box) = key(33);
        let policy = QueuePolicy::default();
        let send = |to: &MailboxAddress, n: u8, access: Access<'_>| {
            store.enqueue(to, &MessageId([n; 16]), &[n; 5], access, &policy, T0)
        };
        let laptop_key = AccessKey::derive(&laptop).unwrap();
        store
            .publish_prekeys(account.public(), &upload(&account, 0..2), 10)
            .unwrap();
        let with_verifier = upload(&laptop, 0..3).with_access_verifier(laptop_key.verifier());
        store
            .publish_prekeys(laptop.public(), &with_verifier, 10)
            .unwrap();
        store
            .publish_prekeys(tablet.public(), &upload(&tablet, 0..1), 10)
            .unwrap();
        send(&owner, 1, OPEN).unwrap();
        send(&laptop_box, 2, Access::Key(Some(&laptop_key))).unwrap();
        send(&laptop_box, 3, Access::FirstContact).unwrap();
        let tablet_last = send(&tablet_box, 4, OPEN).unwrap();

        let v2 = signed_list(&account, 2, &[&account, &laptop, &tablet, &phone]);
        store
            .publish_device_list(&owner, 1, &signed_list(&account, 1, &[&account]))
            .unwrap();
        store.publish_device_list(&owner, 2, &v2).unwrap();
        // Adding devices removes nothing, nor does a refused list.
        assert!(matches!(
            store.publish_device_list(&owner, 2, &signed_list(&account, 2, &[&account])),
            Err(StoreError::StaleDeviceList { stored: 2 })
        ));
        let everything = StoreTotals {
            envelopes: 4,
            bytes: 20,
        };
        assert_eq!(store.totals().unwrap(), everything);
        assert_eq!(store.one_time_prekey_count(&laptop_box).unwrap(), 3);

        // Version 3 unlinks the laptop and the phone.
        let v3 = signed_list(&account, 3, &[&account, &tablet]);
        store.publish_device_list(&owner, 3, &v3).unwrap();
        assert_eq!(store.usage(&laptop_box).unwrap(), MailboxUsage::default());
        assert!(
            store
                .fetch(&laptop_box, 0, 10, usize::MAX, T0)
                .unwrap()
                .envelopes
                .is_empty()
        );
        assert!(store.take_bundle(&laptop_box).unwrap().is_none());
        assert_eq!(store.one_time_prekey_count(&laptop_box).unwrap(), 0);
        for access in [OPEN, Access::Key(Some(&laptop_key)), Access::FirstContact] {
            assert!(matches!(
                send(&laptop_box, 9, access),
                Err(StoreError::UnknownRecipient)
            ));
        }
        assert!(matches!(
            send(&phone_box, 9, OPEN),
            Err(StoreError::UnknownRecipient)
        ));
        // The account's mailbox and the tablet's are as they were.
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                envelopes: 2,
                bytes: 10
            }
        );
        assert_eq!(store.usage(&owner).unwrap().envelopes, 1);
        assert_eq!(store.one_time_prekey_count(&owner).unwrap(), 2);
        assert_eq!(
            store.usage(&tablet_box).unwrap(),
            MailboxUsage {
                envelopes: 1,
                bytes: 5,
                last_id: tablet_last.id
            }
        );
        assert_eq!(store.one_time_prekey_count(&tablet_box).unwrap(), 1);
        assert_eq!(store.device_list(&owner).unwrap(), Some(v3.clone()));
        // Publishing the same list again changes nothing.
        store.publish_device_list(&owner, 3, &v3).unwrap();
        assert_eq!(store.usage(&tablet_box).unwrap().envelopes, 1);

        // One-time prekeys alone do not bring the mailbox back; a signed
        // prekey registers it afresh: empty, without the old verifier, its
        // envelope ids above every earlier one, an old message id new.
        let only_one_time = PreKeyUpload {
            signed_prekey: None,
            ..upload(&laptop, 5..6)
        };
        store
            .publish_prekeys(laptop.public(), &only_one_time, 10)
            .unwrap();
        assert!(matches!(
            send(&laptop_box, 9, OPEN),
            Err(StoreError::UnknownRecipient)
        ));
        store
            .publish_prekeys(laptop.public(), &upload(&laptop, 0..0), 10)
            .unwrap();
        let again = send(&laptop_box, 2, OPEN).unwrap();
        assert!(!again.duplicate && again.id > tablet_last.id);
        assert_eq!(store.usage(&laptop_box).unwrap().envelopes, 1);

        // The account's own mailbox is never removed, even by a list that
        // leaves the account key out.
        store
            .publish_device_list(&owner, 4, &signed_list(&account, 4, &[&tablet]))
            .unwrap();
        store
            .publish_device_list(&owner, 5, &signed_list(&account, 5, &[&account]))
            .unwrap();
        assert_eq!(store.usage(&owner).unwrap().envelopes, 1);
        assert!(store.take_bundle(&owner).unwrap().is_some());
        // The tablet, left out by version 5, is gone.
        assert_eq!(store.usage(&tablet_box).unwrap(), MailboxUsage::default());
        assert!(store.take_bundle(&tablet_box).unwrap().is_none());
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                envelopes: 2,
                bytes: 10
            }
        );
    }

    /// A device list is signed by its account alone, so it can name any
    /// key. Unlinking never removes an account's own mailbox (one with a
    /// stored device list), nor one another account's list still names.
    pub(crate) fn unlinking_spares_mailboxes_other_accounts_claim(store: &dyn MailboxStore) {
        let (alice, alice_box) = key(40);
        let (bob, bob_box) = key(41);
        let (laptop, laptop_box) = key(42);
        let (mallory, mallory_box) = key(43);
        let (carol, carol_box) = key(44);
        let policy = QueuePolicy::default();
        let registered = [
            (&alice, alice_box),
            (&bob, bob_box),
            (&laptop, laptop_box),
            (&carol, carol_box),
        ];
        for (n, (id, address)) in registered.into_iter().enumerate() {
            store
                .publish_prekeys(id.public(), &upload(id, 0..1), 10)
                .unwrap();
            let n = u8::try_from(n).unwrap();
            store
                .enqueue(&address, &MessageId([n; 16]), b"x", OPEN, &policy, T0)
                .unwrap();
        }
        let kept = |address: &MailboxAddress| {
            store.usage(address).unwrap().envelopes == 1
                && store.one_time_prekey_count(address).unwrap() == 1
        };
        store
            .publish_device_list(&alice_box, 1, &signed_list(&alice, 1, &[&alice]))
            .unwrap();
        store
            .publish_device_list(&bob_box, 2, &signed_list(&bob, 2, &[&bob, &laptop]))
            .unwrap();
        // An account whose stored list names no device of its own (here:
        // one that does not decode) is an account all the same.
        store
            .publish_device_list(&carol_box, 1, b"carol's list")
            .unwrap();

        // Mallory names Alice, Bob, Bob's laptop and Carol, then leaves
        // them out: nothing of theirs is removed.
        let everyone = signed_list(&mallory, 1, &[&mallory, &alice, &bob, &laptop, &carol]);
        store
            .publish_device_list(&mallory_box, 1, &everyone)
            .unwrap();
        store
            .publish_device_list(&mallory_box, 2, &signed_list(&mallory, 2, &[&mallory]))
            .unwrap();
        assert!(kept(&alice_box) && kept(&bob_box) && kept(&laptop_box) && kept(&carol_box));

        // While Mallory's list names the laptop, Bob unlinking it keeps it.
        store
            .publish_device_list(
                &mallory_box,
                3,
                &signed_list(&mallory, 3, &[&mallory, &laptop]),
            )
            .unwrap();
        store
            .publish_device_list(&bob_box, 3, &signed_list(&bob, 3, &[&bob]))
            .unwrap();
        assert!(kept(&laptop_box));
        // Once no list names it, the next list that leaves it out removes
        // it (here Mallory's: only the unlinked device's own mailbox is
        // at stake, and nobody vouches for it any more).
        store
            .publish_device_list(&mallory_box, 4, &signed_list(&mallory, 4, &[&mallory]))
            .unwrap();
        assert_eq!(store.usage(&laptop_box).unwrap(), MailboxUsage::default());
        assert!(store.take_bundle(&laptop_box).unwrap().is_none());
        assert!(kept(&alice_box) && kept(&bob_box) && kept(&carol_box));
    }

    /// A stored list that does not decode (as a signed list of the
    /// mailbox's account) leaves nothing to compare, and a new one that
    /// does not decode names no device: publishing either way removes
    /// nothing and does not fail.
    pub(crate) fn device_lists_that_do_not_decode_unlink_nothing(store: &dyn MailboxStore) {
        let (account, owner) = key(50);
        let (device, device_box) = key(51);
        let (other, _) = key(52);
        store
            .publish_prekeys(device.public(), &upload(&device, 0..0), 10)
            .unwrap();
        store
            .enqueue(
                &device_box,
                &MessageId([1; 16]),
                b"x",
                OPEN,
                &QueuePolicy::default(),
                T0,
            )
            .unwrap();
        let with_device = |version| signed_list(&account, version, &[&account, &device]);
        let without_device = |version| signed_list(&account, version, &[&account]);
        let mut forged = without_device(4);
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let junk: [Vec<u8>; 4] = [
            b"not a list".to_vec(),
            forged,
            // Another account's list, stored under this account's mailbox.
            signed_list(&other, 5, &[&other]),
            with_device(6)[..10].to_vec(),
        ];
        let mut version = 1;
        for junk in &junk {
            store
                .publish_device_list(&owner, version, &with_device(version))
                .unwrap();
            // The new list does not decode.
            store
                .publish_device_list(&owner, version + 1, junk)
                .unwrap();
            assert_eq!(store.device_list(&owner).unwrap().as_ref(), Some(junk));
            // The stored one does not.
            store
                .publish_device_list(&owner, version + 2, &without_device(version + 2))
                .unwrap();
            assert_eq!(store.usage(&device_box).unwrap().envelopes, 1);
            version += 3;
        }
        assert!(store.take_bundle(&device_box).unwrap().is_some());
    }

    fn owner() -> (IdentityKeyPair, MailboxAddress) {
        let id = IdentityKeyPair::from_seed(&[3; 32]);
        let address = MailboxAddress::of(id.public());
        (id, address)
    }

    /// Publishes a signed prekey for the identity of `seed`, which makes its
    /// mailbox one that envelopes can be queued for.
    pub(crate) fn register(store: &dyn MailboxStore, seed: u8) -> MailboxAddress {
        let id = IdentityKeyPair::from_seed(&[seed; 32]);
        store
            .publish_prekeys(id.public(), &upload(&id, 0..0), 10)
            .unwrap();
        MailboxAddress::of(id.public())
    }

    fn limits(max_envelopes: u64, max_bytes: u64) -> QueuePolicy {
        QueuePolicy {
            mailbox: MailboxLimits {
                max_envelopes,
                max_bytes,
            },
            ..QueuePolicy::default()
        }
    }

    fn upload(id: &IdentityKeyPair, opk_ids: std::ops::Range<u32>) -> PreKeyUpload {
        let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
        let spk = SignedPreKey::generate(SignedPreKeyId::new(1), id, &mut rng);
        let opks: Vec<_> = opk_ids
            .map(|i| OneTimePreKey::generate(OneTimePreKeyId::new(i), &mut rng))
            .collect();
        PreKeyUpload::new(Some(&spk), &opks)
    }

    pub(crate) fn queue_limits_order_and_ack(store: &dyn MailboxStore) {
        let address = register(store, 3);
        let limits = limits(3, 10);
        let a = store
            .enqueue(&address, &MessageId([1; 16]), b"aaa", OPEN, &limits, T0)
            .unwrap();
        let again = store
            .enqueue(&address, &MessageId([1; 16]), b"aaa", OPEN, &limits, T0)
            .unwrap();
        assert_eq!(
            again,
            Enqueued {
                id: a.id,
                duplicate: true
            }
        );
        let b = store
            .enqueue(&address, &MessageId([2; 16]), b"bbb", OPEN, &limits, T0)
            .unwrap();
        assert!(b.id > a.id && !b.duplicate);
        // Byte limit: 6 + 5 > 10.
        assert!(matches!(
            store.enqueue(&address, &MessageId([3; 16]), b"ccccc", OPEN, &limits, T0),
            Err(StoreError::MailboxFull {
                envelopes: 2,
                bytes: 6,
                ..
            })
        ));
        let c = store
            .enqueue(&address, &MessageId([3; 16]), b"cc", OPEN, &limits, T0)
            .unwrap();
        // Count limit.
        assert!(matches!(
            store.enqueue(&address, &MessageId([4; 16]), b"d", OPEN, &limits, T0),
            Err(StoreError::MailboxFull { envelopes: 3, .. })
        ));
        assert_eq!(
            store.usage(&address).unwrap(),
            MailboxUsage {
                envelopes: 3,
                bytes: 8,
                last_id: c.id
            }
        );

        let page = store.fetch(&address, 0, 2, usize::MAX, T0).unwrap();
        assert_eq!(
            page.envelopes.iter().map(|e| e.id).collect::<Vec<_>>(),
            [a.id, b.id]
        );
        assert!(page.more);
        assert_eq!(page.envelopes[0].payload, b"aaa");
        let page = store.fetch(&address, b.id, 10, usize::MAX, T0).unwrap();
        assert_eq!(page.envelopes.len(), 1);
        assert!(!page.more);
        // Byte budget: always at least one, then stop before overflowing.
        let page = store.fetch(&address, 0, 10, 1, T0).unwrap();
        assert_eq!(page.envelopes.len(), 1);
        assert!(page.more);
        let page = store.fetch(&address, 0, 10, 2 * 12 + 6, T0).unwrap();
        assert_eq!(page.envelopes.len(), 2);

        // Ack only touches this mailbox.
        let other = MailboxAddress::from_bytes([0xEE; 32]);
        assert_eq!(store.ack(&other, &[a.id, b.id]).unwrap(), 0);
        assert_eq!(store.ack(&address, &[a.id, b.id, 12345]).unwrap(), 2);
        assert_eq!(store.ack(&address, &[a.id]).unwrap(), 0);
        assert_eq!(store.usage(&address).unwrap().envelopes, 1);
        // After the ack the same message id is accepted again.
        let a2 = store
            .enqueue(&address, &MessageId([1; 16]), b"aaa", OPEN, &limits, T0)
            .unwrap();
        assert!(a2.id > c.id && !a2.duplicate);
        assert_eq!(store.ack(&address, &[c.id, a2.id]).unwrap(), 2);
        assert_eq!(store.usage(&address).unwrap(), MailboxUsage::default());
        assert_eq!(store.totals().unwrap(), StoreTotals::default());
    }

    pub(crate) fn unregistered_recipients_are_refused(store: &dyn MailboxStore) {
        let nobody = MailboxAddress::from_bytes([0xAB; 32]);
        let policy = QueuePolicy::default();
        assert!(matches!(
            store.enqueue(&nobody, &MessageId([1; 16]), b"x", OPEN, &policy, T0),
            Err(StoreError::UnknownRecipient)
        ));
        // One-time prekeys alone do not make a mailbox.
        let (id, address) = owner();
        let only_one_time = PreKeyUpload {
            signed_prekey: None,
            ..upload(&id, 0..2)
        };
        store
            .publish_prekeys(id.public(), &only_one_time, 10)
            .unwrap();
        assert!(matches!(
            store.enqueue(&address, &MessageId([1; 16]), b"x", OPEN, &policy, T0),
            Err(StoreError::UnknownRecipient)
        ));
        assert_eq!(store.usage(&address).unwrap(), MailboxUsage::default());
        assert_eq!(store.usage(&nobody).unwrap(), MailboxUsage::default());
        assert_eq!(store.totals().unwrap(), StoreTotals::default());
        assert!(
            store
                .fetch(&nobody, 0, 10, usize::MAX, T0)
                .unwrap()
                .envelopes
                .is_empty()
        );
        // A published signed prekey does.
        store
            .publish_prekeys(id.public(), &upload(&id, 0..0), 10)
            .unwrap();
        let queued = store
            .enqueue(&address, &MessageId([1; 16]), b"x", OPEN, &policy, T0)
            .unwrap();
        assert!(!queued.duplicate);
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                envelopes: 1,
                bytes: 1
            }
        );
    }

    pub(crate) fn storage_limit_is_store_wide(store: &dyn MailboxStore) {
        let a = register(store, 1);
        let b = register(store, 2);
        let policy = QueuePolicy {
            max_total_bytes: 10,
            ..QueuePolicy::default()
        };
        let first = store
            .enqueue(&a, &MessageId([1; 16]), b"aaaaaa", OPEN, &policy, T0)
            .unwrap();
        // 6 + 5 > 10, although b's own mailbox is empty.
        assert!(matches!(
            store.enqueue(&b, &MessageId([2; 16]), b"bbbbb", OPEN, &policy, T0),
            Err(StoreError::StorageFull {
                queued_bytes: 6,
                len: 5,
                max_bytes: 10
            })
        ));
        assert_eq!(store.usage(&b).unwrap(), MailboxUsage::default());
        store
            .enqueue(&b, &MessageId([2; 16]), b"bbbb", OPEN, &policy, T0)
            .unwrap();
        assert!(matches!(
            store.enqueue(&a, &MessageId([3; 16]), b"a", OPEN, &policy, T0),
            Err(StoreError::StorageFull {
                queued_bytes: 10,
                ..
            })
        ));
        // At the limit a retry of a queued message is still recognised,
        // and fetching works.
        assert!(
            store
                .enqueue(&a, &MessageId([1; 16]), b"aaaaaa", OPEN, &policy, T0)
                .unwrap()
                .duplicate
        );
        let page = store.fetch(&a, 0, 10, usize::MAX, T0).unwrap();
        assert_eq!(page.envelopes.len(), 1, "nothing queued was dropped");
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                envelopes: 2,
                bytes: 10
            }
        );
        // An ack frees space for anyone.
        assert_eq!(store.ack(&a, &[first.id]).unwrap(), 1);
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                envelopes: 1,
                bytes: 4
            }
        );
        store
            .enqueue(&b, &MessageId([4; 16]), b"bbbbbb", OPEN, &policy, T0)
            .unwrap();
        assert_eq!(store.totals().unwrap().bytes, 10);
    }

    pub(crate) fn expired_envelopes_are_hidden_then_swept(store: &dyn MailboxStore) {
        let a = register(store, 1);
        let b = register(store, 2);
        let policy = QueuePolicy {
            envelope_ttl: std::time::Duration::from_secs(2 * HOUR),
            ..QueuePolicy::default()
        };
        assert_eq!(policy.expiry_hour(T0), T0.hour() + 2);
        // Not on an hour boundary: rounded up to the next one.
        assert_eq!(policy.expiry_hour(at(1)), T0.hour() + 3);
        let old = store
            .enqueue(&a, &MessageId([1; 16]), b"old", OPEN, &policy, T0)
            .unwrap();
        store
            .enqueue(&b, &MessageId([2; 16]), b"other", OPEN, &policy, T0)
            .unwrap();
        let newer = store
            .enqueue(&a, &MessageId([3; 16]), b"newer", OPEN, &policy, at(HOUR))
            .unwrap();
        let ids = |now| -> Vec<u64> {
            store
                .fetch(&a, 0, 10, usize::MAX, now)
                .unwrap()
                .envelopes
                .iter()
                .map(|e| e.id)
                .collect()
        };
        // Kept for the whole time to live...
        assert_eq!(ids(at(2 * HOUR - 1)), [old.id, newer.id]);
        assert_eq!(
            store.sweep_expired(at(2 * HOUR - 1), 100).unwrap(),
            Swept::default()
        );
        // ...and not fetched from then on, nor pushed (push reads through fetch).
        assert_eq!(ids(at(2 * HOUR)), [newer.id]);
        assert!(
            store
                .fetch(&b, 0, 10, usize::MAX, at(2 * HOUR))
                .unwrap()
                .envelopes
                .is_empty()
        );
        // Until swept, expired envelopes still count.
        assert_eq!(store.usage(&a).unwrap().envelopes, 2);
        assert_eq!(store.totals().unwrap().envelopes, 3);

        // The sweep deletes them in batches (oldest expiry first; of two
        // with one expiry hour, either) and fixes every counter.
        let first = store.sweep_expired(at(2 * HOUR), 1).unwrap();
        assert!(
            first
                == Swept {
                    envelopes: 1,
                    bytes: 3
                }
                || first
                    == Swept {
                        envelopes: 1,
                        bytes: 5
                    },
            "{first:?}"
        );
        assert_eq!(
            store.sweep_expired(at(2 * HOUR), 100).unwrap(),
            Swept {
                envelopes: 1,
                bytes: 8 - first.bytes
            }
        );
        assert_eq!(
            store.sweep_expired(at(2 * HOUR), 100).unwrap(),
            Swept::default()
        );
        assert_eq!(
            store.usage(&a).unwrap(),
            MailboxUsage {
                envelopes: 1,
                bytes: 5,
                last_id: newer.id
            }
        );
        assert_eq!(store.usage(&b).unwrap(), MailboxUsage::default());
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                envelopes: 1,
                bytes: 5
            }
        );
        // An acked-then-expired id is simply gone.
        assert_eq!(store.ack(&a, &[old.id]).unwrap(), 0);

        // A retry of an expired, not yet swept message is a new envelope.
        let retry = store
            .enqueue(
                &a,
                &MessageId([3; 16]),
                b"newer",
                OPEN,
                &policy,
                at(3 * HOUR),
            )
            .unwrap();
        assert!(!retry.duplicate && retry.id > newer.id);
        assert_eq!(ids(at(3 * HOUR)), [retry.id]);
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                envelopes: 1,
                bytes: 5
            }
        );
        assert_eq!(store.ack(&a, &[retry.id]).unwrap(), 1);
        assert_eq!(store.totals().unwrap(), StoreTotals::default());
    }

    pub(crate) fn access_keys_guard_mailboxes_with_a_verifier(store: &dyn MailboxStore) {
        let id = IdentityKeyPair::from_seed(&[5; 32]);
        let address = MailboxAddress::of(id.public());
        let key = AccessKey::derive(&id).unwrap();
        let wrong = AccessKey::from_bytes([7; 16]);
        let policy = QueuePolicy::default();
        let send = |n: u8, access: Access<'_>| {
            store.enqueue(&address, &MessageId([n; 16]), &[n], access, &policy, T0)
        };
        let denied = |r: Result<Enqueued, StoreError>| matches!(r, Err(StoreError::AccessDenied));

        // Without a verifier anyone may queue, with a key, a wrong one or none.
        store
            .publish_prekeys(id.public(), &upload(&id, 0..0), 10)
            .unwrap();
        assert!(!send(1, Access::Key(None)).unwrap().duplicate);
        assert!(!send(2, Access::Key(Some(&wrong))).unwrap().duplicate);

        // Once the owner published a verifier: no key, or a wrong one, is
        // refused and stores nothing, not even a retry of a queued id (which
        // would tell a stranger what is queued).
        let with_verifier = upload(&id, 0..0).with_access_verifier(key.verifier());
        store
            .publish_prekeys(id.public(), &with_verifier, 10)
            .unwrap();
        for access in [Access::Key(None), Access::Key(Some(&wrong))] {
            assert!(denied(send(3, access)));
            assert!(denied(send(1, access)));
        }
        assert_eq!(store.usage(&address).unwrap().envelopes, 2);
        // The key is admitted, and so is a first contact the relay's
        // allowance admitted.
        assert!(!send(3, Access::Key(Some(&key))).unwrap().duplicate);
        assert!(send(3, Access::Key(Some(&key))).unwrap().duplicate);
        assert!(!send(4, Access::FirstContact).unwrap().duplicate);
        assert!(send(4, Access::FirstContact).unwrap().duplicate);
        assert_eq!(store.usage(&address).unwrap().envelopes, 4);
        // Access comes before the limits: at the limit a contact is told
        // the mailbox is full, a stranger only that it has no access.
        let full = QueuePolicy {
            mailbox: MailboxLimits {
                max_envelopes: 4,
                max_bytes: 1000,
            },
            ..policy
        };
        assert!(matches!(
            store.enqueue(
                &address,
                &MessageId([9; 16]),
                b"x",
                Access::Key(Some(&key)),
                &full,
                T0
            ),
            Err(StoreError::MailboxFull { .. })
        ));
        assert!(matches!(
            store.enqueue(&address, &MessageId([9; 16]), b"x", OPEN, &full, T0),
            Err(StoreError::AccessDenied)
        ));

        // A new signed prekey without a verifier keeps the published one.
        store
            .publish_prekeys(id.public(), &upload(&id, 0..0), 10)
            .unwrap();
        assert!(denied(send(5, OPEN)));
        // A new verifier replaces it: the old key no longer opens the mailbox.
        let new_key = AccessKey::from_bytes([8; 16]);
        let replaced = upload(&id, 0..0).with_access_verifier(new_key.verifier());
        store.publish_prekeys(id.public(), &replaced, 10).unwrap();
        assert!(denied(send(5, Access::Key(Some(&key)))));
        assert!(!send(5, Access::Key(Some(&new_key))).unwrap().duplicate);
        // A refused upload changes nothing, its verifier included.
        let refused = upload(&id, 0..20).with_access_verifier(key.verifier());
        assert!(matches!(
            store.publish_prekeys(id.public(), &refused, 10),
            Err(StoreError::TooManyPreKeys { .. })
        ));
        assert!(denied(send(6, Access::Key(Some(&key)))));

        // No access opens an unregistered mailbox, and a verifier without a
        // signed prekey is not stored: it neither registers the mailbox nor
        // stays for the signed prekey published later.
        let lone = IdentityKeyPair::from_seed(&[6; 32]);
        let lone_address = MailboxAddress::of(lone.public());
        let lone_key = AccessKey::derive(&lone).unwrap();
        let verifier_only = PreKeyUpload {
            access_verifier: Some(lone_key.verifier()),
            ..PreKeyUpload::default()
        };
        store
            .publish_prekeys(lone.public(), &verifier_only, 10)
            .unwrap();
        for access in [Access::FirstContact, Access::Key(Some(&lone_key))] {
            assert!(matches!(
                store.enqueue(
                    &lone_address,
                    &MessageId([1; 16]),
                    b"x",
                    access,
                    &policy,
                    T0
                ),
                Err(StoreError::UnknownRecipient)
            ));
        }
        store
            .publish_prekeys(lone.public(), &upload(&lone, 0..0), 10)
            .unwrap();
        assert!(
            !store
                .enqueue(&lone_address, &MessageId([1; 16]), b"x", OPEN, &policy, T0)
                .unwrap()
                .duplicate
        );
    }

    pub(crate) fn prekeys_are_handed_out_once(store: &dyn MailboxStore) {
        let (id, address) = owner();
        assert!(store.take_bundle(&address).unwrap().is_none());
        assert_eq!(
            store
                .publish_prekeys(id.public(), &upload(&id, 0..3), 5)
                .unwrap(),
            3
        );
        // Same ids again replace, not add.
        assert_eq!(
            store
                .publish_prekeys(id.public(), &upload(&id, 1..4), 5)
                .unwrap(),
            4
        );
        assert!(matches!(
            store.publish_prekeys(id.public(), &upload(&id, 10..12), 5),
            Err(StoreError::TooManyPreKeys {
                would_have: 6,
                max: 5
            })
        ));
        assert_eq!(store.one_time_prekey_count(&address).unwrap(), 4);

        let mut seen = Vec::new();
        for expected_remaining in (0..4).rev() {
            let taken = store.take_bundle(&address).unwrap().unwrap();
            taken.bundle.verify().unwrap();
            assert_eq!(taken.bundle.identity_key, *id.public());
            assert_eq!(taken.remaining, expected_remaining);
            seen.push(taken.bundle.one_time_prekey.unwrap().0.get());
        }
        assert_eq!(seen, [0, 1, 2, 3]);
        let taken = store.take_bundle(&address).unwrap().unwrap();
        assert!(taken.bundle.one_time_prekey.is_none());
        assert_eq!(taken.remaining, 0);

        // Replace deletes what was stored.
        store
            .publish_prekeys(id.public(), &upload(&id, 0..2), 5)
            .unwrap();
        let mut replace = upload(&id, 7..8);
        replace.replace_one_time_prekeys = true;
        assert_eq!(store.publish_prekeys(id.public(), &replace, 5).unwrap(), 1);
        let taken = store.take_bundle(&address).unwrap().unwrap();
        assert_eq!(
            taken.bundle.one_time_prekey.map(|k| k.0),
            Some(OneTimePreKeyId::new(7))
        );
    }

    // KEM prekeys (protocol 4).

    /// `n` KEM prekeys of `id` with ids from `first`.
    fn kem_keys(id: &IdentityKeyPair, first: u32, n: u32) -> Vec<sotto_core::KemPreKey> {
        (first..first + n)
            .map(|i| {
                let mut seed = [0u8; 64];
                seed[..4].copy_from_slice(&i.to_be_bytes());
                sotto_core::KemPreKey::from_seed(sotto_core::KemPreKeyId::new(i), id, &seed)
            })
            .collect()
    }

    fn kem_limits(max_one_time: u32, max_kem: u32) -> PreKeyLimits {
        PreKeyLimits {
            max_one_time,
            max_kem,
        }
    }

    /// Each one-time KEM prekey goes into one v2 bundle, oldest first,
    /// together with a one-time prekey; then the last-resort one, as often
    /// as asked. A v1 fetch takes no KEM prekey.
    pub(crate) fn kem_prekeys_are_handed_out_once_then_the_last_resort_one(
        store: &dyn MailboxStore,
    ) {
        let (id, address) = owner();
        let last_resort = kem_keys(&id, 100, 1).remove(0);
        let upload = upload(&id, 0..4)
            .with_last_resort_kem_prekey(&last_resort)
            .with_one_time_kem_prekeys(&kem_keys(&id, 1, 3), false);
        let counts = store
            .publish_prekeys_with_kem(id.public(), &upload, &kem_limits(10, 10))
            .unwrap();
        assert_eq!(
            counts,
            PreKeyCounts {
                one_time: 4,
                kem: Some(3)
            }
        );
        assert_eq!(store.kem_prekey_count(&address).unwrap(), Some(3));

        // A v1 fetch: a v1 bundle, a one-time prekey gone, the KEM ones kept.
        let v1 = store.take_bundle(&address).unwrap().unwrap();
        assert_eq!(v1.bundle.version(), 1);
        v1.bundle.verify().unwrap();
        assert_eq!(v1.remaining, 3);
        assert_eq!(store.kem_prekey_count(&address).unwrap(), Some(3));

        let mut kem_ids = Vec::new();
        for expected in (0..3).rev() {
            let taken = store.take_bundle_v2(&address).unwrap().unwrap();
            taken.bundle.verify().unwrap();
            assert_eq!(taken.bundle.versions, ProtocolVersions::V1_AND_V2);
            assert_eq!(taken.kem_remaining, Some(expected));
            kem_ids.push(taken.bundle.kem_prekey.map(|k| k.id.get()));
        }
        assert_eq!(kem_ids, [Some(1), Some(2), Some(3)]);
        // None left: the last-resort one, every time, without a one-time
        // prekey once those are gone too.
        for _ in 0..2 {
            let taken = store.take_bundle_v2(&address).unwrap().unwrap();
            taken.bundle.verify().unwrap();
            assert_eq!(taken.bundle.kem_prekey, Some(last_resort.signed_public()));
            assert_eq!(taken.kem_remaining, Some(0));
            assert_eq!(taken.remaining, 0);
        }
        assert_eq!(store.kem_prekey_count(&address).unwrap(), Some(0));

        // An owner that speaks v2 only: its bundles say so and verify.
        let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
        let spk = SignedPreKey::generate(SignedPreKeyId::new(9), &id, &mut rng);
        let signed = crate::protocol::SignedPreKeyPublic::new(
            spk.id(),
            *spk.public(),
            spk.v2_only_signature(&id),
        );
        let v2_only =
            PreKeyUpload::from_public(Some(signed), Vec::new()).with_signed_prekey_v2_only(true);
        store
            .publish_prekeys_with_kem(id.public(), &v2_only, &kem_limits(10, 10))
            .unwrap();
        let taken = store.take_bundle_v2(&address).unwrap().unwrap();
        assert_eq!(taken.bundle.versions, ProtocolVersions::V2_ONLY);
        taken.bundle.verify().unwrap();
        // No v1 bundle of it (v2_only_owners_have_no_v1_bundle).
        assert!(store.take_bundle(&address).unwrap().is_none());
    }

    /// A signed prekey signed for protocol v2 only and its upload.
    fn v2_only_upload(id: &IdentityKeyPair, opk_ids: std::ops::Range<u32>) -> PreKeyUpload {
        let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
        let spk = SignedPreKey::generate(SignedPreKeyId::new(7), id, &mut rng);
        let signed = crate::protocol::SignedPreKeyPublic::new(
            spk.id(),
            *spk.public(),
            spk.v2_only_signature(id),
        );
        let one_time = upload(id, opk_ids).one_time_prekeys;
        PreKeyUpload::from_public(Some(signed), one_time).with_signed_prekey_v2_only(true)
    }

    /// An owner whose signed prekey is signed for protocol v2 only has no
    /// v1 bundle (none would verify, docs/protocol.md §16.7): a v1 fetch
    /// finds nothing, as for an unknown mailbox, and takes no one-time
    /// prekey; nor does a v2 fetch while it has no KEM prekey to make a v2
    /// bundle with. Its mailbox is registered all the same.
    pub(crate) fn v2_only_owners_have_no_v1_bundle(store: &dyn MailboxStore) {
        let (id, address) = key(70);
        let nobody = MailboxAddress::from_bytes([0xAB; 32]);
        assert!(store.take_bundle(&nobody).unwrap().is_none());
        let counts = store
            .publish_prekeys_with_kem(id.public(), &v2_only_upload(&id, 0..3), &kem_limits(10, 10))
            .unwrap();
        assert_eq!(
            counts,
            PreKeyCounts {
                one_time: 3,
                kem: None
            }
        );
        // No KEM prekey yet: no bundle of either version, nothing taken.
        for _ in 0..2 {
            assert!(store.take_bundle(&address).unwrap().is_none());
            assert!(store.take_bundle_v2(&address).unwrap().is_none());
        }
        assert_eq!(store.one_time_prekey_count(&address).unwrap(), 3);
        let queued = store
            .enqueue(
                &address,
                &MessageId([1; 16]),
                b"x",
                OPEN,
                &QueuePolicy::default(),
                T0,
            )
            .unwrap();
        assert!(!queued.duplicate, "registered all the same");

        // With a one-time KEM prekey and no last-resort one: v2 bundles
        // while it lasts.
        let one_time_kem =
            PreKeyUpload::default().with_one_time_kem_prekeys(&kem_keys(&id, 1, 1), false);
        store
            .publish_prekeys_with_kem(id.public(), &one_time_kem, &kem_limits(10, 10))
            .unwrap();
        assert!(store.take_bundle(&address).unwrap().is_none());
        assert_eq!(store.one_time_prekey_count(&address).unwrap(), 3);
        let taken = store.take_bundle_v2(&address).unwrap().unwrap();
        taken.bundle.verify().unwrap();
        assert_eq!(taken.bundle.versions, ProtocolVersions::V2_ONLY);
        assert_eq!(taken.bundle.kem_prekey.map(|k| k.id.get()), Some(1));
        assert_eq!(taken.remaining, 2);
        assert!(store.take_bundle_v2(&address).unwrap().is_none());
        assert_eq!(store.one_time_prekey_count(&address).unwrap(), 2);

        // With a last-resort KEM prekey: v2 bundles every time, still no
        // v1 bundle, and v1 fetches leave the one-time prekeys alone.
        let last_resort =
            PreKeyUpload::default().with_last_resort_kem_prekey(&kem_keys(&id, 100, 1).remove(0));
        store
            .publish_prekeys_with_kem(id.public(), &last_resort, &kem_limits(10, 10))
            .unwrap();
        for _ in 0..3 {
            assert!(store.take_bundle(&address).unwrap().is_none());
        }
        assert_eq!(store.one_time_prekey_count(&address).unwrap(), 2);
        let taken = store.take_bundle_v2(&address).unwrap().unwrap();
        taken.bundle.verify().unwrap();
        assert_eq!(taken.bundle.versions, ProtocolVersions::V2_ONLY);
        assert_eq!(taken.remaining, 1);

        // A signed prekey for both versions again: v1 bundles again.
        store
            .publish_prekeys_with_kem(id.public(), &upload(&id, 0..0), &kem_limits(10, 10))
            .unwrap();
        let v1 = store.take_bundle(&address).unwrap().unwrap();
        v1.bundle.verify().unwrap();
        assert_eq!(v1.remaining, 0);
    }

    /// `max_kem` limits the one-time KEM prekeys as `max_one_time` the
    /// others (a refused upload stores nothing); same ids replace; the
    /// replace flag deletes the stored ones first.
    pub(crate) fn kem_prekey_limits_and_replace(store: &dyn MailboxStore) {
        let (id, address) = owner();
        let last_resort = kem_keys(&id, 100, 1).remove(0);
        let first = upload(&id, 0..1)
            .with_last_resort_kem_prekey(&last_resort)
            .with_one_time_kem_prekeys(&kem_keys(&id, 1, 2), false);
        store
            .publish_prekeys_with_kem(id.public(), &first, &kem_limits(5, 3))
            .unwrap();
        // Ids 2 and 3: one new, one replaced.
        let more = PreKeyUpload::default().with_one_time_kem_prekeys(&kem_keys(&id, 2, 2), false);
        let counts = store
            .publish_prekeys_with_kem(id.public(), &more, &kem_limits(5, 3))
            .unwrap();
        assert_eq!(counts.kem, Some(3));
        let too_many = upload(&id, 1..2).with_one_time_kem_prekeys(&kem_keys(&id, 4, 1), false);
        assert!(matches!(
            store.publish_prekeys_with_kem(id.public(), &too_many, &kem_limits(5, 3)),
            Err(StoreError::TooManyKemPreKeys {
                would_have: 4,
                max: 3
            })
        ));
        // Nothing of the refused upload was stored.
        assert_eq!(store.one_time_prekey_count(&address).unwrap(), 1);
        assert_eq!(store.kem_prekey_count(&address).unwrap(), Some(3));

        let replace = PreKeyUpload::default().with_one_time_kem_prekeys(&kem_keys(&id, 7, 1), true);
        let counts = store
            .publish_prekeys_with_kem(id.public(), &replace, &kem_limits(5, 3))
            .unwrap();
        assert_eq!(
            counts,
            PreKeyCounts {
                one_time: 1,
                kem: Some(1)
            }
        );
        let taken = store.take_bundle_v2(&address).unwrap().unwrap();
        assert_eq!(taken.bundle.kem_prekey.map(|k| k.id.get()), Some(7));
        let taken = store.take_bundle_v2(&address).unwrap().unwrap();
        assert_eq!(taken.bundle.kem_prekey.map(|k| k.id.get()), Some(100));
    }

    /// An owner that published no KEM prekey has no KEM stock, and its
    /// v2 fetch is a v1 bundle (its one-time prekey taken as ever).
    pub(crate) fn owners_without_kem_prekeys_get_v1_bundles(store: &dyn MailboxStore) {
        let (id, address) = owner();
        assert!(store.take_bundle_v2(&address).unwrap().is_none());
        assert_eq!(store.kem_prekey_count(&address).unwrap(), None);
        let counts = store
            .publish_prekeys_with_kem(id.public(), &upload(&id, 0..2), &kem_limits(5, 5))
            .unwrap();
        assert_eq!(
            counts,
            PreKeyCounts {
                one_time: 2,
                kem: None
            }
        );
        let taken = store.take_bundle_v2(&address).unwrap().unwrap();
        assert_eq!(taken.bundle.version(), 1);
        taken.bundle.verify().unwrap();
        assert_eq!((taken.remaining, taken.kem_remaining), (1, None));
    }

    /// Unlinking a device deletes its KEM prekeys with the rest of its
    /// registration: registered afresh, it has none.
    pub(crate) fn unlinking_removes_kem_prekeys(store: &dyn MailboxStore) {
        let (account, owner) = key(50);
        let (laptop, laptop_box) = key(51);
        store
            .publish_prekeys(account.public(), &upload(&account, 0..1), 10)
            .unwrap();
        let with_kem = upload(&laptop, 0..1)
            .with_last_resort_kem_prekey(&kem_keys(&laptop, 100, 1).remove(0))
            .with_one_time_kem_prekeys(&kem_keys(&laptop, 1, 2), false);
        store
            .publish_prekeys_with_kem(laptop.public(), &with_kem, &kem_limits(10, 10))
            .unwrap();
        store
            .publish_device_list(&owner, 1, &signed_list(&account, 1, &[&account, &laptop]))
            .unwrap();
        store
            .publish_device_list(&owner, 2, &signed_list(&account, 2, &[&account]))
            .unwrap();
        assert_eq!(store.kem_prekey_count(&laptop_box).unwrap(), None);
        assert!(store.take_bundle_v2(&laptop_box).unwrap().is_none());
        store
            .publish_prekeys(laptop.public(), &upload(&laptop, 0..0), 10)
            .unwrap();
        let taken = store.take_bundle_v2(&laptop_box).unwrap().unwrap();
        assert_eq!(taken.bundle.version(), 1);
        assert_eq!(taken.kem_remaining, None);
    }

    // Multi-recipient send (`enqueue_many`).

    /// A `SendMulti` recipient of the mailbox `to`, with message id `n`.
    pub(crate) fn to(to: &MailboxAddress, n: u8, header: &[u8]) -> MultiRecipient {
        MultiRecipient::new(*to, MessageId([n; 16]), None, header.to_vec())
    }

    /// A `first_contact` that admits nobody and must not be asked.
    fn never(_: usize) -> bool {
        panic!("no recipient here needs a first-contact allowance")
    }

    /// The envelopes `address` is given by a fetch at `now`.
    fn payloads(store: &dyn MailboxStore, address: &MailboxAddress, now: UnixTime) -> Vec<Vec<u8>> {
        store
            .fetch(address, 0, 100, usize::MAX, now)
            .unwrap()
            .envelopes
            .into_iter()
            .map(|e| e.payload)
            .collect()
    }

    /// The results of `enqueue_many`, each as an envelope id and whether it
    /// was a duplicate, or the refusal's name.
    fn summary(results: &[Result<Enqueued, StoreError>]) -> Vec<Result<(u64, bool), String>> {
        results
            .iter()
            .map(|r| match r {
                Ok(e) => Ok((e.id, e.duplicate)),
                Err(e) => Err(format!("{e:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap_or("")
                    .to_owned()),
            })
            .collect()
    }

    /// Each recipient's envelope is its header followed by the body, byte
    /// for byte, counted in full against its mailbox; a resent request
    /// stores nothing twice, and shares its dedupe with single sends.
    pub(crate) fn multi_send_queues_header_and_body_for_each_recipient(store: &dyn MailboxStore) {
        let (a, b, c) = (register(store, 1), register(store, 2), register(store, 3));
        let policy = QueuePolicy::default();
        let recipients = [to(&a, 1, b"ha"), to(&b, 2, b"hb-longer"), to(&c, 3, b"")];
        let first = store
            .enqueue_many(&recipients, b"BODY", &mut never, &policy, T0)
            .unwrap();
        let ids: Vec<u64> = first.iter().map(|r| r.as_ref().unwrap().id).collect();
        assert!(first.iter().all(|r| !r.as_ref().unwrap().duplicate));
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "ids in recipient order"
        );
        assert_eq!(payloads(store, &a, T0), [b"haBODY".to_vec()]);
        assert_eq!(payloads(store, &b, T0), [b"hb-longerBODY".to_vec()]);
        assert_eq!(payloads(store, &c, T0), [b"BODY".to_vec()]);
        assert_eq!(
            store.usage(&b).unwrap(),
            MailboxUsage {
                envelopes: 1,
                bytes: 13,
                last_id: ids[1]
            }
        );
        // The store holds the body once (or a copy per recipient): the
        // headers, then the body.
        let totals = StoreTotals {
            envelopes: 3,
            bytes: 2 + 9 + body_held(store, 4, 3),
        };
        assert_eq!(store.totals().unwrap(), totals);

        // The same request again (its answer was lost): nothing new.
        let again = store
            .enqueue_many(&recipients, b"BODY", &mut never, &policy, T0)
            .unwrap();
        assert_eq!(
            summary(&again),
            ids.iter().map(|id| Ok((*id, true))).collect::<Vec<_>>()
        );
        assert_eq!(store.totals().unwrap(), totals);
        // A single send with a queued message id is a duplicate too.
        let single = store
            .enqueue(&a, &MessageId([1; 16]), b"haBODY", OPEN, &policy, T0)
            .unwrap();
        assert_eq!((single.id, single.duplicate), (ids[0], true));

        // A mailbox named twice: two envelopes with two message ids, one
        // with one (the second is the first's duplicate).
        let twice = [
            to(&a, 10, b"x"),
            to(&a, 10, b"x"),
            to(&a, 11, b"y"),
            to(&b, 10, b"z"),
        ];
        let results = store
            .enqueue_many(&twice, b"-", &mut never, &policy, T0)
            .unwrap();
        let s = summary(&results);
        let first_id = results[0].as_ref().unwrap().id;
        assert_eq!(s[0], Ok((first_id, false)));
        assert_eq!(s[1], Ok((first_id, true)));
        assert!(matches!(s[2], Ok((id, false)) if id > first_id));
        assert!(matches!(s[3], Ok((id, false)) if id > first_id));
        assert_eq!(payloads(store, &a, T0), [&b"haBODY"[..], b"x-", b"y-"]);
        assert_eq!(payloads(store, &b, T0), [&b"hb-longerBODY"[..], b"z-"]);

        // An empty body: the envelopes are the headers alone.
        let headers_only = store
            .enqueue_many(&[to(&c, 20, b"only")], b"", &mut never, &policy, T0)
            .unwrap();
        assert!(!headers_only[0].as_ref().unwrap().duplicate);
        assert_eq!(payloads(store, &c, T0), [&b"BODY"[..], b"only"]);
    }

    /// A refusal concerns its recipient alone, with what a single send to
    /// it would have been refused for; the others are stored. A recipient
    /// without access is offered to the first-contact allowance, once.
    pub(crate) fn multi_send_refusals_concern_one_recipient(store: &dyn MailboxStore) {
        let a = register(store, 1);
        let full = register(store, 2);
        let nobody = MailboxAddress::from_bytes([0xAB; 32]);
        let (guarded_id, guarded) = key(4);
        let key = AccessKey::derive(&guarded_id).unwrap();
        store
            .publish_prekeys(
                guarded_id.public(),
                &upload(&guarded_id, 0..0).with_access_verifier(key.verifier()),
                10,
            )
            .unwrap();
        let policy = limits(2, 1000);
        for n in 0..2 {
            store
                .enqueue(&full, &MessageId([n; 16]), b"old", OPEN, &policy, T0)
                .unwrap();
        }
        let with_key = MultiRecipient::new(guarded, MessageId([5; 16]), Some(key), b"k".to_vec());
        let recipients = [
            to(&a, 1, b"a"),
            to(&full, 2, b"f"),
            to(&nobody, 3, b"n"),
            to(&guarded, 4, b"stranger"),
            with_key,
            to(&guarded, 6, b"admitted stranger"),
        ];
        let mut asked = Vec::new();
        let results = store
            .enqueue_many(
                &recipients,
                b"!",
                &mut |i| {
                    asked.push(i);
                    i == 5
                },
                &policy,
                T0,
            )
            .unwrap();
        assert_eq!(asked, [3, 5], "only those without access, once each");
        let s = summary(&results);
        assert!(matches!(s[0], Ok((_, false))));
        assert_eq!(s[1], Err("MailboxFull".to_owned()));
        assert_eq!(s[2], Err("UnknownRecipient".to_owned()));
        assert_eq!(s[3], Err("AccessDenied".to_owned()));
        assert!(matches!(s[4], Ok((_, false))));
        assert!(matches!(s[5], Ok((_, false))));
        assert_eq!(payloads(store, &a, T0), [b"a!".to_vec()]);
        assert_eq!(
            payloads(store, &full, T0),
            [b"old".to_vec(), b"old".to_vec()]
        );
        assert_eq!(
            payloads(store, &guarded, T0),
            [b"k!".to_vec(), b"admitted stranger!".to_vec()]
        );
        assert_eq!(store.usage(&nobody).unwrap(), MailboxUsage::default());
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                envelopes: 5,
                bytes: 2 * 3 + (1 + 1) + body_held(store, 1, 3) + 17
            }
        );

        // What the earlier recipients stored counts against the later ones,
        // in order: in the mailbox...
        let b = register(store, 7);
        let results = store
            .enqueue_many(
                &[to(&b, 1, b"1"), to(&b, 2, b"2"), to(&b, 3, b"3")],
                b"",
                &mut never,
                &limits(2, 1000),
                T0,
            )
            .unwrap();
        let s = summary(&results);
        assert!(matches!((&s[0], &s[1]), (Ok((_, false)), Ok((_, false)))));
        assert_eq!(s[2], Err("MailboxFull".to_owned()));
        // ...and in the store as a whole, which holds the body once: the
        // first takes 5 + 4 of 10 bytes, the second 1, the third finds no
        // room (with a copy per recipient: 5 + 4 and 1 + 4 of 14).
        let c = register(store, 8);
        let queued = store.totals().unwrap().bytes;
        let room = 10 + body_held(store, 4, 2) - 4;
        let policy = QueuePolicy {
            max_total_bytes: queued + room,
            ..QueuePolicy::default()
        };
        let results = store
            .enqueue_many(
                &[to(&c, 1, b"11111"), to(&a, 9, b"2"), to(&c, 3, b"3")],
                b"body",
                &mut never,
                &policy,
                T0,
            )
            .unwrap();
        let s = summary(&results);
        assert!(matches!((&s[0], &s[1]), (Ok((_, false)), Ok((_, false)))));
        assert_eq!(s[2], Err("StorageFull".to_owned()));
        assert_eq!(store.usage(&c).unwrap().envelopes, 1);
        assert_eq!(store.totals().unwrap().bytes, queued + room);
    }

    /// Each recipient's ack deletes its envelope alone; once all are
    /// acknowledged nothing is left, and the message ids are forgotten.
    pub(crate) fn multi_send_envelopes_are_acked_one_by_one(store: &dyn MailboxStore) {
        let (a, b, c) = (register(store, 1), register(store, 2), register(store, 3));
        let policy = QueuePolicy::default();
        let recipients = [to(&a, 1, b"ha"), to(&b, 2, b"hb"), to(&c, 3, b"hc")];
        let body = vec![0x5A; 1000];
        let ids: Vec<u64> = store
            .enqueue_many(&recipients, &body, &mut never, &policy, T0)
            .unwrap()
            .iter()
            .map(|r| r.as_ref().unwrap().id)
            .collect();
        let envelope = |header: &[u8]| [header, &body[..]].concat();
        // Someone else's id is ignored; the owner's deletes its copy only.
        assert_eq!(store.ack(&a, &[ids[1], ids[2]]).unwrap(), 0);
        assert_eq!(store.ack(&a, &[ids[0]]).unwrap(), 1);
        assert!(payloads(store, &a, T0).is_empty());
        assert_eq!(store.usage(&a).unwrap(), MailboxUsage::default());
        assert_eq!(payloads(store, &b, T0), [envelope(b"hb")]);
        assert_eq!(payloads(store, &c, T0), [envelope(b"hc")]);
        // The body stays while anyone holds it.
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                envelopes: 2,
                bytes: 2 * 2 + body_held(store, 1000, 2)
            }
        );
        assert_eq!(store.ack(&b, &[ids[1]]).unwrap(), 1);
        assert_eq!(store.totals().unwrap().bytes, 2 + 1000);
        assert_eq!(payloads(store, &c, T0), [envelope(b"hc")]);
        assert_eq!(store.ack(&c, &[ids[2], ids[2]]).unwrap(), 1);
        assert_eq!(store.totals().unwrap(), StoreTotals::default());
        // Acknowledged message ids are forgotten: the same request stores
        // anew.
        let again = store
            .enqueue_many(&recipients, &body, &mut never, &policy, T0)
            .unwrap();
        assert!(
            again
                .iter()
                .all(|r| matches!(r, Ok(e) if !e.duplicate && e.id > ids[2]))
        );
        assert_eq!(payloads(store, &a, T0), [envelope(b"ha")]);
    }

    /// The envelopes of a multi-recipient send expire as single ones do:
    /// hidden from their expiry hour, swept with their counters, and a
    /// resend of an expired one is a new envelope.
    pub(crate) fn multi_send_envelopes_expire_as_single_ones(store: &dyn MailboxStore) {
        let (a, b) = (register(store, 1), register(store, 2));
        let policy = QueuePolicy {
            envelope_ttl: std::time::Duration::from_secs(2 * HOUR),
            ..QueuePolicy::default()
        };
        let recipients = [to(&a, 1, b"ha"), to(&b, 2, b"hb")];
        let old = store
            .enqueue_many(&recipients, b"BODY", &mut never, &policy, T0)
            .unwrap();
        let single = store
            .enqueue(&a, &MessageId([9; 16]), b"single", OPEN, &policy, at(HOUR))
            .unwrap();
        assert_eq!(
            payloads(store, &a, at(2 * HOUR - 1)),
            [&b"haBODY"[..], b"single"]
        );
        assert_eq!(payloads(store, &a, at(2 * HOUR)), [b"single".to_vec()]);
        assert!(payloads(store, &b, at(2 * HOUR)).is_empty());
        assert_eq!(store.usage(&a).unwrap().envelopes, 2, "counted until swept");

        // Resent after it expired, before the sweep: a new envelope (with
        // a body of its own) in place of a's expired one; b's stays
        // expired, holding the old body.
        let resent = store
            .enqueue_many(&recipients[..1], b"BODY", &mut never, &policy, at(2 * HOUR))
            .unwrap();
        let resent = resent[0].as_ref().unwrap();
        assert!(!resent.duplicate && resent.id > single.id);
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                envelopes: 3,
                bytes: 6 + (2 + 4) + (2 + 4)
            }
        );
        assert_eq!(
            store.sweep_expired(at(2 * HOUR), 100).unwrap(),
            Swept {
                envelopes: 1,
                bytes: 6
            }
        );
        assert_eq!(store.usage(&b).unwrap(), MailboxUsage::default());
        assert_eq!(
            payloads(store, &a, at(2 * HOUR)),
            [&b"single"[..], b"haBODY"]
        );
        assert_eq!(store.ack(&a, &[old[0].as_ref().unwrap().id]).unwrap(), 0);
        // The rest expires in its turn.
        assert_eq!(
            store.sweep_expired(at(4 * HOUR), 100).unwrap(),
            Swept {
                envelopes: 2,
                bytes: 12
            }
        );
        assert_eq!(store.totals().unwrap(), StoreTotals::default());
    }

    /// A device that is unlinked loses its multi-recipient envelopes with
    /// its mailbox; the other recipients keep theirs.
    pub(crate) fn unlinking_removes_a_devices_multi_send_envelopes(store: &dyn MailboxStore) {
        let (account, owner) = key(60);
        let (laptop, laptop_box) = key(61);
        let (tablet, tablet_box) = key(62);
        for id in [&account, &laptop, &tablet] {
            store
                .publish_prekeys(id.public(), &upload(id, 0..0), 10)
                .unwrap();
        }
        store
            .publish_device_list(
                &owner,
                1,
                &signed_list(&account, 1, &[&account, &laptop, &tablet]),
            )
            .unwrap();
        let recipients = [
            to(&owner, 1, b"o"),
            to(&laptop_box, 2, b"l"),
            to(&tablet_box, 3, b"t"),
        ];
        store
            .enqueue_many(
                &recipients,
                b"BODY",
                &mut never,
                &QueuePolicy::default(),
                T0,
            )
            .unwrap();
        store
            .publish_device_list(&owner, 2, &signed_list(&account, 2, &[&account, &tablet]))
            .unwrap();
        assert_eq!(store.usage(&laptop_box).unwrap(), MailboxUsage::default());
        assert_eq!(payloads(store, &owner, T0), [b"oBODY".to_vec()]);
        assert_eq!(payloads(store, &tablet_box, T0), [b"tBODY".to_vec()]);
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                envelopes: 2,
                bytes: 2 + body_held(store, 4, 2)
            }
        );
        assert_eq!(store.usage(&tablet_box).unwrap().bytes, 5);
    }
}
