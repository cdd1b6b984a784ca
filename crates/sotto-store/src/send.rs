//! Sending: the session advances, the message and its ciphertext are
//! committed, and only then is the ciphertext handed out.

use std::collections::HashMap;

use crate::db::Conversation;
use crate::error::{Error, Result, Row};
use crate::records::{self, check_body, check_contact_id};
use crate::store::Store;
use crate::testing::FaultPoint;
use crate::types::{CiphertextDigest, DeliveryState, Direction, EnvelopeId, OutboxEntry};

impl Store {
    /// Encrypts `body` for `recipient` and stores, in ONE transaction, the
    /// advanced session, the message in history (state `Pending`) and the
    /// ciphertext in the outbox under a fresh envelope id. Returns the
    /// outbox entry to hand to the relay once that transaction committed.
    ///
    /// If the process dies before the relay accepts the entry, the entry
    /// is still in [`outbox`](Self::outbox) and is retried under the same id.
    /// `sent_at` is milliseconds since the Unix epoch.
    pub fn send(&mut self, recipient: &str, body: &[u8], sent_at: u64) -> Result<OutboxEntry> {
        check_contact_id(recipient)?;
        check_body(body)?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let db = crate::db::Db::new(&tx, &self.keys);
        let rng = &mut self.rng;
        let lookup = db.contact_lookup(recipient);
        let mut sessions = db.sessions(&lookup)?;
        if !sessions.has_session() {
            return Err(Error::NoSession);
        }
        let ciphertext = sessions.encrypt(body)?;
        self.faults.check(FaultPoint::SendAfterEncrypt)?;

        db.put_sessions(rng, &lookup, &sessions)?;
        let mut conversation = db.conversation_or_create(rng, recipient)?;
        let seq = conversation.next_seq;
        conversation.next_seq += 1;
        let id = EnvelopeId::random(rng);
        let record = records::encode_message(
            Direction::Outgoing,
            DeliveryState::Pending,
            sent_at,
            &id,
            Some(&CiphertextDigest::of(&ciphertext)),
            body,
        )?;
        db.insert_message(rng, &conversation, seq, &record)?;
        db.insert_outbox(rng, &conversation, seq, &id, &ciphertext)?;
        db.save_next_seq(&conversation)?;
        self.faults.check(FaultPoint::SendBeforeCommit)?;
        tx.commit()?;
        self.faults.check(FaultPoint::SendAfterCommit)?;
        Ok(OutboxEntry {
            id,
            recipient: recipient.to_owned(),
            seq,
            ciphertext,
        })
    }

    /// Every ciphertext not yet accepted by the relay, oldest first. Send
    /// each under its id, then call [`mark_sent`](Self::mark_sent). A row
    /// that cannot be read is reported in place.
    pub fn outbox(&self) -> Result<Vec<Result<OutboxEntry>>> {
        self.read(|db| {
            let mut conversations: HashMap<[u8; 32], Option<Conversation>> = HashMap::new();
            let mut out = Vec::new();
            for row in db.outbox_rows()? {
                let entry = row.and_then(|row| {
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
                    let (id, ciphertext) = db.open_outbox(conversation, &row)?;
                    Ok(OutboxEntry {
                        id,
                        recipient: conversation.contact.clone(),
                        seq: row.seq,
                        ciphertext,
                    })
                });
                out.push(entry);
            }
            Ok(out)
        })
    }

    /// The relay accepted the envelope `id`: removes it from the outbox and
    /// moves its message from `Pending` to `Sent`. Returns whether it was
    /// in the outbox.
    pub fn mark_sent(&mut self, id: &EnvelopeId) -> Result<bool> {
        self.write(|db, rng| {
            let Some(row) = db.outbox_row(id)? else {
                return Ok(false);
            };
            if let Some(conversation) = db.conversation_by_lookup(&row.conversation)? {
                db.open_outbox(&conversation, &row)?;
                if let Some(sealed) = db.message_sealed(&conversation, row.seq)? {
                    let mut record = db.open_message_record(&conversation, row.seq, &sealed)?;
                    let message =
                        records::decode_message(row.seq, &record).map_err(|_| Error::Corrupt {
                            table: "messages",
                            row: Row::Seq(row.seq),
                        })?;
                    if message.state == DeliveryState::Pending {
                        records::set_message_state(&mut record, DeliveryState::Sent).map_err(
                            |_| Error::Corrupt {
                                table: "messages",
                                row: Row::Seq(row.seq),
                            },
                        )?;
                        db.update_message(rng, &conversation, row.seq, &record)?;
                    }
                }
            }
            db.delete_outbox(&row.lookup)
        })
    }
}
