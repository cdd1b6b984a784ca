//! Files (docs/client.md, "Files").
//!
//! Sending: the file is encrypted on this device under a fresh key, in
//! 64 KiB chunks (sotto-core `attachment`), into a file of its own in the
//! profile's `attachments` folder: that encrypted file is what the relay
//! gets (as a blob) and what this device keeps. The upload is recorded in
//! the store (sealed) before anything leaves; a background task puts the
//! blob on the relay piece by piece, going on from where the relay says it
//! got to after a lost connection or a crash, and then sends the message
//! that references it (key, digest, one download token per recipient
//! device), in the transaction that forgets the upload.
//!
//! Receiving: the store marks every received message whose body is a
//! reference, in the transaction that stores it; the same task fetches
//! the blob, checks each chunk as it comes and the digest at the end,
//! keeps the encrypted blob in the `attachments` folder, tells the relay
//! it is done (the relay deletes the blob when every recipient is) and
//! clears the mark. A download cut short goes on from the last whole
//! chunk. Memory stays bounded by one relay frame whatever the file's
//! size.
//!
//! The key lives only in the message (sealed in the store): deleting the
//! message, or its running out of time, shreds the file's key, and the
//! encrypted file is deleted too.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sotto_core::attachment::{
    self, AttachmentKey, AttachmentRef, BlobDigest, CHUNK_LEN, CHUNK_TAG_LEN, ChunkCipher,
    MAX_FILE_LEN,
};
use sotto_relay::{BlobId, BlobToken, ClientError, ErrorCode, RelayClient};
use zeroize::Zeroizing;

use super::Client;
use super::shared::{Shared, blocking, now_ms};
use super::types::ClientEvent;
use crate::address::Address;
use crate::error::{Error, Result};

/// The folder of encrypted files, in the profile folder.
pub const ATTACHMENTS_DIR: &str = "attachments";

/// How long the relay keeps a blob nobody fetched.
const BLOB_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// How often the background task looks again for files to move when
/// nothing woke it.
const FILES_EVERY: Duration = Duration::from_secs(5);

/// Format of an upload's record in the store.
const UPLOAD_VERSION: u8 = 0x01;

/// A file in a conversation's history.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attachment {
    /// Its name, as the sender gave it (no path).
    pub name: String,
    /// Its media type (`application/octet-stream` when unknown).
    pub media_type: String,
    /// Its length in bytes.
    pub len: u64,
    /// Whether the file is on this device
    /// ([`save_attachment`](Client::save_attachment) can write it out).
    pub here: bool,
}

/// Why a file could not be received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileFailure {
    /// A chunk did not open, or the blob is not the one the message
    /// names: the relay (or someone) changed it. Nothing of it was kept.
    Tampered,
    /// The relay no longer has the blob (it expired, or was released).
    Gone,
    /// The message names no download token for this device.
    NotForThisDevice,
    /// The message's reference is malformed.
    Malformed,
}

impl core::fmt::Display for FileFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Tampered => "the file was altered on its way (refused)",
            Self::Gone => "the relay no longer has the file",
            Self::NotForThisDevice => "the file was not sent to this device",
            Self::Malformed => "the message's file reference is malformed",
        })
    }
}

/// A file on its way up ([`Client::send_file`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UploadId(pub [u8; 16]);

impl core::fmt::Display for UploadId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// What the store keeps of an upload.
struct Upload {
    contact: String,
    blob_created: bool,
    reference: AttachmentRef,
}

impl Upload {
    fn encode(&self) -> Result<Zeroizing<Vec<u8>>> {
        let reference = self
            .reference
            .encode()
            .map_err(sotto_store::Error::Protocol)?;
        let mut out = Zeroizing::new(Vec::with_capacity(4 + self.contact.len() + reference.len()));
        out.push(UPLOAD_VERSION);
        out.extend_from_slice(&(self.contact.len() as u16).to_be_bytes());
        out.extend_from_slice(self.contact.as_bytes());
        out.push(u8::from(self.blob_created));
        out.extend_from_slice(&reference);
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (&version, rest) = bytes.split_first()?;
        if version != UPLOAD_VERSION {
            return None;
        }
        let (len, rest) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len + 1 {
            return None;
        }
        let (contact, rest) = rest.split_at(len);
        let (&created, rest) = rest.split_first()?;
        Some(Self {
            contact: String::from_utf8(contact.to_vec()).ok()?,
            blob_created: created == 1,
            reference: AttachmentRef::decode(rest).ok()?,
        })
    }
}

/// The encrypted file of the blob `digest` names, in the profile.
pub(crate) fn blob_file(profile: &Path, digest: &[u8; 32]) -> PathBuf {
    let name = Sha256::new()
        .chain_update(b"sotto/attachment-file/v1")
        .chain_update(digest)
        .finalize();
    profile
        .join(ATTACHMENTS_DIR)
        .join(format!("{}.blob", hex::encode(&name[..16])))
}

/// Where the download of message `seq` of `contact` is written until it
/// is complete.
fn part_file(profile: &Path, contact: &str, seq: u64) -> PathBuf {
    let name = Sha256::new()
        .chain_update(b"sotto/attachment-part/v1")
        .chain_update(contact.as_bytes())
        .chain_update(seq.to_be_bytes())
        .finalize();
    profile
        .join(ATTACHMENTS_DIR)
        .join(format!("{}.part", hex::encode(&name[..16])))
}

/// Creates the attachments folder (owner only).
fn attachments_dir(profile: &Path) -> std::io::Result<PathBuf> {
    let dir = profile.join(ATTACHMENTS_DIR);
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&dir)?;
    Ok(dir)
}

/// Opens a new file for writing, owner only.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// A media type from a file name's extension (the common ones).
pub fn media_type_for(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" => "text/plain",
        "md" => "text/markdown",
        "html" | "htm" => "text/html",
        "csv" => "text/csv",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "mp3" => "audio/mpeg",
        "ogg" | "opus" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        _ => "application/octet-stream",
    }
}

/// Encrypts `source` into the attachments folder under `key` and
/// `file_id`: returns its length, the blob's digest and the encrypted
/// file. A file that changes length while it is read is refused.
fn encrypt_file(
    profile: &Path,
    source: &Path,
    key: &AttachmentKey,
    file_id: [u8; 16],
) -> std::result::Result<(u64, [u8; 32], PathBuf), Error> {
    let mut input = std::fs::File::open(source)?;
    let len = input.metadata()?.len();
    if len > MAX_FILE_LEN {
        return Err(Error::FileTooLarge {
            len,
            max: MAX_FILE_LEN,
        });
    }
    let dir = attachments_dir(profile)?;
    let temp = dir.join(format!("up-{}.part", hex::encode(file_id)));
    let mut out = std::io::BufWriter::with_capacity(1 << 20, create_private(&temp)?);
    let cipher = ChunkCipher::new(key, file_id, len).map_err(sotto_store::Error::Protocol)?;
    let mut digest = BlobDigest::new();
    let mut chunk = Zeroizing::new(Vec::with_capacity(CHUNK_LEN + CHUNK_TAG_LEN));
    for index in 0..cipher.chunks() {
        let n = attachment::plain_chunk_len(len, index).unwrap_or(0);
        chunk.clear();
        chunk.resize(n, 0);
        input.read_exact(&mut chunk)?;
        cipher
            .seal(index, &mut chunk)
            .map_err(sotto_store::Error::Protocol)?;
        digest.update(&chunk);
        out.write_all(&chunk)?;
    }
    if input.read(&mut [0u8; 1])? != 0 {
        let _ = std::fs::remove_file(&temp);
        return Err(Error::Io(std::io::Error::other(
            "the file grew while it was being encrypted",
        )));
    }
    let file = out.into_inner().map_err(|e| Error::Io(e.into_error()))?;
    file.sync_all()?;
    let digest = digest.finish();
    let path = blob_file(profile, &digest);
    std::fs::rename(&temp, &path)?;
    Ok((len, digest, path))
}

/// Reads up to `max` bytes of `path` from `offset`.
fn read_at(path: &Path, offset: u64, max: usize) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut out = Vec::with_capacity(max);
    file.take(max as u64).read_to_end(&mut out)?;
    Ok(out)
}

/// Whether a relay error means the blob is not there (any more).
fn gone(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Server {
            code: ErrorCode::NotFound,
            ..
        }
    )
}

impl Client {
    /// Sends the file at `path` to `contact` (a name or an address), with
    /// its file name and a media type from its extension. See
    /// [`send_file_as`](Self::send_file_as).
    pub async fn send_file(&self, contact: &str, path: impl AsRef<Path>) -> Result<UploadId> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".to_owned());
        let media_type = media_type_for(&name);
        self.send_file_as(contact, path, &name, media_type).await
    }

    /// Sends the file at `path` to `contact` under `name` (at most 255
    /// bytes; longer names are cut at a character boundary) and
    /// `media_type`. The file is encrypted into the profile first and the
    /// upload recorded in the store; this returns then, and the upload
    /// goes on in the background — now if connected, else when the relay
    /// is back, and after a crash from where the relay got to — with
    /// [`ClientEvent::FileProgress`], then [`ClientEvent::FileSent`] once
    /// the message that carries the file went out. At most
    /// [`MAX_FILE_LEN`] bytes ([`Error::FileTooLarge`]).
    pub async fn send_file_as(
        &self,
        contact: &str,
        path: impl AsRef<Path>,
        name: &str,
        media_type: &str,
    ) -> Result<UploadId> {
        let contact = self.resolve(contact).await?;
        let identity = contact
            .identity_key
            .ok_or_else(|| Error::UnknownContact(contact.name.clone()))?;
        let shared = &self.shared;
        // With a connection, sessions with every device first (as `send`
        // makes them), so that the tokens below name every device the
        // message will go to.
        if let Some(conn) = shared.live_connection() {
            shared
                .sessions_for(&conn, &contact.id, &identity, &contact.name)
                .await?;
        }
        let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
        let key = AttachmentKey::generate(&mut rng);
        let file_id = attachment::random_file_id(&mut rng);
        let mut upload_id = [0u8; 16];
        rand::rand_core::Rng::fill_bytes(&mut rng, &mut upload_id);
        let (len, digest, _) = {
            let (profile, source, key) = (
                shared.profile_dir.clone(),
                path.as_ref().to_path_buf(),
                key.clone(),
            );
            tokio::task::spawn_blocking(move || encrypt_file(&profile, &source, &key, file_id))
                .await
                .map_err(|_| Error::TaskFailed)??
        };
        // One download token per device the message will go to.
        let targets = {
            let id = contact.id.clone();
            shared.with_store(move |s| s.message_targets(&id)).await?
        };
        let mut tokens = Vec::with_capacity(targets.len());
        for (_, device) in targets.iter().take(attachment::MAX_TOKENS) {
            let token = BlobToken::random().map_err(|_| Error::NoRandomness)?;
            tokens.push((attachment::device_tag(device), *token.as_bytes()));
        }
        if tokens.is_empty() {
            return Err(Error::FirstMessageNeedsRelay(contact.name.clone()));
        }
        let mut name = name.to_owned();
        while name.len() > attachment::MAX_NAME_LEN {
            name.pop();
        }
        let mut media_type = media_type.to_owned();
        if media_type.len() > attachment::MAX_TYPE_LEN || media_type.is_empty() {
            media_type = "application/octet-stream".to_owned();
        }
        let upload = Upload {
            contact: contact.id.clone(),
            blob_created: false,
            reference: AttachmentRef {
                blob_id: [0; 16],
                file_id,
                key,
                len,
                digest,
                name,
                media_type,
                tokens,
            },
        };
        let record = upload.encode()?;
        shared
            .with_store(move |s| s.put_upload(&upload_id, &record))
            .await?;
        shared.files.notify_one();
        Ok(UploadId(upload_id))
    }

    /// The file of message `seq` of `contact`, decrypted into `dest` (a new
    /// file, written through a temporary one): returns its length.
    /// [`Error::NotAnAttachment`] for a message that is not a file,
    /// [`Error::AttachmentNotHere`] while it is not downloaded.
    pub async fn save_attachment(
        &self,
        contact: &str,
        seq: u64,
        dest: impl AsRef<Path>,
    ) -> Result<u64> {
        let contact = self.resolve(contact).await?;
        let message = {
            let id = contact.id.clone();
            self.shared
                .with_store(move |s| s.message(&id, seq))
                .await?
                .ok_or(Error::Store(sotto_store::Error::UnknownMessage(seq)))?
        };
        let reference =
            AttachmentRef::decode(&message.body).map_err(|_| Error::NotAnAttachment(seq))?;
        let source = blob_file(&self.shared.profile_dir, &reference.digest);
        if !source.exists() {
            return Err(Error::AttachmentNotHere(seq));
        }
        let dest = dest.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || decrypt_file(&source, &reference, &dest))
            .await
            .map_err(|_| Error::TaskFailed)?
    }

    /// Deletes message `seq` of `contact` from this device's history; a
    /// file's key goes with it and its encrypted file is deleted.
    /// Returns whether the message existed.
    pub async fn delete_message(&self, contact: &str, seq: u64) -> Result<bool> {
        let contact = self.resolve(contact).await?;
        let id = contact.id.clone();
        let digest = self
            .shared
            .with_store(move |s| {
                let digest = s
                    .message(&id, seq)?
                    .and_then(|m| AttachmentRef::decode(&m.body).ok())
                    .map(|r| r.digest);
                Ok((s.delete_message(&id, seq)?, digest))
            })
            .await?;
        let (deleted, digest) = digest;
        if let Some(digest) = digest {
            remove_file_of(&self.shared.profile_dir, &digest);
        }
        let _ = std::fs::remove_file(part_file(&self.shared.profile_dir, &contact.id, seq));
        Ok(deleted)
    }

    /// Moves files now (what the background does on its own): the
    /// uploads, then the downloads. Returns how many were finished.
    pub async fn transfer_files(&self) -> Result<usize> {
        let conn = self.connection()?;
        self.shared.move_files(&conn).await
    }
}

/// The attachment a message body references, for the history.
pub(crate) fn describe(profile: &Path, body: &[u8]) -> Option<Attachment> {
    let (digest, mut attachment) = reference_of(body)?;
    attachment.here = blob_file(profile, &digest).exists();
    Some(attachment)
}

/// The attachment a message body just received references (not here yet).
pub(crate) fn describe_reference(body: &[u8]) -> Option<Attachment> {
    reference_of(body).map(|(_, a)| a)
}

fn reference_of(body: &[u8]) -> Option<([u8; 32], Attachment)> {
    if !attachment::is_reference(body) {
        return None;
    }
    let reference = AttachmentRef::decode(body).ok()?;
    Some((
        reference.digest,
        Attachment {
            here: false,
            name: reference.name,
            media_type: reference.media_type,
            len: reference.len,
        },
    ))
}

/// Deletes the encrypted file of the blob `digest` names.
pub(crate) fn remove_file_of(profile: &Path, digest: &[u8; 32]) {
    let _ = std::fs::remove_file(blob_file(profile, digest));
}

/// Decrypts the encrypted file `source` of `reference` into `dest`.
fn decrypt_file(source: &Path, reference: &AttachmentRef, dest: &Path) -> Result<u64> {
    let cipher = ChunkCipher::new(&reference.key, reference.file_id, reference.len)
        .map_err(sotto_store::Error::Protocol)?;
    let mut input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(source)?);
    let temp = dest.with_extension("sotto-part");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, create_private(&temp)?);
    let mut chunk = Zeroizing::new(Vec::with_capacity(CHUNK_LEN + CHUNK_TAG_LEN));
    let result = (|| -> Result<()> {
        for index in 0..cipher.chunks() {
            let n = attachment::plain_chunk_len(reference.len, index).unwrap_or(0) + CHUNK_TAG_LEN;
            chunk.clear();
            chunk.resize(n, 0);
            input.read_exact(&mut chunk)?;
            cipher
                .open(index, &mut chunk)
                .map_err(sotto_store::Error::Protocol)?;
            out.write_all(&chunk)?;
        }
        let file = out.into_inner().map_err(|e| Error::Io(e.into_error()))?;
        file.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    std::fs::rename(&temp, dest)?;
    Ok(reference.len)
}

/// What a download came to.
enum Fetched {
    /// The file is here.
    Done,
    /// It will not come: why.
    Failed(FileFailure),
}

impl Shared {
    /// Uploads then downloads everything pending, one at a time. Returns
    /// how many finished; the first error (a lost connection, say) stops
    /// it, and the rest waits for the next round.
    pub(crate) async fn move_files(&self, conn: &RelayClient) -> Result<usize> {
        let _one_at_a_time = self.moving_files.lock().await;
        let mut done = 0;
        let uploads = self.with_store(|s| s.uploads()).await?;
        for (id, record) in uploads {
            let Some(upload) = record.ok().and_then(|r| Upload::decode(&r)) else {
                tracing::warn!("an unreadable upload was given up");
                self.with_store(move |s| s.delete_upload(&id)).await?;
                continue;
            };
            match self.upload(conn, id, upload).await {
                Ok(()) => done += 1,
                Err(e) if conn.is_closed() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "a file could not be sent yet");
                    self.report(super::types::Step::Files, e);
                }
            }
        }
        let downloads = self.with_store(|s| s.pending_downloads()).await?;
        for (contact, seq) in downloads {
            let outcome = self.download(conn, &contact, seq).await?;
            let address = contact.parse::<Address>().ok();
            match outcome {
                Fetched::Done => {
                    if let Some(contact) = address {
                        self.emit(ClientEvent::FileReceived { contact, seq });
                    }
                }
                Fetched::Failed(reason) => {
                    tracing::info!(%reason, "a file was not received");
                    if let Some(contact) = address {
                        self.emit(ClientEvent::FileFailed {
                            contact,
                            seq,
                            reason,
                        });
                    }
                }
            }
            let id = contact.clone();
            self.with_store(move |s| s.finish_download(&id, seq))
                .await?;
            done += 1;
        }
        Ok(done)
    }

    /// Puts an upload's blob on the relay, from where the relay got to,
    /// then sends the message that references it.
    async fn upload(&self, conn: &RelayClient, id: [u8; 16], mut upload: Upload) -> Result<()> {
        if !conn.supports_blobs() {
            return Err(Error::RelayWithoutBlobs);
        }
        let total = attachment::blob_len(upload.reference.len);
        let path = blob_file(&self.profile_dir, &upload.reference.digest);
        let mut offset = if upload.blob_created {
            match conn
                .blob_status(&BlobId(upload.reference.blob_id), None)
                .await
            {
                Ok(state) => Some(state.stored_len),
                // Expired before it was finished: start again.
                Err(e) if gone(&e) => None,
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        if offset.is_none() {
            let tokens: Vec<BlobToken> = upload
                .reference
                .tokens
                .iter()
                .map(|(_, t)| BlobToken::from_bytes(*t))
                .collect();
            let blob = conn.blob_create(total, BLOB_TTL, &tokens).await?;
            upload.reference.blob_id = blob.0;
            upload.blob_created = true;
            let record = upload.encode()?;
            self.with_store(move |s| s.put_upload(&id, &record)).await?;
            offset = Some(0);
        }
        let blob = BlobId(upload.reference.blob_id);
        let mut offset = offset.unwrap_or(0);
        let contact = upload.contact.parse::<Address>().ok();
        let piece = conn.max_blob_chunk().max(1);
        let mut reported = 0u64;
        while offset < total {
            let bytes = {
                let path = path.clone();
                blocking(move || read_at(&path, offset, piece).map_err(sotto_store::Error::Io))
                    .await?
            };
            if bytes.is_empty() {
                // The encrypted file is shorter than the blob: it is gone
                // or damaged, and the upload cannot finish.
                self.with_store(move |s| s.delete_upload(&id)).await?;
                return Err(Error::Io(std::io::Error::other(
                    "the encrypted file of an upload is missing; the upload was given up",
                )));
            }
            offset = conn.blob_put(&blob, offset, &bytes).await?;
            if let Some(contact) = contact
                && (offset - reported >= total / 100 || offset == total)
            {
                reported = offset;
                self.emit(ClientEvent::FileProgress {
                    contact,
                    outgoing: true,
                    seq: None,
                    done: offset,
                    total,
                });
            }
        }
        // A device of the contact that has no session yet gets one, as
        // `send` would make it.
        if let Some(identity) = contact.as_ref().map(|c| *c.identity_key()) {
            self.sessions_for(conn, &upload.contact, &identity, &upload.contact)
                .await?;
        }
        let body = upload
            .reference
            .encode()
            .map_err(sotto_store::Error::Protocol)?;
        let max = usize::MAX;
        let to = upload.contact.clone();
        let sent = self
            .with_store(move |s| s.send_upload(&id, &to, &body, now_ms(), max))
            .await?;
        if let Some(contact) = contact {
            self.emit(ClientEvent::FileSent {
                contact,
                seq: sent.seq,
            });
        }
        if let Err(e) = self.flush_conversation(conn, &upload.contact).await {
            tracing::info!(error = %e, "the file's message waits in the outbox");
        }
        Ok(())
    }

    /// Fetches the attachment of message `seq` of `contact`, from where
    /// an earlier attempt stopped.
    async fn download(&self, conn: &RelayClient, contact: &str, seq: u64) -> Result<Fetched> {
        let message = {
            let id = contact.to_owned();
            self.with_store(move |s| s.message(&id, seq)).await?
        };
        let Some(message) = message else {
            return Ok(Fetched::Failed(FileFailure::Gone));
        };
        let Ok(reference) = AttachmentRef::decode(&message.body) else {
            return Ok(Fetched::Failed(FileFailure::Malformed));
        };
        let tag = attachment::device_tag(self.identity.public());
        let Some(token) = reference.token_for(&tag).map(|t| BlobToken::from_bytes(*t)) else {
            return Ok(Fetched::Failed(FileFailure::NotForThisDevice));
        };
        let done = blob_file(&self.profile_dir, &reference.digest);
        if done.exists() {
            return Ok(Fetched::Done);
        }
        if !conn.supports_blobs() {
            return Err(Error::RelayWithoutBlobs);
        }
        let part = part_file(&self.profile_dir, contact, seq);
        let total = attachment::blob_len(reference.len);
        let stride = (CHUNK_LEN + CHUNK_TAG_LEN) as u64;
        // Go on from the last whole chunk of an earlier attempt (each was
        // checked before it was written), hashing what is there.
        let (mut offset, mut digest) = {
            let (profile, part) = (self.profile_dir.clone(), part.clone());
            blocking(move || resume_part(&profile, &part, stride).map_err(sotto_store::Error::Io))
                .await?
        };
        let cipher = ChunkCipher::new(&reference.key, reference.file_id, reference.len)
            .map_err(sotto_store::Error::Protocol)?;
        let blob = BlobId(reference.blob_id);
        let address = contact.parse::<Address>().ok();
        let want = u32::try_from(conn.max_blob_chunk())
            .unwrap_or(u32::MAX)
            .max(1);
        let mut pending: Vec<u8> = Vec::new();
        let mut opened = Zeroizing::new(Vec::with_capacity(CHUNK_LEN + CHUNK_TAG_LEN));
        let mut index = offset / stride;
        let mut reported = offset;
        let mut fetched = offset;
        while offset < total {
            let data = match conn.blob_get(&blob, &token, fetched, want).await {
                Ok(data) if data.is_empty() => {
                    return Ok(Fetched::Failed(FileFailure::Tampered));
                }
                Ok(data) => data,
                Err(e) if gone(&e) => {
                    let _ = std::fs::remove_file(&part);
                    return Ok(Fetched::Failed(FileFailure::Gone));
                }
                Err(e) => return Err(e.into()),
            };
            fetched += data.len() as u64;
            if fetched > total {
                let _ = std::fs::remove_file(&part);
                return Ok(Fetched::Failed(FileFailure::Tampered));
            }
            pending.extend_from_slice(&data);
            // Every whole chunk: checked, then written.
            let mut used = 0;
            while let Some(plain) = attachment::plain_chunk_len(reference.len, index) {
                let n = plain + CHUNK_TAG_LEN;
                if pending.len() - used < n {
                    break;
                }
                let chunk = &pending[used..used + n];
                opened.clear();
                opened.extend_from_slice(chunk);
                if cipher.open(index, &mut opened).is_err() {
                    let _ = std::fs::remove_file(&part);
                    return Ok(Fetched::Failed(FileFailure::Tampered));
                }
                digest.update(chunk);
                used += n;
                index += 1;
            }
            let whole: Vec<u8> = pending.drain(..used).collect();
            if !whole.is_empty() {
                offset += whole.len() as u64;
                let part = part.clone();
                blocking(move || append(&part, &whole).map_err(sotto_store::Error::Io)).await?;
            }
            if let Some(contact) = address
                && (offset - reported >= total / 100 || offset == total)
            {
                reported = offset;
                self.emit(ClientEvent::FileProgress {
                    contact,
                    outgoing: false,
                    seq: Some(seq),
                    done: offset,
                    total,
                });
            }
        }
        if !digest.matches(&reference.digest) {
            let _ = std::fs::remove_file(&part);
            return Ok(Fetched::Failed(FileFailure::Tampered));
        }
        {
            let (part, done) = (part.clone(), done.clone());
            blocking(move || {
                let finish = || -> std::io::Result<()> {
                    std::fs::File::open(&part)?.sync_all()?;
                    std::fs::rename(&part, &done)
                };
                finish().map_err(sotto_store::Error::Io)
            })
            .await?;
        }
        // The relay deletes the blob once every recipient said so; a lost
        // answer only leaves it to expire.
        if let Err(e) = conn.blob_done(&blob, &token).await {
            tracing::info!(error = %e, "the relay was not told the file arrived");
        }
        Ok(Fetched::Done)
    }
}

/// Where a download stands in its part file: the length of its whole
/// chunks (the file is cut there) and their digest so far.
fn resume_part(profile: &Path, part: &Path, stride: u64) -> std::io::Result<(u64, BlobDigest)> {
    attachments_dir(profile)?;
    let mut digest = BlobDigest::new();
    let Ok(meta) = std::fs::metadata(part) else {
        return Ok((0, digest));
    };
    let whole = meta.len() - meta.len() % stride;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(part)?;
    file.set_len(whole)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut buf = vec![0u8; 1 << 16];
    let mut left = whole;
    while left > 0 {
        let n = reader.read(&mut buf[..(left.min(1 << 16)) as usize])?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
        left -= n as u64;
    }
    Ok((whole, digest))
}

/// Appends `bytes` to `path` (created owner-only) and syncs it.
fn append(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_data()
}

/// The background task that moves files: woken when one is sent or
/// arrives, or when the client connects, and every few seconds; it ends
/// when the client is gone.
pub(crate) async fn run(shared: Weak<Shared>, wake: Arc<tokio::sync::Notify>) {
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(FILES_EVERY) => {}
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let Some(conn) = shared.live_connection() else {
            continue;
        };
        if let Err(e) = shared.move_files(&conn).await {
            tracing::info!(error = %e, "files wait for the next round");
            shared.report(super::types::Step::Files, e);
        }
    }
}
