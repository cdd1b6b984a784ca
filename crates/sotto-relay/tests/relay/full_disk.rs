//! A full disk: SQLite's `max_page_count` (`SqliteOptions::
//! max_database_bytes`) stands in for it, failing writes that need more
//! space with `SQLITE_FULL` as a full disk does. The relay refuses new
//! envelopes with a clear error, keeps delivering and deleting, and takes
//! envelopes again once acknowledgements made room, without a restart.
//! Every storage failure reaches the client as an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use sotto_core::IdentityKey;
use sotto_relay::store::{Access, Enqueued, FetchedPage, MailboxUsage, Swept, TakenBundle};
use sotto_relay::{
    ClientError, ErrorCode, MailboxAddress, MailboxStore, MemoryStore, MessageId, MultiRecipient,
    PreKeyUpload, QueuePolicy, SqliteOptions, SqliteStore, StoreError, StoreTotals, UnixTime,
};

use crate::common::*;

/// 64 pages of 4 KiB: full after a few dozen 8 KiB envelopes.
fn small() -> SqliteOptions {
    SqliteOptions {
        max_database_bytes: Some(256 * 1024),
        ..SqliteOptions::default()
    }
}

fn numbered(i: u32) -> MessageId {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&i.to_be_bytes());
    MessageId(id)
}

/// Sends 8 KiB envelopes to `to` (message ids from `first`) until the relay
/// refuses one; returns how many it took and the refusal.
async fn send_until_refused(
    client: &sotto_relay::RelayClient,
    to: &MailboxAddress,
    first: u32,
) -> (usize, ClientError) {
    for i in first..first + 500 {
        if let Err(e) = client.send(to, numbered(i), None, &[0xAB; 8192]).await {
            return ((i - first) as usize, e);
        }
    }
    panic!("the relay never filled up");
}

#[tokio::test]
async fn on_a_full_disk_sends_are_refused_clearly_while_fetch_and_ack_work_and_sends_resume_by_themselves()
 {
    let dir = tempfile::tempdir().unwrap();
    let store =
        SqliteStore::open_with(dir.path().join("relay.db"), &small(), UnixTime::now()).unwrap();
    let relay = start_with(config(), Arc::new(store)).await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let bob_conn = owner(addr, &bob).await;
    bob_conn.upload_prekeys(prekeys(&bob, 0, 5)).await.unwrap();
    let sender = connect(addr).await;

    let (stored, refused) = send_until_refused(&sender, &address(&bob), 0).await;
    assert!(stored > 5, "{stored} envelopes fit");
    assert_eq!(refused.code(), Some(ErrorCode::StorageFull));
    assert!(refused.to_string().contains("disk is full"), "{refused}");
    // The connection stays, and it stays refused.
    let again = sender
        .send(&address(&bob), numbered(9999), None, &[1; 8192])
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::StorageFull));

    // Bundles are still handed out (that deletes a one-time prekey) and
    // everything queued is still delivered.
    let bundle = sender.fetch_bundle(&address(&bob)).await.unwrap();
    assert!(bundle.one_time_prekey.is_some());
    let pending = bob_conn.fetch_pending().await.unwrap();
    assert_eq!(pending.len(), stored);

    // Acknowledging needs no space, frees it, and sends go through again:
    // no restart.
    let half: Vec<u64> = pending[..stored / 2].iter().map(|e| e.id).collect();
    assert_eq!(bob_conn.ack(&half).await.unwrap() as usize, half.len());
    sender
        .send(&address(&bob), numbered(10_000), None, &[2; 8192])
        .await
        .unwrap();
    let (more, refused) = send_until_refused(&sender, &address(&bob), 20_000).await;
    assert!(
        more + 1 >= half.len() - 1,
        "{more} more after freeing {}",
        half.len()
    );
    assert_eq!(refused.code(), Some(ErrorCode::StorageFull));
    relay.shutdown().await;
}

/// A store whose every method fails once switched on: with a full disk
/// (1) or another backend failure (2).
struct FailingStore {
    inner: MemoryStore,
    failure: AtomicU8,
}

impl FailingStore {
    fn check(&self) -> Result<(), StoreError> {
        match self.failure.load(Ordering::SeqCst) {
            0 => Ok(()),
            1 => Err(StoreError::DiskFull),
            _ => Err(StoreError::Backend("injected failure".into())),
        }
    }
}

impl MailboxStore for FailingStore {
    fn publish_prekeys(
        &self,
        owner: &IdentityKey,
        upload: &PreKeyUpload,
        max_one_time: u32,
    ) -> Result<u32, StoreError> {
        self.check()?;
        self.inner.publish_prekeys(owner, upload, max_one_time)
    }

    fn take_bundle(&self, address: &MailboxAddress) -> Result<Option<TakenBundle>, StoreError> {
        self.check()?;
        self.inner.take_bundle(address)
    }

    fn one_time_prekey_count(&self, address: &MailboxAddress) -> Result<u32, StoreError> {
        self.check()?;
        self.inner.one_time_prekey_count(address)
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
        self.check()?;
        self.inner
            .enqueue(recipient, message_id, payload, access, policy, now)
    }

    fn enqueue_many(
        &self,
        recipients: &[MultiRecipient],
        body: &[u8],
        first_contact: &mut dyn FnMut(usize) -> bool,
        policy: &QueuePolicy,
        now: UnixTime,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        self.check()?;
        self.inner
            .enqueue_many(recipients, body, first_contact, policy, now)
    }

    fn fetch(
        &self,
        address: &MailboxAddress,
        after: u64,
        max_count: usize,
        max_bytes: usize,
        now: UnixTime,
    ) -> Result<FetchedPage, StoreError> {
        self.check()?;
        self.inner.fetch(address, after, max_count, max_bytes, now)
    }

    fn sweep_expired(&self, now: UnixTime, max_count: usize) -> Result<Swept, StoreError> {
        self.check()?;
        self.inner.sweep_expired(now, max_count)
    }

    fn totals(&self) -> Result<StoreTotals, StoreError> {
        self.check()?;
        self.inner.totals()
    }

    fn ack(&self, address: &MailboxAddress, ids: &[u64]) -> Result<u32, StoreError> {
        self.check()?;
        self.inner.ack(address, ids)
    }

    fn usage(&self, address: &MailboxAddress) -> Result<MailboxUsage, StoreError> {
        self.check()?;
        self.inner.usage(address)
    }

    fn publish_device_list(
        &self,
        owner: &MailboxAddress,
        version: u64,
        list: &[u8],
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.publish_device_list(owner, version, list)
    }

    fn device_list(&self, address: &MailboxAddress) -> Result<Option<Vec<u8>>, StoreError> {
        self.check()?;
        self.inner.device_list(address)
    }
}

#[tokio::test]
async fn every_storage_failure_reaches_the_client_as_an_error_never_as_an_ok() {
    let store = Arc::new(FailingStore {
        inner: MemoryStore::new(),
        failure: AtomicU8::new(0),
    });
    let relay = start_with(config(), store.clone()).await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let bob_conn = registered(addr, &bob).await;
    let sender = connect(addr).await;
    let queued = sender
        .send(&address(&bob), mid(1), None, b"queued")
        .await
        .unwrap();

    for (failure, code, words) in [
        (1, ErrorCode::StorageFull, "disk is full"),
        (2, ErrorCode::Internal, "storage failure"),
    ] {
        store.failure.store(failure, Ordering::SeqCst);
        let check = |what: &str, result: Result<(), ClientError>| {
            let e = result.expect_err(what);
            assert_eq!(e.code(), Some(code), "{what}: {e}");
            assert!(e.to_string().contains(words), "{what}: {e}");
        };
        check(
            "send",
            sender
                .send(&address(&bob), mid(2), None, b"refused")
                .await
                .map(drop),
        );
        let recipients = [MultiRecipient::new(
            address(&bob),
            mid(3),
            None,
            b"h".to_vec(),
        )];
        check(
            "send multi",
            sender.send_multi(b"refused", &recipients).await.map(drop),
        );
        check(
            "fetch bundle",
            sender.fetch_bundle(&address(&bob)).await.map(drop),
        );
        check(
            "upload",
            bob_conn
                .upload_prekeys(prekeys(&bob, 10, 2))
                .await
                .map(drop),
        );
        check("fetch", bob_conn.fetch(0, 10).await.map(drop));
        check("ack", bob_conn.ack(&[queued.envelope_id]).await.map(drop));
        check("prekey count", bob_conn.prekey_count().await.map(drop));
        let late = connect(addr).await;
        check(
            "authenticate",
            late.authenticate(&identity(3)).await.map(drop),
        );

        // Nothing was changed, and the connections still work.
        store.failure.store(0, Ordering::SeqCst);
        bob_conn.ping().await.unwrap();
        let pending = bob_conn.fetch_pending().await.unwrap();
        assert_eq!(
            pending.iter().map(|e| e.id).collect::<Vec<_>>(),
            [queued.envelope_id]
        );
    }
    relay.shutdown().await;
}
