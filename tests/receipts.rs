//! End-to-end delivery: the recipient's device confirms what it stored, the
//! sender resends what nobody confirmed, so a relay that loses envelopes
//! costs time, never a message.
#![cfg(test)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sotto::relay::ServerConfig;
use sotto::relay::store::Enqueued;
use sotto::store::{DeliveryState, ResendPolicy};
use sotto::{Client, ClientEvent, ClientOptions};

fn quick_resend() -> ClientOptions {
    ClientOptions {
        resend: ResendPolicy {
            first: Duration::from_millis(300),
            max: Duration::from_secs(1),
        },
        ..options()
    }
}

async fn states(client: &Client, contact: &str) -> Vec<(String, Option<DeliveryState>)> {
    let mut items = client.history(contact, None, 1000).await.unwrap();
    items.reverse();
    items
        .into_iter()
        .filter(|i| i.outgoing)
        .map(|i| (String::from_utf8(i.body.unwrap()).unwrap(), i.state))
        .collect()
}

async fn wait_until<F, Fut>(mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tokio::time::timeout(WAIT, async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recipients_device_confirms_delivery_and_read_receipts_are_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    let mut alice_events = alice.events();
    let mut bob_in = bob.incoming();
    let sent = alice.send("bob", b"hello").await.unwrap();
    expect_texts(&mut bob_in, &["hello"]).await;
    let seqs = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(ClientEvent::Delivered { seqs, .. }) = alice_events.next().await {
                return seqs;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(seqs, vec![sent.seq]);
    assert_eq!(
        states(&alice, "bob").await,
        vec![("hello".to_owned(), Some(DeliveryState::Delivered))]
    );

    // Bob reads it; read receipts are off by default: Alice is not told.
    let bob_seq = bob.history("alice", None, 1).await.unwrap()[0].seq;
    assert!(bob.mark_read("alice", bob_seq).await.unwrap());
    assert!(!bob.mark_read("alice", bob_seq).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        states(&alice, "bob").await[0].1,
        Some(DeliveryState::Delivered)
    );

    // With read receipts on, she is.
    bob.disconnect().await;
    drop(bob);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let bob = reopen(
        dir.path(),
        "bob",
        ClientOptions {
            read_receipts: true,
            ..options()
        },
    )
    .await;
    bob.connect(&addr).await.unwrap();
    let mut bob_in = bob.incoming();
    let second = alice.send("bob", b"read me").await.unwrap();
    expect_texts(&mut bob_in, &["read me"]).await;
    let bob_seq = bob.history("alice", None, 1).await.unwrap()[0].seq;
    bob.mark_read("alice", bob_seq).await.unwrap();
    let read = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(ClientEvent::Read { seqs, .. }) = alice_events.next().await {
                return seqs;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(read, vec![second.seq]);
    assert_eq!(
        states(&alice, "bob").await[1],
        ("read me".to_owned(), Some(DeliveryState::Read))
    );
    relay.shutdown().await;
}

/// The relay accepts envelopes and then loses them (a wiped queue, a
/// corrupted database): for one phase of the conversation, every envelope
/// in both directions is acknowledged to its sender and thrown away. Every
/// message still arrives, exactly once, and ends `Delivered`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_loses_envelopes_costs_time_not_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InterceptingStore::new());
    let losing = Arc::new(Mutex::new(false));
    let lost = Arc::new(Mutex::new(0usize));
    {
        let (losing, lost) = (losing.clone(), lost.clone());
        let mut fake = 1u64 << 40;
        let hook: EnqueueHook = Box::new(move |_, _| {
            if !*losing.lock().unwrap() {
                return None;
            }
            *lost.lock().unwrap() += 1;
            fake += 1;
            Some(Enqueued {
                id: fake,
                duplicate: false,
            })
        });
        *store.on_enqueue.lock().unwrap() = Some(hook);
    }
    let relay = relay_with(ServerConfig::default(), store).await;
    let addr = relay.local_addr().to_string();
    let alice = client_with(dir.path(), "alice", quick_resend()).await;
    let bob = client_with(dir.path(), "bob", quick_resend()).await;
    alice.register(&addr).await.unwrap();
    bob.register(&addr).await.unwrap();
    alice.add_contact("bob", &bob.address()).await.unwrap();
    bob.add_contact("alice", &alice.address()).await.unwrap();

    let mut expected: HashMap<&str, Vec<String>> = HashMap::new();
    let mut say = |who: &'static str, text: String| {
        expected.entry(who).or_default().push(text.clone());
        text
    };
    alice
        .send("bob", say("alice", "before".into()).as_bytes())
        .await
        .unwrap();
    // The relay starts losing everything, receipts and resends included.
    *losing.lock().unwrap() = true;
    for i in 0..5 {
        let t = say("alice", format!("lost a{i}"));
        alice.send("bob", t.as_bytes()).await.unwrap();
        let t = say("bob", format!("lost b{i}"));
        bob.send("alice", t.as_bytes()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    // ... and works again.
    *losing.lock().unwrap() = false;
    let t = say("alice", "after".into());
    alice.send("bob", t.as_bytes()).await.unwrap();
    assert!(*lost.lock().unwrap() >= 10, "the relay did lose envelopes");

    let total = expected["alice"].len() + expected["bob"].len();
    for (client, contact) in [(&alice, "bob"), (&bob, "alice")] {
        wait_until(|| async {
            bodies(client, contact).await.len() >= total
                && states(client, contact)
                    .await
                    .iter()
                    .all(|(_, s)| *s == Some(DeliveryState::Delivered))
        })
        .await;
    }
    for (client, contact, from) in [(&bob, "alice", "alice"), (&alice, "bob", "bob")] {
        let history = bodies(client, contact).await;
        assert_eq!(history.len(), total, "{history:?}");
        for text in &expected[from] {
            assert_eq!(history.iter().filter(|b| *b == text).count(), 1, "{text}");
        }
    }
    relay.shutdown().await;
}
