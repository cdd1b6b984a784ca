//! Receiving over the relay: the mailbox is read, each envelope goes
//! through the receive pipeline ([`super::receive`]) and is settled —
//! acknowledged, announced, answered — on its own.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sotto_relay::{Envelope, RelayClient};
use tracing::Instrument;

use super::receive::{self, Outcome};
use super::shared::{Shared, lock, now_ms};
use super::types::{ClientEvent, DropReason, IncomingMessage, Step, Undecryptable};
use crate::error::{Error, Result};
use crate::payload::ReceiptKind;

/// How an envelope ended, once acknowledged.
pub(crate) enum Settled {
    Stored(Box<IncomingMessage>),
    Nothing,
    Dropped(DropReason),
    Undecryptable(Undecryptable),
}

impl Shared {
    /// Acknowledges a history chunk without waiting for the relay's
    /// answer, so the next chunk is applied meanwhile. A lost ack costs
    /// nothing: the relay delivers the chunk again, and a chunk applied
    /// before changes nothing and is acknowledged again. (The relay
    /// answers a connection's requests in order: once the final chunk's
    /// ack is answered, these were too.)
    async fn ack_in_background(&self, conn: &RelayClient, relay_id: u64) -> Result<()> {
        match self.live_connection() {
            Some(live) if std::ptr::eq(Arc::as_ptr(&live), conn) => {
                tokio::spawn(async move {
                    if let Err(e) = live.ack(&[relay_id]).await {
                        tracing::info!(error = %e, "history chunk not acknowledged; it comes again");
                    }
                });
                Ok(())
            }
            _ => Ok(conn.ack(&[relay_id]).await.map(drop)?),
        }
    }

    /// Removes the nameless contact that fetching a stranger's device list
    /// made, when its device turned out not to be vouched for and nothing
    /// else is stored under it.
    async fn forget_empty_stranger(&self, account: &sotto_core::IdentityKey) -> Result<()> {
        let id = super::shared::contact_id(account);
        self.with_store(move |s| {
            if let Some(c) = s.contact(&id)?
                && c.name.is_empty()
                && s.message_count(&id)? == 0
            {
                s.delete_contact(&id)?;
            }
            Ok(())
        })
        .await
    }

    /// Runs the receive pipeline on one envelope's bytes, on the blocking
    /// pool.
    pub(crate) async fn run_pipeline(&self, sealed: Vec<u8>) -> Result<Outcome> {
        let identity = self.identity.clone();
        let store = self.store.clone();
        let groups = self.group_members.clone();
        // The clock of disappearing messages: a copy of a message sent from
        // another of our devices starts its countdown when it is stored.
        let now = self.options.clock.now_ms();
        super::shared::blocking(move || {
            receive::receive(&mut lock(&store), &identity, &groups, &sealed, now)
        })
        .await
    }

    /// Reads the whole mailbox. Every envelope is settled on its own: one
    /// that fails costs only itself, never the ones behind it. An envelope
    /// that could not be stored because of a local failure (disk, lock)
    /// stays on the relay for the next catch-up, and the first such failure
    /// is returned after the rest of the mailbox was processed.
    pub(crate) async fn drain_mailbox(&self, conn: &RelayClient) -> Result<usize> {
        let envelopes = conn.fetch_pending().await?;
        let mut stored = 0;
        let mut left = 0;
        let mut first_error = None;
        for envelope in envelopes {
            match self.process(conn, envelope).await {
                Ok(true) => stored += 1,
                Ok(false) => {}
                // Without a connection nothing more can be acknowledged:
                // the rest stays queued and comes again, in order.
                Err(e) if conn.is_closed() => return Err(e),
                Err(e) => {
                    left += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        self.flush_receipts(conn).await;
        match first_error {
            None => Ok(stored),
            Some(error) => Err(Error::ReceiveIncomplete {
                stored,
                left,
                error: Box::new(error),
            }),
        }
    }

    /// Stores one envelope (or recognises it as a duplicate), then
    /// acknowledges it. Returns true when a new message was stored.
    pub(crate) async fn process(&self, conn: &RelayClient, envelope: Envelope) -> Result<bool> {
        let _guard = self.processing.lock().await;
        let settled = self.receive_one(conn, envelope).await?;
        Ok(matches!(settled, Settled::Stored(_)))
    }

    /// The pipeline and the settling of one envelope (the caller holds the
    /// processing lock).
    pub(crate) async fn receive_one(
        &self,
        conn: &RelayClient,
        envelope: Envelope,
    ) -> Result<Settled> {
        let span = tracing::info_span!("receive", envelope_len = envelope.payload.len());
        async {
            let relay_id = envelope.id;
            let mut outcome = self.run_pipeline(envelope.payload.clone()).await;
            // A device no held list vouches for: fetch the sending
            // account's newest list once, then try again.
            if let Ok(Outcome::UnknownDevice { account }) = &outcome {
                let account = *account;
                match self.refresh_devices(conn, &account).await {
                    Ok(true) => outcome = self.run_pipeline(envelope.payload.clone()).await,
                    Ok(false) => {}
                    Err(e) if conn.is_closed() => return Err(e),
                    Err(e) => tracing::info!(error = %e, "device list not fetched"),
                }
                if let Ok(Outcome::UnknownDevice { account }) = &outcome {
                    self.forget_empty_stranger(account).await?;
                    outcome = Ok(Outcome::Dropped(DropReason::UnknownDevice));
                }
            }
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(e) => {
                    // A local failure: left on the relay, it comes again.
                    tracing::warn!(error = %e, "envelope not stored");
                    return Err(e);
                }
            };
            tracing::info!(outcome = outcome.label(), "envelope processed");
            let envelope_copy =
                matches!(outcome, Outcome::GroupKeyPending { .. }).then_some(envelope);
            self.settle(conn, relay_id, outcome, envelope_copy).await
        }
        .instrument(span)
        .await
    }

    /// Acknowledges and reports what the pipeline made of an envelope.
    async fn settle(
        &self,
        conn: &RelayClient,
        relay_id: u64,
        outcome: Outcome,
        envelope_copy: Option<Envelope>,
    ) -> Result<Settled> {
        match outcome {
            Outcome::Stored {
                message,
                sent_copy,
                receipt,
            } => {
                #[cfg(feature = "test-hooks")]
                if self.options.fault == Some(super::types::Fault::CrashBeforeAck) {
                    return Err(Error::TaskFailed);
                }
                // Announced before the ack: if the ack fails, the relay
                // delivers it again as a duplicate, which is not announced.
                self.emit(if sent_copy {
                    ClientEvent::SentFromOtherDevice((*message).clone())
                } else {
                    ClientEvent::Message((*message).clone())
                });
                conn.ack(&[relay_id]).await?;
                self.owe_receipt(receipt);
                // A file to fetch: the files task takes it (the store
                // remembers it until then).
                if message.attachment.is_some() {
                    self.files.notify_one();
                }
                Ok(Settled::Stored(message))
            }
            Outcome::Duplicate { receipt } => {
                conn.ack(&[relay_id]).await?;
                if let Some(receipt) = receipt {
                    self.owe_receipt(receipt);
                }
                Ok(Settled::Nothing)
            }
            Outcome::Receipt {
                contact,
                kind,
                seqs,
            } => {
                if !seqs.is_empty() {
                    self.emit(match kind {
                        ReceiptKind::Delivered => ClientEvent::Delivered { contact, seqs },
                        ReceiptKind::Read => ClientEvent::Read { contact, seqs },
                    });
                }
                conn.ack(&[relay_id]).await?;
                Ok(Settled::Nothing)
            }
            Outcome::Dropped(reason) => {
                conn.ack(&[relay_id]).await?;
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.emit(ClientEvent::Dropped { reason });
                Ok(Settled::Dropped(reason))
            }
            Outcome::Undecryptable {
                from,
                reason,
                notify,
            } => {
                conn.ack(&[relay_id]).await?;
                let resend_requested = match notify {
                    Some(failed) => {
                        self.request_resend(conn, from.identity_key(), &failed)
                            .await
                    }
                    None => false,
                };
                self.emit(ClientEvent::Undecryptable {
                    from,
                    reason: reason.clone(),
                    resend_requested,
                });
                Ok(Settled::Undecryptable(reason))
            }
            Outcome::IdentityChangeClaimed {
                previous,
                name,
                claimant,
            } => {
                let change = self.identity_change(previous, name, claimant);
                self.emit(ClientEvent::IdentityChanged(Box::new(change)));
                conn.ack(&[relay_id]).await?;
                Ok(Settled::Nothing)
            }
            Outcome::DevicesChanged(changed) => {
                self.announce_change(changed);
                conn.ack(&[relay_id]).await?;
                Ok(Settled::Nothing)
            }
            Outcome::Link { from, kind, body } => {
                // A link message that cannot be handled now (nothing waits
                // for it, or it does not verify) is consumed: linking starts
                // over, and it must not hold back the mailbox.
                if let Err(e) = self.on_link_message(conn, &from, kind, &body).await {
                    if conn.is_closed() {
                        return Err(e);
                    }
                    self.report(Step::Devices, e);
                }
                conn.ack(&[relay_id]).await?;
                Ok(Settled::Nothing)
            }
            Outcome::History {
                from,
                kind,
                body,
                chunk,
            } => {
                // The ack of a chunk that leaves the transfer unfinished
                // need not be waited for.
                let mut wait = true;
                let handled = match chunk {
                    Some(frame) => self
                        .on_history_chunk(conn, &from, &body, &frame)
                        .await
                        .map(|complete| wait = complete),
                    None if kind == crate::payload::KIND_HISTORY_STATUS => {
                        self.on_history_status(conn, &from, &body).await
                    }
                    None => Err(Error::Dropped(DropReason::Malformed)),
                };
                match handled {
                    Ok(()) => {}
                    Err(e) if conn.is_closed() => return Err(e),
                    // A local failure (a full disk, say): the chunk stays
                    // on the relay and comes again.
                    Err(Error::Store(e)) if !matches!(e, sotto_store::Error::Archive(_)) => {
                        tracing::warn!(error = %e, "history chunk not applied");
                        return Err(Error::Store(e));
                    }
                    Err(e) => self.report(Step::Devices, e),
                }
                if wait {
                    conn.ack(&[relay_id]).await?;
                } else {
                    self.ack_in_background(conn, relay_id).await?;
                }
                Ok(Settled::Nothing)
            }
            Outcome::Control { contact, receipt } => {
                conn.ack(&[relay_id]).await?;
                self.owe_receipt(receipt);
                match self.process_controls(&contact).await {
                    Ok(true) => self.retry_deferred_group_messages().await,
                    Ok(false) => {}
                    Err(e) => self.report(Step::Groups, e),
                }
                Ok(Settled::Nothing)
            }
            Outcome::GroupMessage(message) => {
                #[cfg(feature = "test-hooks")]
                if self.options.fault == Some(super::types::Fault::CrashBeforeAck) {
                    return Err(Error::TaskFailed);
                }
                self.emit(ClientEvent::GroupMessage((*message).clone()));
                conn.ack(&[relay_id]).await?;
                Ok(Settled::Nothing)
            }
            Outcome::GroupKeyPending { group } => {
                // Kept in the store (bounded per group), then acknowledged:
                // it is read when its sender key comes.
                if let Some(envelope) = envelope_copy {
                    self.with_store(move |s| {
                        s.defer_group_envelope(&group, &envelope.payload, now_ms())
                    })
                    .await?;
                }
                conn.ack(&[relay_id]).await?;
                Ok(Settled::Nothing)
            }
            Outcome::UnknownDevice { .. } => {
                conn.ack(&[relay_id]).await?;
                Ok(Settled::Dropped(DropReason::UnknownDevice))
            }
            Outcome::Notice { contact, failed } => {
                // Answer first: if the connection drops meanwhile, the
                // notice stays queued and is answered after reconnecting.
                // Any other failure (a contact whose keys cannot start a
                // session, a relay that refuses) is reported and the
                // notice is consumed: it must not hold back the mailbox.
                if let Err(e) = self.answer_notice(conn, contact, failed).await {
                    if conn.is_closed() {
                        return Err(e);
                    }
                    self.report(Step::Recovery, e);
                }
                conn.ack(&[relay_id]).await?;
                Ok(Settled::Nothing)
            }
        }
    }
}
