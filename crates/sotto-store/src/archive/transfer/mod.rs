//! History transfer: a device sends its history to a newly linked device
//! of the same account, which merges it into its own store, resumably.
//!
//! **Sender.** [`Store::export_history_transfer`] writes the transfer to
//! a file: the archive format (header, 256 KiB chunks) with a transfer's
//! magic (`"SOTTOHT1"`), and no identity and no prekey ids, only
//! contacts, conversations and messages. [`TransferFrames`] cuts the file
//! into frames, the header and then each chunk with its index, each sent
//! as its own envelope; after a crash, or when the receiver asks, it
//! resumes from any chunk.
//!
//! **Receiver.** [`Store::begin_history_transfer`] records the transfer
//! (its header and key, sealed in the store);
//! [`Store::apply_history_chunk`] authenticates one chunk, applies the
//! records it completes and records the progress, in one transaction: a
//! crash leaves the chunk applied entirely or not at all. A chunk applied
//! before is checked and changes nothing (the relay may deliver twice); a
//! chunk ahead of the next one is refused
//! ([`ArchiveError::ChunkAhead`]) and can be applied once the missing one
//! came; a chunk that does not authenticate is refused and changes
//! nothing. After the final chunk the transfer is complete and what it
//! kept in progress (its key included) is deleted.
//! [`Store::history_transfer_progress`] says where it stands, so a
//! restarted receiver can ask the sender to resume from
//! [`TransferProgress::next_chunk`].
//!
//! **Merge** (`merge.rs`): the store may already hold contacts and
//! messages (those that reached the new device after linking). In each
//! conversation the transferred messages come first, under their seqs at
//! the source, and the messages already here move after them. While a
//! conversation's rows are still on their way, the seqs it reserved for
//! them read as missing ([`Error::MissingRow`](crate::Error::MissingRow)).
//!
//! What a transfer leaves out, and why, is what a backup leaves out
//! (`docs/storage.md`, "History archive") plus the identity: a linked
//! device has its own device key and never gets the account's seed.

mod apply;
mod frames;
mod merge;
mod state;

use core::fmt;

use rusqlite::TransactionBehavior;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use frames::TransferFrames;

use super::chunks::{ChunkOpener, MAX_CHUNK_PLAINTEXT};
use super::header::{ArchiveSecret, HEADER_LEN, Header};
use super::{ArchiveError, ArchiveId, ArchiveKey, ArchiveKind};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::testing::FaultPoint;
use apply::{Applier, Target};
use state::TransferState;

/// `PRAGMA synchronous = NORMAL` as SQLite reports it.
const SYNCHRONOUS_NORMAL: i64 = 1;

/// Where a history transfer stands on the receiving device.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferProgress {
    /// The transfer (its header's id).
    pub id: ArchiveId,
    /// The chunk it needs next: every chunk before it is applied. Ask the
    /// sender to resume from here.
    pub next_chunk: u64,
    /// True once the final chunk was applied.
    pub complete: bool,
    /// Messages applied (unreadable rows of the source included).
    pub messages_done: u64,
    /// Messages in the transfer (from its header).
    pub messages_total: u64,
    /// Contacts applied.
    pub contacts_done: u64,
    /// Contacts in the transfer (from its header).
    pub contacts_total: u64,
    /// Contacts that were not in this store and were added.
    pub contacts_added: u64,
    /// Contacts that were, with the same identity, and were merged.
    pub contacts_merged: u64,
    /// Contacts of the transfer whose pinned identity differs from the one
    /// pinned here: the contact here was kept as it was (name, identity,
    /// verified mark), and the user should compare safety numbers. Their
    /// conversations are merged like any other.
    pub identity_conflicts: Vec<String>,
}

impl TransferProgress {
    /// The share of messages applied, from 0.0 to 1.0 (1.0 for a transfer
    /// without messages).
    pub fn fraction(&self) -> f64 {
        if self.messages_total == 0 {
            1.0
        } else {
            (self.messages_done.min(self.messages_total) as f64) / (self.messages_total as f64)
        }
    }
}

impl fmt::Debug for TransferProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransferProgress")
            .field("id", &self.id)
            .field("next_chunk", &self.next_chunk)
            .field("complete", &self.complete)
            .field("messages_done", &self.messages_done)
            .field("messages_total", &self.messages_total)
            .field("contacts_done", &self.contacts_done)
            .field("contacts_total", &self.contacts_total)
            .field("contacts_added", &self.contacts_added)
            .field("contacts_merged", &self.contacts_merged)
            .field("identity_conflicts", &self.identity_conflicts.len())
            .finish()
    }
}

impl Store {
    /// Begins receiving the history transfer whose header (its first
    /// frame) is `header`, locked by `key` (agreed when this device was
    /// linked). Records it, sealed, with the chunk key; nothing else
    /// changes. Returns where it stands: from chunk 0, or, for the
    /// transfer already in progress, where it got to (a restarted
    /// receiver may begin again).
    ///
    /// The key cannot be checked before chunk 0 arrives: a wrong one makes
    /// chunk 0 fail with [`ArchiveError::WrongSecret`], and beginning again
    /// replaces it while no chunk was applied. The transfer of another
    /// header replaces one that has not applied a chunk; once one did,
    /// another is refused with [`ArchiveError::TransferInProgress`] until
    /// it completes or is abandoned. A transfer completed here already is
    /// not begun again (a late copy of its header): its summary is
    /// returned. A backup archive is refused
    /// ([`ArchiveError::WrongKind`]), as is a header locked by a passphrase
    /// ([`ArchiveError::WrongLock`]).
    pub fn begin_history_transfer(
        &mut self,
        header: &[u8],
        key: &ArchiveKey,
    ) -> Result<TransferProgress> {
        let (decoded, bytes) = Header::read(&mut &header[..])?;
        if header.len() > HEADER_LEN {
            return Err(ArchiveError::TrailingData.into());
        }
        decoded.kind.expect(ArchiveKind::Transfer)?;
        let chunk_key = decoded.derive_key(ArchiveSecret::Key(key))?;
        self.write(|db, rng| {
            if let Some(done) = state::completed(db, decoded.id)? {
                return Ok(done);
            }
            match TransferState::load(db)? {
                Some(current) if current.next_chunk > 0 && current.id() == decoded.id => {
                    let same = current.header_bytes == bytes
                        && bool::from(current.key.ct_eq(chunk_key.as_slice()));
                    if !same {
                        return Err(ArchiveError::WrongSecret.into());
                    }
                    Ok(current.progress())
                }
                Some(current) if current.next_chunk > 0 => {
                    Err(ArchiveError::TransferInProgress { id: current.id() }.into())
                }
                _ => {
                    TransferState::remove(db)?;
                    let fresh = TransferState::new(bytes, decoded, chunk_key);
                    fresh.save(db, rng)?;
                    Ok(fresh.progress())
                }
            }
        })
    }

    /// Applies chunk `index` of the transfer in progress, given as its
    /// frame (`u32be(len) || ciphertext || tag`, as
    /// [`TransferFrames`] yields it), in one transaction: the chunk is
    /// authenticated (its index, the header and whether it is the final
    /// one are in its associated data), the records it completes are
    /// merged into the store, and the progress is recorded. A crash at
    /// any point leaves the chunk applied entirely or not at all.
    ///
    /// - A chunk applied before (`index <` [`next_chunk`](TransferProgress::next_chunk))
    ///   is authenticated and changes nothing: acknowledge it.
    /// - A chunk ahead of the next one is [`ArchiveError::ChunkAhead`]:
    ///   keep it, or ask for the missing ones again.
    /// - A chunk that does not authenticate (altered, cut, from another
    ///   transfer, under another key) is [`ArchiveError::Tampered`] (or
    ///   [`ArchiveError::WrongSecret`] for chunk 0), and authenticated
    ///   content that breaks the format's rules is
    ///   [`ArchiveError::MalformedRecord`] or
    ///   [`ArchiveError::CountMismatch`]; either changes nothing.
    /// - Without a transfer in progress: [`ArchiveError::NoTransfer`].
    ///
    /// After the final chunk the returned progress is
    /// [`complete`](TransferProgress::complete) and the transfer's key and
    /// state are deleted. (Earlier versions of its state can stay in the
    /// write-ahead log until SQLite reuses it, sealed under the store's
    /// keys like any updated row: whoever can open them can read the
    /// history they carried anyway.)
    pub fn apply_history_chunk(&mut self, index: u64, frame: &[u8]) -> Result<TransferProgress> {
        // The chunk is opened before the transaction: whether it is the
        // final one decides how its commit is synced.
        let before = self
            .read(TransferState::load)?
            .ok_or(ArchiveError::NoTransfer)?;
        if index > before.next_chunk {
            return Err(ArchiveError::ChunkAhead {
                chunk: index,
                expected: before.next_chunk,
            }
            .into());
        }
        let mut plaintext = Zeroizing::new(Vec::with_capacity(MAX_CHUNK_PLAINTEXT + 16));
        let last = ChunkOpener::new(&before.key, &before.header_bytes).open(
            index,
            frame,
            &mut plaintext,
        )?;
        if index < before.next_chunk {
            return Ok(before.progress());
        }
        // Every chunk but the final one is committed without waiting for
        // the disk: one the system loses in a power cut is asked for again
        // (the sender keeps the transfer until the final chunk is applied,
        // and the receiver reports its progress on connecting). The final
        // chunk's commit is synced as the store's durability says, and with
        // it everything the write-ahead log holds before it.
        let relax = !last && self.synchronous()? > SYNCHRONOUS_NORMAL;
        if relax {
            self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        let applied = self.apply_opened(&before, index, &plaintext, last);
        if relax {
            self.conn.pragma_update(None, "synchronous", "FULL")?;
        }
        applied
    }

    /// `PRAGMA synchronous` as SQLite reports it (0 off, 1 normal, 2 full,
    /// 3 extra).
    fn synchronous(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))?)
    }

    /// Applies chunk `index` (opened as `plaintext`, final if `last`) of
    /// the transfer that stood as `before`, in one transaction.
    fn apply_opened(
        &mut self,
        before: &TransferState,
        index: u64,
        plaintext: &[u8],
        last: bool,
    ) -> Result<TransferProgress> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let db = Db::new(&tx, &self.keys);
        let mut state = TransferState::load(&db)?.ok_or(ArchiveError::NoTransfer)?;
        if state.id() != before.id() || !bool::from(state.key.ct_eq(before.key.as_slice())) {
            // Another handle replaced the transfer meanwhile.
            return Err(ArchiveError::NoTransfer.into());
        }
        if state.next_chunk != index {
            // Another handle applied it meanwhile.
            return Ok(state.progress());
        }
        let mut applier = Applier {
            db: &db,
            rng: &mut self.rng,
            faults: &mut self.faults,
            state: &mut state,
            chunk: index,
            conversation: Target::Unloaded,
            rows: Default::default(),
        };
        applier.feed(plaintext)?;
        if last {
            applier.finish()?;
        }
        let seen = applier.rows.take_seen();
        state.defer_seen(&db, &mut self.rng, seen, last)?;
        state.next_chunk += 1;
        let progress = if last {
            state::complete(&db, &mut self.rng, &state)?
        } else {
            state.save(&db, &mut self.rng)?;
            state.progress()
        };
        self.faults.check(FaultPoint::TransferBeforeCommit)?;
        tx.commit()?;
        self.faults.check(FaultPoint::TransferAfterCommit)?;
        Ok(progress)
    }

    /// Where the history transfer stands: the one in progress, else the
    /// last one completed ([`complete`](TransferProgress::complete)), else
    /// `None`.
    pub fn history_transfer_progress(&self) -> Result<Option<TransferProgress>> {
        self.read(|db| match TransferState::load(db)? {
            Some(current) => Ok(Some(current.progress())),
            None => state::last_completed(db),
        })
    }

    /// Gives up the transfer in progress: its key and state are deleted
    /// (and the write-ahead log checkpointed). What its chunks applied
    /// stays, as history like any other: transferring the same history
    /// again would add those messages a second time. Returns whether a
    /// transfer was in progress.
    pub fn abandon_history_transfer(&mut self) -> Result<bool> {
        let abandoned = self.write(|db, rng| {
            // The envelope ids of what was applied are recorded as seen;
            // a state that cannot be read is deleted all the same.
            if let Ok(Some(mut state)) = TransferState::load(db) {
                match state.defer_seen(db, rng, Vec::new(), true) {
                    Ok(()) | Err(Error::Corrupt { .. } | Error::MissingRow { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            TransferState::remove(db)
        })?;
        if abandoned {
            self.checkpoint()?;
        }
        Ok(abandoned)
    }
}

#[cfg(test)]
mod tests {
    //! Authenticated but hostile transfers: streams sealed with the right
    //! key whose records break the rules. Each is refused with a typed
    //! error and changes nothing, or applies what is valid; none panics.

    use rand::SeedableRng;
    use rand::rngs::ChaCha20Rng;

    use super::super::chunks::{ChunkWriter, read_frame};
    use super::super::header::Kdf;
    use super::super::records::{self, encode_conversation, frame};
    use super::*;
    use crate::records::{ContactRecord, encode_contact, encode_identity};
    use crate::{KdfParams, OpenOptions};

    const KEY: [u8; 32] = [9; 32];

    fn key() -> ArchiveKey {
        ArchiveKey::from_bytes(&KEY)
    }

    /// A transfer whose record stream is `stream`: its header and frames.
    fn transfer_of(stream: &[u8], messages: u64, contacts: u64) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let header = Header::generate(
            &mut rng,
            ArchiveKind::Transfer,
            Kdf::CallerKey,
            messages,
            contacts,
        );
        let chunk_key = header.derive_key(ArchiveSecret::Key(&key())).unwrap();
        let mut w = ChunkWriter::new(Vec::new(), &chunk_key, &header.encode()).unwrap();
        w.write(stream).unwrap();
        let written = w.finish().unwrap().0;
        let mut input = &written[HEADER_LEN..];
        let mut frames = Vec::new();
        let mut buf = Vec::new();
        while read_frame(&mut input, frames.len() as u64, &mut buf).unwrap() {
            frames.push(buf.clone());
        }
        (written[..HEADER_LEN].to_vec(), frames)
    }

    fn record(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = frame(kind, payload.len()).unwrap().to_vec();
        out.extend_from_slice(payload);
        out
    }

    fn contact(id: &str) -> Vec<u8> {
        record(
            records::CONTACT,
            &encode_contact(&ContactRecord {
                id: id.into(),
                name: id.to_uppercase(),
                identity_key: None,
                verified: false,
                recovery: Default::default(),
                newest_sent_at: 0,
                access_key: None,
                claims_to_succeed: None,
                min_version: 1,
            }),
        )
    }

    fn message(seq: u64, body: &[u8]) -> Vec<u8> {
        let mut payload = seq.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0x01, 0, 3]);
        payload.extend_from_slice(&5u64.to_be_bytes());
        payload.extend_from_slice(&[seq as u8; 16]);
        payload.extend_from_slice(body);
        record(records::MESSAGE, &payload)
    }

    /// Contacts "a" and "b"; a conversation with "b" of seqs 1 to 3 (1 a
    /// message, 2 deleted, 3 unreadable); an optional record of a later
    /// version in between.
    fn valid_stream() -> Vec<u8> {
        let mut s = contact("a");
        s.extend(contact("b"));
        s.extend(record(
            records::CONVERSATION,
            &encode_conversation("b", 4, &[(2, 2)], 2),
        ));
        s.extend(message(1, b"the body"));
        s.extend(record(0x9f, b"from the future"));
        s.extend(record(records::UNREADABLE, &3u64.to_be_bytes()));
        s
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let options = OpenOptions::new().kdf(KdfParams::new(64, 1, 1).unwrap());
        let store = Store::create(dir.path().join("s.db"), b"pw", &options).unwrap();
        (dir, store)
    }

    /// Begins and applies every frame; on a refusal, checks that the
    /// store holds nothing of the transfer.
    fn apply(store: &mut Store, header: &[u8], frames: &[Vec<u8>]) -> Result<TransferProgress> {
        store.begin_history_transfer(header, &key())?;
        let mut last = None;
        for (i, f) in frames.iter().enumerate() {
            match store.apply_history_chunk(i as u64, f) {
                Ok(p) => last = Some(p),
                Err(e) => {
                    let progress = store.history_transfer_progress()?;
                    assert_eq!(progress.map(|p| p.next_chunk), Some(i as u64));
                    return Err(e);
                }
            }
        }
        last.ok_or(Error::Archive(ArchiveError::NoTransfer))
    }

    #[test]
    fn a_handmade_transfer_applies_as_specified() {
        let (_dir, mut store) = store();
        let (header, frames) = transfer_of(&valid_stream(), 2, 2);
        let done = apply(&mut store, &header, &frames).unwrap();
        assert!(done.complete);
        assert_eq!(store.contact("b").unwrap().unwrap().name, "B");
        let page = store.history("b", None, 10).unwrap();
        let seqs: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 1], "seq 2 deleted, seq 3 missing");
        assert!(matches!(
            page.entries[0].message,
            Err(Error::MissingRow { .. })
        ));
    }

    #[test]
    fn chunks_before_the_final_one_commit_unsynced_and_the_store_stays_durable() {
        let (_dir, mut store) = store();
        let synchronous = |store: &Store| -> i64 {
            store
                .conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(
            synchronous(&store),
            2,
            "a store opened with Durability::Full"
        );
        let mut s = contact("a");
        s.extend(record(0xa0, &vec![7; 300 * 1024]));
        let (header, frames) = transfer_of(&s, 0, 1);
        assert_eq!(frames.len(), 2);
        store.begin_history_transfer(&header, &key()).unwrap();
        // A chunk that fails to authenticate leaves the setting as it was.
        let mut bad = frames[0].clone();
        bad[10] ^= 1;
        assert!(store.apply_history_chunk(0, &bad).is_err());
        assert_eq!(synchronous(&store), 2);
        assert!(!store.apply_history_chunk(0, &frames[0]).unwrap().complete);
        assert_eq!(synchronous(&store), 2, "restored after the chunk");
        assert!(store.apply_history_chunk(1, &frames[1]).unwrap().complete);
        assert_eq!(synchronous(&store), 2);
        assert_eq!(store.contact("a").unwrap().unwrap().name, "A");
    }

    #[test]
    fn records_across_chunks_are_carried_and_optional_ones_skipped() {
        let (_dir, mut store) = store();
        let mut s = contact("a");
        // An optional record that spans a whole chunk, then a message
        // that starts in one chunk and ends in the next.
        s.extend(record(0xa0, &vec![7; 300 * 1024]));
        s.extend(record(
            records::CONVERSATION,
            &encode_conversation("a", 3, &[], 2),
        ));
        let pad = MAX_CHUNK_PLAINTEXT * 2 - s.len() - 100;
        s.extend(message(1, &vec![b'x'; pad]));
        s.extend(message(2, &vec![b'y'; 1000]));
        let (header, frames) = transfer_of(&s, 2, 1);
        assert_eq!(frames.len(), 3);
        // Applied in two sittings: the store carries the record's start.
        apply(&mut store, &header, &frames[..2]).unwrap();
        let done = store.apply_history_chunk(2, &frames[2]).unwrap();
        assert!(done.complete);
        let page = store.history("a", None, 10).unwrap();
        let bodies: Vec<usize> = page.messages().map(|m| m.body.len()).collect();
        assert_eq!(bodies, [1000, pad]);
        // Nothing carried is left in the store.
        let left: i64 = store
            .conn
            .query_row(
                "SELECT count(*) FROM meta WHERE name LIKE 'history_transfer%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 1, "only the summary of the completed transfer");
    }

    #[test]
    fn seen_envelope_ids_are_recorded_in_sorted_batches() {
        let (_dir, mut receiver) = store();
        let n = 20_000u64;
        let mut s = contact("a");
        s.extend(record(
            records::CONVERSATION,
            &encode_conversation("a", n + 1, &[], n),
        ));
        for seq in 1..=n {
            let mut payload = seq.to_be_bytes().to_vec();
            payload.extend_from_slice(&[0x01, 0, 3]);
            payload.extend_from_slice(&5u64.to_be_bytes());
            payload.extend_from_slice(&seq.to_be_bytes());
            payload.extend_from_slice(&seq.to_be_bytes());
            payload.push(b'.');
            s.extend(record(records::MESSAGE, &payload));
        }
        let (header, frames) = transfer_of(&s, n, 1);
        assert!(frames.len() >= 3);
        receiver.begin_history_transfer(&header, &key()).unwrap();
        let count =
            |s: &Store, sql: &str| -> i64 { s.conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        let mut flushed_before_the_end = false;
        for (i, f) in frames.iter().enumerate() {
            let progress = receiver.apply_history_chunk(i as u64, f).unwrap();
            let seen = count(&receiver, "SELECT count(*) FROM seen_archive");
            let waiting = count(
                &receiver,
                "SELECT count(*) FROM meta WHERE name LIKE 'history_transfer_seen %'",
            );
            if progress.complete {
                assert_eq!((seen, waiting), (n as i64, 0));
            } else {
                // Either waiting, or recorded together once enough waited.
                assert!(seen == 0 || waiting == 0, "chunk {i}: {seen} {waiting}");
                flushed_before_the_end |= seen > 0;
            }
        }
        assert!(
            flushed_before_the_end,
            "the batch size was reached on the way"
        );
        // Abandoning records what is waiting, too.
        let (_dir, mut store) = store();
        store.begin_history_transfer(&header, &key()).unwrap();
        store.apply_history_chunk(0, &frames[0]).unwrap();
        assert_eq!(count(&store, "SELECT count(*) FROM seen_archive"), 0);
        let applied = store.message_count("a").unwrap() as i64;
        assert!(store.abandon_history_transfer().unwrap());
        assert_eq!(count(&store, "SELECT count(*) FROM seen_archive"), applied);
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM meta WHERE name LIKE 'history_transfer%'"
            ),
            0
        );
    }

    #[test]
    fn rule_breaking_transfers_are_refused_and_change_nothing() {
        let valid = valid_stream();
        let a = contact("a");
        let conversation =
            |c: &str| record(records::CONVERSATION, &encode_conversation(c, 2, &[], 1));
        let cases: Vec<(&str, Vec<u8>, u64, u64)> = vec![
            ("wrong message count", valid.clone(), 3, 2),
            ("wrong contact count", valid.clone(), 2, 1),
            (
                "an identity",
                [
                    record(records::IDENTITY, &encode_identity(&[7; 32])),
                    valid.clone(),
                ]
                .concat(),
                2,
                2,
            ),
            (
                "contacts out of order",
                [contact("b"), a.clone()].concat(),
                0,
                2,
            ),
            ("a contact twice", [a.clone(), a.clone()].concat(), 0, 2),
            (
                "a contact after a conversation",
                [conversation("a"), message(1, b"m"), contact("b")].concat(),
                1,
                1,
            ),
            (
                "a conversation twice",
                [
                    conversation("a"),
                    message(1, b"m"),
                    conversation("a"),
                    message(1, b"m"),
                ]
                .concat(),
                2,
                0,
            ),
            (
                "conversations out of order",
                [
                    conversation("b"),
                    message(1, b"m"),
                    conversation("a"),
                    message(1, b"m"),
                ]
                .concat(),
                2,
                0,
            ),
            (
                "a conversation with fewer rows than it says",
                conversation("a"),
                0,
                0,
            ),
            ("a message outside a conversation", message(1, b"m"), 1, 0),
            (
                "a seq at the conversation's next seq",
                [conversation("a"), message(2, b"m")].concat(),
                1,
                0,
            ),
            (
                "an unknown mandatory type",
                [valid.clone(), record(0x20, b"")].concat(),
                2,
                2,
            ),
            (
                "a record cut short",
                valid[..valid.len() - 3].to_vec(),
                2,
                2,
            ),
            (
                "a huge record",
                [a.clone(), vec![records::CONTACT, 0xff, 0xff, 0xff, 0xff]].concat(),
                0,
                1,
            ),
        ];
        for (what, stream, messages, contacts) in cases {
            let (_dir, mut store) = store();
            let (header, frames) = transfer_of(&stream, messages, contacts);
            let result = apply(&mut store, &header, &frames);
            assert!(
                matches!(result, Err(Error::Archive(_))),
                "{what}: {result:?}"
            );
            assert!(store.contacts().unwrap().is_empty(), "{what}");
            assert_eq!(store.message_count("a").unwrap(), 0, "{what}");
        }
    }

    #[test]
    fn randomly_mutated_transfers_never_panic_and_a_refusal_changes_nothing() {
        let valid = valid_stream();
        let mut rng = ChaCha20Rng::from_seed([5; 32]);
        for round in 0..200 {
            let mut stream = valid.clone();
            crate::archive::mutate(&mut stream, &mut rng);
            let (_dir, mut store) = store();
            let (header, frames) = transfer_of(&stream, 2, 2);
            match apply(&mut store, &header, &frames) {
                Ok(_) => {
                    let _ = store.contacts().unwrap();
                    let _ = store.history("b", None, 50).unwrap();
                }
                Err(Error::Archive(_)) => {
                    assert!(store.contacts().unwrap().is_empty(), "round {round}");
                }
                Err(e) => panic!("round {round}: {e:?}"),
            }
        }
    }
}
