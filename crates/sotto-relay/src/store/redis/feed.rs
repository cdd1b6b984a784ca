//! Live push across relay processes that share one Redis store
//! (docs/relay.md §9, "Live push across relays").
//!
//! The enqueue script publishes `e` on the channel `<prefix>:{<m>}:changed`
//! of every mailbox it stores an envelope in, inside the same atomic step
//! as the write, so a notification never precedes its envelope and is
//! never forgotten by a relay that dies after the write. A relay that
//! hands out a bundle leaving a mailbox's one-time prekeys (or one-time
//! KEM prekeys) low publishes the stock left there itself:
//! `p<remaining>:<kem remaining>`, `p<remaining>:-` for an owner without
//! KEM prekeys, or `p<remaining>` when the KEM stock is not known (a v1
//! bundle; the only form of relays before the KEM stock, still read).
//!
//! Each relay process keeps one pub/sub connection, subscribed to the
//! channels of the mailboxes whose owners are connected to it, and wakes
//! their connections when a message comes: a wake-up carries no data, the
//! connection reads the store, so a lost or repeated notification loses or
//! repeats nothing. Redis pub/sub delivers at most once, and nothing while
//! the connection is down: after (re)subscribing, and every second while
//! it cannot, the relay wakes every connected owner to read its mailbox
//! (the fetch-on-notify fallback), so a notification lost to an outage
//! costs a delay, never an envelope.
//!
//! On a Redis Cluster a plain `PUBLISH` (the scripts' included) reaches
//! the subscribers of every node, so the pub/sub connection goes to any
//! one node: the first of the store's nodes that answers, the next one
//! when it fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink};

use crate::address::MailboxAddress;
use crate::store::{KemPreKeysLeft, PreKeysLeft};

/// Most channels named in one `SUBSCRIBE` when subscribing again after a
/// reconnection.
const SUBSCRIBE_BATCH: usize = 512;

/// While the pub/sub connection is down: how often every connected owner
/// is woken to read its mailbox, and the first delay before connecting
/// again (doubling up to [`MAX_RETRY`]).
const FALLBACK_PERIOD: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(8);

/// What changed in a mailbox, as announced on its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// An envelope was stored.
    Envelope,
    /// A bundle was handed out and left the owner's prekeys low: the
    /// stock it left, as the relay that handed it out tells its own
    /// connections.
    PreKeysLow(PreKeysLeft),
}

impl Change {
    fn encode(self) -> String {
        match self {
            Self::Envelope => "e".to_owned(),
            Self::PreKeysLow(PreKeysLeft { one_time, kem }) => match kem {
                KemPreKeysLeft::NotSaid => format!("p{one_time}"),
                KemPreKeysLeft::NoKemPreKeys => format!("p{one_time}:-"),
                KemPreKeysLeft::Left(kem) => format!("p{one_time}:{kem}"),
            },
        }
    }

    fn decode(payload: &[u8]) -> Option<Self> {
        match payload {
            b"e" => Some(Self::Envelope),
            [b'p', stock @ ..] => {
                let stock = core::str::from_utf8(stock).ok()?;
                let left = match stock.split_once(':') {
                    // The only form before the KEM stock.
                    None => PreKeysLeft::one_time(count(stock)?),
                    Some((one_time, "-")) => PreKeysLeft::of_v2(count(one_time)?, None),
                    Some((one_time, kem)) => {
                        PreKeysLeft::of_v2(count(one_time)?, Some(count(kem)?))
                    }
                };
                Some(Self::PreKeysLow(left))
            }
            _ => None,
        }
    }
}

/// A count as published: decimal digits, at least one, within `u32`.
fn count(digits: &str) -> Option<u32> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What a feed tells the relay process it serves.
pub(crate) trait FeedListener: Send + Sync + 'static {
    /// `change` happened in `address` (perhaps in another process).
    fn changed(&self, address: &MailboxAddress, change: Change);
    /// The mailboxes whose owners are connected to this process.
    fn watched(&self) -> Vec<MailboxAddress>;
    /// Whether anyone in this process watches `address`.
    fn is_watched(&self, address: &MailboxAddress) -> bool;
    /// Wakes every connected owner to read its mailbox.
    fn wake_all(&self);
}

/// Where a store's changes are announced: what a relay process needs to
/// follow them ([`super::RedisStore::feed_source`]).
#[derive(Clone)]
pub(crate) struct FeedSource {
    /// The server, or the cluster's nodes: any one of them will do.
    pub(super) clients: Vec<redis::Client>,
    pub(super) prefix: String,
    pub(super) timeout: Duration,
}

impl core::fmt::Debug for FeedSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Not the client: its URL may hold a password.
        f.debug_struct("FeedSource")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The channel of `address`: a key of its mailbox (same hash tag), so a
/// script that writes the mailbox may name it.
pub(crate) fn channel(prefix: &str, address: &MailboxAddress) -> String {
    format!("{prefix}:{{{}}}:changed", address.to_hex())
}

/// The mailbox of a channel of this prefix.
fn address_of(prefix: &str, channel: &str) -> Option<MailboxAddress> {
    let hex = channel
        .strip_prefix(prefix)?
        .strip_prefix(":{")?
        .strip_suffix("}:changed")?;
    MailboxAddress::from_hex(hex)
}

/// One relay process's subscription to the store's changes.
pub(crate) struct Feed {
    source: FeedSource,
    /// The subscribing side of the pub/sub connection while it is up.
    /// Held across every `SUBSCRIBE` and `UNSUBSCRIBE`, so they reach the
    /// server in the order the watchers came and went.
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
    /// For `PUBLISH`es of this process (prekey stock).
    publisher: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// Whether the pub/sub connection is up and subscribed.
    up: AtomicBool,
    /// The node ([`FeedSource::clients`]) tried first: the last that
    /// answered.
    node: AtomicUsize,
}

impl core::fmt::Debug for Feed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Feed")
            .field("source", &self.source)
            .field("up", &self.up.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Feed {
    pub(crate) fn new(source: FeedSource) -> Arc<Self> {
        Arc::new(Self {
            source,
            sink: tokio::sync::Mutex::new(None),
            publisher: tokio::sync::Mutex::new(None),
            up: AtomicBool::new(false),
            node: AtomicUsize::new(0),
        })
    }

    /// Whether the pub/sub connection is up: pushes from other processes
    /// arrive as they happen.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Follows the store's changes for `listener` until the task is
    /// dropped: subscribes, passes changes on, and connects again when
    /// the connection drops.
    pub(crate) async fn run(self: Arc<Self>, listener: Arc<dyn FeedListener>) {
        let mut retry = FALLBACK_PERIOD;
        let (mut first, mut was_up) = (true, true);
        loop {
            match self.connect(listener.as_ref()).await {
                Ok(mut stream) => {
                    retry = FALLBACK_PERIOD;
                    if first {
                        tracing::info!(
                            "subscribed to the store's changes on Redis: live push across relay processes"
                        );
                    } else if !was_up {
                        tracing::info!(
                            "Redis pub/sub connection restored: pushes from other relays resume"
                        );
                    }
                    (first, was_up) = (false, true);
                    // Whatever was stored while nobody listened.
                    listener.wake_all();
                    while let Some(message) = stream.next().await {
                        let address = address_of(&self.source.prefix, message.get_channel_name());
                        let change = Change::decode(message.get_payload_bytes());
                        if let (Some(address), Some(change)) = (address, change) {
                            listener.changed(&address, change);
                        }
                    }
                    self.up.store(false, Ordering::Release);
                    *self.sink.lock().await = None;
                    tracing::warn!(
                        "Redis pub/sub connection lost: connected clients read their mailboxes every second until it is back"
                    );
                }
                Err(e) => {
                    first = false;
                    if was_up {
                        tracing::warn!(error = %e, "cannot subscribe to the store's changes on Redis: connected clients read their mailboxes every second until it can");
                    }
                    was_up = false;
                }
            }
            // The fallback: until subscribed again, every owner reads its
            // mailbox every second.
            let mut waited = Duration::ZERO;
            while waited < retry {
                listener.wake_all();
                tokio::time::sleep(FALLBACK_PERIOD).await;
                waited += FALLBACK_PERIOD;
            }
            retry = (retry * 2).min(MAX_RETRY);
        }
    }

    /// Opens the pub/sub connection and subscribes to the channel of every
    /// watched mailbox.
    async fn connect(
        &self,
        listener: &dyn FeedListener,
    ) -> Result<redis::aio::PubSubStream, String> {
        let timeout = self.source.timeout;
        let pubsub = self
            .first_answer(|client| async move {
                tokio::time::timeout(timeout, client.get_async_pubsub())
                    .await
                    .map_err(|_| "timed out".to_owned())?
                    .map_err(|e| e.to_string())
            })
            .await?;
        let (mut sink, stream) = pubsub.split();
        // Under the lock: a watcher that comes meanwhile is either in the
        // list read here or subscribes itself once the sink is in place.
        let mut slot = self.sink.lock().await;
        let channels: Vec<String> = listener
            .watched()
            .iter()
            .map(|a| channel(&self.source.prefix, a))
            .collect();
        for batch in channels.chunks(SUBSCRIBE_BATCH) {
            tokio::time::timeout(timeout, sink.subscribe(batch))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?;
        }
        *slot = Some(sink);
        self.up.store(true, Ordering::Release);
        Ok(stream)
    }

    /// Subscribes to `address`'s channel, returning once the server has
    /// confirmed it (or the connection is down, when the fallback covers
    /// the mailbox). The caller has registered its watcher first.
    pub(crate) async fn watch(&self, address: &MailboxAddress) {
        let mut slot = self.sink.lock().await;
        let Some(sink) = slot.as_mut() else { return };
        let subscribed = tokio::time::timeout(
            self.source.timeout,
            sink.subscribe(channel(&self.source.prefix, address)),
        )
        .await;
        if !matches!(subscribed, Ok(Ok(()))) {
            // The reading side sees the connection end and subscribes
            // everything again; meanwhile the fallback wakes this owner.
            tracing::debug!("SUBSCRIBE failed; the pub/sub connection is being replaced");
        }
    }

    /// Unsubscribes from `address`'s channel if nobody in this process
    /// watches it any more (checked under the lock, so a watcher that came
    /// in between keeps it).
    pub(crate) async fn unwatch(&self, address: &MailboxAddress, listener: &dyn FeedListener) {
        let mut slot = self.sink.lock().await;
        if listener.is_watched(address) {
            return;
        }
        if let Some(sink) = slot.as_mut() {
            let _ = tokio::time::timeout(
                self.source.timeout,
                sink.unsubscribe(channel(&self.source.prefix, address)),
            )
            .await;
        }
    }

    /// `connect` to the first node that answers, starting with the one
    /// that answered last; the last node's error if none does.
    async fn first_answer<T, F>(&self, connect: impl Fn(redis::Client) -> F) -> Result<T, String>
    where
        F: core::future::Future<Output = Result<T, String>>,
    {
        let clients = &self.source.clients;
        let first = self.node.load(Ordering::Relaxed);
        let mut error = "no Redis node to connect to".to_owned();
        for i in 0..clients.len() {
            let n = (first + i) % clients.len();
            let Some(client) = clients.get(n) else {
                continue;
            };
            match connect(client.clone()).await {
                Ok(connected) => {
                    self.node.store(n, Ordering::Relaxed);
                    return Ok(connected);
                }
                Err(e) => error = e,
            }
        }
        Err(error)
    }

    /// Announces `change` of `address` to every relay process, this one
    /// included. Best effort: a failure is logged, and the owner learns the
    /// prekey stock at its next login.
    pub(crate) async fn publish(&self, address: &MailboxAddress, change: Change) {
        let mut slot = self.publisher.lock().await;
        if slot.is_none() {
            let timeout = self.source.timeout;
            let connected = self
                .first_answer(|client| async move {
                    tokio::time::timeout(timeout, client.get_multiplexed_async_connection())
                        .await
                        .map_err(|_| "timed out".to_owned())?
                        .map_err(|e| e.to_string())
                })
                .await;
            match connected {
                Ok(conn) => *slot = Some(conn),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot publish a change on Redis");
                    return;
                }
            }
        }
        let Some(conn) = slot.as_mut() else { return };
        let mut publish = redis::cmd("PUBLISH");
        publish
            .arg(channel(&self.source.prefix, address))
            .arg(change.encode());
        let sent = tokio::time::timeout(
            self.source.timeout,
            publish.query_async::<redis::Value>(conn),
        )
        .await;
        if !matches!(sent, Ok(Ok(_))) {
            tracing::warn!("publishing a change on Redis failed");
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_and_channels_round_trip() {
        let low = |one_time, kem| Change::PreKeysLow(PreKeysLeft { one_time, kem });
        for change in [
            Change::Envelope,
            low(0, KemPreKeysLeft::NotSaid),
            low(u32::MAX, KemPreKeysLeft::NotSaid),
            low(3, KemPreKeysLeft::NoKemPreKeys),
            low(3, KemPreKeysLeft::Left(0)),
            low(u32::MAX, KemPreKeysLeft::Left(u32::MAX)),
        ] {
            assert_eq!(Change::decode(change.encode().as_bytes()), Some(change));
        }
        assert_eq!(low(7, KemPreKeysLeft::Left(2)).encode(), "p7:2");
        assert_eq!(low(7, KemPreKeysLeft::NoKemPreKeys).encode(), "p7:-");
        for bad in [
            &b""[..],
            b"x",
            b"p",
            b"p-1",
            b"p+1",
            b"p4294967296",
            b"ee",
            b"p1:",
            b"p:1",
            b"p1:x",
            b"p1:-1",
            b"p1:2:3",
            b"p1:4294967296",
            b"p1:--",
        ] {
            assert_eq!(Change::decode(bad), None, "{bad:?}");
        }
        let address = MailboxAddress::from_bytes([0xab; 32]);
        let name = channel("sotto:a", &address);
        assert_eq!(name, format!("sotto:a:{{{}}}:changed", "ab".repeat(32)));
        assert_eq!(address_of("sotto:a", &name), Some(address));
        assert_eq!(address_of("sotto", &name), None);
        assert_eq!(address_of("sotto:a", "sotto:a:{zz}:changed"), None);
    }

    /// What a relay from before the KEM stock publishes, `p<remaining>`,
    /// is still read: the one-time stock, the KEM stock not said (the
    /// connection reads it from the store).
    #[test]
    fn a_low_stock_message_in_the_old_form_is_read() {
        assert_eq!(
            Change::decode(b"p4"),
            Some(Change::PreKeysLow(PreKeysLeft {
                one_time: 4,
                kem: KemPreKeysLeft::NotSaid
            }))
        );
        assert_eq!(
            Change::decode(b"p4:1"),
            Some(Change::PreKeysLow(PreKeysLeft {
                one_time: 4,
                kem: KemPreKeysLeft::Left(1)
            }))
        );
    }
}
