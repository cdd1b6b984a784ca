//! Session recovery: decryption-error notices we send (rate-limited) and
//! answer, and messages resent when their delivery receipt is overdue.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use sotto_core::IdentityKey;
use sotto_relay::{MailboxAddress, MessageId, RelayClient};
use sotto_store::{CiphertextDigest, Recovery};

use super::outbox::Flushed;
use super::shared::{Shared, contact_id, lock, now_ms};
use super::types::ClientEvent;
use crate::address::Address;
use crate::error::{Error, Result};
use crate::payload;

/// Notices sent per contact within [`NOTICE_WINDOW`], at most.
const MAX_NOTICES_PER_WINDOW: usize = 10;
const NOTICE_WINDOW: Duration = Duration::from_secs(60);
/// Failed ciphertexts remembered so that each is reported once.
const NOTICED_IDS_REMEMBERED: usize = 1024;

/// Bounds the decryption-error notices this client sends, so that no
/// sender (or attacker) can make it flood anyone.
#[derive(Default)]
pub(crate) struct NoticeLimiter {
    recent: HashMap<[u8; 32], VecDeque<Instant>>,
    noticed: VecDeque<CiphertextDigest>,
}

impl NoticeLimiter {
    fn allow(&mut self, sender: &IdentityKey, failed: &CiphertextDigest) -> bool {
        if self.noticed.contains(failed) {
            return false;
        }
        let now = Instant::now();
        let times = self.recent.entry(*sender.as_bytes()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) > NOTICE_WINDOW)
        {
            times.pop_front();
        }
        if times.len() >= MAX_NOTICES_PER_WINDOW {
            return false;
        }
        times.push_back(now);
        if self.noticed.len() >= NOTICED_IDS_REMEMBERED {
            self.noticed.pop_front();
        }
        self.noticed.push_back(*failed);
        true
    }
}

impl Shared {
    /// Sends a decryption-error notice for the ciphertext with digest
    /// `failed` to `sender`, within the rate limit. Returns whether one was
    /// sent.
    pub(crate) async fn request_resend(
        &self,
        conn: &RelayClient,
        sender: &IdentityKey,
        failed: &CiphertextDigest,
    ) -> bool {
        if !lock(&self.notices).allow(sender, failed) {
            return false;
        }
        let Ok(notice_id) = MessageId::random() else {
            return false;
        };
        let notice = payload::encode_notice(&notice_id.0, now_ms(), failed);
        let Ok(sealed) = payload::seal(&self.identity, sender, &notice) else {
            return false;
        };
        let access = self.access_key_for(sender).await;
        let sent = conn
            .send(
                &MailboxAddress::of(sender),
                notice_id,
                access.as_ref(),
                &sealed,
            )
            .await
            .is_ok();
        tracing::info!(sent, "asked a contact to resend a message");
        sent
    }

    /// Sends again, under the same envelope id and ciphertext, every
    /// message the relay accepted whose delivery receipt is overdue.
    pub(crate) async fn resend_overdue(&self, conn: &RelayClient) -> Result<Flushed> {
        let _guard = self.processing.lock().await;
        let policy = self.options.resend;
        let entries = self
            .outbox_with_recipients(move |s| s.overdue(now_ms(), &policy))
            .await?;
        // A resend refused for now stays overdue and is tried at the next
        // check.
        let flushed = self.deliver_in_order(conn, entries).await?;
        if !flushed.sent.is_empty() {
            tracing::info!(count = flushed.sent.len(), "resent unconfirmed messages");
        }
        Ok(flushed)
    }

    /// A contact could not decrypt our ciphertext with digest `failed`:
    /// reset the session and/or resend it, as the store's recovery rules
    /// decide. A digest that names none of our recent ciphertexts does
    /// nothing.
    pub(crate) async fn answer_notice(
        &self,
        conn: &RelayClient,
        contact: Address,
        failed: CiphertextDigest,
    ) -> Result<()> {
        let sender = *contact.identity_key();
        let id = contact_id(&sender);
        let plan = {
            let id = id.clone();
            self.with_store(move |s| s.plan_recovery(&id, &failed))
                .await?
        };
        let bundle = match plan {
            Recovery::ResetAndResend { .. } => {
                let bundle =
                    super::prekeys::fetch_bundle(conn, &MailboxAddress::of(&sender)).await?;
                if bundle.identity_key != sender {
                    return Err(Error::BundleMismatch);
                }
                Some(bundle)
            }
            _ => None,
        };
        let session_reset = bundle.is_some();
        let entry = self
            .with_store(move |s| s.recover(&id, &failed, bundle.as_ref()))
            .await?;
        let seq = entry.as_ref().map(|e| e.seq);
        tracing::info!(
            session_reset,
            resent = seq.is_some(),
            "answered a decryption-error notice"
        );
        if let Some(entry) = entry {
            // If the relay refuses now, the entry waits in the outbox.
            let to = super::outbox::Addressed {
                entry,
                key: sender,
                account: sender,
                access: self.access_key_for(&sender).await,
            };
            if self.deliver(conn, &to).await.is_err() {
                self.hold_outbox(true);
            }
        }
        self.emit(ClientEvent::PeerCouldNotDecrypt {
            contact,
            seq,
            session_reset: session_reset && seq.is_some(),
        });
        Ok(())
    }
}
