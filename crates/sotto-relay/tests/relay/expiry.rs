//! Envelopes nobody acknowledges expire: they stop being delivered after
//! `envelope_ttl` and the relay deletes them. Time is a test clock, moved by
//! hand; nothing here waits for an envelope to expire.

use std::sync::Arc;
use std::time::Duration;

use sotto_relay::{MailboxStore, MemoryStore, ServerConfig, SqliteStore, StoreTotals, UnixTime};

use crate::common::*;

const HOUR: Duration = Duration::from_secs(3600);

async fn expire_and_sweep(store: Arc<dyn MailboxStore>) {
    // On an hour boundary, so expiry falls exactly one TTL later.
    let clock = TestClock::at(UnixTime::from_secs(1_800_000_000));
    let relay = start_with_clock(
        ServerConfig {
            envelope_ttl: 24 * HOUR,
            sweep_interval: Duration::from_millis(20),
            ..config()
        },
        store.clone(),
        clock.clone(),
    )
    .await;
    let addr = relay.local_addr();
    let bob = identity(2);
    register(addr, &bob).await;
    let alice = connect(addr).await;
    let old = alice
        .send(&address(&bob), mid(1), None, b"old")
        .await
        .unwrap()
        .envelope_id;
    clock.advance(12 * HOUR);
    let new = alice
        .send(&address(&bob), mid(2), None, b"newer")
        .await
        .unwrap()
        .envelope_id;

    let bob_conn = owner(addr, &bob).await;
    let ids = |envelopes: Vec<sotto_relay::Envelope>| -> Vec<u64> {
        envelopes.iter().map(|e| e.id).collect()
    };
    assert_eq!(ids(bob_conn.fetch_pending().await.unwrap()), [old, new]);

    // One TTL after it was sent, the first is no longer delivered...
    clock.advance(12 * HOUR);
    assert_eq!(ids(bob_conn.fetch_pending().await.unwrap()), [new]);
    // ...and the sweep deletes it and fixes the counters.
    eventually("the expired envelope is swept", || {
        store.totals().unwrap().envelopes == 1
    })
    .await;
    assert_eq!(
        store.totals().unwrap(),
        StoreTotals {
            envelopes: 1,
            bytes: 5
        }
    );
    // A reconnecting owner is told of what is left only.
    let info = connect(addr).await.authenticate(&bob).await.unwrap();
    assert_eq!((info.pending_envelopes, info.pending_bytes), (1, 5));
    assert_eq!(bob_conn.ack(&[old]).await.unwrap(), 0, "already gone");
    // The unexpired one stayed.
    assert_eq!(ids(bob_conn.fetch_pending().await.unwrap()), [new]);

    // Then the second expires too; the relay keeps working.
    clock.advance(12 * HOUR);
    assert!(bob_conn.fetch_pending().await.unwrap().is_empty());
    eventually("everything expired is swept", || {
        store.totals().unwrap() == StoreTotals::default()
    })
    .await;
    let later = alice
        .send(&address(&bob), mid(3), None, b"later")
        .await
        .unwrap()
        .envelope_id;
    assert_eq!(ids(bob_conn.fetch_pending().await.unwrap()), [later]);
    relay.shutdown().await;
}

#[tokio::test]
async fn expired_envelopes_are_not_fetched_and_are_swept_memory() {
    expire_and_sweep(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn expired_envelopes_are_not_fetched_and_are_swept_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("relay.db")).unwrap();
    expire_and_sweep(Arc::new(store)).await;
}
