#![cfg(test)]
//! Seen envelope ids (docs/storage.md, "Seen envelope ids"): the recent set
//! stays small however many envelopes arrive, and an envelope stored once
//! is a duplicate whenever a copy of it comes back, also long after its
//! id left the recent set, and after an upgrade from schema version 7.

mod common;

use common::{BOB_PASS, SEEN_ENVELOPES_AS_IN_V7, envelope, options, pair};
use sotto_store::{OutboxEntry, Received, Store};

/// More than three generations of the recent set (4 096 ids each, looked
/// at every 1 024): the first envelopes' ids are in the archive by the end.
const MANY: usize = 14_000;

fn count(path: &std::path::Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Alice sends `n` messages; Bob receives them in batches of 1 000.
fn send_and_receive(p: &mut common::Pair, n: usize) -> Vec<OutboxEntry> {
    let sent: Vec<OutboxEntry> = (0..n)
        .map(|i| p.alice_sends(&format!("message {i}")))
        .collect();
    for chunk in sent.chunks(1000) {
        let envelopes: Vec<_> = chunk.iter().map(|e| envelope(e, "alice")).collect();
        for r in p.bob.receive_batch(&envelopes).unwrap() {
            assert!(matches!(r, Ok(Received::Stored(_))), "{r:?}");
        }
    }
    sent
}

#[test]
fn every_copy_is_a_duplicate_after_its_id_left_the_recent_set() {
    let mut p = pair();
    let sent = send_and_receive(&mut p, MANY);
    let path = p.bob_path();

    // The recent set is bounded; the rest went to the archive, nothing was
    // dropped.
    let recent = count(&path, "SELECT count(*) FROM seen_envelopes");
    let archived = count(&path, "SELECT count(DISTINCT lookup) FROM seen_archive");
    assert!(recent <= 2 * 4096 + 1024 + 1000, "{recent} recent ids");
    assert!(archived >= 4096, "{archived} archived ids");
    assert_eq!(recent + archived, MANY as i64);

    // A copy of every envelope, the oldest (long in the archive) and those
    // that just moved there included, is a duplicate and changes nothing:
    // one by one, and in a batch.
    let before = p.bob.message_count("alice").unwrap();
    for entry in sent.iter().step_by(7).chain(sent.last()) {
        assert!(
            matches!(
                p.bob.receive(&envelope(entry, "alice")).unwrap(),
                Received::Duplicate
            ),
            "a copy was not recognised"
        );
    }
    for chunk in sent.chunks(2000) {
        let envelopes: Vec<_> = chunk.iter().map(|e| envelope(e, "alice")).collect();
        for r in p.bob.receive_batch(&envelopes).unwrap() {
            assert!(matches!(r, Ok(Received::Duplicate)), "{r:?}");
        }
    }
    assert_eq!(p.bob.message_count("alice").unwrap(), before);
    assert_eq!(
        count(&path, "SELECT count(*) FROM seen_envelopes"),
        recent,
        "a duplicate records nothing"
    );

    // New messages are still stored.
    let more = p.alice_sends("after the copies");
    assert_eq!(
        common::deliver(&more, "alice", &mut p.bob),
        "after the copies"
    );
}

#[test]
fn the_archive_stays_in_few_runs() {
    let mut p = pair();
    send_and_receive(&mut p, MANY);
    let path = p.bob_path();
    let runs = count(&path, "SELECT count(DISTINCT run) FROM seen_archive");
    // Generations of 4 096 moved as one run each, merged 16 at a time.
    assert!((1..16).contains(&runs), "{runs} runs");
}

#[test]
fn a_version_7_store_keeps_every_seen_id_after_the_upgrade() {
    let mut p = pair();
    let sent = send_and_receive(&mut p, 50);
    let path = p.bob_path();
    drop(p.bob);
    {
        // The file as version 7 wrote it: one table of every id ever seen.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(SEEN_ENVELOPES_AS_IN_V7).unwrap();
        conn.execute_batch("UPDATE meta SET value = 7 WHERE name = 'schema_version';")
            .unwrap();
        let columns: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('seen_envelopes')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(columns, 1);
    }
    // And its messages as version 7 laid them out.
    common::to_clustered_message_layout(&path);
    let mut bob = Store::open(&path, BOB_PASS, &options()).unwrap();
    assert_eq!(bob.schema_version().unwrap(), sotto_store::SCHEMA_VERSION);
    assert_eq!(count(&path, "SELECT count(*) FROM seen_envelopes"), 0);
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM seen_archive WHERE run = 8589934592"
        ),
        50
    );
    for entry in &sent {
        assert!(matches!(
            bob.receive(&envelope(entry, "alice")).unwrap(),
            Received::Duplicate
        ));
    }
    let next = p
        .alice
        .send("bob", b"after the upgrade", common::T0)
        .unwrap();
    assert_eq!(
        common::deliver(&next, "alice", &mut bob),
        "after the upgrade"
    );
    assert!(matches!(
        bob.receive(&envelope(&next, "alice")).unwrap(),
        Received::Duplicate
    ));
    assert_eq!(count(&path, "SELECT count(*) FROM seen_envelopes"), 1);
}
