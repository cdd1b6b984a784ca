//! Tampered, truncated, swapped or transplanted rows are reported as
//! `Corrupt` naming the row, and the rest of the store still reads.
#![cfg(test)]

mod common;

use common::{BOB_PASS, deliver, options};
use rusqlite::{Connection, params};
use sotto_store::{Error, Row, Store};

/// Bob with 5 messages from Alice and 2 from Carol; Bob is closed.
fn bob_with_history() -> (common::Pair, Store) {
    let mut p = common::pair();
    for i in 1..=5 {
        let m = p.alice_sends(&format!("alice {i}"));
        deliver(&m, "alice", &mut p.bob);
    }
    let mut carol = Store::create(p.dir.path().join("carol.db"), b"carol", &options()).unwrap();
    let bundle = p.bob.prekey_bundle(None).unwrap();
    carol.add_contact("bob", "Bob", None).unwrap();
    carol.start_session("bob", &bundle).unwrap();
    for i in 1..=2 {
        let m = carol
            .send("bob", format!("carol {i}").as_bytes(), 0)
            .unwrap();
        deliver(&m, "carol", &mut p.bob);
    }
    (p, carol)
}

fn raw(p: &common::Pair) -> Connection {
    Connection::open(p.bob_path()).unwrap()
}

use common::raw_messages::{conversation_with, put as set_sealed, sealed};

fn assert_corrupt_message(e: &Error, seq: u64) {
    assert!(
        matches!(e, Error::Corrupt { table: "messages", row: Row::Seq(s) } if *s == seq),
        "expected Corrupt for seq {seq}, got {e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!("corrupt or foreign value in table messages, row seq {seq}")
    );
}

#[test]
fn a_flipped_byte_names_the_row_and_the_others_still_read() {
    let (p, _carol) = bob_with_history();
    p.bob.checkpoint().unwrap();
    let path = p.bob_path();
    drop(p.bob);
    {
        let conn = Connection::open(&path).unwrap();
        let alice = conversation_with(&conn, 5);
        let mut value = sealed(&conn, &alice, 3);
        let mid = value.len() / 2;
        value[mid] ^= 0x01;
        set_sealed(&conn, &alice, 3, &value);
    }
    let bob = Store::open(&path, BOB_PASS, &options()).unwrap();
    let page = bob.history("alice", None, 10).unwrap();
    assert_eq!(page.entries.len(), 5);
    let failures: Vec<_> = page.failures().collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, 3);
    assert_corrupt_message(failures[0].1, 3);
    let ok: Vec<_> = page
        .messages()
        .map(|m| String::from_utf8(m.body.to_vec()).unwrap())
        .collect();
    assert_eq!(ok, ["alice 5", "alice 4", "alice 2", "alice 1"]);
    assert_corrupt_message(&bob.message("alice", 3).unwrap_err(), 3);
    assert_eq!(
        bob.history("carol", None, 10).unwrap().messages().count(),
        2
    );
}

#[test]
fn truncated_or_mistyped_rows_are_corrupt_too() {
    let (p, _carol) = bob_with_history();
    {
        let conn = raw(&p);
        let alice = conversation_with(&conn, 5);
        let value = sealed(&conn, &alice, 1);
        set_sealed(&conn, &alice, 1, &value[..value.len() - 1]);
        set_sealed(&conn, &alice, 2, &value[..10]);
        let part0 = common::raw_messages::span(common::raw_messages::num(&conn, &alice), 4).0;
        conn.execute("UPDATE messages SET sealed = 42 WHERE id = ?1", [part0])
            .unwrap();
    }
    let page = p.bob.history("alice", None, 10).unwrap();
    let failed: Vec<u64> = page.failures().map(|(seq, _)| seq).collect();
    assert_eq!(failed, [4, 2, 1]);
    for (seq, e) in page.failures() {
        assert_corrupt_message(e, seq);
    }
    assert_eq!(page.messages().count(), 2);
}

#[test]
fn a_sealed_value_copied_to_another_row_or_conversation_does_not_open() {
    let (mut p, mut carol) = bob_with_history();
    {
        let conn = raw(&p);
        let alice = conversation_with(&conn, 5);
        let carol_conv = conversation_with(&conn, 2);
        // Same conversation, another seq.
        let two = sealed(&conn, &alice, 2);
        set_sealed(&conn, &alice, 4, &two);
        // Another conversation, same seq.
        let carols_first = sealed(&conn, &carol_conv, 1);
        set_sealed(&conn, &alice, 1, &carols_first);
        // Another conversation, inserted as a new row.
        set_sealed(&conn, &alice, 99, &carols_first);
    }
    let page = p.bob.history("alice", None, 10).unwrap();
    let failed: Vec<u64> = page.failures().map(|(seq, _)| seq).collect();
    assert_eq!(failed, [99, 4, 1]);
    let ok: Vec<_> = page
        .messages()
        .map(|m| String::from_utf8(m.body.to_vec()).unwrap())
        .collect();
    assert_eq!(ok, ["alice 5", "alice 3", "alice 2"]);

    // The sessions are unaffected: both contacts can still talk to Bob.
    let m = p.alice_sends("still works");
    assert_eq!(deliver(&m, "alice", &mut p.bob), "still works");
    let m = carol.send("bob", b"me too", 0).unwrap();
    assert_eq!(deliver(&m, "carol", &mut p.bob), "me too");
}

#[test]
fn swapped_contact_rows_are_detected_and_the_others_still_list() {
    let (mut p, _carol) = bob_with_history();
    p.bob.add_contact("dave", "Dave", None).unwrap();
    {
        let conn = raw(&p);
        let rows: Vec<(Vec<u8>, Vec<u8>)> = conn
            .prepare("SELECT lookup, sealed FROM contacts")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows.len(), 3);
        // Swap the first two contacts' sealed values.
        conn.execute(
            "UPDATE contacts SET sealed = ?1 WHERE lookup = ?2",
            params![rows[1].1, rows[0].0],
        )
        .unwrap();
        conn.execute(
            "UPDATE contacts SET sealed = ?1 WHERE lookup = ?2",
            params![rows[0].1, rows[1].0],
        )
        .unwrap();
    }
    let listed = p.bob.contacts().unwrap();
    assert_eq!(listed.len(), 3);
    let corrupt = listed
        .iter()
        .filter(|c| {
            matches!(
                c,
                Err(Error::Corrupt {
                    table: "contacts",
                    row: Row::Lookup(_)
                })
            )
        })
        .count();
    assert_eq!(corrupt, 2);
    assert_eq!(listed.iter().filter(|c| c.is_ok()).count(), 1);
}

#[test]
fn a_session_moved_to_another_contact_does_not_open_and_receiving_changes_nothing() {
    let (mut p, mut carol) = bob_with_history();
    {
        let conn = raw(&p);
        let first: Vec<u8> = conn
            .query_row(
                "SELECT sealed FROM sessions ORDER BY contact LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        // Both rows now hold the first row's value: one of them is foreign.
        conn.execute("UPDATE sessions SET sealed = ?1", params![first])
            .unwrap();
    }
    let from_alice = p.alice_sends("after the swap");
    let from_carol = carol.send("bob", b"after the swap", 0).unwrap();
    let mut outcomes = Vec::new();
    for (m, sender) in [(&from_alice, "alice"), (&from_carol, "carol")] {
        let before = p.bob.message_count(sender).unwrap();
        let result = p.bob.receive(&common::envelope(m, sender));
        if result.is_err() {
            assert_eq!(p.bob.message_count(sender).unwrap(), before);
        }
        outcomes.push(result.map(|_| ()));
    }
    assert_eq!(
        outcomes.iter().filter(|r| r.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(outcomes.iter().any(|r| matches!(
        r,
        Err(Error::Corrupt {
            table: "sessions",
            row: Row::Lookup(_)
        })
    )));
}

#[test]
fn a_tampered_conversation_key_fails_that_conversation_only() {
    let (p, _carol) = bob_with_history();
    {
        let conn = raw(&p);
        let alice = conversation_with(&conn, 5);
        let mut value: Vec<u8> = conn
            .query_row(
                "SELECT sealed FROM conversations WHERE lookup = ?1",
                [&alice],
                |r| r.get(0),
            )
            .unwrap();
        value[40] ^= 0x80;
        conn.execute(
            "UPDATE conversations SET sealed = ?1 WHERE lookup = ?2",
            params![value, alice],
        )
        .unwrap();
    }
    assert!(matches!(
        p.bob.history("alice", None, 10),
        Err(Error::Corrupt {
            table: "conversations",
            ..
        })
    ));
    assert_eq!(
        p.bob.history("carol", None, 10).unwrap().messages().count(),
        2
    );
}

#[test]
fn a_corrupt_prekey_row_is_reported_as_corruption_not_as_an_unknown_prekey() {
    let mut p = common::pair();
    {
        let conn = raw(&p);
        // Damage every one-time prekey row (Alice's bundle named one of them).
        conn.execute(
            "UPDATE one_time_prekeys SET sealed = substr(sealed, 1, length(sealed) - 1)",
            [],
        )
        .unwrap();
    }
    let first = p.alice_sends("first");
    assert!(matches!(
        p.bob.receive(&common::envelope(&first, "alice")),
        Err(Error::Corrupt {
            table: "one_time_prekeys",
            row: Row::Lookup(_)
        })
    ));
    assert_eq!(p.bob.message_count("alice").unwrap(), 0);
    assert!(p.bob.contact("alice").unwrap().is_none());
}
