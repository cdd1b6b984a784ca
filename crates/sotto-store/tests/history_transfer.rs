//! History transfer to a linked device: the account device exports its
//! history as a transfer, the frames travel one by one, and the new
//! device merges them into its own store (its own identity), resumably.
//! Duplicates, gaps, crashes, tampering and wrong keys are refused or
//! survived, and leave the store as it was.
#![cfg(test)]

mod common;

use std::path::{Path, PathBuf};

use common::{ALICE_PASS, T0, deliver, envelope, options, sorted_contacts};
use sotto_store::sotto_core::{AccessKey, IdentityKeyPair};
use sotto_store::testing::FaultPoint;
use sotto_store::{
    ArchiveError, ArchiveKey, ArchiveKind, ArchiveLock, ArchiveProgress, ArchiveSummary, Contact,
    DeliveryState, Direction, Error, KdfParams, NewMessage, Received, SendFailure, Store,
    TransferFrames, TransferProgress,
};

const PHONE_PASS: &[u8] = b"the new device's own passphrase";
const KEY: [u8; 32] = [0x4b; 32];

fn key() -> ArchiveKey {
    ArchiveKey::from_bytes(&KEY)
}

// ---- the two devices ---------------------------------------------------------

/// The account device: Alice after a varied life (every delivery state, a
/// deleted message, a pending one, verified and unverified contacts, an
/// access key, a pending identity-change claim), plus `bulk` imported
/// messages of `body_len` bytes with Dave.
fn account(bulk: usize, body_len: usize) -> common::Pair {
    let mut p = common::pair();
    let a1 = p.alice_sends("hello bob");
    deliver(&a1, "alice", &mut p.bob);
    p.alice.mark_sent(&a1.id, T0 + 10).unwrap();
    p.alice.mark_delivered("bob", &[a1.id]).unwrap();
    let b1 = p.bob_sends("hi alice");
    let Received::Stored(_) = p.alice.receive(&envelope(&b1, "bob")).unwrap() else {
        panic!("stored")
    };
    p.alice
        .set_delivery_state("bob", 2, DeliveryState::Read)
        .unwrap();
    let a2 = p.alice_sends("accepted by the relay");
    p.alice.mark_sent(&a2.id, T0 + 20).unwrap();
    let a3 = p.alice_sends("refused by the relay");
    p.alice
        .fail_outbox_entry(&a3.id, SendFailure::Rejected)
        .unwrap();
    p.alice_sends("deleted later");
    p.alice.delete_message("bob", 5).unwrap();
    p.alice_sends("still waiting for the relay");

    let carol = *IdentityKeyPair::from_seed(&[3; 32]).public();
    p.alice
        .add_contact("carol", "Carol C.", Some(&carol))
        .unwrap();
    p.alice.set_contact_verified("carol", true).unwrap();
    p.alice
        .set_contact_access_key("carol", &carol, &AccessKey::from_bytes([5; 16]))
        .unwrap();
    let stranger = *IdentityKeyPair::from_seed(&[4; 32]).public();
    p.alice
        .add_contact("stranger", "", Some(&stranger))
        .unwrap();
    p.alice
        .set_contact_claim("stranger", Some("carol"))
        .unwrap();

    p.alice.add_contact("dave", "Dave", None).unwrap();
    let bodies: Vec<Vec<u8>> = (0..bulk)
        .map(|i| {
            let mut body = format!("message {i:05} ").into_bytes();
            body.resize(body_len.max(14), b'a' + (i % 26) as u8);
            body
        })
        .collect();
    for (n, batch) in bodies.chunks(2_500).enumerate() {
        let messages: Vec<NewMessage<'_>> = batch
            .iter()
            .enumerate()
            .map(|(i, body)| NewMessage {
                direction: if i % 2 == 0 {
                    Direction::Incoming
                } else {
                    Direction::Outgoing
                },
                state: match i % 4 {
                    0 => DeliveryState::Received,
                    1 => DeliveryState::Delivered,
                    2 => DeliveryState::Read,
                    _ => DeliveryState::Sent,
                },
                timestamp: T0 - 10_000_000 + (n * 2_500 + i) as u64,
                body,
            })
            .collect();
        p.alice.import_messages("dave", &messages).unwrap();
    }
    if bulk > 10 {
        p.alice.delete_message("dave", 7).unwrap();
        p.alice.delete_message("dave", 8).unwrap();
    }
    p
}

/// The newly linked device: a store of its own, with its own identity.
fn phone(dir: &Path) -> Store {
    Store::create(dir.join("phone.db"), PHONE_PASS, &options()).unwrap()
}

fn reopen(dir: &Path) -> Store {
    Store::open(dir.join("phone.db"), PHONE_PASS, &options()).unwrap()
}

// ---- writing and cutting the transfer ------------------------------------------

fn export(source: &Store) -> (Vec<u8>, ArchiveSummary) {
    let mut out = Vec::new();
    let summary = source
        .export_history_transfer(&mut out, &key(), |_| {})
        .unwrap();
    assert_eq!(summary.bytes, out.len() as u64);
    (out, summary)
}

/// A written transfer, cut into its frames.
struct Frames {
    header: Vec<u8>,
    chunks: Vec<Vec<u8>>,
}

fn frames(transfer: &[u8]) -> Frames {
    let mut reader = TransferFrames::new(transfer).unwrap();
    let header = reader.header().to_vec();
    let mut chunks = Vec::new();
    for frame in reader.by_ref() {
        let (index, bytes) = frame.unwrap();
        assert_eq!(index, chunks.len() as u64);
        chunks.push(bytes);
    }
    Frames { header, chunks }
}

fn apply_all(store: &mut Store, f: &Frames) -> TransferProgress {
    let begun = store.begin_history_transfer(&f.header, &key()).unwrap();
    assert_eq!((begun.next_chunk, begun.complete), (0, false));
    let mut last = begun;
    for (i, chunk) in f.chunks.iter().enumerate() {
        last = store.apply_history_chunk(i as u64, chunk).unwrap();
        assert_eq!(last.next_chunk, i as u64 + 1);
        assert_eq!(last.complete, i + 1 == f.chunks.len(), "chunk {i}");
    }
    last
}

// ---- comparing histories ---------------------------------------------------------

/// One history row as the user sees it.
#[derive(Debug, PartialEq, Eq)]
enum Row {
    Message {
        seq: u64,
        direction: Direction,
        state: DeliveryState,
        timestamp: u64,
        envelope_id: [u8; 16],
        body: Vec<u8>,
    },
    Unreadable {
        seq: u64,
        error: String,
    },
}

/// Every row of the conversation with `contact`, oldest first.
fn rows(store: &Store, contact: &str) -> Vec<Row> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = store.history(contact, before, 3_000).unwrap();
        for e in &page.entries {
            out.push(match &e.message {
                Ok(m) => Row::Message {
                    seq: m.seq,
                    direction: m.direction,
                    state: m.state,
                    timestamp: m.timestamp,
                    envelope_id: m.envelope_id.0,
                    body: m.body.to_vec(),
                },
                Err(err) => Row::Unreadable {
                    seq: e.seq,
                    error: err.to_string(),
                },
            });
        }
        match page.next_before {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    out.reverse();
    out
}

/// What the source shows, as a device that received it must show it: a
/// message still waiting for the source's relay shows as not sent.
fn as_transferred(mut rows: Vec<Row>) -> Vec<Row> {
    for row in &mut rows {
        if let Row::Message {
            direction: Direction::Outgoing,
            state,
            ..
        } = row
            && *state == DeliveryState::Pending
        {
            *state = DeliveryState::Failed(SendFailure::ExportedUnsent);
        }
    }
    rows
}

/// Everything the user sees in a store, plus where a transfer stands.
#[derive(Debug, PartialEq)]
struct Snapshot {
    contacts: Vec<Contact>,
    conversations: Vec<(String, Vec<Row>)>,
    progress: Option<TransferProgress>,
}

fn snapshot(store: &Store) -> Snapshot {
    let contacts = sorted_contacts(store);
    let conversations = contacts
        .iter()
        .map(|c| (c.id.clone(), rows(store, &c.id)))
        .collect();
    Snapshot {
        contacts,
        conversations,
        progress: store.history_transfer_progress().unwrap(),
    }
}

/// The receiver shows what the source shows.
fn assert_same_history(source: &Store, receiver: &Store) {
    assert_eq!(sorted_contacts(receiver), sorted_contacts(source));
    for c in sorted_contacts(source) {
        assert_eq!(
            rows(receiver, &c.id),
            as_transferred(rows(source, &c.id)),
            "conversation with {}",
            c.id
        );
    }
}

fn files(path: &Path) -> Vec<PathBuf> {
    common::files(path)
}

// ---- the whole transfer --------------------------------------------------------------

#[test]
fn ten_thousand_messages_reach_the_new_device_under_its_own_identity() {
    let p = account(10_000, 200);
    let dir = tempfile::tempdir().unwrap();
    let mut phone = phone(dir.path());
    let own_identity = phone.identity_key().unwrap();

    let mut reports: Vec<ArchiveProgress> = Vec::new();
    let mut transfer = Vec::new();
    let summary = p
        .alice
        .export_history_transfer(&mut transfer, &key(), |r| reports.push(r))
        .unwrap();
    assert!(summary.is_complete());
    assert_eq!(
        (summary.contacts, summary.conversations, summary.messages),
        (4, 2, 10_003)
    );
    assert_eq!(reports.last().unwrap().bytes, transfer.len() as u64);
    assert_eq!(&transfer[..8], b"SOTTOHT1");

    let f = frames(&transfer);
    assert!(f.chunks.len() >= 8, "{} chunks", f.chunks.len());
    assert_eq!(
        f.header.len() + f.chunks.iter().map(Vec::len).sum::<usize>(),
        transfer.len(),
        "the frames are the file, cut"
    );
    assert!(phone.history_transfer_progress().unwrap().is_none());
    let done = apply_all(&mut phone, &f);
    assert!(done.complete);
    assert_eq!(
        (
            done.messages_done,
            done.messages_total,
            done.contacts_done,
            done.contacts_added
        ),
        (10_003, 10_003, 4, 4)
    );
    assert_eq!(done.fraction(), 1.0);
    assert_eq!(phone.history_transfer_progress().unwrap(), Some(done));

    assert_same_history(&p.alice, &phone);
    let bob = rows(&phone, "bob");
    let states: Vec<DeliveryState> = bob
        .iter()
        .map(|r| match r {
            Row::Message { state, .. } => *state,
            Row::Unreadable { .. } => panic!("{r:?}"),
        })
        .collect();
    assert_eq!(
        states,
        [
            DeliveryState::Delivered,
            DeliveryState::Read,
            DeliveryState::Sent,
            DeliveryState::Failed(SendFailure::Rejected),
            DeliveryState::Failed(SendFailure::ExportedUnsent),
        ]
    );
    // Seqs deleted at the source stay deleted: no gap is reported.
    assert!(phone.check().unwrap().is_ok());
    assert_eq!(phone.message_count("dave").unwrap(), 9_998);
    let carol = phone.contact("carol").unwrap().unwrap();
    assert!(carol.verified);
    assert_eq!(carol.access_key, Some(AccessKey::from_bytes([5; 16])));
    assert_eq!(
        phone
            .contact("stranger")
            .unwrap()
            .unwrap()
            .claims_to_succeed
            .as_deref(),
        Some("carol")
    );

    // The new device is still itself: its own identity, no sessions, no
    // outbox, and nothing of the account's identity in its file.
    assert_eq!(phone.identity_key().unwrap(), own_identity);
    assert_ne!(own_identity, p.alice.identity_key().unwrap());
    assert!(!phone.has_session("bob").unwrap());
    assert!(phone.outbox().unwrap().is_empty());
    let seed = p.alice.identity().unwrap().to_seed();
    assert!(
        !transfer.windows(32).any(|w| w == seed.as_slice()),
        "the seed is not in the transfer"
    );
    let path = dir.path().join("phone.db");
    phone.checkpoint().unwrap();
    for file in files(&path) {
        let bytes = common::read(&file);
        assert!(
            !bytes.windows(32).any(|w| w == seed.as_slice()),
            "the account's identity seed is in {}",
            file.display()
        );
    }
    drop(phone);
    let phone = reopen(dir.path());
    assert_eq!(phone.identity_key().unwrap(), own_identity);
    assert_same_history(&p.alice, &phone);

    // An envelope the account device had received is a duplicate here too.
    let first_incoming = phone
        .history("bob", None, 10)
        .unwrap()
        .messages()
        .find(|m| m.direction == Direction::Incoming)
        .map(|m| m.envelope_id)
        .unwrap();
    let mut phone = phone;
    let replay = sotto_store::Envelope {
        id: first_incoming,
        sender: "bob",
        device: sotto_store::PeerDevice::CONTACT_PRIMARY,
        ciphertext: b"a seen envelope is not decrypted",
        sent_at: 0,
        received_at: T0,
    };
    assert!(matches!(
        phone.receive(&replay).unwrap(),
        Received::Duplicate
    ));
}

#[test]
fn a_long_message_runs_across_chunks_and_arrives_whole() {
    let mut p = account(0, 0);
    let long: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    p.alice
        .import_messages(
            "dave",
            &[NewMessage {
                direction: Direction::Incoming,
                state: DeliveryState::Received,
                timestamp: T0,
                body: &long,
            }],
        )
        .unwrap();
    let (transfer, _) = export(&p.alice);
    let f = frames(&transfer);
    assert_eq!(f.chunks.len(), 3);
    let dir = tempfile::tempdir().unwrap();
    let mut phone = phone(dir.path());
    phone.begin_history_transfer(&f.header, &key()).unwrap();
    // The message starts in chunk 0 and ends in chunk 2: the store keeps
    // the parts between chunks, across a restart.
    phone.apply_history_chunk(0, &f.chunks[0]).unwrap();
    drop(phone);
    let mut phone = reopen(dir.path());
    phone.apply_history_chunk(1, &f.chunks[1]).unwrap();
    assert_eq!(phone.message_count("dave").unwrap(), 0);
    drop(phone);
    let mut phone = reopen(dir.path());
    assert!(phone.apply_history_chunk(2, &f.chunks[2]).unwrap().complete);
    assert_same_history(&p.alice, &phone);
    assert_eq!(
        phone.message("dave", 1).unwrap().unwrap().body.as_slice(),
        long.as_slice()
    );
}

// ---- crashes and resumption ------------------------------------------------------------

#[test]
fn a_restart_between_any_two_chunks_resumes_where_it_stopped() {
    let p = account(3_000, 300);
    let (transfer, _) = export(&p.alice);
    let chunk_count = frames(&transfer).chunks.len();
    assert!(chunk_count >= 4, "{chunk_count} chunks");
    let file_dir = tempfile::tempdir().unwrap();
    let file = file_dir.path().join("transfer");
    std::fs::write(&file, &transfer).unwrap();

    for crash_after in 0..=chunk_count {
        let dir = tempfile::tempdir().unwrap();
        let mut phone = phone(dir.path());
        let mut sender = TransferFrames::new(std::fs::File::open(&file).unwrap()).unwrap();
        phone
            .begin_history_transfer(sender.header(), &key())
            .unwrap();
        for _ in 0..crash_after {
            let (index, frame) = sender.next().unwrap().unwrap();
            phone.apply_history_chunk(index, &frame).unwrap();
        }
        // Both sides restart: the receiver says where it stands, the
        // sender opens its file again and resumes from there.
        drop((phone, sender));
        let mut phone = reopen(dir.path());
        let progress = phone.history_transfer_progress().unwrap().unwrap();
        assert_eq!(progress.next_chunk, crash_after as u64);
        assert_eq!(progress.complete, crash_after == chunk_count);
        let mut sender = TransferFrames::new(std::fs::File::open(&file).unwrap()).unwrap();
        // Beginning again is harmless.
        assert_eq!(
            phone
                .begin_history_transfer(sender.header(), &key())
                .unwrap(),
            progress
        );
        sender.skip_to(progress.next_chunk).unwrap();
        for frame in sender {
            let (index, frame) = frame.unwrap();
            phone.apply_history_chunk(index, &frame).unwrap();
        }
        assert!(
            phone.history_transfer_progress().unwrap().unwrap().complete,
            "crash after {crash_after}"
        );
        assert_same_history(&p.alice, &phone);
    }
}

#[test]
fn a_crash_inside_a_chunks_transaction_leaves_the_chunk_unapplied() {
    let p = account(2_000, 300);
    let f = frames(&export(&p.alice).0);
    let dir = tempfile::tempdir().unwrap();
    let mut phone = phone(dir.path());
    phone.begin_history_transfer(&f.header, &key()).unwrap();
    let mut merges_faulted = 0;
    for (i, chunk) in f.chunks.iter().enumerate() {
        let index = i as u64;
        // Killed before the commit, after everything was written.
        let before = snapshot(&phone);
        phone.inject_fault(FaultPoint::TransferBeforeCommit);
        assert!(matches!(
            phone.apply_history_chunk(index, chunk),
            Err(Error::InjectedFault(FaultPoint::TransferBeforeCommit))
        ));
        drop(phone);
        phone = reopen(dir.path());
        assert_eq!(snapshot(&phone), before, "chunk {i}");

        // Killed right after a conversation was merged (the rows already
        // there moved), in the middle of the chunk.
        phone.inject_fault(FaultPoint::TransferAfterMerge);
        match phone.apply_history_chunk(index, chunk) {
            Err(Error::InjectedFault(FaultPoint::TransferAfterMerge)) => {
                merges_faulted += 1;
                drop(phone);
                phone = reopen(dir.path());
                assert_eq!(snapshot(&phone), before, "chunk {i}");
            }
            Ok(_) => {
                // A chunk without a conversation record: applied, and the
                // fault still armed on this handle.
                drop(phone);
                phone = reopen(dir.path());
                continue;
            }
            Err(e) => panic!("chunk {i}: {e:?}"),
        }

        // Killed right after the commit: applied, and the copy the relay
        // delivers again (it was not acknowledged) changes nothing.
        phone.inject_fault(FaultPoint::TransferAfterCommit);
        assert!(matches!(
            phone.apply_history_chunk(index, chunk),
            Err(Error::InjectedFault(FaultPoint::TransferAfterCommit))
        ));
        drop(phone);
        phone = reopen(dir.path());
        let after = snapshot(&phone);
        assert_eq!(after.progress.as_ref().unwrap().next_chunk, index + 1);
        match phone.apply_history_chunk(index, chunk) {
            Ok(progress) => assert_eq!(Some(progress), after.progress),
            Err(e) => assert!(
                i + 1 == f.chunks.len() && matches!(e, Error::Archive(ArchiveError::NoTransfer)),
                "{e:?}"
            ),
        }
        assert_eq!(snapshot(&phone), after);
    }
    assert!(merges_faulted >= 1);
    assert!(phone.history_transfer_progress().unwrap().unwrap().complete);
    assert_same_history(&p.alice, &phone);
}

// ---- duplicates and gaps -----------------------------------------------------------------

#[test]
fn every_chunk_delivered_twice_changes_nothing() {
    let p = account(2_000, 300);
    let f = frames(&export(&p.alice).0);
    let dir = tempfile::tempdir().unwrap();
    let mut phone = phone(dir.path());
    phone.begin_history_transfer(&f.header, &key()).unwrap();
    for (i, chunk) in f.chunks.iter().enumerate() {
        let first = phone.apply_history_chunk(i as u64, chunk).unwrap();
        if first.complete {
            break;
        }
        let after = snapshot(&phone);
        // This chunk again, and every earlier one.
        for j in (0..=i).rev() {
            assert_eq!(
                phone.apply_history_chunk(j as u64, &f.chunks[j]).unwrap(),
                first
            );
        }
        assert_eq!(snapshot(&phone), after, "after chunk {i}");
    }
    // A copy of the final chunk after completion finds nothing to do.
    let last = f.chunks.len() - 1;
    let done = snapshot(&phone);
    assert!(matches!(
        phone.apply_history_chunk(last as u64, &f.chunks[last]),
        Err(Error::Archive(ArchiveError::NoTransfer))
    ));
    // Nor does a late copy of the header begin it again.
    let again = phone.begin_history_transfer(&f.header, &key()).unwrap();
    assert!(again.complete);
    assert_eq!(snapshot(&phone), done);
    assert_same_history(&p.alice, &phone);
}

#[test]
fn a_chunk_ahead_of_its_turn_is_refused_until_the_missing_one_came() {
    let p = account(2_000, 300);
    let f = frames(&export(&p.alice).0);
    assert!(f.chunks.len() >= 3);
    let dir = tempfile::tempdir().unwrap();
    let mut phone = phone(dir.path());
    phone.begin_history_transfer(&f.header, &key()).unwrap();
    let before = snapshot(&phone);
    assert!(matches!(
        phone.apply_history_chunk(1, &f.chunks[1]),
        Err(Error::Archive(ArchiveError::ChunkAhead {
            chunk: 1,
            expected: 0
        }))
    ));
    assert_eq!(snapshot(&phone), before);
    phone.apply_history_chunk(0, &f.chunks[0]).unwrap();
    let before = snapshot(&phone);
    let err = phone.apply_history_chunk(2, &f.chunks[2]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Archive(ArchiveError::ChunkAhead {
                chunk: 2,
                expected: 1
            })
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "transfer chunk 2 came before chunk 1");
    assert_eq!(snapshot(&phone), before);
    // Chunk 2 kept by the caller, applied once chunk 1 came.
    phone.apply_history_chunk(1, &f.chunks[1]).unwrap();
    for (i, chunk) in f.chunks.iter().enumerate().skip(2) {
        phone.apply_history_chunk(i as u64, chunk).unwrap();
    }
    assert_same_history(&p.alice, &phone);
}

// ---- damage ------------------------------------------------------------------------------

/// Applies `frame` as chunk `index`: must be refused with an archive
/// error and change nothing.
fn refused(phone: &mut Store, index: u64, frame: &[u8]) -> ArchiveError {
    let before = snapshot(phone);
    let err = match phone.apply_history_chunk(index, frame) {
        Err(Error::Archive(e)) => e,
        other => panic!("chunk {index}: {:?}", other.map(|_| ())),
    };
    assert_eq!(snapshot(phone), before, "chunk {index}: {err:?}");
    err
}

#[test]
fn altered_cut_or_foreign_chunks_are_refused_and_change_nothing() {
    let p = account(2_000, 300);
    let (transfer, _) = export(&p.alice);
    let f = frames(&transfer);
    // Another transfer of the same history under the same key.
    let other = frames(&export(&p.alice).0);
    assert_eq!(other.chunks.len(), f.chunks.len());
    let dir = tempfile::tempdir().unwrap();
    let mut phone = phone(dir.path());
    phone.begin_history_transfer(&f.header, &key()).unwrap();
    let n = f.chunks.len();
    for (i, chunk) in f.chunks.iter().enumerate() {
        let index = i as u64;
        let mismatch = |e: &ArchiveError| match (i, e) {
            (0, ArchiveError::WrongSecret) => true,
            (_, ArchiveError::Tampered { chunk }) => *chunk == index,
            _ => false,
        };
        // A flipped bit in the tag, the ciphertext's first and last
        // bytes, and a spread of bytes between.
        let len = chunk.len();
        let mut positions = vec![4, 5, len - 17, len - 16, len - 1];
        positions.extend((6..len - 17).step_by(len / 23));
        for at in positions {
            let mut flipped = chunk.clone();
            flipped[at] ^= 1 << (at % 8);
            let e = refused(&mut phone, index, &flipped);
            assert!(mismatch(&e), "chunk {i}, byte {at}: {e:?}");
        }
        // The length prefix altered.
        for at in 0..4 {
            let mut flipped = chunk.clone();
            flipped[at] ^= 0x10;
            let e = refused(&mut phone, index, &flipped);
            assert!(
                matches!(
                    e,
                    ArchiveError::Truncated { .. }
                        | ArchiveError::TrailingData
                        | ArchiveError::ChunkTooLarge { .. }
                ),
                "chunk {i}, length byte {at}: {e:?}"
            );
        }
        // Cut short, or nothing at all.
        for cut in [0, 3, 4, 100, len - 1] {
            let e = refused(&mut phone, index, &chunk[..cut]);
            assert!(
                matches!(e, ArchiveError::Truncated { chunks } if chunks == index),
                "chunk {i} cut at {cut}: {e:?}"
            );
        }
        // The same chunk of another transfer, and other chunks of this one.
        let e = refused(&mut phone, index, &other.chunks[i]);
        assert!(mismatch(&e), "foreign chunk {i}: {e:?}");
        if i + 1 < n {
            let e = refused(&mut phone, index, &f.chunks[i + 1]);
            assert!(mismatch(&e), "chunk {} as {i}: {e:?}", i + 1);
        }
        // Only the real one goes through; an altered copy of a chunk
        // already applied is refused all the same.
        phone.apply_history_chunk(index, chunk).unwrap();
        if i + 1 < n {
            let mut flipped = chunk.clone();
            flipped[len / 2] ^= 1;
            let e = refused(&mut phone, index, &flipped);
            assert!(mismatch(&e), "{e:?}");
        }
    }
    assert_same_history(&p.alice, &phone);
}

#[test]
fn a_transfer_without_its_final_chunk_never_completes() {
    let p = account(2_000, 300);
    let f = frames(&export(&p.alice).0);
    let n = f.chunks.len();
    let dir = tempfile::tempdir().unwrap();
    let mut phone = phone(dir.path());
    phone.begin_history_transfer(&f.header, &key()).unwrap();
    for (i, chunk) in f.chunks[..n - 1].iter().enumerate() {
        phone.apply_history_chunk(i as u64, chunk).unwrap();
    }
    let progress = phone.history_transfer_progress().unwrap().unwrap();
    assert!(!progress.complete);
    assert_eq!(progress.next_chunk, n as u64 - 1);
    assert!(progress.messages_done < progress.messages_total);
    // The final chunk cut at its end is still refused as cut; a chunk
    // sealed as not final cannot end the transfer.
    let last = &f.chunks[n - 1];
    let e = refused(&mut phone, n as u64 - 1, &last[..last.len() - 1]);
    assert!(matches!(e, ArchiveError::Truncated { .. }), "{e:?}");
    // The sender's file cut inside its final chunk: its frames say so.
    let (transfer, _) = export(&p.alice);
    let mut cut = TransferFrames::new(&transfer[..transfer.len() - 5]).unwrap();
    let errors: Vec<Error> = cut.by_ref().filter_map(Result::err).collect();
    assert!(matches!(
        errors.as_slice(),
        [Error::Archive(ArchiveError::Truncated { .. })]
    ));
    assert!(cut.next().is_none());
    // Abandoning drops the transfer; what it applied stays history.
    let kept = phone.message_count("dave").unwrap();
    assert!(phone.abandon_history_transfer().unwrap());
    assert!(!phone.abandon_history_transfer().unwrap());
    assert!(phone.history_transfer_progress().unwrap().is_none());
    assert_eq!(phone.message_count("dave").unwrap(), kept);
    assert!(matches!(
        phone.apply_history_chunk(n as u64 - 1, last),
        Err(Error::Archive(ArchiveError::NoTransfer))
    ));
}

#[test]
fn a_wrong_key_or_altered_header_opens_nothing_and_the_right_one_still_works() {
    let p = account(50, 100);
    let f = frames(&export(&p.alice).0);
    let dir = tempfile::tempdir().unwrap();
    let mut phone = phone(dir.path());
    let contacts_before = sorted_contacts(&phone);

    let wrong = ArchiveKey::from_bytes(&[0x4c; 32]);
    let begun = phone.begin_history_transfer(&f.header, &wrong).unwrap();
    assert_eq!(begun.next_chunk, 0);
    assert!(matches!(
        refused(&mut phone, 0, &f.chunks[0]),
        ArchiveError::WrongSecret
    ));
    let mut altered = f.header.clone();
    altered[60] ^= 1; // the message count
    phone.begin_history_transfer(&altered, &key()).unwrap();
    assert!(matches!(
        refused(&mut phone, 0, &f.chunks[0]),
        ArchiveError::WrongSecret
    ));
    assert_eq!(sorted_contacts(&phone), contacts_before);
    assert_eq!(phone.message_count("dave").unwrap(), 0);

    // No chunk was applied: beginning again with the right key and
    // header replaces the failed attempt.
    let done = apply_all(&mut phone, &f);
    assert!(done.complete);
    assert_same_history(&p.alice, &phone);
}

#[test]
fn every_single_byte_of_a_small_transfer_is_authenticated() {
    let dir = tempfile::tempdir().unwrap();
    let mut alice = Store::create(dir.path().join("alice.db"), ALICE_PASS, &options()).unwrap();
    alice.add_contact("bob", "Bob", None).unwrap();
    alice
        .import_messages(
            "bob",
            &[
                NewMessage {
                    direction: Direction::Incoming,
                    state: DeliveryState::Received,
                    timestamp: T0,
                    body: b"hi",
                },
                NewMessage {
                    direction: Direction::Outgoing,
                    state: DeliveryState::Delivered,
                    timestamp: T0 + 1,
                    body: b"hello",
                },
            ],
        )
        .unwrap();
    let f = frames(&export(&alice).0);
    assert_eq!(f.chunks.len(), 1);
    let mut phone = phone(dir.path());
    let chunk = &f.chunks[0];
    for at in 0..chunk.len() {
        let mut flipped = chunk.clone();
        flipped[at] ^= 1 << (at % 8);
        phone.begin_history_transfer(&f.header, &key()).unwrap();
        let e = refused(&mut phone, 0, &flipped);
        assert!(
            matches!(
                e,
                ArchiveError::WrongSecret
                    | ArchiveError::Truncated { .. }
                    | ArchiveError::TrailingData
                    | ArchiveError::ChunkTooLarge { .. }
            ),
            "byte {at}: {e:?}"
        );
    }
    for at in 0..f.header.len() {
        let mut flipped = f.header.clone();
        flipped[at] ^= 1 << (at % 8);
        match phone.begin_history_transfer(&flipped, &key()) {
            // The magic, the kdf byte or its parameters: refused unread.
            Err(Error::Archive(_)) => continue,
            Err(e) => panic!("header byte {at}: {e:?}"),
            Ok(_) => {}
        }
        let e = refused(&mut phone, 0, chunk);
        assert!(
            matches!(e, ArchiveError::WrongSecret),
            "header byte {at}: {e:?}"
        );
    }
    assert!(phone.contacts().unwrap().is_empty());
    assert!(apply_all(&mut phone, &f).complete);
    assert_same_history(&alice, &phone);
}

// ---- a transfer is not a backup ----------------------------------------------------------------

#[test]
fn a_backup_and_a_transfer_are_refused_where_the_other_is_expected() {
    let p = account(10, 50);
    let (transfer, _) = export(&p.alice);
    let mut backup = Vec::new();
    p.alice
        .export_archive_with_key(&mut backup, &key(), |_| {})
        .unwrap();
    assert_eq!(&backup[..8], b"SOTTOHA1");
    let dir = tempfile::tempdir().unwrap();

    let target = dir.path().join("restored.db");
    let err = Store::import_archive_with_key(
        &target,
        &mut &transfer[..],
        &key(),
        PHONE_PASS,
        &options(),
        |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Archive(ArchiveError::WrongKind {
                expected: ArchiveKind::Backup,
                found: ArchiveKind::Transfer
            })
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "this is a history transfer, not a backup archive"
    );
    assert!(!target.exists());

    let mut phone = phone(dir.path());
    let wrong_kind = |e: &Error| {
        matches!(
            e,
            Error::Archive(ArchiveError::WrongKind {
                expected: ArchiveKind::Transfer,
                found: ArchiveKind::Backup
            })
        )
    };
    assert!(wrong_kind(
        &phone
            .begin_history_transfer(&backup[..69], &key())
            .unwrap_err()
    ));
    assert!(wrong_kind(&TransferFrames::new(&backup[..]).unwrap_err()));
    assert!(phone.history_transfer_progress().unwrap().is_none());

    // A transfer relabelled as a backup (or the other way round) fails
    // to open: the magic is in every chunk's associated data.
    let mut relabelled = transfer.clone();
    relabelled[..8].copy_from_slice(b"SOTTOHA1");
    assert!(matches!(
        Store::import_archive_with_key(
            &target,
            &mut &relabelled[..],
            &key(),
            PHONE_PASS,
            &options(),
            |_| {}
        ),
        Err(Error::Archive(ArchiveError::WrongSecret))
    ));
    let mut relabelled = backup.clone();
    relabelled[..8].copy_from_slice(b"SOTTOHT1");
    let f = frames(&relabelled);
    phone.begin_history_transfer(&f.header, &key()).unwrap();
    assert!(matches!(
        refused(&mut phone, 0, &f.chunks[0]),
        ArchiveError::WrongSecret
    ));

    // A passphrase-locked header is not a transfer's.
    let mut locked = Vec::new();
    p.alice
        .export_archive(
            &mut locked,
            b"pw",
            KdfParams::new(64, 1, 1).unwrap(),
            |_| {},
        )
        .unwrap();
    locked[..8].copy_from_slice(b"SOTTOHT1");
    assert!(matches!(
        phone.begin_history_transfer(&locked[..69], &key()),
        Err(Error::Archive(ArchiveError::WrongLock {
            expected: ArchiveLock::Passphrase
        }))
    ));
    // Not a header at all.
    assert!(matches!(
        phone.begin_history_transfer(b"SQLite format 3\0", &key()),
        Err(Error::Archive(ArchiveError::NotAnArchive))
    ));
    assert!(matches!(
        phone.begin_history_transfer(&transfer[..40], &key()),
        Err(Error::Archive(ArchiveError::Truncated { chunks: 0 }))
    ));
    assert!(matches!(
        phone.begin_history_transfer(&transfer[..70], &key()),
        Err(Error::Archive(ArchiveError::TrailingData))
    ));
}

#[test]
fn one_transfer_at_a_time() {
    let p = account(2_000, 300);
    let first = frames(&export(&p.alice).0);
    let second = frames(&export(&p.alice).0);
    let dir = tempfile::tempdir().unwrap();
    let mut phone = phone(dir.path());
    phone.begin_history_transfer(&first.header, &key()).unwrap();
    // Nothing applied yet: another transfer replaces it.
    let begun = phone
        .begin_history_transfer(&second.header, &key())
        .unwrap();
    assert_ne!(begun.id, first_id(&first));
    phone.apply_history_chunk(0, &second.chunks[0]).unwrap();
    // Now it holds: another one waits until it completes or is abandoned.
    assert!(matches!(
        phone.begin_history_transfer(&first.header, &key()),
        Err(Error::Archive(ArchiveError::TransferInProgress { id })) if id == begun.id
    ));
    // Its own header under another key is refused, not taken.
    assert!(matches!(
        phone.begin_history_transfer(&second.header, &ArchiveKey::from_bytes(&[1; 32])),
        Err(Error::Archive(ArchiveError::WrongSecret))
    ));
    for (i, chunk) in second.chunks.iter().enumerate().skip(1) {
        phone.apply_history_chunk(i as u64, chunk).unwrap();
    }
    assert_same_history(&p.alice, &phone);
}

fn first_id(f: &Frames) -> sotto_store::ArchiveId {
    TransferFrames::new(&f.header[..]).unwrap().id()
}

#[test]
fn the_frames_resume_from_any_chunk_of_the_file() {
    let p = account(2_000, 300);
    let (transfer, _) = export(&p.alice);
    let all = frames(&transfer);
    for start in 0..=all.chunks.len() as u64 {
        let mut reader = TransferFrames::new(&transfer[..]).unwrap();
        reader.skip_to(start).unwrap();
        assert_eq!(reader.next_index(), start);
        let rest: Vec<(u64, Vec<u8>)> = reader.map(Result::unwrap).collect();
        assert_eq!(rest.len(), all.chunks.len() - start as usize);
        for (index, frame) in rest {
            assert_eq!(frame, all.chunks[index as usize]);
        }
    }
    let mut reader = TransferFrames::new(&transfer[..]).unwrap();
    assert!(matches!(
        reader.skip_to(all.chunks.len() as u64 + 1),
        Err(Error::Archive(ArchiveError::Truncated { .. }))
    ));
    let mut reader = TransferFrames::new(&transfer[..]).unwrap();
    reader.skip_to(2).unwrap();
    assert!(reader.skip_to(1).is_err(), "no way back");
}

// ---- merging into a store that already holds history -------------------------------------------

#[test]
fn the_transferred_history_comes_first_and_what_was_here_follows() {
    let mut p = account(2_000, 300);
    let source_dave = rows(&p.alice, "dave");
    let dave_next = 2_001; // dave's next seq at the source (2 000 imported)
    let dir = tempfile::tempdir().unwrap();
    let mut phone = phone(dir.path());

    // Before the transfer, the new device already talks to Bob itself.
    let published = p.bob.fresh_one_time_prekeys(1, T0).unwrap();
    let bundle = p.bob.prekey_bundle(Some(published[0].0)).unwrap();
    phone.add_contact("bob", "", None).unwrap();
    phone.start_session("bob", &bundle).unwrap();
    let local_1 = phone.send("bob", b"sent from the phone", T0 + 100).unwrap();
    deliver(&local_1, "phone", &mut p.bob);
    phone.mark_sent(&local_1.id, T0 + 101).unwrap();
    let reply = p
        .bob
        .send("phone", b"bob answers the phone", T0 + 102)
        .unwrap();
    let Received::Stored(_) = phone.receive(&envelope(&reply, "bob")).unwrap() else {
        panic!("stored")
    };
    let deleted_here = phone
        .send("bob", b"deleted on the phone", T0 + 103)
        .unwrap();
    phone.delete_message("bob", deleted_here.seq).unwrap();
    let waiting = phone
        .send("bob", b"waiting on the phone", T0 + 104)
        .unwrap();
    assert_eq!((local_1.seq, deleted_here.seq, waiting.seq), (1, 3, 4));
    // Dave with another name here, Carol unnamed, the stranger under
    // another identity.
    phone.add_contact("dave", "Dave (work)", None).unwrap();
    let carol = *IdentityKeyPair::from_seed(&[3; 32]).public();
    phone.add_contact("carol", "", Some(&carol)).unwrap();
    let other = *IdentityKeyPair::from_seed(&[9; 32]).public();
    phone
        .add_contact("stranger", "Someone", Some(&other))
        .unwrap();
    phone
        .import_messages(
            "dave",
            &[NewMessage {
                direction: Direction::Incoming,
                state: DeliveryState::Received,
                timestamp: T0 + 200,
                body: b"dave wrote to the phone",
            }],
        )
        .unwrap();
    let phone_bob = rows(&phone, "bob");

    let f = frames(&export(&p.alice).0);
    phone.begin_history_transfer(&f.header, &key()).unwrap();
    let mut done = None;
    for (i, chunk) in f.chunks.iter().enumerate() {
        let progress = phone.apply_history_chunk(i as u64, chunk).unwrap();
        if i == 0 {
            // Bob's conversation was merged in chunk 0; a message that
            // arrives now goes after everything.
            let late = p
                .bob
                .send("phone", b"while the history arrives", T0 + 300)
                .unwrap();
            let Received::Stored(m) = phone.receive(&envelope(&late, "bob")).unwrap() else {
                panic!("stored")
            };
            assert_eq!(m.seq, 6 + 5);
        }
        done = Some(progress);
    }
    let done = done.unwrap();
    assert!(done.complete);
    assert_eq!((done.contacts_added, done.contacts_merged), (0, 3));
    assert_eq!(done.identity_conflicts, ["stranger"]);
    assert!(
        !format!("{done:?}").contains("stranger"),
        "ids stay out of Debug"
    );

    // Bob: the account's 6 seqs (5 deleted there) first, then the phone's,
    // each moved up by 6 (the account's next seq was 7), seq 3 + 6 still
    // deleted, then the message that came in during the transfer.
    let bob = rows(&phone, "bob");
    let source_bob = as_transferred(rows(&p.alice, "bob"));
    assert_eq!(&bob[..source_bob.len()], source_bob.as_slice());
    let moved: Vec<Row> = phone_bob
        .into_iter()
        .map(|r| match r {
            Row::Message {
                seq,
                direction,
                state,
                timestamp,
                envelope_id,
                body,
            } => Row::Message {
                seq: seq + 6,
                direction,
                state,
                timestamp,
                envelope_id,
                body,
            },
            other => other,
        })
        .collect();
    assert_eq!(
        &bob[source_bob.len()..source_bob.len() + 3],
        moved.as_slice()
    );
    let seqs: Vec<u64> = bob
        .iter()
        .map(|r| match r {
            Row::Message { seq, .. } | Row::Unreadable { seq, .. } => *seq,
        })
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 6, 7, 8, 10, 11]);
    assert!(
        phone.check().unwrap().is_ok(),
        "{:?}",
        phone.check().unwrap()
    );

    // The phone's outbox entry follows its message: it is resent and
    // confirmed under the new seq.
    let outbox: Vec<_> = phone
        .outbox()
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(outbox.len(), 1);
    assert_eq!((outbox[0].id, outbox[0].seq), (waiting.id, 10));
    assert_eq!(
        deliver(&outbox[0], "phone", &mut p.bob),
        "waiting on the phone"
    );
    phone.mark_sent(&waiting.id, T0 + 400).unwrap();
    assert_eq!(phone.mark_delivered("bob", &[waiting.id]).unwrap(), [10]);
    assert_eq!(
        phone.message("bob", 10).unwrap().unwrap().state,
        DeliveryState::Delivered
    );
    // And new messages continue after all of it.
    let next = phone.send("bob", b"after the transfer", T0 + 500).unwrap();
    assert_eq!(next.seq, 12);

    // Dave: the 2 000 transferred, then the one the phone had.
    let dave = rows(&phone, "dave");
    assert_eq!(&dave[..source_dave.len()], source_dave.as_slice());
    assert!(matches!(
        dave.last(),
        Some(Row::Message { seq, body, .. }) if *seq == dave_next && body == b"dave wrote to the phone"
    ));

    // Contacts: names chosen here stay, empty ones are filled, the
    // verified mark and the access key arrive for the same identity, the
    // stranger with another identity is left as it was.
    let dave = phone.contact("dave").unwrap().unwrap();
    assert_eq!(dave.name, "Dave (work)");
    let carol = phone.contact("carol").unwrap().unwrap();
    assert_eq!(carol.name, "Carol C.");
    assert!(carol.verified);
    assert_eq!(carol.access_key, Some(AccessKey::from_bytes([5; 16])));
    let stranger = phone.contact("stranger").unwrap().unwrap();
    assert_eq!(
        (
            stranger.name.as_str(),
            stranger.identity_key,
            stranger.claims_to_succeed
        ),
        ("Someone", Some(other), None)
    );
    let bob = phone.contact("bob").unwrap().unwrap();
    assert_eq!(bob.name, "Bob");
    // The phone's session with Bob still works.
    assert!(phone.has_session("bob").unwrap());
    let m = p.bob.send("phone", b"still talking", T0 + 600).unwrap();
    assert_eq!(deliver(&m, "bob", &mut phone), "still talking");
}

#[test]
fn a_conversation_deleted_while_it_arrives_stays_deleted() {
    let p = account(2_000, 300);
    let f = frames(&export(&p.alice).0);
    assert!(f.chunks.len() >= 3);
    let dir = tempfile::tempdir().unwrap();
    let mut phone = phone(dir.path());
    phone.begin_history_transfer(&f.header, &key()).unwrap();
    // Chunk 0 merges Dave's conversation and brings its first rows.
    phone.apply_history_chunk(0, &f.chunks[0]).unwrap();
    assert!(phone.message_count("dave").unwrap() > 0);
    assert!(phone.delete_conversation("dave").unwrap());
    phone.apply_history_chunk(1, &f.chunks[1]).unwrap();
    assert_eq!(phone.message_count("dave").unwrap(), 0);
    // Dave writes again: a new conversation, which the rest of the old
    // one's rows do not go into either.
    phone
        .import_messages(
            "dave",
            &[NewMessage {
                direction: Direction::Incoming,
                state: DeliveryState::Received,
                timestamp: T0 + 5,
                body: b"after the deletion",
            }],
        )
        .unwrap();
    drop(phone);
    let mut phone = reopen(dir.path());
    let mut done = None;
    for (i, chunk) in f.chunks.iter().enumerate().skip(2) {
        done = Some(phone.apply_history_chunk(i as u64, chunk).unwrap());
    }
    let done = done.unwrap();
    assert!(done.complete);
    assert_eq!(done.messages_done, done.messages_total);
    let dave = rows(&phone, "dave");
    assert!(
        matches!(dave.as_slice(), [Row::Message { seq: 1, body, .. }] if body == b"after the deletion"),
        "{dave:?}"
    );
    assert_eq!(rows(&phone, "bob"), as_transferred(rows(&p.alice, "bob")));
    assert!(phone.check().unwrap().is_ok());
}
