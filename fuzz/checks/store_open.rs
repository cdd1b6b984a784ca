//! Checks of the `store_open` fuzz target, shared with the corpus replay
//! in `crates/sotto-store/tests/fuzz_corpus.rs`.
//!
//! A small but complete store file (identity, prekeys, a contact with a
//! session, history in both directions, an outbox entry) is made once per
//! process. Each input is a list of edits to a copy of that file:
//!
//! ```text
//! input = *(u24be(offset) || byte)   set file[offset % len] = byte
//!         [|| 1 to 3 bytes]           then truncate to (their value % len)
//! ```
//!
//! The copy is opened with the right passphrase. `Store::open` must return
//! `Ok` or a typed error, never panic; on `Ok`, reading the identity,
//! prekeys, contacts, every conversation's history and the outbox must not
//! panic either (unreadable rows are errors in place). The unedited file
//! must open.
//!
//! The Argon2id cost is read from the file. An edit can raise it up to the
//! store's maxima (4 GiB, 64 passes): a denial of service by whoever can
//! write the file, who could as well delete it. Inputs that raise it above
//! a light cost are skipped, so a run measures parsing, not Argon2.

use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, PoisonError};

use rusqlite::{Connection, OpenFlags};
use sotto_store::{Envelope, KdfParams, MAX_PAGE, OpenOptions, Received, Store};

pub(crate) const PASSPHRASE: &[u8] = b"fuzz passphrase";

/// Argon2id costs at or below these are run; above, the input is skipped.
const LIGHT_MEMORY_KIB: u32 = 1024;
const LIGHT_ITERATIONS: u32 = 4;
const LIGHT_PARALLELISM: u32 = 4;

fn options() -> OpenOptions {
    OpenOptions::new().kdf(KdfParams::new(8, 1, 1).expect("light KDF parameters"))
}

struct Template {
    dir: tempfile::TempDir,
    bytes: Vec<u8>,
}

impl Template {
    fn path(&self) -> PathBuf {
        self.dir.path().join("fuzz.db")
    }
}

/// Alice's store after a short conversation with Bob.
fn make_template() -> Template {
    let dir = tempfile::tempdir().expect("temporary directory");
    let alice_path = dir.path().join("alice.db");
    let options = options();
    {
        let mut alice = Store::create(&alice_path, PASSPHRASE, &options).expect("create alice");
        let mut bob =
            Store::create(dir.path().join("bob.db"), b"bob", &options).expect("create bob");
        let published = bob
            .fresh_one_time_prekeys(2, 1_700_000_000_000)
            .expect("prekeys");
        let bundle = bob.prekey_bundle(Some(published[0].0)).expect("bundle");
        alice.add_contact("bob", "Bob", None).expect("contact");
        alice.start_session("bob", &bundle).expect("session");
        alice
            .fresh_one_time_prekeys(2, 1_700_000_000_000)
            .expect("prekeys");
        for (i, text) in [&b"hello bob"[..], b"are you there?"].iter().enumerate() {
            let out = alice.send("bob", text, 1_000 + i as u64).expect("send");
            let envelope = Envelope {
                id: out.id,
                sender: "alice",
                device: sotto_store::PeerDevice::CONTACT_PRIMARY,
                ciphertext: &out.ciphertext,
                sent_at: 0,
                received_at: 2_000 + i as u64,
            };
            assert!(matches!(
                bob.receive(&envelope).expect("receive"),
                Received::Stored(_)
            ));
            if i == 0 {
                alice.mark_sent(&out.id, 0).expect("mark sent");
            }
        }
        let reply = bob.send("alice", b"hi alice", 3_000).expect("reply");
        let envelope = Envelope {
            id: reply.id,
            sender: "bob",
            device: sotto_store::PeerDevice::CONTACT_PRIMARY,
            ciphertext: &reply.ciphertext,
            sent_at: 0,
            received_at: 4_000,
        };
        alice.receive(&envelope).expect("alice receives");
        alice.checkpoint().expect("checkpoint");
    }
    let bytes = std::fs::read(&alice_path).expect("read the template");
    Template { dir, bytes }
}

static TEMPLATE: LazyLock<Mutex<Template>> = LazyLock::new(|| Mutex::new(make_template()));

/// The template file with the input's edits applied.
pub(crate) fn edited(template: &[u8], data: &[u8]) -> Vec<u8> {
    let mut bytes = template.to_vec();
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        if bytes.is_empty() {
            break;
        }
        let offset = u32::from_be_bytes([0, chunk[0], chunk[1], chunk[2]]) as usize;
        let at = offset % bytes.len();
        bytes[at] = chunk[3];
    }
    if !tail.is_empty() && !bytes.is_empty() {
        let value = tail
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        bytes.truncate(value % bytes.len());
    }
    bytes
}

/// The Argon2id cost the file asks for, if it can be read.
fn kdf_is_light(path: &Path) -> bool {
    let read = || -> rusqlite::Result<Vec<u8>> {
        let uri = format!("file:{}?immutable=1", path.display());
        let conn = Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.pragma_update(None, "trusted_schema", "OFF")?;
        conn.pragma_update(None, "cell_size_check", "ON")?;
        conn.query_row("SELECT value FROM meta WHERE name = 'kdf'", [], |row| {
            row.get(0)
        })
    };
    // Unreadable: the store will not get as far as Argon2 either.
    let Ok(record) = read() else {
        return true;
    };
    let word = |i: usize| {
        record
            .get(i..i + 4)
            .and_then(|w| w.try_into().ok())
            .map_or(0, u32::from_be_bytes)
    };
    word(18) <= LIGHT_MEMORY_KIB && word(22) <= LIGHT_ITERATIONS && word(26) <= LIGHT_PARALLELISM
}

pub(crate) fn check(data: &[u8]) {
    let template = TEMPLATE.lock().unwrap_or_else(PoisonError::into_inner);
    let path = template.path();
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = path.clone().into_os_string();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
    std::fs::write(&path, edited(&template.bytes, data)).expect("write the edited file");
    if !kdf_is_light(&path) {
        return;
    }
    match Store::open(&path, PASSPHRASE, &options()) {
        Ok(store) => read_everything(&store),
        Err(e) => {
            assert!(!data.is_empty(), "the unedited template does not open: {e}");
            let _ = format!("{e} {e:?}");
        }
    }
}

fn read_everything(store: &Store) {
    let _ = format!("{store:?}");
    let _ = store.schema_version();
    let _ = store.identity().map(|id| *id.public());
    let _ = store.signed_prekey().map(|k| k.id());
    let _ = store.one_time_prekeys();
    let _ = store.one_time_prekey_count();
    let _ = store.prekey_bundle(None);
    if let Ok(outbox) = store.outbox() {
        for entry in outbox {
            let _ = format!("{entry:?}");
        }
    }
    let Ok(contacts) = store.contacts() else {
        return;
    };
    for contact in contacts.into_iter().flatten() {
        let _ = format!("{contact:?}");
        let id = contact.id.as_str();
        let _ = store.has_session(id);
        let _ = store.safety_number(id);
        let _ = store.message_count(id);
        if let Ok(page) = store.history(id, None, MAX_PAGE) {
            for entry in &page.entries {
                let _ = format!("{entry:?}");
                if let Ok(message) = &entry.message {
                    let _ = store.message(id, message.seq);
                }
            }
        }
    }
}
