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
/// build a file of an older version from a current one.
#[allow(dead_code)]
pub(crate) const SEEN_ENVELOPES_AS_IN_V7: &str = "
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
