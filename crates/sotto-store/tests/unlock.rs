//! Unlocking: wrong secrets, schema versions, files that are not stores.
#![cfg(test)]

mod common;

use common::{ALICE_PASS, files, options, read, sha256_hex};
use rusqlite::Connection;
use sotto_store::{Error, KdfParams, OpenOptions, SCHEMA_VERSION, Store, UnlockMethod};

fn hashes(path: &std::path::Path) -> Vec<String> {
    files(path).iter().map(|f| sha256_hex(&read(f))).collect()
}

#[test]
fn wrong_passphrase_is_an_error_and_leaves_the_file_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let mut store = Store::create(&path, ALICE_PASS, &options()).unwrap();
    store.add_contact("carol", "Carol", None).unwrap();
    drop(store);
    let before = hashes(&path);
    for wrong in [&b"wrong"[..], b"", b"correct horse battery stapl"] {
        assert!(matches!(
            Store::open(&path, wrong, &options()),
            Err(Error::WrongPassphrase)
        ));
    }
    assert!(matches!(
        Store::open_with_key(&path, &[1; 32], &options()),
        Err(Error::WrongUnlockMethod {
            expected: UnlockMethod::Passphrase
        })
    ));
    assert_eq!(hashes(&path), before);
    let store = Store::open(&path, ALICE_PASS, &options()).unwrap();
    assert_eq!(store.contact("carol").unwrap().unwrap().name, "Carol");
}

#[test]
fn parameters_come_from_the_file_not_the_options() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let created = OpenOptions::new().kdf(KdfParams::new(128, 2, 1).unwrap());
    drop(Store::create(&path, b"pw", &created).unwrap());
    // Opening with other (default, heavy) parameters still works: they
    // only apply to create and change_passphrase.
    let other = OpenOptions::new().kdf(KdfParams::new(8, 1, 1).unwrap());
    Store::open(&path, b"pw", &other).unwrap();
}

#[test]
fn change_passphrase_rewraps_without_touching_history() {
    let mut p = common::pair();
    let m = p.alice_sends("before the change");
    common::deliver(&m, "alice", &mut p.bob);
    let path = p.bob_path();
    let count_before: i64 = raw(&path)
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    let sealed_before: Vec<u8> = raw(&path)
        .query_row("SELECT sealed FROM messages", [], |r| r.get(0))
        .unwrap();
    p.bob
        .change_passphrase(b"new passphrase", KdfParams::new(64, 1, 1).unwrap())
        .unwrap();
    drop(p.bob);
    let sealed_after: Vec<u8> = raw(&path)
        .query_row("SELECT sealed FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sealed_before, sealed_after, "history is not re-encrypted");
    assert!(matches!(
        Store::open(&path, common::BOB_PASS, &options()),
        Err(Error::WrongPassphrase)
    ));
    let bob = Store::open(&path, b"new passphrase", &options()).unwrap();
    assert_eq!(bob.message_count("alice").unwrap() as i64, count_before);
    let page = bob.history("alice", None, 10).unwrap();
    assert_eq!(
        page.messages().next().unwrap().body.as_slice(),
        b"before the change"
    );
}

fn raw(path: &std::path::Path) -> Connection {
    Connection::open(path).unwrap()
}

#[test]
fn newer_schema_is_refused_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    drop(Store::create(&path, b"pw", &options()).unwrap());
    {
        let conn = raw(&path);
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'schema_version'",
            [i64::from(SCHEMA_VERSION) + 1],
        )
        .unwrap();
    }
    let before = hashes(&path);
    match Store::open(&path, b"pw", &options()) {
        Err(Error::SchemaTooNew { found, supported }) => {
            assert_eq!(found, SCHEMA_VERSION + 1);
            assert_eq!(supported, SCHEMA_VERSION);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert_eq!(hashes(&path), before);
}

#[test]
fn a_version_without_migration_path_is_schema_too_old() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    drop(Store::create(&path, b"pw", &options()).unwrap());
    raw(&path)
        .execute(
            "UPDATE meta SET value = 0 WHERE name = 'schema_version'",
            [],
        )
        .unwrap();
    assert!(matches!(
        Store::open(&path, b"pw", &options()),
        Err(Error::SchemaTooOld { found: 0, .. })
    ));
}

#[test]
fn files_that_are_not_stores_are_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    assert!(matches!(
        Store::open(&missing, b"pw", &options()),
        Err(Error::NotFound)
    ));
    assert!(!missing.exists(), "open never creates a file");

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0xA5u8; 8192]).unwrap();
    assert!(matches!(
        Store::open(&garbage, b"pw", &options()),
        Err(Error::NotAStore)
    ));
    assert!(matches!(
        Store::create(&garbage, b"pw", &options()),
        Err(Error::NotAStore)
    ));

    let other_app = dir.path().join("other.db");
    raw(&other_app)
        .execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('x');")
        .unwrap();
    let before = hashes(&other_app);
    assert!(matches!(
        Store::open(&other_app, b"pw", &options()),
        Err(Error::NotAStore)
    ));
    assert!(matches!(
        Store::create(&other_app, b"pw", &options()),
        Err(Error::AlreadyExists)
    ));
    assert_eq!(hashes(&other_app), before);

    let existing = dir.path().join("s.db");
    drop(Store::create(&existing, b"pw", &options()).unwrap());
    assert!(matches!(
        Store::create(&existing, b"other", &options()),
        Err(Error::AlreadyExists)
    ));
    Store::open(&existing, b"pw", &options()).unwrap();
}

#[test]
fn kdf_parameters_are_validated() {
    assert!(KdfParams::new(4, 1, 1).is_err());
    assert!(KdfParams::new(64, 0, 1).is_err());
    assert!(KdfParams::new(64, 1, 0).is_err());
    assert!(KdfParams::new(8, 1, 2).is_err());
    let d = KdfParams::default();
    assert_eq!(
        (d.memory_kib(), d.iterations(), d.parallelism()),
        (65536, 3, 1)
    );
}

#[test]
fn default_parameters_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    drop(Store::create(&path, b"pw", &OpenOptions::new()).unwrap());
    Store::open(&path, b"pw", &OpenOptions::new()).unwrap();
    let kdf: Vec<u8> = raw(&path)
        .query_row("SELECT value FROM meta WHERE name = 'kdf'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(&kdf[18..30], &[0, 1, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1]);
}
