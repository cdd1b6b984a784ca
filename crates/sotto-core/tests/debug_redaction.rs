//! `Debug` output never contains secret bytes or plaintext.
#![cfg(test)]

mod common;

use common::{FIRST_OPK_ID, Pair, SPK_ID, text};
use sotto_core::{PreKeySource, Session, SessionSet};

/// The renderings a secret could leak in: lower and upper hex, and the
/// `Debug` of the byte array or slice.
fn renderings(secret: &[u8]) -> Vec<String> {
    vec![
        hex::encode(secret),
        hex::encode_upper(secret),
        format!("{secret:?}"),
        // A run of the decimal list long enough to be unmistakable.
        format!("{:?}", &secret[..8])
            .trim_end_matches(']')
            .to_string(),
    ]
}

fn assert_no_leak(debug: &str, secret: &[u8], what: &str) {
    assert!(
        secret.iter().any(|&b| b != 0),
        "{what}: test secret is all zero"
    );
    for r in renderings(secret) {
        assert!(!debug.contains(&r), "{what} leaked as {r} in {debug}");
    }
}

/// The secret fields of a serialized session, state version 0x03 (root
/// key, sending ratchet private key, chain keys, skipped message keys).
fn session_secrets(bytes: &[u8]) -> Vec<&[u8]> {
    assert_eq!(bytes[0], 0x03, "state version");
    let protocol = bytes[1];
    // version, protocol, role, two identity keys in both forms, EK_A.
    let mut secrets = vec![&bytes[163..195], &bytes[195..227]];
    // The sending ratchet's public key follows its private key.
    let mut at = 259;
    at += if bytes[at] == 1 { 33 } else { 1 };
    if bytes[at] == 1 {
        secrets.push(&bytes[at + 1..at + 33]);
        at += 37;
    } else {
        at += 1;
    }
    at += 4;
    if bytes[at] == 1 {
        secrets.push(&bytes[at + 1..at + 33]);
        at += 37;
    } else {
        at += 1;
    }
    if bytes[at] == 1 {
        at += 5;
        at += if bytes[at] == 1 { 5 } else { 1 };
        if protocol == 0x02 {
            at += 4 + 1088;
        }
    } else {
        at += 1;
    }
    let count = usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
    at += 2;
    for _ in 0..count {
        secrets.push(&bytes[at + 36..at + 68]);
        at += 68;
    }
    assert_eq!(at, bytes.len());
    secrets
}

#[test]
fn debug_of_keys_is_redacted() {
    let p = Pair::new(110);
    let identity = &p.bob.identity;
    let debug = format!("{identity:?} {identity:#?}");
    assert!(debug.contains("redacted"));
    assert_no_leak(&debug, identity.to_seed().as_slice(), "identity seed");

    let spk = p.bob.prekeys.signed_prekey(SPK_ID).expect("spk");
    let debug = format!("{spk:?} {spk:#?}");
    assert!(debug.contains("redacted"));
    assert_no_leak(&debug, &spk.to_bytes()[5..37], "signed prekey private");

    let opk = p.alice.prekeys.one_time_prekey(FIRST_OPK_ID).expect("opk");
    let debug = format!("{opk:?} {opk:#?}");
    assert!(debug.contains("redacted"));
    assert_no_leak(&debug, &opk.to_bytes()[5..37], "one-time prekey private");
}

#[test]
fn debug_of_sessions_and_decrypted_messages_is_redacted() {
    let mut p = Pair::new(111);
    // Skipped keys on Bob's side, so message keys are part of the state.
    let ws: Vec<Vec<u8>> = (0..3).map(|i| p.a_sends(&text(i))).collect();
    p.b_receives(&ws[2], &text(2));
    for session in [&p.a, &p.b] {
        let debug = format!("{session:?} {session:#?}");
        assert!(debug.contains("redacted"));
        let bytes = session.to_bytes();
        let secrets = session_secrets(&bytes);
        assert!(secrets.len() >= 3);
        for s in secrets {
            assert_no_leak(&debug, s, "session secret");
        }
    }

    let mut set = SessionSet::new();
    let restored = SessionSet::from_bytes(&{
        let b = p.b.to_bytes();
        let mut out = vec![sotto_core::SESSION_SET_VERSION, 1];
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(&b);
        out
    })
    .expect("set");
    let debug = format!("{set:?} {restored:?} {restored:#?}");
    assert!(debug.contains("redacted"));
    for s in session_secrets(&p.b.to_bytes()) {
        assert_no_leak(&debug, s, "session set secret");
    }

    // A decrypted message shows its length, not its content.
    let secret_text = b"the launch code is 0000-SWORDFISH-4242";
    let mut rng = common::rng(112);
    let alice = common::Party::new(&mut rng, 0);
    let bob = common::Party::new(&mut rng, 0);
    let mut a = Session::initiate(&alice.identity, &bob.bundle(None), &mut rng).expect("initiate");
    let wire = a.encrypt(secret_text).expect("encrypt");
    let d = set
        .decrypt(&bob.identity, &bob.prekeys, &wire, &mut rng)
        .expect("decrypt");
    assert_eq!(d.plaintext, secret_text);
    let debug = format!("{d:?} {d:#?}");
    assert!(!debug.contains("SWORDFISH"));
    assert_no_leak(&debug, secret_text, "plaintext");
    assert!(debug.contains(&secret_text.len().to_string()));
}
