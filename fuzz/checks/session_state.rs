//! Checks of the `session_state` fuzz target, shared with the corpus
//! replay in `crates/sotto-core/tests/fuzz_corpus.rs`.
//!
//! Any input: `Session::from_bytes` and `SessionSet::from_bytes` never
//! panic; what they accept in the current state version (0x03) serializes
//! back to exactly the input (the format is strict, so it has one encoding
//! per state), and what they accept in an older version serializes to a
//! 0x03 state that reads back to itself; and a restored state can encrypt
//! and refuse garbage without panicking, leaving itself unchanged when it
//! refuses.

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sotto_core::wire::WireMessage;
use sotto_core::{SESSION_STATE_VERSION_V3, Session, SessionSet};

pub(crate) fn check(data: &[u8]) {
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    match Session::from_bytes(data) {
        Ok(session) => {
            if data.first() == Some(&SESSION_STATE_VERSION_V3) {
                assert_eq!(
                    &session.to_bytes()[..],
                    data,
                    "session state did not round-trip"
                );
            } else {
                upgraded(&session.to_bytes());
            }
            let _ = format!("{session:?}");
            exercise(&session, &mut rng);
        }
        Err(e) => {
            let _ = format!("{e} {e:?}");
        }
    }
    match SessionSet::from_bytes(data) {
        Ok(set) => {
            if set_is_current(data) {
                assert_eq!(&set.to_bytes()[..], data, "session set did not round-trip");
            } else {
                let bytes = set.to_bytes();
                let again = SessionSet::from_bytes(&bytes).expect("an upgraded set reads back");
                assert_eq!(again.to_bytes(), bytes, "an upgraded set is stable");
            }
            let _ = format!("{set:?}");
            if let Some(active) = set.active() {
                exercise(active, &mut rng);
            }
        }
        Err(e) => {
            let _ = format!("{e} {e:?}");
        }
    }
}

/// An older state, rewritten: version 0x03, and it reads back to itself.
fn upgraded(bytes: &[u8]) {
    assert_eq!(bytes.first(), Some(&SESSION_STATE_VERSION_V3));
    let again = Session::from_bytes(bytes).expect("an upgraded state reads back");
    assert_eq!(&again.to_bytes()[..], bytes, "an upgraded state is stable");
}

/// Whether every session of an accepted set is in state version 0x03
/// (`0x01 || u8(count) || count * (u32be(len) || Session)`).
fn set_is_current(data: &[u8]) -> bool {
    let mut at = 2;
    while at < data.len() {
        let Some(len) = data.get(at..at + 4) else {
            return false;
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if data.get(at + 4) != Some(&SESSION_STATE_VERSION_V3) {
            return false;
        }
        at += 4 + len;
    }
    true
}

/// Encrypts with a copy of `session`, then feeds that ciphertext back to
/// another copy: it is not for this session (wrong direction), so it must
/// be refused without a change.
fn exercise(session: &Session, rng: &mut ChaCha20Rng) {
    let mut sender = session.clone();
    let Ok(wire) = sender.encrypt(b"fuzz") else {
        return;
    };
    match WireMessage::parse(&wire) {
        Ok(WireMessage::PreKey(_)) => assert!(session.is_pending_prekey()),
        Ok(WireMessage::Message(_)) => assert!(!session.is_pending_prekey()),
        Err(e) => panic!("a session encrypted an unparsable message: {e}"),
    }
    let before = session.to_bytes();
    let mut receiver = session.clone();
    if receiver.decrypt(&wire, rng).is_err() {
        assert_eq!(
            receiver.to_bytes(),
            before,
            "a failed decrypt changed the session"
        );
    }
}
