//! The connections that only read.
//!
//! In WAL mode readers do not wait for the writer, nor it for them: a
//! fetch is served while a batch commits. A reader sees every transaction
//! committed before its statement (or read transaction) began, so a
//! caller whose write was answered reads it back on any reader: writes
//! are answered only after their commit (see `group_commit`).
//!
//! Asynchronous callers ([`ReadThread::submit`]) hand their reads to one
//! thread of the store's own, which runs whatever is queued, one read
//! after another, on the pool's connections: the reads that a commit sets
//! off together (the pushes to each recipient it stored for) are served
//! by one wake-up of that thread, not one blocking-pool thread each.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::store::StoreError;

/// The name of the read thread (what `/proc/<pid>/task/*/comm` shows).
pub(super) const READER_THREAD: &str = "sqlite-reader";

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

/// A read queued for the [`ReadThread`]: it runs on a pooled connection
/// and answers its caller.
type Job = Box<dyn FnOnce(&Readers) + Send>;

/// The reads waiting for the read thread.
#[derive(Default)]
struct Jobs {
    queue: VecDeque<Job>,
    /// Whether the thread is asleep: only then does a new read wake it.
    asleep: bool,
    /// No more reads are taken: the [`ReadThread`] was dropped.
    closed: bool,
}

/// What the read thread and its callers share.
struct JobQueue {
    jobs: Mutex<Jobs>,
    work: Condvar,
}

impl JobQueue {
    fn jobs(&self) -> MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A thread that runs the reads of asynchronous callers on a [`Readers`]
/// pool, so that no thread waits for each read.
pub(super) struct ReadThread {
    queue: Arc<JobQueue>,
    thread: Option<JoinHandle<()>>,
}

impl ReadThread {
    /// Starts the thread, reading with `readers`.
    pub(super) fn new(readers: Arc<Readers>) -> Result<Self, StoreError> {
        let queue = Arc::new(JobQueue {
            jobs: Mutex::new(Jobs::default()),
            work: Condvar::new(),
        });
        let thread = {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(READER_THREAD.to_owned())
                .spawn(move || run(&queue, &readers))
                .map_err(|e| StoreError::Backend(Box::new(e)))?
        };
        Ok(Self {
            queue,
            thread: Some(thread),
        })
    }

    /// Queues `read` and returns its result once the thread ran it. The
    /// read is queued now, not when the future is first polled.
    pub(super) fn submit<T, F>(
        &self,
        read: F,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |readers: &Readers| {
            // A caller that is gone needs no answer.
            let _ = reply.send(readers.read(read));
        });
        let queued = {
            let mut jobs = self.queue.jobs();
            if jobs.closed {
                false
            } else {
                jobs.queue.push_back(job);
                if std::mem::replace(&mut jobs.asleep, false) {
                    drop(jobs);
                    self.queue.work.notify_one();
                }
                true
            }
        };
        async move {
            if !queued {
                return Err(StoreError::Backend(
                    "the store is closed: it takes no more reads".into(),
                ));
            }
            answer.await.unwrap_or_else(|_| {
                Err(StoreError::Backend(
                    "a read was dropped without an answer".into(),
                ))
            })
        }
    }
}

impl Drop for ReadThread {
    /// Closes the queue and waits for the thread to run what was queued.
    fn drop(&mut self) {
        self.queue.jobs().closed = true;
        self.queue.work.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The read thread: runs every queued read, oldest first, until the queue
/// is closed and empty.
fn run(queue: &JobQueue, readers: &Readers) {
    loop {
        let ready: Vec<Job> = {
            let mut jobs = queue.jobs();
            while jobs.queue.is_empty() {
                if jobs.closed {
                    return;
                }
                jobs.asleep = true;
                jobs = queue
                    .work
                    .wait(jobs)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            jobs.asleep = false;
            jobs.queue.drain(..).collect()
        };
        for job in ready {
            // A read that panics (a bug) drops its reply, which tells its
            // caller; the thread goes on with the others.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(readers)));
        }
    }
}
