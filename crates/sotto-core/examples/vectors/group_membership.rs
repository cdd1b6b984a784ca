//! The `group_membership` section of the vectors (PROTOCOL.md section 15):
//! a group's changes with their bytes and the states they produce,
//! concurrent changes and their winners, and refused changes with the
//! reason.

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use sotto_core::group::GROUP_ID_LEN;
use sotto_core::group::membership::{
    Applied, ChangeKind, GroupState, MembershipError, SignedChange, StateHash,
};
use sotto_core::{IdentityKey, IdentityKeyPair};

use super::{Report, SecretRng, key32, seeded_key};

/// Group membership (PROTOCOL.md section 15).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMembershipVectors {
    pub accounts: Vec<GroupAccountVector>,
    pub group_id: String,
    pub changes: Vec<GroupChangeVector>,
    pub concurrent: Vec<ConcurrentChangesVector>,
    pub invalid: Vec<InvalidChangeVector>,
}

/// An account: its identity seed and account key.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupAccountVector {
    pub identity_seed: String,
    pub account_key: String,
}

/// One change of the group, applied to the state the change before it
/// produced, and that state.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupChangeVector {
    pub description: String,
    pub author: usize,
    pub kind: String,
    pub revision: u64,
    pub parent: String,
    pub name: Option<String>,
    pub members: Vec<usize>,
    pub change: String,
    pub change_hash: String,
    pub state: GroupStateVector,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupStateVector {
    pub revision: u64,
    pub name: String,
    pub members: Vec<GroupMemberVector>,
    pub head: String,
    pub hash: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMemberVector {
    pub account: usize,
    pub since: u64,
}

/// Changes made at once on the state of `changes[state]`: `winner` is the
/// one every member keeps, `result` the hash of the state it produces.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrentChangesVector {
    pub description: String,
    pub state: usize,
    pub changes: Vec<String>,
    pub winner: usize,
    pub result: String,
}

/// A change that the state of `changes[state]` refuses (received from its
/// author), for the reason `error`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidChangeVector {
    pub description: String,
    pub state: usize,
    pub change: String,
    pub error: String,
}

/// The error code of the vectors for a refusal of group membership.
pub fn error_code(e: &MembershipError) -> &'static str {
    match e {
        MembershipError::Truncated { .. } => "truncated",
        MembershipError::TrailingBytes(_) => "trailing_bytes",
        MembershipError::UnsupportedFormat(_) => "unsupported_format",
        MembershipError::UnknownKind(_) => "unknown_kind",
        MembershipError::InvalidIdentityKey => "invalid_key",
        MembershipError::InvalidSignature => "invalid_signature",
        MembershipError::InvalidRevision { .. } => "invalid_revision",
        MembershipError::InvalidName => "invalid_name",
        MembershipError::NameTooLong { .. } => "name_too_long",
        MembershipError::TooManyMembers { .. } => "too_many_members",
        MembershipError::EmptyMemberList => "empty",
        MembershipError::DuplicateMember(_) => "duplicate_member",
        MembershipError::MembersOutOfOrder => "members_out_of_order",
        MembershipError::AuthorListed => "author_listed",
        MembershipError::WrongGroup => "wrong_group",
        MembershipError::AuthorNotMember => "author_not_member",
        MembershipError::AlreadyMember(_) => "already_member",
        MembershipError::NotMember(_) => "not_member",
        MembershipError::NameUnchanged => "name_unchanged",
        MembershipError::MissingRevisions { .. } => "missing_revisions",
        MembershipError::UnknownParent { .. } => "unknown_parent",
        MembershipError::ConflictingCreate => "conflicting_create",
        _ => "other",
    }
}

fn kind_name(kind: &ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Create { .. } => "create",
        ChangeKind::Add { .. } => "add",
        ChangeKind::Remove { .. } => "remove",
        ChangeKind::Leave => "leave",
        ChangeKind::Rename { .. } => "rename",
        _ => "other",
    }
}

/// The accounts of the vectors, the last of them never a member.
const ACCOUNTS: usize = 6;
/// Index of each account in `accounts`.
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const D: usize = 3;
const E: usize = 4;
const OUTSIDER: usize = 5;

/// One step of the group's history.
enum Step {
    Create(usize, String, Vec<usize>),
    Add(usize, Vec<usize>),
    Remove(usize, Vec<usize>),
    Leave(usize),
    Rename(usize, String),
}

struct World {
    keys: Vec<IdentityKeyPair>,
}

impl World {
    fn key(&self, i: usize) -> IdentityKey {
        *self.keys[i].public()
    }

    fn index(&self, key: &IdentityKey) -> Result<usize, String> {
        self.keys
            .iter()
            .position(|k| k.public() == key)
            .ok_or_else(|| "an account not in the vectors".to_string())
    }

    fn indices(&self, keys: &[IdentityKey]) -> Result<Vec<usize>, String> {
        keys.iter().map(|k| self.index(k)).collect()
    }

    fn state_vector(&self, state: &GroupState) -> Result<GroupStateVector, String> {
        Ok(GroupStateVector {
            revision: state.revision(),
            name: state.name().to_owned(),
            members: state
                .members()
                .iter()
                .map(|m| {
                    Ok(GroupMemberVector {
                        account: self.index(&m.account)?,
                        since: m.since,
                    })
                })
                .collect::<Result<_, String>>()?,
            head: hex::encode(state.head().as_bytes()),
            hash: hex::encode(state.hash().as_bytes()),
        })
    }

    fn change_vector(
        &self,
        description: &str,
        change: &SignedChange,
        state: &GroupState,
    ) -> Result<GroupChangeVector, String> {
        let (name, members) = match change.kind() {
            ChangeKind::Create { name, members } => (Some(name.clone()), self.indices(members)?),
            ChangeKind::Add { members } | ChangeKind::Remove { members } => {
                (None, self.indices(members)?)
            }
            ChangeKind::Rename { name } => (Some(name.clone()), Vec::new()),
            _ => (None, Vec::new()),
        };
        Ok(GroupChangeVector {
            description: description.into(),
            author: self.index(change.author())?,
            kind: kind_name(change.kind()).into(),
            revision: change.revision(),
            parent: hex::encode(change.parent().as_bytes()),
            name,
            members,
            change: hex::encode(change.to_bytes()),
            change_hash: hex::encode(change.hash().as_bytes()),
            state: self.state_vector(state)?,
        })
    }
}

/// Where a change's author key starts: after the format, the kind, the
/// group id, the revision and the parent (docs/protocol.md 15.2).
const AUTHOR_AT: usize = 1 + 1 + GROUP_ID_LEN + 8 + 32;

/// A change as anyone can build it, rules or not: the fields given,
/// signed by `signer` over `"sotto/group-change/v1" || unsigned`.
#[allow(clippy::too_many_arguments)]
fn raw_change(
    signer: &IdentityKeyPair,
    format: u8,
    kind: u8,
    group: &[u8; GROUP_ID_LEN],
    revision: u64,
    parent: &[u8; 32],
    author: &[u8; 32],
    body: &[u8],
) -> Vec<u8> {
    let mut bytes = vec![format, kind];
    bytes.extend_from_slice(group);
    bytes.extend_from_slice(&revision.to_be_bytes());
    bytes.extend_from_slice(parent);
    bytes.extend_from_slice(author);
    bytes.extend_from_slice(body);
    let mut message = b"sotto/group-change/v1".to_vec();
    message.extend_from_slice(&bytes);
    bytes.extend_from_slice(signer.sign(&message).as_bytes());
    bytes
}

fn accounts_body(accounts: &[[u8; 32]]) -> Vec<u8> {
    let mut body = u16::try_from(accounts.len())
        .unwrap_or(u16::MAX)
        .to_be_bytes()
        .to_vec();
    for a in accounts {
        body.extend_from_slice(a);
    }
    body
}

fn name_body(name: &[u8]) -> Vec<u8> {
    let mut body = vec![u8::try_from(name.len()).unwrap_or(u8::MAX)];
    body.extend_from_slice(name);
    body
}

/// Proposes `step` on `state` (`None` before the create).
fn propose(
    w: &World,
    state: Option<&GroupState>,
    step: &Step,
    group_id: [u8; GROUP_ID_LEN],
) -> Result<(GroupState, SignedChange), String> {
    let e = |e: MembershipError| e.to_string();
    let keys = |list: &[usize]| list.iter().map(|&i| w.key(i)).collect::<Vec<_>>();
    let (Some(state), step) = (state, step) else {
        let Step::Create(author, name, members) = step else {
            return Err("the first step is a create".into());
        };
        let mut rng = SecretRng {
            secret: Some(group_id),
            bad_draws: 0,
        };
        let made =
            GroupState::create(&w.keys[*author], name, &keys(members), &mut rng).map_err(e)?;
        if rng.bad_draws != 0 || rng.secret.is_some() {
            return Err("a group id is exactly one 32-byte draw".into());
        }
        return Ok(made);
    };
    let change = match step {
        Step::Create(..) => return Err("one create per group".into()),
        Step::Add(author, members) => state.propose_add(&w.keys[*author], &keys(members)),
        Step::Remove(author, members) => state.propose_remove(&w.keys[*author], &keys(members)),
        Step::Leave(author) => state.propose_leave(&w.keys[*author]),
        Step::Rename(author, name) => state.propose_rename(&w.keys[*author], name),
    }
    .map_err(e)?;
    let mut next = state.clone();
    match next.apply(&change, change.author()).map_err(e)? {
        Applied::Advanced { .. } => Ok((next, change)),
        other => Err(format!("a change on the state held: {other:?}")),
    }
}

pub fn generate() -> Result<GroupMembershipVectors, String> {
    let mut rng = ChaCha20Rng::from_seed([60; 32]);
    let seeds: Vec<[u8; 32]> = (0..ACCOUNTS).map(|_| seeded_key(&mut rng)).collect();
    let mut group_id = [0u8; GROUP_ID_LEN];
    rand_core::Rng::fill_bytes(&mut rng, &mut group_id);
    let w = World {
        keys: seeds.iter().map(IdentityKeyPair::from_seed).collect(),
    };
    let steps = [
        (
            "A creates the group with B and C",
            Step::Create(A, "climbing trip".into(), vec![C, B]),
        ),
        ("B adds D and E", Step::Add(B, vec![E, D])),
        ("A removes C", Step::Remove(A, vec![C])),
        (
            "D renames the group (UTF-8 beyond ASCII)",
            Step::Rename(D, "Bouldering · Été".into()),
        ),
        ("B leaves", Step::Leave(B)),
        ("E removes everyone else", Step::Remove(E, vec![A, D])),
        ("E, the last member, leaves: the group ends", Step::Leave(E)),
    ];
    let mut states: Vec<GroupState> = Vec::new();
    let mut changes = Vec::new();
    for (description, step) in &steps {
        let (state, change) = propose(&w, states.last(), step, group_id)?;
        changes.push(w.change_vector(description, &change, &state)?);
        states.push(state);
    }

    // Concurrent changes on the state after B left: A (member since 1),
    // D and E (since 2).
    let at = 4;
    let on = &states[at];
    let e = |e: MembershipError| e.to_string();
    let race = |description: &str,
                first: SignedChange,
                second: SignedChange|
     -> Result<ConcurrentChangesVector, String> {
        let mut one = on.clone();
        one.apply(&first, first.author()).map_err(e)?;
        let _ = one.apply(&second, second.author());
        let winner = if one.head() == first.hash() { 0 } else { 1 };
        Ok(ConcurrentChangesVector {
            description: description.into(),
            state: at,
            changes: vec![
                hex::encode(first.to_bytes()),
                hex::encode(second.to_bytes()),
            ],
            winner,
            result: hex::encode(one.hash().as_bytes()),
        })
    };
    let concurrent = vec![
        race(
            "A (a member since revision 1) renames, D (since 2) removes A: A's change wins",
            on.propose_remove(&w.keys[D], &[w.key(A)]).map_err(e)?,
            on.propose_rename(&w.keys[A], "A's name").map_err(e)?,
        )?,
        race(
            "D and E (both since revision 2) rename: the smaller account key wins",
            on.propose_rename(&w.keys[D], "D's name").map_err(e)?,
            on.propose_rename(&w.keys[E], "E's name").map_err(e)?,
        )?,
        race(
            "A makes two changes on one state: the smaller change hash wins",
            on.propose_rename(&w.keys[A], "one").map_err(e)?,
            on.propose_add(&w.keys[A], &[w.key(C)]).map_err(e)?,
        )?,
    ];

    let invalid = invalid_changes(&w, &states, group_id)?;
    Ok(GroupMembershipVectors {
        accounts: seeds
            .iter()
            .zip(&w.keys)
            .map(|(seed, key)| GroupAccountVector {
                identity_seed: hex::encode(seed),
                account_key: hex::encode(key.public().as_bytes()),
            })
            .collect(),
        group_id: hex::encode(group_id),
        changes,
        concurrent,
        invalid,
    })
}

/// One refusal per rule, on the state after A removed C (A, B, D, E are
/// members; C was, the outsider never was).
fn invalid_changes(
    w: &World,
    states: &[GroupState],
    group_id: [u8; GROUP_ID_LEN],
) -> Result<Vec<InvalidChangeVector>, String> {
    let at = 2;
    let state = &states[at];
    let parent = *state.hash().as_bytes();
    let next = state.revision() + 1;
    let key = |i: usize| w.key(i).to_bytes();
    let mut sorted = [key(D), key(E)];
    sorted.sort();
    // A change by `author` of `kind` with `body` on the state, signed.
    let by = |author: usize, kind: u8, body: &[u8]| {
        raw_change(
            &w.keys[author],
            0x01,
            kind,
            &group_id,
            next,
            &parent,
            &key(author),
            body,
        )
    };
    let genuine = by(B, 0x05, &name_body(b"renamed"));
    let mut flipped = genuine.clone();
    if let Some(last) = flipped.last_mut() {
        *last ^= 0x01;
    }
    let mut longer = genuine.clone();
    longer.push(0x00);
    let mut identity_point = [0u8; 32];
    identity_point[0] = 1;
    let with = |at: usize, bytes: &[u8]| {
        let mut out = genuine.clone();
        out[at..at + bytes.len()].copy_from_slice(bytes);
        out
    };
    let mut other_group = group_id;
    other_group[0] ^= 0x01;
    let list: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "signed by another key in B's name",
            raw_change(
                &w.keys[OUTSIDER],
                0x01,
                0x05,
                &group_id,
                next,
                &parent,
                &key(B),
                &name_body(b"renamed"),
            ),
            "invalid_signature",
        ),
        (
            "the last bit of the signature flipped",
            flipped,
            "invalid_signature",
        ),
        (
            "C, removed, renames the group",
            by(C, 0x05, &name_body(b"renamed")),
            "author_not_member",
        ),
        (
            "an account that never was a member adds C",
            by(OUTSIDER, 0x02, &accounts_body(&[key(C)])),
            "author_not_member",
        ),
        (
            "an add of a member",
            by(B, 0x02, &accounts_body(&[key(D)])),
            "already_member",
        ),
        (
            "a remove of an account that is no longer a member",
            by(B, 0x03, &accounts_body(&[key(C)])),
            "not_member",
        ),
        (
            "a rename to the group's name",
            by(B, 0x05, &name_body(b"climbing trip")),
            "name_unchanged",
        ),
        (
            "a remove listing its author (a member leaves with a leave)",
            by(B, 0x03, &accounts_body(&[key(B)])),
            "author_listed",
        ),
        (
            "accounts out of order",
            by(A, 0x03, &accounts_body(&[sorted[1], sorted[0]])),
            "members_out_of_order",
        ),
        (
            "an account listed twice",
            by(A, 0x03, &accounts_body(&[sorted[0], sorted[0]])),
            "duplicate_member",
        ),
        (
            "an add of nobody",
            by(A, 0x02, &accounts_body(&[])),
            "empty",
        ),
        (
            "an add of 1001 accounts",
            by(A, 0x02, &1001u16.to_be_bytes()),
            "too_many_members",
        ),
        (
            "a name of 129 bytes",
            by(A, 0x05, &name_body(&[b'a'; 129])),
            "name_too_long",
        ),
        (
            "a name that is not UTF-8",
            by(A, 0x05, &name_body(&[0xc3, 0x28])),
            "invalid_name",
        ),
        ("format 0x02", with(0, &[0x02]), "unsupported_format"),
        ("kind 0x06", with(1, &[0x06]), "unknown_kind"),
        (
            "a create of revision 4",
            with(1, &[0x01]),
            "invalid_revision",
        ),
        (
            "an author key of small order",
            with(AUTHOR_AT, &identity_point),
            "invalid_key",
        ),
        (
            "a byte short",
            genuine[..genuine.len() - 1].to_vec(),
            "truncated",
        ),
        ("a byte after the signature", longer, "trailing_bytes"),
        (
            "revision 5 on a state of revision 3",
            raw_change(
                &w.keys[B],
                0x01,
                0x05,
                &group_id,
                next + 1,
                &[0x11; 32],
                &key(B),
                &name_body(b"later"),
            ),
            "missing_revisions",
        ),
        (
            "revision 4 naming a parent other than the state of revision 3",
            raw_change(
                &w.keys[B],
                0x01,
                0x05,
                &group_id,
                next,
                states[1].hash().as_bytes(),
                &key(B),
                &name_body(b"elsewhere"),
            ),
            "unknown_parent",
        ),
        (
            "a change of another group",
            raw_change(
                &w.keys[B],
                0x01,
                0x05,
                &other_group,
                next,
                &parent,
                &key(B),
                &name_body(b"renamed"),
            ),
            "wrong_group",
        ),
        (
            "another create of the group, by a member",
            raw_change(
                &w.keys[B],
                0x01,
                0x01,
                &group_id,
                1,
                StateHash::NONE.as_bytes(),
                &key(B),
                &[name_body(b"mine"), accounts_body(&[])].concat(),
            ),
            "conflicting_create",
        ),
    ];
    let mut out = Vec::new();
    for (description, bytes, code) in list {
        let got = refusal(state, &bytes);
        if got != Some(code) {
            return Err(format!(
                "invalid change {description:?}: refused as {got:?}, meant {code}"
            ));
        }
        out.push(InvalidChangeVector {
            description: description.into(),
            state: at,
            change: hex::encode(bytes),
            error: code.into(),
        });
    }
    Ok(out)
}

/// The code `state` refuses `bytes` with (received from its author), or
/// `None` when it takes them.
fn refusal(state: &GroupState, bytes: &[u8]) -> Option<&'static str> {
    let got = SignedChange::from_bytes(bytes).and_then(|change| {
        let mut copy = state.clone();
        copy.apply(&change, change.author())
    });
    got.err().map(|e| error_code(&e))
}

// ------------------------------------------------------------------ check

pub fn check(v: &GroupMembershipVectors, report: &mut Report) {
    if let Err(e) = check_all(v, report) {
        report.fail(format!("group_membership: {e}"));
    }
}

fn check_all(v: &GroupMembershipVectors, report: &mut Report) -> Result<(), String> {
    let mut keys = Vec::new();
    for (i, a) in v.accounts.iter().enumerate() {
        let key = IdentityKeyPair::from_seed(&key32(&a.identity_seed)?);
        report.check(
            hex::encode(key.public().as_bytes()) == a.account_key,
            || format!("group_membership.accounts[{i}]: account key differs"),
        );
        keys.push(key);
    }
    let w = World { keys };
    let group_id: [u8; GROUP_ID_LEN] = hex::decode(&v.group_id)
        .map_err(|e| e.to_string())?
        .try_into()
        .map_err(|_| "group id of another length".to_string())?;
    let mut states: Vec<GroupState> = Vec::new();
    for (i, c) in v.changes.iter().enumerate() {
        let what = || format!("group_membership.changes[{i}] ({})", c.description);
        let step = step_of(c)?;
        let (state, change) =
            propose(&w, states.last(), &step, group_id).map_err(|e| format!("{}: {e}", what()))?;
        report.check(hex::encode(change.to_bytes()) == c.change, || {
            format!("{}: change bytes differ", what())
        });
        report.check(
            hex::encode(change.hash().as_bytes()) == c.change_hash,
            || format!("{}: change hash differs", what()),
        );
        report.check(
            change.revision() == c.revision && hex::encode(change.parent().as_bytes()) == c.parent,
            || format!("{}: revision or parent differs", what()),
        );
        let file_bytes = hex::decode(&c.change).map_err(|e| e.to_string())?;
        let decoded = SignedChange::from_bytes(&file_bytes);
        report.check(decoded.as_ref() == Ok(&change), || {
            format!("{}: the file's change decodes to {decoded:?}", what())
        });
        let expected = w.state_vector(&state)?;
        let s = &c.state;
        report.check(
            expected.revision == s.revision
                && expected.name == s.name
                && expected.head == s.head
                && expected.hash == s.hash
                && expected.members.len() == s.members.len()
                && expected
                    .members
                    .iter()
                    .zip(&s.members)
                    .all(|(a, b)| a.account == b.account && a.since == b.since),
            || format!("{}: the state differs", what()),
        );
        // The file's change, applied by a member who had the state before;
        // with any one byte flipped, refused.
        if let (Some(before), Ok(decoded)) = (states.last(), &decoded) {
            let mut copy = before.clone();
            let applied = copy.apply(decoded, decoded.author());
            report.check(
                matches!(applied, Ok(Applied::Advanced { .. })) && copy.hash() == state.hash(),
                || format!("{}: applying the file's change gives {applied:?}", what()),
            );
            for at in 0..file_bytes.len() {
                let mut bad = file_bytes.clone();
                bad[at] ^= 0x01;
                report.check(refusal(before, &bad).is_some(), || {
                    format!("{}: taken with byte {at} flipped", what())
                });
            }
        }
        states.push(state);
    }
    for (i, r) in v.concurrent.iter().enumerate() {
        let what = format!("group_membership.concurrent[{i}] ({})", r.description);
        let state = states
            .get(r.state)
            .ok_or_else(|| format!("{what}: no state {}", r.state))?;
        let changes = r
            .changes
            .iter()
            .map(|h| {
                let bytes = hex::decode(h).map_err(|e| e.to_string())?;
                SignedChange::from_bytes(&bytes).map_err(|e| format!("{what}: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        // Every arrival order ends in the same state: the winner's.
        for order in [[0usize, 1], [1, 0]] {
            let mut copy = state.clone();
            for &k in &order {
                if let Some(change) = changes.get(k) {
                    let _ = copy.apply(change, change.author());
                }
            }
            let winner = changes.get(r.winner).map(SignedChange::hash);
            report.check(
                Some(copy.head()) == winner && hex::encode(copy.hash().as_bytes()) == r.result,
                || format!("{what}: order {order:?} keeps another change or state"),
            );
        }
    }
    for (i, r) in v.invalid.iter().enumerate() {
        let what = format!("group_membership.invalid[{i}] ({})", r.description);
        let state = states
            .get(r.state)
            .ok_or_else(|| format!("{what}: no state {}", r.state))?;
        let bytes = hex::decode(&r.change).map_err(|e| e.to_string())?;
        let got = refusal(state, &bytes);
        report.check(got == Some(r.error.as_str()), || {
            format!("{what}: refused as {got:?}, file says {}", r.error)
        });
    }
    Ok(())
}

/// The step a change vector describes, from its fields.
fn step_of(c: &GroupChangeVector) -> Result<Step, String> {
    if c.author >= ACCOUNTS || c.members.iter().any(|&m| m >= ACCOUNTS) {
        return Err(format!("{}: an account index out of range", c.description));
    }
    let name = || {
        c.name
            .clone()
            .ok_or_else(|| "a name is missing".to_string())
    };
    Ok(match c.kind.as_str() {
        "create" => Step::Create(c.author, name()?, c.members.clone()),
        "add" => Step::Add(c.author, c.members.clone()),
        "remove" => Step::Remove(c.author, c.members.clone()),
        "leave" => Step::Leave(c.author),
        "rename" => Step::Rename(c.author, name()?),
        other => return Err(format!("unknown kind {other:?}")),
    })
}
