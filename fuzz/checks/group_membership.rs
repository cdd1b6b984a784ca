//! Checks of the `group_membership` fuzz target, shared with the corpus
//! replay in `crates/sotto-core/tests/fuzz_corpus.rs` and the property
//! tests of `crates/sotto-core/tests/group_membership_parsers.rs`.
//!
//! Any input, as a change applied to a fixed group (from its author, and
//! forwarded by a member) and as a serialized group state. None panics;
//! what decodes encodes back to exactly the input; a refused change, or
//! one applied already, leaves the group exactly as it was; a change that
//! applies leaves a state within the group's rules that serializes and
//! decodes back to itself, and applying it again does nothing.

use std::sync::LazyLock;

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sotto_core::IdentityKeyPair;
use sotto_core::group::membership::{Applied, GroupState, MAX_MEMBERS, MAX_NAME_LEN, SignedChange};

/// The accounts of the fixed group: 0 created it with 1 and 2, 1 added 3;
/// 4 never was a member.
pub(crate) static ACCOUNTS: LazyLock<Vec<IdentityKeyPair>> = LazyLock::new(|| {
    (0..5u8)
        .map(|i| IdentityKeyPair::from_seed(&[0xB0 + i; 32]))
        .collect()
});

/// The fixed group, at revision 3: created, 3 added, renamed.
pub(crate) static STATE: LazyLock<GroupState> = LazyLock::new(|| {
    let a = &*ACCOUNTS;
    let (mut state, _) = GroupState::create(
        &a[0],
        "fuzz",
        &[*a[1].public(), *a[2].public()],
        &mut ChaCha20Rng::from_seed([0xB5; 32]),
    )
    .expect("a create");
    let add = state.propose_add(&a[1], &[*a[3].public()]).expect("an add");
    state.apply(&add, a[1].public()).expect("the add applies");
    let rename = state.propose_rename(&a[0], "fuzzed").expect("a rename");
    state
        .apply(&rename, a[0].public())
        .expect("the rename applies");
    state
});

pub(crate) fn check(data: &[u8]) {
    change(data);
    state(data);
}

fn change(data: &[u8]) {
    let change = match SignedChange::from_bytes(data) {
        Ok(change) => change,
        Err(e) => {
            let _ = format!("{e} {e:?}");
            return;
        }
    };
    assert_eq!(change.to_bytes(), data, "change did not round-trip");
    for sender in [*change.author(), *ACCOUNTS[1].public()] {
        let mut copy = STATE.clone();
        match copy.apply(&change, &sender) {
            Err(e) => {
                let _ = format!("{e} {e:?}");
                assert_eq!(copy, *STATE, "a refused change changed the state");
            }
            Ok(Applied::AlreadyApplied) => assert_eq!(copy, *STATE),
            Ok(applied) => {
                assert_ne!(copy.hash(), STATE.hash(), "{applied:?} left the hash");
                assert_eq!(copy.head(), change.hash());
                within_rules(&copy);
                let again = copy.apply(&change, &sender);
                assert_eq!(again, Ok(Applied::AlreadyApplied));
            }
        }
    }
}

fn state(data: &[u8]) {
    match GroupState::from_bytes(data) {
        Ok(state) => {
            assert_eq!(state.to_bytes(), data, "group state did not round-trip");
            within_rules(&state);
        }
        Err(e) => {
            let _ = format!("{e} {e:?}");
        }
    }
}

/// The rules every state keeps (docs/protocol.md 15.3).
fn within_rules(state: &GroupState) {
    let members = state.members();
    assert!(members.len() <= MAX_MEMBERS);
    assert!(state.name().len() <= MAX_NAME_LEN);
    for pair in members.windows(2) {
        assert!(pair[0].account.as_bytes() < pair[1].account.as_bytes());
    }
    for m in members {
        assert!(m.since >= 1 && m.since <= state.revision());
        assert!(state.is_member(&m.account));
    }
    assert_eq!(state.is_ended(), members.is_empty());
    assert_eq!(state.history().last().map(|c| c.hash()), Some(state.head()));
    assert!(state.oldest_revision() <= state.revision());
    let bytes = state.to_bytes();
    assert_eq!(GroupState::from_bytes(&bytes).as_ref(), Ok(state));
}
