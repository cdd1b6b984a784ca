//! Conversations and their messages: paging, state changes, deletion.

use core::ops::Range;

use crate::error::{Error, Result, Row};
use crate::records::{self, check_body, check_contact_id};
use crate::store::Store;
use crate::types::{DeliveryState, EnvelopeId, HistoryEntry, HistoryPage, Message, NewMessage};

/// Most rows one history page returns.
pub const MAX_PAGE: usize = 10_000;

impl Store {
    /// A page of the conversation with `contact`, newest first: up to
    /// `limit` messages with `seq < before` (all, if `before` is `None`).
    ///
    /// Only the rows returned are decrypted. A row that fails to open is
    /// reported in its [`HistoryEntry`] and the others are still returned.
    /// `limit` is capped at [`MAX_PAGE`].
    pub fn history(&self, contact: &str, before: Option<u64>, limit: usize) -> Result<HistoryPage> {
        check_contact_id(contact)?;
        let limit = limit.min(MAX_PAGE);
        self.read(|db| {
            let Some(conversation) = db.conversation(contact)? else {
                return Ok(HistoryPage {
                    entries: Vec::new(),
                    next_before: None,
                });
            };
            let before = before.unwrap_or(u64::MAX);
            let rows = db.message_rows(&conversation.lookup, before, limit)?;
            let full = limit > 0 && rows.len() == limit;
            let mut entries: Vec<HistoryEntry> = rows
                .into_iter()
                .map(|(seq, sealed)| HistoryEntry {
                    seq,
                    message: sealed.and_then(|s| db.open_message(&conversation, seq, &s)),
                })
                .collect();
            // Every seq the page spans that has no row and was not deleted
            // through the store is reported in place: a damaged file must
            // not pass for a shorter history.
            let newest = before
                .saturating_sub(1)
                .min(conversation.next_seq.saturating_sub(1));
            let oldest = if full {
                entries.last().map_or(1, |e| e.seq)
            } else {
                1
            };
            let present: std::collections::HashSet<u64> = entries.iter().map(|e| e.seq).collect();
            let mut seq = newest;
            let mut missing = 0;
            while seq >= oldest && seq > 0 && missing < limit {
                if let Some(first) = records::deleted_range_start(&conversation.deleted, seq) {
                    // Skip a whole range deleted on purpose.
                    seq = first.saturating_sub(1);
                    continue;
                }
                if !present.contains(&seq) {
                    entries.push(HistoryEntry {
                        seq,
                        message: Err(Error::MissingRow {
                            table: "messages",
                            row: Row::Seq(seq),
                        }),
                    });
                    missing += 1;
                }
                seq -= 1;
            }
            entries.sort_unstable_by_key(|e| core::cmp::Reverse(e.seq));
            entries.truncate(limit);
            let next_before = (limit > 0 && (full || missing > 0) && entries.len() == limit)
                .then(|| entries.last().map(|e| e.seq))
                .flatten();
            Ok(HistoryPage {
                entries,
                next_before,
            })
        })
    }

    /// One message of the conversation with `contact`.
    pub fn message(&self, contact: &str, seq: u64) -> Result<Option<Message>> {
        check_contact_id(contact)?;
        self.read(|db| {
            let Some(conversation) = db.conversation(contact)? else {
                return Ok(None);
            };
            db.message_sealed(&conversation, seq)?
                .map(|sealed| db.open_message(&conversation, seq, &sealed))
                .transpose()
        })
    }

    /// Number of messages stored with `contact`.
    pub fn message_count(&self, contact: &str) -> Result<u64> {
        check_contact_id(contact)?;
        self.read(|db| db.count_messages(&db.conversation_lookup(contact)))
    }

    /// Records a new delivery state for a message (delivered, read, ...).
    pub fn set_delivery_state(
        &mut self,
        contact: &str,
        seq: u64,
        state: DeliveryState,
    ) -> Result<()> {
        check_contact_id(contact)?;
        self.write(|db, rng| {
            let conversation = db
                .conversation(contact)?
                .ok_or(Error::UnknownMessage(seq))?;
            let sealed = db
                .message_sealed(&conversation, seq)?
                .ok_or(Error::UnknownMessage(seq))?;
            let mut record = db.open_message_record(&conversation, seq, &sealed)?;
            records::set_message_state(&mut record, state).map_err(|_| Error::Corrupt {
                table: "messages",
                row: Row::Seq(seq),
            })?;
            db.update_message(rng, &conversation, seq, &record)
        })
    }

    /// Deletes one message (and its outbox entry, if unsent); returns
    /// whether it existed. Its row is overwritten in the file
    /// (`secure_delete`) and the write-ahead log is checkpointed.
    pub fn delete_message(&mut self, contact: &str, seq: u64) -> Result<bool> {
        check_contact_id(contact)?;
        let deleted = self.write(|db, rng| {
            let Some(mut conversation) = db.conversation(contact)? else {
                return Ok(false);
            };
            if !db.delete_message(&conversation.lookup, seq)? {
                return Ok(false);
            }
            // Remembered, so that the gap is not taken for damage.
            if conversation.deleted.len() >= records::MAX_DELETED_RANGES {
                return Err(Error::TooLong {
                    what: "deleted message ranges",
                    len: conversation.deleted.len(),
                    max: records::MAX_DELETED_RANGES,
                });
            }
            records::add_to_ranges(&mut conversation.deleted, seq);
            db.put_conversation_record(rng, &conversation)?;
            Ok(true)
        })?;
        if deleted {
            self.checkpoint()?;
        }
        Ok(deleted)
    }

    /// Deletes the whole conversation with `contact`: its messages, its
    /// outbox entries and its key, so any copy of its rows left anywhere
    /// can no longer be opened. The contact and the session stay. Returns
    /// whether there was a conversation.
    pub fn delete_conversation(&mut self, contact: &str) -> Result<bool> {
        check_contact_id(contact)?;
        let deleted =
            self.write(|db, _| db.delete_conversation(&db.conversation_lookup(contact)))?;
        self.checkpoint()?;
        Ok(deleted)
    }

    /// Appends messages to the conversation with `contact` without the
    /// protocol (restoring a backup, importing history), in one
    /// transaction. Each gets a fresh random envelope id. Returns the
    /// range of seqs assigned.
    pub fn import_messages(
        &mut self,
        contact: &str,
        messages: &[NewMessage<'_>],
    ) -> Result<Range<u64>> {
        check_contact_id(contact)?;
        for m in messages {
            check_body(m.body)?;
        }
        self.write(|db, rng| {
            let mut conversation = db.conversation_or_create(rng, contact)?;
            let first = conversation.next_seq;
            for m in messages {
                let id = EnvelopeId::random(rng);
                let record =
                    records::encode_message(m.direction, m.state, m.timestamp, &id, None, m.body)?;
                db.insert_message(rng, &conversation, conversation.next_seq, &record)?;
                conversation.next_seq += 1;
            }
            db.save_next_seq(&conversation)?;
            Ok(first..conversation.next_seq)
        })
    }
}
