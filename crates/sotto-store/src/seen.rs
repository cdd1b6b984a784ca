//! Seen envelope ids: the small recent set every receive checks, and the
//! archive of all older ones (docs/storage.md, "Seen envelope ids").
//!
//! An envelope id is recorded, as a lookup key, in the transaction that
//! stores its message. A receive looks it up in the recent set
//! (`seen_envelopes`) before doing anything else; the archive
//! (`seen_archive`) is read only when the envelope would otherwise be
//! refused (it does not decrypt, or names an unknown device). That is
//! enough because a ciphertext that was stored once never decrypts again:
//! its message key was deleted in the transaction that stored it, and a
//! first message's base key is in `used_base_keys`. The one way the same
//! envelope id comes back in a ciphertext that does decrypt is a resend
//! re-encrypted for session recovery, which the sender makes only after a
//! decryption-error notice naming that very envelope's ciphertext, and
//! the recipient sends a notice only for an envelope that was refused
//! here, that is, never stored (the archive was checked).
//!
//! The recent set holds at most two generations of [`GENERATION`] ids
//! (plus what was recorded since the last look, [`CHECK_EVERY`]): a few
//! dozen pages, so inserting random keys into it dirties few pages per
//! transaction however long the history. Older generations go to the
//! archive as one sorted run, appended at one place in its b-tree; every
//! [`MERGE_RUNS`] such runs are merged into one larger run, so a lookup
//! there probes a bounded number of runs per 65 536 ids. Nothing is ever
//! dropped.

use rusqlite::{OptionalExtension, params};

use crate::db::Db;
use crate::error::Result;

/// Ids per generation of the recent set.
pub(crate) const GENERATION: u64 = 4096;

/// Ids recorded by one handle between two looks at the recent set's
/// generations (a look scans the recent set once).
pub(crate) const CHECK_EVERY: u64 = 1024;

/// Runs of one level merged into one run of the next.
pub(crate) const MERGE_RUNS: usize = 16;

/// Archive runs are numbered `level * LEVEL + n`: level 0 holds the
/// generations the recent set gave up, level 1 the merges of level 0 and
/// the ids an archive import or a history transfer recorded, level 2 the
/// ids of a store migrated from version 7. Only level 0 is merged.
const LEVEL: i64 = 1 << 32;

/// What one handle knows of the recent set: the generation new ids are
/// recorded under, and how many it recorded since it last looked. Only a
/// hint for when to rotate: a stale value (another handle rotated, a
/// transaction rolled back) costs a rotation that comes early or late,
/// never an id.
#[derive(Debug, Default)]
pub(crate) struct SeenWindow {
    generation: Option<i64>,
    since_check: u64,
}

impl SeenWindow {
    /// The generation to record new ids under in this transaction.
    pub(crate) fn generation(&mut self, db: &Db<'_>) -> Result<i64> {
        match self.generation {
            Some(generation) => Ok(generation),
            None => {
                let generation = maintain(db)?;
                self.generation = Some(generation);
                Ok(generation)
            }
        }
    }

    /// `n` ids were recorded in this transaction: every [`CHECK_EVERY`],
    /// start a new generation if the current one is full and move the ones
    /// before the previous to the archive (in the same transaction).
    pub(crate) fn recorded(&mut self, db: &Db<'_>, n: u64) -> Result<()> {
        self.since_check = self.since_check.saturating_add(n);
        if self.since_check >= CHECK_EVERY {
            self.since_check = 0;
            self.generation = Some(maintain(db)?);
        }
        Ok(())
    }
}

impl Db<'_> {
    /// Whether `lookup` is in the recent set.
    pub(crate) fn is_seen(&self, lookup: &[u8; 32]) -> Result<bool> {
        Ok(self
            .conn()
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM seen_envelopes WHERE lookup = ?1)")?
            .query_row(params![&lookup[..]], |r| r.get(0))?)
    }

    /// Whether `lookup` was recorded at all: in the recent set or in any
    /// archive run.
    pub(crate) fn was_ever_seen(&self, lookup: &[u8; 32]) -> Result<bool> {
        Ok(self.is_seen(lookup)? || self.is_archived(lookup)?)
    }

    /// Whether `lookup` is in the archive: one probe per run.
    pub(crate) fn is_archived(&self, lookup: &[u8; 32]) -> Result<bool> {
        let mut probe = self.conn().prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM seen_archive WHERE run = ?1 AND lookup = ?2)",
        )?;
        for run in runs(self, 0, i64::MAX)? {
            if probe.query_row(params![run, &lookup[..]], |r| r.get::<_, bool>(0))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Records `lookup` in the recent set under `generation`.
    pub(crate) fn mark_seen(&self, lookup: &[u8; 32], generation: i64) -> Result<()> {
        self.conn()
            .prepare_cached("INSERT INTO seen_envelopes (lookup, generation) VALUES (?1, ?2)")?
            .execute(params![&lookup[..], generation])?;
        Ok(())
    }

    /// Records many envelopes as seen at once (an archive import, a
    /// history transfer): one new archive run, written in key order.
    pub(crate) fn archive_seen(&self, lookups: &mut [[u8; 32]]) -> Result<()> {
        if lookups.is_empty() {
            return Ok(());
        }
        lookups.sort_unstable();
        let run = next_run(self, 1)?;
        let mut stmt = self
            .conn()
            .prepare_cached("INSERT OR IGNORE INTO seen_archive (run, lookup) VALUES (?1, ?2)")?;
        for lookup in lookups.iter() {
            stmt.execute(params![run, &lookup[..]])?;
        }
        Ok(())
    }
}

/// The runs numbered in `[from, to)`, found by skipping from one to the
/// next through the primary key (no scan of their rows).
fn runs(db: &Db<'_>, from: i64, to: i64) -> Result<Vec<i64>> {
    let mut next = db.conn().prepare_cached(
        "SELECT run FROM seen_archive WHERE run >= ?1 AND run < ?2 ORDER BY run LIMIT 1",
    )?;
    let mut out = Vec::new();
    let mut at = from;
    while let Some(run) = next
        .query_row(params![at, to], |r| r.get::<_, i64>(0))
        .optional()?
    {
        out.push(run);
        match run.checked_add(1) {
            Some(after) => at = after,
            None => break,
        }
    }
    Ok(out)
}

/// The number of a new run at `level`, after every run there.
fn next_run(db: &Db<'_>, level: i64) -> Result<i64> {
    let from = level.saturating_mul(LEVEL);
    let to = from.saturating_add(LEVEL);
    let last: Option<i64> = db.conn().query_row(
        "SELECT max(run) FROM seen_archive WHERE run >= ?1 AND run < ?2",
        params![from, to],
        |r| r.get(0),
    )?;
    Ok(last.map_or(from, |run| run.saturating_add(1)))
}

/// Looks at the recent set: if its newest generation is full, new ids go
/// to the next one, and every generation before the newest full one
/// moves to the archive. Returns the generation to record under.
fn maintain(db: &Db<'_>) -> Result<i64> {
    let (newest, count): (Option<i64>, i64) = db.conn().query_row(
        "SELECT max(generation), count(*) FILTER (WHERE generation = \
         (SELECT max(generation) FROM seen_envelopes)) FROM seen_envelopes",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let newest = newest.unwrap_or(0);
    let full = u64::try_from(count).unwrap_or(0) >= GENERATION;
    let current = if full {
        newest.saturating_add(1)
    } else {
        newest
    };
    // Keep the generation before the current one: an id recorded just
    // before a rotation stays in the recent set for a whole generation.
    let keep_from = current.saturating_sub(1);
    let older: bool = db.conn().query_row(
        "SELECT EXISTS (SELECT 1 FROM seen_envelopes WHERE generation < ?1)",
        params![keep_from],
        |r| r.get(0),
    )?;
    if older {
        let run = next_run(db, 0)?;
        // The recent set's key order is the lookup's: the run is written
        // in order, appended after the last level-0 run.
        db.conn().execute(
            "INSERT INTO seen_archive (run, lookup) \
             SELECT ?1, lookup FROM seen_envelopes WHERE generation < ?2 ORDER BY lookup",
            params![run, keep_from],
        )?;
        db.conn().execute(
            "DELETE FROM seen_envelopes WHERE generation < ?1",
            params![keep_from],
        )?;
        merge_level_0(db)?;
    }
    Ok(current)
}

/// Merges the level-0 runs into one level-1 run once there are
/// [`MERGE_RUNS`] of them.
fn merge_level_0(db: &Db<'_>) -> Result<()> {
    let level_0 = runs(db, 0, LEVEL)?;
    if level_0.len() < MERGE_RUNS {
        return Ok(());
    }
    let run = next_run(db, 1)?;
    db.conn().execute(
        "INSERT OR IGNORE INTO seen_archive (run, lookup) \
         SELECT ?1, lookup FROM seen_archive WHERE run >= 0 AND run < ?2 ORDER BY lookup",
        params![run, LEVEL],
    )?;
    db.conn().execute(
        "DELETE FROM seen_archive WHERE run >= 0 AND run < ?1",
        params![LEVEL],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{KdfParams, OpenOptions};
    use crate::store::Store;

    #[test]
    fn levels_do_not_overlap() {
        assert_eq!(
            8_589_934_592,
            2 * LEVEL,
            "the run of a migrated version 7 store"
        );
        assert!(MERGE_RUNS as u64 * GENERATION <= u64::from(u32::MAX));
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let options = OpenOptions::new().kdf(KdfParams::new(64, 1, 1).unwrap());
        let store = Store::create(dir.path().join("s.db"), b"pass", &options).unwrap();
        (dir, store)
    }

    fn lookup(i: u64) -> [u8; 32] {
        let mut lookup = [0u8; 32];
        // Spread over the key space like the HMAC outputs they stand for.
        lookup[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
        lookup[8..16].copy_from_slice(&i.to_be_bytes());
        lookup
    }

    /// Records ids `from..to` in transactions of `batch`, as receives do.
    fn record(store: &mut Store, from: u64, to: u64, batch: u64) {
        let mut at = from;
        while at < to {
            let end = (at + batch).min(to);
            let tx = store.conn.unchecked_transaction().unwrap();
            let db = Db::new(&tx, &store.keys);
            let generation = store.seen.generation(&db).unwrap();
            for i in at..end {
                db.mark_seen(&lookup(i), generation).unwrap();
            }
            store.seen.recorded(&db, end - at).unwrap();
            tx.commit().unwrap();
            at = end;
        }
    }

    fn count(store: &Store, sql: &str) -> u64 {
        store
            .conn
            .query_row(sql, [], |r| r.get::<_, i64>(0))
            .unwrap()
            .try_into()
            .unwrap()
    }

    #[test]
    fn rotation_keeps_the_recent_set_small_and_drops_no_id() {
        let (_dir, mut store) = store();
        let n = 36 * GENERATION + 123;
        for batch in [1, 1000] {
            let from = if batch == 1 { 0 } else { 3000 };
            let to = if batch == 1 { 3000 } else { n };
            record(&mut store, from, to, batch);
            let recent = count(&store, "SELECT count(*) FROM seen_envelopes");
            assert!(recent <= 2 * GENERATION + CHECK_EVERY + 1000, "{recent}");
        }
        // About 30 generations left the recent set: merged into a level-1 run,
        // fewer than MERGE_RUNS level-0 runs left.
        let level_0 = runs(&store_db(&store), 0, LEVEL).unwrap().len();
        let level_1 = runs(&store_db(&store), LEVEL, 2 * LEVEL).unwrap().len();
        assert!(level_0 < MERGE_RUNS, "{level_0}");
        assert!(level_1 >= 1, "{level_1}");
        let recent = count(&store, "SELECT count(*) FROM seen_envelopes");
        let archived = count(&store, "SELECT count(*) FROM seen_archive");
        assert_eq!(recent + archived, n, "every id is kept exactly once");

        let db = store_db(&store);
        for i in (0..n).step_by(97).chain([0, n - 1, n - GENERATION]) {
            assert!(db.was_ever_seen(&lookup(i)).unwrap(), "id {i} was lost");
        }
        assert!(!db.was_ever_seen(&lookup(n)).unwrap());
        assert!(!db.is_archived(&lookup(n + 1)).unwrap());
    }

    fn store_db(store: &Store) -> Db<'_> {
        Db::new(&store.conn, &store.keys)
    }

    /// The newest generation stays in the recent set through the rotation
    /// that closes it: an id recorded just before a rotation is found
    /// without the archive.
    #[test]
    fn an_id_recorded_just_before_a_rotation_stays_recent() {
        let (_dir, mut store) = store();
        record(&mut store, 0, GENERATION, 1);
        let last = GENERATION - 1;
        record(&mut store, GENERATION, GENERATION + CHECK_EVERY + 1, 1);
        let db = store_db(&store);
        assert!(db.is_seen(&lookup(last)).unwrap());
        assert!(db.is_seen(&lookup(0)).unwrap());
    }

    #[test]
    fn imported_ids_are_one_sorted_run_each() {
        let (_dir, store) = store();
        let db = store_db(&store);
        let mut first: Vec<[u8; 32]> = (0..5000).map(lookup).collect();
        db.archive_seen(&mut first).unwrap();
        let mut second: Vec<[u8; 32]> = (4000..6000).map(lookup).collect();
        db.archive_seen(&mut second).unwrap();
        assert_eq!(runs(&db, 0, i64::MAX).unwrap(), vec![LEVEL, LEVEL + 1]);
        for i in [0, 4500, 5999] {
            assert!(db.is_archived(&lookup(i)).unwrap());
        }
        assert!(!db.is_archived(&lookup(6000)).unwrap());
    }
}
