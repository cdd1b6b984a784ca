//! The receive pipeline's rules, between stores, without a relay.

use sotto_core::{AccessKey, DeviceId, IdentityKeyPair};
use sotto_store::{DeliveryState, KdfParams, OpenOptions, OutboxEntry, Store};

use super::{Outcome, Owed, receive};
use crate::address::Address;
use crate::client::outbox::{Addressed, Sender, seal_entry};
use crate::client::types::{DropReason, Undecryptable};
use crate::payload::{self, ReceiptKind};

const T0: u64 = 1_700_000_000_000;

struct Party {
    store: Store,
    identity: IdentityKeyPair,
    access: AccessKey,
}

impl Party {
    fn new(dir: &std::path::Path, name: &str) -> Self {
        let options = OpenOptions::new().kdf(KdfParams::new(64, 1, 1).unwrap());
        let store = Store::create(dir.join(name), b"passphrase", &options).unwrap();
        let identity = store.identity().unwrap();
        let access = AccessKey::derive(&identity).unwrap();
        Self {
            store,
            identity,
            access,
        }
    }

    fn address(&self) -> Address {
        Address::of(self.identity.public())
    }

    fn id(&self) -> String {
        self.address().to_string()
    }

    /// Names `other` as a contact and starts a session from its bundle.
    fn knows(&mut self, other: &mut Party, name: &str) {
        let published = other.store.fresh_one_time_prekeys(1, T0).unwrap();
        let bundle = other.store.prekey_bundle(Some(published[0].0)).unwrap();
        self.store
            .add_contact(&other.id(), name, Some(other.identity.public()))
            .unwrap();
        self.store.start_session(&other.id(), &bundle).unwrap();
    }

    /// Commits a message to `to` and seals it as the relay would carry it.
    fn message(&mut self, to: &Party, text: &str, sent_at: u64) -> (OutboxEntry, Vec<u8>) {
        self.commit_and_seal(to, text, sent_at, |_| {})
    }

    /// Commits a message to `to` whose ciphertext is then altered (a
    /// damaged store, say) and seals it: authentic, but undecryptable.
    fn tampered(&mut self, to: &Party, text: &str, sent_at: u64) -> (OutboxEntry, Vec<u8>) {
        self.commit_and_seal(to, text, sent_at, |ciphertext| {
            let last = ciphertext.len() - 1;
            ciphertext[last] ^= 1;
        })
    }

    fn commit_and_seal(
        &mut self,
        to: &Party,
        text: &str,
        sent_at: u64,
        alter: impl FnOnce(&mut Vec<u8>),
    ) -> (OutboxEntry, Vec<u8>) {
        let mut entry = self.store.send(&to.id(), text.as_bytes(), sent_at).unwrap();
        alter(&mut entry.ciphertext);
        let me = Sender {
            identity: &self.identity,
            account: self.identity.public(),
            device: DeviceId::PRIMARY,
            access_key: &self.access,
        };
        let addressed = Addressed {
            entry: entry.clone(),
            key: *to.identity.public(),
            account: *to.identity.public(),
            access: None,
        };
        let sealed = seal_entry(&me, &addressed, &entry, sent_at).unwrap();
        (entry, sealed)
    }

    /// Seals a payload from this party to `to`.
    fn seal(&self, to: &Party, payload: &[u8]) -> Vec<u8> {
        payload::seal(&self.identity, to.identity.public(), payload).unwrap()
    }

    fn receive(&mut self, sealed: &[u8]) -> Outcome {
        receive(
            &mut self.store,
            &self.identity,
            &Default::default(),
            sealed,
            T0 + 1,
        )
        .unwrap()
    }
}

fn parties() -> (tempfile::TempDir, Party, Party) {
    let dir = tempfile::tempdir().unwrap();
    let mut alice = Party::new(dir.path(), "alice.db");
    let mut bob = Party::new(dir.path(), "bob.db");
    alice.knows(&mut bob, "bob");
    (dir, alice, bob)
}

#[test]
fn a_first_message_from_a_stranger_is_stored_under_a_nameless_contact() {
    let (_dir, mut alice, mut bob) = parties();
    let (entry, sealed) = alice.message(&bob, "hello bob", T0);
    let Outcome::Stored {
        message,
        receipt,
        sent_copy: false,
    } = bob.receive(&sealed)
    else {
        panic!("not stored");
    };
    assert_eq!(message.body, b"hello bob");
    assert_eq!(message.contact, alice.address());
    assert_eq!(message.name, "");
    // The receipt goes to the authenticated sender, for the store's id.
    let alice_key = *alice.identity.public();
    assert_eq!(
        receipt,
        Owed {
            to: alice_key,
            account: alice_key,
            id: entry.id
        }
    );
    let contact = bob.store.contact(&alice.id()).unwrap().unwrap();
    assert_eq!(contact.name, "");
    assert_eq!(contact.identity_key, Some(*alice.identity.public()));
    // Its access key was kept, to write back without limits.
    assert_eq!(contact.access_key, Some(alice.access.clone()));
}

#[test]
fn the_same_envelope_again_is_a_duplicate_that_is_confirmed_again() {
    let (_dir, mut alice, mut bob) = parties();
    let (entry, sealed) = alice.message(&bob, "once", T0);
    assert!(matches!(bob.receive(&sealed), Outcome::Stored { .. }));
    for _ in 0..2 {
        let Outcome::Duplicate { receipt } = bob.receive(&sealed) else {
            panic!("not a duplicate");
        };
        let alice_key = *alice.identity.public();
        assert_eq!(
            receipt,
            Some(Owed {
                to: alice_key,
                account: alice_key,
                id: entry.id
            })
        );
    }
    assert_eq!(bob.store.message_count(&alice.id()).unwrap(), 1);
}

#[test]
fn envelopes_that_do_not_authenticate_are_dropped_without_a_trace() {
    let (dir, mut alice, mut bob) = parties();
    let carol = Party::new(dir.path(), "carol.db");
    let (_, sealed) = alice.message(&bob, "for bob", T0);
    // Garbage, truncation, a flipped bit, an envelope for someone else.
    let mut flipped = sealed.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let for_carol = alice.seal(&carol, b"anything");
    for bytes in [
        vec![0x02; 200],
        sealed[..sealed.len() / 2].to_vec(),
        flipped,
        for_carol,
    ] {
        assert!(matches!(
            bob.receive(&bytes),
            Outcome::Dropped(DropReason::Unauthenticated)
        ));
    }
    // A version-1 envelope is not read.
    let mut old = sealed.clone();
    old[0] = 0x01;
    assert!(matches!(
        bob.receive(&old),
        Outcome::Dropped(DropReason::UnsupportedVersion)
    ));
    // An authenticated payload that does not parse.
    assert!(matches!(
        bob.receive(&alice.seal(&bob, &[0x02, 0x01, 0x00])),
        Outcome::Dropped(DropReason::Malformed)
    ));
    assert!(bob.store.contact(&alice.id()).unwrap().is_none());
    assert_eq!(bob.store.message_count(&alice.id()).unwrap(), 0);
}

#[test]
fn receipts_count_only_from_the_contact_they_name() {
    let (dir, mut alice, mut bob) = parties();
    let mallory = Party::new(dir.path(), "mallory.db");
    let (entry, sealed) = alice.message(&bob, "confirm me", T0);
    alice.store.mark_sent(&entry.id, T0).unwrap();
    assert!(matches!(bob.receive(&sealed), Outcome::Stored { .. }));

    // Mallory (not Alice's contact) claims Bob got it: dropped.
    let forged = payload::encode_receipt(&[1; 16], T0, ReceiptKind::Delivered, &[entry.id]);
    assert!(matches!(
        alice.receive(&mallory.seal(&alice, &forged)),
        Outcome::Dropped(DropReason::NotAContact)
    ));
    assert_eq!(
        alice
            .store
            .message(&bob.id(), entry.seq)
            .unwrap()
            .unwrap()
            .state,
        DeliveryState::Sent
    );

    // Bob's receipt marks it delivered.
    let receipt = payload::encode_receipt(&[2; 16], T0, ReceiptKind::Delivered, &[entry.id]);
    let Outcome::Receipt {
        contact,
        kind,
        seqs,
    } = alice.receive(&bob.seal(&alice, &receipt))
    else {
        panic!("not a receipt");
    };
    assert_eq!(
        (contact, kind, seqs),
        (bob.address(), ReceiptKind::Delivered, vec![entry.seq])
    );
    assert_eq!(
        alice
            .store
            .message(&bob.id(), entry.seq)
            .unwrap()
            .unwrap()
            .state,
        DeliveryState::Delivered
    );
}

#[test]
fn notices_count_only_from_a_contact() {
    let (dir, mut alice, bob) = parties();
    let stranger = Party::new(dir.path(), "stranger.db");
    let digest = sotto_store::CiphertextDigest::of(b"some ciphertext");
    let notice = payload::encode_notice(&[3; 16], T0, &digest);
    assert!(matches!(
        alice.receive(&stranger.seal(&alice, &notice)),
        Outcome::Dropped(DropReason::NotAContact)
    ));
    let Outcome::Notice { contact, failed } = alice.receive(&bob.seal(&alice, &notice)) else {
        panic!("not a notice");
    };
    assert_eq!((contact, failed), (bob.address(), digest));
}

#[test]
fn an_undecryptable_message_from_a_contact_asks_for_a_resend_once_it_can_help() {
    let (_dir, mut alice, mut bob) = parties();
    // A working session first: Bob knows Alice from her first message.
    let (_, first) = alice.message(&bob, "first", T0);
    assert!(matches!(bob.receive(&first), Outcome::Stored { .. }));

    // Alice's next ciphertext arrives altered inside an authentic
    // envelope (her store was damaged, say): Bob asks her to resend it.
    let (entry, sealed) = alice.tampered(&bob, "second", T0 + 10);
    let Outcome::Undecryptable {
        from,
        reason,
        notify,
    } = bob.receive(&sealed)
    else {
        panic!("not undecryptable");
    };
    assert_eq!(from, alice.address());
    assert!(matches!(reason, Undecryptable::Protocol(_)));
    assert_eq!(
        notify,
        Some(sotto_store::CiphertextDigest::of(&entry.ciphertext))
    );
}

#[test]
fn a_late_or_replayed_message_asks_for_nothing() {
    let (_dir, mut alice, mut bob) = parties();
    let (_, first) = alice.message(&bob, "first", T0);
    // Written before "first" by Alice's clock but broken: merely late.
    let (_, sealed) = alice.tampered(&bob, "late", T0 - 1000);
    let (_, newer) = alice.message(&bob, "newer", T0 + 1000);
    assert!(matches!(bob.receive(&first), Outcome::Stored { .. }));
    assert!(matches!(bob.receive(&newer), Outcome::Stored { .. }));
    assert!(matches!(
        bob.receive(&sealed),
        Outcome::Undecryptable { notify: None, .. }
    ));
}

#[test]
fn an_undecryptable_first_message_from_a_stranger_leaves_no_contact() {
    let (_dir, mut alice, mut bob) = parties();
    let (_, sealed) = alice.tampered(&bob, "hi", T0);
    // No notice to someone we never talked to.
    assert!(matches!(
        bob.receive(&sealed),
        Outcome::Undecryptable { notify: None, .. }
    ));
    assert!(bob.store.contact(&alice.id()).unwrap().is_none());
}

#[test]
fn a_first_message_sealed_by_another_identity_is_refused() {
    let (dir, mut alice, mut bob) = parties();
    let mallory = Party::new(dir.path(), "mallory.db");
    // Mallory re-seals Alice's session-starting message as her own.
    let entry = alice.store.send(&bob.id(), b"from alice", T0).unwrap();
    let inner = payload::encode(entry.id.as_bytes(), T0, &mallory.access, &entry.ciphertext);
    let sealed = mallory.seal(&bob, &inner);
    let Outcome::Undecryptable {
        from,
        reason,
        notify,
    } = bob.receive(&sealed)
    else {
        panic!("not refused");
    };
    assert_eq!(from, mallory.address());
    assert_eq!(reason, Undecryptable::IdentityMismatch);
    assert_eq!(notify, None);
    assert!(bob.store.contact(&mallory.id()).unwrap().is_none());
    assert_eq!(bob.store.message_count(&mallory.id()).unwrap(), 0);
}

#[test]
fn an_identity_change_is_recorded_for_a_named_contact_and_kept_apart() {
    let (dir, mut alice, bob) = parties();
    // Alice knows Bob by name; Bob's new identity claims to be him.
    let mut bob2 = Party::new(dir.path(), "bob2.db");
    let claim = payload::encode_identity_change(&[5; 16], T0, bob.identity.public());
    let Outcome::IdentityChangeClaimed {
        previous,
        name,
        claimant,
    } = alice.receive(&bob2.seal(&alice, &claim))
    else {
        panic!("claim not recorded");
    };
    assert_eq!(
        (previous, name.as_str(), claimant),
        (bob.address(), "bob", bob2.address())
    );
    let contact = alice.store.contact(&bob2.id()).unwrap().unwrap();
    assert_eq!(contact.name, "");
    assert_eq!(contact.claims_to_succeed, Some(bob.id()));

    // Its messages go under its own address, not Bob's conversation.
    bob2.knows(&mut alice, "alice");
    let (_, sealed) = bob2.message(&alice, "it's me, new phone", T0);
    let Outcome::Stored { message, .. } = alice.receive(&sealed) else {
        panic!("not stored");
    };
    assert_eq!(message.contact, bob2.address());
    assert_eq!(alice.store.message_count(&bob.id()).unwrap(), 0);

    // Accepted: the name moves, unverified; the old identity keeps its
    // history without a name.
    alice.store.set_contact_verified(&bob.id(), true).unwrap();
    alice.store.accept_successor(&bob.id(), &bob2.id()).unwrap();
    let new = alice.store.contact(&bob2.id()).unwrap().unwrap();
    assert_eq!((new.name.as_str(), new.verified), ("bob", false));
    assert_eq!(new.claims_to_succeed, None);
    assert_eq!(alice.store.contact(&bob.id()).unwrap().unwrap().name, "");
}

#[test]
fn identity_changes_that_name_no_one_or_come_from_a_named_contact_are_dropped() {
    let (dir, mut alice, bob) = parties();
    let stranger = Party::new(dir.path(), "stranger.db");
    let nobody = Party::new(dir.path(), "nobody.db");
    // About someone who is not a contact.
    let about_nobody = payload::encode_identity_change(&[1; 16], T0, nobody.identity.public());
    assert!(matches!(
        alice.receive(&stranger.seal(&alice, &about_nobody)),
        Outcome::Dropped(DropReason::NotAContact)
    ));
    // From a named contact (Bob) about another: a contact stays who it is.
    let mut carol = Party::new(dir.path(), "carol.db");
    alice.knows(&mut carol, "carol");
    let about_carol = payload::encode_identity_change(&[2; 16], T0, carol.identity.public());
    assert!(matches!(
        alice.receive(&bob.seal(&alice, &about_carol)),
        Outcome::Dropped(DropReason::NotAContact)
    ));
    // About the sender itself.
    let about_bob = payload::encode_identity_change(&[3; 16], T0, bob.identity.public());
    assert!(matches!(
        alice.receive(&bob.seal(&alice, &about_bob)),
        Outcome::Dropped(DropReason::NotAContact)
    ));
    // A body that is not one key.
    let mut cut = about_carol.clone();
    cut.pop();
    assert!(matches!(
        alice.receive(&stranger.seal(&alice, &cut)),
        Outcome::Dropped(DropReason::Malformed)
    ));
    assert!(alice.store.contact(&stranger.id()).unwrap().is_none());
}

/// A device message (kind 0x05) from `from`, claiming device `device` of
/// `account`, addressed to the account `to_account`, sealed to `to`.
fn device_message(
    from: &Party,
    account: &sotto_core::IdentityKey,
    device: DeviceId,
    to_account: &sotto_core::IdentityKey,
    to: &Party,
) -> Vec<u8> {
    let payload = payload::encode_device_message(
        payload::KIND_DEVICE_MESSAGE,
        &[9; 16],
        T0,
        &from.access,
        (account, device),
        to_account,
        b"not a real ratchet message",
    );
    from.seal(to, &payload)
}

#[test]
fn device_messages_must_be_for_this_account_and_from_a_listed_device() {
    let (dir, alice, mut bob) = parties();
    let carol = Party::new(dir.path(), "carol.db");
    let alice_key = *alice.identity.public();
    let bob_key = *bob.identity.public();
    let carol_key = *carol.identity.public();
    // Addressed to Carol's account, though sealed to Bob (a contact that
    // listed Bob's key as one of its devices, say): misdirected.
    let misdirected = device_message(&alice, &alice_key, DeviceId::PRIMARY, &carol_key, &bob);
    assert!(matches!(
        bob.receive(&misdirected),
        Outcome::Dropped(DropReason::Misdirected)
    ));
    // Carol's key, claiming to be device 2 of Alice's account: no list
    // Bob holds names it, so the list must be fetched first.
    let claimed = device_message(&carol, &alice_key, DeviceId::new(2), &bob_key, &bob);
    assert!(matches!(
        bob.receive(&claimed),
        Outcome::UnknownDevice { account } if account == alice_key
    ));
    // Carol's key claiming to be Alice's primary device: the primary
    // device's key is the account key, so this is unknown too.
    let as_primary = device_message(&carol, &alice_key, DeviceId::PRIMARY, &bob_key, &bob);
    assert!(matches!(
        bob.receive(&as_primary),
        Outcome::UnknownDevice { .. }
    ));
    // Claiming to be one of Bob's own devices: the same.
    let as_own = device_message(&carol, &bob_key, DeviceId::new(2), &alice_key, &bob);
    assert!(matches!(
        bob.receive(&as_own),
        Outcome::UnknownDevice { .. }
    ));
    // Nothing was stored, no contact was made.
    assert!(bob.store.contact(&carol.id()).unwrap().is_none());
    assert!(bob.store.contact(&alice.id()).unwrap().is_none());
}
