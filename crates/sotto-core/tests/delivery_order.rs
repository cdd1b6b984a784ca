//! Delivery order: in order, reordered inside a chain, late across DH
//! steps, lost for good, and the initiator's PreKeyMessages in any order.
#![cfg(test)]

mod common;

use common::{FIRST_OPK_ID, Pair, Party, reject_unchanged, rng, text};
use sotto_core::{Error, MAX_SKIPPED_KEYS, Role, Session};

#[test]
fn in_order_conversation_both_ways_for_many_rounds() {
    let mut p = Pair::new(1);
    for round in 0..20 {
        // Bursts of different lengths, so chains of several messages form.
        for k in 0..(round % 4) + 1 {
            let t = text(round * 10 + k);
            let wire = p.a_sends(&t);
            p.b_receives(&wire, &t);
        }
        for k in 0..(round % 3) + 1 {
            let t = text(1000 + round * 10 + k);
            let wire = p.b_sends(&t);
            p.a_receives(&wire, &t);
        }
    }
    assert_eq!(p.a.skipped_key_count(), 0);
    assert_eq!(p.b.skipped_key_count(), 0);
    assert_eq!(p.a.role(), Role::Initiator);
    assert_eq!(p.b.role(), Role::Responder);
    assert_eq!(p.a.base_key(), p.b.base_key());
    assert_eq!(p.a.remote_identity(), p.b.local_identity());
    assert_eq!(p.b.remote_identity(), p.a.local_identity());
}

#[test]
fn out_of_order_within_one_chain_all_decrypt() {
    let mut p = Pair::new(2);
    let wires: Vec<Vec<u8>> = (0..8).map(|i| p.a_sends(&text(i))).collect();
    // Deliver 5, 0, 7, 2, 1, 6, 3, 4.
    for &i in &[5usize, 0, 7, 2, 1, 6, 3, 4] {
        p.b_receives(&wires[i], &text(i));
    }
    assert_eq!(p.b.skipped_key_count(), 0);
    p.round_trip("after reorder");
}

#[test]
fn skipped_message_is_delivered_after_several_dh_steps() {
    let mut p = Pair::new(3);
    let early: Vec<Vec<u8>> = (0..3).map(|i| p.a_sends(&text(i))).collect();
    // Only the last of the chain arrives now; 0 and 1 are held back.
    p.b_receives(&early[2], &text(2));
    assert_eq!(p.b.skipped_key_count(), 2);
    // Several DH steps each way.
    for step in 0..4 {
        p.round_trip(&format!("step {step}"));
    }
    // Bob also leaves one of his own messages behind for Alice.
    let bob_late = p.b_sends(b"late from bob");
    for step in 4..7 {
        p.round_trip(&format!("step {step}"));
    }
    p.b_receives(&early[0], &text(0));
    p.a_receives(&bob_late, b"late from bob");
    p.b_receives(&early[1], &text(1));
    assert_eq!(p.b.skipped_key_count(), 0);
    assert_eq!(p.a.skipped_key_count(), 0);
    p.round_trip("after late delivery");
}

#[test]
fn messages_lost_forever_do_not_stop_the_conversation() {
    let mut p = Pair::new(4);
    let mut lost = 0;
    for round in 0..10 {
        for k in 0..4 {
            let t = text(round * 100 + k);
            let wire = p.a_sends(&t);
            // Every other message from Alice is lost.
            if k % 2 == 0 {
                lost += 1;
            } else {
                p.b_receives(&wire, &t);
            }
        }
        for k in 0..3 {
            let t = text(round * 100 + 50 + k);
            let wire = p.b_sends(&t);
            // Bob's first message of each turn is lost.
            if k > 0 {
                p.a_receives(&wire, &t);
            }
        }
    }
    // The keys of lost messages are kept as skipped keys (bounded).
    assert_eq!(p.b.skipped_key_count(), lost);
    assert_eq!(p.a.skipped_key_count(), 10);
    // A whole turn lost: Alice sends, nothing arrives, Bob never answers it.
    for i in 0..5 {
        let _ = p.a_sends(&text(9000 + i));
    }
    p.round_trip("after a lost turn");
}

#[test]
fn empty_and_large_plaintexts_round_trip() {
    let mut p = Pair::new(5);
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    for t in [
        Vec::new(),
        vec![0u8; 1],
        vec![0u8; 255],
        vec![0x80; 256],
        big,
    ] {
        let wire = p.a_sends(&t);
        p.b_receives(&wire, &t);
        let wire = p.b_sends(&t);
        p.a_receives(&wire, &t);
    }
}

#[test]
fn prekey_messages_decrypt_in_any_order_without_rerunning_x3dh() {
    let mut rng = rng(6);
    let alice = Party::new(&mut rng, 0);
    let mut bob = Party::new(&mut rng, 1);
    let mut a = Session::initiate(&alice.identity, &bob.bundle(Some(FIRST_OPK_ID)), &mut rng)
        .expect("initiate");
    let wires: Vec<Vec<u8>> = (0..4)
        .map(|i| a.encrypt(&text(i)).expect("encrypt"))
        .collect();
    assert!(a.is_pending_prekey());
    // Bob sees the third one first; it creates the session and uses the OPK.
    let (mut b, first) = bob.respond(&wires[2], &mut rng).expect("respond");
    assert_eq!(first, text(2));
    assert!(!bob.prekeys.has_one_time(FIRST_OPK_ID));
    // The others match the existing session (running X3DH again would fail:
    // the OPK is gone).
    for i in [3usize, 0, 1] {
        assert_eq!(b.decrypt(&wires[i], &mut rng).expect("decrypt"), text(i));
    }
    assert_eq!(
        bob.respond(&wires[0], &mut rng).err(),
        Some(Error::UnknownOneTimePreKey(FIRST_OPK_ID))
    );
    // Alice keeps sending PreKeyMessages until she hears back.
    let more = a.encrypt(b"still pending").expect("encrypt");
    assert_eq!(more[1], sotto_core::wire::TYPE_PREKEY_MESSAGE);
    assert_eq!(
        b.decrypt(&more, &mut rng).expect("decrypt"),
        b"still pending"
    );
    let reply = b.encrypt(b"reply").expect("encrypt");
    assert_eq!(a.decrypt(&reply, &mut rng).expect("decrypt"), b"reply");
    assert!(!a.is_pending_prekey());
    let plain = a.encrypt(b"now plain").expect("encrypt");
    assert_eq!(plain[1], sotto_core::wire::TYPE_MESSAGE);
    assert_eq!(b.decrypt(&plain, &mut rng).expect("decrypt"), b"now plain");
}

#[test]
fn session_without_one_time_prekey_works_and_rejects_another_sessions_message() {
    let mut rng = rng(7);
    let alice = Party::new(&mut rng, 0);
    let mut bob = Party::new(&mut rng, 0);
    let mut a = Session::initiate(&alice.identity, &bob.bundle(None), &mut rng).expect("initiate");
    let wire = a.encrypt(b"no opk").expect("encrypt");
    let (mut b, first) = bob.respond(&wire, &mut rng).expect("respond");
    assert_eq!(first, b"no opk");
    let reply = b.encrypt(b"ok").expect("encrypt");
    assert_eq!(a.decrypt(&reply, &mut rng).expect("decrypt"), b"ok");
    // A message of this session sent to another session of the same pair
    // (which has no receiving chain yet) is rejected without a change.
    let mut c = Session::initiate(&alice.identity, &bob.bundle(None), &mut rng).expect("initiate");
    let foreign = b.encrypt(b"not for c").expect("encrypt");
    let err = reject_unchanged(&mut c, &foreign, &mut rng);
    assert_eq!(err, Error::AuthenticationFailed);
}

#[test]
fn skipped_key_store_is_bounded_and_evicts_the_oldest() {
    let mut p = Pair::new(8);
    // A chain of Alice's: 1000 skipped keys (messages 0..1000, 1000 arrives).
    let chain1: Vec<Vec<u8>> = (0..=1000).map(|i| p.a_sends(&text(i))).collect();
    p.b_receives(&chain1[1000], &text(1000));
    assert_eq!(p.b.skipped_key_count(), 1000);
    p.round_trip("dh step");
    // Her next chain (after the round trip): another 1000 skipped; then 5
    // more in the chain after that: the store stays at the cap.
    let chain2: Vec<Vec<u8>> = (0..=1000).map(|i| p.a_sends(&text(5000 + i))).collect();
    p.b_receives(&chain2[1000], &text(6000));
    assert_eq!(p.b.skipped_key_count(), MAX_SKIPPED_KEYS);
    let reply = p.b_sends(b"to alice");
    p.a_receives(&reply, b"to alice");
    let chain3: Vec<Vec<u8>> = (0..=5).map(|i| p.a_sends(&text(9000 + i))).collect();
    p.b_receives(&chain3[5], &text(9005));
    assert_eq!(p.b.skipped_key_count(), MAX_SKIPPED_KEYS);
    // The five oldest keys (first chain, messages 0..5) were evicted.
    for (i, wire) in chain1.iter().enumerate().take(5) {
        let before = p.b.to_bytes();
        assert!(p.b.decrypt(wire, &mut p.rng).is_err(), "evicted key {i}");
        assert!(*before == *p.b.to_bytes());
    }
    // The newest survivors still decrypt.
    p.b_receives(&chain1[5], &text(5));
    p.b_receives(&chain2[999], &text(5999));
    p.b_receives(&chain3[0], &text(9000));
    assert_eq!(p.b.skipped_key_count(), MAX_SKIPPED_KEYS - 3);
}
