//! A small run of the load-and-fault harness (`examples/load.rs`): a dozen
//! clients, the relay process SIGKILLed and restarted, clients killed
//! mid-send and mid-receive; nothing may be lost, duplicated or reordered,
//! and every session must still work afterwards.
#![cfg(test)]

mod common;
#[path = "../examples/load/harness.rs"]
mod harness;

use std::time::Duration;

use common::*;
use sotto::SendStatus;

/// Not a check by itself: the relay process of the run below. The harness
/// starts this test binary again with only this test selected and the
/// `SOTTO_LOAD_RELAY_*` variables set; it then serves as the relay until it
/// is killed. Without those variables it returns at once.
#[test]
fn relay_process() {
    if let Some(result) = harness::relay_child_main() {
        result.unwrap();
    }
}

/// A dozen clients, 10 messages each to 2 contacts, one relay SIGKILL and
/// two client kills; the relay is this test binary's `relay_process`.
fn small_run(seed: u64) -> harness::Config {
    harness::Config {
        clients: 12,
        messages: 10,
        fanout: 2,
        relay_kills: 1,
        relays: 1,
        redis: None,
        client_kills: 2,
        think: Duration::from_millis(20),
        size: 100,
        timeout: Duration::from_secs(120),
        seed,
        dir: None,
        relay_program: std::env::current_exe().unwrap(),
        relay_args: ["relay_process", "--exact", "--test-threads=1", "-q"]
            .map(String::from)
            .to_vec(),
        verbose: true,
        abuse: None,
    }
}

#[test]
fn small_load_with_relay_and_client_kills_loses_and_duplicates_nothing() {
    let config = small_run(7);
    let report = harness::run(&config).unwrap();
    println!("{report}");
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.duplicated, 0, "{report}");
    assert_eq!(report.out_of_order, 0, "{report}");
    assert_eq!(report.phantom, 0, "{report}");
    assert_eq!(report.stuck, 0, "{report}");
    assert_eq!(report.relay_kills, 1, "{report}");
    assert_eq!(report.kills_aimed_send + report.kills_aimed_receive, 2);
    assert!(report.committed >= 12 * 10 - report.interrupted);
    assert_eq!(report.sessions_checked, 24, "{report}");
    assert_eq!(report.sessions_working, report.sessions_checked, "{report}");
    assert!(report.is_clean(), "{report}");
}

/// Three relay processes on one Redis store, clients spread over them
/// through a TCP balancer (each client's front prefers one relay), two of
/// them SIGKILLed in turn under load (their clients reconnect to the
/// others, then the relay comes back): nothing lost, duplicated or
/// reordered. Clients connected to different relays write to each other
/// throughout, so every message that is not caught up after a reconnection
/// reaches its recipient by a push from another process
/// (docs/relay.md §9, "Live push across relays"): without it, messages to
/// clients whose relay never died would wait in the mailbox and the run
/// would not settle.
#[test]
fn three_relays_on_redis_with_relays_killed_lose_and_duplicate_nothing() {
    let Some(redis) = TestRedis::new("load") else {
        return;
    };
    let config = harness::Config {
        relay_kills: 2,
        relays: 3,
        redis: Some(harness::SharedRedis {
            url: redis.url.clone(),
            prefix: redis.prefix.clone(),
        }),
        ..small_run(13)
    };
    let report = harness::run(&config).unwrap();
    println!("{report}");
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.duplicated, 0, "{report}");
    assert_eq!(report.out_of_order, 0, "{report}");
    assert_eq!(report.phantom, 0, "{report}");
    assert_eq!(report.stuck, 0, "{report}");
    assert_eq!(report.relay_kills, 2, "{report}");
    // Every relay served clients.
    assert_eq!(report.relay_connections.len(), 3, "{report}");
    assert!(report.relay_connections.iter().all(|&n| n > 0), "{report}");
    assert_eq!(report.sessions_working, report.sessions_checked, "{report}");
    assert!(report.is_clean(), "{report}");
}

/// The abuse scenario in small: idle floods, slowloris connections and
/// anonymous send floods from other loopback addresses while a dozen
/// honest clients exchange messages. Nothing honest may be lost, and the
/// attackers must have been served and cut off as docs/relay.md §8 says.
/// (The latency comparison needs the large run: docs/reliability.md.)
#[test]
fn small_load_beside_an_attack_loses_nothing() {
    let config = harness::Config {
        relay_kills: 0,
        client_kills: 0,
        think: Duration::from_millis(100),
        abuse: Some(harness::Abuse {
            idle_connections: 120,
            slowloris_connections: 8,
            flood_connections: 2,
            flood_envelope: 16 * 1024,
            flood_max_bytes: 8 << 20,
        }),
        ..small_run(11)
    };
    let report = harness::run(&config).unwrap();
    println!("{report}");
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.sessions_working, report.sessions_checked, "{report}");
    let attack = report.attack.as_ref().unwrap();
    // The idle flood got its address's share (12 + 64 connections at
    // once), and the rest was refused.
    assert!(
        attack.idle_welcomed >= (12 + harness::PER_ADDRESS_MARGIN) as u64,
        "{report}"
    );
    assert!(attack.idle_refused > 0, "{report}");
    assert!(attack.slowloris_bytes > 0, "{report}");
    assert!(attack.flood_envelopes > 0, "{report}");
}

// The two ordering faults the large run found, each on its own.

/// Bodies of Bob's history with Alice once it holds `count` messages.
async fn wait_for_history(bob: &sotto::Client, count: usize) -> Vec<String> {
    tokio::time::timeout(WAIT, async {
        loop {
            let bodies = bodies(bob, "alice").await;
            if bodies.len() >= count {
                return bodies;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every message in time")
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix} {i:03}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_written_while_older_ones_wait_in_the_outbox_do_not_overtake_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    // Bob never writes back: Alice has no access key for him.
    let relay = sqlite_relay_with(&db, unlimited_first_contacts()).await;
    let addr = relay.local_addr();
    let (alice, bob) = pair(dir.path(), &addr.to_string()).await;
    let texts = numbered("message", 0..80);
    // The session starts while the relay is up.
    alice.send("bob", texts[0].as_bytes()).await.unwrap();
    wait_for_history(&bob, 1).await;
    relay.shutdown().await;

    // Written while the relay is down: they wait in Alice's outbox.
    for t in &texts[1..40] {
        let sent = alice.send("bob", t.as_bytes()).await.unwrap();
        assert_eq!(sent.status, SendStatus::Queued);
    }
    // The relay comes back; Alice reconnects by herself and flushes the
    // outbox while she keeps writing.
    let relay = sqlite_relay_on_with(&db, addr, unlimited_first_contacts()).await;
    for t in &texts[40..] {
        alice.send("bob", t.as_bytes()).await.unwrap();
    }
    assert_eq!(wait_for_history(&bob, 80).await, texts);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_messages_do_not_overtake_older_ones_left_by_a_failed_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    // Bob never writes back: Alice has no access key for him.
    let relay = sqlite_relay_with(&db, unlimited_first_contacts()).await;
    let addr = relay.local_addr();
    let (alice, bob) = pair(dir.path(), &addr.to_string()).await;
    bob.disconnect().await;
    let old = numbered("old", 0..100);
    for t in &old {
        alice.send("bob", t.as_bytes()).await.unwrap();
    }

    // Bob reconnects and starts storing his 100 waiting messages...
    let mut bob_in = bob.incoming();
    let connecting = {
        let bob = bob.clone();
        let addr = addr.to_string();
        tokio::spawn(async move { bob.connect(&addr).await })
    };
    next_message(&mut bob_in).await;
    // ...new ones are pushed to him meanwhile, and the relay goes away
    // before he has read the rest of his mailbox.
    let new = numbered("new", 0..5);
    for t in &new {
        alice.send("bob", t.as_bytes()).await.unwrap();
    }
    relay.shutdown().await;
    let _ = connecting.await.unwrap();

    let relay = sqlite_relay_on_with(&db, addr, unlimited_first_contacts()).await;
    let expected: Vec<String> = old.iter().chain(&new).cloned().collect();
    assert_eq!(wait_for_history(&bob, 105).await, expected);
    relay.shutdown().await;
}
