//! Group membership (docs/protocol.md section 15): the rules a change must
//! follow, what a refused change leaves behind (nothing), replays, gaps,
//! concurrent changes and the group state's serialization.
#![cfg(test)]

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sotto_core::group::membership::{
    Applied, ChangeKind, GroupState, MAX_CHANGE_LEN, MAX_FORK_DEPTH, MAX_MEMBERS, MAX_NAME_LEN,
    MembershipError, SignedChange, StateHash,
};
use sotto_core::group::{
    GROUP_ID_LEN, GroupId, GroupMessage, SenderKey, SenderKeyDistribution, SenderKeyReceiver,
};
use sotto_core::{IdentityKey, IdentityKeyPair};

/// Where the fields of a change start (docs/protocol.md 15.2): the format,
/// the kind, the group id, the revision, the parent, the author, the body.
const GROUP_AT: usize = 2;
const REVISION_AT: usize = GROUP_AT + GROUP_ID_LEN;
const PARENT_AT: usize = REVISION_AT + 8;
const AUTHOR_AT: usize = PARENT_AT + 32;
const BODY_AT: usize = AUTHOR_AT + 32;

fn account(seed: u8) -> IdentityKeyPair {
    IdentityKeyPair::from_seed(&[seed; 32])
}

fn key(seed: u8) -> IdentityKey {
    *account(seed).public()
}

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::from_seed([0x42; 32])
}

const ALICE: u8 = 1;
const BOB: u8 = 2;
const CAROL: u8 = 3;
const DAVE: u8 = 4;
const ERIN: u8 = 5;
const MALLORY: u8 = 9;

/// Alice's group with Bob and Carol, at revision 1, and the create.
fn group() -> (GroupState, SignedChange) {
    GroupState::create(
        &account(ALICE),
        "climbing",
        &[key(BOB), key(CAROL)],
        &mut rng(),
    )
    .unwrap()
}

/// Applies `change` from its author and returns what it did.
fn apply(state: &mut GroupState, change: &SignedChange) -> Applied {
    state.apply(change, change.author()).unwrap()
}

/// `change` is refused with `error` and `state` is exactly as it was.
fn assert_refused(state: &GroupState, change: &SignedChange, error: MembershipError) {
    let mut copy = state.clone();
    assert_eq!(copy.apply(change, change.author()), Err(error));
    assert_eq!(copy, *state);
    assert_eq!(copy.to_bytes(), state.to_bytes());
}

fn keys(list: &[u8]) -> Vec<IdentityKey> {
    let mut keys: Vec<IdentityKey> = list.iter().map(|s| key(*s)).collect();
    keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    keys
}

fn member_keys(state: &GroupState) -> Vec<IdentityKey> {
    state.members().iter().map(|m| m.account).collect()
}

/// A change as an attacker builds it: any fields, signed by `signer` over
/// `"sotto/group-change/v1" || unsigned`.
fn raw_change(
    signer: &IdentityKeyPair,
    kind: u8,
    group: GroupId,
    revision: u64,
    parent: StateHash,
    author: &IdentityKey,
    body: &[u8],
) -> Vec<u8> {
    let mut bytes = vec![0x01, kind];
    bytes.extend_from_slice(group.as_bytes());
    bytes.extend_from_slice(&revision.to_be_bytes());
    bytes.extend_from_slice(parent.as_bytes());
    bytes.extend_from_slice(author.as_bytes());
    bytes.extend_from_slice(body);
    let mut message = b"sotto/group-change/v1".to_vec();
    message.extend_from_slice(&bytes);
    bytes.extend_from_slice(signer.sign(&message).as_bytes());
    bytes
}

/// `u16be(n) || n * account`.
fn accounts_body(accounts: &[IdentityKey]) -> Vec<u8> {
    let mut body = (accounts.len() as u16).to_be_bytes().to_vec();
    for a in accounts {
        body.extend_from_slice(a.as_bytes());
    }
    body
}

/// A change on the current state of `state`, signed by `signer` as its
/// author, whatever the rules say.
fn forged(state: &GroupState, signer: u8, kind: u8, body: &[u8]) -> SignedChange {
    let bytes = raw_change(
        &account(signer),
        kind,
        state.id(),
        state.revision() + 1,
        state.hash(),
        &key(signer),
        body,
    );
    SignedChange::from_bytes(&bytes).unwrap()
}

#[test]
fn a_created_group_is_revision_one_with_its_author_and_members_in_key_order() {
    let (state, create) = GroupState::create(
        &account(ALICE),
        "climbing",
        // Any order, repeats and the author are dropped.
        &[key(CAROL), key(BOB), key(ALICE), key(CAROL)],
        &mut rng(),
    )
    .unwrap();
    assert_eq!(state.revision(), 1);
    assert_eq!(state.name(), "climbing");
    assert_eq!(member_keys(&state), keys(&[ALICE, BOB, CAROL]));
    assert!(state.members().iter().all(|m| m.since == 1));
    assert_eq!(state.head(), create.hash());
    assert_eq!(state.genesis(), create.hash());
    assert_eq!(create.parent(), StateHash::NONE);
    assert_eq!(
        create.kind(),
        &ChangeKind::Create {
            name: "climbing".into(),
            members: keys(&[BOB, CAROL]),
        }
    );
    // The id is the RNG's first 32 bytes, the id the group's sender keys use.
    let mut expected = [0u8; GROUP_ID_LEN];
    rand_core::Rng::fill_bytes(&mut rng(), &mut expected);
    assert_eq!(state.id(), GroupId::from_bytes(expected));
    let at_bob = GroupState::from_create(&create, &key(ALICE)).unwrap();
    assert_eq!(at_bob, state);
}

#[test]
fn a_group_and_its_sender_keys_share_one_id() {
    let (state, create) = group();
    let id: GroupId = state.id();
    assert_eq!(create.group(), id);
    assert_eq!(
        &create.to_bytes()[GROUP_AT..REVISION_AT],
        id.as_bytes().as_slice()
    );
    // The group's sender keys are made for the id of its state, and their
    // distributions and messages carry it.
    let mut alice = SenderKey::generate(state.id(), &mut rng());
    let distribution =
        SenderKeyDistribution::from_bytes(&*alice.distribution().to_bytes()).unwrap();
    assert_eq!(distribution.group_id(), &id);
    let mut at_bob = SenderKeyReceiver::new(&distribution);
    let message = alice.encrypt(b"hello members").unwrap();
    assert_eq!(GroupMessage::parse(&message).unwrap().group_id(), &id);
    assert_eq!(at_bob.decrypt(&message).unwrap(), b"hello members");
}

#[test]
fn encoding_is_the_documented_layout_and_round_trips() {
    let (mut state, create) = group();
    let bytes = create.to_bytes();
    let mut body = vec![8];
    body.extend_from_slice(b"climbing");
    body.extend_from_slice(&accounts_body(&keys(&[BOB, CAROL])));
    assert_eq!(
        bytes,
        raw_change(
            &account(ALICE),
            0x01,
            state.id(),
            1,
            StateHash::NONE,
            &key(ALICE),
            &body
        )
    );
    assert_eq!(BODY_AT, 106);
    assert_eq!(bytes.len(), BODY_AT + 1 + 8 + 2 + 64 + 64);
    assert_eq!(SignedChange::from_bytes(&bytes).unwrap(), create);

    let add = state
        .propose_add(&account(BOB), &[key(ERIN), key(DAVE)])
        .unwrap();
    let expected = raw_change(
        &account(BOB),
        0x02,
        state.id(),
        2,
        state.hash(),
        &key(BOB),
        &accounts_body(&keys(&[DAVE, ERIN])),
    );
    assert_eq!(add.to_bytes(), expected);
    apply(&mut state, &add);
    let remove = state.propose_remove(&account(DAVE), &[key(CAROL)]).unwrap();
    let expected = raw_change(
        &account(DAVE),
        0x03,
        state.id(),
        3,
        state.hash(),
        &key(DAVE),
        &accounts_body(&[key(CAROL)]),
    );
    assert_eq!(remove.to_bytes(), expected);
    let leave = state.propose_leave(&account(ERIN)).unwrap();
    let expected = raw_change(
        &account(ERIN),
        0x04,
        state.id(),
        3,
        state.hash(),
        &key(ERIN),
        &[],
    );
    assert_eq!(leave.to_bytes(), expected);
    assert_eq!(leave.to_bytes().len(), BODY_AT + 64);
    let rename = state.propose_rename(&account(ALICE), "café").unwrap();
    let mut body = vec![5];
    body.extend_from_slice("café".as_bytes());
    let expected = raw_change(
        &account(ALICE),
        0x05,
        state.id(),
        3,
        state.hash(),
        &key(ALICE),
        &body,
    );
    assert_eq!(rename.to_bytes(), expected);
    for change in [add, remove, leave, rename] {
        let decoded = SignedChange::from_bytes(&change.to_bytes()).unwrap();
        assert_eq!(decoded, change);
        assert_eq!(decoded.hash(), change.hash());
    }
}

#[test]
fn every_copy_applies_the_same_changes_to_the_same_state() {
    let (mut at_alice, create) = group();
    let mut at_bob = GroupState::from_create(&create, &key(ALICE)).unwrap();
    let add = at_bob.propose_add(&account(BOB), &[key(DAVE)]).unwrap();
    // Proposing does not change the state.
    assert_eq!(at_bob.revision(), 1);
    for copy in [&mut at_alice, &mut at_bob] {
        assert_eq!(
            apply(copy, &add),
            Applied::Advanced {
                added: vec![key(DAVE)],
                removed: vec![],
                renamed: None
            }
        );
    }
    let rename = at_alice
        .propose_rename(&account(ALICE), "bouldering")
        .unwrap();
    let remove = at_alice.propose_remove(&account(ALICE), &[key(CAROL)]);
    assert!(remove.is_ok());
    for copy in [&mut at_alice, &mut at_bob] {
        assert_eq!(
            apply(copy, &rename),
            Applied::Advanced {
                added: vec![],
                removed: vec![],
                renamed: Some("bouldering".into())
            }
        );
    }
    assert_eq!(at_alice, at_bob);
    assert_eq!(at_alice.revision(), 3);
    let dave = at_alice.members().iter().find(|m| m.account == key(DAVE));
    assert_eq!(dave.map(|m| m.since), Some(2));
}

#[test]
fn a_change_by_a_non_member_is_refused() {
    let (state, _) = group();
    let change = forged(&state, MALLORY, 0x05, b"\x05owned");
    assert_refused(&state, &change, MembershipError::AuthorNotMember);
    let change = forged(&state, MALLORY, 0x02, &accounts_body(&[key(DAVE)]));
    assert_refused(&state, &change, MembershipError::AuthorNotMember);
    assert_eq!(
        state.propose_rename(&account(MALLORY), "owned"),
        Err(MembershipError::AuthorNotMember)
    );
}

#[test]
fn a_removed_members_later_changes_are_refused() {
    let (mut state, _) = group();
    let remove = state
        .propose_remove(&account(ALICE), &[key(CAROL)])
        .unwrap();
    assert_eq!(
        apply(&mut state, &remove),
        Applied::Advanced {
            added: vec![],
            removed: vec![key(CAROL)],
            renamed: None
        }
    );
    assert!(!state.is_member(&key(CAROL)));
    assert_eq!(
        state.propose_add(&account(CAROL), &[key(DAVE)]),
        Err(MembershipError::AuthorNotMember)
    );
    // Adding itself back is refused by the format already (the author is
    // never listed); adding another or renaming by the state's rules.
    let add_back = raw_change(
        &account(CAROL),
        0x02,
        state.id(),
        3,
        state.hash(),
        &key(CAROL),
        &accounts_body(&[key(CAROL)]),
    );
    assert_eq!(
        SignedChange::from_bytes(&add_back),
        Err(MembershipError::AuthorListed)
    );
    let add_other = forged(&state, CAROL, 0x02, &accounts_body(&[key(DAVE)]));
    assert_refused(&state, &add_other, MembershipError::AuthorNotMember);
    let rename = forged(&state, CAROL, 0x05, b"\x04mine");
    assert_refused(&state, &rename, MembershipError::AuthorNotMember);
    let leave = forged(&state, CAROL, 0x04, &[]);
    assert_refused(&state, &leave, MembershipError::AuthorNotMember);
}

#[test]
fn a_forged_signature_is_refused() {
    let (state, _) = group();
    let genuine = state
        .propose_rename(&account(BOB), "bouldering")
        .unwrap()
        .to_bytes();
    for at in [genuine.len() - 64, genuine.len() - 33, genuine.len() - 1] {
        let mut bad = genuine.clone();
        bad[at] ^= 0x01;
        assert_eq!(
            SignedChange::from_bytes(&bad),
            Err(MembershipError::InvalidSignature),
            "signature byte {at}"
        );
    }
    // Signed by Mallory in Bob's name.
    let mut body = vec![10];
    body.extend_from_slice(b"bouldering");
    let in_bobs_name = raw_change(
        &account(MALLORY),
        0x05,
        state.id(),
        2,
        state.hash(),
        &key(BOB),
        &body,
    );
    assert_eq!(
        SignedChange::from_bytes(&in_bobs_name),
        Err(MembershipError::InvalidSignature)
    );
    // Any other field changed under Bob's signature.
    for at in [
        1,
        GROUP_AT,
        REVISION_AT,
        PARENT_AT,
        AUTHOR_AT,
        BODY_AT,
        BODY_AT + 1,
    ] {
        let mut bad = genuine.clone();
        bad[at] ^= 0x01;
        assert!(SignedChange::from_bytes(&bad).is_err(), "byte {at} flipped");
    }
    // A signature over the change without the context string.
    let mut no_context = genuine[..genuine.len() - 64].to_vec();
    let signature = account(BOB).sign(&no_context);
    no_context.extend_from_slice(signature.as_bytes());
    assert_eq!(
        SignedChange::from_bytes(&no_context),
        Err(MembershipError::InvalidSignature)
    );
}

#[test]
fn a_leave_only_removes_its_author_and_cannot_be_made_for_someone_else() {
    let (mut state, _) = group();
    // A leave names nobody but its author, and only the author signs it.
    let for_carol = raw_change(
        &account(BOB),
        0x04,
        state.id(),
        2,
        state.hash(),
        &key(CAROL),
        &[],
    );
    assert_eq!(
        SignedChange::from_bytes(&for_carol),
        Err(MembershipError::InvalidSignature)
    );
    // A leave with a list is not a leave: the list is trailing bytes.
    let with_list = raw_change(
        &account(BOB),
        0x04,
        state.id(),
        2,
        state.hash(),
        &key(BOB),
        &accounts_body(&[key(CAROL)]),
    );
    assert_eq!(
        SignedChange::from_bytes(&with_list),
        Err(MembershipError::TrailingBytes(2 + 32))
    );
    // A remove never lists its author: that is what a leave is for.
    assert_eq!(
        state.propose_remove(&account(BOB), &[key(BOB), key(CAROL)]),
        Err(MembershipError::AuthorListed)
    );
    let leave = state.propose_leave(&account(BOB)).unwrap();
    assert_eq!(
        apply(&mut state, &leave),
        Applied::Advanced {
            added: vec![],
            removed: vec![key(BOB)],
            renamed: None
        }
    );
    assert_eq!(member_keys(&state), keys(&[ALICE, CAROL]));
}

#[test]
fn a_replayed_change_is_a_no_op() {
    let (mut state, create) = group();
    let add = state.propose_add(&account(BOB), &[key(DAVE)]).unwrap();
    apply(&mut state, &add);
    let rename = state.propose_rename(&account(DAVE), "bouldering").unwrap();
    apply(&mut state, &rename);
    let before = state.clone();
    for change in [&rename, &add, &create] {
        assert_eq!(apply(&mut state, change), Applied::AlreadyApplied);
        // Forwarded by another member: the same.
        assert_eq!(
            state.apply(change, &key(CAROL)),
            Ok(Applied::AlreadyApplied)
        );
    }
    assert_eq!(state, before);
}

#[test]
fn a_child_before_its_parent_names_the_missing_revisions_and_applies_in_order_afterwards() {
    let (mut at_alice, create) = group();
    let mut at_carol = GroupState::from_create(&create, &key(ALICE)).unwrap();
    let add = at_alice.propose_add(&account(ALICE), &[key(DAVE)]).unwrap();
    apply(&mut at_alice, &add);
    let rename = at_alice
        .propose_rename(&account(DAVE), "bouldering")
        .unwrap();
    apply(&mut at_alice, &rename);
    let remove = at_alice
        .propose_remove(&account(BOB), &[key(DAVE)])
        .unwrap();
    apply(&mut at_alice, &remove);

    assert_refused(
        &at_carol,
        &remove,
        MembershipError::MissingRevisions { first: 2, last: 3 },
    );
    assert_refused(
        &at_carol,
        &rename,
        MembershipError::MissingRevisions { first: 2, last: 2 },
    );
    apply(&mut at_carol, &add);
    assert_refused(
        &at_carol,
        &remove,
        MembershipError::MissingRevisions { first: 3, last: 3 },
    );
    // The missing changes, as a member sends them.
    let missing: Vec<SignedChange> = at_alice
        .history()
        .filter(|c| c.revision() >= 3)
        .cloned()
        .collect();
    assert_eq!(missing, [rename.clone(), remove.clone()]);
    for change in &missing {
        assert!(matches!(
            at_carol.apply(change, &key(ALICE)),
            Ok(Applied::Advanced { .. })
        ));
    }
    assert_eq!(at_carol.hash(), at_alice.hash());
    assert_eq!(at_carol, at_alice);
}

/// Two changes on the same state by `first` and `second`, applied to two
/// copies in both orders: both copies end the same, and the winner is the
/// one expected.
fn race(
    state: &GroupState,
    first: &SignedChange,
    second: &SignedChange,
    winner: &SignedChange,
) -> GroupState {
    let loser = if winner == first { second } else { first };
    let mut one = state.clone();
    let mut two = state.clone();
    apply(&mut one, first);
    let got = one.apply(second, second.author());
    apply(&mut two, second);
    let got_two = two.apply(first, first.author());
    for got in [got, got_two] {
        match got {
            Ok(Applied::Replaced {
                loser: replaced,
                descendants,
                ..
            }) => {
                assert_eq!(*replaced, *loser);
                assert!(descendants.is_empty());
            }
            Err(MembershipError::Lost {
                revision,
                winner: w,
            }) => {
                assert_eq!(revision, state.revision() + 1);
                assert_eq!(w, winner.hash());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(one.hash(), two.hash());
    assert_eq!(one, two);
    assert_eq!(one.head(), winner.hash());
    one
}

#[test]
fn concurrent_changes_converge_to_the_same_state_in_both_arrival_orders() {
    let (mut state, _) = group();
    let add = state.propose_add(&account(ALICE), &[key(DAVE)]).unwrap();
    apply(&mut state, &add);
    // Bob (a member since revision 1) and Dave (since 2) change the group
    // at once: Bob's change wins, whatever the hashes.
    let by_bob = state.propose_rename(&account(BOB), "bob's name").unwrap();
    let by_dave = state.propose_remove(&account(DAVE), &[key(BOB)]).unwrap();
    let after = race(&state, &by_bob, &by_dave, &by_bob);
    assert_eq!(after.name(), "bob's name");
    assert!(after.is_member(&key(BOB)));
    // Between members of the same revision, the smaller account key.
    let by_alice = state.propose_rename(&account(ALICE), "alice's").unwrap();
    let by_carol = state.propose_rename(&account(CAROL), "carol's").unwrap();
    let smaller = if key(ALICE).as_bytes() < key(CAROL).as_bytes() {
        &by_alice
    } else {
        &by_carol
    };
    race(&state, &by_alice, &by_carol, smaller);
    // Two changes by one author: the smaller hash.
    let one = state.propose_rename(&account(CAROL), "one").unwrap();
    let other = state.propose_remove(&account(CAROL), &[key(DAVE)]).unwrap();
    let lower = if one.hash() < other.hash() {
        &one
    } else {
        &other
    };
    race(&state, &one, &other, lower);
}

#[test]
fn a_late_winner_undoes_the_loser_and_what_was_built_on_it() {
    let (base, _) = group();
    // Alice and Carol (both members since revision 1) rename the group at
    // once: the smaller account key wins.
    let by_alice = base.propose_rename(&account(ALICE), "alice's").unwrap();
    let by_carol = base.propose_rename(&account(CAROL), "carol's").unwrap();
    let alice_first = key(ALICE).as_bytes() < key(CAROL).as_bytes();
    let (winner, loser) = if alice_first {
        (by_alice, by_carol)
    } else {
        (by_carol, by_alice)
    };
    let mut state = base.clone();
    apply(&mut state, &loser);
    let on_loser = state.propose_add(&account(BOB), &[key(DAVE)]).unwrap();
    apply(&mut state, &on_loser);
    let on_that = state.propose_rename(&account(DAVE), "dave's").unwrap();
    apply(&mut state, &on_that);
    let got = apply(&mut state, &winner);
    assert_eq!(
        got,
        Applied::Replaced {
            loser: Box::new(loser.clone()),
            descendants: vec![on_loser.clone(), on_that.clone()],
            added: vec![],
            removed: vec![key(DAVE)],
            renamed: Some(winner_name(&winner)),
        }
    );
    assert_eq!(state.revision(), 2);
    assert_eq!(state.head(), winner.hash());
    // What was built on the loser never applies again.
    assert_refused(
        &state,
        &on_loser,
        MembershipError::UnknownParent { revision: 2 },
    );
    // Ahead of the state held, it looks like a gap: it stays one.
    assert_refused(
        &state,
        &on_that,
        MembershipError::MissingRevisions { first: 3, last: 3 },
    );
    assert_refused(
        &state,
        &loser,
        MembershipError::Lost {
            revision: 2,
            winner: winner.hash(),
        },
    );
    // A copy that saw the winner first ends the same.
    let mut other = base.clone();
    for change in [&winner, &loser, &on_loser, &on_that] {
        let _ = other.apply(change, change.author());
    }
    assert_eq!(other, state);
}

fn winner_name(change: &SignedChange) -> String {
    match change.kind() {
        ChangeKind::Rename { name } => name.clone(),
        other => panic!("not a rename: {other:?}"),
    }
}

#[test]
fn a_junior_member_cannot_undo_its_removal_by_a_senior_one_by_racing_it() {
    let (mut state, _) = group();
    let add = state.propose_add(&account(ALICE), &[key(MALLORY)]).unwrap();
    apply(&mut state, &add);
    let removal = state
        .propose_remove(&account(CAROL), &[key(MALLORY)])
        .unwrap();
    // Mallory, still a member of the parent, answers with changes of its
    // own on the same parent, however many, whatever their hashes.
    let mut removed = state.clone();
    apply(&mut removed, &removal);
    for name in 0..20 {
        let counter = state
            .propose_rename(&account(MALLORY), &format!("mine {name}"))
            .unwrap();
        assert_refused(
            &removed,
            &counter,
            MembershipError::Lost {
                revision: 3,
                winner: removal.hash(),
            },
        );
    }
    let counter = state
        .propose_remove(&account(MALLORY), &[key(CAROL)])
        .unwrap();
    race(&state, &removal, &counter, &removal);
}

#[test]
fn an_old_change_cannot_roll_the_group_back() {
    let (mut state, _) = group();
    let first = state.propose_rename(&account(BOB), "name 0").unwrap();
    let forks_at_one = state.propose_rename(&account(CAROL), "fork at 1").unwrap();
    apply(&mut state, &first);
    let mut changes = vec![first];
    for i in 1..=MAX_FORK_DEPTH {
        let change = state
            .propose_rename(&account(ALICE), &format!("name {i}"))
            .unwrap();
        apply(&mut state, &change);
        changes.push(change);
    }
    // 1 + 64 changes on top of the create: the create and the first
    // change are folded into the base.
    assert_eq!(state.revision(), 2 + MAX_FORK_DEPTH as u64);
    assert_eq!(state.oldest_revision(), 3);
    assert_eq!(state.history().count(), MAX_FORK_DEPTH);
    assert_refused(
        &state,
        &changes[0],
        MembershipError::TooOld {
            revision: 2,
            oldest: 3,
        },
    );
    assert_refused(
        &state,
        &forks_at_one,
        MembershipError::TooOld {
            revision: 2,
            oldest: 3,
        },
    );
    // Still kept: a replay is a no-op.
    assert_eq!(apply(&mut state, &changes[1]), Applied::AlreadyApplied);
    // The create is remembered by its hash even when folded.
    let (_, create) = group();
    assert_eq!(apply(&mut state, &create), Applied::AlreadyApplied);
}

#[test]
fn a_concurrent_change_is_weighed_as_far_back_as_the_changes_kept() {
    let (mut state, _) = group();
    let add = state.propose_add(&account(CAROL), &[key(DAVE)]).unwrap();
    apply(&mut state, &add);
    let fork_point = state.clone();
    // Dave (since 2) makes 64 changes; Bob's concurrent change (since 1)
    // on the same parent arrives after all of them and wins.
    let by_bob = fork_point.propose_rename(&account(BOB), "bob's").unwrap();
    for i in 0..MAX_FORK_DEPTH {
        let change = state
            .propose_rename(&account(DAVE), &format!("dave {i}"))
            .unwrap();
        apply(&mut state, &change);
    }
    assert_eq!(state.oldest_revision(), 3);
    let too_deep = state.clone();
    match apply(&mut state, &by_bob) {
        Applied::Replaced { descendants, .. } => {
            assert_eq!(descendants.len(), MAX_FORK_DEPTH - 1)
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(state.name(), "bob's");
    assert_eq!(state.revision(), 3);
    // One more change by Dave and the fork is too deep to weigh.
    let mut deeper = too_deep;
    let change = deeper.propose_rename(&account(DAVE), "one more").unwrap();
    apply(&mut deeper, &change);
    assert_refused(
        &deeper,
        &by_bob,
        MembershipError::TooOld {
            revision: 3,
            oldest: 4,
        },
    );
}

#[test]
fn the_author_can_remove_everyone_else() {
    let (mut state, _) = group();
    let remove = state
        .propose_remove(&account(BOB), &[key(ALICE), key(CAROL)])
        .unwrap();
    assert_eq!(
        apply(&mut state, &remove),
        Applied::Advanced {
            added: vec![],
            removed: keys(&[ALICE, CAROL]),
            renamed: None
        }
    );
    assert_eq!(member_keys(&state), [key(BOB)]);
    assert_eq!(
        state.propose_rename(&account(ALICE), "back"),
        Err(MembershipError::AuthorNotMember)
    );
}

#[test]
fn the_last_member_leaving_ends_the_group() {
    let (mut state, _) = GroupState::create(&account(ALICE), "alone", &[], &mut rng()).unwrap();
    assert_eq!(member_keys(&state), [key(ALICE)]);
    let leave = state.propose_leave(&account(ALICE)).unwrap();
    assert_eq!(
        apply(&mut state, &leave),
        Applied::Advanced {
            added: vec![],
            removed: vec![key(ALICE)],
            renamed: None
        }
    );
    assert!(state.is_ended());
    assert!(state.members().is_empty());
    assert_eq!(
        state.propose_add(&account(ALICE), &[key(BOB)]),
        Err(MembershipError::AuthorNotMember)
    );
    let back = forged(&state, ALICE, 0x02, &accounts_body(&[key(BOB)]));
    assert_refused(&state, &back, MembershipError::AuthorNotMember);
    let bytes = state.to_bytes();
    assert_eq!(GroupState::from_bytes(&bytes).unwrap(), state);
}

#[test]
fn changes_that_break_a_rule_of_the_state_are_refused() {
    let (state, _) = group();
    assert_eq!(
        state.propose_add(&account(ALICE), &[key(DAVE), key(BOB)]),
        Err(MembershipError::AlreadyMember(Box::new(key(BOB))))
    );
    assert_eq!(
        state.propose_remove(&account(ALICE), &[key(DAVE)]),
        Err(MembershipError::NotMember(Box::new(key(DAVE))))
    );
    assert_eq!(
        state.propose_rename(&account(ALICE), "climbing"),
        Err(MembershipError::NameUnchanged)
    );
    assert_eq!(
        state.propose_add(&account(ALICE), &[]),
        Err(MembershipError::EmptyMemberList)
    );
    let add_bob = forged(&state, ALICE, 0x02, &accounts_body(&[key(BOB)]));
    assert_refused(
        &state,
        &add_bob,
        MembershipError::AlreadyMember(Box::new(key(BOB))),
    );
    let remove_dave = forged(&state, ALICE, 0x03, &accounts_body(&[key(DAVE)]));
    assert_refused(
        &state,
        &remove_dave,
        MembershipError::NotMember(Box::new(key(DAVE))),
    );
}

#[test]
fn names_and_member_lists_are_bounded() {
    let long = "é".repeat(MAX_NAME_LEN / 2);
    assert_eq!(long.len(), MAX_NAME_LEN);
    let (state, create) = GroupState::create(&account(ALICE), &long, &[], &mut rng()).unwrap();
    assert_eq!(
        SignedChange::from_bytes(&create.to_bytes()).unwrap(),
        create
    );
    assert_eq!(
        GroupState::create(&account(ALICE), &format!("{long}x"), &[], &mut rng()),
        Err(MembershipError::NameTooLong { len: 129, max: 128 })
    );
    assert_eq!(
        state.propose_rename(&account(ALICE), &format!("{long}x")),
        Err(MembershipError::NameTooLong { len: 129, max: 128 })
    );
    let many: Vec<IdentityKey> = (0..MAX_MEMBERS as u32)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_be_bytes());
            seed[4] = 0xAA;
            *IdentityKeyPair::from_seed(&seed).public()
        })
        .collect();
    assert_eq!(
        GroupState::create(&account(ALICE), "full", &many, &mut rng()),
        Err(MembershipError::TooManyMembers {
            count: MAX_MEMBERS + 1,
            max: MAX_MEMBERS
        })
    );
    let (mut full, create) =
        GroupState::create(&account(ALICE), "full", &many[1..], &mut rng()).unwrap();
    assert_eq!(full.members().len(), MAX_MEMBERS);
    assert_eq!(
        create.to_bytes().len(),
        BODY_AT + 1 + 4 + 2 + (MAX_MEMBERS - 1) * 32 + 64
    );
    // The longest change: the same create with the longest name.
    assert_eq!(
        MAX_CHANGE_LEN,
        BODY_AT + 1 + MAX_NAME_LEN + 2 + (MAX_MEMBERS - 1) * 32 + 64
    );
    assert_eq!(MAX_CHANGE_LEN, 32_269);
    assert_eq!(
        full.propose_add(&account(ALICE), &[key(BOB)]),
        Err(MembershipError::TooManyMembers {
            count: MAX_MEMBERS + 1,
            max: MAX_MEMBERS
        })
    );
    let remove = full.propose_remove(&account(ALICE), &many[1..3]).unwrap();
    apply(&mut full, &remove);
    let add = full
        .propose_add(&account(ALICE), &[key(BOB), key(CAROL)])
        .unwrap();
    apply(&mut full, &add);
    assert_eq!(full.members().len(), MAX_MEMBERS);
    assert_eq!(GroupState::from_bytes(&full.to_bytes()).unwrap(), full);
}

#[test]
fn changes_of_another_group_or_from_a_stranger_are_refused() {
    let (mut state, _) = group();
    let (other, _) = GroupState::create(
        &account(ALICE),
        "other",
        &[key(BOB)],
        &mut ChaCha20Rng::from_seed([7; 32]),
    )
    .unwrap();
    let elsewhere = other.propose_rename(&account(BOB), "x").unwrap();
    assert_refused(&state, &elsewhere, MembershipError::WrongGroup);
    let change = state.propose_rename(&account(BOB), "bouldering").unwrap();
    let before = state.clone();
    assert_eq!(
        state.apply(&change, &key(MALLORY)),
        Err(MembershipError::UntrustedSender)
    );
    assert_eq!(state, before);
    // A member may forward it.
    assert!(matches!(
        state.apply(&change, &key(CAROL)),
        Ok(Applied::Advanced { .. })
    ));
}

#[test]
fn a_group_starts_only_from_its_creators_create() {
    let (mut state, create) = group();
    assert_eq!(
        GroupState::from_create(&create, &key(BOB)),
        Err(MembershipError::UntrustedSender)
    );
    let rename = state.propose_rename(&account(BOB), "x").unwrap();
    assert_eq!(
        GroupState::from_create(&rename, &key(BOB)),
        Err(MembershipError::NotACreate)
    );
    // Another create with the same id, by anyone, is another group.
    let mut body = vec![5];
    body.extend_from_slice(b"other");
    body.extend_from_slice(&accounts_body(&[]));
    let rival = raw_change(
        &account(MALLORY),
        0x01,
        state.id(),
        1,
        StateHash::NONE,
        &key(MALLORY),
        &body,
    );
    let rival = SignedChange::from_bytes(&rival).unwrap();
    assert_refused(&state, &rival, MembershipError::ConflictingCreate);
    assert_eq!(apply(&mut state, &create), Applied::AlreadyApplied);
}

#[test]
fn a_new_member_joins_from_the_state_a_member_sends() {
    let (mut at_alice, _) = group();
    let add = at_alice.propose_add(&account(BOB), &[key(DAVE)]).unwrap();
    apply(&mut at_alice, &add);
    let sent = at_alice.to_bytes();
    let mut at_dave = GroupState::join(&sent, &key(ALICE), &key(DAVE)).unwrap();
    assert_eq!(at_dave, at_alice);
    assert_eq!(
        GroupState::join(&sent, &key(MALLORY), &key(DAVE)),
        Err(MembershipError::UntrustedSender)
    );
    assert_eq!(
        GroupState::join(&sent, &key(ALICE), &key(ERIN)),
        Err(MembershipError::NotInvited)
    );
    // The joiner takes part like any member, concurrent changes included.
    let rename = at_dave.propose_rename(&account(DAVE), "dave's").unwrap();
    apply(&mut at_dave, &rename);
    apply(&mut at_alice, &rename);
    assert_eq!(at_dave, at_alice);
}

#[test]
fn group_state_serialization_round_trips() {
    let (mut state, _) = group();
    assert_eq!(GroupState::from_bytes(&state.to_bytes()).unwrap(), state);
    for i in 0..(MAX_FORK_DEPTH + 5) {
        let change = if i % 3 == 0 {
            let seed = 100 + i as u8;
            state.propose_add(&account(ALICE), &[key(seed)]).unwrap()
        } else {
            state
                .propose_rename(&account(BOB), &format!("name {i}"))
                .unwrap()
        };
        apply(&mut state, &change);
        let bytes = state.to_bytes();
        let decoded = GroupState::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, state);
        assert_eq!(decoded.to_bytes(), bytes);
    }
    assert!(state.oldest_revision() > 1);
}

#[test]
fn corrupt_state_bytes_are_refused_without_panic() {
    let (mut state, _) = group();
    let add = state.propose_add(&account(BOB), &[key(DAVE)]).unwrap();
    apply(&mut state, &add);
    let bytes = state.to_bytes();
    for len in 0..bytes.len() {
        assert!(
            GroupState::from_bytes(&bytes[..len]).is_err(),
            "truncated to {len}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        GroupState::from_bytes(&longer),
        Err(MembershipError::TrailingBytes(1))
    );
    // Every bit of every byte: the base, the hashes chaining the changes
    // and the signatures leave nothing that can change unnoticed.
    for at in 0..bytes.len() {
        for bit in 0..8 {
            let mut bad = bytes.clone();
            bad[at] ^= 1 << bit;
            assert!(
                GroupState::from_bytes(&bad).is_err(),
                "bit {bit} of byte {at}"
            );
        }
    }
    let mut wrong_format = bytes.clone();
    wrong_format[0] = 0x02;
    assert_eq!(
        GroupState::from_bytes(&wrong_format),
        Err(MembershipError::UnsupportedFormat(2))
    );
}

#[test]
fn corrupt_change_bytes_are_refused_without_panic() {
    let (state, create) = group();
    let add = state
        .propose_add(&account(BOB), &[key(DAVE), key(ERIN)])
        .unwrap();
    for change in [&create, &add] {
        let bytes = change.to_bytes();
        for len in 0..bytes.len() {
            assert!(
                matches!(
                    SignedChange::from_bytes(&bytes[..len]),
                    Err(MembershipError::Truncated { .. })
                ),
                "truncated to {len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            SignedChange::from_bytes(&longer),
            Err(MembershipError::TrailingBytes(1))
        );
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x80;
            assert!(SignedChange::from_bytes(&bad).is_err(), "byte {at}");
        }
    }
    let bytes = add.to_bytes();
    let mut bad = bytes.clone();
    bad[0] = 0x02;
    assert_eq!(
        SignedChange::from_bytes(&bad),
        Err(MembershipError::UnsupportedFormat(2))
    );
    bad = bytes.clone();
    bad[1] = 0x06;
    assert_eq!(
        SignedChange::from_bytes(&bad),
        Err(MembershipError::UnknownKind(6))
    );
    bad = bytes.clone();
    bad[1] = 0x01;
    assert_eq!(
        SignedChange::from_bytes(&bad),
        Err(MembershipError::InvalidRevision { revision: 2 })
    );
    bad = bytes.clone();
    bad[REVISION_AT..PARENT_AT].copy_from_slice(&1u64.to_be_bytes());
    assert_eq!(
        SignedChange::from_bytes(&bad),
        Err(MembershipError::InvalidRevision { revision: 1 })
    );
    // The identity point: small order.
    let mut identity_point = [0u8; 32];
    identity_point[0] = 1;
    bad = bytes.clone();
    bad[AUTHOR_AT..BODY_AT].copy_from_slice(&identity_point);
    assert_eq!(
        SignedChange::from_bytes(&bad),
        Err(MembershipError::InvalidIdentityKey)
    );
    bad = bytes.clone();
    bad[BODY_AT + 2..BODY_AT + 34].copy_from_slice(&identity_point);
    assert_eq!(
        SignedChange::from_bytes(&bad),
        Err(MembershipError::InvalidIdentityKey)
    );
    bad = bytes.clone();
    bad[BODY_AT..BODY_AT + 2].copy_from_slice(&0u16.to_be_bytes());
    assert_eq!(
        SignedChange::from_bytes(&bad),
        Err(MembershipError::EmptyMemberList)
    );
    bad = bytes.clone();
    bad[BODY_AT..BODY_AT + 2].copy_from_slice(&1001u16.to_be_bytes());
    assert_eq!(
        SignedChange::from_bytes(&bad),
        Err(MembershipError::TooManyMembers {
            count: 1001,
            max: 1000
        })
    );
    // The list's rules, under a valid signature.
    let sorted = keys(&[DAVE, ERIN]);
    let signed = |accounts: &[IdentityKey]| {
        raw_change(
            &account(BOB),
            0x02,
            state.id(),
            2,
            state.hash(),
            &key(BOB),
            &accounts_body(accounts),
        )
    };
    assert_eq!(
        SignedChange::from_bytes(&signed(&[sorted[1], sorted[0]])),
        Err(MembershipError::MembersOutOfOrder)
    );
    assert_eq!(
        SignedChange::from_bytes(&signed(&[sorted[0], sorted[0]])),
        Err(MembershipError::DuplicateMember(Box::new(sorted[0])))
    );
    assert_eq!(
        SignedChange::from_bytes(&signed(&[key(BOB)])),
        Err(MembershipError::AuthorListed)
    );
    let rename = |name: &[u8]| {
        let mut body = vec![name.len() as u8];
        body.extend_from_slice(name);
        raw_change(
            &account(BOB),
            0x05,
            state.id(),
            2,
            state.hash(),
            &key(BOB),
            &body,
        )
    };
    assert_eq!(
        SignedChange::from_bytes(&rename(&[0xC3, 0x28])),
        Err(MembershipError::InvalidName)
    );
    assert_eq!(
        SignedChange::from_bytes(&rename(&[b'a'; 129])),
        Err(MembershipError::NameTooLong { len: 129, max: 128 })
    );
    assert!(SignedChange::from_bytes(&rename(&[b'a'; 128])).is_ok());
    assert!(SignedChange::from_bytes(&rename(b"")).is_ok());
}

#[test]
fn debug_output_names_ids_and_hashes_by_their_hex() {
    let (state, _) = group();
    let id = format!("{:?}", state.id());
    // The shared group id shows its first 8 bytes.
    assert_eq!(
        id,
        format!("GroupId({}…)", hex::encode(&state.id().as_bytes()[..8]))
    );
    let hash = format!("{:?}", state.hash());
    assert!(hash.starts_with("StateHash(") && hash.ends_with("…)"));
}
