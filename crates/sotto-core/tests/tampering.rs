//! Tampering: every single-byte change of a Message or PreKeyMessage is
//! refused, leaves the receiver unchanged (no session state change, no
//! one-time prekey consumed), and the genuine message still decrypts.
#![cfg(test)]

mod common;

use common::{FIRST_OPK_ID, Pair, Party, reject_unchanged, rng, text};
use sotto_core::wire::{HEADER_LEN, PreKeyMessage};
use sotto_core::{Error, Session};

const MASKS: [u8; 2] = [0x01, 0x80];

/// Offset of the embedded Message inside a PreKeyMessage with an OPK.
const PREKEY_PREFIX_WITH_OPK: usize = 2 + 32 + 32 + 4 + 1 + 4;

fn flipped(wire: &[u8], pos: usize, mask: u8) -> Vec<u8> {
    let mut out = wire.to_vec();
    out[pos] ^= mask;
    out
}

/// The errors a flip at `pos` of a Message may produce.
fn check_message_flip_error(pos: usize, err: &Error) {
    match pos {
        0 => assert!(
            matches!(err, Error::UnsupportedVersion(_)),
            "{pos}: {err:?}"
        ),
        1 => assert!(
            matches!(err, Error::UnknownMessageType(_)),
            "{pos}: {err:?}"
        ),
        // The header: authenticated as associated data, and its counters or
        // key may be refused even before the AEAD runs.
        p if p < 2 + HEADER_LEN => assert!(
            matches!(
                err,
                Error::AuthenticationFailed
                    | Error::TooManySkipped { .. }
                    | Error::Duplicate(_)
                    | Error::NonContributoryKey
            ),
            "{pos}: {err:?}"
        ),
        _ => assert_eq!(*err, Error::AuthenticationFailed, "{pos}"),
    }
}

fn every_flip_of_a_message_is_rejected(p: &mut Pair, wire: &[u8], expected: &[u8]) {
    for pos in 0..wire.len() {
        for mask in MASKS {
            let bad = flipped(wire, pos, mask);
            let err = reject_unchanged(&mut p.b, &bad, &mut p.rng);
            check_message_flip_error(pos, &err);
        }
    }
    p.b_receives(wire, expected);
}

#[test]
fn every_byte_flip_of_a_message_starting_a_new_chain_is_rejected() {
    let mut p = Pair::new(30);
    // The first message of Alice's next chain: Bob must do a DH step for it.
    let wire = p.a_sends(b"new chain");
    every_flip_of_a_message_is_rejected(&mut p, &wire, b"new chain");
    p.round_trip("after flips");
}

#[test]
fn every_byte_flip_of_a_message_in_the_current_chain_is_rejected() {
    let mut p = Pair::new(31);
    let first = p.a_sends(&text(0));
    p.b_receives(&first, &text(0));
    let second = p.a_sends(&text(1));
    every_flip_of_a_message_is_rejected(&mut p, &second, &text(1));
    // A message from the skipped store, flipped: its key stays stored.
    let wires: Vec<Vec<u8>> = (2..5).map(|i| p.a_sends(&text(i))).collect();
    p.b_receives(&wires[2], &text(4));
    every_flip_of_a_message_is_rejected(&mut p, &wires[0], &text(2));
    p.b_receives(&wires[1], &text(3));
    p.round_trip("after flips");
}

#[test]
fn every_byte_flip_of_a_prekey_message_is_rejected_without_consuming_the_one_time_prekey() {
    let mut rng = rng(32);
    let alice = Party::new(&mut rng, 0);
    let mut bob = Party::new(&mut rng, 1);
    let mut a = Session::initiate(&alice.identity, &bob.bundle(Some(FIRST_OPK_ID)), &mut rng)
        .expect("initiate");
    let wire = a.encrypt(b"first contact").expect("encrypt");
    assert!(PreKeyMessage::parse(&wire).is_ok());
    for pos in 0..wire.len() {
        for mask in MASKS {
            let bad = flipped(&wire, pos, mask);
            let result = bob.respond(&bad, &mut rng);
            assert!(result.is_err(), "flip at {pos} ^ {mask:#04x} was accepted");
            assert!(
                bob.prekeys.has_one_time(FIRST_OPK_ID),
                "flip at {pos} consumed the one-time prekey"
            );
        }
    }
    let (mut b, first) = bob.respond(&wire, &mut rng).expect("genuine message");
    assert_eq!(first, b"first contact");
    assert!(!bob.prekeys.has_one_time(FIRST_OPK_ID));
    let reply = b.encrypt(b"welcome").expect("encrypt");
    assert_eq!(a.decrypt(&reply, &mut rng).expect("decrypt"), b"welcome");
}

#[test]
fn every_byte_flip_of_a_prekey_message_to_an_existing_session_leaves_it_unchanged() {
    let mut rng = rng(33);
    let alice = Party::new(&mut rng, 0);
    let mut bob = Party::new(&mut rng, 1);
    let mut a = Session::initiate(&alice.identity, &bob.bundle(Some(FIRST_OPK_ID)), &mut rng)
        .expect("initiate");
    let first = a.encrypt(b"one").expect("encrypt");
    let second = a.encrypt(b"two").expect("encrypt");
    let (mut b, _) = bob.respond(&first, &mut rng).expect("respond");
    let saved = b.to_bytes();
    // The prekey ids only route a PreKeyMessage to X3DH; once the session
    // exists (same IK_A and EK_A) the embedded Message decides. A changed id
    // may therefore either be refused or yield the genuine plaintext, never
    // anything else.
    let ids = 2 + 32 + 32..PREKEY_PREFIX_WITH_OPK;
    for pos in 0..second.len() {
        for mask in MASKS {
            let bad = flipped(&second, pos, mask);
            if ids.contains(&pos) && pos != 2 + 32 + 32 + 4 {
                match b.decrypt(&bad, &mut rng) {
                    Ok(t) => {
                        assert_eq!(t, b"two");
                        b = Session::from_bytes(&saved).expect("restore");
                    }
                    Err(_) => assert!(*saved == *b.to_bytes()),
                }
            } else {
                reject_unchanged(&mut b, &bad, &mut rng);
            }
        }
    }
    assert_eq!(b.decrypt(&second, &mut rng).expect("decrypt"), b"two");
}

#[test]
fn tampered_header_is_rejected_and_session_still_works() {
    let mut p = Pair::new(34);
    let w0 = p.a_sends(&text(0));
    let w1 = p.a_sends(&text(1));
    let w2 = p.a_sends(&text(2));
    let header = 2..2 + HEADER_LEN;
    let set_u32 = |wire: &[u8], at: usize, v: u32| {
        let mut out = wire.to_vec();
        out[at..at + 4].copy_from_slice(&v.to_be_bytes());
        out
    };
    // N changed to another index that Bob could accept.
    let bad_n = set_u32(&w1, 2 + 36, 2);
    assert_eq!(
        reject_unchanged(&mut p.b, &bad_n, &mut p.rng),
        Error::AuthenticationFailed
    );
    // PN changed.
    let bad_pn = set_u32(&w1, 2 + 32, 0);
    assert_eq!(
        reject_unchanged(&mut p.b, &bad_pn, &mut p.rng),
        Error::AuthenticationFailed
    );
    // The header of one message with the body of another.
    let mut spliced = w2.clone();
    spliced[header.clone()].copy_from_slice(&w1[header.clone()]);
    assert_eq!(
        reject_unchanged(&mut p.b, &spliced, &mut p.rng),
        Error::AuthenticationFailed
    );
    // A ratchet key of someone else (a valid, unrelated X25519 key).
    let mut foreign_key = w0.clone();
    foreign_key[2..34].copy_from_slice(p.bob.bundle(None).signed_prekey.as_bytes());
    assert_eq!(
        reject_unchanged(&mut p.b, &foreign_key, &mut p.rng),
        Error::AuthenticationFailed
    );
    // Small-order ratchet keys: the DH output would be all zero.
    for small in [[0u8; 32], {
        let mut one = [0u8; 32];
        one[0] = 1;
        one
    }] {
        let mut bad = w0.clone();
        bad[2..34].copy_from_slice(&small);
        assert_eq!(
            reject_unchanged(&mut p.b, &bad, &mut p.rng),
            Error::NonContributoryKey
        );
    }
    // The X25519 high bit is ignored by the DH, but not by the AEAD.
    let mut high_bit = w0.clone();
    high_bit[2 + 31] ^= 0x80;
    assert_eq!(
        reject_unchanged(&mut p.b, &high_bit, &mut p.rng),
        Error::AuthenticationFailed
    );
    p.b_receives(&w2, &text(2));
    p.b_receives(&w0, &text(0));
    p.b_receives(&w1, &text(1));
    p.round_trip("after tampering");
}

#[test]
fn message_from_another_conversation_is_rejected() {
    let mut p = Pair::new(35);
    let mut q = Pair::new(36);
    let from_q = q.a_sends(b"for the other bob");
    assert_eq!(
        reject_unchanged(&mut p.b, &from_q, &mut p.rng),
        Error::AuthenticationFailed
    );
    // Alice's own message sent back to her.
    let own = p.a_sends(b"echo");
    assert!(reject_unchanged(&mut p.a, &own, &mut p.rng) != Error::Duplicate(0));
    p.b_receives(&own, b"echo");
}
