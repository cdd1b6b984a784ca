//! The refusals of group membership: one enum for parsing, the rules and
//! the convergence of docs/protocol.md section 15.

use super::ChangeHash;
use crate::error::Error;
use crate::keys::IdentityKey;

/// Why a change, a group state or a proposal was refused.
///
/// Variants that name an account box its key, so that the error stays
/// small.
///
/// Every variant is a refusal that changed nothing: a [`GroupState`]
/// that returns one is exactly as it was before the call.
///
/// [`GroupState`]: super::GroupState
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The input ended before a complete structure was read.
    #[error("truncated input: needed {needed} bytes, got {got}")]
    Truncated {
        /// Bytes required.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// Bytes were left over after a complete structure.
    #[error("{0} trailing bytes after a complete structure")]
    TrailingBytes(usize),
    /// A format byte this implementation does not speak.
    #[error("unsupported format {0:#04x}")]
    UnsupportedFormat(u8),
    /// A kind byte that names no change.
    #[error("unknown change kind {0:#04x}")]
    UnknownKind(u8),
    /// An account key that is malformed, non-canonical or of small order.
    #[error("invalid account key")]
    InvalidIdentityKey,
    /// A signature that does not verify under the change's author.
    #[error("invalid signature")]
    InvalidSignature,
    /// A revision (or parent) that no change of this kind can have: a
    /// create is revision 1 with the all-zero parent, every other change
    /// revision 2 or more.
    #[error("revision {revision} is impossible for this kind of change")]
    InvalidRevision {
        /// The revision the change carries.
        revision: u64,
    },
    /// A group name that is not UTF-8.
    #[error("the group name is not UTF-8")]
    InvalidName,
    /// A group name longer than allowed.
    #[error("group name of {len} bytes exceeds the maximum of {max}")]
    NameTooLong {
        /// Bytes of the name.
        len: usize,
        /// The limit (`MAX_NAME_LEN`).
        max: usize,
    },
    /// More members than a group may have, in a change or in the group it
    /// would leave behind.
    #[error("{count} members exceed the maximum of {max}")]
    TooManyMembers {
        /// Members there would be.
        count: usize,
        /// The limit (`MAX_MEMBERS`).
        max: usize,
    },
    /// An add or remove that names nobody.
    #[error("an add or remove must name at least one account")]
    EmptyMemberList,
    /// An account listed twice in one list.
    #[error("an account is listed twice")]
    DuplicateMember(Box<IdentityKey>),
    /// An encoded list of accounts that is not in ascending order.
    #[error("accounts are not in ascending order")]
    MembersOutOfOrder,
    /// The author listed in its own create, add or remove (a member leaves
    /// with a leave, and is a member of what it creates).
    #[error("the author is listed in its own change")]
    AuthorListed,
    /// A serialized group state that breaks a rule of its format.
    #[error("corrupt group state: {0}")]
    CorruptState(&'static str),
    /// The change names another group.
    #[error("the change belongs to another group")]
    WrongGroup,
    /// The change came from an account that is neither its author nor a
    /// member of the group as the receiver holds it.
    #[error("the sender is neither the author nor a member")]
    UntrustedSender,
    /// The author is not a member of the state the change applies to (it
    /// was removed, left, or never joined).
    #[error("the author is not a member of the state the change applies to")]
    AuthorNotMember,
    /// An add of an account that is a member already.
    #[error("the account is already a member")]
    AlreadyMember(Box<IdentityKey>),
    /// A remove of an account that is not a member.
    #[error("the account is not a member")]
    NotMember(Box<IdentityKey>),
    /// A rename to the name the group has.
    #[error("the group already has this name")]
    NameUnchanged,
    /// The change comes after revisions not received yet: keep it and
    /// apply it again once they arrive (or ask a member for them).
    #[error("revisions {first} to {last} are missing")]
    MissingRevisions {
        /// The first revision missing (the one after the state held).
        first: u64,
        /// The last one missing (the revision the change applies to).
        last: u64,
    },
    /// The change applies to a state of `revision` that is not the one
    /// held: its parent is a concurrent change not received yet (keep it
    /// and try again later), or one that lost (it will never apply).
    #[error("the state of revision {revision} this change applies to is not the one held")]
    UnknownParent {
        /// The revision of the parent state.
        revision: u64,
    },
    /// The change applies to a state older than the oldest one kept
    /// (`MAX_FORK_DEPTH` revisions back): a replay, or a concurrent change
    /// too late to be weighed. Refused, so old changes never roll a group
    /// back.
    #[error("revision {revision} is older than the oldest that can be applied, {oldest}")]
    TooOld {
        /// The revision of the change.
        revision: u64,
        /// The oldest revision a change may have.
        oldest: u64,
    },
    /// A concurrent change (same parent) that takes precedence holds this
    /// revision: this one lost and will never apply. Its author re-issues
    /// it on the current state if it still wants it.
    #[error("revision {revision} went to a concurrent change that takes precedence")]
    Lost {
        /// The revision both changes carry.
        revision: u64,
        /// The change that holds it.
        winner: ChangeHash,
    },
    /// A create of this group other than the one the state started from.
    #[error("another create for this group id")]
    ConflictingCreate,
    /// A group starts only from a create.
    #[error("not a create")]
    NotACreate,
    /// A group state given to join does not list the joining account.
    #[error("the group does not list this account")]
    NotInvited,
    /// The group is at the largest revision.
    #[error("group revision exhausted")]
    RevisionExhausted,
}

/// The refusals of the shared byte reader and key checks, in this
/// module's terms (so that `?` works on them).
impl From<Error> for MembershipError {
    fn from(e: Error) -> Self {
        match e {
            Error::Truncated { needed, got } => Self::Truncated { needed, got },
            Error::TrailingBytes(n) => Self::TrailingBytes(n),
            Error::InvalidIdentityKey => Self::InvalidIdentityKey,
            Error::InvalidSignature => Self::InvalidSignature,
            _ => Self::CorruptState("unexpected refusal of the byte reader"),
        }
    }
}
