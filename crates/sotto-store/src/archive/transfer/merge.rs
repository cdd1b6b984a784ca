//! Merging a transfer's contacts and conversations into a store that may
//! already hold some (messages that reached the new device after it was
//! linked, before the transfer finished).
//!
//! - A contact that is not here is added as it was. One that is, with
//!   the same pinned identity (or none pinned on one side), keeps its
//!   name unless that is empty, takes the transfer's verified mark when
//!   set for that same identity, and takes a pinned identity, access key
//!   or identity-change claim it does not have. One with another identity
//!   pinned is kept as it is here and reported.
//! - In a conversation, the transferred rows keep their seqs (from 1 to
//!   the source's next seq) and the rows already here move after them:
//!   each is sealed again under its new seq, its outbox entry follows it,
//!   and the contact's recovery bookkeeping (which names seqs) with them.
//!   The seqs deleted here stay deleted at their new place.

use rand_core::CryptoRng;
use sha2::{Digest, Sha256};

use super::super::ArchiveError;
use super::super::records::ConversationRecord;
use super::state::Tally;
use crate::db::{Conversation, Db};
use crate::error::{Error, Result};
use crate::records::{ContactRecord, MAX_DELETED_RANGES};

/// Names the key of a conversation without revealing it:
/// `SHA-256("sotto-store/transfer/conversation key" || key)`, first 16
/// bytes. A transfer keeps it for the conversation it merged, to tell it
/// from one made after the user deleted that one.
pub(super) fn key_check(conversation: &Conversation) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"sotto-store/transfer/conversation key");
    h.update(conversation.key.as_bytes());
    let digest = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// Rows moved per query while a conversation's local rows move up.
const MOVE_BATCH: usize = 512;

/// Merges one transferred contact (see the module's rules).
pub(super) fn contact<R: CryptoRng + ?Sized>(
    db: &Db<'_>,
    rng: &mut R,
    theirs: ContactRecord,
    tally: &mut Tally,
) -> Result<()> {
    let Some(mut ours) = db.contact(&theirs.id)? else {
        db.put_contact(rng, &theirs)?;
        tally.added += 1;
        return Ok(());
    };
    if let (Some(a), Some(b)) = (&ours.identity_key, &theirs.identity_key)
        && a != b
    {
        tally.conflicts.push(theirs.id);
        return Ok(());
    }
    let mut changed = false;
    if ours.name.is_empty() && !theirs.name.is_empty() {
        ours.name = theirs.name;
        changed = true;
    }
    if ours.identity_key.is_none() && theirs.identity_key.is_some() {
        // Only the user's own device could have pinned it: the transfer
        // is authenticated under the key of their link.
        ours.identity_key = theirs.identity_key;
        changed = true;
    }
    if theirs.verified && !ours.verified && theirs.identity_key.is_some() {
        // Same identity here now (checked above): what was compared there
        // is what is pinned here.
        ours.verified = true;
        changed = true;
    }
    if ours.access_key.is_none() && theirs.access_key.is_some() {
        ours.access_key = theirs.access_key;
        changed = true;
    }
    if ours.claims_to_succeed.is_none() && theirs.claims_to_succeed.is_some() {
        ours.claims_to_succeed = theirs.claims_to_succeed;
        changed = true;
    }
    if theirs.min_version > ours.min_version {
        // Same identity (checked above): its address said so there.
        ours.min_version = theirs.min_version;
        changed = true;
    }
    if changed {
        db.put_contact(rng, &ours)?;
    }
    tally.merged += 1;
    Ok(())
}

/// Merges one transferred conversation record: creates the conversation,
/// or moves the rows already here after the transferred ones. Returns the
/// conversation, ready for the transferred rows.
pub(super) fn conversation<R: CryptoRng + ?Sized>(
    db: &Db<'_>,
    rng: &mut R,
    theirs: &ConversationRecord,
    chunk: u64,
) -> Result<Conversation> {
    let Some(mut ours) = db.conversation(&theirs.contact)? else {
        return db.create_conversation(
            rng,
            &theirs.contact,
            theirs.next_seq,
            theirs.deleted.clone(),
        );
    };
    // Transferred rows take seqs 1 to `theirs.next_seq - 1` (a next seq
    // of 1: no rows, nothing deleted, nothing to move).
    let offset = theirs.next_seq - 1;
    if offset == 0 {
        return Ok(ours);
    }
    let too_long = || {
        Error::Archive(ArchiveError::MalformedRecord {
            chunk,
            what: "a conversation too long to merge",
        })
    };
    let next_seq = ours
        .next_seq
        .checked_add(offset)
        .filter(|n| i64::try_from(*n).is_ok())
        .ok_or_else(too_long)?;
    let mut deleted = theirs.deleted.clone();
    for &(first, last) in &ours.deleted {
        let (first, last) = (first + offset, last + offset);
        match deleted.last_mut() {
            // The source's last range may end where ours now begin.
            Some(previous) if previous.1.saturating_add(1) >= first => previous.1 = last,
            _ => deleted.push((first, last)),
        }
    }
    if deleted.len() > MAX_DELETED_RANGES {
        return Err(Error::TooLong {
            what: "deleted message ranges",
            len: deleted.len(),
            max: MAX_DELETED_RANGES,
        });
    }
    move_messages(db, rng, &ours, offset)?;
    move_outbox(db, rng, &ours, offset)?;
    move_recovery(db, rng, &ours.contact, offset)?;
    ours.next_seq = next_seq;
    ours.deleted = deleted;
    db.save_next_seq(&ours)?;
    db.put_conversation_record(rng, &ours)?;
    Ok(ours)
}

/// Moves every message of `conversation` up by `offset`, newest first (so
/// a row never lands on one not yet moved), in batches.
fn move_messages<R: CryptoRng + ?Sized>(
    db: &Db<'_>,
    rng: &mut R,
    conversation: &Conversation,
    offset: u64,
) -> Result<()> {
    let mut before = u64::MAX;
    loop {
        let rows = db.message_rows(&conversation.lookup, before, MOVE_BATCH)?;
        let Some(&(oldest, _)) = rows.last() else {
            return Ok(());
        };
        for (seq, sealed) in rows {
            let record = sealed
                .ok()
                .and_then(|s| db.open_message_record(conversation, seq, &s).ok());
            // Below i64::MAX: the new next seq was checked.
            db.move_message(
                rng,
                conversation,
                seq,
                seq + offset,
                record.as_ref().map(|r| r.as_slice()),
            )?;
        }
        before = oldest;
    }
}

/// Points the conversation's outbox entries at their messages' new seqs.
fn move_outbox<R: CryptoRng + ?Sized>(
    db: &Db<'_>,
    rng: &mut R,
    conversation: &Conversation,
    offset: u64,
) -> Result<()> {
    for row in db.outbox_rows_of(&conversation.lookup)? {
        let mut record = db.open_outbox(conversation, &row).ok();
        db.move_outbox(rng, conversation, &row, row.seq + offset, record.as_mut())?;
    }
    Ok(())
}

/// Moves the seqs session recovery remembers for `contact` (the reset
/// boundary and the messages resent since) with the messages.
fn move_recovery<R: CryptoRng + ?Sized>(
    db: &Db<'_>,
    rng: &mut R,
    contact: &str,
    offset: u64,
) -> Result<()> {
    let Some(mut record) = db.contact(contact)? else {
        return Ok(());
    };
    let recovery = &mut record.recovery;
    if recovery.boundary == 0 && recovery.resent.is_empty() {
        return Ok(());
    }
    if recovery.boundary != 0 {
        recovery.boundary = recovery.boundary.saturating_add(offset);
    }
    for seq in &mut recovery.resent {
        *seq = seq.saturating_add(offset);
    }
    db.put_contact(rng, &record)
}
