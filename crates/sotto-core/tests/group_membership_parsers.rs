//! The group membership parsers never panic on any bytes, what they accept
//! round-trips, and no refused change touches the group: the checks of
//! the `group_membership` fuzz target (`fuzz/checks/group_membership.rs`),
//! run on random and on mutated valid inputs.
#![cfg(test)]

#[path = "../../../fuzz/checks/group_membership.rs"]
mod group_membership;

use std::sync::LazyLock;

use group_membership::{ACCOUNTS, STATE};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sotto_core::group::membership::{Applied, GroupState, MembershipError, SignedChange};

/// Valid inputs made with the fuzz target's fixed group: its state and
/// changes, changes that apply to it, lose to it, come after a gap or
/// belong to another group, and states of other shapes.
static SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let a = &*ACCOUNTS;
    let pk = |i: usize| *a[i].public();
    let state = &*STATE;
    let mut seeds = vec![state.to_bytes()];
    seeds.extend(state.history().map(SignedChange::to_bytes));
    let add = state.propose_add(&a[2], &[pk(4)]).unwrap();
    seeds.push(add.to_bytes());
    seeds.push(state.propose_remove(&a[3], &[pk(0)]).unwrap().to_bytes());
    seeds.push(state.propose_leave(&a[2]).unwrap().to_bytes());
    seeds.push(state.propose_rename(&a[1], "renamed").unwrap().to_bytes());
    // Changes concurrent with the rename that made revision 3.
    let create = state.history().next().unwrap();
    let mut at_two = GroupState::from_create(create, create.author()).unwrap();
    at_two.apply(state.change(2).unwrap(), &pk(1)).unwrap();
    seeds.push(
        at_two
            .propose_rename(&a[3], "by a junior")
            .unwrap()
            .to_bytes(),
    );
    seeds.push(
        at_two
            .propose_rename(&a[1], "by a senior")
            .unwrap()
            .to_bytes(),
    );
    // After a gap: revision 5 on revision 3.
    let mut after = state.clone();
    after.apply(&add, &pk(2)).unwrap();
    seeds.push(
        after
            .propose_rename(&a[4], "after a gap")
            .unwrap()
            .to_bytes(),
    );
    // Another group, and a group that ended.
    let (mut other, other_create) =
        GroupState::create(&a[4], "other", &[], &mut ChaCha20Rng::from_seed([0xB6; 32])).unwrap();
    seeds.push(other_create.to_bytes());
    let leave = other.propose_leave(&a[4]).unwrap();
    other.apply(&leave, &pk(4)).unwrap();
    seeds.push(other.to_bytes());
    // A group whose oldest changes are folded into its base.
    let mut long = state.clone();
    for i in 0..70 {
        let change = long
            .propose_rename(&a[i % 4], &format!("name {i}"))
            .unwrap();
        long.apply(&change, &pk(i % 4)).unwrap();
    }
    seeds.push(long.to_bytes());
    seeds
});

#[test]
fn the_seeds_decode_and_do_what_they_were_made_for() {
    let seeds = &*SEEDS;
    assert_eq!(GroupState::from_bytes(&seeds[0]).as_ref(), Ok(&*STATE));
    let outcome = |i: usize| {
        let change = SignedChange::from_bytes(&seeds[i]).unwrap();
        STATE.clone().apply(&change, change.author())
    };
    for i in 1..=3 {
        assert_eq!(outcome(i), Ok(Applied::AlreadyApplied));
    }
    for i in 4..=7 {
        assert!(
            matches!(outcome(i), Ok(Applied::Advanced { .. })),
            "seed {i}"
        );
    }
    assert!(matches!(outcome(8), Err(MembershipError::Lost { .. })));
    assert!(matches!(
        outcome(9),
        Ok(Applied::Replaced { .. }) | Err(MembershipError::Lost { .. })
    ));
    assert_eq!(
        outcome(10),
        Err(MembershipError::MissingRevisions { first: 4, last: 4 })
    );
    assert_eq!(outcome(11), Err(MembershipError::WrongGroup));
    assert!(GroupState::from_bytes(&seeds[12]).unwrap().is_ended());
    assert!(
        GroupState::from_bytes(&seeds[13])
            .unwrap()
            .oldest_revision()
            > 1
    );
    for seed in seeds {
        group_membership::check(seed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_a_parser(data in vec(any::<u8>(), 0..1024)) {
        group_membership::check(&data);
    }

    #[test]
    fn mutated_valid_inputs_never_panic_and_never_change_the_group_when_refused(
        which in any::<Index>(),
        edits in vec((any::<Index>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<Index>()),
        extra in vec(any::<u8>(), 0..3),
    ) {
        let mut data = SEEDS[which.index(SEEDS.len())].clone();
        for (at, byte) in edits {
            let i = at.index(data.len());
            data[i] = byte;
        }
        if let Some(cut) = cut {
            data.truncate(cut.index(data.len() + 1));
        }
        data.extend(extra);
        group_membership::check(&data);
    }
}
