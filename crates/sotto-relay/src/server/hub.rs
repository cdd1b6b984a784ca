//! Wakes the connections of a mailbox's owner when something changes.
//!
//! The hub carries no data, only counters: a connection that sees the
//! envelope counter move reads the new envelopes from the store itself.
//! Nothing is lost when the owner is busy or offline, and pushes arrive in
//! id order.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

use crate::address::MailboxAddress;

/// What changed in a mailbox since a connection last looked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MailboxSignal {
    /// Bumped when an envelope is stored.
    pub(crate) envelopes: u64,
    /// Bumped when a one-time prekey is handed out and the stock is low.
    pub(crate) prekeys: u64,
    /// One-time prekeys left after the last hand-out.
    pub(crate) prekeys_remaining: u32,
}

/// Signals for the mailboxes whose owners are connected to this process.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    mailboxes: Mutex<HashMap<MailboxAddress, watch::Sender<MailboxSignal>>>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HashMap<MailboxAddress, watch::Sender<MailboxSignal>>> {
        // The map stays consistent even if a holder panicked: every update
        // is a single insert, remove or counter bump.
        self.mailboxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts watching `address`.
    pub(crate) fn subscribe(&self, address: MailboxAddress) -> watch::Receiver<MailboxSignal> {
        self.lock()
            .entry(address)
            .or_insert_with(|| watch::channel(MailboxSignal::default()).0)
            .subscribe()
    }

    /// Stops watching; forgets the mailbox once nobody watches it.
    pub(crate) fn unsubscribe(
        &self,
        address: &MailboxAddress,
        receiver: watch::Receiver<MailboxSignal>,
    ) {
        let mut map = self.lock();
        drop(receiver);
        if map.get(address).is_some_and(|tx| tx.receiver_count() == 0) {
            map.remove(address);
        }
    }

    /// An envelope was stored in `address`.
    pub(crate) fn envelope_stored(&self, address: &MailboxAddress) {
        if let Some(tx) = self.lock().get(address) {
            tx.send_modify(|s| s.envelopes = s.envelopes.wrapping_add(1));
        }
    }

    /// A one-time prekey of `address` was handed out, leaving `remaining`.
    pub(crate) fn prekeys_low(&self, address: &MailboxAddress, remaining: u32) {
        if let Some(tx) = self.lock().get(address) {
            tx.send_modify(|s| {
                s.prekeys = s.prekeys.wrapping_add(1);
                s.prekeys_remaining = remaining;
            });
        }
    }

    #[cfg(test)]
    fn watched(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_are_woken_and_forgotten() {
        let hub = Hub::default();
        let a = MailboxAddress::from_bytes([1; 32]);
        hub.envelope_stored(&a); // nobody listens: a no-op
        let mut rx1 = hub.subscribe(a);
        let rx2 = hub.subscribe(a);
        hub.envelope_stored(&a);
        rx1.changed().await.unwrap();
        assert_eq!(rx1.borrow_and_update().envelopes, 1);
        hub.unsubscribe(&a, rx2);
        assert_eq!(hub.watched(), 1);
        hub.unsubscribe(&a, rx1);
        assert_eq!(hub.watched(), 0);
    }
}
