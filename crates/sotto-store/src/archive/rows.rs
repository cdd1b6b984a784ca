//! Writing an archive's message rows into a store, in batches: the rows
//! of one conversation are queued, then sealed and inserted together
//! with one prepared statement. Shared by the backup import and the
//! history transfer. The seen-envelope lookups of the incoming rows are
//! collected for the caller to record ([`write_seen`]): the import does
//! at once, a transfer in larger, sorted batches (random keys written a
//! few at a time would rewrite pages all over their index).
//!
//! Sealing (XChaCha20-Poly1305 under the conversation's key, a fresh
//! random nonce per row) is most of the work of writing a row: a large
//! batch is sealed on several threads ([`super::parallel`]), each drawing
//! its nonces from its own generator seeded from the store's. The
//! database is written from the caller's thread, in seq order.
//!
//! A message that was still waiting for the relay at export becomes
//! `Failed(ExportedUnsent)`: its ciphertext and session are not in the
//! archive. An incoming message's envelope id is recorded as seen, so a
//! copy the relay delivers again is a duplicate, as it was at the source.

use rand::SeedableRng;
use rand::rngs::StdRng;
use zeroize::Zeroizing;

use super::parallel::{map_parts, threads_for};
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
    /// Seen-envelope lookups of the incoming rows written.
    seen: Vec<[u8; 32]>,
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
    /// of them belong to), inserts them, keeps the incoming ones'
    /// seen-envelope lookups for [`take_seen`](Self::take_seen), and
    /// empties the queue.
    pub(super) fn flush(
        &mut self,
        db: &Db<'_>,
        rng: &mut StdRng,
        conversation: &Conversation,
    ) -> Result<()> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let sealed = seal_all(conversation, &self.queued, rng)?;
        db.insert_sealed_messages(
            conversation,
            self.queued
                .iter()
                .zip(&sealed)
                .map(|(q, s)| (q.seq, s.as_slice())),
        )?;
        self.seen.extend(
            self.queued
                .iter()
                .filter_map(|q| q.incoming)
                .map(|id| db.seen_lookup(&conversation.contact, &id)),
        );
        self.queued.clear();
        self.bytes = 0;
        Ok(())
    }
}

impl MessageRows {
    /// The seen-envelope lookups of the rows written since the last call.
    pub(super) fn take_seen(&mut self) -> Vec<[u8; 32]> {
        std::mem::take(&mut self.seen)
    }
}

/// Records envelopes as seen: one sorted run of the seen-envelope archive,
/// written at one place (docs/storage.md, "Seen envelope ids").
pub(super) fn write_seen(db: &Db<'_>, mut lookups: Vec<[u8; 32]>) -> Result<()> {
    db.archive_seen(&mut lookups)
}

/// Seals every queued row for its place, in order.
fn seal_all(
    conversation: &Conversation,
    queued: &[Queued],
    rng: &mut StdRng,
) -> Result<Vec<Vec<u8>>> {
    // Each thread its own generator, seeded from the store's (a CSPRNG
    // seeded by the operating system): nonces stay random and independent.
    let rngs: Vec<StdRng> = (0..threads_for(queued.len()))
        .map(|_| StdRng::from_rng(&mut *rng))
        .collect();
    map_parts(queued, rngs, |rng, part| {
        part.iter()
            .map(|q| conversation.seal_message(rng, q.seq, &q.record))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{ConversationKey, Place};
    use crate::db::message_row;

    #[test]
    fn rows_sealed_on_several_threads_open_in_their_own_places() {
        let mut rng = StdRng::from_seed([3; 32]);
        let conversation = Conversation {
            lookup: [5; 32],
            num: 1,
            contact: "bob".into(),
            key: ConversationKey::generate(&mut rng),
            next_seq: 10_000,
            deleted: Vec::new(),
            timer: None,
        };
        let queued: Vec<Queued> = (1..=3 * super::super::parallel::ROWS_PER_THREAD as u64 + 7)
            .map(|seq| Queued {
                seq,
                record: Zeroizing::new(seq.to_be_bytes().to_vec()),
                incoming: None,
            })
            .collect();
        let sealed = seal_all(&conversation, &queued, &mut rng).unwrap();
        assert_eq!(sealed.len(), queued.len());
        let mut nonces = std::collections::HashSet::new();
        for (q, s) in queued.iter().zip(&sealed) {
            let row = message_row(&conversation.lookup, q.seq);
            let opened = conversation
                .key
                .sealing()
                .open(Place::new("messages", "sealed", &row), s)
                .unwrap();
            assert_eq!(opened.as_slice(), q.record.as_slice());
            assert!(nonces.insert(s[1..25].to_vec()), "a nonce twice");
        }
    }
}
