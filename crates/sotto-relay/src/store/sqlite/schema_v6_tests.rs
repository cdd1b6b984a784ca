//! A genuine schema-6 database (the last before KEM prekeys, protocol 4),
//! made as the relay of that schema made it, opened by today's store: the
//! migration to schema 7 keeps everything and KEM prekeys then work.
//!
//! The DDL and the statements below are those of `store/sqlite.rs` at
//! schema 6 (the parent of commit d1dc033, "Relay protocol 4: a KEM prekey
//! directory in every store"), copied, not derived from today's code, so
//! that a change to today's schema cannot hide a gap in the migration.
#![cfg(test)]

use rusqlite::{Connection, TransactionBehavior, params};
use sotto_core::{
    AccessKey, IdentityKeyPair, KemPreKey, KemPreKeyId, OneTimePreKey, OneTimePreKeyId,
    ProtocolVersions, SignedPreKey, SignedPreKeyId,
};

use super::super::contract_tests::{OPEN, T0};
use super::super::unlinking::test_lists::signed_list;
use super::{SCHEMA_VERSION, SqliteOptions, SqliteStore};
use crate::address::MailboxAddress;
use crate::envelope::MessageId;
use crate::protocol::{PreKeyUpload, SignedPreKeyPublic};
use crate::store::{
    Access, MailboxStore, MailboxUsage, PreKeyCounts, PreKeyLimits, QueuePolicy, StoreError,
    StoreTotals,
};

/// `SCHEMA` of schema version 6, as that relay ran it on a new file.
const SCHEMA_V6: &str = "
CREATE TABLE IF NOT EXISTS envelopes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox      BLOB NOT NULL,
    message_id   BLOB NOT NULL,
    payload      BLOB NOT NULL,
    expiry_hour  INTEGER NOT NULL,
    body         INTEGER,
    UNIQUE (mailbox, message_id)
);
CREATE INDEX IF NOT EXISTS envelopes_by_mailbox ON envelopes (mailbox, id);
CREATE INDEX IF NOT EXISTS envelopes_by_expiry ON envelopes (expiry_hour, id);
CREATE INDEX IF NOT EXISTS envelopes_by_body ON envelopes (body) WHERE body IS NOT NULL;
CREATE TABLE IF NOT EXISTS bodies (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    data  BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS mailbox_usage (
    mailbox  BLOB PRIMARY KEY,
    count    INTEGER NOT NULL,
    bytes    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS totals (
    id     INTEGER PRIMARY KEY CHECK (id = 0),
    count  INTEGER NOT NULL,
    bytes  INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals (id, count, bytes) VALUES (0, 0, 0);
CREATE TABLE IF NOT EXISTS signed_prekeys (
    mailbox          BLOB PRIMARY KEY,
    identity_key     BLOB NOT NULL,
    prekey_id        INTEGER NOT NULL,
    public_key       BLOB NOT NULL,
    signature        BLOB NOT NULL,
    access_verifier  BLOB
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS one_time_prekeys (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox     BLOB NOT NULL,
    prekey_id   INTEGER NOT NULL,
    public_key  BLOB NOT NULL,
    UNIQUE (mailbox, prekey_id)
);
CREATE TABLE IF NOT EXISTS device_lists (
    mailbox  BLOB PRIMARY KEY,
    version  INTEGER NOT NULL,
    list     BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS listed_devices (
    device   BLOB NOT NULL,
    account  BLOB NOT NULL,
    PRIMARY KEY (device, account)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS listed_devices_by_account ON listed_devices (account);
";

/// The schema-6 relay's writes, each one transaction as its batches were.
struct V6(Connection);

impl V6 {
    /// Creates the file as `SqliteStore::open_with` of schema 6 did: WAL,
    /// `synchronous = FULL`, `secure_delete`, then the schema and its
    /// version in one `BEGIN IMMEDIATE` transaction.
    fn create(path: &std::path::Path) -> Self {
        let mut conn = Connection::open(path).unwrap();
        super::set_up(&conn).unwrap();
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .unwrap();
        assert!(mode.eq_ignore_ascii_case("wal"));
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn.pragma_update(None, "secure_delete", "ON").unwrap();
        conn.pragma_update(None, "temp_store", "MEMORY").unwrap();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        tx.execute_batch(SCHEMA_V6).unwrap();
        tx.pragma_update(None, "user_version", 6).unwrap();
        tx.commit().unwrap();
        Self(conn)
    }

    /// `publish_prekeys_in` of schema 6: signed prekey, verifier, one-time
    /// prekeys.
    fn publish(
        &mut self,
        owner: &IdentityKeyPair,
        spk: &SignedPreKey,
        verifier: Option<&[u8; 32]>,
        one_time: &[OneTimePreKey],
    ) {
        let mailbox = MailboxAddress::of(owner.public());
        let tx = self.0.transaction().unwrap();
        tx.execute(
            "INSERT INTO signed_prekeys (mailbox, identity_key, prekey_id, public_key, signature)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (mailbox) DO UPDATE SET identity_key = excluded.identity_key,
                 prekey_id = excluded.prekey_id, public_key = excluded.public_key,
                 signature = excluded.signature",
            params![
                mailbox.as_bytes(),
                owner.public().as_bytes(),
                spk.id().get(),
                spk.public().as_bytes(),
                spk.signature().as_bytes()
            ],
        )
        .unwrap();
        if let Some(verifier) = verifier {
            tx.execute(
                "UPDATE signed_prekeys SET access_verifier = ?2 WHERE mailbox = ?1",
                params![mailbox.as_bytes(), verifier],
            )
            .unwrap();
        }
        for key in one_time {
            tx.execute(
                "INSERT INTO one_time_prekeys (mailbox, prekey_id, public_key) VALUES (?1, ?2, ?3)
                 ON CONFLICT (mailbox, prekey_id) DO UPDATE SET public_key = excluded.public_key",
                params![mailbox.as_bytes(), key.id().get(), key.public().as_bytes()],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }

    /// `enqueue_in` of schema 6 for a new envelope: `payload`, with the
    /// shared body `body` (`id`, length, and whether this envelope stores
    /// it, being the first to hold it) for a `SendMulti`.
    fn enqueue(
        &mut self,
        to: &MailboxAddress,
        n: u8,
        payload: &[u8],
        body: Option<(i64, usize, bool)>,
    ) -> i64 {
        let expiry = i64::try_from(QueuePolicy::default().expiry_hour(T0)).unwrap();
        let body_len = body.map_or(0, |(_, len, _)| len);
        let stored_len = payload.len() + body.filter(|b| b.2).map_or(0, |b| b.1);
        let tx = self.0.transaction().unwrap();
        tx.execute(
            "INSERT INTO envelopes (mailbox, message_id, payload, expiry_hour, body)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![to.as_bytes(), [n; 16], payload, expiry, body.map(|b| b.0)],
        )
        .unwrap();
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO mailbox_usage (mailbox, count, bytes) VALUES (?1, 1, ?2)
             ON CONFLICT (mailbox) DO UPDATE SET count = count + 1, bytes = bytes + excluded.bytes",
            params![
                to.as_bytes(),
                i64::try_from(payload.len() + body_len).unwrap()
            ],
        )
        .unwrap();
        tx.execute(
            "UPDATE totals SET count = count + 1, bytes = bytes + ?1 WHERE id = 0",
            [i64::try_from(stored_len).unwrap()],
        )
        .unwrap();
        tx.commit().unwrap();
        id
    }

    /// A `SendMulti`'s body row (`SharedBody::id` of schema 6).
    fn body(&mut self, data: &[u8]) -> i64 {
        self.0
            .execute("INSERT INTO bodies (data) VALUES (?1)", [data])
            .unwrap();
        self.0.last_insert_rowid()
    }

    /// `publish_device_list_in` of schema 6, for a first list.
    fn device_list(&mut self, account: &MailboxAddress, version: u64, list: &[u8]) {
        let tx = self.0.transaction().unwrap();
        tx.execute(
            "INSERT OR REPLACE INTO device_lists (mailbox, version, list) VALUES (?1, ?2, ?3)",
            params![account.as_bytes(), i64::try_from(version).unwrap(), list],
        )
        .unwrap();
        let listed = super::NewDeviceList::compare(account, None, list).listed;
        for device in listed {
            tx.execute(
                "INSERT OR IGNORE INTO listed_devices (device, account) VALUES (?1, ?2)",
                params![device.as_bytes(), account.as_bytes()],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
}

/// A column as `pragma_table_info` describes it: name, type, not null,
/// default, place in the primary key.
type Column = (String, String, bool, Option<String>, i64);

/// Every table and index of a database, each table with its columns,
/// sorted by name.
fn schema_of(conn: &Connection) -> Vec<(String, Vec<Column>)> {
    let names: Vec<(String, String)> = conn
        .prepare(
            "SELECT type, name FROM sqlite_master
             WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    names
        .into_iter()
        .map(|(kind, name)| {
            let columns = if kind == "table" {
                conn.prepare(
                    "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1)",
                )
                .unwrap()
                .query_map([&name], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
            } else {
                Vec::new()
            };
            (name, columns)
        })
        .collect()
}

fn payloads(store: &SqliteStore, address: &MailboxAddress) -> Vec<(u64, Vec<u8>)> {
    store
        .fetch(address, 0, 100, usize::MAX, T0)
        .unwrap()
        .envelopes
        .into_iter()
        .map(|e| (e.id, e.payload))
        .collect()
}

fn user_version(store: &SqliteStore) -> i64 {
    store
        .lock()
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[test]
fn a_version_6_database_keeps_everything_and_takes_kem_prekeys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
    let identity = |seed: u8| IdentityKeyPair::from_seed(&[seed; 32]);
    let (alice, bob, carol, dave) = (identity(80), identity(81), identity(82), identity(83));
    let mailbox = |id: &IdentityKeyPair| MailboxAddress::of(id.public());
    let (alice_box, bob_box, carol_box, dave_box) = (
        mailbox(&alice),
        mailbox(&bob),
        mailbox(&carol),
        mailbox(&dave),
    );
    let alice_key = AccessKey::derive(&alice).unwrap();
    let mut spk =
        |id: &IdentityKeyPair| SignedPreKey::generate(SignedPreKeyId::new(4), id, &mut rng);
    let (alice_spk, bob_spk, carol_spk, dave_spk) =
        (spk(&alice), spk(&bob), spk(&carol), spk(&dave));
    let opks: Vec<OneTimePreKey> = (10..13)
        .map(|i| OneTimePreKey::generate(OneTimePreKeyId::new(i), &mut rng))
        .collect();
    let carol_list = signed_list(&carol, 1, &[&carol, &dave]);

    // What a schema-6 relay stored: Alice with an access verifier and
    // three one-time prekeys, Bob, Carol's account listing Dave; two single
    // envelopes for Alice and one `SendMulti` to Alice and Bob.
    {
        let mut v6 = V6::create(&path);
        v6.publish(
            &alice,
            &alice_spk,
            Some(alice_key.verifier().as_bytes()),
            &opks,
        );
        v6.publish(&bob, &bob_spk, None, &[]);
        v6.publish(&carol, &carol_spk, None, &[]);
        v6.publish(&dave, &dave_spk, None, &opks[..1]);
        v6.device_list(&carol_box, 1, &carol_list);
        v6.enqueue(&alice_box, 1, b"hello", None);
        v6.enqueue(&alice_box, 2, b"again", None);
        v6.enqueue(&dave_box, 1, b"dave", None);
        let body = v6.body(b"BODY");
        v6.enqueue(&alice_box, 3, b"a:", Some((body, 4, true)));
        v6.enqueue(&bob_box, 3, b"b:", Some((body, 4, false)));
        let version: i64 =
            v6.0.pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
        assert_eq!(version, 6);
    }

    let store = SqliteStore::open_with(&path, &SqliteOptions::default(), T0).unwrap();
    assert_eq!(user_version(&store), SCHEMA_VERSION);
    // The schema is today's, column for column, as on a new file.
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = SqliteStore::open(fresh_dir.path().join("relay.db")).unwrap();
    assert_eq!(
        schema_of(&store.lock().unwrap()),
        schema_of(&fresh.lock().unwrap())
    );
    {
        let conn = store.lock().unwrap();
        let v2_only: Vec<bool> = conn
            .prepare("SELECT v2_only FROM signed_prekeys")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(v2_only, [false; 4], "signed for both versions, as then");
    }

    // The queues, their counters and the shared body.
    assert_eq!(
        payloads(&store, &alice_box),
        [
            (1, b"hello".to_vec()),
            (2, b"again".to_vec()),
            (4, b"a:BODY".to_vec())
        ]
    );
    assert_eq!(payloads(&store, &bob_box), [(5, b"b:BODY".to_vec())]);
    assert_eq!(
        store.usage(&alice_box).unwrap(),
        MailboxUsage {
            envelopes: 3,
            bytes: 5 + 5 + 6,
            last_id: 4
        }
    );
    assert_eq!(
        store.totals().unwrap(),
        StoreTotals {
            envelopes: 5,
            bytes: 5 + 5 + 4 + 2 + 2 + 4
        }
    );
    // The access verifier.
    let policy = QueuePolicy::default();
    assert!(matches!(
        store.enqueue(&alice_box, &MessageId([9; 16]), b"x", OPEN, &policy, T0),
        Err(StoreError::AccessDenied)
    ));
    let with_key = Access::Key(Some(&alice_key));
    let new = store
        .enqueue(&alice_box, &MessageId([9; 16]), b"x", with_key, &policy, T0)
        .unwrap();
    assert!(!new.duplicate && new.id > 5, "ids go on increasing");
    // The one-time prekeys, oldest first, in v1 bundles (a v2 fetch too:
    // nobody has KEM prekeys yet).
    assert_eq!(store.kem_prekey_count(&alice_box).unwrap(), None);
    let taken = store.take_bundle(&alice_box).unwrap().unwrap();
    taken.bundle.verify().unwrap();
    assert_eq!(taken.bundle.one_time_prekey.map(|k| k.0.get()), Some(10));
    assert_eq!(taken.remaining, 2);
    let taken = store.take_bundle_v2(&alice_box).unwrap().unwrap();
    taken.bundle.verify().unwrap();
    assert_eq!(taken.bundle.version(), 1);
    assert_eq!(taken.bundle.one_time_prekey.map(|k| k.0.get()), Some(11));
    assert_eq!((taken.remaining, taken.kem_remaining), (1, None));
    // The device list, and whom it names: Carol's next list unlinks Dave.
    assert_eq!(store.device_list(&carol_box).unwrap(), Some(carol_list));
    assert_eq!(store.usage(&dave_box).unwrap().envelopes, 1);
    store
        .publish_device_list(&carol_box, 2, &signed_list(&carol, 2, &[&carol]))
        .unwrap();
    assert_eq!(store.usage(&dave_box).unwrap(), MailboxUsage::default());
    assert!(store.take_bundle(&dave_box).unwrap().is_none());

    // KEM prekeys, in the tables the migration made.
    let limits = PreKeyLimits {
        max_one_time: 100,
        max_kem: 100,
    };
    let kem: Vec<KemPreKey> = (1..=3)
        .map(|i| KemPreKey::generate(KemPreKeyId::new(i), &alice, &mut rng))
        .collect();
    let upload = PreKeyUpload::default()
        .with_last_resort_kem_prekey(&kem[0])
        .with_one_time_kem_prekeys(&kem[1..], false);
    assert_eq!(
        store
            .publish_prekeys_with_kem(alice.public(), &upload, &limits)
            .unwrap(),
        PreKeyCounts {
            one_time: 1,
            kem: Some(2)
        }
    );
    let taken = store.take_bundle_v2(&alice_box).unwrap().unwrap();
    taken.bundle.verify().unwrap();
    assert_eq!(taken.bundle.versions, ProtocolVersions::V1_AND_V2);
    assert_eq!(taken.bundle.kem_prekey.map(|k| k.id.get()), Some(2));
    assert_eq!((taken.remaining, taken.kem_remaining), (0, Some(1)));
    // A signed prekey for protocol v2 only, in the migrated column.
    let v2_spk = SignedPreKey::generate(SignedPreKeyId::new(5), &alice, &mut rng);
    let signed = SignedPreKeyPublic::new(
        v2_spk.id(),
        *v2_spk.public(),
        v2_spk.v2_only_signature(&alice),
    );
    let v2_only =
        PreKeyUpload::from_public(Some(signed), Vec::new()).with_signed_prekey_v2_only(true);
    store
        .publish_prekeys_with_kem(alice.public(), &v2_only, &limits)
        .unwrap();
    assert!(store.take_bundle(&alice_box).unwrap().is_none());
    let taken = store.take_bundle_v2(&alice_box).unwrap().unwrap();
    taken.bundle.verify().unwrap();
    assert_eq!(taken.bundle.versions, ProtocolVersions::V2_ONLY);
    assert_eq!(taken.bundle.kem_prekey.map(|k| k.id.get()), Some(3));

    // The shared body goes with its last holder.
    assert_eq!(store.ack(&alice_box, &[4]).unwrap(), 1);
    assert_eq!(payloads(&store, &bob_box), [(5, b"b:BODY".to_vec())]);
    assert_eq!(store.ack(&bob_box, &[5]).unwrap(), 1);
    let bodies: i64 = store
        .lock()
        .unwrap()
        .query_row("SELECT COUNT(*) FROM bodies", [], |r| r.get(0))
        .unwrap();
    assert_eq!(bodies, 0);

    // Opened again: nothing is migrated twice, everything stays.
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(user_version(&store), SCHEMA_VERSION);
    assert_eq!(store.kem_prekey_count(&alice_box).unwrap(), Some(0));
    assert_eq!(
        payloads(&store, &alice_box)
            .into_iter()
            .map(|(id, _)| id)
            .collect::<Vec<_>>(),
        [1, 2, new.id]
    );
    let taken = store.take_bundle_v2(&alice_box).unwrap().unwrap();
    assert_eq!(taken.bundle.versions, ProtocolVersions::V2_ONLY);
    assert_eq!(taken.bundle.kem_prekey.map(|k| k.id.get()), Some(1));
}
