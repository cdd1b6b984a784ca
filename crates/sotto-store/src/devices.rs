//! Device lists (docs/devices.md): the account's own, and each contact's.
//!
//! A profile is one device of an account. The account key signs the list
//! of the account's devices; a profile that made its account (every
//! profile made before linked devices) is its primary device and holds the
//! account key as its identity, a linked one holds its own device key and
//! remembers the account it joined (`meta` rows `account` and
//! `device_id`, sealed like every value).
//!
//! Each contact's newest list is kept in `contact_device_lists`, verified
//! against the contact's pinned identity (their account key) before it is
//! stored. A list that drops a device drops, in the same transaction, the
//! sessions with that device and whatever still waited in the outbox for
//! it: it gets nothing new from then on.

use sotto_core::access::ACCESS_KEY_LEN;
use sotto_core::{AccessKey, DeviceId, DeviceList, IdentityKey, SignedDeviceList};

use crate::db::Db;
use crate::error::{Error, Result, Row};
use crate::records::check_contact_id;
use crate::send::open_outbox_rows;
use crate::store::Store;
use crate::types::{DeviceListChange, PeerDevice};

const ACCOUNT: &str = "account";
const DEVICE_ID: &str = "device_id";
const ACCESS_KEY: &str = "access_key";
const HISTORY_IN: &str = "history_in";
const HISTORY_OUT: &str = "history_out";

/// A history transfer this device sends to a device it linked
/// (docs/devices.md, "History on a new device"): where to, under which
/// key, and the next chunk to send.
#[derive(Clone)]
#[non_exhaustive]
pub struct OutgoingTransfer {
    /// The receiving device's key.
    pub to: IdentityKey,
    /// The transfer's key (from the link).
    pub key: crate::ArchiveKey,
    /// The next chunk to send (every chunk before it was accepted by the
    /// relay).
    pub next_chunk: u64,
    /// The app asked for it to be sent (it may be linked without).
    pub started: bool,
}

impl core::fmt::Debug for OutgoingTransfer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OutgoingTransfer")
            .field("next_chunk", &self.next_chunk)
            .finish_non_exhaustive()
    }
}

impl OutgoingTransfer {
    /// A transfer to `to` under `key`, from chunk 0.
    pub fn new(to: IdentityKey, key: crate::ArchiveKey) -> Self {
        Self {
            to,
            key,
            next_chunk: 0,
            started: false,
        }
    }
}

impl Store {
    /// The account key of this profile's account: its own identity key for
    /// the profile that made the account (its primary device), the key of
    /// the account it joined for a linked device. Contacts know the account
    /// by this key: it is the address, and safety numbers are computed from
    /// it.
    pub fn account_key(&self) -> Result<IdentityKey> {
        self.read(account_key)
    }

    /// This profile's device id in its account's list
    /// ([`DeviceId::PRIMARY`] for the device that made the account).
    pub fn own_device_id(&self) -> Result<DeviceId> {
        self.read(own_device_id)
    }

    /// The account's current signed device list. A primary device that has
    /// none yet (every profile made before linked devices, or a new one)
    /// gets its first: version 1, this device alone under the account key
    /// ([`DeviceList::primary`], issued at `now`, ms since the Unix epoch),
    /// stored so that every later call returns the same list.
    pub fn own_device_list(&mut self, now: u64) -> Result<SignedDeviceList> {
        self.write(|db, rng| {
            let account = account_key(db)?;
            if let Some(signed) = own_signed(db, &account)? {
                return Ok(signed);
            }
            let identity = db.identity()?;
            if *identity.public() != account {
                // A linked device stores its list when it joins.
                return Err(meta_corrupt("device_list"));
            }
            let signed = DeviceList::primary(&account, now).sign(&identity)?;
            db.put_own_device_list(rng, &signed.to_bytes())?;
            Ok(signed)
        })
    }

    /// The account's devices as last stored (verified), without creating a
    /// first list.
    pub fn own_devices(&self) -> Result<Option<DeviceList>> {
        self.read(|db| current_own_list(db, &account_key(db)?))
    }

    /// Takes `signed` as the account's device list if the account key
    /// signed it and it is newer than the one held: a list this account
    /// published from another device (the relay keeps the newest, and the
    /// account device sends each new one to the others). Returns what
    /// changed, `None` if nothing did (an older or equal list); one not
    /// signed by this account is refused. Sessions with devices no longer
    /// listed are dropped; if this device is no longer listed, it was
    /// unlinked ([`own_device_id`](Self::own_device_id) is then not in
    /// [`own_devices`](Self::own_devices)).
    pub fn adopt_own_device_list(
        &mut self,
        signed: &SignedDeviceList,
    ) -> Result<Option<DeviceListChange>> {
        self.write(|db, rng| {
            let account = account_key(db)?;
            let offered = signed.verify(&account)?;
            let current = current_own_list(db, &account)?;
            if offered.supersedes(current.as_ref()).is_err() {
                return Ok(None);
            }
            db.put_own_device_list(rng, &signed.to_bytes())?;
            let change = diff(current.as_ref(), &offered);
            drop_devices(db, None, &change, PeerDevice::Own)?;
            Ok(Some(change))
        })
    }

    /// Replaces the account's device list with `list`, signed here by the
    /// account key: refused unless this profile holds the account key, the
    /// list is the account's and its version is higher than the current one
    /// ([`sotto_core::Error::DeviceListRollback`]). Sessions with devices no
    /// longer listed are dropped.
    pub fn set_own_device_list(
        &mut self,
        list: &DeviceList,
    ) -> Result<(SignedDeviceList, DeviceListChange)> {
        self.write(|db, rng| {
            let identity = db.identity()?;
            let current = current_own_list(db, identity.public())?;
            list.supersedes(current.as_ref())?;
            let signed = list.sign(&identity)?;
            db.put_own_device_list(rng, &signed.to_bytes())?;
            let change = diff(current.as_ref(), list);
            drop_devices(db, None, &change, PeerDevice::Own)?;
            Ok((signed, change))
        })
    }

    /// Makes this profile a device of `account`, whose key signed `signed`,
    /// a list naming this profile's identity key: the account key and this
    /// device's id are remembered, and the list becomes the account's. Its
    /// own first list, if it made one, is replaced (a linked device signs
    /// nothing). Refused with [`Error::AlreadyLinked`] if this profile
    /// already joined an account or has linked devices of its own, and
    /// with [`Error::UnknownDevice`] if the list does not name it. Returns
    /// this device's id.
    pub fn join_account(
        &mut self,
        account: &IdentityKey,
        signed: &SignedDeviceList,
    ) -> Result<DeviceId> {
        self.write(|db, rng| {
            let identity = db.identity()?;
            let list = signed.verify(account)?;
            let device = list
                .contains(identity.public())
                .ok_or(Error::UnknownDevice)?;
            if db.meta_value(ACCOUNT)?.is_some() {
                return Err(Error::AlreadyLinked);
            }
            if let Some(own) = current_own_list(db, identity.public())?
                && own.devices().len() > 1
            {
                return Err(Error::AlreadyLinked);
            }
            db.put_meta_value(rng, ACCOUNT, account.as_bytes())?;
            db.put_meta_value(rng, DEVICE_ID, &device.get().to_be_bytes())?;
            db.put_own_device_list(rng, &signed.to_bytes())?;
            Ok(device)
        })
    }

    /// The unidentified-access key of the account this linked device
    /// joined (every device of an account presents and publishes the
    /// account's, so that contacts need one per account); `None` for the
    /// account's primary device, which derives it from the account key.
    pub fn account_access_key(&self) -> Result<Option<AccessKey>> {
        self.read(|db| {
            db.meta_value(ACCESS_KEY)?
                .map(|bytes| {
                    <[u8; ACCESS_KEY_LEN]>::try_from(bytes.as_slice())
                        .map(AccessKey::from_bytes)
                        .map_err(|_| meta_corrupt(ACCESS_KEY))
                })
                .transpose()
        })
    }

    /// Remembers the account's access key (from the link offer).
    pub fn set_account_access_key(&mut self, key: &AccessKey) -> Result<()> {
        self.write(|db, rng| db.put_meta_value(rng, ACCESS_KEY, key.as_bytes()))
    }

    /// The key of the history transfer this linked device expects from
    /// the device that linked it (kept from the link until the transfer
    /// completes, so that it survives a restart).
    pub fn incoming_history_key(&self) -> Result<Option<crate::ArchiveKey>> {
        self.read(|db| {
            db.meta_value(HISTORY_IN)?
                .map(|bytes| {
                    <[u8; 32]>::try_from(bytes.as_slice())
                        .map(|b| crate::ArchiveKey::from_bytes(&b))
                        .map_err(|_| meta_corrupt(HISTORY_IN))
                })
                .transpose()
        })
    }

    /// Keeps (or, with `None`, forgets) the incoming history key.
    pub fn set_incoming_history_key(&mut self, key: Option<&crate::ArchiveKey>) -> Result<()> {
        self.write(|db, rng| match key {
            Some(key) => db.put_meta_value(rng, HISTORY_IN, key.as_bytes()),
            None => db.delete_meta(HISTORY_IN).map(|_| ()),
        })
    }

    /// The history transfer this device is sending, if any.
    pub fn outgoing_transfer(&self) -> Result<Option<OutgoingTransfer>> {
        self.read(|db| {
            db.meta_value(HISTORY_OUT)?
                .map(|bytes| {
                    let corrupt = || meta_corrupt(HISTORY_OUT);
                    let (to, rest) = bytes.split_first_chunk::<32>().ok_or_else(corrupt)?;
                    let (key, rest) = rest.split_first_chunk::<32>().ok_or_else(corrupt)?;
                    let (next, rest) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
                    let started = match rest {
                        [0] => false,
                        [1] => true,
                        _ => return Err(corrupt()),
                    };
                    Ok(OutgoingTransfer {
                        to: IdentityKey::from_bytes(to).map_err(|_| corrupt())?,
                        key: crate::ArchiveKey::from_bytes(key),
                        next_chunk: u64::from_be_bytes(*next),
                        started,
                    })
                })
                .transpose()
        })
    }

    /// Records (or, with `None`, ends) the history transfer being sent.
    pub fn set_outgoing_transfer(&mut self, transfer: Option<&OutgoingTransfer>) -> Result<()> {
        self.write(|db, rng| match transfer {
            Some(t) => {
                let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(73));
                bytes.extend_from_slice(t.to.as_bytes());
                bytes.extend_from_slice(t.key.as_bytes());
                bytes.extend_from_slice(&t.next_chunk.to_be_bytes());
                bytes.push(u8::from(t.started));
                db.put_meta_value(rng, HISTORY_OUT, &bytes)
            }
            None => db.delete_meta(HISTORY_OUT).map(|_| ()),
        })
    }

    /// `contact`'s newest device list held here (verified against their
    /// pinned identity when it was stored), `None` if none is held: the
    /// contact then has one device, its primary.
    pub fn contact_devices(&self, contact: &str) -> Result<Option<DeviceList>> {
        check_contact_id(contact)?;
        self.read(|db| contact_list(db, contact))
    }

    /// Takes `signed` as `contact`'s device list: it must be signed by the
    /// identity pinned for the contact (their account key) and newer than
    /// the list held ([`sotto_core::Error::DeviceListRollback`] for an
    /// older or equal one, which changes nothing; a relay can withhold a
    /// list, never bring an older one back). Sessions with the contact's
    /// devices that the list drops, and outbox entries still waiting for
    /// them, are dropped in the same transaction. Returns what changed.
    pub fn set_contact_device_list(
        &mut self,
        contact: &str,
        signed: &SignedDeviceList,
    ) -> Result<DeviceListChange> {
        check_contact_id(contact)?;
        self.write(|db, rng| {
            let record = db.contact(contact)?.ok_or(Error::UnknownContact)?;
            let pinned = record.identity_key.ok_or(Error::UnknownContact)?;
            let offered = signed.verify(&pinned)?;
            let current = contact_list(db, contact)?;
            offered.supersedes(current.as_ref())?;
            db.put_contact_device_list(rng, contact, &signed.to_bytes())?;
            let change = diff(current.as_ref(), &offered);
            drop_devices(db, Some(contact), &change, PeerDevice::Contact)?;
            Ok(change)
        })
    }

    /// The identity key of `device` as seen from the conversation with
    /// `contact` (the key its sessions are with and its envelopes are
    /// sealed to): the contact's pinned identity for its primary device,
    /// the held lists' entry for any other. `None` if no list vouches for
    /// the device.
    pub fn device_key(&self, contact: &str, device: PeerDevice) -> Result<Option<IdentityKey>> {
        check_contact_id(contact)?;
        self.read(|db| peer_key(db, contact, device))
    }

    /// Every device a message to `contact` goes to: each of the contact's
    /// devices (its primary alone when no list is held), then each of our
    /// own devices but this one, with the key to encrypt and seal to.
    pub fn message_targets(&self, contact: &str) -> Result<Vec<(PeerDevice, IdentityKey)>> {
        check_contact_id(contact)?;
        self.read(|db| targets(db, contact))
    }
}

/// The account key: the `meta` row of a linked device, else the identity.
pub(crate) fn account_key(db: &Db<'_>) -> Result<IdentityKey> {
    match db.meta_value(ACCOUNT)? {
        Some(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
            .ok()
            .and_then(|b| IdentityKey::from_bytes(&b).ok())
            .ok_or_else(|| meta_corrupt(ACCOUNT)),
        None => Ok(*db.identity()?.public()),
    }
}

pub(crate) fn own_device_id(db: &Db<'_>) -> Result<DeviceId> {
    match db.meta_value(DEVICE_ID)? {
        Some(bytes) => <[u8; 4]>::try_from(bytes.as_slice())
            .map(|b| DeviceId::new(u32::from_be_bytes(b)))
            .map_err(|_| meta_corrupt(DEVICE_ID)),
        None => Ok(DeviceId::PRIMARY),
    }
}

fn own_signed(db: &Db<'_>, account: &IdentityKey) -> Result<Option<SignedDeviceList>> {
    db.own_device_list()?
        .map(|stored| {
            let signed =
                SignedDeviceList::from_bytes(&stored).map_err(|_| meta_corrupt("device_list"))?;
            signed
                .verify(account)
                .map_err(|_| meta_corrupt("device_list"))?;
            Ok(signed)
        })
        .transpose()
}

/// The account's stored list, verified (a stored list that does not verify
/// is a damaged row).
pub(crate) fn current_own_list(db: &Db<'_>, account: &IdentityKey) -> Result<Option<DeviceList>> {
    db.own_device_list()?
        .map(|stored| {
            SignedDeviceList::from_bytes(&stored)
                .and_then(|s| s.verify(account))
                .map_err(|_| meta_corrupt("device_list"))
        })
        .transpose()
}

/// `contact`'s stored list, verified against their pinned identity.
pub(crate) fn contact_list(db: &Db<'_>, contact: &str) -> Result<Option<DeviceList>> {
    let Some(stored) = db.contact_device_list(contact)? else {
        return Ok(None);
    };
    let lookup = db.contact_lookup(contact);
    let corrupt = || Error::Corrupt {
        table: "contact_device_lists",
        row: Row::lookup(&lookup),
    };
    let pinned = db
        .contact(contact)?
        .and_then(|c| c.identity_key)
        .ok_or_else(corrupt)?;
    SignedDeviceList::from_bytes(&stored)
        .and_then(|s| s.verify(&pinned))
        .map(Some)
        .map_err(|_| corrupt())
}

/// The key of `device` seen from the conversation with `contact`.
pub(crate) fn peer_key(
    db: &Db<'_>,
    contact: &str,
    device: PeerDevice,
) -> Result<Option<IdentityKey>> {
    match device {
        PeerDevice::Contact(id) if id == DeviceId::PRIMARY => {
            Ok(db.contact(contact)?.and_then(|c| c.identity_key))
        }
        PeerDevice::Contact(id) => {
            Ok(contact_list(db, contact)?.and_then(|list| list.device(id).map(|d| d.identity)))
        }
        PeerDevice::Own(id) => {
            if id == own_device_id(db)? {
                return Ok(None);
            }
            Ok(current_own_list(db, &account_key(db)?)?
                .and_then(|list| list.device(id).map(|d| d.identity)))
        }
    }
}

pub(crate) fn targets(db: &Db<'_>, contact: &str) -> Result<Vec<(PeerDevice, IdentityKey)>> {
    let mut out = Vec::new();
    let pinned = db.contact(contact)?.and_then(|c| c.identity_key);
    if let Some(pinned) = pinned {
        out.push((PeerDevice::CONTACT_PRIMARY, pinned));
        if let Some(list) = contact_list(db, contact)? {
            out.extend(
                list.devices()
                    .iter()
                    .filter(|d| d.id != DeviceId::PRIMARY && d.identity != pinned)
                    .map(|d| (PeerDevice::Contact(d.id), d.identity)),
            );
        }
    }
    let me = own_device_id(db)?;
    let identity = db.identity()?;
    if let Some(list) = current_own_list(db, &account_key(db)?)? {
        out.extend(
            list.devices()
                .iter()
                .filter(|d| d.id != me && d.identity != *identity.public())
                .map(|d| (PeerDevice::Own(d.id), d.identity)),
        );
    }
    Ok(out)
}

/// What replacing `old` with `new` added and removed. A device whose key
/// changed under the same id counts as removed and added.
fn diff(old: Option<&DeviceList>, new: &DeviceList) -> DeviceListChange {
    let listed = |list: &DeviceList, id: DeviceId| list.device(id).map(|d| d.identity);
    let mut change = DeviceListChange {
        version: new.version(),
        ..DeviceListChange::default()
    };
    if let Some(old) = old {
        for d in old.devices() {
            if listed(new, d.id) != Some(d.identity) {
                change.removed.push(d.id);
            }
        }
    }
    for d in new.devices() {
        if old.and_then(|old| listed(old, d.id)) != Some(d.identity) {
            change.added.push(d.id);
        }
    }
    change
}

/// Drops the sessions with the removed devices (`peer` makes the
/// [`PeerDevice`] of an id: a contact's, or our own), and every outbox
/// entry still waiting for one of them: of the conversation with `contact`,
/// or of every conversation for our own devices.
fn drop_devices(
    db: &Db<'_>,
    contact: Option<&str>,
    change: &DeviceListChange,
    peer: fn(DeviceId) -> PeerDevice,
) -> Result<()> {
    if change.removed.is_empty() {
        return Ok(());
    }
    let removed: Vec<PeerDevice> = change.removed.iter().map(|id| peer(*id)).collect();
    for device in &removed {
        db.delete_sessions(&db.session_lookup(contact.unwrap_or_default(), *device))?;
    }
    let conversation = contact.map(|c| db.conversation_lookup(c));
    let mut rows = db.outbox_rows(false)?;
    rows.extend(db.outbox_rows(true)?);
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|row| match (row, &conversation) {
            (Ok(row), Some(lookup)) => row.conversation == *lookup,
            _ => true,
        })
        .collect();
    for (entry, _) in open_outbox_rows(db, rows).into_iter().flatten() {
        if removed.contains(&entry.to) {
            db.delete_outbox(&db.outbox_lookup(&entry.id))?;
        }
    }
    Ok(())
}

fn meta_corrupt(name: &'static str) -> Error {
    Error::Corrupt {
        table: "meta",
        row: Row::Named(name),
    }
}
