//! A membership change and its signed encoding (docs/protocol.md 15.2).
//!
//! ```text
//! Change = 0x01 (format) || kind(1) || group id(32) || u64be(revision)
//!          || parent(32) || author(32) || body || sig(64)
//! sig    = Ed25519-Sign(author, "sotto/group-change/v1" || Change without sig)
//! hash   = SHA-256("sotto/group-change-hash/v1" || Change)
//! ```

use sha2::{Digest, Sha256};

use super::hashes::{ChangeHash, StateHash};
use super::{MAX_MEMBERS, MAX_NAME_LEN, MembershipError};
use crate::group::{GROUP_ID_LEN, GroupId};
use crate::keys::{IdentityKey, IdentityKeyPair, Signature};
use crate::wire::Reader;

type Result<T> = core::result::Result<T, MembershipError>;

/// Format byte of an encoded change.
pub const CHANGE_FORMAT: u8 = 0x01;
/// What the author signs in front of a change, so that its signature
/// cannot be taken for one over anything else.
pub const CHANGE_SIGNATURE_CONTEXT: &[u8] = b"sotto/group-change/v1";
/// What is hashed in front of a signed change to name it.
pub const CHANGE_HASH_CONTEXT: &[u8] = b"sotto/group-change-hash/v1";
/// Bytes of a change before its body (106).
const HEADER_LEN: usize = 1 + 1 + GROUP_ID_LEN + 8 + 32 + 32;
/// Length of an Ed25519 signature.
const SIGNATURE_LEN: usize = 64;
/// The longest change: a create with the longest name and
/// `MAX_MEMBERS - 1` other members (32 269 bytes).
pub const MAX_CHANGE_LEN: usize =
    HEADER_LEN + 1 + MAX_NAME_LEN + 2 + (MAX_MEMBERS - 1) * 32 + SIGNATURE_LEN;

const KIND_CREATE: u8 = 0x01;
const KIND_ADD: u8 = 0x02;
const KIND_REMOVE: u8 = 0x03;
const KIND_LEAVE: u8 = 0x04;
const KIND_RENAME: u8 = 0x05;

/// What a change does. Lists of accounts are in ascending order of their
/// 32 bytes, without repeats, and never name the author.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeKind {
    /// Creates the group (revision 1): the author and `members` are its
    /// members, `name` its name.
    Create {
        /// The group's name.
        name: String,
        /// The members other than the author (possibly none).
        members: Vec<IdentityKey>,
    },
    /// Adds accounts that are not members.
    Add {
        /// The accounts added (at least one).
        members: Vec<IdentityKey>,
    },
    /// Removes members other than the author.
    Remove {
        /// The members removed (at least one).
        members: Vec<IdentityKey>,
    },
    /// The author leaves; nobody else is removed.
    Leave,
    /// Gives the group another name.
    Rename {
        /// The new name.
        name: String,
    },
}

impl ChangeKind {
    fn byte(&self) -> u8 {
        match self {
            Self::Create { .. } => KIND_CREATE,
            Self::Add { .. } => KIND_ADD,
            Self::Remove { .. } => KIND_REMOVE,
            Self::Leave => KIND_LEAVE,
            Self::Rename { .. } => KIND_RENAME,
        }
    }
}

/// A membership change signed by its author's account key.
///
/// Every value of this type is well formed and carries a valid signature
/// by its author: [`from_bytes`](Self::from_bytes) checks both, and the
/// only other way to get one is to propose a change on a
/// [`GroupState`](super::GroupState). Whether it applies to a group is
/// [`GroupState::apply`](super::GroupState::apply)'s question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedChange {
    group: GroupId,
    revision: u64,
    parent: StateHash,
    author: IdentityKey,
    kind: ChangeKind,
    signature: Signature,
    hash: ChangeHash,
}

impl SignedChange {
    /// Checks `kind` and signs the change with `author`.
    pub(super) fn sign(
        author: &IdentityKeyPair,
        group: GroupId,
        revision: u64,
        parent: StateHash,
        kind: ChangeKind,
    ) -> Result<Self> {
        check_revision(kind.byte(), revision, &parent)?;
        check_kind(&kind, author.public())?;
        let mut bytes = encode_unsigned(group, revision, &parent, author.public(), &kind);
        let signature = author.sign(&signed_message(&bytes));
        bytes.extend_from_slice(signature.as_bytes());
        Ok(Self {
            group,
            revision,
            parent,
            author: *author.public(),
            kind,
            signature,
            hash: change_hash(&bytes),
        })
    }

    /// The encoding: `unsigned || signature`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = encode_unsigned(
            self.group,
            self.revision,
            &self.parent,
            &self.author,
            &self.kind,
        );
        out.extend_from_slice(self.signature.as_bytes());
        out
    }

    /// Strict decoding, in the order of docs/protocol.md 15.2: the format,
    /// the kind, the revision, the author's key, the body's limits and
    /// order, no trailing bytes, and last the author's signature.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let format = r.u8()?;
        if format != CHANGE_FORMAT {
            return Err(MembershipError::UnsupportedFormat(format));
        }
        let kind_byte = r.u8()?;
        if !(KIND_CREATE..=KIND_RENAME).contains(&kind_byte) {
            return Err(MembershipError::UnknownKind(kind_byte));
        }
        let group = GroupId::from_bytes(*r.array::<GROUP_ID_LEN>()?);
        let revision = r.u64()?;
        let parent = StateHash::from_bytes(*r.array::<32>()?);
        check_revision(kind_byte, revision, &parent)?;
        let author = IdentityKey::from_bytes(r.array::<32>()?)?;
        let kind = match kind_byte {
            KIND_CREATE => {
                let name = read_name(&mut r)?;
                let members = read_accounts(&mut r, kind_byte)?;
                ChangeKind::Create { name, members }
            }
            KIND_ADD => ChangeKind::Add {
                members: read_accounts(&mut r, kind_byte)?,
            },
            KIND_REMOVE => ChangeKind::Remove {
                members: read_accounts(&mut r, kind_byte)?,
            },
            KIND_LEAVE => ChangeKind::Leave,
            _ => ChangeKind::Rename {
                name: read_name(&mut r)?,
            },
        };
        check_kind(&kind, &author)?;
        let signature = Signature::from_bytes(*r.array::<SIGNATURE_LEN>()?);
        r.finish()?;
        let unsigned = bytes
            .get(..bytes.len().saturating_sub(SIGNATURE_LEN))
            .unwrap_or_default();
        author.verify(&signed_message(unsigned), &signature)?;
        Ok(Self {
            group,
            revision,
            parent,
            author,
            kind,
            signature,
            hash: change_hash(bytes),
        })
    }

    /// The group the change belongs to.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The revision of the state the change produces: its parent's plus one.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The hash of the state the change applies to ([`StateHash::NONE`] for
    /// a create).
    pub fn parent(&self) -> StateHash {
        self.parent
    }

    /// The account that made and signed the change.
    pub fn author(&self) -> &IdentityKey {
        &self.author
    }

    /// What the change does.
    pub fn kind(&self) -> &ChangeKind {
        &self.kind
    }

    /// The author's signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The change's hash, which names it.
    pub fn hash(&self) -> ChangeHash {
        self.hash
    }
}

/// A create is revision 1 and applies to no state; every other change
/// applies to a state of revision 1 or more.
fn check_revision(kind: u8, revision: u64, parent: &StateHash) -> Result<()> {
    let valid = if kind == KIND_CREATE {
        revision == 1 && *parent == StateHash::NONE
    } else {
        revision >= 2
    };
    if valid {
        Ok(())
    } else {
        Err(MembershipError::InvalidRevision { revision })
    }
}

/// The limits and order of a change's body.
fn check_kind(kind: &ChangeKind, author: &IdentityKey) -> Result<()> {
    match kind {
        ChangeKind::Create { name, members } => {
            check_name_len(name.len())?;
            check_count(KIND_CREATE, members.len())?;
            check_accounts(members, author)
        }
        ChangeKind::Add { members } => {
            check_count(KIND_ADD, members.len())?;
            check_accounts(members, author)
        }
        ChangeKind::Remove { members } => {
            check_count(KIND_REMOVE, members.len())?;
            check_accounts(members, author)
        }
        ChangeKind::Leave => Ok(()),
        ChangeKind::Rename { name } => check_name_len(name.len()),
    }
}

pub(super) fn check_name_len(len: usize) -> Result<()> {
    if len > MAX_NAME_LEN {
        return Err(MembershipError::NameTooLong {
            len,
            max: MAX_NAME_LEN,
        });
    }
    Ok(())
}

/// A create lists the members besides its author (so at most
/// `MAX_MEMBERS - 1`); an add or remove lists 1 to `MAX_MEMBERS`.
fn check_count(kind: u8, n: usize) -> Result<()> {
    let count = if kind == KIND_CREATE { n + 1 } else { n };
    if count > MAX_MEMBERS {
        return Err(MembershipError::TooManyMembers {
            count,
            max: MAX_MEMBERS,
        });
    }
    if n == 0 && kind != KIND_CREATE {
        return Err(MembershipError::EmptyMemberList);
    }
    Ok(())
}

/// Position by position: not the author, then strictly above the one
/// before.
pub(super) fn check_accounts(accounts: &[IdentityKey], author: &IdentityKey) -> Result<()> {
    let mut previous: Option<&IdentityKey> = None;
    for account in accounts {
        if account == author {
            return Err(MembershipError::AuthorListed);
        }
        if let Some(previous) = previous {
            match previous.as_bytes().cmp(account.as_bytes()) {
                core::cmp::Ordering::Less => {}
                core::cmp::Ordering::Equal => {
                    return Err(MembershipError::DuplicateMember(Box::new(*account)));
                }
                core::cmp::Ordering::Greater => return Err(MembershipError::MembersOutOfOrder),
            }
        }
        previous = Some(account);
    }
    Ok(())
}

fn read_name(r: &mut Reader<'_>) -> Result<String> {
    let len = usize::from(r.u8()?);
    check_name_len(len)?;
    let bytes = r.take(len)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| MembershipError::InvalidName)
}

fn read_accounts(r: &mut Reader<'_>, kind: u8) -> Result<Vec<IdentityKey>> {
    let n = usize::from(r.u16()?);
    check_count(kind, n)?;
    let mut accounts = Vec::with_capacity(n);
    for _ in 0..n {
        accounts.push(IdentityKey::from_bytes(r.array::<32>()?)?);
    }
    Ok(accounts)
}

fn write_name(out: &mut Vec<u8>, name: &str) {
    // At most MAX_NAME_LEN (128): checked when the change was made.
    out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(name.as_bytes());
}

fn write_accounts(out: &mut Vec<u8>, accounts: &[IdentityKey]) {
    // At most MAX_MEMBERS (1000): checked when the change was made.
    out.extend_from_slice(
        &u16::try_from(accounts.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    for account in accounts {
        out.extend_from_slice(account.as_bytes());
    }
}

/// The change without its signature: what the author signs.
fn encode_unsigned(
    group: GroupId,
    revision: u64,
    parent: &StateHash,
    author: &IdentityKey,
    kind: &ChangeKind,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + SIGNATURE_LEN + 64);
    out.push(CHANGE_FORMAT);
    out.push(kind.byte());
    out.extend_from_slice(group.as_bytes());
    out.extend_from_slice(&revision.to_be_bytes());
    out.extend_from_slice(parent.as_bytes());
    out.extend_from_slice(author.as_bytes());
    match kind {
        ChangeKind::Create { name, members } => {
            write_name(&mut out, name);
            write_accounts(&mut out, members);
        }
        ChangeKind::Add { members } | ChangeKind::Remove { members } => {
            write_accounts(&mut out, members);
        }
        ChangeKind::Leave => {}
        ChangeKind::Rename { name } => write_name(&mut out, name),
    }
    out
}

/// `"sotto/group-change/v1" || unsigned`: what the author signs.
fn signed_message(unsigned: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(CHANGE_SIGNATURE_CONTEXT.len() + unsigned.len());
    message.extend_from_slice(CHANGE_SIGNATURE_CONTEXT);
    message.extend_from_slice(unsigned);
    message
}

/// `SHA-256("sotto/group-change-hash/v1" || change)`.
fn change_hash(bytes: &[u8]) -> ChangeHash {
    let mut h = Sha256::new();
    h.update(CHANGE_HASH_CONTEXT);
    h.update(bytes);
    ChangeHash::from_bytes(h.finalize().into())
}
