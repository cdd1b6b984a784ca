//! Sending: offline-first once a session exists, refused before it is
//! stored when the relay could never carry it.

use std::sync::atomic::Ordering;

use sotto_relay::{ClientError, ErrorCode};
use tracing::Instrument;

use super::Client;
use super::outbox::max_ciphertext_len;
use super::shared::now_ms;
use super::types::{SendStatus, Sent};
use crate::error::{Error, Result};

impl Client {
    /// Encrypts `text` for `contact` (a name or an address) and sends it
    /// to each of the contact's devices and, as "sent" copies, to each of
    /// this account's other devices (docs/devices.md).
    ///
    /// The message and the advanced sessions are committed to the store
    /// (outbox, one entry per device) before the ciphertexts go to the
    /// relay; [`SendStatus::Accepted`] means the relay took at least one
    /// of the contact's copies. Without a
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
        if sotto_core::attachment::is_reference(text) {
            return Err(Error::ReservedBody);
        }
        let contact = self.resolve(contact).await?;
        let identity = contact
            .identity_key
            .ok_or_else(|| Error::UnknownContact(contact.name.clone()))?;
        let id = contact.id.clone();
        let conn = self.shared.live_connection();
        // With a connection, every device the message goes to gets a
        // session first (from its prekey bundle); without one, the devices
        // that have a session get it and the others are left out.
        if let Some(conn) = &conn {
            self.shared
                .sessions_for(conn, &id, &identity, &contact.name)
                .await?;
        }
        let body = text.to_vec();
        let max = self.max_ciphertext_len();
        let sent = {
            let id = id.clone();
            self.shared
                .with_store(move |s| s.send_within(&id, &body, now_ms(), max))
                .await
                .map_err(|e| match e {
                    Error::Store(sotto_store::Error::MessageTooLarge { len, max }) => {
                        Error::MessageTooLarge { len, max }
                    }
                    Error::Store(sotto_store::Error::NoSession) if conn.is_none() => {
                        Error::FirstMessageNeedsRelay(contact.name.clone())
                    }
                    other => other,
                })?
        };
        if !sent.without_session.is_empty() {
            tracing::info!(
                devices = sent.without_session.len(),
                "devices without a session got no copy"
            );
        }
        let seq = sent.seq;
        let Some(conn) = self.shared.live_connection() else {
            tracing::info!("stored; queued until the relay is reachable");
            return Ok(Sent {
                seq,
                status: SendStatus::Queued,
            });
        };
        // Through the outbox: older entries of this conversation still
        // waiting there go first, in order.
        let contact_copies: Vec<_> = sent
            .entries
            .iter()
            .filter(|e| !e.to.is_own())
            .map(|e| e.id)
            .collect();
        let status = match self.shared.flush_conversation(&conn, &id).await {
            Ok(flushed) if contact_copies.iter().any(|c| flushed.sent.contains(c)) => {
                SendStatus::Accepted
            }
            Ok(flushed) => {
                let failed: Vec<_> = flushed
                    .failed
                    .iter()
                    .filter(|(id, _)| contact_copies.contains(id))
                    .collect();
                match failed.first() {
                    Some((_, reason)) if failed.len() == contact_copies.len() => {
                        SendStatus::Failed(*reason)
                    }
                    _ => {
                        // Refused for now (e.g. `AccessDenied`: a first
                        // contact over the recipient's allowance): it stays
                        // in the outbox and the background tries again.
                        self.shared.hold_outbox(true);
                        SendStatus::Queued
                    }
                }
            }
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

impl super::shared::Shared {
    /// Sessions with every device of contact `id` (`identity`, named
    /// `name` to the user), made from their prekey bundles where missing;
    /// a contact the relay does not know, or a bundle stripped of what the
    /// contact's address says it speaks, is named in the error.
    pub(crate) async fn sessions_for(
        &self,
        conn: &sotto_relay::RelayClient,
        id: &str,
        identity: &sotto_core::IdentityKey,
        name: &str,
    ) -> Result<()> {
        self.ensure_sessions(conn, id, identity)
            .await
            .map_err(|e| match e {
                Error::Relay(ClientError::Server {
                    code: ErrorCode::NotFound,
                    ..
                }) => Error::ContactNotRegistered(name.to_owned()),
                Error::Store(sotto_store::Error::Protocol(sotto_core::Error::Downgrade {
                    ..
                })) => Error::Downgrade(name.to_owned()),
                other => other,
            })
    }
}
