//! The secrets of group messaging are wiped when they are dropped: every
//! chain key and message key lives in a `Secret32`, every signing key in
//! an `ed25519_dalek::SigningKey`, both of which zeroize on drop (see
//! `ratchet/memory_hygiene.rs` for the argument).

use zeroize::ZeroizeOnDrop;

use super::chain_key::SenderChainKey;
use super::message_key::GroupMessageKey;
use super::{GroupId, SenderKey, SenderKeyReceiver};
use crate::keys::Secret32;

fn wiped_on_drop<T: ZeroizeOnDrop + ?Sized>() {}

#[test]
fn the_containers_of_group_secrets_zeroize_on_drop() {
    wiped_on_drop::<Secret32>();
    wiped_on_drop::<ed25519_dalek::SigningKey>();
}

/// These accessors type-check only while the keys are kept in `Secret32`.
#[test]
fn group_keys_keep_their_secret_bytes_in_secret32() {
    let mut chain = SenderChainKey::new(Secret32::new([1; 32]), 0);
    let _: &Secret32 = chain.key();
    let key: GroupMessageKey = chain.step().expect("a fresh chain steps");
    let _: &Secret32 = key.secret();
}

/// A sender key's and a receiver's secrets are exactly their `Secret32`s
/// and the signing key: serializing them shows the same bytes.
#[test]
fn sender_keys_and_receivers_hold_their_secrets_in_wiped_containers() {
    let mut rng = <rand::rngs::ChaCha20Rng as rand::SeedableRng>::from_seed([3; 32]);
    let mut sender = SenderKey::generate(GroupId::from_bytes([9; 32]), &mut rng);
    let mut receiver = SenderKeyReceiver::new(&sender.distribution());
    let _skipped = sender.encrypt(b"one").expect("encrypt");
    let message = sender.encrypt(b"two").expect("encrypt");
    receiver.decrypt(&message).expect("decrypt");
    let bytes = sender.to_bytes();
    assert!(
        bytes
            .windows(32)
            .any(|w| w == sender.chain().key().as_bytes())
    );
    assert!(
        bytes
            .windows(32)
            .any(|w| w == sender.signing().to_seed().as_slice())
    );
    let bytes = receiver.to_bytes();
    let chain = &receiver.chains()[0];
    assert!(bytes.windows(32).any(|w| w == chain.chain.key().as_bytes()));
    let skipped = receiver.skipped().iter().next().expect("one skipped key");
    assert!(
        bytes
            .windows(32)
            .any(|w| w == skipped.key.secret().as_bytes())
    );
}
