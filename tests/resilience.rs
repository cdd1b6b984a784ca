//! Nothing is lost: relay restarts, crashes before the ack, prekey
//! exhaustion, and hostile clients next to honest ones.
#![cfg(test)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use sotto::relay::{MemoryStore, ServerConfig};
use sotto::{ClientEvent, ClientOptions, Fault, SendStatus};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_restarted_between_send_and_fetch_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let relay = sqlite_relay(&db).await;
    let addr = relay.local_addr();
    let (alice, bob) = pair(dir.path(), &addr.to_string()).await;
    let mut bob_in = bob.incoming();
    alice.send("bob", b"before").await.unwrap();
    expect_texts(&mut bob_in, &["before"]).await;

    bob.disconnect().await;
    let texts: Vec<String> = (0..10)
        .map(|i| format!("queued across a restart {i}"))
        .collect();
    for t in &texts {
        assert_eq!(
            alice.send("bob", t.as_bytes()).await.unwrap().status,
            SendStatus::Accepted
        );
    }
    alice.disconnect().await;
    relay.shutdown().await;

    // A new relay process on the same database file.
    let relay = sqlite_relay_on(&db, addr).await;
    bob.connect(&addr.to_string()).await.unwrap();
    let expected: Vec<&str> = texts.iter().map(String::as_str).collect();
    expect_texts(&mut bob_in, &expected).await;
    assert_eq!(bodies(&bob, "alice").await.len(), 11);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reconnect_by_themselves_after_a_relay_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let relay = sqlite_relay(&db).await;
    let addr = relay.local_addr();
    let (alice, bob) = pair(dir.path(), &addr.to_string()).await;
    let mut bob_in = bob.incoming();
    alice.send("bob", b"one").await.unwrap();
    expect_texts(&mut bob_in, &["one"]).await;

    relay.shutdown().await;
    // Written while the relay is down: kept in Alice's outbox.
    assert_eq!(
        alice.send("bob", b"two").await.unwrap().status,
        SendStatus::Queued
    );
    let relay = sqlite_relay_on(&db, addr).await;
    // Both reconnect with backoff; the outbox is flushed, Bob receives.
    expect_texts(&mut bob_in, &["two"]).await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_storing_before_ack_redelivers_into_exactly_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    bob.disconnect().await;
    drop(bob);
    alice.send("bob", b"stored once").await.unwrap();

    // Bob's app stores the message, then dies before acknowledging it.
    let crashing = reopen(
        dir.path(),
        "bob",
        ClientOptions {
            fault: Some(Fault::CrashBeforeAck),
            ..options()
        },
    )
    .await;
    crashing.connect(&addr).await.unwrap();
    assert_eq!(bodies(&crashing, "alice").await, vec!["stored once"]);
    crashing.disconnect().await;
    drop(crashing);

    // The relay still has it and delivers it again: stored exactly once.
    let bob = reopen(dir.path(), "bob", options()).await;
    let pending = {
        let probe = reopen_manual(dir.path(), "bob").await;
        probe.connect(&addr).await.unwrap();
        let n = probe.fetch_envelopes().await.unwrap().len();
        probe.disconnect().await;
        n
    };
    assert_eq!(pending, 1, "the unacknowledged envelope is still queued");
    bob.connect(&addr).await.unwrap();
    assert_eq!(bodies(&bob, "alice").await, vec!["stored once"]);
    // It was acknowledged this time.
    let probe = reopen_manual(dir.path(), "bob").await;
    probe.connect(&addr).await.unwrap();
    assert!(probe.fetch_envelopes().await.unwrap().is_empty());
    probe.disconnect().await;

    // And the session still works both ways.
    let mut alice_in = alice.incoming();
    let mut bob_in = bob.incoming();
    bob.send("alice", b"all good").await.unwrap();
    expect_texts(&mut alice_in, &["all good"]).await;
    alice.send("bob", b"great").await.unwrap();
    expect_texts(&mut bob_in, &["great"]).await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_prekey_exhaustion_still_starts_sessions_and_the_owner_replenishes() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let bob = client_with(
        dir.path(),
        "bob",
        ClientOptions {
            one_time_prekeys: 2,
            ..options()
        },
    )
    .await;
    let mut bob_events = bob.events();
    bob.register(&addr).await.unwrap();
    let mut bob_in = bob.incoming();

    // Four strangers write first: two get one-time prekeys, two start with
    // the signed prekey alone. All four sessions work.
    for i in 0..4 {
        let name = format!("sender{i}");
        let c = client(dir.path(), &name).await;
        c.register(&addr).await.unwrap();
        c.add_contact("bob", &bob.address()).await.unwrap();
        let text = format!("hello from {name}");
        c.send("bob", text.as_bytes()).await.unwrap();
        expect_texts(&mut bob_in, &[&text]).await;
        c.disconnect().await;
    }
    // The relay told Bob his stock was low, and he published more.
    let published = tokio::time::timeout(WAIT, async {
        loop {
            match bob_events.next().await {
                Some(ClientEvent::PreKeysPublished { count }) => return count,
                Some(_) => {}
                None => panic!("event stream ended"),
            }
        }
    })
    .await
    .unwrap();
    assert!(published >= 1);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_flooding_clients_do_not_stop_honest_ones() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr();
    let (alice, bob) = pair(dir.path(), &addr.to_string()).await;
    let mut bob_in = bob.incoming();

    // Hostile connections, bounded in count and time.
    let attack = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for kind in 0..3u8 {
            tasks.push(tokio::spawn(async move {
                for _ in 0..20 {
                    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                        continue;
                    };
                    let bytes: Vec<u8> = match kind {
                        // Garbage.
                        0 => (0..512u32).map(|i| (i * 37 % 251) as u8).collect(),
                        // A frame header announcing 1 GiB.
                        1 => vec![0x40, 0, 0, 0, 1, 2, 3],
                        // A flood of small frames.
                        _ => [0u8, 0, 0, 5, 1, 0, 0, 0, 1].repeat(2000),
                    };
                    let _ =
                        tokio::time::timeout(Duration::from_millis(200), s.write_all(&bytes)).await;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });

    for i in 0..10 {
        let text = format!("through the noise {i}");
        alice.send("bob", text.as_bytes()).await.unwrap();
        expect_texts(&mut bob_in, &[&text]).await;
    }
    attack.await.unwrap();
    // Still serving afterwards.
    alice.send("bob", b"after the attack").await.unwrap();
    expect_texts(&mut bob_in, &["after the attack"]).await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cut_off_at_its_send_budget_reconnects_and_delivers_everything() {
    let dir = tempfile::tempdir().unwrap();
    // A budget of about a dozen messages per connection (and Bob, who
    // never writes back, takes any number of first contacts).
    let relay = relay_with(
        ServerConfig {
            max_frame_size: 4096,
            connection_send_budget: 4096,
            ..unlimited_first_contacts()
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    let mut alice_events = alice.events();
    let mut bob_in = bob.incoming();

    let texts: Vec<String> = (0..40).map(|i| format!("within budget {i}")).collect();
    for t in &texts {
        alice.send("bob", t.as_bytes()).await.unwrap();
    }
    let expected: Vec<&str> = texts.iter().map(String::as_str).collect();
    expect_texts(&mut bob_in, &expected).await;
    assert_eq!(
        bodies(&bob, "alice").await,
        texts,
        "all of them, once, in order"
    );

    // On the way the relay closed Alice's connection, and she came back by
    // herself.
    let mut disconnects = 0;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(200), alice_events.next()).await
    {
        if matches!(event, ClientEvent::Disconnected { .. }) {
            disconnects += 1;
        }
    }
    assert!(disconnects >= 2, "{disconnects} disconnects");
    assert!(alice.is_connected());
    relay.shutdown().await;
}
