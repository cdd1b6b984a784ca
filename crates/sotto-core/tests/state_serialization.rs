//! Sessions and session sets survive a save and restore mid-conversation
//! (skipped keys included); damaged state bytes are refused, never panic.
#![cfg(test)]

mod common;

use common::{FIRST_OPK_ID, Pair, Party, SPK_ID, rng, text};
use sotto_core::{
    Error, OneTimePreKey, PreKeySource, SESSION_SET_VERSION, SESSION_STATE_VERSION,
    SESSION_STATE_VERSION_V2, SESSION_STATE_VERSION_V3, Session, SessionSet, SignedPreKey,
};

/// Where the flag and count bytes of a serialized session are (see the
/// layout in the crate's `ratchet/state.rs`).
struct Layout {
    role: usize,
    flags: Vec<usize>,
    count: usize,
}

fn layout(bytes: &[u8]) -> Layout {
    let mut flags = Vec::new();
    // version, protocol, role, local IK in both forms, remote IK in both
    // forms, base key, RK, sending private, sending public.
    let mut at = 3 + 8 * 32;
    // has_remote [|| key]
    flags.push(at);
    at += if bytes[at] == 1 { 33 } else { 1 };
    // has_sending [|| CK || N]
    flags.push(at);
    at += if bytes[at] == 1 { 37 } else { 1 };
    // PN
    at += 4;
    // has_receiving [|| CK || N]
    flags.push(at);
    at += if bytes[at] == 1 { 37 } else { 1 };
    // has_pending [|| spk_id || has_opk [|| opk_id]]
    flags.push(at);
    if bytes[at] == 1 {
        at += 5;
        flags.push(at);
        at += if bytes[at] == 1 { 5 } else { 1 };
    } else {
        at += 1;
    }
    let count = usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
    assert_eq!(bytes.len(), at + 2 + count * 68, "layout walk");
    Layout {
        role: 2,
        flags,
        count: at,
    }
}

fn assert_corrupt(result: Result<Session, Error>, what: &str) {
    match result {
        Err(Error::CorruptState(_)) | Err(Error::UnsupportedVersion(_)) => {}
        Err(other) => panic!("{what}: unexpected error {other:?}"),
        Ok(_) => panic!("{what}: damaged state was accepted"),
    }
}

/// Every prefix, an extension, and every bit flip of each flag and count
/// byte must be refused.
fn damaged_session_bytes_are_rejected(bytes: &[u8]) {
    assert!(Session::from_bytes(bytes).is_ok());
    for len in 0..bytes.len() {
        assert_corrupt(Session::from_bytes(&bytes[..len]), &format!("prefix {len}"));
    }
    for extra in [&[0u8][..], &[1], &[0; 68]] {
        let mut long = bytes.to_vec();
        long.extend_from_slice(extra);
        assert_corrupt(Session::from_bytes(&long), "extended");
    }
    let l = layout(bytes);
    let mut positions = l.flags.clone();
    positions.extend([0, 1, l.count, l.count + 1]);
    for pos in positions {
        for bit in 0..8 {
            let mut bad = bytes.to_vec();
            bad[pos] ^= 1 << bit;
            assert_corrupt(
                Session::from_bytes(&bad),
                &format!("bit {bit} of byte {pos}"),
            );
        }
    }
    // The role byte takes only 0x00 and 0x01.
    for bit in 1..8 {
        let mut bad = bytes.to_vec();
        bad[l.role] ^= 1 << bit;
        assert_corrupt(Session::from_bytes(&bad), &format!("role bit {bit}"));
    }
    // A base key EK_A that is not a canonical X25519 encoding (top bit
    // set, or a value of at least p): an initiator restored with it would
    // send PreKeyMessages no responder parses (found by the session_state
    // fuzz target).
    let mut high_bit = bytes.to_vec();
    high_bit[162] |= 0x80;
    let mut at_least_p = bytes.to_vec();
    at_least_p[131..163].fill(0xff);
    at_least_p[131] = 0xed;
    at_least_p[162] = 0x7f;
    for bad in [high_bit, at_least_p] {
        assert_eq!(
            Session::from_bytes(&bad).err(),
            Some(Error::CorruptState("base key"))
        );
    }
    // 0x04 is no state version.
    assert_eq!(
        Session::from_bytes(&[SESSION_STATE_VERSION_V3 + 1]).err(),
        Some(Error::UnsupportedVersion(SESSION_STATE_VERSION_V3 + 1))
    );
    // Read as one of the older versions, a current state is refused.
    for older in [SESSION_STATE_VERSION, SESSION_STATE_VERSION_V2] {
        let mut as_older = bytes.to_vec();
        as_older[0] = older;
        assert!(matches!(
            Session::from_bytes(&as_older),
            Err(Error::CorruptState(_))
        ));
    }
}

/// The same session in the state version written before 0x03: version
/// 0x01 for protocol 1 (no protocol byte), 0x02 0x02 for protocol 2, and
/// without the X25519 forms of the identity keys and the sending ratchet's
/// public key.
fn older_state(v3: &[u8]) -> Vec<u8> {
    assert_eq!(v3[0], SESSION_STATE_VERSION_V3);
    let mut out = match v3[1] {
        0x01 => vec![SESSION_STATE_VERSION],
        _ => vec![SESSION_STATE_VERSION_V2, 0x02],
    };
    out.push(v3[2]); // role
    out.extend_from_slice(&v3[3..35]); // local IK
    out.extend_from_slice(&v3[67..99]); // remote IK
    out.extend_from_slice(&v3[131..227]); // EK_A, RK, sending private
    out.extend_from_slice(&v3[259..]);
    out
}

#[test]
fn session_restored_mid_conversation_with_skipped_keys_continues() {
    let mut p = Pair::new(90);
    let early: Vec<Vec<u8>> = (0..6).map(|i| p.a_sends(&text(i))).collect();
    p.b_receives(&early[5], &text(5));
    p.b_receives(&early[2], &text(2));
    p.round_trip("one step");
    let late_from_b = p.b_sends(b"late from bob");
    p.round_trip("another step");
    assert_eq!(p.b.skipped_key_count(), 4);

    // Save both sides, drop the live sessions, restore.
    let saved_a = p.a.to_bytes();
    let saved_b = p.b.to_bytes();
    p.a = Session::from_bytes(&saved_a).expect("restore alice");
    p.b = Session::from_bytes(&saved_b).expect("restore bob");
    assert!(*p.a.to_bytes() == *saved_a, "restore is lossless");
    assert!(*p.b.to_bytes() == *saved_b, "restore is lossless");
    assert_eq!(p.b.skipped_key_count(), 4);

    for i in [0usize, 4, 1, 3] {
        p.b_receives(&early[i], &text(i));
    }
    p.a_receives(&late_from_b, b"late from bob");
    // A replay is still refused after a restore.
    let before = p.b.to_bytes();
    assert_eq!(
        p.b.decrypt(&early[2], &mut p.rng).err(),
        Some(Error::AuthenticationFailed)
    );
    assert!(*before == *p.b.to_bytes());
    for i in 0..5 {
        p.round_trip(&format!("after restore {i}"));
    }
}

#[test]
fn pending_initiator_and_fresh_responder_restore_and_continue() {
    let mut rng = rng(91);
    let alice = Party::new(&mut rng, 0);
    let mut bob = Party::new(&mut rng, 1);
    let a = Session::initiate(&alice.identity, &bob.bundle(Some(FIRST_OPK_ID)), &mut rng)
        .expect("initiate");
    // Restored before sending anything: still a pending initiator.
    let mut a = Session::from_bytes(&a.to_bytes()).expect("restore");
    assert!(a.is_pending_prekey());
    let w0 = a.encrypt(b"zero").expect("encrypt");
    let w1 = a.encrypt(b"one").expect("encrypt");
    let (b, t) = bob.respond(&w1, &mut rng).expect("respond");
    assert_eq!(t, b"one");
    let mut b = Session::from_bytes(&b.to_bytes()).expect("restore");
    assert_eq!(b.decrypt(&w0, &mut rng).expect("decrypt"), b"zero");
    let r = b.encrypt(b"reply").expect("encrypt");
    let mut a = Session::from_bytes(&a.to_bytes()).expect("restore");
    assert_eq!(a.decrypt(&r, &mut rng).expect("decrypt"), b"reply");
    assert!(!a.is_pending_prekey());
    damaged_session_bytes_are_rejected(&a.to_bytes());
    damaged_session_bytes_are_rejected(&b.to_bytes());
}

#[test]
fn damaged_session_state_is_rejected_in_every_shape() {
    let mut rng = rng(92);
    let alice = Party::new(&mut rng, 0);
    let bob = Party::new(&mut rng, 1);
    // A pending initiator with and without a one-time prekey.
    for opk in [Some(FIRST_OPK_ID), None] {
        let a = Session::initiate(&alice.identity, &bob.bundle(opk), &mut rng).expect("initiate");
        damaged_session_bytes_are_rejected(&a.to_bytes());
    }
    // Established sessions with skipped keys on both sides.
    let mut p = Pair::new(93);
    let ws: Vec<Vec<u8>> = (0..4).map(|i| p.a_sends(&text(i))).collect();
    p.b_receives(&ws[3], &text(3));
    let rs: Vec<Vec<u8>> = (0..3).map(|i| p.b_sends(&text(10 + i))).collect();
    p.a_receives(&rs[2], &text(12));
    assert_eq!(p.a.skipped_key_count(), 2);
    assert_eq!(p.b.skipped_key_count(), 3);
    damaged_session_bytes_are_rejected(&p.a.to_bytes());
    damaged_session_bytes_are_rejected(&p.b.to_bytes());
}

#[test]
fn session_set_restored_mid_conversation_continues() {
    let mut rng = rng(94);
    let mut alice = Party::new(&mut rng, 1);
    let mut bob = Party::new(&mut rng, 1);
    let mut a = SessionSet::new();
    let mut b = SessionSet::new();
    a.initiate(&alice.identity, &bob.bundle(Some(FIRST_OPK_ID)), &mut rng)
        .expect("initiate");
    b.initiate(&bob.identity, &alice.bundle(Some(FIRST_OPK_ID)), &mut rng)
        .expect("initiate");
    let wa = a.encrypt(b"a").expect("encrypt");
    let wb = b.encrypt(b"b").expect("encrypt");
    let d = b
        .decrypt(&bob.identity, &bob.prekeys, &wa, &mut rng)
        .expect("decrypt");
    bob.prekeys
        .delete_one_time(d.used_one_time_prekey.expect("opk used"))
        .expect("present");
    let d = a
        .decrypt(&alice.identity, &alice.prekeys, &wb, &mut rng)
        .expect("decrypt");
    alice
        .prekeys
        .delete_one_time(d.used_one_time_prekey.expect("opk used"))
        .expect("present");
    // Skipped keys in flight.
    let held: Vec<Vec<u8>> = (0..3)
        .map(|i| a.encrypt(&text(i)).expect("encrypt"))
        .collect();
    let d = b
        .decrypt(&bob.identity, &bob.prekeys, &held[2], &mut rng)
        .expect("decrypt");
    assert_eq!(d.plaintext, text(2));

    let saved = b.to_bytes();
    let mut b = SessionSet::from_bytes(&saved).expect("restore");
    assert!(*b.to_bytes() == *saved);
    assert_eq!(b.len(), 2);
    for i in [0usize, 1] {
        let d = b
            .decrypt(&bob.identity, &bob.prekeys, &held[i], &mut rng)
            .expect("decrypt");
        assert_eq!(d.plaintext, text(i));
    }
    for i in 0..5 {
        let w = b.encrypt(&text(50 + i)).expect("encrypt");
        let mut restored_a = SessionSet::from_bytes(&a.to_bytes()).expect("restore");
        let d = restored_a
            .decrypt(&alice.identity, &alice.prekeys, &w, &mut rng)
            .expect("decrypt");
        assert_eq!(d.plaintext, text(50 + i));
        a = restored_a;
        let w = a.encrypt(&text(60 + i)).expect("encrypt");
        let d = b
            .decrypt(&bob.identity, &bob.prekeys, &w, &mut rng)
            .expect("decrypt");
        assert_eq!(d.plaintext, text(60 + i));
    }
    assert_eq!(
        a.active().expect("session").base_key(),
        b.active().expect("session").base_key()
    );
    damaged_session_set_bytes_are_rejected(&b.to_bytes());
    damaged_session_set_bytes_are_rejected(&SessionSet::new().to_bytes());
}

fn damaged_session_set_bytes_are_rejected(bytes: &[u8]) {
    let check = |bad: &[u8], what: &str| match SessionSet::from_bytes(bad) {
        Err(Error::CorruptState(_)) | Err(Error::UnsupportedVersion(_)) => {}
        Err(other) => panic!("{what}: unexpected error {other:?}"),
        Ok(_) => panic!("{what}: damaged set was accepted"),
    };
    assert!(SessionSet::from_bytes(bytes).is_ok());
    for len in 0..bytes.len() {
        check(&bytes[..len], &format!("prefix {len}"));
    }
    let mut long = bytes.to_vec();
    long.push(0);
    check(&long, "extended");
    // Version, count, and each session's length field.
    let mut positions = vec![0, 1];
    let mut at = 2;
    for _ in 0..bytes[1] {
        positions.extend(at..at + 4);
        let len = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        at += 4 + len as usize;
    }
    assert_eq!(at, bytes.len());
    for pos in positions {
        for bit in 0..8 {
            let mut bad = bytes.to_vec();
            bad[pos] ^= 1 << bit;
            check(&bad, &format!("bit {bit} of byte {pos}"));
        }
    }
    assert_eq!(
        SessionSet::from_bytes(&[SESSION_SET_VERSION + 1, 0]).err(),
        Some(Error::UnsupportedVersion(SESSION_SET_VERSION + 1))
    );
    // More sessions than a set may hold.
    assert!(SessionSet::from_bytes(&[SESSION_SET_VERSION, 6]).is_err());
}

#[test]
fn session_set_with_sessions_of_different_identities_is_rejected() {
    let p = Pair::new(95);
    let q = Pair::new(96);
    let mut bytes = vec![SESSION_SET_VERSION, 2];
    for s in [&p.a, &q.a] {
        let sb = s.to_bytes();
        bytes.extend_from_slice(&(sb.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&sb);
    }
    assert_eq!(
        SessionSet::from_bytes(&bytes).err(),
        Some(Error::CorruptState("mixed identities in session set"))
    );
}

#[test]
fn prekeys_round_trip_and_damaged_prekey_bytes_are_rejected() {
    let mut rng = rng(97);
    let bob = Party::new(&mut rng, 1);
    let spk = bob.prekeys.signed_prekey(SPK_ID).expect("spk");
    let opk = bob.prekeys.one_time_prekey(FIRST_OPK_ID).expect("opk");
    let spk_bytes = spk.to_bytes();
    let opk_bytes = opk.to_bytes();
    let spk2 = SignedPreKey::from_bytes(&spk_bytes).expect("spk");
    assert_eq!(spk2.public(), spk.public());
    assert_eq!(spk2.signature(), spk.signature());
    assert_eq!(spk2.id(), SPK_ID);
    let opk2 = OneTimePreKey::from_bytes(&opk_bytes).expect("opk");
    assert_eq!(opk2.public(), opk.public());
    assert_eq!(opk2.id(), FIRST_OPK_ID);
    for len in 0..spk_bytes.len() {
        assert!(SignedPreKey::from_bytes(&spk_bytes[..len]).is_err());
    }
    for len in 0..opk_bytes.len() {
        assert!(OneTimePreKey::from_bytes(&opk_bytes[..len]).is_err());
    }
    let mut long = spk_bytes.to_vec();
    long.push(0);
    assert!(SignedPreKey::from_bytes(&long).is_err());
    let mut long = opk_bytes.to_vec();
    long.push(0);
    assert!(OneTimePreKey::from_bytes(&long).is_err());
    let mut bad = spk_bytes.to_vec();
    bad[0] ^= 0x02;
    assert!(SignedPreKey::from_bytes(&bad).is_err());
    let mut bad = opk_bytes.to_vec();
    bad[0] ^= 0x02;
    assert!(OneTimePreKey::from_bytes(&bad).is_err());
    // An identity restored from its seed is the same identity.
    let seed = bob.identity.to_seed();
    let again = sotto_core::IdentityKeyPair::from_seed(&seed);
    assert_eq!(again.public(), bob.identity.public());
}

/// State written before version 0x03 is still read: the identity keys are
/// validated and the derived values computed, giving exactly the session
/// that was saved, which the next save writes as 0x03. An invalid
/// identity key in it is refused.
#[test]
fn older_session_state_is_read_and_rewritten_in_the_current_version() {
    let mut p = Pair::new(95);
    let ws: Vec<Vec<u8>> = (0..3).map(|i| p.a_sends(&text(i))).collect();
    p.b_receives(&ws[2], &text(2));
    p.round_trip("established");
    let mut rng = rng(96);
    let alice = Party::new(&mut rng, 0);
    let bob = Party::new(&mut rng, 1);
    let pending = Session::initiate(&alice.identity, &bob.bundle(Some(FIRST_OPK_ID)), &mut rng)
        .expect("initiate");
    for session in [&p.a, &p.b, &pending] {
        let current = session.to_bytes();
        let older = older_state(&current);
        assert_eq!(older[0], SESSION_STATE_VERSION);
        let restored = Session::from_bytes(&older).expect("older state reads");
        assert!(*restored.to_bytes() == *current, "the same session");
        // Invalid identity keys (the Ed25519 identity point, small order).
        for at in [2, 34] {
            let mut bad = older.clone();
            bad[at..at + 32].fill(0);
            bad[at] = 1;
            assert_corrupt(Session::from_bytes(&bad), "identity key");
        }
    }
    // The older state goes on: Bob's restored session still decrypts.
    let mut b = Session::from_bytes(&older_state(&p.b.to_bytes())).expect("restore");
    assert_eq!(
        b.decrypt(&ws[0], &mut p.rng).expect("skipped key kept"),
        text(0)
    );
}
