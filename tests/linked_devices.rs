//! Linked devices through a real relay: linking, fan-out to every device,
//! "sent" copies, device lists learned by contacts, unlinking.
#![cfg(test)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use sotto::core::DeviceId;
use sotto::relay::MailboxAddress;
use sotto::{Client, ClientEvent, Events};

const LINK_WAIT: Duration = Duration::from_secs(20);

/// Links a new profile `name` to `primary`'s account over the relay at
/// `relay`, then opens it again as the account's device and connects it.
async fn link(dir: &Path, relay: &str, primary: &Client, name: &str) -> Client {
    let laptop = client(dir, name).await;
    laptop.register(relay).await.unwrap();
    let code = laptop.start_linking().await.unwrap();
    // The code round-trips through its text, as a user would type it.
    let code: sotto::core::LinkCode = code.to_string().parse().unwrap();
    let waiting = {
        let laptop = laptop.clone();
        tokio::spawn(async move { laptop.wait_for_link(LINK_WAIT).await })
    };
    let linked = primary.link_device(&code, LINK_WAIT).await.unwrap();
    let joined = waiting.await.unwrap().unwrap();
    assert_eq!(joined.account, primary.address());
    assert_eq!(joined.device, linked.id);
    laptop.disconnect().await;
    drop(laptop);
    let laptop = reopen(dir, name, options()).await;
    assert_eq!(laptop.address(), primary.address());
    assert_eq!(laptop.device_id(), linked.id);
    laptop.connect(relay).await.unwrap();
    laptop
}

/// Alice and Bob (see `pair`) on a relay whose storage the test controls.
async fn hostile_pair(
    dir: &Path,
) -> (
    std::sync::Arc<InterceptingStore>,
    sotto::relay::ServerHandle,
    String,
    Client,
    Client,
) {
    let store = std::sync::Arc::new(InterceptingStore::new());
    let relay = relay_with(unlimited_first_contacts(), store.clone()).await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir, &addr).await;
    (store, relay, addr, alice, bob)
}

/// The relay mailbox of `device`, a device of `account`'s account: its
/// device key's.
async fn mailbox_of(account: &Client, device: &Client) -> MailboxAddress {
    let devices = account.devices().await.unwrap();
    MailboxAddress::of(&devices.device(device.device_id()).unwrap().identity)
}

/// The next event `pick` selects, within the test's patience.
async fn next_event<T>(events: &mut Events, mut pick: impl FnMut(ClientEvent) -> Option<T>) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.next().await.expect("events open");
            if let Some(t) = pick(event) {
                return t;
            }
        }
    })
    .await
    .expect("the event in time")
}

fn copy_text(event: ClientEvent) -> Option<String> {
    match event {
        ClientEvent::SentFromOtherDevice(m) => Some(String::from_utf8(m.body).unwrap()),
        _ => None,
    }
}

fn message_text(event: ClientEvent) -> Option<String> {
    match event {
        ClientEvent::Message(m) => Some(String::from_utf8(m.body).unwrap()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_by_two_devices_each_message_reaches_every_other_device_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    let alice_laptop = link(dir.path(), &addr, &alice, "alice-laptop").await;
    let bob_laptop = link(dir.path(), &addr, &bob, "bob-laptop").await;
    assert_eq!(alice.devices().await.unwrap().devices().len(), 2);
    assert_eq!(
        alice_laptop.devices().await.unwrap(),
        alice.devices().await.unwrap()
    );

    let mut bob_events = bob.events();
    let mut bob_laptop_events = bob_laptop.events();
    let mut alice_events = alice.events();
    let mut alice_laptop_events = alice_laptop.events();

    // From Alice's phone: both of Bob's devices, and a copy on her laptop.
    alice.send("bob", b"one").await.unwrap();
    assert_eq!(next_event(&mut bob_events, message_text).await, "one");
    assert_eq!(
        next_event(&mut bob_laptop_events, message_text).await,
        "one"
    );
    assert_eq!(next_event(&mut alice_laptop_events, copy_text).await, "one");

    // From Bob's laptop (which knows Alice only from her message): both
    // of Alice's devices, and a copy on his phone.
    let alice_address = alice.address().to_string();
    bob_laptop.send(&alice_address, b"two").await.unwrap();
    assert_eq!(next_event(&mut alice_events, message_text).await, "two");
    assert_eq!(
        next_event(&mut alice_laptop_events, message_text).await,
        "two"
    );
    assert_eq!(next_event(&mut bob_events, copy_text).await, "two");

    // From Alice's laptop.
    let bob_address = bob.address().to_string();
    alice_laptop.send(&bob_address, b"three").await.unwrap();
    assert_eq!(next_event(&mut bob_events, message_text).await, "three");
    assert_eq!(
        next_event(&mut bob_laptop_events, message_text).await,
        "three"
    );
    assert_eq!(next_event(&mut alice_events, copy_text).await, "three");

    // Every device has the same conversation, once each, in order.
    let expected = vec!["one", "two", "three"];
    assert_eq!(bodies(&alice, "bob").await, expected);
    assert_eq!(bodies(&bob, "alice").await, expected);
    assert_eq!(bodies(&alice_laptop, &bob_address).await, expected);
    assert_eq!(bodies(&bob_laptop, &alice_address).await, expected);
    // One safety number per pair of accounts, whichever device shows it.
    assert_eq!(
        alice.safety_number("bob").await.unwrap(),
        alice_laptop.safety_number(&bob_address).await.unwrap()
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlinked_device_gets_nothing_new_and_contacts_learn_it() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    let alice_laptop = link(dir.path(), &addr, &alice, "alice-laptop").await;
    let laptop_id = alice_laptop.device_id();
    let mut laptop_events = alice_laptop.events();
    let mut bob_events = bob.events();
    let mut alice_events = alice.events();

    bob.send("alice", b"before").await.unwrap();
    assert_eq!(next_event(&mut laptop_events, message_text).await, "before");
    assert_eq!(next_event(&mut alice_events, message_text).await, "before");

    let change = alice.unlink_device(laptop_id).await.unwrap();
    assert_eq!(change.removed, vec![laptop_id]);
    // The laptop learns it was unlinked; Bob that Alice's list changed.
    next_event(&mut laptop_events, |e| {
        matches!(e, ClientEvent::Unlinked).then_some(())
    })
    .await;
    let removed = next_event(&mut bob_events, |e| match e {
        ClientEvent::DevicesChanged {
            removed,
            own: false,
            ..
        } => Some(removed),
        _ => None,
    })
    .await;
    assert_eq!(removed, vec![laptop_id]);

    bob.send("alice", b"after").await.unwrap();
    assert_eq!(next_event(&mut alice_events, message_text).await, "after");
    alice.send("bob", b"from the phone").await.unwrap();
    assert_eq!(
        next_event(&mut bob_events, message_text).await,
        "from the phone"
    );
    // Nothing new reached the laptop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bob_address = bob.address().to_string();
    assert_eq!(bodies(&alice_laptop, &bob_address).await, vec!["before"]);
    assert_eq!(
        alice.devices().await.unwrap().devices().len(),
        1,
        "the phone alone"
    );
    assert!(alice.devices().await.unwrap().device(laptop_id).is_none());
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_account_device_links_and_a_used_profile_cannot_be_linked() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    let laptop = link(dir.path(), &addr, &alice, "alice-laptop").await;
    // A profile with contacts cannot become someone's device.
    assert!(matches!(
        bob.start_linking().await,
        Err(sotto::Error::NotLinkable)
    ));
    // A linked device links nothing, unlinks nothing, and is linked once.
    assert!(matches!(
        laptop.start_linking().await,
        Err(sotto::Error::NotLinkable)
    ));
    assert!(matches!(
        laptop.unlink_device(DeviceId::PRIMARY).await,
        Err(sotto::Error::NotAccountDevice)
    ));
    // Nor does it export an archive: restored, its device key would be
    // taken for an account of its own.
    let archive = dir.path().join("laptop.sottoarchive");
    assert!(matches!(
        laptop
            .export_history(&archive, b"archive pass", |_| {})
            .await,
        Err(sotto::Error::NotAccountDevice)
    ));
    assert!(!archive.exists());
    let other = client(dir.path(), "other").await;
    other.register(&addr).await.unwrap();
    let code = other.start_linking().await.unwrap();
    assert!(matches!(
        laptop.link_device(&code, LINK_WAIT).await,
        Err(sotto::Error::NotAccountDevice)
    ));
    // Nobody answers an offer for a code nobody shows: it times out and
    // nothing changes.
    let stranger = client(dir.path(), "stranger").await;
    stranger.register(&addr).await.unwrap();
    let unshown = stranger.start_linking().await.unwrap();
    stranger.disconnect().await;
    assert!(matches!(
        alice
            .link_device(&unshown, Duration::from_millis(500))
            .await,
        Err(sotto::Error::LinkTimedOut)
    ));
    assert_eq!(alice.devices().await.unwrap().devices().len(), 2);
    relay.shutdown().await;
}

/// A relay that serves a forged device list for Bob — his real list with a
/// device of its own added, signed by a key that is not Bob's — gets
/// nothing encrypted to that device, and a message the relay sends "from
/// Bob's new device" is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_device_list_gets_nothing_encrypted_to_its_device() {
    use sotto::core::{DeviceList, IdentityKeyPair};
    use sotto::relay::MailboxAddress;
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let (store, relay, addr, alice, bob) = hostile_pair(dir.path()).await;
    // The relay's own device: a profile it registered, whose key it holds.
    let mallory = client(dir.path(), "mallory").await;
    mallory.register(&addr).await.unwrap();
    let mallory_key = *mallory.address().identity_key();
    let mallory_mailbox = MailboxAddress::of(&mallory_key);

    let bob_key = *bob.address().identity_key();
    let real = bob.devices().await.unwrap();
    let forged_list = DeviceList::new(
        bob_key,
        real.version() + 1,
        0,
        vec![
            real.devices()[0],
            sotto::core::Device::new(DeviceId::new(9), mallory_key, 0),
        ],
    )
    .unwrap();
    // Signed with a key the relay holds (it cannot sign with Bob's).
    let relay_key = IdentityKeyPair::from_seed(&[42; 32]);
    let mut forged = forged_list.to_bytes();
    let mut signed = b"sotto/device-list/v1".to_vec();
    signed.extend_from_slice(&forged);
    forged.extend_from_slice(relay_key.sign(&signed).as_bytes());
    store
        .device_lists
        .lock()
        .unwrap()
        .insert(MailboxAddress::of(&bob_key), forged);
    let to_mallory = Arc::new(Mutex::new(0usize));
    {
        let to_mallory = to_mallory.clone();
        *store.on_enqueue.lock().unwrap() = Some(Box::new(move |to, _| {
            if *to == mallory_mailbox {
                *to_mallory.lock().unwrap() += 1;
            }
            None
        }));
    }

    let mut bob_in = bob.incoming();
    alice.send("bob", b"for bob's devices only").await.unwrap();
    expect_texts(&mut bob_in, &["for bob's devices only"]).await;
    assert_eq!(*to_mallory.lock().unwrap(), 0);
    assert_eq!(alice.contact_devices("bob").await.unwrap(), None);

    // The relay's device writes to Alice as "device 9 of Bob".
    let mut alice_events = alice.events();
    mallory
        .send_device_message_claiming(
            &bob_key,
            DeviceId::new(9),
            &alice.address(),
            b"it's me, bob",
        )
        .await
        .unwrap();
    let reason = next_event(&mut alice_events, |e| match e {
        ClientEvent::Dropped { reason } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, sotto::DropReason::UnknownDevice);
    assert!(
        !bodies(&alice, "bob")
            .await
            .contains(&"it's me, bob".to_owned())
    );
    relay.shutdown().await;
}

/// A large message goes to every device with its body encrypted once
/// (detached); a relay that alters the detached body costs that envelope
/// alone on that device, and what follows still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_reaches_every_device_and_an_altered_body_costs_only_itself() {
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let (store, relay, addr, alice, bob) = hostile_pair(dir.path()).await;
    let alice_laptop = link(dir.path(), &addr, &alice, "alice-laptop").await;
    let mut bob_events = bob.events();
    let mut laptop_events = alice_laptop.events();

    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    alice.send("bob", &big).await.unwrap();
    let got = next_event(&mut bob_events, |e| match e {
        ClientEvent::Message(m) => Some(m.body),
        _ => None,
    })
    .await;
    assert_eq!(got, big);
    let copy = next_event(&mut laptop_events, |e| match e {
        ClientEvent::SentFromOtherDevice(m) => Some(m.body),
        _ => None,
    })
    .await;
    assert_eq!(copy, big);

    // The relay swallows the next large envelope for Bob and queues it
    // again with a bit of its detached body flipped.
    let bob_mailbox = bob.address().mailbox();
    let swallowed = Arc::new(Mutex::new(None::<Vec<u8>>));
    {
        let swallowed = swallowed.clone();
        *store.on_enqueue.lock().unwrap() = Some(Box::new(move |to, bytes| {
            let mut swallowed = swallowed.lock().unwrap();
            if *to == bob_mailbox
                && bytes.first() == Some(&sotto::DETACHED_FRAME)
                && swallowed.is_none()
            {
                *swallowed = Some(bytes.to_vec());
                return Some(sotto::relay::store::Enqueued {
                    id: u64::MAX / 2,
                    duplicate: false,
                });
            }
            None
        }));
    }
    alice.send("bob", &big[..100_000]).await.unwrap();
    let mut altered = swallowed.lock().unwrap().clone().expect("swallowed");
    let last = altered.len() - 1;
    altered[last] ^= 1;
    let attacker = sotto::relay::RelayClient::connect(
        relay.local_addr(),
        sotto::relay::ClientConfig::default(),
    )
    .await
    .unwrap();
    attacker
        .send(
            &bob.address().mailbox(),
            sotto::relay::MessageId::random().unwrap(),
            None,
            &altered,
        )
        .await
        .unwrap();
    next_event(&mut bob_events, |e| match e {
        ClientEvent::Undecryptable { .. } => Some(()),
        ClientEvent::Message(m) => panic!("an altered body was taken: {m:?}"),
        _ => None,
    })
    .await;
    // Bob asked for it again (a message from Alice's primary device): her
    // resend, under a new body key, arrives whole; so does what follows.
    let resent = next_event(&mut bob_events, |e| match e {
        ClientEvent::Message(m) => Some(m.body),
        _ => None,
    })
    .await;
    assert_eq!(resent, &big[..100_000]);
    alice.send("bob", b"after it").await.unwrap();
    assert_eq!(next_event(&mut bob_events, message_text).await, "after it");
    relay.shutdown().await;
}

/// Alice's history, filled straight into her store (the relay would take
/// minutes to carry it): `n` messages with Bob, alternating directions.
async fn fill_history(dir: &Path, name: &str, contact: &str, n: usize) {
    use sotto::store::{DeliveryState, Direction, NewMessage, Store};
    let path = dir.join(name).join(sotto::PROFILE_DB);
    let mut store = Store::open(&path, name.as_bytes(), &options().store).unwrap();
    let bodies: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("history message {i:05} {}", "x".repeat(170)).into_bytes())
        .collect();
    let messages: Vec<NewMessage<'_>> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| NewMessage {
            direction: if i % 2 == 0 {
                Direction::Outgoing
            } else {
                Direction::Incoming
            },
            state: if i % 2 == 0 {
                DeliveryState::Delivered
            } else {
                DeliveryState::Received
            },
            timestamp: 1_700_000_000_000 + i as u64,
            body,
        })
        .collect();
    store.import_messages(contact, &messages).unwrap();
}

/// Every row of a conversation, newest first, page by page.
async fn whole_history(client: &Client, contact: &str) -> Vec<sotto::HistoryItem> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = client.history(contact, before, 1000).await.unwrap();
        let Some(last) = page.last() else {
            return all;
        };
        before = Some(last.seq);
        all.extend(page);
    }
}

/// Waits for the history transfer event `pick` selects.
async fn transfer_event(
    events: &mut Events,
    mut pick: impl FnMut(&sotto::HistoryTransfer) -> bool,
) -> sotto::HistoryTransfer {
    next_event(events, |e| match e {
        ClientEvent::HistoryTransfer(t) if pick(&t) => Some(t),
        _ => None,
    })
    .await
}

/// A linked laptop gets Alice's 10,000 messages from her phone, end to end
/// encrypted through the relay; the phone stops half way (its relay
/// refuses), the laptop stops half way (it is closed), both resume, and
/// the histories end equal; the relay holds nothing of it afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_gets_the_history_and_either_side_can_stop_and_resume() {
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let (store, relay, addr, alice, bob) = hostile_pair(dir.path()).await;
    let bob_id = bob.address().to_string();
    alice.disconnect().await;
    drop(alice);
    fill_history(dir.path(), "alice", &bob_id, 10_000).await;
    let alice = reopen(dir.path(), "alice", options()).await;
    alice.connect(&addr).await.unwrap();
    alice
        .send("bob", b"the last one before linking")
        .await
        .unwrap();

    let laptop = link(dir.path(), &addr, &alice, "alice-laptop").await;
    // The laptop's own mailbox: its device key's.
    let laptop_mailbox = mailbox_of(&alice, &laptop).await;
    // The laptop is closed before the transfer starts.
    laptop.disconnect().await;
    drop(laptop);

    // The relay takes three chunks, then refuses (the phone "stops").
    let taken = Arc::new(Mutex::new(0usize));
    {
        let taken = taken.clone();
        *store.refuse_enqueue.lock().unwrap() = Some(Box::new(move |to| {
            if *to != laptop_mailbox {
                return None;
            }
            let mut taken = taken.lock().unwrap();
            *taken += 1;
            (*taken > 3).then_some(sotto::relay::StoreError::DiskFull)
        }));
    }
    assert!(alice.send_history().await.is_err());
    *store.refuse_enqueue.lock().unwrap() = None;
    alice.disconnect().await;
    drop(alice);

    // The laptop takes two of the chunks waiting for it, then closes.
    let laptop = reopen_manual(dir.path(), "alice-laptop").await;
    laptop.connect(&addr).await.unwrap();
    let waiting = laptop.fetch_envelopes().await.unwrap();
    assert!(waiting.len() >= 3, "{} waiting", waiting.len());
    for envelope in waiting.into_iter().take(2) {
        laptop.receive_envelope(envelope).await.unwrap();
    }
    laptop.disconnect().await;
    drop(laptop);

    // Both come back: the phone goes on from the chunk the relay refused,
    // the laptop applies what waits and tells the phone where it stands.
    let alice = reopen(dir.path(), "alice", options()).await;
    let mut alice_events = alice.events();
    alice.connect(&addr).await.unwrap();
    let laptop = reopen(dir.path(), "alice-laptop", options()).await;
    let mut laptop_events = laptop.events();
    laptop.connect(&addr).await.unwrap();
    let done = transfer_event(&mut laptop_events, |t| t.complete).await;
    assert!(!done.outgoing);
    assert_eq!(done.messages_total, 10_001);
    transfer_event(&mut alice_events, |t| t.outgoing && t.complete).await;

    let bob_address = bob.address().to_string();
    let on_phone = whole_history(&alice, "bob").await;
    let on_laptop = whole_history(&laptop, &bob_address).await;
    assert_eq!(on_phone.len(), 10_001);
    assert_eq!(on_laptop.len(), on_phone.len());
    for (a, b) in on_phone.iter().zip(&on_laptop) {
        assert_eq!((a.seq, &a.body, a.state), (b.seq, &b.body, b.state));
    }
    // The contact came with its name.
    assert!(
        laptop
            .contacts()
            .await
            .unwrap()
            .iter()
            .any(|c| c.as_ref().is_ok_and(|c| c.name == "bob"))
    );
    // Nothing of it is left on the relay: the laptop's mailbox is empty.
    let manual = reopen_manual(dir.path(), "alice-laptop").await;
    laptop.disconnect().await;
    drop(laptop);
    manual.connect(&addr).await.unwrap();
    assert!(manual.fetch_envelopes().await.unwrap().is_empty());
    assert!(!dir.path().join("alice").join("history-out.sotto").exists());
    relay.shutdown().await;
}

/// Two devices each: devices offline and coming back, a device that dies
/// after committing a message and before any copy left, and one that dies
/// after storing a message and before acknowledging it. Every device ends
/// with every message once, in order; and no file the relay or any device
/// wrote holds a plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_devices_and_crashes_cost_no_message_and_no_duplicate() {
    use sotto::{ClientOptions, Fault};

    let dir = tempfile::tempdir().unwrap();
    let relay = sqlite_relay(&dir.path().join("relay.db")).await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    let alice_laptop = link(dir.path(), &addr, &alice, "alice-laptop").await;
    let bob_laptop = link(dir.path(), &addr, &bob, "bob-laptop").await;
    let (alice_id, bob_id) = (alice.address().to_string(), bob.address().to_string());
    let mut sent = Vec::new();
    // The laptop's first message to Bob, online: its sessions with Bob's
    // devices start from their bundles.
    let text = "hello from the laptop".to_owned();
    alice_laptop
        .add_contact("bob", &bob.address())
        .await
        .unwrap();
    alice_laptop.send(&bob_id, text.as_bytes()).await.unwrap();
    sent.push(text);

    // Bob's laptop is away while Alice writes three.
    bob_laptop.disconnect().await;
    for i in 0..3 {
        let text = format!("while the laptop was away {i}");
        alice.send("bob", text.as_bytes()).await.unwrap();
        sent.push(text);
    }
    // Alice's laptop commits a message with no relay, and dies.
    alice_laptop.disconnect().await;
    let text = "committed on the laptop, then it died".to_owned();
    let queued = alice_laptop.send(&bob_id, text.as_bytes()).await.unwrap();
    assert_eq!(queued.status, sotto::SendStatus::Queued);
    sent.push(text);
    drop(alice_laptop);
    // Bob's phone stores the next one and dies before acknowledging it.
    bob.disconnect().await;
    drop(bob);
    let text = "stored by the phone, which died before the ack".to_owned();
    alice.send("bob", text.as_bytes()).await.unwrap();
    sent.push(text);
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
    crashing.disconnect().await;
    drop(crashing);

    // Everyone comes back.
    let bob = reopen(dir.path(), "bob", options()).await;
    bob.connect(&addr).await.unwrap();
    let alice_laptop = reopen(dir.path(), "alice-laptop", options()).await;
    alice_laptop.connect(&addr).await.unwrap();
    bob_laptop.connect(&addr).await.unwrap();
    let text = "after everyone is back".to_owned();
    bob.send("alice", text.as_bytes()).await.unwrap();
    sent.push(text);

    // Every device, the same conversation: each message once, and each
    // sender's messages in the order it sent them (messages of different
    // devices land in the order they arrived).
    let mut want: Vec<&str> = sent.iter().map(String::as_str).collect();
    want.sort_unstable();
    let views: [(&Client, &str); 4] = [
        (&alice, "bob"),
        (&alice_laptop, &bob_id),
        (&bob, "alice"),
        (&bob_laptop, &alice_id),
    ];
    let deadline = tokio::time::Instant::now() + WAIT;
    for (client, contact) in views {
        loop {
            let got = bodies(client, contact).await;
            let mut sorted: Vec<&str> = got.iter().map(String::as_str).collect();
            sorted.sort_unstable();
            if sorted == want {
                let phone: Vec<&String> = got.iter().filter(|t| t.contains("away")).collect();
                assert!(phone.windows(2).all(|w| w[0] < w[1]), "{got:?}");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline && got.len() <= want.len(),
                "{contact}: {got:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    for client in [&alice, &alice_laptop, &bob, &bob_laptop] {
        client.disconnect().await;
    }
    drop((alice, alice_laptop, bob, bob_laptop));
    relay.shutdown().await;
    let mut files = database_files(&dir.path().join("relay.db"));
    for name in ["alice", "alice-laptop", "bob", "bob-laptop"] {
        files.extend(database_files(
            &dir.path().join(name).join(sotto::PROFILE_DB),
        ));
    }
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        for text in &sent {
            assert!(
                !contains(&bytes, text.as_bytes()),
                "{text:?} in {}",
                file.display()
            );
        }
    }
}

/// A relay that refuses the history's chunks for a while (its limits, a
/// full mailbox) only delays the transfer: the sender tries again on its
/// own, without reconnecting, and the new device gets all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_the_relay_refuses_for_a_while_goes_on_by_itself() {
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let (store, relay, addr, alice, bob) = hostile_pair(dir.path()).await;
    let bob_id = bob.address().to_string();
    alice.disconnect().await;
    drop(alice);
    fill_history(dir.path(), "alice", &bob_id, 3_000).await;
    let alice = reopen(
        dir.path(),
        "alice",
        sotto::ClientOptions {
            outbox_retry_min: std::time::Duration::from_millis(100),
            ..options()
        },
    )
    .await;
    alice.connect(&addr).await.unwrap();
    let laptop = link(dir.path(), &addr, &alice, "alice-laptop").await;
    let laptop_mailbox = mailbox_of(&alice, &laptop).await;
    let mut laptop_events = laptop.events();
    // The first four chunk envelopes are refused.
    let refused = Arc::new(Mutex::new(0usize));
    {
        let refused = refused.clone();
        *store.refuse_enqueue.lock().unwrap() = Some(Box::new(move |to| {
            let mut refused = refused.lock().unwrap();
            if *to != laptop_mailbox || *refused >= 4 {
                return None;
            }
            *refused += 1;
            Some(sotto::relay::StoreError::DiskFull)
        }));
    }
    assert!(alice.send_history().await.is_err());
    let done = transfer_event(&mut laptop_events, |t| t.complete).await;
    assert_eq!(done.messages_total, 3_000);
    assert_eq!(*refused.lock().unwrap(), 4);
    assert_eq!(whole_history(&laptop, &bob_id).await.len(), 3_000);
    relay.shutdown().await;
}
