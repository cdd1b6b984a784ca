//! Blobs in a directory: one data file and one metadata file per blob.
//!
//! - `<id>.data` holds the bytes stored, from the start of the blob: its
//!   length *is* the blob's stored length. A put appends with one positioned
//!   write and `fdatasync`s the file before it is answered; a failed one
//!   cuts the file back, so nothing half written is ever counted.
//! - `<id>.meta` holds the rest (below, [`Meta`]), written whole to a
//!   temporary file, synced, renamed over the old one, and the directory
//!   synced: a crash leaves the old file or the new, never a mix.
//! - Every operation on a blob locks its data file (`flock`): exclusively to
//!   put or to mark a token done, shared to read. So the blob's state is the
//!   files' and nothing else, and several relay processes may share the
//!   directory (on a file system with working `flock`, e.g. a local disk or
//!   NFSv4).
//! - The directory is made `0700`, every file `0600`.
//! - A read reads exactly the bytes it returns into one buffer (at most a
//!   frame): memory does not depend on the blob's size.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rand::TryRng;

use super::store::{check_limits, find_verifier, is_expired};
use super::{
    Appended, BlobError, BlobId, BlobLimits, BlobState, BlobStore, BlobTotals, BlobVerifier,
    NewBlob, SweptBlobs,
};
use crate::address::MailboxAddress;
use crate::clock::UnixTime;

/// What a metadata file starts with.
const META_MAGIC: [u8; 4] = *b"SOTB";

/// The metadata format's version.
const META_VERSION: u8 = 1;

/// How old a file a crash left behind (a temporary metadata file, a data
/// file without metadata) must be before a sweep deletes it: another
/// process sharing the directory may be creating it right now.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// A blob's metadata file: `"SOTB" || u8(1) || u64be(total_len) ||
/// u64be(expiry_hour) || uploader(32) || u8(n) || n × (verifier(32) ||
/// u8(done))`. No token, no time but the expiry hour, nothing of the
/// content.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    total_len: u64,
    expiry_hour: u64,
    uploader: MailboxAddress,
    verifiers: Vec<BlobVerifier>,
    done: Vec<bool>,
}

impl Meta {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(54 + 33 * self.verifiers.len());
        out.extend_from_slice(&META_MAGIC);
        out.push(META_VERSION);
        out.extend_from_slice(&self.total_len.to_be_bytes());
        out.extend_from_slice(&self.expiry_hour.to_be_bytes());
        out.extend_from_slice(self.uploader.as_bytes());
        out.push(self.verifiers.len().min(usize::from(u8::MAX)) as u8);
        for (verifier, done) in self.verifiers.iter().zip(&self.done) {
            out.extend_from_slice(verifier);
            out.push(u8::from(*done));
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, BlobError> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], BlobError> {
            if bytes.len() < n {
                return Err(BlobError::Corrupt("truncated metadata"));
            }
            let (head, tail) = bytes.split_at(n);
            *bytes = tail;
            Ok(head)
        }
        fn array<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], BlobError> {
            let mut out = [0u8; N];
            out.copy_from_slice(take(bytes, N)?);
            Ok(out)
        }
        let mut rest = bytes;
        if array::<4>(&mut rest)? != META_MAGIC || array::<1>(&mut rest)?[0] != META_VERSION {
            return Err(BlobError::Corrupt("not a blob metadata file of version 1"));
        }
        let total_len = u64::from_be_bytes(array(&mut rest)?);
        let expiry_hour = u64::from_be_bytes(array(&mut rest)?);
        let uploader = MailboxAddress::from_bytes(array(&mut rest)?);
        let n = usize::from(array::<1>(&mut rest)?[0]);
        if rest.len() != 33 * n {
            return Err(BlobError::Corrupt("metadata token count"));
        }
        let mut verifiers = Vec::with_capacity(n);
        let mut done = Vec::with_capacity(n);
        for _ in 0..n {
            verifiers.push(array(&mut rest)?);
            done.push(match array::<1>(&mut rest)?[0] {
                0 => false,
                1 => true,
                _ => return Err(BlobError::Corrupt("metadata done flag")),
            });
        }
        Ok(Self {
            total_len,
            expiry_hour,
            uploader,
            verifiers,
            done,
        })
    }
}

/// A [`BlobStore`] in a directory of the relay's disk, or one that several
/// relays share: one `<id>.data` file appended to and synced per put, one
/// `<id>.meta` file replaced atomically, a lock per blob (docs/relay.md §9,
/// "Blobs").
#[derive(Debug)]
pub struct DirBlobStore {
    dir: PathBuf,
    /// Creations in this process, one at a time, so the limits they check
    /// hold (processes sharing the directory each check theirs).
    creating: Mutex<()>,
}

/// Which lock an operation holds on a blob's data file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lock {
    Shared,
    Exclusive,
}

/// The file system's answer, or `None` if the file does not exist.
fn optional<T>(result: std::io::Result<T>) -> Result<Option<T>, BlobError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BlobError::from_io(e)),
    }
}

/// Whether the file at `path` was last changed longer than
/// [`STALE_AFTER`] ago.
fn is_stale(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > STALE_AFTER)
}

impl DirBlobStore {
    /// Opens (and creates, `0700`, with its parents) the directory `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, BlobError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(BlobError::from_io)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(BlobError::from_io)?;
        Ok(Self {
            dir,
            creating: Mutex::new(()),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn data_path(&self, id: &BlobId) -> PathBuf {
        self.dir.join(format!("{id}.data"))
    }

    fn meta_path(&self, id: &BlobId) -> PathBuf {
        self.dir.join(format!("{id}.meta"))
    }

    fn sync_dir(&self) -> Result<(), BlobError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(BlobError::from_io)
    }

    fn read_meta(&self, id: &BlobId) -> Result<Option<Meta>, BlobError> {
        let Some(mut file) = optional(File::open(self.meta_path(id)))? else {
            return Ok(None);
        };
        // Bounded: 54 bytes and 33 per token, at most 255 tokens.
        let mut bytes = Vec::with_capacity(128);
        Read::by_ref(&mut file)
            .take(54 + 33 * 255 + 1)
            .read_to_end(&mut bytes)
            .map_err(BlobError::from_io)?;
        Meta::decode(&bytes).map(Some)
    }

    /// Writes `meta` as the blob's metadata: a temporary file, synced,
    /// renamed over the old one, the directory synced.
    fn write_meta(&self, id: &BlobId, meta: &Meta) -> Result<(), BlobError> {
        let mut nonce = [0u8; 8];
        rand::rngs::SysRng
            .try_fill_bytes(&mut nonce)
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))?;
        let tmp = self
            .dir
            .join(format!("{id}.meta.tmp.{}", u64::from_be_bytes(nonce)));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&meta.encode())?;
            file.sync_all()?;
            std::fs::rename(&tmp, self.meta_path(id))
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(BlobError::from_io(e));
        }
        self.sync_dir()
    }

    /// The blob's data file, locked, and its metadata; `None` if the blob
    /// does not exist (or no longer: a blob deleted meanwhile has no
    /// metadata once its lock is ours) or has expired at `now`.
    fn open_blob(
        &self,
        id: &BlobId,
        lock: Lock,
        now: UnixTime,
    ) -> Result<Option<(File, Meta)>, BlobError> {
        let opened = OpenOptions::new()
            .read(true)
            .write(lock == Lock::Exclusive)
            .open(self.data_path(id));
        let Some(file) = optional(opened)? else {
            return Ok(None);
        };
        match lock {
            Lock::Shared => file.lock_shared(),
            Lock::Exclusive => file.lock(),
        }
        .map_err(BlobError::from_io)?;
        let Some(meta) = self.read_meta(id)? else {
            return Ok(None);
        };
        if is_expired(meta.expiry_hour, now) {
            return Ok(None);
        }
        Ok(Some((file, meta)))
    }

    /// Deletes the blob's files: the metadata first, so a crash in between
    /// leaves a data file without metadata, which is no blob (and a later
    /// sweep deletes it).
    fn delete(&self, id: &BlobId) -> Result<(), BlobError> {
        optional(std::fs::remove_file(self.meta_path(id)))?;
        optional(std::fs::remove_file(self.data_path(id)))?;
        self.sync_dir()
    }

    /// Every blob id with a metadata file.
    fn ids(&self) -> Result<Vec<BlobId>, BlobError> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(BlobError::from_io)? {
            let entry = entry.map_err(BlobError::from_io)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = name.strip_suffix(".meta").and_then(BlobId::from_hex) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// The metadata of every blob (ones that vanish meanwhile, or whose
    /// file does not parse, are left out and logged).
    fn all_meta(&self) -> Result<Vec<(BlobId, Meta)>, BlobError> {
        let mut all = Vec::new();
        for id in self.ids()? {
            match self.read_meta(&id) {
                Ok(Some(meta)) => all.push((id, meta)),
                Ok(None) => {}
                Err(BlobError::Corrupt(why)) => {
                    tracing::warn!(why, "a blob metadata file does not parse; left alone");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(all)
    }

    /// Deletes what a crash left behind: temporary metadata files and data
    /// files without metadata, once [`STALE_AFTER`] old.
    fn sweep_leftovers(&self) -> Result<(), BlobError> {
        for entry in std::fs::read_dir(&self.dir).map_err(BlobError::from_io)? {
            let entry = entry.map_err(BlobError::from_io)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            let leftover = if name.contains(".meta.tmp.") {
                true
            } else if let Some(id) = name.strip_suffix(".data").and_then(BlobId::from_hex) {
                !self.meta_path(&id).exists()
            } else {
                false
            };
            if leftover && is_stale(&path) {
                optional(std::fs::remove_file(&path))?;
            }
        }
        Ok(())
    }
}

impl BlobStore for DirBlobStore {
    fn create(&self, blob: NewBlob, limits: &BlobLimits) -> Result<BlobId, BlobError> {
        let _creating = self
            .creating
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut mailbox, mut total) = (0u64, 0u64);
        for (_, meta) in self.all_meta()? {
            total = total.saturating_add(meta.total_len);
            if meta.uploader == blob.uploader {
                mailbox = mailbox.saturating_add(meta.total_len);
            }
        }
        check_limits(&blob, limits, mailbox, total)?;
        let (id, data) = loop {
            let id = BlobId::random().map_err(|e| BlobError::Io(std::io::Error::other(e)))?;
            let created = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(self.data_path(&id));
            match created {
                Ok(file) => break (id, file),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(BlobError::from_io(e)),
            }
        };
        drop(data);
        let meta = Meta {
            total_len: blob.total_len,
            expiry_hour: blob.expiry_hour,
            uploader: blob.uploader,
            done: vec![false; blob.verifiers.len()],
            verifiers: blob.verifiers,
        };
        // The data file first, then the metadata that makes it a blob.
        if let Err(e) = self.write_meta(&id, &meta) {
            let _ = std::fs::remove_file(self.data_path(&id));
            return Err(e);
        }
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
        let Some((file, meta)) = self.open_blob(id, Lock::Exclusive, now)? else {
            return Err(BlobError::NotFound);
        };
        if meta.uploader != *uploader {
            return Err(BlobError::NotFound);
        }
        let stored_len = file.metadata().map_err(BlobError::from_io)?.len();
        if offset < stored_len || data.is_empty() && offset == stored_len {
            // A resend (or nothing): what is stored stays as it is.
            return Ok(Appended::nothing(stored_len));
        }
        if offset > stored_len {
            return Err(BlobError::Gap { offset, stored_len });
        }
        let end = offset.saturating_add(data.len() as u64);
        if end > meta.total_len {
            return Err(BlobError::PastEnd {
                end,
                total_len: meta.total_len,
            });
        }
        let written = file
            .write_all_at(data, offset)
            .and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Nothing half written stays: the length is what is stored.
            let _ = file.set_len(stored_len).and_then(|()| file.sync_data());
            return Err(BlobError::from_io(e));
        }
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
        let Some((file, meta)) = self.open_blob(id, Lock::Shared, now)? else {
            return Err(BlobError::NotFound);
        };
        let by_token = verifier.is_some_and(|v| find_verifier(&meta.verifiers, v).is_some());
        if !by_token && uploader != Some(&meta.uploader) {
            return Err(BlobError::NotFound);
        }
        Ok(BlobState {
            stored_len: file.metadata().map_err(BlobError::from_io)?.len(),
            total_len: meta.total_len,
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
        let Some((file, meta)) = self.open_blob(id, Lock::Shared, now)? else {
            return Err(BlobError::NotFound);
        };
        if find_verifier(&meta.verifiers, verifier).is_none() {
            return Err(BlobError::NotFound);
        }
        let total_len = meta.total_len;
        let stored_len = file.metadata().map_err(BlobError::from_io)?.len();
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
        let left = usize::try_from(total_len - offset).unwrap_or(usize::MAX);
        let mut buf = vec![0u8; left.min(max_len)];
        file.read_exact_at(&mut buf, offset)
            .map_err(BlobError::from_io)?;
        Ok(buf)
    }

    fn done(&self, id: &BlobId, verifier: &BlobVerifier, now: UnixTime) -> Result<bool, BlobError> {
        let Some((_file, mut meta)) = self.open_blob(id, Lock::Exclusive, now)? else {
            return Err(BlobError::NotFound);
        };
        let Some(i) = find_verifier(&meta.verifiers, verifier) else {
            return Err(BlobError::NotFound);
        };
        if meta.done.get(i).copied().unwrap_or(true) {
            // Done before, and others are not yet (else it would be gone).
            return Ok(false);
        }
        if let Some(done) = meta.done.get_mut(i) {
            *done = true;
        }
        if meta.done.iter().all(|d| *d) {
            self.delete(id)?;
            return Ok(true);
        }
        self.write_meta(id, &meta)?;
        Ok(false)
    }

    fn sweep_expired(&self, now: UnixTime) -> Result<SweptBlobs, BlobError> {
        let mut swept = SweptBlobs::default();
        for (id, meta) in self.all_meta()? {
            if !is_expired(meta.expiry_hour, now) {
                continue;
            }
            // Under the blob's lock, so no put or read is half done; a
            // blob whose data file is gone is deleted all the same.
            let file = optional(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(self.data_path(&id)),
            )?;
            let mut bytes = 0;
            if let Some(file) = &file {
                file.lock().map_err(BlobError::from_io)?;
                bytes = file.metadata().map_err(BlobError::from_io)?.len();
            }
            // Still there (another process may have swept it meanwhile).
            if self.read_meta(&id)?.is_some() {
                self.delete(&id)?;
                swept.blobs += 1;
                swept.bytes += bytes;
            }
        }
        self.sweep_leftovers()?;
        Ok(swept)
    }

    fn totals(&self) -> Result<BlobTotals, BlobError> {
        let mut totals = BlobTotals::default();
        for (id, meta) in self.all_meta()? {
            totals.blobs += 1;
            totals.reserved_bytes = totals.reserved_bytes.saturating_add(meta.total_len);
            if let Some(data) = optional(std::fs::metadata(self.data_path(&id)))? {
                totals.stored_bytes = totals.stored_bytes.saturating_add(data.len());
            }
        }
        Ok(totals)
    }
}

#[cfg(test)]
mod tests {
    use super::super::store::suite;
    use super::*;

    #[test]
    fn the_directory_store_passes_the_suite() {
        let root = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicU32::new(0);
        suite::run(&|| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::new(DirBlobStore::open(root.path().join(i.to_string())).unwrap())
        });
    }

    #[test]
    fn files_are_private_and_deleted_with_the_blob() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("blobs");
        let store = DirBlobStore::open(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let id = store
            .create(suite::new_blob(3, &[1]), &suite::LIMITS)
            .unwrap();
        store
            .append(&id, &suite::alice(), 0, b"abc", suite::NOW)
            .unwrap();
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 2, "{files:?}");
        for file in &files {
            assert_eq!(mode(file), 0o600, "{file:?}");
        }
        assert_eq!(std::fs::read(store.data_path(&id)).unwrap(), b"abc");
        assert!(store.done(&id, &suite::verifier(1), suite::NOW).unwrap());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn a_reopened_store_has_every_byte_and_mark() {
        let root = tempfile::tempdir().unwrap();
        let store = DirBlobStore::open(root.path()).unwrap();
        let id = store
            .create(suite::new_blob(6, &[1, 2]), &suite::LIMITS)
            .unwrap();
        store
            .append(&id, &suite::alice(), 0, b"abc", suite::NOW)
            .unwrap();
        assert!(!store.done(&id, &suite::verifier(1), suite::NOW).unwrap());
        drop(store);
        let store = DirBlobStore::open(root.path()).unwrap();
        let state = store
            .state(&id, Some(&suite::alice()), None, suite::NOW)
            .unwrap();
        assert_eq!((state.stored_len, state.total_len), (3, 6));
        store
            .append(&id, &suite::alice(), 3, b"def", suite::NOW)
            .unwrap();
        assert!(store.done(&id, &suite::verifier(2), suite::NOW).unwrap());
    }

    #[test]
    fn concurrent_puts_at_one_offset_append_once() {
        let root = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(DirBlobStore::open(root.path()).unwrap());
        let id = store
            .create(suite::new_blob(1000, &[1]), &suite::LIMITS)
            .unwrap();
        let threads: Vec<_> = (0..8u8)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store
                        .append(&id, &suite::alice(), 0, &[i; 100], suite::NOW)
                        .unwrap()
                })
            })
            .collect();
        let answers: Vec<Appended> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(answers.iter().all(|a| a.stored_len == 100), "{answers:?}");
        assert_eq!(answers.iter().filter(|a| a.written == 100).count(), 1);
        assert_eq!(std::fs::metadata(store.data_path(&id)).unwrap().len(), 100);
    }

    #[test]
    fn two_stores_on_one_directory_share_every_blob() {
        // Two relay processes on one (shared) directory.
        let root = tempfile::tempdir().unwrap();
        let one = DirBlobStore::open(root.path()).unwrap();
        let two = DirBlobStore::open(root.path()).unwrap();
        let id = one
            .create(suite::new_blob(6, &[1, 2]), &suite::LIMITS)
            .unwrap();
        one.append(&id, &suite::alice(), 0, b"abc", suite::NOW)
            .unwrap();
        two.append(&id, &suite::alice(), 3, b"def", suite::NOW)
            .unwrap();
        assert_eq!(
            one.read(&id, &suite::verifier(1), 0, 6, suite::NOW)
                .unwrap(),
            b"abcdef"
        );
        assert!(!two.done(&id, &suite::verifier(1), suite::NOW).unwrap());
        assert!(one.done(&id, &suite::verifier(2), suite::NOW).unwrap());
        assert!(matches!(
            two.state(&id, Some(&suite::alice()), None, suite::NOW),
            Err(BlobError::NotFound)
        ));
        // Each sees the other's blobs against the limits.
        let half = suite::new_blob(1 << 19, &[1]);
        one.create(half.clone(), &suite::LIMITS).unwrap();
        two.create(half, &suite::LIMITS).unwrap();
        assert!(matches!(
            one.create(suite::new_blob(1, &[1]), &suite::LIMITS),
            Err(BlobError::MailboxFull { .. })
        ));
    }

    #[test]
    fn metadata_round_trips_and_garbage_is_refused() {
        let meta = Meta {
            total_len: 1 << 40,
            expiry_hour: 7,
            uploader: suite::alice(),
            verifiers: vec![[1; 32], [2; 32]],
            done: vec![true, false],
        };
        let bytes = meta.encode();
        assert_eq!(Meta::decode(&bytes).unwrap(), meta);
        for cut in 0..bytes.len() {
            assert!(Meta::decode(&bytes[..cut]).is_err(), "{cut}");
        }
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() = 2;
        assert!(Meta::decode(&bad).is_err());
        // No token and no content in it: the verifiers are hashes.
        assert_eq!(bytes.len(), 54 + 2 * 33);
    }

    #[test]
    fn leftovers_of_a_crash_are_swept_once_stale_and_not_before() {
        let root = tempfile::tempdir().unwrap();
        let store = DirBlobStore::open(root.path()).unwrap();
        let orphan = root.path().join(format!("{}.data", BlobId([5; 16])));
        let tmp = root.path().join(format!("{}.meta.tmp.1", BlobId([6; 16])));
        std::fs::write(&orphan, b"x").unwrap();
        std::fs::write(&tmp, b"y").unwrap();
        store.sweep_expired(suite::NOW).unwrap();
        assert!(orphan.exists() && tmp.exists());
        let old = SystemTime::now() - 2 * STALE_AFTER;
        for path in [&orphan, &tmp] {
            File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        store.sweep_expired(suite::NOW).unwrap();
        assert!(!orphan.exists() && !tmp.exists());
    }

    #[test]
    fn a_read_allocates_only_what_it_returns_whatever_the_blob_size() {
        let root = tempfile::tempdir().unwrap();
        let store = DirBlobStore::open(root.path()).unwrap();
        let limits = BlobLimits {
            max_bytes_per_mailbox: u64::MAX,
            max_total_bytes: u64::MAX,
        };
        let len = 64u64 << 20;
        let id = store.create(suite::new_blob(len, &[1]), &limits).unwrap();
        let chunk = vec![0x5a; 1 << 20];
        for i in 0..64 {
            store
                .append(&id, &suite::alice(), i << 20, &chunk, suite::NOW)
                .unwrap();
        }
        for offset in [0, len / 2, len - 10] {
            let read = store
                .read(&id, &suite::verifier(1), offset, 1 << 20, suite::NOW)
                .unwrap();
            assert_eq!(read.len() as u64, (len - offset).min(1 << 20));
            assert_eq!(read.capacity(), read.len());
        }
        // Asked for everything, it still reads only what it was asked.
        let read = store
            .read(&id, &suite::verifier(1), 0, 4096, suite::NOW)
            .unwrap();
        assert_eq!(read.capacity(), 4096);
    }
}
