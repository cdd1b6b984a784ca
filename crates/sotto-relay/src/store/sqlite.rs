//! SQLite backend: the relay's default, durable storage.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sotto_core::{IdentityKey, PreKeyBundle};

use super::{
    Enqueued, FetchedPage, MailboxLimits, MailboxStore, MailboxUsage, StoreError, TakenBundle,
};
use crate::address::MailboxAddress;
use crate::envelope::{Envelope, MessageId};
use crate::protocol::PreKeyUpload;

/// Schema version kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

/// The whole schema. Envelope rows hold exactly what a sender sent (the
/// opaque payload and its message id) plus the recipient address; no sender,
/// no timestamp.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS envelopes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox     BLOB NOT NULL,
    message_id  BLOB NOT NULL,
    payload     BLOB NOT NULL,
    UNIQUE (mailbox, message_id)
);
CREATE INDEX IF NOT EXISTS envelopes_by_mailbox ON envelopes (mailbox, id);
CREATE TABLE IF NOT EXISTS mailbox_usage (
    mailbox  BLOB PRIMARY KEY,
    count    INTEGER NOT NULL,
    bytes    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS signed_prekeys (
    mailbox       BLOB PRIMARY KEY,
    identity_key  BLOB NOT NULL,
    prekey_id     INTEGER NOT NULL,
    public_key    BLOB NOT NULL,
    signature     BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS one_time_prekeys (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox     BLOB NOT NULL,
    prekey_id   INTEGER NOT NULL,
    public_key  BLOB NOT NULL,
    UNIQUE (mailbox, prekey_id)
);
";

/// A [`MailboxStore`] in one SQLite file.
///
/// Opened in WAL mode with `synchronous = FULL`, so a committed `enqueue`
/// is on disk before the relay answers `OK`; `secure_delete = ON`, so an
/// acknowledged envelope's bytes are overwritten, not just unlinked. Every
/// operation is one `BEGIN IMMEDIATE` transaction, which makes it atomic
/// also against other processes using the same file.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "SQLite did not switch to WAL mode");
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt(
                "database schema is newer than this relay",
            ));
        }
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn
            .lock()
            .map_err(|_| StoreError::Backend("sqlite store lock poisoned".into()))
    }
}

impl core::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// `(identity_key, prekey_id, public_key, signature)` as stored.
type SignedPreKeyRow = (Vec<u8>, u32, Vec<u8>, Vec<u8>);

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt("integer out of range"))
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt("negative integer"))
}

fn to_array<const N: usize>(v: Vec<u8>, what: &'static str) -> Result<[u8; N], StoreError> {
    v.try_into().map_err(|_| StoreError::Corrupt(what))
}

fn count_one_time(conn: &Connection, mailbox: &[u8; 32]) -> Result<u32, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM one_time_prekeys WHERE mailbox = ?1",
        [mailbox],
        |r| r.get(0),
    )?;
    u32::try_from(n).map_err(|_| StoreError::Corrupt("prekey count"))
}

fn usage_of(conn: &Connection, mailbox: &[u8; 32]) -> Result<(u64, u64), StoreError> {
    let row: Option<(i64, i64)> = conn
        .query_row(
            "SELECT count, bytes FROM mailbox_usage WHERE mailbox = ?1",
            [mailbox],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (count, bytes) = row.unwrap_or((0, 0));
    Ok((to_u64(count)?, to_u64(bytes)?))
}

impl MailboxStore for SqliteStore {
    fn publish_prekeys(
        &self,
        owner: &IdentityKey,
        upload: &PreKeyUpload,
        max_one_time: u32,
    ) -> Result<u32, StoreError> {
        let mailbox = *MailboxAddress::of(owner).as_bytes();
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if upload.replace_one_time_prekeys {
            tx.execute(
                "DELETE FROM one_time_prekeys WHERE mailbox = ?1",
                [&mailbox],
            )?;
        }
        if let Some(spk) = &upload.signed_prekey {
            tx.execute(
                "INSERT INTO signed_prekeys (mailbox, identity_key, prekey_id, public_key, signature)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (mailbox) DO UPDATE SET identity_key = excluded.identity_key,
                     prekey_id = excluded.prekey_id, public_key = excluded.public_key,
                     signature = excluded.signature",
                params![mailbox, owner.as_bytes(), spk.id, spk.public, spk.signature],
            )?;
        }
        {
            let mut insert = tx.prepare(
                "INSERT INTO one_time_prekeys (mailbox, prekey_id, public_key) VALUES (?1, ?2, ?3)
                 ON CONFLICT (mailbox, prekey_id) DO UPDATE SET public_key = excluded.public_key",
            )?;
            for key in &upload.one_time_prekeys {
                insert.execute(params![mailbox, key.id, key.public])?;
            }
        }
        let count = count_one_time(&tx, &mailbox)?;
        if count > max_one_time {
            // Dropping `tx` rolls everything back.
            return Err(StoreError::TooManyPreKeys {
                would_have: u64::from(count),
                max: max_one_time,
            });
        }
        tx.commit()?;
        Ok(count)
    }

    fn take_bundle(&self, address: &MailboxAddress) -> Result<Option<TakenBundle>, StoreError> {
        let mailbox = address.as_bytes();
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let signed: Option<SignedPreKeyRow> = tx
            .query_row(
                "SELECT identity_key, prekey_id, public_key, signature
                 FROM signed_prekeys WHERE mailbox = ?1",
                [mailbox],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((identity_key, signed_prekey_id, signed_prekey, signature)) = signed else {
            return Ok(None);
        };
        let identity_key = IdentityKey::from_bytes(&to_array(identity_key, "identity key")?)
            .map_err(|_| StoreError::Corrupt("identity key"))?;
        let one_time: Option<(u32, Vec<u8>)> = tx
            .query_row(
                "DELETE FROM one_time_prekeys WHERE seq =
                     (SELECT seq FROM one_time_prekeys WHERE mailbox = ?1 ORDER BY seq LIMIT 1)
                 RETURNING prekey_id, public_key",
                [mailbox],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let one_time_prekey = match one_time {
            Some((id, key)) => Some((id, to_array(key, "one-time prekey")?)),
            None => None,
        };
        let remaining = count_one_time(&tx, mailbox)?;
        tx.commit()?;
        Ok(Some(TakenBundle {
            bundle: PreKeyBundle {
                identity_key,
                signed_prekey_id,
                signed_prekey: to_array(signed_prekey, "signed prekey")?,
                signed_prekey_signature: to_array(signature, "signed prekey signature")?,
                one_time_prekey,
            },
            remaining,
        }))
    }

    fn one_time_prekey_count(&self, address: &MailboxAddress) -> Result<u32, StoreError> {
        let conn = self.lock()?;
        count_one_time(&conn, address.as_bytes())
    }

    fn enqueue(
        &self,
        recipient: &MailboxAddress,
        message_id: &MessageId,
        payload: &[u8],
        limits: &MailboxLimits,
    ) -> Result<Enqueued, StoreError> {
        let mailbox = recipient.as_bytes();
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM envelopes WHERE mailbox = ?1 AND message_id = ?2",
                params![mailbox, message_id.0],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            return Ok(Enqueued {
                id: to_u64(id)?,
                duplicate: true,
            });
        }
        let (envelopes, bytes) = usage_of(&tx, mailbox)?;
        let len = payload.len() as u64;
        if envelopes.saturating_add(1) > limits.max_envelopes
            || bytes.saturating_add(len) > limits.max_bytes
        {
            return Err(StoreError::MailboxFull {
                envelopes,
                bytes,
                max_envelopes: limits.max_envelopes,
                max_bytes: limits.max_bytes,
            });
        }
        tx.execute(
            "INSERT INTO envelopes (mailbox, message_id, payload) VALUES (?1, ?2, ?3)",
            params![mailbox, message_id.0, payload],
        )?;
        let id = to_u64(tx.last_insert_rowid())?;
        tx.execute(
            "INSERT INTO mailbox_usage (mailbox, count, bytes) VALUES (?1, 1, ?2)
             ON CONFLICT (mailbox) DO UPDATE SET count = count + 1, bytes = bytes + excluded.bytes",
            params![mailbox, to_i64(len)?],
        )?;
        tx.commit()?;
        Ok(Enqueued {
            id,
            duplicate: false,
        })
    }

    fn fetch(
        &self,
        address: &MailboxAddress,
        after: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<FetchedPage, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, payload FROM envelopes WHERE mailbox = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )?;
        let limit = to_i64(
            u64::try_from(max_count)
                .unwrap_or(u64::MAX)
                .saturating_add(1),
        )
        .unwrap_or(i64::MAX);
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let mut rows = stmt.query(params![address.as_bytes(), after, limit])?;
        let mut page = FetchedPage::default();
        let mut used = 0usize;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let payload: Vec<u8> = row.get(1)?;
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

    fn ack(&self, address: &MailboxAddress, ids: &[u64]) -> Result<u32, StoreError> {
        let mailbox = address.as_bytes();
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut removed = 0u32;
        let mut removed_bytes = 0u64;
        {
            let mut delete = tx.prepare(
                "DELETE FROM envelopes WHERE id = ?1 AND mailbox = ?2 RETURNING length(payload)",
            )?;
            for id in ids {
                let Ok(id) = i64::try_from(*id) else { continue };
                let len: Option<i64> = delete
                    .query_row(params![id, mailbox], |r| r.get(0))
                    .optional()?;
                if let Some(len) = len {
                    removed += 1;
                    removed_bytes += to_u64(len)?;
                }
            }
        }
        if removed > 0 {
            tx.execute(
                "UPDATE mailbox_usage SET count = count - ?2, bytes = bytes - ?3 WHERE mailbox = ?1",
                params![mailbox, removed, to_i64(removed_bytes)?],
            )?;
            tx.execute(
                "DELETE FROM mailbox_usage WHERE mailbox = ?1 AND count <= 0",
                [mailbox],
            )?;
        }
        tx.commit()?;
        Ok(removed)
    }

    fn usage(&self, address: &MailboxAddress) -> Result<MailboxUsage, StoreError> {
        let mailbox = address.as_bytes();
        let mut conn = self.lock()?;
        // One read transaction, so the three numbers agree.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let (envelopes, bytes) = usage_of(&tx, mailbox)?;
        let last_id: Option<i64> = tx.query_row(
            "SELECT MAX(id) FROM envelopes WHERE mailbox = ?1",
            [mailbox],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(MailboxUsage {
            envelopes,
            bytes,
            last_id: to_u64(last_id.unwrap_or(0))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("relay.db")).unwrap();
        super::super::contract_tests::queue_limits_order_and_ack(&store);
    }

    #[test]
    fn prekey_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("relay.db")).unwrap();
        super::super::contract_tests::prekeys_are_handed_out_once(&store);
    }

    #[test]
    fn reopening_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let address = MailboxAddress::from_bytes([1; 32]);
        let id = {
            let store = SqliteStore::open(&path).unwrap();
            store
                .enqueue(
                    &address,
                    &MessageId([1; 16]),
                    b"kept",
                    &MailboxLimits::default(),
                )
                .unwrap()
                .id
        };
        let store = SqliteStore::open(&path).unwrap();
        let page = store.fetch(&address, 0, 10, usize::MAX).unwrap();
        assert_eq!(
            page.envelopes,
            [Envelope {
                id,
                payload: b"kept".to_vec()
            }]
        );
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
}
