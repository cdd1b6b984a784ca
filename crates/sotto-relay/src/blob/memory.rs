//! Blobs in the relay's memory, for tests and for a relay without a disk
//! of its own (`store = "memory:"`): lost when the process ends.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::store::{check_limits, find_verifier, is_expired};
use super::{
    Appended, BlobError, BlobId, BlobLimits, BlobState, BlobStore, BlobTotals, BlobVerifier,
    NewBlob, SweptBlobs,
};
use crate::address::MailboxAddress;
use crate::clock::UnixTime;

/// One blob: what a directory store keeps in its metadata file, and the
/// bytes.
struct Blob {
    meta: NewBlob,
    done: Vec<bool>,
    data: Vec<u8>,
}

/// A [`BlobStore`] in memory, holding at most `max_bytes` (blobs' full
/// lengths, reserved when they are created): beyond it `create` is
/// `StorageFull`, whatever the relay's `max_total_blob_bytes`.
#[derive(Debug)]
pub struct MemoryBlobStore {
    max_bytes: u64,
    blobs: Mutex<HashMap<BlobId, Blob>>,
}

impl core::fmt::Debug for Blob {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Blob")
            .field("total_len", &self.meta.total_len)
            .field("stored_len", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl MemoryBlobStore {
    /// An empty store that holds at most `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            blobs: Mutex::new(HashMap::new()),
        }
    }

    fn blobs(&self) -> MutexGuard<'_, HashMap<BlobId, Blob>> {
        // Every critical section leaves the map consistent.
        self.blobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The live blob `id`, or `NotFound` if there is none or it expired.
fn live<'a>(
    blobs: &'a mut HashMap<BlobId, Blob>,
    id: &BlobId,
    now: UnixTime,
) -> Result<&'a mut Blob, BlobError> {
    match blobs.get_mut(id) {
        Some(blob) if !is_expired(blob.meta.expiry_hour, now) => Ok(blob),
        _ => Err(BlobError::NotFound),
    }
}

impl BlobStore for MemoryBlobStore {
    fn create(&self, blob: NewBlob, limits: &BlobLimits) -> Result<BlobId, BlobError> {
        let mut blobs = self.blobs();
        let total: u64 = blobs.values().map(|b| b.meta.total_len).sum();
        let mailbox: u64 = blobs
            .values()
            .filter(|b| b.meta.uploader == blob.uploader)
            .map(|b| b.meta.total_len)
            .sum();
        let limits = BlobLimits {
            max_total_bytes: limits.max_total_bytes.min(self.max_bytes),
            ..*limits
        };
        check_limits(&blob, &limits, mailbox, total)?;
        let id = loop {
            let id = BlobId::random().map_err(|e| BlobError::Io(std::io::Error::other(e)))?;
            if !blobs.contains_key(&id) {
                break id;
            }
        };
        let done = vec![false; blob.verifiers.len()];
        blobs.insert(
            id,
            Blob {
                meta: blob,
                done,
                data: Vec::new(),
            },
        );
        Ok(id)
    }

    fn append(
        &self,
        id: &BlobId,
        uploader: &MailboxAddress,
        offset: u64,
        data: &[u8],
        now: UnixTime,
    ) -> Result<Appended, BlobError> {
        let mut blobs = self.blobs();
        let blob = live(&mut blobs, id, now)?;
        if blob.meta.uploader != *uploader {
            return Err(BlobError::NotFound);
        }
        let stored_len = blob.data.len() as u64;
        if offset < stored_len {
            return Ok(Appended::nothing(stored_len));
        }
        if offset > stored_len {
            return Err(BlobError::Gap { offset, stored_len });
        }
        let end = offset.saturating_add(data.len() as u64);
        if end > blob.meta.total_len {
            return Err(BlobError::PastEnd {
                end,
                total_len: blob.meta.total_len,
            });
        }
        blob.data.extend_from_slice(data);
        Ok(Appended {
            stored_len: end,
            written: data.len() as u64,
        })
    }

    fn state(
        &self,
        id: &BlobId,
        uploader: Option<&MailboxAddress>,
        verifier: Option<&BlobVerifier>,
        now: UnixTime,
    ) -> Result<BlobState, BlobError> {
        let mut blobs = self.blobs();
        let blob = live(&mut blobs, id, now)?;
        let by_token = verifier.is_some_and(|v| find_verifier(&blob.meta.verifiers, v).is_some());
        if !by_token && uploader != Some(&blob.meta.uploader) {
            return Err(BlobError::NotFound);
        }
        Ok(BlobState {
            stored_len: blob.data.len() as u64,
            total_len: blob.meta.total_len,
        })
    }

    fn read(
        &self,
        id: &BlobId,
        verifier: &BlobVerifier,
        offset: u64,
        max_len: usize,
        now: UnixTime,
    ) -> Result<Vec<u8>, BlobError> {
        let mut blobs = self.blobs();
        let blob = live(&mut blobs, id, now)?;
        if find_verifier(&blob.meta.verifiers, verifier).is_none() {
            return Err(BlobError::NotFound);
        }
        let total_len = blob.meta.total_len;
        let stored_len = blob.data.len() as u64;
        if stored_len < total_len {
            return Err(BlobError::Incomplete {
                stored_len,
                total_len,
            });
        }
        if offset > total_len {
            return Err(BlobError::PastEnd {
                end: offset,
                total_len,
            });
        }
        let start = usize::try_from(offset).map_err(|_| BlobError::Corrupt("offset"))?;
        let end = start.saturating_add(max_len).min(blob.data.len());
        Ok(blob.data.get(start..end).unwrap_or_default().to_vec())
    }

    fn done(&self, id: &BlobId, verifier: &BlobVerifier, now: UnixTime) -> Result<bool, BlobError> {
        let mut blobs = self.blobs();
        let blob = live(&mut blobs, id, now)?;
        let Some(i) = find_verifier(&blob.meta.verifiers, verifier) else {
            return Err(BlobError::NotFound);
        };
        if let Some(done) = blob.done.get_mut(i) {
            *done = true;
        }
        if blob.done.iter().all(|d| *d) {
            blobs.remove(id);
            return Ok(true);
        }
        Ok(false)
    }

    fn sweep_expired(&self, now: UnixTime) -> Result<SweptBlobs, BlobError> {
        let mut swept = SweptBlobs::default();
        self.blobs().retain(|_, blob| {
            let keep = !is_expired(blob.meta.expiry_hour, now);
            if !keep {
                swept.blobs += 1;
                swept.bytes += blob.data.len() as u64;
            }
            keep
        });
        Ok(swept)
    }

    fn totals(&self) -> Result<BlobTotals, BlobError> {
        let blobs = self.blobs();
        Ok(BlobTotals {
            blobs: blobs.len() as u64,
            reserved_bytes: blobs.values().map(|b| b.meta.total_len).sum(),
            stored_bytes: blobs.values().map(|b| b.data.len() as u64).sum(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::store::suite;
    use super::*;

    #[test]
    fn the_memory_store_passes_the_suite() {
        suite::run(&|| Box::new(MemoryBlobStore::new(1 << 30)));
    }

    #[test]
    fn its_own_cap_refuses_beyond_it() {
        let store = MemoryBlobStore::new(100);
        store
            .create(suite::new_blob(100, &[1]), &suite::LIMITS)
            .unwrap();
        assert!(matches!(
            store.create(suite::new_blob(1, &[1]), &suite::LIMITS),
            Err(BlobError::StorageFull { max: 100, .. })
        ));
    }
}
