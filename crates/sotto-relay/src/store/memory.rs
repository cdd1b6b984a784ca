//! In-memory backend: for tests and relays that may forget on restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use sotto_core::{IdentityKey, PreKeyBundle};

use super::{
    Enqueued, FetchedPage, MailboxLimits, MailboxStore, MailboxUsage, StoreError, TakenBundle,
};
use crate::address::MailboxAddress;
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
    mailboxes: HashMap<MailboxAddress, Mailbox>,
    directory: HashMap<MailboxAddress, Directory>,
}

#[derive(Default)]
struct Mailbox {
    envelopes: BTreeMap<u64, (MessageId, Vec<u8>)>,
    by_message_id: HashMap<MessageId, u64>,
    bytes: u64,
}

#[derive(Default)]
struct Directory {
    signed: Option<(IdentityKey, SignedPreKeyPublic)>,
    /// Upload order -> key, so the oldest is handed out first.
    one_time: BTreeMap<u64, OneTimePreKeyPublic>,
    order_of: HashMap<u32, u64>,
    next_order: u64,
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
        let mut new_ids: Vec<u32> = upload
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
            bundle: PreKeyBundle {
                identity_key,
                signed_prekey_id: spk.id,
                signed_prekey: spk.public,
                signed_prekey_signature: spk.signature,
                one_time_prekey: one_time,
            },
            remaining: dir.one_time.len() as u32,
        }))
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
        limits: &MailboxLimits,
    ) -> Result<Enqueued, StoreError> {
        let mut state = self.lock()?;
        let next_id = state.last_id + 1;
        let mailbox = state.mailboxes.entry(*recipient).or_default();
        if let Some(id) = mailbox.by_message_id.get(message_id) {
            return Ok(Enqueued {
                id: *id,
                duplicate: true,
            });
        }
        let envelopes = mailbox.envelopes.len() as u64;
        let len = payload.len() as u64;
        if envelopes.saturating_add(1) > limits.max_envelopes
            || mailbox.bytes.saturating_add(len) > limits.max_bytes
        {
            return Err(StoreError::MailboxFull {
                envelopes,
                bytes: mailbox.bytes,
                max_envelopes: limits.max_envelopes,
                max_bytes: limits.max_bytes,
            });
        }
        mailbox
            .envelopes
            .insert(next_id, (*message_id, payload.to_vec()));
        mailbox.by_message_id.insert(*message_id, next_id);
        mailbox.bytes += len;
        state.last_id = next_id;
        Ok(Enqueued {
            id: next_id,
            duplicate: false,
        })
    }

    fn fetch(
        &self,
        address: &MailboxAddress,
        after: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<FetchedPage, StoreError> {
        let state = self.lock()?;
        let Some(mailbox) = state.mailboxes.get(address) else {
            return Ok(FetchedPage::default());
        };
        let mut page = FetchedPage::default();
        let mut used = 0usize;
        for (id, (_, payload)) in mailbox.envelopes.range(after.saturating_add(1)..) {
            let size = Envelope::OVERHEAD + payload.len();
            if page.envelopes.len() >= max_count
                || (!page.envelopes.is_empty() && used + size > max_bytes)
            {
                page.more = true;
                break;
            }
            used += size;
            page.envelopes.push(Envelope {
                id: *id,
                payload: payload.clone(),
            });
        }
        Ok(page)
    }

    fn ack(&self, address: &MailboxAddress, ids: &[u64]) -> Result<u32, StoreError> {
        let mut state = self.lock()?;
        let Some(mailbox) = state.mailboxes.get_mut(address) else {
            return Ok(0);
        };
        let mut removed = 0u32;
        for id in ids {
            if let Some((message_id, payload)) = mailbox.envelopes.remove(id) {
                mailbox.by_message_id.remove(&message_id);
                mailbox.bytes = mailbox.bytes.saturating_sub(payload.len() as u64);
                removed += 1;
            }
        }
        if mailbox.envelopes.is_empty() {
            state.mailboxes.remove(address);
        }
        Ok(removed)
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
}
