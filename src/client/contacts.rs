//! Contacts, safety numbers, history and read marks.

use sotto_core::SafetyNumber;
use sotto_store::{Contact, Direction};

use super::Client;
use super::types::{ContactInfo, HistoryItem, UnreadableRow};
use crate::address::{ADDRESS_PREFIX, Address};
use crate::error::{Error, Result};
use crate::payload::ReceiptKind;

impl Client {
    /// Adds a contact under a display name. Someone who wrote first (kept
    /// nameless under their address) gets the name.
    ///
    /// An address in its full form that says its owner speaks protocol
    /// version 2 binds every new session with them to version 2: a relay
    /// that serves their keys without the post-quantum prekey is refused
    /// with [`Error::Downgrade`] (docs/protocol.md 16.7).
    pub async fn add_contact(&self, name: &str, address: &Address) -> Result<()> {
        let id = address.to_string();
        let name = name.trim().to_owned();
        if name.is_empty() || name.starts_with(ADDRESS_PREFIX) {
            return Err(Error::InvalidContactName);
        }
        let identity = *address.identity_key();
        let min_version = address.min_protocol_version();
        if identity == self.shared.account {
            return Err(Error::OwnAddress);
        }
        self.shared
            .with_store_result(move |s| {
                if s.contacts()?
                    .into_iter()
                    .flatten()
                    .any(|c| c.name == name && c.id != id)
                {
                    return Ok(Err(Error::ContactExists(name)));
                }
                match s.contact(&id)? {
                    // Someone who wrote first: give them the name now (the
                    // version first: a crash in between leaves them
                    // nameless, and adding them again finishes).
                    Some(c) if c.name.is_empty() => {
                        s.require_protocol_version(&id, min_version)?;
                        s.rename_contact(&id, &name)?;
                    }
                    Some(_) => return Ok(Err(Error::ContactExists(name))),
                    None => s.add_contact_speaking(&id, &name, Some(&identity), min_version)?,
                }
                Ok(Ok(()))
            })
            .await
    }

    /// Every contact. A contact row that cannot be read (the store file is
    /// damaged) is reported in place, never left out.
    pub async fn contacts(
        &self,
    ) -> Result<Vec<core::result::Result<ContactInfo, sotto_store::Error>>> {
        self.shared
            .with_store(|s| {
                Ok(s.contacts()?
                    .into_iter()
                    .map(|c| {
                        let c = c?;
                        let address =
                            c.id.parse::<Address>()
                                .map_err(|_| sotto_store::Error::Corrupt {
                                    table: "contacts",
                                    row: sotto_store::Row::Named("contact id"),
                                })?;
                        Ok(ContactInfo {
                            name: c.name,
                            address,
                            verified: c.verified,
                        })
                    })
                    .collect())
            })
            .await
    }

    /// Checks the whole profile store (see [`sotto_store::Store::check`]):
    /// SQLite's integrity check, every sealed row, every conversation's
    /// messages against its sequence numbers. Reads everything; for a
    /// `check` command or a periodic check, not for every start.
    pub async fn check(&self) -> Result<sotto_store::CheckReport> {
        self.shared.with_store(|s| s.check()).await
    }

    /// A page of history with `contact`, newest first: at most `limit`
    /// messages older than `before` (a seq), or the newest when `None`.
    /// A row that cannot be read is reported in place.
    pub async fn history(
        &self,
        contact: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<HistoryItem>> {
        let contact = self.resolve(contact).await?;
        let profile = self.shared.profile_dir.clone();
        self.shared
            .with_store(move |s| {
                let page = s.history(&contact.id, before, limit)?;
                Ok(page
                    .entries
                    .into_iter()
                    .map(|e| match e.message {
                        Ok(m) => {
                            let attachment = super::attachments::describe(&profile, &m.body);
                            HistoryItem {
                                seq: e.seq,
                                outgoing: m.direction == Direction::Outgoing,
                                timestamp: m.timestamp,
                                state: Some(m.state),
                                body: Ok(if attachment.is_some() {
                                    Vec::new()
                                } else {
                                    m.body.to_vec()
                                }),
                                event: m.event,
                                attachment,
                            }
                        }
                        Err(err) => HistoryItem {
                            seq: e.seq,
                            outgoing: false,
                            timestamp: 0,
                            state: None,
                            body: Err(match err {
                                sotto_store::Error::MissingRow { .. } => UnreadableRow::Missing,
                                _ => UnreadableRow::Damaged,
                            }),
                            event: None,
                            attachment: None,
                        },
                    })
                    .collect())
            })
            .await
    }

    /// The safety number with `contact`; compare it out of band, then
    /// call [`mark_verified`](Self::mark_verified).
    pub async fn safety_number(&self, contact: &str) -> Result<SafetyNumber> {
        let contact = self.resolve(contact).await?;
        let identity = contact
            .identity_key
            .ok_or_else(|| Error::UnknownContact(contact.name.clone()))?;
        Ok(sotto_core::safety_number(&self.shared.account, &identity))
    }

    /// Marks the incoming message `seq` of the conversation with `contact`
    /// as read. With [`ClientOptions::read_receipts`](crate::ClientOptions::read_receipts)
    /// the contact is told (a read receipt, if the relay is reachable now;
    /// read receipts are best effort). When the conversation's
    /// disappearing messages timer is on, the message's countdown starts
    /// now. Returns whether the state changed.
    pub async fn mark_read(&self, contact: &str, seq: u64) -> Result<bool> {
        let contact = self.resolve(contact).await?;
        let id = contact.id.clone();
        let now = self.shared.options.clock.now_ms();
        let envelope = self
            .shared
            .with_store(move |s| {
                let Some(message) = s.message(&id, seq)? else {
                    return Err(sotto_store::Error::UnknownMessage(seq));
                };
                // Read now: a disappearing message's countdown starts.
                if !s.mark_read(&id, seq, now)? {
                    return Ok(None);
                }
                Ok(Some(message.envelope_id))
            })
            .await?;
        let Some(envelope) = envelope else {
            return Ok(false);
        };
        if self.shared.options.read_receipts
            && let Some(identity) = contact.identity_key
            && let Ok(conn) = self.connection()
        {
            // Best effort: a lost read receipt only leaves the sender's
            // mark at Delivered.
            let _ = self
                .shared
                .send_receipt(
                    &conn,
                    (&identity, &identity),
                    ReceiptKind::Read,
                    &[envelope],
                )
                .await;
        }
        Ok(true)
    }

    /// Records that the safety number with `contact` was compared.
    pub async fn mark_verified(&self, contact: &str) -> Result<()> {
        let contact = self.resolve(contact).await?;
        self.shared
            .with_store(move |s| s.set_contact_verified(&contact.id, true))
            .await
    }

    /// True once the safety number with `contact` was marked verified.
    pub async fn is_verified(&self, contact: &str) -> Result<bool> {
        Ok(self.resolve(contact).await?.verified)
    }

    /// The contact named `contact`, or with that address.
    pub(crate) async fn resolve(&self, contact: &str) -> Result<Contact> {
        let wanted = contact.trim().to_owned();
        self.shared
            .with_store_result(move |s| {
                if let Ok(address) = wanted.parse::<Address>() {
                    return Ok(s
                        .contact(&address.to_string())?
                        .ok_or(Error::UnknownContact(wanted)));
                }
                let mut unreadable = None;
                let mut matches: Vec<Contact> = Vec::new();
                for c in s.contacts()? {
                    match c {
                        Ok(c) if c.name == wanted => matches.push(c),
                        Ok(_) => {}
                        Err(e) => {
                            unreadable.get_or_insert(e);
                        }
                    }
                }
                Ok(match matches.len() {
                    // The one wanted may be in a row that cannot be read:
                    // say so rather than "no such contact".
                    0 => Err(unreadable.map_or(Error::UnknownContact(wanted), Error::Store)),
                    1 => matches
                        .into_iter()
                        .next()
                        .ok_or(Error::UnknownContact(wanted)),
                    _ => Err(Error::AmbiguousContact(wanted)),
                })
            })
            .await
    }
}
