//! Sender keys and receivers survive serialization exactly, and corrupt
//! serialized state is refused with `CorruptState` (or
//! `UnsupportedVersion`), never a panic.
#![cfg(test)]

mod group_common;

use group_common::{Group, reject_unchanged, text};
use proptest::prelude::*;
use sotto_core::MAX_SKIPPED_KEYS;
use sotto_core::group::{
    GROUP_STATE_VERSION, GroupError, SENDER_KEY_STATE_LEN, SenderKey, SenderKeyReceiver,
};

/// A receiver with two chains and skipped keys in both.
fn busy_group(seed: u64) -> (Group, Vec<Vec<u8>>) {
    let mut g = Group::new(seed);
    let old = g.send_many(0, 4);
    g.receive(&old[3], 3);
    g.alice.rotate(&mut g.rng);
    g.bob.process(&g.alice.distribution()).unwrap();
    let new = g.send_many(4, 3);
    g.receive(&new[2], 6);
    assert_eq!(g.bob.skipped_key_count(), 5);
    (g, [old, new].concat())
}

#[test]
fn sender_key_round_trips_and_goes_on_where_it_stopped() {
    let mut g = Group::new(30);
    g.send_many(0, 3);
    let bytes = g.alice.to_bytes();
    assert_eq!(bytes.len(), SENDER_KEY_STATE_LEN);
    assert_eq!(bytes[0], GROUP_STATE_VERSION);
    let mut restored = SenderKey::from_bytes(&bytes).unwrap();
    assert_eq!(restored.to_bytes(), bytes);
    assert_eq!(restored.chain_id(), g.alice.chain_id());
    assert_eq!(restored.iteration(), 3);
    assert_eq!(restored.verifying_key(), g.alice.verifying_key());
    // The restored copy makes exactly the original's next message.
    let from_restored = restored.encrypt(&text(3)).unwrap();
    assert_eq!(from_restored, g.send(3));
}

#[test]
fn receiver_round_trips_with_its_chains_and_skipped_keys() {
    let (mut g, wires) = busy_group(31);
    let bytes = g.bob.to_bytes();
    let mut restored = SenderKeyReceiver::from_bytes(&bytes).unwrap();
    assert_eq!(restored.to_bytes(), bytes);
    assert_eq!(
        restored.chain_ids().collect::<Vec<_>>(),
        g.bob.chain_ids().collect::<Vec<_>>()
    );
    // Both decrypt the skipped messages, in the same way.
    for i in [0, 4, 1, 5, 2] {
        assert_eq!(restored.decrypt(&wires[i]).unwrap(), text(i));
        g.receive(&wires[i], i);
        assert_eq!(restored.to_bytes(), g.bob.to_bytes());
    }
    assert_eq!(restored.skipped_key_count(), 0);
}

#[test]
fn receiver_layout_is_that_of_the_spec() {
    let (g, _) = busy_group(32);
    let bytes = g.bob.to_bytes();
    // version, kind, group id, two chains, five skipped keys.
    assert_eq!(bytes.len(), 2 + 32 + 1 + 2 * 72 + 2 + 5 * 40);
    assert_eq!(&bytes[..2], &[0x01, 0x02]);
    assert_eq!(&bytes[2..34], g.id.as_bytes());
    assert_eq!(bytes[34], 2);
    // The most recent chain first.
    assert_eq!(&bytes[35..39], &g.alice.chain_id().get().to_be_bytes());
    assert_eq!(&bytes[39..43], &3u32.to_be_bytes());
    assert_eq!(&bytes[75..107], g.alice.verifying_key().as_bytes());
    assert_eq!(&bytes[179..181], &5u16.to_be_bytes());
}

#[test]
fn every_truncation_and_any_trailing_byte_is_refused() {
    let (g, _) = busy_group(33);
    let receiver = g.bob.to_bytes();
    for len in 0..receiver.len() {
        let err = SenderKeyReceiver::from_bytes(&receiver[..len]).unwrap_err();
        assert!(
            matches!(err, GroupError::CorruptState(_)),
            "length {len}: {err:?}"
        );
    }
    let mut longer = receiver.to_vec();
    longer.push(0);
    assert_eq!(
        SenderKeyReceiver::from_bytes(&longer).unwrap_err(),
        GroupError::CorruptState("trailing bytes")
    );
    let sender = g.alice.to_bytes();
    for len in 0..sender.len() {
        let err = SenderKey::from_bytes(&sender[..len]).unwrap_err();
        assert!(
            matches!(err, GroupError::CorruptState(_)),
            "length {len}: {err:?}"
        );
    }
    let mut longer = sender.to_vec();
    longer.push(0);
    assert_eq!(
        SenderKey::from_bytes(&longer).unwrap_err(),
        GroupError::CorruptState("trailing bytes")
    );
}

#[test]
fn versions_kinds_and_broken_rules_are_refused() {
    let (g, _) = busy_group(34);
    let receiver = g.bob.to_bytes().to_vec();
    let sender = g.alice.to_bytes().to_vec();
    let patched = |bytes: &[u8], at: usize, with: &[u8]| {
        let mut b = bytes.to_vec();
        b[at..at + with.len()].copy_from_slice(with);
        b
    };
    let refused = |bytes: &[u8]| SenderKeyReceiver::from_bytes(bytes).unwrap_err();

    assert_eq!(
        SenderKey::from_bytes(&patched(&sender, 0, &[2])).unwrap_err(),
        GroupError::UnsupportedVersion(2)
    );
    assert_eq!(
        refused(&patched(&receiver, 0, &[0])),
        GroupError::UnsupportedVersion(0)
    );
    // A receiver is not a sender key, nor the other way round.
    assert_eq!(
        SenderKey::from_bytes(&receiver).unwrap_err(),
        GroupError::CorruptState("kind")
    );
    assert_eq!(refused(&sender), GroupError::CorruptState("kind"));
    // No chain, six chains.
    assert_eq!(
        refused(&patched(&receiver, 34, &[0])),
        GroupError::CorruptState("chain count")
    );
    assert_eq!(
        refused(&patched(&receiver, 34, &[6])),
        GroupError::CorruptState("chain count")
    );
    // Both chains with the same id.
    let first_id = receiver[35..39].to_vec();
    assert_eq!(
        refused(&patched(&receiver, 107, &first_id)),
        GroupError::CorruptState("chain id twice")
    );
    // A signing key of small order.
    let mut small_order = [0u8; 32];
    small_order[0] = 1;
    assert_eq!(
        refused(&patched(&receiver, 75, &small_order)),
        GroupError::CorruptState("signing key")
    );
    // Skipped keys start at 181, 40 bytes each.
    let key_at = |k: usize| 181 + 40 * k;
    assert_eq!(
        refused(&patched(&receiver, key_at(0), &[0xEE; 4])),
        GroupError::CorruptState("skipped key of a chain not held")
    );
    // A skipped key at its chain's iteration (the old chain is at 4).
    let old_chain = &receiver[107..111];
    assert_eq!(&receiver[key_at(0)..key_at(0) + 4], old_chain);
    assert_eq!(
        refused(&patched(&receiver, key_at(0) + 4, &4u32.to_be_bytes())),
        GroupError::CorruptState("skipped key not behind its chain")
    );
    // The first key stored twice.
    let first_key = receiver[key_at(0)..key_at(1)].to_vec();
    assert_eq!(
        refused(&patched(&receiver, key_at(1), &first_key)),
        GroupError::CorruptState("skipped key twice")
    );
    // More keys than a receiver ever holds.
    let count = u16::try_from(MAX_SKIPPED_KEYS + 1).unwrap().to_be_bytes();
    assert_eq!(
        refused(&patched(&receiver, 179, &count)),
        GroupError::CorruptState("too many skipped keys")
    );
}

#[test]
fn a_restored_receiver_refuses_replays_as_the_original() {
    let (mut g, wires) = busy_group(35);
    let mut restored = SenderKeyReceiver::from_bytes(&g.bob.to_bytes()).unwrap();
    assert!(matches!(
        reject_unchanged(&mut restored, &wires[3]),
        GroupError::Duplicate { iteration: 3, .. }
    ));
    assert!(matches!(
        reject_unchanged(&mut g.bob, &wires[3]),
        GroupError::Duplicate { iteration: 3, .. }
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic_the_state_decoders(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let _ = SenderKey::from_bytes(&bytes);
        let _ = SenderKeyReceiver::from_bytes(&bytes);
    }

    #[test]
    fn a_flipped_bit_of_a_receiver_state_is_refused_or_decodes_to_those_bytes(
        at in 0usize..381,
        bit in 0u8..8,
    ) {
        let (g, _) = busy_group(36);
        let mut bytes = g.bob.to_bytes().to_vec();
        prop_assume!(at < bytes.len());
        bytes[at] ^= 1 << bit;
        if let Ok(r) = SenderKeyReceiver::from_bytes(&bytes) {
            // Whatever decodes serializes back to exactly the same bytes.
            let again = r.to_bytes();
            prop_assert_eq!(again.as_slice(), &bytes[..]);
        }
    }
}
