//! In-memory backend: for tests and relays that may forget on restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use sotto_core::{
    AccessVerifier, IdentityKey, KemPreKeyId, OneTimePreKeyId, PreKeyBundle, SignedKemPreKey,
};

use super::unlinking::NewDeviceList;
use super::{
    Access, Enqueued, FetchedPage, MailboxStore, MailboxUsage, PreKeyCounts, PreKeyLimits,
    QueuePolicy, StoreError, StoreTotals, Swept, TakenBundle, TakenBundleV2, bundle_versions,
    check_room, is_expired,
};
use crate::address::MailboxAddress;
use crate::clock::UnixTime;
use crate::envelope::{Envelope, MessageId};
use crate::protocol::{MultiRecipient, OneTimePreKeyPublic, PreKeyUpload, SignedPreKeyPublic};

/// A [`MailboxStore`] in this process's memory. Everything is lost when it
/// is dropped; one mutex makes every operation atomic.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last_id: u64,
    totals: StoreTotals,
    mailboxes: HashMap<MailboxAddress, Mailbox>,
    directory: HashMap<MailboxAddress, Directory>,
    /// `(expiry hour, envelope id)` of every queued envelope, so the sweep
    /// finds the expired ones without looking at the others.
    expiry: BTreeMap<(u64, u64), MailboxAddress>,
    /// Device lists by account mailbox.
    device_lists: HashMap<MailboxAddress, StoredList>,
    /// For each device mailbox, the accounts whose stored device list
    /// names it; no empty sets.
    listed_by: HashMap<MailboxAddress, HashSet<MailboxAddress>>,
}

struct StoredList {
    version: u64,
    /// The signed list as published.
    list: Vec<u8>,
    /// The mailboxes of the devices it names ([`NewDeviceList::listed`]).
    listed: Vec<MailboxAddress>,
}

#[derive(Default)]
struct Mailbox {
    envelopes: BTreeMap<u64, Queued>,
    by_message_id: HashMap<MessageId, u64>,
    bytes: u64,
}

struct Queued {
    message_id: MessageId,
    /// The envelope, or for a `SendMulti` its recipient's header.
    payload: Vec<u8>,
    /// A `SendMulti`'s body, shared by its recipients' envelopes: the
    /// envelope is `payload || body`. Freed with the last of them. No
    /// clone of it leaves the store's state (a fetch copies the bytes), so
    /// its strong count is the number of envelopes holding it.
    body: Option<Arc<[u8]>>,
    expiry_hour: u64,
}

impl Queued {
    /// The envelope's length: what it counts against its mailbox's limits.
    fn len(&self) -> u64 {
        (self.payload.len() + self.body.as_ref().map_or(0, |b| b.len())) as u64
    }

    /// What deleting it frees in the store ([`StoreTotals::bytes`]): its
    /// payload, and its shared body if no other envelope holds it.
    fn stored_len(&self) -> u64 {
        let body = self.body.as_ref().filter(|b| Arc::strong_count(b) == 1);
        (self.payload.len() + body.map_or(0, |b| b.len())) as u64
    }

    /// The envelope as delivered.
    fn envelope(&self) -> Vec<u8> {
        let mut envelope = Vec::with_capacity(self.len() as usize);
        envelope.extend_from_slice(&self.payload);
        if let Some(body) = &self.body {
            envelope.extend_from_slice(body);
        }
        envelope
    }
}

#[derive(Default)]
struct Directory {
    signed: Option<(IdentityKey, SignedPreKeyPublic)>,
    /// Kept with the signed prekey: set only while one is published.
    access_verifier: Option<AccessVerifier>,
    /// Upload order -> key, so the oldest is handed out first.
    one_time: BTreeMap<u64, OneTimePreKeyPublic>,
    order_of: HashMap<OneTimePreKeyId, u64>,
    next_order: u64,
    /// The signed prekey is signed for protocol v2 only.
    v2_only: bool,
    /// The last-resort KEM prekey.
    last_resort_kem: Option<SignedKemPreKey>,
    /// Upload order -> one-time KEM prekey, as `one_time`.
    kem: BTreeMap<u64, SignedKemPreKey>,
    kem_order_of: HashMap<KemPreKeyId, u64>,
}

impl Directory {
    /// `PreKeyCounts::kem`.
    fn kem_count(&self) -> Option<u32> {
        self.last_resort_kem.as_ref().map(|_| self.kem.len() as u32)
    }
}

/// How many keys an upload leaves of one kind: `stored` ids now, `uploaded`
/// ids added, the stored ones deleted first if `replace`.
fn count_after<T: Ord + Copy>(
    stored: impl Fn(&T) -> bool,
    stored_len: usize,
    uploaded: impl Iterator<Item = T>,
    replace: bool,
) -> u64 {
    let kept = if replace { 0 } else { stored_len as u64 };
    let mut new_ids: Vec<T> = uploaded.filter(|id| replace || !stored(id)).collect();
    new_ids.sort_unstable();
    new_ids.dedup();
    kept + new_ids.len() as u64
}

impl State {
    /// Deletes envelope `id` of `address` and takes it off every counter;
    /// returns the bytes that freed in the store, or `None` if it is not
    /// queued there.
    fn remove(&mut self, address: &MailboxAddress, id: u64) -> Option<u64> {
        let mailbox = self.mailboxes.get_mut(address)?;
        let queued = mailbox.envelopes.remove(&id)?;
        mailbox.by_message_id.remove(&queued.message_id);
        mailbox.bytes = mailbox.bytes.saturating_sub(queued.len());
        if mailbox.envelopes.is_empty() {
            self.mailboxes.remove(address);
        }
        Some(self.forget(id, &queued))
    }

    /// Takes envelope `id`, just deleted from its mailbox, off the expiry
    /// index and the totals; returns the bytes that freed.
    fn forget(&mut self, id: u64, queued: &Queued) -> u64 {
        let freed = queued.stored_len();
        self.expiry.remove(&(queued.expiry_hour, id));
        self.totals.envelopes = self.totals.envelopes.saturating_sub(1);
        self.totals.bytes = self.totals.bytes.saturating_sub(freed);
        freed
    }

    /// Stores `list` as `account`'s device list, and records that the
    /// device mailboxes it names, instead of those the previous one named,
    /// are listed by `account`.
    fn store_list(&mut self, account: &MailboxAddress, list: StoredList) {
        if let Some(previous) = self.device_lists.remove(account) {
            for device in &previous.listed {
                if let Some(accounts) = self.listed_by.get_mut(device) {
                    accounts.remove(account);
                    if accounts.is_empty() {
                        self.listed_by.remove(device);
                    }
                }
            }
        }
        for device in &list.listed {
            self.listed_by.entry(*device).or_default().insert(*account);
        }
        self.device_lists.insert(*account, list);
    }

    /// Deletes the registration of `address` and every envelope queued for
    /// it, taking them off every counter.
    fn remove_mailbox(&mut self, address: &MailboxAddress) {
        self.directory.remove(address);
        let Some(mailbox) = self.mailboxes.remove(address) else {
            return;
        };
        for (id, queued) in mailbox.envelopes {
            // One by one, so the last holder of a shared body frees it.
            self.forget(id, &queued);
        }
    }
}

/// An envelope to queue: `payload || body` for `recipient`.
struct NewEnvelope<'a> {
    recipient: &'a MailboxAddress,
    message_id: &'a MessageId,
    /// The whole envelope, or a `SendMulti` recipient's header.
    payload: &'a [u8],
    /// A `SendMulti`'s body (none if it is empty).
    body: Option<&'a Arc<[u8]>>,
}

impl State {
    /// Queues `envelope`, with the checks of [`MailboxStore::enqueue`] in
    /// its order; a sender `access` does not admit is queued as a first
    /// contact if `first_contact()` says so. A refusal changes nothing.
    fn enqueue(
        &mut self,
        envelope: NewEnvelope<'_>,
        access: Access<'_>,
        first_contact: &mut dyn FnMut() -> bool,
        policy: &QueuePolicy,
        now: UnixTime,
    ) -> Result<Enqueued, StoreError> {
        let NewEnvelope {
            recipient,
            message_id,
            payload,
            body,
        } = envelope;
        let Some(directory) = self.directory.get(recipient).filter(|d| d.signed.is_some()) else {
            return Err(StoreError::UnknownRecipient);
        };
        if !access.admits(directory.access_verifier.as_ref()) && !first_contact() {
            return Err(StoreError::AccessDenied);
        }
        let mailbox = self.mailboxes.get(recipient);
        let (mut envelopes, mut bytes) =
            mailbox.map_or((0, 0), |m| (m.envelopes.len() as u64, m.bytes));
        let mut stored_bytes = self.totals.bytes;
        // An unexpired envelope with this message id answers; an expired
        // one is gone for the recipient already, and is replaced.
        let queued = mailbox.and_then(|m| {
            let id = *m.by_message_id.get(message_id)?;
            Some((id, m.envelopes.get(&id)?))
        });
        let replaced = match queued {
            Some((id, q)) if !is_expired(q.expiry_hour, now) => {
                return Ok(Enqueued {
                    id,
                    duplicate: true,
                });
            }
            Some((id, q)) => {
                envelopes -= 1;
                bytes = bytes.saturating_sub(q.len());
                stored_bytes = stored_bytes.saturating_sub(q.stored_len());
                Some(id)
            }
            None => None,
        };
        let body_len = body.map_or(0, |b| b.len());
        let len = (payload.len() + body_len) as u64;
        // The body is stored with the first envelope that holds it.
        let new_body = body.is_some_and(|b| Arc::strong_count(b) == 1);
        let stored_len = (payload.len() + if new_body { body_len } else { 0 }) as u64;
        check_room((envelopes, bytes), len, stored_bytes, stored_len, policy)?;
        if let Some(id) = replaced {
            self.remove(recipient, id);
        }
        let id = self.last_id + 1;
        let expiry_hour = policy.expiry_hour(now);
        let mailbox = self.mailboxes.entry(*recipient).or_default();
        mailbox.envelopes.insert(
            id,
            Queued {
                message_id: *message_id,
                payload: payload.to_vec(),
                body: body.cloned(),
                expiry_hour,
            },
        );
        mailbox.by_message_id.insert(*message_id, id);
        mailbox.bytes += len;
        self.expiry.insert((expiry_hour, id), *recipient);
        self.totals.envelopes += 1;
        self.totals.bytes += stored_len;
        self.last_id = id;
        Ok(Enqueued {
            id,
            duplicate: false,
        })
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock poisoned".into()))
    }
}

impl core::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MailboxStore for MemoryStore {
    fn publish_prekeys(
        &self,
        owner: &IdentityKey,
        upload: &PreKeyUpload,
        max_one_time: u32,
    ) -> Result<u32, StoreError> {
        super::publish_prekeys_with_default_kem_limit(self, owner, upload, max_one_time)
    }

    fn publish_prekeys_with_kem(
        &self,
        owner: &IdentityKey,
        upload: &PreKeyUpload,
        limits: &PreKeyLimits,
    ) -> Result<PreKeyCounts, StoreError> {
        let mut state = self.lock()?;
        let dir = state
            .directory
            .entry(MailboxAddress::of(owner))
            .or_default();
        let would_have = count_after(
            |id| dir.order_of.contains_key(id),
            dir.one_time.len(),
            upload.one_time_prekeys.iter().map(|k| k.id),
            upload.replace_one_time_prekeys,
        );
        if would_have > u64::from(limits.max_one_time) {
            return Err(StoreError::TooManyPreKeys {
                would_have,
                max: limits.max_one_time,
            });
        }
        let would_have = count_after(
            |id| dir.kem_order_of.contains_key(id),
            dir.kem.len(),
            upload.one_time_kem_prekeys.iter().map(|k| k.id),
            upload.replace_one_time_kem_prekeys,
        );
        if would_have > u64::from(limits.max_kem) {
            return Err(StoreError::TooManyKemPreKeys {
                would_have,
                max: limits.max_kem,
            });
        }
        if upload.replace_one_time_prekeys {
            dir.one_time.clear();
            dir.order_of.clear();
        }
        if upload.replace_one_time_kem_prekeys {
            dir.kem.clear();
            dir.kem_order_of.clear();
        }
        if let Some(spk) = upload.signed_prekey {
            dir.signed = Some((*owner, spk));
            dir.v2_only = upload.signed_prekey_v2_only;
        }
        if let Some(verifier) = upload.access_verifier
            && dir.signed.is_some()
        {
            dir.access_verifier = Some(verifier);
        }
        for key in &upload.one_time_prekeys {
            let order = match dir.order_of.get(&key.id) {
                Some(order) => *order,
                None => {
                    dir.next_order += 1;
                    dir.order_of.insert(key.id, dir.next_order);
                    dir.next_order
                }
            };
            dir.one_time.insert(order, *key);
        }
        if let Some(key) = &upload.last_resort_kem_prekey {
            dir.last_resort_kem = Some(key.clone());
        }
        for key in &upload.one_time_kem_prekeys {
            // One upload order for both kinds: only the order within a
            // kind matters.
            let order = match dir.kem_order_of.get(&key.id) {
                Some(order) => *order,
                None => {
                    dir.next_order += 1;
                    dir.kem_order_of.insert(key.id, dir.next_order);
                    dir.next_order
                }
            };
            dir.kem.insert(order, key.clone());
        }
        Ok(PreKeyCounts {
            one_time: dir.one_time.len() as u32,
            kem: dir.kem_count(),
        })
    }

    fn take_bundle_v2(
        &self,
        address: &MailboxAddress,
    ) -> Result<Option<TakenBundleV2>, StoreError> {
        let mut state = self.lock()?;
        let Some(dir) = state.directory.get_mut(address) else {
            return Ok(None);
        };
        let Some((identity_key, spk)) = dir.signed else {
            return Ok(None);
        };
        // A v2-only signed prekey makes no v1 bundle that verifies: with
        // no KEM prekey to make a v2 one, there is no bundle to serve.
        if dir.v2_only && dir.kem.is_empty() && dir.last_resort_kem.is_none() {
            return Ok(None);
        }
        let one_time = dir.one_time.pop_first().map(|(_, key)| {
            dir.order_of.remove(&key.id);
            (key.id, key.public)
        });
        let kem = match dir.kem.pop_first() {
            Some((_, key)) => {
                dir.kem_order_of.remove(&key.id);
                Some(key)
            }
            None => dir.last_resort_kem.clone(),
        };
        let bundle =
            PreKeyBundle::from_parts(identity_key, spk.id, spk.public, spk.signature, one_time);
        let bundle = match kem {
            Some(kem) => bundle.with_kem_prekey(bundle_versions(dir.v2_only), kem),
            None => bundle,
        };
        Ok(Some(TakenBundleV2::new(
            bundle,
            dir.one_time.len() as u32,
            dir.kem_count(),
        )))
    }

    fn keeps_kem_prekeys(&self) -> bool {
        true
    }

    fn kem_prekey_count(&self, address: &MailboxAddress) -> Result<Option<u32>, StoreError> {
        let state = self.lock()?;
        Ok(state.directory.get(address).and_then(Directory::kem_count))
    }

    fn take_bundle(&self, address: &MailboxAddress) -> Result<Option<TakenBundle>, StoreError> {
        let mut state = self.lock()?;
        let Some(dir) = state.directory.get_mut(address) else {
            return Ok(None);
        };
        let Some((identity_key, spk)) = dir.signed else {
            return Ok(None);
        };
        // Signed for protocol v2 only: no v1 bundle of it verifies, so
        // there is none, and no one-time prekey is spent on one.
        if dir.v2_only {
            return Ok(None);
        }
        let one_time = dir.one_time.pop_first().map(|(_, key)| {
            dir.order_of.remove(&key.id);
            (key.id, key.public)
        });
        Ok(Some(TakenBundle {
            bundle: PreKeyBundle::from_parts(
                identity_key,
                spk.id,
                spk.public,
                spk.signature,
                one_time,
            ),
            remaining: dir.one_time.len() as u32,
        }))
    }

    fn publish_device_list(
        &self,
        owner: &MailboxAddress,
        version: u64,
        list: &[u8],
    ) -> Result<(), StoreError> {
        let mut state = self.lock()?;
        let stored = state.device_lists.get(owner);
        if let Some(stored) = stored
            && stored.version >= version
        {
            if stored.version == version && stored.list.as_slice() == list {
                return Ok(());
            }
            return Err(StoreError::StaleDeviceList {
                stored: stored.version,
            });
        }
        let new = NewDeviceList::compare(owner, stored.map(|s| s.list.as_slice()), list);
        state.store_list(
            owner,
            StoredList {
                version,
                list: list.to_vec(),
                listed: new.listed,
            },
        );
        for device in &new.unlinked {
            // An account's own mailbox, or one another account still
            // names, stays (store/unlinking.rs).
            let is_account = state.device_lists.contains_key(device);
            let claimed = state.listed_by.contains_key(device);
            if !is_account && !claimed {
                state.remove_mailbox(device);
            }
        }
        Ok(())
    }

    fn device_list(&self, address: &MailboxAddress) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .lock()?
            .device_lists
            .get(address)
            .map(|stored| stored.list.clone()))
    }

    fn one_time_prekey_count(&self, address: &MailboxAddress) -> Result<u32, StoreError> {
        let state = self.lock()?;
        Ok(state
            .directory
            .get(address)
            .map_or(0, |d| d.one_time.len() as u32))
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
        let mut state = self.lock()?;
        let envelope = NewEnvelope {
            recipient,
            message_id,
            payload,
            body: None,
        };
        state.enqueue(envelope, access, &mut || false, policy, now)
    }

    fn enqueue_many(
        &self,
        recipients: &[MultiRecipient],
        body: &[u8],
        first_contact: &mut dyn FnMut(usize) -> bool,
        policy: &QueuePolicy,
        now: UnixTime,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        // One copy of the body, whoever it is queued for.
        let body: Option<Arc<[u8]>> = (!body.is_empty()).then(|| Arc::from(body));
        let mut state = self.lock()?;
        Ok(recipients
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let envelope = NewEnvelope {
                    recipient: &r.address,
                    message_id: &r.message_id,
                    payload: &r.header,
                    body: body.as_ref(),
                };
                let access = Access::Key(r.access_key.as_ref());
                state.enqueue(envelope, access, &mut || first_contact(i), policy, now)
            })
            .collect())
    }

    fn fetch(
        &self,
        address: &MailboxAddress,
        after: u64,
        max_count: usize,
        max_bytes: usize,
        now: UnixTime,
    ) -> Result<FetchedPage, StoreError> {
        let state = self.lock()?;
        let Some(mailbox) = state.mailboxes.get(address) else {
            return Ok(FetchedPage::default());
        };
        let mut page = FetchedPage::default();
        let mut used = 0usize;
        let live = mailbox
            .envelopes
            .range(after.saturating_add(1)..)
            .filter(|(_, q)| !is_expired(q.expiry_hour, now));
        for (id, queued) in live {
            let size = Envelope::OVERHEAD + queued.len() as usize;
            if page.envelopes.len() >= max_count
                || (!page.envelopes.is_empty() && used + size > max_bytes)
            {
                page.more = true;
                break;
            }
            used += size;
            page.envelopes.push(Envelope {
                id: *id,
                payload: queued.envelope(),
            });
        }
        Ok(page)
    }

    fn ack(&self, address: &MailboxAddress, ids: &[u64]) -> Result<u32, StoreError> {
        let mut state = self.lock()?;
        let mut removed = 0u32;
        for id in ids {
            if state.remove(address, *id).is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn sweep_expired(&self, now: UnixTime, max_count: usize) -> Result<Swept, StoreError> {
        let mut state = self.lock()?;
        let expired: Vec<(u64, MailboxAddress)> = state
            .expiry
            .range(..(now.hour().saturating_add(1), 0))
            .take(max_count)
            .map(|((_, id), address)| (*id, *address))
            .collect();
        let mut swept = Swept::default();
        for (id, address) in expired {
            if let Some(freed) = state.remove(&address, id) {
                swept.envelopes += 1;
                swept.bytes += freed;
            }
        }
        Ok(swept)
    }

    fn totals(&self) -> Result<StoreTotals, StoreError> {
        Ok(self.lock()?.totals)
    }

    fn usage(&self, address: &MailboxAddress) -> Result<MailboxUsage, StoreError> {
        let state = self.lock()?;
        Ok(state
            .mailboxes
            .get(address)
            .map_or_else(MailboxUsage::default, |m| MailboxUsage {
                envelopes: m.envelopes.len() as u64,
                bytes: m.bytes,
                last_id: m.envelopes.last_key_value().map_or(0, |(id, _)| *id),
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract_tests::{OPEN, T0, register, to};

    /// A store that leaves `enqueue_many` to the trait's provided
    /// implementation, as a store wrapping another does.
    struct OneByOne(MemoryStore);

    impl MailboxStore for OneByOne {
        fn publish_prekeys(
            &self,
            owner: &IdentityKey,
            upload: &PreKeyUpload,
            max_one_time: u32,
        ) -> Result<u32, StoreError> {
            self.0.publish_prekeys(owner, upload, max_one_time)
        }
        fn take_bundle(&self, address: &MailboxAddress) -> Result<Option<TakenBundle>, StoreError> {
            self.0.take_bundle(address)
        }
        fn one_time_prekey_count(&self, address: &MailboxAddress) -> Result<u32, StoreError> {
            self.0.one_time_prekey_count(address)
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
            self.0
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
            self.0.fetch(address, after, max_count, max_bytes, now)
        }
        fn sweep_expired(&self, now: UnixTime, max_count: usize) -> Result<Swept, StoreError> {
            self.0.sweep_expired(now, max_count)
        }
        fn totals(&self) -> Result<StoreTotals, StoreError> {
            self.0.totals()
        }
        fn ack(&self, address: &MailboxAddress, ids: &[u64]) -> Result<u32, StoreError> {
            self.0.ack(address, ids)
        }
        fn usage(&self, address: &MailboxAddress) -> Result<MailboxUsage, StoreError> {
            self.0.usage(address)
        }
        fn publish_device_list(
            &self,
            owner: &MailboxAddress,
            version: u64,
            list: &[u8],
        ) -> Result<(), StoreError> {
            self.0.publish_device_list(owner, version, list)
        }
        fn device_list(&self, address: &MailboxAddress) -> Result<Option<Vec<u8>>, StoreError> {
            self.0.device_list(address)
        }
    }

    #[test]
    fn the_provided_enqueue_many_gives_each_recipient_what_enqueue_would() {
        let store = OneByOne(MemoryStore::new());
        let (a, full) = (register(&store, 1), register(&store, 2));
        let guarded_id = sotto_core::IdentityKeyPair::from_seed(&[3; 32]);
        let guarded = MailboxAddress::of(guarded_id.public());
        let key = sotto_core::AccessKey::derive(&guarded_id).unwrap();
        let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
        let spk = sotto_core::SignedPreKey::generate(
            sotto_core::SignedPreKeyId::new(1),
            &guarded_id,
            &mut rng,
        );
        let upload = PreKeyUpload::new(Some(&spk), &[]).with_access_verifier(key.verifier());
        store
            .publish_prekeys(guarded_id.public(), &upload, 10)
            .unwrap();
        let policy = QueuePolicy {
            mailbox: crate::store::MailboxLimits {
                max_envelopes: 1,
                max_bytes: 1000,
            },
            ..QueuePolicy::default()
        };
        store
            .enqueue(&full, &MessageId([9; 16]), b"old", OPEN, &policy, T0)
            .unwrap();
        let nobody = MailboxAddress::from_bytes([0xAB; 32]);
        let recipients = [
            to(&a, 1, b"a:"),
            to(&a, 1, b"a:"),
            to(&full, 1, b"f:"),
            to(&nobody, 1, b"n:"),
            to(&guarded, 1, b"g:"),
            to(&guarded, 2, b"g2:"),
        ];
        let mut asked = Vec::new();
        let mut admit = |i| {
            asked.push(i);
            i == 5
        };
        let results = store
            .enqueue_many(&recipients, b"body", &mut admit, &policy, T0)
            .unwrap();
        assert_eq!(asked, [4, 5]);
        let first = results[0].as_ref().unwrap();
        assert!(!first.duplicate);
        assert_eq!(
            results[1].as_ref().unwrap(),
            &Enqueued {
                id: first.id,
                duplicate: true
            }
        );
        assert!(matches!(results[2], Err(StoreError::MailboxFull { .. })));
        assert!(matches!(results[3], Err(StoreError::UnknownRecipient)));
        assert!(matches!(results[4], Err(StoreError::AccessDenied)));
        assert!(!results[5].as_ref().unwrap().duplicate);
        let page = store.fetch(&guarded, 0, 10, usize::MAX, T0).unwrap();
        assert_eq!(page.envelopes[0].payload, b"g2:body");
        let page = store.fetch(&a, 0, 10, usize::MAX, T0).unwrap();
        assert_eq!(page.envelopes.len(), 1);
        assert_eq!(page.envelopes[0].payload, b"a:body");
    }

    fn contract_store() -> Option<MemoryStore> {
        Some(MemoryStore::new())
    }

    crate::store::contract_suite!(contract_store, |store| &store);
}
