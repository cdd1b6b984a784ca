//! Writing an archive's message rows into a store, in batches: the rows
//! of one conversation are queued, then sealed and inserted together
//! with one prepared statement each for the messages and the seen
//! envelope ids. Shared by the backup import and the history transfer.
//!
//! A message that was still waiting for the relay at export becomes
//! `Failed(ExportedUnsent)`: its ciphertext and session are not in the
//! archive. An incoming message's envelope id is recorded as seen, so a
//! copy the relay delivers again is a duplicate, as it was at the source.

use rand::rngs::StdRng;
use zeroize::Zeroizing;

use super::records::MessageParts;
use crate::db::{Conversation, Db};
use crate::error::{Error, Result, Row};
use crate::records::{message_record_from_parts, set_message_state};
use crate::types::{DeliveryState, EnvelopeId, SendFailure};

/// Rows queued before a flush is due.
const MAX_ROWS: usize = 4096;
/// Plaintext bytes queued before a flush is due (one chunk's worth).
const MAX_BYTES: usize = 512 * 1024;

/// One queued row.
struct Queued {
    seq: u64,
    /// The store's message record (body padded), wiped on drop.
    record: Zeroizing<Vec<u8>>,
    /// The envelope id of an incoming message.
    incoming: Option<EnvelopeId>,
}

/// Message rows of one conversation waiting to be written.
#[derive(Default)]
pub(super) struct MessageRows {
    queued: Vec<Queued>,
    bytes: usize,
}

impl MessageRows {
    /// Queues message `seq` from its archived head and body (checked by
    /// [`decode_row`](super::records::decode_row)).
    pub(super) fn push(&mut self, seq: u64, (head, body): MessageParts<'_>) -> Result<()> {
        let mut record = message_record_from_parts(head, body)?;
        // Offsets in the message head: direction at 1, state at 2,
        // envelope id at 11..27 (checked by `message_head_len`).
        let outgoing = head[1] == 1;
        if outgoing && DeliveryState::from_byte(head[2]) == Some(DeliveryState::Pending) {
            set_message_state(
                &mut record,
                DeliveryState::Failed(SendFailure::ExportedUnsent),
            )
            .map_err(|_| Error::Corrupt {
                table: "messages",
                row: Row::Seq(seq),
            })?;
        }
        let incoming = (!outgoing)
            .then(|| head[11..27].try_into().ok().map(EnvelopeId))
            .flatten();
        self.bytes += record.len();
        self.queued.push(Queued {
            seq,
            record,
            incoming,
        });
        Ok(())
    }

    /// True when enough is queued to flush before queuing more.
    pub(super) fn is_full(&self) -> bool {
        self.queued.len() >= MAX_ROWS || self.bytes >= MAX_BYTES
    }

    /// Seals every queued row for its place in `conversation` (which all
    /// of them belong to), inserts them, records the incoming ones'
    /// envelope ids as seen, and empties the queue.
    pub(super) fn flush(
        &mut self,
        db: &Db<'_>,
        rng: &mut StdRng,
        conversation: &Conversation,
    ) -> Result<()> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let sealed = self
            .queued
            .iter()
            .map(|q| conversation.seal_message(rng, q.seq, &q.record))
            .collect::<Result<Vec<_>>>()?;
        db.insert_sealed_messages(
            conversation,
            self.queued
                .iter()
                .zip(&sealed)
                .map(|(q, s)| (q.seq, s.as_slice())),
        )?;
        let seen: Vec<[u8; 32]> = self
            .queued
            .iter()
            .filter_map(|q| q.incoming)
            .map(|id| db.seen_lookup(&conversation.contact, &id))
            .collect();
        db.mark_seen_all(&seen)?;
        self.queued.clear();
        self.bytes = 0;
        Ok(())
    }
}
