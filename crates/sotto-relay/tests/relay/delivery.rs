//! Store-and-forward: offline delivery, ack, redelivery, push, restart.

use std::sync::Arc;

use sotto_relay::{RelayEvent, SqliteStore};

use crate::common::*;

#[tokio::test]
async fn offline_mailbox_gets_its_envelopes_in_order_and_acked_ones_are_gone() {
    let relay = start().await;
    let bob = identity(2);
    register(relay.local_addr(), &bob).await;
    let alice = connect(relay.local_addr()).await; // no account needed to send
    let mut ids = Vec::new();
    for (i, payload) in [b"one".as_slice(), b"two", b"three"].iter().enumerate() {
        let receipt = alice
            .send(&address(&bob), mid(i as u8), None, payload)
            .await
            .unwrap();
        assert!(!receipt.duplicate);
        ids.push(receipt.envelope_id);
    }

    let bob_conn = connect(relay.local_addr()).await;
    let info = bob_conn.authenticate(&bob).await.unwrap();
    assert_eq!(info.address, address(&bob));
    assert_eq!(info.pending_envelopes, 3);
    assert_eq!(info.pending_bytes, 11);
    let pending = bob_conn.fetch_pending().await.unwrap();
    assert_eq!(pending.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(pending[0].payload, b"one");
    assert_eq!(pending[2].payload, b"three");

    // Ack two, then disconnect without acking the third.
    assert_eq!(bob_conn.ack(&ids[..2]).await.unwrap(), 2);
    assert_eq!(bob_conn.ack(&ids[..2]).await.unwrap(), 0, "already gone");
    drop(bob_conn);

    // Reconnect: only the unacked one is delivered again.
    let bob_conn = owner(relay.local_addr(), &bob).await;
    let again = bob_conn.fetch_pending().await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, ids[2]);
    assert_eq!(again[0].payload, b"three");
    assert_eq!(bob_conn.ack(&[ids[2]]).await.unwrap(), 1);
    assert!(bob_conn.fetch_pending().await.unwrap().is_empty());
    relay.shutdown().await;
}

#[tokio::test]
async fn fetch_pages_through_a_long_queue() {
    let relay = start_with(
        sotto_relay::ServerConfig {
            fetch_page_size: 4,
            ..config()
        },
        Arc::new(sotto_relay::MemoryStore::new()),
    )
    .await;
    let bob = identity(2);
    register(relay.local_addr(), &bob).await;
    let alice = connect(relay.local_addr()).await;
    for i in 0..10u8 {
        alice
            .send(&address(&bob), mid(i), None, &[i; 5])
            .await
            .unwrap();
    }
    let bob_conn = owner(relay.local_addr(), &bob).await;
    let page = bob_conn.fetch(0, 0).await.unwrap();
    assert_eq!(page.envelopes.len(), 4);
    assert!(page.more);
    let all = bob_conn.fetch_pending().await.unwrap();
    assert_eq!(all.len(), 10);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.payload, [i as u8; 5]);
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn a_connected_owner_gets_new_envelopes_pushed() {
    let relay = start().await;
    let bob = identity(2);
    let bob_conn = registered(relay.local_addr(), &bob).await;
    let mut events = bob_conn.take_events().unwrap();
    assert!(bob_conn.take_events().is_none());
    register(relay.local_addr(), &identity(9)).await;

    let alice = connect(relay.local_addr()).await;
    // More than one push batch (32).
    let mut sent = Vec::new();
    for i in 0..40u8 {
        sent.push(
            alice
                .send(&address(&bob), mid(i), None, &[i; 3])
                .await
                .unwrap()
                .envelope_id,
        );
    }
    let mut pushed = Vec::new();
    while pushed.len() < 40 {
        match next_event(&mut events).await {
            RelayEvent::Envelope(e) => {
                assert_eq!(e.payload, [(pushed.len()) as u8; 3]);
                pushed.push(e.id);
            }
            // Bob uploaded no one-time prekeys: he is told so on authentication.
            RelayEvent::PreKeysLow(stock) => assert_eq!(stock.remaining, 0),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(pushed, sent, "pushed once each, in order");
    // Pushed envelopes stay queued until acked.
    assert_eq!(bob_conn.fetch_pending().await.unwrap().len(), 40);
    assert_eq!(bob_conn.ack(&pushed).await.unwrap(), 40);

    // Another identity's mail is not pushed to Bob.
    alice
        .send(&address(&identity(9)), mid(99), None, b"x")
        .await
        .unwrap();
    bob_conn.ping().await.unwrap();
    assert!(!matches!(events.try_recv(), Ok(RelayEvent::Envelope(_))));
    relay.shutdown().await;
}

#[tokio::test]
async fn resending_a_queued_message_id_stores_nothing_new() {
    let relay = start().await;
    let bob = identity(2);
    register(relay.local_addr(), &bob).await;
    let alice = connect(relay.local_addr()).await;
    let first = alice
        .send(&address(&bob), mid(1), None, b"hello")
        .await
        .unwrap();
    let retry = alice
        .send(&address(&bob), mid(1), None, b"hello")
        .await
        .unwrap();
    assert_eq!(retry.envelope_id, first.envelope_id);
    assert!(retry.duplicate);
    let bob_conn = owner(relay.local_addr(), &bob).await;
    assert_eq!(bob_conn.fetch_pending().await.unwrap().len(), 1);
    relay.shutdown().await;
}

#[tokio::test]
async fn relay_restart_between_send_and_fetch_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let bob = identity(2);

    let relay = start_with(config(), Arc::new(SqliteStore::open(&db).unwrap())).await;
    let bob_conn = owner(relay.local_addr(), &bob).await;
    bob_conn.upload_prekeys(prekeys(&bob, 0, 3)).await.unwrap();
    drop(bob_conn);
    let alice = connect(relay.local_addr()).await;
    let mut sent = Vec::new();
    for i in 0..5u8 {
        let payload = vec![i; 100 + usize::from(i)];
        let receipt = alice
            .send(&address(&bob), mid(i), None, &payload)
            .await
            .unwrap();
        sent.push((receipt.envelope_id, payload));
    }
    drop(alice);
    relay.shutdown().await;

    // A new relay process on the same file.
    let relay = start_with(config(), Arc::new(SqliteStore::open(&db).unwrap())).await;
    let bob_conn = owner(relay.local_addr(), &bob).await;
    let got: Vec<_> = bob_conn
        .fetch_pending()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.id, e.payload))
        .collect();
    assert_eq!(got, sent);
    // The prekey directory survived too.
    let bundle = connect(relay.local_addr())
        .await
        .fetch_bundle(&address(&bob))
        .await
        .unwrap();
    assert_eq!(bundle.one_time_prekey.map(|k| k.0.get()), Some(0));
    // Ids keep increasing across the restart.
    let next = connect(relay.local_addr())
        .await
        .send(&address(&bob), mid(50), None, b"later")
        .await
        .unwrap();
    assert!(next.envelope_id > sent[4].0);
    relay.shutdown().await;
}
