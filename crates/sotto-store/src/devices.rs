//! The account's own device list (docs/devices.md): the signed list this
//! profile's account key publishes, kept sealed in the store.

use sotto_core::{DeviceList, SignedDeviceList};

use crate::error::{Error, Result};
use crate::store::Store;

impl Store {
    /// The account's current signed device list. A profile that has none
    /// yet (every profile made before linked devices, or a new one) gets
    /// its first: version 1, this device alone under the account key
    /// ([`DeviceList::primary`], issued at `now`, ms since the Unix epoch),
    /// stored so that every later call returns the same list.
    pub fn own_device_list(&mut self, now: u64) -> Result<SignedDeviceList> {
        self.write(|db, rng| {
            let identity = db.identity()?;
            if let Some(stored) = db.own_device_list()? {
                let signed = SignedDeviceList::from_bytes(&stored).map_err(|_| corrupt())?;
                signed.verify(identity.public()).map_err(|_| corrupt())?;
                return Ok(signed);
            }
            let signed = DeviceList::primary(identity.public(), now).sign(&identity)?;
            db.put_own_device_list(rng, &signed.to_bytes())?;
            Ok(signed)
        })
    }

    /// Takes `signed` as the account's device list if the account key
    /// signed it and it is newer than the one held: a list this account
    /// published from elsewhere (the relay keeps the newest), for a
    /// profile restored from an archive, which holds no device list.
    /// Returns whether it was taken; an older or equal one changes nothing,
    /// one not signed by this account is refused.
    pub fn adopt_own_device_list(&mut self, signed: &SignedDeviceList) -> Result<bool> {
        self.write(|db, rng| {
            let identity = db.identity()?;
            let offered = signed.verify(identity.public())?;
            let current = current_list(db, identity.public())?;
            if offered.supersedes(current.as_ref()).is_err() {
                return Ok(false);
            }
            db.put_own_device_list(rng, &signed.to_bytes())?;
            Ok(true)
        })
    }

    /// Replaces the account's device list with `list`, signed here by the
    /// account key: refused unless it is the account's and its version is
    /// higher than the current one ([`sotto_core::Error::DeviceListRollback`]).
    pub fn set_own_device_list(&mut self, list: &DeviceList) -> Result<SignedDeviceList> {
        self.write(|db, rng| {
            let identity = db.identity()?;
            let current = current_list(db, identity.public())?;
            list.supersedes(current.as_ref())?;
            let signed = list.sign(&identity)?;
            db.put_own_device_list(rng, &signed.to_bytes())?;
            Ok(signed)
        })
    }
}

/// The account's stored list, verified (a stored list that does not verify
/// is a damaged row).
fn current_list(
    db: &crate::db::Db<'_>,
    account: &sotto_core::IdentityKey,
) -> Result<Option<DeviceList>> {
    db.own_device_list()?
        .map(|stored| {
            SignedDeviceList::from_bytes(&stored)
                .and_then(|s| s.verify(account))
                .map_err(|_| corrupt())
        })
        .transpose()
}

fn corrupt() -> Error {
    Error::Corrupt {
        table: "meta",
        row: crate::error::Row::Named("device_list"),
    }
}
