//! Per-mailbox and store-wide limits: over them the sender is told, nothing
//! is dropped.

use std::sync::Arc;

use sotto_relay::{ErrorCode, MailboxLimits, MailboxStore, MemoryStore, ServerConfig, SqliteStore};

use crate::common::*;

async fn mailbox_full(store: Arc<dyn sotto_relay::MailboxStore>) {
    let relay = start_with(
        ServerConfig {
            mailbox_limits: MailboxLimits {
                max_envelopes: 3,
                max_bytes: 1000,
            },
            ..config()
        },
        store,
    )
    .await;
    let addr = relay.local_addr();
    let bob = identity(2);
    register(addr, &bob).await;
    register(addr, &identity(5)).await;
    let alice = connect(addr).await;

    // Count limit.
    for i in 0..3 {
        alice
            .send(&address(&bob), mid(i), None, b"small")
            .await
            .unwrap();
    }
    let err = alice
        .send(&address(&bob), mid(3), None, b"small")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::MailboxFull));
    // A retry of a queued message is still acknowledged.
    assert!(
        alice
            .send(&address(&bob), mid(0), None, b"small")
            .await
            .unwrap()
            .duplicate
    );
    // Other mailboxes are unaffected.
    alice
        .send(&address(&identity(5)), mid(3), None, b"small")
        .await
        .unwrap();

    // Bob drains one; there is room again.
    let bob_conn = owner(addr, &bob).await;
    let pending = bob_conn.fetch_pending().await.unwrap();
    assert_eq!(pending.len(), 3, "nothing was dropped");
    bob_conn
        .ack(&[pending[0].id, pending[1].id, pending[2].id])
        .await
        .unwrap();

    // Byte limit.
    alice
        .send(&address(&bob), mid(10), None, &[1; 600])
        .await
        .unwrap();
    let err = alice
        .send(&address(&bob), mid(11), None, &[2; 600])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::MailboxFull));
    alice
        .send(&address(&bob), mid(12), None, &[3; 400])
        .await
        .unwrap();
    let err = alice
        .send(&address(&bob), mid(13), None, &[4; 1])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::MailboxFull));
    let pending = bob_conn.fetch_pending().await.unwrap();
    assert_eq!(pending.iter().map(|e| e.payload.len()).sum::<usize>(), 1000);
    relay.shutdown().await;
}

#[tokio::test]
async fn mailbox_full_over_the_count_and_byte_limits_memory() {
    mailbox_full(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn mailbox_full_over_the_count_and_byte_limits_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    mailbox_full(Arc::new(
        SqliteStore::open(dir.path().join("r.db")).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn empty_envelopes_are_refused() {
    let relay = start().await;
    let alice = connect(relay.local_addr()).await;
    let err = alice
        .send(&address(&identity(2)), mid(1), None, b"")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidEnvelope));
    alice.ping().await.unwrap();
    relay.shutdown().await;
}

async fn storage_full(store: Arc<dyn MailboxStore>) {
    let relay = start_with(
        ServerConfig {
            max_total_bytes: 3000,
            ..config()
        },
        store.clone(),
    )
    .await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let carol = identity(3);
    let bob_conn = registered(addr, &bob).await;
    register(addr, &carol).await;
    let alice = connect(addr).await;

    // Two mailboxes, well within their own limits, fill the relay.
    alice
        .send(&address(&bob), mid(1), None, &[1; 1000])
        .await
        .unwrap();
    alice
        .send(&address(&carol), mid(2), None, &[2; 1000])
        .await
        .unwrap();
    alice
        .send(&address(&bob), mid(3), None, &[3; 1000])
        .await
        .unwrap();
    let err = alice
        .send(&address(&carol), mid(4), None, &[4; 1])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::StorageFull));
    assert!(err.to_string().contains("storage is full"), "{err}");
    // Not fatal, and a retry of a queued message is still acknowledged.
    alice.ping().await.unwrap();
    assert!(
        alice
            .send(&address(&bob), mid(1), None, &[1; 1000])
            .await
            .unwrap()
            .duplicate
    );
    assert_eq!(store.totals().unwrap().bytes, 3000);

    // At the limit, Fetch and Ack work: nothing was dropped, and an ack
    // frees space for anyone's mail.
    let pending = bob_conn.fetch_pending().await.unwrap();
    assert_eq!(pending.len(), 2, "nothing queued was dropped");
    assert_eq!(bob_conn.ack(&[pending[0].id]).await.unwrap(), 1);
    assert_eq!(store.totals().unwrap().bytes, 2000);
    alice
        .send(&address(&carol), mid(4), None, &[4; 1000])
        .await
        .unwrap();
    let err = alice
        .send(&address(&bob), mid(5), None, &[5; 1])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::StorageFull));
    let carol_conn = owner(addr, &carol).await;
    let carols = carol_conn.fetch_pending().await.unwrap();
    assert_eq!(carols.len(), 2);
    let ids: Vec<u64> = carols.iter().map(|e| e.id).collect();
    assert_eq!(carol_conn.ack(&ids).await.unwrap(), 2);
    alice
        .send(&address(&bob), mid(5), None, &[5; 1000])
        .await
        .unwrap();
    assert_eq!(bob_conn.fetch_pending().await.unwrap().len(), 2);
    relay.shutdown().await;
}

#[tokio::test]
async fn at_the_storage_limit_sends_are_refused_while_fetch_and_ack_free_space_memory() {
    storage_full(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn at_the_storage_limit_sends_are_refused_while_fetch_and_ack_free_space_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    storage_full(Arc::new(
        SqliteStore::open(dir.path().join("r.db")).unwrap(),
    ))
    .await;
}
