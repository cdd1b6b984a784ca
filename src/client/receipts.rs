//! Delivery and read receipts: owed per sender, sent in batches.

use std::collections::HashMap;

use sotto_core::IdentityKey;
use sotto_relay::{MailboxAddress, MessageId, RelayClient};
use sotto_store::EnvelopeId;

use super::receive::Owed;
use super::shared::{Shared, access_key_of, contact_id, lock, now_ms};
use crate::error::{Error, Result};
use crate::payload::{self, ReceiptKind};

/// The delivery receipts owed, by sending device: its account, and the
/// envelope ids.
pub(crate) type OwedReceipts = HashMap<[u8; 32], (IdentityKey, IdentityKey, Vec<EnvelopeId>)>;

impl Shared {
    /// Notes a delivery receipt to send with the next batch.
    pub(crate) fn owe_receipt(&self, owed: Owed) {
        lock(&self.receipts)
            .entry(*owed.to.as_bytes())
            .or_insert_with(|| (owed.to, owed.account, Vec::new()))
            .2
            .push(owed.id);
    }

    /// Sends the delivery receipts owed, one envelope per sender (split at
    /// [`payload::MAX_RECEIPT_IDS`]). What cannot be sent now stays owed
    /// for the next try; a receipt lost for good only means the sender
    /// sends its message again, which is stored once and confirmed again.
    pub(crate) async fn flush_receipts(&self, conn: &RelayClient) {
        let owed = std::mem::take(&mut *lock(&self.receipts));
        let mut failed = Vec::new();
        for (_, (to, account, ids)) in owed {
            for chunk in ids.chunks(payload::MAX_RECEIPT_IDS) {
                if self
                    .send_receipt(conn, (&to, &account), ReceiptKind::Delivered, chunk)
                    .await
                    .is_err()
                {
                    failed.push((to, account, chunk.to_vec()));
                }
            }
        }
        for (to, account, ids) in failed {
            for id in ids {
                self.owe_receipt(Owed { to, account, id });
            }
        }
    }

    /// Sends one receipt envelope to the device `to` of `account`.
    pub(crate) async fn send_receipt(
        &self,
        conn: &RelayClient,
        (to, account): (&IdentityKey, &IdentityKey),
        kind: ReceiptKind,
        ids: &[EnvelopeId],
    ) -> Result<()> {
        let receipt_id = MessageId::random().map_err(|_| Error::NoRandomness)?;
        let receipt = payload::encode_receipt(&receipt_id.0, now_ms(), kind, ids);
        let sealed = payload::seal(&self.identity, to, &receipt)?;
        let access = self.access_key_for(account).await;
        conn.send(
            &MailboxAddress::of(to),
            receipt_id,
            access.as_ref(),
            &sealed,
        )
        .await?;
        Ok(())
    }

    /// The access key of the account `identity`: our own account's, or the
    /// one the contact with that identity gave us, if any.
    pub(crate) async fn access_key_for(
        &self,
        identity: &IdentityKey,
    ) -> Option<sotto_core::AccessKey> {
        if *identity == self.account {
            return Some(self.access_key.clone());
        }
        let pinned = *identity;
        self.with_store(move |s| access_key_of(s, &contact_id(&pinned), &pinned))
            .await
            .ok()
            .flatten()
    }
}
