//! Rotation and distributions: a new chain after a member leaves, late
//! messages of the old chain, what a removed member can no longer read,
//! and distributions that come again.
#![cfg(test)]

mod group_common;

use group_common::{Group, reject_unchanged, text, through_bytes};
use sotto_core::group::{
    DistributionStatus, GroupError, GroupId, MAX_SENDER_CHAINS, SenderKey, SenderKeyDistribution,
    SenderKeyReceiver,
};

#[test]
fn after_rotation_late_messages_of_the_old_chain_decrypt_and_the_new_chain_works() {
    let mut g = Group::new(20);
    let old_chain = g.alice.chain_id();
    let old = g.send_many(0, 4);
    g.receive(&old[0], 0);
    g.alice.rotate(&mut g.rng);
    assert_ne!(g.alice.chain_id(), old_chain);
    assert_eq!(g.alice.iteration(), 0);
    let status = g
        .bob
        .process(&through_bytes(&g.alice.distribution()))
        .unwrap();
    assert_eq!(status, DistributionStatus::Added);
    assert_eq!(
        g.bob.chain_ids().collect::<Vec<_>>(),
        vec![g.alice.chain_id(), old_chain]
    );
    let new = g.send_many(4, 3);
    g.receive(&new[1], 5);
    // Late messages of the old chain, in any order.
    g.receive(&old[3], 3);
    g.receive(&new[0], 4);
    g.receive(&old[1], 1);
    g.receive(&old[2], 2);
    g.receive(&new[2], 6);
    assert_eq!(g.bob.skipped_key_count(), 0);
}

#[test]
fn a_receiver_with_only_the_old_distribution_cannot_read_the_new_chain() {
    let mut g = Group::new(21);
    // Eve is a member, then is removed: she keeps her receiver.
    let old = g.alice.distribution().to_bytes();
    let mut eve =
        SenderKeyReceiver::new(&SenderKeyDistribution::from_bytes(old.as_slice()).unwrap());
    let before = g.send(0);
    assert_eq!(eve.decrypt(&before).unwrap(), text(0));
    g.receive(&before, 0);
    // Alice rotates and distributes to the remaining members only.
    g.alice.rotate(&mut g.rng);
    g.bob
        .process(&through_bytes(&g.alice.distribution()))
        .unwrap();
    for i in 1..4 {
        let wire = g.send(i);
        assert_eq!(
            reject_unchanged(&mut eve, &wire),
            GroupError::UnknownChain(g.alice.chain_id())
        );
        g.receive(&wire, i);
    }
    // Eve knows the old chain key: her own "distribution" for the new
    // chain id, with the old chain key and the old signing key, is refused
    // at the signature (she has no new signing key) ...
    let mut forged = g.alice.distribution().to_bytes();
    forged[41..].copy_from_slice(&old[41..]);
    let mut eve_guess =
        SenderKeyReceiver::new(&SenderKeyDistribution::from_bytes(forged.as_slice()).unwrap());
    let wire = g.send(4);
    assert_eq!(
        reject_unchanged(&mut eve_guess, &wire),
        GroupError::InvalidSignature
    );
    // ... and with the new signing public key (public to members), the
    // AEAD refuses it: the new chain key is not derived from the old.
    forged[73..].copy_from_slice(g.alice.verifying_key().as_bytes());
    let mut eve_guess =
        SenderKeyReceiver::new(&SenderKeyDistribution::from_bytes(forged.as_slice()).unwrap());
    assert_eq!(
        reject_unchanged(&mut eve_guess, &wire),
        GroupError::AuthenticationFailed
    );
    g.receive(&wire, 4);
}

#[test]
fn a_replayed_distribution_does_not_rewind_the_chain() {
    let mut g = Group::new(22);
    let first = through_bytes(&g.alice.distribution());
    let wires = g.send_many(0, 5);
    g.receive(&wires[0], 0);
    g.receive(&wires[3], 3);
    let before = g.bob.to_bytes();
    // The distribution at iteration 0 again: nothing changes.
    assert_eq!(
        g.bob.process(&first).unwrap(),
        DistributionStatus::AlreadyKnown
    );
    assert_eq!(g.bob.to_bytes(), before);
    // Keys already used stay used; skipped ones stay available once.
    assert!(matches!(
        reject_unchanged(&mut g.bob, &wires[0]),
        GroupError::Duplicate { iteration: 0, .. }
    ));
    assert!(matches!(
        reject_unchanged(&mut g.bob, &wires[3]),
        GroupError::Duplicate { iteration: 3, .. }
    ));
    g.receive(&wires[1], 1);
    // A later distribution of the same chain does not move it forward past
    // keys still held either.
    let later = g.alice.distribution();
    assert_eq!(later.iteration(), 5);
    assert_eq!(
        g.bob.process(&later).unwrap(),
        DistributionStatus::AlreadyKnown
    );
    g.receive(&wires[2], 2);
    g.receive(&wires[4], 4);
    // After a rotation, the old chain's distribution again: still known.
    g.alice.rotate(&mut g.rng);
    g.bob.process(&g.alice.distribution()).unwrap();
    assert_eq!(
        g.bob.process(&first).unwrap(),
        DistributionStatus::AlreadyKnown
    );
    assert!(matches!(
        reject_unchanged(&mut g.bob, &wires[0]),
        GroupError::Duplicate { iteration: 0, .. }
    ));
}

#[test]
fn a_known_chain_id_with_another_signing_key_is_refused() {
    let mut g = Group::new(23);
    let mut bytes = g.alice.distribution().to_bytes();
    let other = SenderKey::generate(g.id, &mut g.rng);
    bytes[73..].copy_from_slice(other.verifying_key().as_bytes());
    let conflicting = SenderKeyDistribution::from_bytes(bytes.as_slice()).unwrap();
    let before = g.bob.to_bytes();
    assert_eq!(
        g.bob.process(&conflicting),
        Err(GroupError::ChainConflict(g.alice.chain_id()))
    );
    assert_eq!(g.bob.to_bytes(), before);
    let wire = g.send(0);
    g.receive(&wire, 0);
}

#[test]
fn a_distribution_of_another_group_is_refused() {
    let mut g = Group::new(24);
    let other = SenderKey::generate(GroupId::generate(&mut g.rng), &mut g.rng);
    let before = g.bob.to_bytes();
    assert_eq!(
        g.bob.process(&other.distribution()),
        Err(GroupError::GroupMismatch)
    );
    assert_eq!(g.bob.to_bytes(), before);
}

#[test]
fn at_most_five_chains_are_kept_and_the_oldest_goes_with_its_skipped_keys() {
    assert_eq!(MAX_SENDER_CHAINS, 5);
    let mut g = Group::new(25);
    let mut chains = vec![g.alice.chain_id()];
    // Two messages per chain; the second is received, the first skipped.
    let mut firsts = Vec::new();
    for c in 0..MAX_SENDER_CHAINS + 1 {
        if c > 0 {
            g.alice.rotate(&mut g.rng);
            chains.push(g.alice.chain_id());
            g.bob.process(&g.alice.distribution()).unwrap();
        }
        let wires = g.send_many(2 * c, 2);
        g.receive(&wires[1], 2 * c + 1);
        firsts.push(wires[0].clone());
        if c < MAX_SENDER_CHAINS {
            assert_eq!(g.bob.skipped_key_count(), c + 1);
        }
    }
    // Six chains made: the first one was dropped, with its skipped key.
    assert_eq!(g.bob.skipped_key_count(), MAX_SENDER_CHAINS);
    let held: Vec<_> = g.bob.chain_ids().collect();
    let expected: Vec<_> = chains[1..].iter().rev().copied().collect();
    assert_eq!(held, expected);
    assert_eq!(
        reject_unchanged(&mut g.bob, &firsts[0]),
        GroupError::UnknownChain(chains[0])
    );
    for (c, wire) in firsts.iter().enumerate().skip(1) {
        g.receive(wire, 2 * c);
    }
    assert_eq!(g.bob.skipped_key_count(), 0);
}

#[test]
fn rotation_draws_a_chain_id_other_than_the_current_one() {
    /// Serves the same 4 bytes for every chain id draw, then other bytes.
    struct StuckRng {
        draws: usize,
    }
    impl rand_core::TryRng for StuckRng {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(0)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(0)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            self.draws += 1;
            // Every 4-byte draw among the first five gives the same id.
            let byte = if dst.len() == 4 && self.draws <= 5 {
                7
            } else {
                self.draws as u8
            };
            dst.fill(byte);
            Ok(())
        }
    }
    impl rand_core::TryCryptoRng for StuckRng {}

    let mut rng = StuckRng { draws: 0 };
    let mut key = SenderKey::generate(GroupId::from_bytes([1; 32]), &mut rng);
    assert_eq!(key.chain_id().get(), 0x0707_0707);
    assert_eq!(rng.draws, 3);
    key.rotate(&mut rng);
    // Draws 4 and 5 gave the same id again; draw 6 another one.
    assert_eq!(rng.draws, 8);
    assert_eq!(key.chain_id().get(), 0x0606_0606);
}

#[test]
fn a_rotated_sender_key_has_a_new_signing_key_and_chain_key() {
    let mut g = Group::new(26);
    let before = g.alice.distribution();
    g.alice.rotate(&mut g.rng);
    let after = g.alice.distribution();
    assert_ne!(before.verifying_key(), after.verifying_key());
    assert_ne!(before.to_bytes()[41..73], after.to_bytes()[41..73]);
    assert_eq!(after.group_id(), &g.id);
}
