//! Session recovery end to end: a device restored from an old backup tells
//! the sender (a notice in an authenticated sealed envelope), the sender
//! starts a fresh session and resends, and both continue. Forged and
//! replayed notices change nothing.
#![cfg(test)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use sotto::relay::{ClientConfig, MessageId, RelayClient};
use sotto::store::CiphertextDigest;
use sotto::{Client, ClientEvent, DropReason, Events};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

async fn wait_event<T>(events: &mut Events, mut pick: impl FnMut(ClientEvent) -> Option<T>) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.next().await.expect("event stream open");
            if let Some(v) = pick(event) {
                return v;
            }
        }
    })
    .await
    .expect("event in time")
}

async fn close(client: Client) {
    client.disconnect().await;
    drop(client);
    // Let the store handle close.
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_restored_from_an_old_backup_recovers_and_both_continue() {
    let capture = common::log_capture::Capture::install();
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    let mut alice_in = alice.incoming();
    let mut bob_in = bob.incoming();
    for i in 0..3 {
        alice.send("bob", format!("a{i}").as_bytes()).await.unwrap();
        expect_texts(&mut bob_in, &[&format!("a{i}")]).await;
        bob.send("alice", format!("b{i}").as_bytes()).await.unwrap();
        expect_texts(&mut alice_in, &[&format!("b{i}")]).await;
    }

    // Bob backs up his profile, then the conversation moves on (several
    // ratchet steps each way).
    close(bob).await;
    let backup = dir.path().join("bob-backup");
    copy_dir(&dir.path().join("bob"), &backup);
    let bob = reopen(dir.path(), "bob", options()).await;
    bob.connect(&addr).await.unwrap();
    let mut bob_in = bob.incoming();
    for i in 3..6 {
        alice.send("bob", format!("a{i}").as_bytes()).await.unwrap();
        expect_texts(&mut bob_in, &[&format!("a{i}")]).await;
        bob.send("alice", format!("b{i}").as_bytes()).await.unwrap();
        expect_texts(&mut alice_in, &[&format!("b{i}")]).await;
    }

    // Bob's device is restored from the old backup.
    close(bob).await;
    std::fs::remove_dir_all(dir.path().join("bob")).unwrap();
    copy_dir(&backup, &dir.path().join("bob"));
    let bob = reopen(dir.path(), "bob", options()).await;
    let mut bob_events = bob.events();
    let mut bob_in = bob.incoming();
    bob.connect(&addr).await.unwrap();
    let mut alice_events = alice.events();

    // Alice's next message cannot be decrypted by the stale session: Bob
    // sees a notice (not silence) and asks for a resend; Alice starts a new
    // session and resends; Bob stores the message.
    alice.send("bob", b"after the restore").await.unwrap();
    let resend_requested = wait_event(&mut bob_events, |e| match e {
        ClientEvent::Undecryptable {
            resend_requested, ..
        } => Some(resend_requested),
        _ => None,
    })
    .await;
    assert!(resend_requested);
    let (seq, reset) = wait_event(&mut alice_events, |e| match e {
        ClientEvent::PeerCouldNotDecrypt {
            seq, session_reset, ..
        } => Some((seq, session_reset)),
        _ => None,
    })
    .await;
    assert!(seq.is_some());
    assert!(reset);
    expect_texts(&mut bob_in, &["after the restore"]).await;

    // Both continue, both ways, for several rounds.
    for i in 0..4 {
        bob.send("alice", format!("bob again {i}").as_bytes())
            .await
            .unwrap();
        expect_texts(&mut alice_in, &[&format!("bob again {i}")]).await;
        alice
            .send("bob", format!("alice again {i}").as_bytes())
            .await
            .unwrap();
        expect_texts(&mut bob_in, &[&format!("alice again {i}")]).await;
    }
    // The recovered message is in Bob's history exactly once.
    let bodies = bodies(&bob, "alice").await;
    assert_eq!(
        bodies.iter().filter(|b| *b == "after the restore").count(),
        1
    );
    relay.shutdown().await;

    // Recovery is logged on both sides, with nothing but its outcome: no
    // field beyond the message and a few flags.
    let logs = capture.text();
    let recovery: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("sotto::client::recovery:"))
        .collect();
    assert!(
        recovery
            .iter()
            .any(|l| l.contains("asked a contact to resend a message sent=true")),
        "{logs}"
    );
    assert!(
        recovery.iter().any(
            |l| l.contains("answered a decryption-error notice session_reset=true resent=true")
        ),
        "{logs}"
    );
    for line in recovery {
        for field in line.split_whitespace().filter_map(|w| w.split_once('=')) {
            assert!(
                ["message", "sent", "session_reset", "resent", "count"].contains(&field.0),
                "unexpected field {field:?} in {line}"
            );
        }
    }
}

/// Builds a decryption-error notice as the facade does (see
/// `src/payload.rs`): payload version 2, sealed by `signer`'s identity.
fn notice(
    signer: &sotto::core::IdentityKeyPair,
    recipient: &sotto::core::IdentityKey,
    failed: &CiphertextDigest,
) -> Vec<u8> {
    let mut out = vec![0x02, 0x02];
    out.extend_from_slice(&[0x33; 16]);
    out.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
    out.extend_from_slice(failed.as_bytes());
    sotto::core::sealed::seal(signer, recipient, &out, &mut rand::rng()).unwrap()
}

/// A notice in the old format (sealed envelope version 1, whose outer layer
/// did not authenticate the sender): what a relay could forge before.
fn old_format_notice(
    recipient: &sotto::core::IdentityKey,
    claimed: &sotto::core::IdentityKey,
) -> Vec<u8> {
    let mut out = vec![0x01];
    out.extend_from_slice(&[0x09; 32]);
    out.extend_from_slice(&[0x01, 0x02]);
    out.extend_from_slice(claimed.as_bytes());
    out.extend_from_slice(&[0x44; 16 + 16 + 8 + 64]);
    out.extend_from_slice(recipient.as_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_notices_cannot_force_resets() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    let mut alice_in = alice.incoming();

    // Bob receives by hand so the test sees the envelope as the relay does.
    close(bob).await;
    let bob = reopen_manual(dir.path(), "bob").await;
    bob.connect(&addr).await.unwrap();
    alice.send("bob", b"the original").await.unwrap();
    let envelopes = bob.fetch_envelopes().await.unwrap();
    assert_eq!(envelopes.len(), 1);
    let bob_identity = {
        let store = sotto::store::Store::open(
            dir.path().join("bob").join(sotto::PROFILE_DB),
            b"bob",
            &options().store,
        )
        .unwrap();
        store.identity().unwrap()
    };
    // What only Bob can compute: the digest of the ciphertext inside.
    let failed = {
        let opened = sotto::core::sealed::open(&bob_identity, &envelopes[0].payload).unwrap();
        assert_eq!(opened.sender, *alice.address().identity_key());
        // The body of a message payload: Alice's access key, then the
        // ciphertext.
        let message = sotto::PAYLOAD_OVERHEAD + sotto::core::access::ACCESS_KEY_LEN;
        CiphertextDigest::of(&opened.contents[message..])
    };
    bob.receive_envelope(envelopes[0].clone())
        .await
        .unwrap()
        .unwrap();

    let mut alice_events = alice.events();
    let attacker = RelayClient::connect(relay.local_addr(), ClientConfig::default())
        .await
        .unwrap();
    let mut rng = rand::rng();
    let mallory = sotto::core::IdentityKeyPair::generate(&mut rng);
    let alice_key = *alice.address().identity_key();
    let bob_key = *bob.address().identity_key();
    let no_reset = |e: &ClientEvent| {
        if let ClientEvent::PeerCouldNotDecrypt {
            seq, session_reset, ..
        } = e
        {
            assert!(
                seq.is_none() && !session_reset,
                "a forged notice was acted on: {e:?}"
            );
        }
    };

    // 1. The old, unauthenticated format claiming to be Bob: dropped
    //    silently.
    attacker
        .send(
            &alice.address().mailbox(),
            MessageId([1; 16]),
            None,
            &old_format_notice(&alice_key, &bob_key),
        )
        .await
        .unwrap();
    let reason = wait_event(&mut alice_events, |e| {
        no_reset(&e);
        match e {
            ClientEvent::Dropped { reason } => Some(reason),
            _ => None,
        }
    })
    .await;
    assert_eq!(reason, DropReason::UnsupportedVersion);

    // 2. Sealed by Mallory with the real digest: authenticated as Mallory,
    //    who is no contact of Alice's; nothing happens.
    let forged = notice(&mallory, &alice_key, &failed);
    attacker
        .send(
            &alice.address().mailbox(),
            MessageId([2; 16]),
            None,
            &forged,
        )
        .await
        .unwrap();
    let reason = wait_event(&mut alice_events, |e| {
        no_reset(&e);
        match e {
            ClientEvent::Dropped { reason } => Some(reason),
            _ => None,
        }
    })
    .await;
    assert_eq!(reason, DropReason::NotAContact);

    // 3. Mallory's envelope re-labelled with Bob's key in the sender layer
    //    (flip it in place: the layer no longer opens): dropped.
    let mut relabelled = forged.clone();
    relabelled[40] ^= 0x01;
    attacker
        .send(
            &alice.address().mailbox(),
            MessageId([3; 16]),
            None,
            &relabelled,
        )
        .await
        .unwrap();
    let reason = wait_event(&mut alice_events, |e| {
        no_reset(&e);
        match e {
            ClientEvent::Dropped { reason } => Some(reason),
            _ => None,
        }
    })
    .await;
    assert_eq!(reason, DropReason::Unauthenticated);
    assert_eq!(alice.dropped_envelopes(), 3);

    // 4. Genuine (sealed with Bob's key, which only Bob has) but naming a
    //    ciphertext Alice never sent: ignored.
    let wrong = notice(
        &bob_identity,
        &alice_key,
        &CiphertextDigest::of(b"never sent"),
    );
    attacker
        .send(&alice.address().mailbox(), MessageId([4; 16]), None, &wrong)
        .await
        .unwrap();
    let (seq, reset) = wait_event(&mut alice_events, |e| match e {
        ClientEvent::PeerCouldNotDecrypt {
            seq, session_reset, ..
        } => Some((seq, session_reset)),
        _ => None,
    })
    .await;
    assert_eq!((seq, reset), (None, false));

    // 5. Genuine and naming the real ciphertext, then replayed by the relay
    //    again and again: one resend, one reset, no more.
    let genuine = notice(&bob_identity, &alice_key, &failed);
    let mut resets = 0;
    let mut resends = 0;
    for replay in 0..4u8 {
        attacker
            .send(
                &alice.address().mailbox(),
                MessageId([10 + replay; 16]),
                None,
                &genuine,
            )
            .await
            .unwrap();
        let (seq, reset) = wait_event(&mut alice_events, |e| match e {
            ClientEvent::PeerCouldNotDecrypt {
                seq, session_reset, ..
            } => Some((seq, session_reset)),
            _ => None,
        })
        .await;
        resends += usize::from(seq.is_some());
        resets += usize::from(reset);
    }
    assert_eq!(resends, 1, "the message is resent once");
    assert_eq!(resets, 1, "the session is reset once");

    // Bob receives the resend: it is the same message, stored once.
    let envelopes = bob.fetch_envelopes().await.unwrap();
    assert_eq!(envelopes.len(), 1);
    assert!(
        bob.receive_envelope(envelopes[0].clone())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(bodies(&bob, "alice").await, vec!["the original"]);

    // And the conversation goes on.
    bob.send("alice", b"still here").await.unwrap();
    expect_texts(&mut alice_in, &["still here"]).await;
    relay.shutdown().await;
}
