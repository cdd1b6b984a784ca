//! The account's device list: made on first use, kept, and published on
//! the relay where anyone can fetch it and check it against the address.
#![cfg(test)]

mod common;

use common::*;
use sotto::core::{DeviceId, SignedDeviceList};
use sotto::relay::{ClientConfig, RelayClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_publishes_the_accounts_device_list() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let alice = client(dir.path(), "alice").await;
    alice.register(&addr).await.unwrap();

    let devices = alice.devices().await.unwrap();
    let account = *alice.address().identity_key();
    assert_eq!(devices.version(), 1);
    assert_eq!(devices.contains(&account), Some(DeviceId::PRIMARY));

    // Anyone can fetch it from the relay and check it against the address.
    let stranger = RelayClient::connect(relay.local_addr(), ClientConfig::default())
        .await
        .unwrap();
    let published = stranger
        .fetch_device_list(&alice.address().mailbox())
        .await
        .unwrap()
        .expect("a published list");
    let verified = SignedDeviceList::from_bytes(&published)
        .unwrap()
        .verify(&account)
        .unwrap();
    assert_eq!(verified, devices);

    // Reconnecting publishes the same list again: accepted, nothing
    // changes, no error.
    alice.disconnect().await;
    let mut events = alice.events();
    alice.connect(&addr).await.unwrap();
    assert_eq!(alice.devices().await.unwrap(), devices);
    while let Ok(Some(event)) =
        tokio::time::timeout(std::time::Duration::from_millis(200), events.next()).await
    {
        assert!(
            !matches!(event, sotto::ClientEvent::Error { .. }),
            "{event:?}"
        );
    }
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_list_of_the_account_on_the_relay_is_taken_on_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let alice = client(dir.path(), "alice").await;
    alice.register(&addr).await.unwrap();
    alice.disconnect().await;

    // Elsewhere the account published version 2 (as the account device
    // does when it links one; here through a second handle on the store).
    let identity = sotto::store::Store::open(
        dir.path().join("alice").join(sotto::PROFILE_DB),
        b"alice",
        &options().store,
    )
    .unwrap()
    .identity()
    .unwrap();
    let laptop = *sotto::core::IdentityKeyPair::from_seed(&[7; 32]).public();
    let v2 = alice
        .devices()
        .await
        .unwrap()
        .with_device(&laptop, 5)
        .unwrap();
    let conn = RelayClient::connect(relay.local_addr(), ClientConfig::default())
        .await
        .unwrap();
    conn.authenticate(&identity).await.unwrap();
    conn.publish_device_list(&v2.sign(&identity).unwrap().to_bytes())
        .await
        .unwrap();

    // Alice's next connection finds the relay's list newer than hers and
    // takes it: it is signed by her account key.
    alice.connect(&addr).await.unwrap();
    assert_eq!(alice.devices().await.unwrap(), v2);
    relay.shutdown().await;
}
