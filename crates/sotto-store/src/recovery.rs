//! Session recovery, sender side.
//!
//! When a contact cannot decrypt a message (their device was restored from
//! an old backup, or lost its state), they send a decryption-error notice
//! naming the message by the digest of the ciphertext they received
//! ([`CiphertextDigest`]). The sender answers only if that digest is the
//! one of a ciphertext it sent for one of its newest messages, so a notice
//! can only concern a message the contact really received. The sender then:
//!
//! - resets the session (a fresh X3DH from a newly fetched bundle) if the
//!   failed message was sent after the last reset, since the current session
//!   is evidently broken; the reset boundary moves to the newest seq;
//! - resends the message under the current session, with the same envelope
//!   id (so the recipient stores it once even if the original also turns up).
//!
//! A notice about a resend (the digest of the ciphertext made after a reset)
//! means the new session failed too: it is reset again, at most
//! [`MAX_RESETS_IN_ROW`] times until the contact confirms a delivery.
//!
//! Each message is resent at most once per reset, and a notice for a message
//! that is not an outgoing message of this conversation among the newest
//! [`RECOVERY_WINDOW`] is ignored. So replayed, stale or repeated notices
//! cannot make the sender reset or resend in a loop; and notices arrive in
//! sealed envelopes that authenticate the contact (checked by the caller),
//! so the relay cannot forge one.

use crate::error::{Error, Result, Row};
use crate::records::{self, MAX_RESENT_REMEMBERED, check_contact_id};
use crate::store::Store;
use crate::types::{CiphertextDigest, DeliveryState, OutboxEntry, PeerDevice};
use sotto_core::PreKeyBundle;

/// How many of a conversation's newest messages a notice may refer to.
pub const RECOVERY_WINDOW: u64 = 1000;

/// Most session resets in a row without a delivery confirmed by the
/// contact in between (a resend that fails again calls for another reset,
/// up to this many).
pub const MAX_RESETS_IN_ROW: u8 = 3;

/// What to do about a contact's report that it could not decrypt a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// Nothing: unknown, not ours, already resent, or outside the window.
    Ignore,
    /// Resend message `seq` under the current session.
    Resend {
        /// The message to resend.
        seq: u64,
    },
    /// The current session is broken: start a new one (fetch a bundle),
    /// then resend message `seq`.
    ResetAndResend {
        /// The message to resend.
        seq: u64,
    },
}

fn plan(db: &crate::db::Db<'_>, contact: &str, failed: &CiphertextDigest) -> Result<Recovery> {
    let Some(record) = db.contact(contact)? else {
        return Err(Error::UnknownContact);
    };
    let Some(conversation) = db.conversation(contact)? else {
        return Ok(Recovery::Ignore);
    };
    let newest = conversation.next_seq.saturating_sub(1);
    let oldest = newest.saturating_sub(RECOVERY_WINDOW).max(1);
    let mut seq = newest;
    while seq >= oldest && seq > 0 {
        if let Some(sealed) = db.message_sealed(&conversation, seq)? {
            // An unreadable row cannot be the one referred to: skip it.
            // Only outgoing records carry a digest.
            if let Ok(record_bytes) = db.open_message_record(&conversation, seq, &sealed)
                && let Ok(Some(digest)) = records::message_digest(&record_bytes)
                && digest.matches(failed)
            {
                // The digest is the one of the ciphertext last sent for this
                // message. If that was a resend, the session it was made
                // with failed too: reset again, a bounded number of times.
                if record.recovery.resent.contains(&seq) {
                    return Ok(if record.recovery.resets_in_row < MAX_RESETS_IN_ROW {
                        Recovery::ResetAndResend { seq }
                    } else {
                        Recovery::Ignore
                    });
                }
                return Ok(if seq > record.recovery.boundary {
                    Recovery::ResetAndResend { seq }
                } else {
                    Recovery::Resend { seq }
                });
            }
        }
        seq -= 1;
    }
    Ok(Recovery::Ignore)
}

impl Store {
    /// Decides what a contact's (already authenticated) notice that it
    /// could not decrypt the ciphertext with digest `failed` calls for.
    /// Read-only.
    pub fn plan_recovery(&self, contact: &str, failed: &CiphertextDigest) -> Result<Recovery> {
        check_contact_id(contact)?;
        self.read(|db| plan(db, contact, failed))
    }

    /// Carries out [`plan_recovery`](Self::plan_recovery)'s decision in ONE
    /// transaction, re-checking it first: with `bundle` (required for
    /// [`Recovery::ResetAndResend`]) a new session is started and becomes
    /// the one that sends; then the message is encrypted again, put back in
    /// the outbox under its envelope id, its digest replaced by the new
    /// ciphertext's, and marked `Pending`. Returns the outbox entry to hand
    /// to the relay, or `None` if there is nothing to do (any more).
    pub fn recover(
        &mut self,
        contact: &str,
        failed: &CiphertextDigest,
        bundle: Option<&PreKeyBundle>,
    ) -> Result<Option<OutboxEntry>> {
        check_contact_id(contact)?;
        self.write(|db, rng| {
            let (seq, reset) = match plan(db, contact, failed)? {
                Recovery::Ignore => return Ok(None),
                Recovery::Resend { seq } => (seq, false),
                Recovery::ResetAndResend { seq } if bundle.is_some() => (seq, true),
                // A reset needs a fresh bundle from the relay.
                Recovery::ResetAndResend { .. } => return Err(Error::NoSession),
            };
            let mut record = db.contact(contact)?.ok_or(Error::UnknownContact)?;
            let conversation = db.conversation(contact)?.ok_or(Error::UnknownContact)?;
            let lookup = db.contact_lookup(contact);
            let mut sessions = db.sessions(&lookup)?;
            if reset {
                let bundle = bundle.ok_or(Error::NoSession)?;
                if record.identity_key != Some(bundle.identity_key) {
                    return Err(Error::IdentityMismatch);
                }
                let identity = db.identity()?;
                sessions.initiate_at_least(&identity, bundle, record.min_version, rng)?;
                record.recovery.boundary = conversation.next_seq.saturating_sub(1);
                record.recovery.resent.clear();
                record.recovery.resets_in_row = record.recovery.resets_in_row.saturating_add(1);
            }
            if record.recovery.resent.len() >= MAX_RESENT_REMEMBERED {
                record.recovery.resent.remove(0);
            }
            record.recovery.resent.push(seq);

            let corrupt = || Error::Corrupt {
                table: "messages",
                row: Row::Seq(seq),
            };
            let sealed = db.message_sealed(&conversation, seq)?.ok_or_else(corrupt)?;
            let mut message_record = db.open_message_record(&conversation, seq, &sealed)?;
            let message = records::decode_message(seq, &message_record).map_err(|_| corrupt())?;
            // A detached body is sealed before the reference to it is
            // encrypted: the reference names the blob by its digest.
            let detached = if message.body.len() >= crate::send::DETACHED_BODY_MIN {
                Some(crate::send::DetachedBody::seal(
                    sotto_core::BodyKey::generate(rng),
                    &message.body,
                )?)
            } else {
                None
            };
            let ciphertext =
                crate::send::encrypt_body(&mut sessions, detached.as_ref(), &message.body)?;
            records::set_message_state(&mut message_record, DeliveryState::Pending)
                .map_err(|_| corrupt())?;
            let message_record = records::set_message_digest(
                seq,
                &message_record,
                &CiphertextDigest::of(&ciphertext),
            )?;
            let id = message.envelope_id;
            db.update_message(rng, &conversation, seq, &message_record)?;
            db.delete_outbox(&db.outbox_lookup(&id))?;
            db.insert_outbox(
                rng,
                &conversation,
                &records::OutboxRecord {
                    seq,
                    id,
                    accepted_at: 0,
                    accepted: 0,
                    to: PeerDevice::CONTACT_PRIMARY,
                    body_key: detached.as_ref().map(|d| d.key.clone()),
                    ciphertext: ciphertext.clone(),
                },
            )?;
            db.put_sessions(rng, &lookup, &sessions)?;
            db.put_contact(rng, &record)?;
            Ok(Some(OutboxEntry {
                id,
                recipient: contact.to_owned(),
                control: false,
                to: PeerDevice::CONTACT_PRIMARY,
                seq,
                ciphertext,
                detached_body: detached.map(|d| d.blob),
            }))
        })
    }
}
