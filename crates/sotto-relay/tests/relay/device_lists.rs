//! Device lists on the relay: only the account publishes its own, versions
//! only move forward, anyone can fetch.

use sotto_core::{Device, DeviceId, DeviceList, IdentityKeyPair};
use sotto_relay::{ClientError, ErrorCode};

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

fn refused(result: Result<u64, ClientError>, expected: ErrorCode) {
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
