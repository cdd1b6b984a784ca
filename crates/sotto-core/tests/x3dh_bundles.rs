//! X3DH and bundles: the signature is checked before any Diffie-Hellman,
//! identity keys are validated strictly, one-time prekeys work once, and
//! small-order or non-canonical keys are refused.
#![cfg(test)]

mod common;

use common::{FIRST_OPK_ID, Party, SPK_ID, rng};
use sotto_core::hazmat::{x3dh_initiate, x3dh_respond};
use sotto_core::{
    Error, IdentityKey, OneTimePreKeyId, PreKeyBundle, PreKeyPublic, PreKeySource, Session,
    SessionSet, Signature, SignedPreKey, SignedPreKeyId,
};

/// Offset of EK_A in a PreKeyMessage.
const BASE_KEY_AT: usize = 2 + 32;
/// Offset of the signed prekey id in a PreKeyMessage.
const SPK_ID_AT: usize = 2 + 32 + 32;

fn from_hex(s: &str) -> [u8; 32] {
    hex::decode(s).expect("hex").try_into().expect("32 bytes")
}

/// Little-endian p + k, p = 2^255 - 19 (k < 19): non-canonical encodings.
fn p_plus(k: u8) -> [u8; 32] {
    let mut out = [0xFF; 32];
    out[0] = 0xED + k;
    out[31] = 0x7F;
    out
}

/// X25519 u-coordinates of small order, canonically encoded.
fn small_order_x25519() -> Vec<[u8; 32]> {
    let mut one = [0u8; 32];
    one[0] = 1;
    vec![
        [0u8; 32],
        one,
        from_hex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        from_hex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
        from_hex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    ]
}

/// Ed25519 encodings that must not be accepted as identity keys: the
/// small-order points and every non-canonical encoding (y >= p, either sign).
fn bad_ed25519_keys() -> Vec<[u8; 32]> {
    let mut keys = Vec::new();
    let mut identity = [0u8; 32];
    identity[0] = 1;
    keys.push(identity);
    keys.push([0u8; 32]);
    let mut y0_neg = [0u8; 32];
    y0_neg[31] = 0x80;
    keys.push(y0_neg);
    keys.push(from_hex(
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ));
    for h in [
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    ] {
        keys.push(from_hex(h));
    }
    for k in 0..19 {
        let y = p_plus(k);
        keys.push(y);
        let mut neg = y;
        neg[31] |= 0x80;
        keys.push(neg);
    }
    keys
}

#[test]
fn bundle_with_bad_signature_is_rejected_before_any_dh() {
    let mut rng = rng(70);
    let alice = Party::new(&mut rng, 0);
    let bob = Party::new(&mut rng, 1);
    let mallory = Party::new(&mut rng, 0);
    let good = bob.bundle(Some(FIRST_OPK_ID));
    assert!(good.verify().is_ok());

    let mut bad_bundles = Vec::new();
    // A flipped signature bit.
    let mut b = good.clone();
    let mut flipped = b.signed_prekey_signature.to_bytes();
    flipped[10] ^= 0x04;
    b.signed_prekey_signature = Signature::from_bytes(flipped);
    bad_bundles.push(b);
    // A substituted signed prekey.
    let mut b = good.clone();
    b.signed_prekey = mallory.bundle(None).signed_prekey;
    bad_bundles.push(b);
    // Bob's prekey signed by someone else.
    let mut b = good.clone();
    b.signed_prekey_signature = mallory.identity.sign(&good.signed_prekey.encode());
    bad_bundles.push(b);
    // A small-order signed prekey with the old signature: if any DH ran
    // first, this would be NonContributoryKey.
    let mut b = good.clone();
    b.signed_prekey = PreKeyPublic::from_bytes([0u8; 32]);
    bad_bundles.push(b);

    for bundle in &bad_bundles {
        assert_eq!(bundle.verify(), Err(Error::InvalidSignature));
        let position = rng.get_word_pos();
        assert_eq!(
            Session::initiate(&alice.identity, bundle, &mut rng).err(),
            Some(Error::InvalidSignature)
        );
        // Nothing was drawn: not even the ephemeral key was generated.
        assert_eq!(rng.get_word_pos(), position);
        assert_eq!(
            x3dh_initiate(&alice.identity, bundle, &[7u8; 32]).err(),
            Some(Error::InvalidSignature)
        );
        let mut set = SessionSet::new();
        assert_eq!(
            set.initiate(&alice.identity, bundle, &mut rng).err(),
            Some(Error::InvalidSignature)
        );
        assert!(set.is_empty());
        // Through the wire encoding too.
        let decoded = PreKeyBundle::decode(&bundle.encode()).expect("decodes");
        assert_eq!(decoded.verify(), Err(Error::InvalidSignature));
    }
    assert!(Session::initiate(&alice.identity, &good, &mut rng).is_ok());
}

/// The small-order keys `check_x25519_public` refuses by comparison are
/// exactly those an X25519 with them makes all zeros: each listed one does,
/// and random canonical keys (which it accepts) do not.
#[test]
fn the_small_order_list_agrees_with_x25519() {
    let scalar = x25519_dalek::StaticSecret::from([0x5A; 32]);
    for key in small_order_x25519() {
        let shared = scalar.diffie_hellman(&x25519_dalek::PublicKey::from(key));
        assert!(!shared.was_contributory(), "{key:02x?} is of small order");
        assert_eq!(
            sotto_core::keys::check_x25519_public(&PreKeyPublic::from_bytes(key)),
            Err(Error::InvalidPreKey)
        );
    }
    let mut rng = rng(72);
    for _ in 0..200 {
        let mut key = [0u8; 32];
        rand::Rng::fill_bytes(&mut rng, &mut key);
        key[31] &= 0x7f;
        let contributory = scalar
            .diffie_hellman(&x25519_dalek::PublicKey::from(key))
            .was_contributory();
        let accepted =
            sotto_core::keys::check_x25519_public(&PreKeyPublic::from_bytes(key)).is_ok();
        // Values from p to 2^255 - 1 are refused as non-canonical.
        if accepted {
            assert!(contributory, "{key:02x?}");
        }
    }
}

#[test]
fn signed_but_small_order_or_non_canonical_prekeys_are_refused_by_verify() {
    let mut rng = rng(71);
    let alice = Party::new(&mut rng, 0);
    let bob = Party::new(&mut rng, 1);
    // p = 2^255 - 19 and p + 1 are non-canonical aliases of 0 and 1; a key
    // with the top bit set is non-canonical too.
    let mut p = [0xFF; 32];
    p[0] = 0xED;
    p[31] = 0x7F;
    let mut high_bit = bob.bundle(None).signed_prekey.to_bytes();
    high_bit[31] |= 0x80;
    let mut bad: Vec<[u8; 32]> = small_order_x25519().into_iter().collect();
    bad.extend([p, high_bit]);
    for key in bad.into_iter().map(PreKeyPublic::from_bytes) {
        assert_eq!(
            sotto_core::keys::check_x25519_public(&key),
            Err(Error::InvalidPreKey)
        );
        let mut spk = bob.bundle(None);
        spk.signed_prekey = key;
        spk.signed_prekey_signature = bob.identity.sign(&key.encode());
        // Correctly signed, still refused, before any Diffie-Hellman.
        assert_eq!(spk.verify(), Err(Error::InvalidPreKey));
        assert_eq!(
            Session::initiate(&alice.identity, &spk, &mut rng).err(),
            Some(Error::InvalidPreKey)
        );
        // The one-time prekey is not signed; a bad one is refused too.
        let mut opk = bob.bundle(Some(FIRST_OPK_ID));
        opk.one_time_prekey = Some((FIRST_OPK_ID, key));
        assert_eq!(opk.verify(), Err(Error::InvalidPreKey));
        assert_eq!(
            Session::initiate(&alice.identity, &opk, &mut rng).err(),
            Some(Error::InvalidPreKey)
        );
    }
    // Honest keys pass.
    let honest = bob.bundle(Some(FIRST_OPK_ID));
    assert_eq!(honest.verify(), Ok(()));
    sotto_core::keys::check_x25519_public(&honest.signed_prekey).unwrap();
}

#[test]
fn non_canonical_or_small_order_identity_keys_are_rejected() {
    let mut rng = rng(72);
    let bob = Party::new(&mut rng, 1);
    let bytes = bob.bundle(Some(FIRST_OPK_ID)).encode();
    let keys = bad_ed25519_keys();
    // Some of these get past ed25519-dalek's own parser and weak-key check:
    // only the canonical re-encoding check stops them.
    let past_dalek = keys
        .iter()
        .filter(|k| ed25519_dalek::VerifyingKey::from_bytes(k).is_ok_and(|v| !v.is_weak()))
        .count();
    assert!(past_dalek > 0);
    for key in keys {
        assert_eq!(
            IdentityKey::from_bytes(&key).err(),
            Some(Error::InvalidIdentityKey),
            "{}",
            hex::encode(key)
        );
        let mut bad = bytes.clone();
        bad[1..33].copy_from_slice(&key);
        assert_eq!(
            PreKeyBundle::decode(&bad).err(),
            Some(Error::InvalidIdentityKey),
            "{}",
            hex::encode(key)
        );
    }
    assert_eq!(
        IdentityKey::from_slice(&[1u8; 31]).err(),
        Some(Error::InvalidIdentityKey)
    );
    // Genuine keys pass and round-trip.
    for _ in 0..16 {
        let id = sotto_core::IdentityKeyPair::generate(&mut rng);
        let key = IdentityKey::from_bytes(id.public().as_bytes()).expect("valid");
        assert_eq!(&key, id.public());
        assert_eq!(key.encode()[0], 0xED);
        assert_eq!(&key.encode()[1..], id.public().as_bytes());
    }
}

#[test]
fn one_time_prekey_is_used_at_most_once() {
    let mut rng = rng(73);
    let alice = Party::new(&mut rng, 0);
    let carol = Party::new(&mut rng, 0);
    let mut bob = Party::new(&mut rng, 2);
    let stale = bob.bundle(Some(FIRST_OPK_ID));
    let mut a = Session::initiate(&alice.identity, &stale, &mut rng).expect("initiate");
    let first = a.encrypt(b"alice").expect("encrypt");
    let (_, t) = bob.respond(&first, &mut rng).expect("respond");
    assert_eq!(t, b"alice");
    // The caller deleted it: the source no longer has it.
    assert!(bob.prekeys.one_time_prekey(FIRST_OPK_ID).is_none());
    assert_eq!(bob.prekeys.one_time_count(), 1);
    // A second fresh session with the same (stale) bundle fails, whoever
    // sends it.
    for sender in [&alice, &carol] {
        let mut s = Session::initiate(&sender.identity, &stale, &mut rng).expect("initiate");
        let wire = s.encrypt(b"again").expect("encrypt");
        assert_eq!(
            bob.respond(&wire, &mut rng).err(),
            Some(Error::UnknownOneTimePreKey(FIRST_OPK_ID))
        );
    }
    // A never-issued id fails the same way.
    let mut s = Session::initiate(&carol.identity, &stale, &mut rng).expect("initiate");
    let mut wire = s.encrypt(b"made up").expect("encrypt");
    wire[SPK_ID_AT + 5..SPK_ID_AT + 9].copy_from_slice(&999u32.to_be_bytes());
    assert_eq!(
        bob.respond(&wire, &mut rng).err(),
        Some(Error::UnknownOneTimePreKey(OneTimePreKeyId::new(999)))
    );
    // The other one-time prekey still works, once.
    let second = OneTimePreKeyId::new(FIRST_OPK_ID.get() + 1);
    let mut c =
        Session::initiate(&carol.identity, &bob.bundle(Some(second)), &mut rng).expect("initiate");
    let wire = c.encrypt(b"carol").expect("encrypt");
    let (_, t) = bob.respond(&wire, &mut rng).expect("respond");
    assert_eq!(t, b"carol");
    assert_eq!(bob.prekeys.one_time_count(), 0);
    assert_eq!(
        bob.respond(&wire, &mut rng).err(),
        Some(Error::UnknownOneTimePreKey(second))
    );
}

#[test]
fn unknown_signed_prekey_is_refused_and_a_rotated_one_still_works() {
    let mut rng = rng(74);
    let alice = Party::new(&mut rng, 0);
    let mut bob = Party::new(&mut rng, 0);
    let old_bundle = bob.bundle(None);
    // Bob rotates his signed prekey but keeps the old one for a while.
    let rotated = SignedPreKeyId::new(SPK_ID.get() + 1);
    bob.prekeys
        .add_signed(SignedPreKey::generate(rotated, &bob.identity, &mut rng));
    let mut a = Session::initiate(&alice.identity, &old_bundle, &mut rng).expect("initiate");
    let wire = a.encrypt(b"old spk").expect("encrypt");
    let mut bad = wire.clone();
    bad[SPK_ID_AT..SPK_ID_AT + 4].copy_from_slice(&77u32.to_be_bytes());
    assert_eq!(
        bob.respond(&bad, &mut rng).err(),
        Some(Error::UnknownSignedPreKey(SignedPreKeyId::new(77)))
    );
    // Naming the other (existing) signed prekey: X3DH disagrees.
    bad[SPK_ID_AT..SPK_ID_AT + 4].copy_from_slice(&rotated.get().to_be_bytes());
    assert_eq!(
        bob.respond(&bad, &mut rng).err(),
        Some(Error::AuthenticationFailed)
    );
    assert_eq!(bob.respond(&wire, &mut rng).expect("respond").1, b"old spk");
}

#[test]
fn prekey_message_with_small_order_base_key_is_non_contributory() {
    let mut rng = rng(75);
    let alice = Party::new(&mut rng, 0);
    let mut bob = Party::new(&mut rng, 1);
    let mut a = Session::initiate(&alice.identity, &bob.bundle(Some(FIRST_OPK_ID)), &mut rng)
        .expect("initiate");
    let wire = a.encrypt(b"base").expect("encrypt");
    for small in small_order_x25519() {
        let mut bad = wire.clone();
        bad[BASE_KEY_AT..BASE_KEY_AT + 32].copy_from_slice(&small);
        assert_eq!(
            bob.respond(&bad, &mut rng).err(),
            Some(Error::NonContributoryKey),
            "{}",
            hex::encode(small)
        );
        assert!(bob.prekeys.has_one_time(FIRST_OPK_ID));
    }
    assert_eq!(bob.respond(&wire, &mut rng).expect("respond").1, b"base");
}

#[test]
fn prekey_message_with_non_canonical_base_key_is_rejected() {
    let mut rng = rng(76);
    let alice = Party::new(&mut rng, 0);
    let mut bob = Party::new(&mut rng, 1);
    let mut a = Session::initiate(&alice.identity, &bob.bundle(Some(FIRST_OPK_ID)), &mut rng)
        .expect("initiate");
    let wire = a.encrypt(b"canonical").expect("encrypt");
    let genuine: [u8; 32] = wire[BASE_KEY_AT..BASE_KEY_AT + 32]
        .try_into()
        .expect("32 bytes");
    assert_eq!(genuine[31] & 0x80, 0);
    let mut aliases = vec![genuine];
    aliases[0][31] |= 0x80;
    for k in 0..19 {
        aliases.push(p_plus(k));
        let mut high = p_plus(k);
        high[31] |= 0x80;
        aliases.push(high);
    }
    for alias in aliases {
        let mut bad = wire.clone();
        bad[BASE_KEY_AT..BASE_KEY_AT + 32].copy_from_slice(&alias);
        assert_eq!(
            bob.respond(&bad, &mut rng).err(),
            Some(Error::InvalidBaseKey),
            "{}",
            hex::encode(alias)
        );
    }
    assert!(bob.prekeys.has_one_time(FIRST_OPK_ID));
    assert_eq!(
        bob.respond(&wire, &mut rng).expect("respond").1,
        b"canonical"
    );
}

#[test]
fn both_sides_of_x3dh_agree_and_bind_both_identities() {
    let mut rng = rng(77);
    let alice = Party::new(&mut rng, 0);
    let bob = Party::new(&mut rng, 1);
    let spk = bob.prekeys.signed_prekey(SPK_ID).expect("spk");
    let opk = bob.prekeys.one_time_prekey(FIRST_OPK_ID).expect("opk");
    let ek_private = [0x42u8; 32];
    let ek_public = ephemeral_public(&ek_private, &alice, &bob);

    let (sk_a, ad_a) = x3dh_initiate(
        &alice.identity,
        &bob.bundle(Some(FIRST_OPK_ID)),
        &ek_private,
    )
    .expect("initiate");
    let (sk_b, ad_b) = x3dh_respond(
        &bob.identity,
        &spk,
        Some(&opk),
        alice.identity.public(),
        &ek_public,
    )
    .expect("respond");
    assert_eq!(*sk_a, *sk_b);
    assert_eq!(ad_a, ad_b);
    assert_eq!(&ad_a[..33], &alice.identity.public().encode());
    assert_eq!(&ad_a[33..], &bob.identity.public().encode());

    // Without the OPK on one side only: different secrets.
    let (sk_no_opk, _) = x3dh_respond(
        &bob.identity,
        &spk,
        None,
        alice.identity.public(),
        &ek_public,
    )
    .expect("respond");
    assert_ne!(*sk_no_opk, *sk_a);
    let (sk_a_no_opk, _) =
        x3dh_initiate(&alice.identity, &bob.bundle(None), &ek_private).expect("initiate");
    assert_eq!(*sk_a_no_opk, *sk_no_opk);
    // Claiming another initiator identity changes the secret.
    let carol = Party::new(&mut rng, 0);
    let (sk_c, ad_c) = x3dh_respond(
        &bob.identity,
        &spk,
        Some(&opk),
        carol.identity.public(),
        &ek_public,
    )
    .expect("respond");
    assert_ne!(*sk_c, *sk_a);
    assert_ne!(ad_c, ad_a);
}

/// EK_A as the initiator sends it: taken from a PreKeyMessage made with the
/// same ephemeral private key, so the test needs no X25519 of its own.
fn ephemeral_public(ek_private: &[u8; 32], alice: &Party, bob: &Party) -> [u8; 32] {
    let mut session = sotto_core::hazmat::initiate_session(
        &alice.identity,
        &bob.bundle(None),
        ek_private,
        None,
        &[0x24u8; 32],
    )
    .expect("initiate");
    let wire = session.encrypt(b"").expect("encrypt");
    assert_eq!(session.base_key(), &wire[BASE_KEY_AT..BASE_KEY_AT + 32]);
    *session.base_key()
}

#[test]
fn session_set_refuses_a_bundle_of_another_identity() {
    let mut rng = rng(78);
    let alice = Party::new(&mut rng, 0);
    let bob = Party::new(&mut rng, 0);
    let carol = Party::new(&mut rng, 0);
    let mut set = SessionSet::new();
    set.initiate(&alice.identity, &bob.bundle(None), &mut rng)
        .expect("initiate");
    let before = set.to_bytes();
    assert_eq!(
        set.initiate(&alice.identity, &carol.bundle(None), &mut rng)
            .err(),
        Some(Error::IdentityMismatch)
    );
    assert!(*before == *set.to_bytes());
    assert_eq!(set.remote_identity(), Some(bob.identity.public()));
}
