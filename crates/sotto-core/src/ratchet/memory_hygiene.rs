//! Secrets are wiped when they are dropped.
//!
//! Safe Rust cannot read memory after it is freed, so this is shown in two
//! steps: every key of the protocol keeps its bytes in a `Secret32` (or in
//! a crate type that wipes itself), and each of those types is
//! `ZeroizeOnDrop` and really writes zeros. The limits (copies on the
//! stack, in registers or made by the OS) are in docs/reliability.md.

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::chain_key::ChainKey;
use super::message_key::MessageKey;
use super::root_key::RootKey;
use super::{RatchetKeyPair, Session};
use crate::keys::{
    IdentityKeyPair, OneTimePreKey, OneTimePreKeyId, Secret32, SignedPreKey, SignedPreKeyId,
};

/// Compiles only for types whose `Drop` zeroizes them.
fn wiped_on_drop<T: ZeroizeOnDrop + ?Sized>() {}

#[test]
fn every_container_of_key_material_zeroizes_on_drop() {
    // Identity, prekey, ratchet, root, chain and message keys.
    wiped_on_drop::<Secret32>();
    // The Ed25519 half of the identity key.
    wiped_on_drop::<ed25519_dalek::SigningKey>();
    // X25519 private keys and DH outputs while a DH is computed.
    wiped_on_drop::<x25519_dalek::StaticSecret>();
    wiped_on_drop::<x25519_dalek::SharedSecret>();
    // Cipher states keyed with message keys and sealed-envelope keys.
    wiped_on_drop::<chacha20poly1305::ChaCha20Poly1305>();
    // The SHA-256 state inside the HMACs and HKDFs keyed with chain and
    // root keys.
    wiped_on_drop::<sha2::block_api::Sha256VarCore>();
    // Buffers that hold secrets on their way in and out (seeds,
    // serialized sessions and prekeys, KDF outputs).
    wiped_on_drop::<Zeroizing<[u8; 32]>>();
    wiped_on_drop::<Zeroizing<Vec<u8>>>();
}

#[test]
fn zeroizing_a_secret_overwrites_its_bytes() {
    let mut secret = Secret32::new([0x5A; 32]);
    let copy = secret.clone();
    secret.zeroize();
    assert_eq!(secret.as_bytes(), &[0u8; 32]);
    // A clone owns its own buffer, wiped by its own drop.
    assert_eq!(copy.as_bytes(), &[0x5A; 32]);
}

/// Each key type holds its secret bytes in a `Secret32`: these accessors
/// type-check only while that is so.
#[test]
fn protocol_keys_keep_their_secret_bytes_in_secret32() {
    let identity = IdentityKeyPair::from_seed(&[1; 32]);
    let _: &Secret32 = identity.dh_private();
    let _: &Secret32 =
        SignedPreKey::from_private_bytes(SignedPreKeyId::new(1), &identity, &[2; 32]).private();
    let _: &Secret32 =
        OneTimePreKey::from_private_bytes(OneTimePreKeyId::new(1), &[3; 32]).private();
    let ratchet = RatchetKeyPair::from_private(Secret32::new([4; 32]));
    let _: &Secret32 = &ratchet.private;
    let root = RootKey(Secret32::new([5; 32]));
    let _: &Secret32 = &root.0;
    let (_, mut chain): (RootKey, ChainKey) = root.ratchet_step(&Secret32::new([6; 32]));
    let _: &Secret32 = chain.key();
    let message: MessageKey = chain.step().expect("a fresh chain steps");
    let _: &Secret32 = message.secret();
}

/// A session's secrets are exactly its `Secret32`s: serializing it shows
/// the same bytes, so nothing secret lives outside a wiped container.
#[test]
fn a_session_holds_its_secrets_in_secret32() {
    let alice = IdentityKeyPair::from_seed(&[0xA1; 32]);
    let bob = IdentityKeyPair::from_seed(&[0xB0; 32]);
    let spk = SignedPreKey::from_private_bytes(SignedPreKeyId::new(1), &bob, &[0x5B; 32]);
    let bundle = crate::PreKeyBundle::new(&bob, &spk, None);
    let mut session = Session::initiate_with(
        &alice,
        &bundle,
        &Secret32::new([0xE0; 32]),
        None,
        RatchetKeyPair::from_private(Secret32::new([0xA0; 32])),
    )
    .expect("initiate");
    session.encrypt(b"x").expect("encrypt");
    let bytes = session.to_bytes();
    let chain = session.sending_chain.as_ref().expect("sending chain");
    for secret in [
        session.root_key.0.as_bytes(),
        session.sending_ratchet.private.as_bytes(),
        chain.key().as_bytes(),
    ] {
        assert!(bytes.windows(32).any(|w| w == secret));
    }
}
