//! Sending: the session advances, the message and its ciphertext are
//! committed, and only then is the ciphertext handed out.

use std::collections::HashMap;
use std::sync::Arc;

use sotto_core::{BodyKey, BodyReference, SessionSet};

use crate::db::Conversation;
use crate::error::{Error, Result, Row};
use crate::records::{self, OutboxRecord, check_body, check_contact_id};
use crate::store::Store;
use crate::testing::FaultPoint;
use crate::types::{
    CiphertextDigest, DeliveryState, Direction, EnvelopeId, OutboxEntry, Outgoing, PeerDevice,
    SendFailure,
};

impl Store {
    /// Encrypts `body` for `recipient` and stores, in ONE transaction, the
    /// advanced sessions, the message in history (state `Pending`) and one
    /// ciphertext per device in the outbox ([`send_within`](Self::send_within)).
    /// Returns the first outbox entry: for a contact with one device and a
    /// profile without linked devices, the only one.
    ///
    /// If the process dies before the relay accepts an entry, the entry
    /// is still in [`outbox`](Self::outbox) and is retried under the same id.
    /// `sent_at` is milliseconds since the Unix epoch.
    pub fn send(&mut self, recipient: &str, body: &[u8], sent_at: u64) -> Result<OutboxEntry> {
        let outgoing = self.send_within(recipient, body, sent_at, usize::MAX)?;
        outgoing.entries.into_iter().next().ok_or(Error::NoSession)
    }

    /// Encrypts `body` for every device it goes to
    /// ([`message_targets`](Self::message_targets): each of the
    /// contact's devices, and as "sent" copies each of our own other
    /// devices) that has a session, and stores, in ONE transaction, the
    /// advanced sessions, the message in history (state `Pending`) and one
    /// ciphertext per device in the outbox, each under its own fresh
    /// envelope id. Returns the entries to hand to the relay once that
    /// transaction committed, and the devices left out for want of a
    /// session.
    ///
    /// Refused with [`Error::NoSession`] when no device of the contact has
    /// a session, and with [`Error::MessageTooLarge`] when a ciphertext
    /// would be longer than `max_ciphertext_len` bytes (what the relay
    /// takes, less the envelope around it); either way before anything is
    /// stored: the sessions do not advance, history and outbox are
    /// untouched.
    pub fn send_within(
        &mut self,
        recipient: &str,
        body: &[u8],
        sent_at: u64,
        max_ciphertext_len: usize,
    ) -> Result<Outgoing> {
        self.send_in(recipient, None, body, sent_at, max_ciphertext_len, None)
    }

    /// [`send_within`](Self::send_within) for a control message (a group's
    /// sender key or membership change, payload kind 0x0C): the same
    /// devices, sessions, outbox and transaction, but the plaintext is
    /// kept apart, not
    /// in the chat (in the contact's sent-controls conversation), and its
    /// entries are marked [`control`](OutboxEntry::control).
    pub fn send_control(
        &mut self,
        recipient: &str,
        body: &[u8],
        sent_at: u64,
        max_ciphertext_len: usize,
    ) -> Result<Outgoing> {
        let conversation = crate::controls::sent_control_conversation_id(recipient);
        self.send_in(
            recipient,
            Some(&conversation),
            body,
            sent_at,
            max_ciphertext_len,
            None,
        )
    }

    /// [`send_within`](Self::send_within) for the message that references
    /// the attachment of upload `upload` ([`put_upload`](Self::put_upload)),
    /// once its blob is on the relay: the upload's record is deleted in the
    /// same transaction, so that a crash leaves either the upload to finish
    /// or the message sent, never both.
    pub fn send_upload(
        &mut self,
        upload: &[u8; 16],
        recipient: &str,
        body: &[u8],
        sent_at: u64,
        max_ciphertext_len: usize,
    ) -> Result<Outgoing> {
        self.send_in(
            recipient,
            None,
            body,
            sent_at,
            max_ciphertext_len,
            Some(upload),
        )
    }

    fn send_in(
        &mut self,
        recipient: &str,
        conversation_id: Option<&str>,
        body: &[u8],
        sent_at: u64,
        max_ciphertext_len: usize,
        finishes_upload: Option<&[u8; 16]>,
    ) -> Result<Outgoing> {
        check_contact_id(recipient)?;
        check_body(body)?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let db = crate::db::Db::new(&tx, &self.keys);
        let rng = &mut self.rng;
        // A large body is encrypted once, detached; each device's session
        // encrypts only a reference to it, which names the blob by its
        // digest: the blob is sealed first, once for the message.
        // (Controls are small and never detached.)
        let detached = if conversation_id.is_none() && body.len() >= DETACHED_BODY_MIN {
            Some(DetachedBody::seal(BodyKey::generate(rng), body)?)
        } else {
            None
        };
        let detached_len = detached.as_ref().map_or(0, |d| d.blob.len());
        let mut encrypted = Vec::new();
        let mut without_session = Vec::new();
        for (device, _) in crate::devices::targets(&db, recipient)? {
            let lookup = db.session_lookup(recipient, device);
            let mut sessions = db.sessions(&lookup)?;
            if !sessions.has_session() {
                without_session.push(device);
                continue;
            }
            let ciphertext = encrypt_body(&mut sessions, detached.as_ref(), body)?;
            if ciphertext.len() + detached_len > max_ciphertext_len {
                // Dropping the transaction rolls back: nothing was written.
                return Err(Error::MessageTooLarge {
                    len: body.len(),
                    max: largest_body_within(
                        body.len(),
                        ciphertext.len() + detached_len,
                        max_ciphertext_len,
                    ),
                });
            }
            encrypted.push((device, lookup, sessions, ciphertext));
        }
        if !encrypted.iter().any(|(device, ..)| !device.is_own()) {
            return Err(Error::NoSession);
        }
        self.faults.check(FaultPoint::SendAfterEncrypt)?;

        let mut conversation =
            db.conversation_or_create(rng, conversation_id.unwrap_or(recipient))?;
        let seq = conversation.next_seq;
        conversation.next_seq += 1;
        let mut entries = Vec::with_capacity(encrypted.len());
        for (device, lookup, sessions, ciphertext) in encrypted {
            db.put_sessions(rng, &lookup, &sessions)?;
            let id = EnvelopeId::random(rng);
            db.insert_outbox(
                rng,
                &conversation,
                &OutboxRecord {
                    seq,
                    id,
                    accepted_at: 0,
                    accepted: 0,
                    to: device,
                    body_key: detached.as_ref().map(|d| d.key.clone()),
                    ciphertext: ciphertext.clone(),
                },
            )?;
            entries.push(OutboxEntry {
                id,
                recipient: recipient.to_owned(),
                control: conversation_id.is_some(),
                to: device,
                seq,
                ciphertext,
                // The one blob, shared by every entry of the message.
                detached_body: detached.as_ref().map(|d| d.blob.clone()),
            });
        }
        // The message is known by its first envelope; a decryption-error
        // notice names the ciphertext of the contact's primary device
        // (session recovery is between primary devices).
        let first = &entries[0];
        let digest = (first.to == PeerDevice::CONTACT_PRIMARY)
            .then(|| CiphertextDigest::of(&first.ciphertext));
        let record = records::encode_message(
            Direction::Outgoing,
            DeliveryState::Pending,
            sent_at,
            &first.id,
            digest.as_ref(),
            body,
        )?;
        db.insert_message(rng, &conversation, seq, &record)?;
        db.save_next_seq(&conversation)?;
        if let Some(upload) = finishes_upload {
            db.delete_upload(upload)?;
        }
        self.faults.check(FaultPoint::SendBeforeCommit)?;
        tx.commit()?;
        self.faults.check(FaultPoint::SendAfterCommit)?;
        Ok(Outgoing {
            seq,
            entries,
            without_session,
        })
    }

    /// Every ciphertext not yet accepted by the relay, oldest first. Send
    /// each under its id, then call [`mark_sent`](Self::mark_sent). A row
    /// that cannot be read is reported in place.
    pub fn outbox(&self) -> Result<Vec<Result<OutboxEntry>>> {
        self.read(|db| {
            Ok(open_outbox_rows(db, db.outbox_rows(false)?)
                .into_iter()
                .map(|entry| entry.map(|(entry, _)| entry))
                .collect())
        })
    }

    /// The relay accepted envelope `id` at `now` (ms since the Unix epoch):
    /// its message moves from `Pending` to `Sent`, and the entry stays,
    /// awaiting the recipient's delivery receipt
    /// ([`mark_delivered`](Self::mark_delivered)); until then
    /// [`overdue`](Self::overdue) offers it again. Returns whether it was in
    /// the outbox.
    pub fn mark_sent(&mut self, id: &EnvelopeId, now: u64) -> Result<bool> {
        self.write(|db, rng| {
            let Some((row, conversation)) = outbox_row_with_conversation(db, id)? else {
                return Ok(false);
            };
            let mut record = db.open_outbox(&conversation, &row)?;
            record.accepted_at = now;
            record.accepted = record.accepted.saturating_add(1);
            db.update_outbox(rng, &conversation, &row, &record)?;
            // A "sent" copy to one of our own devices says nothing about
            // the contact's side.
            if !record.to.is_own() {
                advance_state(db, rng, &conversation, row.seq, DeliveryState::Sent)?;
                // Sent: a disappearing message's countdown starts.
                crate::disappearing::start_countdown(db, rng, &conversation, row.seq, now)?;
            }
            Ok(true)
        })
    }
}

impl Store {
    /// Gives up the outbox entry `id` for good (the relay refused it in a
    /// way that sending again cannot change): it leaves the outbox, so
    /// later messages to the same device are no longer held behind it, and
    /// when it was the message's last copy for the contact's devices and
    /// none was accepted, the message becomes [`DeliveryState::Failed`]
    /// with `reason`. The recipient's session skips the lost chain key as
    /// it does for any message that never arrives. Returns the message's
    /// seq when the message failed, `None` otherwise (not in the outbox, a
    /// "sent" copy to one of our own devices, or other copies stand).
    pub fn fail_outbox_entry(
        &mut self,
        id: &EnvelopeId,
        reason: SendFailure,
    ) -> Result<Option<u64>> {
        self.write(|db, rng| {
            let Some((row, conversation)) = outbox_row_with_conversation(db, id)? else {
                return Ok(None);
            };
            let to = db.open_outbox(&conversation, &row)?.to;
            if to.is_own() {
                // Only our own device misses the copy: the message stands.
                db.delete_outbox(&row.lookup)?;
                return Ok(None);
            }
            db.delete_outbox(&row.lookup)?;
            // The message failed only if no copy for another of the
            // contact's devices still waits, and none was accepted.
            let others = db.outbox_rows_of_message(&conversation.lookup, row.seq)?;
            for other in open_outbox_rows(db, others.into_iter().map(Ok).collect()) {
                if !other?.0.to.is_own() {
                    return Ok(None);
                }
            }
            let Some(sealed) = db.message_sealed(&conversation, row.seq)? else {
                return Ok(None);
            };
            let mut record = db.open_message_record(&conversation, row.seq, &sealed)?;
            let corrupt = || Error::Corrupt {
                table: "messages",
                row: Row::Seq(row.seq),
            };
            if records::decode_message(row.seq, &record)
                .map_err(|_| corrupt())?
                .state
                != DeliveryState::Pending
            {
                return Ok(None);
            }
            records::set_message_state(&mut record, DeliveryState::Failed(reason))
                .map_err(|_| corrupt())?;
            db.update_message(rng, &conversation, row.seq, &record)?;
            Ok(Some(row.seq))
        })
    }
}

/// Bodies of at least this many bytes are sent detached (sotto-core
/// `body`): encrypted once for all devices, each device's session carrying
/// only the key.
pub const DETACHED_BODY_MIN: usize = 16 * 1024;

/// A message's detached body, sealed once for every device it goes to:
/// its key (kept in the outbox, from which the blob is sealed again), the
/// blob, and the reference each device's session encrypts.
pub(crate) struct DetachedBody {
    pub(crate) key: BodyKey,
    pub(crate) blob: Arc<[u8]>,
    reference: BodyReference,
}

impl DetachedBody {
    /// Seals `body` under `key`. The reference carries the blob's digest,
    /// so it can only be made from the blob (protocol.md, "Detached
    /// bodies").
    pub(crate) fn seal(key: BodyKey, body: &[u8]) -> Result<Self> {
        let blob: Arc<[u8]> = key.seal(body)?.into();
        let reference = BodyReference::new(&key, &blob)?;
        Ok(Self {
            key,
            blob,
            reference,
        })
    }
}

/// What a device's session encrypts for `body`: the body itself, or with
/// `detached` the reference to its blob.
pub(crate) fn encrypt_body(
    sessions: &mut SessionSet,
    detached: Option<&DetachedBody>,
    body: &[u8],
) -> Result<Vec<u8>> {
    Ok(match detached {
        None => sessions.encrypt(body)?,
        Some(detached) => sessions.encrypt(detached.reference.to_bytes().as_slice())?,
    })
}

/// The outbox row of envelope `id` and its conversation, if the entry is
/// in the outbox.
fn outbox_row_with_conversation(
    db: &crate::db::Db<'_>,
    id: &EnvelopeId,
) -> Result<Option<(crate::db::OutboxRow, Conversation)>> {
    let Some(row) = db.outbox_row(id)? else {
        return Ok(None);
    };
    let conversation = db
        .conversation_by_lookup(&row.conversation)?
        .ok_or(Error::Corrupt {
            table: "outbox",
            row: Row::Seq(row.seq),
        })?;
    Ok(Some((row, conversation)))
}

/// The longest body whose ciphertext fits in `max_ciphertext_len`, given
/// that a body of `len` bytes made a ciphertext of `ciphertext_len`: the
/// ciphertext is a fixed overhead plus the padded body
/// ([`sotto_core::pad::padded_len`]), and padded lengths grow with the body.
fn largest_body_within(len: usize, ciphertext_len: usize, max_ciphertext_len: usize) -> usize {
    let padded = |n: usize| sotto_core::pad::padded_len(n.saturating_add(1));
    let overhead = ciphertext_len.saturating_sub(padded(len));
    let Some(room) = max_ciphertext_len.checked_sub(overhead) else {
        return 0;
    };
    if padded(0) > room {
        return 0;
    }
    // The largest n < len with padded(n) <= room (padded is monotonic).
    let (mut lo, mut hi) = (0usize, len);
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        if padded(mid) <= room {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Opens outbox rows with their conversations' keys (each conversation
/// loaded once), and seals each detached body once for all the entries of
/// its message. A row that cannot be read is reported in place.
pub(crate) fn open_outbox_rows(
    db: &crate::db::Db<'_>,
    rows: Vec<Result<crate::db::OutboxRow>>,
) -> Vec<Result<(OutboxEntry, crate::records::OutboxRecord)>> {
    let mut conversations: HashMap<[u8; 32], Option<Conversation>> = HashMap::new();
    let mut blobs: HashMap<([u8; 32], u64), Arc<[u8]>> = HashMap::new();
    rows.into_iter()
        .map(|row| {
            let row = row?;
            if let std::collections::hash_map::Entry::Vacant(slot) =
                conversations.entry(row.conversation)
            {
                slot.insert(db.conversation_by_lookup(&row.conversation)?);
            }
            let conversation = conversations
                .get(&row.conversation)
                .and_then(Option::as_ref)
                .ok_or(Error::Corrupt {
                    table: "outbox",
                    row: Row::Seq(row.seq),
                })?;
            let record = db.open_outbox(conversation, &row)?;
            let detached_body = match &record.body_key {
                None => None,
                Some(key) => Some(match blobs.get(&(row.conversation, row.seq)) {
                    Some(blob) => blob.clone(),
                    None => {
                        let blob: Arc<[u8]> = detached_blob(db, conversation, row.seq, key)?.into();
                        blobs.insert((row.conversation, row.seq), blob.clone());
                        blob
                    }
                }),
            };
            Ok((
                OutboxEntry {
                    id: record.id,
                    recipient: crate::controls::contact_of_control(&conversation.contact)
                        .unwrap_or(&conversation.contact)
                        .to_owned(),
                    control: crate::controls::contact_of_control(&conversation.contact).is_some(),
                    to: record.to,
                    seq: row.seq,
                    ciphertext: record.ciphertext.clone(),
                    detached_body,
                },
                record,
            ))
        })
        .collect()
}

/// The blob of message `seq`'s detached body: its body, read back from
/// history, sealed again under its key. The same bytes every time (the
/// nonce is fixed), so the digest in the references sent stays the blob's.
fn detached_blob(
    db: &crate::db::Db<'_>,
    conversation: &Conversation,
    seq: u64,
    key: &BodyKey,
) -> Result<Vec<u8>> {
    let corrupt = || Error::Corrupt {
        table: "messages",
        row: Row::Seq(seq),
    };
    let sealed = db.message_sealed(conversation, seq)?.ok_or_else(corrupt)?;
    let record = db.open_message_record(conversation, seq, &sealed)?;
    let message = records::decode_message(seq, &record).map_err(|_| corrupt())?;
    Ok(key.seal(&message.body)?)
}

/// Moves an outgoing message's state forward to `to` (Pending < Sent <
/// Delivered < Read); never back. Returns whether it changed.
pub(crate) fn advance_state<R: rand_core::CryptoRng + ?Sized>(
    db: &crate::db::Db<'_>,
    rng: &mut R,
    conversation: &Conversation,
    seq: u64,
    to: DeliveryState,
) -> Result<bool> {
    let corrupt = || Error::Corrupt {
        table: "messages",
        row: Row::Seq(seq),
    };
    let Some(sealed) = db.message_sealed(conversation, seq)? else {
        return Ok(false);
    };
    let mut record = db.open_message_record(conversation, seq, &sealed)?;
    let message = records::decode_message(seq, &record).map_err(|_| corrupt())?;
    let rank = |s: DeliveryState| match s {
        DeliveryState::Pending => 0,
        DeliveryState::Sent => 1,
        DeliveryState::Delivered => 2,
        DeliveryState::Read => 3,
        DeliveryState::Received | DeliveryState::Failed(_) => 0,
    };
    if message.direction != Direction::Outgoing || rank(to) <= rank(message.state) {
        return Ok(false);
    }
    records::set_message_state(&mut record, to).map_err(|_| corrupt())?;
    db.update_message(rng, conversation, seq, &record)?;
    Ok(true)
}
