//! The connections that only read.
//!
//! In WAL mode readers do not wait for the writer, nor it for them: a
//! fetch is served while a batch commits. A reader sees every transaction
//! committed before its statement (or read transaction) began, so a
//! caller whose write was answered reads it back on any reader: writes
//! are answered only after their commit (see `group_commit`).

use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use rusqlite::Connection;

use crate::store::StoreError;

/// The most read connections open at once. Reads are short (one indexed
/// page of envelopes at most); beyond this many at a time, a reader waits
/// for one to come back.
const MAX_READERS: usize = 4;

/// A connection taken from the pool, given back when dropped (also when
/// the read panics: its transaction, if any, was rolled back by then).
struct Lent<'a> {
    readers: &'a Readers,
    conn: Option<Connection>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.readers.give_back(conn);
        }
    }
}

/// A pool of read connections to one database file, opened as needed.
pub(super) struct Readers {
    path: PathBuf,
    pool: Mutex<Pool>,
    returned: Condvar,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Connection>,
    open: usize,
}

impl Readers {
    /// Reads `path`, which the writer has already opened and set up.
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            pool: Mutex::new(Pool::default()),
            returned: Condvar::new(),
        }
    }

    /// Runs `read` on a read connection.
    pub(super) fn read<T>(
        &self,
        read: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut lent = Lent {
            readers: self,
            conn: Some(self.take()?),
        };
        match lent.conn.as_mut() {
            Some(conn) => read(conn),
            None => Err(StoreError::Backend("no read connection".into())),
        }
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let mut pool = self.pool();
        loop {
            if let Some(conn) = pool.idle.pop() {
                return Ok(conn);
            }
            if pool.open < MAX_READERS {
                pool.open += 1;
                drop(pool);
                return self.open().inspect_err(|_| self.pool().open -= 1);
            }
            pool = self
                .returned
                .wait(pool)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn give_back(&self, conn: Connection) {
        self.pool().idle.push(conn);
        self.returned.notify_one();
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open(&self.path)?;
        super::set_up(&conn)?;
        // Reads only: a bug cannot write around the batches.
        conn.pragma_update(None, "query_only", "ON")?;
        Ok(conn)
    }

    /// The pool holds only connections and a count: a poisoned lock is
    /// taken as it is.
    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
