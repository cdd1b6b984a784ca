//! Control messages: what devices tell each other through their pairwise
//! sessions besides chat (a group's sender keys and membership changes).
//!
//! They travel exactly like chat messages — the same sessions, outbox,
//! receipts, resends and crash guarantees — but they are kept apart from
//! the chat, in conversations of their own: those sent to a contact in
//! `#sent-control:` + the contact id, those received from a contact (or
//! copies of ours from our other devices) in `#control:` + the contact
//! id. A received control waits there, sealed like any message, until the
//! caller has acted on it and deletes it: a crash in between leaves it to
//! be acted on again, so acting on a control must be safe to repeat.

use crate::error::Result;
use crate::records::check_contact_id;
use crate::store::Store;
use sotto_core::IdentityKey;
use zeroize::Zeroizing;

use crate::types::Direction;

/// The prefix of the conversation of controls received from a contact.
pub const CONTROL_CONVERSATION_PREFIX: &str = "#control:";
/// The prefix of the conversation of controls sent to a contact.
pub const SENT_CONTROL_CONVERSATION_PREFIX: &str = "#sent-control:";

/// The conversation that holds the control messages received from contact
/// `contact` and not yet acted on.
pub fn control_conversation_id(contact: &str) -> String {
    format!("{CONTROL_CONVERSATION_PREFIX}{contact}")
}

/// The conversation that holds the control messages sent to contact
/// `contact` (their outbox entries refer to it).
pub(crate) fn sent_control_conversation_id(contact: &str) -> String {
    format!("{SENT_CONTROL_CONVERSATION_PREFIX}{contact}")
}

/// The contact whose sent-controls conversation `conversation` is, if it
/// is one.
pub(crate) fn contact_of_control(conversation: &str) -> Option<&str> {
    conversation.strip_prefix(SENT_CONTROL_CONVERSATION_PREFIX)
}

/// A control message received and not yet acted on.
pub struct Control {
    /// Its seq in the contact's control conversation (for
    /// [`delete_control`](Store::delete_control)).
    pub seq: u64,
    /// The device that sent it (its session decrypted it).
    pub from_device: IdentityKey,
    /// A copy of a control our account sent from another of our devices.
    pub own: bool,
    /// What it says.
    pub body: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for Control {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Control")
            .field("seq", &self.seq)
            .field("own", &self.own)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The control messages received from `contact` (and copies of those
    /// our own other devices sent it) not yet deleted, oldest first. A
    /// row that cannot be read is left out.
    pub fn controls(&self, contact: &str) -> Result<Vec<Control>> {
        check_contact_id(contact)?;
        let conversation = control_conversation_id(contact);
        let mut out = Vec::new();
        let mut before = None;
        loop {
            let page = self.history(&conversation, before, crate::MAX_PAGE)?;
            out.extend(page.entries.into_iter().filter_map(|e| e.message.ok()));
            match page.next_before {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        out.sort_by_key(|m| m.seq);
        Ok(out
            .into_iter()
            .filter_map(|m| {
                let (key, body) = m.body.split_first_chunk::<32>()?;
                Some(Control {
                    seq: m.seq,
                    from_device: IdentityKey::from_bytes(key).ok()?,
                    own: m.direction == Direction::Outgoing,
                    body: Zeroizing::new(body.to_vec()),
                })
            })
            .collect())
    }

    /// The contacts that have control messages waiting
    /// ([`controls`](Self::controls)).
    pub fn contacts_with_controls(&self) -> Result<Vec<String>> {
        self.read(|db| {
            let mut out = Vec::new();
            for lookup in db.conversation_lookups()? {
                let Ok(Some(conversation)) = db.conversation_by_lookup(&lookup) else {
                    continue;
                };
                if let Some(contact) = conversation
                    .contact
                    .strip_prefix(CONTROL_CONVERSATION_PREFIX)
                    && db.count_messages(&lookup)? > 0
                {
                    out.push(contact.to_owned());
                }
            }
            out.sort();
            Ok(out)
        })
    }

    /// Deletes control message `seq` of `contact` once acted on. Returns
    /// whether it was there.
    pub fn delete_control(&mut self, contact: &str, seq: u64) -> Result<bool> {
        check_contact_id(contact)?;
        self.delete_message(&control_conversation_id(contact), seq)
    }
}
