//! Live push across relay processes that share one store on a Redis
//! Cluster (docs/relay.md §9, "Live push across relays"): the enqueue
//! script publishes on the node that serves the mailbox's slot, a plain
//! `PUBLISH` reaches every node, and a relay subscribes through any one.
//! Two servers in this process, each with its own `RedisStore`, stand for
//! two relay processes; the recipient's mailbox is chosen so that its slot
//! is served by a node other than the one the relays subscribe through.
//!
//! The cluster is named by `SOTTO_TEST_REDIS_CLUSTER_URL` (node URLs
//! separated by commas; `.ci/redis-cluster.sh` starts one); without it
//! these tests fail when `CI` is set and are skipped otherwise.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sotto_core::IdentityKeyPair;
use sotto_relay::protocol::MultiRecipient;
use sotto_relay::{RedisOptions, RedisStore, RelayEvent, ServerHandle};

use crate::common::*;

/// The variable that names the test cluster.
const CLUSTER_URL_VAR: &str = "SOTTO_TEST_REDIS_CLUSTER_URL";

/// The test cluster and a fresh key prefix on it; the prefix's keys are
/// deleted on drop.
struct TestCluster {
    url: String,
    prefix: String,
}

impl TestCluster {
    fn new() -> Option<Self> {
        let url = match std::env::var(CLUSTER_URL_VAR) {
            Ok(url) if !url.is_empty() => url,
            _ if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") => {
                panic!(
                    "{CLUSTER_URL_VAR} is not set and CI is: live push on a Redis Cluster needs one \
                     (`.ci/redis-cluster.sh` starts it) and must not pass by being skipped"
                )
            }
            _ => {
                eprintln!(
                    "skipped: set {CLUSTER_URL_VAR}=redis://127.0.0.1:P1,redis://127.0.0.1:P2,... to run it"
                );
                return None;
            }
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let prefix = format!("sotto-cluster-push-{}-{nanos}", std::process::id());
        Some(Self { url, prefix })
    }

    fn nodes(&self) -> Vec<String> {
        self.url.split(',').map(|u| u.trim().to_owned()).collect()
    }

    fn cluster(&self) -> redis::cluster::ClusterConnection {
        redis::cluster::ClusterClient::new(self.nodes())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// The URL of the node the relays subscribe through: the master with
    /// the lowest address (the store tries the masters in that order).
    fn feed_node(&self) -> String {
        let mut nodes = self.nodes();
        nodes.sort();
        nodes.remove(0)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let mut conn = self.cluster();
        let pattern = format!("{}:*", self.prefix);
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _ = redis::cmd("DEL").arg(&keys).query::<()>(&mut conn);
        }
    }
}

/// A relay on the cluster's store: a relay process of its own.
async fn relay(cluster: &TestCluster) -> ServerHandle {
    let options = RedisOptions {
        key_prefix: cluster.prefix.clone(),
        ..RedisOptions::default()
    };
    let store = RedisStore::open_with(&cluster.url, &options).unwrap();
    assert!(store.is_cluster());
    start_with(config(), Arc::new(store)).await
}

/// An identity whose mailbox's slot the node `node` does not serve (it
/// answers MOVED for the mailbox's keys).
fn identity_served_elsewhere(cluster: &TestCluster, node: &str, from: u8) -> IdentityKeyPair {
    let mut conn = redis::Client::open(node).unwrap().get_connection().unwrap();
    for seed in from..=u8::MAX {
        let id = identity(seed);
        let key = format!("{}:{{{}}}:queue", cluster.prefix, address(&id).to_hex());
        let answer: redis::RedisResult<redis::Value> =
            redis::cmd("EXISTS").arg(&key).query(&mut conn);
        if matches!(&answer, Err(e) if e.code() == Some("MOVED")) {
            return id;
        }
    }
    panic!("every identity's mailbox is on {node}");
}

/// The next pushed envelope's payload, skipping prekey notices.
async fn next_payload(events: &mut tokio::sync::mpsc::Receiver<RelayEvent>) -> Vec<u8> {
    loop {
        match next_event(events).await {
            RelayEvent::Envelope(e) => return e.payload,
            RelayEvent::PreKeysLow(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
}

#[tokio::test]
async fn on_a_cluster_a_client_on_one_relay_gets_at_once_what_another_relay_stored() {
    let Some(cluster) = TestCluster::new() else {
        return;
    };
    let (a, b) = (relay(&cluster).await, relay(&cluster).await);
    let feed_node = cluster.feed_node();
    let bob = identity_served_elsewhere(&cluster, &feed_node, 2);
    let carol = identity_served_elsewhere(&cluster, &feed_node, 100);
    // Bob's connection is on relay A, with three one-time prekeys.
    let bob_conn = owner(a.local_addr(), &bob).await;
    bob_conn.upload_prekeys(prekeys(&bob, 0, 3)).await.unwrap();
    let mut events = bob_conn.take_events().unwrap();
    register(b.local_addr(), &carol).await;
    // Relay A listens for Bob's mailbox on the feed node, which does not
    // serve the mailbox's slot: what follows crosses nodes.
    let channel = format!("{}:{{{}}}:changed", cluster.prefix, address(&bob).to_hex());
    let mut feed = redis::Client::open(feed_node.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let (_, subscribers): (String, u64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(&channel)
        .query(&mut feed)
        .unwrap();
    assert_eq!(subscribers, 1, "relay A subscribes on {feed_node}");

    // Alice sends through relay B: each is pushed to Bob on A, once, in
    // order, with no request of his.
    let alice = connect(b.local_addr()).await;
    for i in 0..40u8 {
        alice
            .send(&address(&bob), mid(i), None, &[i; 3])
            .await
            .unwrap();
    }
    for i in 0..40u8 {
        assert_eq!(
            next_payload(&mut events).await,
            [i; 3],
            "pushed once, in order"
        );
    }
    // A multi-recipient send through B reaches Bob on A too (each
    // recipient with its own copy of the body).
    let recipients = [
        MultiRecipient::new(address(&bob), mid(100), None, b"b:".to_vec()),
        MultiRecipient::new(address(&carol), mid(100), None, b"c:".to_vec()),
    ];
    alice.send_multi(b"body", &recipients).await.unwrap();
    assert_eq!(next_payload(&mut events).await, b"b:body");

    // A bundle taken through B with the stock below the threshold: Bob, on
    // A, is told how many one-time prekeys are left (published by relay B
    // itself, on its own connection).
    let stranger = connect(b.local_addr()).await;
    stranger.fetch_bundle(&address(&bob)).await.unwrap();
    loop {
        match next_event(&mut events).await {
            RelayEvent::PreKeysLow(stock) if stock.remaining == 2 => break,
            RelayEvent::PreKeysLow(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }

    // Nothing was pushed twice.
    let pending = bob_conn.fetch_pending().await.unwrap();
    assert_eq!(pending.len(), 41);
    bob_conn.ping().await.unwrap();
    assert!(!matches!(events.try_recv(), Ok(RelayEvent::Envelope(_))));
    // Acknowledged through A, gone for B's clients too.
    let ids: Vec<u64> = pending.iter().map(|e| e.id).collect();
    bob_conn.ack(&ids).await.unwrap();
    let bob_on_b = owner(b.local_addr(), &bob).await;
    assert!(bob_on_b.fetch_pending().await.unwrap().is_empty());
    bob_on_b.close().await;
    bob_conn.close().await;
    a.shutdown().await;
    b.shutdown().await;
}
