//! Delivery and read receipts, sender side, and resending what no receipt
//! confirmed.
//!
//! An outgoing message stays in the outbox after the relay accepted it
//! ([`Store::mark_sent`]) until the recipient's device confirms it stored
//! it ([`Store::mark_delivered`]). An entry whose receipt is overdue is
//! offered again by [`Store::overdue`] and sent again under the same
//! envelope id and the same ciphertext: the recipient stores it once and
//! confirms again. So a relay that loses an envelope costs time, not the
//! message.

use std::collections::HashSet;
use std::time::Duration;

use crate::error::Result;
use crate::records::{self, check_contact_id};
use crate::recovery::RECOVERY_WINDOW;
use crate::send::{advance_state, open_outbox_rows};
use crate::store::Store;
use crate::types::{DeliveryState, Direction, EnvelopeId, OutboxEntry, PeerDevice};
use sotto_core::{DeviceId, IdentityKey};

/// When an accepted message without a delivery receipt is sent again: after
/// `first`, then after twice as long each time, at most `max` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResendPolicy {
    /// Wait after the relay first accepted it (default 5 minutes).
    pub first: Duration,
    /// Longest wait between two sends (default 6 hours).
    pub max: Duration,
}

impl Default for ResendPolicy {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(5 * 60),
            max: Duration::from_secs(6 * 3600),
        }
    }
}

impl ResendPolicy {
    /// How long to wait for a receipt after the `accepted`-th acceptance.
    pub fn wait_after(&self, accepted: u32) -> Duration {
        let doublings = accepted.saturating_sub(1).min(32);
        self.first
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max)
            .min(self.max)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Store {
    /// Entries the relay accepted but whose delivery receipt is overdue at
    /// `now` (ms since the Unix epoch) under `policy`, oldest first. Send
    /// each again under its id (the same ciphertext), then call
    /// [`mark_sent`](Self::mark_sent) again. A row that cannot be read is
    /// reported in place.
    pub fn overdue(&self, now: u64, policy: &ResendPolicy) -> Result<Vec<Result<OutboxEntry>>> {
        self.read(|db| {
            Ok(open_outbox_rows(db, db.outbox_rows(true)?)
                .into_iter()
                .filter_map(|entry| match entry {
                    Ok((entry, record)) => {
                        let due = record
                            .accepted_at
                            .saturating_add(millis(policy.wait_after(record.accepted)));
                        (now >= due).then_some(Ok(entry))
                    }
                    Err(e) => Some(Err(e)),
                })
                .collect())
        })
    }

    /// `contact` confirmed (in an authenticated receipt) that its device
    /// stored the envelopes `ids`: each such message of ours becomes
    /// `Delivered` and leaves the outbox. Ids that are not outgoing entries
    /// of this contact's conversation (already confirmed, or someone
    /// else's) change nothing. Returns the seqs that became `Delivered`.
    pub fn mark_delivered(&mut self, contact: &str, ids: &[EnvelopeId]) -> Result<Vec<u64>> {
        check_contact_id(contact)?;
        self.write(|db, rng| {
            let Some(conversation) = db.conversation(contact)? else {
                return Ok(Vec::new());
            };
            let mut delivered = Vec::new();
            for id in ids {
                let Some(row) = db.outbox_row(id)? else {
                    continue;
                };
                if row.conversation != conversation.lookup
                    || db.open_outbox(&conversation, &row)?.to.is_own()
                {
                    continue;
                }
                if advance_state(db, rng, &conversation, row.seq, DeliveryState::Delivered)? {
                    delivered.push(row.seq);
                }
                db.delete_outbox(&row.lookup)?;
            }
            // A confirmed delivery proves the sending session works.
            if !delivered.is_empty()
                && let Some(mut record) = db.contact(contact)?
                && record.recovery.resets_in_row != 0
            {
                record.recovery.resets_in_row = 0;
                db.put_contact(rng, &record)?;
            }
            Ok(delivered)
        })
    }

    /// The device whose identity key is `from` confirmed (in a receipt
    /// whose sealed envelope authenticated `from`) that it stored the
    /// envelopes `ids`: each outbox entry among them that was encrypted to
    /// that very device leaves the outbox; a contact device's makes its
    /// message `Delivered`, a "sent" copy's changes no state. Ids of
    /// entries for any other device change nothing, so no device can
    /// confirm what another received. Returns the `(contact id, seq)` of
    /// the messages that became `Delivered`.
    pub fn confirm_delivery(
        &mut self,
        from: &IdentityKey,
        ids: &[EnvelopeId],
    ) -> Result<Vec<(String, u64)>> {
        self.write(|db, rng| {
            let mut delivered = Vec::new();
            for id in ids {
                let Some(row) = db.outbox_row(id)? else {
                    continue;
                };
                let Some(conversation) = db.conversation_by_lookup(&row.conversation)? else {
                    continue;
                };
                let to = db.open_outbox(&conversation, &row)?.to;
                // A control's entries name the contact whose sent-controls
                // conversation holds them.
                let control = crate::controls::contact_of_control(&conversation.contact);
                let contact = control.unwrap_or(conversation.contact.as_str());
                if crate::devices::peer_key(db, contact, to)?.as_ref() != Some(from) {
                    continue;
                }
                db.delete_outbox(&row.lookup)?;
                if control.is_some() {
                    // A control delivered to every device it went to has
                    // done its work: it leaves the store.
                    if db
                        .outbox_rows_of_message(&conversation.lookup, row.seq)?
                        .is_empty()
                    {
                        db.delete_message(&conversation.lookup, row.seq)?;
                    }
                    continue;
                }
                if to.is_own()
                    || !advance_state(db, rng, &conversation, row.seq, DeliveryState::Delivered)?
                {
                    continue;
                }
                delivered.push((contact.to_owned(), row.seq));
                // A confirmed delivery proves the sending session works.
                if to == PeerDevice::CONTACT_PRIMARY
                    && let Some(mut record) = db.contact(contact)?
                    && record.recovery.resets_in_row != 0
                {
                    record.recovery.resets_in_row = 0;
                    db.put_contact(rng, &record)?;
                }
            }
            Ok(delivered)
        })
    }

    /// Our own device `device` confirmed (in an authenticated receipt) that
    /// it stored the "sent" copies `ids`: each leaves the outbox. The
    /// messages' states are the contact's business and do not change. Ids
    /// that are not copies waiting for that device change nothing.
    /// Returns how many entries left the outbox.
    pub fn mark_copies_delivered(&mut self, device: DeviceId, ids: &[EnvelopeId]) -> Result<usize> {
        self.write(|db, _| {
            let mut done = 0;
            for id in ids {
                let Some(row) = db.outbox_row(id)? else {
                    continue;
                };
                let Some(conversation) = db.conversation_by_lookup(&row.conversation)? else {
                    continue;
                };
                if db.open_outbox(&conversation, &row)?.to == PeerDevice::Own(device) {
                    db.delete_outbox(&row.lookup)?;
                    done += 1;
                }
            }
            Ok(done)
        })
    }

    /// `contact` read the envelopes `ids` (a read receipt): each such
    /// message of ours among the conversation's newest
    /// [`RECOVERY_WINDOW`] becomes `Read` (and leaves the outbox, if it was
    /// still waiting there). Returns the seqs that became `Read`.
    pub fn mark_read_by_contact(&mut self, contact: &str, ids: &[EnvelopeId]) -> Result<Vec<u64>> {
        check_contact_id(contact)?;
        let wanted: HashSet<EnvelopeId> = ids.iter().copied().collect();
        self.write(|db, rng| {
            let Some(conversation) = db.conversation(contact)? else {
                return Ok(Vec::new());
            };
            let newest = conversation.next_seq.saturating_sub(1);
            let oldest = newest.saturating_sub(RECOVERY_WINDOW).max(1);
            let mut read = Vec::new();
            let mut seq = newest;
            while seq >= oldest && seq > 0 && read.len() < wanted.len() {
                if let Some(sealed) = db.message_sealed(&conversation, seq)?
                    && let Ok(record) = db.open_message_record(&conversation, seq, &sealed)
                    && let Ok(message) = records::decode_message(seq, &record)
                    && message.direction == Direction::Outgoing
                    && wanted.contains(&message.envelope_id)
                {
                    if advance_state(db, rng, &conversation, seq, DeliveryState::Read)? {
                        read.push(seq);
                    }
                    db.delete_outbox(&db.outbox_lookup(&message.envelope_id))?;
                }
                seq -= 1;
            }
            Ok(read)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_maximum() {
        let p = ResendPolicy {
            first: Duration::from_secs(60),
            max: Duration::from_secs(300),
        };
        assert_eq!(p.wait_after(1), Duration::from_secs(60));
        assert_eq!(p.wait_after(2), Duration::from_secs(120));
        assert_eq!(p.wait_after(3), Duration::from_secs(240));
        assert_eq!(p.wait_after(4), Duration::from_secs(300));
        assert_eq!(p.wait_after(u32::MAX), Duration::from_secs(300));
        assert_eq!(p.wait_after(0), Duration::from_secs(60));
    }
}
