//! What a newer device list unlinks (docs/relay.md §5, "Device lists";
//! docs/devices.md §5, "Unlinking").
//!
//! When an account publishes a newer device list, every device the stored
//! list named and the new one does not is unlinked, and the relay removes
//! its mailbox, so a contact that never hears of the new list cannot keep
//! queueing envelopes for a device the account no longer vouches for.
//! [`NewDeviceList::compare`] works out which devices those are; each
//! backend removes their mailboxes in the same atomic step that stores the
//! new list ([`MailboxStore::publish_device_list`](super::MailboxStore::publish_device_list)),
//! except an account's own mailbox (one with a device list stored for it)
//! and a mailbox another account's stored list still names.
//!
//! Those two exceptions matter because a device list is signed by the
//! account key alone, not by the devices it names: any account can name
//! any key in its list. Without them, an account could name someone else's
//! device, or someone else's account, in one list and leave it out of the
//! next, and have the relay delete that mailbox with its queued envelopes.

use sotto_core::{DeviceList, SignedDeviceList};

use crate::address::MailboxAddress;

/// A device list about to be stored for an account, compared with the one
/// it replaces.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct NewDeviceList {
    /// Mailboxes of every device the new list names, the account's own
    /// included: what the store records as claimed by the account from now
    /// on (empty if the new list does not decode).
    pub(crate) listed: Vec<MailboxAddress>,
    /// Mailboxes of the devices the stored list named and the new one does
    /// not (compared by identity key). Never the account's own mailbox,
    /// even if a list leaves the account key out.
    pub(crate) unlinked: Vec<MailboxAddress>,
}

impl NewDeviceList {
    /// Compares `new` with `stored`, the list stored for `owner` so far (if
    /// any). Both are decoded with [`decode`]. A list that does not decode
    /// is treated as naming no device: a stored one that does not decode
    /// leaves nothing to compare, so nothing is unlinked (the relay cannot
    /// tell which devices left, and removing mailboxes on a guess would
    /// lose envelopes); a new one that does not decode unlinks nothing
    /// either and claims no mailbox. Neither panics.
    pub(crate) fn compare(owner: &MailboxAddress, stored: Option<&[u8]>, new: &[u8]) -> Self {
        let Some(new) = decode(owner, new) else {
            return Self::default();
        };
        let listed = new
            .devices()
            .iter()
            .map(|d| MailboxAddress::of(&d.identity))
            .collect();
        let unlinked = stored
            .and_then(|stored| decode(owner, stored))
            .map(|stored| {
                stored
                    .devices()
                    .iter()
                    .filter(|d| new.contains(&d.identity).is_none())
                    // The account key's own mailbox is never removed this
                    // way: both lists are `owner`'s, so its address is
                    // `owner`.
                    .filter(|d| d.identity != *new.account())
                    .map(|d| MailboxAddress::of(&d.identity))
                    .filter(|address| address != owner)
                    .collect()
            })
            .unwrap_or_default();
        Self { listed, unlinked }
    }
}

/// The devices of `list`, if it is a signed device list of the account
/// whose mailbox is `owner`: it decodes
/// ([`SignedDeviceList::from_bytes`]), the mailbox of the account key it
/// names is `owner`, and that key's signature verifies. `None` otherwise.
///
/// The server verified every list before storing it, against the key the
/// connection authenticated with; checking again here costs one signature
/// check per list, and means the store removes mailboxes only on the word
/// of a list the account key signed, whoever calls it.
fn decode(owner: &MailboxAddress, list: &[u8]) -> Option<DeviceList> {
    let signed = SignedDeviceList::from_bytes(list).ok()?;
    let account = *signed.claimed_account();
    if MailboxAddress::of(&account) != *owner {
        return None;
    }
    signed.verify(&account).ok()
}

#[cfg(test)]
pub(crate) mod test_lists {
    //! Signed device lists for the contract tests.

    use sotto_core::{Device, DeviceId, DeviceList, IdentityKeyPair};

    /// `account`'s list at `version`, naming `devices` (ids 1, 2, ... in
    /// that order), signed by the account key.
    pub(crate) fn signed_list(
        account: &IdentityKeyPair,
        version: u64,
        devices: &[&IdentityKeyPair],
    ) -> Vec<u8> {
        let devices = devices
            .iter()
            .zip(1u32..)
            .map(|(device, id)| Device::new(DeviceId::new(id), *device.public(), 1_000))
            .collect();
        DeviceList::new(*account.public(), version, 2_000 + version, devices)
            .unwrap()
            .sign(account)
            .unwrap()
            .to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::test_lists::signed_list;
    use super::*;
    use sotto_core::IdentityKeyPair;

    fn key(seed: u8) -> IdentityKeyPair {
        IdentityKeyPair::from_seed(&[seed; 32])
    }

    fn mailbox(id: &IdentityKeyPair) -> MailboxAddress {
        MailboxAddress::of(id.public())
    }

    #[test]
    fn devices_left_out_are_unlinked_and_the_new_ones_are_listed() {
        let (account, d2, d3, d4) = (key(1), key(2), key(3), key(4));
        let owner = mailbox(&account);
        let stored = signed_list(&account, 2, &[&account, &d2, &d3]);
        let new = signed_list(&account, 3, &[&account, &d3, &d4]);
        let compared = NewDeviceList::compare(&owner, Some(&stored), &new);
        assert_eq!(compared.unlinked, [mailbox(&d2)]);
        assert_eq!(compared.listed, [owner, mailbox(&d3), mailbox(&d4)]);
        // Nothing stored: nothing to unlink.
        let first = NewDeviceList::compare(&owner, None, &new);
        assert!(first.unlinked.is_empty());
        assert_eq!(first.listed.len(), 3);
    }

    #[test]
    fn the_account_key_is_never_unlinked_even_when_a_list_leaves_it_out() {
        let (account, d2) = (key(1), key(2));
        let owner = mailbox(&account);
        let stored = signed_list(&account, 2, &[&account, &d2]);
        let without_account = signed_list(&account, 3, &[&d2]);
        let compared = NewDeviceList::compare(&owner, Some(&stored), &without_account);
        assert!(compared.unlinked.is_empty());
        assert_eq!(compared.listed, [mailbox(&d2)]);
    }

    #[test]
    fn lists_that_do_not_decode_or_are_not_the_owners_unlink_nothing() {
        let (account, d2, other) = (key(1), key(2), key(9));
        let owner = mailbox(&account);
        let good = signed_list(&account, 2, &[&account, &d2]);
        let later = signed_list(&account, 3, &[&account]);
        let mut forged = later.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let others = signed_list(&other, 3, &[&other]);
        for junk in [
            &b""[..],
            b"list v1",
            &good[..good.len() - 1],
            &forged,
            &others,
        ] {
            // As the stored list: nothing to compare.
            let compared = NewDeviceList::compare(&owner, Some(junk), &later);
            assert!(compared.unlinked.is_empty());
            assert_eq!(compared.listed, [owner]);
            // As the new list: nothing unlinked, nothing claimed.
            assert_eq!(
                NewDeviceList::compare(&owner, Some(&good), junk),
                NewDeviceList::default()
            );
        }
    }
}
