//! Device lists on the relay: only the account publishes its own, versions
//! only move forward, anyone can fetch; a newer list removes the mailboxes
//! of the devices it unlinks.

use std::sync::Arc;

use sotto_core::{Device, DeviceId, DeviceList, IdentityKeyPair, OneTimePreKey, OneTimePreKeyId};
use sotto_relay::{ClientError, ErrorCode, MailboxStore, MemoryStore, PreKeyUpload, SqliteStore};

use crate::common::*;

/// `account`'s list at `version`: its primary device and a second one.
fn list(account: &IdentityKeyPair, version: u64) -> Vec<u8> {
    let devices = vec![
        Device::new(DeviceId::PRIMARY, *account.public(), 1),
        Device::new(DeviceId::new(2), *identity(100).public(), 2),
    ];
    DeviceList::new(*account.public(), version, 1_000 + version, devices)
        .unwrap()
        .sign(account)
        .unwrap()
        .to_bytes()
}

fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>, expected: ErrorCode) {
    match result {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, expected),
        other => panic!("expected {expected:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn the_account_publishes_its_list_and_anyone_fetches_the_newest() {
    let relay = start().await;
    let addr = relay.local_addr();
    let alice = identity(1);
    let mallory = identity(2);
    let alice_conn = registered(addr, &alice).await;
    let stranger = connect(addr).await;

    assert_eq!(
        stranger.fetch_device_list(&address(&alice)).await.unwrap(),
        None
    );
    assert_eq!(
        alice_conn
            .publish_device_list(&list(&alice, 1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        stranger.fetch_device_list(&address(&alice)).await.unwrap(),
        Some(list(&alice, 1))
    );
    // The same list again changes nothing; otherwise only forward.
    assert_eq!(
        alice_conn
            .publish_device_list(&list(&alice, 1))
            .await
            .unwrap(),
        1
    );
    // Another list under the same version (the primary alone).
    let rival = DeviceList::new(
        *alice.public(),
        1,
        5,
        vec![Device::new(DeviceId::PRIMARY, *alice.public(), 1)],
    )
    .unwrap();
    refused(
        alice_conn
            .publish_device_list(&rival.sign(&alice).unwrap().to_bytes())
            .await,
        ErrorCode::StaleDeviceList,
    );
    assert_eq!(
        alice_conn
            .publish_device_list(&list(&alice, 5))
            .await
            .unwrap(),
        5
    );
    refused(
        alice_conn.publish_device_list(&list(&alice, 4)).await,
        ErrorCode::StaleDeviceList,
    );

    // Mallory cannot publish Alice's list (not even a genuine one), and
    // without logging in nobody can publish anything.
    let mallory_conn = registered(addr, &mallory).await;
    refused(
        mallory_conn.publish_device_list(&list(&alice, 9)).await,
        ErrorCode::InvalidDeviceList,
    );
    refused(
        stranger.publish_device_list(&list(&alice, 9)).await,
        ErrorCode::AuthRequired,
    );
    // Bytes that are no list, or a list whose signature does not hold,
    // are refused.
    refused(
        alice_conn.publish_device_list(&[0x02; 50]).await,
        ErrorCode::InvalidDeviceList,
    );
    let mut forged = list(&alice, 9);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    refused(
        alice_conn.publish_device_list(&forged).await,
        ErrorCode::InvalidDeviceList,
    );
    assert_eq!(
        stranger.fetch_device_list(&address(&alice)).await.unwrap(),
        Some(list(&alice, 5))
    );
    relay.shutdown().await;
}

/// `account`'s list at `version`, naming `devices` (ids 1, 2, ...).
fn signed(account: &IdentityKeyPair, version: u64, devices: &[&IdentityKeyPair]) -> Vec<u8> {
    let devices = devices
        .iter()
        .zip(1u32..)
        .map(|(device, id)| Device::new(DeviceId::new(id), *device.public(), 1))
        .collect();
    DeviceList::new(*account.public(), version, 1_000 + version, devices)
        .unwrap()
        .sign(account)
        .unwrap()
        .to_bytes()
}

/// docs/devices.md §5: when the account publishes a list without a device,
/// the relay removes that device's mailbox. Its queue is gone, sends to it
/// are refused as to any unregistered mailbox (`UnknownRecipient`), its
/// bundle is `NotFound`, and logging in as it does not bring the mailbox
/// back: only publishing a signed prekey again (registering afresh) does.
/// The account's own mailbox is untouched.
async fn unlinking_a_device_removes_its_mailbox(store: Arc<dyn MailboxStore>) {
    let relay = start_with(config(), store).await;
    let addr = relay.local_addr();
    let alice = identity(1);
    let laptop = identity(100);
    let laptop_box = address(&laptop);
    let alice_conn = registered(addr, &alice).await;
    // The laptop registers its own mailbox, and stays logged in.
    let laptop_conn = owner(addr, &laptop).await;
    laptop_conn
        .upload_prekeys(prekeys(&laptop, 0, 5))
        .await
        .unwrap();
    alice_conn
        .publish_device_list(&signed(&alice, 1, &[&alice]))
        .await
        .unwrap();
    alice_conn
        .publish_device_list(&signed(&alice, 2, &[&alice, &laptop]))
        .await
        .unwrap();

    // A contact writes to both devices.
    let contact = connect(addr).await;
    for n in 1..=3 {
        contact
            .send(&laptop_box, mid(n), None, b"for the laptop")
            .await
            .unwrap();
    }
    let for_alice = contact
        .send(&address(&alice), mid(9), None, b"for alice")
        .await
        .unwrap();
    assert_eq!(laptop_conn.fetch_pending().await.unwrap().len(), 3);

    // Version 3 unlinks the laptop.
    assert_eq!(
        alice_conn
            .publish_device_list(&signed(&alice, 3, &[&alice]))
            .await
            .unwrap(),
        3
    );
    // Its queue is gone, also for the connection logged in meanwhile.
    assert!(laptop_conn.fetch_pending().await.unwrap().is_empty());
    refused(
        contact
            .send(&laptop_box, mid(4), None, b"for the laptop")
            .await,
        ErrorCode::UnknownRecipient,
    );
    refused(contact.fetch_bundle(&laptop_box).await, ErrorCode::NotFound);
    laptop_conn.close().await;

    // Logging in finds an empty mailbox with no prekeys, and makes no
    // mailbox of it; nor do one-time prekeys alone.
    let laptop_conn = connect(addr).await;
    let info = laptop_conn.authenticate(&laptop).await.unwrap();
    assert_eq!((info.pending_envelopes, info.pending_bytes), (0, 0));
    assert_eq!(info.prekeys.remaining, 0);
    assert!(laptop_conn.fetch_pending().await.unwrap().is_empty());
    let mut rng = rng();
    let one_time = [OneTimePreKey::generate(OneTimePreKeyId::new(50), &mut rng)];
    laptop_conn
        .upload_prekeys(PreKeyUpload::new(None, &one_time))
        .await
        .unwrap();
    refused(
        contact
            .send(&laptop_box, mid(5), None, b"for the laptop")
            .await,
        ErrorCode::UnknownRecipient,
    );
    refused(contact.fetch_bundle(&laptop_box).await, ErrorCode::NotFound);

    // The account's mailbox is untouched: its envelope and its bundle.
    let alice_pending = alice_conn.fetch_pending().await.unwrap();
    assert_eq!(alice_pending.len(), 1);
    assert_eq!(alice_pending[0].id, for_alice.envelope_id);
    assert_eq!(alice_pending[0].payload, b"for alice");
    contact.fetch_bundle(&address(&alice)).await.unwrap();

    // Registering afresh makes a new, empty mailbox.
    laptop_conn
        .upload_prekeys(prekeys(&laptop, 60, 1))
        .await
        .unwrap();
    let fresh = contact
        .send(&laptop_box, mid(1), None, b"after registering again")
        .await
        .unwrap();
    assert!(!fresh.duplicate && fresh.envelope_id > for_alice.envelope_id);
    let pending = laptop_conn.fetch_pending().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].payload, b"after registering again");
    relay.shutdown().await;
}

#[tokio::test]
async fn unlinking_a_device_removes_its_mailbox_in_memory() {
    unlinking_a_device_removes_its_mailbox(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn unlinking_a_device_removes_its_mailbox_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("relay.db")).unwrap();
    unlinking_a_device_removes_its_mailbox(Arc::new(store)).await;
}
