//! The account's own device list: created once, kept sealed, replaced only
//! by a newer list of the same account.
#![cfg(test)]

mod common;

use common::{ALICE_PASS, T0, options, pair};
use sotto_core::{DeviceId, DeviceList, IdentityKeyPair};
use sotto_store::{Error, Store};

#[test]
fn the_first_list_is_this_device_alone_and_stays_the_same() {
    let mut p = pair();
    let account = p.alice.identity_key().unwrap();
    let first = p.alice.own_device_list(T0).unwrap();
    let list = first.verify(&account).unwrap();
    assert_eq!(list.version(), 1);
    assert_eq!(list.devices().len(), 1);
    assert_eq!(list.contains(&account), Some(DeviceId::PRIMARY));
    // Later calls, and a reopened store, return the same signed list.
    assert_eq!(p.alice.own_device_list(T0 + 99).unwrap(), first);
    let path = p.alice_path();
    drop(p.alice);
    let mut alice = Store::open(&path, ALICE_PASS, &options()).unwrap();
    assert_eq!(alice.own_device_list(T0 + 99).unwrap(), first);
}

#[test]
fn only_a_newer_list_of_the_same_account_replaces_it() {
    let mut p = pair();
    let account = p.alice.identity_key().unwrap();
    let first = p
        .alice
        .own_device_list(T0)
        .unwrap()
        .verify(&account)
        .unwrap();
    let laptop = *IdentityKeyPair::from_seed(&[7; 32]).public();
    let second = first.with_device(&laptop, T0 + 1).unwrap();
    let (signed, change) = p.alice.set_own_device_list(&second).unwrap();
    assert_eq!(signed.verify(&account).unwrap(), second);
    assert_eq!(change.added, vec![second.contains(&laptop).unwrap()]);
    assert!(change.removed.is_empty());
    assert_eq!(p.alice.own_device_list(T0 + 2).unwrap(), signed);

    // The same version again, or an older one: refused, nothing changes.
    for stale in [&second, &first] {
        assert!(matches!(
            p.alice.set_own_device_list(stale),
            Err(Error::Protocol(_))
        ));
    }
    // Another account's list: refused.
    let bob = p.bob.identity_key().unwrap();
    let bobs = DeviceList::primary(&bob, T0);
    assert!(p.alice.set_own_device_list(&bobs).is_err());
    assert_eq!(p.alice.own_device_list(T0 + 3).unwrap(), signed);
}

#[test]
fn a_newer_list_signed_by_the_account_is_adopted_and_nothing_else() {
    let mut p = pair();
    let identity = p.alice.identity().unwrap();
    let account = *identity.public();
    let first = p.alice.own_device_list(T0).unwrap();
    let laptop = *IdentityKeyPair::from_seed(&[7; 32]).public();
    let newer = first
        .verify(&account)
        .unwrap()
        .with_device(&laptop, T0 + 1)
        .unwrap()
        .sign(&identity)
        .unwrap();
    // Signed by someone else, or not newer: not taken.
    let bob = p.bob.identity().unwrap();
    let bobs = DeviceList::primary(bob.public(), T0).sign(&bob).unwrap();
    assert!(p.alice.adopt_own_device_list(&bobs).is_err());
    assert!(p.alice.adopt_own_device_list(&first).unwrap().is_none());
    // Newer and the account's: taken, once.
    assert!(p.alice.adopt_own_device_list(&newer).unwrap().is_some());
    assert!(p.alice.adopt_own_device_list(&newer).unwrap().is_none());
    assert_eq!(p.alice.own_device_list(T0 + 2).unwrap(), newer);
}
