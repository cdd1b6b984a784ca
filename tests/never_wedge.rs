//! One message never wedges a conversation: a message too large for the
//! relay is refused at `send` before it is stored; an entry the relay
//! refuses for good is given up and the ones behind it go out; one it
//! refuses for now waits without holding back other conversations and goes
//! out, in order, once the relay takes it; with the relay down, `send`
//! stores and queues (or says clearly why it cannot), and the connection
//! comes back by itself with one event for the outage and one for the end
//! of it.
#![cfg(test)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use sotto::relay::{ServerConfig, StoreError};
use sotto::store::{DeliveryState, SendFailure};
use sotto::{ClientEvent, ClientOptions, Error, SendStatus};

/// A relay whose frames are at most 4 KiB.
fn small_frames() -> ServerConfig {
    ServerConfig {
        max_frame_size: 4096,
        ..ServerConfig::default()
    }
}

/// A relay on an SQLite file, and Alice and Bob with a session (Alice's
/// first message arrived): the relay, its address, both clients and Bob's
/// incoming messages.
async fn talking(
    dir: &std::path::Path,
    db: &std::path::Path,
) -> (
    sotto::relay::ServerHandle,
    std::net::SocketAddr,
    sotto::Client,
    sotto::Client,
    impl tokio_stream::Stream<Item = sotto::IncomingMessage> + Unpin,
) {
    let relay = sqlite_relay(db).await;
    let addr = relay.local_addr();
    let (alice, bob) = pair(dir, &addr.to_string()).await;
    let mut bob_in = bob.incoming();
    alice.send("bob", b"hello").await.unwrap();
    expect_texts(&mut bob_in, &["hello"]).await;
    (relay, addr, alice, bob, bob_in)
}

async fn wait_for<T>(
    events: &mut sotto::Events,
    mut pick: impl FnMut(ClientEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(t) = pick(events.next().await.expect("events open")) {
                return t;
            }
        }
    })
    .await
    .expect("the event in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_large_for_the_relay_is_refused_before_it_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay_with(small_frames(), Arc::new(sotto::relay::MemoryStore::new())).await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    let mut bob_in = bob.incoming();
    alice.send("bob", b"hello").await.unwrap();
    expect_texts(&mut bob_in, &["hello"]).await;

    let big = vec![b'x'; 10_000];
    let Err(Error::MessageTooLarge { len, max }) = alice.send("bob", &big).await else {
        panic!("a 10 kB message went through a relay of 4 KiB frames");
    };
    assert_eq!(len, 10_000);
    assert!(max > 1000 && max < 4096, "{max}");
    // Nothing stored: the history has the first message only.
    assert_eq!(bodies(&alice, "bob").await, vec!["hello"]);

    // The conversation goes on, and the largest message that fits arrives.
    let fits = vec![b'y'; max];
    assert_eq!(
        alice.send("bob", &fits).await.unwrap().status,
        SendStatus::Accepted
    );
    alice.send("bob", b"after").await.unwrap();
    let m = next_message(&mut bob_in).await;
    assert_eq!(m.body.len(), max);
    expect_texts(&mut bob_in, &["after"]).await;

    // Offline, the limit remembered at registration still applies.
    alice.disconnect().await;
    assert!(matches!(
        alice.send("bob", &big).await,
        Err(Error::MessageTooLarge { .. })
    ));
    assert_eq!(
        alice.send("bob", b"queued").await.unwrap().status,
        SendStatus::Queued
    );
    alice.connect(&addr).await.unwrap();
    expect_texts(&mut bob_in, &["queued"]).await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_refused_for_good_is_marked_failed_and_the_next_one_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let (relay, addr, alice, _bob, mut bob_in) = talking(dir.path(), &db).await;

    // Offline, Alice writes a 10 kB message (the relay took 1 MiB frames
    // when she registered) and one after it.
    alice.disconnect().await;
    let big = alice.send("bob", &vec![b'x'; 10_000]).await.unwrap();
    assert_eq!(big.status, SendStatus::Queued);
    alice.send("bob", b"behind it").await.unwrap();

    // The operator lowered the relay's frame limit meanwhile.
    relay.shutdown().await;
    let relay = sqlite_relay_on_with(&db, addr, small_frames()).await;
    let mut events = alice.events();
    alice.connect(&addr.to_string()).await.unwrap();

    let (seq, reason) = wait_for(&mut events, |e| match e {
        ClientEvent::SendFailed { seq, reason, .. } => Some((seq, reason)),
        _ => None,
    })
    .await;
    assert_eq!((seq, reason), (big.seq, SendFailure::TooLarge));
    // The message behind it was not held back.
    expect_texts(&mut bob_in, &["behind it"]).await;
    let items = alice.history("bob", None, 10).await.unwrap();
    let failed = items.iter().find(|i| i.seq == big.seq).unwrap();
    assert_eq!(
        failed.state,
        Some(DeliveryState::Failed(SendFailure::TooLarge))
    );
    // And it is not tried again.
    assert_eq!(alice.flush_outbox().await.unwrap(), 0);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_refused_for_now_waits_alone_and_goes_out_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InterceptingStore::new());
    let relay = relay_with(unlimited_first_contacts(), store.clone()).await;
    let addr = relay.local_addr().to_string();
    let options = ClientOptions {
        outbox_retry_min: Duration::from_millis(50),
        ..options()
    };
    let alice = client_with(dir.path(), "alice", options).await;
    let bob = client(dir.path(), "bob").await;
    let carol = client(dir.path(), "carol").await;
    for c in [&alice, &bob, &carol] {
        c.register(&addr).await.unwrap();
    }
    alice.add_contact("bob", &bob.address()).await.unwrap();
    alice.add_contact("carol", &carol.address()).await.unwrap();
    let mut bob_in = bob.incoming();
    let mut carol_in = carol.incoming();

    // Bob's mailbox is full for a while.
    let full = Arc::new(AtomicBool::new(true));
    let bob_mailbox = bob.address().mailbox();
    let refusing = full.clone();
    *store.refuse_enqueue.lock().unwrap() = Some(Box::new(move |to| {
        (*to == bob_mailbox && refusing.load(Ordering::SeqCst)).then_some(StoreError::MailboxFull {
            envelopes: 1,
            bytes: 1,
            max_envelopes: 1,
            max_bytes: 1,
        })
    }));

    assert_eq!(
        alice.send("bob", b"b1").await.unwrap().status,
        SendStatus::Queued
    );
    // Carol's conversation is not held back by Bob's.
    assert_eq!(
        alice.send("carol", b"c1").await.unwrap().status,
        SendStatus::Accepted
    );
    expect_texts(&mut carol_in, &["c1"]).await;
    assert_eq!(
        alice.send("bob", b"b2").await.unwrap().status,
        SendStatus::Queued
    );

    // Room again: the background retry delivers both, in order, without a
    // reconnection or another send.
    full.store(false, Ordering::SeqCst);
    expect_texts(&mut bob_in, &["b1", "b2"]).await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_relay_down_send_queues_and_the_connection_comes_back_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let (relay, addr, alice, _bob, mut bob_in) = talking(dir.path(), &db).await;
    let carol = client(dir.path(), "carol").await;
    alice.add_contact("carol", &carol.address()).await.unwrap();

    let mut events = alice.events();
    relay.shutdown().await;
    wait_for(&mut events, |e| {
        matches!(e, ClientEvent::Disconnected { .. }).then_some(())
    })
    .await;

    // A session exists: the message is stored and queued.
    assert_eq!(
        alice
            .send("bob", b"written while the relay is down")
            .await
            .unwrap()
            .status,
        SendStatus::Queued
    );
    // A first message needs the relay: refused, clearly, nothing stored.
    assert!(matches!(
        alice.send("carol", b"hi carol").await,
        Err(Error::FirstMessageNeedsRelay(name)) if name == "carol"
    ));
    assert!(bodies(&alice, "carol").await.is_empty());

    // Many reconnection attempts fail meanwhile: no event for any of them.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let relay = sqlite_relay_on(&db, addr).await;
    let sent = wait_for(&mut events, |e| match e {
        ClientEvent::Connected { sent_from_outbox } => Some(sent_from_outbox),
        ClientEvent::Disconnected { reason } => {
            panic!("a second Disconnected during one outage: {reason}")
        }
        _ => None,
    })
    .await;
    assert_eq!(sent, 1);
    expect_texts(&mut bob_in, &["written while the relay is down"]).await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_connected_starts_offline_and_delivers_once_the_relay_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let (relay, addr, alice, _bob, mut bob_in) = talking(dir.path(), &db).await;
    alice.disconnect().await;
    relay.shutdown().await;

    let mut events = alice.events();
    alice.keep_connected(&addr.to_string()).await.unwrap();
    wait_for(&mut events, |e| {
        matches!(e, ClientEvent::Disconnected { .. }).then_some(())
    })
    .await;
    assert_eq!(
        alice.send("bob", b"offline first").await.unwrap().status,
        SendStatus::Queued
    );
    let relay = sqlite_relay_on(&db, addr).await;
    expect_texts(&mut bob_in, &["offline first"]).await;
    assert!(alice.is_connected());
    relay.shutdown().await;
}
