//! Malformed input is refused with the right error variant, without
//! panicking and without touching the session; what does not parse is
//! refused before any key is derived.
#![cfg(test)]

mod common;

use common::{FIRST_OPK_ID, Pair, Party, reject_unchanged, rng};
use sotto_core::pad::MAX_PLAINTEXT_LEN;
use sotto_core::wire::{
    MAX_CIPHERTEXT_LEN, MESSAGE_OVERHEAD, MIN_CIPHERTEXT_LEN, Message, PreKeyMessage, TYPE_MESSAGE,
    TYPE_PREKEY_MESSAGE, VERSION, VERSION_V2, WireMessage,
};
use sotto_core::{Error, PreKeyBundle, Session};

/// Offset of the has_opk flag in a PreKeyMessage.
const FLAG_AT: usize = 2 + 32 + 32 + 4;

#[test]
fn truncated_message_at_every_length_is_rejected() {
    let mut p = Pair::new(50);
    let wire = p.a_sends(b"whole");
    assert_eq!(wire.len(), MESSAGE_OVERHEAD + MIN_CIPHERTEXT_LEN);
    for len in 0..wire.len() {
        let err = reject_unchanged(&mut p.b, &wire[..len], &mut p.rng);
        let expected = match len {
            0 | 1 => Error::Truncated {
                needed: len + 1,
                got: len,
            },
            l if l < MESSAGE_OVERHEAD => Error::Truncated {
                needed: MESSAGE_OVERHEAD,
                got: len,
            },
            l => Error::CiphertextTooShort {
                len: l - MESSAGE_OVERHEAD,
                min: MIN_CIPHERTEXT_LEN,
            },
        };
        assert_eq!(err, expected, "length {len}");
    }
    p.b_receives(&wire, b"whole");
}

#[test]
fn truncated_prekey_message_at_every_length_is_rejected() {
    let mut rng = rng(51);
    let alice = Party::new(&mut rng, 0);
    let mut bob = Party::new(&mut rng, 1);
    let mut a = Session::initiate(&alice.identity, &bob.bundle(Some(FIRST_OPK_ID)), &mut rng)
        .expect("initiate");
    let wire = a.encrypt(b"whole").expect("encrypt");
    let prefix = PreKeyMessage::prefix_len(true);
    assert_eq!(wire.len(), prefix + MESSAGE_OVERHEAD + MIN_CIPHERTEXT_LEN);
    for len in 0..wire.len() {
        let err = bob.respond(&wire[..len], &mut rng).err();
        match err {
            Some(Error::Truncated { got, .. }) => {
                // `got` counts the structure being read: the whole input, or
                // the embedded Message.
                assert!(
                    got == len || len.checked_sub(prefix) == Some(got),
                    "length {len}"
                );
                assert!(len < prefix + MESSAGE_OVERHEAD, "length {len}");
            }
            Some(Error::CiphertextTooShort { len: l, min }) => {
                assert_eq!(l, len - prefix - MESSAGE_OVERHEAD);
                assert_eq!(min, MIN_CIPHERTEXT_LEN);
            }
            other => panic!("length {len}: {other:?}"),
        }
        assert!(bob.prekeys.has_one_time(FIRST_OPK_ID));
    }
    let (_, t) = bob.respond(&wire, &mut rng).expect("respond");
    assert_eq!(t, b"whole");
}

#[test]
fn extended_message_fails_authentication() {
    let mut p = Pair::new(52);
    let wire = p.a_sends(b"exact");
    for extra in [1usize, 16, 300] {
        let mut long = wire.clone();
        long.extend(std::iter::repeat_n(0u8, extra));
        assert_eq!(
            reject_unchanged(&mut p.b, &long, &mut p.rng),
            Error::AuthenticationFailed
        );
    }
    p.b_receives(&wire, b"exact");
}

#[test]
fn over_long_ciphertext_is_rejected_before_decryption() {
    let mut p = Pair::new(53);
    let wire = p.a_sends(b"x");
    let mut huge = wire[..MESSAGE_OVERHEAD].to_vec();
    huge.resize(MESSAGE_OVERHEAD + MAX_CIPHERTEXT_LEN + 1, 0xAB);
    assert_eq!(
        reject_unchanged(&mut p.b, &huge, &mut p.rng),
        Error::CiphertextTooLong {
            len: MAX_CIPHERTEXT_LEN + 1,
            max: MAX_CIPHERTEXT_LEN,
        }
    );
    // Exactly the maximum parses (the AEAD decides then).
    huge.pop();
    assert!(Message::parse(&huge).is_ok());
    // The same inside a PreKeyMessage.
    let mut rng = rng(54);
    let alice = Party::new(&mut rng, 0);
    let mut bob = Party::new(&mut rng, 0);
    let mut a = Session::initiate(&alice.identity, &bob.bundle(None), &mut rng).expect("initiate");
    let pk = a.encrypt(b"x").expect("encrypt");
    let mut huge = pk[..PreKeyMessage::prefix_len(false) + MESSAGE_OVERHEAD].to_vec();
    huge.resize(huge.len() + MAX_CIPHERTEXT_LEN + 1, 0);
    assert_eq!(
        bob.respond(&huge, &mut rng).err(),
        Some(Error::CiphertextTooLong {
            len: MAX_CIPHERTEXT_LEN + 1,
            max: MAX_CIPHERTEXT_LEN,
        })
    );
    p.b_receives(&wire, b"x");
}

#[test]
fn plaintext_above_the_maximum_is_refused_and_session_unchanged() {
    let mut p = Pair::new(55);
    let before = p.a.to_bytes();
    let too_big = vec![0u8; MAX_PLAINTEXT_LEN + 1];
    assert_eq!(
        p.a.encrypt(&too_big).err(),
        Some(Error::PlaintextTooLarge {
            len: MAX_PLAINTEXT_LEN + 1,
            max: MAX_PLAINTEXT_LEN,
        })
    );
    assert!(*before == *p.a.to_bytes());
    p.round_trip("after refusal");
}

#[test]
fn wrong_version_is_rejected_for_both_message_kinds() {
    let mut p = Pair::new(56);
    let wire = p.a_sends(b"v1");
    let mut rng = rng(57);
    let alice = Party::new(&mut rng, 0);
    let mut bob = Party::new(&mut rng, 0);
    let mut a = Session::initiate(&alice.identity, &bob.bundle(None), &mut rng).expect("initiate");
    let pk = a.encrypt(b"v1").expect("encrypt");
    let inner = PreKeyMessage::prefix_len(false);
    for v in (0..=255u8).filter(|&v| v != VERSION && v != VERSION_V2) {
        let mut bad = wire.clone();
        bad[0] = v;
        assert_eq!(
            reject_unchanged(&mut p.b, &bad, &mut p.rng),
            Error::UnsupportedVersion(v)
        );
        let mut bad = pk.clone();
        bad[0] = v;
        assert_eq!(
            bob.respond(&bad, &mut rng).err(),
            Some(Error::UnsupportedVersion(v))
        );
        // The embedded Message's own version byte.
        let mut bad = pk.clone();
        bad[inner] = v;
        assert_eq!(
            bob.respond(&bad, &mut rng).err(),
            Some(Error::UnsupportedVersion(v))
        );
    }
    // Relabelled as version 2: a v1 session refuses a v2 Message, and a v1
    // PreKeyMessage read as v2 does not parse (its fields are not there)
    // or names a KEM prekey Bob does not have; neither changes anything.
    let mut relabelled = wire.clone();
    relabelled[0] = VERSION_V2;
    assert_eq!(
        reject_unchanged(&mut p.b, &relabelled, &mut p.rng),
        Error::SessionMismatch
    );
    let mut relabelled = pk.clone();
    relabelled[0] = VERSION_V2;
    relabelled[inner] = VERSION_V2;
    assert!(bob.respond(&relabelled, &mut rng).is_err());
    p.b_receives(&wire, b"v1");
    assert_eq!(bob.respond(&pk, &mut rng).expect("respond").1, b"v1");
}

#[test]
fn wrong_type_is_rejected_for_both_message_kinds() {
    let mut p = Pair::new(58);
    let wire = p.a_sends(b"t");
    let mut rng = rng(59);
    let alice = Party::new(&mut rng, 0);
    let mut bob = Party::new(&mut rng, 0);
    let mut a = Session::initiate(&alice.identity, &bob.bundle(None), &mut rng).expect("initiate");
    let pk = a.encrypt(b"t").expect("encrypt");
    let inner = PreKeyMessage::prefix_len(false);
    for t in (0..=255u8).filter(|&t| t != TYPE_MESSAGE && t != TYPE_PREKEY_MESSAGE) {
        let mut bad = wire.clone();
        bad[1] = t;
        assert_eq!(
            reject_unchanged(&mut p.b, &bad, &mut p.rng),
            Error::UnknownMessageType(t)
        );
        let mut bad = pk.clone();
        bad[1] = t;
        assert_eq!(
            bob.respond(&bad, &mut rng).err(),
            Some(Error::UnknownMessageType(t))
        );
    }
    // The embedded Message must be a Message, not a PreKeyMessage.
    let mut bad = pk.clone();
    bad[inner + 1] = TYPE_PREKEY_MESSAGE;
    assert_eq!(
        bob.respond(&bad, &mut rng).err(),
        Some(Error::UnknownMessageType(TYPE_PREKEY_MESSAGE))
    );
    // Each parser refuses the other kind; the responder refuses a Message.
    assert_eq!(
        Message::parse(&pk).err(),
        Some(Error::UnknownMessageType(TYPE_PREKEY_MESSAGE))
    );
    assert_eq!(
        PreKeyMessage::parse(&wire).err(),
        Some(Error::UnknownMessageType(TYPE_MESSAGE))
    );
    assert_eq!(
        Session::respond(&bob.identity, &bob.prekeys, &wire, &mut rng).err(),
        Some(Error::UnknownMessageType(TYPE_MESSAGE))
    );
    assert!(matches!(
        WireMessage::parse(&wire).expect("parses"),
        WireMessage::Message(_)
    ));
    assert!(matches!(
        WireMessage::parse(&pk).expect("parses"),
        WireMessage::PreKey(_)
    ));
    p.b_receives(&wire, b"t");
}

#[test]
fn bad_one_time_prekey_flag_is_rejected() {
    let mut rng = rng(60);
    let alice = Party::new(&mut rng, 0);
    let mut bob = Party::new(&mut rng, 1);
    let mut a = Session::initiate(&alice.identity, &bob.bundle(Some(FIRST_OPK_ID)), &mut rng)
        .expect("initiate");
    let pk = a.encrypt(b"flag").expect("encrypt");
    assert_eq!(pk[FLAG_AT], 0x01);
    for flag in 0x02..=0xFFu8 {
        let mut bad = pk.clone();
        bad[FLAG_AT] = flag;
        assert_eq!(
            bob.respond(&bad, &mut rng).err(),
            Some(Error::InvalidFlag(flag))
        );
    }
    // 0x00 shifts the layout: the OPK id is read as the embedded version.
    let mut bad = pk.clone();
    bad[FLAG_AT] = 0x00;
    assert_eq!(
        bob.respond(&bad, &mut rng).err(),
        Some(Error::UnsupportedVersion(pk[FLAG_AT + 1]))
    );
    assert!(bob.prekeys.has_one_time(FIRST_OPK_ID));
    assert_eq!(bob.respond(&pk, &mut rng).expect("respond").1, b"flag");
}

#[test]
fn invalid_sender_identity_in_a_prekey_message_is_rejected() {
    let mut rng = rng(61);
    let alice = Party::new(&mut rng, 0);
    let mut bob = Party::new(&mut rng, 0);
    let mut a = Session::initiate(&alice.identity, &bob.bundle(None), &mut rng).expect("initiate");
    let pk = a.encrypt(b"who").expect("encrypt");
    // The Ed25519 identity point (small order).
    let mut bad = pk.clone();
    bad[2..34].copy_from_slice(&{
        let mut id = [0u8; 32];
        id[0] = 1;
        id
    });
    assert_eq!(
        bob.respond(&bad, &mut rng).err(),
        Some(Error::InvalidIdentityKey)
    );
    // Another valid identity: X3DH and the associated data differ.
    let mallory = Party::new(&mut rng, 0);
    let mut bad = pk.clone();
    bad[2..34].copy_from_slice(mallory.identity.public().as_bytes());
    assert_eq!(
        bob.respond(&bad, &mut rng).err(),
        Some(Error::AuthenticationFailed)
    );
    assert_eq!(bob.respond(&pk, &mut rng).expect("respond").1, b"who");
}

#[test]
fn malformed_bundle_encodings_are_rejected() {
    let mut rng = rng(62);
    let bob = Party::new(&mut rng, 1);
    for bundle in [bob.bundle(None), bob.bundle(Some(FIRST_OPK_ID))] {
        let bytes = bundle.encode();
        assert_eq!(
            bytes.len(),
            if bundle.one_time_prekey.is_some() {
                170
            } else {
                134
            }
        );
        assert_eq!(PreKeyBundle::decode(&bytes).expect("decode"), bundle);
        for len in 0..bytes.len() {
            assert!(
                matches!(
                    PreKeyBundle::decode(&bytes[..len]),
                    Err(Error::Truncated { .. })
                ),
                "length {len}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(PreKeyBundle::decode(&long), Err(Error::TrailingBytes(1)));
        let mut bad = bytes.clone();
        bad[0] = 0x03;
        assert_eq!(
            PreKeyBundle::decode(&bad),
            Err(Error::UnsupportedVersion(0x03))
        );
        // Read as a v2 bundle, a v1 bundle's fields do not fit.
        let mut bad = bytes.clone();
        bad[0] = 0x02;
        assert!(PreKeyBundle::decode(&bad).is_err());
        let flag_at = 1 + 32 + 4 + 32 + 64;
        for flag in 0x02..=0xFFu8 {
            let mut bad = bytes.clone();
            bad[flag_at] = flag;
            assert_eq!(PreKeyBundle::decode(&bad), Err(Error::InvalidFlag(flag)));
        }
    }
}
