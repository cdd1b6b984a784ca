//! End-to-end behaviour of send, receive, outbox, prekeys and contacts
//! between two stores.
#![cfg(test)]

mod common;

use common::{T0, deliver, envelope, options, pair};
use sotto_store::{DeliveryState, Direction, Envelope, EnvelopeId, Error, Received, Store};

#[test]
fn conversation_both_ways_is_stored_on_both_sides() {
    let mut p = pair();
    let m1 = p.alice_sends("hi bob");
    assert_eq!(deliver(&m1, "alice", &mut p.bob), "hi bob");
    let r1 = p.bob_sends("hi alice");
    assert_eq!(deliver(&r1, "bob", &mut p.alice), "hi alice");
    let m2 = p.alice_sends("how are you?");
    assert_eq!(deliver(&m2, "alice", &mut p.bob), "how are you?");

    let bob_view = p.bob.history("alice", None, 10).unwrap();
    let bodies: Vec<_> = bob_view
        .messages()
        .map(|m| (m.direction, String::from_utf8(m.body.to_vec()).unwrap()))
        .collect();
    assert_eq!(
        bodies,
        vec![
            (Direction::Incoming, "how are you?".to_owned()),
            (Direction::Outgoing, "hi alice".to_owned()),
            (Direction::Incoming, "hi bob".to_owned()),
        ]
    );
    assert_eq!(p.alice.message_count("bob").unwrap(), 3);
    assert_eq!(p.bob.message_count("alice").unwrap(), 3);

    // Bob's contact for Alice was created by her first message, with her
    // identity key pinned.
    let alice_contact = p.bob.contact("alice").unwrap().unwrap();
    assert_eq!(alice_contact.name, "");
    assert_eq!(
        alice_contact.identity_key,
        Some(p.alice.identity_key().unwrap())
    );
    assert_eq!(
        p.alice.safety_number("bob").unwrap().unwrap(),
        p.bob.safety_number("alice").unwrap().unwrap()
    );
}

#[test]
fn duplicate_envelope_is_acknowledged_and_stored_once() {
    let mut p = pair();
    let m = p.alice_sends("once");
    deliver(&m, "alice", &mut p.bob);
    for _ in 0..3 {
        assert!(matches!(
            p.bob.receive(&envelope(&m, "alice")).unwrap(),
            Received::Duplicate
        ));
    }
    assert_eq!(p.bob.message_count("alice").unwrap(), 1);
    // The same ciphertext under a new id is a protocol replay: refused,
    // nothing stored.
    let replay = Envelope {
        id: EnvelopeId([9; 16]),
        ..envelope(&m, "alice")
    };
    assert!(matches!(p.bob.receive(&replay), Err(Error::Protocol(_))));
    assert_eq!(p.bob.message_count("alice").unwrap(), 1);
}

#[test]
fn outbox_keeps_entries_until_marked_sent_and_updates_state() {
    let mut p = pair();
    let a = p.alice_sends("first");
    let b = p.alice_sends("second");
    let pending: Vec<_> = p
        .alice
        .outbox()
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(pending, vec![a.clone(), b.clone()]);
    assert_eq!(pending[0].recipient, "bob");

    assert!(p.alice.mark_sent(&a.id, T0).unwrap());
    // Accepted, it waits for the receipt (not in the outbox to send).
    assert!(p.alice.mark_sent(&a.id, T0).unwrap());
    let left: Vec<_> = p
        .alice
        .outbox()
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(left, vec![b.clone()]);

    let first = p.alice.message("bob", a.seq).unwrap().unwrap();
    assert_eq!(first.state, DeliveryState::Sent);
    assert_eq!(first.envelope_id, a.id);
    assert_eq!(first.timestamp, T0);
    let second = p.alice.message("bob", b.seq).unwrap().unwrap();
    assert_eq!(second.state, DeliveryState::Pending);

    // A retry from the outbox carries the same id: delivered once.
    deliver(&b, "alice", &mut p.bob);
    let retry = p.alice.outbox().unwrap().remove(0).unwrap();
    assert!(matches!(
        p.bob.receive(&envelope(&retry, "alice")).unwrap(),
        Received::Duplicate
    ));
    p.alice
        .set_delivery_state("bob", b.seq, DeliveryState::Read)
        .unwrap();
    assert_eq!(
        p.alice.message("bob", b.seq).unwrap().unwrap().state,
        DeliveryState::Read
    );
}

#[test]
fn one_time_prekeys_are_consumed_counted_and_fresh_ones_get_new_ids() {
    let mut p = pair();
    assert_eq!(p.bob.one_time_prekey_count().unwrap(), 5);
    let first_id = p.bob.one_time_prekeys().unwrap()[0].id;
    let m = p.alice_sends("uses an OPK");
    deliver(&m, "alice", &mut p.bob);
    assert_eq!(p.bob.one_time_prekey_count().unwrap(), 4);
    assert!(
        p.bob
            .one_time_prekeys()
            .unwrap()
            .iter()
            .all(|k| k.id != first_id)
    );
    let fresh = p.bob.fresh_one_time_prekeys(6, T0).unwrap();
    assert_eq!(fresh.len(), 6);
    assert_eq!(p.bob.one_time_prekey_count().unwrap(), 10);
    // Ids are never reused.
    assert!(fresh.iter().all(|(id, _)| id.get() > first_id.get() + 4));
    assert!(p.bob.remove_one_time_prekey(fresh[0].0).unwrap());
    assert!(!p.bob.remove_one_time_prekey(fresh[0].0).unwrap());
    assert_eq!(p.bob.one_time_prekey_count().unwrap(), 9);
}

#[test]
fn signed_prekey_rotation_keeps_the_previous_one_for_messages_in_flight() {
    let mut p = pair();
    let old = p.bob.signed_prekey().unwrap();
    // Alice's PreKeyMessage was built against the old signed prekey.
    let in_flight = p.alice_sends("sent before rotation");
    let new = p.bob.rotate_signed_prekey(T0).unwrap();
    assert_ne!(new.id(), old.id());
    assert_eq!(p.bob.signed_prekey().unwrap().id(), new.id());
    assert_eq!(
        deliver(&in_flight, "alice", &mut p.bob),
        "sent before rotation"
    );

    // After the grace period the old one is gone: a new session against it fails.
    let mut carol = Store::create(p.dir.path().join("carol.db"), b"carol", &options()).unwrap();
    let stale_bundle =
        sotto_store::sotto_core::PreKeyBundle::new(&p.bob.identity().unwrap(), &old, None);
    carol.add_contact("bob", "Bob", None).unwrap();
    carol.start_session("bob", &stale_bundle).unwrap();
    let from_carol = carol.send("bob", b"late", T0).unwrap();
    assert_eq!(p.bob.drop_previous_signed_prekeys().unwrap(), 1);
    assert!(matches!(
        p.bob.receive(&envelope(&from_carol, "carol")),
        Err(Error::Protocol(
            sotto_store::sotto_core::Error::UnknownSignedPreKey(_)
        ))
    ));
    assert!(p.bob.contact("carol").unwrap().is_none());
}

#[test]
fn simultaneous_initiation_converges() {
    let mut p = pair();
    // Bob also starts a session from Alice's bundle before hearing from her.
    p.alice.fresh_one_time_prekeys(2, T0).unwrap();
    let alice_bundle = p.alice.prekey_bundle(None).unwrap();
    p.bob.add_contact("alice", "Alice", None).unwrap();
    p.bob.start_session("alice", &alice_bundle).unwrap();
    let from_alice = p.alice_sends("from alice");
    let from_bob = p.bob_sends("from bob");
    assert_eq!(deliver(&from_alice, "alice", &mut p.bob), "from alice");
    assert_eq!(deliver(&from_bob, "bob", &mut p.alice), "from bob");
    for i in 0..3 {
        let a = p.alice_sends(&format!("a{i}"));
        assert_eq!(deliver(&a, "alice", &mut p.bob), format!("a{i}"));
        let b = p.bob_sends(&format!("b{i}"));
        assert_eq!(deliver(&b, "bob", &mut p.alice), format!("b{i}"));
    }
}

#[test]
fn a_new_identity_for_a_pinned_contact_is_refused() {
    let mut p = pair();
    deliver(&p.alice_sends("hello"), "alice", &mut p.bob);
    // Mallory claims to be "alice" with her own identity.
    let mut mallory = Store::create(p.dir.path().join("m.db"), b"m", &options()).unwrap();
    let bob_bundle = p.bob.prekey_bundle(None).unwrap();
    mallory.add_contact("bob", "Bob", None).unwrap();
    mallory.start_session("bob", &bob_bundle).unwrap();
    let forged = mallory.send("bob", b"it's me, alice", T0).unwrap();
    assert!(matches!(
        p.bob.receive(&envelope(&forged, "alice")),
        Err(Error::IdentityMismatch)
    ));
    assert_eq!(p.bob.message_count("alice").unwrap(), 1);
    // And a bundle with another identity cannot start a session either.
    assert!(matches!(
        p.alice
            .start_session("bob", &mallory.prekey_bundle(None).unwrap()),
        Err(Error::IdentityMismatch)
    ));
}

#[test]
fn undecryptable_envelope_is_a_typed_error_and_changes_nothing() {
    let mut p = pair();
    let m = p.alice_sends("real");
    let mut tampered = m.clone();
    let last = tampered.ciphertext.len() - 1;
    tampered.ciphertext[last] ^= 1;
    let before = p.bob.one_time_prekey_count().unwrap();
    assert!(matches!(
        p.bob.receive(&envelope(&tampered, "alice")),
        Err(Error::Protocol(_))
    ));
    assert!(matches!(
        p.bob.receive(&Envelope {
            ciphertext: b"garbage",
            ..envelope(&m, "alice")
        }),
        Err(Error::Protocol(_))
    ));
    assert_eq!(p.bob.one_time_prekey_count().unwrap(), before);
    assert!(p.bob.contact("alice").unwrap().is_none());
    // The genuine envelope (same id) still goes through.
    assert_eq!(deliver(&m, "alice", &mut p.bob), "real");
}

#[test]
fn batch_receive_isolates_failures_and_commits_the_rest() {
    let mut p = pair();
    let sent: Vec<_> = (0..20).map(|i| p.alice_sends(&format!("m{i}"))).collect();
    let mut bad = sent[5].clone();
    bad.ciphertext[60] ^= 0xff;
    let mut envelopes: Vec<Envelope<'_>> = sent.iter().map(|m| envelope(m, "alice")).collect();
    envelopes[5] = envelope(&bad, "alice");
    envelopes.push(envelope(&sent[3], "alice")); // duplicate inside the batch

    let results = p.bob.receive_batch(&envelopes).unwrap();
    assert_eq!(results.len(), 21);
    for (i, r) in results.iter().enumerate() {
        match i {
            5 => assert!(matches!(r, Err(Error::Protocol(_)))),
            20 => assert!(matches!(r, Ok(Received::Duplicate))),
            _ => assert!(
                matches!(r, Ok(Received::Stored(m)) if m.body.as_slice() == format!("m{i}").as_bytes())
            ),
        }
    }
    assert_eq!(p.bob.message_count("alice").unwrap(), 19);
    // The refused one can be redelivered intact later.
    assert_eq!(deliver(&sent[5], "alice", &mut p.bob), "m5");
    // And the session still works both ways.
    let reply = p.bob_sends("got them");
    assert_eq!(deliver(&reply, "bob", &mut p.alice), "got them");
}

#[test]
fn contacts_can_be_listed_renamed_verified_and_deleted() {
    let mut p = pair();
    p.alice.add_contact("carol", "Carol", None).unwrap();
    assert!(matches!(
        p.alice.add_contact("carol", "Carol 2", None),
        Err(Error::ContactExists)
    ));
    p.alice.rename_contact("carol", "Caroline").unwrap();
    p.alice.set_contact_verified("carol", true).unwrap();
    let mut all: Vec<_> = p
        .alice
        .contacts()
        .unwrap()
        .into_iter()
        .map(|c| c.unwrap())
        .map(|c| (c.id, c.name, c.verified))
        .collect();
    all.sort();
    assert_eq!(
        all,
        vec![
            ("bob".into(), "Bob".into(), false),
            ("carol".into(), "Caroline".into(), true)
        ]
    );
    assert!(matches!(
        p.alice.rename_contact("dave", "x"),
        Err(Error::UnknownContact)
    ));
    p.alice_sends("to be deleted");
    assert!(p.alice.delete_contact("bob").unwrap());
    assert!(p.alice.contact("bob").unwrap().is_none());
    assert!(!p.alice.has_session("bob").unwrap());
    assert_eq!(p.alice.message_count("bob").unwrap(), 0);
    assert!(p.alice.outbox().unwrap().is_empty());
    assert!(matches!(
        p.alice.send("bob", b"x", T0),
        Err(Error::NoSession)
    ));
}

#[test]
fn deleting_a_message_removes_it_and_its_outbox_entry() {
    let mut p = pair();
    let a = p.alice_sends("keep");
    let b = p.alice_sends("delete me");
    assert!(p.alice.delete_message("bob", b.seq).unwrap());
    assert!(!p.alice.delete_message("bob", b.seq).unwrap());
    assert!(p.alice.message("bob", b.seq).unwrap().is_none());
    let left: Vec<_> = p
        .alice
        .outbox()
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(left, vec![a.clone()]);
    // Seqs are never reused after a delete.
    let c = p.alice_sends("after");
    assert_eq!(c.seq, b.seq + 1);
}

#[test]
fn debug_output_is_redacted() {
    let mut p = pair();
    p.alice
        .add_contact("secret-id-xyz", "Secret Name Xyz", None)
        .unwrap();
    let entry = p.alice_sends("secret body xyz");
    let received = p.bob.receive(&envelope(&entry, "alice")).unwrap();
    let contact = p.alice.contact("secret-id-xyz").unwrap().unwrap();
    let page = p.bob.history("alice", None, 10).unwrap();
    let texts = [
        format!("{:?}", p.alice),
        format!("{entry:?}"),
        format!("{received:?}"),
        format!("{contact:?}"),
        format!("{page:?}"),
        format!("{:?}", envelope(&entry, "alice")),
    ];
    for text in &texts {
        for needle in ["secret", "xyz", "alice", "bob"] {
            assert!(!text.to_lowercase().contains(needle), "{needle} in {text}");
        }
    }
}

#[test]
fn open_with_key_and_switching_unlock_methods() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let key = [0x42u8; 32];
    let mut store = Store::create_with_key(&path, &key, &options()).unwrap();
    store.add_contact("x", "X", None).unwrap();
    drop(store);
    assert!(matches!(
        Store::open_with_key(&path, &[0x43; 32], &options()),
        Err(Error::WrongKey)
    ));
    assert!(matches!(
        Store::open(&path, b"pw", &options()),
        Err(Error::WrongUnlockMethod { .. })
    ));
    let mut store = Store::open_with_key(&path, &key, &options()).unwrap();
    let params = sotto_store::KdfParams::new(64, 1, 1).unwrap();
    store
        .change_passphrase(b"now a passphrase", params)
        .unwrap();
    drop(store);
    assert!(matches!(
        Store::open_with_key(&path, &key, &options()),
        Err(Error::WrongUnlockMethod { .. })
    ));
    let mut store = Store::open(&path, b"now a passphrase", &options()).unwrap();
    assert_eq!(store.contact("x").unwrap().unwrap().name, "X");
    store.change_key(&[7; 32]).unwrap();
    drop(store);
    let store = Store::open_with_key(&path, &[7; 32], &options()).unwrap();
    assert_eq!(store.contact("x").unwrap().unwrap().name, "X");
}

#[test]
fn send_without_session_and_unknown_contact_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::create(dir.path().join("s.db"), b"pw", &options()).unwrap();
    assert!(matches!(s.send("nobody", b"x", T0), Err(Error::NoSession)));
    let bundle = s.prekey_bundle(None).unwrap();
    assert!(matches!(
        s.start_session("nobody", &bundle),
        Err(Error::UnknownContact)
    ));
    assert!(s.history("nobody", None, 10).unwrap().entries.is_empty());
    assert!(matches!(
        s.add_contact(&"x".repeat(2000), "n", None),
        Err(Error::TooLong { .. })
    ));
}

#[test]
fn normal_durability_works_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let relaxed = options().durability(sotto_store::Durability::Normal);
    let path = dir.path().join("n.db");
    let mut s = Store::create(&path, b"pw", &relaxed).unwrap();
    s.add_contact("x", "X", None).unwrap();
    drop(s);
    let s = Store::open(&path, b"pw", &relaxed).unwrap();
    assert_eq!(s.contact("x").unwrap().unwrap().name, "X");
    assert_eq!(s.schema_version().unwrap(), sotto_store::SCHEMA_VERSION);
}
