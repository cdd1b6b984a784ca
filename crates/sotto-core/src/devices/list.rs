//! The device list: the device keys an account key vouches for
//! (docs/protocol.md, "Linked devices").
//!
//! ```text
//! DeviceList       = 0x01 || account(32) || u64be(version) || u64be(issued_at)
//!                    || u8(n) || n * (u32be(id) || device key(32) || u64be(added_at))
//! SignedDeviceList = DeviceList || Ed25519-Sign(account, "sotto/device-list/v1" || DeviceList)
//! ```

use super::DeviceId;
use crate::error::{Error, Result};
use crate::keys::{IdentityKey, IdentityKeyPair, Signature};
use crate::wire::Reader;

/// Format byte of an encoded device list.
pub const DEVICE_LIST_VERSION: u8 = 0x01;
/// The most devices one account can have.
pub const MAX_DEVICES: usize = 16;
/// What the account key signs in front of an encoded device list, so that
/// its signature cannot be taken for one over anything else.
pub const DEVICE_LIST_SIGNATURE_CONTEXT: &[u8] = b"sotto/device-list/v1";
/// Bytes of a list before its devices.
const HEADER_LEN: usize = 1 + 32 + 8 + 8 + 1;
/// Bytes of one device entry.
const DEVICE_LEN: usize = 4 + 32 + 8;
/// Length of an Ed25519 signature.
const SIGNATURE_LEN: usize = 64;
/// The longest signed device list ([`MAX_DEVICES`] devices): 818 bytes.
pub const MAX_SIGNED_DEVICE_LIST_LEN: usize = HEADER_LEN + MAX_DEVICES * DEVICE_LEN + SIGNATURE_LEN;

/// One device of an account: its id, its own Ed25519 identity key (which
/// owns its prekeys and its relay mailbox), and when it was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Device {
    /// The device's id in the list.
    pub id: DeviceId,
    /// The device's identity key.
    pub identity: IdentityKey,
    /// When the device was added, in milliseconds since the Unix epoch (as
    /// the account device's clock said; informative only).
    pub added_at: u64,
}

impl Device {
    /// A device entry.
    pub fn new(id: DeviceId, identity: IdentityKey, added_at: u64) -> Self {
        Self {
            id,
            identity,
            added_at,
        }
    }
}

/// The devices of one account at one version, as the account key signs
/// them.
///
/// Every list satisfies the rules of docs/protocol.md: 1 to
/// [`MAX_DEVICES`] devices, ids unique and kept in ascending order, device
/// keys unique, version at least 1. They are checked when a list is built
/// ([`new`](Self::new), [`with_device`](Self::with_device),
/// [`without_device`](Self::without_device)) and when one is decoded, and
/// the fields cannot be changed afterwards.
///
/// The version orders lists: a contact keeps the highest version it has
/// seen and refuses older ones ([`supersedes`](Self::supersedes)).
/// `issued_at` (milliseconds since the Unix epoch) is informative.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceList {
    account: IdentityKey,
    version: u64,
    issued_at: u64,
    devices: Vec<Device>,
}

impl DeviceList {
    /// A list from its parts. `devices` may come in any order: the list
    /// keeps them sorted by id. Refused if it breaks a rule of the list.
    pub fn new(
        account: IdentityKey,
        version: u64,
        issued_at: u64,
        mut devices: Vec<Device>,
    ) -> Result<Self> {
        devices.sort_by_key(|d| d.id);
        let list = Self {
            account,
            version,
            issued_at,
            devices,
        };
        list.check()?;
        Ok(list)
    }

    /// The first list of an account: version 1, one device
    /// ([`DeviceId::PRIMARY`]) whose key is the account key itself. A
    /// profile made before devices existed is exactly this account.
    pub fn primary(account: &IdentityKey, now: u64) -> Self {
        Self {
            account: *account,
            version: 1,
            issued_at: now,
            devices: vec![Device::new(DeviceId::PRIMARY, *account, now)],
        }
    }

    /// The account key that signs this list.
    pub fn account(&self) -> &IdentityKey {
        &self.account
    }

    /// The version: every change of the list increases it.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the list was made, in milliseconds since the Unix epoch.
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// The devices, in ascending order of id.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// The device with this id.
    pub fn device(&self, id: DeviceId) -> Option<&Device> {
        self.devices.iter().find(|d| d.id == id)
    }

    /// The id of the device with this identity key, if the list has it.
    pub fn contains(&self, identity: &IdentityKey) -> Option<DeviceId> {
        self.devices
            .iter()
            .find(|d| d.identity == *identity)
            .map(|d| d.id)
    }

    /// The encoding the account key signs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.devices.len() * DEVICE_LEN);
        out.push(DEVICE_LIST_VERSION);
        out.extend_from_slice(self.account.as_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        // At most MAX_DEVICES (16): every list is checked when it is made.
        out.push(u8::try_from(self.devices.len()).unwrap_or(u8::MAX));
        for d in &self.devices {
            out.extend_from_slice(&d.id.get().to_be_bytes());
            out.extend_from_slice(d.identity.as_bytes());
            out.extend_from_slice(&d.added_at.to_be_bytes());
        }
        out
    }

    /// Strict decoding of an unsigned list: every rule of the list, every
    /// key a valid Ed25519 public key, no trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let list = Self::read(&mut r)?;
        r.finish()?;
        Ok(list)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let format = r.u8()?;
        if format != DEVICE_LIST_VERSION {
            return Err(Error::UnsupportedVersion(format));
        }
        let account = IdentityKey::from_bytes(r.array::<32>()?)?;
        let version = r.u64()?;
        if version == 0 {
            return Err(Error::DeviceListVersionZero);
        }
        let issued_at = r.u64()?;
        let count = usize::from(r.u8()?);
        check_count(count)?;
        let mut devices = Vec::with_capacity(count);
        for _ in 0..count {
            let id = DeviceId::new(r.u32()?);
            let identity = IdentityKey::from_bytes(r.array::<32>()?)?;
            let added_at = r.u64()?;
            devices.push(Device::new(id, identity, added_at));
        }
        // Not sorted here: an encoding out of order is refused, not mended.
        let list = Self {
            account,
            version,
            issued_at,
            devices,
        };
        list.check()?;
        Ok(list)
    }

    /// The rules of a list, on a list whose devices are meant to be sorted.
    fn check(&self) -> Result<()> {
        if self.version == 0 {
            return Err(Error::DeviceListVersionZero);
        }
        check_count(self.devices.len())?;
        for (i, device) in self.devices.iter().enumerate() {
            if let Some(previous) = i.checked_sub(1).and_then(|p| self.devices.get(p)) {
                if device.id == previous.id {
                    return Err(Error::DuplicateDeviceId(device.id));
                }
                if device.id < previous.id {
                    return Err(Error::DeviceIdsOutOfOrder {
                        previous: previous.id,
                        next: device.id,
                    });
                }
            }
            let mut earlier = self.devices.iter().take(i);
            if let Some(first) = earlier.find(|e| e.identity == device.identity) {
                return Err(Error::DuplicateDeviceKey {
                    first: first.id,
                    second: device.id,
                });
            }
        }
        Ok(())
    }

    /// Signs the list with the account key. Refused
    /// ([`Error::AccountMismatch`]) if `account` is not the list's account.
    pub fn sign(&self, account: &IdentityKeyPair) -> Result<SignedDeviceList> {
        if *account.public() != self.account {
            return Err(Error::AccountMismatch);
        }
        let signature = account.sign(&signed_message(&self.to_bytes()));
        Ok(SignedDeviceList {
            list: self.clone(),
            signature,
        })
    }

    /// Whether this list may replace `current`, the list held for the same
    /// account (`None` when none is held yet): same account, strictly
    /// higher version.
    ///
    /// Refusals: [`Error::AccountMismatch`];
    /// [`Error::DeviceListRollback`] for a version that is not higher
    /// (receiving the held list again gives equal versions: nothing new);
    /// [`Error::DeviceListConflict`] for a different list with the same
    /// version, which only a second signature with the account key can
    /// make (a restored backup, or a stolen key): worth telling the user.
    pub fn supersedes(&self, current: Option<&DeviceList>) -> Result<()> {
        let Some(current) = current else {
            return Ok(());
        };
        if current.account != self.account {
            return Err(Error::AccountMismatch);
        }
        if self.version > current.version {
            Ok(())
        } else if self.version == current.version && self != current {
            Err(Error::DeviceListConflict {
                version: self.version,
            })
        } else {
            Err(Error::DeviceListRollback {
                current: current.version,
                offered: self.version,
            })
        }
    }

    /// The next version of the list, with `identity` added as a new device
    /// (added and issued at `now`).
    ///
    /// The new device's id is the new version if that id is free (so an id
    /// is never given twice by lists made here: versions only grow),
    /// otherwise the smallest free one above the largest id, otherwise the
    /// smallest free one. Find it with [`contains`](Self::contains).
    /// Refused if the key is listed already
    /// ([`Error::DeviceAlreadyListed`]) or the list is full
    /// ([`Error::TooManyDevices`]).
    pub fn with_device(&self, identity: &IdentityKey, now: u64) -> Result<DeviceList> {
        if let Some(id) = self.contains(identity) {
            return Err(Error::DeviceAlreadyListed(id));
        }
        let count = self.devices.len() + 1;
        check_count(count)?;
        let version = self.next_version()?;
        let id = self.free_id(version);
        let mut devices = self.devices.clone();
        devices.push(Device::new(id, *identity, now));
        DeviceList::new(self.account, version, now, devices)
    }

    /// The next version of the list, without device `id` (issued at
    /// `now`). Refused if the list has no such device
    /// ([`Error::UnknownDevice`]) or it is the last one
    /// ([`Error::EmptyDeviceList`]).
    pub fn without_device(&self, id: DeviceId, now: u64) -> Result<DeviceList> {
        if self.device(id).is_none() {
            return Err(Error::UnknownDevice(id));
        }
        let devices = self
            .devices
            .iter()
            .filter(|d| d.id != id)
            .copied()
            .collect();
        DeviceList::new(self.account, self.next_version()?, now, devices)
    }

    fn next_version(&self) -> Result<u64> {
        self.version
            .checked_add(1)
            .ok_or(Error::DeviceListVersionExhausted)
    }

    /// An id no device of this list has (see [`with_device`](Self::with_device)).
    fn free_id(&self, version: u64) -> DeviceId {
        let by_version = u32::try_from(version).ok().map(DeviceId::new);
        let after_last = self
            .devices
            .last()
            .and_then(|d| d.id.get().checked_add(1))
            .map(DeviceId::new);
        // At most MAX_DEVICES ids are taken, so the search ends within
        // MAX_DEVICES + 1 steps; the fallback is never reached.
        by_version
            .into_iter()
            .chain(after_last)
            .chain((0..=u32::MAX).map(DeviceId::new))
            .find(|id| self.device(*id).is_none())
            .unwrap_or(DeviceId::PRIMARY)
    }
}

fn check_count(count: usize) -> Result<()> {
    if count == 0 {
        return Err(Error::EmptyDeviceList);
    }
    if count > MAX_DEVICES {
        return Err(Error::TooManyDevices {
            count,
            max: MAX_DEVICES,
        });
    }
    Ok(())
}

/// `"sotto/device-list/v1" || encoding`: what the account key signs.
fn signed_message(encoding: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(DEVICE_LIST_SIGNATURE_CONTEXT.len() + encoding.len());
    message.extend_from_slice(DEVICE_LIST_SIGNATURE_CONTEXT);
    message.extend_from_slice(encoding);
    message
}

/// A device list with the account key's signature:
/// `encoding || signature(64)`.
///
/// Decoding checks the structure and every rule of the list, not the
/// signature: only [`verify`](Self::verify), against the account key the
/// caller has pinned, gives the list out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDeviceList {
    list: DeviceList,
    signature: Signature,
}

impl SignedDeviceList {
    /// `encoding || signature`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.list.to_bytes();
        out.extend_from_slice(self.signature.as_bytes());
        out
    }

    /// Strict decoding (the signature is checked by [`verify`](Self::verify)).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let list = DeviceList::read(&mut r)?;
        let signature = Signature::from_bytes(*r.array::<SIGNATURE_LEN>()?);
        r.finish()?;
        Ok(Self { list, signature })
    }

    /// The list, if it is the list of `expected_account` (the account key
    /// the caller pinned, i.e. the address) and the signature verifies
    /// under it. [`Error::AccountMismatch`] or [`Error::InvalidSignature`]
    /// otherwise. Whether it may replace the list held is
    /// [`DeviceList::supersedes`].
    pub fn verify(&self, expected_account: &IdentityKey) -> Result<DeviceList> {
        if self.list.account != *expected_account {
            return Err(Error::AccountMismatch);
        }
        expected_account.verify(&signed_message(&self.list.to_bytes()), &self.signature)?;
        Ok(self.list.clone())
    }

    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The account the list claims to belong to, before anything is
    /// verified: only to pick the key to [`verify`](Self::verify) against
    /// (the one pinned for that account), never to trust the list.
    pub fn claimed_account(&self) -> &IdentityKey {
        &self.list.account
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> IdentityKeyPair {
        IdentityKeyPair::from_seed(&[seed; 32])
    }

    fn pk(seed: u8) -> IdentityKey {
        *key(seed).public()
    }

    /// A list of `n` devices, the first of them the account's own.
    fn list_of(n: u8) -> DeviceList {
        let mut list = DeviceList::primary(&pk(1), 1_000);
        for i in 1..n {
            list = list.with_device(&pk(10 + i), 1_000 + u64::from(i)).unwrap();
        }
        list
    }

    #[test]
    fn a_primary_list_is_version_one_with_the_account_key_as_device_one() {
        let list = DeviceList::primary(&pk(1), 42);
        assert_eq!(list.version(), 1);
        assert_eq!(list.issued_at(), 42);
        assert_eq!(list.account(), &pk(1));
        assert_eq!(list.devices(), &[Device::new(DeviceId::PRIMARY, pk(1), 42)]);
        assert_eq!(list.contains(&pk(1)), Some(DeviceId::PRIMARY));
        assert_eq!(list.contains(&pk(2)), None);
    }

    #[test]
    fn encoding_is_the_documented_layout_and_round_trips() {
        let list = list_of(2);
        let bytes = list.to_bytes();
        assert_eq!(bytes.len(), HEADER_LEN + 2 * DEVICE_LEN);
        assert_eq!(bytes[0], 0x01);
        assert_eq!(&bytes[1..33], pk(1).as_bytes());
        assert_eq!(&bytes[33..41], &2u64.to_be_bytes());
        assert_eq!(&bytes[41..49], &1_001u64.to_be_bytes());
        assert_eq!(bytes[49], 2);
        assert_eq!(&bytes[50..54], &1u32.to_be_bytes());
        assert_eq!(&bytes[54..86], pk(1).as_bytes());
        assert_eq!(&bytes[86..94], &1_000u64.to_be_bytes());
        assert_eq!(&bytes[94..98], &2u32.to_be_bytes());
        assert_eq!(&bytes[98..130], pk(11).as_bytes());
        assert_eq!(DeviceList::from_bytes(&bytes).unwrap(), list);
    }

    #[test]
    fn construction_sorts_devices_and_enforces_the_rules() {
        let d = |id, seed| Device::new(DeviceId::new(id), pk(seed), 0);
        let list = DeviceList::new(pk(1), 3, 0, vec![d(5, 2), d(2, 3)]).unwrap();
        let ids: Vec<u32> = list.devices().iter().map(|d| d.id.get()).collect();
        assert_eq!(ids, [2, 5]);
        assert_eq!(
            DeviceList::new(pk(1), 1, 0, vec![]),
            Err(Error::EmptyDeviceList)
        );
        assert_eq!(
            DeviceList::new(pk(1), 0, 0, vec![d(1, 2)]),
            Err(Error::DeviceListVersionZero)
        );
        assert_eq!(
            DeviceList::new(pk(1), 1, 0, vec![d(4, 2), d(4, 3)]),
            Err(Error::DuplicateDeviceId(DeviceId::new(4)))
        );
        assert_eq!(
            DeviceList::new(pk(1), 1, 0, vec![d(4, 2), d(3, 2)]),
            Err(Error::DuplicateDeviceKey {
                first: DeviceId::new(3),
                second: DeviceId::new(4)
            })
        );
        let seventeen = (0..17).map(|i| d(i, 40 + i as u8)).collect();
        assert_eq!(
            DeviceList::new(pk(1), 1, 0, seventeen),
            Err(Error::TooManyDevices { count: 17, max: 16 })
        );
        let sixteen = (0..16).map(|i| d(i, 40 + i as u8)).collect();
        assert!(DeviceList::new(pk(1), 1, 0, sixteen).is_ok());
    }

    #[test]
    fn decoding_refuses_every_broken_rule() {
        let good = list_of(3).to_bytes();
        // Device entries start at 50; ids at 50, 94, 138; keys 4 bytes later.
        let patched = |at: usize, with: &[u8]| {
            let mut b = good.clone();
            b[at..at + with.len()].copy_from_slice(with);
            b
        };
        assert_eq!(
            DeviceList::from_bytes(&patched(0, &[0x02])),
            Err(Error::UnsupportedVersion(2))
        );
        assert_eq!(
            DeviceList::from_bytes(&patched(33, &0u64.to_be_bytes())),
            Err(Error::DeviceListVersionZero)
        );
        assert_eq!(
            DeviceList::from_bytes(&patched(94, &1u32.to_be_bytes())),
            Err(Error::DuplicateDeviceId(DeviceId::new(1)))
        );
        assert_eq!(
            DeviceList::from_bytes(&patched(138, &0u32.to_be_bytes())),
            Err(Error::DeviceIdsOutOfOrder {
                previous: DeviceId::new(2),
                next: DeviceId::new(0)
            })
        );
        assert_eq!(
            DeviceList::from_bytes(&patched(142, pk(1).as_bytes())),
            Err(Error::DuplicateDeviceKey {
                first: DeviceId::new(1),
                second: DeviceId::new(3)
            })
        );
        // The identity point: small order.
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        assert_eq!(
            DeviceList::from_bytes(&patched(98, &identity_point)),
            Err(Error::InvalidIdentityKey)
        );
        assert_eq!(
            DeviceList::from_bytes(&patched(1, &identity_point)),
            Err(Error::InvalidIdentityKey)
        );
        assert_eq!(
            DeviceList::from_bytes(&patched(49, &[0])),
            Err(Error::EmptyDeviceList)
        );
        assert_eq!(
            DeviceList::from_bytes(&patched(49, &[17])),
            Err(Error::TooManyDevices { count: 17, max: 16 })
        );
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(
            DeviceList::from_bytes(&longer),
            Err(Error::TrailingBytes(1))
        );
        for len in 0..good.len() {
            assert!(
                matches!(
                    DeviceList::from_bytes(&good[..len]),
                    Err(Error::Truncated { .. })
                ),
                "length {len}"
            );
        }
    }

    #[test]
    fn a_signed_list_verifies_only_under_its_account() {
        let list = list_of(2);
        let signed = list.sign(&key(1)).unwrap();
        let bytes = signed.to_bytes();
        assert_eq!(bytes.len(), list.to_bytes().len() + 64);
        let decoded = SignedDeviceList::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, signed);
        assert_eq!(decoded.verify(&pk(1)).unwrap(), list);
        assert_eq!(decoded.verify(&pk(2)), Err(Error::AccountMismatch));
        // The signature covers the context string and the whole encoding.
        let mut message = b"sotto/device-list/v1".to_vec();
        message.extend_from_slice(&list.to_bytes());
        pk(1).verify(&message, signed.signature()).unwrap();
        for at in [0, 40, 49, bytes.len() - 70, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            let refused = SignedDeviceList::from_bytes(&bad).and_then(|s| s.verify(&pk(1)));
            assert!(refused.is_err(), "byte {at} flipped");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            SignedDeviceList::from_bytes(&longer),
            Err(Error::TrailingBytes(1))
        );
    }

    #[test]
    fn only_the_account_key_signs_its_list() {
        assert_eq!(list_of(2).sign(&key(2)), Err(Error::AccountMismatch));
    }

    #[test]
    fn a_signature_by_another_key_over_the_same_list_is_refused() {
        let list = list_of(2);
        let mut message = b"sotto/device-list/v1".to_vec();
        message.extend_from_slice(&list.to_bytes());
        let mut forged = list.to_bytes();
        forged.extend_from_slice(key(2).sign(&message).as_bytes());
        let decoded = SignedDeviceList::from_bytes(&forged).unwrap();
        assert_eq!(decoded.verify(&pk(1)), Err(Error::InvalidSignature));
    }

    #[test]
    fn only_a_strictly_newer_list_of_the_same_account_supersedes() {
        let v1 = list_of(1);
        let v2 = v1.with_device(&pk(20), 2_000).unwrap();
        assert_eq!(v2.version(), 2);
        assert_eq!(v1.supersedes(None), Ok(()));
        assert_eq!(v2.supersedes(Some(&v1)), Ok(()));
        assert_eq!(
            v1.supersedes(Some(&v2)),
            Err(Error::DeviceListRollback {
                current: 2,
                offered: 1
            })
        );
        assert_eq!(
            v2.supersedes(Some(&v2)),
            Err(Error::DeviceListRollback {
                current: 2,
                offered: 2
            })
        );
        let other_v2 = v1.with_device(&pk(21), 2_000).unwrap();
        assert_eq!(
            other_v2.supersedes(Some(&v2)),
            Err(Error::DeviceListConflict { version: 2 })
        );
        let stranger = DeviceList::primary(&pk(9), 0)
            .with_device(&pk(20), 0)
            .unwrap()
            .with_device(&pk(21), 0)
            .unwrap();
        assert_eq!(stranger.supersedes(Some(&v2)), Err(Error::AccountMismatch));
    }

    #[test]
    fn adding_and_removing_devices_bumps_the_version_and_never_reuses_an_id() {
        let v1 = DeviceList::primary(&pk(1), 10);
        let v2 = v1.with_device(&pk(2), 20).unwrap();
        assert_eq!(
            (v2.version(), v2.issued_at(), v2.contains(&pk(2))),
            (2, 20, Some(DeviceId::new(2)))
        );
        assert_eq!(v2.device(DeviceId::new(2)).unwrap().added_at, 20);
        let v3 = v2.without_device(DeviceId::new(2), 30).unwrap();
        assert_eq!((v3.version(), v3.issued_at()), (3, 30));
        assert_eq!(v3.contains(&pk(2)), None);
        let v4 = v3.with_device(&pk(3), 40).unwrap();
        assert_eq!(v4.contains(&pk(3)), Some(DeviceId::new(4)));
        assert_eq!(
            v4.with_device(&pk(3), 50),
            Err(Error::DeviceAlreadyListed(DeviceId::new(4)))
        );
        assert_eq!(
            v4.without_device(DeviceId::new(2), 50),
            Err(Error::UnknownDevice(DeviceId::new(2)))
        );
        assert_eq!(
            v1.without_device(DeviceId::PRIMARY, 50),
            Err(Error::EmptyDeviceList)
        );
    }

    #[test]
    fn a_full_list_takes_no_more_devices() {
        let full = list_of(16);
        assert_eq!(full.devices().len(), MAX_DEVICES);
        assert_eq!(
            full.with_device(&pk(99), 0),
            Err(Error::TooManyDevices { count: 17, max: 16 })
        );
        assert_eq!(
            full.sign(&key(1)).unwrap().to_bytes().len(),
            MAX_SIGNED_DEVICE_LIST_LEN
        );
    }

    #[test]
    fn ids_stay_unique_when_the_version_is_taken_or_out_of_range() {
        let d = |id, seed| Device::new(DeviceId::new(id), pk(seed), 0);
        // Version 2's id is taken: the next id after the largest.
        let list = DeviceList::new(pk(1), 1, 0, vec![d(1, 1), d(2, 2)]).unwrap();
        let next = list.with_device(&pk(3), 0).unwrap();
        assert_eq!(next.contains(&pk(3)), Some(DeviceId::new(3)));
        // Versions beyond u32 and the largest id taken: the smallest free id.
        let list = DeviceList::new(pk(1), u64::MAX - 1, 0, vec![d(0, 1), d(u32::MAX, 2)]).unwrap();
        let next = list.with_device(&pk(3), 0).unwrap();
        assert_eq!(next.contains(&pk(3)), Some(DeviceId::new(1)));
        assert_eq!(next.version(), u64::MAX);
        assert_eq!(
            next.with_device(&pk(4), 0),
            Err(Error::DeviceListVersionExhausted)
        );
        assert_eq!(
            next.without_device(DeviceId::new(0), 0),
            Err(Error::DeviceListVersionExhausted)
        );
    }
}
