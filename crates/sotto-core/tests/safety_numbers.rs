//! Safety numbers: 60 digits, the same on both sides, different as soon as
//! either identity key differs.
#![cfg(test)]

mod common;

use common::{Pair, rng};
use sha2::{Digest, Sha512};
use sotto_core::{
    IdentityKey, IdentityKeyPair, SAFETY_NUMBER_ITERATIONS, fingerprint_digits, safety_number,
};

/// PROTOCOL.md "Safety number", written out independently: the stable id of
/// a party is its raw Ed25519 key.
fn reference_digits(key: &IdentityKey) -> String {
    let encoded = key.encode();
    let mut h = Sha512::new()
        .chain_update(0u16.to_be_bytes())
        .chain_update(encoded)
        .chain_update(key.as_bytes())
        .finalize();
    for _ in 0..5200 {
        h = Sha512::new()
            .chain_update(h)
            .chain_update(encoded)
            .finalize();
    }
    h[..30]
        .chunks(5)
        .map(|c| {
            let v = c.iter().fold(0u64, |acc, &b| acc * 256 + u64::from(b));
            format!("{:05}", v % 100_000)
        })
        .collect()
}

#[test]
fn safety_number_is_the_same_on_both_sides_and_has_60_digits() {
    let p = Pair::new(100);
    let at_alice = safety_number(p.a.local_identity(), p.a.remote_identity());
    let at_bob = safety_number(p.b.local_identity(), p.b.remote_identity());
    assert_eq!(at_alice, at_bob);
    let digits = at_alice.digits();
    assert_eq!(digits.len(), 60);
    assert!(digits.bytes().all(|b| b.is_ascii_digit()));
    // The smaller half first.
    let fa = fingerprint_digits(p.alice.identity.public());
    let fb = fingerprint_digits(p.bob.identity.public());
    assert_eq!(fa.len(), 30);
    assert_eq!(fb.len(), 30);
    let (lo, hi) = if fa <= fb { (&fa, &fb) } else { (&fb, &fa) };
    assert_eq!(digits, format!("{lo}{hi}"));
    // Twelve groups of five for reading out.
    let grouped = at_alice.grouped();
    let groups: Vec<&str> = grouped.split(' ').collect();
    assert_eq!(groups.len(), 12);
    assert!(groups.iter().all(|g| g.len() == 5));
    assert_eq!(groups.concat(), digits);
    assert_eq!(at_alice.to_string(), grouped);
}

#[test]
fn fingerprint_follows_the_protocol_definition() {
    assert_eq!(SAFETY_NUMBER_ITERATIONS, 5200);
    let mut rng = rng(101);
    for _ in 0..2 {
        let id = IdentityKeyPair::generate(&mut rng);
        assert_eq!(
            fingerprint_digits(id.public()),
            reference_digits(id.public())
        );
    }
    let fixed = IdentityKeyPair::from_seed(&[0x5a; 32]);
    assert_eq!(
        fingerprint_digits(fixed.public()),
        reference_digits(fixed.public())
    );
}

#[test]
fn safety_number_changes_when_either_identity_changes() {
    let mut rng = rng(102);
    let alice = IdentityKeyPair::generate(&mut rng);
    let bob = IdentityKeyPair::generate(&mut rng);
    let mallory = IdentityKeyPair::generate(&mut rng);
    let genuine = safety_number(alice.public(), bob.public());
    let bob_replaced = safety_number(alice.public(), mallory.public());
    let alice_replaced = safety_number(mallory.public(), bob.public());
    assert_ne!(genuine, bob_replaced);
    assert_ne!(genuine, alice_replaced);
    assert_ne!(bob_replaced, alice_replaced);
    // Only the half of the changed identity changes.
    let fa = fingerprint_digits(alice.public());
    assert!(bob_replaced.digits().contains(&fa));
    assert!(!alice_replaced.digits().contains(&fa));
    // Symmetric in its arguments.
    assert_eq!(genuine, safety_number(bob.public(), alice.public()));
}
