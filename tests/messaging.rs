//! Two clients on a real loopback relay.
#![cfg(test)]

mod common;

use common::*;
use sotto::{ClientEvent, SendStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_exchange_messages_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    let mut alice_in = alice.incoming();
    let mut bob_in = bob.incoming();

    for round in 0..5 {
        let a = format!("alice says {round}");
        assert_eq!(
            alice.send("bob", a.as_bytes()).await.unwrap().status,
            SendStatus::Accepted
        );
        expect_texts(&mut bob_in, &[&a]).await;
        let b = format!("bob answers {round}");
        bob.send("alice", b.as_bytes()).await.unwrap();
        expect_texts(&mut alice_in, &[&b]).await;
    }
    // Several in a row each way, then interleaved.
    for i in 0..4 {
        alice
            .send("bob", format!("burst {i}").as_bytes())
            .await
            .unwrap();
    }
    expect_texts(&mut bob_in, &["burst 0", "burst 1", "burst 2", "burst 3"]).await;

    assert_eq!(bodies(&alice, "bob").await.len(), 14);
    assert_eq!(bodies(&bob, "alice").await, bodies(&alice, "bob").await);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_recipient_receives_everything_after_reconnecting() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    let mut bob_in = bob.incoming();

    let mut alice_in = alice.incoming();
    alice.send("bob", b"hello").await.unwrap();
    expect_texts(&mut bob_in, &["hello"]).await;
    // Bob answers: his message gives Alice his access key, so the relay
    // queues whatever she sends him (a stranger would get 20 in).
    bob.send("alice", b"hi").await.unwrap();
    expect_texts(&mut alice_in, &["hi"]).await;

    bob.disconnect().await;
    let texts: Vec<String> = (0..25)
        .map(|i| format!("while you were away {i}"))
        .collect();
    for t in &texts {
        assert_eq!(
            alice.send("bob", t.as_bytes()).await.unwrap().status,
            SendStatus::Accepted
        );
    }
    bob.connect(&addr).await.unwrap();
    let expected: Vec<&str> = texts.iter().map(String::as_str).collect();
    expect_texts(&mut bob_in, &expected).await;
    assert_eq!(bodies(&bob, "alice").await.len(), 27);

    // And Bob's reply reaches Alice.
    bob.send("alice", b"back now").await.unwrap();
    expect_texts(&mut alice_in, &["back now"]).await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_written_without_a_relay_waits_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    let mut bob_in = bob.incoming();
    // The session needs the bundle once; after that Alice can write offline.
    alice.send("bob", b"first").await.unwrap();
    expect_texts(&mut bob_in, &["first"]).await;

    alice.disconnect().await;
    assert_eq!(
        alice.send("bob", b"written offline").await.unwrap().status,
        SendStatus::Queued
    );
    let mut events = alice.events();
    alice.connect(&addr).await.unwrap();
    expect_texts(&mut bob_in, &["written offline"]).await;
    // The flush was reported.
    let flushed = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(ClientEvent::OutboxFlushed { count }) = events.next().await {
                return count;
            }
        }
    })
    .await;
    assert_eq!(flushed, Ok(1));
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_message_from_a_stranger_is_kept_under_their_address() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let alice = client(dir.path(), "alice").await;
    let bob = client(dir.path(), "bob").await;
    alice.register(&addr).await.unwrap();
    bob.register(&addr).await.unwrap();
    alice.add_contact("bob", &bob.address()).await.unwrap();
    let mut bob_in = bob.incoming();
    alice.send("bob", b"you don't know me yet").await.unwrap();
    let m = next_message(&mut bob_in).await;
    assert_eq!(m.contact, alice.address());
    assert_eq!(m.name, "");
    // Bob names the sender; the history stays with them.
    bob.add_contact("alice", &alice.address()).await.unwrap();
    assert_eq!(bodies(&bob, "alice").await, vec!["you don't know me yet"]);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_numbers_match_and_verification_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let (alice, bob) = pair(dir.path(), &relay.local_addr().to_string()).await;
    let a = alice.safety_number("bob").await.unwrap();
    let b = bob.safety_number("alice").await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a.digits().len(), 60);
    assert!(!alice.is_verified("bob").await.unwrap());
    alice.mark_verified("bob").await.unwrap();
    assert!(alice.is_verified("bob").await.unwrap());
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_connected_client_stops_its_background_work() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    let bob_clone = bob.clone();
    drop(bob);
    // A clone keeps it alive...
    assert!(bob_clone.is_connected());
    drop(bob_clone);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    // ...and after the last one, nothing receives on Bob's behalf any more:
    // the message waits on the relay for Bob's next session.
    alice.send("bob", b"for later").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let bob = reopen_manual(dir.path(), "bob").await;
    bob.connect(&addr).await.unwrap();
    assert_eq!(bob.fetch_envelopes().await.unwrap().len(), 1);
    relay.shutdown().await;
}
