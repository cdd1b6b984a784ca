//! [`RedisStore`] on a Redis Cluster (docs/relay.md §9, "Redis Cluster").
//!
//! A Cluster runs a script only if every key it touches is in one slot.
//! A mailbox's keys share its slot (the hash tag `{<mailbox hex>}`), the
//! store-wide ones the slot of `{global}`; an operation that needs both
//! is a step on each, in an order that keeps every limit:
//!
//! - **Storing** (`enqueue`, each recipient of `enqueue_many`): the
//!   `account` script on `{global}` reserves the envelope's bytes within
//!   `max_total_bytes`, gives out its id and records the reservation in
//!   `pending`; the mailbox's `enqueue` script checks registration,
//!   access, dedupe and the mailbox limits and stores it, or refuses and
//!   gives the reservation back by adding it to the mailbox's `out`
//!   counters; the next `account` step takes off the totals what `out`
//!   gained and forgets the reservation. Every reservation the mailbox
//!   step used or gave back is in the mailbox's `done` set, which fences
//!   off a reconcile that gives one back: exactly one of them counts.
//! - **Freeing** (`ack`, the sweep, an unlinked device's mailbox): the
//!   mailbox step deletes and adds what it freed to `out`; the `account`
//!   step applies the counters. They only grow, and `{global}:seen` holds
//!   what was applied per mailbox, so applying them again, late or out of
//!   order applies nothing twice.
//! - **Expiry**: each mailbox indexes its envelopes by expiry hour
//!   (`{m}:expiry`); the reservation puts the mailbox in the bucket of its
//!   envelope's expiry hour (`{global}:exp:<hour>`, the hours in
//!   `{global}:exp_hours`); the sweep visits the buckets that are due and
//!   sweeps each mailbox in them.
//! - **Device lists**: the account's step stores the list and a record of
//!   what the devices' steps must do (`{account}:propagate`); each device's
//!   step updates who lists it and removes an unlinked, unclaimed mailbox;
//!   the record goes last.
//!
//! A relay that stops between two steps leaves a reservation pending, out
//! counters not applied, or a device list's record: [`RedisStore::reconcile`]
//! finishes each exactly, and runs when a store is opened, at every sweep
//! (pending reservations) and hourly (a scan of every master).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::Value;
use redis::cluster::{ClusterClientBuilder, ClusterConnection};
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};

use super::{
    Conn, Connector, Decision, Durability, NewEnvelope, RedisOptions, RedisStore, array, backend,
    check_server, connect_server, durability_config, kem_count, log_durability, number,
    store_error, text, unexpected,
};
use crate::address::MailboxAddress;
use crate::clock::UnixTime;
use crate::store::unlinking::NewDeviceList;
use crate::store::{Enqueued, QueuePolicy, StoreError, Swept};

/// How old a pending reservation must be before a reconcile gives it back
/// (if its mailbox step did not run): longer than any step takes.
const STALE_AFTER: Duration = Duration::from_secs(60);

/// How often the sweep also scans every master for counters and device
/// lists that a stopped relay left unapplied.
const FULL_RECONCILE_EVERY: Duration = Duration::from_secs(3600);

/// Most used reservations a relay forgets later, with its next `account`
/// step, instead of in a step of their own.
const MAX_DEFERRED: usize = 256;

/// Keys handled per `SCAN`/`SSCAN` round and per `account` step of a
/// reconcile or a sweep.
const BATCH: usize = 256;

/// The Cluster layout's state of one [`RedisStore`].
pub(super) struct ClusterState {
    /// Reservations this process used (envelope stored) and has not told
    /// `{global}` yet: forgotten by its next `account` step.
    used: Mutex<Vec<String>>,
    /// When the last scan of every master ran.
    last_full: Mutex<Option<Instant>>,
    /// How old a pending reservation must be before a reconcile settles it.
    pub(super) stale_after: Duration,
}

impl ClusterState {
    fn new() -> Self {
        Self {
            used: Mutex::new(Vec::new()),
            last_full: Mutex::new(None),
            stale_after: STALE_AFTER,
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::Backend("redis store lock poisoned".into())
}

/// What a mailbox has freed in all: its `out` counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Freed {
    envelopes: u64,
    bytes: u64,
}

impl Freed {
    fn of(envelopes: &Value, bytes: &Value) -> Result<Self, StoreError> {
        Ok(Self {
            envelopes: number(envelopes)?,
            bytes: number(bytes)?,
        })
    }
}

/// The operations of one `account` step (`lua/cluster/account.lua`).
#[derive(Default)]
pub(super) struct Account {
    args: Vec<Vec<u8>>,
    /// Whether it reserves: then it is refused by a full server, as every
    /// writer.
    writes: bool,
}

impl Account {
    fn push(&mut self, fields: &[&[u8]]) {
        self.args.extend(fields.iter().map(|f| f.to_vec()));
    }

    fn reserve(&mut self, mailbox: &str, len: usize, hour: u64, max_total: u64) {
        self.writes = true;
        self.push(&[
            b"R",
            mailbox.as_bytes(),
            len.to_string().as_bytes(),
            hour.to_string().as_bytes(),
            max_total.to_string().as_bytes(),
        ]);
    }

    fn forget(&mut self, id: &str) {
        self.push(&[b"D", id.as_bytes()]);
    }

    fn sync(&mut self, mailbox: &str, freed: Freed) {
        self.push(&[
            b"S",
            mailbox.as_bytes(),
            freed.envelopes.to_string().as_bytes(),
            freed.bytes.to_string().as_bytes(),
        ]);
    }

    fn unbucket(&mut self, mailbox: &str, hour: &str) {
        self.push(&[b"X", mailbox.as_bytes(), hour.as_bytes()]);
    }

    fn is_empty(&self) -> bool {
        self.args.is_empty()
    }
}

/// The node URLs a store URL names for a cluster: `redis+cluster://` (or
/// `rediss+cluster://`) with comma-separated `host:port`s sharing the
/// credentials, or comma-separated `redis://` URLs. `None` for one URL.
pub(super) fn node_urls(url: &str) -> Result<Option<Vec<String>>, StoreError> {
    if let Some((scheme, rest)) = url.split_once("+cluster://") {
        if scheme != "redis" && scheme != "rediss" {
            return Err(backend(
                "a Redis Cluster URL is redis+cluster://host:port,host:port (or rediss+cluster://)"
                    .to_owned(),
            ));
        }
        let end = rest.find('/').unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (auth, hosts) = match authority.rfind('@') {
            Some(at) => authority.split_at(at + 1),
            None => ("", authority),
        };
        let nodes: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{auth}{h}{tail}"))
            .collect();
        if nodes.is_empty() {
            return Err(backend(
                "a Redis Cluster URL names at least one node: redis+cluster://host:port".to_owned(),
            ));
        }
        return Ok(Some(nodes));
    }
    if !url.contains(',') {
        return Ok(None);
    }
    let nodes: Vec<String> = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    if nodes
        .iter()
        .any(|u| !u.starts_with("redis://") && !u.starts_with("rediss://"))
    {
        return Err(backend(
            "a list of Redis Cluster nodes is redis://host:port,redis://host:port".to_owned(),
        ));
    }
    Ok(Some(nodes))
}

/// `url` with its `host:port` replaced by `address` (its scheme,
/// credentials and path kept).
fn with_address(url: &str, address: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let auth = authority
        .rfind('@')
        .map_or("", |at| authority.split_at(at + 1).0);
    Some(format!("{scheme}://{auth}{address}{tail}"))
}

/// How weak a promise is: the weakest of a cluster's masters is the
/// store's.
fn weakness(d: Durability) -> u8 {
    match d {
        Durability::Always => 0,
        Durability::EverySecond => 1,
        Durability::OsDecides => 2,
        Durability::NoAppendOnlyFile => 3,
        Durability::Unknown => 4,
    }
}

/// Opens the store on the cluster whose nodes (some of them) are `nodes`.
pub(super) fn open(nodes: Vec<String>, options: &RedisOptions) -> Result<RedisStore, StoreError> {
    // The first node that answers: Redis 7 or later, and a cluster node.
    let mut failure = None;
    let mut checked = false;
    for url in &nodes {
        let client = redis::Client::open(url.as_str()).map_err(store_error)?;
        match connect_server(&client, options.timeout) {
            Ok(mut conn) => {
                if !check_server(&mut conn).map_err(store_error)? {
                    return Err(backend(
                        "a Redis node named as a cluster node is not one (cluster_enabled is not 1): \
                         name a standalone server by one redis:// URL"
                            .to_owned(),
                    ));
                }
                checked = true;
                break;
            }
            Err(e) => failure = Some(e),
        }
    }
    if !checked {
        return Err(failure.unwrap_or_else(|| backend("no Redis Cluster node named".to_owned())));
    }
    let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
        .connection_timeout(options.timeout)
        .response_timeout(options.timeout)
        .build()
        .map_err(store_error)?;
    let mut store = RedisStore::new(Connector::Cluster(client), options);
    store.cluster = Some(ClusterState::new());
    let mut conn = store.connect()?;
    let Conn::Cluster(cluster) = &mut conn else {
        return Err(unexpected());
    };
    let masters = masters(cluster).map_err(store_error)?;
    store.durability = cluster_durability(cluster);
    tracing::info!(
        masters = masters.len(),
        nodes = %masters.join(","),
        "Redis Cluster: each mailbox's keys in its own slot, the store-wide ones in the {{global}} slot"
    );
    // Live push subscribes through any one node: the masters first, then
    // the nodes named.
    let mut feed = Vec::new();
    for url in masters
        .iter()
        .filter_map(|m| nodes.first().and_then(|first| with_address(first, m)))
        .chain(nodes.iter().cloned())
    {
        if !feed.contains(&url) {
            feed.push(url);
        }
    }
    store.feed_nodes = feed
        .iter()
        .map(|url| redis::Client::open(url.as_str()).map_err(store_error))
        .collect::<Result<_, _>>()?;
    store.idle()?.push(conn);
    // What relays that stopped between two steps left. A failure does not
    // keep the relay from starting: the next sweep runs it again.
    if let Err(e) = store.reconcile_all() {
        tracing::warn!(error = %e, "Redis Cluster: the reconcile at start-up failed; the next sweep runs it again");
    }
    Ok(store)
}

/// The `host:port` of every master.
pub(super) fn masters(conn: &mut ClusterConnection) -> redis::RedisResult<Vec<String>> {
    let answers = conn.route_command(
        &redis::cmd("PING"),
        RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
    )?;
    let Value::Map(answers) = answers else {
        return Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "unexpected answer to a PING of every master",
        )));
    };
    let mut masters: Vec<String> = answers
        .iter()
        .filter_map(|(address, _)| text(address))
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    masters.sort();
    Ok(masters)
}

/// Reads and logs every master's persistence settings; the weakest
/// promise is the store's.
fn cluster_durability(conn: &mut ClusterConnection) -> Durability {
    let answers = conn.route_command(
        &durability_config(),
        RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
    );
    let answers = match answers {
        Ok(Value::Map(answers)) => answers,
        Ok(_) => return log_durability(Err(unexpected_answer()), None),
        Err(e) => return log_durability(Err(e), None),
    };
    let mut weakest = Durability::Always;
    for (address, config) in answers {
        let node = text(&address).map(|a| String::from_utf8_lossy(a).into_owned());
        let config = redis::from_redis_value::<HashMap<String, String>>(config)
            .map_err(|_| unexpected_answer());
        let d = log_durability(config, node.as_deref());
        if weakness(d) > weakness(weakest) {
            weakest = d;
        }
    }
    weakest
}

fn unexpected_answer() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Client, "unexpected answer to CONFIG GET"))
}

/// The `host` and `port` of `host:port`.
pub(super) fn host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

/// The mailbox (64 hex digits) of a key `<prefix>:{<mailbox>}:<name>`.
fn mailbox_of(prefix: &str, key: &str) -> Option<String> {
    let hex = key.strip_prefix(prefix)?.strip_prefix(":{")?;
    let (hex, _) = hex.split_once('}')?;
    MailboxAddress::from_hex(hex).map(|a| a.to_hex())
}

impl RedisStore {
    fn cluster_state(&self) -> Result<&ClusterState, StoreError> {
        self.cluster.as_ref().ok_or_else(unexpected)
    }

    fn used(&self) -> Result<MutexGuard<'_, Vec<String>>, StoreError> {
        self.cluster_state()?.used.lock().map_err(|_| poisoned())
    }

    /// A mailbox key from its hex form.
    fn hex_key(&self, mailbox: &str, name: &str) -> String {
        format!("{}:{{{mailbox}}}:{name}", self.prefix)
    }

    /// Runs one `account` step; answers those of its `R` and `N`
    /// operations.
    fn run_account(&self, ops: &Account) -> Result<Vec<Value>, StoreError> {
        let scripts = &self.scripts.cluster;
        let script = if ops.writes {
            &scripts.account
        } else {
            &scripts.release
        };
        let mut call = script.prepare_invoke();
        call.key(self.global_key("totals")).arg(&self.prefix);
        for arg in &ops.args {
            call.arg(&arg[..]);
        }
        array(self.with_conn(|conn| call.invoke::<Value>(conn))?)
    }

    /// Runs an `account` step that only frees and forgets; a failure is
    /// logged: what it would have applied is applied by the next step that
    /// carries the same mailbox's counters, or by the hourly reconcile.
    fn release_or_log(&self, ops: &Account) {
        if ops.is_empty() {
            return;
        }
        if let Err(e) = self.run_account(ops) {
            tracing::warn!(error = %e, "Redis Cluster: the store-wide totals were not updated; the reconcile will");
        }
    }

    /// `enqueue` and `enqueue_many` on a Cluster: each recipient in order,
    /// a reservation on `{global}` and a step on its mailbox's slot (see
    /// the module docs). A recipient's envelope holds its header followed
    /// by `body`: a copy per recipient, as each lives in its own slot.
    pub(super) fn cluster_enqueue(
        &self,
        envelopes: &[NewEnvelope<'_>],
        body: &[u8],
        first_contact: &mut dyn FnMut(usize) -> bool,
        policy: &QueuePolicy,
        now: UnixTime,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        let mut ops = Account::default();
        for id in self.used()?.drain(..) {
            ops.forget(&id);
        }
        let mut used = Vec::new();
        let mut results = Vec::with_capacity(envelopes.len());
        for (i, e) in envelopes.iter().enumerate() {
            let mut payload = Vec::with_capacity(e.payload.len() + body.len());
            payload.extend_from_slice(e.payload);
            payload.extend_from_slice(body);
            ops.reserve(
                &e.mailbox,
                payload.len(),
                policy.expiry_hour(now),
                policy.max_total_bytes,
            );
            let reply = self.run_account(&ops)?;
            ops = Account::default();
            let reserved = array(reply.into_iter().last().ok_or_else(unexpected)?)?;
            let (id, held) = match reserved.first().and_then(text) {
                Some(b"ok") => (
                    Some(
                        String::from_utf8_lossy(
                            reserved.get(1).and_then(text).ok_or_else(unexpected)?,
                        )
                        .into_owned(),
                    ),
                    0,
                ),
                Some(b"storage") => (None, number(reserved.get(1).ok_or_else(unexpected)?)?),
                _ => return Err(unexpected()),
            };
            let outcome = self.enqueue_in_mailbox(
                e,
                &payload,
                id,
                held,
                &mut || first_contact(i),
                policy,
                now,
            )?;
            match outcome {
                Outcome::Stored(id, enqueued, replaced) => {
                    used.push(id);
                    ops.args.extend(replaced.args);
                    results.push(Ok(enqueued));
                }
                Outcome::Settled(result, settle) => {
                    ops.args.extend(settle.args);
                    results.push(result);
                }
            }
        }
        if ops.is_empty() {
            let mut deferred = self.used()?;
            deferred.extend(used);
            if deferred.len() <= MAX_DEFERRED {
                return Ok(results);
            }
            for id in deferred.drain(..) {
                ops.forget(&id);
            }
        } else {
            for id in &used {
                ops.forget(id);
            }
        }
        self.release_or_log(&ops);
        Ok(results)
    }

    /// The mailbox's step of one recipient, with the reservation `id`
    /// (`None`: the store-wide limit refused it, `held` bytes being held),
    /// asking `first_contact` if the mailbox says so.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn enqueue_in_mailbox(
        &self,
        e: &NewEnvelope<'_>,
        payload: &[u8],
        id: Option<String>,
        held: u64,
        first_contact: &mut dyn FnMut() -> bool,
        policy: &QueuePolicy,
        now: UnixTime,
    ) -> Result<Outcome, StoreError> {
        let mut decision = e.decision;
        loop {
            let mut call = self.scripts.cluster.enqueue.prepare_invoke();
            call.key(self.hex_key(&e.mailbox, "queue"))
                .arg(&self.prefix)
                .arg(&e.mailbox)
                .arg(now.hour())
                .arg(policy.expiry_hour(now))
                .arg(policy.mailbox.max_envelopes)
                .arg(policy.mailbox.max_bytes)
                .arg(&e.message_id.0[..])
                .arg(payload)
                .arg(e.verifier.as_ref().map_or(&[][..], |v| &v[..]))
                .arg(decision.arg())
                .arg(id.as_deref().unwrap_or(""));
            let reply = match self.with_conn(|conn| call.invoke::<Value>(conn)) {
                Ok(reply) => array(reply)?,
                Err(err) => {
                    if let Some(id) = &id {
                        self.settle_or_log(&e.mailbox, id, payload.len());
                    }
                    return Err(err);
                }
            };
            let [kind, a, b, n, bytes] = &reply[..] else {
                return Err(unexpected());
            };
            let kind = text(kind).ok_or_else(unexpected)?;
            let refusal = match kind {
                b"ask" if decision == Decision::NotAsked => {
                    decision = if first_contact() {
                        Decision::Admitted
                    } else {
                        Decision::Refused
                    };
                    continue;
                }
                b"void" => return Err(reservation_given_back()),
                b"stored" => {
                    let id = id.ok_or_else(unexpected)?;
                    let enqueued = Enqueued {
                        id: number(a)?,
                        duplicate: false,
                    };
                    // An expired envelope it replaced is freed.
                    let mut replaced = Account::default();
                    if text(b) == Some(b"1") {
                        replaced.sync(&e.mailbox, Freed::of(n, bytes)?);
                    }
                    return Ok(Outcome::Stored(id, enqueued, replaced));
                }
                b"duplicate" => Ok(Enqueued {
                    id: number(a)?,
                    duplicate: true,
                }),
                b"unknown" => Err(StoreError::UnknownRecipient),
                b"denied" => Err(StoreError::AccessDenied),
                b"full" => Err(StoreError::MailboxFull {
                    envelopes: number(a)?,
                    bytes: number(b)?,
                    max_envelopes: policy.mailbox.max_envelopes,
                    max_bytes: policy.mailbox.max_bytes,
                }),
                b"storage" if id.is_none() => Err(StoreError::StorageFull {
                    queued_bytes: held,
                    len: payload.len() as u64,
                    max_bytes: policy.max_total_bytes,
                }),
                _ => return Err(unexpected()),
            };
            // A refusal gave the reservation back through `out`.
            let mut settle = Account::default();
            if let Some(id) = &id {
                settle.sync(&e.mailbox, Freed::of(n, bytes)?);
                settle.forget(id);
            }
            return Ok(Outcome::Settled(refusal, settle));
        }
    }

    /// Settles reservation `id` of `mailbox` now (after its mailbox step
    /// failed: it may or may not have run); a failure is logged, and the
    /// reconcile settles it later.
    fn settle_or_log(&self, mailbox: &str, id: &str, len: usize) {
        let mut ops = Account::default();
        match self.settle(mailbox, id, len, &mut ops) {
            Ok(()) => self.release_or_log(&ops),
            Err(e) => {
                tracing::warn!(error = %e, "Redis Cluster: a reservation stays pending until the reconcile");
            }
        }
    }

    /// The `settle` step of reservation `id` (`len` bytes) of `mailbox`,
    /// adding what `{global}` must do to `ops`.
    fn settle(
        &self,
        mailbox: &str,
        id: &str,
        len: usize,
        ops: &mut Account,
    ) -> Result<(), StoreError> {
        let mut call = self.scripts.cluster.settle.prepare_invoke();
        call.key(self.hex_key(mailbox, "done"))
            .arg(&self.prefix)
            .arg(mailbox)
            .arg(id)
            .arg(len);
        let reply = array(self.with_conn(|conn| call.invoke::<Value>(conn))?)?;
        match &reply[..] {
            [used] if text(used) == Some(b"used") => {}
            [void, n, bytes] if text(void) == Some(b"void") => {
                ops.sync(mailbox, Freed::of(n, bytes)?);
            }
            _ => return Err(unexpected()),
        }
        ops.forget(id);
        Ok(())
    }

    /// `ack` on a Cluster: the mailbox's step, then `{global}`'s.
    pub(super) fn cluster_ack(
        &self,
        address: &MailboxAddress,
        ids: &[u64],
    ) -> Result<u32, StoreError> {
        let mailbox = address.to_hex();
        let mut call = self.scripts.cluster.ack.prepare_invoke();
        call.key(self.hex_key(&mailbox, "queue"))
            .arg(&self.prefix)
            .arg(&mailbox);
        for id in ids {
            call.arg(super::padded(*id));
        }
        let reply = array(self.with_conn(|conn| call.invoke::<Value>(conn))?)?;
        let [removed, n, bytes] = &reply[..] else {
            return Err(unexpected());
        };
        let removed = number(removed)?;
        if removed > 0 {
            let mut ops = Account::default();
            ops.sync(&mailbox, Freed::of(n, bytes)?);
            self.release_or_log(&ops);
        }
        Ok(u32::try_from(removed).unwrap_or(u32::MAX))
    }

    /// `sweep_expired` on a Cluster: the pending reservations first (and
    /// hourly a scan of every master, [`reconcile`](Self::reconcile)), then
    /// the mailboxes of every expiry bucket that is due.
    pub(super) fn cluster_sweep(
        &self,
        now: UnixTime,
        max_count: usize,
    ) -> Result<Swept, StoreError> {
        if let Err(e) = self.reconcile_if_due() {
            tracing::warn!(error = %e, "Redis Cluster: the reconcile failed; it runs again at the next sweep");
        }
        let hour = now.hour();
        let exp_hours = self.global_key("exp_hours");
        let hours: Vec<String> = self.with_conn(|conn| {
            redis::cmd("ZRANGEBYSCORE")
                .arg(&exp_hours)
                .arg("-inf")
                .arg(hour)
                .query(conn)
        })?;
        let max_count = max_count as u64;
        let mut swept = Swept::default();
        for h in hours {
            let bucket = self.global_key(&format!("exp:{h}"));
            let mut cursor = 0u64;
            loop {
                let (next, members): (u64, Vec<String>) = self.with_conn(|conn| {
                    redis::cmd("SSCAN")
                        .arg(&bucket)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(BATCH)
                        .query(conn)
                })?;
                let mut ops = Account::default();
                for m in &members {
                    let left = max_count - swept.envelopes;
                    if left == 0 {
                        break;
                    }
                    let mut call = self.scripts.cluster.sweep.prepare_invoke();
                    call.key(self.hex_key(m, "expiry"))
                        .arg(&self.prefix)
                        .arg(m)
                        .arg(hour)
                        .arg(left);
                    let reply = array(self.with_conn(|conn| call.invoke::<Value>(conn))?)?;
                    let [count, bytes, more, n, out_bytes] = &reply[..] else {
                        return Err(unexpected());
                    };
                    let count = number(count)?;
                    swept.envelopes += count;
                    swept.bytes += number(bytes)?;
                    if count > 0 {
                        ops.sync(m, Freed::of(n, out_bytes)?);
                    }
                    if number(more)? == 0 {
                        ops.unbucket(m, &h);
                    }
                }
                if !ops.is_empty() {
                    self.run_account(&ops)?;
                }
                if swept.envelopes >= max_count {
                    return Ok(swept);
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(swept)
    }

    /// `kem_prekey_count` on a Cluster, where MULTI pipelines are not
    /// available: one read-only script.
    pub(super) fn cluster_kem_prekey_count(
        &self,
        address: &MailboxAddress,
    ) -> Result<Option<u32>, StoreError> {
        let mut call = self.scripts.cluster.kem_count.prepare_invoke();
        call.key(self.mailbox_key(address, "kem:last"))
            .arg(&self.prefix)
            .arg(address.to_hex());
        kem_count(&self.with_conn(|conn| call.invoke::<Value>(conn))?)
    }

    /// One try of `publish_device_list` on a Cluster: `None` if the stored
    /// list changed since it was read (read it again), else the outcome.
    pub(super) fn cluster_device_list(
        &self,
        owner: &MailboxAddress,
        version: u64,
        list: &[u8],
        stored_version: Option<String>,
        new: &NewDeviceList,
    ) -> Result<Option<Result<(), StoreError>>, StoreError> {
        let account = owner.to_hex();
        let mut call = self.scripts.cluster.device_list.prepare_invoke();
        call.key(self.mailbox_key(owner, "devices"))
            .arg(&self.prefix)
            .arg(&account)
            .arg(super::padded(version))
            .arg(list)
            .arg(stored_version.as_deref().unwrap_or(""))
            .arg(new.listed.len());
        for device in new.listed.iter().chain(&new.unlinked) {
            call.arg(device.to_hex());
        }
        let reply = array(self.with_conn(|conn| call.invoke::<Value>(conn))?)?;
        match reply.first().and_then(text) {
            Some(b"ok") => {
                self.propagate(&account)?;
                Ok(Some(Ok(())))
            }
            Some(b"stale") => {
                let stored = number(reply.get(1).ok_or_else(unexpected)?)?;
                Ok(Some(Err(StoreError::StaleDeviceList { stored })))
            }
            Some(b"retry") => Ok(None),
            _ => Err(unexpected()),
        }
    }

    /// The devices' steps of the device list record of `account` (if
    /// any), then the record's removal.
    fn propagate(&self, account: &str) -> Result<(), StoreError> {
        let record_key = self.hex_key(account, "propagate");
        let record: HashMap<String, Vec<u8>> =
            self.with_conn(|conn| redis::cmd("HGETALL").arg(&record_key).query(conn))?;
        let Some(version) = record.get("version") else {
            return Ok(());
        };
        let devices = |field: &str| -> Vec<String> {
            record
                .get(field)
                .map(|all| {
                    all.chunks(64)
                        .filter_map(|d| core::str::from_utf8(d).ok())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut ops = Account::default();
        for (op, field) in [("del", "del"), ("add", "add"), ("unlink", "unlink")] {
            for device in devices(field) {
                let mut call = self.scripts.cluster.device_link.prepare_invoke();
                call.key(self.hex_key(&device, "listed_by"))
                    .arg(&self.prefix)
                    .arg(&device)
                    .arg(account)
                    .arg(op);
                let reply = array(self.with_conn(|conn| call.invoke::<Value>(conn))?)?;
                let [removed, n, bytes] = &reply[..] else {
                    return Err(unexpected());
                };
                if number(removed)? == 1 {
                    ops.sync(&device, Freed::of(n, bytes)?);
                }
            }
        }
        if !ops.is_empty() {
            self.run_account(&ops)?;
        }
        let mut call = self.scripts.cluster.propagated.prepare_invoke();
        call.key(&record_key)
            .arg(&self.prefix)
            .arg(account)
            .arg(&version[..]);
        self.with_conn(|conn| call.invoke::<Value>(conn))?;
        Ok(())
    }

    /// Finishes, exactly, what relays that stopped between two steps of an
    /// operation left (docs/relay.md §9, "Redis Cluster"): gives back every
    /// reservation pending longer than a minute whose mailbox step did not
    /// run (and forgets those it did), and, scanning every master, applies
    /// every mailbox's freed counters to the totals and finishes every
    /// device list's record. Runs when the store is opened; the sweep runs
    /// the first part every time and the whole hourly. Nothing on one
    /// server.
    pub fn reconcile(&self) -> Result<(), StoreError> {
        if self.cluster.is_none() {
            return Ok(());
        }
        self.reconcile_all()
    }

    fn reconcile_all(&self) -> Result<(), StoreError> {
        self.reconcile_pending()?;
        self.reconcile_scan()?;
        *self
            .cluster_state()?
            .last_full
            .lock()
            .map_err(|_| poisoned())? = Some(Instant::now());
        Ok(())
    }

    fn reconcile_if_due(&self) -> Result<(), StoreError> {
        let due = {
            let last = self
                .cluster_state()?
                .last_full
                .lock()
                .map_err(|_| poisoned())?;
            last.is_none_or(|t| t.elapsed() >= FULL_RECONCILE_EVERY)
        };
        if due {
            self.reconcile_all()
        } else {
            self.reconcile_pending()
        }
    }

    /// Settles every reservation pending longer than `stale_after`.
    fn reconcile_pending(&self) -> Result<(), StoreError> {
        let stale_after = self.cluster_state()?.stale_after;
        let mut call = self.scripts.cluster.stale.prepare_invoke();
        call.key(self.global_key("totals"))
            .arg(&self.prefix)
            .arg(stale_after.as_secs());
        let stale = array(self.with_conn(|conn| call.invoke::<Value>(conn))?)?;
        let mut ops = Account::default();
        let mut settled = 0;
        for entry in stale.chunks(3) {
            let [id, mailbox, len] = entry else {
                return Err(unexpected());
            };
            let id = String::from_utf8_lossy(text(id).ok_or_else(unexpected)?).into_owned();
            let mailbox =
                String::from_utf8_lossy(text(mailbox).ok_or_else(unexpected)?).into_owned();
            let len = usize::try_from(number(len)?).map_err(|_| unexpected())?;
            self.settle(&mailbox, &id, len, &mut ops)?;
            settled += 1;
            if settled % BATCH == 0 {
                self.run_account(&ops)?;
                ops = Account::default();
            }
        }
        if !ops.is_empty() {
            self.run_account(&ops)?;
        }
        if settled > 0 {
            tracing::info!(
                reservations = settled,
                "Redis Cluster: settled reservations a stopped relay left pending"
            );
        }
        Ok(())
    }

    /// Scans every master for mailboxes' freed counters (applied to the
    /// totals: only what was not yet) and device list records (finished).
    fn reconcile_scan(&self) -> Result<(), StoreError> {
        let masters = self.with_pooled(|conn| match conn {
            Conn::Cluster(conn) => masters(conn),
            Conn::Server(_) => Ok(Vec::new()),
        })?;
        let mut records = 0;
        for master in &masters {
            let mut ops = Account::default();
            let mut batched = 0;
            for key in self.scan_master(master, "out")? {
                let Some(mailbox) = mailbox_of(&self.prefix, &key) else {
                    continue;
                };
                let (n, bytes): (Option<u64>, Option<u64>) = self.with_conn(|conn| {
                    redis::cmd("HMGET")
                        .arg(&key)
                        .arg("n")
                        .arg("bytes")
                        .query(conn)
                })?;
                ops.sync(
                    &mailbox,
                    Freed {
                        envelopes: n.unwrap_or(0),
                        bytes: bytes.unwrap_or(0),
                    },
                );
                batched += 1;
                if batched % BATCH == 0 {
                    self.run_account(&ops)?;
                    ops = Account::default();
                }
            }
            if !ops.is_empty() {
                self.run_account(&ops)?;
            }
            for key in self.scan_master(master, "propagate")? {
                if let Some(account) = mailbox_of(&self.prefix, &key) {
                    self.propagate(&account)?;
                    records += 1;
                }
            }
        }
        if records > 0 {
            tracing::info!(
                records,
                "Redis Cluster: finished device lists a stopped relay left half-published"
            );
        }
        Ok(())
    }

    /// The keys `<prefix>:{*}:<name>` on the master at `address`.
    fn scan_master(&self, address: &str, name: &str) -> Result<Vec<String>, StoreError> {
        let (host, port) = host_port(address).ok_or_else(unexpected)?;
        let pattern = format!("{}:{{*}}:{name}", self.prefix);
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port,
            });
            let reply = self.with_pooled(|conn| match conn {
                Conn::Cluster(conn) => conn.route_command(&scan, routing),
                Conn::Server(_) => Ok(Value::Nil),
            })?;
            let (next, found): (u64, Vec<String>) =
                redis::from_redis_value(reply).map_err(|_| unexpected())?;
            keys.extend(found);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }
}

/// What the mailbox step of one recipient came to.
pub(super) enum Outcome {
    /// Stored with the reservation (id): forgotten later; and what
    /// `{global}` must apply now if an expired envelope was replaced.
    Stored(String, Enqueued, Account),
    /// Refused or a duplicate: the `account` operations that settle the
    /// reservation.
    Settled(Result<Enqueued, StoreError>, Account),
}

fn reservation_given_back() -> StoreError {
    backend(
        "the envelope's reservation was given back by a reconcile before it was stored".to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_their_nodes() {
        assert_eq!(node_urls("redis://127.0.0.1:6379").unwrap(), None);
        assert_eq!(
            node_urls("redis+cluster://u:p@a:1,b:2/0").unwrap(),
            Some(vec![
                "redis://u:p@a:1/0".to_owned(),
                "redis://u:p@b:2/0".to_owned()
            ])
        );
        assert_eq!(
            node_urls("rediss+cluster://a:1").unwrap(),
            Some(vec!["rediss://a:1".to_owned()])
        );
        assert_eq!(
            node_urls("redis://a:1, redis://b:2").unwrap(),
            Some(vec!["redis://a:1".to_owned(), "redis://b:2".to_owned()])
        );
        for bad in [
            "redis+cluster://",
            "redis+cluster://,",
            "http+cluster://a:1",
            "redis://a:1,b:2",
        ] {
            assert!(node_urls(bad).is_err(), "{bad}");
        }
        assert_eq!(
            with_address("redis://u:p@a:1/0", "b:2").as_deref(),
            Some("redis://u:p@b:2/0")
        );
        assert_eq!(
            with_address("rediss://a:1", "10.0.0.1:7000").as_deref(),
            Some("rediss://10.0.0.1:7000")
        );
    }

    #[test]
    fn keys_name_their_mailbox() {
        let hex = "ab".repeat(32);
        assert_eq!(
            mailbox_of("sotto", &format!("sotto:{{{hex}}}:out")),
            Some(hex.clone())
        );
        assert_eq!(mailbox_of("sotto", "sotto:{global}:out"), None);
        assert_eq!(mailbox_of("other", &format!("sotto:{{{hex}}}:out")), None);
        assert_eq!(
            host_port("127.0.0.1:7000"),
            Some(("127.0.0.1".to_owned(), 7000))
        );
        assert_eq!(host_port("nowhere"), None);
    }
}
