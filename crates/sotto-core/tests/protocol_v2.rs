//! Protocol v2 (docs/protocol.md section 16): the hybrid handshake with
//! ML-KEM-768 prekeys, its wire format and session state, v1 peers, and
//! downgrades.
#![cfg(test)]

mod common;

use common::{FIRST_OPK_ID, Party, SPK_ID, rng};
use sotto_core::wire::{PreKeyMessage, VERSION_V2};
use sotto_core::{
    Error, KEM_CIPHERTEXT_LEN, KemPreKey, KemPreKeyId, PreKeyBundle, PreKeySource,
    ProtocolVersions, SESSION_STATE_VERSION_V3, Session, SessionSet,
};

const LAST_RESORT: KemPreKeyId = KemPreKeyId::new(1);
const ONE_TIME_KEM: KemPreKeyId = KemPreKeyId::new(2);

/// Bob with a signed prekey, one one-time prekey, a last-resort KEM prekey
/// and a one-time KEM prekey.
fn bob(seed: u64) -> (Party, rand::rngs::ChaCha20Rng) {
    let mut rng = rng(seed);
    let mut bob = Party::new(&mut rng, 1);
    for id in [LAST_RESORT, ONE_TIME_KEM] {
        let key = KemPreKey::generate(id, &bob.identity, &mut rng);
        bob.prekeys.add_kem(key);
    }
    (bob, rng)
}

fn bundle_v2(bob: &Party, kem: KemPreKeyId, opk: bool) -> PreKeyBundle {
    let spk = bob.prekeys.signed_prekey(SPK_ID).unwrap();
    let opk = opk.then(|| bob.prekeys.one_time_prekey(FIRST_OPK_ID).unwrap());
    let kem = bob.prekeys.kem_prekey(kem).unwrap();
    PreKeyBundle::new_v2(&bob.identity, &spk, opk.as_ref(), &kem)
}

#[test]
fn a_v2_session_runs_both_ways_and_survives_serialization() {
    let (mut bob, mut rng) = bob(1);
    let alice = Party::new(&mut rng, 0);
    let bundle = bundle_v2(&bob, ONE_TIME_KEM, true);
    assert_eq!(bundle.version(), 2);
    assert_eq!(bundle.encode().len(), 1423);
    assert_eq!(PreKeyBundle::decode(&bundle.encode()).unwrap(), bundle);
    assert_eq!(bundle_v2(&bob, LAST_RESORT, false).encode().len(), 1387);

    let mut a = Session::initiate(&alice.identity, &bundle, &mut rng).unwrap();
    assert_eq!(a.version(), 2);
    let first = a.encrypt(b"hello, quantum future").unwrap();
    assert_eq!(first[0], VERSION_V2);
    assert_eq!(
        first.len(),
        PreKeyMessage::prefix_len_v2(true) + 2 + 40 + 256 + 16
    );
    let parsed = PreKeyMessage::parse(&first).unwrap();
    assert_eq!(parsed.kem.map(|(id, _)| id), Some(ONE_TIME_KEM));

    // The pending KEM ciphertext is kept in the state until a reply.
    let state = a.to_bytes();
    assert_eq!(state[0], SESSION_STATE_VERSION_V3);
    assert_eq!(state[1], VERSION_V2, "the protocol version");
    let mut a = Session::from_bytes(&state).unwrap();
    let second = a.encrypt(b"again").unwrap();
    assert_eq!(
        &second[..PreKeyMessage::prefix_len_v2(true)],
        &first[..PreKeyMessage::prefix_len_v2(true)]
    );

    let mut set = SessionSet::new();
    let decrypted = set
        .decrypt(&bob.identity, &bob.prekeys, &first, &mut rng)
        .unwrap();
    assert_eq!(decrypted.plaintext, b"hello, quantum future");
    assert_eq!(decrypted.used_kem_prekey, Some(ONE_TIME_KEM));
    assert_eq!(decrypted.used_one_time_prekey, Some(FIRST_OPK_ID));
    bob.prekeys.delete_kem(ONE_TIME_KEM);
    bob.prekeys.delete_one_time(FIRST_OPK_ID);
    // The second PreKeyMessage goes to the same session: no new handshake
    // (the one-time keys are gone already).
    let again = set
        .decrypt(&bob.identity, &bob.prekeys, &second, &mut rng)
        .unwrap();
    assert!(!again.new_session);
    assert_eq!(again.plaintext, b"again");

    let reply = set.encrypt(b"hi alice").unwrap();
    assert_eq!(reply[0], VERSION_V2);
    assert_eq!(a.decrypt(&reply, &mut rng).unwrap(), b"hi alice");
    // Replied to: plain v2 Messages from now on, across DH steps.
    for i in 0..4u8 {
        let m = a.encrypt(&[i; 100]).unwrap();
        assert_eq!(&m[..2], &[VERSION_V2, 0x02]);
        assert_eq!(
            set.decrypt(&bob.identity, &bob.prekeys, &m, &mut rng)
                .unwrap()
                .plaintext,
            [i; 100]
        );
        let r = set.encrypt(&[i; 7]).unwrap();
        assert_eq!(a.decrypt(&r, &mut rng).unwrap(), [i; 7]);
    }
    let restored = Session::from_bytes(&a.to_bytes()).unwrap();
    assert_eq!(*restored.to_bytes(), *a.to_bytes());
    let restored = SessionSet::from_bytes(&set.to_bytes()).unwrap();
    assert_eq!(*restored.to_bytes(), *set.to_bytes());
}

#[test]
fn a_last_resort_kem_prekey_serves_many_initiators() {
    let (bob, mut rng) = bob(2);
    let bundle = bundle_v2(&bob, LAST_RESORT, false);
    for _ in 0..3 {
        let alice = Party::new(&mut rng, 0);
        let mut a = Session::initiate(&alice.identity, &bundle, &mut rng).unwrap();
        let wire = a.encrypt(b"x").unwrap();
        let (_, decrypted) =
            Session::respond(&bob.identity, &bob.prekeys, &wire, &mut rng).unwrap();
        assert_eq!(decrypted.used_kem_prekey, Some(LAST_RESORT));
    }
}

#[test]
fn a_tampered_kem_ciphertext_or_unknown_kem_prekey_creates_nothing() {
    let (bob, mut rng) = bob(3);
    let alice = Party::new(&mut rng, 0);
    let mut a = Session::initiate(
        &alice.identity,
        &bundle_v2(&bob, ONE_TIME_KEM, false),
        &mut rng,
    )
    .unwrap();
    let wire = a.encrypt(b"secret").unwrap();
    let ct_at = PreKeyMessage::prefix_len(false) + 4;
    for flip in [0, 500, KEM_CIPHERTEXT_LEN - 1] {
        let mut bad = wire.clone();
        bad[ct_at + flip] ^= 0x01;
        // ML-KEM's implicit rejection yields another secret: the first
        // message does not authenticate.
        assert_eq!(
            Session::respond(&bob.identity, &bob.prekeys, &bad, &mut rng).err(),
            Some(Error::AuthenticationFailed)
        );
    }
    let mut unknown = wire.clone();
    unknown[ct_at - 4..ct_at].copy_from_slice(&99u32.to_be_bytes());
    assert_eq!(
        Session::respond(&bob.identity, &bob.prekeys, &unknown, &mut rng).err(),
        Some(Error::UnknownKemPreKey(KemPreKeyId::new(99)))
    );
    // Cut anywhere inside the KEM fields: refused as truncated.
    assert!(matches!(
        PreKeyMessage::parse(&wire[..ct_at + 100]),
        Err(Error::Truncated { .. } | Error::CiphertextTooShort { .. })
    ));
    let (_, ok) = Session::respond(&bob.identity, &bob.prekeys, &wire, &mut rng).unwrap();
    assert_eq!(ok.plaintext, b"secret");
}

#[test]
fn v1_and_v2_peers_keep_talking() {
    let (mut bob, mut rng) = bob(4);
    let alice = Party::new(&mut rng, 0);
    // A v1 initiator uses the v1 bundle of a v2-capable owner (the relay
    // serves it the v1 form): the signed prekey's v1 signature verifies.
    let v1_bundle = bob.bundle(None);
    assert_eq!(v1_bundle.version(), 1);
    let mut a = Session::initiate(&alice.identity, &v1_bundle, &mut rng).unwrap();
    assert_eq!(a.version(), 1);
    let wire = a.encrypt(b"old client").unwrap();
    assert_eq!(wire[0], 0x01);
    let (mut b, decrypted) = bob.respond(&wire, &mut rng).unwrap();
    assert_eq!(decrypted, b"old client");
    assert_eq!(b.version(), 1);
    let reply = b.encrypt(b"v1 reply").unwrap();
    assert_eq!(reply[0], 0x01);
    assert_eq!(a.decrypt(&reply, &mut rng).unwrap(), b"v1 reply");
    // A v2 message offered to a v1 session is not its own.
    let other = Party::new(&mut rng, 0);
    let mut v2 = Session::initiate(
        &other.identity,
        &bundle_v2(&bob, LAST_RESORT, false),
        &mut rng,
    )
    .unwrap();
    let v2_wire = v2.encrypt(b"v2").unwrap();
    let before = b.to_bytes();
    assert!(b.decrypt(&v2_wire, &mut rng).is_err());
    assert_eq!(*b.to_bytes(), *before);
}

#[test]
fn a_relay_that_strips_the_kem_prekey_is_caught() {
    let (bob, mut rng) = bob(5);
    let alice = Party::new(&mut rng, 0);
    let full = bundle_v2(&bob, ONE_TIME_KEM, true);
    // Re-encoded without its KEM prekey: a v1 bundle, which an initiator
    // that knows Bob speaks v2 refuses before drawing anything.
    let spk = bob.prekeys.signed_prekey(SPK_ID).unwrap();
    let opk = bob.prekeys.one_time_prekey(FIRST_OPK_ID).unwrap();
    let stripped = PreKeyBundle::new(&bob.identity, &spk, Some(&opk));
    assert_eq!(
        Session::initiate_at_least(&alice.identity, &stripped, 2, &mut rng).err(),
        Some(Error::Downgrade {
            offered: 1,
            expected: 2
        })
    );
    assert!(Session::initiate_at_least(&alice.identity, &full, 2, &mut rng).is_ok());

    // A v2 bundle whose parts were changed does not verify: the versions
    // (signed through the signed prekey's signature), the KEM key, its
    // signature.
    let mut bytes = full.encode();
    bytes[1] = ProtocolVersions::V2_ONLY.to_byte();
    let relabelled = PreKeyBundle::decode(&bytes).unwrap();
    assert_eq!(relabelled.verify(), Err(Error::InvalidSignature));
    let other_kem = KemPreKey::generate(ONE_TIME_KEM, &alice.identity, &mut rng);
    let mut swapped = full.clone();
    swapped.kem_prekey.as_mut().unwrap().key = other_kem.public().clone();
    assert_eq!(swapped.verify(), Err(Error::InvalidSignature));
    let mut forged = full.clone();
    forged.kem_prekey = Some(other_kem.signed_public());
    assert_eq!(forged.verify(), Err(Error::InvalidSignature));
    assert!(Session::initiate(&alice.identity, &forged, &mut rng).is_err());

    // An owner that speaks v2 only signs its signed prekey so that no v1
    // bundle of it verifies: a stripped bundle fails on its own.
    let kem = bob.prekeys.kem_prekey(LAST_RESORT).unwrap();
    let v2_only = PreKeyBundle::from_parts(
        *bob.identity.public(),
        SPK_ID,
        *spk.public(),
        spk.v2_only_signature(&bob.identity),
        None,
    );
    assert_eq!(v2_only.verify(), Err(Error::InvalidSignature));
    let v2_only = v2_only.with_kem_prekey(ProtocolVersions::V2_ONLY, kem.signed_public());
    v2_only.verify().unwrap();
    let mut a = Session::initiate(&alice.identity, &v2_only, &mut rng).unwrap();
    let wire = a.encrypt(b"v2 only").unwrap();
    let (_, d) = Session::respond(&bob.identity, &bob.prekeys, &wire, &mut rng).unwrap();
    assert_eq!(d.plaintext, b"v2 only");
    // The same bundle claiming v1 as well fails.
    let claims_v1 = v2_only
        .clone()
        .with_kem_prekey(ProtocolVersions::V1_AND_V2, kem.signed_public());
    assert_eq!(claims_v1.verify(), Err(Error::InvalidSignature));
}

#[test]
fn v2_bundle_encodings_are_strict() {
    let (bob, _) = bob(6);
    let bytes = bundle_v2(&bob, ONE_TIME_KEM, true).encode();
    for len in [0, 1, 2, 100, 170, 171, 1000, bytes.len() - 1] {
        assert!(PreKeyBundle::decode(&bytes[..len]).is_err(), "length {len}");
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(PreKeyBundle::decode(&long), Err(Error::TrailingBytes(1)));
    for versions in [0x00, 0x01, 0x04, 0xff] {
        let mut bad = bytes.clone();
        bad[1] = versions;
        assert!(matches!(
            PreKeyBundle::decode(&bad),
            Err(Error::InvalidBundle(_))
        ));
    }
    // An encapsulation key that fails FIPS 203's modulus check.
    let key_at = 2 + 32 + 4 + 32 + 64 + 1 + 4 + 32 + 4;
    let mut bad = bytes.clone();
    bad[key_at] = 0xff;
    bad[key_at + 1] |= 0x0f;
    assert_eq!(PreKeyBundle::decode(&bad), Err(Error::InvalidKemKey));
}
