//! Delivery and read receipts: owed per sender, sent in batches.

use std::collections::HashMap;

use sotto_core::IdentityKey;
use sotto_relay::{MailboxAddress, MessageId, RelayClient};
use sotto_store::EnvelopeId;

use super::receive::Owed;
use super::shared::{Shared, access_key_of, contact_id, lock, now_ms};
use crate::error::{Error, Result};
use crate::payload::{self, ReceiptKind};

/// The delivery receipts owed, by sender.
pub(crate) type OwedReceipts = HashMap<[u8; 32], (IdentityKey, Vec<EnvelopeId>)>;

impl Shared {
    /// Notes a delivery receipt to send with the next batch.
    pub(crate) fn owe_receipt(&self, (sender, id): Owed) {
        lock(&self.receipts)
            .entry(*sender.as_bytes())
            .or_insert_with(|| (sender, Vec::new()))
            .1
            .push(id);
    }

    /// Sends the delivery receipts owed, one envelope per sender (split at
    /// [`payload::MAX_RECEIPT_IDS`]). What cannot be sent now stays owed
    /// for the next try; a receipt lost for good only means the sender
    /// sends its message again, which is stored once and confirmed again.
    pub(crate) async fn flush_receipts(&self, conn: &RelayClient) {
        let owed = std::mem::take(&mut *lock(&self.receipts));
        let mut failed = Vec::new();
        for (_, (sender, ids)) in owed {
            for chunk in ids.chunks(payload::MAX_RECEIPT_IDS) {
                if self
                    .send_receipt(conn, &sender, ReceiptKind::Delivered, chunk)
                    .await
                    .is_err()
                {
                    failed.push((sender, chunk.to_vec()));
                }
            }
        }
        for (sender, ids) in failed {
            for id in ids {
                self.owe_receipt((sender, id));
            }
        }
    }

    /// Sends one receipt envelope to `to`.
    pub(crate) async fn send_receipt(
        &self,
        conn: &RelayClient,
        to: &IdentityKey,
        kind: ReceiptKind,
        ids: &[EnvelopeId],
    ) -> Result<()> {
        let receipt_id = MessageId::random().map_err(|_| Error::NoRandomness)?;
        let receipt = payload::encode_receipt(&receipt_id.0, now_ms(), kind, ids);
        let sealed = payload::seal(&self.identity, to, &receipt)?;
        let access = self.access_key_for(to).await;
        conn.send(
            &MailboxAddress::of(to),
            receipt_id,
            access.as_ref(),
            &sealed,
        )
        .await?;
        Ok(())
    }

    /// The access key of the contact with identity `identity`, if it gave
    /// us one.
    pub(crate) async fn access_key_for(
        &self,
        identity: &IdentityKey,
    ) -> Option<sotto_core::AccessKey> {
        let pinned = *identity;
        self.with_store(move |s| access_key_of(s, &contact_id(&pinned), &pinned))
            .await
            .ok()
            .flatten()
    }
}
