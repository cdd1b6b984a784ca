//! Group commit: the writes of many callers in one durable transaction.
//!
//! Every write of [`SqliteStore`](super::SqliteStore) goes through one
//! [`GroupCommit`], which owns the store's only writing connection and a
//! thread of its own, the *writer* (named [`WRITER_THREAD`]). A caller
//! queues its operation: a thread calls [`GroupCommit::write`] and blocks
//! until its answer, a task calls [`GroupCommit::submit`] and awaits it,
//! without a thread waiting for it. The writer takes every operation
//! queued (up to [`MAX_BATCH_OPERATIONS`] and [`MAX_BATCH_BYTES`]), runs
//! them in order in one `BEGIN IMMEDIATE … COMMIT` (WAL with `synchronous
//! = FULL`: the commit is on disk when `COMMIT` returns), and only then
//! answers each caller with its own result. Operations that arrive while
//! a batch commits wait for the next one, so under load one `fsync`
//! serves many callers, and with a single caller a batch is that caller's
//! operation alone: nothing ever waits on purpose for company.
//!
//! What each caller gets is exactly what it would have got alone, in the
//! order of the batch:
//!
//! - each operation runs inside its own savepoint, after the ones before
//!   it in the batch, and sees their writes (dedupe, quotas, ids);
//! - an operation that fails has its savepoint rolled back and the others
//!   are kept (should SQLite roll the whole transaction back, as it may
//!   on `SQLITE_FULL` or an I/O error, the batch runs again without the
//!   failed operation, see [`Shared::run_batch`]);
//! - nobody is answered before the commit that holds their write is
//!   durable, and if the commit fails, everyone in the batch gets the
//!   error and nothing of the batch is stored.
//!
//! An operation is queued as an owned closure (`Send + 'static`) so that
//! the writer can run it. [`GroupCommit::write_here`] is for an operation
//! that must run on its caller's thread (a `SendMulti` with the relay's
//! first-contact callback, which is not `Send`): its caller waits for the
//! batch running now, then leads the next batch itself, first in it, with
//! whatever else is queued, while the writer waits.
//!
//! Dropping the [`GroupCommit`] closes it: new operations are refused,
//! the writer runs (and answers) every operation already queued, then
//! ends; the drop returns once it has.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use crate::store::StoreError;

/// The most operations in one batch. Each is a few indexed statements
/// (an envelope: about seven), so a full batch is a few milliseconds of
/// work before its commit; the callers behind it wait no longer than that.
pub(super) const MAX_BATCH_OPERATIONS: usize = 256;

/// The most bytes (envelopes, bodies, lists and keys the operations
/// write) in one batch, which bounds what one commit writes and syncs.
/// An operation larger than this runs in a batch of its own.
pub(super) const MAX_BATCH_BYTES: usize = 4 << 20;

/// The name of the writer thread (what `/proc/<pid>/task/*/comm` shows).
pub(super) const WRITER_THREAD: &str = "sqlite-writer";

/// One operation's part in a batch.
trait Step {
    /// Runs the operation in the batch's transaction and keeps its
    /// result; whether it succeeded (if not, its writes are rolled back).
    /// Called again if the batch has to start over.
    fn run(&mut self, conn: &Connection) -> bool;
}

/// An operation and its latest result.
struct Operation<T, F> {
    op: F,
    result: Option<Result<T, StoreError>>,
}

impl<T, F> Operation<T, F> {
    fn new(op: F) -> Self {
        Self { op, result: None }
    }

    /// Its result in a batch that ended with `batch`.
    fn outcome(self, batch: &Result<(), StoreError>) -> Result<T, StoreError> {
        match (batch, self.result) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::Backend(
                "a batch committed without running an operation".into(),
            )),
            (Err(e), _) => Err(for_each_caller(e)),
        }
    }
}

impl<T, F: FnMut(&Connection) -> Result<T, StoreError>> Step for Operation<T, F> {
    fn run(&mut self, conn: &Connection) -> bool {
        let result = (self.op)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }
}

/// Where a queued operation's result goes. Dropped unanswered (the batch
/// was abandoned), it tells its caller so.
enum Reply<T> {
    /// A thread blocked in [`GroupCommit::write`].
    Thread(Sender<Result<T, StoreError>>),
    /// A task awaiting [`GroupCommit::submit`]'s [`Answer`].
    Task(oneshot::Sender<Result<T, StoreError>>),
}

impl<T> Reply<T> {
    fn send(self, result: Result<T, StoreError>) {
        // A caller that is gone (its thread panicked, its task was
        // dropped) needs no answer; its write stands.
        match self {
            Self::Thread(reply) => {
                let _ = reply.send(result);
            }
            Self::Task(reply) => {
                let _ = reply.send(result);
            }
        }
    }
}

/// An operation in the queue, with the way to its caller.
trait Queued: Send {
    fn step(&mut self) -> &mut (dyn Step + 'static);
    fn weight(&self) -> usize;
    /// Answers the caller once the batch ended with `batch`.
    fn answer(self: Box<Self>, batch: &Result<(), StoreError>);
}

struct Waiting<T, F> {
    operation: Operation<T, F>,
    weight: usize,
    reply: Reply<T>,
}

impl<T, F> Queued for Waiting<T, F>
where
    T: Send + 'static,
    F: FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    fn step(&mut self) -> &mut (dyn Step + 'static) {
        &mut self.operation
    }

    fn weight(&self) -> usize {
        self.weight
    }

    fn answer(self: Box<Self>, batch: &Result<(), StoreError>) {
        let Waiting {
            operation, reply, ..
        } = *self;
        reply.send(operation.outcome(batch));
    }
}

/// The operations waiting for a batch.
#[derive(Default)]
struct Queue {
    /// Queued operations, oldest first.
    pending: VecDeque<Box<dyn Queued>>,
    /// Callers of [`GroupCommit::write_here`] waiting to lead, oldest
    /// first; they lead before the writer takes the next batch.
    would_lead: VecDeque<Sender<()>>,
    /// Whether a batch is being run (by the writer, or by a caller of
    /// `write_here`), or a caller has been told to lead one.
    leading: bool,
    /// Whether the writer is asleep, waiting for work: only then does a
    /// new operation wake it.
    writer_asleep: bool,
    /// No more operations are taken: the [`GroupCommit`] was dropped, or
    /// its writer is gone.
    closed: bool,
}

/// What the writer and the callers share.
struct Shared {
    conn: Mutex<Connection>,
    queue: Mutex<Queue>,
    /// Wakes the writer: work was queued, leadership came free, or the
    /// queue was closed.
    work: Condvar,
    #[cfg(test)]
    hooks: test_hooks::Hooks,
}

/// The store's writing connection, its writer thread and the batches run
/// on it.
pub(super) struct GroupCommit {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

/// The answer to an operation handed to [`GroupCommit::submit`]: its
/// result, once the batch holding it is committed (durable).
pub(super) struct Answer<T>(Result<oneshot::Receiver<Result<T, StoreError>>, StoreError>);

impl<T> Answer<T> {
    /// Waits for the result.
    pub(super) async fn result(self) -> Result<T, StoreError> {
        match self.0 {
            Ok(answer) => answer.await.unwrap_or_else(|_| Err(abandoned())),
            Err(e) => Err(e),
        }
    }
}

impl GroupCommit {
    /// Takes `conn`, opened and set up (WAL, `synchronous = FULL`), as the
    /// only connection that writes, and starts the writer thread.
    pub(super) fn new(conn: Connection) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            conn: Mutex::new(conn),
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            #[cfg(test)]
            hooks: test_hooks::Hooks::default(),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(WRITER_THREAD.to_owned())
                .spawn(move || shared.run_writer())
                .map_err(|e| StoreError::Backend(Box::new(e)))?
        };
        Ok(Self {
            shared,
            writer: Some(writer),
        })
    }

    /// Runs `op` in the next batch and returns its result once that batch
    /// is committed (durable), blocking this thread until then. `weight`
    /// is about the bytes it writes. `op` runs on the writer thread, and
    /// may run more than once (only the last run's writes and result
    /// count, see [`Shared::run_batch`]).
    pub(super) fn write<T, F>(&self, weight: usize, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = channel();
        self.shared.push(Box::new(Waiting {
            operation: Operation::new(op),
            weight,
            reply: Reply::Thread(reply),
        }))?;
        answer.recv().unwrap_or_else(|_| Err(abandoned()))
    }

    /// Queues `op` for the next batch, as [`write`](Self::write) does,
    /// without waiting: the [`Answer`] gives its result once that batch
    /// is committed (durable). The operation is queued now, not when the
    /// answer is first awaited, and runs (and is committed) even if the
    /// answer is dropped.
    pub(super) fn submit<T, F>(&self, weight: usize, op: F) -> Answer<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let queued = self.shared.push(Box::new(Waiting {
            operation: Operation::new(op),
            weight,
            reply: Reply::Task(reply),
        }));
        Answer(queued.map(|()| answer))
    }

    /// Runs `op` on this thread, in a batch this caller leads, and returns
    /// its result once that batch is committed. For an operation that
    /// cannot be sent to another thread; it waits for the batch running
    /// now, if any, then runs first in the next one, with what else is
    /// queued. `op` may run more than once, as for [`write`](Self::write).
    pub(super) fn write_here<T, F>(&self, weight: usize, op: F) -> Result<T, StoreError>
    where
        F: FnMut(&Connection) -> Result<T, StoreError>,
    {
        let turn: Option<Receiver<()>> = {
            let mut queue = self.shared.queue();
            if queue.closed {
                return Err(closed());
            }
            if std::mem::replace(&mut queue.leading, true) {
                let (tell, turn) = channel();
                queue.would_lead.push_back(tell);
                Some(turn)
            } else {
                None
            }
        };
        if let Some(turn) = turn {
            turn.recv().map_err(|_| abandoned())?;
        }
        let mut operation = Operation::new(op);
        let batch = self.shared.lead(Some((&mut operation, weight)));
        operation.outcome(&batch)
    }

    /// The writing connection, for tests that look into the file.
    #[cfg(test)]
    pub(super) fn connection(&self) -> MutexGuard<'_, Connection> {
        self.shared
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    pub(super) fn hooks(&self) -> &test_hooks::Hooks {
        &self.shared.hooks
    }

    /// Whether a batch is being run (or its leader was told to start).
    #[cfg(test)]
    pub(super) fn leading(&self) -> bool {
        self.shared.queue().leading
    }
}

impl Drop for GroupCommit {
    /// Closes the queue and waits for the writer to run what was queued.
    fn drop(&mut self) {
        {
            let mut queue = self.shared.queue();
            queue.closed = true;
        }
        self.shared.work.notify_all();
        if let Some(writer) = self.writer.take() {
            // A writer that panicked has answered nobody it held: their
            // replies were dropped, and they were told.
            let _ = writer.join();
        }
    }
}

impl Shared {
    /// Queues `operation` and wakes the writer if it sleeps and no caller
    /// of `write_here` leads. Refused once the queue is closed.
    fn push(&self, operation: Box<dyn Queued>) -> Result<(), StoreError> {
        let mut queue = self.queue();
        if queue.closed {
            return Err(closed());
        }
        queue.pending.push_back(operation);
        #[cfg(test)]
        self.hooks.arrived.notify_all();
        if queue.writer_asleep && !queue.leading {
            queue.writer_asleep = false;
            drop(queue);
            self.work.notify_one();
        }
        Ok(())
    }

    /// The writer thread: runs a batch whenever operations are queued and
    /// nobody else leads, until the queue is closed and empty.
    fn run_writer(&self) {
        // Whatever ends the writer, nobody waits for it in vain.
        let _gone = WriterGone(self);
        loop {
            {
                let mut queue = self.queue();
                loop {
                    if !queue.leading && !queue.pending.is_empty() {
                        break;
                    }
                    if queue.closed && !queue.leading && queue.would_lead.is_empty() {
                        return;
                    }
                    queue.writer_asleep = true;
                    queue = self
                        .work
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                    queue.writer_asleep = false;
                }
                queue.leading = true;
            }
            // A panic inside a batch (a bug) drops the batch's operations,
            // whose callers are told it was abandoned; the writer goes on.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| self.lead(None)));
        }
    }

    /// Runs one batch as its leader: `own` first (with its weight), then
    /// what is queued, within the bounds. Hands leadership on, then
    /// answers every queued caller; returns how the batch ended.
    fn lead(&self, own: Option<(&mut dyn Step, usize)>) -> Result<(), StoreError> {
        // Hands leadership on even if a step panics.
        let leadership = Leadership(self);
        let mut batch = self.take_batch(own.as_ref().map(|(_, weight)| *weight));
        let outcome = {
            let mut steps: Vec<&mut dyn Step> = Vec::with_capacity(batch.len() + 1);
            if let Some((step, _)) = own {
                steps.push(step);
            }
            for queued in &mut batch {
                steps.push(queued.step());
            }
            match self.conn.lock() {
                Ok(mut conn) => self.run_batch(&mut conn, &mut steps),
                // A panic inside a batch (a bug) dropped its transaction,
                // which rolled it back: the connection is as after any
                // other failed batch.
                Err(poisoned) => self.run_batch(&mut poisoned.into_inner(), &mut steps),
            }
        };
        // A caller of `write_here` waiting can start the next batch while
        // this one's callers are answered.
        drop(leadership);
        for queued in batch {
            queued.answer(&outcome);
        }
        outcome
    }

    /// The queued operations for the next batch, oldest first: at least
    /// one (unless the leader brings its own), at most
    /// [`MAX_BATCH_OPERATIONS`] and, beyond the first,
    /// [`MAX_BATCH_BYTES`] in all.
    fn take_batch(&self, own_weight: Option<usize>) -> Vec<Box<dyn Queued>> {
        let queue = self.queue();
        #[cfg(test)]
        let queue = self.hooks.gather(queue, usize::from(own_weight.is_some()));
        let mut queue = queue;
        let (mut count, mut bytes) = match own_weight {
            Some(weight) => (1, weight),
            None => (0, 0),
        };
        let mut batch = Vec::new();
        while let Some(next) = queue.pending.front() {
            let weight = next.weight();
            if count > 0
                && (count >= MAX_BATCH_OPERATIONS || bytes.saturating_add(weight) > MAX_BATCH_BYTES)
            {
                break;
            }
            count += 1;
            bytes = bytes.saturating_add(weight);
            batch.extend(queue.pending.pop_front());
        }
        batch
    }

    /// Hands leadership to the oldest caller of `write_here` waiting to
    /// lead; or else leaves it free, waking the writer if it sleeps and
    /// has work (or must see the queue closed).
    fn hand_off(&self) {
        let mut queue = self.queue();
        while let Some(next) = queue.would_lead.pop_front() {
            if next.send(()).is_ok() {
                return;
            }
        }
        queue.leading = false;
        if queue.writer_asleep && (!queue.pending.is_empty() || queue.closed) {
            queue.writer_asleep = false;
            drop(queue);
            self.work.notify_one();
        }
    }

    /// The queue. Nothing runs while it is locked but pushes and pops, so
    /// a panic cannot leave it half changed: a poisoned lock is taken as
    /// it is.
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `steps` in one `BEGIN IMMEDIATE … COMMIT`, each inside its own
    /// savepoint: a step that fails has its writes rolled back, the others
    /// are kept.
    ///
    /// On some errors (`SQLITE_FULL`, I/O errors, out of memory) SQLite
    /// may roll back the whole transaction, not just the statement. Then
    /// the step that failed keeps its error and the batch starts over
    /// without it: the steps before it run again in a new transaction,
    /// where they see what they saw before, minus nothing, and the steps
    /// after it see what they would have seen had it failed alone. Only
    /// the last run of a step counts; none is answered before the commit.
    /// Each start-over leaves one more step out, so there are at most as
    /// many as steps.
    ///
    /// `Err` if the batch could not be committed: nothing of it is stored.
    fn run_batch(
        &self,
        conn: &mut Connection,
        steps: &mut [&mut dyn Step],
    ) -> Result<(), StoreError> {
        // Steps whose failure rolled back a whole transaction: their error
        // is their answer, they do not run again.
        let mut left_out = vec![false; steps.len()];
        'batch: loop {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for (step, left_out) in steps.iter_mut().zip(left_out.iter_mut()) {
                if *left_out {
                    continue;
                }
                tx.prepare_cached("SAVEPOINT operation")?.execute([])?;
                if step.run(&tx) {
                    tx.prepare_cached("RELEASE operation")?.execute([])?;
                } else if tx.is_autocommit() {
                    *left_out = true;
                    continue 'batch;
                } else {
                    tx.prepare_cached("ROLLBACK TO operation")?.execute([])?;
                    tx.prepare_cached("RELEASE operation")?.execute([])?;
                }
            }
            #[cfg(test)]
            self.hooks.before_commit()?;
            tx.commit()?;
            return Ok(());
        }
    }
}

/// Leadership of the batch being run; dropping it hands it on.
struct Leadership<'a>(&'a Shared);

impl Drop for Leadership<'_> {
    fn drop(&mut self) {
        self.0.hand_off();
    }
}

/// The writer's end, however it comes: the queue is closed and every
/// operation still in it dropped, which tells its caller.
struct WriterGone<'a>(&'a Shared);

impl Drop for WriterGone<'_> {
    fn drop(&mut self) {
        let abandoned = {
            let mut queue = self.0.queue();
            queue.closed = true;
            std::mem::take(&mut queue.pending)
        };
        drop(abandoned);
    }
}

/// Why a batch failed, for every caller in it but one.
#[derive(Debug, thiserror::Error)]
#[error("the batch this write was in was not committed: {0}")]
struct BatchFailed(String);

/// The error of a failed batch, for one of its callers.
fn for_each_caller(e: &StoreError) -> StoreError {
    match e {
        StoreError::DiskFull => StoreError::DiskFull,
        StoreError::Corrupt(what) => StoreError::Corrupt(what),
        other => StoreError::Backend(Box::new(BatchFailed(other.to_string()))),
    }
}

/// The store is closing (dropped): it takes no more writes.
fn closed() -> StoreError {
    StoreError::Backend("the store is closed: it takes no more writes".into())
}

/// A caller's batch was dropped without an answer: its leader (the writer
/// thread, or a caller of `write_here`) panicked, or the writer is gone.
fn abandoned() -> StoreError {
    StoreError::Backend(Box::new(BatchFailed("the batch was abandoned".to_owned())))
}

#[cfg(test)]
pub(super) mod test_hooks {
    //! Fault injection and observation for the tests.

    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Condvar, MutexGuard};
    use std::time::{Duration, Instant};

    use super::Queue;
    use crate::store::StoreError;

    #[derive(Default)]
    pub(in crate::store::sqlite) struct Hooks {
        fail_next_commit: AtomicBool,
        gather: AtomicUsize,
        commits: AtomicU64,
        pub(super) arrived: Condvar,
    }

    impl Hooks {
        /// The next batch fails just before its `COMMIT`, as a crash there
        /// or a failing disk would make it.
        pub(in crate::store::sqlite) fn fail_next_commit(&self) {
            self.fail_next_commit.store(true, Ordering::SeqCst);
        }

        /// The next batch waits (up to 10 s) until it has `operations`.
        pub(in crate::store::sqlite) fn gather_next_batch(&self, operations: usize) {
            self.gather.store(operations, Ordering::SeqCst);
        }

        /// Batches committed so far.
        pub(in crate::store::sqlite) fn commits(&self) -> u64 {
            self.commits.load(Ordering::SeqCst)
        }

        pub(super) fn before_commit(&self) -> Result<(), StoreError> {
            if self.fail_next_commit.swap(false, Ordering::SeqCst) {
                return Err(StoreError::Backend("injected commit failure".into()));
            }
            self.commits.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }

        pub(super) fn gather<'a>(
            &self,
            mut queue: MutexGuard<'a, Queue>,
            own: usize,
        ) -> MutexGuard<'a, Queue> {
            let want = self.gather.swap(0, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(10);
            while queue.pending.len() + own < want && Instant::now() < deadline {
                queue = self
                    .arrived
                    .wait_timeout(queue, Duration::from_millis(10))
                    .unwrap()
                    .0;
            }
            queue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> (tempfile::TempDir, GroupCommit) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("t.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER UNIQUE);")
            .unwrap();
        (dir, GroupCommit::new(conn).unwrap())
    }

    fn values(writer: &GroupCommit) -> Vec<i64> {
        writer
            .connection()
            .prepare("SELECT v FROM t ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Inserts `v`, then fails with `fail` if given (after writing).
    fn insert(
        v: i64,
        fail: Option<fn() -> StoreError>,
    ) -> impl FnMut(&Connection) -> Result<i64, StoreError> {
        move |conn| {
            conn.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
            match fail {
                Some(fail) => Err(fail()),
                None => Ok(v),
            }
        }
    }

    #[test]
    fn a_failed_step_is_rolled_back_alone_and_later_steps_see_the_earlier_ones() {
        let (_dir, writer) = table();
        let mut a = Operation::new(insert(1, None));
        let mut b = Operation::new(insert(2, Some(|| StoreError::AccessDenied)));
        // Sees `a`'s row: the unique constraint fails it.
        let mut c = Operation::new(insert(1, None));
        let mut d = Operation::new(insert(3, None));
        let mut conn = writer.connection();
        let mut steps: Vec<&mut dyn Step> = vec![&mut a, &mut b, &mut c, &mut d];
        writer.shared.run_batch(&mut conn, &mut steps).unwrap();
        drop(conn);
        let ok = Ok(());
        assert_eq!(a.outcome(&ok).unwrap(), 1);
        assert!(matches!(b.outcome(&ok), Err(StoreError::AccessDenied)));
        assert!(matches!(c.outcome(&ok), Err(StoreError::Backend(_))));
        assert_eq!(d.outcome(&ok).unwrap(), 3);
        assert_eq!(values(&writer), [1, 3]);
        assert_eq!(writer.hooks().commits(), 1);
    }

    #[test]
    fn a_step_whose_failure_rolls_back_the_transaction_is_left_out_and_the_rest_runs_again() {
        let (_dir, writer) = table();
        let runs = std::cell::Cell::new(0);
        let mut a = Operation::new(|conn: &Connection| {
            runs.set(runs.get() + 1);
            conn.execute("INSERT INTO t (v) VALUES (1)", [])?;
            Ok(())
        });
        // As SQLite does on some errors: the whole transaction is gone.
        let mut b = Operation::new(|conn: &Connection| -> Result<(), StoreError> {
            conn.execute("INSERT INTO t (v) VALUES (2)", [])?;
            conn.execute_batch("ROLLBACK")?;
            Err(StoreError::DiskFull)
        });
        let mut c = Operation::new(insert(3, None));
        let mut conn = writer.connection();
        let mut steps: Vec<&mut dyn Step> = vec![&mut a, &mut b, &mut c];
        writer.shared.run_batch(&mut conn, &mut steps).unwrap();
        drop(conn);
        let ok = Ok(());
        assert!(a.outcome(&ok).is_ok());
        assert!(matches!(b.outcome(&ok), Err(StoreError::DiskFull)));
        assert_eq!(c.outcome(&ok).unwrap(), 3);
        assert_eq!(runs.get(), 2, "the step before ran again");
        assert_eq!(values(&writer), [1, 3]);
    }

    #[test]
    fn a_failed_commit_fails_every_step_and_stores_nothing() {
        let (_dir, writer) = table();
        writer.hooks().fail_next_commit();
        let mut a = Operation::new(insert(1, None));
        let mut b = Operation::new(insert(2, None));
        let mut conn = writer.connection();
        let mut steps: Vec<&mut dyn Step> = vec![&mut a, &mut b];
        let batch = writer.shared.run_batch(&mut conn, &mut steps);
        drop(conn);
        assert!(batch.is_err());
        assert!(a.outcome(&batch).is_err() && b.outcome(&batch).is_err());
        assert!(values(&writer).is_empty());
        assert_eq!(writer.hooks().commits(), 0);
    }

    #[test]
    fn concurrent_writers_share_commits_and_each_gets_its_own_result() {
        let (_dir, writer) = table();
        let writer = std::sync::Arc::new(writer);
        writer.hooks().gather_next_batch(8);
        let threads: Vec<_> = (0..8)
            .map(|v| {
                let writer = writer.clone();
                std::thread::spawn(move || writer.write(8, insert(v, None)))
            })
            .collect();
        let mut got: Vec<i64> = threads
            .into_iter()
            .map(|t| t.join().unwrap().unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..8).collect::<Vec<_>>());
        assert_eq!(writer.hooks().commits(), 1, "one batch");
    }

    #[test]
    fn an_operation_run_here_leads_a_batch_with_the_queued_ones() {
        let (_dir, writer) = table();
        let writer = std::sync::Arc::new(writer);
        writer.hooks().gather_next_batch(4);
        let here = {
            let writer = writer.clone();
            std::thread::spawn(move || {
                let not_send = std::rc::Rc::new(10);
                writer.write_here(8, |conn| insert(*not_send, None)(conn))
            })
        };
        // It leads (and waits for the others) before they queue.
        while !writer.leading() {
            std::thread::yield_now();
        }
        let queued: Vec<_> = (0..3)
            .map(|v| {
                let writer = writer.clone();
                std::thread::spawn(move || writer.write(8, insert(v, None)))
            })
            .collect();
        assert_eq!(here.join().unwrap().unwrap(), 10);
        for t in queued {
            t.join().unwrap().unwrap();
        }
        assert_eq!(writer.hooks().commits(), 1);
        assert_eq!(values(&writer).len(), 4);
    }

    #[test]
    fn a_batch_is_bounded_in_bytes_and_a_larger_operation_runs_alone() {
        let (_dir, writer) = table();
        let writer = std::sync::Arc::new(writer);
        writer.hooks().gather_next_batch(4);
        let weights = [
            MAX_BATCH_BYTES / 2,
            MAX_BATCH_BYTES / 2,
            MAX_BATCH_BYTES * 2,
            1,
        ];
        let threads: Vec<_> = weights
            .into_iter()
            .zip(0..)
            .map(|(weight, v)| {
                let writer = writer.clone();
                std::thread::spawn(move || writer.write(weight, insert(v, None)))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(values(&writer).len(), 4);
        // Whatever the order they queued in, the large one is a batch of
        // its own, and the two halves and the byte do not fit in one.
        assert!(writer.hooks().commits() >= 3);
    }

    #[test]
    fn a_batch_is_bounded_in_operations() {
        let (_dir, writer) = table();
        let writer = std::sync::Arc::new(writer);
        let n = MAX_BATCH_OPERATIONS + 10;
        writer.hooks().gather_next_batch(n);
        let threads: Vec<_> = (0..n)
            .map(|v| {
                let writer = writer.clone();
                let v = i64::try_from(v).unwrap();
                std::thread::spawn(move || writer.write(8, insert(v, None)))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(values(&writer).len(), n);
        assert!(writer.hooks().commits() >= 2);
    }
}
