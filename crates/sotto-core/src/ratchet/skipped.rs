//! Message keys of skipped messages (PROTOCOL.md: at most 2000 per
//! session, oldest evicted first).

use std::collections::VecDeque;

use super::message_key::MessageKey;

/// Per-session cap on stored skipped message keys.
pub const MAX_SKIPPED_KEYS: usize = 2000;

/// One stored key: which chain (by the sender's ratchet key) and index.
#[derive(Clone, Debug)]
pub(crate) struct SkippedKey {
    pub(crate) ratchet_key: [u8; 32],
    pub(crate) key: MessageKey,
}

/// Skipped keys in insertion order.
#[derive(Clone, Debug, Default)]
pub(crate) struct SkippedKeys {
    keys: VecDeque<SkippedKey>,
}

impl SkippedKeys {
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &SkippedKey> {
        self.keys.iter()
    }

    pub(crate) fn position(&self, ratchet_key: &[u8; 32], index: u32) -> Option<usize> {
        self.keys
            .iter()
            .position(|k| k.key.index() == index && k.ratchet_key == *ratchet_key)
    }

    pub(crate) fn get(&self, position: usize) -> Option<&SkippedKey> {
        self.keys.get(position)
    }

    pub(crate) fn remove(&mut self, position: usize) {
        self.keys.remove(position);
    }

    /// Appends keys, evicting the oldest beyond the cap.
    pub(crate) fn extend(&mut self, ratchet_key: &[u8; 32], keys: Vec<MessageKey>) {
        for key in keys {
            self.keys.push_back(SkippedKey {
                ratchet_key: *ratchet_key,
                key,
            });
        }
        while self.keys.len() > MAX_SKIPPED_KEYS {
            self.keys.pop_front();
        }
    }

    pub(crate) fn push_restored(&mut self, key: SkippedKey) {
        self.keys.push_back(key);
    }
}
