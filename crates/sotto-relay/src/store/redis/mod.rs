//! Redis backend: mailboxes in a Redis (or Valkey) server that several
//! relay processes share (docs/relay.md §9, "Redis").
//!
//! Every trait method is one Lua script ([`scripts`]) or one read command,
//! so it is one atomic step on the server, whichever relay process calls
//! it. Keys are named `<prefix>:{<mailbox hex>}:<name>` for what belongs
//! to one mailbox (the hash tag puts all of them in one Cluster slot) and
//! `<prefix>:{global}:<name>` for what the whole store shares:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{m}:queue` | sorted set | the mailbox's envelope ids, as 20 digits (all scores 0: ordered by id) |
//! | `{m}:env:<id>` | hash | one envelope: `mid` (message id), `p` (the envelope, or a `SendMulti` recipient's header), `exp` (expiry hour), `len` (its full length), `body` (a shared body's id, if any) |
//! | `{m}:msgids` | hash | message id -> envelope id (dedupe) |
//! | `{m}:bytes` | string | the full lengths of the queued envelopes (`MailboxUsage::bytes`) |
//! | `{m}:spk` | hash | `identity`, `id`, `public`, `signature` of the signed prekey (present: registered), `verifier`, `v2only` (`1`: signed for protocol v2 only) |
//! | `{m}:opk` | sorted set | one-time prekey ids, scored by upload order |
//! | `{m}:opk:keys` | hash | one-time prekey id -> public key |
//! | `{m}:opk:seq` | string | the upload order counter |
//! | `{m}:kem:last` | hash | `id`, `key` (1184 bytes), `signature` of the last-resort KEM prekey |
//! | `{m}:kem` | sorted set | one-time KEM prekey ids, scored by upload order |
//! | `{m}:kem:keys` | hash | one-time KEM prekey id -> key (1184 bytes) followed by its signature (64) |
//! | `{m}:kem:seq` | string | the KEM upload order counter |
//! | `{m}:changed` | pub/sub channel | `e` when an envelope is stored, `p<n>` when a one-time prekey is handed out leaving `n` (live push across relays, [`feed`]) |
//! | `{m}:devices` | hash | the account's device list: `version` (20 digits), `list` |
//! | `{m}:listed` | set | mailboxes of the devices that list names |
//! | `{m}:listed_by` | set | accounts whose stored list names this mailbox |
//! | `{global}:next_id` | string | the last envelope id given out |
//! | `{global}:totals` | hash | `envelopes`, `bytes` (`StoreTotals`) |
//! | `{global}:expiry` | sorted set | `<id>:<m>` of every queued envelope, scored by expiry hour |
//! | `{global}:next_body`, `{global}:body:<n>` | string, hash | shared bodies of `SendMulti`s: `data`, `holders` |
//!
//! On a Redis Cluster ([`cluster`]) every script touches the keys of one
//! slot: an operation that needs a mailbox and the store-wide keys is a
//! step on each, in an order that keeps every limit, and a reconcile
//! finishes what a relay that stopped between two steps left
//! (docs/relay.md §9, "Redis Cluster").

mod cluster;
mod feed;
mod scripts;

pub(crate) use self::feed::{Change, Feed, FeedListener, FeedSource};

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{Connection, ConnectionLike, RedisError, Value};
use sotto_core::{
    IdentityKey, KEM_PUBLIC_LEN, KemPreKeyId, KemPublic, OneTimePreKeyId, PreKeyBundle,
    PreKeyPublic, Signature, SignedKemPreKey, SignedPreKeyId,
};

use self::scripts::Scripts;
use super::unlinking::NewDeviceList;
use super::{
    Access, Enqueued, FetchedPage, MailboxStore, MailboxUsage, PreKeyCounts, PreKeyLimits,
    QueuePolicy, StoreError, StoreTotals, Swept, TakenBundle, TakenBundleV2, bundle_versions,
};
use crate::address::MailboxAddress;
use crate::clock::UnixTime;
use crate::envelope::{Envelope, MessageId};
use crate::protocol::{MultiRecipient, PreKeyUpload};

/// How [`RedisStore::open_with`] connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// What every key of this store starts with (default `sotto`): relays
    /// that share a store use the same prefix; different prefixes are
    /// different stores on one server. Letters, digits, `-`, `_`, `.` and
    /// `:` only.
    pub key_prefix: String,
    /// How long connecting, and waiting for one answer, may take before
    /// the operation fails (default 10 s, as SQLite's busy timeout).
    pub timeout: Duration,
    /// Connections kept open between operations (default 16); more are
    /// opened while more operations run at once.
    pub idle_connections: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            key_prefix: "sotto".to_owned(),
            timeout: Duration::from_secs(10),
            idle_connections: 16,
        }
    }
}

/// What the server promises about a write it has acknowledged, from its
/// `appendonly` and `appendfsync` settings (docs/relay.md §9, "Redis").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// `appendonly yes`, `appendfsync always`: every write is in the
    /// append-only file and fsynced before the server answers it, so an
    /// envelope is durable before the relay answers `Sent`.
    Always,
    /// `appendonly yes`, `appendfsync everysec`: written to the file
    /// before the answer, fsynced about once a second. A crash of the
    /// Redis process loses nothing; a power loss or kernel crash loses
    /// about the last second of acknowledged writes.
    EverySecond,
    /// `appendonly yes`, `appendfsync no`: the operating system decides
    /// when the file reaches the disk (typically within 30 s).
    OsDecides,
    /// `appendonly no`: at most periodic snapshots; a restart of the
    /// server loses what came after the last one.
    NoAppendOnlyFile,
    /// The settings could not be read (`CONFIG GET` refused, as on many
    /// managed services): ask the provider.
    Unknown,
}

impl Durability {
    /// The promise of these `appendonly` and `appendfsync` values.
    pub fn from_config(appendonly: Option<&str>, appendfsync: Option<&str>) -> Self {
        match (appendonly, appendfsync) {
            (Some(a), _) if a.eq_ignore_ascii_case("no") => Self::NoAppendOnlyFile,
            (Some(a), Some(f)) if a.eq_ignore_ascii_case("yes") => {
                match f.to_ascii_lowercase().as_str() {
                    "always" => Self::Always,
                    "everysec" => Self::EverySecond,
                    "no" => Self::OsDecides,
                    _ => Self::Unknown,
                }
            }
            _ => Self::Unknown,
        }
    }
}

/// A [`MailboxStore`] in a Redis (7.0 or later) or Valkey server, or a
/// Redis Cluster.
///
/// Any number of relay processes may share one store (one server or
/// cluster and key prefix). On one server every method is one atomic step;
/// on a Cluster every step touches one slot, and the steps of an operation
/// that spans slots keep every limit (docs/relay.md §9, "Redis Cluster").
/// Envelope ids come from one counter of the store, so they increase
/// across all its mailboxes. How durable an acknowledged envelope is
/// depends on the servers' settings ([`Durability`]), which
/// [`open`](Self::open) reads and logs.
pub struct RedisStore {
    connector: Connector,
    /// What live push subscribes through: the server, or the cluster's
    /// nodes (any one will do: plain `PUBLISH` reaches every node).
    feed_nodes: Vec<redis::Client>,
    prefix: String,
    options: RedisOptions,
    idle: Mutex<Vec<Conn>>,
    scripts: Scripts,
    durability: Durability,
    /// The Cluster layout's state; `None` on one server.
    cluster: Option<cluster::ClusterState>,
}

/// How the store opens connections.
enum Connector {
    Server(redis::Client),
    Cluster(ClusterClient),
}

/// One pooled connection: to the server, or to the cluster (one
/// connection per node, commands routed by slot).
enum Conn {
    Server(Connection),
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    fn as_dyn(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Self::Server(conn) => conn,
            Self::Cluster(conn) => conn.as_mut(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Self::Server(conn) => conn.is_open(),
            Self::Cluster(conn) => conn.is_open(),
        }
    }
}

impl core::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Not the URL: it may hold a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("durability", &self.durability)
            .field("cluster", &self.cluster.is_some())
            .finish_non_exhaustive()
    }
}

/// Most times `publish_device_list` reads the stored list again because
/// another process replaced it between its read and its write.
const DEVICE_LIST_RETRIES: usize = 16;

/// The oldest server whose scripts may carry flags (`#!lua flags=...`).
const MIN_REDIS_MAJOR: u32 = 7;

fn backend(message: String) -> StoreError {
    StoreError::Backend(message.into())
}

fn store_error(e: RedisError) -> StoreError {
    match e.code() {
        // Over `maxmemory` (with `noeviction`): refused before anything
        // was written, as a full disk is for SQLite.
        Some("OOM") => StoreError::DiskFull,
        Some("CORRUPT") => StoreError::Corrupt("an envelope's shared body is missing"),
        _ => StoreError::Backend(Box::new(e)),
    }
}

fn unexpected() -> StoreError {
    StoreError::Corrupt("unexpected reply from a Redis script")
}

/// The bytes of a string reply.
fn text(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// A non-negative integer reply, or a string of decimal digits (ids are
/// 20 digits).
fn number(v: &Value) -> Result<u64, StoreError> {
    match v {
        Value::Int(n) => u64::try_from(*n).map_err(|_| StoreError::Corrupt("negative counter")),
        v => core::str::from_utf8(text(v).ok_or_else(unexpected)?)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(unexpected),
    }
}

/// A counter that inconsistent state might have taken below zero, read as
/// zero.
fn counter(v: &Value) -> Result<u64, StoreError> {
    match v {
        Value::Int(n) => Ok(u64::try_from(*n).unwrap_or(0)),
        Value::Nil => Ok(0),
        v => {
            let s =
                core::str::from_utf8(text(v).ok_or_else(unexpected)?).map_err(|_| unexpected())?;
            match s.parse::<i64>() {
                Ok(n) => Ok(u64::try_from(n).unwrap_or(0)),
                Err(_) => Err(unexpected()),
            }
        }
    }
}

fn array(v: Value) -> Result<Vec<Value>, StoreError> {
    match v {
        Value::Array(items) => Ok(items),
        _ => Err(unexpected()),
    }
}

/// The v1 bundle of a `take_bundle` script's answer: identity key, signed
/// prekey id, key and signature, one-time prekey id (`''` for none) and
/// key.
fn bundle_of(
    [identity, spk_id, spk, signature, opk_id, opk]: [&Value; 6],
) -> Result<PreKeyBundle, StoreError> {
    let identity_key = IdentityKey::from_bytes(&fixed(identity, "identity key")?)
        .map_err(|_| StoreError::Corrupt("identity key"))?;
    let spk_id =
        u32::try_from(number(spk_id)?).map_err(|_| StoreError::Corrupt("signed prekey id"))?;
    let one_time = match text(opk_id) {
        Some(b"") => None,
        _ => {
            let id = u32::try_from(number(opk_id)?)
                .map_err(|_| StoreError::Corrupt("one-time prekey id"))?;
            let key = PreKeyPublic::from_bytes(fixed(opk, "one-time prekey")?);
            Some((OneTimePreKeyId::new(id), key))
        }
    };
    Ok(PreKeyBundle::from_parts(
        identity_key,
        SignedPreKeyId::new(spk_id),
        PreKeyPublic::from_bytes(fixed(spk, "signed prekey")?),
        Signature::from_bytes(fixed(signature, "signed prekey signature")?),
        one_time,
    ))
}

/// A KEM count as the scripts answer it: `''` for none (no last-resort KEM
/// prekey), else a number.
fn kem_count(v: &Value) -> Result<Option<u32>, StoreError> {
    if text(v) == Some(b"") {
        return Ok(None);
    }
    u32::try_from(number(v)?)
        .map(Some)
        .map_err(|_| StoreError::Corrupt("KEM prekey count"))
}

/// A KEM prekey from its id and its key followed by its signature.
fn kem_prekey(id: &Value, key_and_signature: &Value) -> Result<SignedKemPreKey, StoreError> {
    let id = u32::try_from(number(id)?).map_err(|_| StoreError::Corrupt("KEM prekey id"))?;
    let bytes = text(key_and_signature).ok_or(StoreError::Corrupt("KEM prekey"))?;
    if bytes.len() != KEM_PUBLIC_LEN + 64 {
        return Err(StoreError::Corrupt("KEM prekey"));
    }
    let (key, signature) = bytes.split_at(KEM_PUBLIC_LEN);
    Ok(SignedKemPreKey {
        id: KemPreKeyId::new(id),
        key: KemPublic::from_bytes(key).map_err(|_| StoreError::Corrupt("KEM prekey"))?,
        signature: Signature::from_bytes(
            signature
                .try_into()
                .map_err(|_| StoreError::Corrupt("KEM prekey signature"))?,
        ),
    })
}

fn fixed<const N: usize>(v: &Value, what: &'static str) -> Result<[u8; N], StoreError> {
    text(v)
        .and_then(|b| b.try_into().ok())
        .ok_or(StoreError::Corrupt(what))
}

/// An envelope id as the scripts keep it: 20 digits, so that the order of
/// the strings is the order of the numbers.
fn padded(id: u64) -> String {
    format!("{id:020}")
}

/// Whether a recipient without access was admitted by the relay's
/// first-contact allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Not asked yet: the script asks for it if needed.
    NotAsked,
    Admitted,
    Refused,
}

impl Decision {
    fn arg(self) -> &'static str {
        match self {
            Self::NotAsked => "",
            Self::Admitted => "y",
            Self::Refused => "n",
        }
    }
}

/// One envelope for the enqueue script.
struct NewEnvelope<'a> {
    mailbox: String,
    message_id: &'a MessageId,
    /// The whole envelope, or a `SendMulti` recipient's header.
    payload: &'a [u8],
    /// The verifier of the access key the sender presented.
    verifier: Option<[u8; 32]>,
    decision: Decision,
}

/// What the enqueue script answered.
enum EnqueueReply {
    /// Recipients (indices) without access that need a first-contact
    /// decision; nothing was written.
    Ask(Vec<usize>),
    Done(Vec<Result<Enqueued, StoreError>>),
}

impl RedisStore {
    /// Connects to the server or cluster at `url` with the default
    /// options: `redis://[user:password@]host:port[/db]`,
    /// `rediss://…` (TLS), `redis+unix:///path/to/socket`, or a Redis
    /// Cluster, as `redis+cluster://[user:password@]host:port,host:port,…`
    /// (`rediss+cluster://` with TLS), as node URLs separated by commas,
    /// or as the URL of any one node (a server that reports
    /// `cluster_enabled:1` is opened as its cluster).
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, &RedisOptions::default())
    }

    /// Connects to the server or cluster at `url` ([`open`](Self::open))
    /// with `options`, checks that it is Redis 7 or later (or Valkey), and
    /// logs whether it is a cluster and how durable it makes acknowledged
    /// writes ([`durability`](Self::durability)): at `info` if every write
    /// is fsynced before it is answered, at `warn` otherwise, and at
    /// `warn` if the server may evict keys when its memory is full. On a
    /// cluster every master is asked, the weakest setting counts, and the
    /// reconcile runs before the store is returned
    /// ([`reconcile`](Self::reconcile)).
    pub fn open_with(url: &str, options: &RedisOptions) -> Result<Self, StoreError> {
        let prefix = &options.key_prefix;
        if !super::is_valid_key_prefix(prefix) {
            return Err(backend(format!(
                "invalid Redis key prefix {prefix:?}: letters, digits, '-', '_', '.' and ':' only"
            )));
        }
        let nodes = match cluster::node_urls(url)? {
            Some(nodes) => nodes,
            None => {
                let client = redis::Client::open(url).map_err(store_error)?;
                let mut conn = connect_server(&client, options.timeout)?;
                if !check_server(&mut conn).map_err(store_error)? {
                    let mut store = Self::new(Connector::Server(client.clone()), options);
                    store.feed_nodes = vec![client];
                    store.durability = check_durability(&mut conn);
                    store.idle()?.push(Conn::Server(conn));
                    return Ok(store);
                }
                vec![url.to_owned()]
            }
        };
        cluster::open(nodes, options)
    }

    fn new(connector: Connector, options: &RedisOptions) -> Self {
        Self {
            connector,
            feed_nodes: Vec::new(),
            prefix: options.key_prefix.clone(),
            options: options.clone(),
            idle: Mutex::new(Vec::new()),
            scripts: Scripts::new(),
            durability: Durability::Unknown,
            cluster: None,
        }
    }

    /// What the server promised about acknowledged writes when the store
    /// was opened (on a cluster, the weakest of its masters).
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Whether the store is on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// The key `name` of the mailbox `address`.
    fn mailbox_key(&self, address: &MailboxAddress, name: &str) -> String {
        format!("{}:{{{}}}:{name}", self.prefix, address.to_hex())
    }

    /// The store-wide key `name`.
    fn global_key(&self, name: &str) -> String {
        format!("{}:{{global}}:{name}", self.prefix)
    }

    fn idle(&self) -> Result<MutexGuard<'_, Vec<Conn>>, StoreError> {
        self.idle
            .lock()
            .map_err(|_| StoreError::Backend("redis store lock poisoned".into()))
    }

    fn connect(&self) -> Result<Conn, StoreError> {
        let timeout = self.options.timeout;
        match &self.connector {
            Connector::Server(client) => connect_server(client, timeout).map(Conn::Server),
            Connector::Cluster(client) => {
                let conn = client.get_connection().map_err(store_error)?;
                conn.set_read_timeout(Some(timeout)).map_err(store_error)?;
                conn.set_write_timeout(Some(timeout)).map_err(store_error)?;
                Ok(Conn::Cluster(Box::new(conn)))
            }
        }
    }

    /// Runs `f` on an idle connection, or a new one. The connection is
    /// kept for the next operation unless `f` failed other than by an
    /// error reply of the server (after a timeout or an I/O error its
    /// state is unknown).
    fn with_pooled<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle()?.pop();
        let mut conn = match pooled {
            Some(conn) if conn.is_open() => conn,
            _ => self.connect()?,
        };
        let result = f(&mut conn);
        let reusable = match &result {
            Ok(_) => true,
            Err(e) => matches!(
                e.kind(),
                redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
            ),
        };
        if reusable {
            let mut idle = self.idle()?;
            if idle.len() < self.options.idle_connections {
                idle.push(conn);
            }
        }
        result.map_err(store_error)
    }

    /// [`with_pooled`](Self::with_pooled) for a command that any
    /// connection runs (routed by its first key on a cluster).
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut dyn ConnectionLike) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        self.with_pooled(|conn| f(conn.as_dyn()))
    }

    /// Runs the enqueue script once.
    fn run_enqueue(
        &self,
        envelopes: &[NewEnvelope<'_>],
        body: &[u8],
        policy: &QueuePolicy,
        now: UnixTime,
    ) -> Result<EnqueueReply, StoreError> {
        let mut call = self.scripts.enqueue.prepare_invoke();
        for e in envelopes {
            call.key(format!("{}:{{{}}}:queue", self.prefix, e.mailbox));
        }
        call.key(self.global_key("totals"))
            .arg(&self.prefix)
            .arg(now.hour())
            .arg(policy.expiry_hour(now))
            .arg(policy.mailbox.max_envelopes)
            .arg(policy.mailbox.max_bytes)
            .arg(policy.max_total_bytes)
            .arg(body)
            .arg(envelopes.len());
        for e in envelopes {
            call.arg(&e.mailbox)
                .arg(&e.message_id.0[..])
                .arg(e.payload)
                .arg(e.verifier.as_ref().map_or(&[][..], |v| &v[..]))
                .arg(e.decision.arg());
        }
        let reply = array(self.with_conn(|conn| call.invoke::<Value>(conn))?)?;
        if reply.first().and_then(text) == Some(b"ask") {
            let ask = reply[1..]
                .iter()
                .map(|v| number(v).map(|i| i as usize))
                .collect::<Result<_, _>>()?;
            return Ok(EnqueueReply::Ask(ask));
        }
        if reply.len() != envelopes.len() {
            return Err(unexpected());
        }
        let results = reply
            .into_iter()
            .map(|r| enqueue_result(array(r)?, policy))
            .collect::<Result<_, _>>()?;
        Ok(EnqueueReply::Done(results))
    }
}

/// One recipient's answer of the enqueue script: an envelope id, or a
/// refusal (`Ok(Err(_))` in the trait's terms).
fn enqueue_result(
    reply: Vec<Value>,
    policy: &QueuePolicy,
) -> Result<Result<Enqueued, StoreError>, StoreError> {
    let field = |i: usize| reply.get(i).ok_or_else(unexpected);
    let outcome = match text(field(0)?).ok_or_else(unexpected)? {
        b"stored" => Ok(Enqueued {
            id: number(field(1)?)?,
            duplicate: false,
        }),
        b"duplicate" => Ok(Enqueued {
            id: number(field(1)?)?,
            duplicate: true,
        }),
        b"unknown" => Err(StoreError::UnknownRecipient),
        b"denied" => Err(StoreError::AccessDenied),
        b"full" => Err(StoreError::MailboxFull {
            envelopes: counter(field(1)?)?,
            bytes: counter(field(2)?)?,
            max_envelopes: policy.mailbox.max_envelopes,
            max_bytes: policy.mailbox.max_bytes,
        }),
        b"storage" => Err(StoreError::StorageFull {
            queued_bytes: counter(field(1)?)?,
            len: counter(field(2)?)?,
            max_bytes: policy.max_total_bytes,
        }),
        _ => return Err(unexpected()),
    };
    Ok(outcome)
}

/// A connection to one server, with the store's timeouts.
fn connect_server(client: &redis::Client, timeout: Duration) -> Result<Connection, StoreError> {
    let conn = client
        .get_connection_with_timeout(timeout)
        .map_err(store_error)?;
    conn.set_read_timeout(Some(timeout)).map_err(store_error)?;
    conn.set_write_timeout(Some(timeout)).map_err(store_error)?;
    Ok(conn)
}

/// Refuses a server older than Redis 7 (scripts with flags), and tells
/// whether it is a node of a Redis Cluster. A server that refuses `INFO`
/// (some managed ones) is taken as it is, a standalone one, with a
/// warning: an older one then fails at the first script, a Cluster node
/// at the first key of a slot it does not serve.
fn check_server(conn: &mut Connection) -> redis::RedisResult<bool> {
    let info: String = match redis::cmd("INFO").arg("server").query(conn) {
        Ok(info) => info,
        Err(e)
            if matches!(
                e.kind(),
                redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
            ) =>
        {
            tracing::warn!(error = %e, "cannot check the Redis server's version and mode (INFO refused)");
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    let version = info_field(&info, "redis_version").unwrap_or_default();
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < MIN_REDIS_MAJOR {
        return Err(RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "the Redis store needs Redis 7.0 or later, or Valkey",
            format!("the server reports version {version:?}"),
        )));
    }
    // Refused or failed: taken as not a Cluster, as above.
    let cluster: String = redis::cmd("INFO")
        .arg("cluster")
        .query(conn)
        .unwrap_or_default();
    Ok(info_field(&cluster, "cluster_enabled").as_deref() == Some("1"))
}

/// The value of field `name` in an `INFO` answer.
fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
        .map(str::to_owned)
}

/// Reads and logs how durable the server makes acknowledged writes, and
/// warns if it may evict keys when its memory is full.
fn check_durability(conn: &mut Connection) -> Durability {
    let config: redis::RedisResult<HashMap<String, String>> = durability_config().query(conn);
    log_durability(config, None)
}

/// `CONFIG GET` of the settings [`log_durability`] reads.
fn durability_config() -> redis::Cmd {
    let mut cmd = redis::cmd("CONFIG");
    cmd.arg("GET")
        .arg("appendonly")
        .arg("appendfsync")
        .arg("maxmemory-policy");
    cmd
}

/// Logs what the settings `config` (of the cluster node `node`, or of the
/// server) promise, as [`check_durability`] does.
fn log_durability(
    config: redis::RedisResult<HashMap<String, String>>,
    node: Option<&str>,
) -> Durability {
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            tracing::warn!(
                node,
                error = %e,
                "cannot read the Redis server's persistence settings (CONFIG GET refused): \
                 how durable an acknowledged envelope is depends on them; \
                 appendonly yes with appendfsync always makes it durable before the relay answers"
            );
            return Durability::Unknown;
        }
    };
    let get = |name: &str| config.get(name).map(String::as_str);
    let durability = Durability::from_config(get("appendonly"), get("appendfsync"));
    match durability {
        Durability::Always => tracing::info!(
            node,
            "Redis: appendonly yes, appendfsync always: an envelope is fsynced before it is acknowledged"
        ),
        Durability::EverySecond => tracing::warn!(
            node,
            "Redis: appendfsync everysec: a power loss or kernel crash can lose about the last \
             second of acknowledged envelopes (appendfsync always makes each durable before it is acknowledged)"
        ),
        Durability::OsDecides => tracing::warn!(
            node,
            "Redis: appendfsync no: the operating system decides when acknowledged envelopes \
             reach the disk (appendfsync always makes each durable before it is acknowledged)"
        ),
        Durability::NoAppendOnlyFile => tracing::warn!(
            node,
            "Redis: appendonly no: acknowledged envelopes are lost when the server restarts, \
             back to its last snapshot (appendonly yes with appendfsync always makes each durable)"
        ),
        Durability::Unknown => tracing::warn!(
            node,
            appendonly = get("appendonly").unwrap_or("?"),
            appendfsync = get("appendfsync").unwrap_or("?"),
            "Redis: unrecognised persistence settings"
        ),
    }
    if let Some(policy) = get("maxmemory-policy")
        && policy != "noeviction"
    {
        tracing::warn!(
            node,
            policy,
            "Redis: maxmemory-policy is not noeviction: a full server would evict queued \
             envelopes and prekeys instead of refusing new ones"
        );
    }
    durability
}

impl MailboxStore for RedisStore {
    fn publish_prekeys(
        &self,
        owner: &IdentityKey,
        upload: &PreKeyUpload,
        max_one_time: u32,
    ) -> Result<u32, StoreError> {
        super::publish_prekeys_with_default_kem_limit(self, owner, upload, max_one_time)
    }

    fn publish_prekeys_with_kem(
        &self,
        owner: &IdentityKey,
        upload: &PreKeyUpload,
        limits: &PreKeyLimits,
    ) -> Result<PreKeyCounts, StoreError> {
        let flag = |on: bool| if on { "1" } else { "0" };
        let address = MailboxAddress::of(owner);
        let mut call = self.scripts.publish_prekeys.prepare_invoke();
        call.key(self.mailbox_key(&address, "spk"))
            .arg(&self.prefix)
            .arg(address.to_hex())
            .arg(limits.max_one_time)
            .arg(flag(upload.replace_one_time_prekeys));
        match &upload.signed_prekey {
            Some(spk) => call
                .arg("1")
                .arg(&owner.as_bytes()[..])
                .arg(spk.id.get())
                .arg(&spk.public.as_bytes()[..])
                .arg(&spk.signature.as_bytes()[..]),
            None => call.arg("0").arg("").arg("").arg("").arg(""),
        };
        call.arg(
            upload
                .access_verifier
                .as_ref()
                .map_or(&[][..], |v| &v.as_bytes()[..]),
        )
        .arg(flag(upload.signed_prekey_v2_only))
        .arg(limits.max_kem)
        .arg(flag(upload.replace_one_time_kem_prekeys));
        match &upload.last_resort_kem_prekey {
            Some(kem) => call
                .arg("1")
                .arg(kem.id.get())
                .arg(&kem.key.as_bytes()[..])
                .arg(&kem.signature.as_bytes()[..]),
            None => call.arg("0").arg("").arg("").arg(""),
        };
        call.arg(upload.one_time_prekeys.len());
        for key in &upload.one_time_prekeys {
            call.arg(key.id.get()).arg(&key.public.as_bytes()[..]);
        }
        for kem in &upload.one_time_kem_prekeys {
            call.arg(kem.id.get())
                .arg(&kem.key.as_bytes()[..])
                .arg(&kem.signature.as_bytes()[..]);
        }
        let reply = array(self.with_conn(|conn| call.invoke::<Value>(conn))?)?;
        let count = number(reply.get(1).ok_or_else(unexpected)?)?;
        match reply.first().and_then(text) {
            Some(b"ok") => Ok(PreKeyCounts {
                one_time: u32::try_from(count).map_err(|_| StoreError::Corrupt("prekey count"))?,
                kem: kem_count(reply.get(2).ok_or_else(unexpected)?)?,
            }),
            Some(b"too_many") => Err(StoreError::TooManyPreKeys {
                would_have: count,
                max: limits.max_one_time,
            }),
            Some(b"too_many_kem") => Err(StoreError::TooManyKemPreKeys {
                would_have: count,
                max: limits.max_kem,
            }),
            _ => Err(unexpected()),
        }
    }

    fn take_bundle_v2(
        &self,
        address: &MailboxAddress,
    ) -> Result<Option<TakenBundleV2>, StoreError> {
        let mut call = self.scripts.take_bundle_v2.prepare_invoke();
        call.key(self.mailbox_key(address, "spk"))
            .arg(&self.prefix)
            .arg(address.to_hex());
        let reply = match self.with_conn(|conn| call.invoke::<Value>(conn))? {
            Value::Nil => return Ok(None),
            reply => array(reply)?,
        };
        let [
            identity,
            spk_id,
            spk,
            signature,
            opk_id,
            opk,
            remaining,
            v2_only,
            kem_id,
            kem_key,
            kem_remaining,
        ] = &reply[..]
        else {
            return Err(unexpected());
        };
        let bundle = bundle_of([identity, spk_id, spk, signature, opk_id, opk])?;
        let bundle = match text(kem_id) {
            Some(b"") => bundle,
            _ => bundle.with_kem_prekey(
                bundle_versions(text(v2_only) == Some(b"1")),
                kem_prekey(kem_id, kem_key)?,
            ),
        };
        Ok(Some(TakenBundleV2::new(
            bundle,
            u32::try_from(number(remaining)?).map_err(|_| StoreError::Corrupt("prekey count"))?,
            kem_count(kem_remaining)?,
        )))
    }

    fn keeps_kem_prekeys(&self) -> bool {
        true
    }

    fn kem_prekey_count(&self, address: &MailboxAddress) -> Result<Option<u32>, StoreError> {
        if self.cluster.is_some() {
            return self.cluster_kem_prekey_count(address);
        }
        let (last, kem) = (
            self.mailbox_key(address, "kem:last"),
            self.mailbox_key(address, "kem"),
        );
        // One round trip, one atomic step: both keys share the mailbox's
        // slot.
        let (exists, count): (u64, u64) = self.with_conn(|conn| {
            redis::pipe()
                .atomic()
                .cmd("EXISTS")
                .arg(&last)
                .cmd("ZCARD")
                .arg(&kem)
                .query(conn)
        })?;
        if exists == 0 {
            return Ok(None);
        }
        u32::try_from(count)
            .map(Some)
            .map_err(|_| StoreError::Corrupt("KEM prekey count"))
    }

    fn take_bundle(&self, address: &MailboxAddress) -> Result<Option<TakenBundle>, StoreError> {
        let mut call = self.scripts.take_bundle.prepare_invoke();
        call.key(self.mailbox_key(address, "spk"))
            .arg(&self.prefix)
            .arg(address.to_hex());
        let reply = match self.with_conn(|conn| call.invoke::<Value>(conn))? {
            Value::Nil => return Ok(None),
            reply => array(reply)?,
        };
        let [identity, spk_id, spk, signature, opk_id, opk, remaining] = &reply[..] else {
            return Err(unexpected());
        };
        Ok(Some(TakenBundle {
            bundle: bundle_of([identity, spk_id, spk, signature, opk_id, opk])?,
            remaining: u32::try_from(number(remaining)?)
                .map_err(|_| StoreError::Corrupt("prekey count"))?,
        }))
    }

    fn one_time_prekey_count(&self, address: &MailboxAddress) -> Result<u32, StoreError> {
        let key = self.mailbox_key(address, "opk");
        let count: u64 = self.with_conn(|conn| redis::cmd("ZCARD").arg(&key).query(conn))?;
        u32::try_from(count).map_err(|_| StoreError::Corrupt("prekey count"))
    }

    fn enqueue(
        &self,
        recipient: &MailboxAddress,
        message_id: &MessageId,
        payload: &[u8],
        access: Access<'_>,
        policy: &QueuePolicy,
        now: UnixTime,
    ) -> Result<Enqueued, StoreError> {
        let (verifier, decision) = match access {
            Access::Key(key) => (key.map(|k| *k.verifier().as_bytes()), Decision::Refused),
            Access::FirstContact => (None, Decision::Admitted),
        };
        let envelope = NewEnvelope {
            mailbox: recipient.to_hex(),
            message_id,
            payload,
            verifier,
            decision,
        };
        if self.cluster.is_some() {
            let mut results =
                self.cluster_enqueue(&[envelope], &[], &mut |_| false, policy, now)?;
            return match results.pop() {
                Some(result) if results.is_empty() => result,
                _ => Err(unexpected()),
            };
        }
        match self.run_enqueue(&[envelope], &[], policy, now)? {
            EnqueueReply::Done(mut results) if results.len() == 1 => results.remove(0),
            _ => Err(unexpected()),
        }
    }

    /// One script for every recipient: all of it is one atomic step on
    /// the server, as one SQLite transaction is. The script checks every
    /// recipient's access before it writes anything; if some have none,
    /// it stores nothing and names them, `first_contact` is asked about
    /// each (once, in order) and the script runs again with the answers.
    /// On a Cluster each recipient is a step of its own mailbox's slot
    /// (docs/relay.md §9, "Redis Cluster").
    fn enqueue_many(
        &self,
        recipients: &[MultiRecipient],
        body: &[u8],
        first_contact: &mut dyn FnMut(usize) -> bool,
        policy: &QueuePolicy,
        now: UnixTime,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        if recipients.is_empty() {
            return Ok(Vec::new());
        }
        let mut envelopes: Vec<NewEnvelope<'_>> = recipients
            .iter()
            .map(|r| NewEnvelope {
                mailbox: r.address.to_hex(),
                message_id: &r.message_id,
                payload: &r.header,
                verifier: r.access_key.as_ref().map(|k| *k.verifier().as_bytes()),
                decision: Decision::NotAsked,
            })
            .collect();
        if self.cluster.is_some() {
            return self.cluster_enqueue(&envelopes, body, first_contact, policy, now);
        }
        // Each round asks about at least one more recipient, or ends.
        for _ in 0..=recipients.len() {
            match self.run_enqueue(&envelopes, body, policy, now)? {
                EnqueueReply::Done(results) => return Ok(results),
                EnqueueReply::Ask(ask) => {
                    let mut asked = false;
                    for i in ask {
                        let e = envelopes.get_mut(i).ok_or_else(unexpected)?;
                        if e.decision == Decision::NotAsked {
                            e.decision = if first_contact(i) {
                                Decision::Admitted
                            } else {
                                Decision::Refused
                            };
                            asked = true;
                        }
                    }
                    if !asked {
                        return Err(unexpected());
                    }
                }
            }
        }
        Err(unexpected())
    }

    fn fetch(
        &self,
        address: &MailboxAddress,
        after: u64,
        max_count: usize,
        max_bytes: usize,
        now: UnixTime,
    ) -> Result<FetchedPage, StoreError> {
        let mut call = self.scripts.fetch.prepare_invoke();
        call.key(self.mailbox_key(address, "queue"))
            .arg(&self.prefix)
            .arg(address.to_hex())
            .arg(padded(after))
            .arg(max_count as u64)
            .arg(max_bytes as u64)
            .arg(now.hour());
        let reply = array(self.with_conn(|conn| call.invoke::<Value>(conn))?)?;
        let [more, entries] = <[Value; 2]>::try_from(reply).map_err(|_| unexpected())?;
        let entries = array(entries)?;
        let mut page = FetchedPage {
            envelopes: Vec::with_capacity(entries.len() / 2),
            more: number(&more)? != 0,
        };
        let mut entries = entries.into_iter();
        while let (Some(id), Some(payload)) = (entries.next(), entries.next()) {
            let Value::BulkString(payload) = payload else {
                return Err(unexpected());
            };
            page.envelopes.push(Envelope {
                id: number(&id)?,
                payload,
            });
        }
        Ok(page)
    }

    fn sweep_expired(&self, now: UnixTime, max_count: usize) -> Result<Swept, StoreError> {
        if max_count == 0 {
            return Ok(Swept::default());
        }
        if self.cluster.is_some() {
            return self.cluster_sweep(now, max_count);
        }
        let mut call = self.scripts.sweep.prepare_invoke();
        call.key(self.global_key("expiry"))
            .arg(&self.prefix)
            .arg(now.hour())
            .arg(i64::try_from(max_count).unwrap_or(i64::MAX));
        let reply = array(self.with_conn(|conn| call.invoke::<Value>(conn))?)?;
        let [envelopes, bytes] = &reply[..] else {
            return Err(unexpected());
        };
        Ok(Swept {
            envelopes: number(envelopes)?,
            bytes: number(bytes)?,
        })
    }

    fn totals(&self) -> Result<StoreTotals, StoreError> {
        let key = self.global_key("totals");
        let reply: Vec<Value> = self.with_conn(|conn| {
            redis::cmd("HMGET")
                .arg(&key)
                .arg("envelopes")
                .arg("bytes")
                .query(conn)
        })?;
        let [envelopes, bytes] = &reply[..] else {
            return Err(unexpected());
        };
        Ok(StoreTotals {
            envelopes: counter(envelopes)?,
            bytes: counter(bytes)?,
        })
    }

    fn ack(&self, address: &MailboxAddress, ids: &[u64]) -> Result<u32, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        if self.cluster.is_some() {
            return self.cluster_ack(address, ids);
        }
        let mut call = self.scripts.ack.prepare_invoke();
        call.key(self.mailbox_key(address, "queue"))
            .key(self.global_key("totals"))
            .arg(&self.prefix)
            .arg(address.to_hex());
        for id in ids {
            call.arg(padded(*id));
        }
        let removed = number(&self.with_conn(|conn| call.invoke::<Value>(conn))?)?;
        Ok(u32::try_from(removed).unwrap_or(u32::MAX))
    }

    fn usage(&self, address: &MailboxAddress) -> Result<MailboxUsage, StoreError> {
        let mut call = self.scripts.usage.prepare_invoke();
        call.key(self.mailbox_key(address, "queue"))
            .arg(&self.prefix)
            .arg(address.to_hex());
        let reply = array(self.with_conn(|conn| call.invoke::<Value>(conn))?)?;
        let [envelopes, bytes, last] = &reply[..] else {
            return Err(unexpected());
        };
        Ok(MailboxUsage {
            envelopes: number(envelopes)?,
            bytes: counter(bytes)?,
            last_id: match text(last) {
                Some(b"") => 0,
                _ => number(last)?,
            },
        })
    }

    fn publish_device_list(
        &self,
        owner: &MailboxAddress,
        version: u64,
        list: &[u8],
    ) -> Result<(), StoreError> {
        let devices = self.mailbox_key(owner, "devices");
        for _ in 0..DEVICE_LIST_RETRIES {
            // The lists are decoded and compared here, not in the script;
            // the script stores the new one only if the stored one is
            // still the one compared with.
            let (stored_version, stored_list): (Option<String>, Option<Vec<u8>>) =
                self.with_conn(|conn| {
                    redis::cmd("HMGET")
                        .arg(&devices)
                        .arg("version")
                        .arg("list")
                        .query(conn)
                })?;
            let new = NewDeviceList::compare(owner, stored_list.as_deref(), list);
            if self.cluster.is_some() {
                match self.cluster_device_list(owner, version, list, stored_version, &new)? {
                    Some(outcome) => return outcome,
                    None => continue,
                }
            }
            let mut call = self.scripts.publish_device_list.prepare_invoke();
            call.key(&devices);
            for device in new.listed.iter().chain(&new.unlinked) {
                call.key(self.mailbox_key(device, "listed_by"));
            }
            call.arg(&self.prefix)
                .arg(owner.to_hex())
                .arg(padded(version))
                .arg(list)
                .arg(stored_version.as_deref().unwrap_or(""))
                .arg(new.listed.len());
            for device in new.listed.iter().chain(&new.unlinked) {
                call.arg(device.to_hex());
            }
            let reply = array(self.with_conn(|conn| call.invoke::<Value>(conn))?)?;
            match reply.first().and_then(text) {
                Some(b"ok") => return Ok(()),
                Some(b"stale") => {
                    let stored = number(reply.get(1).ok_or_else(unexpected)?)?;
                    return Err(StoreError::StaleDeviceList { stored });
                }
                Some(b"retry") => continue,
                _ => return Err(unexpected()),
            }
        }
        Err(backend(format!(
            "the device list changed {DEVICE_LIST_RETRIES} times while it was being replaced"
        )))
    }

    fn shares_multi_send_bodies(&self) -> bool {
        self.cluster.is_none()
    }

    fn device_list(&self, address: &MailboxAddress) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.mailbox_key(address, "devices");
        self.with_conn(|conn| redis::cmd("HGET").arg(&key).arg("list").query(conn))
    }

    fn change_feed(&self) -> Option<super::ChangeFeed> {
        Some(super::ChangeFeed(super::FeedKind::Redis(FeedSource {
            clients: self.feed_nodes.clone(),
            prefix: self.prefix.clone(),
            timeout: self.options.timeout,
        })))
    }
}

#[cfg(test)]
mod tests;
