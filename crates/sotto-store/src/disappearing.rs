//! Disappearing messages (docs/storage.md, "Disappearing messages").
//!
//! A conversation may have a timer ([`DisappearingTimer`]), set by either
//! side and kept in its sealed record; each change is an event in its
//! history. While the timer is on, a message's countdown starts when it
//! is read (incoming: [`Store::mark_read`]) or sent (outgoing: when the
//! relay first takes a copy for the contact, [`Store::mark_sent`], or when
//! a copy of a message sent from another of our devices is stored): its
//! deadline goes in the `expiring` table, sealed and bound to the
//! message's place, in the same transaction. [`Store::expire_messages`]
//! deletes every message whose deadline passed, as
//! [`Store::delete_message`] does (the row overwritten in the file, the
//! write-ahead log checkpointed), all in one transaction.
//!
//! Messages read or sent while the timer was off keep no deadline when it
//! is turned on; a message keeps the deadline it got when the timer
//! changes afterwards.

use crate::db::{Conversation, Db};
use crate::error::{Error, Result};
use crate::records::{self, check_contact_id};
use crate::store::Store;
use crate::types::{
    ConversationEvent, DeliveryState, Direction, DisappearingTimer, EnvelopeId, Expired,
};

/// Starts the countdown of message `seq` of `conversation` at `now`, if
/// its timer is on and the message has no deadline yet. Returns whether
/// it started.
pub(crate) fn start_countdown<R: rand_core::CryptoRng + ?Sized>(
    db: &Db<'_>,
    rng: &mut R,
    conversation: &Conversation,
    seq: u64,
    now: u64,
) -> Result<bool> {
    let Some(timer) = conversation.timer.filter(DisappearingTimer::is_on) else {
        return Ok(false);
    };
    let deadline = now.saturating_add(u64::from(timer.seconds).saturating_mul(1000));
    db.schedule_expiry(rng, &conversation.lookup, seq, deadline)
}

/// The digest of message `seq`'s attachment blob, if it is one and can be
/// read.
fn attachment_of(db: &Db<'_>, conversation: &Conversation, seq: u64) -> Option<[u8; 32]> {
    let sealed = db.message_sealed(conversation, seq).ok()??;
    let message = db.open_message(conversation, seq, &sealed).ok()?;
    sotto_core::attachment::AttachmentRef::decode(&message.body)
        .ok()
        .map(|r| r.digest)
}

impl Store {
    /// The disappearing messages timer of the conversation with
    /// `contact`: `None` if none was ever set (messages stay), else the
    /// newest setting (off when its `seconds` is 0).
    pub fn disappearing_timer(&self, contact: &str) -> Result<Option<DisappearingTimer>> {
        check_contact_id(contact)?;
        self.read(|db| Ok(db.conversation(contact)?.and_then(|c| c.timer)))
    }

    /// Takes `timer` for the conversation with `contact` if it supersedes
    /// the one held ([`DisappearingTimer::supersedes`]; any timer when none
    /// is held), and, when its seconds differ from the timer's before,
    /// records the change in the conversation's history as an event
    /// ([`ConversationEvent::TimerChanged`], outgoing when `timer.set_by`
    /// is this account), dated `now`. Returns whether the timer was taken;
    /// a change older than the one held changes nothing, so both sides end
    /// with the same timer whatever order changes arrive in.
    ///
    /// Messages that already have a deadline keep it; the new timer counts
    /// for the messages read or sent from now on.
    pub fn set_disappearing_timer(
        &mut self,
        contact: &str,
        timer: &DisappearingTimer,
        now: u64,
    ) -> Result<bool> {
        check_contact_id(contact)?;
        self.write(|db, rng| {
            if db.contact(contact)?.is_none() {
                return Err(Error::UnknownContact);
            }
            let mut conversation = db.conversation_or_create(rng, contact)?;
            let before = conversation.timer;
            if before.is_some_and(|held| !timer.supersedes(&held)) {
                return Ok(false);
            }
            conversation.timer = Some(*timer);
            db.put_conversation_record(rng, &conversation)?;
            if before.map_or(0, |t| t.seconds) != timer.seconds {
                let ours = crate::devices::account_key(db)? == timer.set_by;
                let direction = if ours {
                    Direction::Outgoing
                } else {
                    Direction::Incoming
                };
                let record = records::encode_event(
                    direction,
                    now,
                    &EnvelopeId::random(rng),
                    &ConversationEvent::TimerChanged {
                        seconds: timer.seconds,
                    },
                )?;
                let seq = conversation.next_seq;
                db.insert_message(rng, &conversation, seq, &record)?;
                conversation.next_seq += 1;
                db.save_next_seq(&conversation)?;
            }
            Ok(true)
        })
    }

    /// Marks incoming message `seq` of `contact` read (at `now`, ms since
    /// the Unix epoch) and, when the conversation's timer is on, starts
    /// its countdown, in one transaction. Returns whether the message
    /// changed (false for a message read before or not incoming);
    /// [`Error::UnknownMessage`] without such a message.
    pub fn mark_read(&mut self, contact: &str, seq: u64, now: u64) -> Result<bool> {
        check_contact_id(contact)?;
        self.write(|db, rng| {
            let conversation = db
                .conversation(contact)?
                .ok_or(Error::UnknownMessage(seq))?;
            let sealed = db
                .message_sealed(&conversation, seq)?
                .ok_or(Error::UnknownMessage(seq))?;
            let mut record = db.open_message_record(&conversation, seq, &sealed)?;
            let corrupt = || Error::Corrupt {
                table: "messages",
                row: crate::error::Row::Seq(seq),
            };
            let message = records::decode_message(seq, &record).map_err(|_| corrupt())?;
            if message.direction != Direction::Incoming
                || message.event.is_some()
                || message.state == DeliveryState::Read
            {
                return Ok(false);
            }
            records::set_message_state(&mut record, DeliveryState::Read).map_err(|_| corrupt())?;
            db.update_message(rng, &conversation, seq, &record)?;
            start_countdown(db, rng, &conversation, seq, now)?;
            Ok(true)
        })
    }

    /// The earliest deadline of any message (ms since the Unix epoch), to
    /// know when to call [`expire_messages`](Self::expire_messages) next;
    /// `None` when no message has one. A deadline that cannot be read
    /// counts as due now.
    pub fn next_expiry(&self) -> Result<Option<u64>> {
        self.read(|db| {
            Ok(db
                .expiry_rows()?
                .into_iter()
                .map(|(_, _, deadline)| deadline.unwrap_or(0))
                .min())
        })
    }

    /// Deletes every message whose deadline is at or before `now` (ms
    /// since the Unix epoch), in one transaction, as
    /// [`delete_message`](Self::delete_message) deletes one: its row is
    /// overwritten in the file, and the write-ahead log is checkpointed
    /// afterwards. A deadline that cannot be read (a damaged row) counts
    /// as passed: a message meant to disappear is never kept for want of
    /// its deadline. Returns the messages deleted.
    pub fn expire_messages(&mut self, now: u64) -> Result<Vec<Expired>> {
        let expired = self.write(|db, rng| {
            let mut due: Vec<([u8; 32], u64)> = db
                .expiry_rows()?
                .into_iter()
                .filter(|(_, _, deadline)| deadline.as_ref().map_or(true, |&d| d <= now))
                .map(|(lookup, seq, _)| (lookup, seq))
                .collect();
            due.sort_unstable();
            let mut out = Vec::with_capacity(due.len());
            let mut i = 0;
            while i < due.len() {
                let lookup = due[i].0;
                let end = due[i..]
                    .iter()
                    .position(|(l, _)| *l != lookup)
                    .map_or(due.len(), |n| i + n);
                let seqs = due[i..end].iter().map(|&(_, seq)| seq);
                match db.conversation_by_lookup(&lookup)? {
                    Some(mut conversation) => {
                        for seq in seqs {
                            let attachment = attachment_of(db, &conversation, seq);
                            if db.delete_message(&lookup, seq)? {
                                records::add_to_ranges(&mut conversation.deleted, seq);
                                out.push(Expired {
                                    contact: conversation.contact.clone(),
                                    seq,
                                    attachment,
                                });
                            }
                        }
                        if conversation.deleted.len() > records::MAX_DELETED_RANGES {
                            return Err(Error::TooLong {
                                what: "deleted message ranges",
                                len: conversation.deleted.len(),
                                max: records::MAX_DELETED_RANGES,
                            });
                        }
                        db.put_conversation_record(rng, &conversation)?;
                    }
                    // The conversation is gone: only the deadlines remain.
                    None => {
                        for seq in seqs {
                            db.delete_expiry(&lookup, seq)?;
                        }
                    }
                }
                i = end;
            }
            Ok(out)
        })?;
        if !expired.is_empty() {
            self.checkpoint()?;
        }
        Ok(expired)
    }
}
