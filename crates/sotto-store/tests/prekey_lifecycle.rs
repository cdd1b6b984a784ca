//! Signed prekeys over time: rotation on a schedule with a grace period for
//! first messages in flight, and first messages that cannot be replayed
//! while their signed prekey is accepted.
#![cfg(test)]

mod common;

use common::{T0, deliver, envelope, options, pair};
use sotto_store::{Envelope, EnvelopeId, Error, Received, SignedPreKeyPolicy, Store};

const DAY: u64 = 24 * 3600 * 1000;

/// A PreKeyMessage made without a one-time prekey decrypts once. After its
/// session was pushed out of the session set (5 are kept) by newer X3DH
/// runs, the same first message under another envelope id must still be
/// refused: the store remembers the base key for as long as the signed
/// prekey it was made with is accepted.
#[test]
fn a_first_message_without_one_time_prekey_cannot_be_replayed_after_its_session_is_evicted() {
    let mut p = pair();
    let no_opk = p.bob.prekey_bundle(None).unwrap();
    p.alice.start_session("bob", &no_opk).unwrap();
    let first = p.alice_sends("first contact");
    assert_eq!(deliver(&first, "alice", &mut p.bob), "first contact");

    // Five newer X3DH runs, each delivered: the first session is evicted.
    for i in 0..5 {
        p.alice.start_session("bob", &no_opk).unwrap();
        let m = p.alice_sends(&format!("run {i}"));
        assert_eq!(deliver(&m, "alice", &mut p.bob), format!("run {i}"));
    }

    let before = p.bob.session_state_for_tests("alice").unwrap();
    let replay = Envelope {
        id: EnvelopeId([0x77; 16]),
        ..envelope(&first, "alice")
    };
    assert!(matches!(
        p.bob.receive(&replay),
        Err(Error::ReplayedFirstMessage)
    ));
    // Nothing changed, and nothing was stored twice.
    assert_eq!(p.bob.session_state_for_tests("alice").unwrap(), before);
    let page = p.bob.history("alice", None, 50).unwrap();
    assert_eq!(page.messages().count(), 6);
    // The original envelope id is a plain duplicate.
    assert!(matches!(
        p.bob.receive(&envelope(&first, "alice")).unwrap(),
        Received::Duplicate
    ));
    // The conversation goes on.
    let reply = p.bob_sends("still fine");
    assert_eq!(deliver(&reply, "bob", &mut p.alice), "still fine");
}

#[test]
fn signed_prekeys_rotate_weekly_and_old_ones_decrypt_until_their_grace_ends() {
    let mut p = pair();
    let policy = SignedPreKeyPolicy::default();
    let first = p.bob.signed_prekey().unwrap();
    // A new store's prekey has no known age: the clock starts now.
    assert!(
        p.bob
            .maintain_signed_prekeys(T0, &policy)
            .unwrap()
            .is_none()
    );
    assert!(
        p.bob
            .maintain_signed_prekeys(T0 + 7 * DAY - 1, &policy)
            .unwrap()
            .is_none()
    );
    // A first message is made against the current key and stays in flight.
    let no_opk = p.bob.prekey_bundle(None).unwrap();
    assert_eq!(no_opk.signed_prekey_id, first.id());
    p.alice.start_session("bob", &no_opk).unwrap();
    let in_flight = p.alice_sends("in flight for weeks");

    let second = p
        .bob
        .maintain_signed_prekeys(T0 + 7 * DAY, &policy)
        .unwrap()
        .expect("a week old: rotated");
    assert_ne!(second.id(), first.id());
    assert_eq!(p.bob.signed_prekey().unwrap().id(), second.id());
    // Not again until the new one is a week old.
    assert!(
        p.bob
            .maintain_signed_prekeys(T0 + 8 * DAY, &policy)
            .unwrap()
            .is_none()
    );
    let third = p
        .bob
        .maintain_signed_prekeys(T0 + 14 * DAY, &policy)
        .unwrap()
        .expect("rotated again");
    assert_ne!(third.id(), second.id());

    // The first key was retired at day 7 and is kept 35 days: the message
    // in flight since day 0 still decrypts on day 41.
    assert!(
        p.bob
            .maintain_signed_prekeys(T0 + 41 * DAY, &policy)
            .unwrap()
            .is_some()
    );
    assert_eq!(
        deliver(&in_flight, "alice", &mut p.bob),
        "in flight for weeks"
    );

    // On day 42 the first key is gone: a first message against it fails.
    p.bob
        .maintain_signed_prekeys(T0 + 42 * DAY, &policy)
        .unwrap();
    let mut carol = Store::create(p.dir.path().join("carol.db"), b"carol", &options()).unwrap();
    let stale =
        sotto_store::sotto_core::PreKeyBundle::new(&p.bob.identity().unwrap(), &first, None);
    carol.add_contact("bob", "Bob", None).unwrap();
    carol.start_session("bob", &stale).unwrap();
    let from_carol = carol.send("bob", b"too late", T0).unwrap();
    assert!(matches!(
        p.bob.receive(&envelope(&from_carol, "carol")),
        Err(Error::Protocol(
            sotto_store::sotto_core::Error::UnknownSignedPreKey(_)
        ))
    ));
}

/// A version-1 file (before rotation times, remembered base keys and
/// receipts) opens and is upgraded in place; its signed prekey starts the
/// schedule, and an entry waiting in its outbox is still sent.
#[test]
fn a_version_1_store_is_upgraded_and_keeps_working() {
    let mut p = pair();
    let m = p.alice_sends("before the upgrade");
    assert_eq!(deliver(&m, "alice", &mut p.bob), "before the upgrade");
    let waiting = p.bob_sends("waiting in the outbox");
    let path = p.bob_path();
    drop(p.bob);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP INDEX outbox_pending;
             ALTER TABLE outbox DROP COLUMN accepted;
             DROP TABLE used_base_keys;
             ALTER TABLE signed_prekeys DROP COLUMN since;
             UPDATE meta SET value = 1 WHERE name = 'schema_version';",
        )
        .unwrap();
    }
    let mut bob = Store::open(&path, common::BOB_PASS, &options()).unwrap();
    assert_eq!(bob.schema_version().unwrap(), sotto_store::SCHEMA_VERSION);
    let outbox: Vec<_> = bob
        .outbox()
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(outbox, vec![waiting]);
    let policy = SignedPreKeyPolicy::default();
    assert!(bob.maintain_signed_prekeys(T0, &policy).unwrap().is_none());
    assert!(
        bob.maintain_signed_prekeys(T0 + 7 * DAY, &policy)
            .unwrap()
            .is_some()
    );
    let m2 = p.alice.send("bob", b"after the upgrade", T0).unwrap();
    assert_eq!(deliver(&m2, "alice", &mut bob), "after the upgrade");
}
