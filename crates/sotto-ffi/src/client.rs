//! `Client`: one profile and its relay connection, as a foreign object.
//!
//! A thin layer over [`sotto::Client`]: each call takes the foreign
//! arguments (strings, bytes, integers), runs the facade's call on the
//! library's runtime ([`crate::runtime`]) and gives back records, enums
//! and [`SottoError`]. Every guarantee of the facade (a message committed
//! before it leaves, before the relay is acknowledged) is the facade's.
//!
//! Lifetime: the object holds the facade's client until [`Client::close`]
//! or until the foreign object is freed (garbage-collected in Python and
//! Kotlin, released in Swift), whichever comes first; closing stops the
//! connection, the listener and the background work, and every later
//! call raises `SottoError::Closed`.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::error::{Result, SottoError, to_u64};
use crate::event::{Event, EventListener};
use crate::runtime::{here, run, runtime};
use crate::types::{
    ClientOptions, Contact, DeviceList, GroupInfo, HistoryItem, IdentityChange, Sent,
};

/// An end-to-end encrypted messaging client: one profile (an encrypted
/// store on this device), one relay.
#[derive(uniffi::Object)]
pub struct Client {
    /// `None` once closed.
    inner: Mutex<Option<sotto::Client>>,
    /// The events `next_event` hands out, subscribed when the client was
    /// opened so that nothing from the first connection on is missed.
    events: Arc<tokio::sync::Mutex<sotto::Events>>,
    /// The listener's thread, stopped by dropping this sender.
    listener: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// A lock whose holder cannot leave its data half-changed (every critical
/// section here is a single assignment or clone), so a poisoned lock is
/// still good.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Client {
    fn wrap(client: sotto::Client) -> Arc<Self> {
        let events = client.events();
        Arc::new(Self {
            inner: Mutex::new(Some(client)),
            events: Arc::new(tokio::sync::Mutex::new(events)),
            listener: Mutex::new(None),
        })
    }

    /// The facade's client (a cheap clone), or `Closed`.
    fn client(&self) -> Result<sotto::Client> {
        lock(&self.inner).clone().ok_or(SottoError::Closed)
    }

    /// Stops the listener's thread, if one runs.
    fn stop_listener(&self) {
        // Dropping the sender ends the thread's wait.
        lock(&self.listener).take();
    }
}

/// A passphrase as bytes that are wiped when dropped.
fn passphrase_bytes(passphrase: String) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(passphrase.into_bytes())
}

/// A page size as the facade takes it.
fn page(limit: u32) -> usize {
    usize::try_from(limit).unwrap_or(usize::MAX)
}

fn parse_address(address: &str) -> Result<sotto::Address> {
    Ok(address.trim().parse::<sotto::Address>()?)
}

#[uniffi::export]
impl Client {
    /// Creates a new profile in `profile_dir` (created if missing, owner
    /// only): a new identity and a store locked by `passphrase`. The
    /// passphrase is the one secret that crosses the boundary as a string;
    /// its bytes are wiped once the store is unlocked.
    #[uniffi::constructor(default(options))]
    pub async fn create(
        profile_dir: String,
        passphrase: String,
        options: ClientOptions,
    ) -> Result<Arc<Self>> {
        let pass = passphrase_bytes(passphrase);
        let options = options.to_sotto()?;
        run(async move {
            let client = sotto::Client::create(&profile_dir, &pass, options).await?;
            Ok(Self::wrap(client))
        })
        .await
    }

    /// Opens an existing profile (`SottoError::WrongPassphrase` on a wrong
    /// passphrase, `SottoError::NoProfile` when there is none).
    #[uniffi::constructor(default(options))]
    pub async fn open(
        profile_dir: String,
        passphrase: String,
        options: ClientOptions,
    ) -> Result<Arc<Self>> {
        let pass = passphrase_bytes(passphrase);
        let options = options.to_sotto()?;
        run(async move {
            let client = sotto::Client::open(&profile_dir, &pass, options).await?;
            Ok(Self::wrap(client))
        })
        .await
    }

    /// This profile's address in its shareable form: give it to contacts.
    pub fn address(&self) -> Result<String> {
        Ok(self.client()?.address().shareable().to_string())
    }

    /// This device's id in its account's device list.
    pub fn device_id(&self) -> Result<u32> {
        Ok(self.client()?.device_id().get())
    }

    /// The profile folder.
    pub fn profile_dir(&self) -> Result<String> {
        Ok(self.client()?.profile_dir().display().to_string())
    }

    /// The relay remembered by `register`, if any.
    pub fn saved_relay(&self) -> Result<Option<String>> {
        Ok(self.client()?.saved_relay())
    }

    /// True while a relay connection is up (false once closed).
    pub fn is_connected(&self) -> bool {
        self.client().is_ok_and(|c| c.is_connected())
    }

    /// True once `close` was called.
    pub fn is_closed(&self) -> bool {
        lock(&self.inner).is_none()
    }

    /// Envelopes dropped as unauthenticated or unreadable since the
    /// client was opened.
    pub fn dropped_envelopes(&self) -> Result<u64> {
        Ok(self.client()?.dropped_envelopes())
    }

    /// Connects to the relay at `relay` (`host:port`, `tcp://host:port`
    /// or `tls://host:port`), publishes this profile's prekeys and
    /// remembers the relay; then stays connected as `connect` does.
    pub async fn register(&self, relay: String) -> Result<()> {
        let client = self.client()?;
        run(async move { Ok(client.register(&relay).await?) }).await
    }

    /// Connects to `relay` and keeps the connection in the background
    /// (sends the outbox, receives the mailbox, reconnects with backoff).
    /// Returns once the first connection is up and what waited in the
    /// mailbox is stored, or with the first attempt's error.
    pub async fn connect(&self, relay: String) -> Result<()> {
        let client = self.client()?;
        run(async move { Ok(client.connect(&relay).await?) }).await
    }

    /// Connects to the relay remembered by `register`.
    pub async fn connect_saved(&self) -> Result<()> {
        let client = self.client()?;
        run(async move { Ok(client.connect_saved().await?) }).await
    }

    /// Keeps a connection to `relay` in the background without waiting
    /// for it (offline-first apps): `Event::Connected` says when it is up.
    pub async fn keep_connected(&self, relay: String) -> Result<()> {
        let client = self.client()?;
        run(async move { Ok(client.keep_connected(&relay).await?) }).await
    }

    /// Closes the relay connection and stops reconnecting.
    pub async fn disconnect(&self) -> Result<()> {
        let client = self.client()?;
        run(async move {
            client.disconnect().await;
            Ok(())
        })
        .await
    }

    /// Fetches and stores what waits in the mailbox now; returns how many
    /// new messages were stored.
    pub async fn sync(&self) -> Result<u64> {
        let client = self.client()?;
        run(async move { Ok(to_u64(client.sync().await?)) }).await
    }

    /// Hands the outbox to the relay now; returns how many went out.
    pub async fn flush_outbox(&self) -> Result<u64> {
        let client = self.client()?;
        run(async move { Ok(to_u64(client.flush_outbox().await?)) }).await
    }

    /// Adds a contact under a display name.
    pub async fn add_contact(&self, name: String, address: String) -> Result<()> {
        let client = self.client()?;
        let address = parse_address(&address)?;
        run(async move { Ok(client.add_contact(&name, &address).await?) }).await
    }

    /// Every contact. A contact row that cannot be read (a damaged store)
    /// fails the call with `SottoError::Store` rather than being left out.
    pub async fn contacts(&self) -> Result<Vec<Contact>> {
        let client = self.client()?;
        run(async move {
            client
                .contacts()
                .await?
                .into_iter()
                .map(|row| {
                    let c = row.map_err(sotto::Error::Store)?;
                    Ok(Contact {
                        name: c.name,
                        address: c.address.to_string(),
                        verified: c.verified,
                    })
                })
                .collect()
        })
        .await
    }

    /// Encrypts `body` for `contact` (a name or an address) and sends it;
    /// the message is committed before it leaves. Without a connection, a
    /// message to a contact with a session waits in the outbox (`Queued`).
    pub async fn send(&self, contact: String, body: Vec<u8>) -> Result<Sent> {
        let client = self.client()?;
        run(async move { Ok(client.send(&contact, &body).await?.into()) }).await
    }

    /// A page of history with `contact`, newest first: at most `limit`
    /// messages older than `before` (a seq), or the newest when `None`.
    #[uniffi::method(default(before = None, limit = 50))]
    pub async fn history(
        &self,
        contact: String,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<HistoryItem>> {
        let client = self.client()?;
        run(async move {
            Ok(client
                .history(&contact, before, page(limit))
                .await?
                .into_iter()
                .map(Into::into)
                .collect())
        })
        .await
    }

    /// Marks the incoming message `seq` from `contact` read (and tells the
    /// contact with `read_receipts`). Returns whether it changed.
    pub async fn mark_read(&self, contact: String, seq: u64) -> Result<bool> {
        let client = self.client()?;
        run(async move { Ok(client.mark_read(&contact, seq).await?) }).await
    }

    /// The safety number with `contact` (60 digits in groups of five):
    /// compare it out of band, then call `mark_verified`.
    pub async fn safety_number(&self, contact: String) -> Result<String> {
        let client = self.client()?;
        run(async move { Ok(client.safety_number(&contact).await?.to_string()) }).await
    }

    /// Records that the safety number with `contact` was compared.
    pub async fn mark_verified(&self, contact: String) -> Result<()> {
        let client = self.client()?;
        run(async move { Ok(client.mark_verified(&contact).await?) }).await
    }

    /// True once the safety number with `contact` was marked verified.
    pub async fn is_verified(&self, contact: String) -> Result<bool> {
        let client = self.client()?;
        run(async move { Ok(client.is_verified(&contact).await?) }).await
    }

    /// Tells `contact` that this profile is your new identity, replacing
    /// the address `previous`.
    pub async fn announce_identity_change(&self, contact: String, previous: String) -> Result<()> {
        let client = self.client()?;
        let previous = parse_address(&previous)?;
        run(async move { Ok(client.announce_identity_change(&contact, &previous).await?) }).await
    }

    /// Identity changes waiting for the user's decision.
    pub async fn identity_changes(&self) -> Result<Vec<IdentityChange>> {
        let client = self.client()?;
        run(async move {
            Ok(client
                .identity_changes()
                .await?
                .into_iter()
                .map(Into::into)
                .collect())
        })
        .await
    }

    /// Accepts the identity change to `new_address` (after comparing the
    /// new safety number): the contact's name moves to it, not verified.
    pub async fn accept_identity_change(&self, new_address: String) -> Result<()> {
        let client = self.client()?;
        let new_address = parse_address(&new_address)?;
        run(async move { Ok(client.accept_identity_change(&new_address).await?) }).await
    }

    /// Refuses the identity change to `new_address`.
    pub async fn refuse_identity_change(&self, new_address: String) -> Result<()> {
        let client = self.client()?;
        let new_address = parse_address(&new_address)?;
        run(async move { Ok(client.refuse_identity_change(&new_address).await?) }).await
    }

    /// This account's device list.
    pub async fn devices(&self) -> Result<DeviceList> {
        let client = self.client()?;
        run(async move { Ok(DeviceList::from(&client.devices().await?)) }).await
    }

    /// `contact`'s device list as last verified here (`None`: one device
    /// as far as this profile knows).
    pub async fn contact_devices(&self, contact: String) -> Result<Option<DeviceList>> {
        let client = self.client()?;
        run(async move {
            Ok(client
                .contact_devices(&contact)
                .await?
                .as_ref()
                .map(DeviceList::from))
        })
        .await
    }

    /// Creates a group with `members` (contacts, by name or address);
    /// returns its id (hex). On the account's primary device, connected.
    pub async fn create_group(&self, name: String, members: Vec<String>) -> Result<String> {
        let client = self.client()?;
        run(async move {
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            let id = client.create_group(&name, &members).await?;
            Ok(sotto::group_id_hex(&id))
        })
        .await
    }

    /// Adds contacts to `group` (its name or id).
    pub async fn add_to_group(&self, group: String, members: Vec<String>) -> Result<()> {
        let client = self.client()?;
        run(async move {
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            Ok(client.add_to_group(&group, &members).await?)
        })
        .await
    }

    /// Removes members from `group`.
    pub async fn remove_from_group(&self, group: String, members: Vec<String>) -> Result<()> {
        let client = self.client()?;
        run(async move {
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            Ok(client.remove_from_group(&group, &members).await?)
        })
        .await
    }

    /// Leaves `group`.
    pub async fn leave_group(&self, group: String) -> Result<()> {
        let client = self.client()?;
        run(async move { Ok(client.leave_group(&group).await?) }).await
    }

    /// Renames `group`.
    pub async fn rename_group(&self, group: String, name: String) -> Result<()> {
        let client = self.client()?;
        run(async move { Ok(client.rename_group(&group, &name).await?) }).await
    }

    /// The groups this profile knows.
    pub async fn groups(&self) -> Result<Vec<GroupInfo>> {
        let client = self.client()?;
        run(async move { Ok(client.groups().await?.into_iter().map(Into::into).collect()) }).await
    }

    /// One group, by name or id.
    pub async fn group(&self, group: String) -> Result<GroupInfo> {
        let client = self.client()?;
        run(async move { Ok(client.group(&group).await?.into()) }).await
    }

    /// Sends `body` to every member of `group`.
    pub async fn send_to_group(&self, group: String, body: Vec<u8>) -> Result<Sent> {
        let client = self.client()?;
        run(async move { Ok(client.send_to_group(&group, &body).await?.into()) }).await
    }

    /// A page of `group`'s history, newest first (each item names its
    /// author).
    #[uniffi::method(default(before = None, limit = 50))]
    pub async fn group_history(
        &self,
        group: String,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<HistoryItem>> {
        let client = self.client()?;
        run(async move {
            Ok(client
                .group_history(&group, before, page(limit))
                .await?
                .into_iter()
                .map(Into::into)
                .collect())
        })
        .await
    }

    /// The next event, waiting at most `timeout_ms` milliseconds (forever
    /// when `None`); `None` when none came in time. Events are kept from
    /// the moment the client was opened; one that fell more than
    /// `ClientOptions::event_capacity` behind is skipped (its message is in
    /// the history regardless). Raises `Closed` once the client is closed.
    #[uniffi::method(default(timeout_ms = None))]
    pub async fn next_event(&self, timeout_ms: Option<u64>) -> Result<Option<Event>> {
        // Not kept across the wait: closing must not wait for it.
        drop(self.client()?);
        // A lock and a broadcast receive: dropped, not finished, when the
        // caller stops waiting (finished, it would take an event nobody
        // gets).
        here(async {
            let mut events = self.events.lock().await;
            let next = events.next();
            let event = match timeout_ms {
                Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), next).await {
                    Ok(event) => event,
                    Err(_) => return Ok(None),
                },
                None => next.await,
            };
            event.map(|e| Some(e.into())).ok_or(SottoError::Closed)
        })
        .await?
    }

    /// Delivers every event from now on to `listener`, on a thread of the
    /// bindings, one at a time and in order; replaces the listener set
    /// before. Independent of `next_event`, which sees every event too.
    pub fn set_listener(&self, listener: Arc<dyn EventListener>) -> Result<()> {
        let client = self.client()?;
        let handle = runtime()?.handle().clone();
        let mut events = client.events();
        drop(client);
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("sotto-events".into())
            .spawn(move || {
                handle.block_on(async move {
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            event = events.next() => match event {
                                Some(event) => listener.on_event(event.into()),
                                None => break,
                            },
                        }
                    }
                });
            })
            .map_err(|e| SottoError::Internal {
                detail: format!("cannot start the listener's thread: {e}"),
            })?;
        // Replacing the sender drops the previous one: its thread ends.
        *lock(&self.listener) = Some(stop);
        Ok(())
    }

    /// Stops delivering events to the listener.
    pub fn clear_listener(&self) {
        self.stop_listener();
    }

    /// Closes the client: stops the listener, closes the relay connection
    /// and releases the store. Every later call raises `Closed`; closing
    /// again does nothing.
    pub async fn close(&self) -> Result<()> {
        self.stop_listener();
        let Some(client) = lock(&self.inner).take() else {
            return Ok(());
        };
        run(async move {
            client.disconnect().await;
            Ok(())
        })
        .await
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop_listener();
    }
}
