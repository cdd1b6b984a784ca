//! Checkpoints off the commit path (docs/storage.md, "Connection settings").
//!
//! SQLite's automatic checkpoint runs inside the commit that takes the
//! write-ahead log past 1000 pages: that commit copies the log into the
//! database file and syncs it, on the caller's time. A store instead
//! replaces the automatic checkpoint with a WAL hook: a commit that leaves
//! [`CHECKPOINT_AFTER`] pages or more in the log wakes a thread of the
//! store's own, which runs a `PASSIVE` checkpoint on a connection of its
//! own while the caller goes on. A passive checkpoint never blocks a
//! writer and never waits for one: SQLite copies what every reader has
//! moved past, and the next writer starts the log over once all of it is
//! copied.
//!
//! Durability is unchanged: a commit with `synchronous = FULL` syncs the
//! log before it returns, as before; the checkpoint syncs the log before
//! copying it and the database file after, as SQLite's own does (the
//! thread's connection has the store's `synchronous` setting, never OFF).
//! A crash mid-checkpoint leaves a log that is copied again on the next
//! open.
//!
//! The log stays bounded: if it reaches [`WAL_LIMIT`] pages anyway (the
//! thread fell behind, or another handle's reader kept it from
//! finishing), the committing connection checkpoints itself, as SQLite
//! would have, and `journal_size_limit` truncates the file after it is
//! reset.

use std::ffi::c_int;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, OpenFlags};

use crate::options::{Durability, OpenOptions};

/// Log pages after which a commit wakes the checkpoint thread: SQLite's
/// own automatic checkpoint threshold.
pub(crate) const CHECKPOINT_AFTER: c_int = 1000;

/// Log pages at which the committing connection checkpoints itself
/// (64 MiB of 4 KiB pages).
pub(crate) const WAL_LIMIT: c_int = 16_384;

/// The size the log file is truncated to after it was reset, in bytes.
pub(crate) const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

#[derive(Default)]
struct Signal {
    requested: bool,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    signal: Mutex<Signal>,
    wake: Condvar,
    /// Held by whoever checkpoints for this store (the thread, the hook,
    /// [`crate::Store::checkpoint`]): SQLite refuses a second checkpoint
    /// while one runs, without waiting.
    running: Mutex<()>,
}

impl Shared {
    fn request(&self) {
        let mut signal = self.signal.lock().unwrap_or_else(PoisonError::into_inner);
        signal.requested = true;
        self.wake.notify_one();
    }
}

/// A store's checkpoint thread. Dropping it stops the thread and waits
/// for it.
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl core::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Checkpointer").finish_non_exhaustive()
    }
}

impl Checkpointer {
    /// Opens the thread's connection to the database at `path` and
    /// installs the hook on `conn` (in WAL mode already). `None` if the
    /// second connection cannot be opened: `conn` then keeps SQLite's
    /// automatic checkpoint.
    pub(crate) fn start(conn: &mut Connection, path: &Path, options: &OpenOptions) -> Option<Self> {
        let own = open_own(path, options).ok()?;
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("sotto-store checkpoint".into())
                .spawn(move || run(&own, &shared))
                .ok()?
        };
        let hook = {
            let shared = Arc::clone(&shared);
            move |wal: &mut Wal, pages: c_int| -> rusqlite::Result<()> {
                if pages >= WAL_LIMIT {
                    // Not while the thread is at it: it is copying this log.
                    if let Ok(_running) = shared.running.try_lock() {
                        // Busy (another handle's checkpoint): a later commit
                        // tries again.
                        let _ = wal.checkpoint_v2(CheckpointMode::PASSIVE);
                    }
                } else if pages >= CHECKPOINT_AFTER {
                    shared.request();
                }
                Ok(())
            }
        };
        let checkpointer = Self {
            shared,
            thread: Some(thread),
        };
        // Replaces SQLite's automatic checkpoint (which is a WAL hook too).
        conn.wal_hook(Some(hook)).ok()?;
        // Best effort: without it the log file keeps its largest size.
        let _ = conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT);
        Some(checkpointer)
    }

    /// Runs `f` (a checkpoint on the store's own connection) while the
    /// thread is not checkpointing.
    pub(crate) fn exclusive<T>(&self, f: impl FnOnce() -> T) -> T {
        let _running = self
            .shared
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f()
    }

    /// Stops the thread and gives `conn` SQLite's automatic checkpoint
    /// back (before the journal mode changes, which needs the file to
    /// itself).
    pub(crate) fn stop(mut self, conn: &mut Connection) -> rusqlite::Result<()> {
        self.halt();
        conn.wal_hook(None::<fn(&mut Wal, c_int) -> rusqlite::Result<()>>)?;
        conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_AFTER)
    }

    fn halt(&mut self) {
        {
            let mut signal = self
                .shared
                .signal
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            signal.stop = true;
            self.shared.wake.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            // A panic in the thread is not the caller's failure: the
            // store's own checkpoints still work.
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The thread's connection: checkpoints only, never a read or write of
/// its own, synced like the store's.
fn open_own(path: &Path, options: &OpenOptions) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "trusted_schema", "OFF")?;
    conn.pragma_update(
        None,
        "synchronous",
        match options.durability_mode() {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        },
    )?;
    // Never checkpoint from this connection's own commits (it has none).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

fn run(conn: &Connection, shared: &Shared) {
    loop {
        {
            let mut signal = shared.signal.lock().unwrap_or_else(PoisonError::into_inner);
            while !signal.requested && !signal.stop {
                signal = shared
                    .wake
                    .wait(signal)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if signal.stop {
                return;
            }
            signal.requested = false;
        }
        let _running = shared
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Busy or an I/O error: the next commit past the threshold asks
        // again, and the hook's limit bounds the log meanwhile.
        let _ = conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::options::{KdfParams, OpenOptions};
    use crate::store::Store;
    use crate::types::{DeliveryState, Direction, NewMessage};

    /// A commit that leaves more than the threshold in the log returns
    /// without checkpointing; the thread copies the log into the database
    /// file soon after, and the store's own TRUNCATE checkpoint still works.
    #[test]
    fn the_thread_checkpoints_after_a_large_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let options = OpenOptions::new().kdf(KdfParams::new(64, 1, 1).unwrap());
        let mut store = Store::create(&path, b"pass", &options).unwrap();
        assert!(store.checkpoint().unwrap());
        let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let before = size(&path);
        let body = vec![7u8; 3000];
        let messages: Vec<NewMessage<'_>> = (0..2000)
            .map(|i| NewMessage {
                direction: Direction::Incoming,
                state: DeliveryState::Read,
                timestamp: i,
                body: &body,
            })
            .collect();
        store.import_messages("a", &messages).unwrap();
        // More than CHECKPOINT_AFTER pages went to the log, none yet to the
        // database file ...
        let wal = path.with_extension("db-wal");
        assert!(size(&wal) > 4096 * super::CHECKPOINT_AFTER as u64);
        // ... until the thread copies them.
        let start = Instant::now();
        while size(&path) < before + 2000 * 3000 {
            assert!(start.elapsed() < Duration::from_secs(20), "no checkpoint");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(store.checkpoint().unwrap());
        assert_eq!(size(&wal), 0);
        assert_eq!(store.message_count("a").unwrap(), 2000);
    }
}
