//! The relay's storage in an attacker's hands: an honest in-memory store
//! with hooks a test sets, for tests that play a hostile relay.

use std::collections::HashMap;
use std::sync::Mutex;

use sotto::core::{IdentityKey, PreKeyBundle};
use sotto::relay::store::{
    Access, Enqueued, FetchedPage, MailboxUsage, PreKeyCounts, PreKeyLimits, QueuePolicy,
    StoreTotals, Swept, TakenBundle, TakenBundleV2,
};
use sotto::relay::{
    MailboxAddress, MailboxStore, MemoryStore, MessageId, PreKeyUpload, StoreError, UnixTime,
};

/// Decides about one envelope sent through the relay's front door:
/// `Some(result)` answers the sender without storing it, `None` lets the
/// honest store have it.
pub type EnqueueHook = Box<dyn FnMut(&MailboxAddress, &[u8]) -> Option<Enqueued> + Send>;

/// Replaces one envelope sent through the relay's front door with other
/// bytes (`Some`), stored as if they had been sent, or lets it be (`None`).
pub type RewriteHook = Box<dyn FnMut(&MailboxAddress, &[u8]) -> Option<Vec<u8>> + Send>;

/// Refuses one envelope sent through the relay's front door with a store
/// error (`Some`), or lets it through (`None`).
pub type RefuseHook = Box<dyn FnMut(&MailboxAddress) -> Option<StoreError> + Send>;

/// An honest [`MemoryStore`], except where the test says otherwise.
pub struct InterceptingStore {
    inner: MemoryStore,
    /// Sees every envelope sent (see [`EnqueueHook`]).
    pub on_enqueue: Mutex<Option<EnqueueHook>>,
    /// Refuses envelopes as the relay's storage would (see [`RefuseHook`]).
    pub refuse_enqueue: Mutex<Option<RefuseHook>>,
    /// Bundles served instead of the published ones.
    pub bundles: Mutex<HashMap<MailboxAddress, PreKeyBundle>>,
    /// While set, every `ack` fails as a relay on a full disk would.
    pub failing_acks: Mutex<bool>,
    /// Every one-time prekey the relay accepted, as (owner, id), in upload
    /// order.
    pub uploaded_one_time_prekeys: Mutex<Vec<(MailboxAddress, u32)>>,
    /// Device lists served instead of the published ones.
    pub device_lists: Mutex<HashMap<MailboxAddress, Vec<u8>>>,
    /// Alters envelopes before they are stored (see [`RewriteHook`]).
    pub rewrite_enqueue: Mutex<Option<RewriteHook>>,
    /// While set, v2 fetches get the owner's v1 bundle: the relay strips
    /// the KEM prekey (a downgrade attack, docs/protocol.md 16.7).
    pub strip_kem: Mutex<bool>,
}

impl InterceptingStore {
    pub fn new() -> Self {
        Self {
            inner: MemoryStore::new(),
            on_enqueue: Mutex::new(None),
            refuse_enqueue: Mutex::new(None),
            bundles: Mutex::new(HashMap::new()),
            failing_acks: Mutex::new(false),
            uploaded_one_time_prekeys: Mutex::new(Vec::new()),
            device_lists: Mutex::new(HashMap::new()),
            rewrite_enqueue: Mutex::new(None),
            strip_kem: Mutex::new(false),
        }
    }
}

impl MailboxStore for InterceptingStore {
    fn publish_prekeys(
        &self,
        owner: &IdentityKey,
        upload: &PreKeyUpload,
        max_one_time: u32,
    ) -> Result<u32, StoreError> {
        let remaining = self.inner.publish_prekeys(owner, upload, max_one_time)?;
        self.uploaded_one_time_prekeys.lock().unwrap().extend(
            upload
                .one_time_prekeys
                .iter()
                .map(|k| (MailboxAddress::of(owner), k.id.get())),
        );
        Ok(remaining)
    }

    fn publish_prekeys_with_kem(
        &self,
        owner: &IdentityKey,
        upload: &PreKeyUpload,
        limits: &PreKeyLimits,
    ) -> Result<PreKeyCounts, StoreError> {
        let counts = self.inner.publish_prekeys_with_kem(owner, upload, limits)?;
        self.uploaded_one_time_prekeys.lock().unwrap().extend(
            upload
                .one_time_prekeys
                .iter()
                .map(|k| (MailboxAddress::of(owner), k.id.get())),
        );
        Ok(counts)
    }

    /// A bundle the test planted is served to v2 fetches too (as it is,
    /// without a KEM prekey unless the planted one has one).
    fn take_bundle_v2(
        &self,
        address: &MailboxAddress,
    ) -> Result<Option<TakenBundleV2>, StoreError> {
        if let Some(bundle) = self.bundles.lock().unwrap().get(address) {
            return Ok(Some(TakenBundleV2::new(bundle.clone(), 0, None)));
        }
        if *self.strip_kem.lock().unwrap() {
            return Ok(self
                .inner
                .take_bundle(address)?
                .map(|taken| TakenBundleV2::new(taken.bundle, taken.remaining, None)));
        }
        self.inner.take_bundle_v2(address)
    }

    fn kem_prekey_count(&self, address: &MailboxAddress) -> Result<Option<u32>, StoreError> {
        self.inner.kem_prekey_count(address)
    }

    fn keeps_kem_prekeys(&self) -> bool {
        true
    }

    fn take_bundle(&self, address: &MailboxAddress) -> Result<Option<TakenBundle>, StoreError> {
        if let Some(bundle) = self.bundles.lock().unwrap().get(address) {
            return Ok(Some(TakenBundle {
                bundle: bundle.clone(),
                remaining: 0,
            }));
        }
        self.inner.take_bundle(address)
    }

    fn one_time_prekey_count(&self, address: &MailboxAddress) -> Result<u32, StoreError> {
        self.inner.one_time_prekey_count(address)
    }

    fn enqueue(
        &self,
        recipient: &MailboxAddress,
        message_id: &MessageId,
        payload: &[u8],
        access: Access<'_>,
        policy: &QueuePolicy,
        now: UnixTime,
    ) -> Result<Enqueued, StoreError> {
        if let Some(hook) = self.refuse_enqueue.lock().unwrap().as_mut()
            && let Some(error) = hook(recipient)
        {
            return Err(error);
        }
        if let Some(hook) = self.on_enqueue.lock().unwrap().as_mut()
            && let Some(answer) = hook(recipient, payload)
        {
            return Ok(answer);
        }
        let rewritten = self
            .rewrite_enqueue
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|hook| hook(recipient, payload));
        if let Some(bytes) = rewritten {
            return self
                .inner
                .enqueue(recipient, message_id, &bytes, access, policy, now);
        }
        self.inner
            .enqueue(recipient, message_id, payload, access, policy, now)
    }

    fn fetch(
        &self,
        address: &MailboxAddress,
        after: u64,
        max_count: usize,
        max_bytes: usize,
        now: UnixTime,
    ) -> Result<FetchedPage, StoreError> {
        self.inner.fetch(address, after, max_count, max_bytes, now)
    }

    fn sweep_expired(&self, now: UnixTime, max_count: usize) -> Result<Swept, StoreError> {
        self.inner.sweep_expired(now, max_count)
    }

    fn totals(&self) -> Result<StoreTotals, StoreError> {
        self.inner.totals()
    }

    fn ack(&self, address: &MailboxAddress, ids: &[u64]) -> Result<u32, StoreError> {
        if *self.failing_acks.lock().unwrap() {
            return Err(StoreError::Backend("database or disk is full".into()));
        }
        self.inner.ack(address, ids)
    }

    fn usage(&self, address: &MailboxAddress) -> Result<MailboxUsage, StoreError> {
        self.inner.usage(address)
    }

    fn publish_device_list(
        &self,
        owner: &MailboxAddress,
        version: u64,
        list: &[u8],
    ) -> Result<(), StoreError> {
        self.inner.publish_device_list(owner, version, list)
    }

    fn device_list(&self, address: &MailboxAddress) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(forged) = self.device_lists.lock().unwrap().get(address) {
            return Ok(Some(forged.clone()));
        }
        self.inner.device_list(address)
    }
}
