//! Writing an archive from an open store, in one read transaction (a
//! consistent snapshot), streaming: rows are read and opened in batches
//! (on several threads), so memory is bounded by a batch, not the
//! history. A backup and a history transfer are written by the same code;
//! a transfer leaves out the identity and the prekey ids.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;

use super::chunks::ChunkWriter;
use super::header::{ArchiveSecret, HEADER_LEN, Header, Kdf};
use super::parallel::{map_parts, threads_for};
use super::records;
use super::{ArchiveKey, ArchiveKind, ArchiveProgress, ArchiveSummary};
use crate::db::{Conversation, Db};
use crate::error::Result;
use crate::options::KdfParams;
use crate::records::{
    ContactRecord, NewestSentAt, RecoveryState, add_to_ranges, encode_contact, encode_identity,
    encode_prekey_ids, message_head_len, unpadded,
};
use crate::store::{Store, system_rng};

impl Store {
    /// Writes this profile's identity, contacts and whole history to `out`
    /// as a history archive locked by `passphrase` (Argon2id with `params`;
    /// `KdfParams::DEFAULT` unless the device is very weak).
    ///
    /// Sessions, prekeys and the outbox's ciphertexts are not in it (see
    /// [`import_archive`](Self::import_archive) for what a restored profile
    /// does instead). Streams: memory does not grow with the history. The
    /// whole export reads one snapshot; other handles may write meanwhile.
    /// A row that cannot be read (a damaged store) is left out and counted
    /// in the summary. `progress` is called after each chunk and at the
    /// end. On error, what was written to `out` is not a usable archive:
    /// delete it.
    pub fn export_archive(
        &self,
        out: &mut impl Write,
        passphrase: &[u8],
        params: KdfParams,
        progress: impl FnMut(ArchiveProgress),
    ) -> Result<ArchiveSummary> {
        self.export(
            out,
            ArchiveKind::Backup,
            Kdf::Argon2id(params),
            ArchiveSecret::Passphrase(passphrase),
            progress,
        )
    }

    /// [`export_archive`](Self::export_archive) locked by a key the caller
    /// gives (e.g. agreed by two devices for a transfer) instead of a
    /// passphrase.
    pub fn export_archive_with_key(
        &self,
        out: &mut impl Write,
        key: &ArchiveKey,
        progress: impl FnMut(ArchiveProgress),
    ) -> Result<ArchiveSummary> {
        self.export(
            out,
            ArchiveKind::Backup,
            Kdf::CallerKey,
            ArchiveSecret::Key(key),
            progress,
        )
    }

    /// Writes this profile's contacts and whole history to `out` as a
    /// history transfer locked by `key` (agreed with a newly linked
    /// device), for [`begin_history_transfer`](Self::begin_history_transfer)
    /// and [`apply_history_chunk`](Self::apply_history_chunk) on that
    /// device. Write it to a file, then send the header and each chunk as
    /// its own envelope ([`TransferFrames`](crate::TransferFrames)).
    ///
    /// The archive format with a transfer's magic, and without the
    /// identity and the prekey ids: the linked device keeps its own
    /// identity (a device key) and never receives the account's seed.
    /// Contacts come with their name, pinned identity, verified mark,
    /// access key and any pending identity-change claim; conversations
    /// with their seqs, deleted seqs, and every message with its state,
    /// timestamp, envelope id, digest and body. Sessions, prekeys and the
    /// outbox stay here: a message still waiting for the relay is sent by
    /// this device, and shows as
    /// [`Failed`](crate::DeliveryState::Failed)`(`[`ExportedUnsent`](crate::SendFailure::ExportedUnsent)`)`
    /// on the other. Streams, reads one snapshot, and counts unreadable
    /// rows as [`export_archive`](Self::export_archive) does.
    pub fn export_history_transfer(
        &self,
        out: &mut impl Write,
        key: &ArchiveKey,
        progress: impl FnMut(ArchiveProgress),
    ) -> Result<ArchiveSummary> {
        self.export(
            out,
            ArchiveKind::Transfer,
            Kdf::CallerKey,
            ArchiveSecret::Key(key),
            progress,
        )
    }

    fn export(
        &self,
        out: &mut impl Write,
        kind: ArchiveKind,
        kdf: Kdf,
        secret: ArchiveSecret<'_>,
        mut progress: impl FnMut(ArchiveProgress),
    ) -> Result<ArchiveSummary> {
        let mut rng = system_rng()?;
        // The counts are filled in once the snapshot is open; the key
        // depends only on the secret and the salt, so the costly
        // derivation runs before any transaction.
        let mut header = Header::generate(&mut rng, kind, kdf, 0, 0);
        let key = header.derive_key(secret)?;
        self.read(|db| {
            let mut summary = ArchiveSummary {
                id: header.id,
                contacts: 0,
                conversations: 0,
                messages: 0,
                unreadable_messages: 0,
                unreadable_contacts: 0,
                unreadable_conversations: 0,
                bytes: 0,
            };
            // Contacts and conversations go out sorted by contact id: a
            // transfer's reader checks the order, and so finds a contact or
            // conversation given twice without remembering every id.
            let mut contacts = Vec::new();
            for contact in db.all_contacts()? {
                match contact {
                    Ok(c) => contacts.push(c),
                    Err(_) => summary.unreadable_contacts += 1,
                }
            }
            contacts.sort_unstable_by(|a, b| a.id.cmp(&b.id));
            // Messages whose disappearing countdown runs stay out, as if
            // deleted: the other store would keep them with no deadline
            // (docs/storage.md, "Disappearing messages").
            let mut expiring: HashMap<[u8; 32], Vec<u64>> = HashMap::new();
            for (lookup, seq, _) in db.expiry_rows()? {
                expiring.entry(lookup).or_default().push(seq);
            }
            let mut conversations = Vec::new();
            for lookup in db.conversation_lookups()? {
                match db.conversation_by_lookup(&lookup) {
                    // Groups are not in archives or transfers yet
                    // (docs/storage.md, "Groups").
                    Ok(Some(c)) if c.contact.starts_with('#') => {}
                    Ok(Some(mut c)) => {
                        let mut rows = db.count_messages(&c.lookup)?;
                        let mut skip = BTreeSet::new();
                        for seq in expiring.remove(&c.lookup).unwrap_or_default() {
                            if db.message_sealed(&c, seq)?.is_some() && skip.insert(seq) {
                                rows = rows.saturating_sub(1);
                                add_to_ranges(&mut c.deleted, seq);
                            }
                        }
                        conversations.push((c, rows, skip));
                    }
                    Ok(None) | Err(_) => summary.unreadable_conversations += 1,
                }
            }
            conversations.sort_unstable_by(|a, b| a.0.contact.cmp(&b.0.contact));
            header.contacts = contacts.len() as u64;
            header.messages = conversations.iter().map(|(_, rows, _)| rows).sum();
            let header_bytes: [u8; HEADER_LEN] = header.encode();

            let mut w = ChunkWriter::new(&mut *out, &key, &header_bytes)?;
            let mut report = |w: &ChunkWriter<_>, done: u64| {
                progress(ArchiveProgress {
                    messages_done: done,
                    messages_total: header.messages,
                    bytes: w.bytes_written(),
                })
            };
            report(&w, 0);
            if kind == ArchiveKind::Backup {
                let identity = encode_identity(&db.identity()?.to_seed());
                write_record(&mut w, records::IDENTITY, &[&identity])?;
                let prekey_ids = encode_prekey_ids(&db.prekey_ids()?);
                write_record(&mut w, records::PREKEY_IDS, &[&prekey_ids])?;
            }
            for contact in &contacts {
                write_record(&mut w, records::CONTACT, &[&archived_contact(contact)])?;
                summary.contacts += 1;
            }
            let mut done = 0u64;
            let mut reported_chunks = w.chunks();
            for (conversation, rows, skip) in &conversations {
                write_record(
                    &mut w,
                    records::CONVERSATION,
                    &[&records::encode_conversation(
                        &conversation.contact,
                        conversation.next_seq,
                        &conversation.deleted,
                        *rows,
                    )],
                )?;
                summary.conversations += 1;
                let written = write_messages(db, &mut w, conversation, skip, |w| {
                    done += 1;
                    if w.chunks() != reported_chunks {
                        reported_chunks = w.chunks();
                        report(w, done);
                    }
                })?;
                summary.messages += written.readable;
                summary.unreadable_messages += written.unreadable;
            }
            let (_, bytes) = w.finish()?;
            summary.bytes = bytes;
            progress(ArchiveProgress {
                messages_done: done,
                messages_total: header.messages,
                bytes,
            });
            Ok(summary)
        })
    }
}

/// A contact as archived: everything the user sees and decided (id, name,
/// pinned identity, verified mark, access key, a pending identity-change
/// claim, the protocol version its address said it speaks), without the
/// bookkeeping of the sessions an archive leaves out.
fn archived_contact(c: &ContactRecord) -> zeroize::Zeroizing<Vec<u8>> {
    encode_contact(&ContactRecord {
        id: c.id.clone(),
        name: c.name.clone(),
        identity_key: c.identity_key,
        verified: c.verified,
        recovery: RecoveryState::default(),
        newest_sent_at: NewestSentAt::default(),
        access_key: c.access_key.clone(),
        claims_to_succeed: c.claims_to_succeed.clone(),
        min_version: c.min_version,
    })
}

fn write_record<W: Write>(w: &mut ChunkWriter<W>, kind: u8, parts: &[&[u8]]) -> Result<()> {
    let len = parts.iter().map(|p| p.len()).sum();
    w.write(&records::frame(kind, len)?)?;
    for part in parts {
        w.write(part)?;
    }
    Ok(())
}

struct Written {
    readable: u64,
    unreadable: u64,
}

/// Rows read before they are opened together (and at most this many
/// bytes of sealed rows): enough to share out on threads, little memory.
const BATCH_ROWS: usize = 1024;
const BATCH_BYTES: usize = 1024 * 1024;

/// Writes the message rows of `conversation` but those in `skip`, oldest
/// first: each readable
/// one as a message record, each other as an unreadable record (its seq
/// only). Calls `after_each` after every record. The read transaction's
/// snapshot does not change, so these are the rows counted before. Rows
/// are read in batches and opened on several threads
/// ([`super::parallel`]); memory stays bounded by a batch.
fn write_messages<W: Write>(
    db: &Db<'_>,
    w: &mut ChunkWriter<W>,
    conversation: &Conversation,
    skip: &BTreeSet<u64>,
    mut after_each: impl FnMut(&ChunkWriter<W>),
) -> Result<Written> {
    let mut written = Written {
        readable: 0,
        unreadable: 0,
    };
    let mut batch: Vec<(u64, Option<Vec<u8>>)> = Vec::with_capacity(BATCH_ROWS);
    let mut bytes = 0;
    db.for_each_message(conversation, |seq, sealed| {
        if skip.contains(&seq) {
            return Ok(());
        }
        let sealed = sealed.ok();
        bytes += sealed.as_ref().map_or(0, Vec::len);
        batch.push((seq, sealed));
        if batch.len() >= BATCH_ROWS || bytes >= BATCH_BYTES {
            write_batch(w, conversation, &batch, &mut written, &mut after_each)?;
            batch.clear();
            bytes = 0;
        }
        Ok(())
    })?;
    write_batch(w, conversation, &batch, &mut written, &mut after_each)?;
    Ok(written)
}

/// Opens a batch of message rows (on several threads) and writes each as
/// a message record, or an unreadable record.
fn write_batch<W: Write>(
    w: &mut ChunkWriter<W>,
    conversation: &Conversation,
    batch: &[(u64, Option<Vec<u8>>)],
    written: &mut Written,
    after_each: &mut impl FnMut(&ChunkWriter<W>),
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let opened = map_parts(batch, vec![(); threads_for(batch.len())], |(), part| {
        Ok(part
            .iter()
            .map(|(seq, sealed)| {
                sealed
                    .as_deref()
                    .and_then(|s| conversation.open_message_record(*seq, s))
            })
            .collect())
    })?;
    for ((seq, _), record) in batch.iter().zip(opened) {
        let parts = record.as_deref().and_then(|r| {
            let head = message_head_len(r).ok()?;
            Some((&r[..head], unpadded(&r[head..]).ok()?))
        });
        let seq_bytes = seq.to_be_bytes();
        match parts {
            Some((head, body)) => {
                write_record(w, records::MESSAGE, &[&seq_bytes, head, body])?;
                written.readable += 1;
            }
            None => {
                write_record(w, records::UNREADABLE, &[&seq_bytes])?;
                written.unreadable += 1;
            }
        }
        after_each(w);
    }
    Ok(())
}
