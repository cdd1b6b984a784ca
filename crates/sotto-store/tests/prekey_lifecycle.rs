//! Prekeys over time: signed prekeys rotate on a schedule with a grace
//! period for first messages in flight, first messages cannot be replayed
//! while their signed prekey is accepted, and one-time prekeys are
//! published once each and kept for first messages in flight until used or
//! until their grace period after retirement ends.
#![cfg(test)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{BOB_PASS, T0, deliver, envelope, options, pair};
use rusqlite::params;
use sotto_store::sotto_core::{Error as ProtocolError, OneTimePreKeyId, PreKeyPublic};
use sotto_store::{
    Envelope, EnvelopeId, Error, OneTimePreKeyInfo, RETIRED_ONE_TIME_PREKEY_GRACE, Received, Row,
    SignedPreKeyPolicy, Store,
};

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
    common::to_clustered_message_layout(&path);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(common::SEEN_ENVELOPES_AS_IN_V7).unwrap();
        conn.execute_batch(
            "DROP INDEX outbox_pending;
             ALTER TABLE outbox DROP COLUMN accepted;
             DROP TABLE used_base_keys;
             ALTER TABLE signed_prekeys DROP COLUMN since;
             ALTER TABLE one_time_prekeys DROP COLUMN state;
             DROP TABLE contact_device_lists;
             DROP TABLE group_outbox;
             DROP TABLE group_sender_keys;
             DROP TABLE groups;
             DROP TABLE kem_prekeys;
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

/// A first message from Carol, made with the one-time prekey `opk` of Bob.
fn first_message_from_carol(
    p: &common::Pair,
    opk: OneTimePreKeyId,
    text: &str,
) -> (Store, sotto_store::OutboxEntry) {
    let mut carol = Store::create(
        p.dir.path().join(format!("carol-{opk}.db")),
        b"carol",
        &options(),
    )
    .unwrap();
    let bundle = p.bob.prekey_bundle(Some(opk)).unwrap();
    assert_eq!(bundle.one_time_prekey.map(|k| k.0), Some(opk));
    carol.add_contact("bob", "Bob", None).unwrap();
    carol.start_session("bob", &bundle).unwrap();
    let m = carol.send("bob", text.as_bytes(), T0).unwrap();
    (carol, m)
}

fn ids(keys: &[(OneTimePreKeyId, PreKeyPublic)]) -> Vec<u32> {
    keys.iter().map(|(id, _)| id.get()).collect()
}

/// Every public half handed out for upload, over batches, retirements,
/// prunes and restarts: no id (and no key) comes out twice, and no key
/// the store holds is handed out again.
#[test]
fn no_one_time_prekey_id_is_published_twice_across_replacement_top_up_and_restart() {
    let mut p = pair();
    let path = p.bob_path();
    let mut published: Vec<(OneTimePreKeyId, PreKeyPublic)> = Vec::new();
    let mut now = T0;
    // The five of `pair()` were published at T0 (ids 1..=5).
    let held: Vec<u32> = p
        .bob
        .one_time_prekeys()
        .unwrap()
        .iter()
        .map(|k| k.id.get())
        .collect();
    assert_eq!(held, vec![1, 2, 3, 4, 5]);
    for round in 0..4u64 {
        // A replacement of the relay's stock ("register")...
        now += DAY;
        let batch = p.bob.fresh_one_time_prekeys(20, now).unwrap();
        p.bob
            .retire_published_one_time_prekeys(batch[0].0, now)
            .unwrap();
        published.extend_from_slice(&batch);
        // ...top-ups ("replenish")...
        for _ in 0..3 {
            now += 3600 * 1000;
            published.extend(p.bob.fresh_one_time_prekeys(7, now).unwrap());
        }
        // ...pruning, and a restart.
        p.bob
            .prune_one_time_prekeys(now + round * 20 * DAY, RETIRED_ONE_TIME_PREKEY_GRACE)
            .unwrap();
        drop(std::mem::replace(
            &mut p.bob,
            Store::open(&path, BOB_PASS, &options()).unwrap(),
        ));
    }
    let distinct_ids: HashSet<OneTimePreKeyId> = published.iter().map(|(id, _)| *id).collect();
    let distinct_keys: HashSet<PreKeyPublic> = published.iter().map(|(_, k)| *k).collect();
    assert_eq!(published.len(), 4 * (20 + 3 * 7));
    assert_eq!(
        distinct_ids.len(),
        published.len(),
        "an id was published twice"
    );
    assert_eq!(
        distinct_keys.len(),
        published.len(),
        "a key was published twice"
    );
    assert!(
        distinct_ids.iter().all(|id| id.get() > 5),
        "an id of pair() came back"
    );
    // Ids only grow, batch after batch.
    assert!(ids(&published).windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn retired_one_time_prekeys_decrypt_first_messages_until_their_grace_ends() {
    let mut p = pair();
    // Batch A is live on the relay; two of its keys are handed out.
    let a = p.bob.fresh_one_time_prekeys(3, T0).unwrap();
    let (_carol1, early) = first_message_from_carol(&p, a[0].0, "made before the replacement");
    let (_carol2, late) = first_message_from_carol(&p, a[1].0, "arrives after the grace");

    // A replacement: batch B is uploaded, and once the relay confirmed it
    // everything older (pair()'s five and batch A) is retired.
    let replaced_at = T0 + DAY;
    let b = p.bob.fresh_one_time_prekeys(3, replaced_at).unwrap();
    assert_eq!(
        p.bob
            .retire_published_one_time_prekeys(b[0].0, replaced_at)
            .unwrap(),
        5 + 3
    );
    // Retiring again changes nothing (the time stays).
    assert_eq!(
        p.bob
            .retire_published_one_time_prekeys(b[0].0, replaced_at + 1)
            .unwrap(),
        0
    );
    let states = p.bob.one_time_prekeys().unwrap();
    assert_eq!(states.len(), 5 + 3 + 3);
    for state in &states {
        if state.id < b[0].0 {
            assert_eq!(state.retired_at, Some(replaced_at), "{state:?}");
        } else {
            assert_eq!(
                *state,
                OneTimePreKeyInfo {
                    id: state.id,
                    published_at: Some(replaced_at),
                    retired_at: None,
                }
            );
        }
    }

    // One ms before the grace ends nothing is pruned, and the first
    // message made with a retired key decrypts (which uses the key up).
    let grace = RETIRED_ONE_TIME_PREKEY_GRACE;
    let grace_ms = u64::try_from(grace.as_millis()).unwrap();
    assert_eq!(
        p.bob
            .prune_one_time_prekeys(replaced_at + grace_ms - 1, grace)
            .unwrap(),
        0
    );
    assert_eq!(
        deliver(&early, "carol-early", &mut p.bob),
        "made before the replacement"
    );
    assert_eq!(p.bob.one_time_prekey_count().unwrap(), 5 + 3 + 3 - 1);

    // At the end of the grace the retired keys go, the live ones stay.
    assert_eq!(
        p.bob
            .prune_one_time_prekeys(replaced_at + grace_ms, grace)
            .unwrap(),
        5 + 2
    );
    let left: Vec<u32> = p
        .bob
        .one_time_prekeys()
        .unwrap()
        .iter()
        .map(|k| k.id.get())
        .collect();
    assert_eq!(left, ids(&b));
    assert!(matches!(
        p.bob.receive(&envelope(&late, "carol-late")),
        Err(Error::Protocol(ProtocolError::UnknownOneTimePreKey(id))) if id == a[1].0
    ));
    // Live keys are never pruned, however old.
    assert_eq!(
        p.bob
            .prune_one_time_prekeys(replaced_at + 1000 * DAY, Duration::ZERO)
            .unwrap(),
        0
    );
    assert_eq!(p.bob.one_time_prekey_count().unwrap(), 3);
}

/// A version-2 file: its one-time prekeys may all be on the relay, so they
/// become live keys of unknown age, and only a replacement retires them.
#[test]
fn a_version_2_store_is_upgraded_and_its_one_time_prekeys_stay_live() {
    let mut p = pair();
    let path = p.bob_path();
    drop(p.bob);
    common::to_clustered_message_layout(&path);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(common::SEEN_ENVELOPES_AS_IN_V7).unwrap();
        conn.execute_batch(
            "DROP INDEX outbox_pending;
             ALTER TABLE outbox DROP COLUMN accepted;
             ALTER TABLE one_time_prekeys DROP COLUMN state;
             DROP TABLE contact_device_lists;
             DROP TABLE group_outbox;
             DROP TABLE group_sender_keys;
             DROP TABLE groups;
             DROP TABLE kem_prekeys;
             UPDATE meta SET value = 2 WHERE name = 'schema_version';",
        )
        .unwrap();
    }
    let mut bob = Store::open(&path, BOB_PASS, &options()).unwrap();
    assert_eq!(bob.schema_version().unwrap(), sotto_store::SCHEMA_VERSION);
    // Schema 7's KEM prekeys work in the upgraded file (its id counter,
    // written before schema 7, starts at 1).
    let kem = bob.last_resort_kem_prekey().unwrap();
    assert_eq!(kem.id.get(), 1);
    assert_eq!(bob.fresh_kem_prekeys(1).unwrap()[0].id.get(), 2);
    let states = bob.one_time_prekeys().unwrap();
    assert_eq!(
        states,
        (1..=5)
            .map(|id| OneTimePreKeyInfo {
                id: OneTimePreKeyId::new(id),
                published_at: None,
                retired_at: None,
            })
            .collect::<Vec<_>>()
    );
    assert_eq!(
        bob.prune_one_time_prekeys(T0 + 1000 * DAY, Duration::ZERO)
            .unwrap(),
        0
    );
    // Alice's session was made with key 1: it still decrypts.
    let m = p.alice.send("bob", b"across the upgrade", T0).unwrap();
    assert_eq!(deliver(&m, "alice", &mut bob), "across the upgrade");
    // New keys continue the ids; a replacement retires the old ones.
    let fresh = bob.fresh_one_time_prekeys(2, T0).unwrap();
    assert_eq!(ids(&fresh), vec![6, 7]);
    assert_eq!(
        bob.retire_published_one_time_prekeys(fresh[0].0, T0)
            .unwrap(),
        4
    );
    assert_eq!(
        bob.prune_one_time_prekeys(T0 + 35 * DAY, RETIRED_ONE_TIME_PREKEY_GRACE)
            .unwrap(),
        4
    );
    assert_eq!(bob.one_time_prekey_count().unwrap(), 2);
}

/// The state of a one-time prekey is sealed for its own row: moved to
/// another row it does not open, and that row alone is reported.
#[test]
fn a_one_time_prekey_state_moved_to_another_row_is_corrupt_and_left_alone() {
    let p = pair();
    let path = p.bob_path();
    drop(p.bob);
    let moved_to: Vec<u8> = {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let rows: Vec<(Vec<u8>, Vec<u8>)> = conn
            .prepare("SELECT lookup, state FROM one_time_prekeys")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        conn.execute(
            "UPDATE one_time_prekeys SET state = ?1 WHERE lookup = ?2",
            params![rows[0].1, rows[1].0],
        )
        .unwrap();
        rows[1].0.clone()
    };
    let mut bob = Store::open(&path, BOB_PASS, &options()).unwrap();
    let expected_row = Row::Lookup(moved_to[..8].try_into().unwrap());
    assert!(matches!(
        bob.one_time_prekeys(),
        Err(Error::Corrupt { table: "one_time_prekeys", row }) if row == expected_row
    ));
    // Retiring and pruning skip that row and handle the others.
    let fresh = bob.fresh_one_time_prekeys(1, T0).unwrap();
    assert_eq!(
        bob.retire_published_one_time_prekeys(fresh[0].0, T0)
            .unwrap(),
        4
    );
    assert_eq!(bob.prune_one_time_prekeys(T0, Duration::ZERO).unwrap(), 4);
    assert_eq!(bob.one_time_prekey_count().unwrap(), 2);
}

/// Protocol v2's KEM prekeys: a one-time one is handed out once and
/// deleted with the first message that used it; the last-resort one
/// serves every first message until it is replaced, then stops decrypting.
#[test]
fn kem_prekeys_one_time_ones_go_with_their_first_message_the_last_resort_one_stays() {
    let mut p = pair();
    let last_resort = p.bob.last_resort_kem_prekey().unwrap();
    // Asked again: the same key, not a new one.
    assert_eq!(p.bob.last_resort_kem_prekey().unwrap(), last_resort);
    let fresh = p.bob.fresh_kem_prekeys(2).unwrap();
    assert_eq!(fresh.len(), 2);
    let ids: HashSet<_> = fresh.iter().map(|k| k.id).chain([last_resort.id]).collect();
    assert_eq!(ids.len(), 3, "every KEM prekey has an id of its own");
    let identity = p.bob.identity_key().unwrap();
    for key in fresh.iter().chain([&last_resort]) {
        key.verify(&identity).unwrap();
    }
    assert_eq!(p.bob.one_time_kem_prekey_count().unwrap(), 2);

    // A first message made with a one-time KEM prekey: a v2 session, and
    // the key is gone once it was received.
    let bundle = p.bob.prekey_bundle_v2(None, fresh[0].id).unwrap().unwrap();
    assert_eq!(bundle.version(), 2);
    p.alice.start_session("bob", &bundle).unwrap();
    let first = p.alice_sends("post-quantum hello");
    assert_eq!(first.ciphertext[0], 0x02, "a v2 PreKeyMessage");
    assert_eq!(deliver(&first, "alice", &mut p.bob), "post-quantum hello");
    assert_eq!(p.bob.one_time_kem_prekey_count().unwrap(), 1);
    assert!(p.bob.prekey_bundle_v2(None, fresh[0].id).unwrap().is_none());
    let reply = p.bob_sends("v2 reply");
    assert_eq!(reply.ciphertext[0], 0x02);
    assert_eq!(deliver(&reply, "bob", &mut p.alice), "v2 reply");

    // The last-resort key serves first messages and stays.
    let by_last_resort = p
        .bob
        .prekey_bundle_v2(None, last_resort.id)
        .unwrap()
        .unwrap();
    for i in 0..2 {
        p.alice.start_session("bob", &by_last_resort).unwrap();
        let m = p.alice_sends(&format!("last resort {i}"));
        assert_eq!(deliver(&m, "alice", &mut p.bob), format!("last resort {i}"));
    }
    assert!(
        p.bob
            .prekey_bundle_v2(None, last_resort.id)
            .unwrap()
            .is_some()
    );

    // Replaced: a first message made with the old one no longer decrypts.
    p.alice.start_session("bob", &by_last_resort).unwrap();
    let late = p.alice_sends("too late");
    let replaced = p.bob.rotate_last_resort_kem_prekey().unwrap();
    assert_ne!(replaced.id, last_resort.id);
    assert!(p.bob.receive(&envelope(&late, "alice")).is_err());
    // The store's check opens the KEM prekey rows too, and finds them whole.
    assert!(p.bob.check().unwrap().problems.is_empty());
}

/// One-time KEM prekeys a replacement took off the relay are retired and,
/// after the grace period, deleted; those of the replacing upload and any
/// made later stay, and a first message in flight made with a retired one
/// still decrypts until then.
#[test]
fn retired_one_time_kem_prekeys_are_pruned_after_the_grace_period_only() {
    let mut p = pair();
    let grace = RETIRED_ONE_TIME_PREKEY_GRACE;
    let grace_ms = u64::try_from(grace.as_millis()).unwrap();
    p.bob.last_resort_kem_prekey().unwrap();
    let old = p.bob.fresh_kem_prekeys(3).unwrap();
    // A sender fetched a bundle with an old key just before the
    // replacement.
    let in_flight = p.bob.prekey_bundle_v2(None, old[0].id).unwrap().unwrap();
    let replacing = p.bob.fresh_kem_prekeys(2).unwrap();
    p.bob
        .retire_published_kem_prekeys(replacing[0].id, T0)
        .unwrap();
    let later = p.bob.fresh_kem_prekeys(1).unwrap();
    assert_eq!(p.bob.one_time_kem_prekey_count().unwrap(), 6);

    // Within the grace period nothing goes, and the key in flight works.
    assert_eq!(
        p.bob.prune_kem_prekeys(T0 + grace_ms - 1, grace).unwrap(),
        0
    );
    p.alice.start_session("bob", &in_flight).unwrap();
    let first = p.alice_sends("made before the replacement");
    assert_eq!(
        deliver(&first, "alice", &mut p.bob),
        "made before the replacement"
    );
    assert_eq!(p.bob.one_time_kem_prekey_count().unwrap(), 5);

    // After it, the two other retired keys go; nothing else does.
    assert_eq!(p.bob.prune_kem_prekeys(T0 + grace_ms, grace).unwrap(), 2);
    assert_eq!(p.bob.one_time_kem_prekey_count().unwrap(), 3);
    for key in old.iter().skip(1) {
        assert!(p.bob.prekey_bundle_v2(None, key.id).unwrap().is_none());
    }
    for key in replacing.iter().chain(&later) {
        assert!(p.bob.prekey_bundle_v2(None, key.id).unwrap().is_some());
    }
    // Done: pruning again deletes nothing, and the last-resort key stays.
    assert_eq!(p.bob.prune_kem_prekeys(u64::MAX, grace).unwrap(), 0);
    assert_eq!(p.bob.one_time_kem_prekey_count().unwrap(), 3);
    assert!(p.bob.has_kem_prekeys().unwrap());
    assert!(p.bob.check().unwrap().problems.is_empty());
}

/// What a contact's address said it speaks binds new sessions with it: a
/// v1 bundle is refused once version 2 is required, and a v2 bundle is
/// taken. The requirement never goes down, survives reopening, and a
/// version the store does not know is refused.
#[test]
fn a_contact_required_to_speak_v2_gets_no_v1_session() {
    let mut p = pair();
    p.bob.last_resort_kem_prekey().unwrap();
    let kem = p.bob.fresh_kem_prekeys(1).unwrap();
    let v1 = p.bob.prekey_bundle(None).unwrap();
    let v2 = p.bob.prekey_bundle_v2(None, kem[0].id).unwrap().unwrap();
    // A new contact, never in a session: v1 would do.
    p.alice
        .add_contact_speaking("carol", "Carol", None, 2)
        .unwrap();
    assert_eq!(
        p.alice
            .contact("carol")
            .unwrap()
            .unwrap()
            .min_protocol_version,
        2
    );
    p.alice.require_protocol_version("bob", 2).unwrap();
    p.alice.require_protocol_version("bob", 1).unwrap();
    assert_eq!(
        p.alice
            .contact("bob")
            .unwrap()
            .unwrap()
            .min_protocol_version,
        2,
        "never lowered"
    );
    assert!(matches!(
        p.alice.start_session("bob", &v1),
        Err(Error::Protocol(ProtocolError::Downgrade {
            offered: 1,
            expected: 2
        }))
    ));
    // The refusal changed nothing: the v1 session `pair` started stays.
    assert_eq!(p.alice_sends("still v1").ciphertext[0], 0x01);
    p.alice.start_session("bob", &v2).unwrap();
    let first = p.alice_sends("v2 from the start");
    assert_eq!(first.ciphertext[0], 0x02);
    assert_eq!(deliver(&first, "alice", &mut p.bob), "v2 from the start");
    assert!(matches!(
        p.alice.require_protocol_version("bob", 3),
        Err(Error::Protocol(ProtocolError::UnsupportedVersion(3)))
    ));
}
