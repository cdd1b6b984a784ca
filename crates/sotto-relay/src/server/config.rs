//! Server configuration and its defaults.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::blob::{
    BlobError, BlobLimits, BlobStore, DEFAULT_MAX_BLOB_BYTES_PER_MAILBOX, DEFAULT_MAX_BLOB_SIZE,
    DEFAULT_MAX_BLOB_TTL, DEFAULT_MAX_TOTAL_BLOB_BYTES, DEFAULT_MEMORY_BLOB_BYTES, DirBlobStore,
    MemoryBlobStore,
};
use crate::protocol::{
    DEFAULT_MAX_FRAME_SIZE, MAX_SERVER_ID_LEN, MIN_MAX_FRAME_SIZE, max_payload_len,
};
use crate::store::{DEFAULT_ENVELOPE_TTL, DEFAULT_MAX_TOTAL_BYTES, MailboxLimits, QueuePolicy};

/// Default of [`ServerConfig::connection_send_budget`]: 64 MiB.
pub const DEFAULT_CONNECTION_SEND_BUDGET: u64 = 64 << 20;

/// Default of [`ServerConfig::max_connections_per_address`]: 64.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 64;

/// Default of [`ServerConfig::unauthenticated_frame_budget`]: 32 MiB.
pub const DEFAULT_UNAUTHENTICATED_FRAME_BUDGET: u64 = 32 << 20;

/// Default of [`ServerConfig::authenticated_frame_budget`]: 256 MiB.
pub const DEFAULT_AUTHENTICATED_FRAME_BUDGET: u64 = 256 << 20;

/// Per-connection rate limit: two token buckets, one counting requests and
/// one counting received bytes. A request beyond the limit is delayed until
/// the buckets refill (the connection stops reading meanwhile), never
/// refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second (default 100).
    pub requests_per_second: f64,
    /// Requests allowed in a burst (default 200).
    pub request_burst: f64,
    /// Sustained received bytes per second (default 4 MiB).
    pub bytes_per_second: f64,
    /// Bytes allowed in a burst (default 8 MiB).
    pub byte_burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            requests_per_second: 100.0,
            request_burst: 200.0,
            bytes_per_second: 4.0 * 1024.0 * 1024.0,
            byte_burst: 8.0 * 1024.0 * 1024.0,
        }
    }
}

/// How many envelopes strangers may queue for a mailbox: a token bucket per
/// recipient mailbox, in the relay's memory (docs/relay.md §6, "Access").
///
/// An envelope whose sender presents the recipient's access key, or sent to
/// a mailbox that published no access verifier, never touches it. Any
/// other envelope (no key, or a wrong one) is a *first contact*: it takes a
/// token, and without one it is refused with `AccessDenied`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstContactLimit {
    /// First contacts a mailbox takes in a burst (default 20). 0: none at
    /// all, only senders with the access key.
    pub burst: u32,
    /// One more first contact is allowed per this much time, up to
    /// `burst` (default 3 min; at least 1 s).
    pub interval: Duration,
    /// Most mailboxes whose allowance is tracked at once (default
    /// 100 000). A mailbox whose allowance is full again is forgotten;
    /// while this many are partly used, first contacts to further
    /// mailboxes are refused, so the relay's memory stays bounded.
    pub tracked_mailboxes: usize,
}

impl Default for FirstContactLimit {
    fn default() -> Self {
        Self {
            burst: 20,
            interval: Duration::from_secs(180),
            tracked_mailboxes: 100_000,
        }
    }
}

/// Where a relay keeps blobs (docs/relay.md §12).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BlobStorage {
    /// A [`MemoryBlobStore`] of at most `max_bytes`, made when the server
    /// is bound and lost when it stops: the default, with 1 GiB
    /// ([`DEFAULT_MEMORY_BLOB_BYTES`]), for tests and embedded relays.
    Memory {
        /// What the store holds at most (blobs' full lengths).
        max_bytes: u64,
    },
    /// This store, e.g. a [`DirBlobStore`] ([`BlobStorage::dir`]).
    Store(Arc<dyn BlobStore>),
    /// No blobs: the relay speaks protocol version 4 at most, and a
    /// client learns from the handshake that it takes no blobs.
    Off,
}

impl BlobStorage {
    /// A [`DirBlobStore`] in `dir` (created `0700` if need be).
    pub fn dir(dir: impl AsRef<Path>) -> Result<Self, BlobError> {
        Ok(Self::Store(Arc::new(DirBlobStore::open(dir)?)))
    }

    /// The store this makes: a new one for [`BlobStorage::Memory`].
    pub(crate) fn open(&self) -> Option<Arc<dyn BlobStore>> {
        match self {
            Self::Memory { max_bytes } => Some(Arc::new(MemoryBlobStore::new(*max_bytes))),
            Self::Store(store) => Some(store.clone()),
            Self::Off => None,
        }
    }
}

impl Default for BlobStorage {
    fn default() -> Self {
        Self::Memory {
            max_bytes: DEFAULT_MEMORY_BLOB_BYTES,
        }
    }
}

/// Two settings are the same if they name the same store (the same
/// `Arc`), or memory stores of the same size.
impl PartialEq for BlobStorage {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Memory { max_bytes: a }, Self::Memory { max_bytes: b }) => a == b,
            (Self::Store(a), Self::Store(b)) => Arc::ptr_eq(a, b),
            (Self::Off, Self::Off) => true,
            _ => false,
        }
    }
}

/// Everything a relay can be told. Build it with `ServerConfig::default()`
/// and change the fields you need.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// The relay's id, sent in `Welcome` and bound into every challenge
    /// signature: 1 to 255 bytes of UTF-8, typically the relay's host name
    /// (default `"sotto-relay"`).
    pub server_id: String,
    /// Largest frame accepted, length prefix value (default 1 MiB, minimum
    /// [`MIN_MAX_FRAME_SIZE`], 2055: every answer of the relay, and an
    /// upload with a KEM prekey, fit in it). The largest envelope is this
    /// minus 70 bytes.
    pub max_frame_size: u32,
    /// Per-mailbox queue limits (default 10 000 envelopes, 256 MiB).
    pub mailbox_limits: MailboxLimits,
    /// Most payload bytes queued over all mailboxes together (default
    /// 16 GiB). A `Send` that would go over it is refused with
    /// `StorageFull`; fetching and acknowledging still work and free space.
    pub max_total_bytes: u64,
    /// How long an envelope stays queued if its recipient does not
    /// acknowledge it (default 30 days). The expiry is stored rounded up to
    /// a whole hour, so an envelope is kept at least this long and less
    /// than an hour longer; then it is no longer delivered, and the next
    /// sweep deletes it.
    pub envelope_ttl: Duration,
    /// How often expired envelopes are deleted (default 10 min).
    pub sweep_interval: Duration,
    /// Most payload bytes one connection may have the relay store, over its
    /// whole life (default 64 MiB). The `Send` that would go over it is
    /// refused with the fatal `SendBudgetExceeded` and the connection is
    /// closed; the client reconnects to send more. Refused and duplicate
    /// envelopes do not count. At least the largest envelope
    /// (`max_frame_size - 70`).
    pub connection_send_budget: u64,
    /// Most one-time prekeys stored per mailbox (default 1000).
    pub max_one_time_prekeys: u32,
    /// Most one-time KEM prekeys (protocol 4) stored per mailbox (default
    /// 100; each takes about 1.25 KB).
    pub max_kem_prekeys: u32,
    /// The owner is told to replenish when fewer one-time prekeys than this
    /// are left (default 10).
    pub prekey_low_threshold: u32,
    /// Most envelopes in one `Fetch` response (default 256).
    pub fetch_page_size: u16,
    /// Per-connection rate limit.
    pub rate_limit: RateLimit,
    /// Most simultaneous connections; more are refused with `ServerBusy`
    /// (default 10 000).
    pub max_connections: usize,
    /// Most simultaneous connections from one source: one IPv4 address, or
    /// one IPv6 /64 prefix (default 64). More are refused with `ServerBusy`
    /// and closed before anything is allocated for them, so one source
    /// cannot take the slots of [`max_connections`](Self::max_connections)
    /// from everyone else.
    pub max_connections_per_address: usize,
    /// Time a new connection has to complete TLS and send `Hello`
    /// (default 10 s).
    pub handshake_timeout: Duration,
    /// A connection that has not authenticated is closed once it has made
    /// no useful request for this long (default 30 s): useful are `Hello`,
    /// a `Send` answered `Sent` and a `FetchBundle` answered with a
    /// bundle; pings and refused requests do not count.
    pub unauthenticated_timeout: Duration,
    /// An authenticated connection that sends no complete frame for this
    /// long is closed (default 5 min; clients ping to stay connected).
    pub idle_timeout: Duration,
    /// Time a frame has to arrive completely, from the first byte of its
    /// length prefix (default 10 s; the largest frame then needs about
    /// 100 KiB/s). A frame that takes longer closes the connection.
    pub frame_timeout: Duration,
    /// Bytes of request-frame buffers that all unauthenticated connections
    /// together may hold beyond the first 4 KiB of each frame (default
    /// 32 MiB, at least `max_frame_size`). A connection that needs more
    /// waits for room, within its `frame_timeout`.
    pub unauthenticated_frame_budget: u64,
    /// The same for authenticated connections, a separate pool (default
    /// 256 MiB, at least `max_frame_size`).
    pub authenticated_frame_budget: u64,
    /// A frame that cannot be written within this time closes the
    /// connection (default 30 s): a client that stops reading cannot hold
    /// the relay.
    pub write_timeout: Duration,
    /// On shutdown, connections get this long to finish the request in hand
    /// before they are cut (default 5 s).
    pub shutdown_grace: Duration,
    /// First contacts per mailbox (default a burst of 20, then one per
    /// 3 min): envelopes without the recipient's access key.
    pub first_contact: FirstContactLimit,
    /// Where blobs are kept (default: in memory, at most 1 GiB; the
    /// binary uses a directory, docs/relay.md §9).
    pub blobs: BlobStorage,
    /// Longest blob a `BlobCreate` may announce (default 4 GiB; beyond it
    /// `BlobTooLarge`).
    pub max_blob_size: u64,
    /// Longest time to live of a blob (default 30 days; beyond it
    /// `InvalidBlobRequest`). A blob is deleted when it expires, complete
    /// or not, or once every recipient has fetched it.
    pub max_blob_ttl: Duration,
    /// Bytes one mailbox's blobs may take together, counted in full from
    /// their creation (default 8 GiB; beyond it `MailboxFull`).
    pub max_blob_bytes_per_mailbox: u64,
    /// Bytes all blobs together may take, counted likewise (default
    /// 64 GiB; beyond it `StorageFull`).
    pub max_total_blob_bytes: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            server_id: "sotto-relay".to_owned(),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            mailbox_limits: MailboxLimits::default(),
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            envelope_ttl: DEFAULT_ENVELOPE_TTL,
            sweep_interval: Duration::from_secs(600),
            connection_send_budget: DEFAULT_CONNECTION_SEND_BUDGET,
            max_one_time_prekeys: 1000,
            max_kem_prekeys: crate::store::DEFAULT_MAX_KEM_PREKEYS,
            prekey_low_threshold: 10,
            fetch_page_size: 256,
            rate_limit: RateLimit::default(),
            max_connections: 10_000,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            handshake_timeout: Duration::from_secs(10),
            unauthenticated_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            frame_timeout: Duration::from_secs(10),
            unauthenticated_frame_budget: DEFAULT_UNAUTHENTICATED_FRAME_BUDGET,
            authenticated_frame_budget: DEFAULT_AUTHENTICATED_FRAME_BUDGET,
            write_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
            first_contact: FirstContactLimit::default(),
            blobs: BlobStorage::default(),
            max_blob_size: DEFAULT_MAX_BLOB_SIZE,
            max_blob_ttl: DEFAULT_MAX_BLOB_TTL,
            max_blob_bytes_per_mailbox: DEFAULT_MAX_BLOB_BYTES_PER_MAILBOX,
            max_total_blob_bytes: DEFAULT_MAX_TOTAL_BLOB_BYTES,
        }
    }
}

impl ServerConfig {
    /// What the store enforces on every `Send`.
    pub fn queue_policy(&self) -> QueuePolicy {
        QueuePolicy {
            mailbox: self.mailbox_limits,
            max_total_bytes: self.max_total_bytes,
            envelope_ttl: self.envelope_ttl,
        }
    }

    /// What the blob store enforces on every `BlobCreate`.
    pub fn blob_limits(&self) -> BlobLimits {
        BlobLimits {
            max_bytes_per_mailbox: self.max_blob_bytes_per_mailbox,
            max_total_bytes: self.max_total_blob_bytes,
        }
    }

    /// Checks the values are usable; the server refuses to start otherwise.
    /// Each message names the setting it refuses, as the configuration
    /// file spells it (docs/relay.md §8).
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.server_id.is_empty() || self.server_id.len() > MAX_SERVER_ID_LEN {
            return Err("server_id must be 1 to 255 bytes");
        }
        if self.max_frame_size < MIN_MAX_FRAME_SIZE {
            // MIN_MAX_FRAME_SIZE, spelled out (a test keeps them equal).
            return Err(
                "max_frame_size must be at least 2055 bytes (a device list or a v2 bundle with its frame)",
            );
        }
        if self.fetch_page_size == 0 {
            return Err("fetch_page_size must be at least 1");
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1");
        }
        if self.max_connections_per_address == 0 {
            return Err("max_connections_per_address must be at least 1");
        }
        // Otherwise a frame of the largest size could never be read.
        let max_frame = u64::from(self.max_frame_size);
        if self.unauthenticated_frame_budget < max_frame {
            return Err("unauthenticated_frame_budget must be at least max_frame_size");
        }
        if self.authenticated_frame_budget < max_frame {
            return Err("authenticated_frame_budget must be at least max_frame_size");
        }
        if self.max_total_bytes == 0 {
            return Err("max_total_bytes must be at least 1");
        }
        if self.envelope_ttl.is_zero() {
            return Err("envelope_ttl must be positive");
        }
        if self.sweep_interval.is_zero() {
            return Err("sweep_interval must be positive");
        }
        // Otherwise an envelope of the largest size could never be sent.
        if self.connection_send_budget < max_payload_len(self.max_frame_size) as u64 {
            return Err("connection_send_budget must be at least max_frame_size - 70");
        }
        let r = &self.rate_limit;
        let positive = |v: f64| v.is_finite() && v > 0.0;
        let rates = [
            (
                r.requests_per_second,
                "rate_limit.requests_per_second must be positive and finite",
            ),
            (
                r.request_burst,
                "rate_limit.request_burst must be positive and finite",
            ),
            (
                r.bytes_per_second,
                "rate_limit.bytes_per_second must be positive and finite",
            ),
            (
                r.byte_burst,
                "rate_limit.byte_burst must be positive and finite",
            ),
        ];
        if let Some((_, message)) = rates.iter().find(|(v, _)| !positive(*v)) {
            return Err(message);
        }
        let timeouts = [
            (self.handshake_timeout, "handshake_timeout must be positive"),
            (
                self.unauthenticated_timeout,
                "unauthenticated_timeout must be positive",
            ),
            (self.idle_timeout, "idle_timeout must be positive"),
            (self.frame_timeout, "frame_timeout must be positive"),
            (self.write_timeout, "write_timeout must be positive"),
        ];
        if let Some((_, message)) = timeouts.iter().find(|(t, _)| t.is_zero()) {
            return Err(message);
        }
        if self.first_contact.interval < Duration::from_secs(1) {
            return Err("first_contact.interval must be at least 1 s");
        }
        if self.first_contact.tracked_mailboxes == 0 {
            return Err("first_contact.tracked_mailboxes must be at least 1");
        }
        if self.max_blob_ttl < Duration::from_secs(1) {
            return Err("max_blob_ttl must be at least 1 s");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_refused() {
        assert!(ServerConfig::default().validate().is_ok());
        let bad = [
            ServerConfig {
                server_id: String::new(),
                ..Default::default()
            },
            ServerConfig {
                server_id: "x".repeat(256),
                ..Default::default()
            },
            ServerConfig {
                max_frame_size: 100,
                ..Default::default()
            },
            ServerConfig {
                max_total_bytes: 0,
                ..Default::default()
            },
            ServerConfig {
                envelope_ttl: Duration::ZERO,
                ..Default::default()
            },
            ServerConfig {
                sweep_interval: Duration::ZERO,
                ..Default::default()
            },
            ServerConfig {
                connection_send_budget: 1000,
                ..Default::default()
            },
            ServerConfig {
                max_connections_per_address: 0,
                ..Default::default()
            },
            ServerConfig {
                unauthenticated_frame_budget: 1 << 19,
                ..Default::default()
            },
            ServerConfig {
                authenticated_frame_budget: 0,
                ..Default::default()
            },
            ServerConfig {
                frame_timeout: Duration::ZERO,
                ..Default::default()
            },
            ServerConfig {
                unauthenticated_timeout: Duration::ZERO,
                ..Default::default()
            },
            ServerConfig {
                rate_limit: RateLimit {
                    requests_per_second: f64::NAN,
                    ..Default::default()
                },
                ..Default::default()
            },
            ServerConfig {
                first_contact: FirstContactLimit {
                    interval: Duration::from_millis(999),
                    ..Default::default()
                },
                ..Default::default()
            },
            ServerConfig {
                max_blob_ttl: Duration::from_millis(10),
                ..Default::default()
            },
            ServerConfig {
                first_contact: FirstContactLimit {
                    tracked_mailboxes: 0,
                    ..Default::default()
                },
                ..Default::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err());
        }
        // The smallest budget that still lets the largest envelope through.
        let smallest = ServerConfig {
            max_frame_size: MIN_MAX_FRAME_SIZE,
            connection_send_budget: u64::from(MIN_MAX_FRAME_SIZE) - 70,
            ..Default::default()
        };
        assert!(smallest.validate().is_ok());
    }

    #[test]
    fn the_smallest_frame_size_is_the_one_the_refusal_names() {
        let below = ServerConfig {
            max_frame_size: MIN_MAX_FRAME_SIZE - 1,
            ..Default::default()
        };
        let message = below.validate().unwrap_err();
        assert!(
            message.contains(&format!("at least {MIN_MAX_FRAME_SIZE} bytes")),
            "{message}"
        );
    }
}
