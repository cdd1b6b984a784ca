//! Wakes the connections of a mailbox's owner when something changes.
//!
//! The hub carries no data, only counters: a connection that sees the
//! envelope counter move reads the new envelopes from the store itself.
//! Nothing is lost when the owner is busy or offline, and pushes arrive in
//! id order.
//!
//! In one process the server signals the hub after each write. On a store
//! that relay processes share and that has a change feed
//! ([`MailboxStore::change_feed`](crate::MailboxStore::change_feed)), the
//! signals come from the feed instead, for this process's writes as for
//! the others' (store/redis/feed.rs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::address::MailboxAddress;
use crate::store::{ChangeFeed, PreKeysLeft};

/// What changed in a mailbox since a connection last looked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MailboxSignal {
    /// Bumped when an envelope is stored.
    pub(crate) envelopes: u64,
    /// Bumped when a bundle is handed out and the stock is low.
    pub(crate) prekeys: u64,
    /// The stock the last such bundle left.
    pub(crate) prekeys_left: PreKeysLeft,
}

/// The watch channels of the mailboxes whose owners are connected to this
/// process.
#[derive(Debug, Default)]
struct Local {
    mailboxes: Mutex<HashMap<MailboxAddress, watch::Sender<MailboxSignal>>>,
}

impl Local {
    fn lock(&self) -> MutexGuard<'_, HashMap<MailboxAddress, watch::Sender<MailboxSignal>>> {
        // The map stays consistent even if a holder panicked: every update
        // is a single insert, remove or counter bump.
        self.mailboxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn envelope_stored(&self, address: &MailboxAddress) {
        if let Some(tx) = self.lock().get(address) {
            tx.send_modify(|s| s.envelopes = s.envelopes.wrapping_add(1));
        }
    }

    fn prekeys_low(&self, address: &MailboxAddress, left: PreKeysLeft) {
        if let Some(tx) = self.lock().get(address) {
            tx.send_modify(|s| {
                s.prekeys = s.prekeys.wrapping_add(1);
                s.prekeys_left = left;
            });
        }
    }
}

#[cfg(feature = "redis")]
impl crate::store::FeedListener for Local {
    fn changed(&self, address: &MailboxAddress, change: crate::store::Change) {
        match change {
            crate::store::Change::Envelope => self.envelope_stored(address),
            crate::store::Change::PreKeysLow(left) => self.prekeys_low(address, left),
        }
    }

    fn watched(&self) -> Vec<MailboxAddress> {
        self.lock().keys().copied().collect()
    }

    fn is_watched(&self, address: &MailboxAddress) -> bool {
        self.lock().contains_key(address)
    }

    fn wake_all(&self) {
        for tx in self.lock().values() {
            tx.send_modify(|s| s.envelopes = s.envelopes.wrapping_add(1));
        }
    }
}

/// Signals for the mailboxes whose owners are connected to this process.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    local: Arc<Local>,
    /// The shared store's change feed, if it has one.
    #[cfg(feature = "redis")]
    feed: Option<Arc<crate::store::Feed>>,
}

impl Hub {
    /// A hub for a store with `feed` ([`MailboxStore::change_feed`](crate::MailboxStore::change_feed)).
    pub(crate) fn new(feed: Option<ChangeFeed>) -> Self {
        #[cfg(feature = "redis")]
        let feed = feed.map(|ChangeFeed(kind)| match kind {
            crate::store::FeedKind::Redis(source) => crate::store::Feed::new(source),
        });
        #[cfg(not(feature = "redis"))]
        let _ = feed;
        Self {
            local: Arc::default(),
            #[cfg(feature = "redis")]
            feed,
        }
    }

    /// Starts following the store's change feed, if it has one: the
    /// returned task runs until aborted.
    pub(crate) fn start(&self) -> Option<tokio::task::JoinHandle<()>> {
        #[cfg(feature = "redis")]
        if let Some(feed) = &self.feed {
            let listener: Arc<dyn crate::store::FeedListener> = self.local.clone();
            return Some(tokio::spawn(feed.clone().run(listener)));
        }
        None
    }

    /// Whether signals from other relay processes arrive as they happen:
    /// `None` without a change feed.
    pub(crate) fn feed_up(&self) -> Option<bool> {
        #[cfg(feature = "redis")]
        if let Some(feed) = &self.feed {
            return Some(feed.is_up());
        }
        None
    }

    /// Starts watching `address`. With a change feed, returns once the
    /// feed follows the mailbox too, so that whatever is stored after this
    /// returns, by any process, is signalled.
    pub(crate) async fn subscribe(
        &self,
        address: MailboxAddress,
    ) -> watch::Receiver<MailboxSignal> {
        let receiver = self
            .local
            .lock()
            .entry(address)
            .or_insert_with(|| watch::channel(MailboxSignal::default()).0)
            .subscribe();
        #[cfg(feature = "redis")]
        if let Some(feed) = &self.feed {
            feed.watch(&address).await;
        }
        receiver
    }

    /// Stops watching; forgets the mailbox once nobody watches it.
    pub(crate) fn unsubscribe(
        &self,
        address: &MailboxAddress,
        receiver: watch::Receiver<MailboxSignal>,
    ) {
        let mut map = self.local.lock();
        drop(receiver);
        if map.get(address).is_some_and(|tx| tx.receiver_count() == 0) {
            map.remove(address);
            drop(map);
            #[cfg(feature = "redis")]
            if let Some(feed) = &self.feed
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                let (feed, local, address) = (feed.clone(), self.local.clone(), *address);
                runtime.spawn(async move { feed.unwatch(&address, local.as_ref()).await });
            }
        }
    }

    /// An envelope was stored in `address` by this process. With a change
    /// feed the store announced it already, to every process: nothing to
    /// do here.
    pub(crate) fn envelope_stored(&self, address: &MailboxAddress) {
        #[cfg(feature = "redis")]
        if self.feed.is_some() {
            return;
        }
        self.local.envelope_stored(address);
    }

    /// A bundle of `address` was handed out, leaving its prekeys low: the
    /// stock `left`. With a change feed it is announced there, to every
    /// process (this one included), with the same stock.
    pub(crate) fn prekeys_low(&self, address: &MailboxAddress, left: PreKeysLeft) {
        #[cfg(feature = "redis")]
        if let Some(feed) = &self.feed {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let (feed, address) = (feed.clone(), *address);
                runtime.spawn(async move {
                    feed.publish(&address, crate::store::Change::PreKeysLow(left))
                        .await;
                });
            }
            return;
        }
        self.local.prekeys_low(address, left);
    }

    #[cfg(test)]
    fn watched(&self) -> usize {
        self.local.lock().len()
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
        let mut rx1 = hub.subscribe(a).await;
        let rx2 = hub.subscribe(a).await;
        hub.envelope_stored(&a);
        rx1.changed().await.unwrap();
        assert_eq!(rx1.borrow_and_update().envelopes, 1);
        hub.unsubscribe(&a, rx2);
        assert_eq!(hub.watched(), 1);
        hub.unsubscribe(&a, rx1);
        assert_eq!(hub.watched(), 0);
    }

    #[tokio::test]
    async fn a_low_stock_signal_carries_the_kem_stock_the_bundle_left() {
        let hub = Hub::default();
        let a = MailboxAddress::from_bytes([1; 32]);
        let mut rx = hub.subscribe(a).await;
        let left = PreKeysLeft::of_v2(12, Some(1));
        hub.prekeys_low(&a, left);
        rx.changed().await.unwrap();
        let signal = *rx.borrow_and_update();
        assert_eq!((signal.prekeys, signal.prekeys_left), (1, left));
        hub.unsubscribe(&a, rx);
    }

    /// What the change feed hears from other processes reaches the
    /// connections as the same signal.
    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn a_low_stock_change_from_the_feed_is_the_same_signal() {
        use crate::store::{Change, FeedListener};
        let hub = Hub::default();
        let a = MailboxAddress::from_bytes([2; 32]);
        let mut rx = hub.subscribe(a).await;
        for left in [
            PreKeysLeft::of_v2(3, Some(0)),
            PreKeysLeft::of_v2(3, None),
            PreKeysLeft::one_time(2),
        ] {
            hub.local.changed(&a, Change::PreKeysLow(left));
            rx.changed().await.unwrap();
            assert_eq!(rx.borrow_and_update().prekeys_left, left);
        }
        hub.unsubscribe(&a, rx);
    }
}
