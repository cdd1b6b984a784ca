//! In-memory backend: for tests and relays that may forget on restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use sotto_core::{AccessVerifier, IdentityKey, OneTimePreKeyId, PreKeyBundle};

use super::unlinking::NewDeviceList;
use super::{
    Access, Enqueued, FetchedPage, MailboxStore, MailboxUsage, QueuePolicy, StoreError,
    StoreTotals, Swept, TakenBundle, is_expired,
};
use crate::address::MailboxAddress;
use crate::clock::UnixTime;
use crate::envelope::{Envelope, MessageId};
use crate::protocol::{OneTimePreKeyPublic, PreKeyUpload, SignedPreKeyPublic};

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
    payload: Vec<u8>,
    expiry_hour: u64,
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
}

impl State {
    /// Deletes envelope `id` of `address` and takes it off every counter;
    /// returns its payload length, or `None` if it is not queued there.
    fn remove(&mut self, address: &MailboxAddress, id: u64) -> Option<u64> {
        let mailbox = self.mailboxes.get_mut(address)?;
        let queued = mailbox.envelopes.remove(&id)?;
        let len = queued.payload.len() as u64;
        mailbox.by_message_id.remove(&queued.message_id);
        mailbox.bytes = mailbox.bytes.saturating_sub(len);
        if mailbox.envelopes.is_empty() {
            self.mailboxes.remove(address);
        }
        self.expiry.remove(&(queued.expiry_hour, id));
        self.totals.envelopes = self.totals.envelopes.saturating_sub(1);
        self.totals.bytes = self.totals.bytes.saturating_sub(len);
        Some(len)
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
            self.expiry.remove(&(queued.expiry_hour, id));
            self.totals.envelopes = self.totals.envelopes.saturating_sub(1);
            self.totals.bytes = self
                .totals
                .bytes
                .saturating_sub(queued.payload.len() as u64);
        }
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
        let mut state = self.lock()?;
        let dir = state
            .directory
            .entry(MailboxAddress::of(owner))
            .or_default();
        let kept = if upload.replace_one_time_prekeys {
            0
        } else {
            dir.one_time.len() as u64
        };
        let mut new_ids: Vec<OneTimePreKeyId> = upload
            .one_time_prekeys
            .iter()
            .map(|k| k.id)
            .filter(|id| upload.replace_one_time_prekeys || !dir.order_of.contains_key(id))
            .collect();
        new_ids.sort_unstable();
        new_ids.dedup();
        let would_have = kept + new_ids.len() as u64;
        if would_have > u64::from(max_one_time) {
            return Err(StoreError::TooManyPreKeys {
                would_have,
                max: max_one_time,
            });
        }
        if upload.replace_one_time_prekeys {
            dir.one_time.clear();
            dir.order_of.clear();
        }
        if let Some(spk) = upload.signed_prekey {
            dir.signed = Some((*owner, spk));
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
        Ok(dir.one_time.len() as u32)
    }

    fn take_bundle(&self, address: &MailboxAddress) -> Result<Option<TakenBundle>, StoreError> {
        let mut state = self.lock()?;
        let Some(dir) = state.directory.get_mut(address) else {
            return Ok(None);
        };
        let Some((identity_key, spk)) = dir.signed else {
            return Ok(None);
        };
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
        let Some(directory) = state
            .directory
            .get(recipient)
            .filter(|d| d.signed.is_some())
        else {
            return Err(StoreError::UnknownRecipient);
        };
        if let (Access::Key(key), Some(verifier)) = (access, &directory.access_verifier)
            && !key.is_some_and(|key| verifier.admits(key))
        {
            return Err(StoreError::AccessDenied);
        }
        let queued = state
            .mailboxes
            .get(recipient)
            .and_then(|m| m.by_message_id.get(message_id))
            .copied();
        if let Some(id) = queued {
            let expired = state
                .mailboxes
                .get(recipient)
                .and_then(|m| m.envelopes.get(&id))
                .is_some_and(|q| is_expired(q.expiry_hour, now));
            if !expired {
                return Ok(Enqueued {
                    id,
                    duplicate: true,
                });
            }
            // Gone for the recipient already: the retry is a new envelope.
            state.remove(recipient, id);
        }
        let (envelopes, bytes) = state
            .mailboxes
            .get(recipient)
            .map_or((0, 0), |m| (m.envelopes.len() as u64, m.bytes));
        let len = payload.len() as u64;
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
        if state.totals.bytes.saturating_add(len) > policy.max_total_bytes {
            return Err(StoreError::StorageFull {
                queued_bytes: state.totals.bytes,
                len,
                max_bytes: policy.max_total_bytes,
            });
        }
        let id = state.last_id + 1;
        let expiry_hour = policy.expiry_hour(now);
        let mailbox = state.mailboxes.entry(*recipient).or_default();
        mailbox.envelopes.insert(
            id,
            Queued {
                message_id: *message_id,
                payload: payload.to_vec(),
                expiry_hour,
            },
        );
        mailbox.by_message_id.insert(*message_id, id);
        mailbox.bytes += len;
        state.expiry.insert((expiry_hour, id), *recipient);
        state.totals.envelopes += 1;
        state.totals.bytes += len;
        state.last_id = id;
        Ok(Enqueued {
            id,
            duplicate: false,
        })
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
            let size = Envelope::OVERHEAD + queued.payload.len();
            if page.envelopes.len() >= max_count
                || (!page.envelopes.is_empty() && used + size > max_bytes)
            {
                page.more = true;
                break;
            }
            used += size;
            page.envelopes.push(Envelope {
                id: *id,
                payload: queued.payload.clone(),
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
            if let Some(len) = state.remove(&address, id) {
                swept.envelopes += 1;
                swept.bytes += len;
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

    #[test]
    fn queue_contract() {
        super::super::contract_tests::queue_limits_order_and_ack(&MemoryStore::new());
    }

    #[test]
    fn prekey_contract() {
        super::super::contract_tests::prekeys_are_handed_out_once(&MemoryStore::new());
    }

    #[test]
    fn device_list_contract() {
        super::super::contract_tests::device_lists_only_move_forward(&MemoryStore::new());
    }

    #[test]
    fn unlinked_device_contract() {
        super::super::contract_tests::unlinked_devices_lose_their_mailbox(&MemoryStore::new());
    }

    #[test]
    fn unlinking_spares_claimed_mailboxes_contract() {
        super::super::contract_tests::unlinking_spares_mailboxes_other_accounts_claim(
            &MemoryStore::new(),
        );
    }

    #[test]
    fn undecodable_device_list_contract() {
        super::super::contract_tests::device_lists_that_do_not_decode_unlink_nothing(
            &MemoryStore::new(),
        );
    }

    #[test]
    fn unregistered_recipient_contract() {
        super::super::contract_tests::unregistered_recipients_are_refused(&MemoryStore::new());
    }

    #[test]
    fn storage_limit_contract() {
        super::super::contract_tests::storage_limit_is_store_wide(&MemoryStore::new());
    }

    #[test]
    fn expiry_contract() {
        super::super::contract_tests::expired_envelopes_are_hidden_then_swept(&MemoryStore::new());
    }

    #[test]
    fn access_contract() {
        super::super::contract_tests::access_keys_guard_mailboxes_with_a_verifier(
            &MemoryStore::new(),
        );
    }
}
