//! A damaged file must not pass for a shorter history: rows that vanish
//! (a flipped bit in a b-tree page can hide a whole range of them) are
//! reported in place, and `check` finds every problem.
#![cfg(test)]

mod common;

use common::{deliver, pair};
use sotto_store::{Error, Row, Store};

fn hide_rows(path: &std::path::Path, seqs: &[u64]) {
    // What a damaged index does to a reader: the rows are simply not found.
    let conn = rusqlite::Connection::open(path).unwrap();
    let conversation = common::raw_messages::only_conversation(&conn);
    for seq in seqs {
        assert_eq!(
            common::raw_messages::delete(&conn, &conversation, *seq as i64),
            1
        );
    }
}

#[test]
fn vanished_rows_are_reported_in_place_and_deleted_ones_are_not() {
    let mut p = pair();
    for i in 1..=20 {
        let m = p.alice_sends(&format!("m{i}"));
        deliver(&m, "alice", &mut p.bob);
    }
    // Bob deletes one on purpose; two others vanish behind his back.
    assert!(p.bob.delete_message("alice", 7).unwrap());
    let path = p.bob_path();
    drop(p.bob);
    hide_rows(&path, &[5, 12]);
    let bob = Store::open(&path, common::BOB_PASS, &common::options()).unwrap();

    let page = bob.history("alice", None, 50).unwrap();
    let seqs: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=20).rev().filter(|s| *s != 7).collect();
    assert_eq!(seqs, expected);
    for e in &page.entries {
        match e.seq {
            5 | 12 => assert!(
                matches!(
                    e.message,
                    Err(Error::MissingRow {
                        table: "messages",
                        row: Row::Seq(s)
                    }) if s == e.seq
                ),
                "{:?}",
                e.message
            ),
            _ => assert!(e.message.is_ok()),
        }
    }
    assert_eq!(page.messages().count(), 17);

    // Page by page, the same picture.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = bob.history("alice", before, 4).unwrap();
        seen.extend(page.entries.iter().map(|e| (e.seq, e.message.is_ok())));
        match page.next_before {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    let pages: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(pages, expected);
    assert_eq!(seen.iter().filter(|(_, ok)| !ok).count(), 2);

    // The full check finds exactly those two.
    let report = bob.check().unwrap();
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    assert!(
        report
            .problems
            .iter()
            .all(|e| matches!(e, Error::MissingRow { .. }))
    );
    assert_eq!(report.messages, 17);
    assert_eq!(report.conversations, 1);
}

#[test]
fn the_newest_rows_vanishing_is_reported_too() {
    let mut p = pair();
    for i in 1..=6 {
        let m = p.alice_sends(&format!("m{i}"));
        deliver(&m, "alice", &mut p.bob);
    }
    let path = p.bob_path();
    drop(p.bob);
    hide_rows(&path, &[5, 6]);
    let bob = Store::open(&path, common::BOB_PASS, &common::options()).unwrap();
    let page = bob.history("alice", None, 3).unwrap();
    assert_eq!(
        page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![6, 5, 4]
    );
    assert!(page.entries[0].message.is_err() && page.entries[1].message.is_err());
    assert_eq!(page.next_before, Some(4));
}

#[test]
fn a_healthy_store_checks_clean_and_a_tampered_contact_is_found() {
    let mut p = pair();
    let m = p.alice_sends("hello");
    deliver(&m, "alice", &mut p.bob);
    p.bob.add_contact("carol", "Carol", None).unwrap();
    let report = p.bob.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(
        (report.contacts, report.conversations, report.messages),
        (2, 1, 1)
    );

    let path = p.bob_path();
    drop(p.bob);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let sealed: Vec<u8> = conn
            .query_row("SELECT sealed FROM contacts LIMIT 1", [], |r| r.get(0))
            .unwrap();
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        conn.execute(
            "UPDATE contacts SET sealed = ?1 WHERE sealed = ?2",
            rusqlite::params![bad, sealed],
        )
        .unwrap();
    }
    let bob = Store::open(&path, common::BOB_PASS, &common::options()).unwrap();
    let report = bob.check().unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(matches!(
        report.problems[0],
        Error::Corrupt {
            table: "contacts",
            ..
        }
    ));
}

/// One flipped bit anywhere in the file (a b-tree page, a sealed value, a
/// counter): opening or reading fails with an error, or the history shows
/// every message it held — readable, or reported in place. It never shows
/// fewer as if that were all.
#[test]
fn no_single_bit_flip_silently_shortens_the_history() {
    use rand::{RngExt, SeedableRng};
    let mut p = pair();
    const N: u64 = 50;
    for i in 1..=N {
        let m = p.alice_sends(&format!("message number {i} with some padding text"));
        deliver(&m, "alice", &mut p.bob);
    }
    let path = p.bob_path();
    drop(p.bob);
    let original = std::fs::read(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut errors, mut reported, mut whole) = (0, 0, 0);
    for trial in 0..300 {
        let mut bytes = original.clone();
        let byte = rng.random_range(0..bytes.len());
        bytes[byte] ^= 1 << rng.random_range(0..8);
        let copy = dir.path().join(format!("t{trial}.db"));
        std::fs::write(&copy, &bytes).unwrap();
        let page = Store::open(&copy, common::BOB_PASS, &common::options())
            .and_then(|s| s.history("alice", None, 1000));
        match page {
            Err(_) => errors += 1,
            Ok(page) => {
                let seqs: std::collections::BTreeSet<u64> =
                    page.entries.iter().map(|e| e.seq).collect();
                assert!(
                    (1..=N).all(|s| seqs.contains(&s)),
                    "trial {trial}: byte {byte} flipped, history silently short: {} of {N}",
                    seqs.len()
                );
                if page.entries.iter().all(|e| e.message.is_ok()) {
                    whole += 1;
                } else {
                    reported += 1;
                }
            }
        }
        std::fs::remove_file(&copy).unwrap();
    }
    // The flips did land in all three outcomes' territory.
    assert!(
        errors + reported > 0 && whole > 0,
        "{errors} {reported} {whole}"
    );
}

/// A flipped bit in a conversation's lookup key (its row's primary key)
/// must not pass for "no conversation": the history would read as empty,
/// and the next message would begin a new conversation over the hidden
/// one. The row is found by its sealed record, which opens where the
/// conversation's key should be, and reported.
#[test]
fn a_damaged_conversation_key_is_reported_not_taken_for_no_conversation() {
    let mut p = pair();
    for i in 1..=3 {
        let m = p.alice_sends(&format!("message {i}"));
        deliver(&m, "alice", &mut p.bob);
    }
    let later = p.alice_sends("written after the damage");
    let path = p.bob_path();
    drop(p.bob);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let lookup: Vec<u8> = conn
            .query_row("SELECT lookup FROM conversations", [], |r| r.get(0))
            .unwrap();
        let mut bad = lookup.clone();
        bad[17] ^= 0x40;
        conn.execute(
            "UPDATE conversations SET lookup = ?1 WHERE lookup = ?2",
            rusqlite::params![bad, lookup],
        )
        .unwrap();
    }
    let mut bob = Store::open(&path, common::BOB_PASS, &common::options()).unwrap();
    assert!(matches!(
        bob.history("alice", None, 100),
        Err(Error::Corrupt {
            table: "conversations",
            ..
        })
    ));
    // Nor does a new message start a conversation over it.
    assert!(bob.receive(&common::envelope(&later, "alice")).is_err());
    assert!(!bob.check().unwrap().is_ok());
    // A contact that never had a conversation still has none, quietly.
    bob.add_contact("carol", "Carol", None).unwrap();
    assert!(bob.history("carol", None, 100).unwrap().entries.is_empty());
}
