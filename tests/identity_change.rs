//! A contact's identity changes (a new phone, a lost key): the new
//! identity announces which one it replaces, the app shows both safety
//! numbers, its messages stay apart until the user accepts, and a refused
//! or unproven claim changes nothing.
#![cfg(test)]

mod common;

use common::*;
use sotto::{ClientEvent, Error, IdentityChange};

/// A relay, and Alice and Bob who know each other.
async fn alice_and_bob(
    dir: &std::path::Path,
) -> (
    sotto::relay::ServerHandle,
    String,
    sotto::Client,
    sotto::Client,
) {
    let store = std::sync::Arc::new(sotto::relay::MemoryStore::new());
    let relay = relay_with(unlimited_first_contacts(), store).await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir, &addr).await;
    (relay, addr, alice, bob)
}

async fn identity_changed(events: &mut sotto::Events) -> IdentityChange {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(ClientEvent::IdentityChanged(change)) = events.next().await {
                return *change;
            }
        }
    })
    .await
    .expect("an identity change in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_identity_is_kept_apart_until_the_user_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, addr, alice, bob) = alice_and_bob(dir.path()).await;
    let mut alice_in = alice.incoming();
    bob.send("alice", b"old phone").await.unwrap();
    expect_texts(&mut alice_in, &["old phone"]).await;
    alice.mark_verified("bob").await.unwrap();
    let old_number = alice.safety_number("bob").await.unwrap();

    // Bob's new phone: a new profile, a new identity.
    let bob2 = client(dir.path(), "bob2").await;
    bob2.register(&addr).await.unwrap();
    bob2.add_contact("alice", &alice.address()).await.unwrap();
    let mut events = alice.events();
    bob2.announce_identity_change("alice", &bob.address())
        .await
        .unwrap();
    let change = identity_changed(&mut events).await;
    assert_eq!(change.contact, bob.address());
    assert_eq!(change.name, "bob");
    assert_eq!(change.new_address, bob2.address());
    assert_eq!(change.old_safety_number, old_number);
    // The number Alice is shown is the one Bob's new phone shows.
    assert_eq!(
        change.new_safety_number,
        bob2.safety_number("alice").await.unwrap()
    );
    assert_eq!(alice.identity_changes().await.unwrap(), vec![change]);

    // Until accepted, the new identity's messages are not Bob's.
    bob2.send("alice", b"it's me, new phone").await.unwrap();
    let m = next_message(&mut alice_in).await;
    assert_eq!(m.contact, bob2.address());
    assert_eq!(m.name, "");
    assert_eq!(bodies(&alice, "bob").await, vec!["old phone"]);

    // Accepted: "bob" is the new identity, unverified, with its messages.
    alice.accept_identity_change(&bob2.address()).await.unwrap();
    assert_eq!(bodies(&alice, "bob").await, vec!["it's me, new phone"]);
    assert!(!alice.is_verified("bob").await.unwrap());
    assert_ne!(alice.safety_number("bob").await.unwrap(), old_number);
    assert!(alice.identity_changes().await.unwrap().is_empty());
    // The old history stays, under the old address.
    assert_eq!(
        bodies(&alice, &bob.address().to_string()).await,
        vec!["old phone"]
    );
    // Writing to "bob" now reaches the new phone.
    let mut bob2_in = bob2.incoming();
    alice.send("bob", b"welcome back").await.unwrap();
    expect_texts(&mut bob2_in, &["welcome back"]).await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_claim_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, addr, alice, bob) = alice_and_bob(dir.path()).await;
    let mut alice_in = alice.incoming();
    bob.send("alice", b"the real bob").await.unwrap();
    expect_texts(&mut alice_in, &["the real bob"]).await;

    // Mallory claims to be Bob.
    let mallory = client(dir.path(), "mallory").await;
    mallory.register(&addr).await.unwrap();
    mallory
        .add_contact("alice", &alice.address())
        .await
        .unwrap();
    let mut events = alice.events();
    mallory
        .announce_identity_change("alice", &bob.address())
        .await
        .unwrap();
    let change = identity_changed(&mut events).await;
    assert_eq!(change.new_address, mallory.address());
    alice
        .refuse_identity_change(&mallory.address())
        .await
        .unwrap();
    assert!(alice.identity_changes().await.unwrap().is_empty());
    assert!(matches!(
        alice.accept_identity_change(&mallory.address()).await,
        Err(Error::NoIdentityChange)
    ));

    // Bob is still Bob.
    mallory.send("alice", b"from mallory").await.unwrap();
    next_message(&mut alice_in).await;
    assert_eq!(bodies(&alice, "bob").await, vec!["the real bob"]);
    let mut bob_in = bob.incoming();
    alice.send("bob", b"still you").await.unwrap();
    expect_texts(&mut bob_in, &["still you"]).await;
    relay.shutdown().await;
}
