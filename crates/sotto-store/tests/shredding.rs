//! Deleting a conversation deletes its key: its rows are gone, and rows
//! taken from a copy of the file made before the deletion cannot be opened
//! with the store's keys any more (crypto-shredding).
#![cfg(test)]

mod common;

use std::path::Path;

use common::{deliver, files, options, read};
use rusqlite::Connection;
use sotto_store::{Error, Store};

type MessageRow = (Vec<u8>, i64, Vec<u8>);

fn message_rows(path: &Path) -> Vec<MessageRow> {
    common::raw_messages::all(&Connection::open(path).unwrap())
}

fn count(path: &Path, sql: &str) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

/// True if any 32-byte fragment of `value` is in the file or its WAL.
fn any_fragment_on_disk(path: &Path, value: &[u8]) -> bool {
    let disk: Vec<Vec<u8>> = files(path).iter().map(|f| read(f)).collect();
    value.chunks_exact(32).any(|fragment| {
        disk.iter()
            .any(|bytes| bytes.windows(32).any(|w| w == fragment))
    })
}

#[test]
fn deleted_conversation_rows_and_key_are_gone_and_old_rows_no_longer_open() {
    let mut p = common::pair();
    for i in 1..=5 {
        let m = p.alice_sends(&format!("secret {i}"));
        deliver(&m, "alice", &mut p.bob);
    }
    p.bob_sends("a reply still in the outbox");
    let path = p.bob_path();
    // A copy of the file taken before the deletion (a backup, a stolen image).
    p.bob.checkpoint().unwrap();
    let old_copy = p.dir.path().join("old-copy.db");
    std::fs::copy(&path, &old_copy).unwrap();
    let old_rows = message_rows(&old_copy);
    assert_eq!(old_rows.len(), 6);
    let old_conversation: Vec<u8> = Connection::open(&old_copy)
        .unwrap()
        .query_row("SELECT sealed FROM conversations", [], |r| r.get(0))
        .unwrap();

    assert!(p.bob.delete_conversation("alice").unwrap());
    assert!(!p.bob.delete_conversation("alice").unwrap());

    // The rows and the key are gone from the live store...
    assert_eq!(count(&path, "SELECT count(*) FROM messages"), 0);
    assert_eq!(count(&path, "SELECT count(*) FROM conversations"), 0);
    assert_eq!(count(&path, "SELECT count(*) FROM outbox"), 0);
    assert_eq!(p.bob.message_count("alice").unwrap(), 0);
    assert!(p.bob.history("alice", None, 10).unwrap().entries.is_empty());
    // ... and so are their bytes: overwritten in the file (secure_delete),
    // not lingering in the WAL (checkpointed and truncated).
    assert!(
        !any_fragment_on_disk(&path, &old_conversation),
        "wrapped key on disk"
    );
    for (_, seq, sealed) in &old_rows {
        assert!(!any_fragment_on_disk(&path, sealed), "row {seq} on disk");
    }

    // The contact and the session survive; a new message starts a new
    // conversation under a new key.
    let m = p.alice_sends("after the deletion");
    assert_eq!(deliver(&m, "alice", &mut p.bob), "after the deletion");
    let new_conversation: Vec<u8> = Connection::open(&path)
        .unwrap()
        .query_row("SELECT lookup FROM conversations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(new_conversation, old_rows[0].0, "same lookup key, new key");

    // Shredding: put the old copy's rows back into the live file, at the
    // same conversation and seq (so the associated data matches). With
    // the database key intact but the old conversation key gone, none of
    // them opens.
    {
        let conn = Connection::open(&path).unwrap();
        for (conversation, seq, sealed) in &old_rows {
            common::raw_messages::put_if_absent(&conn, conversation, *seq, sealed);
        }
    }
    let page = p.bob.history("alice", None, 10).unwrap();
    assert_eq!(page.entries.len(), 6);
    let readable: Vec<_> = page
        .messages()
        .map(|m| String::from_utf8(m.body.to_vec()).unwrap())
        .collect();
    assert_eq!(readable, ["after the deletion"]);
    let shredded: Vec<u64> = page.failures().map(|(seq, _)| seq).collect();
    assert_eq!(shredded, [6, 5, 4, 3, 2]);
    assert!(page.failures().all(|(_, e)| matches!(
        e,
        Error::Corrupt {
            table: "messages",
            ..
        }
    )));
}

#[test]
fn a_deleted_message_leaves_no_bytes_in_the_file_or_wal() {
    let mut p = common::pair();
    let sent: Vec<_> = (1..=4).map(|i| p.alice_sends(&format!("m{i}"))).collect();
    for m in &sent {
        deliver(m, "alice", &mut p.bob);
    }
    let path = p.bob_path();
    let rows = message_rows(&path);
    let (_, seq, sealed) = rows[1].clone();
    assert!(
        any_fragment_on_disk(&path, &sealed),
        "the scanner finds live rows"
    );
    assert!(p.bob.delete_message("alice", seq as u64).unwrap());
    assert!(!any_fragment_on_disk(&path, &sealed));
    assert_eq!(p.bob.message_count("alice").unwrap(), 3);
}

#[test]
fn with_an_app_key_rotated_after_deletion_an_old_copy_cannot_be_opened() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = common::pair();
    let path = dir.path().join("bob-keychain.db");
    let old_key = [0x11u8; 32];
    let new_key = [0x22u8; 32];
    // Bob's profile is locked by a key from the OS keychain.
    let mut bob = Store::create_with_key(&path, &old_key, &options()).unwrap();
    let otk = bob.fresh_one_time_prekeys(1, 1_700_000_000_000).unwrap();
    p.alice.add_contact("bob2", "Bob", None).unwrap();
    p.alice
        .start_session("bob2", &bob.prekey_bundle(Some(otk[0].0)).unwrap())
        .unwrap();
    let m = p.alice.send("bob2", b"to be shredded", 0).unwrap();
    deliver(&m, "alice", &mut bob);
    bob.checkpoint().unwrap();
    let old_copy = dir.path().join("old-copy.db");
    std::fs::copy(&path, &old_copy).unwrap();

    bob.delete_conversation("alice").unwrap();
    // Rotating the key after a deletion, and destroying the old one in the
    // keychain, makes every earlier copy of the file unreadable.
    bob.change_key(&new_key).unwrap();
    drop(bob);
    assert!(matches!(
        Store::open_with_key(&old_copy, &new_key, &options()),
        Err(Error::WrongKey)
    ));
    let bob = Store::open_with_key(&path, &new_key, &options()).unwrap();
    assert_eq!(bob.message_count("alice").unwrap(), 0);
    assert!(bob.has_session("alice").unwrap());
}
