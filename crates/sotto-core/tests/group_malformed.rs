//! Malformed group messages and distributions are refused with the right
//! error, never a panic, and never change the receiver.
#![cfg(test)]

mod group_common;

use group_common::{Group, reject_unchanged};
use proptest::prelude::*;
use sotto_core::group::{
    DISTRIBUTION_LEN, GROUP_HEADER_LEN, GROUP_SIGNATURE_LEN, GroupError, GroupMessage,
    MAX_GROUP_MESSAGE_LEN, MIN_GROUP_MESSAGE_LEN, SenderKeyDistribution,
};
use sotto_core::wire::{MAX_CIPHERTEXT_LEN, MIN_CIPHERTEXT_LEN};

#[test]
fn a_truncated_message_at_every_length_is_refused() {
    let mut g = Group::new(40);
    let wire = g.send(0);
    assert_eq!(wire.len(), MIN_GROUP_MESSAGE_LEN);
    for len in 0..wire.len() {
        let needed = match len {
            0 => 1,
            1 => 2,
            _ => MIN_GROUP_MESSAGE_LEN,
        };
        assert_eq!(
            reject_unchanged(&mut g.bob, &wire[..len]),
            GroupError::Truncated { needed, got: len },
            "length {len}"
        );
    }
    g.receive(&wire, 0);
}

#[test]
fn a_longer_message_cut_or_lengthened_is_refused_before_any_key_is_derived() {
    let mut g = Group::new(41);
    let wire = g.alice.encrypt(&[0x55; 1000]).unwrap();
    // 1000 bytes pad to 1024: the ciphertext is 1040 bytes.
    assert_eq!(wire.len(), GROUP_HEADER_LEN + 1040 + GROUP_SIGNATURE_LEN);
    // Bytes cut from the end or added: the parser takes the last 64 bytes
    // for the signature, so the ciphertext it sees is that much shorter or
    // longer. Where that length is a padded length plus the tag, the
    // signature refuses the message; everywhere else the length does.
    let is_padded = |len: usize| sotto_core::pad::padded_len(len) == len;
    for len in wire.len() - 100..wire.len() + 100 {
        if len == wire.len() {
            continue;
        }
        let mut changed = wire.clone();
        changed.resize(len, 0);
        let ciphertext = len - GROUP_HEADER_LEN - GROUP_SIGNATURE_LEN;
        let expected = if is_padded(ciphertext - 16) {
            GroupError::InvalidSignature
        } else {
            GroupError::InvalidCiphertextLength { len: ciphertext }
        };
        assert_eq!(
            reject_unchanged(&mut g.bob, &changed),
            expected,
            "length {len}"
        );
    }
    // Cut by 32 or 64 bytes gives 992 and 960 padded bytes, both padded
    // lengths; 1040 + 16 bytes is not (the next is 1088).
    assert!(is_padded(992) && is_padded(960) && !is_padded(1040) && is_padded(1088));
    assert_eq!(g.bob.decrypt(&wire).unwrap(), vec![0x55; 1000]);
}

#[test]
fn version_type_and_length_limits_are_checked_in_order() {
    assert_eq!(
        GroupMessage::parse(&[0x02]).unwrap_err(),
        GroupError::UnsupportedVersion(2)
    );
    assert_eq!(
        GroupMessage::parse(&[0x01, 0x02]).unwrap_err(),
        GroupError::UnknownMessageType(2)
    );
    // A one-to-one Message is not a group message.
    assert_eq!(
        GroupMessage::parse(&[0x01, 0x02, 0, 0]).unwrap_err(),
        GroupError::UnknownMessageType(2)
    );
    assert_eq!(
        GroupMessage::parse(&[0x01, 0x03]).unwrap_err(),
        GroupError::Truncated {
            needed: MIN_GROUP_MESSAGE_LEN,
            got: 2
        }
    );
    // One byte over the largest message.
    let mut huge = vec![0u8; MAX_GROUP_MESSAGE_LEN + 1];
    huge[0] = 0x01;
    huge[1] = 0x03;
    assert_eq!(
        GroupMessage::parse(&huge).unwrap_err(),
        GroupError::CiphertextTooLong {
            len: MAX_CIPHERTEXT_LEN + 1,
            max: MAX_CIPHERTEXT_LEN
        }
    );
    huge.pop();
    let parsed = GroupMessage::parse(&huge).expect("the largest message parses");
    assert_eq!(parsed.ciphertext().len(), MAX_CIPHERTEXT_LEN);
    let mut smallest = vec![0u8; MIN_GROUP_MESSAGE_LEN];
    smallest[0] = 0x01;
    smallest[1] = 0x03;
    assert_eq!(
        GroupMessage::parse(&smallest).unwrap().ciphertext().len(),
        MIN_CIPHERTEXT_LEN
    );
}

#[test]
fn a_one_to_one_message_is_not_taken_for_a_group_message_nor_the_reverse() {
    let mut g = Group::new(42);
    let group_wire = g.send(0);
    assert_eq!(
        sotto_core::wire::WireMessage::parse(&group_wire).unwrap_err(),
        sotto_core::Error::UnknownMessageType(0x03)
    );
}

#[test]
fn malformed_distributions_are_refused() {
    let g = Group::new(43);
    let bytes = g.alice.distribution().to_bytes();
    assert_eq!(bytes.len(), DISTRIBUTION_LEN);
    for len in 0..DISTRIBUTION_LEN {
        assert!(
            matches!(
                SenderKeyDistribution::from_bytes(&bytes[..len]),
                Err(GroupError::Truncated { .. })
            ),
            "length {len}"
        );
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert_eq!(
        SenderKeyDistribution::from_bytes(&longer).unwrap_err(),
        GroupError::TrailingBytes(1)
    );
    let mut version = *bytes;
    version[0] = 0x02;
    assert_eq!(
        SenderKeyDistribution::from_bytes(&version).unwrap_err(),
        GroupError::UnsupportedVersion(2)
    );
    let mut weak = *bytes;
    weak[73..].fill(0);
    weak[73] = 1;
    assert_eq!(
        SenderKeyDistribution::from_bytes(&weak).unwrap_err(),
        GroupError::InvalidSigningKey
    );
    // Its fields read back.
    let d = SenderKeyDistribution::from_bytes(bytes.as_slice()).unwrap();
    assert_eq!(d.group_id(), &g.id);
    assert_eq!(d.chain_id(), g.alice.chain_id());
    assert_eq!(d.iteration(), 0);
    assert_eq!(d.verifying_key(), &g.alice.verifying_key());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_are_refused_without_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..1200),
    ) {
        let mut g = Group::new(44);
        let _ = GroupMessage::parse(&bytes);
        let _ = SenderKeyDistribution::from_bytes(&bytes);
        prop_assert!(g.bob.decrypt(&bytes).is_err());
    }

    #[test]
    fn a_genuine_header_with_random_body_is_refused_unchanged(
        body in proptest::collection::vec(any::<u8>(), 0..700),
    ) {
        let mut g = Group::new(45);
        let wire = g.send(0);
        let mut forged = wire[..GROUP_HEADER_LEN].to_vec();
        forged.extend_from_slice(&body);
        reject_unchanged(&mut g.bob, &forged);
        g.receive(&wire, 0);
    }

    #[test]
    fn a_flipped_bit_anywhere_is_refused_unchanged(
        at in 0usize..MIN_GROUP_MESSAGE_LEN,
        bit in 0u8..8,
    ) {
        let mut g = Group::new(46);
        let wire = g.send(0);
        let mut bad = wire.clone();
        bad[at] ^= 1 << bit;
        reject_unchanged(&mut g.bob, &bad);
        g.receive(&wire, 0);
    }
}
