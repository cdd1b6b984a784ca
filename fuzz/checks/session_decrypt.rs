//! Checks of the `session_decrypt` fuzz target, shared with the corpus
//! replay in `crates/sotto-core/tests/fuzz_corpus.rs`.
//!
//! A pair of established sessions is built from fixed seeds (so every run,
//! and every corpus file, sees the same keys). The input is decrypted on
//! clones of Alice's session, of Bob's, and of Bob's `SessionSet` (which
//! may also create a session from a PreKeyMessage). On error the state must
//! be exactly what it was; on success the same bytes must not decrypt a
//! second time, and that refusal must not change the state either.

use std::sync::LazyLock;

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sotto_core::pad::MAX_PLAINTEXT_LEN;
use sotto_core::{
    IdentityKeyPair, OneTimePreKey, OneTimePreKeyId, PreKeyBundle, PreKeySource, Session,
    SessionSet, SignedPreKey, SignedPreKeyId, hazmat,
};

/// Bob's prekeys: signed prekey 1, one-time prekeys 100 and 101.
pub(crate) struct BobPreKeys {
    signed: SignedPreKey,
    one_time: Vec<OneTimePreKey>,
}

impl PreKeySource for BobPreKeys {
    fn signed_prekey(&self, id: SignedPreKeyId) -> Option<SignedPreKey> {
        (id == self.signed.id()).then(|| self.signed.clone())
    }

    fn one_time_prekey(&self, id: OneTimePreKeyId) -> Option<OneTimePreKey> {
        self.one_time.iter().find(|k| k.id() == id).cloned()
    }
}

/// Two established sessions and what it took to build them.
pub(crate) struct Fixture {
    pub(crate) bob: IdentityKeyPair,
    pub(crate) prekeys: BobPreKeys,
    /// Alice's session with Bob.
    pub(crate) alice_session: Session,
    /// Bob's session with Alice: two of Alice's messages were skipped, so
    /// it holds skipped message keys.
    pub(crate) bob_session: Session,
    /// Bob's set holding `bob_session`.
    pub(crate) bob_set: SessionSet,
    /// Every wire message exchanged while building the pair, in order.
    pub(crate) transcript: Vec<Vec<u8>>,
}

pub(crate) fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

fn build() -> Fixture {
    let alice = IdentityKeyPair::from_seed(&[0xA1; 32]);
    let bob = IdentityKeyPair::from_seed(&[0xB0; 32]);
    let prekeys = BobPreKeys {
        signed: SignedPreKey::from_private_bytes(SignedPreKeyId::new(1), &bob, &[0x5B; 32]),
        one_time: vec![
            OneTimePreKey::from_private_bytes(OneTimePreKeyId::new(100), &[0x0B; 32]),
            OneTimePreKey::from_private_bytes(OneTimePreKeyId::new(101), &[0x0C; 32]),
        ],
    };
    let bundle = PreKeyBundle::new(&bob, &prekeys.signed, Some(&prekeys.one_time[0]));
    let mut rng = rng(7);
    let mut transcript = Vec::new();
    let mut a = hazmat::initiate_session(&alice, &bundle, &[0xE0; 32], None, &[0xA0; 32])
        .expect("fixed keys initiate");
    let first = a.encrypt(b"hello bob").expect("encrypt");
    transcript.push(first.clone());
    let (mut b, _) = Session::respond(&bob, &prekeys, &first, &mut rng).expect("respond");
    let reply = b.encrypt(b"hello alice").expect("encrypt");
    transcript.push(reply.clone());
    a.decrypt(&reply, &mut rng).expect("reply decrypts");
    // Bob receives only the last of three: the other two stay skipped.
    for text in [&b"one"[..], b"two", b"three"] {
        transcript.push(a.encrypt(text).expect("encrypt"));
    }
    let last = transcript.last().cloned().unwrap_or_default();
    b.decrypt(&last, &mut rng).expect("last decrypts");
    let reply = b.encrypt(b"got three").expect("encrypt");
    transcript.push(reply.clone());
    a.decrypt(&reply, &mut rng).expect("reply decrypts");
    // Bob's set holds exactly `b`.
    let b_bytes = b.to_bytes();
    let mut set_bytes = vec![sotto_core::SESSION_SET_VERSION, 1];
    set_bytes.extend_from_slice(&(b_bytes.len() as u32).to_be_bytes());
    set_bytes.extend_from_slice(&b_bytes);
    let bob_set = SessionSet::from_bytes(&set_bytes).expect("set of one session");
    Fixture {
        bob,
        prekeys,
        alice_session: a,
        bob_session: b,
        bob_set,
        transcript,
    }
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(build);

pub(crate) fn fixture() -> &'static Fixture {
    &FIXTURE
}

pub(crate) fn check(data: &[u8]) {
    let f = fixture();
    let mut rng = rng(9);
    for original in [&f.alice_session, &f.bob_session] {
        let before = original.to_bytes();
        let mut session = original.clone();
        match session.decrypt(data, &mut rng) {
            Ok(plaintext) => {
                assert!(plaintext.len() <= MAX_PLAINTEXT_LEN);
                let after = session.to_bytes();
                assert!(
                    session.decrypt(data, &mut rng).is_err(),
                    "the same message decrypted twice"
                );
                assert_eq!(
                    session.to_bytes(),
                    after,
                    "a refused replay changed the session"
                );
            }
            Err(e) => {
                assert_eq!(
                    session.to_bytes(),
                    before,
                    "a failed decrypt changed the session: {e}"
                );
            }
        }
        let _ = format!("{session:?}");
    }

    let before = f.bob_set.to_bytes();
    let mut set = f.bob_set.clone();
    match set.decrypt(&f.bob, &f.prekeys, data, &mut rng) {
        Ok(decrypted) => {
            assert!(decrypted.plaintext.len() <= MAX_PLAINTEXT_LEN);
            let after = set.to_bytes();
            assert!(
                set.decrypt(&f.bob, &f.prekeys, data, &mut rng).is_err(),
                "the same message decrypted twice in a set"
            );
            assert_eq!(set.to_bytes(), after, "a refused replay changed the set");
        }
        Err(e) => assert_eq!(
            set.to_bytes(),
            before,
            "a failed decrypt changed the set: {e}"
        ),
    }
}
