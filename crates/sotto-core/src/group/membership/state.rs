//! The group state, its hash and serialization, and the rules by which a
//! change applies and concurrent changes are settled (docs/protocol.md
//! 15.3 to 15.7).

use rand_core::CryptoRng;
use sha2::{Digest, Sha256};

use super::change::{ChangeKind, SignedChange, check_name_len};
use super::hashes::{ChangeHash, StateHash};
use super::{MAX_FORK_DEPTH, MAX_MEMBERS, MembershipError};
use crate::group::{GROUP_ID_LEN, GroupId};
use crate::keys::{IdentityKey, IdentityKeyPair};
use crate::wire::Reader;

type Result<T> = core::result::Result<T, MembershipError>;

/// Format byte of a serialized [`GroupState`].
pub const GROUP_STATE_FORMAT: u8 = 0x01;
/// What is hashed in front of a state's fields to name it.
pub const STATE_HASH_CONTEXT: &[u8] = b"sotto/group-state/v1";

/// One member of a group: an account, and the revision of the change that
/// added it (1 for the creator and the members it created the group
/// with). The earlier a member joined, the more its concurrent changes
/// weigh (docs/protocol.md 15.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// The member's account key.
    pub account: IdentityKey,
    /// The revision that added it.
    pub since: u64,
}

/// What applying a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Applied {
    /// The change applied to the state held: the group moved one revision
    /// on. The lists are in ascending order of account key; `renamed` is
    /// the new name.
    Advanced {
        /// Accounts that became members.
        added: Vec<IdentityKey>,
        /// Accounts that are no longer members.
        removed: Vec<IdentityKey>,
        /// The new name, if it changed.
        renamed: Option<String>,
    },
    /// The change is concurrent with `loser` (same parent) and takes
    /// precedence over it: the state is now the parent's with this change
    /// applied, and `loser` and every change applied after it
    /// (`descendants`, oldest first) are undone. Their authors re-issue
    /// them on the new state if they still want them. `added`, `removed`
    /// and `renamed` compare the new state with the one held before.
    Replaced {
        /// The change that held this revision.
        loser: Box<SignedChange>,
        /// The changes applied on top of `loser`, oldest first.
        descendants: Vec<SignedChange>,
        /// Accounts that became members.
        added: Vec<IdentityKey>,
        /// Accounts that are no longer members.
        removed: Vec<IdentityKey>,
        /// The new name, if it changed.
        renamed: Option<String>,
    },
    /// The change is already part of the state (a replay): nothing changed.
    AlreadyApplied,
}

/// One state: what its hash covers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    revision: u64,
    name: String,
    /// In ascending order of account key, without repeats.
    members: Vec<Member>,
    /// The change that produced this state (all zeros before the group).
    head: ChangeHash,
    hash: StateHash,
}

impl Snapshot {
    /// The state before the group exists: what a create applies to.
    fn none() -> Self {
        Self {
            revision: 0,
            name: String::new(),
            members: Vec::new(),
            head: ChangeHash::from_bytes([0; 32]),
            hash: StateHash::NONE,
        }
    }

    fn member(&self, account: &IdentityKey) -> Option<&Member> {
        self.members
            .binary_search_by(|m| m.account.as_bytes().cmp(account.as_bytes()))
            .ok()
            .and_then(|i| self.members.get(i))
    }

    fn has(&self, account: &IdentityKey) -> bool {
        self.member(account).is_some()
    }
}

/// `SHA-256("sotto/group-state/v1" || id || u64be(revision) || head
/// || u8(len) || name || u16be(n) || n * (account || u64be(since)))`.
fn state_hash(id: GroupId, s: &Snapshot) -> StateHash {
    let mut h = Sha256::new();
    h.update(STATE_HASH_CONTEXT);
    h.update(id.as_bytes());
    write_snapshot_fields(&mut h, s);
    StateHash::from_bytes(h.finalize().into())
}

/// Where the fields of a state go: a hash or a serialization.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// `u64be(revision) || head || u8(len) || name || u16be(n) || n * (account
/// || u64be(since))`: the same bytes in the state hash and in a
/// serialized state's base.
fn write_snapshot_fields(out: &mut impl Sink, s: &Snapshot) {
    out.put(&s.revision.to_be_bytes());
    out.put(s.head.as_bytes());
    // Names are at most MAX_NAME_LEN (128) bytes, member lists at most
    // MAX_MEMBERS (1000) long: checked before any state holds them.
    out.put(&[u8::try_from(s.name.len()).unwrap_or(u8::MAX)]);
    out.put(s.name.as_bytes());
    out.put(
        &u16::try_from(s.members.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    for m in &s.members {
        out.put(m.account.as_bytes());
        out.put(&m.since.to_be_bytes());
    }
}

/// The rules of docs/protocol.md 15.5 for `change` on `state`, its parent.
fn validate(state: &Snapshot, change: &SignedChange) -> Result<()> {
    if !state.has(change.author()) {
        return Err(MembershipError::AuthorNotMember);
    }
    match change.kind() {
        // A create applies to no state: never here.
        ChangeKind::Create { .. } => Err(MembershipError::ConflictingCreate),
        ChangeKind::Add { members } => {
            if let Some(member) = members.iter().find(|a| state.has(a)) {
                return Err(MembershipError::AlreadyMember(Box::new(*member)));
            }
            let count = state.members.len() + members.len();
            if count > MAX_MEMBERS {
                return Err(MembershipError::TooManyMembers {
                    count,
                    max: MAX_MEMBERS,
                });
            }
            Ok(())
        }
        ChangeKind::Remove { members } => match members.iter().find(|a| !state.has(a)) {
            Some(account) => Err(MembershipError::NotMember(Box::new(*account))),
            None => Ok(()),
        },
        ChangeKind::Leave => Ok(()),
        ChangeKind::Rename { name } => {
            if *name == state.name {
                return Err(MembershipError::NameUnchanged);
            }
            Ok(())
        }
    }
}

/// The state `change` produces from `state` (which it is valid on).
fn advance(id: GroupId, state: &Snapshot, change: &SignedChange) -> Snapshot {
    let revision = change.revision();
    let joined = |account: &IdentityKey| Member {
        account: *account,
        since: revision,
    };
    let mut name = state.name.clone();
    let mut members = state.members.clone();
    match change.kind() {
        ChangeKind::Create {
            name: created,
            members: others,
        } => {
            name.clone_from(created);
            members = others.iter().map(joined).collect();
            members.push(joined(change.author()));
        }
        ChangeKind::Add { members: added } => members.extend(added.iter().map(joined)),
        ChangeKind::Remove { members: removed } => members.retain(|m| {
            removed
                .binary_search_by(|a| a.as_bytes().cmp(m.account.as_bytes()))
                .is_err()
        }),
        ChangeKind::Leave => members.retain(|m| m.account != *change.author()),
        ChangeKind::Rename { name: renamed } => name.clone_from(renamed),
    }
    members.sort_by(|a, b| a.account.as_bytes().cmp(b.account.as_bytes()));
    let mut next = Snapshot {
        revision,
        name,
        members,
        head: change.hash(),
        hash: StateHash::NONE,
    };
    next.hash = state_hash(id, &next);
    next
}

/// The order of concurrent changes on `parent` (docs/protocol.md 15.6):
/// the smaller key wins. The author's `since`, then its account key, then
/// the change's hash.
fn precedence(parent: &Snapshot, change: &SignedChange) -> (u64, [u8; 32], [u8; 32]) {
    let since = parent.member(change.author()).map_or(u64::MAX, |m| m.since);
    (since, change.author().to_bytes(), *change.hash().as_bytes())
}

/// Accounts in `new` and not in `old`, accounts in `old` and not in `new`
/// (both in ascending order), and `new`'s name if it differs.
fn diff(old: &Snapshot, new: &Snapshot) -> (Vec<IdentityKey>, Vec<IdentityKey>, Option<String>) {
    let added = new
        .members
        .iter()
        .filter(|m| !old.has(&m.account))
        .map(|m| m.account)
        .collect();
    let removed = old
        .members
        .iter()
        .filter(|m| !new.has(&m.account))
        .map(|m| m.account)
        .collect();
    let renamed = (old.name != new.name).then(|| new.name.clone());
    (added, removed, renamed)
}

/// Account keys in ascending order of their bytes, without repeats.
fn normalized(accounts: &[IdentityKey]) -> Vec<IdentityKey> {
    let mut out = accounts.to_vec();
    out.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    out.dedup();
    out
}

/// A change held, with the hash of the state it produced.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    change: SignedChange,
    state: StateHash,
}

/// One member's copy of a group: the current state (id, revision, name,
/// members, the change that produced it) and the last
/// [`MAX_FORK_DEPTH`] changes that led to it, so that a concurrent change
/// arriving late can still be weighed against the one it competes with.
///
/// Changes come from [`create`](Self::create) and the `propose_*`
/// methods, which sign them and do not change the state: the author
/// applies its own change with [`apply`](Self::apply) like every other
/// member, and sends it to every member over their pairwise sessions.
/// Every method that fails leaves the state as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    id: GroupId,
    /// The hash of the create the group started from.
    genesis: ChangeHash,
    /// The state the oldest change held applies to.
    base: Snapshot,
    /// The changes from `base` to `current`, oldest first: 1 to
    /// MAX_FORK_DEPTH of them.
    history: Vec<Link>,
    current: Snapshot,
}

impl GroupState {
    /// Creates a group named `name` with its author and `members` (in any
    /// order; repeats and the author are dropped): the group at revision 1
    /// and the create to send to the other members. The id is one 32-byte
    /// draw from `rng` ([`GroupId::generate`]), the id the group's sender
    /// keys then use.
    ///
    /// Refused if the name is longer than [`MAX_NAME_LEN`](super::MAX_NAME_LEN)
    /// bytes or the group would have more than [`MAX_MEMBERS`] members.
    pub fn create<R: CryptoRng + ?Sized>(
        author: &IdentityKeyPair,
        name: &str,
        members: &[IdentityKey],
        rng: &mut R,
    ) -> Result<(Self, SignedChange)> {
        let mut members = normalized(members);
        members.retain(|m| m != author.public());
        let id = GroupId::generate(rng);
        let kind = ChangeKind::Create {
            name: name.to_owned(),
            members,
        };
        let change = SignedChange::sign(author, id, 1, StateHash::NONE, kind)?;
        let state = Self::start(&change);
        Ok((state, change))
    }

    /// The group as its create makes it, for a member the creator sent the
    /// create to. `sender` is the account the transport authenticated the
    /// change as coming from: it must be the creator.
    pub fn from_create(change: &SignedChange, sender: &IdentityKey) -> Result<Self> {
        if !matches!(change.kind(), ChangeKind::Create { .. }) {
            return Err(MembershipError::NotACreate);
        }
        if sender != change.author() {
            return Err(MembershipError::UntrustedSender);
        }
        Ok(Self::start(change))
    }

    /// The group from a member's serialized state ([`to_bytes`](Self::to_bytes)),
    /// for an account that member added: decoded and checked as
    /// [`from_bytes`](Self::from_bytes) does, then `sender` (the account
    /// the transport authenticated the state as coming from) must be a
    /// member ([`MembershipError::UntrustedSender`]) and so must `me`
    /// ([`MembershipError::NotInvited`]).
    ///
    /// The state's changes are each signed by a member of the state before
    /// it; what the joiner takes on trust is the oldest state kept (the
    /// base), vouched for by the signature on the first change after it,
    /// and in the end the member who sends it, as for any invitation.
    pub fn join(state: &[u8], sender: &IdentityKey, me: &IdentityKey) -> Result<Self> {
        let group = Self::from_bytes(state)?;
        if !group.current.has(sender) {
            return Err(MembershipError::UntrustedSender);
        }
        if !group.current.has(me) {
            return Err(MembershipError::NotInvited);
        }
        Ok(group)
    }

    fn start(create: &SignedChange) -> Self {
        let base = Snapshot::none();
        let current = advance(create.group(), &base, create);
        Self {
            id: create.group(),
            genesis: create.hash(),
            base,
            history: vec![Link {
                change: create.clone(),
                state: current.hash,
            }],
            current,
        }
    }

    /// The group's id.
    pub fn id(&self) -> GroupId {
        self.id
    }

    /// The revision: 1 after the create, one more for each change.
    pub fn revision(&self) -> u64 {
        self.current.revision
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.current.name
    }

    /// The members, in ascending order of account key.
    pub fn members(&self) -> &[Member] {
        &self.current.members
    }

    /// Whether `account` is a member.
    pub fn is_member(&self, account: &IdentityKey) -> bool {
        self.current.has(account)
    }

    /// Whether the group has ended: its last member left, and no change
    /// can apply to it any more.
    pub fn is_ended(&self) -> bool {
        self.current.members.is_empty()
    }

    /// The hash of the state: what the next change names as its parent.
    /// Two copies of a group with the same hash have the same revision,
    /// name and members.
    pub fn hash(&self) -> StateHash {
        self.current.hash
    }

    /// The hash of the change that produced the state.
    pub fn head(&self) -> ChangeHash {
        self.current.head
    }

    /// The hash of the create the group started from.
    pub fn genesis(&self) -> ChangeHash {
        self.genesis
    }

    /// The changes kept, oldest first, the last of them the one that
    /// produced the state: what a member sends to one that reports
    /// [`MembershipError::MissingRevisions`].
    pub fn history(&self) -> impl Iterator<Item = &SignedChange> + '_ {
        self.history.iter().map(|l| &l.change)
    }

    /// The change kept for `revision`, if any.
    pub fn change(&self, revision: u64) -> Option<&SignedChange> {
        self.index_of(revision)
            .and_then(|i| self.history.get(i))
            .map(|l| &l.change)
    }

    /// The oldest revision a change can have and still be weighed: older
    /// ones are [`MembershipError::TooOld`].
    pub fn oldest_revision(&self) -> u64 {
        self.base.revision.saturating_add(1)
    }

    /// An add of `members` (in any order; repeats are dropped) by `author`,
    /// signed, for the current state. The state does not change: apply
    /// the change like any other.
    pub fn propose_add(
        &self,
        author: &IdentityKeyPair,
        members: &[IdentityKey],
    ) -> Result<SignedChange> {
        let members = normalized(members);
        self.propose(author, ChangeKind::Add { members })
    }

    /// A remove of `members` (in any order; repeats are dropped) by
    /// `author`. `author` leaves with [`propose_leave`](Self::propose_leave)
    /// instead ([`MembershipError::AuthorListed`]).
    pub fn propose_remove(
        &self,
        author: &IdentityKeyPair,
        members: &[IdentityKey],
    ) -> Result<SignedChange> {
        let members = normalized(members);
        self.propose(author, ChangeKind::Remove { members })
    }

    /// `author` leaves the group. When it is the last member, the group
    /// ends.
    pub fn propose_leave(&self, author: &IdentityKeyPair) -> Result<SignedChange> {
        self.propose(author, ChangeKind::Leave)
    }

    /// A rename of the group to `name` by `author`.
    pub fn propose_rename(&self, author: &IdentityKeyPair, name: &str) -> Result<SignedChange> {
        self.propose(
            author,
            ChangeKind::Rename {
                name: name.to_owned(),
            },
        )
    }

    fn propose(&self, author: &IdentityKeyPair, kind: ChangeKind) -> Result<SignedChange> {
        if !self.current.has(author.public()) {
            return Err(MembershipError::AuthorNotMember);
        }
        let revision = self
            .current
            .revision
            .checked_add(1)
            .ok_or(MembershipError::RevisionExhausted)?;
        let change = SignedChange::sign(author, self.id, revision, self.current.hash, kind)?;
        validate(&self.current, &change)?;
        Ok(change)
    }

    /// Applies `change`, received from `sender` (the account the
    /// transport authenticated it as coming from: its author, or a member
    /// forwarding it), following docs/protocol.md 15.4 to 15.7:
    ///
    /// - on the state held, a valid change advances it
    ///   ([`Applied::Advanced`]);
    /// - a change held already is [`Applied::AlreadyApplied`];
    /// - a valid change concurrent with one held (same parent) replaces it
    ///   and its descendants if it takes precedence
    ///   ([`Applied::Replaced`]), and is [`MembershipError::Lost`]
    ///   otherwise;
    /// - a change after revisions not held yet is
    ///   [`MembershipError::MissingRevisions`] (keep it, apply it again
    ///   later), one on a state not held [`MembershipError::UnknownParent`],
    ///   one older than the changes kept [`MembershipError::TooOld`].
    ///
    /// On any error the state is unchanged.
    pub fn apply(&mut self, change: &SignedChange, sender: &IdentityKey) -> Result<Applied> {
        if change.group() != self.id {
            return Err(MembershipError::WrongGroup);
        }
        if sender != change.author() && !self.current.has(sender) {
            return Err(MembershipError::UntrustedSender);
        }
        if matches!(change.kind(), ChangeKind::Create { .. }) {
            return if change.hash() == self.genesis {
                Ok(Applied::AlreadyApplied)
            } else {
                Err(MembershipError::ConflictingCreate)
            };
        }
        // Every other change is revision 2 or more (checked when it was
        // decoded or made), so it has a parent of revision 1 or more.
        let revision = change.revision();
        let parent_revision = revision.saturating_sub(1);
        let tip = self.current.revision;
        if parent_revision > tip {
            return Err(MembershipError::MissingRevisions {
                first: tip.saturating_add(1),
                last: parent_revision,
            });
        }
        if parent_revision < self.base.revision {
            return Err(MembershipError::TooOld {
                revision,
                oldest: self.oldest_revision(),
            });
        }
        if self.state_hash_at(parent_revision) != Some(change.parent()) {
            return Err(MembershipError::UnknownParent {
                revision: parent_revision,
            });
        }
        if parent_revision == tip {
            validate(&self.current, change)?;
            let next = advance(self.id, &self.current, change);
            let (added, removed, renamed) = diff(&self.current, &next);
            self.push(change.clone(), next);
            return Ok(Applied::Advanced {
                added,
                removed,
                renamed,
            });
        }
        // A revision held: the same change, or a concurrent one.
        let index = self
            .index_of(revision)
            .ok_or(MembershipError::CorruptState(
                "history does not cover the tip",
            ))?;
        let held = self
            .history
            .get(index)
            .ok_or(MembershipError::CorruptState(
                "history does not cover the tip",
            ))?;
        if held.change.hash() == change.hash() {
            return Ok(Applied::AlreadyApplied);
        }
        let parent = self.state_at(parent_revision);
        validate(&parent, change)?;
        if precedence(&parent, change) > precedence(&parent, &held.change) {
            return Err(MembershipError::Lost {
                revision,
                winner: held.change.hash(),
            });
        }
        let next = advance(self.id, &parent, change);
        let (added, removed, renamed) = diff(&self.current, &next);
        let mut undone = self.history.split_off(index).into_iter().map(|l| l.change);
        let loser = undone.next().ok_or(MembershipError::CorruptState(
            "history does not cover the tip",
        ))?;
        let descendants = undone.collect();
        self.push(change.clone(), next);
        Ok(Applied::Replaced {
            loser: Box::new(loser),
            descendants,
            added,
            removed,
            renamed,
        })
    }

    /// Appends a change and the state it produced; folds the oldest change
    /// into the base beyond MAX_FORK_DEPTH.
    fn push(&mut self, change: SignedChange, next: Snapshot) {
        self.history.push(Link {
            change,
            state: next.hash,
        });
        self.current = next;
        while self.history.len() > MAX_FORK_DEPTH {
            let oldest = self.history.remove(0);
            self.base = advance(self.id, &self.base, &oldest.change);
        }
    }

    /// Position in `history` of the change that produced `revision`.
    fn index_of(&self, revision: u64) -> Option<usize> {
        let offset = revision.checked_sub(self.base.revision)?.checked_sub(1)?;
        usize::try_from(offset)
            .ok()
            .filter(|&i| i < self.history.len())
    }

    /// The hash of the state of `revision`, if it is held.
    fn state_hash_at(&self, revision: u64) -> Option<StateHash> {
        if revision == self.base.revision {
            return Some(self.base.hash);
        }
        self.index_of(revision)
            .and_then(|i| self.history.get(i))
            .map(|l| l.state)
    }

    /// The state of `revision` (held: between the base and the tip),
    /// replayed from the base.
    fn state_at(&self, revision: u64) -> Snapshot {
        let mut state = self.base.clone();
        for link in &self.history {
            if state.revision >= revision {
                break;
            }
            state = advance(self.id, &state, &link.change);
        }
        state
    }

    /// The serialization a store keeps (docs/protocol.md 15.8):
    /// `0x01 || id || genesis || base || u8(count) || count * (u16be(len)
    /// || change)`. Not secret, but it is the user's data: the store seals
    /// it like the rest.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.push(GROUP_STATE_FORMAT);
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(self.genesis.as_bytes());
        write_snapshot_fields(&mut out, &self.base);
        // 1 to MAX_FORK_DEPTH (64) changes, each at most MAX_CHANGE_LEN
        // (32 269) bytes.
        out.push(u8::try_from(self.history.len()).unwrap_or(u8::MAX));
        for link in &self.history {
            let bytes = link.change.to_bytes();
            out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_be_bytes());
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// Strict decoding of [`to_bytes`](Self::to_bytes): the base's rules,
    /// then every change kept decoded (its signature checked) and applied
    /// in order by the rules of [`apply`](Self::apply), so what decodes is
    /// a state those rules reach. Costs one signature check per change
    /// kept (at most [`MAX_FORK_DEPTH`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let format = r.u8()?;
        if format != GROUP_STATE_FORMAT {
            return Err(MembershipError::UnsupportedFormat(format));
        }
        let id = GroupId::from_bytes(*r.array::<GROUP_ID_LEN>()?);
        let genesis = ChangeHash::from_bytes(*r.array::<32>()?);
        let base = read_base(&mut r, id)?;
        let count = usize::from(r.u8()?);
        if count == 0 || count > MAX_FORK_DEPTH {
            return Err(MembershipError::CorruptState("number of changes kept"));
        }
        let mut history = Vec::with_capacity(count);
        let mut current = base.clone();
        for _ in 0..count {
            let len = usize::from(r.u16()?);
            let change = SignedChange::from_bytes(r.take(len)?)?;
            if change.group() != id {
                return Err(MembershipError::WrongGroup);
            }
            let next = if current.revision == 0 {
                if !matches!(change.kind(), ChangeKind::Create { .. }) {
                    return Err(MembershipError::NotACreate);
                }
                if change.hash() != genesis {
                    return Err(MembershipError::ConflictingCreate);
                }
                advance(id, &current, &change)
            } else {
                if change.revision() != current.revision.saturating_add(1)
                    || change.parent() != current.hash
                {
                    return Err(MembershipError::CorruptState("changes out of sequence"));
                }
                validate(&current, &change)?;
                advance(id, &current, &change)
            };
            history.push(Link {
                change,
                state: next.hash,
            });
            current = next;
        }
        r.finish()?;
        Ok(Self {
            id,
            genesis,
            base,
            history,
            current,
        })
    }
}

/// The base of a serialized state: the fields of
/// `write_snapshot_fields`, with the rules of a state.
fn read_base(r: &mut Reader<'_>, id: GroupId) -> Result<Snapshot> {
    let revision = r.u64()?;
    let head = ChangeHash::from_bytes(*r.array::<32>()?);
    let name_len = usize::from(r.u8()?);
    check_name_len(name_len)?;
    let name =
        String::from_utf8(r.take(name_len)?.to_vec()).map_err(|_| MembershipError::InvalidName)?;
    let count = usize::from(r.u16()?);
    if count > MAX_MEMBERS {
        return Err(MembershipError::TooManyMembers {
            count,
            max: MAX_MEMBERS,
        });
    }
    let mut members: Vec<Member> = Vec::with_capacity(count);
    for _ in 0..count {
        let account = IdentityKey::from_bytes(r.array::<32>()?)?;
        let since = r.u64()?;
        if since == 0 || since > revision {
            return Err(MembershipError::CorruptState(
                "member added after its state",
            ));
        }
        if let Some(previous) = members.last() {
            match previous.account.as_bytes().cmp(account.as_bytes()) {
                core::cmp::Ordering::Less => {}
                core::cmp::Ordering::Equal => {
                    return Err(MembershipError::DuplicateMember(Box::new(account)));
                }
                core::cmp::Ordering::Greater => return Err(MembershipError::MembersOutOfOrder),
            }
        }
        members.push(Member { account, since });
    }
    let mut base = Snapshot {
        revision,
        name,
        members,
        head,
        hash: StateHash::NONE,
    };
    if revision == 0 {
        if base != Snapshot::none() {
            return Err(MembershipError::CorruptState(
                "the state before the group holds nothing",
            ));
        }
    } else {
        base.hash = state_hash(id, &base);
    }
    Ok(base)
}
