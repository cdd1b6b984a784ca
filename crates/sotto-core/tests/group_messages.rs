//! Group messages under one sender key chain: delivery in and out of
//! order, the skip limits, replays, tampering and forgery by a member.
#![cfg(test)]

mod group_common;

use group_common::{Group, reject_unchanged, text, through_bytes};
use sotto_core::group::{
    GROUP_HEADER_LEN, GROUP_SIGNATURE_LEN, GroupError, GroupId, GroupMessage, SenderKey,
    SenderKeyDistribution, SenderKeyReceiver,
};
use sotto_core::{MAX_SKIP, MAX_SKIPPED_KEYS};

#[test]
fn many_messages_round_trip_in_order() {
    let mut g = Group::new(1);
    for i in 0..200 {
        let wire = g.send(i);
        let parsed = GroupMessage::parse(&wire).expect("parse");
        assert_eq!(parsed.iteration(), i as u32);
        assert_eq!(parsed.chain_id(), g.alice.chain_id());
        assert_eq!(parsed.group_id(), &g.id);
        g.receive(&wire, i);
    }
    assert_eq!(g.alice.iteration(), 200);
    assert_eq!(g.bob.next_iteration(g.alice.chain_id()), Some(200));
    assert_eq!(g.bob.skipped_key_count(), 0);
}

#[test]
fn plaintexts_of_every_size_class_round_trip_and_are_padded() {
    let mut g = Group::new(2);
    for len in [0usize, 1, 255, 256, 5000, 70_000] {
        let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let wire = g.alice.encrypt(&plaintext).expect("encrypt");
        let padded = sotto_core::pad::padded_len(len + 1);
        assert_eq!(
            wire.len(),
            GROUP_HEADER_LEN + padded + 16 + GROUP_SIGNATURE_LEN
        );
        assert_eq!(g.bob.decrypt(&wire).expect("decrypt"), plaintext);
    }
    let too_large = vec![0u8; sotto_core::pad::MAX_PLAINTEXT_LEN + 1];
    let before = g.alice.to_bytes();
    let mut out = b"left over".to_vec();
    assert!(matches!(
        g.alice.encrypt_into(&too_large, &mut out),
        Err(GroupError::PlaintextTooLarge { .. })
    ));
    assert!(out.is_empty());
    assert_eq!(
        g.alice.to_bytes(),
        before,
        "a refused encrypt changed the sender key"
    );
}

#[test]
fn out_of_order_messages_within_the_skip_window_decrypt() {
    let mut g = Group::new(3);
    let wires = g.send_many(0, 12);
    // A fixed shuffle: late, early, and the last first.
    for i in [11, 0, 5, 3, 4, 1, 2, 10, 6, 9, 8, 7] {
        g.receive(&wires[i], i);
    }
    assert_eq!(g.bob.skipped_key_count(), 0);
    // Each of them only once.
    for (i, wire) in wires.iter().enumerate() {
        assert_eq!(
            reject_unchanged(&mut g.bob, wire),
            GroupError::Duplicate {
                chain: g.alice.chain_id(),
                iteration: i as u32
            }
        );
    }
}

#[test]
fn a_gap_beyond_max_skip_is_refused_the_receiver_unchanged_and_exactly_max_skip_is_allowed() {
    assert_eq!(MAX_SKIP, 1000);
    let mut g = Group::new(4);
    let first = g.send(0);
    g.receive(&first, 0);
    // Iterations 1..=1002.
    let wires = g.send_many(1, 1002);
    // Iteration 1002 needs 1001 keys skipped (1..=1001).
    assert_eq!(
        reject_unchanged(&mut g.bob, &wires[1001]),
        GroupError::TooManySkipped {
            gap: 1001,
            max: MAX_SKIP
        }
    );
    // Iteration 1001 needs exactly 1000.
    g.receive(&wires[1000], 1001);
    assert_eq!(g.bob.skipped_key_count(), 1000);
    // The refused message is now next in line; the skipped ones still open.
    g.receive(&wires[1001], 1002);
    g.receive(&wires[0], 1);
    g.receive(&wires[999], 1000);
    assert_eq!(g.bob.skipped_key_count(), 998);
}

#[test]
fn skipped_keys_are_bounded_and_the_oldest_are_evicted_first() {
    let mut g = Group::new(5);
    // Three jumps of MAX_SKIP: 3000 keys skipped in all, 2000 kept.
    let mut delivered = Vec::new();
    let mut next = 0;
    for _ in 0..3 {
        let wires = g.send_many(next, MAX_SKIP as usize + 1);
        let last = next + MAX_SKIP as usize;
        g.receive(&wires[MAX_SKIP as usize], last);
        delivered.push(wires);
        next = last + 1;
    }
    assert_eq!(g.bob.skipped_key_count(), MAX_SKIPPED_KEYS);
    // The first jump's keys were evicted: those messages are lost.
    assert!(matches!(
        reject_unchanged(&mut g.bob, &delivered[0][0]),
        GroupError::Duplicate { iteration: 0, .. }
    ));
    // The second's and third's are kept.
    g.receive(&delivered[1][0], 1001);
    g.receive(&delivered[2][999], 3001);
}

#[test]
fn a_replayed_message_is_refused_and_the_receiver_unchanged() {
    let mut g = Group::new(6);
    let wires = g.send_many(0, 3);
    g.receive(&wires[2], 2);
    g.receive(&wires[0], 0);
    for (i, wire) in [(0, &wires[0]), (2, &wires[2])] {
        assert_eq!(
            reject_unchanged(&mut g.bob, wire),
            GroupError::Duplicate {
                chain: g.alice.chain_id(),
                iteration: i
            }
        );
    }
    // The skipped one is still there, once.
    g.receive(&wires[1], 1);
    assert!(matches!(
        reject_unchanged(&mut g.bob, &wires[1]),
        GroupError::Duplicate { iteration: 1, .. }
    ));
}

#[test]
fn tampered_header_ciphertext_or_signature_is_refused_and_the_receiver_still_works() {
    let mut g = Group::new(7);
    let wire = g.send(0);
    let len = wire.len();
    let flips: &[(usize, &str)] = &[
        (2, "group id"),
        (2 + 32, "chain id"),
        (GROUP_HEADER_LEN - 1, "iteration"),
        (GROUP_HEADER_LEN, "ciphertext start"),
        (len - GROUP_SIGNATURE_LEN - 1, "tag"),
        (len - GROUP_SIGNATURE_LEN, "signature start"),
        (len - 1, "signature end"),
    ];
    for &(at, what) in flips {
        let mut bad = wire.clone();
        bad[at] ^= 0x01;
        let err = reject_unchanged(&mut g.bob, &bad);
        let expected = match what {
            "group id" => GroupError::GroupMismatch,
            "chain id" => GroupError::UnknownChain(
                GroupMessage::parse(&bad).expect("still parses").chain_id(),
            ),
            _ => GroupError::InvalidSignature,
        };
        assert_eq!(err, expected, "{what}");
    }
    // Version and type bytes.
    let mut bad = wire.clone();
    bad[0] = 0x02;
    assert_eq!(
        reject_unchanged(&mut g.bob, &bad),
        GroupError::UnsupportedVersion(2)
    );
    let mut bad = wire.clone();
    bad[1] = 0x02;
    assert_eq!(
        reject_unchanged(&mut g.bob, &bad),
        GroupError::UnknownMessageType(2)
    );
    // The genuine message still decrypts, and the next one too.
    g.receive(&wire, 0);
    let next = g.send(1);
    g.receive(&next, 1);
}

/// Mallory is a member: she holds Alice's distribution, so she knows the
/// chain key, and can make messages whose AEAD opens. She does not have
/// Alice's signing key.
fn mallorys_sender_key(alice: &SenderKeyDistribution, seed: [u8; 32]) -> SenderKey {
    // A sender key state with Alice's group, chain id, iteration and chain
    // key, and a signing seed of Mallory's.
    let d = alice.to_bytes();
    let mut state = vec![0x01, 0x01];
    state.extend_from_slice(&d[1..73]);
    state.extend_from_slice(&seed);
    SenderKey::from_bytes(&state).expect("a well-formed sender key state")
}

#[test]
fn a_member_who_knows_the_chain_key_cannot_forge_the_senders_messages() {
    let mut g = Group::new(8);
    let distribution = g.alice.distribution();
    let mut mallory = mallorys_sender_key(&distribution, [0x66; 32]);
    assert_eq!(mallory.chain_id(), g.alice.chain_id());
    let forged = mallory
        .encrypt(b"transfer everything to mallory")
        .expect("encrypt");
    let genuine = g.send(0);
    // Same header: only the ciphertext and the signature differ.
    assert_eq!(forged[..GROUP_HEADER_LEN], genuine[..GROUP_HEADER_LEN]);
    assert_eq!(
        reject_unchanged(&mut g.bob, &forged),
        GroupError::InvalidSignature
    );
    // The forgery's AEAD is sound: a receiver that took Mallory's key for
    // the chain's would read it. Only the signature stops it.
    let mut fooled_bytes = distribution.to_bytes();
    fooled_bytes[73..].copy_from_slice(mallory.verifying_key().as_bytes());
    let mut fooled = SenderKeyReceiver::new(
        &SenderKeyDistribution::from_bytes(fooled_bytes.as_slice()).unwrap(),
    );
    assert_eq!(
        fooled.decrypt(&forged).unwrap(),
        b"transfer everything to mallory"
    );
    // Re-signing Alice's genuine ciphertext with Mallory's key: refused too.
    let mut resigned = genuine.clone();
    let split = resigned.len() - GROUP_SIGNATURE_LEN;
    let forged_sig = &forged[forged.len() - GROUP_SIGNATURE_LEN..];
    resigned[split..].copy_from_slice(forged_sig);
    assert_eq!(
        reject_unchanged(&mut g.bob, &resigned),
        GroupError::InvalidSignature
    );
    // Alice's genuine message is unaffected.
    g.receive(&genuine, 0);
}

#[test]
fn a_message_of_another_group_is_refused() {
    let mut g = Group::new(9);
    let mut other = SenderKey::generate(GroupId::generate(&mut g.rng), &mut g.rng);
    let wire = other.encrypt(&text(0)).expect("encrypt");
    assert_eq!(
        reject_unchanged(&mut g.bob, &wire),
        GroupError::GroupMismatch
    );
    // Another sender of the same group: its chain is unknown here.
    let mut carol = SenderKey::generate(g.id, &mut g.rng);
    let wire = carol.encrypt(&text(0)).expect("encrypt");
    assert_eq!(
        reject_unchanged(&mut g.bob, &wire),
        GroupError::UnknownChain(carol.chain_id())
    );
}

#[test]
fn a_member_reads_from_the_distributions_iteration_on_and_nothing_before() {
    let mut g = Group::new(10);
    let early = g.send_many(0, 3);
    // A new member joins now: the distribution is at iteration 3.
    let distribution = through_bytes(&g.alice.distribution());
    assert_eq!(distribution.iteration(), 3);
    let mut dave = SenderKeyReceiver::new(&distribution);
    let later = g.send_many(3, 2);
    assert_eq!(dave.decrypt(&later[1]).unwrap(), text(4));
    assert_eq!(dave.decrypt(&later[0]).unwrap(), text(3));
    for (i, wire) in early.iter().enumerate() {
        assert_eq!(
            reject_unchanged(&mut dave, wire),
            GroupError::Duplicate {
                chain: g.alice.chain_id(),
                iteration: i as u32
            }
        );
    }
    // The member from the start reads all five.
    for (i, wire) in early.iter().chain(&later).enumerate() {
        g.receive(wire, i);
    }
}

#[test]
fn each_member_decrypts_the_same_bytes() {
    let mut g = Group::new(11);
    let mut members: Vec<SenderKeyReceiver> = (0..4)
        .map(|_| SenderKeyReceiver::new(&through_bytes(&g.alice.distribution())))
        .collect();
    for i in 0..5 {
        let wire = g.send(i);
        for m in &mut members {
            assert_eq!(m.decrypt(&wire).unwrap(), text(i));
        }
    }
}

#[test]
fn encryption_is_deterministic_given_the_state_and_each_message_uses_the_next_key() {
    let g = Group::new(12);
    // Two copies of one state (what a store must never keep: see the
    // `SenderKey` docs), made through its bytes.
    let mut a = SenderKey::from_bytes(&g.alice.to_bytes()).unwrap();
    let mut b = SenderKey::from_bytes(&g.alice.to_bytes()).unwrap();
    let first = a.encrypt(b"same").unwrap();
    assert_eq!(b.encrypt(b"same").unwrap(), first);
    // The next message of the same text uses the next key: other bytes.
    let second = a.encrypt(b"same").unwrap();
    assert_ne!(
        second[GROUP_HEADER_LEN..GROUP_HEADER_LEN + 32],
        first[GROUP_HEADER_LEN..GROUP_HEADER_LEN + 32]
    );
}
