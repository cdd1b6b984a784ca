//! Group chats (docs/groups.md): membership changes and sender keys go to
//! each member device through the pairwise sessions, as controls
//! ([`control`]); a group message is encrypted once with this device's
//! sender key and reaches each member device in a sealed envelope of its
//! own, the encrypted message detached beside it ([`message`]).
//!
//! Membership is signed by the account key, so changes are made on the
//! account's primary device; every device of a member reads and writes
//! the group's messages.

mod apply;
pub(crate) mod cache;
pub(crate) mod control;
pub(crate) mod message;

use sotto_core::IdentityKey;
use sotto_core::group::GroupId;
use sotto_core::group::membership::{GroupState, SignedChange};
use sotto_store::{Direction, StoredGroup};

use super::Client;
use super::shared::{Shared, access_key_of, contact_id, now_ms};
use super::types::{ClientEvent, UnreadableRow};
use crate::address::Address;
use crate::error::{Error, Result};
use control::Intro;

/// A group as the app shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupInfo {
    /// The group's id (random; the same for every member).
    pub id: GroupId,
    /// Its name.
    pub name: String,
    /// Its members' accounts, this one's included while it is a member.
    pub members: Vec<Address>,
    /// This account left the group, or was removed: nothing more is sent
    /// to it or read from it.
    pub left: bool,
}

/// A message of a group's history.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupHistoryItem {
    /// Its sequence number in the group's history.
    pub seq: u64,
    /// Who wrote it (this account for our own messages).
    pub author: Option<Address>,
    /// Sent by this account (from any of its devices).
    pub outgoing: bool,
    /// Milliseconds since the Unix epoch (sent or received).
    pub timestamp: u64,
    /// Where an outgoing message stands (`None` for an unreadable row).
    pub state: Option<sotto_store::DeliveryState>,
    /// The plaintext, or why this row could not be read.
    pub body: core::result::Result<Vec<u8>, UnreadableRow>,
}

impl core::fmt::Debug for GroupHistoryItem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GroupHistoryItem")
            .field("seq", &self.seq)
            .field("outgoing", &self.outgoing)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// A group message received (see [`ClientEvent::GroupMessage`]).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IncomingGroupMessage {
    /// The group.
    pub group: GroupId,
    /// The group's name.
    pub group_name: String,
    /// The member who wrote it (this account, for a copy of a message
    /// sent from another of its devices).
    pub from: Address,
    /// Its sequence number in the group's history.
    pub seq: u64,
    /// The plaintext.
    pub body: Vec<u8>,
    /// When it arrived (ms since the Unix epoch).
    pub received_at: u64,
}

impl core::fmt::Debug for IncomingGroupMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IncomingGroupMessage")
            .field("seq", &self.seq)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// A membership change (see [`ClientEvent::GroupChanged`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupChange {
    /// The group.
    pub group: GroupId,
    /// Its name after the change.
    pub name: String,
    /// Who made the change.
    pub by: Address,
    /// Accounts that joined.
    pub added: Vec<Address>,
    /// Accounts that left or were removed.
    pub removed: Vec<Address>,
    /// The group was renamed.
    pub renamed: bool,
    /// This account joined the group with this change (it was added, or
    /// created it).
    pub joined: bool,
    /// This account is no longer a member.
    pub left: bool,
}

/// A group's stored record with its membership state, parsed.
pub(crate) struct Loaded {
    pub(crate) stored: StoredGroup,
    pub(crate) state: GroupState,
}

impl Loaded {
    pub(crate) fn info(&self) -> GroupInfo {
        GroupInfo {
            id: self.stored.id,
            name: self.state.name().to_owned(),
            members: self
                .state
                .members()
                .iter()
                .map(|m| Address::of(&m.account))
                .collect(),
            left: self.stored.left,
        }
    }
}

/// The membership state of a stored group.
pub(crate) fn parse_state(stored: &StoredGroup) -> sotto_store::Result<GroupState> {
    GroupState::from_bytes(&stored.state).map_err(|_| sotto_store::Error::Corrupt {
        table: "groups",
        row: sotto_store::Row::Named("membership state"),
    })
}

/// The accounts of a state's members, sorted.
pub(crate) fn accounts(state: &GroupState) -> Vec<IdentityKey> {
    let mut out: Vec<IdentityKey> = state.members().iter().map(|m| m.account).collect();
    out.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    out
}

impl Client {
    /// Creates a group named `name` with `members` (contacts, by name or
    /// address) and this account, and tells every member device. Needs a
    /// connection (sessions with every member device) and the account's
    /// primary device ([`Error::NotAccountDevice`] elsewhere).
    pub async fn create_group(&self, name: &str, members: &[&str]) -> Result<GroupId> {
        self.require_account_device()?;
        let conn = self.connection()?;
        let accounts = self.member_accounts(members).await?;
        let identity = self.shared.identity.clone();
        let (state, change) = {
            let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
            GroupState::create(&identity, name, &accounts, &mut rng).map_err(Error::Membership)?
        };
        let id = state.id();
        let stored = StoredGroup {
            id,
            state: state.to_bytes(),
            sender_key: None,
            shared_with: Vec::new(),
            left: false,
        };
        self.shared
            .with_store(move |s| s.put_group(&stored))
            .await?;
        let everyone = accounts.clone();
        self.shared
            .send_change(&conn, &state, &change, &everyone, &[])
            .await?;
        self.shared.emit(ClientEvent::GroupChanged(GroupChange {
            group: id,
            name: state.name().to_owned(),
            by: self.address(),
            added: accounts.iter().map(Address::of).collect(),
            removed: Vec::new(),
            renamed: false,
            joined: true,
            left: false,
        }));
        Ok(id)
    }

    /// Adds `members` (contacts, by name or address) to `group` (its name
    /// or id): they get the group's state, every member the change.
    pub async fn add_to_group(&self, group: &str, members: &[&str]) -> Result<()> {
        let accounts = self.member_accounts(members).await?;
        self.change_group(group, move |state, me| state.propose_add(me, &accounts))
            .await
    }

    /// Removes `members` (by name or address) from `group`. Every
    /// remaining member's devices start a new sender key before they send
    /// again, so the removed cannot read what follows.
    pub async fn remove_from_group(&self, group: &str, members: &[&str]) -> Result<()> {
        let accounts = self.member_accounts(members).await?;
        self.change_group(group, move |state, me| state.propose_remove(me, &accounts))
            .await
    }

    /// Leaves `group`: the other members learn it and start new sender
    /// keys; nothing more is sent to this account.
    pub async fn leave_group(&self, group: &str) -> Result<()> {
        self.change_group(group, |state, me| state.propose_leave(me))
            .await
    }

    /// Renames `group`.
    pub async fn rename_group(&self, group: &str, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.change_group(group, move |state, me| state.propose_rename(me, &name))
            .await
    }

    /// Every group this profile knows, by name.
    pub async fn groups(&self) -> Result<Vec<GroupInfo>> {
        let mut out: Vec<GroupInfo> = self
            .shared
            .with_store(|s| {
                let mut out = Vec::new();
                for stored in s.groups()?.into_iter().flatten() {
                    if let Ok(state) = parse_state(&stored) {
                        out.push(Loaded { stored, state }.info());
                    }
                }
                Ok(out)
            })
            .await?;
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The group `group` names (its name, or its id in hex).
    pub async fn group(&self, group: &str) -> Result<GroupInfo> {
        let id = self.resolve_group(group).await?;
        Ok(self.shared.load_group(id).await?.info())
    }

    /// A page of `group`'s history, newest first: up to `limit` messages
    /// before `before` (all, if `None`).
    pub async fn group_history(
        &self,
        group: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<GroupHistoryItem>> {
        let id = self.resolve_group(group).await?;
        self.shared
            .with_store(move |s| {
                let page = s.group_history(&id, before, limit)?;
                Ok(page
                    .entries
                    .into_iter()
                    .map(|e| match e.message {
                        Ok(m) => GroupHistoryItem {
                            seq: e.seq,
                            author: m.author.as_ref().map(Address::of),
                            outgoing: m.direction == Direction::Outgoing,
                            timestamp: m.timestamp,
                            state: Some(m.state),
                            body: Ok(m.body.to_vec()),
                        },
                        Err(err) => GroupHistoryItem {
                            seq: e.seq,
                            author: None,
                            outgoing: false,
                            timestamp: 0,
                            state: None,
                            body: Err(match err {
                                sotto_store::Error::MissingRow { .. } => UnreadableRow::Missing,
                                _ => UnreadableRow::Damaged,
                            }),
                        },
                    })
                    .collect())
            })
            .await
    }

    /// The id of the group `group` names: its id in hex, else the one
    /// group of that name.
    pub(crate) async fn resolve_group(&self, group: &str) -> Result<GroupId> {
        let wanted = group.trim().trim_start_matches('#').to_owned();
        if let Some(id) = parse_group_id(&wanted) {
            return Ok(id);
        }
        let matching: Vec<GroupId> = self
            .groups()
            .await?
            .into_iter()
            .filter(|g| g.name == wanted)
            .map(|g| g.id)
            .collect();
        match matching.as_slice() {
            [id] => Ok(*id),
            [] => Err(Error::UnknownGroup(wanted)),
            _ => Err(Error::AmbiguousGroup(wanted)),
        }
    }

    fn require_account_device(&self) -> Result<()> {
        if *self.shared.identity.public() == self.shared.account {
            Ok(())
        } else {
            Err(Error::NotAccountDevice)
        }
    }

    /// The accounts of `members` (contacts by name or address), each with
    /// a pinned identity; this account is left out.
    async fn member_accounts(&self, members: &[&str]) -> Result<Vec<IdentityKey>> {
        let mut out = Vec::with_capacity(members.len());
        for member in members {
            let contact = self.resolve(member).await?;
            let account = contact
                .identity_key
                .ok_or_else(|| Error::UnknownContact(contact.name.clone()))?;
            if account != self.shared.account && !out.contains(&account) {
                out.push(account);
            }
        }
        Ok(out)
    }

    /// Proposes a change with `propose`, applies it here, and tells every
    /// member before and after it (the added ones get the group's state).
    async fn change_group(
        &self,
        group: &str,
        propose: impl FnOnce(
            &GroupState,
            &sotto_core::IdentityKeyPair,
        ) -> core::result::Result<
            SignedChange,
            sotto_core::group::membership::MembershipError,
        >,
    ) -> Result<()> {
        self.require_account_device()?;
        let conn = self.connection()?;
        let id = self.resolve_group(group).await?;
        let Loaded { stored, mut state } = self.shared.load_group(id).await?;
        if stored.left {
            return Err(Error::NotAGroupMember);
        }
        let before = accounts(&state);
        let change = propose(&state, &self.shared.identity).map_err(Error::Membership)?;
        state
            .apply(&change, &self.shared.account)
            .map_err(Error::Membership)?;
        let after = accounts(&state);
        let added: Vec<IdentityKey> = after
            .iter()
            .filter(|a| !before.contains(a))
            .copied()
            .collect();
        let removed: Vec<IdentityKey> = before
            .iter()
            .filter(|a| !after.contains(a))
            .copied()
            .collect();
        let renamed = matches!(
            change.kind(),
            sotto_core::group::membership::ChangeKind::Rename { .. }
        );
        self.shared
            .store_applied(&self.shared.account, stored, &state, &removed)
            .await?;
        // Everyone who was or is a member hears of it: the removed learn
        // they are out; the added get the state instead.
        let told: Vec<IdentityKey> = before
            .iter()
            .chain(after.iter())
            .filter(|a| **a != self.shared.account && !added.contains(a))
            .copied()
            .collect();
        self.shared
            .send_change(&conn, &state, &change, &told, &added)
            .await?;
        let left = !state.is_member(&self.shared.account);
        self.shared.emit(ClientEvent::GroupChanged(GroupChange {
            group: id,
            name: state.name().to_owned(),
            by: self.address(),
            added: added.iter().map(Address::of).collect(),
            removed: removed.iter().map(Address::of).collect(),
            renamed,
            joined: false,
            left,
        }));
        Ok(())
    }
}

/// A group id written as 64 hex digits.
pub(crate) fn parse_group_id(hex: &str) -> Option<GroupId> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut id = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let digit = |c: u8| char::from(c).to_digit(16);
        id[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(GroupId::from_bytes(id))
}

/// A group id as 64 hex digits.
pub fn group_id_hex(id: &GroupId) -> String {
    id.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

impl Shared {
    /// Group `id`, parsed.
    pub(crate) async fn load_group(&self, id: GroupId) -> Result<Loaded> {
        self.with_store_result(move |s| {
            let Some(stored) = s.group(&id)? else {
                return Ok(Err(Error::UnknownGroup(group_id_hex(&id))));
            };
            let state = parse_state(&stored)?;
            Ok(Ok(Loaded { stored, state }))
        })
        .await
    }

    /// Stores the state a change left: the new membership; after a
    /// removal a new sender key before the next message (the current one
    /// is dropped and nobody holds its successor yet) and the removed
    /// members' devices' receiving states deleted; after our own removal,
    /// the group marked left.
    pub(crate) async fn store_applied(
        &self,
        me: &IdentityKey,
        mut stored: StoredGroup,
        state: &GroupState,
        removed: &[IdentityKey],
    ) -> Result<()> {
        stored.state = state.to_bytes();
        if !removed.is_empty() {
            stored.sender_key = None;
            stored.shared_with.clear();
        }
        if !state.is_member(me) {
            stored.left = true;
            stored.sender_key = None;
        }
        let removed = removed.to_vec();
        let account = *me;
        self.with_store(move |s| {
            s.put_group(&stored)?;
            for gone in removed.iter().filter(|a| **a != account) {
                for device in s
                    .contact_devices(&contact_id(gone))?
                    .map(|l| l.devices().iter().map(|d| d.identity).collect::<Vec<_>>())
                    .unwrap_or_else(|| vec![*gone])
                {
                    s.delete_group_receiver(&stored.id, &device)?;
                }
            }
            Ok(())
        })
        .await
    }

    /// The introductions for a state's members: each member's account
    /// with the access key to write to it (ours for us), for those whose
    /// key we hold.
    async fn intros(&self, state: &GroupState) -> Result<Vec<Intro>> {
        let members = accounts(state);
        let (account, own) = (self.account, self.access_key.clone());
        self.with_store(move |s| {
            let mut out = Vec::with_capacity(members.len());
            for member in members {
                let access_key = if member == account {
                    Some(own.clone())
                } else {
                    access_key_of(s, &contact_id(&member), &member)?
                };
                if let Some(access_key) = access_key {
                    out.push(Intro {
                        account: member,
                        access_key,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    /// Sends `change` to the accounts in `told` and the group's state to
    /// those in `joined`, each through the pairwise sessions with every
    /// one of their devices (our own other devices get copies), then
    /// hands the entries to the relay.
    pub(crate) async fn send_change(
        &self,
        conn: &sotto_relay::RelayClient,
        state: &GroupState,
        change: &SignedChange,
        told: &[IdentityKey],
        joined: &[IdentityKey],
    ) -> Result<()> {
        let intros = self.intros(state).await?;
        let change_bytes = control::change(&change.to_bytes(), &intros);
        let join_bytes = control::join(&state.to_bytes(), &intros);
        for (accounts, body) in [(told, &change_bytes), (joined, &join_bytes)] {
            for account in accounts {
                self.send_group_control(conn, account, body).await?;
            }
        }
        Ok(())
    }

    /// Tells this account's other devices (one just linked) of every group
    /// it is in: each group's state goes, as a join, to one other member,
    /// and the fan-out copies it to our own devices (a member that has the
    /// group ignores it). Our devices get the members' sender keys when
    /// those next write, as any device new to them.
    pub(crate) async fn share_groups_with_own_devices(
        &self,
        conn: &sotto_relay::RelayClient,
    ) -> Result<()> {
        let groups = self
            .with_store(|s| Ok(s.groups()?.into_iter().flatten().collect::<Vec<_>>()))
            .await?;
        for stored in groups.into_iter().filter(|g| !g.left) {
            let Ok(state) = parse_state(&stored) else {
                continue;
            };
            let Some(member) = accounts(&state).into_iter().find(|a| *a != self.account) else {
                continue;
            };
            let intros = self.intros(&state).await?;
            let body = control::join(&state.to_bytes(), &intros);
            self.send_group_control(conn, &member, &body).await?;
        }
        Ok(())
    }

    /// Sends one control to every device of `account` (a contact, made a
    /// nameless one if need be), committing it to the outbox first.
    pub(crate) async fn send_group_control(
        &self,
        conn: &sotto_relay::RelayClient,
        account: &IdentityKey,
        body: &[u8],
    ) -> Result<sotto_store::Outgoing> {
        let id = contact_id(account);
        {
            let (id, account) = (id.clone(), *account);
            self.with_store(move |s| {
                if s.contact(&id)?.is_none() {
                    s.add_contact(&id, "", Some(&account))?;
                }
                Ok(())
            })
            .await?;
        }
        self.ensure_sessions(conn, &id, account).await?;
        let body = body.to_vec();
        let max = usize::MAX;
        let outgoing = {
            let id = id.clone();
            self.with_store(move |s| s.send_control(&id, &body, now_ms(), max))
                .await?
        };
        if let Err(e) = self.flush_conversation(conn, &id).await
            && conn.is_closed()
        {
            return Err(e);
        }
        Ok(outgoing)
    }
}
