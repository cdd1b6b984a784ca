//! Both parties initiate at once: with a `SessionSet` on each side every
//! message decrypts, and the two sides converge on one session.
#![cfg(test)]

mod common;

use common::{FIRST_OPK_ID, Party, rng, text};
use rand::rngs::ChaCha20Rng;
use sotto_core::{Decrypted, Error, SessionSet};

/// One side of the conversation: its identity, prekeys and session set.
struct Side {
    party: Party,
    set: SessionSet,
}

impl Side {
    fn send(&mut self, t: &[u8]) -> Vec<u8> {
        self.set.encrypt(t).expect("encrypt")
    }

    fn receive(&mut self, wire: &[u8], expected: &[u8], rng: &mut ChaCha20Rng) -> Decrypted {
        let d = self
            .set
            .decrypt(&self.party.identity, &self.party.prekeys, wire, rng)
            .expect("decrypt");
        assert_eq!(d.plaintext, expected);
        if let Some(id) = d.used_one_time_prekey {
            assert!(d.new_session);
            assert!(self.party.prekeys.delete_one_time(id).is_some());
        }
        d
    }

    fn active_base_key(&self) -> [u8; 32] {
        *self.set.active().expect("a session").base_key()
    }
}

fn both_initiate(seed: u64) -> (Side, Side, ChaCha20Rng) {
    let mut rng = rng(seed);
    let alice = Party::new(&mut rng, 2);
    let bob = Party::new(&mut rng, 2);
    let mut a = SessionSet::new();
    let mut b = SessionSet::new();
    a.initiate(&alice.identity, &bob.bundle(Some(FIRST_OPK_ID)), &mut rng)
        .expect("alice initiates");
    b.initiate(&bob.identity, &alice.bundle(Some(FIRST_OPK_ID)), &mut rng)
        .expect("bob initiates");
    (
        Side {
            party: alice,
            set: a,
        },
        Side { party: bob, set: b },
        rng,
    )
}

#[test]
fn simultaneous_initiation_converges_and_both_keep_talking() {
    let (mut a, mut b, mut rng) = both_initiate(80);
    // Both PreKeyMessages cross in flight.
    let from_a = a.send(b"alice initiates");
    let from_b = b.send(b"bob initiates");
    assert!(b.receive(&from_a, b"alice initiates", &mut rng).new_session);
    assert!(a.receive(&from_b, b"bob initiates", &mut rng).new_session);
    assert_eq!(a.set.len(), 2);
    assert_eq!(b.set.len(), 2);
    assert_eq!(a.party.prekeys.one_time_count(), 1);
    assert_eq!(b.party.prekeys.one_time_count(), 1);

    let mut n = 0;
    let mut next = || {
        n += 1;
        text(n)
    };
    for round in 0..30 {
        match round % 4 {
            // Both send at the same time, then both receive.
            0 => {
                let (ta, tb) = (next(), next());
                let wa = a.send(&ta);
                let wb = b.send(&tb);
                b.receive(&wa, &ta, &mut rng);
                a.receive(&wb, &tb, &mut rng);
            }
            // Alice sends two, Bob answers once.
            1 => {
                let (t1, t2, t3) = (next(), next(), next());
                let w1 = a.send(&t1);
                let w2 = a.send(&t2);
                b.receive(&w2, &t2, &mut rng);
                b.receive(&w1, &t1, &mut rng);
                let w3 = b.send(&t3);
                a.receive(&w3, &t3, &mut rng);
                assert_eq!(a.active_base_key(), b.active_base_key());
            }
            // Bob sends two (one arrives late), Alice answers.
            2 => {
                let (t1, t2, t3) = (next(), next(), next());
                let w1 = b.send(&t1);
                let w2 = b.send(&t2);
                a.receive(&w2, &t2, &mut rng);
                let w3 = a.send(&t3);
                b.receive(&w3, &t3, &mut rng);
                a.receive(&w1, &t1, &mut rng);
                assert_eq!(a.active_base_key(), b.active_base_key());
            }
            // Both send twice at the same time, received interleaved.
            _ => {
                let (ta1, ta2, tb1, tb2) = (next(), next(), next(), next());
                let wa1 = a.send(&ta1);
                let wb1 = b.send(&tb1);
                let wa2 = a.send(&ta2);
                let wb2 = b.send(&tb2);
                a.receive(&wb1, &tb1, &mut rng);
                b.receive(&wa2, &ta2, &mut rng);
                a.receive(&wb2, &tb2, &mut rng);
                b.receive(&wa1, &ta1, &mut rng);
            }
        }
    }
    // A quiet exchange leaves both on the same session.
    let w = a.send(b"settle");
    b.receive(&w, b"settle", &mut rng);
    let w = b.send(b"settled");
    a.receive(&w, b"settled", &mut rng);
    assert_eq!(a.active_base_key(), b.active_base_key());
    assert_eq!(a.set.len(), 2);
    assert_eq!(b.set.len(), 2);
    assert_eq!(a.set.remote_identity(), Some(b.party.identity.public()));
}

#[test]
fn late_initiation_message_is_still_decrypted_and_the_conversation_goes_on() {
    let (mut a, mut b, mut rng) = both_initiate(81);
    let lost_for_now = a.send(b"alice initiates");
    let from_b = b.send(b"bob initiates");
    a.receive(&from_b, b"bob initiates", &mut rng);
    // Alice now answers on Bob's session: plain Messages.
    for i in 0..3 {
        let t = text(i);
        let w = a.send(&t);
        assert_eq!(w[1], sotto_core::wire::TYPE_MESSAGE);
        b.receive(&w, &t, &mut rng);
        let t = text(100 + i);
        let w = b.send(&t);
        a.receive(&w, &t, &mut rng);
    }
    assert_eq!(a.active_base_key(), b.active_base_key());
    assert_eq!(b.set.len(), 1);
    // Alice's first PreKeyMessage finally arrives: a second session.
    assert!(
        b.receive(&lost_for_now, b"alice initiates", &mut rng)
            .new_session
    );
    assert_eq!(b.set.len(), 2);
    // A replay of it is caught by the session it created.
    let before = b.set.to_bytes();
    assert_eq!(
        b.set
            .decrypt(&b.party.identity, &b.party.prekeys, &lost_for_now, &mut rng)
            .err(),
        Some(Error::Duplicate(0))
    );
    assert!(*before == *b.set.to_bytes());
    for i in 0..6 {
        let t = text(200 + i);
        let w = b.send(&t);
        a.receive(&w, &t, &mut rng);
        let t = text(300 + i);
        let w = a.send(&t);
        b.receive(&w, &t, &mut rng);
    }
    assert_eq!(a.active_base_key(), b.active_base_key());
}

#[test]
fn session_set_rejects_messages_from_another_identity_and_stays_unchanged() {
    let (mut a, mut b, mut rng) = both_initiate(82);
    let w = a.send(b"hi");
    b.receive(&w, b"hi", &mut rng);
    // Carol's PreKeyMessage reaches Bob's set for Alice.
    let carol = Party::new(&mut rng, 0);
    let mut c = SessionSet::new();
    c.initiate(&carol.identity, &b.party.bundle(None), &mut rng)
        .expect("initiate");
    let from_c = c.encrypt(b"carol here").expect("encrypt");
    let before = b.set.to_bytes();
    assert_eq!(
        b.set
            .decrypt(&b.party.identity, &b.party.prekeys, &from_c, &mut rng)
            .err(),
        Some(Error::IdentityMismatch)
    );
    assert!(*before == *b.set.to_bytes());
    // Garbage and an empty set.
    assert!(
        b.set
            .decrypt(&b.party.identity, &b.party.prekeys, &[1, 2, 3], &mut rng)
            .is_err()
    );
    assert!(*before == *b.set.to_bytes());
    let mut empty = SessionSet::new();
    assert!(empty.encrypt(b"x").is_err());
    let plain = b.send(b"plain");
    assert!(
        empty
            .decrypt(&a.party.identity, &a.party.prekeys, &plain, &mut rng)
            .is_err()
    );
    assert!(empty.is_empty());
    a.receive(&plain, b"plain", &mut rng);
}
