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
//!   its allowance, a relay out of space...): that conversation waits, so
//!   nothing overtakes the refused entry, the other conversations go on,
//!   and the outbox is tried again with backoff;
//! - **connection lost**: everything stops and resumes after reconnecting.

use std::collections::HashSet;

use sotto_core::access::ACCESS_KEY_LEN;
use sotto_core::{AccessKey, IdentityKey, IdentityKeyPair};
use sotto_relay::{ClientError, ErrorCode, MailboxAddress, RelayClient};
use sotto_store::{EnvelopeId, OutboxEntry, SendFailure, Store};

use super::shared::{Shared, access_key_of, now_ms};
use super::types::ClientEvent;
use crate::address::Address;
use crate::error::{Error, Result};
use crate::payload;

/// The longest sotto-core ciphertext that fits in one envelope of a relay
/// whose frames are at most `max_frame` bytes: the frame less the Send
/// request around the payload, the sealed layer, the payload header and
/// the sender's access key.
pub(crate) fn max_ciphertext_len(max_frame: u32) -> usize {
    sotto_relay::protocol::max_payload_len(max_frame)
        .saturating_sub(sotto_core::sealed::SEALED_OVERHEAD)
        .saturating_sub(payload::PAYLOAD_OVERHEAD)
        .saturating_sub(ACCESS_KEY_LEN)
}

/// Seals an outbox entry from `me` to `recipient`, with our access key
/// inside: the bytes the relay carries.
pub(crate) fn seal_entry(
    me: &IdentityKeyPair,
    access_key: &AccessKey,
    recipient: &IdentityKey,
    entry: &OutboxEntry,
    now: u64,
) -> Result<Vec<u8>> {
    Ok(payload::seal(
        me,
        recipient,
        &payload::encode(entry.id.as_bytes(), now, access_key, &entry.ciphertext),
    )?)
}

/// What a refusal of one entry means.
enum Refusal {
    /// Sending it again cannot succeed: give it up.
    ForGood(SendFailure),
    /// It may pass later: keep it, hold its conversation.
    ForNow,
}

fn classify(error: &Error) -> Refusal {
    match error {
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

/// An entry with what is needed to seal it: the recipient's pinned
/// identity and the access key it gave us, if any.
pub(crate) type Addressed = (OutboxEntry, IdentityKey, Option<AccessKey>);

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
    /// Seals one entry, hands it to the relay (presenting the recipient's
    /// access key if we have it) and records that the relay accepted it.
    pub(crate) async fn deliver(
        &self,
        conn: &RelayClient,
        recipient: &IdentityKey,
        access: Option<&AccessKey>,
        entry: &OutboxEntry,
    ) -> Result<()> {
        let sealed = seal_entry(&self.identity, &self.access_key, recipient, entry, now_ms())?;
        conn.send(
            &MailboxAddress::of(recipient),
            payload::relay_message_id(&entry.ciphertext),
            access,
            &sealed,
        )
        .await?;
        let id = entry.id;
        self.with_store(move |s| s.mark_sent(&id, now_ms())).await?;
        Ok(())
    }

    /// Hands the outbox entries for `recipient` to the relay, oldest
    /// first (under the processing lock, like [`flush_outbox`]: a message
    /// sent while older ones still wait must not overtake them).
    ///
    /// [`flush_outbox`]: Self::flush_outbox
    pub(crate) async fn flush_conversation(
        &self,
        conn: &RelayClient,
        recipient: &str,
        identity: &IdentityKey,
    ) -> Result<Flushed> {
        let _guard = self.processing.lock().await;
        let recipient = recipient.to_owned();
        let pinned = *identity;
        let entries = self
            .with_store(move |s| {
                let access = access_key_of(s, &recipient, &pinned)?;
                Ok(s.outbox()?
                    .into_iter()
                    .flatten()
                    .filter(|e| e.recipient == recipient)
                    .map(|e| (e, pinned, access.clone()))
                    .collect::<Vec<_>>())
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
        self.hold_outbox(flushed.held.is_some());
        Ok(flushed)
    }

    /// Delivers `entries` in their order. A refusal for good gives the
    /// entry up and goes on; a refusal for now holds the rest of that
    /// conversation (so nothing overtakes it) while the others go on; a
    /// lost connection is an error at once.
    pub(crate) async fn deliver_in_order(
        &self,
        conn: &RelayClient,
        entries: Vec<Addressed>,
    ) -> Result<Flushed> {
        let mut flushed = Flushed::default();
        let mut held = HashSet::new();
        for (entry, identity, access) in entries {
            if held.contains(&entry.recipient) {
                continue;
            }
            let error = match self.deliver(conn, &identity, access.as_ref(), &entry).await {
                Ok(()) => {
                    flushed.sent.push(entry.id);
                    continue;
                }
                Err(e) if conn.is_closed() => return Err(e),
                Err(e) => e,
            };
            match classify(&error) {
                Refusal::ForGood(reason) => {
                    self.give_up(&entry, &identity, reason).await?;
                    flushed.failed.push((entry.id, reason));
                }
                Refusal::ForNow => {
                    tracing::info!(error = %error, "relay refused an outbox entry for now");
                    held.insert(entry.recipient.clone());
                    flushed.held.get_or_insert(error);
                }
            }
        }
        Ok(flushed)
    }

    /// Gives an entry up for good and tells the app.
    async fn give_up(
        &self,
        entry: &OutboxEntry,
        identity: &IdentityKey,
        reason: SendFailure,
    ) -> Result<()> {
        let id = entry.id;
        let seq = self
            .with_store(move |s| s.fail_outbox_entry(&id, reason))
            .await?;
        tracing::warn!(%reason, "outbox entry refused for good");
        if let Some(seq) = seq {
            self.emit(ClientEvent::SendFailed {
                contact: Address::of(identity),
                seq,
                reason,
            });
        }
        Ok(())
    }

    /// The outbox entries `list` picks, each with its recipient's pinned
    /// identity and access key; entries whose contact has no pinned
    /// identity are left out (they cannot be sealed).
    pub(crate) async fn outbox_with_recipients(
        &self,
        list: impl FnOnce(&Store) -> sotto_store::Result<Vec<sotto_store::Result<OutboxEntry>>>
        + Send
        + 'static,
    ) -> Result<Vec<Addressed>> {
        self.with_store(|s| {
            let mut out = Vec::new();
            for entry in list(s)?.into_iter().flatten() {
                let Some(contact) = s.contact(&entry.recipient)? else {
                    continue;
                };
                if let Some(identity) = contact.identity_key {
                    out.push((entry, identity, contact.access_key));
                }
            }
            Ok(out)
        })
        .await
    }
}
