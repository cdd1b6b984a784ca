//! Unidentified access end to end (docs/client.md "Access keys",
//! docs/relay.md §6): a profile publishes its access verifier and puts its
//! access key in every message it sends; whoever it wrote to sends to it
//! without limit, strangers get the relay's first-contact allowance, and
//! what the relay refuses waits in the outbox.
#![cfg(test)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use sotto::relay::{
    Clock, ErrorCode, FirstContactLimit, MemoryStore, MessageId, RelayClient, Server, ServerConfig,
    ServerHandle, UnixTime,
};
use sotto::store::{DeliveryState, ResendPolicy};
use sotto::{Client, ClientOptions, SendStatus};

const BURST: u32 = 5;
const INTERVAL: Duration = Duration::from_secs(180);

/// A clock the test moves by hand.
#[derive(Clone)]
struct TestClock(Arc<AtomicU64>);

impl Clock for TestClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_secs(self.0.load(Ordering::SeqCst))
    }
}

/// A relay whose mailboxes take `BURST` first contacts, then one per
/// `INTERVAL` of `clock`.
async fn relay(clock: &TestClock) -> ServerHandle {
    let config = ServerConfig {
        first_contact: FirstContactLimit {
            burst: BURST,
            interval: INTERVAL,
            ..FirstContactLimit::default()
        },
        ..ServerConfig::default()
    };
    Server::bind("127.0.0.1:0", config, Arc::new(MemoryStore::new()))
        .await
        .unwrap()
        .with_clock(Arc::new(clock.clone()))
        .spawn()
}

fn clock() -> TestClock {
    TestClock(Arc::new(AtomicU64::new(1_800_000_000)))
}

/// Sends `texts` from `from` to `to`, each of which must be accepted by
/// the relay at once.
async fn send_all_delivered(from: &Client, to: &str, texts: &[String]) {
    for t in texts {
        let sent = from.send(to, t.as_bytes()).await.unwrap();
        assert_eq!(sent.status, SendStatus::Accepted, "{t}");
    }
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} {i}")).collect()
}

/// Sends junk to `to` from an anonymous connection until the relay
/// refuses; returns how many envelopes it took.
async fn junk_until_refused(relay: &ServerHandle, to: &Client) -> u32 {
    let stranger = RelayClient::connect(relay.local_addr(), Default::default())
        .await
        .unwrap();
    let mut queued = 0;
    loop {
        let sent = stranger
            .send(
                &to.address().mailbox(),
                MessageId::random().unwrap(),
                None,
                &[0xEE; 64],
            )
            .await;
        match sent {
            Ok(_) => queued += 1,
            Err(e) => {
                assert_eq!(e.code(), Some(ErrorCode::AccessDenied), "{e}");
                return queued;
            }
        }
        assert!(queued <= 1000, "the relay never refused");
    }
}

async fn wait_for_bodies(client: &Client, contact: &str, n: usize) -> Vec<String> {
    tokio::time::timeout(WAIT, async {
        loop {
            let b = bodies(client, contact).await;
            if b.len() >= n {
                return b;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the messages in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_one_message_each_way_both_send_freely_and_strangers_still_get_a_first_contact() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let relay = relay(&clock).await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    let mut alice_in = alice.incoming();
    let mut bob_in = bob.incoming();

    // One message each way: Alice's is a first contact, Bob's carries his
    // key back.
    send_all_delivered(&alice, "bob", &["hello bob".into()]).await;
    expect_texts(&mut bob_in, &["hello bob"]).await;
    send_all_delivered(&bob, "alice", &["hello alice".into()]).await;
    expect_texts(&mut alice_in, &["hello alice"]).await;

    // Then each writes many more than a stranger could, without any
    // refusal: every one is accepted by the relay at once.
    let from_alice = numbered("from alice", 6 * BURST as usize);
    let from_bob = numbered("from bob", 6 * BURST as usize);
    send_all_delivered(&alice, "bob", &from_alice).await;
    send_all_delivered(&bob, "alice", &from_bob).await;
    expect_texts(
        &mut bob_in,
        &from_alice.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    expect_texts(
        &mut alice_in,
        &from_bob.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;

    // Both published their verifier: a stranger gets only the rest of the
    // burst in. Of Bob's allowance, Alice's very first message took one;
    // of Alice's, nothing took any (Bob had her key from that message,
    // receipts included).
    assert_eq!(junk_until_refused(&relay, &alice).await, BURST);
    assert_eq!(junk_until_refused(&relay, &bob).await, BURST - 1);

    // A stranger with a real profile still reaches Alice once her
    // allowance has room again, and the message is kept under its address.
    clock.0.fetch_add(INTERVAL.as_secs(), Ordering::SeqCst);
    let carol = client(dir.path(), "carol").await;
    carol.register(&addr).await.unwrap();
    carol.add_contact("alice", &alice.address()).await.unwrap();
    let sent = carol.send("alice", b"hi, we met at the conference").await;
    assert_eq!(sent.unwrap().status, SendStatus::Accepted);
    let m = next_message(&mut alice_in).await;
    assert_eq!(m.contact, carol.address());
    assert_eq!(m.body, b"hi, we met at the conference");
    // Her next one is over the allowance and waits in her outbox.
    let sent = carol.send("alice", b"are you there?").await.unwrap();
    assert_eq!(sent.status, SendStatus::Queued);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_refused_as_first_contacts_wait_in_the_outbox_and_go_out_in_order_later() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let relay = relay(&clock).await;
    let addr = relay.local_addr().to_string();
    // Alice checks her outbox every 50 ms.
    let quick = ClientOptions {
        resend: ResendPolicy {
            first: Duration::from_millis(100),
            max: Duration::from_secs(1),
        },
        ..options()
    };
    let alice = client_with(dir.path(), "alice", quick).await;
    let bob = client(dir.path(), "bob").await;
    alice.register(&addr).await.unwrap();
    bob.register(&addr).await.unwrap();
    alice.add_contact("bob", &bob.address()).await.unwrap();
    bob.add_contact("alice", &alice.address()).await.unwrap();

    // Bob never wrote to Alice: she has no key for him. The burst goes
    // out, the rest waits in her outbox (not a failure).
    let texts = numbered("unanswered", BURST as usize + 3);
    let mut statuses = Vec::new();
    for t in &texts {
        statuses.push(alice.send("bob", t.as_bytes()).await.unwrap().status);
    }
    let mut expected = vec![SendStatus::Accepted; BURST as usize];
    expected.extend([SendStatus::Queued; 3]);
    assert_eq!(statuses, expected);
    assert_eq!(
        wait_for_bodies(&bob, "alice", BURST as usize).await.len(),
        BURST as usize
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bodies(&bob, "alice").await.len(), BURST as usize);
    assert!(
        alice.is_connected(),
        "the refusal did not cost the connection"
    );

    // One interval later the relay allows one more; Alice's background
    // retry sends exactly the next one.
    clock.0.fetch_add(INTERVAL.as_secs(), Ordering::SeqCst);
    let got = wait_for_bodies(&bob, "alice", BURST as usize + 1).await;
    assert_eq!(got, texts[..=BURST as usize]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bodies(&bob, "alice").await.len(), BURST as usize + 1);

    // Bob answers: his message gives Alice his key, and the rest of her
    // outbox goes out, in order, without waiting for the allowance.
    let mut alice_in = alice.incoming();
    bob.send("alice", b"who is this?").await.unwrap();
    expect_texts(&mut alice_in, &["who is this?"]).await;
    let mut all: Vec<String> = texts.clone();
    all.push("who is this?".into());
    let got = wait_for_bodies(&bob, "alice", all.len()).await;
    // Bob's history: the burst, the one allowed later, his answer, then
    // the two that waited.
    let mut in_bob = texts[..=BURST as usize].to_vec();
    in_bob.push("who is this?".into());
    in_bob.extend_from_slice(&texts[BURST as usize + 1..]);
    assert_eq!(got, in_bob);

    // Nothing is lost or doubled, and everything is confirmed delivered.
    tokio::time::timeout(WAIT, async {
        loop {
            let items = alice.history("bob", None, 100).await.unwrap();
            let states: Vec<_> = items
                .iter()
                .filter(|i| i.outgoing)
                .map(|i| i.state)
                .collect();
            if states.len() == texts.len()
                && states.iter().all(|s| *s == Some(DeliveryState::Delivered))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every message confirmed");
    assert_eq!(bodies(&bob, "alice").await.len(), texts.len() + 1);
    relay.shutdown().await;
}
