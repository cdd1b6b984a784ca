//! Prekeys on the relay: the signed prekey schedule and the one-time
//! prekey stock.

use sotto_core::{OneTimePreKeyId, PreKeyPublic};
use sotto_relay::protocol::{OneTimePreKeyPublic, SignedPreKeyPublic};
use sotto_relay::{PreKeyUpload, RelayClient};
use sotto_store::RETIRED_ONE_TIME_PREKEY_GRACE;
use tokio::sync::MutexGuard;

use super::shared::{Shared, now_ms};
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
            self.top_up(conn, stock.remaining, &publishing).await?
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
        self.top_up(conn, stock.remaining, &publishing).await
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
        let (signed, fresh) = self
            .with_store(move |s| {
                Ok((
                    s.signed_prekey()?,
                    s.fresh_one_time_prekeys(count, now_ms())?,
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
        // Only now are the older keys out of the relay's stock. If the
        // upload failed they stay live, as they may still be handed out.
        self.with_store(move |s| {
            let now = now_ms();
            s.retire_published_one_time_prekeys(first_fresh, now)?;
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
