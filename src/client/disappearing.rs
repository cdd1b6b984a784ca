//! Disappearing messages (docs/client.md, "Disappearing messages").
//!
//! A conversation's timer is set by either side: the change is kept in the
//! store (an event in the history) and told, as a control through the
//! pairwise sessions, to every device of the contact and to this
//! account's other devices. Of two changes the later one (by the setter's
//! clock, ties broken by key) wins everywhere. Countdowns start in the
//! store, in the transaction that marks a message read or sent; a task
//! deletes the messages whose time ran out, once a second by
//! [`ClientOptions::clock`](crate::ClientOptions::clock).

use std::sync::{Arc, Weak};
use std::time::Duration;

use sotto_store::DisappearingTimer;

use super::Client;
use super::groups::control;
use super::shared::{Shared, now_ms};
use super::types::ClientEvent;
use crate::address::Address;
use crate::error::{Error, Result};

/// How often the background task looks for messages whose time ran out.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How far ahead of this device's clock a change may be dated: a later
/// date counts as this far ahead. A change made here is dated after the
/// timer held, so it wins here whatever the date of that one; the bound
/// keeps a contact from dating a change at the end of time, where a
/// change dated after it cannot be, and is wide enough for any clock
/// that is merely wrong.
const MAX_AHEAD_MS: u64 = 24 * 3600 * 1000;

fn as_duration(timer: &DisappearingTimer) -> Option<Duration> {
    timer
        .is_on()
        .then(|| Duration::from_secs(u64::from(timer.seconds)))
}

impl Client {
    /// Sets the disappearing messages timer of the conversation with
    /// `contact` (a name or an address): from now on a message read
    /// (incoming) or sent (outgoing) in it is deleted from this device's
    /// store `timer` later, and from the contact's likewise; `None` turns
    /// it off for the messages read or sent from now on. A timer is whole
    /// seconds, at least one (shorter ones round up), at most `u32::MAX`
    /// seconds.
    ///
    /// The change is an event in both histories, and goes to every device
    /// of the contact and to this account's other devices through the
    /// outbox, like a message: without a connection it waits there, once a
    /// session with the contact exists (else
    /// [`Error::FirstMessageNeedsRelay`]).
    pub async fn set_disappearing_timer(
        &self,
        contact: &str,
        timer: Option<Duration>,
    ) -> Result<()> {
        let contact = self.resolve(contact).await?;
        let identity = contact
            .identity_key
            .ok_or_else(|| Error::UnknownContact(contact.name.clone()))?;
        let id = contact.id.clone();
        let seconds = match timer {
            None => 0,
            Some(d) => {
                let whole = d.as_secs() + u64::from(d.subsec_nanos() > 0);
                u32::try_from(whole.max(1)).unwrap_or(u32::MAX)
            }
        };
        // Dated after the timer held, so that it wins here and on the
        // contact's side even when the contact's clock runs ahead.
        let held = {
            let id = id.clone();
            self.shared
                .with_store(move |s| s.disappearing_timer(&id))
                .await?
        };
        let now = self.shared.options.clock.now_ms();
        let set_at = held.map_or(now, |h| now.max(h.set_at.saturating_add(1)));
        let body = control::timer(seconds, set_at);
        let conn = self.shared.live_connection();
        if let Some(conn) = &conn {
            self.shared
                .sessions_for(conn, &id, &identity, &contact.name)
                .await?;
        }
        // Queued first: once it is in the outbox it reaches the contact.
        {
            let id = id.clone();
            self.shared
                .with_store(move |s| s.send_control(&id, &body, now_ms(), usize::MAX))
                .await
                .map_err(|e| match e {
                    Error::Store(sotto_store::Error::NoSession) if conn.is_none() => {
                        Error::FirstMessageNeedsRelay(contact.name.clone())
                    }
                    other => other,
                })?;
        }
        let timer = DisappearingTimer {
            seconds,
            set_at,
            set_by: self.shared.account,
        };
        let changed = {
            let id = id.clone();
            self.shared
                .with_store(move |s| s.set_disappearing_timer(&id, &timer, now))
                .await?
        };
        if changed {
            self.shared.emit(ClientEvent::DisappearingTimerChanged {
                contact: Address::of(&identity),
                timer: as_duration(&timer),
                by_us: true,
            });
        }
        if let Some(conn) = conn
            && let Err(e) = self.shared.flush_conversation(&conn, &id).await
        {
            // It waits in the outbox; the background sends it.
            tracing::info!(error = %e, "timer change queued");
        }
        Ok(())
    }

    /// The disappearing messages timer of the conversation with `contact`:
    /// `None` when off or never set.
    pub async fn disappearing_timer(&self, contact: &str) -> Result<Option<Duration>> {
        let contact = self.resolve(contact).await?;
        let held = self
            .shared
            .with_store(move |s| s.disappearing_timer(&contact.id))
            .await?;
        Ok(held.as_ref().and_then(as_duration))
    }

    /// Deletes now the messages whose disappearing messages timer ran out
    /// by [`ClientOptions::clock`](crate::ClientOptions::clock) (a
    /// background task also does, every second), each conversation's as a
    /// [`ClientEvent::MessagesExpired`]. Returns how many were deleted.
    pub async fn expire_messages(&self) -> Result<usize> {
        self.shared.expire_due().await
    }
}

impl Shared {
    /// Takes a timer change a contact (or another of our devices, for
    /// `set_by` = this account) made in the conversation with `contact`.
    pub(crate) async fn take_timer(
        &self,
        contact: &Address,
        mut timer: DisappearingTimer,
    ) -> Result<()> {
        let now = self.options.clock.now_ms();
        timer.set_at = timer.set_at.min(now.saturating_add(MAX_AHEAD_MS));
        let id = contact.to_string();
        let changed = self
            .with_store(move |s| {
                // A contact removed since: nothing to set it on.
                if s.contact(&id)?.is_none() {
                    return Ok(false);
                }
                s.set_disappearing_timer(&id, &timer, now)
            })
            .await?;
        if changed {
            self.emit(ClientEvent::DisappearingTimerChanged {
                contact: *contact,
                timer: as_duration(&timer),
                by_us: timer.set_by == self.account,
            });
        }
        Ok(())
    }

    /// Deletes the messages whose time ran out and announces them.
    pub(crate) async fn expire_due(&self) -> Result<usize> {
        let now = self.options.clock.now_ms();
        let expired = self
            .with_store(move |s| match s.next_expiry()? {
                Some(due) if due <= now => s.expire_messages(now),
                _ => Ok(Vec::new()),
            })
            .await?;
        let count = expired.len();
        let mut by_contact: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        for e in expired {
            // A file's key went with its message; its encrypted file goes.
            if let Some(digest) = &e.attachment {
                super::attachments::remove_file_of(&self.profile_dir, digest);
            }
            by_contact.entry(e.contact).or_default().push(e.seq);
        }
        for (contact, seqs) in by_contact {
            if let Ok(contact) = contact.parse::<Address>() {
                self.emit(ClientEvent::MessagesExpired { contact, seqs });
            }
        }
        Ok(count)
    }
}

/// The background task that deletes messages whose time ran out; it ends
/// when the client is gone.
pub(crate) async fn sweep(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(shared): Option<Arc<Shared>> = shared.upgrade() else {
            return;
        };
        if let Err(e) = shared.expire_due().await {
            tracing::warn!(error = %e, "disappearing messages not deleted; tried again");
        }
    }
}
