//! Sealing or opening many message rows at once, on several threads.
//!
//! Rows are independent, and sealing or opening one (XChaCha20-Poly1305 of
//! a few hundred bytes) is most of the work of writing or reading it in an
//! archive or a transfer. A large batch is cut into parts, one per thread
//! (at most [`MAX_THREADS`], the caller's included, and one per core);
//! the threads are scoped and joined before the results are used, in the
//! batch's order. Only the cryptography moves: the database is read and
//! written from the caller's thread. A part whose thread the system does
//! not give is done on the caller's thread.

use std::num::NonZeroUsize;
use std::sync::OnceLock;

use crate::error::Result;

/// Most threads that work on one batch, the caller's included.
const MAX_THREADS: usize = 4;
/// Rows each thread gets at least: fewer are done where they are (a
/// thread costs about as much as sealing a few dozen rows).
pub(super) const ROWS_PER_THREAD: usize = 128;

/// How many threads share `rows` rows: one per [`ROWS_PER_THREAD`], at
/// most one per core and [`MAX_THREADS`].
pub(super) fn threads_for(rows: usize) -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores =
        *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get));
    (rows / ROWS_PER_THREAD).clamp(1, cores.clamp(1, MAX_THREADS))
}

/// Runs `work` over `items` cut into `states.len()` parts (at least one),
/// each part with its own state (a random generator, say), and returns the
/// results of every part in the order of `items`. The first part runs on
/// the caller's thread.
pub(super) fn map_parts<T, S, R>(
    items: &[T],
    mut states: Vec<S>,
    work: impl Fn(&mut S, &[T]) -> Result<Vec<R>> + Sync,
) -> Result<Vec<R>>
where
    T: Sync,
    S: Send,
    R: Send,
{
    let Some((first_state, other_states)) = states.split_first_mut() else {
        return Ok(Vec::new());
    };
    if other_states.is_empty() {
        return work(first_state, items);
    }
    let mut parts = items.chunks(items.len().div_ceil(1 + other_states.len()).max(1));
    let first = parts.next().unwrap_or_default();
    let work = &work;
    std::thread::scope(|scope| {
        let others: Vec<_> = parts
            .zip(other_states.iter_mut())
            .map(|(part, state)| {
                let handle = std::thread::Builder::new()
                    .name("sotto-store rows".into())
                    .spawn_scoped(scope, || work(&mut *state, part))
                    .ok();
                (part, handle)
            })
            .collect();
        let mut done = work(first_state, first)?;
        for (part, handle) in others {
            let part = match handle {
                Some(handle) => match handle.join() {
                    Ok(part) => part?,
                    // The work does not panic on any input; if it ever did,
                    // the panic goes on as it would have without threads.
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                None => work(&mut *first_state, part)?,
            };
            done.extend(part);
        }
        Ok(done)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_come_back_in_order_with_their_own_state() {
        let items: Vec<u32> = (0..1000).collect();
        let out = map_parts(&items, vec![0u32, 1, 2], |state, part| {
            Ok(part.iter().map(|i| (*i, *state)).collect())
        })
        .unwrap();
        assert_eq!(out.len(), 1000);
        assert!(
            out.iter()
                .enumerate()
                .all(|(i, (item, _))| *item == i as u32)
        );
        let states: std::collections::BTreeSet<u32> = out.iter().map(|(_, s)| *s).collect();
        assert_eq!(states.into_iter().collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn an_error_in_any_part_is_returned() {
        let items: Vec<u32> = (0..100).collect();
        let out = map_parts(&items, vec![(), (), ()], |_, part| {
            if part.contains(&70) {
                Err(crate::Error::NotAStore)
            } else {
                Ok(part.to_vec())
            }
        });
        assert!(matches!(out, Err(crate::Error::NotAStore)));
        assert!(
            map_parts(&items, Vec::<()>::new(), |_, p| Ok(p.to_vec()))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn batches_are_shared_out_by_size_and_cores() {
        assert_eq!(threads_for(0), 1);
        assert_eq!(threads_for(ROWS_PER_THREAD - 1), 1);
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        assert_eq!(
            threads_for(ROWS_PER_THREAD * 100),
            cores.clamp(1, MAX_THREADS)
        );
        assert!(threads_for(2 * ROWS_PER_THREAD) <= 2);
    }
}
