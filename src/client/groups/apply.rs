//! Acting on received group controls (docs/groups.md, "Controls").
//!
//! A control waits in the store (the contact's control conversation)
//! from the transaction that decrypted it until it was acted on here and
//! deleted; a crash in between leaves it to be acted on again, which
//! changes nothing the second time (a change applied is `AlreadyApplied`,
//! a sender key known is `AlreadyKnown`). A change that comes ahead of one
//! it builds on stays until the missing one came.

use sotto_core::IdentityKey;
use sotto_core::group::membership::{ChangeKind, GroupState, MembershipError, SignedChange};
use sotto_core::group::{SenderKeyDistribution, SenderKeyReceiver};
use sotto_store::{Control, StoredGroup};

use super::control::{self, Intro};
use super::{GroupChange, Loaded, accounts, parse_state};
use crate::address::Address;
use crate::client::shared::{Shared, contact_id};
use crate::client::types::ClientEvent;
use crate::error::Result;

/// What acting on one control came to.
enum Acted {
    /// Done: delete it.
    Done,
    /// Done, and a sender key was taken: group messages set aside for
    /// want of it may open now.
    KeyTaken,
    /// Not yet (a change ahead of the one it builds on): keep it.
    Later,
}

impl Shared {
    /// Acts on every control waiting from `contact`, oldest first, and
    /// deletes each one acted on. Returns whether a sender key was taken.
    pub(crate) async fn process_controls(&self, contact: &str) -> Result<bool> {
        let id = contact.to_owned();
        let controls = self.with_store(move |s| s.controls(&id)).await?;
        let Ok(address) = contact.parse::<Address>() else {
            return Ok(false);
        };
        // The account as the store has it now: a device linked while this
        // client ran took its account's key then.
        let me = self.with_store(|s| s.account_key()).await?;
        let mut key_taken = false;
        for control in controls {
            let seq = control.seq;
            let acted = match self.act(&me, &address, control).await {
                Ok(acted) => acted,
                Err(e) => {
                    tracing::warn!(error = %e, "group control not acted on; it stays");
                    Acted::Later
                }
            };
            match acted {
                Acted::Later => continue,
                Acted::KeyTaken => key_taken = true,
                Acted::Done => {}
            }
            let id = contact.to_owned();
            self.with_store(move |s| s.delete_control(&id, seq)).await?;
        }
        Ok(key_taken)
    }

    /// Acts on the controls of every contact that has some waiting (after
    /// a restart, or to retry changes that came early).
    pub(crate) async fn process_all_controls(&self) -> Result<bool> {
        let contacts = self.with_store(|s| s.contacts_with_controls()).await?;
        let mut key_taken = false;
        for contact in contacts {
            key_taken |= self.process_controls(&contact).await?;
        }
        Ok(key_taken)
    }

    async fn act(&self, me: &IdentityKey, contact: &Address, control: Control) -> Result<Acted> {
        // The account that sent it: ours for a copy from one of our
        // devices, else the contact's (its session authenticated it).
        let sender = if control.own {
            *me
        } else {
            *contact.identity_key()
        };
        let Some(parsed) = control::parse(&control.body) else {
            tracing::info!("a malformed group control was dropped");
            return Ok(Acted::Done);
        };
        match parsed {
            control::Control::SenderKey(bytes) => {
                self.take_sender_key(&sender, &control.from_device, &bytes)
                    .await
            }
            control::Control::Change { change, intros } => {
                self.introduce(me, &intros).await?;
                self.take_change(me, &sender, &change).await
            }
            control::Control::Join { state, intros } => {
                self.introduce(me, &intros).await?;
                self.take_join(me, &sender, &state).await
            }
            control::Control::Timer { seconds, set_at } => {
                let timer = sotto_store::DisappearingTimer {
                    seconds,
                    set_at,
                    set_by: sender,
                };
                self.take_timer(contact, timer).await?;
                Ok(Acted::Done)
            }
        }
    }

    /// Keeps the sender key of `device` (of account `sender`) for its
    /// group, if `sender` is a member of it here.
    async fn take_sender_key(
        &self,
        sender: &IdentityKey,
        device: &IdentityKey,
        bytes: &[u8],
    ) -> Result<Acted> {
        let Ok(distribution) = SenderKeyDistribution::from_bytes(bytes) else {
            return Ok(Acted::Done);
        };
        let group = *distribution.group_id();
        let cache = self.group_members.clone();
        let members = self
            .with_store(move |s| {
                Ok(match s.group(&group)? {
                    Some(stored) if !stored.left => Some(cache.members(&stored)?),
                    _ => None,
                })
            })
            .await?;
        if !members.is_some_and(|m| m.contains(sender)) {
            tracing::info!("a sender key from someone not in the group was dropped");
            return Ok(Acted::Done);
        }
        let device = *device;
        self.with_store(move |s| {
            let receiver = match s.group_receiver(&group, &device)? {
                Some(bytes) => match SenderKeyReceiver::from_bytes(&bytes) {
                    Ok(mut receiver) => match receiver.process(&distribution) {
                        Ok(_) => receiver,
                        // A conflicting chain: keep what we have.
                        Err(_) => return Ok(()),
                    },
                    Err(_) => SenderKeyReceiver::new(&distribution),
                },
                None => SenderKeyReceiver::new(&distribution),
            };
            s.put_group_receiver(&group, &device, &receiver.to_bytes())
        })
        .await?;
        Ok(Acted::KeyTaken)
    }

    /// Applies a membership change from `sender`.
    async fn take_change(
        &self,
        me: &IdentityKey,
        sender: &IdentityKey,
        bytes: &[u8],
    ) -> Result<Acted> {
        let Ok(change) = SignedChange::from_bytes(bytes) else {
            return Ok(Acted::Done);
        };
        let group = change.group();
        let loaded = self
            .with_store(move |s| {
                Ok(match s.group(&group)? {
                    Some(stored) => {
                        let state = parse_state(&stored)?;
                        Some(Loaded { stored, state })
                    }
                    None => None,
                })
            })
            .await?;
        let Some(Loaded { stored, mut state }) = loaded else {
            // A group new here: only its creation makes it.
            if !matches!(change.kind(), ChangeKind::Create { .. }) {
                return Ok(Acted::Done);
            }
            let Ok(state) = GroupState::from_create(&change, sender) else {
                return Ok(Acted::Done);
            };
            if !state.is_member(me) {
                return Ok(Acted::Done);
            }
            self.joined(me, state, change.author()).await?;
            return Ok(Acted::Done);
        };
        let before = accounts(&state);
        match state.apply(&change, sender) {
            Ok(sotto_core::group::membership::Applied::AlreadyApplied) => return Ok(Acted::Done),
            Ok(_) => {}
            Err(MembershipError::MissingRevisions { .. }) => return Ok(Acted::Later),
            Err(e) => {
                tracing::info!(error = %e, "a group change was refused");
                return Ok(Acted::Done);
            }
        }
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
        let renamed = matches!(change.kind(), ChangeKind::Rename { .. });
        let was_left = stored.left;
        self.store_applied(me, stored, &state, &removed).await?;
        let left = !state.is_member(me);
        self.emit(ClientEvent::GroupChanged(GroupChange {
            group,
            name: state.name().to_owned(),
            by: Address::of(change.author()),
            added: added.iter().map(Address::of).collect(),
            removed: removed.iter().map(Address::of).collect(),
            renamed,
            joined: was_left && !left,
            left,
        }));
        Ok(Acted::Done)
    }

    /// Takes the state of a group this account was added to, from the
    /// member `sender` who added it.
    async fn take_join(
        &self,
        me: &IdentityKey,
        sender: &IdentityKey,
        bytes: &[u8],
    ) -> Result<Acted> {
        let state = match GroupState::join(bytes, sender, me) {
            Ok(s) => s,
            Err(_) => return Ok(Acted::Done),
        };
        let group = state.id();
        let known = self
            .with_store(move |s| Ok(s.group(&group)?.is_some_and(|g| !g.left)))
            .await?;
        if known {
            return Ok(Acted::Done);
        }
        self.joined(me, state, sender).await?;
        Ok(Acted::Done)
    }

    /// Stores a group this account is a member of now, and says so.
    async fn joined(&self, me: &IdentityKey, state: GroupState, by: &IdentityKey) -> Result<()> {
        let stored = StoredGroup {
            id: state.id(),
            state: state.to_bytes(),
            sender_key: None,
            shared_with: Vec::new(),
            left: false,
        };
        self.with_store(move |s| s.put_group(&stored)).await?;
        let me = *me;
        self.emit(ClientEvent::GroupChanged(GroupChange {
            group: state.id(),
            name: state.name().to_owned(),
            by: Address::of(by),
            added: accounts(&state)
                .iter()
                .filter(|a| **a != me)
                .map(Address::of)
                .collect(),
            removed: Vec::new(),
            renamed: false,
            joined: true,
            left: false,
        }));
        Ok(())
    }

    /// Makes each introduced member a (nameless) contact with the access
    /// key to write to it, unless known already.
    async fn introduce(&self, me: &IdentityKey, intros: &[Intro]) -> Result<()> {
        let intros = intros.to_vec();
        let me = *me;
        self.with_store(move |s| {
            for intro in intros.iter().filter(|i| i.account != me) {
                let id = contact_id(&intro.account);
                match s.contact(&id)? {
                    Some(c) if c.identity_key != Some(intro.account) => continue,
                    Some(c) if c.access_key.is_some() => continue,
                    Some(_) => {}
                    None => s.add_contact(&id, "", Some(&intro.account))?,
                }
                s.set_contact_access_key(&id, &intro.account, &intro.access_key)?;
            }
            Ok(())
        })
        .await
    }
}
