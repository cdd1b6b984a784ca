//! Group messages: encrypted once with this device's sender key, sealed
//! once more under a fresh body key (so the relay sees neither the group
//! nor the sender key's chain), and sent to each member device in a
//! sealed envelope of its own that carries the body key and the blob's
//! digest (payload kind 0x0D), the blob beside it.

use std::sync::Arc;

use sotto_core::group::{GroupError, GroupId, GroupMessage, SenderKey, SenderKeyReceiver};
use sotto_core::{BodyKey, BodyReference, IdentityKey, IdentityKeyPair};
use sotto_relay::{ErrorCode, MailboxAddress, MultiRecipient, RecipientOutcome, RelayClient};
use sotto_store::{
    EnvelopeId, GroupOutboxEntry, GroupReceive, GroupRecipient, PeerDevice, Received, SendFailure,
    Store,
};

use super::IncomingGroupMessage;
use crate::address::Address;
use crate::client::Client;
use crate::client::receive::Outcome;
use crate::client::shared::{Shared, access_key_of, contact_id, now_ms};
use crate::client::types::{DropReason, SendStatus, Sent};
use crate::error::{Error, Result};
use crate::payload;

impl Client {
    /// Sends `text` to `group` (its name or id): encrypted once with this
    /// device's sender key and committed to the store (history `Pending`,
    /// the group outbox) before it goes to each member device and to this
    /// account's other devices. Members' devices that do not hold this
    /// device's current sender key get it first, through their pairwise
    /// sessions (which needs a connection the first time).
    pub async fn send_to_group(&self, group: &str, text: &[u8]) -> Result<Sent> {
        let id = self.resolve_group(group).await?;
        let shared = &self.shared;
        let members = shared.group_members_of(id).await?;
        let conn = shared.live_connection();
        if let Some(conn) = &conn {
            for account in members.accounts.iter().filter(|a| **a != shared.account) {
                shared.ensure_member(conn, account).await?;
            }
        }
        let recipients = shared.recipients(&members.accounts).await?;
        shared
            .share_sender_key(conn.as_deref(), id, &recipients)
            .await?;

        let (account, body) = (shared.account, text.to_vec());
        let entry = shared
            .with_store(move |s| encrypt_and_store(s, id, &account, &body, recipients))
            .await?;
        let seq = entry.seq;
        let Some(conn) = shared.live_connection() else {
            return Ok(Sent {
                seq,
                status: SendStatus::Queued,
            });
        };
        let status = match shared.deliver_group(&conn, entry).await {
            Ok(true) => SendStatus::Accepted,
            Ok(false) => {
                shared.hold_outbox(true);
                SendStatus::Queued
            }
            Err(_) => SendStatus::Queued,
        };
        Ok(Sent { seq, status })
    }
}

/// Encrypts `body` with our sender key for group `id` and stores the
/// message, the advanced key and the outbox entry in one transaction,
/// all under the store's lock: two sends never use one message key.
fn encrypt_and_store(
    s: &mut Store,
    id: GroupId,
    account: &IdentityKey,
    body: &[u8],
    recipients: Vec<GroupRecipient>,
) -> sotto_store::Result<GroupOutboxEntry> {
    let stored = s.group(&id)?.ok_or(sotto_store::Error::NoSuchGroup)?;
    let corrupt = || sotto_store::Error::Corrupt {
        table: "groups",
        row: sotto_store::Row::Named("sender key"),
    };
    let bytes = stored.sender_key.as_ref().ok_or_else(corrupt)?;
    let mut key = SenderKey::from_bytes(bytes).map_err(|_| corrupt())?;
    let message = key.encrypt(body).map_err(|_| sotto_store::Error::TooLong {
        what: "group message",
        len: body.len(),
        max: sotto_core::pad::MAX_PLAINTEXT_LEN,
    })?;
    let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
    let body_key = BodyKey::generate(&mut rng);
    let blob: Arc<[u8]> = body_key.seal(&message)?.into();
    s.send_group_message(sotto_store::GroupSend {
        group: id,
        sender_key: &key.to_bytes(),
        author: account,
        body,
        sent_at: now_ms(),
        body_key,
        blob,
        recipients,
    })
}

impl Shared {
    /// The members and name of group `id`, which this account must still
    /// be in ([`Error::NotAGroupMember`]).
    pub(crate) async fn group_members_of(
        &self,
        id: GroupId,
    ) -> Result<std::sync::Arc<super::cache::Members>> {
        let (account, cache) = (self.account, self.group_members.clone());
        self.with_store_result(move |s| {
            let Some(stored) = s.group(&id)? else {
                return Ok(Err(Error::UnknownGroup(super::group_id_hex(&id))));
            };
            let members = cache.members(&stored)?;
            if stored.left || !members.contains(&account) {
                return Ok(Err(Error::NotAGroupMember));
            }
            Ok(Ok(members))
        })
        .await
    }

    /// Makes sure `account` is a contact here (nameless if need be) with
    /// sessions with each of its devices.
    pub(crate) async fn ensure_member(
        &self,
        conn: &RelayClient,
        account: &IdentityKey,
    ) -> Result<()> {
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
        self.ensure_sessions(conn, &id, account).await
    }

    /// Every device a group message goes to: each device of each other
    /// member, and our own other devices.
    async fn recipients(&self, members: &[IdentityKey]) -> Result<Vec<GroupRecipient>> {
        let members = members.to_vec();
        let (me, my_device) = (self.account, *self.identity.public());
        self.with_store(move |s| {
            let mut out = Vec::new();
            for member in members.iter().filter(|m| **m != me) {
                for (device, key) in s.message_targets(&contact_id(member))? {
                    if !device.is_own() {
                        out.push(GroupRecipient {
                            device: key,
                            account: *member,
                        });
                    }
                }
            }
            if let Some(list) = s.own_devices()? {
                for device in list.devices() {
                    if device.identity != my_device {
                        out.push(GroupRecipient {
                            device: device.identity,
                            account: me,
                        });
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Makes sure every recipient holds our current sender key for group
    /// `id`: makes one if there is none (a new group, or after a member
    /// left), then sends its distribution through the pairwise sessions
    /// to each member whose devices do not all hold it.
    async fn share_sender_key(
        &self,
        conn: Option<&RelayClient>,
        id: GroupId,
        recipients: &[GroupRecipient],
    ) -> Result<()> {
        // A new key is stored before anything is sent under it.
        let stored = self
            .with_store(move |s| {
                let mut stored = s.group(&id)?.ok_or(sotto_store::Error::NoSuchGroup)?;
                if stored.sender_key.is_none() {
                    let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
                    stored.sender_key = Some(SenderKey::generate(id, &mut rng).to_bytes());
                    stored.shared_with.clear();
                    s.put_group(&stored)?;
                }
                Ok(stored)
            })
            .await?;
        let missing: Vec<&GroupRecipient> = recipients
            .iter()
            .filter(|r| !stored.shared_with.contains(&r.device))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let conn = conn.ok_or(Error::NotConnected)?;
        let distribution = {
            let bytes = stored.sender_key.as_ref().ok_or(Error::NotAGroupMember)?;
            let key = SenderKey::from_bytes(bytes).map_err(|_| {
                Error::Store(sotto_store::Error::Corrupt {
                    table: "groups",
                    row: sotto_store::Row::Named("sender key"),
                })
            })?;
            super::control::sender_key(&*key.distribution().to_bytes())
        };
        // To each member account with a device that lacks it; our own
        // devices get copies of those (or, when only they lack it, of one
        // sent to any member).
        let mut accounts: Vec<IdentityKey> = missing
            .iter()
            .filter(|r| r.account != self.account)
            .map(|r| r.account)
            .collect();
        accounts.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        accounts.dedup();
        if accounts.is_empty()
            && let Some(any) = recipients.iter().find(|r| r.account != self.account)
        {
            accounts.push(any.account);
        }
        let mut shared_with = stored.shared_with.clone();
        for account in &accounts {
            self.send_group_control(conn, account, &distribution)
                .await?;
            shared_with.extend(
                recipients
                    .iter()
                    .filter(|r| r.account == *account || r.account == self.account)
                    .map(|r| r.device),
            );
        }
        shared_with.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        shared_with.dedup();
        self.with_store(move |s| {
            if let Some(mut group) = s.group(&id)? {
                group.shared_with = shared_with;
                s.put_group(&group)?;
            }
            Ok(())
        })
        .await
    }

    /// Hands a group message to the relay for each recipient left (in one
    /// request per thousand recipients when the relay takes several at
    /// once, the blob uploaded once per request), and records who took
    /// it. Returns false when some recipient refused it for now (it stays
    /// in the group outbox).
    pub(crate) async fn deliver_group(
        &self,
        conn: &RelayClient,
        entry: GroupOutboxEntry,
    ) -> Result<bool> {
        let reference = BodyReference::new(&entry.body_key, &entry.blob)
            .map_err(|e| Error::Store(sotto_store::Error::Protocol(e)))?;
        let reference = reference.to_bytes();
        // The access key to present for each member account, read at once.
        let access_keys = {
            let (me, own) = (self.account, self.access_key.clone());
            let mut accounts: Vec<IdentityKey> =
                entry.recipients.iter().map(|r| r.account).collect();
            accounts.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            accounts.dedup();
            self.with_store(move |s| {
                let mut keys = std::collections::HashMap::new();
                for account in accounts {
                    let key = if account == me {
                        Some(own.clone())
                    } else {
                        access_key_of(s, &contact_id(&account), &account)?
                    };
                    keys.insert(*account.as_bytes(), key);
                }
                Ok(keys)
            })
            .await?
        };
        let mut sends = Vec::with_capacity(entry.recipients.len());
        for recipient in &entry.recipients {
            let access = access_keys
                .get(recipient.account.as_bytes())
                .cloned()
                .flatten();
            let payload = payload::encode_device_message(
                payload::KIND_GROUP_MESSAGE,
                entry.id.as_bytes(),
                now_ms(),
                &self.access_key,
                (&self.account, self.device_id),
                &recipient.account,
                &*reference,
            );
            let static_shared = self.static_secret(&recipient.device)?;
            let sealed = payload::seal_with(&self.identity, &static_shared, &payload)?;
            // The envelope is this header and then the blob.
            let header = payload::frame_detached(&sealed, &[]);
            sends.push(MultiRecipient::new(
                MailboxAddress::of(&recipient.device),
                payload::relay_message_id(&header),
                access,
                header,
            ));
        }
        let outcomes = if conn.supports_send_multi() {
            self.send_multi(conn, &entry.blob, &sends).await?
        } else {
            let mut outcomes = Vec::with_capacity(sends.len());
            for send in &sends {
                let mut envelope = send.header.clone();
                envelope.extend_from_slice(&entry.blob);
                outcomes.push(
                    match conn
                        .send(
                            &send.address,
                            send.message_id,
                            send.access_key.as_ref(),
                            &envelope,
                        )
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(_) if conn.is_closed() => return Err(Error::NotConnected),
                        Err(e) => Err(e),
                    },
                );
            }
            outcomes
        };
        let mut taken = Vec::new();
        let mut refused = Vec::new();
        let mut all = true;
        for (recipient, outcome) in entry.recipients.iter().zip(outcomes) {
            match outcome {
                Ok(()) => taken.push(recipient.device),
                Err(e) => match classify(&e) {
                    Some(reason) => refused.push((recipient.device, reason)),
                    None => {
                        tracing::info!(error = %e, "a group message was refused for now");
                        all = false;
                    }
                },
            }
        }
        let id = entry.id;
        self.with_store(move |s| {
            s.group_message_taken(&id, &taken)?;
            for (device, reason) in refused {
                s.group_message_refused(&id, &[device], reason)?;
            }
            Ok(())
        })
        .await?;
        Ok(all)
    }

    /// Sends `blob` to every recipient in `sends` with as few `SendMulti`
    /// requests as the relay's limits allow; one outcome per recipient,
    /// in order (a refusal as the error a single send would have had).
    async fn send_multi(
        &self,
        conn: &RelayClient,
        blob: &[u8],
        sends: &[MultiRecipient],
    ) -> Result<Vec<core::result::Result<(), sotto_relay::ClientError>>> {
        let max_frame = usize::try_from(self.max_frame.load(std::sync::atomic::Ordering::Relaxed))
            .ok()
            .filter(|f| *f > 0)
            .unwrap_or(sotto_relay::protocol::DEFAULT_MAX_FRAME_SIZE as usize);
        let mut outcomes = Vec::with_capacity(sends.len());
        let mut rest = sends;
        while !rest.is_empty() {
            let mut n = rest.len().min(sotto_relay::protocol::MAX_MULTI_RECIPIENTS);
            while n > 1
                && sotto_relay::protocol::send_multi_frame_len(blob.len(), &rest[..n]) > max_frame
            {
                n /= 2;
            }
            let (batch, tail) = rest.split_at(n);
            rest = tail;
            let answers = match conn.send_multi(blob, batch).await {
                Ok(answers) => answers,
                Err(_) if conn.is_closed() => return Err(Error::NotConnected),
                Err(e) => {
                    // The whole request refused (too large for one frame
                    // with a single recipient, say): each fares the same.
                    let code = e.code();
                    batch
                        .iter()
                        .map(|_| {
                            RecipientOutcome::Refused(code.unwrap_or(ErrorCode::FrameTooLarge))
                        })
                        .collect()
                }
            };
            for answer in answers {
                outcomes.push(match answer {
                    RecipientOutcome::Refused(code) => Err(sotto_relay::ClientError::Server {
                        code,
                        message: String::new(),
                    }),
                    _ => Ok(()),
                });
            }
        }
        Ok(outcomes)
    }

    /// Hands every group message still waiting to the relay. Returns
    /// false when some recipient refused one for now.
    pub(crate) async fn flush_group_outbox(&self, conn: &RelayClient) -> Result<bool> {
        let entries = self.with_store(|s| s.group_outbox()).await?;
        let mut all = true;
        for entry in entries.into_iter().flatten() {
            all &= self.deliver_group(conn, entry).await?;
            if conn.is_closed() {
                return Err(Error::NotConnected);
            }
        }
        Ok(all)
    }
}

/// A refusal for good, and why; `None` for one that may pass.
fn classify(error: &sotto_relay::ClientError) -> Option<SendFailure> {
    use sotto_relay::{ClientError, ErrorCode};
    match error {
        ClientError::Server {
            code: ErrorCode::UnknownRecipient,
            ..
        } => Some(SendFailure::NoSuchDevice),
        ClientError::PayloadTooLarge { .. }
        | ClientError::Server {
            code: ErrorCode::FrameTooLarge,
            ..
        } => Some(SendFailure::TooLarge),
        ClientError::Server {
            code: ErrorCode::InvalidEnvelope,
            ..
        } => Some(SendFailure::Rejected),
        _ => None,
    }
}

/// Receives a group message's envelope (payload kind 0x0D) from the
/// device `sender` (authenticated by the sealed layer): addressed to this
/// account, from a device its account's list vouches for, of a group this
/// account is in, from a member, under a sender key held here, signed by
/// it. A message whose sender key has not come yet is set aside
/// ([`Outcome::GroupKeyPending`]) and tried again when it comes.
pub(crate) fn receive(
    store: &mut Store,
    me: &IdentityKeyPair,
    groups: &super::cache::MemberCache,
    sender: &IdentityKey,
    payload: &payload::Payload<'_>,
    detached: Option<&[u8]>,
    now: u64,
) -> sotto_store::Result<Outcome> {
    let (Some(m), Some(blob)) = (payload.device_message(), detached) else {
        return Ok(Outcome::Dropped(DropReason::Malformed));
    };
    let mine = store.account_key()?;
    if m.to_account != mine {
        return Ok(Outcome::Dropped(DropReason::Misdirected));
    }
    let own = m.from_account == mine;
    let vouched = if own {
        store
            .own_devices()?
            .and_then(|l| l.device(m.from_device).map(|d| d.identity))
    } else if m.from_device == sotto_core::DeviceId::PRIMARY {
        Some(m.from_account)
    } else {
        store.device_key(
            &contact_id(&m.from_account),
            PeerDevice::Contact(m.from_device),
        )?
    };
    if vouched != Some(*sender) || (own && sender == me.public()) {
        return Ok(Outcome::UnknownDevice {
            account: m.from_account,
        });
    }
    let Ok(message) = BodyReference::from_bytes(m.message).and_then(|r| r.open(blob)) else {
        return Ok(Outcome::Dropped(DropReason::Malformed));
    };
    let Ok(parsed) = GroupMessage::parse(&message) else {
        return Ok(Outcome::Dropped(DropReason::Malformed));
    };
    let group = *parsed.group_id();
    let Some(stored) = store.group(&group)? else {
        return Ok(Outcome::Dropped(DropReason::NotAMember));
    };
    let members = groups.members(&stored)?;
    if stored.left || !members.contains(&m.from_account) {
        return Ok(Outcome::Dropped(DropReason::NotAMember));
    }
    let Some(bytes) = store.group_receiver(&group, sender)? else {
        return Ok(Outcome::GroupKeyPending { group });
    };
    let Ok(mut receiver) = SenderKeyReceiver::from_bytes(&bytes) else {
        return Ok(Outcome::Dropped(DropReason::BadGroupMessage));
    };
    let body = match receiver.decrypt(&message) {
        Ok(body) => zeroize::Zeroizing::new(body),
        Err(GroupError::UnknownChain(_)) => return Ok(Outcome::GroupKeyPending { group }),
        Err(GroupError::Duplicate { .. }) => return Ok(Outcome::Duplicate { receipt: None }),
        Err(_) => return Ok(Outcome::Dropped(DropReason::BadGroupMessage)),
    };
    let received = store.receive_group_message(GroupReceive {
        group,
        device: sender,
        author: &m.from_account,
        receiver_state: &receiver.to_bytes(),
        envelope_id: EnvelopeId(payload.message_id),
        body: &body,
        received_at: now,
        own,
    })?;
    Ok(match received {
        Received::Stored(stored_message) => Outcome::GroupMessage(Box::new(IncomingGroupMessage {
            group,
            group_name: members.name.clone(),
            from: Address::of(&m.from_account),
            seq: stored_message.seq,
            body: stored_message.body.to_vec(),
            received_at: now,
        })),
        _ => Outcome::Duplicate { receipt: None },
    })
}

impl Shared {
    /// Tries the group messages set aside for want of a sender key again:
    /// each one read now (or refused for good) leaves the store; the
    /// others wait for the next sender key.
    pub(crate) async fn retry_deferred_group_messages(&self) {
        if let Err(e) = self.retry_deferred().await {
            tracing::info!(error = %e, "group messages set aside not retried");
        }
    }

    async fn retry_deferred(&self) -> Result<()> {
        let groups: Vec<GroupId> = self
            .with_store(|s| Ok(s.groups()?.into_iter().flatten().map(|g| g.id).collect()))
            .await?;
        for group in groups {
            let waiting = self
                .with_store(move |s| s.deferred_group_envelopes(&group))
                .await?;
            for (seq, envelope) in waiting {
                let outcome = self.run_pipeline(envelope.to_vec()).await?;
                match outcome {
                    Outcome::GroupKeyPending { .. } => continue,
                    Outcome::GroupMessage(message) => {
                        self.emit(crate::client::types::ClientEvent::GroupMessage(*message));
                    }
                    _ => {}
                }
                self.with_store(move |s| s.delete_deferred_group_envelope(&group, seq))
                    .await?;
            }
        }
        Ok(())
    }
}
