//! One client connection: handshake, authentication, requests and pushes.
//!
//! Two tasks per connection: a reader that only cuts the byte stream into
//! frames (it enforces the frame limit before allocating, grows a frame's
//! buffer only as its bytes arrive, charging them to the relay-wide frame
//! budget, and gives each frame `frame_timeout` to complete), and this
//! handler, which processes one request at a time. The channel between them
//! holds one frame, so a connection holds at most three request frames (one
//! being read, one queued, one being handled); a client that sends faster
//! than it is served fills its own TCP window and is slowed down; it cannot
//! queue work in the relay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::TryRng;
use sotto_core::keys::V2_ONLY_DOMAIN;
use sotto_core::keys::check_x25519_public;
use sotto_core::{AccessKey, IdentityKey, PreKeyBundle, Signature};
use tokio::io::{AsyncRead, AsyncWriteExt, BufWriter, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};

use super::first_contact::FirstContacts;
use super::frame_budget::FrameCharge;
use super::hub::MailboxSignal;
use super::metrics::RequestKind;
use super::rate_limit::TokenBucket;
use super::{Shared, Transport, shutdown_requested};
use crate::address::MailboxAddress;
use crate::blob::{BlobError, BlobId, BlobStore, BlobToken, BlobVerifier, NewBlob};
use crate::envelope::MessageId;
use crate::protocol::frame::BodyBudget as _;
use crate::protocol::frame::{FrameError, read_frame_rest, read_frame_start, write_frame};
use crate::protocol::request::RequestDecodeError;
use crate::protocol::version::unsupported_version_message;
use crate::protocol::{
    AuthInfo, BLOB_DATA_OVERHEAD, BLOBS_VERSION, CHALLENGE_LEN, ChannelBinding, DecodeError,
    ErrorCode, KEM_PREKEYS_VERSION, KemPreKeyStock, MultiRecipient, PreKeyStock, PreKeyUpload,
    Push, RecipientOutcome, Request, RequestFrame, Response, SUPPORTED_VERSIONS, Welcome,
    auth_message, max_payload_len,
};
use crate::store::{
    EnqueueRequest, Enqueued, KemPreKeysLeft, MailboxStore, OwnedAccess, PreKeyLimits, PreKeysLeft,
    StoreError, has_duplicate_ids, has_duplicate_kem_ids,
};

/// How long a connection closed for a protocol violation keeps reading (and
/// discarding) so the client receives the final error frame instead of a
/// reset.
const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// Envelopes pushed per wake-up before the handler looks at requests again.
const PUSH_BATCH: usize = 32;

/// Longest the relay tries to tell a client why it is being closed for a
/// deadline: a client that does not read cannot hold the connection longer.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

/// A request frame and the memory it is charged for.
struct Frame {
    body: Vec<u8>,
    /// Released when the request has been handled.
    charge: FrameCharge,
}

/// What the reader task hands over.
enum Incoming {
    Frame(Frame),
    TooLarge {
        len: u32,
        max: u32,
    },
    Empty,
    /// A frame did not arrive completely within `frame_timeout`.
    Incomplete,
    /// A frame could not get memory from its pool in time.
    NoMemory {
        len: u32,
    },
}

/// The deadline a connection is closed by if nothing happens first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    /// `Hello` within `handshake_timeout` of connecting.
    Handshake,
    /// A useful request within `unauthenticated_timeout` of the last one.
    Unauthenticated,
    /// Any frame within `idle_timeout` of the last one.
    Idle,
}

/// Whether to keep serving after a request.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// The authenticated owner of this connection.
struct Owner {
    identity: IdentityKey,
    address: MailboxAddress,
    signal: watch::Receiver<MailboxSignal>,
    /// Highest envelope id the client knows about (told to fetch, or pushed).
    push_cursor: u64,
    /// More envelopes than one batch arrived: keep pushing.
    push_backlog: bool,
    seen_prekeys: u64,
}

struct Connection<S: Transport> {
    shared: Arc<Shared>,
    peer: SocketAddr,
    writer: BufWriter<WriteHalf<S>>,
    /// Negotiated version; `None` until `Hello`.
    version: Option<u16>,
    /// The challenge, consumed by the first `Authenticate`.
    challenge: Option<[u8; CHALLENGE_LEN]>,
    /// This end's channel binding, which the login signature must cover.
    binding: ChannelBinding,
    owner: Option<Owner>,
    requests: TokenBucket,
    bytes: TokenBucket,
    /// Payload bytes of the envelopes this connection had stored, against
    /// `connection_send_budget`.
    stored_bytes: u64,
    /// Closing after a fatal error: linger so the client can read it.
    linger: bool,
    /// When the connection was accepted.
    opened: Instant,
    /// When the last frame was handled.
    last_frame: Instant,
    /// When the last useful request was served (see
    /// `ServerConfig::unauthenticated_timeout`).
    last_useful: Instant,
    /// Set once authenticated; the reader charges frames begun after that
    /// to the authenticated pool.
    authenticated: Arc<AtomicBool>,
}

/// Serves one connection until the client leaves, breaks the protocol,
/// goes idle, or the server shuts down. `binding` is the relay's own
/// channel binding of `stream` (the TLS exporter value, or none for plain
/// TCP).
pub(crate) async fn serve<S: Transport>(
    stream: S,
    peer: SocketAddr,
    binding: ChannelBinding,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (reader, writer) = tokio::io::split(stream);
    // One queued frame: with the one being read and the one being handled,
    // a connection holds at most three.
    let (frames_tx, mut frames) = mpsc::channel(1);
    let authenticated = Arc::new(AtomicBool::new(false));
    let reader = AbortOnDrop(tokio::spawn(read_loop(
        reader,
        shared.clone(),
        authenticated.clone(),
        frames_tx,
    )));
    let now = std::time::Instant::now();
    let opened = Instant::now();
    let limits = shared.config.rate_limit;
    let mut conn = Connection {
        peer,
        writer: BufWriter::new(writer),
        version: None,
        challenge: None,
        binding,
        owner: None,
        requests: TokenBucket::new(limits.requests_per_second, limits.request_burst, now),
        bytes: TokenBucket::new(limits.bytes_per_second, limits.byte_burst, now),
        stored_bytes: 0,
        linger: false,
        opened,
        last_frame: opened,
        last_useful: opened,
        authenticated,
        shared,
    };
    tracing::debug!(%peer, "connection opened");
    conn.run(&mut frames, &mut shutdown).await;
    if let Some(owner) = conn.owner.take() {
        conn.shared.hub.unsubscribe(&owner.address, owner.signal);
    }
    let _ = timeout(conn.shared.config.write_timeout, conn.writer.shutdown()).await;
    if conn.linger {
        // Let the client read the error before the socket goes away.
        let _ = timeout(CLOSE_LINGER, async {
            while frames.recv().await.is_some() {}
        })
        .await;
    }
    drop(reader);
    tracing::debug!(%peer, "connection closed");
}

/// The reader task, stopped when the connection's handler ends, also when
/// the handler is cut (aborted at the end of a shutdown's grace period):
/// the reader holds half of the stream, so the socket closes only when
/// both are gone.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Cuts the stream into frames. Each frame must arrive completely within
/// `frame_timeout` of its first byte; its buffer is charged to the frame
/// budget of the connection's state when it began. After an oversized or
/// empty frame it reports it and discards the rest of the input until the
/// handler hangs up.
async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    shared: Arc<Shared>,
    authenticated: Arc<AtomicBool>,
    frames: mpsc::Sender<Incoming>,
) {
    let max = shared.config.max_frame_size;
    let frame_timeout = shared.config.frame_timeout;
    loop {
        let first = match read_frame_start(&mut reader).await {
            Ok(Some(first)) => first,
            Ok(None) | Err(_) => return,
        };
        let mut charge = shared.frames.charge(authenticated.load(Ordering::Acquire));
        let read = timeout(
            frame_timeout,
            read_frame_rest(&mut reader, first, max, &mut charge),
        )
        .await;
        let incoming = match read {
            Ok(Ok(body)) => Incoming::Frame(Frame { body, charge }),
            failed => {
                // What the unfinished frame held goes back now, not when
                // the connection is gone.
                drop(charge);
                match failed {
                    Ok(Ok(_)) | Ok(Err(FrameError::Io(_))) => return,
                    Err(_) => Incoming::Incomplete,
                    Ok(Err(FrameError::TooLarge { len, max })) => Incoming::TooLarge { len, max },
                    Ok(Err(FrameError::Empty)) => Incoming::Empty,
                    Ok(Err(FrameError::NoBudget { len })) => Incoming::NoMemory { len },
                }
            }
        };
        let fatal = !matches!(incoming, Incoming::Frame(_));
        if frames.send(incoming).await.is_err() {
            return;
        }
        if fatal {
            let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
            return;
        }
    }
}

/// Logs that the disk is full, at most once a minute (every refused
/// request would otherwise log it).
fn warn_disk_full() {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = crate::clock::UnixTime::now().as_secs();
    let last = LAST.load(Ordering::Relaxed);
    if now >= last.saturating_add(60)
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            "storage is full: new envelopes and prekeys are refused until acknowledgements, \
             expiry or the operator free space"
        );
    }
}

/// The error code a failed storage operation is answered with; for a
/// refused envelope, also what a `SendMulti` answers for its recipient.
fn error_code(error: &StoreError) -> ErrorCode {
    match error {
        StoreError::MailboxFull { .. } => ErrorCode::MailboxFull,
        StoreError::UnknownRecipient => ErrorCode::UnknownRecipient,
        StoreError::AccessDenied => ErrorCode::AccessDenied,
        StoreError::StorageFull { .. } | StoreError::DiskFull => ErrorCode::StorageFull,
        StoreError::StaleDeviceList { .. } => ErrorCode::StaleDeviceList,
        StoreError::TooManyPreKeys { .. } | StoreError::TooManyKemPreKeys { .. } => {
            ErrorCode::TooManyPreKeys
        }
        _ => ErrorCode::Internal,
    }
}

/// The error code and message a failed blob operation is answered with.
fn blob_refusal(error: &BlobError) -> (ErrorCode, String) {
    match error {
        // One answer for unknown, expired, deleted, another's, or a wrong
        // token: the relay is no oracle of which blobs exist.
        BlobError::NotFound => (ErrorCode::NotFound, "no such blob".into()),
        BlobError::Incomplete { .. } => (
            ErrorCode::BlobIncomplete,
            format!("{error}: download once the upload is complete"),
        ),
        BlobError::Gap { .. } | BlobError::PastEnd { .. } => {
            (ErrorCode::InvalidBlobRequest, error.to_string())
        }
        BlobError::MailboxFull { would_be, max } => (
            ErrorCode::MailboxFull,
            format!("your blobs would take {would_be} bytes, at most {max} are allowed"),
        ),
        BlobError::StorageFull { .. } => (
            ErrorCode::StorageFull,
            "relay blob storage is full; try again later".into(),
        ),
        BlobError::DiskFull => {
            warn_disk_full();
            (
                ErrorCode::StorageFull,
                "the relay's disk is full: nothing was stored; try again later".into(),
            )
        }
        e => {
            tracing::error!(error = %e, "blob storage failure");
            (ErrorCode::Internal, "blob storage failure".into())
        }
    }
}

/// Checks the signatures of an upload against its owner's identity key:
/// the signed prekey's (over what its versions say, docs/protocol.md
/// §16.2) and every KEM prekey's (over `EncodeKEM(ek)`, §16.1). The KEM
/// keys themselves were checked when the frame was decoded. The message of
/// an `InvalidPreKey` refusal otherwise.
fn check_signatures(identity: &IdentityKey, upload: &PreKeyUpload) -> Result<(), String> {
    if let Some(spk) = &upload.signed_prekey {
        let verified = if upload.signed_prekey_v2_only {
            let message = [V2_ONLY_DOMAIN, &spk.public.encode()[..]].concat();
            identity.verify(&message, &spk.signature)
        } else {
            PreKeyBundle::from_parts(*identity, spk.id, spk.public, spk.signature, None).verify()
        };
        if verified.is_err() {
            return Err(if upload.signed_prekey_v2_only {
                "signed prekey signature does not verify (as signed for protocol v2 only)".into()
            } else {
                "signed prekey signature does not verify".into()
            });
        }
    }
    let kem = upload
        .last_resort_kem_prekey
        .iter()
        .map(|k| ("last-resort", k));
    let one_time = upload.one_time_kem_prekeys.iter().map(|k| ("one-time", k));
    for (kind, key) in kem.chain(one_time) {
        if key.verify(identity).is_err() {
            return Err(format!(
                "{kind} KEM prekey {} signature does not verify",
                key.id
            ));
        }
    }
    Ok(())
}

/// The first-contact allowances of every mailbox (held only for a
/// lookup or an update, never across a storage call).
fn first_contacts(shared: &Shared) -> std::sync::MutexGuard<'_, FirstContacts> {
    shared
        .first_contacts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `start + timeout`, or about a century later for a timeout too large to
/// add.
fn instant_after(start: Instant, timeout: Duration) -> Instant {
    start
        .checked_add(timeout)
        .or_else(|| start.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(start)
}

/// Waits for the next signal of the owner's mailbox; never resolves without
/// an owner (or if the hub went away, which it does not while subscribed).
async fn next_signal(owner: &mut Option<Owner>) {
    if let Some(owner) = owner
        && owner.signal.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

impl<S: Transport> Connection<S> {
    async fn run(
        &mut self,
        frames: &mut mpsc::Receiver<Incoming>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        loop {
            let backlog = self.owner.as_ref().is_some_and(|o| o.push_backlog);
            let (deadline, which) = self.deadline();
            let flow = tokio::select! {
                biased;
                () = shutdown_requested(shutdown) => {
                    let _ = timeout(
                        FAREWELL_TIMEOUT,
                        self.error(0, ErrorCode::ShuttingDown, "relay is shutting down"),
                    )
                    .await;
                    Flow::Close
                }
                incoming = frames.recv() => match incoming {
                    None => Flow::Close,
                    Some(Incoming::TooLarge { len, max }) => {
                        let message = format!("frame of {len} bytes exceeds the maximum of {max}");
                        let _ = self.error(0, ErrorCode::FrameTooLarge, message).await;
                        Flow::Close
                    }
                    Some(Incoming::Empty) => {
                        let _ = self.error(0, ErrorCode::Malformed, "empty frame").await;
                        Flow::Close
                    }
                    Some(Incoming::NoMemory { len }) => {
                        tracing::debug!(peer = %self.peer, len, "no memory for a frame");
                        let message = format!(
                            "relay is busy: no memory for a frame of {len} bytes right now; \
                             try again later"
                        );
                        let _ = self.error(0, ErrorCode::ServerBusy, message).await;
                        Flow::Close
                    }
                    Some(Incoming::Incomplete) => {
                        let message = format!(
                            "a frame did not arrive completely within {:?}",
                            self.shared.config.frame_timeout
                        );
                        self.timed_out(message).await
                    }
                    Some(Incoming::Frame(frame)) => {
                        self.pace(frame.body.len()).await;
                        let flow = self.handle(frame).await;
                        self.last_frame = Instant::now();
                        flow
                    }
                },
                () = next_signal(&mut self.owner) => self.on_signal().await,
                () = std::future::ready(()), if backlog => self.push_envelopes().await,
                () = sleep_until(deadline) => {
                    let config = &self.shared.config;
                    let message = match which {
                        Deadline::Handshake => {
                            format!("no Hello within {:?} of connecting", config.handshake_timeout)
                        }
                        Deadline::Unauthenticated => format!(
                            "no useful request from an unauthenticated connection for {:?}",
                            config.unauthenticated_timeout
                        ),
                        Deadline::Idle => format!("no request for {:?}", config.idle_timeout),
                    };
                    self.timed_out(message).await
                }
            };
            if flow == Flow::Close {
                return;
            }
        }
    }

    /// When the connection is closed if nothing happens, and why.
    fn deadline(&self) -> (Instant, Deadline) {
        let config = &self.shared.config;
        if self.version.is_none() {
            return (
                instant_after(self.opened, config.handshake_timeout),
                Deadline::Handshake,
            );
        }
        let idle = instant_after(self.last_frame, config.idle_timeout);
        if self.owner.is_some() {
            return (idle, Deadline::Idle);
        }
        let useful = instant_after(self.last_useful, config.unauthenticated_timeout);
        if useful <= idle {
            (useful, Deadline::Unauthenticated)
        } else {
            (idle, Deadline::Idle)
        }
    }

    /// Closes the connection for a deadline, telling the client why if it
    /// reads within [`FAREWELL_TIMEOUT`].
    async fn timed_out(&mut self, message: String) -> Flow {
        tracing::debug!(peer = %self.peer, reason = %message, "connection timed out");
        let _ = timeout(
            FAREWELL_TIMEOUT,
            self.error(0, ErrorCode::TimedOut, message),
        )
        .await;
        Flow::Close
    }

    /// Applies the rate limit to a request of `len` bytes.
    async fn pace(&mut self, len: usize) {
        let now = std::time::Instant::now();
        let wait = self
            .requests
            .take(1.0, now)
            .max(self.bytes.take(len as f64, now));
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Charges `len` bytes the relay is about to send to the byte rate
    /// limit (a `BlobData` answer), waiting as for a received frame.
    async fn pace_bytes(&mut self, len: usize) {
        let wait = self.bytes.take(len as f64, std::time::Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    async fn send(&mut self, body: &[u8]) -> Flow {
        match timeout(
            self.shared.config.write_timeout,
            write_frame(&mut self.writer, body),
        )
        .await
        {
            Ok(Ok(())) => Flow::Continue,
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "write failed");
                Flow::Close
            }
            Err(_) => {
                tracing::debug!(peer = %self.peer, "write timed out");
                Flow::Close
            }
        }
    }

    async fn respond(&mut self, request_id: u32, response: Response) -> Flow {
        self.send(&response.encode(request_id)).await
    }

    /// Sends an error; fatal codes close the connection.
    async fn error(
        &mut self,
        request_id: u32,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Flow {
        self.shared.metrics.error_sent(code);
        let flow = self
            .respond(request_id, Response::error(code, message))
            .await;
        if code.is_fatal() {
            // After a protocol error the client may still be sending; let
            // it read the error. A deadline or shutdown ends it at once.
            self.linger = !matches!(code, ErrorCode::ShuttingDown | ErrorCode::TimedOut);
            Flow::Close
        } else {
            flow
        }
    }

    async fn store_error(&mut self, request_id: u32, error: StoreError) -> Flow {
        let message = match &error {
            // The recipient's queue size is not the sender's business.
            StoreError::MailboxFull { .. } => "recipient mailbox is full".into(),
            StoreError::UnknownRecipient => {
                "no such mailbox: the recipient has not published prekeys".into()
            }
            StoreError::AccessDenied => {
                "this mailbox only takes messages from its contacts right now; try later".into()
            }
            StoreError::StorageFull {
                queued_bytes,
                max_bytes,
                ..
            } => {
                tracing::debug!(queued_bytes, max_bytes, "storage limit reached");
                "relay storage is full; try again later".into()
            }
            StoreError::DiskFull => {
                warn_disk_full();
                "the relay's disk is full: this request changed nothing (no envelope was \
                 stored); try again later"
                    .into()
            }
            e @ (StoreError::StaleDeviceList { .. }
            | StoreError::TooManyPreKeys { .. }
            | StoreError::TooManyKemPreKeys { .. }) => e.to_string(),
            e => {
                tracing::error!(error = %e, "storage failure");
                "storage failure".into()
            }
        };
        let code = error_code(&error);
        self.error(request_id, code, message).await
    }

    /// The message of the fatal `SendBudgetExceeded` if having `len` more
    /// bytes stored would take this connection over its send budget
    /// (docs/relay.md §6). Checked before storing, so one connection never
    /// has more than its budget stored; the client reconnects to send
    /// more.
    fn over_send_budget(&self, len: u64) -> Option<String> {
        let budget = self.shared.config.connection_send_budget;
        (self.stored_bytes.saturating_add(len) > budget).then(|| {
            format!(
                "send budget of this connection used up: {} of {budget} bytes stored, \
                 {len} more refused; reconnect to send more",
                self.stored_bytes
            )
        })
    }

    /// Runs `op` against the store on the blocking pool.
    async fn store<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn MailboxStore) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.shared.store.clone();
        tokio::task::spawn_blocking(move || op(store.as_ref()))
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?
    }

    /// Queues one envelope ([`MailboxStore::enqueue_async`]: without a
    /// blocking thread per call, for a store that can).
    async fn enqueue(&self, request: EnqueueRequest) -> Result<Enqueued, StoreError> {
        self.shared.store.clone().enqueue_async(request).await
    }

    /// Whether this connection speaks protocol 4's KEM prekeys.
    fn speaks_kem(&self) -> bool {
        self.version.is_some_and(|v| v >= KEM_PREKEYS_VERSION)
    }

    /// The stock to report: `remaining` one-time prekeys and, on a
    /// protocol 4 connection of an owner with a last-resort KEM prekey,
    /// `kem` one-time KEM prekeys (the same threshold for both).
    fn stock(&self, remaining: u32, kem: Option<u32>) -> PreKeyStock {
        let threshold = self.shared.config.prekey_low_threshold;
        PreKeyStock {
            remaining,
            threshold,
            kem: kem
                .filter(|_| self.speaks_kem())
                .map(|remaining| KemPreKeyStock {
                    remaining,
                    threshold,
                }),
        }
    }

    /// Whether this stock calls for a `PreKeysLow` push on this
    /// connection.
    fn stock_is_low(stock: &PreKeyStock) -> bool {
        stock.is_low() || stock.kem_is_low()
    }

    /// Handles one request. The frame's memory stays charged until the
    /// request is done: the decoded request (a `Send` payload is a copy)
    /// takes the place of the buffer, which is freed right after decoding.
    async fn handle(&mut self, frame: Frame) -> Flow {
        let Frame { body, charge } = frame;
        let started = Instant::now();
        let decoded = RequestFrame::decode_with_id(&body, self.version);
        drop(body);
        let kind = decoded.as_ref().map_or(RequestKind::Invalid, |frame| {
            RequestKind::of(&frame.request)
        });
        let flow = self.handle_decoded(decoded).await;
        self.shared.metrics.request(kind, started.elapsed());
        drop(charge);
        flow
    }

    async fn handle_decoded(&mut self, decoded: Result<RequestFrame, RequestDecodeError>) -> Flow {
        let frame = match decoded {
            Ok(frame) => frame,
            Err(RequestDecodeError {
                request_id,
                error: DecodeError::UnknownType(ty),
            }) if self.version.is_some() => {
                let message = format!("unknown request type {ty:#04x}");
                return self
                    .error(request_id, ErrorCode::UnknownRequest, message)
                    .await;
            }
            // Well framed, and refused before its recipients were read:
            // the client may split them and go on.
            Err(RequestDecodeError {
                request_id,
                error: error @ DecodeError::TooManyRecipients { .. },
            }) if self.version.is_some() => {
                return self
                    .error(request_id, ErrorCode::TooManyRecipients, error.to_string())
                    .await;
            }
            // Well framed too: an upload with a KEM key that is no
            // ML-KEM-768 key is refused as a bad X25519 key is.
            Err(RequestDecodeError {
                request_id,
                error: error @ DecodeError::InvalidKemPreKey { .. },
            }) if self.version.is_some() => {
                return self
                    .error(request_id, ErrorCode::InvalidPreKey, error.to_string())
                    .await;
            }
            Err(RequestDecodeError { request_id, error }) => {
                let message = if self.version.is_none() {
                    format!("expected a Hello frame: {error}")
                } else {
                    error.to_string()
                };
                return self.error(request_id, ErrorCode::Malformed, message).await;
            }
        };
        let id = frame.request_id;
        if self.version.is_none() {
            return match frame.request {
                Request::Hello { versions } => self.hello(id, &versions).await,
                _ => {
                    self.error(
                        id,
                        ErrorCode::UnexpectedRequest,
                        "the first frame must be Hello",
                    )
                    .await
                }
            };
        }
        match frame.request {
            Request::Hello { .. } => {
                self.error(
                    id,
                    ErrorCode::UnexpectedRequest,
                    "Hello was already received",
                )
                .await
            }
            Request::Authenticate {
                identity_key,
                signature,
            } => self.authenticate(id, &identity_key, &signature).await,
            Request::UploadPreKeys(upload) => self.upload_prekeys(id, upload).await,
            Request::FetchBundle { address } => self.fetch_bundle(id, address).await,
            Request::FetchBundleV2 { address } => self.fetch_bundle_v2(id, address).await,
            Request::Send {
                recipient,
                message_id,
                access_key,
                payload,
            } => {
                self.send_envelope(id, recipient, message_id, access_key, payload)
                    .await
            }
            Request::Fetch { after, max_count } => self.fetch(id, after, max_count).await,
            Request::Ack { ids } => self.ack(id, ids).await,
            Request::PreKeyCount => self.prekey_count(id).await,
            Request::Ping => self.respond(id, Response::Pong).await,
            Request::PublishDeviceList { list } => self.publish_device_list(id, list).await,
            Request::FetchDeviceList { address } => self.fetch_device_list(id, address).await,
            Request::SendMulti { recipients, body } => self.send_multi(id, recipients, body).await,
            Request::BlobCreate {
                total_len,
                ttl_secs,
                verifiers,
            } => self.blob_create(id, total_len, ttl_secs, verifiers).await,
            Request::BlobPut {
                id: blob,
                offset,
                data,
            } => self.blob_put(id, blob, offset, data).await,
            Request::BlobStatus { id: blob, token } => self.blob_status(id, blob, token).await,
            Request::BlobGet {
                id: blob,
                token,
                offset,
                max_len,
            } => self.blob_get(id, blob, token, offset, max_len).await,
            Request::BlobDone { id: blob, token } => self.blob_done(id, blob, token).await,
        }
    }

    async fn hello(&mut self, id: u32, offered: &[u16]) -> Flow {
        // Protocol 4 is the KEM prekey directory: only on a store that
        // keeps KEM prekeys. Protocol 5 (blobs) builds on it, and needs a
        // blob store.
        let kem = self.shared.store.keeps_kem_prekeys();
        let blobs = kem && self.shared.blobs.is_some();
        let spoken: Vec<u16> = SUPPORTED_VERSIONS
            .iter()
            .copied()
            .filter(|v| kem || *v < crate::protocol::KEM_PREKEYS_VERSION)
            .filter(|v| blobs || *v < BLOBS_VERSION)
            .collect();
        let Some(version) = offered.iter().copied().filter(|v| spoken.contains(v)).max() else {
            let message = unsupported_version_message(offered, &spoken);
            return self.error(id, ErrorCode::UnsupportedVersion, message).await;
        };
        let mut challenge = [0u8; CHALLENGE_LEN];
        if rand::rngs::SysRng.try_fill_bytes(&mut challenge).is_err() {
            tracing::error!("system random number generator failed");
            let _ = self
                .error(id, ErrorCode::Internal, "relay cannot make a challenge")
                .await;
            return Flow::Close;
        }
        self.version = Some(version);
        self.challenge = Some(challenge);
        let welcome = Welcome {
            version,
            max_frame_size: self.shared.config.max_frame_size,
            server_id: self.shared.config.server_id.clone(),
            challenge,
        };
        self.last_useful = Instant::now();
        self.respond(id, Response::Welcome(welcome)).await
    }

    async fn authenticate(&mut self, id: u32, key: &[u8; 32], signature: &Signature) -> Flow {
        if self.owner.is_some() {
            return self
                .error(id, ErrorCode::AlreadyAuthenticated, "already authenticated")
                .await;
        }
        // Single use: a failed attempt ends the connection anyway.
        let Some(challenge) = self.challenge.take() else {
            return self
                .error(id, ErrorCode::AuthFailed, "challenge already used")
                .await;
        };
        let Ok(identity) = IdentityKey::from_bytes(key) else {
            return self
                .error(id, ErrorCode::AuthFailed, "invalid identity key")
                .await;
        };
        // Bound to this relay's id and this connection's TLS session as seen
        // from here: a signature a forwarding relay obtained over its own
        // session with the client does not verify.
        let message = auth_message(&self.shared.config.server_id, &challenge, &self.binding);
        if identity.verify(&message, signature).is_err() {
            tracing::debug!(peer = %self.peer, "challenge signature refused");
            return self
                .error(
                    id,
                    ErrorCode::AuthFailed,
                    "challenge signature does not verify",
                )
                .await;
        }
        let address = MailboxAddress::of(&identity);
        // Subscribe before reading the mailbox: an envelope stored in
        // between (by this relay process or, on a shared store, another)
        // is then either counted below or pushed, never missed.
        let signal = self.shared.hub.subscribe(address).await;
        // Likewise for the prekey stock: a bundle taken after this point is
        // either in the count below or seen as a new low-stock signal.
        let seen_prekeys = signal.borrow().prekeys;
        let state = self
            .store(move |s| {
                Ok((
                    s.usage(&address)?,
                    s.one_time_prekey_count(&address)?,
                    s.kem_prekey_count(&address)?,
                ))
            })
            .await;
        let (usage, remaining, kem) = match state {
            Ok(state) => state,
            Err(e) => {
                self.shared.hub.unsubscribe(&address, signal);
                return self.store_error(id, e).await;
            }
        };
        self.authenticated.store(true, Ordering::Release);
        self.owner = Some(Owner {
            identity,
            address,
            signal,
            push_cursor: usage.last_id,
            push_backlog: false,
            seen_prekeys,
        });
        let stock = self.stock(remaining, kem);
        let info = AuthInfo {
            address,
            pending_envelopes: u32::try_from(usage.envelopes).unwrap_or(u32::MAX),
            pending_bytes: usage.bytes,
            prekeys: stock,
        };
        if self.respond(id, Response::Authenticated(info)).await == Flow::Close {
            return Flow::Close;
        }
        if Self::stock_is_low(&stock) {
            return self.send(&Push::PreKeysLow(stock).encode()).await;
        }
        Flow::Continue
    }

    async fn upload_prekeys(&mut self, id: u32, upload: PreKeyUpload) -> Flow {
        let Some(identity) = self.owner.as_ref().map(|o| o.identity) else {
            return self.auth_required(id).await;
        };
        if has_duplicate_ids(&upload) {
            return self
                .error(id, ErrorCode::InvalidPreKey, "repeated one-time prekey id")
                .await;
        }
        if has_duplicate_kem_ids(&upload) {
            return self
                .error(
                    id,
                    ErrorCode::InvalidPreKey,
                    "repeated one-time KEM prekey id",
                )
                .await;
        }
        // Keys no key agreement could use never reach the directory
        // (sotto_core::keys::check_x25519_public).
        if let Some(spk) = &upload.signed_prekey
            && check_x25519_public(&spk.public).is_err()
        {
            return self
                .error(
                    id,
                    ErrorCode::InvalidPreKey,
                    "signed prekey is not a usable X25519 key (non-canonical or of small order)",
                )
                .await;
        }
        if let Some(bad) = upload
            .one_time_prekeys
            .iter()
            .find(|k| check_x25519_public(&k.public).is_err())
        {
            let message = format!(
                "one-time prekey {} is not a usable X25519 key (non-canonical or of small order)",
                bad.id
            );
            return self.error(id, ErrorCode::InvalidPreKey, message).await;
        }
        // Every signature is checked before anything is stored; up to a
        // hundred Ed25519 verifications, off the connection's task.
        let checked = tokio::task::spawn_blocking(move || {
            check_signatures(&identity, &upload).map(|()| upload)
        })
        .await;
        let upload = match checked {
            Ok(Ok(upload)) => upload,
            Ok(Err(message)) => return self.error(id, ErrorCode::InvalidPreKey, message).await,
            Err(e) => return self.store_error(id, StoreError::Backend(Box::new(e))).await,
        };
        let limits = PreKeyLimits {
            max_one_time: self.shared.config.max_one_time_prekeys,
            max_kem: self.shared.config.max_kem_prekeys,
        };
        match self
            .store(move |s| s.publish_prekeys_with_kem(&identity, &upload, &limits))
            .await
        {
            Ok(counts) => {
                let stock = self.stock(counts.one_time, counts.kem);
                self.respond(id, Response::PreKeysUploaded(stock)).await
            }
            Err(e) => self.store_error(id, e).await,
        }
    }

    async fn fetch_bundle(&mut self, id: u32, address: MailboxAddress) -> Flow {
        match self.store(move |s| s.take_bundle(&address)).await {
            Ok(Some(taken)) => {
                if taken.remaining < self.shared.config.prekey_low_threshold {
                    // A v1 bundle takes no KEM prekey: that stock is not
                    // said, and read by the connections that report it.
                    let left = PreKeysLeft::one_time(taken.remaining);
                    self.shared.hub.prekeys_low(&address, left);
                }
                self.last_useful = Instant::now();
                self.respond(id, Response::Bundle(Box::new(taken.bundle)))
                    .await
            }
            Ok(None) => {
                self.error(id, ErrorCode::NotFound, "no prekey bundle for this mailbox")
                    .await
            }
            Err(e) => self.store_error(id, e).await,
        }
    }

    /// `FetchBundleV2` (protocol 4): a v2 bundle, with a one-time KEM
    /// prekey taken in the same step as the one-time prekey, if the owner
    /// published KEM prekeys; else the v1 bundle `FetchBundle` gives.
    async fn fetch_bundle_v2(&mut self, id: u32, address: MailboxAddress) -> Flow {
        match self.store(move |s| s.take_bundle_v2(&address)).await {
            Ok(Some(taken)) => {
                let threshold = self.shared.config.prekey_low_threshold;
                if taken.remaining < threshold || taken.kem_remaining.is_some_and(|k| k < threshold)
                {
                    let left = PreKeysLeft::of_v2(taken.remaining, taken.kem_remaining);
                    self.shared.hub.prekeys_low(&address, left);
                }
                self.last_useful = Instant::now();
                self.respond(id, Response::BundleV2(Box::new(taken.bundle)))
                    .await
            }
            Ok(None) => {
                self.error(id, ErrorCode::NotFound, "no prekey bundle for this mailbox")
                    .await
            }
            Err(e) => self.store_error(id, e).await,
        }
    }

    async fn send_envelope(
        &mut self,
        id: u32,
        recipient: MailboxAddress,
        message_id: MessageId,
        access_key: Option<AccessKey>,
        payload: Vec<u8>,
    ) -> Flow {
        if payload.is_empty() {
            return self
                .error(id, ErrorCode::InvalidEnvelope, "empty envelope")
                .await;
        }
        let len = payload.len() as u64;
        if let Some(message) = self.over_send_budget(len) {
            return self.error(id, ErrorCode::SendBudgetExceeded, message).await;
        }
        let policy = self.shared.config.queue_policy();
        let now = self.shared.clock.now();
        let payload = Arc::new(payload);
        let with_key = self
            .enqueue(EnqueueRequest {
                recipient,
                message_id,
                payload: payload.clone(),
                access: OwnedAccess::Key(access_key),
                policy,
                now,
            })
            .await;
        let result = match with_key {
            // No key, or a wrong one, for a mailbox that publishes a
            // verifier: a first contact.
            Err(StoreError::AccessDenied) => {
                self.first_contact(recipient, message_id, payload, now)
                    .await
            }
            other => other,
        };
        match result {
            Ok(stored) => {
                if !stored.duplicate {
                    self.stored_bytes = self.stored_bytes.saturating_add(len);
                    self.shared.metrics.envelopes_queued(1);
                    self.shared.hub.envelope_stored(&recipient);
                }
                self.last_useful = Instant::now();
                let response = Response::Sent {
                    envelope_id: stored.id,
                    duplicate: stored.duplicate,
                };
                self.respond(id, response).await
            }
            Err(e) => self.store_error(id, e).await,
        }
    }

    /// Queues an envelope that did not prove access to its mailbox, if the
    /// mailbox's first-contact allowance has one left (docs/relay.md §6,
    /// "Access"). The allowance is taken before the store is asked, so
    /// concurrent senders cannot overdraw it, and given back when nothing
    /// new was stored.
    async fn first_contact(
        &self,
        recipient: MailboxAddress,
        message_id: MessageId,
        payload: Arc<Vec<u8>>,
        now: crate::clock::UnixTime,
    ) -> Result<Enqueued, StoreError> {
        if !first_contacts(&self.shared).take(&recipient, now) {
            tracing::debug!("first-contact allowance of a mailbox used up");
            return Err(StoreError::AccessDenied);
        }
        let policy = self.shared.config.queue_policy();
        let result = self
            .enqueue(EnqueueRequest {
                recipient,
                message_id,
                payload,
                access: OwnedAccess::FirstContact,
                policy,
                now,
            })
            .await;
        if !matches!(
            result,
            Ok(Enqueued {
                duplicate: false,
                ..
            })
        ) {
            first_contacts(&self.shared).give_back(&recipient, now);
        }
        result
    }

    /// Queues `header || body` for every recipient of a `SendMulti`, each
    /// as a `Send` of that envelope to it alone would be (the same checks,
    /// limits, dedupe, first-contact allowance and push), all in one
    /// storage transaction (docs/relay.md §6, "Multi-recipient send"). A
    /// refusal concerns its recipient alone; the send budget counts the
    /// bytes that arrived, the body once.
    async fn send_multi(
        &mut self,
        id: u32,
        recipients: Vec<MultiRecipient>,
        body: Vec<u8>,
    ) -> Flow {
        // What a `Send` would be refused for before the store is asked:
        // an envelope that is empty, or longer than a `Send` can carry.
        let max = max_payload_len(self.shared.config.max_frame_size);
        let mut early = Vec::with_capacity(recipients.len());
        let mut valid = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            let len = recipient.header.len() + body.len();
            if len == 0 || len > max {
                early.push(Some(RecipientOutcome::Refused(ErrorCode::InvalidEnvelope)));
            } else {
                early.push(None);
                valid.push(recipient);
            }
        }
        let body_len = body.len() as u64;
        let results = if valid.is_empty() {
            Vec::new()
        } else {
            let headers: u64 = valid.iter().map(|r| r.header.len() as u64).sum();
            if let Some(message) = self.over_send_budget(body_len + headers) {
                return self.error(id, ErrorCode::SendBudgetExceeded, message).await;
            }
            match self.enqueue_many(valid, body).await {
                Ok(results) => results,
                Err(e) => return self.store_error(id, e).await,
            }
        };
        let mut results = results.into_iter();
        let mut new_bytes = 0u64;
        let mut outcomes = Vec::with_capacity(early.len());
        for early in early {
            let answer = if early.is_none() {
                results.next()
            } else {
                None
            };
            let outcome = match (early, answer) {
                (Some(refused), _) => refused,
                (
                    None,
                    Some((
                        _,
                        Ok(Enqueued {
                            id,
                            duplicate: true,
                        }),
                    )),
                ) => RecipientOutcome::Duplicate { envelope_id: id },
                (None, Some((recipient, Ok(Enqueued { id, .. })))) => {
                    new_bytes += recipient.header.len() as u64;
                    self.shared.metrics.envelopes_queued(1);
                    self.shared.hub.envelope_stored(&recipient.address);
                    RecipientOutcome::Stored { envelope_id: id }
                }
                (None, Some((_, Err(e)))) => RecipientOutcome::Refused(error_code(&e)),
                // A store that answered fewer recipients than it was given.
                (None, None) => RecipientOutcome::Refused(ErrorCode::Internal),
            };
            if let RecipientOutcome::Refused(code) = outcome {
                self.shared.metrics.recipient_refused(code);
            }
            outcomes.push(outcome);
        }
        if outcomes
            .iter()
            .any(|o| matches!(o, RecipientOutcome::Stored { .. }))
        {
            self.stored_bytes = self.stored_bytes.saturating_add(body_len + new_bytes);
        }
        if outcomes.iter().any(|o| o.envelope_id().is_some()) {
            self.last_useful = Instant::now();
        }
        self.respond(id, Response::SentMulti(outcomes)).await
    }

    /// Asks the store to queue `header || body` for each of `recipients`
    /// in one step, taking a first-contact allowance for every recipient
    /// whose access key does not open its mailbox and giving it back
    /// unless its envelope was newly stored, as for a single `Send`.
    /// Returns each recipient with its result.
    async fn enqueue_many(
        &self,
        recipients: Vec<MultiRecipient>,
        body: Vec<u8>,
    ) -> Result<Vec<(MultiRecipient, Result<Enqueued, StoreError>)>, StoreError> {
        let shared = self.shared.clone();
        let policy = self.shared.config.queue_policy();
        let now = self.shared.clock.now();
        self.store(move |s| {
            let mut took = vec![false; recipients.len()];
            let results = {
                let mut first_contact = |i: usize| {
                    let Some(recipient) = recipients.get(i) else {
                        return false;
                    };
                    let admitted = first_contacts(&shared).take(&recipient.address, now);
                    if !admitted {
                        tracing::debug!("first-contact allowance of a mailbox used up");
                    }
                    took[i] = admitted;
                    admitted
                };
                s.enqueue_many(&recipients, &body, &mut first_contact, &policy, now)
            };
            for (i, took) in took.into_iter().enumerate() {
                let stored = matches!(
                    &results,
                    Ok(results) if matches!(results.get(i), Some(Ok(Enqueued { duplicate: false, .. })))
                );
                if took && !stored {
                    first_contacts(&shared).give_back(&recipients[i].address, now);
                }
            }
            Ok(recipients.into_iter().zip(results?).collect())
        })
        .await
    }

    /// Bytes available for envelopes in one response frame: the frame limit
    /// minus `type || request_id || more || count`.
    fn envelope_budget(&self) -> usize {
        (self.shared.config.max_frame_size as usize).saturating_sub(8)
    }

    async fn fetch(&mut self, id: u32, after: u64, max_count: u16) -> Flow {
        let Some(address) = self.owner.as_ref().map(|o| o.address) else {
            return self.auth_required(id).await;
        };
        let page_size = self.shared.config.fetch_page_size;
        let max_count = usize::from(if max_count == 0 {
            page_size
        } else {
            max_count.min(page_size)
        });
        let budget = self.envelope_budget();
        let now = self.shared.clock.now();
        let store = self.shared.store.clone();
        match store
            .fetch_async(address, after, max_count, budget, now)
            .await
        {
            Ok(page) => {
                let delivered = page.envelopes.len() as u64;
                self.shared.metrics.envelopes_delivered(delivered);
                let response = Response::Envelopes {
                    envelopes: page.envelopes,
                    more: page.more,
                };
                self.respond(id, response).await
            }
            Err(e) => self.store_error(id, e).await,
        }
    }

    async fn ack(&mut self, id: u32, ids: Vec<u64>) -> Flow {
        let Some(address) = self.owner.as_ref().map(|o| o.address) else {
            return self.auth_required(id).await;
        };
        match self.shared.store.clone().ack_async(address, ids).await {
            Ok(removed) => {
                self.shared.metrics.envelopes_acknowledged(removed.into());
                self.respond(id, Response::Acked { removed }).await
            }
            Err(e) => self.store_error(id, e).await,
        }
    }

    async fn prekey_count(&mut self, id: u32) -> Flow {
        let Some(address) = self.owner.as_ref().map(|o| o.address) else {
            return self.auth_required(id).await;
        };
        let counts = self
            .store(move |s| {
                Ok((
                    s.one_time_prekey_count(&address)?,
                    s.kem_prekey_count(&address)?,
                ))
            })
            .await;
        match counts {
            Ok((remaining, kem)) => {
                let stock = self.stock(remaining, kem);
                self.respond(id, Response::PreKeyCount(stock)).await
            }
            Err(e) => self.store_error(id, e).await,
        }
    }

    /// Stores the connection's own account's device list, if it is one
    /// (signed by the account key the connection authenticated with) and
    /// newer than the stored one. Contacts check the signature again,
    /// against the account key they pinned: the relay's check only keeps
    /// junk and other accounts' lists out of its database. Storing a newer
    /// list removes, in the same step, the mailboxes of the devices it
    /// unlinks ([`MailboxStore::publish_device_list`]; docs/devices.md §5).
    async fn publish_device_list(&mut self, id: u32, list: Vec<u8>) -> Flow {
        let Some((identity, address)) = self.owner.as_ref().map(|o| (o.identity, o.address)) else {
            return self.auth_required(id).await;
        };
        let verified = sotto_core::SignedDeviceList::from_bytes(&list)
            .and_then(|signed| signed.verify(&identity));
        let version = match verified {
            Ok(devices) => devices.version(),
            Err(_) => {
                return self
                    .error(
                        id,
                        ErrorCode::InvalidDeviceList,
                        "not a device list signed by this connection's account",
                    )
                    .await;
            }
        };
        match self
            .store(move |s| s.publish_device_list(&address, version, &list))
            .await
        {
            Ok(()) => {
                self.respond(id, Response::DeviceListPublished { version })
                    .await
            }
            Err(e) => self.store_error(id, e).await,
        }
    }

    async fn fetch_device_list(&mut self, id: u32, address: MailboxAddress) -> Flow {
        match self.store(move |s| s.device_list(&address)).await {
            Ok(Some(list)) => self.respond(id, Response::DeviceList(list)).await,
            Ok(None) => {
                self.error(id, ErrorCode::NotFound, "no device list for this mailbox")
                    .await
            }
            Err(e) => self.store_error(id, e).await,
        }
    }

    /// Runs `op` against the blob store on the blocking pool; `None` if the
    /// relay keeps no blobs (it then never negotiates protocol 5, so no
    /// blob request reaches here).
    async fn blobs<T, F>(&self, op: F) -> Option<Result<T, BlobError>>
    where
        T: Send + 'static,
        F: FnOnce(&dyn BlobStore) -> Result<T, BlobError> + Send + 'static,
    {
        let blobs = self.shared.blobs.clone()?;
        Some(
            tokio::task::spawn_blocking(move || op(blobs.as_ref()))
                .await
                .unwrap_or_else(|e| Err(BlobError::Io(std::io::Error::other(e)))),
        )
    }

    /// Answers a blob operation's outcome: `ok` for its value, the error
    /// for a refusal.
    async fn blob_answer<T>(
        &mut self,
        id: u32,
        outcome: Option<Result<T, BlobError>>,
        ok: impl FnOnce(&mut Self, T) -> Response,
    ) -> Flow {
        match outcome {
            Some(Ok(value)) => {
                let response = ok(self, value);
                self.respond(id, response).await
            }
            Some(Err(e)) => {
                let (code, message) = blob_refusal(&e);
                self.error(id, code, message).await
            }
            None => {
                self.error(id, ErrorCode::UnknownRequest, "this relay keeps no blobs")
                    .await
            }
        }
    }

    /// `BlobCreate` (protocol 5): an empty blob owned by this connection's
    /// mailbox, within the size, time and byte limits.
    async fn blob_create(
        &mut self,
        id: u32,
        total_len: u64,
        ttl_secs: u32,
        verifiers: Vec<BlobVerifier>,
    ) -> Flow {
        let Some(uploader) = self.owner.as_ref().map(|o| o.address) else {
            return self.auth_required(id).await;
        };
        let config = &self.shared.config;
        if total_len > config.max_blob_size {
            let message = format!(
                "a blob of {total_len} bytes is larger than this relay's maximum of {}",
                config.max_blob_size
            );
            return self.error(id, ErrorCode::BlobTooLarge, message).await;
        }
        let ttl = Duration::from_secs(u64::from(ttl_secs));
        if ttl.is_zero() || ttl > config.max_blob_ttl {
            let message = format!(
                "a blob's time to live must be 1 s to {} s, not {ttl_secs} s",
                config.max_blob_ttl.as_secs()
            );
            return self.error(id, ErrorCode::InvalidBlobRequest, message).await;
        }
        let blob = NewBlob {
            uploader,
            total_len,
            expiry_hour: self
                .shared
                .clock
                .now()
                .saturating_add(ttl)
                .hour_rounded_up(),
            verifiers,
        };
        let limits = config.blob_limits();
        let created = self.blobs(move |s| s.create(blob, &limits)).await;
        self.blob_answer(id, created, |conn, blob| {
            conn.shared.metrics.blob_created();
            Response::BlobCreated(blob)
        })
        .await
    }

    /// `BlobPut` (protocol 5): appends to this mailbox's blob; answered
    /// once the bytes are durable.
    async fn blob_put(&mut self, id: u32, blob: BlobId, offset: u64, data: Vec<u8>) -> Flow {
        let Some(uploader) = self.owner.as_ref().map(|o| o.address) else {
            return self.auth_required(id).await;
        };
        let now = self.shared.clock.now();
        let appended = self
            .blobs(move |s| s.append(&blob, &uploader, offset, &data, now))
            .await;
        self.blob_answer(id, appended, |conn, appended| {
            conn.shared.metrics.blob_bytes_stored(appended.written);
            Response::BlobStored {
                stored_len: appended.stored_len,
            }
        })
        .await
    }

    /// `BlobStatus` (protocol 5): for the uploader, or a token's holder.
    async fn blob_status(&mut self, id: u32, blob: BlobId, token: Option<BlobToken>) -> Flow {
        let uploader = self.owner.as_ref().map(|o| o.address);
        let verifier = token.as_ref().map(BlobToken::verifier);
        drop(token);
        let now = self.shared.clock.now();
        let state = self
            .blobs(move |s| s.state(&blob, uploader.as_ref(), verifier.as_ref(), now))
            .await;
        self.blob_answer(id, state, |conn, state| {
            conn.last_useful = Instant::now();
            Response::BlobState(state)
        })
        .await
    }

    /// `BlobGet` (protocol 5): a piece of a complete blob, at most a
    /// frame's worth. The bytes sent count against the connection's byte
    /// rate limit as received ones do.
    async fn blob_get(
        &mut self,
        id: u32,
        blob: BlobId,
        token: BlobToken,
        offset: u64,
        max_len: u32,
    ) -> Flow {
        let verifier = token.verifier();
        drop(token);
        let frame_room =
            (self.shared.config.max_frame_size as usize).saturating_sub(BLOB_DATA_OVERHEAD);
        let max_len = (max_len as usize).min(frame_room);
        // The answer's buffer is charged to the connection's frame pool as
        // a request frame is, until it is written: the relay's memory for
        // blob reads is bounded by the same budgets.
        let mut charge = self.shared.frames.charge(self.owner.is_some());
        if !charge.grow(0, 0, max_len).await {
            let message = format!(
                "relay is busy: no memory for {max_len} bytes of blob right now; try again later"
            );
            return self.error(id, ErrorCode::ServerBusy, message).await;
        }
        let now = self.shared.clock.now();
        let read = self
            .blobs(move |s| s.read(&blob, &verifier, offset, max_len, now))
            .await;
        if let Some(Ok(data)) = &read {
            self.pace_bytes(data.len()).await;
        }
        let flow = self
            .blob_answer(id, read, |conn, data| {
                conn.last_useful = Instant::now();
                conn.shared.metrics.blob_bytes_served(data.len() as u64);
                Response::BlobData { offset, data }
            })
            .await;
        drop(charge);
        flow
    }

    /// `BlobDone` (protocol 5): this token's holder has the blob; the last
    /// one deletes it.
    async fn blob_done(&mut self, id: u32, blob: BlobId, token: BlobToken) -> Flow {
        let verifier = token.verifier();
        drop(token);
        let now = self.shared.clock.now();
        let done = self.blobs(move |s| s.done(&blob, &verifier, now)).await;
        self.blob_answer(id, done, |conn, deleted| {
            conn.last_useful = Instant::now();
            if deleted {
                conn.shared.metrics.blob_deleted();
            }
            Response::BlobReleased { deleted }
        })
        .await
    }

    async fn auth_required(&mut self, id: u32) -> Flow {
        self.error(
            id,
            ErrorCode::AuthRequired,
            "this request needs an authenticated connection",
        )
        .await
    }

    /// The owner's mailbox changed: push what is new.
    async fn on_signal(&mut self) -> Flow {
        let Some(owner) = self.owner.as_mut() else {
            return Flow::Continue;
        };
        let signal = *owner.signal.borrow_and_update();
        if signal.prekeys != owner.seen_prekeys {
            owner.seen_prekeys = signal.prekeys;
            let address = owner.address;
            // The signal carries the stock the bundle left, the KEM stock
            // too when the bundle was a v2 one. When it does not say (a v1
            // bundle, or a relay from before the KEM stock announced it),
            // a protocol 4 connection reads the KEM stock, which may be
            // what is low.
            let left = signal.prekeys_left;
            let kem = match left.kem {
                KemPreKeysLeft::Left(kem) => Some(kem),
                KemPreKeysLeft::NoKemPreKeys => None,
                KemPreKeysLeft::NotSaid if self.speaks_kem() => self
                    .store(move |s| s.kem_prekey_count(&address))
                    .await
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "storage failure reading the KEM prekey stock");
                        None
                    }),
                KemPreKeysLeft::NotSaid => None,
            };
            let stock = self.stock(left.one_time, kem);
            // Only the stock this connection hears of: a signal for low
            // KEM stock says nothing to an older client.
            if Self::stock_is_low(&stock)
                && self.send(&Push::PreKeysLow(stock).encode()).await == Flow::Close
            {
                return Flow::Close;
            }
        }
        self.push_envelopes().await
    }

    /// Pushes up to one batch of envelopes newer than the push cursor.
    async fn push_envelopes(&mut self) -> Flow {
        let Some((address, after)) = self.owner.as_ref().map(|o| (o.address, o.push_cursor)) else {
            return Flow::Continue;
        };
        let budget = self.envelope_budget();
        let now = self.shared.clock.now();
        let store = self.shared.store.clone();
        let page = match store
            .fetch_async(address, after, PUSH_BATCH, budget, now)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                // The envelopes stay queued; the client will fetch them.
                tracing::error!(error = %e, "storage failure while pushing");
                return Flow::Continue;
            }
        };
        for envelope in page.envelopes {
            let envelope_id = envelope.id;
            if self.send(&Push::Envelope(envelope).encode()).await == Flow::Close {
                return Flow::Close;
            }
            self.shared.metrics.envelopes_delivered(1);
            if let Some(owner) = self.owner.as_mut() {
                owner.push_cursor = envelope_id;
            }
        }
        if let Some(owner) = self.owner.as_mut() {
            owner.push_backlog = page.more;
        }
        Flow::Continue
    }
}
