//! The account's devices and the contacts' (docs/devices.md): device lists
//! published, fetched, pushed and received; a session with every device a
//! message goes to.

use std::time::{Duration, Instant};

use sotto_core::{DeviceList, IdentityKey, SignedDeviceList};
use sotto_relay::{ClientError, ErrorCode, MailboxAddress, RelayClient};
use sotto_store::{PeerDevice, Store};

use super::Client;
use super::receive::{ListChanged, Outcome};
use super::shared::{Shared, contact_id, lock, now_ms};
use super::types::{ClientEvent, DropReason};
use crate::address::Address;
use crate::error::{Error, Result};
use crate::payload;

/// How long a contact's device list fetched from the relay is taken as
/// current before sending fetches it again (changes also arrive in band,
/// and whenever an unknown device of the contact writes).
const LIST_FRESH_FOR: Duration = Duration::from_secs(3600);

/// A device list received in band (payload kind 0x06): taken if it is this
/// account's or a contact's, signed by that account's key and newer than
/// the one held (rule 8 of the receive pipeline).
pub(crate) fn receive_device_list(store: &mut Store, body: &[u8]) -> sotto_store::Result<Outcome> {
    let Ok(signed) = SignedDeviceList::from_bytes(body) else {
        return Ok(Outcome::Dropped(DropReason::Malformed));
    };
    let account = *signed.claimed_account();
    match take_list(store, &account, &signed)? {
        Taken::Changed(changed) => Ok(Outcome::DevicesChanged(*changed)),
        Taken::Unchanged => Ok(Outcome::Duplicate { receipt: None }),
        Taken::Refused => Ok(Outcome::Dropped(DropReason::NotAContact)),
    }
}

/// What offering a device list to the store came to.
enum Taken {
    Changed(Box<ListChanged>),
    /// Not newer than the one held.
    Unchanged,
    /// Not this account's, not a contact's, or not signed by its key.
    Refused,
}

fn take_list(
    store: &mut Store,
    account: &IdentityKey,
    signed: &SignedDeviceList,
) -> sotto_store::Result<Taken> {
    let address = Address::of(account);
    if *account == store.account_key()? {
        return Ok(match store.adopt_own_device_list(signed) {
            Ok(Some(change)) => {
                let me = store.own_device_id()?;
                let unlinked = change.removed.contains(&me);
                Taken::Changed(Box::new(ListChanged {
                    account: address,
                    own: true,
                    change,
                    unlinked,
                }))
            }
            Ok(None) => Taken::Unchanged,
            Err(sotto_store::Error::Protocol(_)) => Taken::Refused,
            Err(e) => return Err(e),
        });
    }
    let id = address.to_string();
    let pinned = store.contact(&id)?.and_then(|c| c.identity_key);
    if pinned != Some(*account) {
        return Ok(Taken::Refused);
    }
    Ok(match store.set_contact_device_list(&id, signed) {
        Ok(change) => Taken::Changed(Box::new(ListChanged {
            account: address,
            own: false,
            change,
            unlinked: false,
        })),
        Err(sotto_store::Error::Protocol(
            sotto_core::Error::DeviceListRollback { .. }
            | sotto_core::Error::DeviceListConflict { .. },
        )) => Taken::Unchanged,
        Err(sotto_store::Error::Protocol(_)) => Taken::Refused,
        Err(e) => return Err(e),
    })
}

impl Shared {
    /// On every connection: the account's primary device publishes the
    /// account's current list (made on first use: this device alone);
    /// publishing it again changes nothing. A linked device, and a primary
    /// whose relay holds a newer list of the account (a profile restored
    /// from an archive holds none), take the relay's list if the account
    /// key signed it.
    pub(crate) async fn sync_device_list(&self, conn: &RelayClient) -> Result<()> {
        if self.identity.public() == &self.account {
            let signed = self.with_store(|s| s.own_device_list(now_ms())).await?;
            match conn.publish_device_list(&signed.to_bytes()).await {
                Ok(version) => {
                    tracing::debug!(version, "device list published");
                    return Ok(());
                }
                Err(ClientError::Server {
                    code: ErrorCode::StaleDeviceList,
                    ..
                }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let account = self.account;
        self.refresh_devices(conn, &account).await?;
        Ok(())
    }

    /// Fetches the newest device list of `account` from the relay and
    /// takes it if it is newer than the one held (this account's own, or a
    /// contact's; a stranger becomes a nameless contact first, as its first
    /// message would make it). Announces a change. Returns whether the
    /// list changed.
    pub(crate) async fn refresh_devices(
        &self,
        conn: &RelayClient,
        account: &IdentityKey,
    ) -> Result<bool> {
        let Some(published) = conn.fetch_device_list(&MailboxAddress::of(account)).await? else {
            return Ok(false);
        };
        lock(&self.lists_fetched).insert(*account.as_bytes(), Instant::now());
        let signed =
            SignedDeviceList::from_bytes(&published).map_err(sotto_store::Error::Protocol)?;
        if signed.claimed_account() != account {
            return Ok(false);
        }
        let account = *account;
        let taken = self
            .with_store(move |s| {
                let id = contact_id(&account);
                if account != s.account_key()? && s.contact(&id)?.is_none() {
                    s.add_contact(&id, "", Some(&account))?;
                }
                take_list(s, &account, &signed)
            })
            .await?;
        match taken {
            Taken::Changed(changed) => {
                self.announce_change(*changed);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    /// True once this linked device's account list no longer names it.
    pub(crate) async fn is_unlinked(&self) -> bool {
        let identity = self.identity.clone();
        self.with_store(move |s| super::receive::unlinked(s, &identity))
            .await
            .unwrap_or(false)
    }

    /// Tells the app about a changed device list.
    pub(crate) fn announce_change(
        &self,
        ListChanged {
            account,
            own,
            change,
            unlinked,
        }: ListChanged,
    ) {
        tracing::info!(
            own,
            version = change.version,
            added = change.added.len(),
            removed = change.removed.len(),
            "device list changed"
        );
        self.emit(ClientEvent::DevicesChanged {
            account,
            own,
            version: change.version,
            added: change.added,
            removed: change.removed,
        });
        if unlinked {
            self.emit(ClientEvent::Unlinked);
        }
    }

    /// Makes sure every device a message to `contact` (account `account`)
    /// goes to has a session: the contact's list is fetched when none was
    /// fetched for a while, and each device without a session gets one
    /// from its prekey bundle. A device whose bundle cannot be had is left
    /// out (and logged); the error is returned only when none of the
    /// contact's devices has a session.
    pub(crate) async fn ensure_sessions(
        &self,
        conn: &RelayClient,
        contact: &str,
        account: &IdentityKey,
    ) -> Result<()> {
        let stale = lock(&self.lists_fetched)
            .get(account.as_bytes())
            .is_none_or(|at| at.elapsed() > LIST_FRESH_FOR);
        if stale && let Err(e) = self.refresh_devices(conn, account).await {
            tracing::info!(error = %e, "contact's device list not fetched");
        }
        let id = contact.to_owned();
        let missing = self
            .with_store(move |s| {
                let mut missing = Vec::new();
                let mut any = false;
                for (device, key) in s.message_targets(&id)? {
                    if s.has_session_with(&id, device)? {
                        any |= !device.is_own();
                    } else {
                        missing.push((device, key));
                    }
                }
                Ok((missing, any))
            })
            .await?;
        let (missing, mut any) = missing;
        let mut first_error = None;
        for (device, key) in missing {
            match self.start_session(conn, contact, device, &key).await {
                Ok(()) => any |= !device.is_own(),
                Err(e) => {
                    tracing::info!(error = %e, ?device, "no session with a device");
                    if device == PeerDevice::CONTACT_PRIMARY {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        match first_error {
            Some(e) if !any => Err(e),
            _ => Ok(()),
        }
    }

    /// Starts a session with `device` (key `key`) of the conversation with
    /// `contact`, from the bundle the relay serves for that key.
    async fn start_session(
        &self,
        conn: &RelayClient,
        contact: &str,
        device: PeerDevice,
        key: &IdentityKey,
    ) -> Result<()> {
        let bundle = super::prekeys::fetch_bundle(conn, &MailboxAddress::of(key)).await?;
        if bundle.identity_key != *key {
            return Err(Error::BundleMismatch);
        }
        let id = contact.to_owned();
        self.with_store(move |s| s.start_session_with(&id, device, &bundle))
            .await?;
        tracing::info!(?device, "session started from the device's prekey bundle");
        Ok(())
    }

    /// Sends `signed` (this account's new list) to every device of every
    /// contact and to the account's other devices, each in a sealed
    /// envelope of its own, best effort: a device that misses it learns the
    /// list from the relay when it next needs it.
    pub(crate) async fn push_device_list(&self, conn: &RelayClient, signed: &SignedDeviceList) {
        let keys = self
            .with_store(|s| {
                let mut keys = Vec::new();
                for contact in s.contacts()?.into_iter().flatten() {
                    let Some(account) = contact.identity_key else {
                        continue;
                    };
                    for (device, key) in s.message_targets(&contact.id)? {
                        let owner = if device.is_own() { None } else { Some(account) };
                        keys.push((key, owner));
                    }
                }
                Ok(keys)
            })
            .await
            .unwrap_or_default();
        let bytes = signed.to_bytes();
        let mut done = std::collections::HashSet::new();
        for (key, owner) in keys {
            if !done.insert(*key.as_bytes()) {
                continue;
            }
            let access = match owner {
                Some(account) => self.access_key_for(&account).await,
                None => Some(self.access_key.clone()),
            };
            if let Err(e) = self
                .send_control(
                    conn,
                    &key,
                    access.as_ref(),
                    payload::KIND_DEVICE_LIST,
                    &bytes,
                )
                .await
            {
                tracing::info!(error = %e, "device list not pushed to a device");
            }
        }
    }

    /// Seals a control payload (`kind`, `body`) to the device `to` and
    /// hands it to the relay.
    pub(crate) async fn send_control(
        &self,
        conn: &RelayClient,
        to: &IdentityKey,
        access: Option<&sotto_core::AccessKey>,
        kind: u8,
        body: &[u8],
    ) -> Result<()> {
        let payload = payload::encode_control(kind, now_ms(), body)?;
        let sealed = payload::seal(&self.identity, to, &payload)?;
        let id = sotto_relay::MessageId::random().map_err(|_| Error::NoRandomness)?;
        conn.send(&MailboxAddress::of(to), id, access, &sealed)
            .await?;
        Ok(())
    }
}

impl Client {
    /// This account's devices: the device list its account key signed
    /// (version 1, this device alone, until devices are linked).
    pub async fn devices(&self) -> Result<DeviceList> {
        let account = self.shared.account;
        let signed = self
            .shared
            .with_store(|s| s.own_device_list(now_ms()))
            .await?;
        Ok(signed
            .verify(&account)
            .map_err(sotto_store::Error::Protocol)?)
    }

    /// The devices of `contact` (a name or an address) as their newest
    /// list held here says, `None` while none is held (the contact then
    /// has one device as far as this profile knows).
    pub async fn contact_devices(&self, contact: &str) -> Result<Option<DeviceList>> {
        let contact = self.resolve(contact).await?;
        let id = contact.id;
        self.shared
            .with_store(move |s| s.contact_devices(&id))
            .await
    }

    /// This device's id in its account's list.
    pub fn device_id(&self) -> sotto_core::DeviceId {
        self.shared.device_id
    }
}

#[cfg(feature = "test-hooks")]
impl Client {
    /// Test hook (feature `test-hooks`): sends `to` (an account's primary
    /// device) a device message (payload kind 0x05) that claims to come
    /// from device `device` of `account`, with `message` where the
    /// sotto-core message belongs: what a hostile device (or relay) can
    /// send, for tests that check it is refused.
    pub async fn send_device_message_claiming(
        &self,
        account: &IdentityKey,
        device: sotto_core::DeviceId,
        to: &Address,
        message: &[u8],
    ) -> Result<()> {
        let conn = self.connection()?;
        let shared = &self.shared;
        let id = sotto_relay::MessageId::random().map_err(|_| Error::NoRandomness)?;
        let payload = payload::encode_device_message(
            payload::KIND_DEVICE_MESSAGE,
            &id.0,
            now_ms(),
            &shared.access_key,
            (account, device),
            to.identity_key(),
            message,
        );
        let sealed = payload::seal(&shared.identity, to.identity_key(), &payload)?;
        conn.send(&to.mailbox(), id, None, &sealed).await?;
        Ok(())
    }
}
