//! Linking and unlinking devices (docs/devices.md, "Linking").
//!
//! The new device shows a link code ([`Client::start_linking`]); the
//! account's primary device reads it and sends a link offer
//! ([`Client::link_device`]): the next device list with the new device in
//! it, authenticated under a key from the code's secret, sealed from the
//! account key to the code's device key. The new device checks it, joins
//! the account and answers with a link accept, sealed to the account key;
//! the primary device takes the accept only from the code's device key
//! (the sealed layer authenticates it), then stores, publishes and pushes
//! the new list. The relay carries two sealed envelopes and learns nothing
//! it could use.

use std::time::Duration;

use sotto_core::access::ACCESS_KEY_LEN;
use sotto_core::{
    AccessKey, DeviceId, DeviceList, IdentityKey, LinkAccept, LinkCode, LinkKey, LinkOffer,
};
use sotto_relay::RelayClient;
use sotto_store::{DeviceListChange, OutgoingTransfer};
use tokio::sync::oneshot;

use super::Client;
use super::receive::ListChanged;
use super::shared::{Shared, lock, now_ms};
use crate::address::Address;
use crate::error::{Error, Result};
use crate::payload;

/// What a link in progress waits for.
#[derive(Default)]
pub(crate) struct LinkState {
    /// On a new device: the code it shows, and who waits for the offer.
    shown: Option<Shown>,
    /// On the account device: the offer sent, and who waits for the accept.
    offered: Option<Offered>,
}

struct Shown {
    code: LinkCode,
    done: Option<oneshot::Sender<Result<JoinedAccount>>>,
    /// The account joined before anyone waited for it.
    joined: Option<JoinedAccount>,
}

struct Offered {
    link_key: LinkKey,
    list: DeviceList,
    done: oneshot::Sender<Result<LinkedDevice>>,
}

/// The account a new device joined ([`Client::wait_for_link`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JoinedAccount {
    /// The account's address: this device's address from now on.
    pub account: Address,
    /// This device's id in the account's list.
    pub device: DeviceId,
}

/// A device the account linked ([`Client::link_device`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkedDevice {
    /// The new device's id in the account's list.
    pub id: DeviceId,
    /// The account's device list version that lists it.
    pub version: u64,
}

impl Client {
    /// Makes this profile ready to be linked to an account and returns the
    /// code to show (as text, [`LinkCode`]'s `Display`, or as a QR code of
    /// that text). The profile must be new — no contacts, no devices of its
    /// own ([`Error::NotLinkable`]) — and connected to the relay the
    /// account uses, so that the offer reaches its mailbox; then call
    /// [`wait_for_link`](Self::wait_for_link).
    pub async fn start_linking(&self) -> Result<LinkCode> {
        if self.shared.account != *self.shared.identity.public() {
            return Err(Error::NotLinkable);
        }
        let fresh = self
            .shared
            .with_store(|s| {
                Ok(s.contacts()?.is_empty()
                    && s.own_devices()?.is_none_or(|l| l.devices().len() == 1))
            })
            .await?;
        if !fresh {
            return Err(Error::NotLinkable);
        }
        let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
        let code = LinkCode::generate(self.shared.identity.public(), &mut rng);
        lock(&self.shared.link).shown = Some(Shown {
            code: code.clone(),
            done: None,
            joined: None,
        });
        Ok(code)
    }

    /// Waits (at most `timeout`) until the account's device sent its offer
    /// for the code of [`start_linking`](Self::start_linking) and this
    /// profile joined the account. Open the profile again afterwards: from
    /// then on it is a device of that account, with its address.
    pub async fn wait_for_link(&self, timeout: Duration) -> Result<JoinedAccount> {
        let (tx, rx) = oneshot::channel();
        {
            let mut link = lock(&self.shared.link);
            let shown = link.shown.as_mut().ok_or(Error::NoLinkUnderWay)?;
            if let Some(joined) = shown.joined {
                link.shown = None;
                return Ok(joined);
            }
            shown.done = Some(tx);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(joined)) => joined,
            Ok(Err(_)) => Err(Error::NoLinkUnderWay),
            Err(_) => Err(Error::LinkTimedOut),
        }
    }

    /// Links the device that shows `code` to this account (only on the
    /// account's primary device, [`Error::NotAccountDevice`]): sends it the
    /// offer and waits (at most `timeout`) for its accept, then stores,
    /// publishes and pushes the new device list to every contact and
    /// device. Needs a connection.
    pub async fn link_device(&self, code: &LinkCode, timeout: Duration) -> Result<LinkedDevice> {
        let shared = &self.shared;
        if shared.account != *shared.identity.public() {
            return Err(Error::NotAccountDevice);
        }
        let conn = self.connection()?;
        let current = self.devices().await?;
        let list = current
            .with_device(code.device_key(), now_ms())
            .map_err(Error::Link)?;
        let signed = list.sign(&shared.identity).map_err(Error::Link)?;
        let link_key = LinkKey::derive(code, &shared.account);
        let offer = LinkOffer::new(&link_key, &signed).map_err(Error::Link)?;
        let mut body = zeroize::Zeroizing::new(shared.access_key.as_bytes().to_vec());
        body.extend_from_slice(&offer.to_bytes());
        let (tx, rx) = oneshot::channel();
        lock(&shared.link).offered = Some(Offered {
            link_key,
            list,
            done: tx,
        });
        shared
            .send_control(
                &conn,
                code.device_key(),
                None,
                payload::KIND_LINK_OFFER,
                &body,
            )
            .await?;
        tracing::info!("link offer sent");
        let answer = tokio::time::timeout(timeout, rx).await;
        lock(&shared.link).offered = None;
        let linked = match answer {
            Ok(Ok(linked)) => linked?,
            Ok(Err(_)) => return Err(Error::NoLinkUnderWay),
            Err(_) => return Err(Error::LinkTimedOut),
        };
        // The new device learns the account's groups (docs/groups.md).
        if let Err(e) = shared.share_groups_with_own_devices(&conn).await {
            shared.report(super::types::Step::Groups, e);
        }
        Ok(linked)
    }

    /// Removes device `id` from this account (only on the account's
    /// primary device): the next list, without it, is stored, sent to the
    /// removed device (so that it knows), published (the relay then removes
    /// the device's mailbox) and pushed to every contact and device. Contacts and the account's devices drop their
    /// sessions with it and encrypt nothing more to it. Needs a connection.
    pub async fn unlink_device(&self, id: DeviceId) -> Result<DeviceListChange> {
        let shared = &self.shared;
        if shared.account != *shared.identity.public() {
            return Err(Error::NotAccountDevice);
        }
        if id == shared.device_id {
            return Err(Error::NotAccountDevice);
        }
        let conn = self.connection()?;
        let current = self.devices().await?;
        let removed = current
            .device(id)
            .map(|d| d.identity)
            .ok_or(Error::Link(sotto_core::Error::UnknownDevice(id)))?;
        let list = current.without_device(id, now_ms()).map_err(Error::Link)?;
        let (signed, change) = shared
            .with_store(move |s| s.set_own_device_list(&list))
            .await?;
        // The removed device first: publishing the list makes the relay
        // remove its mailbox. Connected, it gets the list at once; if not,
        // it finds the list on the relay when it next connects.
        if let Err(e) = shared
            .send_control(
                &conn,
                &removed,
                Some(&shared.access_key),
                payload::KIND_DEVICE_LIST,
                &signed.to_bytes(),
            )
            .await
        {
            tracing::info!(error = %e, "the removed device was not told");
        }
        conn.publish_device_list(&signed.to_bytes()).await?;
        shared.push_device_list(&conn, &signed).await;
        shared.announce_change(ListChanged {
            account: shared.address,
            own: true,
            change: change.clone(),
            unlinked: false,
        });
        Ok(change)
    }
}

/// The key of the history transfer that follows a link at list `version`.
fn history_key(link_key: &LinkKey, version: u64) -> Result<sotto_store::ArchiveKey> {
    let key = link_key
        .history_transfer_key(version)
        .map_err(Error::Link)?;
    Ok(sotto_store::ArchiveKey::from_bytes(key.as_bytes()))
}

impl Shared {
    /// A link offer or accept from the device `from` (payload kinds 0x07,
    /// 0x08): taken only by the link this client waits for.
    pub(crate) async fn on_link_message(
        &self,
        conn: &RelayClient,
        from: &IdentityKey,
        kind: u8,
        body: &[u8],
    ) -> Result<()> {
        match kind {
            payload::KIND_LINK_OFFER => self.on_offer(conn, from, body).await,
            _ => self.on_accept(conn, from, body).await,
        }
    }

    /// New device: the offer must come, sealed, from the account key it
    /// names, and verify under the code shown.
    async fn on_offer(&self, conn: &RelayClient, from: &IdentityKey, body: &[u8]) -> Result<()> {
        let code = lock(&self.link)
            .shown
            .as_ref()
            .map(|s| s.code.clone())
            .ok_or(Error::NoLinkUnderWay)?;
        let (access, offer) = body
            .split_first_chunk::<ACCESS_KEY_LEN>()
            .ok_or(Error::Link(sotto_core::Error::Truncated {
                needed: ACCESS_KEY_LEN,
                got: body.len(),
            }))?;
        let offer = LinkOffer::from_bytes(offer).map_err(Error::Link)?;
        if offer.account() != from {
            return Err(Error::Link(sotto_core::Error::AccountMismatch));
        }
        let verified = offer.verify(&code).map_err(Error::Link)?;
        let account = *offer.account();
        let signed = offer.device_list().clone();
        let access = AccessKey::from_bytes(*access);
        let stored_access = access.clone();
        let history = history_key(&verified.link_key, verified.device_list.version())?;
        let device = self
            .with_store(move |s| {
                let device = s.join_account(&account, &signed)?;
                s.set_account_access_key(&stored_access)?;
                s.set_incoming_history_key(Some(&history))?;
                Ok(device)
            })
            .await?;
        let accept = LinkAccept::new(&verified.link_key, verified.device_list.version())
            .map_err(Error::Link)?;
        self.send_control(
            conn,
            &account,
            Some(&access),
            payload::KIND_LINK_ACCEPT,
            &accept.to_bytes(),
        )
        .await?;
        tracing::info!("joined an account");
        let joined = JoinedAccount {
            account: Address::of(&account),
            device,
        };
        let mut link = lock(&self.link);
        match link.shown.as_mut() {
            Some(shown) if shown.done.is_some() => {
                if let Some(done) = shown.done.take() {
                    let _ = done.send(Ok(joined));
                }
                link.shown = None;
            }
            Some(shown) => shown.joined = Some(joined),
            None => {}
        }
        Ok(())
    }

    /// Account device: the accept must come, sealed, from the code's
    /// device key, and verify under the link key for the offered version.
    async fn on_accept(&self, conn: &RelayClient, from: &IdentityKey, body: &[u8]) -> Result<()> {
        let accept = LinkAccept::from_bytes(body).map_err(Error::Link)?;
        let offered = {
            let mut link = lock(&self.link);
            match &link.offered {
                Some(o) if o.link_key.device_key() == from => link.offered.take(),
                _ => None,
            }
        }
        .ok_or(Error::NoLinkUnderWay)?;
        if let Err(e) = accept.verify(&offered.link_key, offered.list.version()) {
            let _ = offered.done.send(Err(Error::Link(e.clone())));
            return Err(Error::Link(e));
        }
        let list = offered.list.clone();
        let id = list
            .contains(from)
            .ok_or(Error::Link(sotto_core::Error::DeviceNotListed))?;
        let history = history_key(&offered.link_key, list.version())?;
        let device = *from;
        let result = async {
            let (signed, change) = self
                .with_store(move |s| {
                    let changed = s.set_own_device_list(&list)?;
                    // Ready for `send_history`, which the app may call.
                    s.set_outgoing_transfer(Some(&OutgoingTransfer::new(device, history)))?;
                    Ok(changed)
                })
                .await?;
            conn.publish_device_list(&signed.to_bytes()).await?;
            self.push_device_list(conn, &signed).await;
            self.announce_change(ListChanged {
                account: self.address,
                own: true,
                change,
                unlinked: false,
            });
            Ok(LinkedDevice {
                id,
                version: offered.list.version(),
            })
        }
        .await;
        let reported = match &result {
            Ok(linked) => Ok(*linked),
            Err(_) => Err(Error::NoLinkUnderWay),
        };
        let _ = offered.done.send(reported);
        result.map(|_| ())
    }
}
