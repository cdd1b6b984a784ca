//! Someone who copies the database (and its -wal and -shm files) finds no
//! message text, contact names or ids, timestamps, identity keys, prekeys
//! or session state in it.
#![cfg(test)]

mod common;

use std::path::Path;

use common::{ALICE_PASS, BOB_PASS, envelope, files, options, read};
use sotto_store::{Received, Store};

const MARKER: &str = "MARKER-7f3a-plaintext-must-not-leak";
const ALICE_ID: &str = "alice-account-5521@relay.invalid";
const BOB_ID: &str = "bob-account-9034@relay.invalid";
const ALICE_NAME: &str = "Alice Pleasance Liddell";
const BOB_NAME: &str = "Robert Drop-Tables";
const TIMESTAMP: u64 = 1_712_345_678_901;

/// Byte strings that must not appear in the files.
struct Needles(Vec<(String, Vec<u8>)>);

impl Needles {
    fn add(&mut self, what: impl Into<String>, bytes: &[u8]) {
        self.0.push((what.into(), bytes.to_vec()));
    }

    /// Adds every 16-byte window of `secret` at stride 8 that has enough
    /// distinct bytes not to match by chance (counters and flags are
    /// mostly zeros).
    fn add_fragments(&mut self, what: &str, secret: &[u8]) {
        for start in (0..secret.len().saturating_sub(16)).step_by(8) {
            let window = &secret[start..start + 16];
            let mut distinct = window.to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() >= 10 {
                self.add(format!("{what}[{start}..]"), window);
            }
        }
    }

    fn assert_absent(&self, path: &Path) -> usize {
        let mut scanned = 0;
        for file in files(path) {
            let bytes = read(&file);
            scanned += bytes.len();
            for (what, needle) in &self.0 {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                    "{what} found in {}",
                    file.display()
                );
            }
        }
        scanned
    }
}

#[test]
fn no_plaintext_names_keys_or_session_state_in_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let alice_path = dir.path().join("alice.db");
    let bob_path = dir.path().join("bob.db");
    let mut alice = Store::create(&alice_path, ALICE_PASS, &options()).unwrap();
    let mut bob = Store::create(&bob_path, BOB_PASS, &options()).unwrap();

    let otks = bob.fresh_one_time_prekeys(3, 1_700_000_000_000).unwrap();
    let bundle = bob.prekey_bundle(Some(otks[0].0)).unwrap();
    alice.add_contact(BOB_ID, BOB_NAME, None).unwrap();
    alice.start_session(BOB_ID, &bundle).unwrap();
    bob.add_contact(ALICE_ID, ALICE_NAME, None).unwrap();

    let long = format!("{MARKER} ").repeat(200); // over 4 KiB
    for i in 0..30 {
        let text = if i == 7 {
            long.clone()
        } else {
            format!("{MARKER} #{i}")
        };
        let out = alice.send(BOB_ID, text.as_bytes(), TIMESTAMP).unwrap();
        let mut env = envelope(&out, ALICE_ID);
        env.received_at = TIMESTAMP;
        assert!(matches!(bob.receive(&env).unwrap(), Received::Stored(_)));
        if i % 3 == 0 {
            let reply = bob
                .send(
                    ALICE_ID,
                    format!("{MARKER} reply {i}").as_bytes(),
                    TIMESTAMP,
                )
                .unwrap();
            let mut env = envelope(&reply, BOB_ID);
            env.received_at = TIMESTAMP;
            alice.receive(&env).unwrap();
        }
        if i % 2 == 0 {
            alice.mark_sent(&out.id, 0).unwrap();
        }
    }
    assert!(
        !alice.outbox().unwrap().is_empty(),
        "some ciphertexts stay in the outbox"
    );

    let mut needles = Needles(Vec::new());
    needles.add("marker", MARKER.as_bytes());
    needles.add("marker prefix", &MARKER.as_bytes()[..12]);
    for (what, s) in [
        ("alice id", ALICE_ID),
        ("bob id", BOB_ID),
        ("alice name", ALICE_NAME),
        ("bob name", BOB_NAME),
        ("alice id prefix", &ALICE_ID[..13]),
        ("bob name prefix", &BOB_NAME[..10]),
    ] {
        needles.add(what, s.as_bytes());
    }
    needles.add("timestamp be", &TIMESTAMP.to_be_bytes());
    needles.add("timestamp le", &TIMESTAMP.to_le_bytes());
    for (who, store) in [("alice", &alice), ("bob", &bob)] {
        let identity = store.identity().unwrap();
        needles.add(
            format!("{who} identity public key"),
            identity.public().as_bytes(),
        );
        needles.add(
            format!("{who} identity dh key"),
            identity.public().dh_public(),
        );
        needles.add(
            format!("{who} identity seed"),
            identity.to_seed().as_slice(),
        );
        let spk = store.signed_prekey().unwrap();
        needles.add(
            format!("{who} signed prekey private"),
            &spk.to_bytes()[5..37],
        );
        needles.add(
            format!("{who} signed prekey signature"),
            &spk.signature().as_bytes()[..16],
        );
    }
    let alice_sessions = alice.session_state_for_tests(BOB_ID).unwrap().unwrap();
    let bob_sessions = bob.session_state_for_tests(ALICE_ID).unwrap().unwrap();
    needles.add_fragments("alice session state", &alice_sessions);
    needles.add_fragments("bob session state", &bob_sessions);
    assert!(needles.0.len() > 40);

    // While open: main file, WAL and shared-memory index.
    assert!(needles.assert_absent(&alice_path) > 0);
    assert!(needles.assert_absent(&bob_path) > 0);
    let wal = &files(&bob_path)[1];
    assert!(
        !read(wal).is_empty(),
        "the WAL holds recent writes while open"
    );

    // After closing (the WAL is checkpointed into the main file).
    drop(alice);
    drop(bob);
    needles.assert_absent(&alice_path);
    needles.assert_absent(&bob_path);

    // Sanity checks of the scanner: it does find what is stored in the clear...
    let main = read(&bob_path);
    assert!(main.windows(14).any(|w| w == b"seen_envelopes"));
    // ... and the data is there, sealed.
    let bob = Store::open(&bob_path, BOB_PASS, &options()).unwrap();
    let page = bob.history(ALICE_ID, None, 100).unwrap();
    assert!(
        page.messages()
            .any(|m| m.body.as_slice() == long.as_bytes())
    );
    assert_eq!(bob.contact(ALICE_ID).unwrap().unwrap().name, ALICE_NAME);
}
