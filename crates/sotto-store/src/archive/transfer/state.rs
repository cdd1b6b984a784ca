//! What a transfer in progress keeps in the store between chunks, sealed
//! in `meta` rows under the value key like every other value:
//!
//! ```text
//! meta 'history_transfer' = pad(0x01 || header(69) || chunk key(32) || u64be(next chunk)
//!     || tally || u64be(bytes to skip) || u8(n) || n bytes of a record's frame carried (n <= 5)
//!     || u64be(payload bytes carried) || u32be(carried parts)
//!     || u32be(seen parts) || u64be(seen lookups pending)
//!     || u8(flags: bit 0 last contact, bit 1 conversation)
//!     || [u16be(len) || id of the last contact]
//!     || [u16be(len) || contact id || key check(16) || u64be(limit) || u64be(rows left)
//!         || u64be(last seq)])
//! meta 'history_transfer_carry NNNNNNNNNN' (one per carried part, from 0)
//!     = transfer id(16) || u32be(part) || the part's bytes
//! meta 'history_transfer_seen NNNNNNNNNN' (one per chunk with incoming rows, from 0)
//!     = transfer id(16) || u32be(part) || n × seen-envelope lookup(32)
//! meta 'history_transfer_done' = pad(0x01 || u8(n) || n × summary)     the last 16 completed
//!     summary = transfer id(16) || u64be(chunks) || u64be(messages) || u64be(contacts) || tally
//! tally = u64be(messages done) || u64be(contacts done) || u64be(contacts added)
//!     || u64be(contacts merged) || u32be(n) || n × (u16be(len) || contact id)   identity conflicts
//! ```
//!
//! The chunk key is stored already derived, so applying a chunk derives
//! nothing. A record that runs past the end of a chunk is carried: its
//! frame in the state, its payload in parts, one per chunk it spans, so
//! a long message costs one write per chunk, not a growing rewrite. The
//! seen-envelope lookups of the incoming messages wait in parts too, and
//! go into the seen archive together, one sorted run, once [`SEEN_BATCH`] are
//! pending and when the transfer ends: those keys are random, and a few
//! hundred inserted per chunk would rewrite pages all over their index in
//! every chunk's transaction (twice the time per message at 300 000
//! messages). The
//! last contact id and the open conversation let the next chunk check
//! the order and go on with the rows. The key check names the key of the
//! conversation the transfer merged (a hash, never the key: deleting the
//! conversation must still destroy its only copy), so that its rows are
//! not written into a conversation made after the user deleted it.

use zeroize::Zeroizing;

use super::super::ArchiveId;
use super::super::header::{HEADER_LEN, Header};
use super::super::records::{Fields, push_string};
use super::super::rows::write_seen;
use super::TransferProgress;
use crate::db::Db;
use crate::error::{Error, Result, Row};
use crate::records::{padded, unpadded};

/// The `meta` row of the transfer in progress.
const STATE: &str = "history_transfer";
/// The `meta` row of the transfers completed (their summaries).
const DONE: &str = "history_transfer_done";
/// Completed transfers remembered, so that a late copy of one's header
/// does not start it again.
const DONE_KEPT: usize = 16;
const VERSION: u8 = 0x01;
/// Bytes of a record's frame: `u8(type) || u32be(len)`.
pub(super) const FRAME_LEN: usize = 5;
/// Seen-envelope lookups that wait before they are recorded (512 KiB).
const SEEN_BATCH: u64 = 16_384;

fn corrupt(row: &'static str) -> Error {
    Error::Corrupt {
        table: "meta",
        row: Row::Named(row),
    }
}

/// What the records applied so far did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Tally {
    /// Message and unreadable records applied.
    pub(super) messages: u64,
    /// Contact records applied.
    pub(super) contacts: u64,
    /// Contacts that were not in the store.
    pub(super) added: u64,
    /// Contacts that were, with the same identity (or none pinned).
    pub(super) merged: u64,
    /// Contacts kept as they were here: another identity is pinned.
    pub(super) conflicts: Vec<String>,
}

impl Tally {
    fn encode(&self, out: &mut Vec<u8>) {
        for n in [self.messages, self.contacts, self.added, self.merged] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(&(self.conflicts.len() as u32).to_be_bytes());
        for id in &self.conflicts {
            push_string(out, id);
        }
    }

    fn decode(f: &mut Fields<'_>) -> Option<Self> {
        let (messages, contacts, added, merged) = (f.u64()?, f.u64()?, f.u64()?, f.u64()?);
        let n = f.u32()?;
        let mut conflicts = Vec::new();
        for _ in 0..n {
            conflicts.push(f.string()?);
        }
        Some(Self {
            messages,
            contacts,
            added,
            merged,
            conflicts,
        })
    }
}

/// The conversation whose rows are being applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OpenConversation {
    pub(super) contact: String,
    /// Names the key of the conversation merged (`merge::key_check`).
    pub(super) key_check: [u8; 16],
    /// The source's next seq: every transferred row is below it.
    pub(super) limit: u64,
    pub(super) rows_left: u64,
    pub(super) last_seq: u64,
}

/// A record that ran past the end of the last chunk applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Carry {
    /// The bytes of its frame seen so far (a record is carried exactly
    /// when this is not empty).
    pub(super) frame: Vec<u8>,
    /// Payload bytes carried, in `parts` rows.
    pub(super) payload: u64,
    pub(super) parts: u32,
}

/// A transfer in progress.
pub(super) struct TransferState {
    pub(super) header_bytes: [u8; HEADER_LEN],
    pub(super) header: Header,
    /// The chunk key, derived from the caller's key and the header's salt.
    pub(super) key: Zeroizing<[u8; 32]>,
    pub(super) next_chunk: u64,
    pub(super) tally: Tally,
    /// Stream bytes still to skip (the rest of an optional record this
    /// version does not know).
    pub(super) skip: u64,
    pub(super) carry: Carry,
    /// Parts of seen-envelope lookups waiting, and how many lookups.
    pub(super) seen_parts: u32,
    pub(super) seen_pending: u64,
    /// The last contact applied (contacts come in increasing id).
    pub(super) last_contact: Option<String>,
    /// The last conversation begun (conversations come in increasing
    /// contact id); open while it has rows left.
    pub(super) conversation: Option<OpenConversation>,
}

impl TransferState {
    pub(super) fn new(
        header_bytes: [u8; HEADER_LEN],
        header: Header,
        key: Zeroizing<[u8; 32]>,
    ) -> Self {
        Self {
            header_bytes,
            header,
            key,
            next_chunk: 0,
            tally: Tally::default(),
            skip: 0,
            carry: Carry::default(),
            seen_parts: 0,
            seen_pending: 0,
            last_contact: None,
            conversation: None,
        }
    }

    pub(super) fn id(&self) -> ArchiveId {
        self.header.id
    }

    /// Where the transfer stands.
    pub(super) fn progress(&self) -> TransferProgress {
        TransferProgress {
            id: self.id(),
            next_chunk: self.next_chunk,
            complete: false,
            messages_done: self.tally.messages,
            messages_total: self.header.messages,
            contacts_done: self.tally.contacts,
            contacts_total: self.header.contacts,
            contacts_added: self.tally.added,
            contacts_merged: self.tally.merged,
            identity_conflicts: self.tally.conflicts.clone(),
        }
    }

    /// The transfer in progress, if there is one.
    pub(super) fn load(db: &Db<'_>) -> Result<Option<Self>> {
        db.meta_value(STATE)?
            .map(|plain| {
                let record = unpadded(&plain).map_err(|_| corrupt(STATE))?;
                Self::decode(record).ok_or_else(|| corrupt(STATE))
            })
            .transpose()
    }

    pub(super) fn save<R: rand_core::CryptoRng + ?Sized>(
        &self,
        db: &Db<'_>,
        rng: &mut R,
    ) -> Result<()> {
        db.put_meta_value(rng, STATE, &padded(&self.encode())?)
    }

    /// Deletes the transfer in progress and its carried parts; returns
    /// whether there was one.
    pub(super) fn remove(db: &Db<'_>) -> Result<bool> {
        let existed = db.delete_meta(STATE)?;
        for (from, to) in [(CARRY_FROM, CARRY_TO), (SEEN_FROM, SEEN_TO)] {
            db.conn().execute(
                "DELETE FROM meta WHERE name >= ?1 AND name < ?2",
                rusqlite::params![from, to],
            )?;
        }
        Ok(existed)
    }

    /// Keeps one chunk's seen-envelope lookups until [`SEEN_BATCH`] are
    /// waiting, or, with `now`, records every waiting one at once.
    pub(super) fn defer_seen<R: rand_core::CryptoRng + ?Sized>(
        &mut self,
        db: &Db<'_>,
        rng: &mut R,
        lookups: Vec<[u8; 32]>,
        now: bool,
    ) -> Result<()> {
        let pending = self.seen_pending + lookups.len() as u64;
        if now || pending >= SEEN_BATCH {
            let mut all = Vec::with_capacity(usize::try_from(pending).unwrap_or(0));
            for part in 0..self.seen_parts {
                take_seen_part(db, self.id(), part, &mut all)?;
            }
            all.extend(lookups);
            write_seen(db, all)?;
            self.seen_parts = 0;
            self.seen_pending = 0;
        } else if !lookups.is_empty() {
            put_seen_part(db, rng, self.id(), self.seen_parts, &lookups)?;
            self.seen_parts += 1;
            self.seen_pending = pending;
        }
        Ok(())
    }

    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(256));
        out.push(VERSION);
        out.extend_from_slice(&self.header_bytes);
        out.extend_from_slice(self.key.as_slice());
        out.extend_from_slice(&self.next_chunk.to_be_bytes());
        self.tally.encode(&mut out);
        out.extend_from_slice(&self.skip.to_be_bytes());
        // At most FRAME_LEN bytes.
        out.push(self.carry.frame.len() as u8);
        out.extend_from_slice(&self.carry.frame);
        out.extend_from_slice(&self.carry.payload.to_be_bytes());
        out.extend_from_slice(&self.carry.parts.to_be_bytes());
        out.extend_from_slice(&self.seen_parts.to_be_bytes());
        out.extend_from_slice(&self.seen_pending.to_be_bytes());
        out.push(
            u8::from(self.last_contact.is_some()) | (u8::from(self.conversation.is_some()) << 1),
        );
        if let Some(id) = &self.last_contact {
            push_string(&mut out, id);
        }
        if let Some(c) = &self.conversation {
            push_string(&mut out, &c.contact);
            out.extend_from_slice(&c.key_check);
            for n in [c.limit, c.rows_left, c.last_seq] {
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut f = Fields(bytes);
        if f.u8()? != VERSION {
            return None;
        }
        let header_bytes: [u8; HEADER_LEN] = f.take(HEADER_LEN)?.try_into().ok()?;
        let header = Header::decode(&header_bytes).ok()?;
        let key = Zeroizing::new(<[u8; 32]>::try_from(f.take(32)?).ok()?);
        let next_chunk = f.u64()?;
        let tally = Tally::decode(&mut f)?;
        let skip = f.u64()?;
        let frame_len = usize::from(f.u8()?);
        if frame_len > FRAME_LEN {
            return None;
        }
        let carry = Carry {
            frame: f.take(frame_len)?.to_vec(),
            payload: f.u64()?,
            parts: f.u32()?,
        };
        let (seen_parts, seen_pending) = (f.u32()?, f.u64()?);
        let flags = f.u8()?;
        if flags & !0b11 != 0 {
            return None;
        }
        let last_contact = if flags & 0b01 != 0 {
            Some(f.string()?)
        } else {
            None
        };
        let conversation = if flags & 0b10 != 0 {
            Some(OpenConversation {
                contact: f.string()?,
                key_check: f.take(16)?.try_into().ok()?,
                limit: f.u64()?,
                rows_left: f.u64()?,
                last_seq: f.u64()?,
            })
        } else {
            None
        };
        f.is_empty().then_some(Self {
            header_bytes,
            header,
            key,
            next_chunk,
            tally,
            skip,
            carry,
            seen_parts,
            seen_pending,
            last_contact,
            conversation,
        })
    }
}

// ---- carried parts ----------------------------------------------------------

/// Carried parts are the `meta` rows from `CARRY_FROM` (inclusive) to
/// `CARRY_TO` (exclusive): the prefix and a zero-padded part number.
const CARRY_FROM: &str = "history_transfer_carry ";
const CARRY_TO: &str = "history_transfer_carry!";

fn carry_name(part: u32) -> String {
    format!("{CARRY_FROM}{part:010}")
}

/// Stores part `part` of the record being carried.
pub(super) fn put_carry_part<R: rand_core::CryptoRng + ?Sized>(
    db: &Db<'_>,
    rng: &mut R,
    id: ArchiveId,
    part: u32,
    bytes: &[u8],
) -> Result<()> {
    let mut plain = Zeroizing::new(Vec::with_capacity(20 + bytes.len()));
    plain.extend_from_slice(id.as_bytes());
    plain.extend_from_slice(&part.to_be_bytes());
    plain.extend_from_slice(bytes);
    db.put_meta_value(rng, &carry_name(part), &plain)
}

/// Appends carried part `part` to `out`, and deletes its row.
pub(super) fn take_carry_part(
    db: &Db<'_>,
    id: ArchiveId,
    part: u32,
    out: &mut Vec<u8>,
) -> Result<()> {
    let row = "history_transfer_carry";
    let name = carry_name(part);
    let plain = db
        .meta_value_named(&name, Row::Named(row))?
        .ok_or(Error::MissingRow {
            table: "meta",
            row: Row::Named(row),
        })?;
    let mut f = Fields(&plain);
    if f.take(16) != Some(id.as_bytes().as_slice()) || f.u32() != Some(part) {
        return Err(corrupt(row));
    }
    out.extend_from_slice(f.0);
    db.delete_meta(&name)?;
    Ok(())
}

// ---- seen-envelope lookups waiting --------------------------------------------

const SEEN_FROM: &str = "history_transfer_seen ";
const SEEN_TO: &str = "history_transfer_seen!";

fn seen_name(part: u32) -> String {
    format!("{SEEN_FROM}{part:010}")
}

fn put_seen_part<R: rand_core::CryptoRng + ?Sized>(
    db: &Db<'_>,
    rng: &mut R,
    id: ArchiveId,
    part: u32,
    lookups: &[[u8; 32]],
) -> Result<()> {
    let mut plain = Vec::with_capacity(20 + 32 * lookups.len());
    plain.extend_from_slice(id.as_bytes());
    plain.extend_from_slice(&part.to_be_bytes());
    for lookup in lookups {
        plain.extend_from_slice(lookup);
    }
    db.put_meta_value(rng, &seen_name(part), &plain)
}

/// Appends the lookups of waiting part `part` to `out`, and deletes it.
fn take_seen_part(db: &Db<'_>, id: ArchiveId, part: u32, out: &mut Vec<[u8; 32]>) -> Result<()> {
    let row = "history_transfer_seen";
    let name = seen_name(part);
    let plain = db
        .meta_value_named(&name, Row::Named(row))?
        .ok_or(Error::MissingRow {
            table: "meta",
            row: Row::Named(row),
        })?;
    let mut f = Fields(&plain);
    if f.take(16) != Some(id.as_bytes().as_slice()) || f.u32() != Some(part) || f.0.len() % 32 != 0
    {
        return Err(corrupt(row));
    }
    out.extend(
        f.0.chunks_exact(32)
            .filter_map(|c| <[u8; 32]>::try_from(c).ok()),
    );
    db.delete_meta(&name)?;
    Ok(())
}

// ---- completed transfers ----------------------------------------------------

/// What a completed transfer did.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Summary {
    id: ArchiveId,
    chunks: u64,
    messages: u64,
    contacts: u64,
    tally: Tally,
}

impl Summary {
    fn progress(&self) -> TransferProgress {
        TransferProgress {
            id: self.id,
            next_chunk: self.chunks,
            complete: true,
            messages_done: self.tally.messages,
            messages_total: self.messages,
            contacts_done: self.tally.contacts,
            contacts_total: self.contacts,
            contacts_added: self.tally.added,
            contacts_merged: self.tally.merged,
            identity_conflicts: self.tally.conflicts.clone(),
        }
    }
}

fn load_done(db: &Db<'_>) -> Result<Vec<Summary>> {
    let Some(plain) = db.meta_value(DONE)? else {
        return Ok(Vec::new());
    };
    let decode = |bytes: &[u8]| -> Option<Vec<Summary>> {
        let mut f = Fields(bytes);
        if f.u8()? != VERSION {
            return None;
        }
        let n = f.u8()?;
        let mut out = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            out.push(Summary {
                id: ArchiveId(f.take(16)?.try_into().ok()?),
                chunks: f.u64()?,
                messages: f.u64()?,
                contacts: f.u64()?,
                tally: Tally::decode(&mut f)?,
            });
        }
        f.is_empty().then_some(out)
    };
    unpadded(&plain)
        .ok()
        .and_then(decode)
        .ok_or_else(|| corrupt(DONE))
}

/// The summary of completed transfer `id`, if it is one of the last
/// [`DONE_KEPT`].
pub(super) fn completed(db: &Db<'_>, id: ArchiveId) -> Result<Option<TransferProgress>> {
    Ok(load_done(db)?
        .iter()
        .find(|s| s.id == id)
        .map(Summary::progress))
}

/// The last transfer completed, if any.
pub(super) fn last_completed(db: &Db<'_>) -> Result<Option<TransferProgress>> {
    Ok(load_done(db)?.last().map(Summary::progress))
}

/// Records `state`'s transfer as completed (after its final chunk), and
/// removes it from progress.
pub(super) fn complete<R: rand_core::CryptoRng + ?Sized>(
    db: &Db<'_>,
    rng: &mut R,
    state: &TransferState,
) -> Result<TransferProgress> {
    let summary = Summary {
        id: state.id(),
        chunks: state.next_chunk,
        messages: state.header.messages,
        contacts: state.header.contacts,
        tally: state.tally.clone(),
    };
    let progress = summary.progress();
    let mut done = load_done(db)?;
    done.push(summary);
    if done.len() > DONE_KEPT {
        done.drain(..done.len() - DONE_KEPT);
    }
    let mut out = Vec::new();
    out.push(VERSION);
    // At most DONE_KEPT.
    out.push(done.len() as u8);
    for s in &done {
        out.extend_from_slice(s.id.as_bytes());
        for n in [s.chunks, s.messages, s.contacts] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        s.tally.encode(&mut out);
    }
    db.put_meta_value(rng, DONE, &padded(&out)?)?;
    TransferState::remove(db)?;
    Ok(progress)
}

#[cfg(test)]
mod tests {
    use super::super::super::ArchiveKind;
    use super::super::super::header::Kdf;
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_state_roundtrips_and_is_strict() {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([1; 32]);
        let header = Header::generate(&mut rng, ArchiveKind::Transfer, Kdf::CallerKey, 10, 2);
        let mut state = TransferState::new(header.encode(), header, Zeroizing::new([7; 32]));
        state.next_chunk = 3;
        state.tally = Tally {
            messages: 4,
            contacts: 2,
            added: 1,
            merged: 0,
            conflicts: vec!["carol".into()],
        };
        state.skip = 9;
        state.seen_parts = 4;
        state.seen_pending = 2_000;
        state.carry = Carry {
            frame: vec![5, 0, 0, 1, 0],
            payload: 70,
            parts: 2,
        };
        state.last_contact = Some("dave".into());
        state.conversation = Some(OpenConversation {
            contact: "bob".into(),
            key_check: [8; 16],
            limit: 12,
            rows_left: 5,
            last_seq: 6,
        });
        let bytes = state.encode();
        let back = TransferState::decode(&bytes).unwrap();
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.header, header);
        assert_eq!(*back.key, [7; 32]);
        assert_eq!(
            (back.tally, back.carry, back.conversation),
            (
                state.tally.clone(),
                state.carry.clone(),
                state.conversation.clone()
            )
        );
        for cut in 0..bytes.len() {
            assert!(TransferState::decode(&bytes[..cut]).is_none(), "cut {cut}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(TransferState::decode(&longer).is_none());
        let fresh = TransferState::new(header.encode(), header, Zeroizing::new([7; 32]));
        assert!(TransferState::decode(&fresh.encode()).is_some());
    }
}
