//! Message keys a receiver stepped past: kept for messages that arrive
//! late or out of order, at most [`MAX_SKIPPED_KEYS`] per sender device
//! (all its chains together), the oldest evicted first.

use std::collections::VecDeque;

use super::id::ChainId;
use super::message_key::GroupMessageKey;
use crate::MAX_SKIPPED_KEYS;

/// One stored key: its chain and (inside the key) its iteration.
#[derive(Clone, Debug)]
pub(crate) struct SkippedGroupKey {
    pub(crate) chain_id: ChainId,
    pub(crate) key: GroupMessageKey,
}

/// Skipped keys in the order they were stored.
#[derive(Clone, Debug, Default)]
pub(crate) struct SkippedGroupKeys {
    keys: VecDeque<SkippedGroupKey>,
}

impl SkippedGroupKeys {
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &SkippedGroupKey> {
        self.keys.iter()
    }

    pub(crate) fn position(&self, chain_id: ChainId, iteration: u32) -> Option<usize> {
        self.keys
            .iter()
            .position(|k| k.chain_id == chain_id && k.key.iteration() == iteration)
    }

    pub(crate) fn get(&self, position: usize) -> Option<&SkippedGroupKey> {
        self.keys.get(position)
    }

    pub(crate) fn remove(&mut self, position: usize) {
        self.keys.remove(position);
    }

    /// Appends the keys of one chain, evicting the oldest beyond the cap.
    pub(crate) fn extend(&mut self, chain_id: ChainId, keys: Vec<GroupMessageKey>) {
        for key in keys {
            self.keys.push_back(SkippedGroupKey { chain_id, key });
        }
        while self.keys.len() > MAX_SKIPPED_KEYS {
            self.keys.pop_front();
        }
    }

    /// Drops every key of a chain the receiver no longer holds.
    pub(crate) fn forget_chain(&mut self, chain_id: ChainId) {
        self.keys.retain(|k| k.chain_id != chain_id);
    }

    pub(crate) fn push_restored(&mut self, key: SkippedGroupKey) {
        self.keys.push_back(key);
    }
}
