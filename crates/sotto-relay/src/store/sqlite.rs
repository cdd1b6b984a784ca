//! SQLite backend: the relay's default, durable storage.

mod group_commit;
mod readers;
#[cfg(test)]
mod schema_v6_tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use sotto_core::{
    AccessVerifier, IdentityKey, KemPreKeyId, KemPublic, OneTimePreKeyId, PreKeyBundle,
    PreKeyPublic, Signature, SignedKemPreKey, SignedPreKeyId,
};

use super::unlinking::NewDeviceList;
use super::{
    Access, DEFAULT_ENVELOPE_TTL, EnqueueRequest, Enqueued, FetchedPage, MailboxStore,
    MailboxUsage, OwnedAccess, PreKeyCounts, PreKeyLimits, QueuePolicy, StoreError, StoreFuture,
    StoreTotals, Swept, TakenBundle, TakenBundleV2, bundle_versions, check_room, is_expired,
};
use crate::address::MailboxAddress;
use crate::clock::UnixTime;
use crate::envelope::{Envelope, MessageId};
use crate::protocol::{MultiRecipient, PreKeyUpload};
use group_commit::GroupCommit;
use readers::{ReadThread, Readers};

/// Schema version kept in `PRAGMA user_version`. Version 1 had no expiry
/// and no store-wide totals, version 2 no access verifiers, version 3 no
/// device lists, version 4 no record of the devices each list names,
/// version 5 no shared bodies, version 6 no KEM prekeys (protocol 4);
/// [`SqliteStore::open`] migrates them.
const SCHEMA_VERSION: i64 = 7;

/// The whole schema. Envelope rows hold exactly what a sender sent (the
/// opaque payload and its message id), the recipient address and the hour
/// the envelope expires; no sender, no arrival time. The envelopes of one
/// `SendMulti` keep their recipient's header in `payload` and share one
/// row of `bodies`, which goes when the last of them does: the envelope
/// is `payload || bodies.data`.
const SCHEMA: &str = "
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
    access_verifier  BLOB,
    v2_only          INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS one_time_prekeys (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox     BLOB NOT NULL,
    prekey_id   INTEGER NOT NULL,
    public_key  BLOB NOT NULL,
    UNIQUE (mailbox, prekey_id)
);
CREATE TABLE IF NOT EXISTS last_resort_kem_prekeys (
    mailbox     BLOB PRIMARY KEY,
    prekey_id   INTEGER NOT NULL,
    public_key  BLOB NOT NULL,
    signature   BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kem_prekeys (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox     BLOB NOT NULL,
    prekey_id   INTEGER NOT NULL,
    public_key  BLOB NOT NULL,
    signature   BLOB NOT NULL,
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

/// A [`MailboxStore`] in one SQLite file.
///
/// Opened in WAL mode with `synchronous = FULL`, so a committed write is on
/// disk before the relay answers `OK`; `secure_delete = ON`, so an
/// acknowledged envelope's bytes are overwritten, not just unlinked.
///
/// Writes are *group committed* (docs/relay.md §9): one connection writes,
/// on a thread of the store's own (named `sqlite-writer`), and the writes
/// that callers make at the same time run together, in order, in one
/// `BEGIN IMMEDIATE` transaction with one durable commit, each in a
/// savepoint of its own, so each caller gets the result it would have got
/// alone and is answered only once the commit holding its write is on
/// disk. [`enqueue_async`](MailboxStore::enqueue_async) and
/// [`ack_async`](MailboxStore::ack_async) hand their write to that thread
/// and are completed by it, so no thread of the caller's waits; dropping
/// the store lets the writer finish what is queued first.
/// [`fetch_async`](MailboxStore::fetch_async) likewise hands its read to
/// a second thread (`sqlite-reader`), which runs the reads queued, one
/// after another. That transaction makes a batch atomic
/// also against other processes using the same file. Reads use a few
/// connections of their own, which WAL lets run while a batch commits;
/// they see every write that was answered.
pub struct SqliteStore {
    writer: GroupCommit,
    readers: Arc<Readers>,
    /// Runs the reads of [`fetch_async`](MailboxStore::fetch_async).
    read_thread: ReadThread,
}

/// How [`SqliteStore::open_with`] opens a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// The time to live given to the envelopes of a version-1 database
    /// when it is migrated (default 30 days).
    pub envelope_ttl: Duration,
    /// The largest the database file may grow, in bytes (rounded down to
    /// whole pages; default `None`: as large as the disk allows). Beyond
    /// it, writes that need more space fail with
    /// [`StoreError::DiskFull`] exactly as on a full disk, while deletes
    /// still work and free space. Setting it below the free space of the
    /// disk keeps room for SQLite's journal, so acknowledging envelopes
    /// keeps working when the database is full.
    pub max_database_bytes: Option<u64>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            envelope_ttl: DEFAULT_ENVELOPE_TTL,
            max_database_bytes: None,
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`. A version-1
    /// database is migrated as by [`open_with_ttl`](Self::open_with_ttl)
    /// with the default time to live (30 days) and the system's time.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, &SqliteOptions::default(), UnixTime::now())
    }

    /// Opens (creating if needed) the database at `path`. A database of
    /// schema version 1, whose envelopes have no expiry, is migrated in one
    /// transaction: each queued envelope is given the expiry of an envelope
    /// queued at `now` under `envelope_ttl`, and the store-wide totals are
    /// computed. Version 2 (and so version 1) gets the column of access
    /// verifiers, empty: a mailbox has none until its owner publishes one.
    /// Version 3 gets the table of device lists, empty; version 4 the
    /// record of the devices each stored list names, filled from the lists
    /// (a device's mailbox is kept while another account's list names it,
    /// see [`MailboxStore::publish_device_list`]). A newer schema is
    /// refused.
    pub fn open_with_ttl(
        path: impl AsRef<Path>,
        envelope_ttl: Duration,
        now: UnixTime,
    ) -> Result<Self, StoreError> {
        let options = SqliteOptions {
            envelope_ttl,
            ..SqliteOptions::default()
        };
        Self::open_with(path, &options, now)
    }

    /// Opens (creating if needed) the database at `path` with `options`;
    /// a version-1 database is migrated as by
    /// [`open_with_ttl`](Self::open_with_ttl).
    ///
    /// Opening a database that is already in WAL mode and at the current
    /// schema version writes nothing, so a relay starts on a full disk (or
    /// a database at its `max_database_bytes`), including after a crash
    /// that left a write-ahead log behind: it then serves fetches and
    /// acknowledgements, which free space, and refuses new envelopes with
    /// [`StoreError::DiskFull`] until there is room. Only creating or
    /// migrating a database needs space.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: &SqliteOptions,
        now: UnixTime,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref();
        restrict_files(path)?;
        let mut conn = Connection::open(path)?;
        set_up(&conn)?;
        // Switching the journal mode writes; a database already in WAL mode
        // is left as it is.
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(mode, "SQLite did not switch to WAL mode");
            }
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        // Each write of a batch runs in a savepoint, whose journal of the
        // pages it changes is a temporary file past 64 KiB: in memory, a
        // batch does not write (and then discard) its pages twice, and no
        // copy of an envelope goes to a temporary file.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        if let Some(max_bytes) = options.max_database_bytes {
            let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
            let pages = to_i64(max_bytes)? / page_size.max(1);
            // SQLite keeps it at no less than the pages already in use.
            conn.pragma_update(None, "max_page_count", pages.max(1))?;
        }
        // Nothing to create or migrate: no write at all.
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt(
                "database schema is newer than this relay",
            ));
        }
        if version < SCHEMA_VERSION {
            create_or_migrate(&mut conn, options.envelope_ttl, now)?;
        }
        // The readers open the same file whatever the working directory
        // is by then.
        let path = std::path::absolute(path).map_err(|e| StoreError::Backend(Box::new(e)))?;
        let readers = Arc::new(Readers::new(path));
        Ok(Self {
            writer: GroupCommit::new(conn)?,
            read_thread: ReadThread::new(readers.clone())?,
            readers,
        })
    }

    /// The writing connection, for tests that look into the file.
    #[cfg(test)]
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        Ok(self.writer.connection())
    }
}

impl core::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// What every connection of the store gets: the busy timeout, and plans
/// that do not depend on bound values (the query planner stability
/// guarantee). Without it SQLite marks a statement whose plan looked at a
/// parameter (a `LIMIT ?`, an `=` it weighs) to be prepared again whenever
/// that parameter is bound anew, and rusqlite's statement cache clears the
/// bindings of every statement it takes back: `fetch` was parsed and
/// planned again on every call, more CPU than the rest of the fetch.
pub(super) fn set_up(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// Makes the database and its `-wal` / `-shm` files owner-only (0600)
/// whatever the umask: they hold every queued envelope and the prekey
/// directory. A new database file is created with that mode before SQLite
/// opens it (SQLite gives its journal files the database file's mode);
/// looser existing files are tightened.
#[cfg(unix)]
fn restrict_files(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |e: std::io::Error| StoreError::Backend(Box::new(e));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .map_err(io)?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_files(_: &Path) -> Result<(), StoreError> {
    Ok(())
}

/// Creates the schema of a new database, or migrates a version-1 one, in
/// one write transaction. The version is read again inside it, so two
/// processes opening an old file at once migrate it once.
fn create_or_migrate(
    conn: &mut Connection,
    envelope_ttl: Duration,
    now: UnixTime,
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    match version {
        SCHEMA_VERSION => return Ok(()),
        0 => tx.execute_batch(SCHEMA)?,
        1..=6 => {
            // Version 5 to 6, for every older version: first the column,
            // which the schema's index on it needs.
            add_body_column(&tx)?;
            // Version 6 to 7: signed prekeys say whether they are signed
            // for protocol v2 only (none is yet); the KEM prekey tables,
            // empty, come with the schema below.
            add_v2_only_column(&tx)?;
            if version == 1 {
                let policy = QueuePolicy {
                    envelope_ttl,
                    ..QueuePolicy::default()
                };
                migrate_from_v1(&tx, policy.expiry_hour(now))?;
            }
            if version <= 2 {
                migrate_from_v2(&tx)?;
            }
            // Version 3 to 4: the device list table, empty; 4 to 5: the
            // record of listed devices, empty as there is no list before
            // version 4; 5 to 6: the table of shared bodies, empty.
            tx.execute_batch(SCHEMA)?;
            if version == 4 {
                record_listed_devices(&tx)?;
            }
        }
        _ => {
            return Err(StoreError::Corrupt(
                "database schema is newer than this relay",
            ));
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// `(identity_key, prekey_id, public_key, signature, v2_only)` as stored.
type SignedPreKeyRow = (Vec<u8>, u32, Vec<u8>, Vec<u8>, bool);

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt("integer out of range"))
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt("negative integer"))
}

fn to_array<const N: usize>(v: Vec<u8>, what: &'static str) -> Result<[u8; N], StoreError> {
    v.try_into().map_err(|_| StoreError::Corrupt(what))
}

/// `PreKeyCounts::kem`: the one-time KEM prekeys of `mailbox`, if it has
/// a last-resort one.
fn count_kem(conn: &Connection, mailbox: &[u8; 32]) -> Result<Option<u32>, StoreError> {
    let n: Option<i64> = conn
        .prepare_cached(
            "SELECT (SELECT COUNT(*) FROM kem_prekeys WHERE mailbox = ?1)
             FROM last_resort_kem_prekeys WHERE mailbox = ?1",
        )?
        .query_row([mailbox], |r| r.get(0))
        .optional()?;
    n.map(|n| u32::try_from(n).map_err(|_| StoreError::Corrupt("KEM prekey count")))
        .transpose()
}

/// A KEM prekey as stored: its id, key and signature.
fn kem_prekey(id: u32, key: &[u8], signature: Vec<u8>) -> Result<SignedKemPreKey, StoreError> {
    Ok(SignedKemPreKey {
        id: KemPreKeyId::new(id),
        key: KemPublic::from_bytes(key).map_err(|_| StoreError::Corrupt("KEM prekey"))?,
        signature: Signature::from_bytes(to_array(signature, "KEM prekey signature")?),
    })
}

fn count_one_time(conn: &Connection, mailbox: &[u8; 32]) -> Result<u32, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM one_time_prekeys WHERE mailbox = ?1")?
        .query_row([mailbox], |r| r.get(0))?;
    u32::try_from(n).map_err(|_| StoreError::Corrupt("prekey count"))
}

/// Version 1 to 2: every queued envelope gets `expiry_hour`, and the
/// store-wide totals start from the per-mailbox counters.
fn migrate_from_v1(tx: &Transaction<'_>, expiry_hour: u64) -> Result<(), StoreError> {
    tx.execute_batch("ALTER TABLE envelopes ADD COLUMN expiry_hour INTEGER NOT NULL DEFAULT 0")?;
    tx.execute(
        "UPDATE envelopes SET expiry_hour = ?1",
        [to_i64(expiry_hour)?],
    )?;
    tx.execute_batch(SCHEMA)?;
    tx.execute(
        "UPDATE totals SET
             count = (SELECT COALESCE(SUM(count), 0) FROM mailbox_usage),
             bytes = (SELECT COALESCE(SUM(bytes), 0) FROM mailbox_usage)
         WHERE id = 0",
        [],
    )?;
    Ok(())
}

/// Version 5 to 6: an envelope may refer to a shared body; none does yet.
/// (A database that has the column already, as the tests make of a newer
/// one to stand for an older, keeps it.)
fn add_body_column(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let exists: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('envelopes') WHERE name = 'body')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        tx.execute_batch("ALTER TABLE envelopes ADD COLUMN body INTEGER")?;
    }
    Ok(())
}

/// Version 6 to 7: signed prekey rows say whether they are signed for
/// protocol v2 only; none is. (A database that has the column already
/// keeps it.)
fn add_v2_only_column(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let exists: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('signed_prekeys') WHERE name = 'v2_only')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        tx.execute_batch(
            "ALTER TABLE signed_prekeys ADD COLUMN v2_only INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    Ok(())
}

/// Version 2 to 3: signed prekey rows get an access verifier, none yet.
fn migrate_from_v2(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute_batch("ALTER TABLE signed_prekeys ADD COLUMN access_verifier BLOB")?;
    Ok(())
}

/// Version 4 to 5: records the devices every stored list names, as
/// publishing a list does from now on. A stored list that does not decode
/// (or a row whose mailbox is not 32 bytes) records nothing, as when it
/// is published: its devices are then never unlinked by comparison with
/// it.
fn record_listed_devices(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let mut lists = tx.prepare("SELECT mailbox, list FROM device_lists")?;
    let mut insert =
        tx.prepare("INSERT OR IGNORE INTO listed_devices (device, account) VALUES (?1, ?2)")?;
    let mut rows = lists.query([])?;
    while let Some(row) = rows.next()? {
        let mailbox: Vec<u8> = row.get(0)?;
        let list: Vec<u8> = row.get(1)?;
        let Ok(mailbox) = <[u8; 32]>::try_from(mailbox) else {
            continue;
        };
        let account = MailboxAddress::from_bytes(mailbox);
        for device in NewDeviceList::compare(&account, None, &list).listed {
            insert.execute(params![device.as_bytes(), account.as_bytes()])?;
        }
    }
    Ok(())
}

/// Deletes the mailbox of `address`: every envelope queued for it (taken
/// off its usage and the totals), its signed prekey with its access
/// verifier, its one-time prekeys and its KEM prekeys. Its device list, if
/// it has one, is not part of it.
fn remove_mailbox(tx: &Connection, address: &MailboxAddress) -> Result<(), StoreError> {
    let mailbox = address.as_bytes();
    let mut deleted = Deleted::default();
    {
        let mut delete =
            tx.prepare("DELETE FROM envelopes WHERE mailbox = ?1 RETURNING length(payload), body")?;
        let mut rows = delete.query([mailbox])?;
        while let Some(row) = rows.next()? {
            deleted.add(tx, row.get(0)?, row.get(1)?)?;
        }
    }
    deleted.forget(tx, mailbox)?;
    tx.execute("DELETE FROM mailbox_usage WHERE mailbox = ?1", [mailbox])?;
    tx.execute("DELETE FROM signed_prekeys WHERE mailbox = ?1", [mailbox])?;
    tx.execute("DELETE FROM one_time_prekeys WHERE mailbox = ?1", [mailbox])?;
    tx.execute(
        "DELETE FROM last_resort_kem_prekeys WHERE mailbox = ?1",
        [mailbox],
    )?;
    tx.execute("DELETE FROM kem_prekeys WHERE mailbox = ?1", [mailbox])?;
    Ok(())
}

/// The length of shared body `id` (0 for none).
fn body_len(conn: &Connection, id: Option<i64>) -> Result<u64, StoreError> {
    let Some(id) = id else { return Ok(0) };
    let len: Option<i64> = conn
        .prepare_cached("SELECT length(data) FROM bodies WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    to_u64(len.ok_or(StoreError::Corrupt("an envelope's shared body is missing"))?)
}

/// How many queued envelopes hold shared body `id`.
fn body_holders(conn: &Connection, id: i64) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM envelopes WHERE body = ?1")?
        .query_row([id], |r| r.get(0))?;
    to_u64(n)
}

/// Deletes shared body `id` if no envelope holds it any more
/// (`secure_delete` overwrites it); returns the bytes that freed.
fn release_body(tx: &Connection, id: i64) -> Result<u64, StoreError> {
    let freed: Option<i64> = tx
        .prepare_cached(
            "DELETE FROM bodies WHERE id = ?1
                 AND NOT EXISTS (SELECT 1 FROM envelopes WHERE body = ?1)
             RETURNING length(data)",
        )?
        .query_row([id], |r| r.get(0))
        .optional()?;
    freed.map_or(Ok(0), to_u64)
}

/// Envelopes just deleted from one mailbox: how many, their lengths (each
/// in full, as their mailbox's limits counted them), the bytes of their
/// `payload` column, and the shared bodies they held.
#[derive(Default)]
struct Deleted {
    count: u64,
    bytes: u64,
    payload_bytes: u64,
    bodies: Vec<i64>,
}

impl Deleted {
    /// Adds a deleted envelope whose `payload` column was `payload_len`
    /// bytes long and that held shared body `body`. Called before
    /// [`forget`](Self::forget), while the body is still there.
    fn add(
        &mut self,
        tx: &Connection,
        payload_len: i64,
        body: Option<i64>,
    ) -> Result<(), StoreError> {
        let payload_len = to_u64(payload_len)?;
        self.count += 1;
        self.payload_bytes += payload_len;
        self.bytes += payload_len + body_len(tx, body)?;
        self.bodies.extend(body);
        Ok(())
    }

    /// Takes the envelopes off `mailbox`'s usage and the totals, and
    /// deletes the shared bodies no envelope holds any more; returns the
    /// bytes that freed in the store (what [`StoreTotals::bytes`] counts).
    fn forget(&self, tx: &Connection, mailbox: &[u8]) -> Result<u64, StoreError> {
        if self.count == 0 {
            return Ok(0);
        }
        let mut freed = self.payload_bytes;
        for id in &self.bodies {
            freed += release_body(tx, *id)?;
        }
        let count = to_i64(self.count)?;
        tx.prepare_cached(
            "UPDATE mailbox_usage SET count = count - ?2, bytes = bytes - ?3 WHERE mailbox = ?1",
        )?
        .execute(params![mailbox, count, to_i64(self.bytes)?])?;
        tx.prepare_cached("DELETE FROM mailbox_usage WHERE mailbox = ?1 AND count <= 0")?
            .execute([mailbox])?;
        tx.prepare_cached("UPDATE totals SET count = count - ?1, bytes = bytes - ?2 WHERE id = 0")?
            .execute(params![count, to_i64(freed)?])?;
        Ok(freed)
    }
}

/// A `SendMulti`'s body, written to `bodies` with the first envelope that
/// is stored with it (none, if every recipient is refused or a duplicate).
struct SharedBody<'a> {
    data: &'a [u8],
    id: Option<i64>,
}

impl SharedBody<'_> {
    /// Its row id, writing the row first if needed.
    fn id(&mut self, tx: &Connection) -> Result<i64, StoreError> {
        if let Some(id) = self.id {
            return Ok(id);
        }
        tx.prepare_cached("INSERT INTO bodies (data) VALUES (?1)")?
            .execute([self.data])?;
        let id = tx.last_insert_rowid();
        self.id = Some(id);
        Ok(id)
    }
}

/// An envelope to queue: `payload || body` for `recipient`.
struct NewEnvelope<'a, 'b> {
    recipient: &'a MailboxAddress,
    message_id: &'a MessageId,
    /// The whole envelope, or a `SendMulti` recipient's header.
    payload: &'a [u8],
    /// A `SendMulti`'s body (none if it is empty).
    body: Option<&'b mut SharedBody<'a>>,
}

/// Queues `envelope` in `tx`, with the checks of [`MailboxStore::enqueue`]
/// in its order; a sender `access` does not admit is queued as a first
/// contact if `first_contact()` says so. A refusal writes nothing, so the
/// transaction may go on with other envelopes.
fn enqueue_in(
    tx: &Connection,
    envelope: NewEnvelope<'_, '_>,
    access: Access<'_>,
    first_contact: &mut dyn FnMut() -> bool,
    policy: &QueuePolicy,
    now: UnixTime,
) -> Result<Enqueued, StoreError> {
    let NewEnvelope {
        recipient,
        message_id,
        payload,
        body,
    } = envelope;
    let mailbox = recipient.as_bytes();
    // One row tells both: registered, and with which verifier.
    let verifier: Option<Option<Vec<u8>>> = tx
        .prepare_cached("SELECT access_verifier FROM signed_prekeys WHERE mailbox = ?1")?
        .query_row([mailbox], |r| r.get(0))
        .optional()?;
    let Some(verifier) = verifier else {
        return Err(StoreError::UnknownRecipient);
    };
    let verifier = match verifier {
        Some(v) => Some(AccessVerifier::from_bytes(to_array(v, "access verifier")?)),
        None => None,
    };
    if !access.admits(verifier.as_ref()) && !first_contact() {
        return Err(StoreError::AccessDenied);
    }
    let existing: Option<(i64, i64, i64, Option<i64>)> = tx
        .prepare_cached(
            "SELECT id, expiry_hour, length(payload), body FROM envelopes
             WHERE mailbox = ?1 AND message_id = ?2",
        )?
        .query_row(params![mailbox, message_id.0], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let (mut envelopes, mut bytes) = usage_of(tx, mailbox)?;
    let mut stored_bytes = totals_of(tx)?.bytes;
    let replaced = match existing {
        Some((id, expiry_hour, _, _)) if !is_expired(to_u64(expiry_hour)?, now) => {
            return Ok(Enqueued {
                id: to_u64(id)?,
                duplicate: true,
            });
        }
        // Gone for the recipient already: the retry is a new envelope,
        // in the old one's place, and is checked as if that were gone.
        Some((id, _, payload_len, old_body)) => {
            let payload_len = to_u64(payload_len)?;
            let old_body_len = body_len(tx, old_body)?;
            let freed = match old_body {
                Some(old) if body_holders(tx, old)? == 1 => payload_len + old_body_len,
                _ => payload_len,
            };
            envelopes = envelopes.saturating_sub(1);
            bytes = bytes.saturating_sub(payload_len + old_body_len);
            stored_bytes = stored_bytes.saturating_sub(freed);
            Some((id, payload_len, old_body))
        }
        None => None,
    };
    let body_len = body.as_ref().map_or(0, |b| b.data.len());
    let len = (payload.len() + body_len) as u64;
    // The body is stored with the first envelope that holds it.
    let new_body = body.as_ref().is_some_and(|b| b.id.is_none());
    let stored_len = (payload.len() + if new_body { body_len } else { 0 }) as u64;
    check_room((envelopes, bytes), len, stored_bytes, stored_len, policy)?;
    if let Some((id, payload_len, old_body)) = replaced {
        tx.execute("DELETE FROM envelopes WHERE id = ?1", [id])?;
        let mut deleted = Deleted::default();
        deleted.add(tx, to_i64(payload_len)?, old_body)?;
        deleted.forget(tx, mailbox)?;
    }
    let body = match body {
        Some(body) => Some(body.id(tx)?),
        None => None,
    };
    tx.prepare_cached(
        "INSERT INTO envelopes (mailbox, message_id, payload, expiry_hour, body)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        mailbox,
        message_id.0,
        payload,
        to_i64(policy.expiry_hour(now))?,
        body
    ])?;
    let id = to_u64(tx.last_insert_rowid())?;
    tx.prepare_cached(
        "INSERT INTO mailbox_usage (mailbox, count, bytes) VALUES (?1, 1, ?2)
         ON CONFLICT (mailbox) DO UPDATE SET count = count + 1, bytes = bytes + excluded.bytes",
    )?
    .execute(params![mailbox, to_i64(len)?])?;
    tx.prepare_cached("UPDATE totals SET count = count + 1, bytes = bytes + ?1 WHERE id = 0")?
        .execute([to_i64(stored_len)?])?;
    Ok(Enqueued {
        id,
        duplicate: false,
    })
}

fn totals_of(conn: &Connection) -> Result<StoreTotals, StoreError> {
    let row: Option<(i64, i64)> = conn
        .prepare_cached("SELECT count, bytes FROM totals WHERE id = 0")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (envelopes, bytes) = row.unwrap_or((0, 0));
    Ok(StoreTotals {
        envelopes: to_u64(envelopes)?,
        bytes: to_u64(bytes)?,
    })
}

fn usage_of(conn: &Connection, mailbox: &[u8; 32]) -> Result<(u64, u64), StoreError> {
    let row: Option<(i64, i64)> = conn
        .prepare_cached("SELECT count, bytes FROM mailbox_usage WHERE mailbox = ?1")?
        .query_row([mailbox], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (count, bytes) = row.unwrap_or((0, 0));
    Ok((to_u64(count)?, to_u64(bytes)?))
}

/// The batch operation of an `enqueue`: it owns its request, so that the
/// writer thread (or whoever leads the batch) can run it.
fn enqueue_op(
    request: EnqueueRequest,
) -> impl FnMut(&Connection) -> Result<Enqueued, StoreError> + Send + 'static {
    move |conn| {
        let envelope = NewEnvelope {
            recipient: &request.recipient,
            message_id: &request.message_id,
            payload: &request.payload,
            body: None,
        };
        enqueue_in(
            conn,
            envelope,
            request.access.as_access(),
            &mut || false,
            &request.policy,
            request.now,
        )
    }
}

/// Publishes `owner`'s prekeys (mailbox `mailbox`), as
/// [`MailboxStore::publish_prekeys`]; on an error the caller rolls back.
fn publish_prekeys_in(
    conn: &Connection,
    mailbox: &[u8; 32],
    owner: &IdentityKey,
    upload: &PreKeyUpload,
    limits: &PreKeyLimits,
) -> Result<PreKeyCounts, StoreError> {
    if upload.replace_one_time_prekeys {
        conn.execute("DELETE FROM one_time_prekeys WHERE mailbox = ?1", [mailbox])?;
    }
    if upload.replace_one_time_kem_prekeys {
        conn.execute("DELETE FROM kem_prekeys WHERE mailbox = ?1", [mailbox])?;
    }
    if let Some(spk) = &upload.signed_prekey {
        conn.execute(
            "INSERT INTO signed_prekeys (mailbox, identity_key, prekey_id, public_key, signature,
                 v2_only)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (mailbox) DO UPDATE SET identity_key = excluded.identity_key,
                 prekey_id = excluded.prekey_id, public_key = excluded.public_key,
                 signature = excluded.signature, v2_only = excluded.v2_only",
            params![
                mailbox,
                owner.as_bytes(),
                spk.id.get(),
                spk.public.as_bytes(),
                spk.signature.as_bytes(),
                upload.signed_prekey_v2_only,
            ],
        )?;
    }
    if let Some(kem) = &upload.last_resort_kem_prekey {
        conn.execute(
            "INSERT INTO last_resort_kem_prekeys (mailbox, prekey_id, public_key, signature)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (mailbox) DO UPDATE SET prekey_id = excluded.prekey_id,
                 public_key = excluded.public_key, signature = excluded.signature",
            params![
                mailbox,
                kem.id.get(),
                &kem.key.as_bytes()[..],
                kem.signature.as_bytes()
            ],
        )?;
    }
    {
        let mut insert = conn.prepare_cached(
            "INSERT INTO kem_prekeys (mailbox, prekey_id, public_key, signature)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (mailbox, prekey_id) DO UPDATE SET public_key = excluded.public_key,
                 signature = excluded.signature",
        )?;
        for kem in &upload.one_time_kem_prekeys {
            insert.execute(params![
                mailbox,
                kem.id.get(),
                &kem.key.as_bytes()[..],
                kem.signature.as_bytes()
            ])?;
        }
    }
    if let Some(verifier) = &upload.access_verifier {
        // Kept with the signed prekey: without a row, nothing to keep.
        conn.execute(
            "UPDATE signed_prekeys SET access_verifier = ?2 WHERE mailbox = ?1",
            params![mailbox, verifier.as_bytes()],
        )?;
    }
    {
        let mut insert = conn.prepare_cached(
            "INSERT INTO one_time_prekeys (mailbox, prekey_id, public_key) VALUES (?1, ?2, ?3)
             ON CONFLICT (mailbox, prekey_id) DO UPDATE SET public_key = excluded.public_key",
        )?;
        for key in &upload.one_time_prekeys {
            insert.execute(params![mailbox, key.id.get(), key.public.as_bytes()])?;
        }
    }
    // On an error the batch rolls back this operation's writes.
    let count = count_one_time(conn, mailbox)?;
    if count > limits.max_one_time {
        return Err(StoreError::TooManyPreKeys {
            would_have: u64::from(count),
            max: limits.max_one_time,
        });
    }
    let kem: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM kem_prekeys WHERE mailbox = ?1")?
        .query_row([mailbox], |r| r.get(0))?;
    let kem = to_u64(kem)?;
    if kem > u64::from(limits.max_kem) {
        return Err(StoreError::TooManyKemPreKeys {
            would_have: kem,
            max: limits.max_kem,
        });
    }
    Ok(PreKeyCounts {
        one_time: count,
        kem: count_kem(conn, mailbox)?,
    })
}

/// A mailbox's signed prekey as stored, with its owner's identity key.
struct SignedPreKeyRecord {
    identity_key: IdentityKey,
    id: SignedPreKeyId,
    public: PreKeyPublic,
    signature: Signature,
    /// Signed for protocol v2 only: no v1 bundle of it verifies.
    v2_only: bool,
}

impl SignedPreKeyRecord {
    /// The signed prekey of `mailbox`, if one is published.
    fn read(conn: &Connection, mailbox: &[u8; 32]) -> Result<Option<Self>, StoreError> {
        let signed: Option<SignedPreKeyRow> = conn
            .prepare_cached(
                "SELECT identity_key, prekey_id, public_key, signature, v2_only
                 FROM signed_prekeys WHERE mailbox = ?1",
            )?
            .query_row([mailbox], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()?;
        let Some((identity_key, id, public, signature, v2_only)) = signed else {
            return Ok(None);
        };
        Ok(Some(Self {
            identity_key: IdentityKey::from_bytes(&to_array(identity_key, "identity key")?)
                .map_err(|_| StoreError::Corrupt("identity key"))?,
            id: SignedPreKeyId::new(id),
            public: PreKeyPublic::from_bytes(to_array(public, "signed prekey")?),
            signature: Signature::from_bytes(to_array(signature, "signed prekey signature")?),
            v2_only,
        }))
    }

    /// The v1 bundle of this signed prekey with `one_time_prekey`.
    fn bundle(&self, one_time_prekey: Option<(OneTimePreKeyId, PreKeyPublic)>) -> PreKeyBundle {
        PreKeyBundle::from_parts(
            self.identity_key,
            self.id,
            self.public,
            self.signature,
            one_time_prekey,
        )
    }
}

/// Deletes and returns the oldest one-time prekey of `mailbox`, if any.
fn take_one_time_in(
    conn: &Connection,
    mailbox: &[u8; 32],
) -> Result<Option<(OneTimePreKeyId, PreKeyPublic)>, StoreError> {
    let one_time: Option<(u32, Vec<u8>)> = conn
        .prepare_cached(
            "DELETE FROM one_time_prekeys WHERE seq =
                 (SELECT seq FROM one_time_prekeys WHERE mailbox = ?1 ORDER BY seq LIMIT 1)
             RETURNING prekey_id, public_key",
        )?
        .query_row([mailbox], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match one_time {
        Some((id, key)) => Ok(Some((
            OneTimePreKeyId::new(id),
            PreKeyPublic::from_bytes(to_array(key, "one-time prekey")?),
        ))),
        None => Ok(None),
    }
}

/// [`MailboxStore::take_bundle`] in the batch's transaction. A signed
/// prekey signed for protocol v2 only has no v1 bundle: `None`, and no
/// one-time prekey is taken.
fn take_bundle_in(
    conn: &Connection,
    address: &MailboxAddress,
) -> Result<Option<TakenBundle>, StoreError> {
    let mailbox = address.as_bytes();
    let Some(signed) = SignedPreKeyRecord::read(conn, mailbox)?.filter(|s| !s.v2_only) else {
        return Ok(None);
    };
    let one_time = take_one_time_in(conn, mailbox)?;
    Ok(Some(TakenBundle {
        bundle: signed.bundle(one_time),
        remaining: count_one_time(conn, mailbox)?,
    }))
}

/// [`MailboxStore::take_bundle_v2`] in the batch's transaction: the
/// oldest one-time prekey taken, then the oldest one-time KEM prekey, or
/// the last-resort one. A signed prekey signed for protocol v2 only with
/// no KEM prekey at all has no bundle that verifies: `None`, nothing
/// taken.
fn take_bundle_v2_in(
    conn: &Connection,
    address: &MailboxAddress,
) -> Result<Option<TakenBundleV2>, StoreError> {
    let mailbox = address.as_bytes();
    let Some(signed) = SignedPreKeyRecord::read(conn, mailbox)? else {
        return Ok(None);
    };
    let last_resort: Option<(u32, Vec<u8>, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT prekey_id, public_key, signature
             FROM last_resort_kem_prekeys WHERE mailbox = ?1",
        )?
        .query_row([mailbox], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let one_time_kem: Option<(u32, Vec<u8>, Vec<u8>)> = conn
        .prepare_cached(
            "DELETE FROM kem_prekeys WHERE seq =
                 (SELECT seq FROM kem_prekeys WHERE mailbox = ?1 ORDER BY seq LIMIT 1)
             RETURNING prekey_id, public_key, signature",
        )?
        .query_row([mailbox], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let kem = one_time_kem.or(last_resort);
    if signed.v2_only && kem.is_none() {
        // Nothing was deleted: there was no one-time KEM prekey.
        return Ok(None);
    }
    let bundle = signed.bundle(take_one_time_in(conn, mailbox)?);
    let bundle = match kem {
        Some((id, key, signature)) => bundle.with_kem_prekey(
            bundle_versions(signed.v2_only),
            kem_prekey(id, &key, signature)?,
        ),
        None => bundle,
    };
    Ok(Some(TakenBundleV2::new(
        bundle,
        count_one_time(conn, mailbox)?,
        count_kem(conn, mailbox)?,
    )))
}

/// [`MailboxStore::publish_device_list`] in the batch's transaction.
fn publish_device_list_in(
    conn: &Connection,
    owner: &MailboxAddress,
    version: u64,
    list: &[u8],
) -> Result<(), StoreError> {
    let stored: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT version, list FROM device_lists WHERE mailbox = ?1",
            [owner.as_bytes()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((stored, stored_list)) = &stored {
        let stored = to_u64(*stored)?;
        if stored == version && stored_list == list {
            return Ok(());
        }
        if stored >= version {
            return Err(StoreError::StaleDeviceList { stored });
        }
    }
    let new = NewDeviceList::compare(owner, stored.as_ref().map(|(_, l)| l.as_slice()), list);
    conn.execute(
        "INSERT OR REPLACE INTO device_lists (mailbox, version, list) VALUES (?1, ?2, ?3)",
        params![owner.as_bytes(), to_i64(version)?, list],
    )?;
    conn.execute(
        "DELETE FROM listed_devices WHERE account = ?1",
        [owner.as_bytes()],
    )?;
    {
        let mut insert =
            conn.prepare("INSERT OR IGNORE INTO listed_devices (device, account) VALUES (?1, ?2)")?;
        for device in &new.listed {
            insert.execute(params![device.as_bytes(), owner.as_bytes()])?;
        }
    }
    for device in &new.unlinked {
        // An account's own mailbox, or one another account still
        // names, stays (store/unlinking.rs).
        let claimed: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM device_lists WHERE mailbox = ?1)
                 OR EXISTS (SELECT 1 FROM listed_devices WHERE device = ?1)",
            [device.as_bytes()],
            |r| r.get(0),
        )?;
        if !claimed {
            remove_mailbox(conn, device)?;
        }
    }
    Ok(())
}

/// [`MailboxStore::enqueue_many`] in the batch's transaction: every
/// recipient in order; a failure other than a refusal fails the whole
/// call, and the batch rolls back what it wrote.
fn enqueue_many_in(
    conn: &Connection,
    recipients: &[MultiRecipient],
    body: &[u8],
    first_contact: &mut dyn FnMut(usize) -> bool,
    policy: &QueuePolicy,
    now: UnixTime,
) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
    let mut body = (!body.is_empty()).then_some(SharedBody {
        data: body,
        id: None,
    });
    let mut results = Vec::with_capacity(recipients.len());
    for (i, r) in recipients.iter().enumerate() {
        let envelope = NewEnvelope {
            recipient: &r.address,
            message_id: &r.message_id,
            payload: &r.header,
            body: body.as_mut(),
        };
        let access = Access::Key(r.access_key.as_ref());
        match enqueue_in(
            conn,
            envelope,
            access,
            &mut || first_contact(i),
            policy,
            now,
        ) {
            Err(e) if !e.is_refusal() => return Err(e),
            result => results.push(result),
        }
    }
    Ok(results)
}

/// [`MailboxStore::ack`] in the batch's transaction.
fn ack_in(conn: &Connection, address: &MailboxAddress, ids: &[u64]) -> Result<u32, StoreError> {
    let mailbox = address.as_bytes();
    let mut deleted = Deleted::default();
    {
        let mut delete = conn.prepare_cached(
            "DELETE FROM envelopes WHERE id = ?1 AND mailbox = ?2
             RETURNING length(payload), body",
        )?;
        for id in ids {
            let Ok(id) = i64::try_from(*id) else { continue };
            let row: Option<(i64, Option<i64>)> = delete
                .query_row(params![id, mailbox], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((len, body)) = row {
                deleted.add(conn, len, body)?;
            }
        }
    }
    deleted.forget(conn, mailbox)?;
    // At most `ids.len()` (65 535 per request) deletions.
    Ok(u32::try_from(deleted.count).unwrap_or(u32::MAX))
}

/// [`MailboxStore::sweep_expired`] in the batch's transaction.
fn sweep_expired_in(
    conn: &Connection,
    now: UnixTime,
    max_count: usize,
) -> Result<Swept, StoreError> {
    let hour = i64::try_from(now.hour()).unwrap_or(i64::MAX);
    let limit = i64::try_from(max_count).unwrap_or(i64::MAX);
    // Per mailbox: what was deleted.
    let mut deleted: HashMap<Vec<u8>, Deleted> = HashMap::new();
    {
        let mut delete = conn.prepare_cached(
            "DELETE FROM envelopes WHERE id IN
                 (SELECT id FROM envelopes WHERE expiry_hour <= ?1
                  ORDER BY expiry_hour, id LIMIT ?2)
             RETURNING mailbox, length(payload), body",
        )?;
        let mut rows = delete.query(params![hour, limit])?;
        while let Some(row) = rows.next()? {
            let mailbox: Vec<u8> = row.get(0)?;
            deleted
                .entry(mailbox)
                .or_default()
                .add(conn, row.get(1)?, row.get(2)?)?;
        }
    }
    let mut swept = Swept::default();
    for (mailbox, deleted) in &deleted {
        swept.envelopes += deleted.count;
        swept.bytes += deleted.forget(conn, mailbox)?;
    }
    Ok(swept)
}

/// About what a one-time prekey row takes, for the batch's byte bound.
const ONE_TIME_PREKEY_WEIGHT: usize = 48;

/// About what a KEM prekey row takes: id, 1184-byte key, 64-byte signature.
const KEM_PREKEY_WEIGHT: usize = 1290;

impl MailboxStore for SqliteStore {
    fn publish_prekeys(
        &self,
        owner: &IdentityKey,
        upload: &PreKeyUpload,
        max_one_time: u32,
    ) -> Result<u32, StoreError> {
        super::publish_prekeys_with_default_kem_limit(self, owner, upload, max_one_time)
    }

    fn publish_prekeys_with_kem(
        &self,
        owner: &IdentityKey,
        upload: &PreKeyUpload,
        limits: &PreKeyLimits,
    ) -> Result<PreKeyCounts, StoreError> {
        let owner = *owner;
        let mailbox = *MailboxAddress::of(&owner).as_bytes();
        let kem_keys = upload.one_time_kem_prekeys.len()
            + usize::from(upload.last_resort_kem_prekey.is_some());
        let weight = 256
            + upload.one_time_prekeys.len() * ONE_TIME_PREKEY_WEIGHT
            + kem_keys * KEM_PREKEY_WEIGHT;
        let upload = upload.clone();
        let limits = *limits;
        self.writer.write(weight, move |conn| {
            publish_prekeys_in(conn, &mailbox, &owner, &upload, &limits)
        })
    }

    fn take_bundle(&self, address: &MailboxAddress) -> Result<Option<TakenBundle>, StoreError> {
        let address = *address;
        self.writer.write(ONE_TIME_PREKEY_WEIGHT, move |conn| {
            take_bundle_in(conn, &address)
        })
    }

    fn take_bundle_v2(
        &self,
        address: &MailboxAddress,
    ) -> Result<Option<TakenBundleV2>, StoreError> {
        let address = *address;
        self.writer
            .write(ONE_TIME_PREKEY_WEIGHT + KEM_PREKEY_WEIGHT, move |conn| {
                take_bundle_v2_in(conn, &address)
            })
    }

    fn keeps_kem_prekeys(&self) -> bool {
        true
    }

    fn kem_prekey_count(&self, address: &MailboxAddress) -> Result<Option<u32>, StoreError> {
        self.readers
            .read(|conn| count_kem(conn, address.as_bytes()))
    }

    fn publish_device_list(
        &self,
        owner: &MailboxAddress,
        version: u64,
        list: &[u8],
    ) -> Result<(), StoreError> {
        let owner = *owner;
        let list = list.to_vec();
        self.writer.write(list.len(), move |conn| {
            publish_device_list_in(conn, &owner, version, &list)
        })
    }

    fn device_list(&self, address: &MailboxAddress) -> Result<Option<Vec<u8>>, StoreError> {
        self.readers.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT list FROM device_lists WHERE mailbox = ?1")?
                .query_row([address.as_bytes()], |r| r.get(0))
                .optional()?)
        })
    }

    fn one_time_prekey_count(&self, address: &MailboxAddress) -> Result<u32, StoreError> {
        self.readers
            .read(|conn| count_one_time(conn, address.as_bytes()))
    }

    fn enqueue(
        &self,
        recipient: &MailboxAddress,
        message_id: &MessageId,
        payload: &[u8],
        access: Access<'_>,
        policy: &QueuePolicy,
        now: UnixTime,
    ) -> Result<Enqueued, StoreError> {
        let request = EnqueueRequest {
            recipient: *recipient,
            message_id: *message_id,
            payload: Arc::new(payload.to_vec()),
            access: OwnedAccess::of(access),
            policy: *policy,
            now,
        };
        self.writer.write(payload.len(), enqueue_op(request))
    }

    /// Hands the write to the writer thread: no thread waits for it.
    fn enqueue_async(self: Arc<Self>, request: EnqueueRequest) -> StoreFuture<Enqueued> {
        let answer = self
            .writer
            .submit(request.payload.len(), enqueue_op(request));
        Box::pin(answer.result())
    }

    fn enqueue_many(
        &self,
        recipients: &[MultiRecipient],
        body: &[u8],
        first_contact: &mut dyn FnMut(usize) -> bool,
        policy: &QueuePolicy,
        now: UnixTime,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        let weight = body.len() + recipients.iter().map(|r| r.header.len()).sum::<usize>();
        // Should the batch start over (see `group_commit`), each recipient
        // gets the answer `first_contact` gave it the first time: it is
        // asked at most once per recipient.
        let mut answers: Vec<Option<bool>> = vec![None; recipients.len()];
        // `first_contact` is not `Send`: this thread runs the operation,
        // leading a batch of its own and whatever else is queued.
        self.writer.write_here(weight, |conn| {
            let mut ask = |i: usize| match answers.get_mut(i) {
                Some(Some(answer)) => *answer,
                Some(slot) => *slot.insert(first_contact(i)),
                None => first_contact(i),
            };
            enqueue_many_in(conn, recipients, body, &mut ask, policy, now)
        })
    }

    fn fetch(
        &self,
        address: &MailboxAddress,
        after: u64,
        max_count: usize,
        max_bytes: usize,
        now: UnixTime,
    ) -> Result<FetchedPage, StoreError> {
        self.readers
            .read(|conn| fetch_in(conn, address, after, max_count, max_bytes, now))
    }

    /// Hands the read to the store's read thread: no thread waits for it.
    fn fetch_async(
        self: Arc<Self>,
        address: MailboxAddress,
        after: u64,
        max_count: usize,
        max_bytes: usize,
        now: UnixTime,
    ) -> StoreFuture<FetchedPage> {
        Box::pin(
            self.read_thread
                .submit(move |conn| fetch_in(conn, &address, after, max_count, max_bytes, now)),
        )
    }

    fn ack(&self, address: &MailboxAddress, ids: &[u64]) -> Result<u32, StoreError> {
        let address = *address;
        let ids = ids.to_vec();
        self.writer
            .write(ids.len() * 8, move |conn| ack_in(conn, &address, &ids))
    }

    /// Hands the deletes to the writer thread: no thread waits for them.
    fn ack_async(self: Arc<Self>, address: MailboxAddress, ids: Vec<u64>) -> StoreFuture<u32> {
        let answer = self
            .writer
            .submit(ids.len() * 8, move |conn| ack_in(conn, &address, &ids));
        Box::pin(answer.result())
    }

    fn sweep_expired(&self, now: UnixTime, max_count: usize) -> Result<Swept, StoreError> {
        self.writer
            .write(0, move |conn| sweep_expired_in(conn, now, max_count))
    }

    fn totals(&self) -> Result<StoreTotals, StoreError> {
        self.readers.read(|conn| totals_of(conn))
    }

    fn usage(&self, address: &MailboxAddress) -> Result<MailboxUsage, StoreError> {
        let mailbox = address.as_bytes();
        self.readers.read(|conn| {
            // One read transaction, so the three numbers agree.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let (envelopes, bytes) = usage_of(&tx, mailbox)?;
            let last_id: Option<i64> = tx
                .prepare_cached("SELECT MAX(id) FROM envelopes WHERE mailbox = ?1")?
                .query_row([mailbox], |r| r.get(0))?;
            tx.commit()?;
            Ok(MailboxUsage {
                envelopes,
                bytes,
                last_id: to_u64(last_id.unwrap_or(0))?,
            })
        })
    }
}

/// A mailbox's envelopes after an id that have not expired, in order
/// (`?1` mailbox, `?2` after, `?3` how many at most, `?4` the current
/// hour).
const FETCH: &str = "SELECT e.id, e.payload, e.body, b.data FROM envelopes e
    LEFT JOIN bodies b ON b.id = e.body
    WHERE e.mailbox = ?1 AND e.id > ?2 AND e.expiry_hour > ?4 ORDER BY e.id LIMIT ?3";

/// [`MailboxStore::fetch`] on a read connection.
fn fetch_in(
    conn: &Connection,
    address: &MailboxAddress,
    after: u64,
    max_count: usize,
    max_bytes: usize,
    now: UnixTime,
) -> Result<FetchedPage, StoreError> {
    let mut stmt = conn.prepare_cached(FETCH)?;
    let limit = to_i64(
        u64::try_from(max_count)
            .unwrap_or(u64::MAX)
            .saturating_add(1),
    )
    .unwrap_or(i64::MAX);
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let hour = i64::try_from(now.hour()).unwrap_or(i64::MAX);
    let mut rows = stmt.query(params![address.as_bytes(), after, limit, hour])?;
    let mut page = FetchedPage::default();
    let mut used = 0usize;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let mut payload: Vec<u8> = row.get(1)?;
        let body: Option<i64> = row.get(2)?;
        let data: Option<Vec<u8>> = row.get(3)?;
        match (body, data) {
            (None, _) => {}
            (Some(_), Some(data)) => payload.extend_from_slice(&data),
            (Some(_), None) => {
                return Err(StoreError::Corrupt("an envelope's shared body is missing"));
            }
        }
        let size = Envelope::OVERHEAD + payload.len();
        if page.envelopes.len() >= max_count
            || (!page.envelopes.is_empty() && used + size > max_bytes)
        {
            page.more = true;
            break;
        }
        used += size;
        page.envelopes.push(Envelope {
            id: to_u64(id)?,
            payload,
        });
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::super::contract_tests::{OPEN, T0, register, to};
    use super::*;
    use sotto_core::AccessKey;

    fn fresh() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("relay.db")).unwrap();
        (dir, store)
    }

    fn contract_store() -> Option<(tempfile::TempDir, SqliteStore)> {
        Some(fresh())
    }

    crate::store::contract_suite!(contract_store, |held| &held.1);

    /// The relay's database holds every queued envelope: other local
    /// accounts must not be able to read it, whatever the umask.
    #[cfg(unix)]
    #[test]
    fn the_database_and_its_journal_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let store = SqliteStore::open(&path).unwrap();
        let address = register(&store, 1);
        store
            .enqueue(
                &address,
                &MessageId([1; 16]),
                b"x",
                OPEN,
                &QueuePolicy::default(),
                T0,
            )
            .unwrap();
        let files: Vec<_> = ["relay.db", "relay.db-wal", "relay.db-shm"]
            .iter()
            .map(|f| dir.path().join(f))
            .collect();
        for f in &files {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
        drop(store);
        // Files left readable by an older relay are tightened on open.
        for f in &files {
            if f.exists() {
                std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        let _store = SqliteStore::open(&path).unwrap();
        for f in &files {
            if f.exists() {
                assert_eq!(mode(f), 0o600, "{}", f.display());
            }
        }
    }

    // Group commit (docs/relay.md §9): callers on many threads, one batch.

    /// Message id number `n`.
    fn message_id(n: u32) -> MessageId {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_be_bytes());
        MessageId(id)
    }

    /// Batches committed so far.
    fn commits(store: &SqliteStore) -> u64 {
        store.writer.hooks().commits()
    }

    /// Registers the identity of `seed` with an access verifier; returns
    /// its mailbox.
    fn register_guarded(store: &SqliteStore, seed: u8) -> MailboxAddress {
        use sotto_core::{IdentityKeyPair, SignedPreKey};
        let owner = IdentityKeyPair::from_seed(&[seed; 32]);
        let key = AccessKey::derive(&owner).unwrap();
        let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
        let spk = SignedPreKey::generate(SignedPreKeyId::new(1), &owner, &mut rng);
        let upload = PreKeyUpload::new(Some(&spk), &[]).with_access_verifier(key.verifier());
        store.publish_prekeys(owner.public(), &upload, 10).unwrap();
        MailboxAddress::of(owner.public())
    }

    #[test]
    fn concurrent_enqueues_share_commits_get_distinct_ids_and_read_their_own_writes() {
        const THREADS: u32 = 32;
        const EACH: u32 = 20;
        let (_dir, store) = fresh();
        let mailboxes: Vec<_> = (1..=8).map(|seed| register(&store, seed)).collect();
        let before = commits(&store);
        // The first batch waits for one envelope from every thread.
        store.writer.hooks().gather_next_batch(THREADS as usize);
        let stored: Vec<(usize, u64)> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (store, mailboxes) = (&store, &mailboxes);
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        for k in 0..EACH {
                            let n = t * EACH + k;
                            let m = n as usize % mailboxes.len();
                            let payload = n.to_be_bytes();
                            let policy = QueuePolicy::default();
                            let e = store
                                .enqueue(&mailboxes[m], &message_id(n), &payload, OPEN, &policy, T0)
                                .unwrap();
                            assert!(!e.duplicate);
                            // Answered after its commit: a reader sees it.
                            let page = store
                                .fetch(&mailboxes[m], e.id - 1, 1, usize::MAX, T0)
                                .unwrap();
                            assert_eq!(page.envelopes[0].id, e.id);
                            assert_eq!(page.envelopes[0].payload, payload);
                            mine.push((m, e.id));
                        }
                        mine
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect()
        });
        let total = (THREADS * EACH) as usize;
        let mut ids: Vec<u64> = stored.iter().map(|(_, id)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), total, "every envelope has an id of its own");
        for (m, mailbox) in mailboxes.iter().enumerate() {
            let mut expected: Vec<u64> = stored
                .iter()
                .filter(|(i, _)| *i == m)
                .map(|(_, id)| *id)
                .collect();
            expected.sort_unstable();
            let page = store.fetch(mailbox, 0, 1000, usize::MAX, T0).unwrap();
            let got: Vec<u64> = page.envelopes.iter().map(|e| e.id).collect();
            assert_eq!(got, expected, "each once, in id order");
            assert_eq!(
                store.usage(mailbox).unwrap().envelopes,
                expected.len() as u64
            );
        }
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                envelopes: total as u64,
                bytes: 4 * total as u64
            }
        );
        let commits = commits(&store) - before;
        assert!(
            commits <= (total - THREADS as usize + 1) as u64,
            "{commits} commits for {total} envelopes"
        );
    }

    #[test]
    fn two_callers_in_one_batch_with_one_message_id_get_one_stored_and_one_duplicate() {
        let (_dir, store) = fresh();
        let bob = register(&store, 1);
        let before = commits(&store);
        store.writer.hooks().gather_next_batch(2);
        let results: Vec<Enqueued> = std::thread::scope(|s| {
            let threads: Vec<_> = [&b"first"[..], b"second"]
                .into_iter()
                .map(|payload| {
                    let store = &store;
                    s.spawn(move || {
                        let policy = QueuePolicy::default();
                        store
                            .enqueue(&bob, &MessageId([7; 16]), payload, OPEN, &policy, T0)
                            .unwrap()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(commits(&store), before + 1, "one batch");
        assert_eq!(results[0].id, results[1].id);
        assert_eq!(results.iter().filter(|r| r.duplicate).count(), 1);
        assert_eq!(
            store
                .fetch(&bob, 0, 10, usize::MAX, T0)
                .unwrap()
                .envelopes
                .len(),
            1
        );
        assert_eq!(store.totals().unwrap().envelopes, 1);
    }

    #[test]
    fn mailbox_limits_are_checked_in_batch_order() {
        let (_dir, store) = fresh();
        let bob = register(&store, 1);
        let policy = QueuePolicy {
            mailbox: super::super::MailboxLimits {
                max_envelopes: 2,
                max_bytes: 1000,
            },
            ..QueuePolicy::default()
        };
        store.writer.hooks().gather_next_batch(3);
        let results: Vec<Result<Enqueued, StoreError>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..3)
                .map(|n| {
                    let (store, policy) = (&store, &policy);
                    s.spawn(move || store.enqueue(&bob, &message_id(n), b"x", OPEN, policy, T0))
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2);
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(StoreError::MailboxFull { .. })))
        );
        assert_eq!(store.usage(&bob).unwrap().envelopes, 2);
    }

    #[test]
    fn a_failed_commit_answers_every_caller_of_its_batch_with_an_error_and_stores_nothing() {
        let (_dir, store) = fresh();
        let (bob, carol) = (register(&store, 1), register(&store, 2));
        let policy = QueuePolicy::default();
        let queued = store
            .enqueue(&bob, &MessageId([1; 16]), b"queued", OPEN, &policy, T0)
            .unwrap();
        let before = (store.totals().unwrap(), commits(&store));
        // As a crash before the commit, or a disk failing it, would.
        store.writer.hooks().fail_next_commit();
        store.writer.hooks().gather_next_batch(4);
        let failed: Vec<bool> = std::thread::scope(|s| {
            let store = &store;
            let threads = [
                s.spawn(move || {
                    store
                        .enqueue(&bob, &MessageId([2; 16]), b"new", OPEN, &policy, T0)
                        .is_err()
                }),
                s.spawn(move || {
                    store
                        .enqueue(&carol, &MessageId([2; 16]), b"new", OPEN, &policy, T0)
                        .is_err()
                }),
                s.spawn(move || store.ack(&bob, &[queued.id]).is_err()),
                s.spawn(move || store.publish_device_list(&carol, 1, b"list").is_err()),
            ];
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(failed, [true; 4], "every caller of the batch is told");
        assert_eq!((store.totals().unwrap(), commits(&store)), before);
        assert_eq!(store.usage(&carol).unwrap(), MailboxUsage::default());
        assert_eq!(store.device_list(&carol).unwrap(), None);
        let page = store.fetch(&bob, 0, 10, usize::MAX, T0).unwrap();
        assert_eq!(page.envelopes.len(), 1, "the ack was not applied either");
        // The next batch commits; a retry is a new envelope.
        let retried = store
            .enqueue(&bob, &MessageId([2; 16]), b"new", OPEN, &policy, T0)
            .unwrap();
        assert!(!retried.duplicate);
    }

    #[test]
    fn a_multi_send_leads_a_batch_of_single_sends_and_runs_first() {
        let (_dir, store) = fresh();
        let (a, b) = (register(&store, 1), register(&store, 2));
        let guarded = register_guarded(&store, 3);
        let before = commits(&store);
        store.writer.hooks().gather_next_batch(3);
        let policy = QueuePolicy::default();
        let (multi, asked, singles) = std::thread::scope(|s| {
            let store = &store;
            let multi = s.spawn(move || {
                let mut asked = Vec::new();
                let recipients = [to(&a, 1, b"ha"), to(&guarded, 2, b"hg")];
                let results = store
                    .enqueue_many(
                        &recipients,
                        b"BODY",
                        &mut |i| {
                            asked.push(i);
                            true
                        },
                        &policy,
                        T0,
                    )
                    .unwrap();
                (results, asked)
            });
            // It leads, and waits for the others, before they queue.
            while !store.writer.leading() {
                std::thread::yield_now();
            }
            let singles = [
                s.spawn(move || {
                    store.enqueue(&a, &MessageId([1; 16]), b"haBODY", OPEN, &policy, T0)
                }),
                s.spawn(move || {
                    store.enqueue(&b, &MessageId([1; 16]), b"single", OPEN, &policy, T0)
                }),
            ];
            let (multi, asked) = multi.join().unwrap();
            let singles: Vec<_> = singles.into_iter().map(|t| t.join().unwrap()).collect();
            (multi, asked, singles)
        });
        assert_eq!(commits(&store), before + 1, "one batch");
        assert_eq!(asked, [1], "the first-contact allowance asked once");
        let multi: Vec<Enqueued> = multi.into_iter().map(Result::unwrap).collect();
        assert!(multi.iter().all(|e| !e.duplicate));
        // The multi-send ran first: the single send to `a` with its
        // message id is its duplicate.
        let to_a = singles[0].as_ref().unwrap();
        assert!(to_a.duplicate && to_a.id == multi[0].id);
        assert!(!singles[1].as_ref().unwrap().duplicate);
        assert_eq!(payloads_of(&store, &guarded), [b"hgBODY".to_vec()]);
    }

    #[test]
    fn an_envelope_refused_for_a_full_disk_fails_alone_in_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with(dir.path().join("relay.db"), &SMALL, T0).unwrap();
        let (a, b) = (register(&store, 1), register(&store, 2));
        let guarded = register_guarded(&store, 3);
        let ids = fill(&store, &a, 0);
        // Room for small envelopes again, not for a large one.
        store.ack(&a, &ids[..3]).unwrap();
        let before = store.totals().unwrap();
        store.writer.hooks().gather_next_batch(3);
        let policy = QueuePolicy::default();
        let (multi, asked, large, small) = std::thread::scope(|s| {
            let store = &store;
            let multi = s.spawn(move || {
                let mut asked = 0;
                let results = store.enqueue_many(
                    &[to(&guarded, 1, b"h")],
                    b"body",
                    &mut |_| {
                        asked += 1;
                        true
                    },
                    &policy,
                    T0,
                );
                (results, asked)
            });
            while !store.writer.leading() {
                std::thread::yield_now();
            }
            let large = s.spawn(move || {
                store.enqueue(&b, &MessageId([1; 16]), &[1; 300_000], OPEN, &policy, T0)
            });
            let small = s
                .spawn(move || store.enqueue(&b, &MessageId([2; 16]), b"small", OPEN, &policy, T0));
            let (multi, asked) = multi.join().unwrap();
            (multi, asked, large.join().unwrap(), small.join().unwrap())
        });
        assert!(matches!(large, Err(StoreError::DiskFull)));
        assert!(!small.unwrap().duplicate);
        assert!(matches!(&multi.unwrap()[..], [Ok(e)] if !e.duplicate));
        assert_eq!(asked, 1, "asked once, even if the batch started over");
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                envelopes: before.envelopes + 2,
                bytes: before.bytes + 5 + (1 + 4)
            }
        );
    }

    // The asynchronous path (`enqueue_async`, `ack_async`): the writer
    // thread runs the write in its next batch, no thread waits for it.

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Envelope `n`, `payload`, for `to`.
    fn request(to: &MailboxAddress, n: u32, payload: &[u8], access: OwnedAccess) -> EnqueueRequest {
        EnqueueRequest {
            recipient: *to,
            message_id: message_id(n),
            payload: Arc::new(payload.to_vec()),
            access,
            policy: QueuePolicy::default(),
            now: T0,
        }
    }

    const NO_KEY: OwnedAccess = OwnedAccess::Key(None);

    #[test]
    fn an_async_write_is_answered_only_once_its_batch_is_committed() {
        let (_dir, store) = fresh();
        let store = Arc::new(store);
        let bob = register(&*store, 1);
        let before = commits(&store);
        // The next batch runs once it holds two writes.
        store.writer.hooks().gather_next_batch(2);
        runtime().block_on(async {
            let mut first = store
                .clone()
                .enqueue_async(request(&bob, 1, b"first", NO_KEY));
            // Queued, but its batch has not committed: no answer, and
            // nothing a reader could see.
            let early = tokio::time::timeout(Duration::from_millis(200), &mut first).await;
            assert!(early.is_err(), "answered before its commit");
            assert_eq!(store.usage(&bob).unwrap().envelopes, 0);
            assert_eq!(commits(&store), before);
            let second = store
                .clone()
                .enqueue_async(request(&bob, 2, b"second", NO_KEY));
            let (first, second) = (first.await.unwrap(), second.await.unwrap());
            assert_eq!(commits(&store), before + 1, "one batch");
            // Answered after the commit: a reader sees both, in order.
            let page = store.fetch(&bob, 0, 10, usize::MAX, T0).unwrap();
            let ids: Vec<u64> = page.envelopes.iter().map(|e| e.id).collect();
            assert_eq!(ids, [first.id, second.id]);
            let removed = store
                .clone()
                .ack_async(bob, vec![first.id, second.id, 12345])
                .await
                .unwrap();
            assert_eq!(removed, 2);
        });
        assert_eq!(store.usage(&bob).unwrap(), MailboxUsage::default());
        assert_eq!(store.totals().unwrap(), StoreTotals::default());
    }

    #[test]
    fn an_async_write_refused_in_a_batch_fails_alone_and_a_failed_commit_fails_them_all() {
        let (_dir, store) = fresh();
        let store = Arc::new(store);
        let bob = register(&*store, 1);
        let guarded = register_guarded(&store, 2);
        let nobody = MailboxAddress::from_bytes([9; 32]);
        let policy = QueuePolicy::default();
        let queued = store
            .enqueue(&bob, &message_id(1), b"queued", OPEN, &policy, T0)
            .unwrap();
        let before = commits(&store);
        store.writer.hooks().gather_next_batch(4);
        runtime().block_on(async {
            let stored = store
                .clone()
                .enqueue_async(request(&bob, 2, b"new", NO_KEY));
            let no_access = store
                .clone()
                .enqueue_async(request(&guarded, 3, b"no key", NO_KEY));
            let unknown = store
                .clone()
                .enqueue_async(request(&nobody, 4, b"x", NO_KEY));
            let acked = store.clone().ack_async(bob, vec![queued.id]);
            assert!(!stored.await.unwrap().duplicate);
            assert!(matches!(no_access.await, Err(StoreError::AccessDenied)));
            assert!(matches!(unknown.await, Err(StoreError::UnknownRecipient)));
            assert_eq!(acked.await.unwrap(), 1);
        });
        assert_eq!(commits(&store), before + 1, "one batch");
        assert_eq!(payloads_of(&store, &bob), [b"new".to_vec()]);
        assert_eq!(store.usage(&guarded).unwrap().envelopes, 0);

        // As a crash before the commit, or a disk failing it, would.
        store.writer.hooks().fail_next_commit();
        store.writer.hooks().gather_next_batch(2);
        let first_contact = || request(&guarded, 3, b"hello", OwnedAccess::FirstContact);
        runtime().block_on(async {
            let to_bob = store
                .clone()
                .enqueue_async(request(&bob, 5, b"lost", NO_KEY));
            let to_guarded = store.clone().enqueue_async(first_contact());
            assert!(to_bob.await.is_err() && to_guarded.await.is_err());
        });
        assert_eq!(payloads_of(&store, &bob), [b"new".to_vec()]);
        assert_eq!(store.usage(&guarded).unwrap().envelopes, 0);
        // Nothing stays failed: the retry is stored anew.
        let retried = runtime()
            .block_on(store.clone().enqueue_async(first_contact()))
            .unwrap();
        assert!(!retried.duplicate);
        assert_eq!(payloads_of(&store, &guarded), [b"hello".to_vec()]);
    }

    #[test]
    fn dropping_the_store_with_async_writes_in_flight_commits_and_answers_every_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        let bob = register(&*store, 1);
        // More than one batch; none runs before every write is queued.
        let n = group_commit::MAX_BATCH_OPERATIONS + 44;
        store.writer.hooks().gather_next_batch(n);
        let answers: Vec<_> = (0..n as u32)
            .map(|k| {
                let payload = k.to_be_bytes();
                store
                    .clone()
                    .enqueue_async(request(&bob, k, &payload, NO_KEY))
            })
            .collect();
        // The last reference: the writer runs what is queued, then ends.
        drop(store);
        let results = runtime().block_on(async {
            let mut results = Vec::new();
            for answer in answers {
                results.push(answer.await);
            }
            results
        });
        assert!(results.iter().all(|r| matches!(r, Ok(e) if !e.duplicate)));
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.usage(&bob).unwrap().envelopes, n as u64);
    }

    #[test]
    fn async_fetches_read_every_answered_write_and_are_answered_when_the_store_closes() {
        let (_dir, store) = fresh();
        let store = Arc::new(store);
        let bob = register(&*store, 1);
        let rt = runtime();
        let ids: Vec<u64> = (0..20)
            .map(|k| {
                let stored = rt
                    .block_on(store.clone().enqueue_async(request(&bob, k, b"x", NO_KEY)))
                    .unwrap();
                // Answered after its commit: the read thread sees it.
                let page = rt
                    .block_on(
                        store
                            .clone()
                            .fetch_async(bob, stored.id - 1, 10, usize::MAX, T0),
                    )
                    .unwrap();
                assert_eq!(page.envelopes.len(), 1);
                assert_eq!(page.envelopes[0].id, stored.id);
                stored.id
            })
            .collect();
        // Many reads queued at once, then the store dropped: each is run
        // and answered, with the page it asked for.
        let reads: Vec<_> = (0..ids.len())
            .map(|k| {
                store
                    .clone()
                    .fetch_async(bob, ids[k] - 1, 1, usize::MAX, T0)
            })
            .collect();
        drop(store);
        let pages: Vec<_> = rt.block_on(async {
            let mut pages = Vec::new();
            for read in reads {
                pages.push(read.await.unwrap());
            }
            pages
        });
        let got: Vec<u64> = pages.iter().map(|p| p.envelopes[0].id).collect();
        assert_eq!(got, ids);
    }

    /// The envelopes `address` is given by a fetch.
    fn payloads_of(store: &SqliteStore, address: &MailboxAddress) -> Vec<Vec<u8>> {
        let page = store.fetch(address, 0, 100, usize::MAX, T0).unwrap();
        page.envelopes.into_iter().map(|e| e.payload).collect()
    }

    #[test]
    fn a_fetch_reads_the_mailbox_index_in_order_and_is_never_prepared_again() {
        let (_dir, store) = fresh();
        let a = register(&store, 1);
        let policy = QueuePolicy::default();
        for n in 0..3 {
            store
                .enqueue(&a, &message_id(n), b"x", OPEN, &policy, T0)
                .unwrap();
        }
        let counts: Vec<usize> = [(0, 1), (0, 5), (1, 2), (0, 0)]
            .into_iter()
            .map(|(after, max)| {
                let page = store.fetch(&a, after, max, usize::MAX, T0).unwrap();
                page.envelopes.len()
            })
            .collect();
        assert_eq!(counts, [1, 3, 2, 0]);
        store
            .readers
            .read(|conn| {
                let plan: Vec<String> = conn
                    .prepare(&format!("EXPLAIN QUERY PLAN {FETCH}"))?
                    .query_map(params![a.as_bytes(), 0, 10, 0], |r| r.get(3))?
                    .collect::<Result<_, _>>()?;
                assert!(
                    plan.iter().any(|p| p.contains("envelopes_by_mailbox")),
                    "{plan:?}"
                );
                assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "{plan:?}");
                // Four fetches with other values, no new parse and plan.
                let stmt = conn.prepare_cached(FETCH)?;
                assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn reopening_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let (address, id) = {
            let store = SqliteStore::open(&path).unwrap();
            let address = register(&store, 1);
            let id = store
                .enqueue(
                    &address,
                    &MessageId([1; 16]),
                    b"kept",
                    OPEN,
                    &QueuePolicy::default(),
                    T0,
                )
                .unwrap()
                .id;
            (address, id)
        };
        let store = SqliteStore::open(&path).unwrap();
        let page = store.fetch(&address, 0, 10, usize::MAX, T0).unwrap();
        assert_eq!(
            page.envelopes,
            [Envelope {
                id,
                payload: b"kept".to_vec()
            }]
        );
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                envelopes: 1,
                bytes: 4
            }
        );
    }

    /// 64 pages of 4 KiB: a database that fills up after a few dozen
    /// envelopes (SQLite's `max_page_count` stands in for a full disk).
    const SMALL: SqliteOptions = SqliteOptions {
        envelope_ttl: DEFAULT_ENVELOPE_TTL,
        max_database_bytes: Some(256 * 1024),
    };

    /// Enqueues 8 KiB envelopes for `address`, with message ids numbered
    /// from `first`, until the store is full; returns their ids.
    fn fill(store: &SqliteStore, address: &MailboxAddress, first: u32) -> Vec<u64> {
        let mut ids = Vec::new();
        for i in first..first + 1000 {
            let mut message_id = [0u8; 16];
            message_id[..4].copy_from_slice(&i.to_be_bytes());
            match store.enqueue(
                address,
                &MessageId(message_id),
                &[0xAB; 8192],
                Access::Key(None),
                &QueuePolicy::default(),
                T0,
            ) {
                Ok(stored) => ids.push(stored.id),
                Err(StoreError::DiskFull) => return ids,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("the database never filled up");
    }

    #[test]
    fn a_full_database_refuses_envelopes_serves_fetch_and_ack_and_recovers_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with(dir.path().join("relay.db"), &SMALL, T0).unwrap();
        let address = register(&store, 1);
        let ids = fill(&store, &address, 0);
        assert!(ids.len() > 5, "{} envelopes fit", ids.len());
        // Refused again, and the refusal changed nothing.
        assert!(matches!(
            store.enqueue(
                &address,
                &MessageId([9; 16]),
                &[1; 8192],
                Access::Key(None),
                &QueuePolicy::default(),
                T0
            ),
            Err(StoreError::DiskFull)
        ));
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                envelopes: ids.len() as u64,
                bytes: ids.len() as u64 * 8192
            }
        );
        // Everything is still delivered.
        let page = store.fetch(&address, 0, 1000, usize::MAX, T0).unwrap();
        assert_eq!(page.envelopes.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
        // Acknowledging needs no space, and frees it...
        let half = ids.len() / 2;
        assert_eq!(store.ack(&address, &ids[..half]).unwrap(), half as u32);
        // ...after which envelopes are taken again, with no reopening.
        let again = fill(&store, &address, 1000);
        assert!(again.len() >= half - 1, "{} of {half}", again.len());
        assert_eq!(
            store.ack(&address, &ids[half..]).unwrap(),
            (ids.len() - half) as u32
        );
        assert_eq!(store.ack(&address, &again).unwrap(), again.len() as u32);
        assert_eq!(store.totals().unwrap(), StoreTotals::default());
    }

    /// Rows of `bodies`, and the bytes in the `payload` column of
    /// `envelopes`.
    fn stored(store: &SqliteStore) -> (i64, i64) {
        let conn = store.lock().unwrap();
        conn.query_row(
            "SELECT (SELECT COUNT(*) FROM bodies),
                    (SELECT COALESCE(SUM(length(payload)), 0) FROM envelopes)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    #[test]
    fn a_multi_send_body_is_stored_once_and_deleted_with_its_last_envelope() {
        let (_dir, store) = fresh();
        let (a, b, c) = (
            register(&store, 1),
            register(&store, 2),
            register(&store, 3),
        );
        let policy = QueuePolicy::default();
        let body = vec![0x42; 10_000];
        let recipients = [to(&a, 1, b"ha"), to(&b, 2, b"hb"), to(&c, 3, b"hc")];
        let ids: Vec<u64> = store
            .enqueue_many(&recipients, &body, &mut |_| false, &policy, T0)
            .unwrap()
            .iter()
            .map(|r| r.as_ref().unwrap().id)
            .collect();
        // One body row; the envelope rows hold the headers.
        assert_eq!(stored(&store), (1, 6));
        // Counted in full against each recipient's mailbox, once against
        // the store.
        assert_eq!(store.usage(&a).unwrap().bytes, 10_002);
        assert_eq!(store.totals().unwrap().bytes, 6 + 10_000);
        // A resend, and a request whose recipients are all refused, store
        // no body.
        store
            .enqueue_many(&recipients, &body, &mut |_| false, &policy, T0)
            .unwrap();
        let nobody = MailboxAddress::from_bytes([0xAB; 32]);
        store
            .enqueue_many(&[to(&nobody, 1, b"")], &body, &mut |_| false, &policy, T0)
            .unwrap();
        assert_eq!(stored(&store), (1, 6));
        // Kept while any recipient has not acknowledged it...
        store.ack(&a, &[ids[0]]).unwrap();
        store.ack(&b, &[ids[1]]).unwrap();
        assert_eq!(stored(&store), (1, 2));
        // ...and gone with the last.
        store.ack(&c, &[ids[2]]).unwrap();
        assert_eq!(stored(&store), (0, 0));

        // Expiry and unlinking let go of it the same way.
        let policy = QueuePolicy {
            envelope_ttl: Duration::from_secs(3600),
            ..policy
        };
        store
            .enqueue_many(&recipients, &body, &mut |_| false, &policy, T0)
            .unwrap();
        let later = UnixTime::from_secs(T0.as_secs() + 3600);
        assert_eq!(store.sweep_expired(later, 2).unwrap().envelopes, 2);
        assert_eq!(stored(&store), (1, 2));
        assert_eq!(store.sweep_expired(later, 2).unwrap().envelopes, 1);
        assert_eq!(stored(&store), (0, 0));
        assert_eq!(store.totals().unwrap(), StoreTotals::default());
    }

    #[test]
    fn a_full_database_refuses_a_whole_multi_send_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with(dir.path().join("relay.db"), &SMALL, T0).unwrap();
        let (a, b) = (register(&store, 1), register(&store, 2));
        let ids = fill(&store, &a, 0);
        let totals = store.totals().unwrap();
        // Small headers would fit; the body does not: nothing is stored,
        // for any recipient.
        let recipients = [to(&b, 1, b"h"), to(&a, 2, b"h")];
        assert!(matches!(
            store.enqueue_many(
                &recipients,
                &[7; 16_384],
                &mut |_| false,
                &QueuePolicy::default(),
                T0
            ),
            Err(StoreError::DiskFull)
        ));
        assert_eq!(store.totals().unwrap(), totals);
        assert_eq!(store.usage(&b).unwrap(), MailboxUsage::default());
        assert_eq!(stored(&store).0, 0);
        // After acknowledgements it goes through, with no reopening.
        store.ack(&a, &ids).unwrap();
        let results = store
            .enqueue_many(
                &recipients,
                &[7; 16_384],
                &mut |_| false,
                &QueuePolicy::default(),
                T0,
            )
            .unwrap();
        assert!(results.iter().all(|r| matches!(r, Ok(e) if !e.duplicate)));
    }

    #[test]
    fn a_version_5_database_gets_shared_bodies_and_keeps_its_envelopes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let bob = {
            let store = SqliteStore::open(&path).unwrap();
            register_with_one_queued(&store, 2)
        };
        // As version 5 left it: no shared bodies.
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "DROP INDEX envelopes_by_body; DROP TABLE bodies;
                 ALTER TABLE envelopes DROP COLUMN body; PRAGMA user_version = 5;",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        {
            let conn = store.lock().unwrap();
            let version: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(version, SCHEMA_VERSION);
        }
        let page = store.fetch(&bob, 0, 10, usize::MAX, T0).unwrap();
        assert_eq!(page.envelopes.len(), 1);
        assert_eq!(page.envelopes[0].payload, b"queued");
        let carol = register(&store, 3);
        store
            .enqueue_many(
                &[to(&bob, 2, b"b:"), to(&carol, 2, b"c:")],
                b"body",
                &mut |_| false,
                &QueuePolicy::default(),
                T0,
            )
            .unwrap();
        let page = store.fetch(&bob, 0, 10, usize::MAX, T0).unwrap();
        assert_eq!(page.envelopes[1].payload, b"b:body");
        assert_eq!(stored(&store), (1, 6 + 4));
    }

    /// Length and SHA-256 of a file's bytes, if it exists.
    fn file_bytes(path: &std::path::Path) -> Option<(usize, Vec<u8>)> {
        use sha2::Digest;
        let bytes = std::fs::read(path).ok()?;
        Some((bytes.len(), sha2::Sha256::digest(&bytes).to_vec()))
    }

    /// A relay that crashed on a full disk starts again: opening writes
    /// nothing, even with a write-ahead log left behind by the crash.
    #[test]
    fn a_full_database_left_by_a_crash_opens_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let wal = dir.path().join("relay.db-wal");
        let (address, ids) = {
            let store = SqliteStore::open_with(&path, &SMALL, T0).unwrap();
            let address = register(&store, 1);
            let ids = fill(&store, &address, 0);
            // A crash: the connection is never closed, so nothing is
            // checkpointed and the log stays.
            std::mem::forget(store);
            (address, ids)
        };
        let before = (file_bytes(&path), file_bytes(&wal));
        assert!(before.1.as_ref().is_some_and(|w| w.0 > 0), "a log was left");

        let store = SqliteStore::open_with(&path, &SMALL, T0).unwrap();
        assert_eq!(
            (file_bytes(&path), file_bytes(&wal)),
            before,
            "opening wrote"
        );
        let page = store.fetch(&address, 0, 1000, usize::MAX, T0).unwrap();
        assert_eq!(page.envelopes.len(), ids.len());
        assert!(matches!(
            store.enqueue(
                &address,
                &MessageId([9; 16]),
                &[1; 8192],
                Access::Key(None),
                &QueuePolicy::default(),
                T0
            ),
            Err(StoreError::DiskFull)
        ));
        assert_eq!(store.ack(&address, &ids).unwrap(), ids.len() as u32);
        store
            .enqueue(
                &address,
                &MessageId([9; 16]),
                b"x",
                Access::Key(None),
                &QueuePolicy::default(),
                T0,
            )
            .unwrap();
    }

    /// A mailbox registered for the key of `seed`, with one envelope
    /// (`"queued"`) waiting in it.
    fn register_with_one_queued(store: &SqliteStore, seed: u8) -> MailboxAddress {
        let address = register(store, seed);
        store
            .enqueue(
                &address,
                &MessageId([1; 16]),
                b"queued",
                OPEN,
                &QueuePolicy::default(),
                T0,
            )
            .unwrap();
        address
    }

    #[test]
    fn a_version_3_database_gets_the_device_list_table_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let bob = {
            let store = SqliteStore::open(&path).unwrap();
            register_with_one_queued(&store, 2)
        };
        // As version 3 left it: no device list table.
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "DROP TABLE device_lists; DROP TABLE listed_devices; PRAGMA user_version = 3;",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let version: i64 = store
            .lock()
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(store.usage(&bob).unwrap().envelopes, 1);
        store.publish_device_list(&bob, 1, b"list").unwrap();
        assert_eq!(
            store.device_list(&bob).unwrap().as_deref(),
            Some(&b"list"[..])
        );
    }

    #[test]
    fn a_version_4_database_records_the_devices_its_stored_lists_name() {
        use super::super::unlinking::test_lists::signed_list;
        use sotto_core::IdentityKeyPair;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let alice = IdentityKeyPair::from_seed(&[20; 32]);
        let bob = IdentityKeyPair::from_seed(&[22; 32]);
        let laptop = IdentityKeyPair::from_seed(&[21; 32]);
        let (alice_box, bob_box) = (
            MailboxAddress::of(alice.public()),
            MailboxAddress::of(bob.public()),
        );
        let laptop_box = {
            let store = SqliteStore::open(&path).unwrap();
            let laptop_box = register_with_one_queued(&store, 21);
            let alice_list = signed_list(&alice, 2, &[&alice, &laptop]);
            store
                .publish_device_list(&alice_box, 2, &alice_list)
                .unwrap();
            let bob_list = signed_list(&bob, 1, &[&bob, &laptop]);
            store.publish_device_list(&bob_box, 1, &bob_list).unwrap();
            let junk = MailboxAddress::from_bytes([7; 32]);
            store.publish_device_list(&junk, 1, b"no list").unwrap();
            laptop_box
        };
        // As version 4 left it: no record of the devices lists name.
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("DROP TABLE listed_devices; PRAGMA user_version = 4;")
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        {
            let conn = store.lock().unwrap();
            let version: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(version, SCHEMA_VERSION);
            let recorded: i64 = conn
                .query_row("SELECT COUNT(*) FROM listed_devices", [], |r| r.get(0))
                .unwrap();
            assert_eq!(
                recorded, 4,
                "two devices in each of two lists, none from junk"
            );
        }
        // The record counts: Alice unlinking the laptop keeps its mailbox
        // while Bob's list (stored before the migration) names it...
        store
            .publish_device_list(&alice_box, 3, &signed_list(&alice, 3, &[&alice]))
            .unwrap();
        assert_eq!(store.usage(&laptop_box).unwrap().envelopes, 1);
        // ...and Bob's list, compared with the stored one, removes it.
        store
            .publish_device_list(&bob_box, 2, &signed_list(&bob, 2, &[&bob]))
            .unwrap();
        assert_eq!(store.usage(&laptop_box).unwrap(), MailboxUsage::default());
        assert!(store.take_bundle(&laptop_box).unwrap().is_none());
        assert_eq!(store.totals().unwrap(), StoreTotals::default());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::Corrupt(_))
        ));
    }

    /// The schema of version 1, as the previous release created it.
    const SCHEMA_V1: &str = "
        CREATE TABLE envelopes (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            mailbox     BLOB NOT NULL,
            message_id  BLOB NOT NULL,
            payload     BLOB NOT NULL,
            UNIQUE (mailbox, message_id)
        );
        CREATE INDEX envelopes_by_mailbox ON envelopes (mailbox, id);
        CREATE TABLE mailbox_usage (
            mailbox  BLOB PRIMARY KEY,
            count    INTEGER NOT NULL,
            bytes    INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE signed_prekeys (
            mailbox       BLOB PRIMARY KEY,
            identity_key  BLOB NOT NULL,
            prekey_id     INTEGER NOT NULL,
            public_key    BLOB NOT NULL,
            signature     BLOB NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE one_time_prekeys (
            seq         INTEGER PRIMARY KEY AUTOINCREMENT,
            mailbox     BLOB NOT NULL,
            prekey_id   INTEGER NOT NULL,
            public_key  BLOB NOT NULL,
            UNIQUE (mailbox, prekey_id)
        );
        PRAGMA user_version = 1;
    ";

    #[test]
    fn a_version_1_database_is_migrated_and_its_envelopes_get_an_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let a = MailboxAddress::from_bytes([1; 32]);
        let b = MailboxAddress::from_bytes([2; 32]);
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA_V1).unwrap();
            for (mailbox, n, payload) in
                [(&a, 1u8, &b"one"[..]), (&a, 2, b"two!"), (&b, 3, b"5five")]
            {
                conn.execute(
                    "INSERT INTO envelopes (mailbox, message_id, payload) VALUES (?1, ?2, ?3)",
                    params![mailbox.as_bytes(), [n; 16], payload],
                )
                .unwrap();
            }
            conn.execute_batch(&format!(
                "INSERT INTO mailbox_usage VALUES (x'{}', 2, 7), (x'{}', 1, 5);",
                "01".repeat(32),
                "02".repeat(32)
            ))
            .unwrap();
        }

        let ttl = Duration::from_secs(24 * 3600);
        let store = SqliteStore::open_with_ttl(&path, ttl, T0).unwrap();
        {
            let conn = store.lock().unwrap();
            let version: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(version, SCHEMA_VERSION);
            let expiries: Vec<i64> = conn
                .prepare("SELECT expiry_hour FROM envelopes ORDER BY id")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let expected = i64::try_from(T0.hour() + 24).unwrap();
            assert_eq!(expiries, [expected; 3], "now + ttl, in whole hours");
        }
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                envelopes: 3,
                bytes: 12
            }
        );
        // Delivered until then, gone after.
        let day = UnixTime::from_secs(T0.as_secs() + 24 * 3600);
        let before = UnixTime::from_secs(day.as_secs() - 1);
        assert_eq!(
            store
                .fetch(&a, 0, 10, usize::MAX, before)
                .unwrap()
                .envelopes
                .len(),
            2
        );
        assert!(
            store
                .fetch(&a, 0, 10, usize::MAX, day)
                .unwrap()
                .envelopes
                .is_empty()
        );

        // Opening again does not migrate again (the expiry stays).
        drop(store);
        let later = UnixTime::from_secs(T0.as_secs() + 100 * 3600);
        let store = SqliteStore::open_with_ttl(&path, ttl, later).unwrap();
        assert!(
            store
                .fetch(&a, 0, 10, usize::MAX, day)
                .unwrap()
                .envelopes
                .is_empty()
        );
        assert_eq!(
            store.sweep_expired(day, 100).unwrap(),
            Swept {
                envelopes: 3,
                bytes: 12
            }
        );
        assert_eq!(store.totals().unwrap(), StoreTotals::default());
        assert_eq!(store.usage(&a).unwrap(), MailboxUsage::default());
        // The migrated file takes new envelopes, with ids that keep increasing.
        let c = register(&store, 9);
        let next = store
            .enqueue(
                &c,
                &MessageId([4; 16]),
                b"new",
                OPEN,
                &QueuePolicy::default(),
                day,
            )
            .unwrap();
        assert!(next.id > 3);
    }

    /// The schema of version 2, as the previous release created it.
    const SCHEMA_V2: &str = "
        CREATE TABLE envelopes (
            id           INTEGER PRIMARY KEY AUTOINCREMENT,
            mailbox      BLOB NOT NULL,
            message_id   BLOB NOT NULL,
            payload      BLOB NOT NULL,
            expiry_hour  INTEGER NOT NULL,
            UNIQUE (mailbox, message_id)
        );
        CREATE INDEX envelopes_by_mailbox ON envelopes (mailbox, id);
        CREATE INDEX envelopes_by_expiry ON envelopes (expiry_hour, id);
        CREATE TABLE mailbox_usage (
            mailbox  BLOB PRIMARY KEY,
            count    INTEGER NOT NULL,
            bytes    INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE totals (
            id     INTEGER PRIMARY KEY CHECK (id = 0),
            count  INTEGER NOT NULL,
            bytes  INTEGER NOT NULL
        );
        CREATE TABLE signed_prekeys (
            mailbox       BLOB PRIMARY KEY,
            identity_key  BLOB NOT NULL,
            prekey_id     INTEGER NOT NULL,
            public_key    BLOB NOT NULL,
            signature     BLOB NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE one_time_prekeys (
            seq         INTEGER PRIMARY KEY AUTOINCREMENT,
            mailbox     BLOB NOT NULL,
            prekey_id   INTEGER NOT NULL,
            public_key  BLOB NOT NULL,
            UNIQUE (mailbox, prekey_id)
        );
        PRAGMA user_version = 2;
    ";

    #[test]
    fn a_version_2_database_is_migrated_and_its_mailboxes_have_no_verifier_until_published() {
        use sotto_core::{AccessKey, IdentityKeyPair, SignedPreKey};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let owner = IdentityKeyPair::from_seed(&[4; 32]);
        let address = MailboxAddress::of(owner.public());
        let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
        let spk = SignedPreKey::generate(SignedPreKeyId::new(3), &owner, &mut rng);
        let expiry = i64::try_from(T0.hour() + 24).unwrap();
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA_V2).unwrap();
            conn.execute(
                "INSERT INTO signed_prekeys VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    address.as_bytes(),
                    owner.public().as_bytes(),
                    spk.id().get(),
                    spk.public().as_bytes(),
                    spk.signature().as_bytes()
                ],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO envelopes (mailbox, message_id, payload, expiry_hour)
                 VALUES (?1, ?2, ?3, ?4)",
                params![address.as_bytes(), [1u8; 16], b"queued".to_vec(), expiry],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO mailbox_usage VALUES (?1, 1, 6)",
                [address.as_bytes()],
            )
            .unwrap();
            conn.execute_batch("INSERT INTO totals VALUES (0, 1, 6);")
                .unwrap();
        }

        let store = SqliteStore::open_with_ttl(&path, DEFAULT_ENVELOPE_TTL, T0).unwrap();
        {
            let conn = store.lock().unwrap();
            let version: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(version, SCHEMA_VERSION);
            let verifiers: Vec<Option<Vec<u8>>> = conn
                .prepare("SELECT access_verifier FROM signed_prekeys")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(
                verifiers,
                [None],
                "no verifier until the owner publishes one"
            );
        }
        // Everything kept: the queued envelope, the counters, the bundle.
        let page = store.fetch(&address, 0, 10, usize::MAX, T0).unwrap();
        assert_eq!(page.envelopes.len(), 1);
        assert_eq!(page.envelopes[0].payload, b"queued");
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                envelopes: 1,
                bytes: 6
            }
        );
        let bundle = store.take_bundle(&address).unwrap().unwrap().bundle;
        assert_eq!(bundle.signed_prekey_id, SignedPreKeyId::new(3));
        bundle.verify().unwrap();

        // Without a verifier the mailbox takes envelopes from anyone...
        let policy = QueuePolicy::default();
        store
            .enqueue(&address, &MessageId([2; 16]), b"open", OPEN, &policy, T0)
            .unwrap();
        // ...until its owner publishes one, which the migrated file keeps.
        let key = AccessKey::derive(&owner).unwrap();
        let upload = PreKeyUpload::new(Some(&spk), &[]).with_access_verifier(key.verifier());
        store.publish_prekeys(owner.public(), &upload, 10).unwrap();
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert!(matches!(
            store.enqueue(&address, &MessageId([3; 16]), b"x", OPEN, &policy, T0),
            Err(StoreError::AccessDenied)
        ));
        let with_key = Access::Key(Some(&key));
        assert!(
            !store
                .enqueue(&address, &MessageId([3; 16]), b"x", with_key, &policy, T0)
                .unwrap()
                .duplicate
        );
    }
}
