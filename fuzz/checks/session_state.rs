//! Checks of the `session_state` fuzz target, shared with the corpus
//! replay in `crates/sotto-core/tests/fuzz_corpus.rs`.
//!
//! Any input: `Session::from_bytes` and `SessionSet::from_bytes` never
//! panic; what they accept serializes back to exactly the input (the
//! format is strict, so it has one encoding per state); and a restored
//! state can encrypt and refuse garbage without panicking, leaving itself
//! unchanged when it refuses.

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sotto_core::wire::WireMessage;
use sotto_core::{Session, SessionSet};

pub(crate) fn check(data: &[u8]) {
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    match Session::from_bytes(data) {
        Ok(session) => {
            assert_eq!(
                &session.to_bytes()[..],
                data,
                "session state did not round-trip"
            );
            let _ = format!("{session:?}");
            exercise(&session, &mut rng);
        }
        Err(e) => {
            let _ = format!("{e} {e:?}");
        }
    }
    match SessionSet::from_bytes(data) {
        Ok(set) => {
            assert_eq!(&set.to_bytes()[..], data, "session set did not round-trip");
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
