//! A relay that attacks: it records every envelope, replays, forges and
//! injects envelopes, withholds genuine ones and releases them in another
//! order. Whatever it does, in any order, it must not make either side
//! reset a session, re-encrypt a message or even ask for a resend; and
//! every genuine message still arrives exactly once.
#![cfg(test)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rand::{Rng, RngExt, SeedableRng};
use sotto::relay::store::Enqueued;
use sotto::relay::{ClientConfig, MailboxAddress, MailboxStore, MessageId, RelayClient};
use sotto::{Client, ClientEvent, Events};

/// What the hostile relay keeps: every envelope sent through its front
/// door, and the genuine ones it swallows (telling the sender they were
/// stored) while `withholding` is on, for release later.
#[derive(Default)]
struct Loot {
    recorded: Vec<(MailboxAddress, Vec<u8>)>,
    withheld: Vec<(MailboxAddress, Vec<u8>)>,
    withholding: bool,
    next_fake_id: u64,
}

/// A relay whose storage records everything and swallows on command.
fn hostile_store() -> (Arc<InterceptingStore>, Arc<Mutex<Loot>>) {
    let loot = Arc::new(Mutex::new(Loot {
        next_fake_id: u64::MAX / 2,
        ..Loot::default()
    }));
    let store = Arc::new(InterceptingStore::new());
    let hook_loot = loot.clone();
    let hook: EnqueueHook = Box::new(move |to, bytes| {
        let mut loot = hook_loot.lock().unwrap();
        loot.recorded.push((*to, bytes.to_vec()));
        if !loot.withholding {
            return None;
        }
        loot.withheld.push((*to, bytes.to_vec()));
        loot.next_fake_id += 1;
        Some(Enqueued {
            id: loot.next_fake_id,
            duplicate: false,
        })
    });
    *store.on_enqueue.lock().unwrap() = Some(hook);
    (store, loot)
}

/// What a side did that only a relay attack could have caused.
#[derive(Default, Debug)]
struct Tally {
    resets: usize,
    resends: usize,
    notices_sent: usize,
    dropped: usize,
    undecryptable: usize,
}

fn watch(mut events: Events, tally: Arc<Mutex<Tally>>) {
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let mut t = tally.lock().unwrap();
            match event {
                ClientEvent::PeerCouldNotDecrypt {
                    seq, session_reset, ..
                } => {
                    t.resets += usize::from(session_reset);
                    t.resends += usize::from(seq.is_some());
                }
                ClientEvent::Undecryptable {
                    resend_requested, ..
                } => {
                    t.undecryptable += 1;
                    t.notices_sent += usize::from(resend_requested);
                }
                ClientEvent::Dropped { .. } => t.dropped += 1,
                _ => {}
            }
        }
    });
}

/// One step of the attacker's (or the users') schedule.
#[derive(Debug, Clone, Copy)]
enum Step {
    AliceSends,
    BobSends,
    /// Send a recorded envelope again (under a new relay message id).
    Replay,
    /// Send a recorded envelope with one byte flipped.
    Tamper,
    /// Send random bytes.
    Junk,
    /// Send an envelope sealed by the relay's own identity, naming a
    /// random message id (to a recipient that does not know that key).
    SealedByRelay,
    /// Send a recorded envelope's sealed sender layer spliced onto another
    /// recorded envelope's contents.
    Splice,
    /// An envelope of the old format (sealed version 1, whose outer layer
    /// named the sender without authenticating it), as a relay could forge
    /// to claim any sender and envelope id.
    OldFormat,
    /// Start swallowing genuine envelopes.
    Withhold,
    /// Stop, and release everything swallowed, shuffled.
    Release,
}

const STEPS: [Step; 10] = [
    Step::AliceSends,
    Step::BobSends,
    Step::Replay,
    Step::Tamper,
    Step::Junk,
    Step::SealedByRelay,
    Step::Splice,
    Step::OldFormat,
    Step::Withhold,
    Step::Release,
];

async fn release(loot: &Mutex<Loot>, attacker: &RelayClient, rng: &mut rand::rngs::StdRng) {
    let mut held = {
        let mut loot = loot.lock().unwrap();
        loot.withholding = false;
        std::mem::take(&mut loot.withheld)
    };
    // Fisher-Yates with the test's seeded RNG.
    for i in (1..held.len()).rev() {
        let j = rng.random_range(0..=i);
        held.swap(i, j);
    }
    for (to, bytes) in held {
        send_raw(attacker, &to, &bytes).await;
    }
}

async fn send_raw(attacker: &RelayClient, to: &MailboxAddress, bytes: &[u8]) {
    attacker
        .send(to, MessageId::random().unwrap(), None, bytes)
        .await
        .unwrap();
}

/// Waits until `client`'s history with `contact` holds `n` messages.
async fn wait_for_history(client: &Client, contact: &str, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let _ = client.sync().await;
        let b = bodies(client, contact).await;
        if b.len() >= n || tokio::time::Instant::now() > deadline {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run_schedule(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (store, loot) = hostile_store();
    // The relay is the attacker: its own first-contact allowance does not
    // bind it (its attacks come in through its front door).
    let relay = relay_with(unlimited_first_contacts(), store).await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    let alice_tally = Arc::new(Mutex::new(Tally::default()));
    let bob_tally = Arc::new(Mutex::new(Tally::default()));
    watch(alice.events(), alice_tally.clone());
    watch(bob.events(), bob_tally.clone());
    let attacker = RelayClient::connect(relay.local_addr(), ClientConfig::default())
        .await
        .unwrap();
    let relay_identity = sotto::core::IdentityKeyPair::generate(&mut rand::rng());
    let alice_box = alice.address().mailbox();
    let bob_box = bob.address().mailbox();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let mut alice_sent = Vec::new();
    let mut bob_sent = Vec::new();
    // A conversation first, so both sides have sessions and sent messages
    // that a forged notice could point at.
    for i in 0..3 {
        let t = format!("a{i}");
        alice.send("bob", t.as_bytes()).await.unwrap();
        alice_sent.push(t);
        let t = format!("b{i}");
        bob.send("alice", t.as_bytes()).await.unwrap();
        bob_sent.push(t);
    }
    let mut schedule = Vec::new();
    for _ in 0..60 {
        let step = STEPS[rng.random_range(0..STEPS.len())];
        schedule.push(step);
        match step {
            Step::AliceSends => {
                let t = format!("a{}", alice_sent.len());
                alice.send("bob", t.as_bytes()).await.unwrap();
                alice_sent.push(t);
            }
            Step::BobSends => {
                let t = format!("b{}", bob_sent.len());
                bob.send("alice", t.as_bytes()).await.unwrap();
                bob_sent.push(t);
            }
            Step::Replay | Step::Tamper | Step::Splice => {
                let recorded = loot.lock().unwrap().recorded.clone();
                let (to, mut bytes) = recorded[rng.random_range(0..recorded.len())].clone();
                match step {
                    Step::Tamper => {
                        let i = rng.random_range(0..bytes.len());
                        bytes[i] ^= 1 << rng.random_range(0..8);
                    }
                    Step::Splice => {
                        let other = &recorded[rng.random_range(0..recorded.len())].1;
                        // 0x02 || EPK(32) || sender layer(48) || contents.
                        bytes.truncate(81);
                        bytes.extend_from_slice(&other[81.min(other.len())..]);
                    }
                    _ => {}
                }
                send_raw(&attacker, &to, &bytes).await;
            }
            Step::Junk => {
                let mut bytes = vec![0u8; rng.random_range(1..600)];
                rng.fill_bytes(&mut bytes);
                let to = if rng.random() { alice_box } else { bob_box };
                send_raw(&attacker, &to, &bytes).await;
            }
            Step::SealedByRelay => {
                let (to, key) = if rng.random() {
                    (alice_box, *alice.address().identity_key())
                } else {
                    (bob_box, *bob.address().identity_key())
                };
                // A decryption-error notice (kind 2) and a message (kind 1),
                // authenticated as the relay's key: nobody's contact.
                let mut payload = vec![0x02, if rng.random() { 0x02 } else { 0x01 }];
                let mut rest = vec![0u8; 16 + 8 + 32];
                rng.fill_bytes(&mut rest);
                payload.extend_from_slice(&rest);
                let sealed =
                    sotto::core::sealed::seal(&relay_identity, &key, &payload, &mut rand::rng())
                        .unwrap();
                send_raw(&attacker, &to, &sealed).await;
            }
            Step::OldFormat => {
                let mut bytes = vec![0u8; rng.random_range(81..400)];
                rng.fill_bytes(&mut bytes);
                bytes[0] = 0x01;
                let to = if rng.random() { alice_box } else { bob_box };
                send_raw(&attacker, &to, &bytes).await;
            }
            Step::Withhold => loot.lock().unwrap().withholding = true,
            Step::Release => release(&loot, &attacker, &mut rng).await,
        }
    }
    release(&loot, &attacker, &mut rng).await;

    // Every genuine message arrives, exactly once.
    let at_bob = wait_for_history(&bob, "alice", alice_sent.len() + bob_sent.len()).await;
    let at_alice = wait_for_history(&alice, "bob", alice_sent.len() + bob_sent.len()).await;
    for (history, sent) in [(&at_bob, &alice_sent), (&at_alice, &bob_sent)] {
        for t in sent {
            assert_eq!(
                history.iter().filter(|b| *b == t).count(),
                1,
                "seed {seed}: {t} in {history:?} after {schedule:?}"
            );
        }
    }
    assert_eq!(
        at_bob.len(),
        alice_sent.len() + bob_sent.len(),
        "seed {seed}"
    );
    assert_eq!(
        at_alice.len(),
        alice_sent.len() + bob_sent.len(),
        "seed {seed}"
    );

    // Nothing the relay did made anyone reset, resend or ask for a resend.
    for (who, tally) in [("alice", &alice_tally), ("bob", &bob_tally)] {
        let t = tally.lock().unwrap();
        assert_eq!(
            (t.resets, t.resends, t.notices_sent),
            (0, 0, 0),
            "seed {seed}, {who}: {t:?} after {schedule:?}"
        );
    }
    alice.disconnect().await;
    bob.disconnect().await;
    relay.shutdown().await;
    attacks_seen(&schedule, &alice_tally, &bob_tally);
}

/// The attacks did reach the clients (they were dropped or refused, not
/// lost on the way), so the assertions above are about something.
fn attacks_seen(schedule: &[Step], alice: &Mutex<Tally>, bob: &Mutex<Tally>) {
    let attacks = schedule
        .iter()
        .filter(|s| {
            matches!(
                s,
                Step::Tamper | Step::Junk | Step::SealedByRelay | Step::Splice
            )
        })
        .count();
    let seen = {
        let (a, b) = (alice.lock().unwrap(), bob.lock().unwrap());
        a.dropped + a.undecryptable + b.dropped + b.undecryptable
    };
    assert!(attacks == 0 || seen > 0, "{attacks} attacks, none seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_relay_cannot_cause_resets_resends_or_notices_in_any_order() {
    for seed in 0..8 {
        run_schedule(seed).await;
    }
}

/// A relay that strips the post-quantum (ML-KEM) prekey from the bundle
/// of an owner whose address says they speak protocol v2 is caught at the
/// very first contact: the send is refused and nothing is stored. A
/// contact added from the short form, which says nothing of versions,
/// falls back to v1 unnoticed (docs/protocol.md 16.7); once the relay
/// stops stripping, the first contact runs v2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_strips_the_kem_prekey_is_refused_when_the_address_says_v2() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InterceptingStore::new());
    let relay = relay_with(unlimited_first_contacts(), store.clone()).await;
    let addr = relay.local_addr().to_string();
    let alice = client(dir.path(), "alice").await;
    let bob = client(dir.path(), "bob").await;
    let carol = client(dir.path(), "carol").await;
    for c in [&alice, &bob, &carol] {
        c.register(&addr).await.unwrap();
    }
    let full = bob.address().shareable().to_string();
    let parsed: sotto::Address = full.parse().unwrap();
    assert_eq!(
        parsed.versions(),
        Some(sotto::core::ProtocolVersions::V1_AND_V2),
        "a registered profile's address says it speaks v2: {full}"
    );
    let mut bob_in = bob.incoming();

    *store.strip_kem.lock().unwrap() = true;
    alice.add_contact("bob", &parsed).await.unwrap();
    match alice.send("bob", b"stripped").await {
        Err(sotto::Error::Downgrade(name)) => assert_eq!(name, "bob"),
        other => panic!("a stripped bundle must be refused, got {other:?}"),
    }
    assert!(alice.history("bob", None, 10).await.unwrap().is_empty());

    // The short form promises nothing: v1, as for any v1 peer.
    let short: sotto::Address = bob.address().to_string().parse().unwrap();
    assert_eq!(short.versions(), None);
    carol.add_contact("bob", &short).await.unwrap();
    carol.send("bob", b"from carol, in v1").await.unwrap();
    expect_texts(&mut bob_in, &["from carol, in v1"]).await;

    // An honest relay again: Alice's first contact goes through, in v2
    // (a v1 bundle would still be refused).
    *store.strip_kem.lock().unwrap() = false;
    let kem_before = store.kem_prekey_count(&bob.address().mailbox()).unwrap();
    alice.send("bob", b"hello in v2").await.unwrap();
    expect_texts(&mut bob_in, &["hello in v2"]).await;
    let kem_after = store.kem_prekey_count(&bob.address().mailbox()).unwrap();
    assert!(
        kem_after < kem_before,
        "the first contact took a one-time KEM prekey: {kem_before:?} -> {kem_after:?}"
    );
    relay.shutdown().await;
}
