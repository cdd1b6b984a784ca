//! Per-mailbox limits: over them the sender is told, nothing is dropped.

use std::sync::Arc;

use sotto_relay::{ErrorCode, MailboxLimits, MemoryStore, ServerConfig, SqliteStore};

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
    let alice = connect(addr).await;

    // Count limit.
    for i in 0..3 {
        alice.send(&address(&bob), mid(i), b"small").await.unwrap();
    }
    let err = alice
        .send(&address(&bob), mid(3), b"small")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::MailboxFull));
    // A retry of a queued message is still acknowledged.
    assert!(
        alice
            .send(&address(&bob), mid(0), b"small")
            .await
            .unwrap()
            .duplicate
    );
    // Other mailboxes are unaffected.
    alice
        .send(&address(&identity(5)), mid(3), b"small")
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
        .send(&address(&bob), mid(10), &[1; 600])
        .await
        .unwrap();
    let err = alice
        .send(&address(&bob), mid(11), &[2; 600])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::MailboxFull));
    alice
        .send(&address(&bob), mid(12), &[3; 400])
        .await
        .unwrap();
    let err = alice
        .send(&address(&bob), mid(13), &[4; 1])
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
        .send(&address(&identity(2)), mid(1), b"")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidEnvelope));
    alice.ping().await.unwrap();
    relay.shutdown().await;
}
