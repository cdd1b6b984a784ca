//! Group membership: who is in a group, and how every member's copy comes
//! to the same member list (docs/protocol.md, section 15).
//!
//! Members are **accounts** (their account keys, [`IdentityKey`]); which
//! devices an account has is its signed device list's business
//! ([`crate::devices`]). A group is a random [`GroupId`] (the same id its
//! sender keys carry, section 14), a name and up to [`MAX_MEMBERS`]
//! members, at a **revision**. It changes by [`SignedChange`]s: control
//! messages that members send each other over their pairwise sessions,
//! each signed by its author's account key and naming the state it applies
//! to by that state's hash, so that any member can forward one to a member
//! that missed it, and anyone can check it without trusting the member who
//! forwarded it.
//!
//! - [`GroupState::create`] makes a group and its create;
//!   [`GroupState::from_create`] gives the other members their copy.
//! - [`GroupState::propose_add`], [`propose_remove`](GroupState::propose_remove),
//!   [`propose_leave`](GroupState::propose_leave) and
//!   [`propose_rename`](GroupState::propose_rename) sign a change for the
//!   current state without applying it.
//! - [`GroupState::apply`] takes a change from anyone, in any order, as
//!   often as it comes, and says what it did ([`Applied`]) or why it was
//!   refused ([`MembershipError`]), changing nothing then.
//! - [`GroupState::to_bytes`] / [`from_bytes`](GroupState::from_bytes)
//!   for a store; [`GroupState::join`] for an account added to the group,
//!   from the state a member sends it.
//!
//! # Example
//!
//! ```
//! use sotto_core::IdentityKeyPair;
//! use sotto_core::group::membership::{Applied, GroupState};
//! # use rand::SeedableRng;
//! # let mut rng = rand::rngs::ChaCha20Rng::from_seed([5; 32]);
//! let alice = IdentityKeyPair::generate(&mut rng);
//! let bob = IdentityKeyPair::generate(&mut rng);
//! let carol = IdentityKeyPair::generate(&mut rng);
//!
//! // Alice creates the group with Bob and sends Bob the create.
//! let (mut at_alice, create) = GroupState::create(&alice, "climbing", &[*bob.public()], &mut rng)?;
//! let mut at_bob = GroupState::from_create(&create, alice.public())?;
//!
//! // Bob adds Carol: he applies his own change and sends it to Alice.
//! let add = at_bob.propose_add(&bob, &[*carol.public()])?;
//! at_bob.apply(&add, bob.public())?;
//! let applied = at_alice.apply(&add, bob.public())?;
//! assert!(matches!(applied, Applied::Advanced { added, .. } if added == [*carol.public()]));
//!
//! // Carol joins from the state Bob sends her.
//! let at_carol = GroupState::join(&at_bob.to_bytes(), bob.public(), carol.public())?;
//! assert_eq!(at_carol.hash(), at_alice.hash());
//! assert_eq!(at_carol.members().len(), 3);
//! # Ok::<(), sotto_core::group::membership::MembershipError>(())
//! ```
//!
//! # Concurrent changes
//!
//! Two members may change the group at once: two changes with the same
//! parent. Every member settles them the same way, whatever order they
//! arrive in: the change whose author has been a member longest wins (the
//! smaller [`Member::since`]), then the smaller account key, then the
//! smaller change hash. A winner that arrives after the loser replaces it
//! and everything applied on top of it ([`Applied::Replaced`], which hands
//! back the changes undone so their authors can make them again); a loser
//! that arrives after the winner is [`MembershipError::Lost`]. Changes
//! based on a lost change never apply ([`MembershipError::UnknownParent`]).
//! Once every member has every change, every member has the same state
//! ([`GroupState::hash`]).
//!
//! # Security considerations
//!
//! - Any member can add and remove any other member: there are no admins.
//!   Precedence by seniority means a member cannot undo, by racing it, a
//!   change made by a member who joined before it; a senior member can undo
//!   a junior member's change by sending a concurrent one, even late,
//!   within [`MAX_FORK_DEPTH`] revisions.
//! - A change is accepted from its author or from a current member who
//!   forwards it; its signature, not the sender, is what authenticates it.
//!   The sender check only keeps strangers from feeding a copy.
//! - Changes are signed with account keys, which only the device holding
//!   the account key has: a linked device cannot change a group yet.
//! - Members see each other's account keys; the relay sees only the
//!   sealed, per-device envelopes that carry the changes.
//! - A change that forks more than [`MAX_FORK_DEPTH`] revisions back is
//!   refused ([`MembershipError::TooOld`]), so an old change can never roll
//!   a group back far; members that received the two sides of such a fork
//!   in different orders then disagree until one of them re-creates the
//!   group (docs/protocol.md 15.7).
//!
//! [`GroupId`]: crate::group::GroupId
//! [`IdentityKey`]: crate::IdentityKey

mod change;
mod error;
mod hashes;
mod state;

pub use change::{
    CHANGE_FORMAT, CHANGE_HASH_CONTEXT, CHANGE_SIGNATURE_CONTEXT, ChangeKind, MAX_CHANGE_LEN,
    SignedChange,
};
pub use error::MembershipError;
pub use hashes::{ChangeHash, StateHash};
pub use state::{Applied, GROUP_STATE_FORMAT, GroupState, Member, STATE_HASH_CONTEXT};

/// The most members a group can have.
pub const MAX_MEMBERS: usize = 1000;
/// The longest group name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 128;
/// How many changes a copy keeps: a concurrent change is weighed against
/// the one it competes with only if its parent is at most this many
/// revisions behind the current state.
pub const MAX_FORK_DEPTH: usize = 64;
