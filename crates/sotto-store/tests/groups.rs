//! Groups in the store: their records, a group message sent (one
//! transaction: sender key, history, outbox) and taken by the relay
//! recipient by recipient, a group message received once, crashes in
//! between, and what an archive leaves out.
#![cfg(test)]

mod common;

use std::sync::Arc;

use common::{T0, options};
use rand::SeedableRng;
use sotto_core::{BodyKey, IdentityKey, IdentityKeyPair};
use sotto_store::testing::FaultPoint;
use sotto_store::{
    DeliveryState, Direction, Error, GroupId, GroupReceive, GroupRecipient, GroupSend, Received,
    SendFailure, Store, StoredGroup,
};

const GROUP: GroupId = GroupId::from_bytes([0x42; 32]);

fn key(seed: u8) -> IdentityKey {
    let mut rng = rand::rngs::StdRng::from_seed([seed; 32]);
    *IdentityKeyPair::generate(&mut rng).public()
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s.db"), b"pw", &options()).unwrap();
    (dir, store)
}

fn group() -> StoredGroup {
    StoredGroup {
        id: GROUP,
        state: b"membership v1".to_vec(),
        sender_key: None,
        shared_with: Vec::new(),
        left: false,
    }
}

fn recipients() -> Vec<GroupRecipient> {
    (1..=3)
        .map(|i| GroupRecipient {
            device: key(i),
            account: key(i + 10),
        })
        .collect()
}

fn send<'a>(author: &'a IdentityKey, body: &'a [u8]) -> GroupSend<'a> {
    let body_key = BodyKey::from_bytes(&[5; 32]);
    let blob: Arc<[u8]> = body_key
        .seal(b"the encrypted group message")
        .unwrap()
        .into();
    GroupSend {
        group: GROUP,
        sender_key: b"sender key after one message",
        author,
        body,
        sent_at: T0,
        body_key,
        blob,
        recipients: recipients(),
    }
}

#[test]
fn a_group_is_stored_listed_and_deleted_with_everything_it_had() {
    let (_dir, mut store) = store();
    assert!(store.group(&GROUP).unwrap().is_none());
    store.put_group(&group()).unwrap();
    let stored = store.group(&GROUP).unwrap().unwrap();
    assert_eq!(stored.state, b"membership v1");
    assert_eq!(store.groups().unwrap().len(), 1);
    store
        .put_group_receiver(&GROUP, &key(1), b"receiver of device 1")
        .unwrap();
    assert_eq!(
        store
            .group_receiver(&GROUP, &key(1))
            .unwrap()
            .as_deref()
            .map(Vec::as_slice),
        Some(&b"receiver of device 1"[..])
    );
    assert!(store.group_receiver(&GROUP, &key(2)).unwrap().is_none());
    let me = key(9);
    store.send_group_message(send(&me, b"hello")).unwrap();

    assert!(store.delete_group(&GROUP).unwrap());
    assert!(store.group(&GROUP).unwrap().is_none());
    assert!(store.group_receiver(&GROUP, &key(1)).unwrap().is_none());
    assert!(store.group_outbox().unwrap().is_empty());
    assert!(
        store
            .group_history(&GROUP, None, 10)
            .unwrap()
            .entries
            .is_empty()
    );
    assert!(!store.delete_group(&GROUP).unwrap());
}

#[test]
fn a_group_message_is_stored_with_its_sender_key_and_sent_recipient_by_recipient() {
    let (_dir, mut store) = store();
    store.put_group(&group()).unwrap();
    let me = key(9);
    let entry = store.send_group_message(send(&me, b"hello group")).unwrap();
    assert_eq!(entry.seq, 1);
    assert_eq!(entry.recipients.len(), 3);
    let stored = store.group(&GROUP).unwrap().unwrap();
    assert_eq!(
        stored.sender_key.as_deref().map(Vec::as_slice),
        Some(&b"sender key after one message"[..])
    );
    let page = store.group_history(&GROUP, None, 10).unwrap();
    let message = page.messages().next().unwrap();
    assert_eq!(message.body.as_slice(), b"hello group");
    assert_eq!(message.author, Some(me));
    assert_eq!(message.direction, Direction::Outgoing);
    assert_eq!(message.state, DeliveryState::Pending);

    // The outbox after a restart: the same bytes under the same id.
    let pending = store.group_outbox().unwrap();
    let again = pending[0].as_ref().unwrap();
    assert_eq!((again.id, again.seq), (entry.id, entry.seq));
    assert_eq!(again.blob, entry.blob);
    assert_eq!(again.body_key.as_bytes(), entry.body_key.as_bytes());

    // Taken for two of three: still waiting, still Pending.
    assert!(
        !store
            .group_message_taken(&entry.id, &[key(1), key(2)])
            .unwrap()
    );
    let left = store.group_outbox().unwrap();
    assert_eq!(left[0].as_ref().unwrap().recipients.len(), 1);
    assert_eq!(
        store
            .group_history(&GROUP, None, 1)
            .unwrap()
            .messages()
            .next()
            .unwrap()
            .state,
        DeliveryState::Pending
    );
    // The last one refused for good: the message counts as sent, since
    // others took it.
    assert!(
        store
            .group_message_refused(&entry.id, &[key(3)], SendFailure::Rejected)
            .unwrap()
    );
    assert!(store.group_outbox().unwrap().is_empty());
    assert_eq!(
        store
            .group_history(&GROUP, None, 1)
            .unwrap()
            .messages()
            .next()
            .unwrap()
            .state,
        DeliveryState::Sent
    );
}

#[test]
fn a_group_message_nobody_took_fails() {
    let (_dir, mut store) = store();
    store.put_group(&group()).unwrap();
    let me = key(9);
    let entry = store.send_group_message(send(&me, b"to nobody")).unwrap();
    let all: Vec<IdentityKey> = entry.recipients.iter().map(|r| r.device).collect();
    assert!(
        store
            .group_message_refused(&entry.id, &all, SendFailure::Rejected)
            .unwrap()
    );
    assert_eq!(
        store
            .group_history(&GROUP, None, 1)
            .unwrap()
            .messages()
            .next()
            .unwrap()
            .state,
        DeliveryState::Failed(SendFailure::Rejected)
    );
}

#[test]
fn a_crash_before_the_send_commits_leaves_nothing_behind() {
    let (_dir, mut store) = store();
    store.put_group(&group()).unwrap();
    let me = key(9);
    store.inject_fault(FaultPoint::SendBeforeCommit);
    assert!(store.send_group_message(send(&me, b"lost")).is_err());
    assert!(store.group_outbox().unwrap().is_empty());
    assert!(store.group(&GROUP).unwrap().unwrap().sender_key.is_none());
    assert!(
        store
            .group_history(&GROUP, None, 10)
            .unwrap()
            .entries
            .is_empty()
    );
    // And the next send works.
    assert_eq!(store.send_group_message(send(&me, b"kept")).unwrap().seq, 1);
}

#[test]
fn sending_to_a_group_not_stored_or_left_is_refused() {
    let (_dir, mut store) = store();
    let me = key(9);
    assert!(matches!(
        store.send_group_message(send(&me, b"x")),
        Err(Error::NoSuchGroup)
    ));
    let mut left = group();
    left.left = true;
    store.put_group(&left).unwrap();
    assert!(matches!(
        store.send_group_message(send(&me, b"x")),
        Err(Error::NoSuchGroup)
    ));
}

fn received<'a>(device: &'a IdentityKey, author: &'a IdentityKey, id: u8) -> GroupReceive<'a> {
    GroupReceive {
        group: GROUP,
        device,
        author,
        receiver_state: b"receiver advanced",
        envelope_id: sotto_store::EnvelopeId([id; 16]),
        body: b"hi from a member",
        received_at: T0 + 5,
        own: false,
    }
}

#[test]
fn a_group_message_is_received_once_with_its_author_and_the_advanced_state() {
    let (_dir, mut store) = store();
    let (device, author) = (key(1), key(11));
    assert!(matches!(
        store.receive_group_message(received(&device, &author, 1)),
        Err(Error::NoSuchGroup)
    ));
    store.put_group(&group()).unwrap();
    let Received::Stored(message) = store
        .receive_group_message(received(&device, &author, 1))
        .unwrap()
    else {
        panic!("not stored");
    };
    assert_eq!(message.author, Some(author));
    assert_eq!(message.direction, Direction::Incoming);
    assert_eq!(
        store
            .group_receiver(&GROUP, &device)
            .unwrap()
            .as_deref()
            .map(Vec::as_slice),
        Some(&b"receiver advanced"[..])
    );
    // The same envelope again: a duplicate, nothing changes.
    assert!(matches!(
        store
            .receive_group_message(received(&device, &author, 1))
            .unwrap(),
        Received::Duplicate
    ));
    // The same envelope id from another device is another message.
    let other = key(2);
    assert!(matches!(
        store
            .receive_group_message(received(&other, &author, 1))
            .unwrap(),
        Received::Stored(_)
    ));
    let page = store.group_history(&GROUP, None, 10).unwrap();
    assert_eq!(page.messages().count(), 2);
    assert!(page.messages().all(|m| m.author == Some(author)));
}

#[test]
fn a_crash_after_decrypting_a_group_message_stores_nothing_and_it_comes_again() {
    let (_dir, mut store) = store();
    store.put_group(&group()).unwrap();
    let (device, author) = (key(1), key(11));
    store.inject_fault(FaultPoint::ReceiveAfterDecrypt);
    assert!(
        store
            .receive_group_message(received(&device, &author, 1))
            .is_err()
    );
    assert!(store.group_receiver(&GROUP, &device).unwrap().is_none());
    assert!(matches!(
        store
            .receive_group_message(received(&device, &author, 1))
            .unwrap(),
        Received::Stored(_)
    ));
}

#[test]
fn contact_ids_cannot_take_a_group_conversation_and_archives_leave_groups_out() {
    let (_dir, mut store) = store();
    assert!(matches!(
        store.add_contact(&sotto_store::group_conversation_id(&GROUP), "x", None),
        Err(Error::ReservedContactId)
    ));
    store.put_group(&group()).unwrap();
    let me = key(9);
    store
        .send_group_message(send(&me, b"in the group"))
        .unwrap();
    let mut archive = Vec::new();
    let summary = store
        .export_archive_with_key(
            &mut archive,
            &sotto_store::ArchiveKey::from_bytes(&[1; 32]),
            |_| {},
        )
        .unwrap();
    assert_eq!(summary.conversations, 0);
    assert_eq!(summary.messages, 0);
}

#[test]
fn a_control_message_travels_like_a_message_and_waits_apart_from_the_chat() {
    let mut p = common::pair();
    let first = p.alice_sends("hello bob");
    common::deliver(&first, "alice", &mut p.bob);
    let sent = p
        .alice
        .send_control("bob", b"a sender key", T0, usize::MAX)
        .unwrap();
    let entry = &sent.entries[0];
    assert!(entry.control);
    assert_eq!(entry.recipient, "bob");
    // After a restart the outbox says the same.
    let waiting: Vec<_> = p
        .alice
        .outbox()
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        waiting
            .iter()
            .any(|e| e.id == entry.id && e.control && e.recipient == "bob")
    );
    assert!(!waiting.iter().any(|e| e.id == first.id && e.control));
    // Alice's chat with Bob shows only the chat message.
    assert_eq!(
        p.alice.history("bob", None, 10).unwrap().messages().count(),
        1
    );

    let received = p
        .bob
        .receive_control(&common::envelope(entry, "alice"))
        .unwrap();
    let Received::Stored(control) = received else {
        panic!("not stored");
    };
    // Kept with the key of the device that sent it.
    assert_eq!(&control.body[32..], b"a sender key");
    assert_eq!(
        p.bob.history("alice", None, 10).unwrap().messages().count(),
        1
    );
    assert_eq!(p.bob.contacts_with_controls().unwrap(), ["alice"]);
    let waiting = p.bob.controls("alice").unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].body.as_slice(), b"a sender key");
    assert_eq!(
        &waiting[0].from_device,
        p.alice.identity().unwrap().public()
    );
    assert!(!waiting[0].own);
    // Delivered twice by the relay: a duplicate.
    assert!(matches!(
        p.bob
            .receive_control(&common::envelope(entry, "alice"))
            .unwrap(),
        Received::Duplicate
    ));
    assert!(p.bob.delete_control("alice", waiting[0].seq).unwrap());
    assert!(p.bob.controls("alice").unwrap().is_empty());
    assert!(p.bob.contacts_with_controls().unwrap().is_empty());
    // The session goes on.
    let next = p.alice_sends("still there?");
    assert_eq!(common::deliver(&next, "alice", &mut p.bob), "still there?");
}

#[test]
fn envelopes_set_aside_for_a_group_are_bounded_and_kept_in_order() {
    let (_dir, mut store) = store();
    store.put_group(&group()).unwrap();
    let n = sotto_store::MAX_DEFERRED_PER_GROUP + 10;
    for i in 0..n {
        store
            .defer_group_envelope(&GROUP, format!("envelope {i}").as_bytes(), T0)
            .unwrap();
    }
    let waiting = store.deferred_group_envelopes(&GROUP).unwrap();
    assert_eq!(waiting.len() as u64, sotto_store::MAX_DEFERRED_PER_GROUP);
    // The oldest went to make room; the rest in arrival order.
    assert_eq!(waiting[0].1.as_slice(), b"envelope 10");
    assert_eq!(
        waiting.last().unwrap().1.as_slice(),
        format!("envelope {}", n - 1).as_bytes()
    );
    assert!(
        store
            .delete_deferred_group_envelope(&GROUP, waiting[0].0)
            .unwrap()
    );
    assert_eq!(
        store.deferred_group_envelopes(&GROUP).unwrap().len() as u64,
        sotto_store::MAX_DEFERRED_PER_GROUP - 1
    );
    // Nothing of it is in the group's history.
    assert!(
        store
            .group_history(&GROUP, None, 10)
            .unwrap()
            .entries
            .is_empty()
    );
}

#[test]
fn a_control_confirmed_by_its_device_leaves_the_outbox_and_the_store() {
    let mut p = common::pair();
    let first = p.alice_sends("hello bob");
    common::deliver(&first, "alice", &mut p.bob);
    let sent = p
        .alice
        .send_control("bob", b"a sender key", T0, usize::MAX)
        .unwrap();
    let entry = &sent.entries[0];
    p.alice.mark_sent(&entry.id, T0 + 1).unwrap();
    // Someone else's receipt changes nothing.
    let eve = key(77);
    assert!(
        p.alice
            .confirm_delivery(&eve, &[entry.id])
            .unwrap()
            .is_empty()
    );
    assert!(
        p.alice
            .outbox()
            .unwrap()
            .iter()
            .any(|e| e.as_ref().is_ok_and(|e| e.id == entry.id))
            || p.alice
                .overdue(u64::MAX, &Default::default())
                .unwrap()
                .iter()
                .any(|e| e.as_ref().is_ok_and(|e| e.id == entry.id))
    );
    // Bob's device confirms it: not a chat message delivered, and gone.
    let bob = *p.bob.identity().unwrap().public();
    let confirmed = p.alice.confirm_delivery(&bob, &[entry.id]).unwrap();
    assert!(confirmed.is_empty(), "{confirmed:?}");
    assert!(
        p.alice
            .overdue(u64::MAX, &Default::default())
            .unwrap()
            .iter()
            .all(|e| e.as_ref().is_ok_and(|e| e.id != entry.id))
    );
    assert_eq!(
        p.alice
            .history(
                &format!("{}bob", sotto_store::SENT_CONTROL_CONVERSATION_PREFIX),
                None,
                10
            )
            .unwrap()
            .messages()
            .count(),
        0
    );
    // The chat is untouched.
    assert_eq!(
        p.alice.history("bob", None, 10).unwrap().messages().count(),
        1
    );
}
