//! Shared setup: two stores (Alice and Bob) that talk through sotto-core.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sotto_store::{Contact, Envelope, KdfParams, OpenOptions, OutboxEntry, Received, Store};
use tempfile::TempDir;

pub(crate) const ALICE_PASS: &[u8] = b"correct horse battery staple";
pub(crate) const BOB_PASS: &[u8] = b"bob's long passphrase";
pub(crate) const T0: u64 = 1_700_000_000_000;

/// Light Argon2id parameters so tests run fast.
/// SQL that turns a current file's seen-envelope tables back into those of
/// schema version 7 (one table of every id ever seen), for the tests that
/// build a file of an older version from a current one; the tables of
/// version 11 go too.
#[allow(dead_code)]
pub(crate) const SEEN_ENVELOPES_AS_IN_V7: &str = "
    DROP TABLE IF EXISTS expiring;
    DROP TABLE IF EXISTS downloads;
    DROP TABLE IF EXISTS uploads;
    CREATE TABLE seen_v7 (lookup BLOB PRIMARY KEY NOT NULL) WITHOUT ROWID;
    INSERT OR IGNORE INTO seen_v7 (lookup) SELECT lookup FROM seen_envelopes;
    INSERT OR IGNORE INTO seen_v7 (lookup) SELECT lookup FROM seen_archive;
    DROP TABLE seen_envelopes;
    DROP TABLE seen_archive;
    ALTER TABLE seen_v7 RENAME TO seen_envelopes;
";

pub(crate) fn options() -> OpenOptions {
    OpenOptions::new().kdf(KdfParams::new(64, 1, 1).unwrap())
}

pub(crate) struct Pair {
    pub(crate) dir: TempDir,
    pub(crate) alice: Store,
    pub(crate) bob: Store,
}

impl Pair {
    pub(crate) fn alice_path(&self) -> PathBuf {
        self.dir.path().join("alice.db")
    }

    pub(crate) fn bob_path(&self) -> PathBuf {
        self.dir.path().join("bob.db")
    }

    /// Alice sends `text` to Bob (committed, not yet delivered).
    pub(crate) fn alice_sends(&mut self, text: &str) -> OutboxEntry {
        self.alice.send("bob", text.as_bytes(), T0).unwrap()
    }

    /// Bob sends `text` to Alice.
    pub(crate) fn bob_sends(&mut self, text: &str) -> OutboxEntry {
        self.bob.send("alice", text.as_bytes(), T0).unwrap()
    }
}

/// Alice and Bob, each with a store; Bob published 5 one-time prekeys and
/// Alice started a session from his bundle. Bob's contact for Alice is
/// created by her first message.
pub(crate) fn pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let mut alice = Store::create(dir.path().join("alice.db"), ALICE_PASS, &options()).unwrap();
    let mut bob = Store::create(dir.path().join("bob.db"), BOB_PASS, &options()).unwrap();
    let published = bob.fresh_one_time_prekeys(5, T0).unwrap();
    let bundle = bob.prekey_bundle(Some(published[0].0)).unwrap();
    alice.add_contact("bob", "Bob", None).unwrap();
    alice.start_session("bob", &bundle).unwrap();
    Pair { dir, alice, bob }
}

pub(crate) fn envelope<'a>(entry: &'a OutboxEntry, sender: &'a str) -> Envelope<'a> {
    Envelope {
        id: entry.id,
        sender,
        device: sotto_store::PeerDevice::CONTACT_PRIMARY,
        ciphertext: &entry.ciphertext,
        sent_at: 0,
        received_at: T0 + 1,
    }
}

/// Delivers `entry` from `sender` to `to` and returns the stored body.
pub(crate) fn deliver(entry: &OutboxEntry, sender: &str, to: &mut Store) -> String {
    match to.receive(&envelope(entry, sender)).unwrap() {
        Received::Stored(m) => String::from_utf8(m.body.to_vec()).unwrap(),
        other => panic!("expected a stored message, got {other:?}"),
    }
}

pub(crate) fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// The database file and its -wal and -shm companions.
pub(crate) fn files(path: &Path) -> Vec<PathBuf> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    vec![path.to_path_buf(), wal.into(), shm.into()]
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Every contact of `store`, each readable, ordered by id.
pub(crate) fn sorted_contacts(store: &Store) -> Vec<Contact> {
    let mut contacts: Vec<Contact> = store
        .contacts()
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    contacts.sort_by(|a, b| a.id.cmp(&b.id));
    contacts
}

/// Message rows as the store lays them out (docs/storage.md section 3,
/// "Message rows"), for tests that damage or rearrange the file: row id
/// = conversation number (19 bits) || seq (28 bits) || part (16 bits),
/// each part at most 494 bytes of the sealed value.
pub(crate) mod raw_messages {
    use rusqlite::{Connection, OptionalExtension, params};

    pub(crate) const PART_LEN: usize = 494;

    pub(crate) fn id(num: i64, seq: i64, part: i64) -> i64 {
        (num << 44) | (seq << 16) | part
    }

    /// The ids of message `seq`'s rows.
    pub(crate) fn span(num: i64, seq: i64) -> (i64, i64) {
        (id(num, seq, 0), id(num, seq + 1, 0))
    }

    /// The number of the conversation `lookup`.
    pub(crate) fn num(conn: &Connection, lookup: &[u8]) -> i64 {
        conn.query_row(
            "SELECT num FROM conversations WHERE lookup = ?1",
            [lookup],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// Every message: (conversation lookup, seq, sealed value), by seq.
    pub(crate) fn all(conn: &Connection) -> Vec<(Vec<u8>, i64, Vec<u8>)> {
        let mut out: Vec<(Vec<u8>, i64, Vec<u8>)> = Vec::new();
        let mut stmt = conn
            .prepare(
                "SELECT c.lookup, m.id, m.sealed FROM messages m \
                 JOIN conversations c ON c.num = (m.id >> 44) ORDER BY m.id",
            )
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .unwrap();
        for row in rows {
            let (lookup, id, part) = row.unwrap();
            let seq = (id >> 16) & ((1 << 28) - 1);
            match out.last_mut() {
                Some(last) if last.0 == lookup && last.1 == seq => last.2.extend(part),
                _ => out.push((lookup, seq, part)),
            }
        }
        out.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        out
    }

    /// Message `seq` of the conversation `lookup`, its parts put together.
    pub(crate) fn sealed(conn: &Connection, lookup: &[u8], seq: i64) -> Vec<u8> {
        all(conn)
            .into_iter()
            .find(|m| m.0 == lookup && m.1 == seq)
            .map(|m| m.2)
            .unwrap()
    }

    /// Replaces message `seq`'s rows with `value` cut into parts (the
    /// message need not exist).
    pub(crate) fn put(conn: &Connection, lookup: &[u8], seq: i64, value: &[u8]) {
        delete(conn, lookup, seq);
        let start = span(num(conn, lookup), seq).0;
        let parts: Vec<&[u8]> = if value.is_empty() {
            vec![value]
        } else {
            value.chunks(PART_LEN).collect()
        };
        for (i, part) in parts.into_iter().enumerate() {
            conn.execute(
                "INSERT INTO messages (id, sealed) VALUES (?1, ?2)",
                params![start + i as i64, part],
            )
            .unwrap();
        }
    }

    /// As [`put`], unless the message is there.
    pub(crate) fn put_if_absent(conn: &Connection, lookup: &[u8], seq: i64, value: &[u8]) {
        let start = span(num(conn, lookup), seq).0;
        let present: Option<i64> = conn
            .query_row("SELECT id FROM messages WHERE id = ?1", [start], |r| {
                r.get(0)
            })
            .optional()
            .unwrap();
        if present.is_none() {
            put(conn, lookup, seq, value);
        }
    }

    /// Deletes message `seq`'s rows; returns how many there were.
    pub(crate) fn delete(conn: &Connection, lookup: &[u8], seq: i64) -> usize {
        let (start, end) = span(num(conn, lookup), seq);
        conn.execute(
            "DELETE FROM messages WHERE id >= ?1 AND id < ?2",
            [start, end],
        )
        .unwrap()
    }

    /// The lookup of the only conversation with `n` messages.
    pub(crate) fn conversation_with(conn: &Connection, n: usize) -> Vec<u8> {
        let all = all(conn);
        let mut lookups: Vec<Vec<u8>> = all.iter().map(|m| m.0.clone()).collect();
        lookups.sort();
        lookups.dedup();
        let with: Vec<Vec<u8>> = lookups
            .into_iter()
            .filter(|l| all.iter().filter(|m| &m.0 == l).count() == n)
            .collect();
        assert_eq!(with.len(), 1, "one conversation with {n} messages");
        with.into_iter().next().unwrap()
    }

    /// The lookup of the only conversation.
    pub(crate) fn only_conversation(conn: &Connection) -> Vec<u8> {
        conn.query_row("SELECT lookup FROM conversations", [], |r| r.get(0))
            .unwrap()
    }
}

/// Turns a closed store file back into the message layout of schema
/// versions 1 to 8 (and drops the tables of version 11) (one clustered row per message, keyed by the
/// conversation's lookup and the seq; no conversation numbers), as
/// those versions wrote it: the sealed values are the same bytes. The
/// caller sets `schema_version`.
pub(crate) fn to_clustered_message_layout(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let messages = raw_messages::all(&conn);
    conn.execute_batch(
        "DROP TABLE IF EXISTS expiring;
         DROP TABLE IF EXISTS downloads;
         DROP TABLE IF EXISTS uploads;
         DROP TABLE messages;
         CREATE TABLE messages (
             conversation BLOB NOT NULL,
             seq          INTEGER NOT NULL,
             sealed       BLOB NOT NULL,
             PRIMARY KEY (conversation, seq)
         ) WITHOUT ROWID;
         DROP INDEX conversations_by_num;
         ALTER TABLE conversations DROP COLUMN num;",
    )
    .unwrap();
    for (conversation, seq, sealed) in messages {
        conn.execute(
            "INSERT INTO messages (conversation, seq, sealed) VALUES (?1, ?2, ?3)",
            rusqlite::params![conversation, seq, sealed],
        )
        .unwrap();
    }
}
