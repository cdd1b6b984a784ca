//! Sending: offline-first once a session exists, refused before it is
//! stored when the relay could never carry it.

use std::sync::atomic::Ordering;

use sotto_relay::{ClientError, ErrorCode, MailboxAddress};
use tracing::Instrument;

use super::Client;
use super::outbox::max_ciphertext_len;
use super::shared::now_ms;
use super::types::{SendStatus, Sent};
use crate::error::{Error, Result};

impl Client {
    /// Encrypts `text` for `contact` (a name or an address) and sends it.
    ///
    /// The message and the advanced session are committed to the store
    /// (outbox) before the ciphertext goes to the relay. Without a
    /// connection, once a session with the contact exists, the message
    /// waits in the outbox ([`SendStatus::Queued`]) and goes out when the
    /// relay is back. A first message needs the contact's keys from the
    /// relay: without a connection it is refused with
    /// [`Error::FirstMessageNeedsRelay`] and nothing is stored.
    ///
    /// A message whose envelope would be larger than the relay takes (the
    /// frame limit it announced, remembered from registration while
    /// offline) is refused with [`Error::MessageTooLarge`] before anything
    /// is stored.
    pub async fn send(&self, contact: &str, text: &[u8]) -> Result<Sent> {
        let span = tracing::info_span!("send", body_len = text.len());
        self.send_inner(contact, text).instrument(span).await
    }

    async fn send_inner(&self, contact: &str, text: &[u8]) -> Result<Sent> {
        let contact = self.resolve(contact).await?;
        let identity = contact
            .identity_key
            .ok_or_else(|| Error::UnknownContact(contact.name.clone()))?;
        let id = contact.id.clone();
        let has_session = {
            let id = id.clone();
            self.shared.with_store(move |s| s.has_session(&id)).await?
        };
        if !has_session {
            let conn = self
                .connection()
                .map_err(|_| Error::FirstMessageNeedsRelay(contact.name.clone()))?;
            let bundle = conn
                .fetch_bundle(&MailboxAddress::of(&identity))
                .await
                .map_err(|e| match e {
                    ClientError::Server {
                        code: ErrorCode::NotFound,
                        ..
                    } => Error::ContactNotRegistered(contact.name.clone()),
                    other => Error::Relay(other),
                })?;
            if bundle.identity_key != identity {
                return Err(Error::BundleMismatch);
            }
            let id = id.clone();
            self.shared
                .with_store(move |s| s.start_session(&id, &bundle))
                .await?;
            tracing::info!("session started from the contact's prekey bundle");
        }
        let body = text.to_vec();
        let max = self.max_ciphertext_len();
        let entry = self
            .shared
            .with_store(move |s| s.send_within(&id, &body, now_ms(), max))
            .await
            .map_err(|e| match e {
                Error::Store(sotto_store::Error::MessageTooLarge { len, max }) => {
                    Error::MessageTooLarge { len, max }
                }
                other => other,
            })?;
        let seq = entry.seq;
        let Some(conn) = self.shared.live_connection() else {
            tracing::info!("stored; queued until the relay is reachable");
            return Ok(Sent {
                seq,
                status: SendStatus::Queued,
            });
        };
        // Through the outbox: older entries of this conversation still
        // waiting there go first, in order.
        let status = match self
            .shared
            .flush_conversation(&conn, &entry.recipient, &identity)
            .await
        {
            Ok(flushed) if flushed.sent.contains(&entry.id) => SendStatus::Accepted,
            Ok(flushed) => match flushed.failed.iter().find(|(id, _)| *id == entry.id) {
                Some((_, reason)) => SendStatus::Failed(*reason),
                None => {
                    // Refused for now (e.g. `AccessDenied`: a first contact
                    // over the recipient's allowance): it stays in the
                    // outbox and the background tries again.
                    self.shared.hold_outbox(true);
                    SendStatus::Queued
                }
            },
            // The connection dropped: it goes out after reconnecting.
            Err(_) => SendStatus::Queued,
        };
        tracing::info!(?status, "sent");
        Ok(Sent { seq, status })
    }

    /// The longest ciphertext the relay takes, from the frame limit it
    /// announced (this connection's, or the one remembered at
    /// registration), or the protocol's default limit when neither is
    /// known.
    fn max_ciphertext_len(&self) -> usize {
        let announced = self.shared.max_frame.load(Ordering::Relaxed);
        let frame = u32::try_from(announced)
            .ok()
            .filter(|f| *f > 0)
            .unwrap_or(sotto_relay::protocol::DEFAULT_MAX_FRAME_SIZE);
        max_ciphertext_len(frame)
    }
}
