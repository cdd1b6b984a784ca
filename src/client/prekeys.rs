//! Prekeys on the relay: the signed prekey schedule and the one-time
//! prekey stock.

use sotto_core::{KemPreKeyId, OneTimePreKeyId, PreKeyPublic};
use sotto_relay::protocol::{OneTimePreKeyPublic, SignedPreKeyPublic};
use sotto_relay::{PreKeyUpload, RelayClient};
use sotto_store::RETIRED_ONE_TIME_PREKEY_GRACE;
use std::sync::atomic::Ordering;
use tokio::sync::MutexGuard;

use super::shared::{Shared, now_ms};

/// One-time ML-KEM prekeys (protocol v2) kept on a relay that serves them
/// (each is about 1.25 KB there; when they run out, senders use the
/// last-resort one).
pub(crate) const ONE_TIME_KEM_PREKEYS: usize = 20;

/// Bytes of an upload frame kept for everything but its KEM prekeys.
const UPLOAD_OVERHEAD: usize = 512;

/// How many KEM prekeys (1252 bytes each on the wire) fit in one upload to
/// this relay: 0 if the relay serves none (protocol 3 or older), or if
/// its frames are too small for one.
fn kem_keys_per_upload(conn: &RelayClient) -> usize {
    if !conn.supports_kem_prekeys() {
        return 0;
    }
    let frame = usize::try_from(conn.welcome().max_frame_size).unwrap_or(usize::MAX);
    frame.saturating_sub(UPLOAD_OVERHEAD) / KEM_PREKEY_WIRE_LEN
}

/// A KEM prekey on the wire: id, ML-KEM-768 key, signature.
const KEM_PREKEY_WIRE_LEN: usize = 4 + sotto_core::KEM_PUBLIC_LEN + 64;

/// Uploads `last_resort` and `one_time` KEM prekeys in as many uploads as
/// the relay's frame size needs; `replace` replaces the relay's one-time
/// KEM stock with the first of them.
async fn upload_kem(
    conn: &RelayClient,
    mut last_resort: Option<sotto_core::SignedKemPreKey>,
    one_time: Vec<sotto_core::SignedKemPreKey>,
    replace: bool,
) -> Result<()> {
    let per_upload = kem_keys_per_upload(conn).max(1);
    let mut keys = one_time.into_iter().peekable();
    let mut first = true;
    while first || keys.peek().is_some() {
        let mut upload = PreKeyUpload::from_public(None, Vec::new());
        let room = per_upload - usize::from(last_resort.is_some());
        upload.last_resort_kem_prekey = last_resort.take();
        upload.one_time_kem_prekeys = keys.by_ref().take(room).collect();
        upload.replace_one_time_kem_prekeys = replace && first;
        conn.upload_prekeys(upload).await?;
        first = false;
    }
    Ok(())
}

/// The bundle the relay serves for `address`: protocol v2's (with a KEM
/// prekey, if its owner published one) from a relay that serves KEM
/// prekeys, else version 1's. A session started from it is v2 exactly
/// when the bundle is.
pub(crate) async fn fetch_bundle(
    conn: &RelayClient,
    address: &sotto_relay::MailboxAddress,
) -> Result<sotto_core::PreKeyBundle> {
    Ok(if conn.supports_kem_prekeys() {
        conn.fetch_bundle_v2(address).await?
    } else {
        conn.fetch_bundle(address).await?
    })
}
use super::types::ClientEvent;
use crate::error::Result;

impl Shared {
    /// The prekey schedule, on every connection and hourly: rotates the
    /// signed prekey when due and publishes the current one (a no-op for
    /// the relay when it did not change; after a rotation, or an upload
    /// that failed before, it brings the relay up to date), prunes retired
    /// one-time prekeys, and tops the relay's one-time stock up to the
    /// target from the count the relay reports. After a rotation the
    /// one-time stock is replaced too, so keys handed out to senders who
    /// never wrote are retired and eventually leave the store. Replaced
    /// keys stay in the store for first messages in flight.
    pub(crate) async fn maintain_prekeys(&self, conn: &RelayClient) -> Result<()> {
        let publishing = self.publishing.lock().await;
        let policy = self.options.signed_prekeys;
        let (signed, rotated) = self
            .with_store(move |s| {
                let now = now_ms();
                let rotated = s.maintain_signed_prekeys(now, &policy)?.is_some();
                s.prune_one_time_prekeys(now, RETIRED_ONE_TIME_PREKEY_GRACE)?;
                s.prune_kem_prekeys(now, RETIRED_ONE_TIME_PREKEY_GRACE)?;
                Ok((s.signed_prekey()?, rotated))
            })
            .await?;
        let count = if rotated {
            tracing::info!("signed prekey rotated");
            self.replace_prekeys_locked(conn, &publishing).await?
        } else {
            let stock = conn
                .upload_prekeys(
                    PreKeyUpload::new(Some(&signed), &[])
                        // Only contacts (who got our key in our messages)
                        // write without limit.
                        .with_access_verifier(self.access_key.verifier()),
                )
                .await?;
            let published = self.top_up(conn, stock.remaining, &publishing).await?;
            self.top_up_kem(conn, stock.kem.map(|k| k.remaining))
                .await?;
            published
        };
        if count > 0 {
            self.emit(ClientEvent::PreKeysPublished { count });
        }
        Ok(())
    }

    /// Tops the relay's one-time prekey stock up to the target with fresh
    /// keys, going by the relay's count (the store's own count includes
    /// keys the relay already handed out); returns how many were published.
    pub(crate) async fn replenish(&self, conn: &RelayClient) -> Result<usize> {
        let publishing = self.publishing.lock().await;
        // Asked under the lock, not taken from the push: a pushed count
        // may predate an upload made since.
        let stock = conn.prekey_count().await?;
        let published = self.top_up(conn, stock.remaining, &publishing).await?;
        self.top_up_kem(conn, stock.kem.map(|k| k.remaining))
            .await?;
        Ok(published)
    }

    /// Tops the relay's one-time KEM prekey stock (protocol v2) up to
    /// [`ONE_TIME_KEM_PREKEYS`], going by `remaining` as the relay reported
    /// it; `None` (the relay holds no last-resort KEM prekey of ours yet,
    /// as after an upgrade) publishes the last-resort one with a full set.
    /// Nothing with a relay that does not serve KEM prekeys.
    async fn top_up_kem(&self, conn: &RelayClient, remaining: Option<u32>) -> Result<()> {
        if kem_keys_per_upload(conn) == 0 {
            return Ok(());
        }
        let remaining = remaining.map(|r| usize::try_from(r).unwrap_or(usize::MAX));
        let missing = ONE_TIME_KEM_PREKEYS.saturating_sub(remaining.unwrap_or(0));
        if missing == 0 && remaining.is_some() {
            return Ok(());
        }
        let with_last_resort = remaining.is_none();
        let (last_resort, one_time) = self
            .with_store(move |s| {
                let last_resort = if with_last_resort {
                    Some(s.last_resort_kem_prekey()?)
                } else {
                    None
                };
                Ok((last_resort, s.fresh_kem_prekeys(missing)?))
            })
            .await?;
        upload_kem(conn, last_resort, one_time, false).await?;
        self.speaks_v2.store(true, Ordering::Relaxed);
        tracing::info!(count = missing, "one-time KEM prekeys published");
        Ok(())
    }

    /// Publishes `target - remaining` fresh one-time prekeys, where
    /// `remaining` is the relay's stock as it just reported it.
    async fn top_up(
        &self,
        conn: &RelayClient,
        remaining: u32,
        _publishing: &MutexGuard<'_, ()>,
    ) -> Result<usize> {
        let remaining = usize::try_from(remaining).unwrap_or(usize::MAX);
        let missing = self.options.one_time_prekeys.saturating_sub(remaining);
        if missing == 0 {
            return Ok(0);
        }
        let fresh = self
            .with_store(move |s| s.fresh_one_time_prekeys(missing, now_ms()))
            .await?;
        conn.upload_prekeys(PreKeyUpload::from_public(None, one_time_public(&fresh)))
            .await?;
        tracing::info!(count = fresh.len(), "one-time prekeys published");
        Ok(fresh.len())
    }

    /// Publishes the current signed prekey and a full set of fresh one-time
    /// prekeys that replaces the relay's stock; once the relay confirmed
    /// it, every key published before is retired (kept for first messages
    /// in flight, then pruned). Returns how many one-time prekeys were
    /// published.
    pub(crate) async fn replace_prekeys(&self, conn: &RelayClient) -> Result<usize> {
        let publishing = self.publishing.lock().await;
        self.replace_prekeys_locked(conn, &publishing).await
    }

    async fn replace_prekeys_locked(
        &self,
        conn: &RelayClient,
        _publishing: &MutexGuard<'_, ()>,
    ) -> Result<usize> {
        let count = self.options.one_time_prekeys;
        let kem = kem_keys_per_upload(conn) > 0;
        let (signed, fresh, kem_keys) = self
            .with_store(move |s| {
                let kem_keys = if kem {
                    Some((
                        s.last_resort_kem_prekey()?,
                        s.fresh_kem_prekeys(ONE_TIME_KEM_PREKEYS)?,
                    ))
                } else {
                    None
                };
                Ok((
                    s.signed_prekey()?,
                    s.fresh_one_time_prekeys(count, now_ms())?,
                    kem_keys,
                ))
            })
            .await?;
        // Ids grow: every key below the first fresh one was published
        // before this upload.
        let first_fresh = fresh.first().map_or(OneTimePreKeyId::MAX, |(id, _)| *id);
        conn.upload_prekeys(
            PreKeyUpload::from_public(
                Some(SignedPreKeyPublic::from(&signed)),
                one_time_public(&fresh),
            )
            .with_replace_one_time_prekeys(true)
            .with_access_verifier(self.access_key.verifier()),
        )
        .await?;
        // Protocol v2 (docs/protocol.md section 16), with a relay that
        // serves KEM prekeys: the last-resort one and a fresh set of
        // one-time ones that replaces the relay's.
        let mut first_fresh_kem = None;
        if let Some((last_resort, one_time)) = kem_keys {
            first_fresh_kem = Some(one_time.first().map_or(KemPreKeyId::MAX, |k| k.id));
            upload_kem(conn, Some(last_resort), one_time, true).await?;
            self.speaks_v2.store(true, Ordering::Relaxed);
        }
        // Only now are the older keys out of the relay's stock. If the
        // upload failed they stay live, as they may still be handed out.
        self.with_store(move |s| {
            let now = now_ms();
            s.retire_published_one_time_prekeys(first_fresh, now)?;
            if let Some(first) = first_fresh_kem {
                s.retire_published_kem_prekeys(first, now)?;
                s.prune_kem_prekeys(now, RETIRED_ONE_TIME_PREKEY_GRACE)?;
            }
            s.prune_one_time_prekeys(now, RETIRED_ONE_TIME_PREKEY_GRACE)
        })
        .await?;
        tracing::info!(count = fresh.len(), "prekeys replaced");
        Ok(fresh.len())
    }
}

/// The public halves of fresh one-time prekeys, for an upload.
fn one_time_public(fresh: &[(OneTimePreKeyId, PreKeyPublic)]) -> Vec<OneTimePreKeyPublic> {
    fresh
        .iter()
        .copied()
        .map(OneTimePreKeyPublic::from)
        .collect()
}
