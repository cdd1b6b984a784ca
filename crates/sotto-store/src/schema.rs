//! The SQL schema, its version, and migrations between versions.
//!
//! The version lives in `meta` under `schema_version`. Opening a file
//! whose version is newer than [`SCHEMA_VERSION`] fails with
//! `SchemaTooNew` before anything is written; an older file is upgraded by
//! running, in one `BEGIN IMMEDIATE` transaction, the migration that starts
//! at each version in turn, bumping the version after each step. Any error
//! rolls the whole upgrade back.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::crypto::Keys;
use crate::error::{Error, Result};

/// The schema version this library writes and reads.
pub const SCHEMA_VERSION: u32 = 11;

/// The version that lays messages out in parts ([`crate::layout`]). The
/// only place its number is written: renumbering it renumbers the step.
pub(crate) const MESSAGE_LAYOUT_VERSION: u32 = 9;

/// SQLite `application_id` of a Sotto store ("SOTT").
pub(crate) const APPLICATION_ID: i32 = 0x534F_5454;

/// The schema of version 1.
pub(crate) const SCHEMA_V1: &str = "
CREATE TABLE meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value NOT NULL
) WITHOUT ROWID;
CREATE TABLE identity (
    slot   INTEGER PRIMARY KEY CHECK (slot = 0),
    sealed BLOB NOT NULL
);
CREATE TABLE signed_prekeys (
    lookup  BLOB PRIMARY KEY NOT NULL,
    current INTEGER NOT NULL CHECK (current IN (0, 1)),
    sealed  BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE one_time_prekeys (
    lookup BLOB PRIMARY KEY NOT NULL,
    sealed BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE contacts (
    lookup BLOB PRIMARY KEY NOT NULL,
    sealed BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE sessions (
    contact BLOB PRIMARY KEY NOT NULL,
    sealed  BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE conversations (
    lookup   BLOB PRIMARY KEY NOT NULL,
    next_seq INTEGER NOT NULL,
    sealed   BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE messages (
    conversation BLOB NOT NULL,
    seq          INTEGER NOT NULL,
    sealed       BLOB NOT NULL,
    PRIMARY KEY (conversation, seq)
) WITHOUT ROWID;
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY,
    lookup       BLOB NOT NULL UNIQUE,
    conversation BLOB NOT NULL,
    seq          INTEGER NOT NULL,
    sealed       BLOB NOT NULL
);
CREATE INDEX outbox_by_message ON outbox (conversation, seq);
CREATE TABLE seen_envelopes (
    lookup BLOB PRIMARY KEY NOT NULL
) WITHOUT ROWID;
";

/// What version 2 adds to version 1:
///
/// - `signed_prekeys.since`: when the current signed prekey was made, or a
///   previous one was retired (ms since the Unix epoch; 0 = unknown), for
///   the rotation schedule;
/// - `used_base_keys`: the base key of every PreKeyMessage that started a
///   session, per signed prekey (`signed_prekey` is that prekey's lookup),
///   kept as long as the signed prekey, so that a first message cannot be
///   replayed once its session has left the session set.
pub(crate) const SCHEMA_V2: &str = "
ALTER TABLE signed_prekeys ADD COLUMN since INTEGER NOT NULL DEFAULT 0;
CREATE TABLE used_base_keys (
    lookup        BLOB PRIMARY KEY NOT NULL,
    signed_prekey BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX used_base_keys_by_prekey ON used_base_keys (signed_prekey);
";

fn to_v2(conn: &Connection, _: &Keys) -> Result<()> {
    conn.execute_batch(SCHEMA_V2)?;
    Ok(())
}

/// What version 3 adds to version 2: `outbox.accepted`, 1 once the relay
/// accepted the entry. The entry then stays until the recipient's delivery
/// receipt arrives (and is sent again when it is overdue); pending entries
/// are found without opening the others.
pub(crate) const SCHEMA_V3: &str = "
ALTER TABLE outbox ADD COLUMN accepted INTEGER NOT NULL DEFAULT 0 CHECK (accepted IN (0, 1));
CREATE INDEX outbox_pending ON outbox (accepted, id);
";

fn to_v3(conn: &Connection, _: &Keys) -> Result<()> {
    // Every entry of an older file is one the relay has not accepted:
    // before version 3, an accepted entry was deleted.
    conn.execute_batch(SCHEMA_V3)?;
    Ok(())
}

/// What version 4 adds to version 3: `one_time_prekeys.state`, the sealed
/// state of each one-time prekey (published when, retired when), bound to
/// its row like `sealed`. New rows always get a state; the empty default
/// only exists for the migration to fill.
pub(crate) const SCHEMA_V4: &str = "
ALTER TABLE one_time_prekeys ADD COLUMN state BLOB NOT NULL DEFAULT X'';
";

/// Every one-time prekey of an older store may have been uploaded (and may
/// be uploaded again by older code, so it may be anywhere in the relay's
/// stock): each becomes published at an unknown time and live, and
/// leaves the store only when used, or after the grace period once a
/// replacement of the relay's stock retired it. A row whose key does not
/// open keeps the empty state (it reads as corrupt, as its key does).
fn to_v4(conn: &Connection, keys: &Keys) -> Result<()> {
    conn.execute_batch(SCHEMA_V4)?;
    let db = crate::db::Db::new(conn, keys);
    let mut rng = crate::store::system_rng()?;
    for id in db.one_time_prekey_ids()?.into_iter().flatten() {
        let state = crate::types::OneTimePreKeyInfo {
            id,
            published_at: None,
            retired_at: None,
        };
        db.put_one_time_prekey_state(&mut rng, &state)?;
    }
    Ok(())
}

/// What version 5 adds to version 4: `contact_device_lists`, each
/// contact's newest signed device list (docs/devices.md), sealed and bound
/// to its row, under the contact's lookup. A contact without a row has one
/// device, its primary, as every contact had before.
pub(crate) const SCHEMA_V5: &str = "
CREATE TABLE contact_device_lists (
    contact BLOB PRIMARY KEY NOT NULL,
    sealed  BLOB NOT NULL
) WITHOUT ROWID;
";

fn to_v5(conn: &Connection, _: &Keys) -> Result<()> {
    // Every session of an older store is with a contact's primary device,
    // under the lookup it already has: nothing to move.
    conn.execute_batch(SCHEMA_V5)?;
    Ok(())
}

/// What version 6 adds to version 5: groups (docs/storage.md, "Groups").
/// `groups`, each group's record under the group's lookup;
/// `group_sender_keys`, the receiving state of each (group, sending
/// device), with the group's lookup in `grp` so a group's go together;
/// `group_outbox`, each group message the relay has not taken for all its
/// recipients, sealed like a message row under the group conversation's
/// key for its place `(conversation, seq)`, and whether any recipient took
/// it (`taken`).
pub(crate) const SCHEMA_V6: &str = "
CREATE TABLE groups (
    lookup BLOB PRIMARY KEY NOT NULL,
    sealed BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE group_sender_keys (
    lookup BLOB PRIMARY KEY NOT NULL,
    grp    BLOB NOT NULL,
    sealed BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX group_sender_keys_by_group ON group_sender_keys (grp);
CREATE TABLE group_outbox (
    id           INTEGER PRIMARY KEY,
    lookup       BLOB NOT NULL UNIQUE,
    conversation BLOB NOT NULL,
    seq          INTEGER NOT NULL,
    sealed       BLOB NOT NULL,
    taken        INTEGER NOT NULL DEFAULT 0 CHECK (taken IN (0, 1))
);
";

fn to_v6(conn: &Connection, _: &Keys) -> Result<()> {
    conn.execute_batch(SCHEMA_V6)?;
    Ok(())
}

/// What version 7 adds to version 6: `kem_prekeys`, the ML-KEM prekeys of
/// protocol v2 (docs/protocol.md section 16), each sealed under its id's
/// lookup, with `last_resort` 1 for the one last-resort key (kept until
/// replaced) and 0 for one-time keys (deleted once a first message used
/// them).
pub(crate) const SCHEMA_V7: &str = "
CREATE TABLE kem_prekeys (
    lookup      BLOB PRIMARY KEY NOT NULL,
    last_resort INTEGER NOT NULL CHECK (last_resort IN (0, 1)),
    sealed      BLOB NOT NULL
) WITHOUT ROWID;
";

fn to_v7(conn: &Connection, _: &Keys) -> Result<()> {
    conn.execute_batch(SCHEMA_V7)?;
    Ok(())
}

/// What version 8 changes in version 7: envelope ids are kept in two
/// places (docs/storage.md, "Seen envelope ids").
///
/// - `seen_envelopes` is the *recent* set, which every receive checks
///   first: at most two generations of [`crate::seen::GENERATION`] ids,
///   each row with the generation it was recorded in, so that it stays a
///   few dozen pages however long the history grows.
/// - `seen_archive` holds every older id, in sorted runs appended one
///   after another (`run` first in the key), so that moving a generation
///   there writes new pages at one place instead of one random page per
///   id. It is read only when an envelope would otherwise be refused.
///
/// The ids of a version 7 file all go to one archive run (level 2, never
/// merged): the recent set starts empty.
pub(crate) const SCHEMA_V8: &str = "
CREATE TABLE seen_archive (
    run    INTEGER NOT NULL,
    lookup BLOB NOT NULL,
    PRIMARY KEY (run, lookup)
) WITHOUT ROWID;
INSERT INTO seen_archive (run, lookup) SELECT 8589934592, lookup FROM seen_envelopes ORDER BY lookup;
DROP TABLE seen_envelopes;
CREATE TABLE seen_envelopes (
    lookup     BLOB PRIMARY KEY NOT NULL,
    generation INTEGER NOT NULL
) WITHOUT ROWID;
";

fn to_v8(conn: &Connection, _: &Keys) -> Result<()> {
    conn.execute_batch(SCHEMA_V8)?;
    Ok(())
}

/// The first half of the message layout's DDL (docs/storage.md section
/// 3, "Message rows"): each conversation gets a number for the row ids of
/// its messages, and `messages` becomes a rowid table of parts; the old
/// table is kept until its rows are copied.
const MESSAGE_LAYOUT_BEGIN: &str = "
ALTER TABLE conversations ADD COLUMN num INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages RENAME TO messages_clustered;
CREATE TABLE messages (
    id     INTEGER PRIMARY KEY,
    sealed BLOB NOT NULL
);
";

/// The second half: the old table goes (its pages overwritten with
/// zeros, `secure_delete`), and conversation numbers are unique.
const MESSAGE_LAYOUT_END: &str = "
DROP TABLE messages_clustered;
CREATE UNIQUE INDEX conversations_by_num ON conversations (num);
";

/// Lays the messages out in parts ([`crate::layout`]): numbers every
/// conversation (at random), then copies each conversation's rows in seq
/// order, conversation after conversation by number, so that the new
/// table is written in id order and its pages come out full. Sealed
/// values are copied as they are: their associated data names the
/// conversation's lookup and the seq, which do not change. Memory stays
/// bounded by one row (the old rows are read through a cursor); the
/// write-ahead log takes the new table and the old one's zeroed pages.
///
/// A conversation whose next seq is beyond [`crate::layout::MAX_SEQ`]
/// cannot be laid out ([`Error::LayoutLimit`], nothing changes). Rows the
/// old table held that no message can be (no conversation, a seq that is
/// not a positive number within the layout, a value that is not a blob)
/// were unreadable and stay out; the conversation's seqs then report them
/// as missing, as [`crate::Store::check`] does for any row that vanished.
pub(crate) fn to_message_layout(conn: &Connection, _: &Keys) -> Result<()> {
    use crate::layout;
    conn.execute_batch(MESSAGE_LAYOUT_BEGIN)?;
    let mut rng = crate::store::system_rng()?;
    let mut numbered: Vec<(u32, Vec<u8>)> = Vec::new();
    {
        let mut stmt = conn.prepare("SELECT lookup, next_seq FROM conversations")?;
        let mut rows = stmt.query([])?;
        let mut conversations = Vec::new();
        while let Some(row) = rows.next()? {
            let lookup: Vec<u8> = row.get(0)?;
            let next_seq: i64 = row.get(1)?;
            let last = u64::try_from(next_seq).unwrap_or(0).saturating_sub(1);
            if last > layout::MAX_SEQ {
                return Err(Error::LayoutLimit {
                    what: "message seq",
                    value: last,
                    max: layout::MAX_SEQ,
                });
            }
            conversations.push(lookup);
        }
        let mut set = conn.prepare("UPDATE conversations SET num = ?1 WHERE lookup = ?2")?;
        for lookup in conversations {
            let num = crate::db::free_conversation_num(conn, &mut rng)?;
            set.execute(params![num, lookup])?;
            numbered.push((num, lookup));
        }
    }
    numbered.sort_unstable();
    let mut read = conn.prepare(
        "SELECT seq, sealed FROM messages_clustered WHERE conversation = ?1 ORDER BY seq",
    )?;
    let mut write = conn.prepare("INSERT INTO messages (id, sealed) VALUES (?1, ?2)")?;
    for (num, lookup) in &numbered {
        let mut rows = read.query(params![lookup])?;
        while let Some(row) = rows.next()? {
            let (Ok(seq), Ok(sealed)) = (row.get::<_, i64>(0), row.get_ref(1)) else {
                continue;
            };
            let Ok(sealed) = sealed.as_blob() else {
                continue;
            };
            let Some((start, _)) = u64::try_from(seq)
                .ok()
                .and_then(|seq| layout::message_span(*num, seq))
            else {
                continue;
            };
            for (part, bytes) in layout::parts(sealed)? {
                write.execute(params![start + part, bytes])?;
            }
        }
    }
    drop((read, write));
    conn.execute_batch(MESSAGE_LAYOUT_END)?;
    Ok(())
}

/// One upgrade step: from `from` to `from + 1`. It runs inside the
/// migration transaction and may re-seal rows with the store's keys.
pub(crate) struct Migration {
    pub(crate) from: u32,
    pub(crate) run: fn(&Connection, &Keys) -> Result<()>,
}

/// The migrations of this library, oldest first; a change to the schema
/// adds a step here and bumps [`SCHEMA_VERSION`].
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        from: 1,
        run: to_v2,
    },
    Migration {
        from: 2,
        run: to_v3,
    },
    Migration {
        from: 3,
        run: to_v4,
    },
    Migration {
        from: 4,
        run: to_v5,
    },
    Migration {
        from: 5,
        run: to_v6,
    },
    Migration {
        from: 6,
        run: to_v7,
    },
    Migration {
        from: 7,
        run: to_v8,
    },
    Migration {
        from: MESSAGE_LAYOUT_VERSION - 1,
        run: to_message_layout,
    },
    Migration {
        from: 9,
        run: to_v10,
    },
    Migration {
        from: 10,
        run: to_v11,
    },
];

/// Version 11: the messages whose disappearing messages timer runs
/// (docs/storage.md, "Disappearing messages"): one row per message, keyed
/// by its conversation's lookup and its seq, the deadline sealed (bound
/// to the message's place), so the file tells which messages will
/// disappear but not when. And attachments (docs/storage.md,
/// "Attachments"): the received messages whose file is not downloaded yet,
/// and the files on their way up, each sealed under a random id.
pub(crate) const SCHEMA_V11: &str = "
CREATE TABLE expiring (
    conversation BLOB NOT NULL,
    seq          INTEGER NOT NULL,
    sealed       BLOB NOT NULL,
    PRIMARY KEY (conversation, seq)
) WITHOUT ROWID;
CREATE TABLE downloads (
    conversation BLOB NOT NULL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (conversation, seq)
) WITHOUT ROWID;
CREATE TABLE uploads (
    id     BLOB PRIMARY KEY NOT NULL,
    sealed BLOB NOT NULL
) WITHOUT ROWID;
";

fn to_v11(conn: &Connection, _: &Keys) -> Result<()> {
    conn.execute_batch(SCHEMA_V11)?;
    Ok(())
}

/// Version 10: every message record of format 0x01 (a 27-byte head, no
/// digest) is sealed again as format 0x04 (the same head with 32 zero
/// bytes, 59 bytes as every other record's head), so that no sealed length
/// tells a message sent from this device from one received
/// (docs/storage.md sections 1 and 4). No table changes. A conversation or
/// message that cannot be opened is left as it was (the store's `check`
/// reports it); memory holds one conversation's seqs to rewrite, and one
/// message at a time.
fn to_v10(conn: &Connection, keys: &Keys) -> Result<()> {
    let db = crate::db::Db::new(conn, keys);
    let mut rng = crate::store::system_rng()?;
    for lookup in db.conversation_lookups()? {
        let Ok(Some(conversation)) = db.conversation_by_lookup(&lookup) else {
            continue;
        };
        let mut old = Vec::new();
        db.for_each_message(&conversation, |seq, sealed| {
            let Ok(sealed) = sealed else { return Ok(()) };
            if let Some(record) = conversation.open_message_record(seq, &sealed)
                && crate::records::message_head_without_digest_to_pad(&record).is_some()
            {
                old.push(seq);
            }
            Ok(())
        })?;
        for seq in old {
            let Some(sealed) = db.message_sealed(&conversation, seq)? else {
                continue;
            };
            let Some(record) = conversation.open_message_record(seq, &sealed) else {
                continue;
            };
            if let Some(padded) = crate::records::message_head_without_digest_to_pad(&record) {
                db.update_message(&mut rng, &conversation, seq, &padded)?;
            }
        }
    }
    Ok(())
}

/// The schema version recorded in the file, `None` if there is no `meta`
/// table (not a store, or an empty file).
pub(crate) fn stored_version(conn: &Connection) -> Result<Option<u32>> {
    let has_meta: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
        [],
        |row| row.get(0),
    )?;
    if !has_meta {
        return Ok(None);
    }
    let value: Option<Value> = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    match value {
        Some(Value::Integer(v)) => u32::try_from(v).map(Some).map_err(|_| corrupt_version()),
        _ => Err(corrupt_version()),
    }
}

fn corrupt_version() -> Error {
    Error::Corrupt {
        table: "meta",
        row: crate::error::Row::Named("schema_version"),
    }
}

pub(crate) fn write_version(conn: &Connection, version: u32) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO meta (name, value) VALUES ('schema_version', ?1)",
        params![i64::from(version)],
    )?;
    Ok(())
}

/// Refuses a version this library cannot read.
pub(crate) fn check_supported(found: u32, supported: u32) -> Result<()> {
    if found > supported {
        return Err(Error::SchemaTooNew { found, supported });
    }
    Ok(())
}

/// Brings the file to `target` with `migrations`, atomically.
pub(crate) fn migrate(
    conn: &mut Connection,
    keys: &Keys,
    migrations: &[Migration],
    target: u32,
) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Re-read under the write lock: another handle may have migrated.
    let mut version = stored_version(&tx)?.ok_or(Error::NotAStore)?;
    check_supported(version, target)?;
    // The whole path must exist before the first step runs.
    let steps = (version..target)
        .map(|from| migrations.iter().find(|m| m.from == from))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::SchemaTooOld {
            found: version,
            oldest: migrations.iter().map(|m| m.from).min().unwrap_or(target),
        })?;
    for step in steps {
        (step.run)(&tx, keys)?;
        version += 1;
        write_version(&tx, version)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Secret;
    use crate::options::{KdfParams, OpenOptions};
    use crate::store::Store;

    fn options() -> OpenOptions {
        OpenOptions::new().kdf(KdfParams::new(64, 1, 1).unwrap())
    }

    /// v1 -> v2: a new table.
    fn add_drafts(conn: &Connection, _: &Keys) -> Result<()> {
        conn.execute_batch("CREATE TABLE drafts (lookup BLOB PRIMARY KEY, sealed BLOB NOT NULL)")?;
        Ok(())
    }

    /// v2 -> v3: rewrites every contact row through the store's keys, as a
    /// migration that changes a record format would.
    fn reseal_contacts(conn: &Connection, keys: &Keys) -> Result<()> {
        let db = crate::db::Db::new(conn, keys);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        for contact in db.all_contacts()? {
            let mut contact = contact?;
            contact.name = format!("{} (migrated)", contact.name);
            db.put_contact(&mut rng, &contact)?;
        }
        Ok(())
    }

    fn failing(_: &Connection, _: &Keys) -> Result<()> {
        Err(Error::InvalidKdfParams("synthetic failure"))
    }

    const V: u32 = SCHEMA_VERSION;

    const SYNTHETIC: &[Migration] = &[
        Migration {
            from: V,
            run: add_drafts,
        },
        Migration {
            from: V + 1,
            run: reseal_contacts,
        },
    ];

    fn table_exists(store: &Store, name: &str) -> bool {
        store
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = ?1)",
                [name],
                |r| r.get(0),
            )
            .unwrap()
    }

    #[test]
    fn open_migrates_v1_to_a_newer_schema_and_older_code_then_refuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut store = Store::create(&path, b"pw", &options()).unwrap();
        store.add_contact("carol", "Carol", None).unwrap();
        drop(store);

        let store = Store::open_migrating(
            &path,
            Secret::Passphrase(b"pw"),
            &options(),
            SYNTHETIC,
            V + 2,
        )
        .unwrap();
        assert_eq!(store.schema_version().unwrap(), V + 2);
        assert!(table_exists(&store, "drafts"));
        let carol = store.contact("carol").unwrap().unwrap();
        assert_eq!(carol.name, "Carol (migrated)");
        drop(store);

        // Opening again runs nothing (the version is current).
        let store = Store::open_migrating(
            &path,
            Secret::Passphrase(b"pw"),
            &options(),
            SYNTHETIC,
            V + 2,
        )
        .unwrap();
        assert_eq!(
            store.contact("carol").unwrap().unwrap().name,
            "Carol (migrated)"
        );
        drop(store);

        // This library refuses the newer file.
        assert!(matches!(
            Store::open(&path, b"pw", &options()),
            Err(Error::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION
            }) if found == V + 2
        ));
    }

    #[test]
    fn a_failing_step_rolls_the_whole_migration_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(Store::create(&path, b"pw", &options()).unwrap());
        let broken = [
            Migration {
                from: V,
                run: add_drafts,
            },
            Migration {
                from: V + 1,
                run: failing,
            },
        ];
        assert!(matches!(
            Store::open_migrating(&path, Secret::Passphrase(b"pw"), &options(), &broken, V + 2),
            Err(Error::InvalidKdfParams("synthetic failure"))
        ));
        let store = Store::open(&path, b"pw", &options()).unwrap();
        assert_eq!(store.schema_version().unwrap(), V);
        assert!(!table_exists(&store, "drafts"));
    }

    #[test]
    fn a_gap_in_the_path_is_schema_too_old_and_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(Store::create(&path, b"pw", &options()).unwrap());
        let gap = [Migration {
            from: V + 1,
            run: reseal_contacts,
        }];
        assert!(matches!(
            Store::open_migrating(&path, Secret::Passphrase(b"pw"), &options(), &gap, V + 2),
            Err(Error::SchemaTooOld { found, oldest })
                if found == V && oldest == V + 1
        ));
        let store = Store::open(&path, b"pw", &options()).unwrap();
        assert_eq!(store.schema_version().unwrap(), V);
    }
}
