//! Disappearing messages between two clients on a relay, with a clock the
//! test moves: the timer either side sets reaches the other, messages go
//! from both stores after their time (counted from sending, and from
//! reading for the recipient), and nothing of them is left in any file.
#![cfg(test)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use sotto::{Client, ClientEvent, ClientOptions, Clock, ConversationEvent};

const MINUTE: Duration = Duration::from_secs(60);

fn with_clock(clock: &Clock) -> ClientOptions {
    ClientOptions {
        clock: clock.clone(),
        ..options()
    }
}

async fn clients(dir: &Path, relay: &str, clock: &Clock) -> (Client, Client) {
    let alice = client_with(dir, "alice", with_clock(clock)).await;
    let bob = client_with(dir, "bob", with_clock(clock)).await;
    alice.register(relay).await.unwrap();
    bob.register(relay).await.unwrap();
    alice.add_contact("bob", &bob.address()).await.unwrap();
    bob.add_contact("alice", &alice.address()).await.unwrap();
    (alice, bob)
}

/// Waits for the timer change `client` hears about.
async fn timer_event(events: &mut sotto::Events) -> (Option<Duration>, bool) {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.next().await {
                Some(ClientEvent::DisappearingTimerChanged { timer, by_us, .. }) => {
                    return (timer, by_us);
                }
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    })
    .await
    .expect("a timer change in time")
}

/// The texts of a history (events left out), oldest first.
async fn texts(client: &Client, contact: &str) -> Vec<String> {
    bodies(client, contact)
        .await
        .into_iter()
        .filter(|b| !b.is_empty())
        .collect()
}

/// The timer changes in a history, oldest first, with whether we made
/// them.
async fn timer_events(client: &Client, contact: &str) -> Vec<(u32, bool)> {
    let mut items = client.history(contact, None, 1000).await.unwrap();
    items.reverse();
    items
        .into_iter()
        .filter_map(|i| match i.event {
            Some(ConversationEvent::TimerChanged { seconds }) => Some((seconds, i.outgoing)),
            _ => None,
        })
        .collect()
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if contains(&std::fs::read(&path).unwrap_or_default(), needle) {
                found.push(path);
            }
        }
    }
    found
}

/// The sealed message rows of a profile's store, as the file holds them.
fn sealed_rows(profile: &Path) -> std::collections::HashSet<Vec<u8>> {
    let conn = rusqlite::Connection::open(profile.join(sotto::PROFILE_DB)).unwrap();
    let mut stmt = conn.prepare("SELECT sealed FROM messages").unwrap();
    stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Whether any 32-byte piece of `value` is in any file under `dir`.
fn any_piece_on_disk(dir: &Path, value: &[u8]) -> bool {
    value
        .chunks_exact(32)
        .any(|piece| !files_holding(dir, piece).is_empty())
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} in time"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_disappear_from_both_stores_after_their_time() {
    let dir = tempfile::tempdir().unwrap();
    let relay = sqlite_relay(&dir.path().join("relay.db")).await;
    let addr = relay.local_addr().to_string();
    let clock = Clock::manual(1_800_000_000_000);
    let (alice, bob) = clients(dir.path(), &addr, &clock).await;
    let mut bob_in = bob.incoming();
    let mut bob_events = bob.events();
    alice.send("bob", b"hello, kept").await.unwrap();
    let hello = next_message(&mut bob_in).await;
    bob.mark_read("alice", hello.seq).await.unwrap();

    alice
        .set_disappearing_timer("bob", Some(MINUTE))
        .await
        .unwrap();
    assert_eq!(alice.disappearing_timer("bob").await.unwrap(), Some(MINUTE));
    assert_eq!(timer_event(&mut bob_events).await, (Some(MINUTE), false));
    assert_eq!(bob.disappearing_timer("alice").await.unwrap(), Some(MINUTE));

    alice.send("bob", b"secret-one-7f3a").await.unwrap();
    alice.send("bob", b"secret-two-9c1e").await.unwrap();
    let one = next_message(&mut bob_in).await;
    let two = next_message(&mut bob_in).await;
    assert_eq!(two.body, b"secret-two-9c1e");
    bob.mark_read("alice", one.seq).await.unwrap();

    // Not yet: a second short of the minute.
    clock.advance(MINUTE - Duration::from_secs(1));
    assert_eq!(alice.expire_messages().await.unwrap(), 0);
    assert_eq!(bob.expire_messages().await.unwrap(), 0);
    let (alice_rows, bob_rows) = (
        sealed_rows(&dir.path().join("alice")),
        sealed_rows(&dir.path().join("bob")),
    );
    // The minute is over: Alice's two sent messages go, and the one Bob
    // read; the one he has not read stays.
    clock.advance(Duration::from_secs(2));
    wait_for("Alice's messages to go", async || {
        texts(&alice, "bob").await == ["hello, kept"]
    })
    .await;
    wait_for("Bob's read message to go", async || {
        texts(&bob, "alice").await == ["hello, kept", "secret-two-9c1e"]
    })
    .await;
    // Their sealed rows are gone from the files, not only from the tables:
    // overwritten in the database, and not left in its log.
    for (name, before) in [("alice", alice_rows), ("bob", bob_rows)] {
        let profile = dir.path().join(name);
        let after = sealed_rows(&profile);
        let gone: Vec<_> = before.difference(&after).collect();
        assert!(!gone.is_empty(), "{name}: no row went");
        for row in gone {
            assert!(
                !any_piece_on_disk(&profile, row),
                "{name}: a row is still on disk"
            );
        }
    }

    // Read now, gone a minute later.
    bob.mark_read("alice", two.seq).await.unwrap();
    clock.advance(MINUTE);
    assert_eq!(bob.expire_messages().await.unwrap(), 1);
    assert_eq!(texts(&bob, "alice").await, ["hello, kept"]);

    // Both histories say who set the timer.
    assert_eq!(timer_events(&alice, "bob").await, [(60, true)]);
    assert_eq!(timer_events(&bob, "alice").await, [(60, false)]);
    // No file of either profile, nor of the relay, holds either text.
    alice.disconnect().await;
    bob.disconnect().await;
    drop((alice, bob));
    drop(relay);
    for secret in [&b"secret-one-7f3a"[..], b"secret-two-9c1e"] {
        assert_eq!(
            files_holding(dir.path(), secret),
            Vec::<std::path::PathBuf>::new()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn either_side_changes_the_timer_and_both_end_with_the_later_change() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let clock = Clock::manual(1_800_000_000_000);
    let (alice, bob) = clients(dir.path(), &addr, &clock).await;
    let (mut alice_events, mut bob_events) = (alice.events(), bob.events());
    let mut bob_in = bob.incoming();
    alice.send("bob", b"hello").await.unwrap();
    next_message(&mut bob_in).await;

    alice
        .set_disappearing_timer("bob", Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(
        timer_event(&mut bob_events).await,
        (Some(Duration::from_secs(3600)), false)
    );
    clock.advance(Duration::from_secs(1));
    // Bob changes it back; a part of a second counts as a whole one.
    bob.set_disappearing_timer("alice", Some(Duration::from_millis(29_500)))
        .await
        .unwrap();
    assert_eq!(
        timer_event(&mut alice_events).await,
        (Some(Duration::from_secs(3600)), true)
    );
    assert_eq!(
        timer_event(&mut alice_events).await,
        (Some(Duration::from_secs(30)), false)
    );

    // Both change it at the same instant, Bob while offline: each side
    // ends with the same one of the two.
    bob.disconnect().await;
    alice.set_disappearing_timer("bob", None).await.unwrap();
    bob.set_disappearing_timer("alice", Some(MINUTE))
        .await
        .unwrap();
    bob.connect(&addr).await.unwrap();
    wait_for("the two sides to agree", async || {
        alice.disappearing_timer("bob").await.unwrap()
            == bob.disappearing_timer("alice").await.unwrap()
            && timer_events(&alice, "bob").await.len() >= 3
            && timer_events(&bob, "alice").await.len() >= 3
    })
    .await;
    let agreed = alice.disappearing_timer("bob").await.unwrap();
    assert!(agreed.is_none() || agreed == Some(MINUTE));
    // Turned off: what is read from now on stays.
    alice.set_disappearing_timer("bob", None).await.unwrap();
    wait_for("the timer to be off on Bob's side", async || {
        bob.disappearing_timer("alice").await.unwrap().is_none()
    })
    .await;
    alice.send("bob", b"kept").await.unwrap();
    let kept = next_message(&mut bob_in).await;
    bob.mark_read("alice", kept.seq).await.unwrap();
    clock.advance(MINUTE * 10);
    assert_eq!(bob.expire_messages().await.unwrap(), 0);
    assert_eq!(alice.expire_messages().await.unwrap(), 0);
    assert_eq!(texts(&bob, "alice").await, ["hello", "kept"]);
    // A contact this profile does not know has no timer to set.
    assert!(alice.set_disappearing_timer("carol", None).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_cannot_date_a_change_so_far_ahead_that_no_later_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let now = 1_800_000_000_000;
    // Mallory dates his change at the end of time: a change dated after
    // it could not be, and one dated the same would lose to his if his
    // key sorts higher.
    let honest = Clock::manual(now);
    let ahead = Clock::manual(u64::MAX);
    let alice = client_with(dir.path(), "alice", with_clock(&honest)).await;
    let mallory = client_with(dir.path(), "mallory", with_clock(&ahead)).await;
    alice.register(&addr).await.unwrap();
    mallory.register(&addr).await.unwrap();
    alice
        .add_contact("mallory", &mallory.address())
        .await
        .unwrap();
    mallory
        .add_contact("alice", &alice.address())
        .await
        .unwrap();
    let mut alice_events = alice.events();
    let mut alice_in = alice.incoming();
    mallory.send("alice", b"hi").await.unwrap();
    next_message(&mut alice_in).await;

    mallory
        .set_disappearing_timer("alice", Some(Duration::from_secs(7 * 24 * 3600)))
        .await
        .unwrap();
    assert_eq!(
        timer_event(&mut alice_events).await,
        (Some(Duration::from_secs(7 * 24 * 3600)), false)
    );
    // A minute later by her clock, Alice's own change wins on her side:
    // Mallory's was taken as dated at most a day ahead of her clock.
    honest.advance(MINUTE);
    alice
        .set_disappearing_timer("mallory", Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(
        alice.disappearing_timer("mallory").await.unwrap(),
        Some(Duration::from_secs(10))
    );
    // And her messages go by it.
    alice.send("mallory", b"short-lived").await.unwrap();
    honest.advance(Duration::from_secs(11));
    assert_eq!(alice.expire_messages().await.unwrap(), 1);
    assert_eq!(texts(&alice, "mallory").await, ["hi"]);
}
