//! Opening, creating and re-keying a store file.

use std::path::Path;

use rand::SeedableRng;
use rand::rngs::{StdRng, SysRng};
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior, params};
use sotto_core::{IdentityKeyPair, SignedPreKey, SignedPreKeyId};

use crate::checkpoint::Checkpointer;
use crate::crypto::{DatabaseKey, KdfRecord, Keys, Secret};
use crate::db::Db;
use crate::error::{Error, Result, Row};
use crate::options::{Durability, KdfParams, OpenOptions};
use crate::records::PreKeyIds;
use crate::schema::{
    self, APPLICATION_ID, MIGRATIONS, Migration, SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4,
    SCHEMA_V5, SCHEMA_V6, SCHEMA_V7, SCHEMA_V8, SCHEMA_V11, SCHEMA_VERSION,
};
use crate::seen::SeenWindow;
use crate::testing::Faults;

/// An open, unlocked store: one SQLite file holding a profile's identity,
/// prekeys, contacts, sessions and history, every sensitive value sealed.
///
/// A `Store` is one connection. Several `Store`s (in one process or
/// several) may have the same file open: every operation reads the state
/// it needs inside its own transaction, so none works on stale sessions.
pub struct Store {
    /// Declared before `conn`: its thread (and connection) ends first, so
    /// the store's own connection is the last one to close the file.
    pub(crate) checkpointer: Option<Checkpointer>,
    pub(crate) conn: Connection,
    pub(crate) keys: Keys,
    pub(crate) rng: StdRng,
    pub(crate) faults: Faults,
    pub(crate) seen: SeenWindow,
}

impl core::fmt::Debug for Store {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// What a new store file starts with: a fresh identity, or the identity
/// and prekey id counters of a profile restored from a history archive (so
/// that no prekey id it used before is used again).
pub(crate) struct Initial {
    pub(crate) identity: IdentityKeyPair,
    pub(crate) prekey_ids: PreKeyIds,
}

/// Maps "this is not a database" to [`Error::NotAStore`].
fn not_a_store(e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Error::NotAStore,
        _ => Error::from(e),
    }
}

pub(crate) fn system_rng() -> Result<StdRng> {
    StdRng::try_from_rng(&mut SysRng).map_err(|_| Error::Rng)
}

/// Makes the database file and its `-wal` / `-shm` companions readable and
/// writable by their owner only (0600), whatever the umask: a copy of the
/// file is all an offline passphrase guess needs. A new database file is
/// created with that mode before SQLite opens it; SQLite gives the journal
/// files the database file's mode when it creates them.
#[cfg(unix)]
fn restrict_files(path: &Path, create: bool) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if create {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(Error::Io)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = std::path::PathBuf::from(file);
        match std::fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .map_err(Error::Io)?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_files(_: &Path, _: bool) -> Result<()> {
    Ok(())
}

/// Opens the connection and sets the per-connection pragmas that never
/// write to the file. With `exclusive`, the connection keeps the file
/// locked for itself and holds the WAL index in memory instead of the
/// `-shm` file, which a full disk may have no room for (see
/// [`Store::open`]).
fn connect(
    path: &Path,
    create: bool,
    options: &OpenOptions,
    exclusive: bool,
) -> Result<Connection> {
    if !create && !path.exists() {
        return Err(Error::NotFound);
    }
    restrict_files(path, create)?;
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    if exclusive {
        // Before the first access: SQLite then never creates the -shm file.
        let _: String =
            conn.pragma_update_and_check(None, "locking_mode", "EXCLUSIVE", |r| r.get(0))?;
    }
    let configure = |conn: &Connection| -> rusqlite::Result<()> {
        conn.busy_timeout(options.busy_timeout_duration())?;
        // A tampered file must not run code through its schema.
        conn.pragma_update(None, "trusted_schema", "OFF")?;
        // Freed content is overwritten with zeros, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.pragma_update(None, "cell_size_check", "ON")?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // Room for the working set of a long history: the inner pages of
        // the message b-tree, the recent seen-envelope set, sessions and
        // contacts (SQLite's default is 2 MiB).
        conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
        conn.pragma_update(
            None,
            "synchronous",
            match options.durability_mode() {
                Durability::Full => "FULL",
                Durability::Normal => "NORMAL",
            },
        )
    };
    configure(&conn).map_err(not_a_store)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// SQLite's page cache per connection, in KiB: an upper bound, filled
/// only as pages are read.
pub(crate) const PAGE_CACHE_KIB: i64 = 16 * 1024;

fn enable_wal(conn: &Connection) -> Result<()> {
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Database(rusqlite::Error::InvalidQuery));
    }
    Ok(())
}

fn read_unlock_record(conn: &Connection) -> Result<(KdfRecord, Vec<u8>)> {
    let tx = conn.unchecked_transaction()?;
    let meta = |name: &'static str| -> Result<Vec<u8>> {
        tx.query_row(
            "SELECT value FROM meta WHERE name = ?1",
            params![name],
            |row| row.get::<_, Vec<u8>>(0),
        )
        .map_err(|e| crate::db::corrupt_or_db(e, "meta", Row::Named(name)))
    };
    let record = KdfRecord::decode(&meta("kdf")?).ok_or(Error::Corrupt {
        table: "meta",
        row: Row::Named("kdf"),
    })?;
    let wrapped = meta("wrapped_key")?;
    tx.finish()?;
    Ok((record, wrapped))
}

impl Store {
    /// Creates a new store at `path`, locked by `passphrase` (Argon2id with
    /// `options`' parameters), with a fresh identity and signed prekey.
    ///
    /// Fails with [`Error::AlreadyExists`] if the file already holds a
    /// database.
    pub fn create(
        path: impl AsRef<Path>,
        passphrase: &[u8],
        options: &OpenOptions,
    ) -> Result<Self> {
        Self::create_inner(path.as_ref(), Secret::Passphrase(passphrase), options)
    }

    /// Creates a new store at `path`, locked by a 32-byte key the
    /// application keeps elsewhere (for example in the OS keychain).
    pub fn create_with_key(
        path: impl AsRef<Path>,
        key: &[u8; 32],
        options: &OpenOptions,
    ) -> Result<Self> {
        Self::create_inner(path.as_ref(), Secret::AppKey(key), options)
    }

    /// Opens and unlocks the store at `path` with `passphrase`.
    ///
    /// The Argon2id parameters come from the file. A wrong passphrase is
    /// [`Error::WrongPassphrase`] and the file is not modified; a file
    /// written by a newer library is [`Error::SchemaTooNew`]; an older
    /// schema is migrated.
    pub fn open(path: impl AsRef<Path>, passphrase: &[u8], options: &OpenOptions) -> Result<Self> {
        Self::open_inner(path.as_ref(), Secret::Passphrase(passphrase), options)
    }

    /// Opens and unlocks the store at `path` with the application's key.
    pub fn open_with_key(
        path: impl AsRef<Path>,
        key: &[u8; 32],
        options: &OpenOptions,
    ) -> Result<Self> {
        Self::open_inner(path.as_ref(), Secret::AppKey(key), options)
    }

    fn create_inner(path: &Path, secret: Secret<'_>, options: &OpenOptions) -> Result<Self> {
        let mut rng = system_rng()?;
        let initial = Initial {
            identity: IdentityKeyPair::generate(&mut rng),
            prekey_ids: PreKeyIds {
                next_signed: 1,
                next_one_time: 1,
                next_kem: 1,
                kem_retired: None,
            },
        };
        Self::create_from(path, secret, options, rng, &initial)
    }

    /// Creates the file with `initial`'s identity and a signed prekey under
    /// the next signed prekey id.
    pub(crate) fn create_from(
        path: &Path,
        secret: Secret<'_>,
        options: &OpenOptions,
        mut rng: StdRng,
        initial: &Initial,
    ) -> Result<Self> {
        let signed_id = initial.prekey_ids.next_signed;
        let prekey_ids = PreKeyIds {
            next_signed: signed_id.checked_add(1).ok_or(Error::Corrupt {
                table: "meta",
                row: Row::Named("prekey_ids"),
            })?,
            next_one_time: initial.prekey_ids.next_one_time,
            next_kem: initial.prekey_ids.next_kem,
            kem_retired: None,
        };
        let database = DatabaseKey::generate(&mut rng);
        let record = KdfRecord::generate(&mut rng, secret, options.kdf_params());
        let wrapped = database.wrap(&mut rng, &record, secret)?;
        let keys = Keys::derive(database)?;

        let mut conn = connect(path, true, options, false)?;
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
            .map_err(not_a_store)?;
        if tables != 0 {
            return Err(Error::AlreadyExists);
        }
        // Before the first table: the message layout is made for it.
        conn.pragma_update(None, "page_size", crate::layout::PAGE_SIZE)?;
        enable_wal(&conn)?;
        {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let tables: i64 =
                tx.query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))?;
            if tables != 0 {
                return Err(Error::AlreadyExists);
            }
            tx.execute_batch(SCHEMA_V1)?;
            tx.execute_batch(SCHEMA_V2)?;
            tx.execute_batch(SCHEMA_V3)?;
            tx.execute_batch(SCHEMA_V4)?;
            tx.execute_batch(SCHEMA_V5)?;
            tx.execute_batch(SCHEMA_V6)?;
            tx.execute_batch(SCHEMA_V7)?;
            tx.execute_batch(SCHEMA_V8)?;
            // A new file takes the upgrade's path to the message layout
            // (with nothing to copy).
            schema::to_message_layout(&tx, &keys)?;
            tx.execute_batch(SCHEMA_V11)?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            schema::write_version(&tx, SCHEMA_VERSION)?;
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('kdf', ?1), ('wrapped_key', ?2)",
                params![&record.encode()[..], wrapped],
            )?;
            let db = Db::new(&tx, &keys);
            let identity = &initial.identity;
            db.put_identity(&mut rng, identity)?;
            let signed = SignedPreKey::generate(SignedPreKeyId::new(signed_id), identity, &mut rng);
            // Made now, but the store has no clock: the rotation schedule
            // starts at its first check (`since` = 0).
            db.put_signed_prekey(&mut rng, &signed, true, 0)?;
            db.put_prekey_ids(&mut rng, &prekey_ids)?;
            tx.commit()?;
        }
        Ok(Self {
            checkpointer: Checkpointer::start(&mut conn, path, options),
            conn,
            keys,
            rng,
            faults: Faults::default(),
            seen: SeenWindow::default(),
        })
    }

    fn open_inner(path: &Path, secret: Secret<'_>, options: &OpenOptions) -> Result<Self> {
        Self::open_migrating(path, secret, options, MIGRATIONS, SCHEMA_VERSION)
    }

    /// Opens the file and brings it to schema version `target` with
    /// `migrations` (the library's own, or a test's).
    pub(crate) fn open_migrating(
        path: &Path,
        secret: Secret<'_>,
        options: &OpenOptions,
        migrations: &[Migration],
        target: u32,
    ) -> Result<Self> {
        match Self::open_connection(path, secret, options, migrations, target, false) {
            // A full disk: the shared WAL index (-shm) cannot be created or
            // grown. Open for this process alone, with the index in memory,
            // so that at least everything stored can be read.
            Err(e) if e.is_out_of_space() => {
                Self::open_connection(path, secret, options, migrations, target, true)
            }
            other => other,
        }
    }

    fn open_connection(
        path: &Path,
        secret: Secret<'_>,
        options: &OpenOptions,
        migrations: &[Migration],
        target: u32,
        exclusive: bool,
    ) -> Result<Self> {
        let mut conn = connect(path, false, options, exclusive)?;
        let app_id: i32 = conn
            .pragma_query_value(None, "application_id", |row| row.get(0))
            .map_err(not_a_store)?;
        if app_id != APPLICATION_ID {
            return Err(Error::NotAStore);
        }
        let version = schema::stored_version(&conn)?.ok_or(Error::NotAStore)?;
        schema::check_supported(version, target)?;
        let (record, wrapped) = read_unlock_record(&conn)?;
        if record.method() != secret.method() {
            return Err(Error::WrongUnlockMethod {
                expected: record.method(),
            });
        }
        let keys = Keys::derive(DatabaseKey::unwrap(&record, secret, &wrapped)?)?;
        // Only now, with the right secret, may anything be written.
        enable_wal(&conn)?;
        if version < target {
            schema::migrate(&mut conn, &keys, migrations, target)?;
        }
        // With the file locked for this connection alone (a full disk), no
        // other connection can checkpoint: SQLite's automatic one stays.
        let checkpointer = match exclusive {
            true => None,
            false => Checkpointer::start(&mut conn, path, options),
        };
        Ok(Self {
            checkpointer,
            conn,
            keys,
            rng: system_rng()?,
            faults: Faults::default(),
            seen: SeenWindow::default(),
        })
    }

    /// Opens a store file this process just wrote and closed, with its
    /// database key already known (no key derivation): the last step of an
    /// archive import, after the finished file was moved into place.
    pub(crate) fn open_known(
        path: &Path,
        database: DatabaseKey,
        options: &OpenOptions,
    ) -> Result<Self> {
        let mut conn = connect(path, false, options, false)?;
        let app_id: i32 = conn
            .pragma_query_value(None, "application_id", |row| row.get(0))
            .map_err(not_a_store)?;
        if app_id != APPLICATION_ID
            || schema::stored_version(&conn)?.ok_or(Error::NotAStore)? != SCHEMA_VERSION
        {
            return Err(Error::NotAStore);
        }
        let keys = Keys::derive(database)?;
        enable_wal(&conn)?;
        Ok(Self {
            checkpointer: Checkpointer::start(&mut conn, path, options),
            conn,
            keys,
            rng: system_rng()?,
            faults: Faults::default(),
            seen: SeenWindow::default(),
        })
    }

    /// For filling a new file that is thrown away if anything fails (an
    /// archive import into a temporary file): no journal and no syncs, so
    /// the data is written once, straight into the file. Nothing may be
    /// rolled back afterwards (the file is deleted instead); the caller
    /// syncs the file when it is complete
    /// ([`close_into_one_file`](Self::close_into_one_file)).
    pub(crate) fn begin_bulk_load(&mut self) -> Result<()> {
        self.stop_checkpointer()?;
        let mode: String =
            self.conn
                .pragma_update_and_check(None, "journal_mode", "OFF", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("off") {
            return Err(Error::Database(rusqlite::Error::InvalidQuery));
        }
        self.conn.pragma_update(None, "synchronous", "OFF")?;
        Ok(())
    }

    /// Writes everything into the main file and leaves the write-ahead
    /// log (the file stays in rollback-journal mode until it is opened
    /// again), then closes the connection: afterwards the file alone holds
    /// the whole store and can be moved.
    pub(crate) fn close_into_one_file(mut self) -> Result<DatabaseKey> {
        self.stop_checkpointer()?;
        let mode: String =
            self.conn
                .pragma_update_and_check(None, "journal_mode", "DELETE", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(Error::Database(rusqlite::Error::InvalidQuery));
        }
        let database = self.keys.database().clone();
        self.conn.close().map_err(|(_, e)| Error::from(e))?;
        Ok(database)
    }

    /// Re-locks the store with a new passphrase (and fresh salt and
    /// `kdf` parameters). Only the wrapped database key is rewritten; the
    /// history is not re-encrypted. The application should have the user
    /// confirm the current passphrase first.
    pub fn change_passphrase(&mut self, new_passphrase: &[u8], kdf: KdfParams) -> Result<()> {
        self.rewrap(Secret::Passphrase(new_passphrase), kdf)
    }

    /// Re-locks the store with a new application key (switching from a
    /// passphrase, or rotating the key). Only the wrapped database key is
    /// rewritten.
    pub fn change_key(&mut self, new_key: &[u8; 32]) -> Result<()> {
        self.rewrap(Secret::AppKey(new_key), KdfParams::DEFAULT)
    }

    fn rewrap(&mut self, secret: Secret<'_>, kdf: KdfParams) -> Result<()> {
        let record = KdfRecord::generate(&mut self.rng, secret, kdf);
        let wrapped = self.keys.database().wrap(&mut self.rng, &record, secret)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'kdf'",
            params![&record.encode()[..]],
        )?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'wrapped_key'",
            params![wrapped],
        )?;
        tx.commit()?;
        // The old wrapped key must not linger in the WAL.
        self.checkpoint()?;
        Ok(())
    }

    /// The schema version of the file (after any migration on open).
    pub fn schema_version(&self) -> Result<u32> {
        schema::stored_version(&self.conn)?.ok_or(Error::NotAStore)
    }

    /// Copies the write-ahead log into the database file and truncates the
    /// log to zero bytes, so deleted rows and old versions of updated rows
    /// do not linger there. Deletions call this themselves. Waits up to the
    /// busy timeout for other handles' transactions; returns `false` if one
    /// still kept the log from being fully checkpointed (a later checkpoint
    /// finishes it).
    pub fn checkpoint(&self) -> Result<bool> {
        let truncate = || -> Result<i64> {
            Ok(self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?)
        };
        let busy = match &self.checkpointer {
            Some(checkpointer) => checkpointer.exclusive(truncate)?,
            None => truncate()?,
        };
        Ok(busy == 0)
    }

    /// Ends the checkpoint thread, if any, and gives the connection
    /// SQLite's automatic checkpoint back.
    fn stop_checkpointer(&mut self) -> Result<()> {
        if let Some(checkpointer) = self.checkpointer.take() {
            checkpointer.stop(&mut self.conn)?;
        }
        Ok(())
    }
}

impl Store {
    /// Runs `f` in a `BEGIN IMMEDIATE` transaction and commits if it
    /// succeeds; on error the transaction is rolled back.
    pub(crate) fn write<T>(
        &mut self,
        f: impl FnOnce(&Db<'_>, &mut StdRng) -> Result<T>,
    ) -> Result<T> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&Db::new(&tx, &self.keys), &mut self.rng)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in a read transaction (one consistent snapshot).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Db<'_>) -> Result<T>) -> Result<T> {
        let tx = self.conn.unchecked_transaction()?;
        let out = f(&Db::new(&tx, &self.keys))?;
        tx.finish()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn store_can_move_to_another_thread() {
        fn send<T: Send>() {}
        send::<super::Store>();
    }
}
