//! What the relay counts for its operator, served in Prometheus' text
//! format by the HTTP endpoint (docs/relay.md §10, "Monitoring").
//!
//! Only counts, sizes and durations, with labels from fixed lists (request
//! types, error codes, refusal reasons): nothing names a mailbox, an
//! envelope, a message id or a peer, so the metrics hold no user data.
//! Counting is a relaxed atomic add, with no lock and no allocation, at the
//! places the server handles requests; the text is made only when
//! `/metrics` is asked.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::FrameMemory;
use crate::blob::BlobTotals;
use crate::protocol::{ErrorCode, Request};
use crate::store::StoreTotals;

/// Upper bounds of the request latency buckets, in microseconds (0.5 ms to
/// 10 s; a storage call with `synchronous = FULL` takes a few ms).
const BUCKETS_MICROS: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// The same bounds as Prometheus writes them, in seconds.
const BUCKETS_LE: [&str; 14] = [
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
    "2.5", "5", "10",
];

/// A request type, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Hello,
    Authenticate,
    UploadPreKeys,
    FetchBundle,
    FetchBundleV2,
    Send,
    Fetch,
    Ack,
    PreKeyCount,
    Ping,
    PublishDeviceList,
    FetchDeviceList,
    SendMulti,
    BlobCreate,
    BlobPut,
    BlobStatus,
    BlobGet,
    BlobDone,
    /// A frame that did not decode as a request.
    Invalid,
}

impl RequestKind {
    const ALL: [Self; 19] = [
        Self::Hello,
        Self::Authenticate,
        Self::UploadPreKeys,
        Self::FetchBundle,
        Self::FetchBundleV2,
        Self::Send,
        Self::Fetch,
        Self::Ack,
        Self::PreKeyCount,
        Self::Ping,
        Self::PublishDeviceList,
        Self::FetchDeviceList,
        Self::SendMulti,
        Self::BlobCreate,
        Self::BlobPut,
        Self::BlobStatus,
        Self::BlobGet,
        Self::BlobDone,
        Self::Invalid,
    ];

    pub(crate) fn of(request: &Request) -> Self {
        match request {
            Request::Hello { .. } => Self::Hello,
            Request::Authenticate { .. } => Self::Authenticate,
            Request::UploadPreKeys(_) => Self::UploadPreKeys,
            Request::FetchBundle { .. } => Self::FetchBundle,
            Request::FetchBundleV2 { .. } => Self::FetchBundleV2,
            Request::Send { .. } => Self::Send,
            Request::Fetch { .. } => Self::Fetch,
            Request::Ack { .. } => Self::Ack,
            Request::PreKeyCount => Self::PreKeyCount,
            Request::Ping => Self::Ping,
            Request::PublishDeviceList { .. } => Self::PublishDeviceList,
            Request::FetchDeviceList { .. } => Self::FetchDeviceList,
            Request::SendMulti { .. } => Self::SendMulti,
            Request::BlobCreate { .. } => Self::BlobCreate,
            Request::BlobPut { .. } => Self::BlobPut,
            Request::BlobStatus { .. } => Self::BlobStatus,
            Request::BlobGet { .. } => Self::BlobGet,
            Request::BlobDone { .. } => Self::BlobDone,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::Authenticate => "authenticate",
            Self::UploadPreKeys => "upload_prekeys",
            Self::FetchBundle => "fetch_bundle",
            Self::FetchBundleV2 => "fetch_bundle_v2",
            Self::Send => "send",
            Self::Fetch => "fetch",
            Self::Ack => "ack",
            Self::PreKeyCount => "prekey_count",
            Self::Ping => "ping",
            Self::PublishDeviceList => "publish_device_list",
            Self::FetchDeviceList => "fetch_device_list",
            Self::SendMulti => "send_multi",
            Self::BlobCreate => "blob_create",
            Self::BlobPut => "blob_put",
            Self::BlobStatus => "blob_status",
            Self::BlobGet => "blob_get",
            Self::BlobDone => "blob_done",
            Self::Invalid => "invalid",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Every error code the relay sends, with its label.
const CODES: [(ErrorCode, &str); 27] = [
    (ErrorCode::Malformed, "malformed"),
    (ErrorCode::UnsupportedVersion, "unsupported_version"),
    (ErrorCode::FrameTooLarge, "frame_too_large"),
    (ErrorCode::UnknownRequest, "unknown_request"),
    (ErrorCode::UnexpectedRequest, "unexpected_request"),
    (ErrorCode::TimedOut, "timed_out"),
    (ErrorCode::AuthRequired, "auth_required"),
    (ErrorCode::AuthFailed, "auth_failed"),
    (ErrorCode::AlreadyAuthenticated, "already_authenticated"),
    (ErrorCode::NotFound, "not_found"),
    (ErrorCode::InvalidPreKey, "invalid_prekey"),
    (ErrorCode::TooManyPreKeys, "too_many_prekeys"),
    (ErrorCode::InvalidDeviceList, "invalid_device_list"),
    (ErrorCode::StaleDeviceList, "stale_device_list"),
    (ErrorCode::MailboxFull, "mailbox_full"),
    (ErrorCode::InvalidEnvelope, "invalid_envelope"),
    (ErrorCode::UnknownRecipient, "unknown_recipient"),
    (ErrorCode::StorageFull, "storage_full"),
    (ErrorCode::SendBudgetExceeded, "send_budget_exceeded"),
    (ErrorCode::AccessDenied, "access_denied"),
    (ErrorCode::TooManyRecipients, "too_many_recipients"),
    (ErrorCode::BlobIncomplete, "blob_incomplete"),
    (ErrorCode::BlobTooLarge, "blob_too_large"),
    (ErrorCode::InvalidBlobRequest, "invalid_blob_request"),
    (ErrorCode::ServerBusy, "server_busy"),
    (ErrorCode::ShuttingDown, "shutting_down"),
    (ErrorCode::Internal, "internal"),
];

/// The codes a `SendMulti` outcome can refuse one recipient with.
const RECIPIENT_CODES: [ErrorCode; 6] = [
    ErrorCode::InvalidEnvelope,
    ErrorCode::UnknownRecipient,
    ErrorCode::AccessDenied,
    ErrorCode::MailboxFull,
    ErrorCode::StorageFull,
    ErrorCode::Internal,
];

fn code_index(code: ErrorCode) -> Option<usize> {
    CODES.iter().position(|(c, _)| *c == code)
}

/// Why a connection was refused before `Hello`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refusal {
    /// `max_connections` were open.
    ConnectionLimit,
    /// `max_connections_per_address` were open from its source.
    AddressLimit,
}

/// The latency histogram of one request type: a count per bucket (not
/// cumulative; summed when rendered), the last one for slower requests.
struct Latency {
    buckets: [AtomicU64; BUCKETS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

impl Latency {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS_MICROS.len() + 1],
            sum_micros: AtomicU64::new(0),
        }
    }
}

/// The relay's counters; one per server, shared by its connections.
pub(crate) struct Metrics {
    connections_open: AtomicU64,
    connections_accepted: AtomicU64,
    refused_connection_limit: AtomicU64,
    refused_address_limit: AtomicU64,
    envelopes_queued: AtomicU64,
    envelopes_delivered: AtomicU64,
    envelopes_acknowledged: AtomicU64,
    envelopes_expired: AtomicU64,
    blobs_created: AtomicU64,
    blobs_deleted: AtomicU64,
    blobs_expired: AtomicU64,
    blob_bytes_stored: AtomicU64,
    blob_bytes_served: AtomicU64,
    requests: [Latency; RequestKind::ALL.len()],
    errors: [AtomicU64; CODES.len()],
    recipients_refused: [AtomicU64; CODES.len()],
}

/// Counts a connection as open while it lives.
pub(crate) struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Self {
            connections_open: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            refused_connection_limit: AtomicU64::new(0),
            refused_address_limit: AtomicU64::new(0),
            envelopes_queued: AtomicU64::new(0),
            envelopes_delivered: AtomicU64::new(0),
            envelopes_acknowledged: AtomicU64::new(0),
            envelopes_expired: AtomicU64::new(0),
            blobs_created: AtomicU64::new(0),
            blobs_deleted: AtomicU64::new(0),
            blobs_expired: AtomicU64::new(0),
            blob_bytes_stored: AtomicU64::new(0),
            blob_bytes_served: AtomicU64::new(0),
            requests: [const { Latency::new() }; RequestKind::ALL.len()],
            errors: [const { AtomicU64::new(0) }; CODES.len()],
            recipients_refused: [const { AtomicU64::new(0) }; CODES.len()],
        }
    }

    /// A connection was accepted; it counts as open until the guard drops.
    pub(crate) fn connection_accepted(self: &Arc<Self>) -> OpenConnection {
        add(&self.connections_accepted, 1);
        add(&self.connections_open, 1);
        OpenConnection(self.clone())
    }

    pub(crate) fn connection_refused(&self, why: Refusal) {
        match why {
            Refusal::ConnectionLimit => add(&self.refused_connection_limit, 1),
            Refusal::AddressLimit => add(&self.refused_address_limit, 1),
        }
    }

    /// A request of type `kind` was answered `took` after it was decoded.
    pub(crate) fn request(&self, kind: RequestKind, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_MICROS.partition_point(|&bound| bound < micros);
        let Some(latency) = self.requests.get(kind.index()) else {
            return;
        };
        if let Some(counter) = latency.buckets.get(bucket) {
            add(counter, 1);
        }
        add(&latency.sum_micros, micros);
    }

    /// An `Error` frame with `code` was sent.
    pub(crate) fn error_sent(&self, code: ErrorCode) {
        if let Some(counter) = code_index(code).and_then(|i| self.errors.get(i)) {
            add(counter, 1);
        }
    }

    /// One recipient of a `SendMulti` was refused with `code`.
    pub(crate) fn recipient_refused(&self, code: ErrorCode) {
        if let Some(counter) = code_index(code).and_then(|i| self.recipients_refused.get(i)) {
            add(counter, 1);
        }
    }

    /// `n` new envelopes were stored (duplicates are not new).
    pub(crate) fn envelopes_queued(&self, n: u64) {
        add(&self.envelopes_queued, n);
    }

    /// `n` envelopes were sent to their recipient, in a `Fetch` answer or
    /// pushed.
    pub(crate) fn envelopes_delivered(&self, n: u64) {
        add(&self.envelopes_delivered, n);
    }

    pub(crate) fn envelopes_acknowledged(&self, n: u64) {
        add(&self.envelopes_acknowledged, n);
    }

    pub(crate) fn envelopes_expired(&self, n: u64) {
        add(&self.envelopes_expired, n);
    }

    pub(crate) fn blob_created(&self) {
        add(&self.blobs_created, 1);
    }

    /// A blob was deleted because every token's holder was done with it.
    pub(crate) fn blob_deleted(&self) {
        add(&self.blobs_deleted, 1);
    }

    pub(crate) fn blobs_expired(&self, n: u64) {
        add(&self.blobs_expired, n);
    }

    /// `n` bytes were appended to blobs (resent bytes are not).
    pub(crate) fn blob_bytes_stored(&self, n: u64) {
        add(&self.blob_bytes_stored, n);
    }

    /// `n` bytes of blobs were sent in `BlobData` answers.
    pub(crate) fn blob_bytes_served(&self, n: u64) {
        add(&self.blob_bytes_served, n);
    }

    /// The metrics in Prometheus' text exposition format (version 0.0.4).
    /// `totals` is what the store answered, `None` if it did not;
    /// `feed_up` whether the shared store's change feed is followed
    /// (`None`: the store has none).
    pub(crate) fn render(
        &self,
        totals: Option<StoreTotals>,
        blob_totals: Option<BlobTotals>,
        feed_up: Option<bool>,
        frames: FrameMemory,
    ) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut out = String::with_capacity(16 * 1024);
        let _ = writeln!(
            out,
            "# HELP sotto_relay_build_info The relay's version, as a label; always 1.\n\
             # TYPE sotto_relay_build_info gauge\n\
             sotto_relay_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let simple = [
            (
                "sotto_relay_connections_open",
                "gauge",
                "Client connections open now.",
                get(&self.connections_open),
            ),
            (
                "sotto_relay_connections_accepted_total",
                "counter",
                "Client connections accepted.",
                get(&self.connections_accepted),
            ),
        ];
        for (name, kind, help, value) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let name = "sotto_relay_connections_refused_total";
        let _ = writeln!(
            out,
            "# HELP {name} Client connections refused with ServerBusy before Hello, by the limit reached.\n\
             # TYPE {name} counter\n\
             {name}{{reason=\"max_connections\"}} {}\n\
             {name}{{reason=\"max_connections_per_address\"}} {}",
            get(&self.refused_connection_limit),
            get(&self.refused_address_limit),
        );
        let envelopes = [
            (
                "sotto_relay_envelopes_queued_total",
                "Envelopes stored (repeats of a queued message id are not counted).",
                get(&self.envelopes_queued),
            ),
            (
                "sotto_relay_envelopes_delivered_total",
                "Envelopes sent to their recipient, in Fetch answers or pushed; an envelope delivered again counts again.",
                get(&self.envelopes_delivered),
            ),
            (
                "sotto_relay_envelopes_acknowledged_total",
                "Envelopes deleted by their recipient's Ack.",
                get(&self.envelopes_acknowledged),
            ),
            (
                "sotto_relay_envelopes_expired_total",
                "Envelopes deleted unacknowledged after envelope_ttl.",
                get(&self.envelopes_expired),
            ),
        ];
        let blobs = [
            (
                "sotto_relay_blobs_created_total",
                "Blobs created (BlobCreate).",
                get(&self.blobs_created),
            ),
            (
                "sotto_relay_blobs_deleted_total",
                "Blobs deleted because every token's holder said BlobDone.",
                get(&self.blobs_deleted),
            ),
            (
                "sotto_relay_blobs_expired_total",
                "Blobs deleted by the expiry sweep, complete or not.",
                get(&self.blobs_expired),
            ),
            (
                "sotto_relay_blob_bytes_stored_total",
                "Bytes appended to blobs (a resent BlobPut stores nothing and counts nothing).",
                get(&self.blob_bytes_stored),
            ),
            (
                "sotto_relay_blob_bytes_served_total",
                "Bytes of blobs sent in BlobData answers.",
                get(&self.blob_bytes_served),
            ),
        ];
        for (name, help, value) in envelopes.into_iter().chain(blobs) {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        if let Some(blobs) = blob_totals {
            let _ = writeln!(
                out,
                "# HELP sotto_relay_stored_blobs Blobs held, expired ones until swept.\n\
                 # TYPE sotto_relay_stored_blobs gauge\n\
                 sotto_relay_stored_blobs {}\n\
                 # HELP sotto_relay_stored_blob_bytes Bytes reserved for blobs: their full lengths, stored or not (what max_total_blob_bytes limits).\n\
                 # TYPE sotto_relay_stored_blob_bytes gauge\n\
                 sotto_relay_stored_blob_bytes {}",
                blobs.blobs, blobs.reserved_bytes
            );
        }
        let name = "sotto_relay_store_up";
        let _ = writeln!(
            out,
            "# HELP {name} Whether the store answered this scrape (1) or not (0).\n\
             # TYPE {name} gauge\n{name} {}",
            u8::from(totals.is_some())
        );
        if let Some(totals) = totals {
            let _ = writeln!(
                out,
                "# HELP sotto_relay_stored_envelopes Envelopes queued in the store, expired ones until swept.\n\
                 # TYPE sotto_relay_stored_envelopes gauge\n\
                 sotto_relay_stored_envelopes {}\n\
                 # HELP sotto_relay_stored_bytes Bytes held for queued envelopes (what max_total_bytes limits).\n\
                 # TYPE sotto_relay_stored_bytes gauge\n\
                 sotto_relay_stored_bytes {}",
                totals.envelopes, totals.bytes
            );
        }
        if let Some(up) = feed_up {
            let name = "sotto_relay_store_feed_up";
            let _ = writeln!(
                out,
                "# HELP {name} Whether pushes from other relay processes sharing the store arrive as they happen (1), or connected clients read their mailboxes every second instead (0).\n\
                 # TYPE {name} gauge\n{name} {}",
                u8::from(up)
            );
        }
        let name = "sotto_relay_frame_memory_bytes";
        let _ = writeln!(
            out,
            "# HELP {name} Bytes of request frame buffers held now, by pool.\n\
             # TYPE {name} gauge\n\
             {name}{{pool=\"unauthenticated\"}} {}\n\
             {name}{{pool=\"authenticated\"}} {}",
            frames.unauthenticated, frames.authenticated
        );

        // Requests: one count per bucket; the totals are their sums, so
        // `_count`, `+Inf` and `requests_total` agree within a scrape.
        let snapshot: Vec<(RequestKind, [u64; BUCKETS_MICROS.len() + 1], u64)> = RequestKind::ALL
            .iter()
            .zip(&self.requests)
            .map(|(kind, latency)| {
                let mut buckets = [0u64; BUCKETS_MICROS.len() + 1];
                for (b, counter) in buckets.iter_mut().zip(&latency.buckets) {
                    *b = get(counter);
                }
                (*kind, buckets, get(&latency.sum_micros))
            })
            .collect();
        let name = "sotto_relay_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} Requests handled, by type (invalid: a frame that is no request).\n\
             # TYPE {name} counter"
        );
        for (kind, buckets, _) in &snapshot {
            let total: u64 = buckets.iter().sum();
            let _ = writeln!(out, "{name}{{type=\"{}\"}} {total}", kind.label());
        }
        let name = "sotto_relay_errors_total";
        let _ = writeln!(
            out,
            "# HELP {name} Error frames sent, by error code.\n# TYPE {name} counter"
        );
        for ((_, label), counter) in CODES.iter().zip(&self.errors) {
            let _ = writeln!(out, "{name}{{code=\"{label}\"}} {}", get(counter));
        }
        let name = "sotto_relay_recipients_refused_total";
        let _ = writeln!(
            out,
            "# HELP {name} SendMulti recipients refused, by error code.\n# TYPE {name} counter"
        );
        for code in RECIPIENT_CODES {
            let Some(i) = code_index(code) else { continue };
            let (Some((_, label)), Some(counter)) = (CODES.get(i), self.recipients_refused.get(i))
            else {
                continue;
            };
            let _ = writeln!(out, "{name}{{code=\"{label}\"}} {}", get(counter));
        }
        let name = "sotto_relay_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from a decoded request to its answer written, by type.\n\
             # TYPE {name} histogram"
        );
        for (kind, buckets, sum_micros) in &snapshot {
            let label = kind.label();
            let mut cumulative = 0u64;
            for (le, count) in BUCKETS_LE.iter().zip(buckets) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "{name}_bucket{{type=\"{label}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let total: u64 = buckets.iter().sum();
            let _ = writeln!(
                out,
                "{name}_bucket{{type=\"{label}\",le=\"+Inf\"}} {total}\n\
                 {name}_sum{{type=\"{label}\"}} {}\n\
                 {name}_count{{type=\"{label}\"}} {total}",
                *sum_micros as f64 / 1e6
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_and_request_type_has_its_own_label() {
        for (i, kind) in RequestKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
        let mut labels: Vec<_> = CODES.iter().map(|(_, l)| *l).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), CODES.len());
        for code in RECIPIENT_CODES {
            assert!(code_index(code).is_some());
        }
    }

    #[test]
    fn latency_lands_in_the_right_bucket_and_totals_agree() {
        let metrics = Metrics::new();
        metrics.request(RequestKind::Send, Duration::from_micros(400));
        metrics.request(RequestKind::Send, Duration::from_micros(500));
        metrics.request(RequestKind::Send, Duration::from_millis(3));
        metrics.request(RequestKind::Send, Duration::from_secs(60));
        metrics.error_sent(ErrorCode::MailboxFull);
        metrics.recipient_refused(ErrorCode::AccessDenied);
        let text = metrics.render(None, None, None, FrameMemory::default());
        // No change feed: no line for it; with one, whether it is up.
        assert!(!text.contains("sotto_relay_store_feed_up"));
        for (up, value) in [(true, "1"), (false, "0")] {
            let with_feed = metrics.render(None, None, Some(up), FrameMemory::default());
            assert!(with_feed.contains(&format!("\nsotto_relay_store_feed_up {value}\n")));
        }
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        let h = "sotto_relay_request_duration_seconds";
        assert_eq!(
            line(&format!("{h}_bucket{{type=\"send\",le=\"0.0005\"}}")),
            "2"
        );
        assert_eq!(
            line(&format!("{h}_bucket{{type=\"send\",le=\"0.0025\"}}")),
            "2"
        );
        assert_eq!(
            line(&format!("{h}_bucket{{type=\"send\",le=\"0.005\"}}")),
            "3"
        );
        assert_eq!(line(&format!("{h}_bucket{{type=\"send\",le=\"10\"}}")), "3");
        assert_eq!(
            line(&format!("{h}_bucket{{type=\"send\",le=\"+Inf\"}}")),
            "4"
        );
        assert_eq!(line(&format!("{h}_count{{type=\"send\"}}")), "4");
        assert_eq!(line(&format!("{h}_sum{{type=\"send\"}}")), "60.0039");
        assert_eq!(line("sotto_relay_requests_total{type=\"send\"}"), "4");
        assert_eq!(line("sotto_relay_requests_total{type=\"fetch\"}"), "0");
        assert_eq!(line("sotto_relay_errors_total{code=\"mailbox_full\"}"), "1");
        assert_eq!(
            line("sotto_relay_recipients_refused_total{code=\"access_denied\"}"),
            "1"
        );
        assert_eq!(line("sotto_relay_store_up"), "0");
        assert!(!text.contains("sotto_relay_stored_bytes"));
        // Every sample line is `name{labels} value` or `name value`.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = l.rsplit_once(' ').unwrap();
            assert!(series.starts_with("sotto_relay_"), "{l}");
            assert!(value.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn open_connections_are_counted_while_they_live() {
        let metrics = Arc::new(Metrics::new());
        let a = metrics.connection_accepted();
        let b = metrics.connection_accepted();
        drop(a);
        assert_eq!(metrics.connections_open.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.connections_accepted.load(Ordering::Relaxed), 2);
        drop(b);
        assert_eq!(metrics.connections_open.load(Ordering::Relaxed), 0);
    }
}
