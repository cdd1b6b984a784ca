//! The history of a new device, sent end to end encrypted by the device
//! that linked it (docs/devices.md, "History on a new device").
//!
//! The linking device writes the transfer (the archive format with a
//! transfer's magic: contacts, conversations, messages, no identity) under
//! the key the link agreed to a file in the profile folder, then sends the
//! header and each chunk in an envelope of its own to the new device: the
//! chunk, already encrypted under the transfer key, travels after the
//! sealed layer like a detached body (payload kind 0x0A), so it is
//! encrypted once. The new device applies each chunk in one transaction
//! (a crash leaves it applied or not), acknowledges it to the relay only
//! then, and answers with its progress (kind 0x0B) when it completes, when
//! a chunk came ahead of its turn, and whenever it connects with a
//! transfer unfinished; the sender resends from the chunk asked for, and
//! after a crash resumes from the first chunk the relay had not taken.
//! The relay holds each chunk until it is acknowledged, and can read none.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use sotto_core::IdentityKey;
use sotto_relay::{MailboxAddress, MessageId, RelayClient};
use sotto_store::{ArchiveError, ArchiveKey, TransferFrames, TransferProgress};

use super::Client;
use super::shared::{Shared, blocking, now_ms};
use super::types::ClientEvent;
use crate::error::{Error, Result};
use crate::payload;

/// The file an outgoing transfer is written to, in the profile folder.
const OUTGOING_FILE: &str = "history-out.sotto";

/// Where a history transfer stands (see [`ClientEvent::HistoryTransfer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryTransfer {
    /// True on the sending device.
    pub outgoing: bool,
    /// Chunks sent (sender) or applied (receiver).
    pub chunks: u64,
    /// Messages applied so far (receiver; 0 on the sender).
    pub messages_done: u64,
    /// Messages in the transfer (receiver; 0 on the sender).
    pub messages_total: u64,
    /// True once the new device applied the final chunk (receiver), or
    /// confirmed it did (sender).
    pub complete: bool,
}

impl HistoryTransfer {
    fn received(p: &TransferProgress) -> Self {
        Self {
            outgoing: false,
            chunks: p.next_chunk,
            messages_done: p.messages_done,
            messages_total: p.messages_total,
            complete: p.complete,
        }
    }
}

impl Client {
    /// Sends this profile's history to the device it linked last
    /// ([`link_device`](Self::link_device)), end to end encrypted under the
    /// key of that link; progress comes as [`ClientEvent::HistoryTransfer`].
    /// Returns once every chunk was handed to the relay; the transfer is
    /// done when the new device confirms it (an event with `complete`).
    /// After a crash it goes on from where the relay stopped taking chunks
    /// when the client connects again. Needs a connection.
    pub async fn send_history(&self) -> Result<()> {
        let conn = self.connection()?;
        let shared = &self.shared;
        let mut transfer = shared
            .with_store(|s| s.outgoing_transfer())
            .await?
            .ok_or(Error::NoLinkUnderWay)?;
        if !transfer.started {
            transfer.started = true;
            transfer.next_chunk = 0;
            let started = transfer.clone();
            shared
                .with_store(move |s| s.set_outgoing_transfer(Some(&started)))
                .await?;
            // Written afresh: a file from an earlier, unfinished attempt
            // may hold an older history.
            let _ = std::fs::remove_file(shared.profile_dir.join(OUTGOING_FILE));
        }
        shared.send_started(&conn, transfer).await
    }
}

/// Writes the transfer to `path` (owner-only), through a temporary file.
fn write_transfer(
    store: &std::sync::Mutex<sotto_store::Store>,
    path: &std::path::Path,
    key: &ArchiveKey,
) -> sotto_store::Result<()> {
    let temp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    let file = file.open(&temp).map_err(sotto_store::Error::Io)?;
    let mut out = std::io::BufWriter::new(file);
    super::shared::lock(store).export_history_transfer(&mut out, key, |_| {})?;
    let file = out
        .into_inner()
        .map_err(|e| sotto_store::Error::Io(e.into_error()))?;
    file.sync_all().map_err(sotto_store::Error::Io)?;
    std::fs::rename(&temp, path).map_err(sotto_store::Error::Io)?;
    Ok(())
}

impl Shared {
    /// Sends a started transfer from its next chunk, writing its file first
    /// when there is none yet (a sender that died while writing it starts
    /// again from the first chunk: nothing of it can have been sent).
    async fn send_started(
        &self,
        conn: &RelayClient,
        mut transfer: sotto_store::OutgoingTransfer,
    ) -> Result<()> {
        let path = self.profile_dir.join(OUTGOING_FILE);
        if !path.exists() {
            let store = self.store.clone();
            let key = transfer.key.clone();
            blocking(move || write_transfer(&store, &path, &key)).await?;
            if transfer.next_chunk != 0 {
                transfer.next_chunk = 0;
                let restarted = transfer.clone();
                self.with_store(move |s| s.set_outgoing_transfer(Some(&restarted)))
                    .await?;
            }
        }
        self.send_chunks(conn, transfer.next_chunk).await
    }

    /// Sends the outgoing transfer's header and chunks from `from`, each
    /// recorded as sent once the relay took it.
    async fn send_chunks(&self, conn: &RelayClient, from: u64) -> Result<()> {
        let transfer = self
            .with_store(|s| s.outgoing_transfer())
            .await?
            .ok_or(Error::NoLinkUnderWay)?;
        let path: PathBuf = self.profile_dir.join(OUTGOING_FILE);
        let mut frames = {
            let path = path.clone();
            blocking(move || {
                let file = std::fs::File::open(&path).map_err(sotto_store::Error::Io)?;
                let mut frames = TransferFrames::new(std::io::BufReader::new(file))?;
                frames.skip_to(from)?;
                Ok(frames)
            })
            .await?
        };
        let header = frames.header().to_vec();
        loop {
            let (next, frames_back) = blocking(move || {
                let next = frames.next().transpose()?;
                Ok((next, frames))
            })
            .await?;
            frames = frames_back;
            let Some((index, frame)) = next else {
                break;
            };
            if let Err(e) = self
                .send_chunk(conn, &transfer.to, &header, index, &frame)
                .await
            {
                // Refused for now (the relay's limits, a full mailbox):
                // the background tries again with the outbox's backoff.
                if !conn.is_closed() {
                    self.history_held.store(true, Ordering::Relaxed);
                    self.held.notify_one();
                }
                return Err(e);
            }
            let mut sent = transfer.clone();
            sent.next_chunk = index + 1;
            self.with_store(move |s| s.set_outgoing_transfer(Some(&sent)))
                .await?;
            self.emit(ClientEvent::HistoryTransfer(HistoryTransfer {
                outgoing: true,
                chunks: index + 1,
                messages_done: 0,
                messages_total: 0,
                complete: false,
            }));
        }
        self.history_held.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// True while chunks of the outgoing transfer wait after a refusal
    /// for now.
    pub(crate) fn history_is_held(&self) -> bool {
        self.history_held.load(Ordering::Relaxed)
    }

    /// Goes on with the outgoing transfer after a refusal for now.
    pub(crate) async fn retry_history(&self, conn: &RelayClient) {
        if !self.history_is_held() {
            return;
        }
        if let Err(e) = self.resume_history(conn).await {
            tracing::info!(error = %e, "history transfer still held");
        }
    }

    async fn send_chunk(
        &self,
        conn: &RelayClient,
        to: &IdentityKey,
        header: &[u8],
        index: u64,
        frame: &[u8],
    ) -> Result<()> {
        let body = payload::history_chunk_body(header, index);
        let inner = payload::encode_control(payload::KIND_HISTORY_CHUNK, now_ms(), &body)?;
        let sealed = payload::seal(&self.identity, to, &inner)?;
        let envelope = payload::frame_detached(&sealed, frame);
        // The same chunk always gets the same relay id: a resend after a
        // crash is queued once.
        let id = payload::relay_message_id(frame);
        conn.send(
            &MailboxAddress::of(to),
            id,
            Some(&self.access_key),
            &envelope,
        )
        .await?;
        Ok(())
    }

    /// A chunk of the history transfer from device `from` (which must be a
    /// device of this account): begun if new, applied, announced; the
    /// sender hears how far it got when it completed or a chunk came ahead.
    /// Returns whether the transfer is complete.
    pub(crate) async fn on_history_chunk(
        &self,
        conn: &RelayClient,
        from: &IdentityKey,
        body: &[u8],
        frame: &[u8],
    ) -> Result<bool> {
        let (header, index) = payload::parse_history_chunk(body)
            .ok_or(Error::Dropped(super::DropReason::Malformed))?;
        let (header, frame, sender) = (header.to_vec(), frame.to_vec(), *from);
        let applied = self
            .with_store(move |s| {
                let ours = s
                    .own_devices()?
                    .is_some_and(|list| list.contains(&sender).is_some());
                let Some(key) = s.incoming_history_key()? else {
                    return Ok(None);
                };
                if !ours {
                    return Ok(None);
                }
                s.begin_history_transfer(&header, &key)?;
                let applied = match s.apply_history_chunk(index, &frame) {
                    Err(sotto_store::Error::Archive(ArchiveError::ChunkAhead { .. })) => {
                        s.history_transfer_progress()?
                    }
                    other => Some(other?),
                };
                if applied.as_ref().is_some_and(|p| p.complete) {
                    s.set_incoming_history_key(None)?;
                }
                Ok(applied)
            })
            .await?;
        let Some(progress) = applied else {
            return Err(Error::Dropped(super::DropReason::NotAContact));
        };
        self.emit(ClientEvent::HistoryTransfer(HistoryTransfer::received(
            &progress,
        )));
        if progress.complete || progress.next_chunk <= index {
            self.send_history_status(conn, from, &progress).await?;
        }
        Ok(progress.complete)
    }

    /// Tells the sending device how far the transfer got.
    async fn send_history_status(
        &self,
        conn: &RelayClient,
        to: &IdentityKey,
        progress: &TransferProgress,
    ) -> Result<()> {
        let body = payload::history_status_body(
            progress.id.as_bytes(),
            progress.next_chunk,
            progress.complete,
        );
        let inner = payload::encode_control(payload::KIND_HISTORY_STATUS, now_ms(), &body)?;
        let sealed = payload::seal(&self.identity, to, &inner)?;
        let id = MessageId::random().map_err(|_| Error::NoRandomness)?;
        conn.send(&MailboxAddress::of(to), id, Some(&self.access_key), &sealed)
            .await?;
        Ok(())
    }

    /// The new device's word on the transfer we send it: done (the file
    /// and the record go), or resend from the chunk it needs.
    pub(crate) async fn on_history_status(
        &self,
        conn: &RelayClient,
        from: &IdentityKey,
        body: &[u8],
    ) -> Result<()> {
        let (_, next, complete) = payload::parse_history_status(body)
            .ok_or(Error::Dropped(super::DropReason::Malformed))?;
        let Some(transfer) = self.with_store(|s| s.outgoing_transfer()).await? else {
            return Ok(());
        };
        if transfer.to != *from {
            return Err(Error::Dropped(super::DropReason::NotAContact));
        }
        if complete {
            self.with_store(|s| s.set_outgoing_transfer(None)).await?;
            let _ = std::fs::remove_file(self.profile_dir.join(OUTGOING_FILE));
            tracing::info!("history transfer confirmed by the new device");
            self.emit(ClientEvent::HistoryTransfer(HistoryTransfer {
                outgoing: true,
                chunks: next,
                messages_done: 0,
                messages_total: 0,
                complete: true,
            }));
            return Ok(());
        }
        tracing::info!(next, "the new device asks for the history again");
        self.send_chunks(conn, next).await
    }

    /// On connecting: a sender goes on with a transfer the relay had not
    /// taken entirely; a receiver with one unfinished tells the sender
    /// where it stands (the sender resends what is missing).
    pub(crate) async fn resume_history(&self, conn: &RelayClient) -> Result<()> {
        let (outgoing, incoming, primary) = self
            .with_store(|s| {
                let primary = s
                    .own_devices()?
                    .and_then(|l| l.device(sotto_core::DeviceId::PRIMARY).map(|d| d.identity));
                Ok((
                    s.outgoing_transfer()?,
                    s.history_transfer_progress()?,
                    primary,
                ))
            })
            .await?;
        if let Some(transfer) = outgoing
            && transfer.started
        {
            self.send_started(conn, transfer).await?;
        }
        if let (Some(progress), Some(primary)) = (incoming, primary)
            && !progress.complete
            && primary != *self.identity.public()
        {
            self.send_history_status(conn, &primary, &progress).await?;
        }
        Ok(())
    }
}
