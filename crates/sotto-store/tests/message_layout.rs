//! The message layout of schema version 9 (docs/storage.md section 3,
//! "Message rows"): stores written with the clustered layout of versions 1
//! to 8 are converted when opened, every message readable and its sealed
//! value unchanged (still bound to its conversation and seq); new and
//! converted stores page, update, move and delete messages of every size.
#![cfg(test)]

mod common;

use std::path::Path;

use common::{options, raw_messages};
use rusqlite::Connection;
use sotto_store::{DeliveryState, Direction, Error, NewMessage, Row, Store};

/// Body sizes of the fixture and of the stores made here.
const SIZES: [usize; 10] = [0, 100, 256, 900, 1024, 2048, 4096, 8192, 16384, 65536];

fn body(size: usize, tag: u8) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8 ^ tag).collect()
}

fn message_rows(path: &Path) -> Vec<(Vec<u8>, i64, Vec<u8>)> {
    raw_messages::all(&Connection::open(path).unwrap())
}

fn version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT value FROM meta WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// `tests/fixtures/store-v7.db`: written by the library at schema version
/// 7, before this layout (commit aa75d1a), with passphrase "version 7":
/// contacts "alice" and "carol", each with [`SIZES`] imported in order
/// (even positions incoming, odd ones outgoing, all delivered; bodies
/// `body(size, 0)` for alice and `body(size, 0x5a)` for carol); alice's
/// seq 3 deleted, carol's seq 10 then marked read.
#[test]
fn a_version_7_store_written_by_the_previous_code_is_converted_and_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v7.db");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v7.db"),
        &path,
    )
    .unwrap();
    assert_eq!(version(&path), 7);

    let mut store = Store::open(&path, b"version 7", &options()).unwrap();
    assert_eq!(store.schema_version().unwrap(), sotto_store::SCHEMA_VERSION);
    let report = store.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.messages, 19);
    for (who, tag) in [("alice", 0u8), ("carol", 0x5a)] {
        let page = store.history(who, None, 100).unwrap();
        let expected: Vec<u64> = (1..=10)
            .rev()
            .filter(|&s| who != "alice" || s != 3)
            .collect();
        let seqs: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, expected, "{who}");
        for m in page.messages() {
            let i = (m.seq - 1) as usize;
            assert_eq!(m.body.as_slice(), body(SIZES[i], tag), "{who} {}", m.seq);
            let direction = if i.is_multiple_of(2) {
                Direction::Incoming
            } else {
                Direction::Outgoing
            };
            assert_eq!(m.direction, direction);
            let state = if who == "carol" && m.seq == 10 {
                DeliveryState::Read
            } else {
                DeliveryState::Delivered
            };
            assert_eq!(m.state, state);
            assert_eq!(m.timestamp, 1_700_000_000_000 + i as u64);
        }
    }

    // Sealed again with the 59-byte head (schema 10): each message is as
    // long as the same body written today, whatever its direction, so no
    // length tells sent from received.
    {
        let fresh_path = dir.path().join("fresh.db");
        let mut fresh = Store::create(&fresh_path, b"pw", &options()).unwrap();
        import_sizes(&mut fresh, "x", 0);
        drop(fresh);
        let fresh_len: std::collections::HashMap<i64, usize> = message_rows(&fresh_path)
            .into_iter()
            .map(|(_, seq, sealed)| (seq, sealed.len()))
            .collect();
        let rows = message_rows(&path);
        assert_eq!(rows.len(), 19);
        for (_, seq, sealed) in rows {
            assert_eq!(sealed.len(), fresh_len[&seq], "seq {seq}");
        }
    }

    // Every row is a part of at most 494 bytes, and the conversations
    // have distinct numbers.
    {
        let conn = Connection::open(&path).unwrap();
        let longest: i64 = conn
            .query_row("SELECT max(length(sealed)) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(longest, raw_messages::PART_LEN as i64);
        let nums: Vec<i64> = conn
            .prepare("SELECT num FROM conversations ORDER BY num")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(nums.len(), 2);
        assert!(nums[0] > 0 && nums[0] < nums[1]);
    }

    // The converted store keeps working: new messages, a state change, a
    // deletion.
    let big = body(50_000, 7);
    let range = store
        .import_messages(
            "alice",
            &[NewMessage {
                direction: Direction::Incoming,
                state: DeliveryState::Received,
                timestamp: 5,
                body: &big,
            }],
        )
        .unwrap();
    assert_eq!(range, 11..12);
    store
        .set_delivery_state("alice", 11, DeliveryState::Read)
        .unwrap();
    assert!(store.delete_message("carol", 9).unwrap());
    drop(store);
    let store = Store::open(&path, b"version 7", &options()).unwrap();
    let m = store.message("alice", 11).unwrap().unwrap();
    assert_eq!(
        (m.body.as_slice(), m.state),
        (big.as_slice(), DeliveryState::Read)
    );
    assert!(store.message("carol", 9).unwrap().is_none());
    let report = store.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.messages, 19);
}

/// Imports `SIZES` into `store`'s conversation with `who`, bodies
/// `body(size, tag)`, all incoming.
fn import_sizes(store: &mut Store, who: &str, tag: u8) {
    let bodies: Vec<Vec<u8>> = SIZES.iter().map(|&s| body(s, tag)).collect();
    let messages: Vec<NewMessage<'_>> = bodies
        .iter()
        .map(|b| NewMessage {
            direction: Direction::Incoming,
            state: DeliveryState::Received,
            timestamp: 1,
            body: b,
        })
        .collect();
    store.import_messages(who, &messages).unwrap();
}

/// A store with `SIZES` in two conversations, closed.
fn store_with_history(path: &Path) {
    let mut store = Store::create(path, b"pw", &options()).unwrap();
    for (who, tag) in [("alice", 1u8), ("bob", 2)] {
        import_sizes(&mut store, who, tag);
    }
    assert!(store.delete_message("bob", 2).unwrap());
    store.checkpoint().unwrap();
}

fn set_version(path: &Path, version: i64) {
    Connection::open(path)
        .unwrap()
        .execute(
            "UPDATE meta SET value = ?1 WHERE name = 'schema_version'",
            [version],
        )
        .unwrap();
}

#[test]
fn the_conversion_copies_every_sealed_value_unchanged_and_check_passes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    store_with_history(&path);
    let before = message_rows(&path);
    assert_eq!(before.len(), 19);
    common::to_clustered_message_layout(&path);
    set_version(&path, 8);

    let store = Store::open(&path, b"pw", &options()).unwrap();
    assert_eq!(store.schema_version().unwrap(), sotto_store::SCHEMA_VERSION);
    // The same bytes at the same (conversation, seq): not sealed again,
    // and they open there, so their binding to the row is intact.
    assert_eq!(message_rows(&path), before);
    let report = store.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.messages, 19);
    for (who, tag) in [("alice", 1u8), ("bob", 2)] {
        for (i, size) in SIZES.iter().enumerate() {
            let seq = i as u64 + 1;
            let m = store.message(who, seq).unwrap();
            if who == "bob" && seq == 2 {
                assert!(m.is_none());
            } else {
                assert_eq!(m.unwrap().body.as_slice(), body(*size, tag));
            }
        }
    }
}

#[test]
fn a_conversion_that_fails_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    store_with_history(&path);
    common::to_clustered_message_layout(&path);
    set_version(&path, 8);
    // A conversation whose next seq the layout cannot hold (2^28).
    Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE conversations SET next_seq = 268435457 WHERE lookup = \
             (SELECT min(lookup) FROM conversations)",
            [],
        )
        .unwrap();
    assert!(matches!(
        Store::open(&path, b"pw", &options()),
        Err(Error::LayoutLimit {
            what: "message seq",
            value: 268_435_456,
            max: 268_435_455,
        })
    ));
    // Rolled back: still version 8, still the clustered table.
    assert_eq!(version(&path), 8);
    let conn = Connection::open(&path).unwrap();
    let clustered: i64 = conn
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(clustered, 19);
    assert!(
        conn.prepare("SELECT conversation, seq FROM messages")
            .is_ok()
    );
}

#[test]
fn rows_no_message_can_be_stay_out_and_are_reported_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    store_with_history(&path);
    common::to_clustered_message_layout(&path);
    set_version(&path, 8);
    {
        let conn = Connection::open(&path).unwrap();
        // alice's seq 4 becomes a number (not a blob), a row appears at
        // seq 0, and one for a conversation that does not exist.
        let alice: Vec<u8> = conn
            .query_row(
                "SELECT conversation FROM messages GROUP BY conversation HAVING count(*) = 10",
                [],
                |r| r.get(0),
            )
            .unwrap();
        conn.execute(
            "UPDATE messages SET sealed = 42 WHERE conversation = ?1 AND seq = 4",
            [&alice],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO messages (conversation, seq, sealed) VALUES (?1, 0, x'01'), (?2, 1, x'02')",
            rusqlite::params![alice, vec![9u8; 32]],
        )
        .unwrap();
    }
    let store = Store::open(&path, b"pw", &options()).unwrap();
    let report = store.check().unwrap();
    assert_eq!(report.messages, 18);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(matches!(
        report.problems[0],
        Error::MissingRow {
            table: "messages",
            row: Row::Seq(4)
        }
    ));
    assert_eq!(store.history("alice", None, 100).unwrap().entries.len(), 10);
}

#[test]
fn pages_of_large_messages_come_whole_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    store_with_history(&path);
    let store = Store::open(&path, b"pw", &options()).unwrap();
    let mut before = None;
    let mut seqs = Vec::new();
    loop {
        let page = store.history("alice", before, 3).unwrap();
        for m in page.messages() {
            let i = (m.seq - 1) as usize;
            assert_eq!(m.body.as_slice(), body(SIZES[i], 1));
        }
        seqs.extend(page.entries.iter().map(|e| e.seq));
        match page.next_before {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert_eq!(seqs, (1..=10).rev().collect::<Vec<u64>>());
    assert_eq!(store.message_count("alice").unwrap(), 10);
    assert_eq!(store.message_count("bob").unwrap(), 9);
}

#[test]
fn a_part_moved_or_lost_makes_only_its_message_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    store_with_history(&path);
    {
        let conn = Connection::open(&path).unwrap();
        let alice = raw_messages::conversation_with(&conn, 10);
        let num = raw_messages::num(&conn, &alice);
        // seq 6 (2048 bytes: five parts) loses its middle part; seq 7's
        // second part is swapped with seq 8's.
        let (six, _) = raw_messages::span(num, 6);
        conn.execute("DELETE FROM messages WHERE id = ?1", [six + 2])
            .unwrap();
        let (seven, _) = raw_messages::span(num, 7);
        let (eight, _) = raw_messages::span(num, 8);
        let part = |id: i64| -> Vec<u8> {
            conn.query_row("SELECT sealed FROM messages WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap()
        };
        let (a, b) = (part(seven + 1), part(eight + 1));
        for (id, value) in [(seven + 1, b), (eight + 1, a)] {
            conn.execute(
                "UPDATE messages SET sealed = ?2 WHERE id = ?1",
                rusqlite::params![id, value],
            )
            .unwrap();
        }
    }
    let store = Store::open(&path, b"pw", &options()).unwrap();
    let page = store.history("alice", None, 100).unwrap();
    let failed: Vec<u64> = page.failures().map(|(seq, _)| seq).collect();
    assert_eq!(failed, [8, 7, 6]);
    assert!(page.failures().all(|(seq, e)| matches!(
        e,
        Error::Corrupt { table: "messages", row: Row::Seq(s) } if *s == seq
    )));
    assert_eq!(page.messages().count(), 7);
    assert_eq!(store.check().unwrap().problems.len(), 3);
}

#[test]
fn swapped_conversation_numbers_make_both_histories_unreadable_not_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    store_with_history(&path);
    {
        let conn = Connection::open(&path).unwrap();
        let rows: Vec<(Vec<u8>, i64)> = conn
            .prepare("SELECT lookup, num FROM conversations")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows.len(), 2);
        conn.execute_batch("DROP INDEX conversations_by_num")
            .unwrap();
        for (i, (lookup, _)) in rows.iter().enumerate() {
            conn.execute(
                "UPDATE conversations SET num = ?1 WHERE lookup = ?2",
                rusqlite::params![rows[1 - i].1, lookup],
            )
            .unwrap();
        }
    }
    let store = Store::open(&path, b"pw", &options()).unwrap();
    for who in ["alice", "bob"] {
        let page = store.history(who, None, 100).unwrap();
        assert_eq!(page.messages().count(), 0, "{who}");
        assert!(page.failures().count() >= 9);
    }
}
