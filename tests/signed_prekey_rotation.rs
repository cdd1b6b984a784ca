//! The client rotates its signed prekey on schedule and publishes the new
//! one; a first message made against the previous one still arrives.
#![cfg(test)]

mod common;

use std::time::Duration;

use common::*;
use sotto::ClientOptions;
use sotto::relay::{ClientConfig, RelayClient};
use sotto::store::SignedPreKeyPolicy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signed_prekey_is_published_and_first_messages_in_flight_still_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    // Due at every check: each connection rotates.
    let rotating = ClientOptions {
        signed_prekeys: SignedPreKeyPolicy {
            rotate_every: Duration::ZERO,
            keep_retired: Duration::from_secs(3600),
        },
        ..options()
    };
    let bob = client_with(dir.path(), "bob", rotating.clone()).await;
    bob.register(&addr).await.unwrap();
    let probe = RelayClient::connect(relay.local_addr(), ClientConfig::default())
        .await
        .unwrap();
    let first = probe
        .fetch_bundle(&bob.address().mailbox())
        .await
        .unwrap()
        .signed_prekey_id;

    // Alice writes first while Bob is away: her first message is made
    // against the signed prekey published now.
    bob.disconnect().await;
    let alice = client(dir.path(), "alice").await;
    alice.register(&addr).await.unwrap();
    alice.add_contact("bob", &bob.address()).await.unwrap();
    alice
        .send("bob", b"made against the old key")
        .await
        .unwrap();

    // Bob comes back: the schedule rotates, the relay serves the new key.
    let mut incoming = bob.incoming();
    bob.connect(&addr).await.unwrap();
    let second = probe
        .fetch_bundle(&bob.address().mailbox())
        .await
        .unwrap()
        .signed_prekey_id;
    assert_ne!(first, second, "the relay serves the rotated signed prekey");
    // And the message made against the previous one is stored.
    expect_texts(&mut incoming, &["made against the old key"]).await;
    relay.shutdown().await;
}
