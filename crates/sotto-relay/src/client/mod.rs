//! The async relay client.
//!
//! ```no_run
//! # async fn run() -> Result<(), sotto_relay::ClientError> {
//! use sotto_core::IdentityKeyPair;
//! use sotto_relay::{ClientConfig, MailboxAddress, MessageId, RelayClient, RelayEvent};
//!
//! let me = IdentityKeyPair::generate(&mut rand::rand_core::UnwrapErr(rand::rngs::SysRng));
//! let client = RelayClient::connect("127.0.0.1:7447", ClientConfig::default()).await?;
//! let info = client.authenticate(&me).await?;
//! let mut events = client.take_events();
//! for envelope in client.fetch_pending().await? {
//!     // ... decrypt and store, then:
//!     client.ack(&[envelope.id]).await?;
//! }
//! while let Some(event) = events.as_mut().and_then(|e| e.try_recv().ok()) {
//!     if let RelayEvent::Envelope(envelope) = event {
//!         client.ack(&[envelope.id]).await?;
//!     }
//! }
//! # let _ = (info, MailboxAddress::of(me.public()), MessageId::random());
//! # Ok(()) }
//! ```

mod blob;
mod error;
mod hello;
#[cfg(feature = "tls")]
mod tls_handshake;

pub use error::{ClientError, ProtocolViolation};
pub use hello::NotARelay;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use sotto_core::{AccessKey, IdentityKeyPair, PreKeyBundle};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter, ReadHalf};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::address::MailboxAddress;
use crate::envelope::{Envelope, FetchedPage, MessageId};
use crate::protocol::frame::{read_frame, write_frame};
use crate::protocol::version::relay_versions;
use crate::protocol::{
    AuthInfo, ChannelBinding, ErrorCode, ErrorFrame, KEM_PREKEYS_VERSION, MAX_MULTI_RECIPIENTS,
    MultiRecipient, PreKeyStock, PreKeyUpload, Push, RecipientOutcome, Request, Response,
    SEND_MULTI_VERSION, SUPPORTED_VERSIONS, ServerFrame, Welcome, auth_message, max_payload_len,
    send_multi_frame_len,
};

/// Client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Refuse a relay whose `Welcome` carries another server id (default:
    /// accept any). Set it to the relay's configured id so a challenge from
    /// another relay is never signed. Over TLS the signature is also bound
    /// to the TLS session, which stops a forwarding relay by itself; over
    /// plain TCP this check is the only protection (docs/relay.md §4).
    pub expected_server_id: Option<String>,
    /// Time to connect and complete the handshake (default 10 s).
    pub connect_timeout: Duration,
    /// Time the peer has to start answering once this client has spoken:
    /// its `Hello`, or over TLS its ClientHello (default 5 s; at most
    /// `connect_timeout` counts). A relay answers at once, so a server that
    /// accepts the connection and stays silent this long is no relay:
    /// [`ClientError::NotARelay`].
    pub hello_timeout: Duration,
    /// Time for each request's answer (default 30 s).
    pub request_timeout: Duration,
    /// Largest frame accepted from the relay (default 16 MiB).
    pub max_incoming_frame: u32,
    /// Capacity of the event channel (default 1024). When it is full,
    /// pushed envelopes are dropped from the channel; they stay queued on
    /// the relay and come back with the next fetch.
    pub event_capacity: usize,
    /// Ping interval that keeps an idle connection open (default 60 s,
    /// below the relay's default idle timeout of 5 min).
    pub keepalive: Option<Duration>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            expected_server_id: None,
            connect_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_incoming_frame: 16 << 20,
            event_capacity: 1024,
            keepalive: Some(Duration::from_secs(60)),
        }
    }
}

/// Something the relay told the client without being asked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayEvent {
    /// An envelope arrived for the authenticated mailbox. Ack it once it is
    /// safely stored. The same envelope may also come back from a fetch:
    /// deduplicate by id.
    Envelope(Envelope),
    /// One-time prekeys are running low: upload more.
    PreKeysLow(PreKeyStock),
    /// The connection ended; `reason` is the relay's last error, if it sent
    /// one (e.g. `ShuttingDown`).
    Closed {
        /// The relay's reason.
        reason: Option<ErrorFrame>,
    },
}

/// The answer to [`RelayClient::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendReceipt {
    /// The relay's id of the queued envelope.
    pub envelope_id: u64,
    /// The message id was already queued; nothing new was stored.
    pub duplicate: bool,
}

type Writer = BufWriter<Box<dyn AsyncWrite + Send + Unpin>>;

/// What the writer task is asked to do.
enum Outgoing {
    Frame(Vec<u8>),
    Close,
}

/// Most envelopes [`RelayClient::fetch_pending`] collects in one call.
const FETCH_PENDING_LIMIT: usize = 100_000;

/// Frames waiting for the writer task.
const OUTGOING_CAPACITY: usize = 64;

#[derive(Default)]
struct Pending {
    waiting: HashMap<u32, oneshot::Sender<Response>>,
    closed: bool,
}

struct Inner {
    /// Whole frames go to one writer task, so a request future dropped at
    /// any point never leaves half a frame on the wire.
    outgoing: mpsc::Sender<Outgoing>,
    pending: Mutex<Pending>,
    next_id: AtomicU32,
    authenticated: Mutex<Option<MailboxAddress>>,
    closed: AtomicBool,
    welcome: Welcome,
    /// What the login signature is bound to (the TLS session, or nothing).
    binding: ChannelBinding,
    request_timeout: Duration,
}

/// A connection to a relay. Cheap to share behind an `Arc`: every method
/// takes `&self`, and requests from several tasks are pipelined on the one
/// connection. Dropping it closes the connection.
pub struct RelayClient {
    inner: Arc<Inner>,
    events: Mutex<Option<mpsc::Receiver<RelayEvent>>>,
    reader: JoinHandle<()>,
    writer: Option<JoinHandle<()>>,
    keepalive: Option<JoinHandle<()>>,
}

impl core::fmt::Debug for RelayClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RelayClient")
            .field("server_id", &self.inner.welcome.server_id)
            .field("version", &self.inner.welcome.version)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single map or option update.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RelayClient {
    /// Connects over plain TCP and negotiates the protocol version. The login
    /// signature is then bound to nothing but the relay's id and challenge:
    /// set [`ClientConfig::expected_server_id`] (docs/relay.md §4).
    pub async fn connect(
        addr: impl ToSocketAddrs,
        config: ClientConfig,
    ) -> Result<Self, ClientError> {
        let tcp = tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(config.connect_timeout))??;
        let _ = tcp.set_nodelay(true);
        Self::handshake(tcp, ChannelBinding::None, config).await
    }

    /// Connects over TLS 1.3; `server_name` is checked against the relay's
    /// certificate. The login signature is bound to this TLS session. See
    /// [`crate::tls::client_config`].
    #[cfg(feature = "tls")]
    pub async fn connect_tls(
        addr: impl ToSocketAddrs,
        server_name: &str,
        tls: Arc<tokio_rustls::rustls::ClientConfig>,
        config: ClientConfig,
    ) -> Result<Self, ClientError> {
        use tokio_rustls::rustls::pki_types::ServerName;
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| ClientError::InvalidServerName(server_name.to_owned()))?;
        let deadline = config.connect_timeout;
        let hello_timeout = config.hello_timeout.min(deadline);
        let stream = tokio::time::timeout(deadline, async {
            let tcp = TcpStream::connect(addr).await?;
            let _ = tcp.set_nodelay(true);
            tls_handshake::handshake(tcp, name, tls, hello_timeout).await
        })
        .await
        .map_err(|_| ClientError::Timeout(deadline))??;
        let binding =
            crate::tls::channel_binding(stream.get_ref().1).map_err(ClientError::TlsHandshake)?;
        Self::handshake(stream, binding, config).await
    }

    /// Runs the protocol over an already connected stream: sends `Hello`,
    /// reads `Welcome`, and starts the background reader. A peer whose
    /// answer cannot be a relay's, or that says nothing within
    /// [`ClientConfig::hello_timeout`], is [`ClientError::NotARelay`].
    ///
    /// `binding` is what [`authenticate`](Self::authenticate) binds the
    /// login signature to: [`ChannelBinding::None`] for plain TCP, or the
    /// value of `tls::channel_binding` (feature `tls`) for a TLS stream
    /// (the relay computes it from its side of the same session; anything
    /// else fails to authenticate).
    pub async fn handshake<S>(
        stream: S,
        binding: ChannelBinding,
        config: ClientConfig,
    ) -> Result<Self, ClientError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (mut reader, writer) = tokio::io::split(stream);
        let mut writer: Writer =
            BufWriter::new(Box::new(writer) as Box<dyn AsyncWrite + Send + Unpin>);
        let deadline = config.connect_timeout;
        let hello_timeout = config.hello_timeout.min(deadline);
        let welcome = tokio::time::timeout(deadline, async {
            let hello = Request::Hello {
                versions: SUPPORTED_VERSIONS.to_vec(),
            };
            write_frame(&mut writer, &hello.encode(0)).await?;
            let body = hello::read_first_frame(&mut reader, hello_timeout).await?;
            match ServerFrame::decode(&body)? {
                ServerFrame::Response {
                    response: Response::Welcome(welcome),
                    ..
                } => Ok(welcome),
                ServerFrame::Response {
                    response: Response::Error(e),
                    ..
                } => Err(refused(e)),
                _ => Err(ProtocolViolation::ExpectedWelcome.into()),
            }
        })
        .await
        .map_err(|_| ClientError::Timeout(deadline))??;
        if !SUPPORTED_VERSIONS.contains(&welcome.version) {
            return Err(ProtocolViolation::VersionNotOffered(welcome.version).into());
        }
        if let Some(expected) = &config.expected_server_id
            && *expected != welcome.server_id
        {
            return Err(ClientError::ServerIdMismatch {
                expected: expected.clone(),
                actual: welcome.server_id,
            });
        }
        let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_CAPACITY);
        let inner = Arc::new(Inner {
            outgoing,
            pending: Mutex::new(Pending::default()),
            next_id: AtomicU32::new(1),
            authenticated: Mutex::new(None),
            closed: AtomicBool::new(false),
            welcome,
            binding,
            request_timeout: config.request_timeout,
        });
        let (events_tx, events_rx) = mpsc::channel(config.event_capacity.max(1));
        let reader = tokio::spawn(read_loop(
            reader,
            config.max_incoming_frame,
            inner.clone(),
            events_tx,
        ));
        let writer = tokio::spawn(write_loop(writer, outgoing_rx, inner.clone()));
        let keepalive = config
            .keepalive
            .map(|every| tokio::spawn(keepalive(Arc::downgrade(&inner), every)));
        Ok(Self {
            inner,
            events: Mutex::new(Some(events_rx)),
            reader,
            writer: Some(writer),
            keepalive,
        })
    }

    /// The relay's `Welcome`: version, frame limit, server id.
    pub fn welcome(&self) -> &Welcome {
        &self.inner.welcome
    }

    /// The negotiated protocol version.
    pub fn protocol_version(&self) -> u16 {
        self.inner.welcome.version
    }

    /// The largest payload [`send`](Self::send) accepts for this relay.
    pub fn max_payload_len(&self) -> usize {
        max_payload_len(self.inner.welcome.max_frame_size)
    }

    /// The mailbox this connection is authenticated for.
    pub fn address(&self) -> Option<MailboxAddress> {
        *lock(&self.inner.authenticated)
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// The channel of pushed envelopes, prekey notices and the close
    /// notice. Only the first call returns it.
    pub fn take_events(&self) -> Option<mpsc::Receiver<RelayEvent>> {
        lock(&self.events).take()
    }

    /// Proves ownership of `identity`'s mailbox by signing the relay's
    /// challenge, its server id and this connection's channel binding
    /// ([`auth_message`]). From then on the relay pushes new envelopes for
    /// it. Envelopes that were already waiting are not pushed: call
    /// [`fetch_pending`](Self::fetch_pending).
    pub async fn authenticate(&self, identity: &IdentityKeyPair) -> Result<AuthInfo, ClientError> {
        let welcome = &self.inner.welcome;
        let message = auth_message(&welcome.server_id, &welcome.challenge, &self.inner.binding);
        let signature = identity.sign(&message);
        let request = Request::Authenticate {
            identity_key: *identity.public().as_bytes(),
            signature,
        };
        match self.inner.request(request).await? {
            Response::Authenticated(info) => {
                if info.address != MailboxAddress::of(identity.public()) {
                    return Err(ProtocolViolation::WrongMailbox.into());
                }
                *lock(&self.inner.authenticated) = Some(info.address);
                Ok(info)
            }
            _ => Err(unexpected()),
        }
    }

    /// Publishes prekeys for the authenticated mailbox; returns the
    /// one-time prekey stock after the upload.
    pub async fn upload_prekeys(&self, upload: PreKeyUpload) -> Result<PreKeyStock, ClientError> {
        if upload.has_kem_part() && !self.supports_kem_prekeys() {
            return Err(ClientError::Unsupported {
                request: "UploadPreKeys with KEM prekeys",
                version: self.protocol_version(),
                needed: KEM_PREKEYS_VERSION,
            });
        }
        match self.inner.request(Request::UploadPreKeys(upload)).await? {
            Response::PreKeysUploaded(stock) => Ok(stock),
            _ => Err(unexpected()),
        }
    }

    /// Fetches the prekey bundle of `address` (consuming one of its
    /// one-time prekeys, if any is left). The bundle is checked: its
    /// identity key must hash to `address` and its signed prekey signature
    /// must verify.
    pub async fn fetch_bundle(
        &self,
        address: &MailboxAddress,
    ) -> Result<PreKeyBundle, ClientError> {
        let request = Request::FetchBundle { address: *address };
        match self.inner.request(request).await? {
            Response::Bundle(bundle) => {
                if MailboxAddress::of(&bundle.identity_key) != *address {
                    return Err(ClientError::BundleMismatch);
                }
                bundle.verify().map_err(ClientError::InvalidBundle)?;
                Ok(*bundle)
            }
            _ => Err(unexpected()),
        }
    }

    /// Fetches the bundle of `address` for a protocol v2 initiator
    /// (relay protocol 4): a v2 bundle with one of its owner's one-time
    /// KEM prekeys (consumed, as the one-time prekey is) or its last-resort
    /// one, or a v1 bundle if the owner published no KEM prekey. Checked as
    /// [`fetch_bundle`](Self::fetch_bundle) checks, the KEM prekey's
    /// signature included.
    pub async fn fetch_bundle_v2(
        &self,
        address: &MailboxAddress,
    ) -> Result<PreKeyBundle, ClientError> {
        if !self.supports_kem_prekeys() {
            return Err(ClientError::Unsupported {
                request: "FetchBundleV2",
                version: self.protocol_version(),
                needed: KEM_PREKEYS_VERSION,
            });
        }
        let request = Request::FetchBundleV2 { address: *address };
        match self.inner.request(request).await? {
            Response::BundleV2(bundle) => {
                if MailboxAddress::of(&bundle.identity_key) != *address {
                    return Err(ClientError::BundleMismatch);
                }
                bundle.verify().map_err(ClientError::InvalidBundle)?;
                Ok(*bundle)
            }
            _ => Err(unexpected()),
        }
    }

    /// Whether the relay keeps KEM prekeys
    /// ([`fetch_bundle_v2`](Self::fetch_bundle_v2), KEM prekeys in an
    /// upload): it negotiated protocol version 4 or later.
    pub fn supports_kem_prekeys(&self) -> bool {
        self.protocol_version() >= KEM_PREKEYS_VERSION
    }

    /// Queues `payload` for `recipient`. Resending with the same
    /// `message_id` while the first copy is queued stores nothing new.
    ///
    /// `access_key` is the recipient's access key, if the recipient gave
    /// it to us (docs/relay.md §6, "Access"). Without it (or with a wrong
    /// one) the envelope is a first contact: a mailbox that published an
    /// access verifier takes only a few of those, and beyond them the
    /// relay refuses with [`ErrorCode::AccessDenied`] (try again later).
    pub async fn send(
        &self,
        recipient: &MailboxAddress,
        message_id: MessageId,
        access_key: Option<&AccessKey>,
        payload: &[u8],
    ) -> Result<SendReceipt, ClientError> {
        let max = self.max_payload_len();
        if payload.len() > max {
            return Err(ClientError::PayloadTooLarge {
                len: payload.len(),
                max,
            });
        }
        let request = Request::Send {
            recipient: *recipient,
            message_id,
            access_key: access_key.cloned(),
            payload: payload.to_vec(),
        };
        match self.inner.request(request).await? {
            Response::Sent {
                envelope_id,
                duplicate,
            } => Ok(SendReceipt {
                envelope_id,
                duplicate,
            }),
            _ => Err(unexpected()),
        }
    }

    /// Whether the relay takes [`send_multi`](Self::send_multi): it
    /// negotiated protocol version 3 or later. Known from the handshake,
    /// before anything is uploaded.
    pub fn supports_send_multi(&self) -> bool {
        self.protocol_version() >= SEND_MULTI_VERSION
    }

    /// Queues `recipient.header || body` for each of `recipients` with
    /// one request, so the body travels once (docs/relay.md §6,
    /// "Multi-recipient send"). For each recipient the relay does what a
    /// [`send`](Self::send) of that envelope with its message id and
    /// access key would, and answers, in order, what it would have
    /// answered: [`RecipientOutcome::Stored`] (or `Duplicate`, a retry
    /// storing nothing new), or [`RecipientOutcome::Refused`] with the
    /// code `send` would have failed with (e.g.
    /// [`ErrorCode::AccessDenied`], [`ErrorCode::MailboxFull`]), which
    /// concerns that recipient alone. All of it is stored in one
    /// transaction: a resent request after a lost answer stores nothing
    /// twice.
    ///
    /// The request as a whole fails as `send` does (a
    /// [`ClientError::Server`] with `StorageFull` for a full disk,
    /// `SendBudgetExceeded`, a lost connection...), storing nothing, and
    /// with [`ClientError::Unsupported`] without a byte sent when the
    /// relay predates it ([`supports_send_multi`](Self::supports_send_multi)):
    /// then send to each recipient alone. Refused before sending: more
    /// than [`MAX_MULTI_RECIPIENTS`] recipients
    /// ([`ClientError::TooManyRecipients`]), a frame over the relay's
    /// limit ([`ClientError::RequestTooLarge`]; see
    /// [`send_multi_frame_len`]), and an envelope `header || body` longer
    /// than [`max_payload_len`](Self::max_payload_len) or a header over
    /// 65 535 bytes ([`ClientError::PayloadTooLarge`]). No recipients: an
    /// empty answer, without a request.
    pub async fn send_multi(
        &self,
        body: &[u8],
        recipients: &[MultiRecipient],
    ) -> Result<Vec<RecipientOutcome>, ClientError> {
        if recipients.is_empty() {
            return Ok(Vec::new());
        }
        let unsupported = || ClientError::Unsupported {
            request: "SendMulti",
            version: self.protocol_version(),
            needed: SEND_MULTI_VERSION,
        };
        if !self.supports_send_multi() {
            return Err(unsupported());
        }
        if recipients.len() > MAX_MULTI_RECIPIENTS {
            return Err(ClientError::TooManyRecipients {
                count: recipients.len(),
                max: MAX_MULTI_RECIPIENTS,
            });
        }
        let max = self.max_payload_len();
        for recipient in recipients {
            let header = recipient.header.len();
            if header > usize::from(u16::MAX) {
                return Err(ClientError::PayloadTooLarge {
                    len: header,
                    max: usize::from(u16::MAX),
                });
            }
            if header + body.len() > max {
                return Err(ClientError::PayloadTooLarge {
                    len: header + body.len(),
                    max,
                });
            }
        }
        let len = send_multi_frame_len(body.len(), recipients);
        let max_frame = self.inner.welcome.max_frame_size as usize;
        if len > max_frame {
            return Err(ClientError::RequestTooLarge {
                len,
                max: max_frame,
            });
        }
        let request = Request::SendMulti {
            recipients: recipients.to_vec(),
            body: body.to_vec(),
        };
        match self.inner.request(request).await {
            Ok(Response::SentMulti(outcomes)) => {
                if outcomes.len() != recipients.len() {
                    return Err(ProtocolViolation::OutcomeCount {
                        sent: recipients.len(),
                        answered: outcomes.len(),
                    }
                    .into());
                }
                Ok(outcomes)
            }
            Ok(_) => Err(unexpected()),
            // A relay that negotiated the version and still does not know
            // the request: the same fallback.
            Err(ClientError::Server {
                code: ErrorCode::UnknownRequest,
                ..
            }) => Err(unsupported()),
            Err(e) => Err(e),
        }
    }

    /// One page of queued envelopes with id greater than `after`, oldest
    /// first (`max_count` 0: the relay's page size).
    pub async fn fetch(&self, after: u64, max_count: u16) -> Result<FetchedPage, ClientError> {
        match self
            .inner
            .request(Request::Fetch { after, max_count })
            .await?
        {
            Response::Envelopes { envelopes, more } => {
                let increasing = envelopes
                    .iter()
                    .try_fold(after, |prev, e| (e.id > prev).then_some(e.id))
                    .is_some();
                if !increasing {
                    return Err(ProtocolViolation::EnvelopesOutOfOrder.into());
                }
                Ok(FetchedPage { envelopes, more })
            }
            _ => Err(unexpected()),
        }
    }

    /// Every queued envelope of the authenticated mailbox, oldest first
    /// (pages through [`fetch`](Self::fetch)); at most 100 000 per call, so a
    /// misbehaving relay cannot make it loop forever.
    pub async fn fetch_pending(&self) -> Result<Vec<Envelope>, ClientError> {
        let mut all = Vec::new();
        let mut after = 0;
        while all.len() < FETCH_PENDING_LIMIT {
            let page = self.fetch(after, 0).await?;
            let Some(last) = page.envelopes.last() else {
                return Ok(all);
            };
            after = last.id;
            all.extend(page.envelopes);
            if !page.more {
                return Ok(all);
            }
        }
        Ok(all)
    }

    /// Deletes delivered envelopes from the relay; returns how many were
    /// deleted (ids not queued are ignored).
    pub async fn ack(&self, ids: &[u64]) -> Result<u32, ClientError> {
        // `type || id || count` then 8 bytes per id, within the frame limit.
        let per_frame = (self.inner.welcome.max_frame_size as usize)
            .saturating_sub(7)
            .div_euclid(8)
            .clamp(1, usize::from(u16::MAX));
        let mut removed = 0u32;
        for chunk in ids.chunks(per_frame) {
            match self
                .inner
                .request(Request::Ack {
                    ids: chunk.to_vec(),
                })
                .await?
            {
                Response::Acked { removed: n } => removed = removed.saturating_add(n),
                _ => return Err(unexpected()),
            }
        }
        Ok(removed)
    }

    /// The authenticated mailbox's one-time prekey stock.
    pub async fn prekey_count(&self) -> Result<PreKeyStock, ClientError> {
        match self.inner.request(Request::PreKeyCount).await? {
            Response::PreKeyCount(stock) => Ok(stock),
            _ => Err(unexpected()),
        }
    }

    /// Publishes the signed device list of this connection's own account
    /// (docs/protocol.md, section 12); the relay keeps it if its
    /// version is higher than the stored one (`StaleDeviceList`
    /// otherwise). Returns the stored version.
    pub async fn publish_device_list(&self, list: &[u8]) -> Result<u64, ClientError> {
        match self
            .inner
            .request(Request::PublishDeviceList {
                list: list.to_vec(),
            })
            .await?
        {
            Response::DeviceListPublished { version } => Ok(version),
            _ => Err(unexpected()),
        }
    }

    /// The device list published for `address`, or `None` if there is
    /// none. Unverified: check its signature against the account key.
    pub async fn fetch_device_list(
        &self,
        address: &MailboxAddress,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        match self
            .inner
            .request(Request::FetchDeviceList { address: *address })
            .await
        {
            Ok(Response::DeviceList(list)) => Ok(Some(list)),
            Ok(_) => Err(unexpected()),
            Err(ClientError::Server {
                code: ErrorCode::NotFound,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A round trip to the relay.
    pub async fn ping(&self) -> Result<(), ClientError> {
        match self.inner.request(Request::Ping).await? {
            Response::Pong => Ok(()),
            _ => Err(unexpected()),
        }
    }

    /// Closes the connection cleanly: frames already handed over are
    /// written, then the stream is shut down.
    pub async fn close(mut self) {
        if self.inner.outgoing.send(Outgoing::Close).await.is_ok()
            && let Some(writer) = self.writer.take()
        {
            let _ = tokio::time::timeout(self.inner.request_timeout, writer).await;
        }
    }
}

impl Drop for RelayClient {
    fn drop(&mut self) {
        self.reader.abort();
        for task in [&self.writer, &self.keepalive].into_iter().flatten() {
            task.abort();
        }
    }
}

fn unexpected() -> ClientError {
    ProtocolViolation::UnexpectedResponse.into()
}

/// The error for the relay's refusal `e`.
fn refused(e: ErrorFrame) -> ClientError {
    if e.code == ErrorCode::UnsupportedVersion {
        return ClientError::UnsupportedVersion {
            offered: SUPPORTED_VERSIONS.to_vec(),
            supported: relay_versions(&e.message),
            message: e.message,
        };
    }
    ClientError::Server {
        code: e.code,
        message: e.message,
    }
}

impl Inner {
    async fn request(&self, request: Request) -> Result<Response, ClientError> {
        let mut id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if id == 0 {
            // Id 0 is for pushes and connection-level errors.
            id = self.next_id.fetch_add(1, Ordering::Relaxed);
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if pending.closed {
                return Err(ClientError::Closed);
            }
            pending.waiting.insert(id, tx);
        }
        let body = request.encode(id);
        let outcome = tokio::time::timeout(self.request_timeout, async {
            self.outgoing
                .send(Outgoing::Frame(body))
                .await
                .map_err(|_| ClientError::Closed)?;
            rx.await.map_err(|_| ClientError::Closed)
        })
        .await;
        let response = match outcome {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                lock(&self.pending).waiting.remove(&id);
                return Err(e);
            }
            Err(_) => {
                lock(&self.pending).waiting.remove(&id);
                return Err(ClientError::Timeout(self.request_timeout));
            }
        };
        match response {
            Response::Error(e) => Err(refused(e)),
            other => Ok(other),
        }
    }
}

async fn read_loop(
    mut reader: ReadHalf<impl AsyncRead>,
    max: u32,
    inner: Arc<Inner>,
    events: mpsc::Sender<RelayEvent>,
) {
    let mut reason = None;
    loop {
        let body = match read_frame(&mut reader, max).await {
            Ok(Some(body)) => body,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "relay connection failed");
                break;
            }
        };
        let frame = match ServerFrame::decode(&body) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(error = %e, "malformed frame from relay; closing");
                break;
            }
        };
        match frame {
            ServerFrame::Response {
                request_id: 0,
                response: Response::Error(e),
            } => {
                // About the connection as a whole: it is about to close.
                reason = Some(e);
            }
            ServerFrame::Response {
                request_id,
                response,
            } => {
                if let Some(waiter) = lock(&inner.pending).waiting.remove(&request_id) {
                    let _ = waiter.send(response);
                }
            }
            ServerFrame::Push(Push::Envelope(envelope)) => {
                // If the application lags, the envelope stays on the relay.
                let _ = events.try_send(RelayEvent::Envelope(envelope));
            }
            ServerFrame::Push(Push::PreKeysLow(stock)) => {
                let _ = events.try_send(RelayEvent::PreKeysLow(stock));
            }
        }
    }
    inner.closed.store(true, Ordering::Release);
    {
        let mut pending = lock(&inner.pending);
        pending.closed = true;
        pending.waiting.clear();
    }
    let _ = events.try_send(RelayEvent::Closed { reason });
}

async fn write_loop(mut writer: Writer, mut outgoing: mpsc::Receiver<Outgoing>, inner: Arc<Inner>) {
    while let Some(message) = outgoing.recv().await {
        match message {
            Outgoing::Frame(body) => {
                if let Err(e) = write_frame(&mut writer, &body).await {
                    tracing::debug!(error = %e, "writing to the relay failed");
                    break;
                }
            }
            Outgoing::Close => {
                let _ = writer.shutdown().await;
                break;
            }
        }
    }
    // Nothing more can be sent: fail what is waiting and what comes.
    inner.closed.store(true, Ordering::Release);
    let mut pending = lock(&inner.pending);
    pending.closed = true;
    pending.waiting.clear();
}

async fn keepalive(inner: Weak<Inner>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.request(Request::Ping).await.is_err() {
            return;
        }
    }
}
