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

/// A relay at the smallest frame limit (`MIN_MAX_FRAME_SIZE`) takes the
/// largest upload with one KEM prekey, serves the largest v2 bundle and
/// the longest device list, and sends no frame over the limit it
/// announced (its clients here refuse any).
#[tokio::test]
async fn a_relay_at_the_smallest_frame_limit_takes_a_kem_upload_and_serves_v2_bundles() {
    use sotto_core::{
        AccessKey, KemPreKey, KemPreKeyId, OneTimePreKey, OneTimePreKeyId, ProtocolVersions,
        SignedPreKey, SignedPreKeyId,
    };
    use sotto_relay::protocol::{
        MAX_BUNDLE_V2_FRAME_LEN, MAX_DEVICE_LIST_LEN, MIN_MAX_FRAME_SIZE, MIN_V2_UPLOAD_FRAME_LEN,
        Request,
    };
    use sotto_relay::{ClientConfig, PreKeyUpload, RelayClient};

    let store = Arc::new(MemoryStore::new());
    let relay = start_with(
        ServerConfig {
            max_frame_size: MIN_MAX_FRAME_SIZE,
            ..config()
        },
        store.clone(),
    )
    .await;
    let addr = relay.local_addr();
    let strict = ClientConfig {
        max_incoming_frame: MIN_MAX_FRAME_SIZE,
        ..client_config()
    };
    let bob = identity(2);
    let bob_conn = RelayClient::connect(addr, strict.clone()).await.unwrap();
    assert_eq!(bob_conn.welcome().max_frame_size, MIN_MAX_FRAME_SIZE);
    assert!(bob_conn.supports_kem_prekeys());
    bob_conn.authenticate(&bob).await.unwrap();

    // The largest upload with one KEM prekey: signed prekey, access
    // verifier, the last-resort KEM prekey.
    let mut rng = rng();
    let spk = SignedPreKey::generate(SignedPreKeyId::new(1), &bob, &mut rng);
    let verifier = AccessKey::derive(&bob).unwrap().verifier();
    let first = PreKeyUpload::new(Some(&spk), &[])
        .with_access_verifier(verifier)
        .with_last_resort_kem_prekey(&KemPreKey::generate(KemPreKeyId::new(1), &bob, &mut rng));
    assert_eq!(
        Request::UploadPreKeys(first.clone()).encode(1).len(),
        MIN_V2_UPLOAD_FRAME_LEN
    );
    let stock = bob_conn.upload_prekeys(first).await.unwrap();
    assert_eq!(stock.kem.map(|k| k.remaining), Some(0));
    // Then a one-time KEM prekey and one-time prekeys, in another.
    let opks: Vec<_> = (0..3)
        .map(|i| OneTimePreKey::generate(OneTimePreKeyId::new(i), &mut rng))
        .collect();
    let more = PreKeyUpload::new(None, &opks).with_one_time_kem_prekeys(
        &[KemPreKey::generate(KemPreKeyId::new(2), &bob, &mut rng)],
        false,
    );
    let stock = bob_conn.upload_prekeys(more).await.unwrap();
    assert_eq!(
        (stock.remaining, stock.kem.map(|k| k.remaining)),
        (3, Some(1))
    );

    // The largest v2 bundle: a one-time prekey and a KEM prekey.
    let alice = RelayClient::connect(addr, strict.clone()).await.unwrap();
    let bundle = alice.fetch_bundle_v2(&address(&bob)).await.unwrap();
    bundle.verify().unwrap();
    assert_eq!(bundle.versions, ProtocolVersions::V1_AND_V2);
    assert!(bundle.one_time_prekey.is_some());
    assert_eq!(bundle.encode().len() + 5, MAX_BUNDLE_V2_FRAME_LEN);
    assert_eq!(bundle.kem_prekey.map(|k| k.id.get()), Some(2));
    // The longest device list the protocol carries (as a store shared
    // with relays that took it might hold).
    store
        .publish_device_list(&address(&bob), 1, &[7; MAX_DEVICE_LIST_LEN])
        .unwrap();
    let list = alice.fetch_device_list(&address(&bob)).await.unwrap();
    assert_eq!(list.map(|l| l.len()), Some(MAX_DEVICE_LIST_LEN));
    // Both connections are still open: nothing too long was sent.
    alice.ping().await.unwrap();
    bob_conn.ping().await.unwrap();
    relay.shutdown().await;
}
