//! A memory store whose `enqueue` can be held, to keep a request in
//! flight, and whose `totals` can be broken, to make the health check
//! fail.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use sotto_core::IdentityKey;
use sotto_relay::store::{Access, Enqueued, FetchedPage, MailboxUsage, Swept, TakenBundle};
use sotto_relay::{
    MailboxAddress, MailboxStore, MemoryStore, MessageId, MultiRecipient, PreKeyUpload,
    QueuePolicy, StoreError, StoreTotals, UnixTime,
};

use crate::common::WAIT;

#[derive(Default)]
pub(crate) struct GatedStore {
    pub(crate) inner: MemoryStore,
    /// While true, `enqueue` waits (at most [`WAIT`]).
    closed: Mutex<bool>,
    opened: Condvar,
    /// `enqueue` calls waiting at the gate.
    waiting: AtomicUsize,
    /// `totals` fails.
    broken: AtomicBool,
}

impl GatedStore {
    pub(crate) fn close_gate(&self) {
        *self.closed.lock().unwrap_or_else(PoisonError::into_inner) = true;
    }

    pub(crate) fn open_gate(&self) {
        *self.closed.lock().unwrap_or_else(PoisonError::into_inner) = false;
        self.opened.notify_all();
    }

    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    pub(crate) fn break_totals(&self, broken: bool) {
        self.broken.store(broken, Ordering::SeqCst);
    }

    fn pass_gate(&self) {
        let closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        if !*closed {
            return;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _ = self
            .opened
            .wait_timeout_while(closed, WAIT + Duration::from_secs(5), |closed| *closed);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl MailboxStore for GatedStore {
    fn publish_prekeys(
        &self,
        owner: &IdentityKey,
        upload: &PreKeyUpload,
        max_one_time: u32,
    ) -> Result<u32, StoreError> {
        self.inner.publish_prekeys(owner, upload, max_one_time)
    }

    fn take_bundle(&self, address: &MailboxAddress) -> Result<Option<TakenBundle>, StoreError> {
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
        self.pass_gate();
        self.inner
            .enqueue(recipient, message_id, payload, access, policy, now)
    }

    fn enqueue_many(
        &self,
        recipients: &[MultiRecipient],
        body: &[u8],
        first_contact: &mut dyn FnMut(usize) -> bool,
        policy: &QueuePolicy,
        now: UnixTime,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        self.pass_gate();
        self.inner
            .enqueue_many(recipients, body, first_contact, policy, now)
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
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("injected failure".into()));
        }
        self.inner.totals()
    }

    fn ack(&self, address: &MailboxAddress, ids: &[u64]) -> Result<u32, StoreError> {
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
        self.inner.device_list(address)
    }
}
