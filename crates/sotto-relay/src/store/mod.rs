//! Mailbox storage: the queues of envelopes and the prekey directory.
//!
//! The relay talks to storage only through [`MailboxStore`]. Two backends
//! ship: [`SqliteStore`] (the default; one file, durable, survives a
//! restart) and [`MemoryStore`] (tests, throwaway relays).
//!
//! # Contract for backends
//!
//! The trait is synchronous; the server calls it from
//! `tokio::task::spawn_blocking`, so a backend may block on disk or network.
//! It must not assume it is the only process using the data: every method is
//! one atomic operation against shared state (the SQLite backend uses one
//! `BEGIN IMMEDIATE` transaction per call, so several relay processes can
//! share a database file). In particular:
//!
//! - [`take_bundle`](MailboxStore::take_bundle) removes the one-time prekey
//!   it returns in the same atomic step, so no key is handed out twice, even
//!   to concurrent callers in different processes.
//! - [`enqueue`](MailboxStore::enqueue) checks the limits and inserts in the
//!   same atomic step, and returns only once the envelope is durable (for a
//!   durable backend).
//! - Envelope ids are positive, unique, never reused, and become visible in
//!   a mailbox in increasing order: once a reader has seen id `n`, no
//!   envelope with a smaller id appears later in that mailbox. The server
//!   relies on this to push only envelopes newer than what a client was told
//!   to fetch.
//!
//! Live push is signalled inside one relay process; a multi-process
//! deployment still delivers everything through `Fetch`, and would need a
//! shared notification channel for pushes across processes.

mod memory;
mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use sotto_core::{IdentityKey, PreKeyBundle};

use crate::address::MailboxAddress;
use crate::envelope::{Envelope, MessageId};
use crate::protocol::PreKeyUpload;

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

/// What a mailbox currently holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxUsage {
    /// Envelopes queued.
    pub envelopes: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// The highest queued envelope id (0 when empty).
    pub last_id: u64,
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

/// Result of [`MailboxStore::fetch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchedPage {
    /// Envelopes, oldest first.
    pub envelopes: Vec<Envelope>,
    /// Further envelopes exist after the last one returned.
    pub more: bool,
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

/// Why a storage operation failed. Every failure leaves the stored state as
/// it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
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
    /// The upload would leave more one-time prekeys than allowed.
    #[error("{would_have} one-time prekeys exceed the maximum of {max}")]
    TooManyPreKeys {
        /// Stored keys after the upload.
        would_have: u64,
        /// The limit.
        max: u32,
    },
    /// A stored record does not decode.
    #[error("corrupt stored record: {0}")]
    Corrupt(&'static str),
    /// The backend failed (I/O, database, lock).
    #[error("storage backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Backend(Box::new(e))
    }
}

/// Storage of mailboxes and the prekey directory. See the module docs for
/// the atomicity and ordering every backend must provide.
pub trait MailboxStore: Send + Sync + 'static {
    /// Publishes `owner`'s prekeys: replaces the signed prekey if one is
    /// given, optionally deletes the stored one-time prekeys, then adds the
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
    /// is removed atomically. `None` if no signed prekey was published.
    fn take_bundle(&self, address: &MailboxAddress) -> Result<Option<TakenBundle>, StoreError>;

    /// How many one-time prekeys `address` has left.
    fn one_time_prekey_count(&self, address: &MailboxAddress) -> Result<u32, StoreError>;

    /// Queues `payload` for `recipient`, unless an envelope with the same
    /// `message_id` is still queued there (then returns that one's id with
    /// `duplicate`). Fails with [`StoreError::MailboxFull`] if one more
    /// envelope of this size would exceed `limits`.
    fn enqueue(
        &self,
        recipient: &MailboxAddress,
        message_id: &MessageId,
        payload: &[u8],
        limits: &MailboxLimits,
    ) -> Result<Enqueued, StoreError>;

    /// Queued envelopes of `address` with id greater than `after`, oldest
    /// first: at most `max_count`, and stopping before the one that would
    /// bring the sum of [`Envelope::encoded_len`] over `max_bytes` (but
    /// always at least one, if any is queued).
    fn fetch(
        &self,
        address: &MailboxAddress,
        after: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<FetchedPage, StoreError>;

    /// Deletes the envelopes of `address` with these ids; ids that are not
    /// queued in this mailbox are ignored. Returns how many were deleted.
    fn ack(&self, address: &MailboxAddress, ids: &[u64]) -> Result<u32, StoreError>;

    /// What `address` currently holds.
    fn usage(&self, address: &MailboxAddress) -> Result<MailboxUsage, StoreError>;
}

/// Checks the one-time prekey ids of an upload are distinct.
pub(crate) fn has_duplicate_ids(upload: &PreKeyUpload) -> bool {
    let mut ids: Vec<u32> = upload.one_time_prekeys.iter().map(|k| k.id).collect();
    ids.sort_unstable();
    ids.windows(2).any(|w| w[0] == w[1])
}

#[cfg(test)]
pub(crate) mod contract_tests {
    //! The behaviour every backend must show, run against both.

    use super::*;
    use crate::protocol::{OneTimePreKeyPublic, SignedPreKeyPublic};
    use sotto_core::{IdentityKeyPair, OneTimePreKey, SignedPreKey};

    fn owner() -> (IdentityKeyPair, MailboxAddress) {
        let id = IdentityKeyPair::from_seed(&[3; 32]);
        let address = MailboxAddress::of(id.public());
        (id, address)
    }

    fn upload(id: &IdentityKeyPair, opk_ids: std::ops::Range<u32>) -> PreKeyUpload {
        let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
        let spk = SignedPreKey::generate(1, id, &mut rng);
        PreKeyUpload {
            signed_prekey: Some(SignedPreKeyPublic::from(&spk)),
            // Real keys: bundles are verified, and a made-up key such as
            // all zeros is refused as small-order.
            one_time_prekeys: opk_ids
                .map(|i| OneTimePreKeyPublic::from(&OneTimePreKey::generate(i, &mut rng)))
                .collect(),
            replace_one_time_prekeys: false,
        }
    }

    pub(crate) fn queue_limits_order_and_ack(store: &dyn MailboxStore) {
        let (_, address) = owner();
        let limits = MailboxLimits {
            max_envelopes: 3,
            max_bytes: 10,
        };
        let a = store
            .enqueue(&address, &MessageId([1; 16]), b"aaa", &limits)
            .unwrap();
        let again = store
            .enqueue(&address, &MessageId([1; 16]), b"aaa", &limits)
            .unwrap();
        assert_eq!(
            again,
            Enqueued {
                id: a.id,
                duplicate: true
            }
        );
        let b = store
            .enqueue(&address, &MessageId([2; 16]), b"bbb", &limits)
            .unwrap();
        assert!(b.id > a.id && !b.duplicate);
        // Byte limit: 6 + 5 > 10.
        assert!(matches!(
            store.enqueue(&address, &MessageId([3; 16]), b"ccccc", &limits),
            Err(StoreError::MailboxFull {
                envelopes: 2,
                bytes: 6,
                ..
            })
        ));
        let c = store
            .enqueue(&address, &MessageId([3; 16]), b"cc", &limits)
            .unwrap();
        // Count limit.
        assert!(matches!(
            store.enqueue(&address, &MessageId([4; 16]), b"d", &limits),
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

        let page = store.fetch(&address, 0, 2, usize::MAX).unwrap();
        assert_eq!(
            page.envelopes.iter().map(|e| e.id).collect::<Vec<_>>(),
            [a.id, b.id]
        );
        assert!(page.more);
        assert_eq!(page.envelopes[0].payload, b"aaa");
        let page = store.fetch(&address, b.id, 10, usize::MAX).unwrap();
        assert_eq!(page.envelopes.len(), 1);
        assert!(!page.more);
        // Byte budget: always at least one, then stop before overflowing.
        let page = store.fetch(&address, 0, 10, 1).unwrap();
        assert_eq!(page.envelopes.len(), 1);
        assert!(page.more);
        let page = store.fetch(&address, 0, 10, 2 * 12 + 6).unwrap();
        assert_eq!(page.envelopes.len(), 2);

        // Ack only touches this mailbox.
        let other = MailboxAddress::from_bytes([0xEE; 32]);
        assert_eq!(store.ack(&other, &[a.id, b.id]).unwrap(), 0);
        assert_eq!(store.ack(&address, &[a.id, b.id, 12345]).unwrap(), 2);
        assert_eq!(store.ack(&address, &[a.id]).unwrap(), 0);
        assert_eq!(store.usage(&address).unwrap().envelopes, 1);
        // After the ack the same message id is accepted again.
        let a2 = store
            .enqueue(&address, &MessageId([1; 16]), b"aaa", &limits)
            .unwrap();
        assert!(a2.id > c.id && !a2.duplicate);
        assert_eq!(store.ack(&address, &[c.id, a2.id]).unwrap(), 2);
        assert_eq!(store.usage(&address).unwrap(), MailboxUsage::default());
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
            seen.push(taken.bundle.one_time_prekey.unwrap().0);
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
        assert_eq!(taken.bundle.one_time_prekey.map(|k| k.0), Some(7));
    }
}
