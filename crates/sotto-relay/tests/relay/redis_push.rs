//! Live push across relay processes that share one Redis store: a client
//! connected to one relay gets at once what is sent through another
//! (docs/relay.md §9, "Live push across relays"). Two servers in this
//! process, each with its own `RedisStore` (its own connections and its
//! own subscription), stand for two relay processes; the multi-process
//! test with SIGKILLs is `tests/multi_relay.rs` at the workspace root.
//!
//! The Redis server is named by `SOTTO_TEST_REDIS_URL` (`.ci/run` starts
//! one); without it these tests fail when `CI` is set and are skipped
//! otherwise, as the Redis store's own tests.

use std::sync::Arc;
use std::time::Duration;

use sotto_relay::protocol::MultiRecipient;
use sotto_relay::{RedisOptions, RedisStore, RelayEvent, ServerHandle};

use crate::common::*;
use crate::test_redis::TestRedis;

/// Held by each test here for its whole run: one of them makes Redis drop
/// every pub/sub connection on the server, which would cut the others'
/// subscriptions too (a PreKeysLow announced during such a cut is not
/// repeated).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A relay on `redis`'s store: a relay process of its own.
async fn relay(redis: &TestRedis) -> ServerHandle {
    let options = RedisOptions {
        key_prefix: redis.prefix.clone(),
        ..RedisOptions::default()
    };
    let store = RedisStore::open_with(&redis.url, &options).unwrap();
    start_with(config(), Arc::new(store)).await
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
async fn a_client_on_one_relay_gets_at_once_what_another_relay_stored() {
    let Some(redis) = TestRedis::new("redis-push") else {
        return;
    };
    let _alone = ONE_AT_A_TIME.lock().await;
    let (a, b) = (relay(&redis).await, relay(&redis).await);
    let bob = identity(2);
    let carol = identity(3);
    // Bob's connection is on relay A, with three one-time prekeys.
    let bob_conn = owner(a.local_addr(), &bob).await;
    bob_conn.upload_prekeys(prekeys(&bob, 0, 3)).await.unwrap();
    let mut events = bob_conn.take_events().unwrap();
    register(b.local_addr(), &carol).await;

    // Alice sends through relay B: more than one push batch, in order.
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
    // A multi-recipient send through B reaches Bob on A too (and Carol's
    // mailbox, whose owner is offline).
    let recipients = [
        MultiRecipient::new(address(&bob), mid(100), None, b"b:".to_vec()),
        MultiRecipient::new(address(&carol), mid(100), None, b"c:".to_vec()),
    ];
    alice.send_multi(b"body", &recipients).await.unwrap();
    assert_eq!(next_payload(&mut events).await, b"b:body");

    // A bundle taken through B with the stock below the threshold: Bob, on
    // A, is told how many one-time prekeys are left.
    let stranger = connect(b.local_addr()).await;
    stranger.fetch_bundle(&address(&bob)).await.unwrap();
    loop {
        match next_event(&mut events).await {
            RelayEvent::PreKeysLow(stock) if stock.remaining == 2 => break,
            RelayEvent::PreKeysLow(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }

    // Nothing was pushed twice: the queue holds the 41 envelopes, and the
    // events channel nothing more.
    assert_eq!(bob_conn.fetch_pending().await.unwrap().len(), 41);
    bob_conn.ping().await.unwrap();
    assert!(!matches!(events.try_recv(), Ok(RelayEvent::Envelope(_))));
    bob_conn.close().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn pushes_go_on_after_the_subscription_connection_is_cut() {
    let Some(redis) = TestRedis::new("redis-push") else {
        return;
    };
    let _alone = ONE_AT_A_TIME.lock().await;
    let (a, b) = (relay(&redis).await, relay(&redis).await);
    let bob = identity(4);
    let bob_conn = registered(a.local_addr(), &bob).await;
    let mut events = bob_conn.take_events().unwrap();
    let alice = connect(b.local_addr()).await;
    alice
        .send(&address(&bob), mid(1), None, b"before")
        .await
        .unwrap();
    assert_eq!(next_payload(&mut events).await, b"before");

    // Redis drops every pub/sub connection (as on a restart or a network
    // cut); what is sent meanwhile still reaches Bob without a request of
    // his, from the fallback's reads or the new subscription.
    let _: redis::Value = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    for i in 2..6u8 {
        alice
            .send(&address(&bob), mid(i), None, &[i])
            .await
            .unwrap();
        assert_eq!(next_payload(&mut events).await, [i]);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    bob_conn.close().await;
    a.shutdown().await;
    b.shutdown().await;
}

/// The next `PreKeysLow` push, skipping envelopes.
async fn next_low(
    events: &mut tokio::sync::mpsc::Receiver<RelayEvent>,
) -> sotto_relay::protocol::PreKeyStock {
    loop {
        match next_event(events).await {
            RelayEvent::PreKeysLow(stock) => return stock,
            RelayEvent::Envelope(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
}

/// The low-stock signal carries the KEM stock across relays, as within
/// one: a v2 bundle taken through relay B that leaves Bob's one-time KEM
/// prekeys low is pushed to Bob on relay A with the KEM stock it left,
/// which is what the message says (A does not read it again); a message
/// of the form relays used before the KEM stock, `p<remaining>`, still
/// reaches him, its KEM stock read from the store.
#[tokio::test]
async fn the_kem_stock_crosses_relays_with_the_low_stock_signal() {
    use sotto_core::{KemPreKey, KemPreKeyId};
    let Some(redis) = TestRedis::new("redis-push") else {
        return;
    };
    let _alone = ONE_AT_A_TIME.lock().await;
    let (a, b) = (relay(&redis).await, relay(&redis).await);
    let bob = identity(5);
    let bob_conn = owner(a.local_addr(), &bob).await;
    assert!(bob_conn.supports_kem_prekeys());
    let mut events = bob_conn.take_events().unwrap();
    // Nothing published yet: said at login.
    assert_eq!(next_low(&mut events).await.remaining, 0);
    let mut rng = rng();
    let kem: Vec<KemPreKey> = (1..=3)
        .map(|i| KemPreKey::generate(KemPreKeyId::new(i), &bob, &mut rng))
        .collect();
    let upload = prekeys(&bob, 0, 20)
        .with_last_resort_kem_prekey(&kem[0])
        .with_one_time_kem_prekeys(&kem[1..], false);
    bob_conn.upload_prekeys(upload).await.unwrap();

    // Through B: 19 one-time prekeys left (not low at the default
    // threshold of 10), 1 one-time KEM prekey (low).
    let alice = connect(b.local_addr()).await;
    alice.fetch_bundle_v2(&address(&bob)).await.unwrap();
    let stock = next_low(&mut events).await;
    assert_eq!(stock.remaining, 19);
    assert_eq!(stock.kem.map(|k| (k.remaining, k.threshold)), Some((1, 10)));

    // What a message says is what Bob is told, though the store holds
    // more (19 and 1).
    let channel = format!("{}:{{{}}}:changed", redis.prefix, address(&bob).to_hex());
    let _: redis::Value = redis.command(&["PUBLISH", &channel, "p15:0"]);
    let stock = next_low(&mut events).await;
    assert_eq!(stock.remaining, 15);
    assert_eq!(stock.kem.map(|k| k.remaining), Some(0));
    // An owner without KEM prekeys: no KEM stock.
    let _: redis::Value = redis.command(&["PUBLISH", &channel, "p9:-"]);
    let stock = next_low(&mut events).await;
    assert_eq!((stock.remaining, stock.kem), (9, None));
    // The old form: the KEM stock comes from the store.
    let _: redis::Value = redis.command(&["PUBLISH", &channel, "p4"]);
    let stock = next_low(&mut events).await;
    assert_eq!(stock.remaining, 4);
    assert_eq!(stock.kem.map(|k| k.remaining), Some(1));
    bob_conn.close().await;
    a.shutdown().await;
    b.shutdown().await;
}
