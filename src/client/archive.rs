//! The profile's history as an encrypted archive file: exported for a
//! backup, or imported as a new profile (a new device, without the old one
//! online). The format and what an archive holds are in
//! `docs/storage.md`, "History archive".

use std::io::Write;
use std::path::{Path, PathBuf};

use sotto_store::{ArchiveError, ArchiveProgress, ArchiveSummary, KdfParams, Store};
use zeroize::Zeroizing;

use super::shared::blocking;
use super::{Client, ClientOptions, PROFILE_DB};
use crate::error::{Error, Result};

impl Client {
    /// Writes this profile's identity, contacts and whole history to a new
    /// file at `path` (never replacing one), as an archive locked by
    /// `archive_passphrase` with the profile's Argon2id parameters
    /// ([`ClientOptions::store`]). The file is owner-only (`0600`) and
    /// synced before this returns; on failure it is deleted.
    ///
    /// `progress` is called after each 256 KiB of history and at the end.
    /// Other store operations of this client wait until the export is
    /// done. A row the store cannot read is left out and counted in the
    /// summary ([`ArchiveSummary::is_complete`]).
    ///
    /// Only the account's primary device exports
    /// ([`Error::NotAccountDevice`] on a linked device): an archive restores
    /// an account from the identity in it, and a linked device's identity
    /// is its device key.
    pub async fn export_history(
        &self,
        path: impl AsRef<Path>,
        archive_passphrase: &[u8],
        progress: impl FnMut(ArchiveProgress) + Send + 'static,
    ) -> Result<ArchiveSummary> {
        // An archive restores an account from its identity: a linked
        // device's is its device key, which is no account of its own.
        if self.shared.account != *self.shared.identity.public() {
            return Err(Error::NotAccountDevice);
        }
        let path = path.as_ref().to_path_buf();
        let file = create_new_private(&path)?;
        let pass = Zeroizing::new(archive_passphrase.to_vec());
        let params = self.shared.options.store.kdf_params();
        let exported = self
            .shared
            .with_store(move |store| export_to(store, file, &pass, params, progress))
            .await;
        if exported.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        exported
    }

    /// Creates a profile in `profile_dir` from the archive at
    /// `archive_path` ([`export_history`](Self::export_history)): the same
    /// identity, so the same address, the same contacts and history. Its
    /// store is locked by `profile_passphrase` with `options`' parameters.
    ///
    /// Refused if the folder already holds a profile; a failure (a wrong
    /// passphrase, an altered or incomplete archive) leaves no store
    /// behind. The archive holds no sessions or prekeys: call
    /// [`register`](Self::register) next. Contacts' next messages then fail
    /// to decrypt once, and session recovery starts new sessions
    /// (docs/client.md, "Session recovery"). Messages that had not left the
    /// old device show as
    /// `Failed(`[`SendFailure::ExportedUnsent`](sotto_store::SendFailure::ExportedUnsent)`)`.
    pub async fn import_history(
        profile_dir: impl AsRef<Path>,
        archive_path: impl AsRef<Path>,
        archive_passphrase: &[u8],
        profile_passphrase: &[u8],
        options: ClientOptions,
        progress: impl FnMut(ArchiveProgress) + Send + 'static,
    ) -> Result<Self> {
        let dir = profile_dir.as_ref().to_path_buf();
        let created = !dir.exists();
        let imported = import_into(
            &dir,
            archive_path.as_ref().to_path_buf(),
            archive_passphrase,
            profile_passphrase,
            &options,
            progress,
        )
        .await;
        match imported {
            Ok(store) => Self::from_store(store, dir, options),
            Err(e) => {
                if created {
                    // Only if nothing else is in it.
                    let _ = std::fs::remove_dir(&dir);
                }
                Err(e)
            }
        }
    }
}

async fn import_into(
    dir: &Path,
    archive_path: PathBuf,
    archive_passphrase: &[u8],
    profile_passphrase: &[u8],
    options: &ClientOptions,
    progress: impl FnMut(ArchiveProgress) + Send + 'static,
) -> Result<Store> {
    crate::profile::prepare(dir)?;
    let path = dir.join(PROFILE_DB);
    let archive_pass = Zeroizing::new(archive_passphrase.to_vec());
    let profile_pass = Zeroizing::new(profile_passphrase.to_vec());
    let store_options = options.store;
    blocking(move || {
        let mut file = std::fs::File::open(&archive_path)
            .map_err(|e| sotto_store::Error::Archive(ArchiveError::Io(e)))?;
        Store::import_archive(
            &path,
            &mut file,
            &archive_pass,
            &profile_pass,
            &store_options,
            progress,
        )
    })
    .await
}

/// A new file, owner-only; an existing one is refused, never replaced.
fn create_new_private(path: &Path) -> Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!(
                    "{} exists already; an export never replaces a file",
                    path.display()
                ),
            ))
        } else {
            Error::Io(e)
        }
    })
}

fn export_to(
    store: &Store,
    mut file: std::fs::File,
    passphrase: &[u8],
    params: KdfParams,
    progress: impl FnMut(ArchiveProgress),
) -> sotto_store::Result<ArchiveSummary> {
    let summary = store.export_archive(&mut file, passphrase, params, progress)?;
    file.flush()
        .and_then(|()| file.sync_all())
        .map_err(|e| sotto_store::Error::Archive(ArchiveError::Io(e)))?;
    Ok(summary)
}
