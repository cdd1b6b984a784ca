//! Relay-wide budgets for the memory held by request frames.
//!
//! Every request frame buffer (being read, queued for its connection's
//! handler, or being handled) is counted. The first
//! [`FIRST_CHUNK`](crate::protocol::frame::FIRST_CHUNK) bytes of each are
//! free, so small requests never wait; the rest is charged, before the
//! buffer grows, to one of two pools: one for connections that have not
//! authenticated, one for those that have. A connection whose pool is
//! empty stops reading until other frames give memory back (the pools are
//! fair: first come, first served), for at most [`BUDGET_WAIT`]; a frame
//! that cannot get memory by then closes its connection (`ServerBusy`),
//! which gives back what it held, so frames that all wait for each other
//! cannot hold the pool until their deadlines. The two pools are
//! separate, so anonymous connections cannot use up the memory that owners
//! reading and writing their mailboxes need.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::protocol::frame::{BodyBudget, FIRST_CHUNK};

/// Longest a frame waits for room in its pool before its connection is
/// closed.
pub(crate) const BUDGET_WAIT: Duration = Duration::from_secs(1);

/// How much memory request frames hold right now, in bytes of buffer.
/// See [`ServerHandle::frame_memory`](super::ServerHandle::frame_memory).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameMemory {
    /// Held by frames of connections that had not authenticated when the
    /// frame began (bounded by the `unauthenticated_frame_budget` plus
    /// 4 KiB per frame).
    pub unauthenticated: u64,
    /// Held by frames of authenticated connections (bounded by the
    /// `authenticated_frame_budget` plus 4 KiB per frame).
    pub authenticated: u64,
}

/// One pool: a fair semaphore of bytes, and what is held in it.
#[derive(Debug)]
struct Pool {
    permits: Arc<Semaphore>,
    /// Bytes of buffer held by frames charged to this pool, free part
    /// included.
    held: Arc<AtomicU64>,
}

impl Pool {
    fn new(bytes: u64) -> Self {
        let permits = usize::try_from(bytes)
            .unwrap_or(Semaphore::MAX_PERMITS)
            .min(Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(permits)),
            held: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// The two pools of a server.
#[derive(Debug)]
pub(crate) struct FrameBudgets {
    unauthenticated: Pool,
    authenticated: Pool,
}

impl FrameBudgets {
    pub(crate) fn new(unauthenticated: u64, authenticated: u64) -> Self {
        Self {
            unauthenticated: Pool::new(unauthenticated),
            authenticated: Pool::new(authenticated),
        }
    }

    /// A charge for one new frame of a connection that is (or is not yet)
    /// authenticated.
    pub(crate) fn charge(&self, authenticated: bool) -> FrameCharge {
        let pool = if authenticated {
            &self.authenticated
        } else {
            &self.unauthenticated
        };
        FrameCharge {
            permits: pool.permits.clone(),
            held: pool.held.clone(),
            bytes: 0,
            permit: None,
        }
    }

    pub(crate) fn memory(&self) -> FrameMemory {
        FrameMemory {
            unauthenticated: self.unauthenticated.held.load(Ordering::Relaxed),
            authenticated: self.authenticated.held.load(Ordering::Relaxed),
        }
    }
}

/// The memory one frame holds, charged to its pool until dropped (after
/// the request was handled).
#[derive(Debug)]
pub(crate) struct FrameCharge {
    permits: Arc<Semaphore>,
    held: Arc<AtomicU64>,
    /// Buffer bytes counted in `held`.
    bytes: usize,
    /// Permits for the bytes beyond the free first chunk.
    permit: Option<OwnedSemaphorePermit>,
}

/// The part of a buffer of `capacity` bytes that is charged.
fn charged(capacity: usize) -> usize {
    capacity.saturating_sub(FIRST_CHUNK)
}

impl BodyBudget for FrameCharge {
    async fn grow(&mut self, _len: u32, from: usize, to: usize) -> bool {
        let more = charged(to).saturating_sub(charged(from));
        if more > 0 {
            let Ok(n) = u32::try_from(more) else {
                return false;
            };
            // Waits, first come first served, until the pool has room.
            let acquire = self.permits.clone().acquire_many_owned(n);
            let Ok(Ok(permit)) = tokio::time::timeout(BUDGET_WAIT, acquire).await else {
                return false;
            };
            match &mut self.permit {
                Some(held) => held.merge(permit),
                None => self.permit = Some(permit),
            }
        }
        let added = to.saturating_sub(from);
        self.bytes = self.bytes.saturating_add(added);
        self.held.fetch_add(added as u64, Ordering::Relaxed);
        true
    }
}

impl Drop for FrameCharge {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes as u64, Ordering::Relaxed);
        // The permit, if any, goes back to the pool as it is dropped.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_first_chunk_is_free_and_the_rest_waits_for_room() {
        let budgets = FrameBudgets::new(10_000, 1 << 20);
        let mut a = budgets.charge(false);
        // Free part: never waits, even with an empty pool.
        assert!(a.grow(20_000, 0, FIRST_CHUNK).await);
        assert!(a.grow(20_000, FIRST_CHUNK, FIRST_CHUNK + 8_000).await);
        assert_eq!(
            budgets.memory().unauthenticated,
            (FIRST_CHUNK + 8_000) as u64
        );
        assert_eq!(budgets.memory().authenticated, 0);
        // 2 000 bytes of the pool are left: a growth by 4 000 waits...
        let mut b = budgets.charge(false);
        assert!(b.grow(20_000, 0, FIRST_CHUNK).await);
        let waiting = tokio::time::timeout(
            Duration::from_millis(50),
            b.grow(20_000, FIRST_CHUNK, FIRST_CHUNK + 4_000),
        )
        .await;
        assert!(waiting.is_err(), "no room yet");
        // ...until the first frame is done with.
        drop(a);
        assert!(b.grow(20_000, FIRST_CHUNK, FIRST_CHUNK + 4_000).await);
        // The authenticated pool is separate.
        let mut c = budgets.charge(true);
        assert!(c.grow(1 << 20, 0, 1 << 19).await);
        assert_eq!(
            budgets.memory(),
            FrameMemory {
                unauthenticated: (FIRST_CHUNK + 4_000) as u64,
                authenticated: 1 << 19,
            }
        );
        drop((b, c));
        assert_eq!(budgets.memory(), FrameMemory::default());
    }
}
