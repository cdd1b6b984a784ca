//! The shared contract suite and Redis-specific tests, against the server
//! named by `SOTTO_TEST_REDIS_URL` and again against the Redis Cluster
//! named by `SOTTO_TEST_REDIS_CLUSTER_URL` (node URLs separated by commas,
//! or one node's URL; `.ci/run` starts both). Each test has a key prefix of
//! its own, so tests run in parallel on one server, and deletes its keys
//! when it ends.
//!
//! Without the variable these tests fail when `CI` is set (a CI run must
//! not pass by skipping them), and are skipped with a message otherwise.

use std::sync::Arc;

use super::*;
use crate::store::contract_tests::{OPEN, T0, register, to};

/// The variable that names the test server.
const URL_VAR: &str = "SOTTO_TEST_REDIS_URL";
/// The variable that names the test cluster.
const CLUSTER_URL_VAR: &str = "SOTTO_TEST_REDIS_CLUSTER_URL";

/// A store with a fresh key prefix; its keys are deleted on drop.
struct TestStore {
    store: RedisStore,
    url: String,
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let pattern = format!("{}:*", self.store.prefix);
        let _ = self.store.with_conn(|conn| {
            let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(conn)?;
            if !keys.is_empty() {
                redis::cmd("DEL").arg(&keys).query::<()>(conn)?;
            }
            Ok(())
        });
    }
}

impl TestStore {
    /// Another store on the same keys: a second relay process.
    fn another(&self) -> RedisStore {
        let options = RedisOptions {
            key_prefix: self.store.prefix.clone(),
            ..RedisOptions::default()
        };
        RedisStore::open_with(&self.url, &options).unwrap()
    }

    /// Keys of this store whose name ends with `suffix`.
    fn keys_ending(&self, suffix: &str) -> Vec<String> {
        let pattern = format!("{}:*{suffix}", self.store.prefix);
        self.store
            .with_conn(|conn| redis::cmd("KEYS").arg(&pattern).query(conn))
            .unwrap()
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A store on the test server, or `None` (the test is skipped) when no
/// server is configured outside CI.
fn test_store() -> Option<TestStore> {
    let t = store_at(URL_VAR, "redis://127.0.0.1:PORT")?;
    assert!(!t.store.is_cluster(), "{URL_VAR} names a Redis Cluster");
    Some(t)
}

/// A store on the test cluster, or `None` (the test is skipped) when no
/// cluster is configured outside CI.
fn cluster_store() -> Option<TestStore> {
    let t = store_at(
        CLUSTER_URL_VAR,
        "redis://127.0.0.1:PORT,redis://127.0.0.1:PORT2,...",
    )?;
    assert!(
        t.store.is_cluster(),
        "{CLUSTER_URL_VAR} names a server that is not a Redis Cluster"
    );
    Some(t)
}

/// A store with a fresh prefix on what the variable `var` names.
fn store_at(var: &str, example: &str) -> Option<TestStore> {
    let url = match std::env::var(var) {
        Ok(url) if !url.is_empty() => url,
        _ if in_ci() => panic!(
            "{var} is not set and CI is: the Redis store tests need it \
             (`.ci/run` starts a server and a cluster) and must not pass by being skipped"
        ),
        _ => {
            eprintln!("skipped: set {var}={example} to run these Redis store tests");
            return None;
        }
    };
    let mut suffix = [0u8; 8];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut suffix).unwrap();
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let options = RedisOptions {
        key_prefix: format!("sotto-test-{suffix}"),
        ..RedisOptions::default()
    };
    let store = RedisStore::open_with(&url, &options)
        .unwrap_or_else(|e| panic!("cannot open the Redis store at {var}: {e}"));
    Some(TestStore { store, url })
}

crate::store::contract_suite!(test_store, |t| &t.store);

/// The shared contract suite again, on the cluster.
mod cluster_contract {
    use super::*;

    crate::store::contract_suite!(cluster_store, |t| &t.store);
}

/// Each test `fn name(t: &TestStore)` as `server::name` on the test
/// server and `cluster::name` on the test cluster.
macro_rules! on_server_and_cluster {
    ($($name:ident),* $(,)?) => {
        mod server {
            $(
                #[test]
                fn $name() {
                    let Some(t) = super::test_store() else { return };
                    super::$name(&t);
                }
            )*
        }
        mod cluster {
            $(
                #[test]
                fn $name() {
                    let Some(t) = super::cluster_store() else { return };
                    super::$name(&t);
                }
            )*
        }
    };
}

on_server_and_cluster!(
    two_relays_sharing_a_store_see_one_store,
    concurrent_bundle_fetches_hand_out_each_one_time_prekey_once,
    concurrent_sends_get_increasing_ids_and_exact_counters,
    concurrent_sends_to_one_mailbox_become_visible_in_id_order,
);

#[test]
fn durability_follows_the_append_only_settings() {
    use Durability::*;
    let cases = [
        (Some("yes"), Some("always"), Always),
        (Some("yes"), Some("everysec"), EverySecond),
        (Some("YES"), Some("no"), OsDecides),
        (Some("no"), Some("always"), NoAppendOnlyFile),
        (None, None, Unknown),
        (Some("yes"), None, Unknown),
    ];
    for (appendonly, appendfsync, expected) in cases {
        assert_eq!(Durability::from_config(appendonly, appendfsync), expected);
    }
}

#[test]
fn the_test_server_reports_its_durability() {
    let Some(t) = test_store() else { return };
    let config: HashMap<String, String> = t
        .store
        .with_conn(|conn| {
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("appendonly")
                .arg("appendfsync")
                .query(conn)
        })
        .unwrap();
    let get = |name: &str| config.get(name).map(String::as_str);
    assert_eq!(
        t.store.durability(),
        Durability::from_config(get("appendonly"), get("appendfsync"))
    );
}

#[test]
fn a_bad_prefix_or_url_is_refused() {
    for prefix in ["", "a{b}", "a*", "a b"] {
        let options = RedisOptions {
            key_prefix: prefix.to_owned(),
            ..RedisOptions::default()
        };
        assert!(RedisStore::open_with("redis://127.0.0.1:1", &options).is_err());
    }
    assert!(RedisStore::open("not a url").is_err());
}

fn two_relays_sharing_a_store_see_one_store(t: &TestStore) {
    let other = t.another();
    let a = register(&t.store, 1);
    let policy = QueuePolicy::default();
    let first = t
        .store
        .enqueue(&a, &MessageId([1; 16]), b"one", OPEN, &policy, T0)
        .unwrap();
    // The other process sees it, dedupes against it, and acks it.
    let again = other
        .enqueue(&a, &MessageId([1; 16]), b"one", OPEN, &policy, T0)
        .unwrap();
    assert_eq!((again.id, again.duplicate), (first.id, true));
    let page = other.fetch(&a, 0, 10, usize::MAX, T0).unwrap();
    assert_eq!(page.envelopes[0].payload, b"one");
    assert_eq!(other.ack(&a, &[first.id]).unwrap(), 1);
    assert_eq!(t.store.totals().unwrap(), StoreTotals::default());
}

fn concurrent_bundle_fetches_hand_out_each_one_time_prekey_once(t: &TestStore) {
    let id = sotto_core::IdentityKeyPair::from_seed(&[7; 32]);
    let address = MailboxAddress::of(id.public());
    let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
    let spk = sotto_core::SignedPreKey::generate(SignedPreKeyId::new(1), &id, &mut rng);
    let opks: Vec<_> = (0..100)
        .map(|i| sotto_core::OneTimePreKey::generate(OneTimePreKeyId::new(i), &mut rng))
        .collect();
    t.store
        .publish_prekeys(id.public(), &PreKeyUpload::new(Some(&spk), &opks), 1000)
        .unwrap();
    // Four relay processes, 30 fetches each: 100 keys, then none.
    let stores: Vec<Arc<RedisStore>> = (0..4).map(|_| Arc::new(t.another())).collect();
    let handles: Vec<_> = stores
        .into_iter()
        .map(|store| {
            std::thread::spawn(move || {
                (0..30)
                    .filter_map(|_| {
                        let taken = store.take_bundle(&address).unwrap().unwrap();
                        taken.bundle.one_time_prekey.map(|(id, _)| id.get())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut handed_out: Vec<u32> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    handed_out.sort_unstable();
    assert_eq!(handed_out, (0..100).collect::<Vec<_>>());
    assert_eq!(t.store.one_time_prekey_count(&address).unwrap(), 0);
}

fn concurrent_sends_get_increasing_ids_and_exact_counters(t: &TestStore) {
    let (a, b) = (register(&t.store, 1), register(&t.store, 2));
    let policy = QueuePolicy {
        mailbox: crate::store::MailboxLimits {
            max_envelopes: 150,
            max_bytes: u64::MAX,
        },
        ..QueuePolicy::default()
    };
    let handles: Vec<_> = (0..4u8)
        .map(|n| {
            let store = t.another();
            std::thread::spawn(move || {
                for i in 0..50u8 {
                    let to = if i % 2 == 0 { a } else { b };
                    let _ = store.enqueue(
                        &to,
                        &MessageId([n, i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                        &[i; 10],
                        OPEN,
                        &policy,
                        T0,
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // 100 sends to each mailbox, all within its limit of 150.
    for address in [&a, &b] {
        let page = t.store.fetch(address, 0, 1000, usize::MAX, T0).unwrap();
        assert_eq!(page.envelopes.len(), 100);
        assert!(page.envelopes.windows(2).all(|w| w[0].id < w[1].id));
        let usage = t.store.usage(address).unwrap();
        assert_eq!((usage.envelopes, usage.bytes), (100, 1000));
        assert_eq!(usage.last_id, page.envelopes[99].id);
    }
    assert_eq!(
        t.store.totals().unwrap(),
        StoreTotals {
            envelopes: 200,
            bytes: 2000
        }
    );
}

#[test]
fn a_multi_send_body_is_stored_once_and_deleted_with_its_last_envelope() {
    let Some(t) = test_store() else { return };
    let store = &t.store;
    let (a, b, c) = (register(store, 1), register(store, 2), register(store, 3));
    let policy = QueuePolicy::default();
    let body = vec![0x42; 10_000];
    let recipients = [to(&a, 1, b"ha"), to(&b, 2, b"hb"), to(&c, 3, b"hc")];
    let ids: Vec<u64> = store
        .enqueue_many(&recipients, &body, &mut |_| false, &policy, T0)
        .unwrap()
        .iter()
        .map(|r| r.as_ref().unwrap().id)
        .collect();
    let bodies = || t.keys_ending("{global}:body:*").len();
    assert_eq!(bodies(), 1);
    assert_eq!(store.totals().unwrap().bytes, 6 + 10_000);
    // A resend, and a request whose recipients are all refused, store no
    // body.
    store
        .enqueue_many(&recipients, &body, &mut |_| false, &policy, T0)
        .unwrap();
    let nobody = MailboxAddress::from_bytes([0xAB; 32]);
    store
        .enqueue_many(&[to(&nobody, 1, b"")], &body, &mut |_| false, &policy, T0)
        .unwrap();
    assert_eq!(bodies(), 1);
    store.ack(&a, &[ids[0]]).unwrap();
    store.ack(&b, &[ids[1]]).unwrap();
    assert_eq!(bodies(), 1);
    store.ack(&c, &[ids[2]]).unwrap();
    assert_eq!(bodies(), 0);
    // Nothing of the mailboxes' queues is left behind either.
    assert!(t.keys_ending(":queue").is_empty());
    assert!(t.keys_ending(":msgids").is_empty());
    assert!(t.keys_ending(":bytes").is_empty());
    assert!(t.keys_ending("{global}:expiry").is_empty());
}

/// Four relay processes send to one mailbox while a reader fetches it
/// again and again: an envelope it sees for the first time always has an
/// id above every one it saw before (on a Cluster, where the id comes from
/// the `{global}` slot before the mailbox's step, a mailbox step that
/// lost the race takes a new id).
fn concurrent_sends_to_one_mailbox_become_visible_in_id_order(t: &TestStore) {
    let a = register(&t.store, 1);
    let policy = QueuePolicy::default();
    let senders: Vec<_> = (0..4u8)
        .map(|n| {
            let store = t.another();
            std::thread::spawn(move || {
                for i in 0..40u8 {
                    let mut mid = [0u8; 16];
                    mid[0] = n;
                    mid[1] = i;
                    store
                        .enqueue(&a, &MessageId(mid), &[i; 8], OPEN, &policy, T0)
                        .unwrap();
                }
            })
        })
        .collect();
    let reader = t.another();
    let mut seen = std::collections::HashSet::new();
    let mut highest = 0;
    loop {
        let done = senders.iter().all(|s| s.is_finished());
        let page = reader.fetch(&a, 0, 1000, usize::MAX, T0).unwrap();
        let before = highest;
        for e in &page.envelopes {
            if seen.insert(e.id) {
                assert!(e.id > before, "{} appeared after {before}", e.id);
            }
            highest = highest.max(e.id);
        }
        if done {
            break;
        }
    }
    for s in senders {
        s.join().unwrap();
    }
    assert_eq!(seen.len(), 160);
    assert_eq!(
        t.store.totals().unwrap(),
        StoreTotals {
            envelopes: 160,
            bytes: 1280
        }
    );
}

/// The masters of the test cluster and the keys of `t`'s prefix on each.
fn keys_per_master(t: &TestStore) -> Vec<(String, Vec<String>)> {
    use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
    let pattern = format!("{}:*", t.store.prefix);
    t.store
        .with_pooled(|conn| {
            let Conn::Cluster(conn) = conn else {
                panic!("not a cluster")
            };
            let mut out = Vec::new();
            for master in super::cluster::masters(conn)? {
                let (host, port) = super::cluster::host_port(&master).unwrap();
                let keys = conn.route_command(
                    redis::cmd("KEYS").arg(&pattern),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port }),
                )?;
                out.push((master, redis::from_redis_value(keys).unwrap()));
            }
            Ok(out)
        })
        .unwrap()
}

/// On the test cluster a mailbox's keys live on one node, the store-wide
/// ones on one node, and the keys of a few mailboxes on more than one:
/// the cluster is really exercised.
#[test]
fn on_a_cluster_mailboxes_and_the_global_keys_are_spread_over_the_nodes() {
    let Some(t) = cluster_store() else { return };
    let policy = QueuePolicy::default();
    let mailboxes: Vec<MailboxAddress> = (1..=12).map(|n| register(&t.store, n)).collect();
    for (n, m) in mailboxes.iter().enumerate() {
        t.store
            .enqueue(m, &MessageId([n as u8; 16]), b"x", OPEN, &policy, T0)
            .unwrap();
    }
    let per_master = keys_per_master(&t);
    assert!(per_master.len() >= 3, "{} masters", per_master.len());
    let node_of = |tag: &str| -> Vec<&str> {
        per_master
            .iter()
            .filter(|(_, keys)| keys.iter().any(|k| k.contains(tag)))
            .map(|(node, _)| node.as_str())
            .collect()
    };
    let global = node_of("{global}");
    assert_eq!(global.len(), 1, "the global keys are on {global:?}");
    let mut nodes = std::collections::BTreeSet::new();
    for m in &mailboxes {
        let on = node_of(&format!("{{{}}}", m.to_hex()));
        assert_eq!(on.len(), 1, "a mailbox's keys are on {on:?}");
        nodes.insert(on[0]);
    }
    assert!(nodes.len() >= 2, "12 mailboxes on {nodes:?} only");
    assert!(
        nodes.iter().any(|n| *n != global[0]),
        "every mailbox is on the global keys' node"
    );
}

/// A store opened through one node's URL, and through the
/// `redis+cluster://` form, is the cluster.
#[test]
fn a_cluster_is_opened_from_one_node_or_the_cluster_form() {
    let Some(t) = cluster_store() else { return };
    let first = t.url.split(',').next().unwrap().trim().to_owned();
    let options = RedisOptions {
        key_prefix: t.store.prefix.clone(),
        ..RedisOptions::default()
    };
    let seeded = RedisStore::open_with(&first, &options).unwrap();
    assert!(seeded.is_cluster());
    let hosts: Vec<&str> = t
        .url
        .split(',')
        .map(|u| u.trim().trim_start_matches("redis://"))
        .collect();
    let form = format!("redis+cluster://{}", hosts.join(","));
    let opened = RedisStore::open_with(&form, &options).unwrap();
    assert!(opened.is_cluster());
    assert_eq!(opened.durability(), t.store.durability());
    // A standalone server named as a cluster node is refused.
    if let Ok(server) = std::env::var(URL_VAR)
        && !server.is_empty()
    {
        let named = format!("{server},{server}");
        assert!(RedisStore::open_with(&named, &options).is_err());
    }
}

/// On a cluster each recipient of a `SendMulti` holds its own copy of the
/// body (each mailbox lives in its own slot): the totals count every copy,
/// and acks leave nothing behind.
#[test]
fn on_a_cluster_a_multi_send_body_is_copied_per_recipient() {
    let Some(t) = cluster_store() else { return };
    let store = &t.store;
    let (a, b, c) = (register(store, 1), register(store, 2), register(store, 3));
    let policy = QueuePolicy::default();
    let body = vec![0x42; 1000];
    let recipients = [to(&a, 1, b"ha"), to(&b, 2, b"hb"), to(&c, 3, b"hc")];
    let ids: Vec<u64> = store
        .enqueue_many(&recipients, &body, &mut |_| false, &policy, T0)
        .unwrap()
        .iter()
        .map(|r| r.as_ref().unwrap().id)
        .collect();
    assert_eq!(
        store.totals().unwrap(),
        StoreTotals {
            envelopes: 3,
            bytes: 3 * 1002
        }
    );
    assert!(t.keys_ending("{global}:body:*").is_empty());
    let page = store.fetch(&b, 0, 10, usize::MAX, T0).unwrap();
    assert_eq!(page.envelopes[0].payload, [&b"hb"[..], &body].concat());
    for (m, id) in [(&a, ids[0]), (&b, ids[1]), (&c, ids[2])] {
        assert_eq!(store.ack(m, &[id]).unwrap(), 1);
    }
    assert_eq!(store.totals().unwrap(), StoreTotals::default());
    for name in [":queue", ":msgids", ":bytes", ":expiry"] {
        assert!(t.keys_ending(name).is_empty(), "{name} left");
    }
}

/// On a cluster the sweep finds expired envelopes through the hourly
/// buckets of mailboxes, sweeps them in batches, and leaves no bucket, no
/// pending reservation and no expiry index behind.
#[test]
fn on_a_cluster_the_sweep_empties_the_expiry_buckets() {
    let Some(t) = cluster_store() else { return };
    let store = without_delay(t.another());
    let policy = QueuePolicy {
        envelope_ttl: Duration::from_secs(3600),
        ..QueuePolicy::default()
    };
    let mailboxes: Vec<MailboxAddress> = (1..=5).map(|n| register(&store, n)).collect();
    for (n, m) in mailboxes.iter().enumerate() {
        for i in 0..3u8 {
            store
                .enqueue(
                    m,
                    &MessageId([n as u8, i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                    b"abcd",
                    OPEN,
                    &policy,
                    T0,
                )
                .unwrap();
        }
    }
    assert!(!t.keys_ending("{global}:exp_hours").is_empty());
    let later = UnixTime::from_secs(T0.as_secs() + 3600);
    let mut swept = Swept::default();
    for _ in 0..10 {
        let s = store.sweep_expired(later, 4).unwrap();
        swept.envelopes += s.envelopes;
        swept.bytes += s.bytes;
        if s.envelopes < 4 {
            break;
        }
    }
    assert_eq!(
        swept,
        Swept {
            envelopes: 15,
            bytes: 60
        }
    );
    assert_eq!(store.totals().unwrap(), StoreTotals::default());
    store.reconcile().unwrap();
    for name in [
        "{global}:exp_hours",
        "{global}:exp:*",
        "{global}:pending",
        ":expiry",
        ":queue",
    ] {
        assert!(t.keys_ending(name).is_empty(), "{name} left");
    }
}

/// Runs one `account` step of the test store directly.
fn account(t: &TestStore, ops: &[&str]) -> Vec<Value> {
    let mut call = t.store.scripts.cluster.account.prepare_invoke();
    call.key(t.store.global_key("totals")).arg(&t.store.prefix);
    for op in ops {
        call.arg(*op);
    }
    array(
        t.store
            .with_conn(|conn| call.invoke::<Value>(conn))
            .unwrap(),
    )
    .unwrap()
}

fn without_delay(mut store: RedisStore) -> RedisStore {
    if let Some(state) = store.cluster.as_mut() {
        state.stale_after = Duration::ZERO;
    }
    store
}

/// A relay that stopped after reserving, before its mailbox's step, left
/// the reservation counted: the reconcile gives it back, exactly once, and
/// fences off the mailbox step if it comes after all. One whose mailbox
/// step ran keeps its bytes.
#[test]
fn on_a_cluster_the_reconcile_gives_back_a_reservation_a_stopped_relay_left() {
    let Some(t) = cluster_store() else { return };
    let reconciler = without_delay(t.another());
    let a = register(&t.store, 1);
    let policy = QueuePolicy::default();
    let kept = t
        .store
        .enqueue(&a, &MessageId([1; 16]), b"kept", OPEN, &policy, T0)
        .unwrap();
    // The relay's used reservation is still pending (forgotten later).
    let hour = policy.expiry_hour(T0).to_string();
    let reply = account(&t, &["R", &a.to_hex(), "100", &hour, &u64::MAX.to_string()]);
    let reserved = array(reply[0].clone()).unwrap();
    let id = String::from_utf8(text(&reserved[1]).unwrap().to_vec()).unwrap();
    assert_eq!(
        t.store.totals().unwrap(),
        StoreTotals {
            envelopes: 2,
            bytes: 104
        }
    );
    reconciler.reconcile().unwrap();
    reconciler.reconcile().unwrap();
    assert_eq!(
        t.store.totals().unwrap(),
        StoreTotals {
            envelopes: 1,
            bytes: 4
        }
    );
    assert!(t.keys_ending("{global}:pending").is_empty());
    // The mailbox step, late, finds its reservation given back.
    let late = NewEnvelope {
        mailbox: a.to_hex(),
        message_id: &MessageId([2; 16]),
        payload: &[7; 100],
        verifier: None,
        decision: Decision::Refused,
    };
    assert!(
        t.store
            .enqueue_in_mailbox(&late, &[7; 100], Some(id), 0, &mut || false, &policy, T0)
            .is_err()
    );
    let page = t.store.fetch(&a, 0, 10, usize::MAX, T0).unwrap();
    assert_eq!(page.envelopes.len(), 1);
    assert_eq!(page.envelopes[0].id, kept.id);
    assert_eq!(t.store.ack(&a, &[kept.id]).unwrap(), 1);
    assert_eq!(t.store.totals().unwrap(), StoreTotals::default());
}

/// A relay that stopped after an ack's mailbox step, before `{global}`'s,
/// left the totals too high: the reconcile applies what the mailbox freed,
/// and applying it again changes nothing.
#[test]
fn on_a_cluster_the_reconcile_applies_what_a_stopped_relay_freed_once() {
    let Some(t) = cluster_store() else { return };
    let a = register(&t.store, 1);
    let policy = QueuePolicy::default();
    let stored = t
        .store
        .enqueue(&a, &MessageId([1; 16]), b"12345", OPEN, &policy, T0)
        .unwrap();
    t.store
        .enqueue(&a, &MessageId([2; 16]), b"678", OPEN, &policy, T0)
        .unwrap();
    // The ack's mailbox step alone.
    let mut call = t.store.scripts.cluster.ack.prepare_invoke();
    call.key(t.store.mailbox_key(&a, "queue"))
        .arg(&t.store.prefix)
        .arg(a.to_hex())
        .arg(padded(stored.id));
    t.store
        .with_conn(|conn| call.invoke::<Value>(conn))
        .unwrap();
    assert_eq!(t.store.totals().unwrap().envelopes, 2);
    t.store.reconcile().unwrap();
    let after = StoreTotals {
        envelopes: 1,
        bytes: 3,
    };
    assert_eq!(t.store.totals().unwrap(), after);
    t.store.reconcile().unwrap();
    assert_eq!(t.store.totals().unwrap(), after);
}

/// A relay that stopped after a device list's own step, before the
/// devices' steps, left an unlinked device's mailbox in place: the
/// reconcile removes it, as the publish would have.
#[test]
fn on_a_cluster_the_reconcile_finishes_a_half_published_device_list() {
    use crate::store::unlinking::test_lists::signed_list;
    let Some(t) = cluster_store() else { return };
    let account_key = sotto_core::IdentityKeyPair::from_seed(&[40; 32]);
    let laptop = sotto_core::IdentityKeyPair::from_seed(&[41; 32]);
    let (owner, laptop_box) = (
        MailboxAddress::of(account_key.public()),
        MailboxAddress::of(laptop.public()),
    );
    let policy = QueuePolicy::default();
    let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
    for id in [&account_key, &laptop] {
        let spk = sotto_core::SignedPreKey::generate(SignedPreKeyId::new(1), id, &mut rng);
        t.store
            .publish_prekeys(id.public(), &PreKeyUpload::new(Some(&spk), &[]), 10)
            .unwrap();
    }
    t.store
        .enqueue(&laptop_box, &MessageId([1; 16]), b"abc", OPEN, &policy, T0)
        .unwrap();
    let v1 = signed_list(&account_key, 1, &[&account_key, &laptop]);
    t.store.publish_device_list(&owner, 1, &v1).unwrap();
    // Version 2 unlinks the laptop: the account's step alone.
    let v2 = signed_list(&account_key, 2, &[&account_key]);
    let new = NewDeviceList::compare(&owner, Some(&v1), &v2);
    assert_eq!(new.unlinked, [laptop_box]);
    let mut call = t.store.scripts.cluster.device_list.prepare_invoke();
    call.key(t.store.mailbox_key(&owner, "devices"))
        .arg(&t.store.prefix)
        .arg(owner.to_hex())
        .arg(padded(2))
        .arg(&v2[..])
        .arg(padded(1))
        .arg(new.listed.len());
    for device in new.listed.iter().chain(&new.unlinked) {
        call.arg(device.to_hex());
    }
    t.store
        .with_conn(|conn| call.invoke::<Value>(conn))
        .unwrap();
    assert_eq!(t.store.usage(&laptop_box).unwrap().envelopes, 1);
    t.store.reconcile().unwrap();
    assert_eq!(t.store.usage(&laptop_box).unwrap().envelopes, 0);
    assert!(matches!(
        t.store
            .enqueue(&laptop_box, &MessageId([2; 16]), b"x", OPEN, &policy, T0),
        Err(StoreError::UnknownRecipient)
    ));
    assert_eq!(t.store.totals().unwrap(), StoreTotals::default());
    assert!(t.keys_ending(":propagate").is_empty());
}

/// A Redis server of the test's own, on a Unix socket in a temporary
/// directory, for what cannot be done on the shared one (`maxmemory`, a
/// crash). `None` (skipped) without `redis-server` outside CI.
struct OwnServer {
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
    args: Vec<&'static str>,
}

impl OwnServer {
    /// Starts `redis-server` with `args` besides its socket and directory.
    fn start(args: &[&'static str]) -> Option<Self> {
        let mut server = Self {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            args: args.to_vec(),
        };
        match server.spawn() {
            Ok(()) => Some(server),
            Err(e) if in_ci() => panic!("cannot start redis-server: {e}"),
            Err(_) => {
                eprintln!("skipped: no redis-server to start");
                None
            }
        }
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("redis.sock")
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let _ = std::fs::remove_file(self.socket());
        let child = std::process::Command::new("redis-server")
            .args(["--port", "0", "--save", ""])
            .args(&self.args)
            .arg("--unixsocket")
            .arg(self.socket())
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()?;
        self.child = Some(child);
        // Up once it answers (after loading its append-only file).
        for _ in 0..200 {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut conn) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not answer on its socket within 5 s");
    }

    /// Kills the server (SIGKILL: no shutdown, no last write) and starts
    /// it again on the same directory.
    fn crash_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        self.spawn().unwrap();
    }

    fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_killed_server_keeps_every_acknowledged_envelope() {
    let durable = ["--appendonly", "yes", "--appendfsync", "always"];
    let Some(mut server) = OwnServer::start(&durable) else {
        return;
    };
    let store = RedisStore::open(&server.url()).unwrap();
    assert_eq!(store.durability(), Durability::Always);
    let (a, b) = (register(&store, 1), register(&store, 2));
    let policy = QueuePolicy::default();
    let mut ids = Vec::new();
    for n in 0..50u8 {
        let to = if n % 2 == 0 { &a } else { &b };
        let stored = store
            .enqueue(to, &MessageId([n; 16]), &[n; 100], OPEN, &policy, T0)
            .unwrap();
        ids.push(stored.id);
    }
    let multi = store
        .enqueue_many(
            &[to(&a, 100, b"a:"), to(&b, 100, b"b:")],
            b"body",
            &mut |_| false,
            &policy,
            T0,
        )
        .unwrap();
    assert!(multi.iter().all(|r| r.is_ok()));
    let acked = store.ack(&a, &[ids[0]]).unwrap();
    assert_eq!(acked, 1);
    let before = (
        store.totals().unwrap(),
        store.usage(&a).unwrap(),
        store.usage(&b).unwrap(),
    );
    drop(store);

    server.crash_and_restart();
    let store = RedisStore::open(&server.url()).unwrap();
    assert_eq!(
        (
            store.totals().unwrap(),
            store.usage(&a).unwrap(),
            store.usage(&b).unwrap()
        ),
        before
    );
    let page = store.fetch(&b, 0, 100, usize::MAX, T0).unwrap();
    assert_eq!(page.envelopes.len(), 26);
    assert_eq!(page.envelopes[25].payload, b"b:body");
    // Ids go on from where they were.
    let next = store
        .enqueue(&a, &MessageId([200; 16]), b"after", OPEN, &policy, T0)
        .unwrap();
    assert!(next.id > before.2.last_id);
    assert!(store.take_bundle(&a).unwrap().is_some());
}

/// A Redis Cluster of the test's own: three masters on loopback ports,
/// each in a directory of its own, for what cannot be done on the shared
/// one (a crash of every node). `None` (skipped) without `redis-server`
/// and `redis-cli` outside CI.
struct OwnCluster {
    nodes: Vec<(u16, Option<std::process::Child>)>,
    dir: tempfile::TempDir,
}

impl OwnCluster {
    fn start() -> Option<Self> {
        let mut cluster = Self {
            nodes: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        for n in 0..3 {
            match cluster.spawn_new(n) {
                Ok(()) => {}
                Err(e) if in_ci() => panic!("cannot start redis-server: {e}"),
                Err(_) => {
                    eprintln!("skipped: no redis-server to start");
                    return None;
                }
            }
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect();
        let created = std::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(std::process::Stdio::null())
            .status();
        match created {
            Ok(status) if status.success() => {}
            _ if in_ci() => panic!("redis-cli --cluster create failed: {created:?}"),
            _ => {
                eprintln!("skipped: redis-cli could not create a cluster");
                return None;
            }
        }
        cluster.wait_until_ok();
        Some(cluster)
    }

    /// Starts node `n` on a free port (the cluster bus takes the port
    /// 10000 above it).
    fn spawn_new(&mut self, n: usize) -> std::io::Result<()> {
        for _ in 0..20 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            if port > 55000 {
                continue;
            }
            std::fs::create_dir_all(self.dir.path().join(n.to_string()))?;
            let child = self.spawn(n, port)?;
            self.nodes.push((port, Some(child)));
            if self.answers(n) {
                return Ok(());
            }
            if let Some((_, Some(mut child))) = self.nodes.pop() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        Err(std::io::Error::other("no free port for a cluster node"))
    }

    fn spawn(&self, n: usize, port: u16) -> std::io::Result<std::process::Child> {
        std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .arg("--port")
            .arg(port.to_string())
            .arg("--dir")
            .arg(self.dir.path().join(n.to_string()))
            .stdout(std::process::Stdio::null())
            .spawn()
    }

    /// Whether node `n` answers PING within 5 s.
    fn answers(&self, n: usize) -> bool {
        let url = format!("redis://127.0.0.1:{}", self.nodes[n].0);
        for _ in 0..200 {
            if let Ok(client) = redis::Client::open(url.as_str())
                && let Ok(mut conn) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    /// Waits until every node reports `cluster_state:ok`.
    fn wait_until_ok(&self) {
        for _ in 0..400 {
            let ok = self.nodes.iter().all(|(port, _)| {
                redis::Client::open(format!("redis://127.0.0.1:{port}"))
                    .and_then(|c| c.get_connection())
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                    .is_ok_and(|info| info.lines().any(|l| l.trim() == "cluster_state:ok"))
            });
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the test cluster is not ok within 10 s");
    }

    /// Kills every node (SIGKILL: no shutdown, no last write) and starts
    /// them again on their directories and ports.
    fn crash_and_restart(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(mut child) = child.take() {
                child.kill().unwrap();
                child.wait().unwrap();
            }
        }
        for n in 0..self.nodes.len() {
            let child = self.spawn(n, self.nodes[n].0).unwrap();
            self.nodes[n].1 = Some(child);
            assert!(self.answers(n), "node {n} did not come back");
        }
        self.wait_until_ok();
    }

    fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|(port, _)| format!("redis://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

#[test]
fn on_a_cluster_killed_nodes_keep_every_acknowledged_envelope() {
    let Some(mut cluster) = OwnCluster::start() else {
        return;
    };
    let store = RedisStore::open(&cluster.url()).unwrap();
    assert!(store.is_cluster());
    assert_eq!(store.durability(), Durability::Always);
    let (a, b) = (register(&store, 1), register(&store, 2));
    let policy = QueuePolicy::default();
    let mut ids = Vec::new();
    for n in 0..50u8 {
        let to = if n % 2 == 0 { &a } else { &b };
        let stored = store
            .enqueue(to, &MessageId([n; 16]), &[n; 100], OPEN, &policy, T0)
            .unwrap();
        ids.push(stored.id);
    }
    let multi = store
        .enqueue_many(
            &[to(&a, 100, b"a:"), to(&b, 100, b"b:")],
            b"body",
            &mut |_| false,
            &policy,
            T0,
        )
        .unwrap();
    assert!(multi.iter().all(|r| r.is_ok()));
    assert_eq!(store.ack(&a, &[ids[0]]).unwrap(), 1);
    let before = (
        store.totals().unwrap(),
        store.usage(&a).unwrap(),
        store.usage(&b).unwrap(),
    );
    assert_eq!(before.0.envelopes, 51);
    drop(store);

    cluster.crash_and_restart();
    let store = RedisStore::open(&cluster.url()).unwrap();
    assert_eq!(
        (
            store.totals().unwrap(),
            store.usage(&a).unwrap(),
            store.usage(&b).unwrap()
        ),
        before
    );
    let page = store.fetch(&b, 0, 100, usize::MAX, T0).unwrap();
    assert_eq!(page.envelopes.len(), 26);
    assert_eq!(page.envelopes[25].payload, b"b:body");
    // Ids go on from where they were.
    let next = store
        .enqueue(&a, &MessageId([200; 16]), b"after", OPEN, &policy, T0)
        .unwrap();
    assert!(next.id > before.2.last_id);
    assert!(store.take_bundle(&a).unwrap().is_some());
}

/// Fills the store with 8 KiB envelopes for `address` until the server
/// is out of memory; returns their ids.
fn fill(store: &RedisStore, address: &MailboxAddress, first: u32) -> Vec<u64> {
    let mut ids = Vec::new();
    for i in first..first + 10_000 {
        let mut message_id = [0u8; 16];
        message_id[..4].copy_from_slice(&i.to_be_bytes());
        match store.enqueue(
            address,
            &MessageId(message_id),
            &[0xAB; 8192],
            OPEN,
            &QueuePolicy::default(),
            T0,
        ) {
            Ok(stored) => ids.push(stored.id),
            Err(StoreError::DiskFull) => return ids,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the server never filled up");
}

#[test]
fn a_full_server_refuses_envelopes_serves_fetch_and_ack_and_recovers_by_itself() {
    let Some(server) = OwnServer::start(&["--appendonly", "no"]) else {
        return;
    };
    let store = RedisStore::open(&server.url()).unwrap();
    let a = register(&store, 1);
    store
        .with_conn(|conn| {
            let used: String = redis::cmd("INFO").arg("memory").query(conn)?;
            let used: u64 = used
                .lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(1 << 20);
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory")
                .arg(used + (1 << 20))
                .query::<()>(conn)
        })
        .unwrap();
    let ids = fill(&store, &a, 0);
    assert!(ids.len() > 20, "{} envelopes fit", ids.len());
    let totals = store.totals().unwrap();
    assert_eq!(totals.envelopes, ids.len() as u64);
    // A multi-recipient send is refused whole.
    assert!(matches!(
        store.enqueue_many(
            &[to(&a, 200, b"h")],
            &[7; 8192],
            &mut |_| false,
            &QueuePolicy::default(),
            T0
        ),
        Err(StoreError::DiskFull)
    ));
    assert_eq!(store.totals().unwrap(), totals);
    // Everything is delivered, and acknowledged, which frees memory...
    let page = store.fetch(&a, 0, 10_000, usize::MAX, T0).unwrap();
    assert_eq!(page.envelopes.len(), ids.len());
    let half = ids.len() / 2;
    assert_eq!(store.ack(&a, &ids[..half]).unwrap(), half as u32);
    // ...so that envelopes are taken again.
    let again = fill(&store, &a, 100_000);
    assert!(!again.is_empty());
    assert_eq!(
        store.ack(&a, &ids[half..]).unwrap(),
        (ids.len() - half) as u32
    );
    assert_eq!(store.ack(&a, &again).unwrap(), again.len() as u32);
    assert_eq!(store.totals().unwrap(), StoreTotals::default());
}

/// The whole relay on a Redis store: what a sender stored is fetched
/// from another relay process started afterwards on the same store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restarted_between_send_and_fetch_loses_nothing() {
    use crate::{ClientConfig, RelayClient, Server, ServerConfig};
    use sotto_core::{IdentityKeyPair, SignedPreKey};

    let Some(t) = tokio::task::spawn_blocking(test_store).await.unwrap() else {
        return;
    };
    let shared = Arc::new(tokio::task::block_in_place(|| t.another()));
    let relay = Server::bind("127.0.0.1:0", ServerConfig::default(), shared)
        .await
        .unwrap()
        .spawn();
    let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
    let bob = IdentityKeyPair::generate(&mut rng);
    let spk = SignedPreKey::generate(SignedPreKeyId::new(1), &bob, &mut rng);
    let bob_conn = RelayClient::connect(relay.local_addr(), ClientConfig::default())
        .await
        .unwrap();
    bob_conn.authenticate(&bob).await.unwrap();
    bob_conn
        .upload_prekeys(PreKeyUpload::new(Some(&spk), &[]))
        .await
        .unwrap();
    drop(bob_conn);
    let bob_address = MailboxAddress::of(bob.public());
    let alice = RelayClient::connect(relay.local_addr(), ClientConfig::default())
        .await
        .unwrap();
    alice
        .send(&bob_address, MessageId([1; 16]), None, b"sealed envelope")
        .await
        .unwrap();
    drop(alice);
    relay.shutdown().await;

    let store = Arc::new(tokio::task::block_in_place(|| t.another()));
    let relay = Server::bind("127.0.0.1:0", ServerConfig::default(), store)
        .await
        .unwrap()
        .spawn();
    let bob_conn = RelayClient::connect(relay.local_addr(), ClientConfig::default())
        .await
        .unwrap();
    bob_conn.authenticate(&bob).await.unwrap();
    let pending = bob_conn.fetch_pending().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].payload, b"sealed envelope");
    bob_conn.ack(&[pending[0].id]).await.unwrap();
    drop(bob_conn);
    relay.shutdown().await;
    assert_eq!(
        tokio::task::block_in_place(|| t.store.totals()).unwrap(),
        StoreTotals::default()
    );
    tokio::task::block_in_place(|| drop(t));
}
