//! Applying one chunk's plaintext: the records it completes are written
//! into the store, and where the stream stands afterwards goes into the
//! transfer's state. Runs inside the chunk's transaction, so a failure at
//! any point leaves nothing of the chunk.
//!
//! The rules are the archive import's (`docs/storage.md`, "History
//! archive"), plus: no identity and no prekey ids, and contacts and
//! conversations in strictly increasing contact id, so a contact or a
//! conversation given twice is found without a list of every id.

use rand::rngs::StdRng;

use super::super::ArchiveError;
use super::super::records::{self, MAX_PAYLOAD, OPTIONAL};
use super::super::rows::MessageRows;
use super::merge;
use super::state::{FRAME_LEN, OpenConversation, TransferState, put_carry_part, take_carry_part};
use crate::db::{Conversation, Db};
use crate::error::{Error, Result, Row};
use crate::records::deleted_range_start;
use crate::testing::{FaultPoint, Faults};

/// Where the open conversation's rows go in this chunk.
pub(super) enum Target {
    /// Not looked up yet in this chunk.
    Unloaded,
    /// The conversation the transfer merged, with its key.
    Loaded(Box<Conversation>),
    /// Deleted here while its rows were arriving (or deleted and made
    /// again): the rest of its rows are read and dropped, so a deletion
    /// is not undone.
    Gone,
}

/// Applies the records of one chunk.
pub(super) struct Applier<'a, 'c> {
    pub(super) db: &'a Db<'c>,
    pub(super) rng: &'a mut StdRng,
    pub(super) faults: &'a mut Faults,
    pub(super) state: &'a mut TransferState,
    /// The chunk being applied (for errors).
    pub(super) chunk: u64,
    /// The open conversation, with its key, once loaded in this chunk.
    pub(super) conversation: Target,
    /// Its rows not yet written.
    pub(super) rows: MessageRows,
}

impl Applier<'_, '_> {
    fn malformed(&self, what: &'static str) -> Error {
        Error::Archive(ArchiveError::MalformedRecord {
            chunk: self.chunk,
            what,
        })
    }

    /// Applies `data`, the chunk's plaintext: completes the record carried
    /// from earlier chunks, applies every whole record, and carries the
    /// start of one that runs past the chunk's end.
    pub(super) fn feed(&mut self, data: &[u8]) -> Result<()> {
        self.feed_records(data)?;
        self.flush()
    }

    /// Writes the queued rows of the open conversation.
    fn flush(&mut self) -> Result<()> {
        match &self.conversation {
            Target::Loaded(conversation) => self.rows.flush(self.db, self.rng, conversation),
            Target::Unloaded | Target::Gone => Ok(()),
        }
    }

    fn feed_records(&mut self, mut data: &[u8]) -> Result<()> {
        loop {
            if self.state.skip > 0 {
                let n = self.state.skip.min(data.len() as u64);
                data = &data[n as usize..];
                self.state.skip -= n;
            }
            if data.is_empty() {
                return Ok(());
            }
            let carry = &mut self.state.carry;
            if carry.frame.len() < FRAME_LEN {
                let take = (FRAME_LEN - carry.frame.len()).min(data.len());
                carry.frame.extend_from_slice(&data[..take]);
                data = &data[take..];
                if carry.frame.len() < FRAME_LEN {
                    return Ok(());
                }
            }
            let kind = carry.frame[0];
            let len = u32::from_be_bytes([
                carry.frame[1],
                carry.frame[2],
                carry.frame[3],
                carry.frame[4],
            ]);
            if !records::is_known(kind) {
                if kind & OPTIONAL == 0 {
                    return Err(self.malformed("a record type this version does not know"));
                }
                carry.frame.clear();
                self.state.skip = u64::from(len);
                continue;
            }
            if len as usize > MAX_PAYLOAD {
                return Err(self.malformed("a record longer than any record can be"));
            }
            let Some(need) = u64::from(len)
                .checked_sub(carry.payload)
                .and_then(|n| usize::try_from(n).ok())
            else {
                return Err(Error::Corrupt {
                    table: "meta",
                    row: Row::Named("history_transfer"),
                });
            };
            if data.len() < need {
                if !data.is_empty() {
                    let part = carry.parts;
                    carry.parts += 1;
                    carry.payload += data.len() as u64;
                    put_carry_part(self.db, self.rng, self.state.header.id, part, data)?;
                }
                return Ok(());
            }
            let (end, rest) = data.split_at(need);
            data = rest;
            if carry.parts == 0 {
                self.record(kind, end)?;
            } else {
                let parts = carry.parts;
                let mut payload = zeroize::Zeroizing::new(Vec::with_capacity(len as usize));
                for part in 0..parts {
                    take_carry_part(self.db, self.state.header.id, part, &mut payload)?;
                }
                if payload.len() + end.len() != len as usize {
                    return Err(Error::Corrupt {
                        table: "meta",
                        row: Row::Named("history_transfer_carry"),
                    });
                }
                payload.extend_from_slice(end);
                self.record(kind, &payload)?;
            }
            self.state.carry = Default::default();
        }
    }

    /// Checks, after the final chunk, that the stream ended where a record
    /// ends and holds what its header says.
    pub(super) fn finish(&self) -> Result<()> {
        if !self.state.carry.frame.is_empty() || self.state.skip > 0 {
            return Err(self.malformed("a record runs past the end of the transfer"));
        }
        if self
            .state
            .conversation
            .as_ref()
            .is_some_and(|c| c.rows_left != 0)
        {
            return Err(self.malformed("a conversation with fewer rows than it says"));
        }
        let header = &self.state.header;
        for (what, expected, found) in [
            ("contacts", header.contacts, self.state.tally.contacts),
            ("messages", header.messages, self.state.tally.messages),
        ] {
            if expected != found {
                return Err(ArchiveError::CountMismatch {
                    what,
                    expected,
                    found,
                }
                .into());
            }
        }
        Ok(())
    }

    /// Applies one whole record.
    fn record(&mut self, kind: u8, payload: &[u8]) -> Result<()> {
        match kind {
            records::CONTACT => self.contact(payload),
            records::CONVERSATION => self.conversation(payload),
            records::MESSAGE | records::UNREADABLE => self.row(kind, payload),
            _ => Err(self.malformed("an identity or prekey ids in a transfer")),
        }
    }

    fn contact(&mut self, payload: &[u8]) -> Result<()> {
        if self.state.conversation.is_some() {
            return Err(self.malformed("a contact after the conversations"));
        }
        let record = records::decode_archived_contact(payload)
            .ok_or_else(|| self.malformed("a contact record"))?;
        if self
            .state
            .last_contact
            .as_ref()
            .is_some_and(|last| record.id <= *last)
        {
            return Err(self.malformed("contacts out of order, or one twice"));
        }
        let id = record.id.clone();
        merge::contact(self.db, self.rng, record, &mut self.state.tally)?;
        self.state.last_contact = Some(id);
        self.state.tally.contacts += 1;
        Ok(())
    }

    fn conversation(&mut self, payload: &[u8]) -> Result<()> {
        if let Some(previous) = &self.state.conversation
            && previous.rows_left != 0
        {
            return Err(self.malformed("a conversation with fewer rows than it says"));
        }
        let record = records::decode_conversation(payload)
            .ok_or_else(|| self.malformed("a conversation record"))?;
        if self
            .state
            .conversation
            .as_ref()
            .is_some_and(|previous| record.contact <= previous.contact)
        {
            return Err(self.malformed("conversations out of order, or one twice"));
        }
        self.flush()?;
        let conversation = merge::conversation(self.db, self.rng, &record, self.chunk)?;
        self.faults.check(FaultPoint::TransferAfterMerge)?;
        self.state.conversation = Some(OpenConversation {
            contact: record.contact,
            key_check: merge::key_check(&conversation),
            limit: record.next_seq,
            rows_left: record.rows,
            last_seq: 0,
        });
        self.conversation = Target::Loaded(Box::new(conversation));
        Ok(())
    }

    /// A message or unreadable record of the open conversation.
    fn row(&mut self, kind: u8, payload: &[u8]) -> Result<()> {
        let Some(open) = self.state.conversation.as_ref().filter(|c| c.rows_left > 0) else {
            return Err(self.malformed("a message outside its conversation"));
        };
        let (seq, message) =
            records::decode_row(kind, payload).ok_or_else(|| self.malformed("a message record"))?;
        if matches!(self.conversation, Target::Unloaded) {
            // The conversation was merged in an earlier chunk.
            self.conversation = match self.db.conversation(&open.contact)? {
                Some(c) if merge::key_check(&c) == open.key_check => Target::Loaded(Box::new(c)),
                Some(_) | None => Target::Gone,
            };
        }
        if seq <= open.last_seq || seq >= open.limit {
            return Err(self.malformed("a message whose seq is out of place"));
        }
        if let Target::Loaded(conversation) = &self.conversation {
            if deleted_range_start(&conversation.deleted, seq).is_some() {
                return Err(self.malformed("a message whose seq is out of place"));
            }
            // An unreadable row stays missing, as it was at the source.
            if let Some(parts) = message {
                self.rows.push(seq, parts)?;
                if self.rows.is_full() {
                    self.rows.flush(self.db, self.rng, conversation)?;
                }
            }
        }
        if let Some(open) = self.state.conversation.as_mut() {
            open.last_seq = seq;
            open.rows_left -= 1;
        }
        self.state.tally.messages += 1;
        Ok(())
    }
}
