//! The records inside an archive's stream.
//!
//! ```text
//! record = u8(type) || u32be(len) || payload(len)
//!
//! 0x01 identity        the store's identity record: 0x01 || Ed25519 seed(32)
//! 0x02 prekey ids      the store's prekey_ids record: 0x01 || u32be(next signed) || u32be(next one-time)
//! 0x03 contact         the store's contact record, unpadded, without the session
//!                      bookkeeping (flag bits 2, 3 and 4 are 0)
//! 0x04 conversation    u16be(len) || contact id || u64be(next seq)
//!                      || u32be(n) || n × (u64be(first) || u64be(last))   seqs deleted on purpose
//!                      || u64be(rows): how many 0x05 / 0x06 records follow, all of this conversation
//! 0x05 message         u64be(seq) || the store's message record with its body unpadded:
//!                      version(0x01 | 0x02 with digest) || direction || state || u64be(timestamp)
//!                      || envelope id(16) || [digest(32)] || body (the rest of the payload)
//! 0x06 unreadable      u64be(seq): a row that could not be read at export
//! 0x80..=0xff          optional: a reader that does not know the type skips it
//! ```
//!
//! Order: identity, prekey ids, the contacts, then each conversation
//! followed by its rows in increasing seq. An unknown type below 0x80 is
//! refused: it may hold something that must not be silently dropped.
//!
//! A history transfer holds no identity and no prekey ids, and its
//! contacts and conversations come in increasing contact id (the export
//! writes both kinds that way; only a transfer's reader requires it).

use sotto_core::pad::MAX_PLAINTEXT_LEN;

use crate::records::{
    ContactRecord, MAX_CONTACT_ID_LEN, MAX_CONTACT_NAME_LEN, decode_contact_untrusted,
    message_head_len,
};

pub(crate) const IDENTITY: u8 = 0x01;
pub(crate) const PREKEY_IDS: u8 = 0x02;
pub(crate) const CONTACT: u8 = 0x03;
pub(crate) const CONVERSATION: u8 = 0x04;
pub(crate) const MESSAGE: u8 = 0x05;
pub(crate) const UNREADABLE: u8 = 0x06;
/// Types with this bit set may be skipped by a reader that does not know them.
pub(crate) const OPTIONAL: u8 = 0x80;

/// Contact record flag bits that carry session bookkeeping (recovery
/// state, newest `sent_at`, resets in a row): never in an archive.
pub(crate) const SESSION_FLAGS: u8 = 0b1_1100;

/// Longest payload a reader accepts: a message with the longest body.
pub(crate) const MAX_PAYLOAD: usize = 8 + 1 + 1 + 1 + 8 + 16 + 32 + MAX_PLAINTEXT_LEN;

/// Record framing: `u8(type) || u32be(len)`.
pub(crate) fn frame(kind: u8, len: usize) -> Result<[u8; 5], crate::Error> {
    let len = u32::try_from(len).map_err(|_| crate::Error::TooLong {
        what: "archive record",
        len,
        max: MAX_PAYLOAD,
    })?;
    let mut out = [0u8; 5];
    out[0] = kind;
    out[1..].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// A conversation record, decoded.
pub(crate) struct ConversationRecord {
    pub(crate) contact: String,
    pub(crate) next_seq: u64,
    pub(crate) deleted: Vec<(u64, u64)>,
    pub(crate) rows: u64,
}

pub(crate) fn encode_conversation(
    contact: &str,
    next_seq: u64,
    deleted: &[(u64, u64)],
    rows: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + contact.len() + 8 + 4 + 16 * deleted.len() + 8);
    // Contact ids are at most MAX_CONTACT_ID_LEN bytes, and a conversation
    // keeps at most MAX_DELETED_RANGES ranges.
    out.extend_from_slice(&(contact.len() as u16).to_be_bytes());
    out.extend_from_slice(contact.as_bytes());
    out.extend_from_slice(&next_seq.to_be_bytes());
    out.extend_from_slice(&(deleted.len() as u32).to_be_bytes());
    for (first, last) in deleted {
        out.extend_from_slice(&first.to_be_bytes());
        out.extend_from_slice(&last.to_be_bytes());
    }
    out.extend_from_slice(&rows.to_be_bytes());
    out
}

/// The type of a record this version reads (an unknown type is skipped
/// if optional, refused otherwise).
pub(crate) fn is_known(kind: u8) -> bool {
    matches!(
        kind,
        IDENTITY | PREKEY_IDS | CONTACT | CONVERSATION | MESSAGE | UNREADABLE
    )
}

/// Reads big-endian fields off a payload; `None` when it is too short.
pub(crate) struct Fields<'a>(pub(crate) &'a [u8]);

impl<'a> Fields<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    /// `u16be(len) || UTF-8 bytes`.
    pub(crate) fn string(&mut self) -> Option<String> {
        let len = usize::from(self.u16()?);
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    /// True once every byte was read.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Appends `u16be(len) || s` (`s` at most 65 535 bytes: contact ids and
/// names are far shorter).
pub(crate) fn push_string(out: &mut Vec<u8>, s: &str) {
    let len = s.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..len]);
}

/// Decodes a contact record as an archive carries it: the store's contact
/// record without session bookkeeping, within the store's limits.
pub(crate) fn decode_archived_contact(payload: &[u8]) -> Option<ContactRecord> {
    if payload
        .get(1)
        .is_some_and(|flags| flags & SESSION_FLAGS != 0)
    {
        return None;
    }
    let record = decode_contact_untrusted(payload).ok()?;
    // An id that begins with '#' names a group's conversation, never a
    // contact.
    let within_limits = record.id.len() <= MAX_CONTACT_ID_LEN
        && !record.id.starts_with('#')
        && record.name.len() <= MAX_CONTACT_NAME_LEN
        && record
            .claims_to_succeed
            .as_ref()
            .is_none_or(|c| c.len() <= MAX_CONTACT_ID_LEN);
    within_limits.then_some(record)
}

/// A message record's head and body, checked.
pub(crate) type MessageParts<'a> = (&'a [u8], &'a [u8]);

/// Decodes a message (`0x05`) or unreadable (`0x06`) record: its seq and,
/// for a message, its head and body (checked: a known version,
/// direction and state, a body within the protocol's limit).
pub(crate) fn decode_row(kind: u8, payload: &[u8]) -> Option<(u64, Option<MessageParts<'_>>)> {
    let seq = seq_of(payload)?;
    let rest = &payload[8..];
    match kind {
        UNREADABLE if rest.is_empty() => Some((seq, None)),
        MESSAGE => {
            let head = message_head_len(rest).ok()?;
            let (head, body) = rest.split_at(head);
            (body.len() <= MAX_PLAINTEXT_LEN).then_some((seq, Some((head, body))))
        }
        _ => None,
    }
}

/// Decodes a conversation record. The deleted ranges must be sorted,
/// disjoint, not touching, from seq 1 and below `next_seq`, as a store
/// keeps them.
pub(crate) fn decode_conversation(payload: &[u8]) -> Option<ConversationRecord> {
    let mut f = Fields(payload);
    let len = usize::from(f.u16()?);
    let contact = String::from_utf8(f.take(len)?.to_vec()).ok()?;
    let next_seq = f.u64()?;
    let n = usize::try_from(f.u32()?).ok()?;
    // Seqs are SQLite integers: at most i64::MAX.
    if n > crate::records::MAX_DELETED_RANGES
        || next_seq == 0
        || i64::try_from(next_seq).is_err()
        || contact.len() > MAX_CONTACT_ID_LEN
        || contact.starts_with('#')
    {
        return None;
    }
    let mut deleted = Vec::with_capacity(n.min(f.0.len() / 16));
    let mut previous_last = 0u64;
    for _ in 0..n {
        let (first, last) = (f.u64()?, f.u64()?);
        if first == 0
            || first > last
            || last >= next_seq
            || (!deleted.is_empty() && first <= previous_last.saturating_add(1))
        {
            return None;
        }
        previous_last = last;
        deleted.push((first, last));
    }
    let rows = f.u64()?;
    if !f.0.is_empty() {
        return None;
    }
    Some(ConversationRecord {
        contact,
        next_seq,
        deleted,
        rows,
    })
}

/// The seq at the start of a message or unreadable record.
pub(crate) fn seq_of(payload: &[u8]) -> Option<u64> {
    Fields(payload).u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_records_roundtrip_and_are_strict() {
        let bytes = encode_conversation("carol", 12, &[(2, 2), (4, 9)], 3);
        let back = decode_conversation(&bytes).unwrap();
        assert_eq!(
            (
                back.contact.as_str(),
                back.next_seq,
                back.deleted,
                back.rows
            ),
            ("carol", 12, vec![(2, 2), (4, 9)], 3)
        );
        assert!(decode_conversation(&bytes[..bytes.len() - 1]).is_none());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_conversation(&longer).is_none());
        for bad in [
            encode_conversation("c", 12, &[(4, 9), (2, 2)], 0), // unsorted
            encode_conversation("c", 12, &[(2, 5), (5, 9)], 0), // overlapping
            encode_conversation("c", 12, &[(2, 3), (4, 9)], 0), // touching
            encode_conversation("c", 9, &[(4, 9)], 0),          // beyond next seq
            encode_conversation("c", 12, &[(0, 1)], 0),         // seq 0
            encode_conversation("c", 0, &[], 0),                // next seq 0
            encode_conversation("c", u64::MAX, &[], 0),         // beyond SQLite's integers
        ] {
            assert!(decode_conversation(&bad).is_none());
        }
        assert_eq!(frame(MESSAGE, 300).unwrap(), [5, 0, 0, 1, 44]);
        assert_eq!(seq_of(&7u64.to_be_bytes()), Some(7));
        assert_eq!(seq_of(&[0; 7]), None);
    }
}
