//! Property tests: over random schedules of sends, deliveries, reorders,
//! drops, replays and tampering between two parties, every delivered
//! message decrypts exactly once to its plaintext and every refused input
//! leaves the receiver unchanged; arbitrary or mutated bytes never panic
//! and never decrypt.
#![cfg(test)]

mod common;

use std::sync::LazyLock;

use common::{FIRST_OPK_ID, Pair, Party, rng};
use proptest::collection::vec;
use proptest::prelude::*;
use rand::rngs::ChaCha20Rng;
use sotto_core::wire::{TYPE_PREKEY_MESSAGE, WireMessage};
use sotto_core::{Error, Session, SessionSet};

#[derive(Debug, Clone)]
enum Step {
    /// One party encrypts a fresh plaintext of `len` bytes.
    Send { by_alice: bool, len: usize },
    /// An in-flight message (any of them: reordering) is delivered.
    Deliver { to_bob: bool, pick: usize },
    /// An in-flight message is lost for good.
    Drop { to_bob: bool, pick: usize },
    /// An already delivered message is delivered again.
    Replay { to_bob: bool, pick: usize },
    /// A message (in flight or delivered) arrives with one byte changed.
    Flip {
        to_bob: bool,
        pick: usize,
        pos: usize,
        xor: u8,
    },
    /// A message arrives cut short.
    Truncate {
        to_bob: bool,
        pick: usize,
        keep: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (any::<bool>(), 0usize..600).prop_map(|(by_alice, len)| Step::Send { by_alice, len }),
        5 => (any::<bool>(), any::<usize>()).prop_map(|(to_bob, pick)| Step::Deliver { to_bob, pick }),
        1 => (any::<bool>(), any::<usize>()).prop_map(|(to_bob, pick)| Step::Drop { to_bob, pick }),
        1 => (any::<bool>(), any::<usize>()).prop_map(|(to_bob, pick)| Step::Replay { to_bob, pick }),
        1 => (any::<bool>(), any::<usize>(), any::<usize>(), 1u8..=255)
            .prop_map(|(to_bob, pick, pos, xor)| Step::Flip { to_bob, pick, pos, xor }),
        1 => (any::<bool>(), any::<usize>(), any::<usize>())
            .prop_map(|(to_bob, pick, keep)| Step::Truncate { to_bob, pick, keep }),
    ]
}

/// A message on the wire with the plaintext it must decrypt to.
#[derive(Clone)]
struct Envelope {
    wire: Vec<u8>,
    plaintext: Vec<u8>,
}

/// Two parties from Alice's first `Session::initiate` on: Bob has no
/// session until one of her PreKeyMessages reaches him.
struct World {
    rng: ChaCha20Rng,
    bob: Party,
    a: Session,
    b: Option<Session>,
    to_bob: Vec<Envelope>,
    to_alice: Vec<Envelope>,
    seen_by_bob: Vec<Envelope>,
    seen_by_alice: Vec<Envelope>,
    sent: usize,
    delivered: usize,
    one_time_prekeys: usize,
}

impl World {
    fn new(seed: u64, with_opk: bool) -> Self {
        let mut rng = rng(seed);
        let alice = Party::new(&mut rng, 0);
        let bob = Party::new(&mut rng, 1);
        let opk = with_opk.then_some(FIRST_OPK_ID);
        let a = Session::initiate(&alice.identity, &bob.bundle(opk), &mut rng).expect("initiate");
        let one_time_prekeys = bob.prekeys.one_time_count();
        Self {
            rng,
            bob,
            a,
            b: None,
            to_bob: Vec::new(),
            to_alice: Vec::new(),
            seen_by_bob: Vec::new(),
            seen_by_alice: Vec::new(),
            sent: 0,
            delivered: 0,
            one_time_prekeys,
        }
    }

    fn plaintext(&mut self, len: usize) -> Vec<u8> {
        self.sent += 1;
        let mut t = format!("#{}:", self.sent).into_bytes();
        t.extend((0..len).map(|i| (i % 253) as u8));
        t
    }

    fn send(&mut self, by_alice: bool, len: usize) {
        if !by_alice && self.b.is_none() {
            return;
        }
        let plaintext = self.plaintext(len);
        let (session, queue) = if by_alice {
            (&mut self.a, &mut self.to_bob)
        } else {
            (self.b.as_mut().expect("bob's session"), &mut self.to_alice)
        };
        let wire = session.encrypt(&plaintext).expect("encrypt");
        queue.push(Envelope { wire, plaintext });
    }

    /// Delivers `wire` to Bob (creating his session if he has none) or to
    /// Alice. On failure, checks that nothing changed: neither the session
    /// bytes nor Bob's one-time prekeys.
    fn receive(&mut self, to_bob: bool, wire: &[u8]) -> Result<Vec<u8>, Error> {
        if to_bob && self.b.is_none() {
            let result =
                Session::respond(&self.bob.identity, &self.bob.prekeys, wire, &mut self.rng);
            return match result {
                Ok((session, decrypted)) => {
                    if let Some(id) = decrypted.used_one_time_prekey {
                        self.bob
                            .prekeys
                            .delete_one_time(id)
                            .expect("one-time prekey");
                    }
                    self.b = Some(session);
                    Ok(decrypted.plaintext)
                }
                Err(e) => {
                    assert_eq!(
                        self.bob.prekeys.one_time_count(),
                        self.one_time_prekeys,
                        "a refused PreKeyMessage consumed a one-time prekey"
                    );
                    Err(e)
                }
            };
        }
        let session = if to_bob {
            self.b.as_mut().expect("bob's session")
        } else {
            &mut self.a
        };
        let before = session.to_bytes();
        let result = session.decrypt(wire, &mut self.rng);
        if result.is_err() {
            assert!(
                *before == *session.to_bytes(),
                "a refused message changed the session"
            );
        }
        result
    }

    fn deliver(&mut self, to_bob: bool, pick: usize) -> Result<(), TestCaseError> {
        let queue = if to_bob {
            &mut self.to_bob
        } else {
            &mut self.to_alice
        };
        if queue.is_empty() {
            return Ok(());
        }
        let env = queue.remove(pick % queue.len());
        let got = self.receive(to_bob, &env.wire);
        prop_assert_eq!(got, Ok(env.plaintext.clone()));
        self.delivered += 1;
        if to_bob {
            self.seen_by_bob.push(env);
        } else {
            self.seen_by_alice.push(env);
        }
        Ok(())
    }

    fn replay(&mut self, to_bob: bool, pick: usize) -> Result<(), TestCaseError> {
        let seen = if to_bob {
            &self.seen_by_bob
        } else {
            &self.seen_by_alice
        };
        if seen.is_empty() {
            return Ok(());
        }
        let wire = seen[pick % seen.len()].wire.clone();
        let got = self.receive(to_bob, &wire);
        prop_assert!(
            matches!(
                got,
                Err(Error::Duplicate(_)) | Err(Error::AuthenticationFailed)
            ),
            "replay gave {:?}",
            got
        );
        Ok(())
    }

    /// Picks from in-flight messages first, then delivered ones.
    fn pick(&self, to_bob: bool, pick: usize) -> Option<(Envelope, bool)> {
        let (queue, seen) = if to_bob {
            (&self.to_bob, &self.seen_by_bob)
        } else {
            (&self.to_alice, &self.seen_by_alice)
        };
        let total = queue.len() + seen.len();
        if total == 0 {
            return None;
        }
        let i = pick % total;
        Some(if i < queue.len() {
            (queue[i].clone(), true)
        } else {
            (seen[i - queue.len()].clone(), false)
        })
    }

    fn tampered(&mut self, to_bob: bool, pick: usize, bad: Vec<u8>) -> Result<(), TestCaseError> {
        let Some((env, in_flight)) = self.pick(to_bob, pick) else {
            return Ok(());
        };
        let bad = bad_bytes(&env.wire, &bad);
        let had_session = !to_bob || self.b.is_some();
        match self.receive(to_bob, &bad) {
            Err(_) => {}
            Ok(plaintext) => {
                // Only the prekey ids of a PreKeyMessage for an existing
                // session are not covered by the AEAD: the embedded Message
                // is then the genuine one.
                prop_assert!(had_session && in_flight, "tampered message decrypted");
                prop_assert_eq!(bad[1], TYPE_PREKEY_MESSAGE);
                prop_assert_eq!(&bad[34..66], &env.wire[34..66]);
                prop_assert_eq!(&plaintext, &env.plaintext);
                let queue = if to_bob {
                    &mut self.to_bob
                } else {
                    &mut self.to_alice
                };
                let i = queue
                    .iter()
                    .position(|e| e.wire == env.wire)
                    .expect("in flight");
                let env = queue.remove(i);
                self.delivered += 1;
                if to_bob {
                    self.seen_by_bob.push(env);
                } else {
                    self.seen_by_alice.push(env);
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TestCaseError> {
        while !self.to_bob.is_empty() || !self.to_alice.is_empty() {
            self.deliver(true, 0)?;
            self.deliver(false, 0)?;
        }
        Ok(())
    }
}

/// `bad` encodes the change: `[0, pos.., xor]` is a flip, `[1, keep..]` a
/// truncation (see `Step`).
fn bad_bytes(wire: &[u8], change: &[u8]) -> Vec<u8> {
    let n = usize::from_le_bytes(change[1..9].try_into().expect("8 bytes"));
    let mut out = wire.to_vec();
    if change[0] == 0 {
        out[n % wire.len()] ^= change[9];
    } else {
        out.truncate(n % wire.len());
    }
    out
}

fn flip(pos: usize, xor: u8) -> Vec<u8> {
    let mut c = vec![0u8];
    c.extend_from_slice(&pos.to_le_bytes());
    c.push(xor);
    c
}

fn truncation(keep: usize) -> Vec<u8> {
    let mut c = vec![1u8];
    c.extend_from_slice(&keep.to_le_bytes());
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_delivered_message_decrypts_exactly_once(
        seed in any::<u64>(),
        with_opk in any::<bool>(),
        steps in vec(step(), 1..100),
    ) {
        let mut w = World::new(seed, with_opk);
        for s in steps {
            match s {
                Step::Send { by_alice, len } => w.send(by_alice, len),
                Step::Deliver { to_bob, pick } => w.deliver(to_bob, pick)?,
                Step::Drop { to_bob, pick } => {
                    let queue = if to_bob { &mut w.to_bob } else { &mut w.to_alice };
                    if !queue.is_empty() {
                        queue.remove(pick % queue.len());
                    }
                }
                Step::Replay { to_bob, pick } => w.replay(to_bob, pick)?,
                Step::Flip { to_bob, pick, pos, xor } => w.tampered(to_bob, pick, flip(pos, xor))?,
                Step::Truncate { to_bob, pick, keep } => {
                    w.tampered(to_bob, pick, truncation(keep))?;
                }
            }
        }
        w.flush()?;
        // Whatever happened, the conversation goes on both ways.
        w.send(true, 10);
        w.flush()?;
        prop_assert!(w.b.is_some());
        w.send(false, 10);
        w.flush()?;
        w.send(true, 10);
        w.flush()?;
        prop_assert!(!w.a.is_pending_prekey());
        prop_assert_eq!(w.delivered, w.seen_by_bob.len() + w.seen_by_alice.len());
        // Every delivered message stays delivered once.
        for env in w.seen_by_bob.clone() {
            prop_assert!(w.receive(true, &env.wire).is_err());
        }
        for env in w.seen_by_alice.clone() {
            prop_assert!(w.receive(false, &env.wire).is_err());
        }
    }
}

/// Sessions to throw bytes at: an established pair, a fresh responder's
/// keys, and genuine messages to mutate.
struct Fixture {
    pair_a: Session,
    pair_b: Session,
    bob: Party,
    alice_identity: [u8; 32],
    messages_to_b: Vec<Vec<u8>>,
    prekey_messages_to_bob: Vec<Vec<u8>>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let mut p = Pair::new(120);
    let messages_to_b = vec![
        p.a_sends(b"first"),
        p.a_sends(b"second"),
        p.a_sends(&[7; 300]),
    ];
    let mut rng = rng(121);
    let alice = Party::new(&mut rng, 0);
    let bob = Party::new(&mut rng, 1);
    let mut prekey_messages_to_bob = Vec::new();
    for opk in [Some(FIRST_OPK_ID), None] {
        let mut s =
            Session::initiate(&alice.identity, &bob.bundle(opk), &mut rng).expect("initiate");
        prekey_messages_to_bob.push(s.encrypt(b"hello").expect("encrypt"));
    }
    Fixture {
        pair_a: p.a,
        pair_b: p.b,
        bob,
        alice_identity: alice.identity.public().to_bytes(),
        messages_to_b,
        prekey_messages_to_bob,
    }
});

/// Byte strings shaped to get past the first checks of each parser.
fn hostile_input() -> impl Strategy<Value = Vec<u8>> {
    let anything = vec(any::<u8>(), 0..400);
    let message = (vec(any::<u8>(), 40), vec(any::<u8>(), 250..400)).prop_map(|(h, c)| {
        let mut m = vec![1, 2];
        m.extend(h);
        m.extend(c);
        m
    });
    let prekey = (
        vec(any::<u8>(), 32),
        any::<bool>(),
        vec(any::<u8>(), 40),
        vec(any::<u8>(), 250..400),
    )
        .prop_map(|(base, opk, h, c)| {
            let mut m = vec![1, 1];
            m.extend(FIXTURE.alice_identity);
            m.extend(base);
            m.extend(1u32.to_be_bytes());
            if opk {
                m.push(1);
                m.extend(FIRST_OPK_ID.get().to_be_bytes());
            } else {
                m.push(0);
            }
            m.extend([1, 2]);
            m.extend(h);
            m.extend(c);
            m
        });
    prop_oneof![anything, message, prekey]
}

/// A genuine message and the edits made to it.
#[derive(Debug, Clone)]
struct Mutation {
    /// From the PreKeyMessages to a fresh responder, else the Messages of
    /// an established session.
    prekey: bool,
    pick: usize,
    /// `(position, xor)` byte flips.
    flips: Vec<(usize, u8)>,
    /// Truncate to this length (modulo the length).
    cut: Option<usize>,
    append: Vec<u8>,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        any::<bool>(),
        any::<usize>(),
        vec((any::<usize>(), 1u8..=255), 0..4),
        proptest::option::of(any::<usize>()),
        vec(any::<u8>(), 0..3),
    )
        .prop_map(|(prekey, pick, flips, cut, append)| Mutation {
            prekey,
            pick,
            flips,
            cut,
            append,
        })
}

fn check_refused(input: &[u8]) -> Result<(), TestCaseError> {
    let f = &*FIXTURE;
    let mut r = rng(122);
    for session in [&f.pair_a, &f.pair_b] {
        let mut s = session.clone();
        prop_assert!(s.decrypt(input, &mut r).is_err());
        prop_assert!(*s.to_bytes() == *session.to_bytes());
    }
    prop_assert!(Session::respond(&f.bob.identity, &f.bob.prekeys, input, &mut r).is_err());
    let mut set = SessionSet::new();
    prop_assert!(
        set.decrypt(&f.bob.identity, &f.bob.prekeys, input, &mut r)
            .is_err()
    );
    prop_assert!(set.is_empty());
    // Parsers and state decoders take anything without panicking.
    let _ = WireMessage::parse(input);
    let _ = Session::from_bytes(input);
    let _ = SessionSet::from_bytes(input);
    let _ = sotto_core::PreKeyBundle::decode(input);
    let _ = sotto_core::pad::unpad(input);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_decrypt_and_never_panic(input in hostile_input()) {
        check_refused(&input)?;
    }

    #[test]
    fn mutated_genuine_messages_never_decrypt(m in mutation()) {
        let f = &*FIXTURE;
        let pool = if m.prekey { &f.prekey_messages_to_bob } else { &f.messages_to_b };
        let genuine = &pool[m.pick % pool.len()];
        let mut bad = genuine.clone();
        for (pos, xor) in m.flips {
            let i = pos % bad.len();
            bad[i] ^= xor;
        }
        if let Some(cut) = m.cut {
            bad.truncate(cut % bad.len());
        }
        bad.extend(m.append);
        prop_assume!(bad != *genuine);
        check_refused(&bad)?;
    }
}

#[test]
fn fixture_messages_are_genuine() {
    // The mutation test is only meaningful if the unmutated inputs decrypt.
    let f = &*FIXTURE;
    let mut r = rng(123);
    let mut b = f.pair_b.clone();
    for m in &f.messages_to_b {
        assert!(b.decrypt(m, &mut r).is_ok());
    }
    for m in &f.prekey_messages_to_bob {
        assert!(Session::respond(&f.bob.identity, &f.bob.prekeys, m, &mut r).is_ok());
    }
}
