//! Linked devices in the store: device lists, a session per device,
//! fan-out with "sent" copies, devices no list vouches for, removal.
#![cfg(test)]

mod common;

use common::{T0, options};
use sotto_core::{DeviceId, DeviceList, IdentityKey, SignedDeviceList};
use sotto_store::{
    DeliveryState, Direction, Envelope, Error, OutboxEntry, PeerDevice, Received, Store,
};

/// One account's two devices: the phone (primary, holds the account key)
/// and a laptop linked to it.
struct Account {
    phone: Store,
    laptop: Store,
    account: IdentityKey,
    laptop_id: DeviceId,
    list: SignedDeviceList,
}

fn account(dir: &std::path::Path, name: &str) -> Account {
    let mut phone = Store::create(dir.join(format!("{name}-phone.db")), b"pw", &options()).unwrap();
    let mut laptop =
        Store::create(dir.join(format!("{name}-laptop.db")), b"pw", &options()).unwrap();
    let account = phone.identity_key().unwrap();
    let first = phone.own_device_list(T0).unwrap().verify(&account).unwrap();
    let laptop_key = laptop.identity_key().unwrap();
    let (list, change) = phone
        .set_own_device_list(&first.with_device(&laptop_key, T0).unwrap())
        .unwrap();
    let laptop_id = list
        .verify(&account)
        .unwrap()
        .contains(&laptop_key)
        .unwrap();
    assert_eq!(change.added, vec![laptop_id]);
    assert_eq!(laptop.join_account(&account, &list).unwrap(), laptop_id);
    Account {
        phone,
        laptop,
        account,
        laptop_id,
        list,
    }
}

/// `from` starts a session with `device` (seen from the conversation with
/// `contact`), whose store is `to`.
fn connect(from: &mut Store, contact: &str, device: PeerDevice, to: &mut Store) {
    let published = to.fresh_one_time_prekeys(1, T0).unwrap();
    let bundle = to.prekey_bundle(Some(published[0].0)).unwrap();
    from.start_session_with(contact, device, &bundle).unwrap();
}

/// Alice and Bob with two devices each; every device knows the other
/// account's list and has a session with every device it sends to.
struct World {
    _dir: tempfile::TempDir,
    alice: Account,
    bob: Account,
}

/// `me`'s devices learn `them` (named `name`): the contact, its list, and
/// a session with each device `me`'s devices send to.
fn introduce(me: &mut Account, them: &mut Account, name: &str) {
    for store in [&mut me.phone, &mut me.laptop] {
        store.add_contact(name, name, Some(&them.account)).unwrap();
        store.set_contact_device_list(name, &them.list).unwrap();
    }
    let their_laptop = PeerDevice::Contact(them.laptop_id);
    let primary = PeerDevice::CONTACT_PRIMARY;
    connect(&mut me.phone, name, primary, &mut them.phone);
    connect(&mut me.phone, name, their_laptop, &mut them.laptop);
    connect(&mut me.laptop, name, primary, &mut them.phone);
    connect(&mut me.laptop, name, their_laptop, &mut them.laptop);
    connect(
        &mut me.phone,
        name,
        PeerDevice::Own(me.laptop_id),
        &mut me.laptop,
    );
    connect(
        &mut me.laptop,
        name,
        PeerDevice::Own(DeviceId::PRIMARY),
        &mut me.phone,
    );
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let mut alice = account(dir.path(), "alice");
    let mut bob = account(dir.path(), "bob");
    introduce(&mut alice, &mut bob, "bob");
    introduce(&mut bob, &mut alice, "alice");
    World {
        _dir: dir,
        alice,
        bob,
    }
}

fn envelope_of<'a>(
    entry: &'a OutboxEntry,
    conversation: &'a str,
    from: PeerDevice,
) -> Envelope<'a> {
    Envelope {
        id: entry.id,
        sender: conversation,
        device: from,
        ciphertext: &entry.ciphertext,
        sent_at: T0 + 5,
        received_at: T0 + 10,
    }
}

fn stored(store: &mut Store, envelope: &Envelope<'_>) -> sotto_store::Message {
    match store.receive(envelope).unwrap() {
        Received::Stored(m) => m,
        other => panic!("expected a stored message, got {other:?}"),
    }
}

/// Outbox entries not yet confirmed, sent or not.
fn waiting(store: &Store) -> usize {
    store.outbox().unwrap().len()
        + store
            .overdue(u64::MAX, &sotto_store::ResendPolicy::default())
            .unwrap()
            .len()
}

fn bodies(store: &Store, contact: &str) -> Vec<(Direction, String)> {
    let page = store.history(contact, None, 100).unwrap();
    let mut out: Vec<_> = page
        .messages()
        .map(|m| (m.direction, String::from_utf8(m.body.to_vec()).unwrap()))
        .collect();
    out.reverse();
    out
}

#[test]
fn a_message_fans_out_to_every_device_and_lands_in_one_conversation_on_each() {
    let mut w = world();
    let (a_laptop, b_laptop) = (w.alice.laptop_id, w.bob.laptop_id);

    let out = w
        .alice
        .phone
        .send_within("bob", b"hi Bob", T0, usize::MAX)
        .unwrap();
    assert!(out.without_session.is_empty());
    let targets: Vec<_> = out.entries.iter().map(|e| e.to).collect();
    assert_eq!(
        targets,
        vec![
            PeerDevice::CONTACT_PRIMARY,
            PeerDevice::Contact(b_laptop),
            PeerDevice::Own(a_laptop)
        ]
    );
    // Each copy under its own envelope id.
    assert_ne!(out.entries[0].id, out.entries[1].id);
    assert_eq!(w.alice.phone.outbox().unwrap().len(), 3);

    let from_phone = PeerDevice::CONTACT_PRIMARY;
    stored(
        &mut w.bob.phone,
        &envelope_of(&out.entries[0], "alice", from_phone),
    );
    stored(
        &mut w.bob.laptop,
        &envelope_of(&out.entries[1], "alice", from_phone),
    );
    // The sent copy: stored on Alice's laptop as her outgoing message.
    let copy = stored(
        &mut w.alice.laptop,
        &envelope_of(&out.entries[2], "bob", PeerDevice::Own(DeviceId::PRIMARY)),
    );
    assert_eq!(copy.direction, Direction::Outgoing);
    assert_eq!(copy.state, DeliveryState::Sent);
    assert_eq!(copy.timestamp, T0 + 5);

    // Bob answers from his laptop: Alice's two devices and his phone.
    let reply = w
        .bob
        .laptop
        .send_within("alice", b"hi Alice", T0, usize::MAX)
        .unwrap();
    let from_laptop = PeerDevice::Contact(b_laptop);
    stored(
        &mut w.alice.phone,
        &envelope_of(&reply.entries[0], "bob", from_laptop),
    );
    stored(
        &mut w.alice.laptop,
        &envelope_of(&reply.entries[1], "bob", from_laptop),
    );
    stored(
        &mut w.bob.phone,
        &envelope_of(&reply.entries[2], "alice", PeerDevice::Own(b_laptop)),
    );

    let alice_view = vec![
        (Direction::Outgoing, "hi Bob".to_owned()),
        (Direction::Incoming, "hi Alice".to_owned()),
    ];
    let bob_view = vec![
        (Direction::Incoming, "hi Bob".to_owned()),
        (Direction::Outgoing, "hi Alice".to_owned()),
    ];
    assert_eq!(bodies(&w.alice.phone, "bob"), alice_view);
    assert_eq!(bodies(&w.alice.laptop, "bob"), alice_view);
    assert_eq!(bodies(&w.bob.phone, "alice"), bob_view);
    assert_eq!(bodies(&w.bob.laptop, "alice"), bob_view);

    // Delivered again (the relay redelivers): stored once per device.
    for (store, entry, conversation, from) in [
        (&mut w.bob.phone, &out.entries[0], "alice", from_phone),
        (
            &mut w.alice.laptop,
            &out.entries[2],
            "bob",
            PeerDevice::Own(DeviceId::PRIMARY),
        ),
    ] {
        assert!(matches!(
            store
                .receive(&envelope_of(entry, conversation, from))
                .unwrap(),
            Received::Duplicate
        ));
    }
    assert_eq!(bodies(&w.bob.phone, "alice").len(), 2);
}

#[test]
fn receipts_confirm_per_device_and_a_copy_never_makes_a_message_delivered() {
    let mut w = world();
    let a_laptop = w.alice.laptop_id;
    let out = w
        .alice
        .phone
        .send_within("bob", b"x", T0, usize::MAX)
        .unwrap();
    for entry in &out.entries {
        w.alice.phone.mark_sent(&entry.id, T0 + 1).unwrap();
    }
    let copy = &out.entries[2];
    // A contact's receipt cannot name our own copy.
    assert!(
        w.alice
            .phone
            .mark_delivered("bob", &[copy.id])
            .unwrap()
            .is_empty()
    );
    assert_eq!(waiting(&w.alice.phone), 3);
    // Our laptop's receipt for its copy: the copy leaves the outbox,
    // the message's state is the contact's business.
    assert_eq!(
        w.alice
            .phone
            .mark_copies_delivered(a_laptop, &[copy.id])
            .unwrap(),
        1
    );
    assert_eq!(
        w.alice
            .phone
            .message("bob", out.seq)
            .unwrap()
            .unwrap()
            .state,
        DeliveryState::Sent
    );
    // Another device's id cannot clear a copy.
    assert_eq!(
        w.alice
            .phone
            .mark_copies_delivered(DeviceId::new(99), &[out.entries[1].id])
            .unwrap(),
        0
    );
    // Bob's laptop confirms: delivered.
    assert_eq!(
        w.alice
            .phone
            .mark_delivered("bob", &[out.entries[1].id])
            .unwrap(),
        vec![out.seq]
    );
    assert_eq!(waiting(&w.alice.phone), 1);
}

#[test]
fn a_device_no_list_vouches_for_is_refused_and_nothing_changes() {
    let mut w = world();
    let b_laptop = w.bob.laptop_id;
    let out = w
        .bob
        .laptop
        .send_within("alice", b"hello", T0, usize::MAX)
        .unwrap();
    // A device id Alice's list for Bob does not have, and a device the
    // list has but under another key.
    for device in [
        PeerDevice::Contact(DeviceId::new(42)),
        PeerDevice::Own(DeviceId::new(42)),
    ] {
        assert!(matches!(
            w.alice
                .phone
                .receive(&envelope_of(&out.entries[0], "bob", device)),
            Err(Error::UnknownDevice)
        ));
    }
    // Bob's laptop's message presented as Bob's phone's: the phone's
    // session does not open it, nothing is pinned or stored.
    assert!(
        w.alice
            .phone
            .receive(&envelope_of(
                &out.entries[0],
                "bob",
                PeerDevice::CONTACT_PRIMARY
            ))
            .is_err()
    );
    assert_eq!(w.alice.phone.message_count("bob").unwrap(), 0);
    // The real one goes through.
    stored(
        &mut w.alice.phone,
        &envelope_of(&out.entries[0], "bob", PeerDevice::Contact(b_laptop)),
    );

    // A first message from a new laptop of Bob's, before Alice holds a
    // list naming it: refused; once the newer list arrives: accepted.
    let dir = tempfile::tempdir().unwrap();
    let mut tablet = Store::create(dir.path().join("tablet.db"), b"pw", &options()).unwrap();
    let newer = w
        .bob
        .list
        .verify(&w.bob.account)
        .unwrap()
        .with_device(&tablet.identity_key().unwrap(), T0 + 1)
        .unwrap();
    let (newer, _) = w.bob.phone.set_own_device_list(&newer).unwrap();
    tablet.join_account(&w.bob.account, &newer).unwrap();
    let tablet_id = tablet.own_device_id().unwrap();
    tablet
        .add_contact("alice", "Alice", Some(&w.alice.account))
        .unwrap();
    connect(
        &mut tablet,
        "alice",
        PeerDevice::CONTACT_PRIMARY,
        &mut w.alice.phone,
    );
    let first = tablet.send("alice", b"from the tablet", T0).unwrap();
    let from_tablet = envelope_of(&first, "bob", PeerDevice::Contact(tablet_id));
    assert!(matches!(
        w.alice.phone.receive(&from_tablet),
        Err(Error::UnknownDevice)
    ));
    let change = w
        .alice
        .phone
        .set_contact_device_list("bob", &newer)
        .unwrap();
    assert_eq!(change.added, vec![tablet_id]);
    assert!(change.removed.is_empty());
    stored(&mut w.alice.phone, &from_tablet);
}

#[test]
fn contact_lists_are_verified_and_never_roll_back() {
    let mut w = world();
    // Signed by someone else (Alice's account signing "Bob's" list).
    let forged_list = DeviceList::primary(&w.bob.account, T0 + 9);
    let alice_identity = w.alice.phone.identity().unwrap();
    assert!(forged_list.sign(&alice_identity).is_err());
    let alices_own = w.alice.list.clone();
    assert!(matches!(
        w.alice.laptop.set_contact_device_list("bob", &alices_own),
        Err(Error::Protocol(sotto_core::Error::AccountMismatch))
    ));
    // The same list again, or an older one: refused.
    let older = DeviceList::primary(&w.bob.account, T0)
        .sign(&w.bob.phone.identity().unwrap())
        .unwrap();
    for stale in [&w.bob.list, &older] {
        assert!(matches!(
            w.alice.phone.set_contact_device_list("bob", stale),
            Err(Error::Protocol(
                sotto_core::Error::DeviceListRollback { .. }
                    | sotto_core::Error::DeviceListConflict { .. }
            ))
        ));
    }
    let held = w.alice.phone.contact_devices("bob").unwrap().unwrap();
    assert_eq!(held.version(), 2);
    // No list for a contact that is not there.
    assert!(matches!(
        w.alice.phone.set_contact_device_list("carol", &w.bob.list),
        Err(Error::UnknownContact)
    ));
}

#[test]
fn a_removed_device_gets_nothing_new_and_its_sessions_are_gone() {
    let mut w = world();
    let (a_laptop, b_laptop) = (w.alice.laptop_id, w.bob.laptop_id);
    // Something still waits for Bob's laptop and Alice's laptop.
    let waiting = w
        .alice
        .phone
        .send_within("bob", b"before", T0, usize::MAX)
        .unwrap();
    assert_eq!(waiting.entries.len(), 3);

    // Bob unlinks his laptop; Alice's phone learns it.
    let without = w
        .bob
        .list
        .verify(&w.bob.account)
        .unwrap()
        .without_device(b_laptop, T0 + 2)
        .unwrap();
    let (without, change) = w.bob.phone.set_own_device_list(&without).unwrap();
    assert_eq!(change.removed, vec![b_laptop]);
    assert!(
        !w.bob
            .phone
            .has_session_with("alice", PeerDevice::Own(b_laptop))
            .unwrap()
    );
    let change = w
        .alice
        .phone
        .set_contact_device_list("bob", &without)
        .unwrap();
    assert_eq!(change.removed, vec![b_laptop]);
    assert!(
        !w.alice
            .phone
            .has_session_with("bob", PeerDevice::Contact(b_laptop))
            .unwrap()
    );
    let left: Vec<_> = w
        .alice
        .phone
        .outbox()
        .unwrap()
        .into_iter()
        .map(|e| e.unwrap().to)
        .collect();
    assert_eq!(
        left,
        vec![PeerDevice::CONTACT_PRIMARY, PeerDevice::Own(a_laptop)]
    );

    // From now on: Bob's phone and Alice's laptop only.
    let out = w
        .alice
        .phone
        .send_within("bob", b"after", T0, usize::MAX)
        .unwrap();
    let targets: Vec<_> = out.entries.iter().map(|e| e.to).collect();
    assert_eq!(
        targets,
        vec![PeerDevice::CONTACT_PRIMARY, PeerDevice::Own(a_laptop)]
    );
    // And what the removed laptop sends is refused.
    let late = w.bob.laptop.send("alice", b"still here?", T0).unwrap();
    assert!(matches!(
        w.alice
            .phone
            .receive(&envelope_of(&late, "bob", PeerDevice::Contact(b_laptop))),
        Err(Error::UnknownDevice)
    ));

    // The laptop itself learns it was unlinked.
    let change = w
        .bob
        .laptop
        .adopt_own_device_list(&without)
        .unwrap()
        .unwrap();
    assert_eq!(change.removed, vec![b_laptop]);
    let own = w.bob.laptop.own_devices().unwrap().unwrap();
    assert!(own.device(w.bob.laptop.own_device_id().unwrap()).is_none());
}

#[test]
fn a_linked_device_speaks_for_the_account_and_joins_only_once() {
    let mut w = world();
    // Same account key, same safety number on both devices.
    assert_eq!(w.alice.laptop.account_key().unwrap(), w.alice.account);
    assert_ne!(w.alice.laptop.identity_key().unwrap(), w.alice.account);
    assert_eq!(
        w.alice.laptop.safety_number("bob").unwrap(),
        w.alice.phone.safety_number("bob").unwrap()
    );
    assert_eq!(w.alice.phone.own_device_id().unwrap(), DeviceId::PRIMARY);
    // Linked once; a second join is refused, so is a primary with devices.
    assert!(matches!(
        w.alice.laptop.join_account(&w.bob.account, &w.bob.list),
        Err(Error::AlreadyLinked | Error::UnknownDevice)
    ));
    let bob_list = w.bob.list.clone();
    assert!(matches!(
        w.alice.phone.join_account(&w.bob.account, &bob_list),
        Err(Error::UnknownDevice)
    ));
    // A list that does not name the device: refused.
    let dir = tempfile::tempdir().unwrap();
    let mut other = Store::create(dir.path().join("o.db"), b"pw", &options()).unwrap();
    assert!(matches!(
        other.join_account(&w.bob.account, &bob_list),
        Err(Error::UnknownDevice)
    ));
    assert_eq!(other.account_key().unwrap(), other.identity_key().unwrap());
    // The linked device signs no list of its own.
    assert!(
        w.alice
            .laptop
            .set_own_device_list(&w.alice.list.verify(&w.alice.account).unwrap())
            .is_err()
    );
    // Everything survives reopening.
    let path = dir.path().join("o.db");
    drop(other);
    let reopened = Store::open(&path, b"pw", &options()).unwrap();
    assert_eq!(reopened.own_device_id().unwrap(), DeviceId::PRIMARY);
}

#[test]
fn a_large_body_is_encrypted_once_for_every_device_and_a_bad_blob_changes_nothing() {
    let mut w = world();
    let body = vec![0x42u8; 200_000];
    let out = w
        .alice
        .phone
        .send_within("bob", &body, T0, usize::MAX)
        .unwrap();
    assert_eq!(out.entries.len(), 3);
    let blob = out.entries[0]
        .detached_body
        .clone()
        .expect("a detached body");
    for entry in &out.entries {
        // One blob for all, and each session carried only its key.
        assert!(std::sync::Arc::ptr_eq(
            entry.detached_body.as_ref().unwrap(),
            &blob
        ));
        assert!(entry.ciphertext.len() < 1024, "{}", entry.ciphertext.len());
    }
    assert!(blob.len() >= body.len());
    // The outbox gives the same bytes again (a retry after a restart).
    let waiting = w.alice.phone.outbox().unwrap();
    for entry in waiting {
        assert_eq!(entry.unwrap().detached_body.as_deref(), Some(&blob[..]));
    }

    // A blob altered (or swapped) by the relay: refused, nothing changed.
    let envelope = envelope_of(&out.entries[0], "alice", PeerDevice::CONTACT_PRIMARY);
    let mut altered = blob.to_vec();
    altered[100] ^= 1;
    for bad in [&altered[..], &blob[..blob.len() - 1], b"x"] {
        assert!(matches!(
            w.bob.phone.receive_with_body(&envelope, Some(bad)),
            Err(Error::Protocol(_))
        ));
    }
    assert_eq!(w.bob.phone.message_count("alice").unwrap(), 0);
    // The genuine blob: stored on every device, the session moved on once.
    let from_phone = PeerDevice::CONTACT_PRIMARY;
    for (store, entry, conversation, from) in [
        (&mut w.bob.phone, &out.entries[0], "alice", from_phone),
        (&mut w.bob.laptop, &out.entries[1], "alice", from_phone),
        (
            &mut w.alice.laptop,
            &out.entries[2],
            "bob",
            PeerDevice::Own(DeviceId::PRIMARY),
        ),
    ] {
        let stored = match store
            .receive_with_body(&envelope_of(entry, conversation, from), Some(&blob))
            .unwrap()
        {
            Received::Stored(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(stored.body.as_slice(), &body[..]);
    }
    // The next (small) message still decrypts: no chain key was lost.
    let next = w.alice.phone.send("bob", b"small", T0).unwrap();
    assert_eq!(
        stored(&mut w.bob.phone, &envelope_of(&next, "alice", from_phone))
            .body
            .as_slice(),
        b"small"
    );
}
