//! The outbox: committed messages on their way to the relay.
//!
//! Every message is committed to the store (with the session state that
//! produced it) before its ciphertext leaves; this part hands committed
//! entries to the relay, oldest first per conversation, and decides what a
//! refusal means:
//!
//! - **for good** (too large for the relay, refused as invalid): the entry
//!   is given up ([`sotto_store::Store::fail_outbox_entry`]), its message
//!   becomes `Failed` in history, [`ClientEvent::SendFailed`] is raised,
//!   and the entries behind it go on;
//! - **for now** (the recipient's mailbox is full, a first contact over
//!   its allowance, a relay out of space...): that conversation's entries
//!   for that device wait, so nothing overtakes the refused entry, the
//!   others go on,
//!   and the outbox is tried again with backoff;
//! - **connection lost**: everything stops and resumes after reconnecting.

use std::collections::HashSet;

use sotto_core::{AccessKey, DeviceId, IdentityKey, IdentityKeyPair};
use sotto_relay::{ClientError, ErrorCode, MailboxAddress, RelayClient};
use sotto_store::{EnvelopeId, OutboxEntry, PeerDevice, SendFailure, Store};

use super::shared::{Shared, now_ms};
use super::types::ClientEvent;
use crate::address::Address;
use crate::error::{Error, Result};
use crate::payload;

/// The longest sotto-core ciphertext that fits in one envelope of a relay
/// whose frames are at most `max_frame` bytes: the frame less the Send
/// request around the payload, the sealed layer, the payload header and
/// the longest message header (a device message's: the sender's access
/// key and both accounts), so that every copy of a message fits.
pub(crate) fn max_ciphertext_len(max_frame: u32) -> usize {
    sotto_relay::protocol::max_payload_len(max_frame)
        .saturating_sub(sotto_core::sealed::SEALED_OVERHEAD)
        .saturating_sub(payload::PAYLOAD_OVERHEAD)
        .saturating_sub(payload::DEVICE_MESSAGE_HEADER)
        .saturating_sub(payload::DETACHED_FRAME_OVERHEAD)
}

/// Who sends an outbox entry: this device of this account, with the
/// account's access key inside every message.
pub(crate) struct Sender<'a> {
    pub(crate) identity: &'a IdentityKeyPair,
    pub(crate) account: &'a IdentityKey,
    pub(crate) device: DeviceId,
    pub(crate) access_key: &'a AccessKey,
}

/// Seals an outbox entry from `me` to its device, whose key is `to.key`:
/// the bytes the relay carries. Between two primary devices the payload
/// is a plain message (kind 0x01); otherwise a device message naming both
/// accounts (kind 0x05): ours, and `to.account` — the contact's, which
/// for a "sent" copy to one of our devices is the account it was sent to.
/// A message with a detached body is kind 0x09, its blob framed after the
/// sealed layer; a group control is kind 0x0C, between any two devices.
pub(crate) fn seal_entry(
    me: &Sender<'_>,
    to: &Addressed,
    entry: &OutboxEntry,
    now: u64,
) -> Result<Vec<u8>> {
    let detached = entry.detached_body.as_deref();
    let payload = if detached.is_none()
        && !entry.control
        && me.device == DeviceId::PRIMARY
        && entry.to == PeerDevice::CONTACT_PRIMARY
    {
        payload::encode(entry.id.as_bytes(), now, me.access_key, &entry.ciphertext)
    } else {
        payload::encode_device_message(
            if entry.control {
                payload::KIND_GROUP_CONTROL
            } else if detached.is_some() {
                payload::KIND_DETACHED_MESSAGE
            } else {
                payload::KIND_DEVICE_MESSAGE
            },
            entry.id.as_bytes(),
            now,
            me.access_key,
            (me.account, me.device),
            &to.account,
            &entry.ciphertext,
        )
    };
    let sealed = payload::seal(me.identity, &to.key, &payload)?;
    Ok(match detached {
        Some(blob) => payload::frame_detached(&sealed, blob),
        None => sealed,
    })
}

/// What a refusal of one entry means.
enum Refusal {
    /// Sending it again cannot succeed: give it up.
    ForGood(SendFailure),
    /// It may pass later: keep it, hold its conversation.
    ForNow,
}

fn classify(error: &Error, to: PeerDevice) -> Refusal {
    match error {
        // A device other than a contact's primary whose mailbox the relay
        // removed (unlinked): nothing will ever take it. (A primary
        // device's unregistered mailbox may register again.)
        Error::Relay(ClientError::Server {
            code: ErrorCode::UnknownRecipient,
            ..
        }) if to != PeerDevice::CONTACT_PRIMARY => Refusal::ForGood(SendFailure::NoSuchDevice),
        Error::Relay(ClientError::PayloadTooLarge { .. })
        | Error::Relay(ClientError::Server {
            code: ErrorCode::FrameTooLarge,
            ..
        }) => Refusal::ForGood(SendFailure::TooLarge),
        Error::Relay(ClientError::Server {
            code: ErrorCode::InvalidEnvelope,
            ..
        }) => Refusal::ForGood(SendFailure::Rejected),
        _ => Refusal::ForNow,
    }
}

/// Where an outbox entry goes: the key of its device (its mailbox, and
/// the key it is sealed to), the account of the conversation's contact,
/// and the access key to present to the relay.
pub(crate) struct Addressed {
    pub(crate) entry: OutboxEntry,
    pub(crate) key: IdentityKey,
    pub(crate) account: IdentityKey,
    pub(crate) access: Option<AccessKey>,
}

/// What handing a list of entries to the relay came to.
#[derive(Default)]
pub(crate) struct Flushed {
    /// Entries the relay accepted.
    pub(crate) sent: Vec<EnvelopeId>,
    /// Entries given up for good.
    pub(crate) failed: Vec<(EnvelopeId, SendFailure)>,
    /// The first refusal that may pass: its conversation waits.
    pub(crate) held: Option<Error>,
}

impl Shared {
    /// This device as the sender of outbox entries.
    pub(crate) fn sender(&self) -> Sender<'_> {
        Sender {
            identity: &self.identity,
            account: &self.account,
            device: self.device_id,
            access_key: &self.access_key,
        }
    }

    /// Seals one entry, hands it to the relay (presenting the recipient's
    /// access key if we have it) and records that the relay accepted it.
    pub(crate) async fn deliver(&self, conn: &RelayClient, to: &Addressed) -> Result<()> {
        let sealed = seal_entry(&self.sender(), to, &to.entry, now_ms())?;
        conn.send(
            &MailboxAddress::of(&to.key),
            payload::relay_message_id(&to.entry.ciphertext),
            to.access.as_ref(),
            &sealed,
        )
        .await?;
        let id = to.entry.id;
        let now = self.options.clock.now_ms();
        self.with_store(move |s| s.mark_sent(&id, now)).await?;
        Ok(())
    }

    /// Hands the outbox entries of the conversation with `recipient` to
    /// the relay, oldest first (under the processing lock, like
    /// [`flush_outbox`]: a message sent while older ones still wait must
    /// not overtake them).
    ///
    /// [`flush_outbox`]: Self::flush_outbox
    pub(crate) async fn flush_conversation(
        &self,
        conn: &RelayClient,
        recipient: &str,
    ) -> Result<Flushed> {
        let _guard = self.processing.lock().await;
        let recipient = recipient.to_owned();
        let entries = self
            .outbox_with_recipients(move |s| {
                Ok(s.outbox()?
                    .into_iter()
                    .filter(|e| e.as_ref().is_ok_and(|e| e.recipient == recipient))
                    .collect())
            })
            .await?;
        self.deliver_in_order(conn, entries).await
    }

    /// Hands the whole outbox to the relay, oldest first per
    /// conversation (see the module's rules). Returns what went out; the
    /// outbox stays marked held while a conversation waits.
    pub(crate) async fn flush_outbox(&self, conn: &RelayClient) -> Result<Flushed> {
        let _guard = self.processing.lock().await;
        let entries = self.outbox_with_recipients(|s| s.outbox()).await?;
        let flushed = self.deliver_in_order(conn, entries).await?;
        // Group messages after the controls (sender keys) they may need.
        let groups_done = self.flush_group_outbox(conn).await?;
        self.hold_outbox(flushed.held.is_some() || !groups_done);
        Ok(flushed)
    }

    /// Delivers `entries` in their order. A refusal for good gives the
    /// entry up and goes on; a refusal for now holds the rest of that
    /// conversation's entries for the same device (so nothing overtakes
    /// it) while the others go on; a lost connection is an error at once.
    pub(crate) async fn deliver_in_order(
        &self,
        conn: &RelayClient,
        entries: Vec<Addressed>,
    ) -> Result<Flushed> {
        let mut flushed = Flushed::default();
        let mut held = HashSet::new();
        for to in entries {
            let queue = (to.entry.recipient.clone(), to.entry.to);
            if held.contains(&queue) {
                continue;
            }
            let error = match self.deliver(conn, &to).await {
                Ok(()) => {
                    flushed.sent.push(to.entry.id);
                    continue;
                }
                Err(e) if conn.is_closed() => return Err(e),
                Err(e) => e,
            };
            match classify(&error, to.entry.to) {
                Refusal::ForGood(reason) => {
                    self.give_up(&to, reason).await?;
                    flushed.failed.push((to.entry.id, reason));
                }
                Refusal::ForNow => {
                    tracing::info!(error = %error, "relay refused an outbox entry for now");
                    held.insert(queue);
                    flushed.held.get_or_insert(error);
                }
            }
        }
        Ok(flushed)
    }

    /// Gives an entry up for good and tells the app.
    async fn give_up(&self, to: &Addressed, reason: SendFailure) -> Result<()> {
        let id = to.entry.id;
        let seq = self
            .with_store(move |s| s.fail_outbox_entry(&id, reason))
            .await?;
        tracing::warn!(%reason, "outbox entry refused for good");
        // A control's seq is not one of the chat's.
        if let Some(seq) = seq.filter(|_| !to.entry.control) {
            self.emit(ClientEvent::SendFailed {
                contact: Address::of(&to.account),
                seq,
                reason,
            });
        }
        Ok(())
    }

    /// The outbox entries `list` picks, each with its device's key, its
    /// contact's account and the access key to present; entries whose
    /// contact has no pinned identity, or whose device no list names any
    /// more, are left out (they cannot be sealed).
    pub(crate) async fn outbox_with_recipients(
        &self,
        list: impl FnOnce(&Store) -> sotto_store::Result<Vec<sotto_store::Result<OutboxEntry>>>
        + Send
        + 'static,
    ) -> Result<Vec<Addressed>> {
        let own_access = self.access_key.clone();
        self.with_store(move |s| {
            let mut out = Vec::new();
            for entry in list(s)?.into_iter().flatten() {
                let Some(contact) = s.contact(&entry.recipient)? else {
                    continue;
                };
                let Some(account) = contact.identity_key else {
                    continue;
                };
                let Some(key) = s.device_key(&entry.recipient, entry.to)? else {
                    continue;
                };
                let access = match entry.to {
                    PeerDevice::Own(_) => Some(own_access.clone()),
                    PeerDevice::Contact(_) => contact.access_key,
                };
                out.push(Addressed {
                    entry,
                    key,
                    account,
                    access,
                });
            }
            Ok(out)
        })
        .await
    }
}
