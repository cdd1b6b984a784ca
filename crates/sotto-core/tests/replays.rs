//! Replays never decrypt twice and never change a session: `Duplicate`
//! where the session can tell, another refusal otherwise.
#![cfg(test)]

mod common;

use common::{FIRST_OPK_ID, Pair, Party, reject_unchanged, rng, text};
use sotto_core::{Error, Session, SessionSet};

#[test]
fn replayed_message_of_the_current_chain_is_a_duplicate() {
    let mut p = Pair::new(40);
    let w0 = p.a_sends(&text(0));
    let w1 = p.a_sends(&text(1));
    p.b_receives(&w0, &text(0));
    p.b_receives(&w1, &text(1));
    assert_eq!(
        reject_unchanged(&mut p.b, &w0, &mut p.rng),
        Error::Duplicate(0)
    );
    assert_eq!(
        reject_unchanged(&mut p.b, &w1, &mut p.rng),
        Error::Duplicate(1)
    );
    // The same for Alice receiving Bob's messages.
    let r = p.b_sends(b"reply");
    p.a_receives(&r, b"reply");
    // (Bob's first message of his new chain, index 0.)
    assert_eq!(
        reject_unchanged(&mut p.a, &r, &mut p.rng),
        Error::Duplicate(0)
    );
    p.round_trip("after replays");
}

#[test]
fn replayed_message_whose_key_came_from_the_skipped_store_is_a_duplicate() {
    let mut p = Pair::new(41);
    let wires: Vec<Vec<u8>> = (0..4).map(|i| p.a_sends(&text(i))).collect();
    p.b_receives(&wires[3], &text(3));
    p.b_receives(&wires[1], &text(1));
    assert_eq!(p.b.skipped_key_count(), 2);
    assert_eq!(
        reject_unchanged(&mut p.b, &wires[1], &mut p.rng),
        Error::Duplicate(1)
    );
    assert_eq!(p.b.skipped_key_count(), 2);
    p.b_receives(&wires[0], &text(0));
    p.b_receives(&wires[2], &text(2));
    for (i, w) in wires.iter().enumerate() {
        let err = reject_unchanged(&mut p.b, w, &mut p.rng);
        assert_eq!(err, Error::Duplicate(i as u32));
    }
}

#[test]
fn replay_from_a_chain_the_session_no_longer_holds_is_refused() {
    let mut p = Pair::new(42);
    let old = p.a_sends(b"old chain");
    p.b_receives(&old, b"old chain");
    for i in 0..3 {
        p.round_trip(&format!("step {i}"));
    }
    // Bob cannot tell it is a replay (the chain is gone), so it fails to
    // authenticate under the keys a new chain would have.
    assert_eq!(
        reject_unchanged(&mut p.b, &old, &mut p.rng),
        Error::AuthenticationFailed
    );
    p.round_trip("after replay");
}

#[test]
fn replayed_prekey_message_is_a_duplicate_and_cannot_rerun_x3dh() {
    let mut rng = rng(43);
    let alice = Party::new(&mut rng, 0);
    let mut bob = Party::new(&mut rng, 1);
    let mut a = Session::initiate(&alice.identity, &bob.bundle(Some(FIRST_OPK_ID)), &mut rng)
        .expect("initiate");
    let first = a.encrypt(b"hi").expect("encrypt");
    let (mut b, _) = bob.respond(&first, &mut rng).expect("respond");
    // Into the session it created.
    assert_eq!(
        reject_unchanged(&mut b, &first, &mut rng),
        Error::Duplicate(0)
    );
    // As a new session: the one-time prekey is gone.
    assert_eq!(
        bob.respond(&first, &mut rng).err(),
        Some(Error::UnknownOneTimePreKey(FIRST_OPK_ID))
    );
    // Still a duplicate after Bob's session has moved on by a DH step.
    let reply = b.encrypt(b"reply").expect("encrypt");
    assert_eq!(a.decrypt(&reply, &mut rng).expect("decrypt"), b"reply");
    let next = a.encrypt(b"next").expect("encrypt");
    assert_eq!(b.decrypt(&next, &mut rng).expect("decrypt"), b"next");
    assert!(reject_unchanged(&mut b, &first, &mut rng) != Error::SessionMismatch);
}

#[test]
fn replayed_prekey_message_without_one_time_prekey_is_caught_by_the_session_set() {
    let mut rng = rng(44);
    let alice = Party::new(&mut rng, 0);
    let bob = Party::new(&mut rng, 0);
    let mut a = Session::initiate(&alice.identity, &bob.bundle(None), &mut rng).expect("initiate");
    let first = a.encrypt(b"no one-time prekey").expect("encrypt");
    let mut set = SessionSet::new();
    let d = set
        .decrypt(&bob.identity, &bob.prekeys, &first, &mut rng)
        .expect("decrypt");
    assert!(d.new_session);
    assert_eq!(d.plaintext, b"no one-time prekey");
    let before = set.to_bytes();
    assert_eq!(
        set.decrypt(&bob.identity, &bob.prekeys, &first, &mut rng)
            .err(),
        Some(Error::Duplicate(0))
    );
    assert!(*before == *set.to_bytes());
    assert_eq!(set.len(), 1);
}

#[test]
fn replayed_prekey_message_with_an_equivalent_base_key_encoding_is_refused() {
    // X25519 ignores the top bit of a public key, so setting it gives the
    // same X3DH result. Such a second encoding must not get past the
    // session set's replay check by looking like a new X3DH run.
    let mut rng = rng(45);
    let alice = Party::new(&mut rng, 0);
    let bob = Party::new(&mut rng, 0);
    let mut a = Session::initiate(&alice.identity, &bob.bundle(None), &mut rng).expect("initiate");
    let first = a.encrypt(b"once only").expect("encrypt");
    let mut set = SessionSet::new();
    set.decrypt(&bob.identity, &bob.prekeys, &first, &mut rng)
        .expect("decrypt");
    let mut replay = first.clone();
    replay[2 + 32 + 31] ^= 0x80;
    let before = set.to_bytes();
    let result = set.decrypt(&bob.identity, &bob.prekeys, &replay, &mut rng);
    assert!(result.is_err(), "a replay decrypted a second time");
    assert!(*before == *set.to_bytes());
    assert_eq!(set.len(), 1);
}

#[test]
fn would_start_session_names_the_x3dh_run_of_a_new_first_message_only() {
    let mut rng = rng(46);
    let alice = Party::new(&mut rng, 0);
    let bob = Party::new(&mut rng, 0);
    let mut a = Session::initiate(&alice.identity, &bob.bundle(None), &mut rng).expect("initiate");
    let first = a.encrypt(b"first").expect("encrypt");
    let second = a.encrypt(b"second").expect("encrypt");
    let bundle = bob.bundle(None);
    let mut set = SessionSet::new();
    // Before: a new X3DH run, named by (signed prekey id, EK_A).
    let base_key: [u8; 32] = first[2 + 32..2 + 64].try_into().unwrap();
    assert_eq!(
        set.would_start_session(&first),
        Some((bundle.signed_prekey_id, base_key))
    );
    set.decrypt(&bob.identity, &bob.prekeys, &first, &mut rng)
        .expect("decrypt");
    // After: the same run (any of its PreKeyMessages) matches the session.
    assert_eq!(set.would_start_session(&first), None);
    assert_eq!(set.would_start_session(&second), None);
    // Bob's reply makes Alice send plain Messages: never a new run.
    let mut reply_set = set.clone();
    let reply = reply_set.encrypt(b"reply").expect("encrypt");
    a.decrypt(&reply, &mut rng).expect("decrypt");
    let plain = a.encrypt(b"plain").expect("encrypt");
    assert_eq!(set.would_start_session(&plain), None);
    // Truncated or foreign bytes are not a run.
    for len in 0..2 + 64 + 4 {
        assert_eq!(set.would_start_session(&first[..len]), None, "{len}");
    }
    assert_eq!(SessionSet::new().would_start_session(b"\x02\x01"), None);
}
