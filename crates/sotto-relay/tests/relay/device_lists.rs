//! Device lists on the relay: only the account publishes its own, versions
//! only move forward, anyone can fetch.

use sotto_relay::{ClientError, ErrorCode};

use crate::common::*;

/// A list header as docs/protocol.md "Device lists" lays it out, for
/// `account` at `version`, with a body the relay does not read.
fn list(account: &sotto_core::IdentityKeyPair, version: u64) -> Vec<u8> {
    let mut out = vec![0x01];
    out.extend_from_slice(account.public().as_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&[0xAB; 60]);
    out
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
    // Only forward.
    refused(
        alice_conn.publish_device_list(&list(&alice, 1)).await,
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

    // Mallory cannot publish Alice's list, and without logging in nobody
    // can publish anything.
    let mallory_conn = registered(addr, &mallory).await;
    refused(
        mallory_conn.publish_device_list(&list(&alice, 9)).await,
        ErrorCode::InvalidDeviceList,
    );
    refused(
        stranger.publish_device_list(&list(&alice, 9)).await,
        ErrorCode::AuthRequired,
    );
    // Bytes that are no list are refused.
    refused(
        alice_conn.publish_device_list(&[0x02; 50]).await,
        ErrorCode::InvalidDeviceList,
    );
    assert_eq!(
        stranger.fetch_device_list(&address(&alice)).await.unwrap(),
        Some(list(&alice, 5))
    );
    relay.shutdown().await;
}
