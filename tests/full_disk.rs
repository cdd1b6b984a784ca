//! A full disk, on the device and at the relay: every failure is reported
//! as one, reading still works, nothing is lost, and everything resumes
//! once there is space.
//!
//! The device's full disk is a real one: a small tmpfs mounted in a private
//! mount namespace (`unshare --user --map-root-user --mount`, util-linux),
//! in which this test binary runs the `#[ignore]`d inner test.
#![cfg(test)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sotto::relay::ServerConfig;
use sotto::store::Error as StoreError;
use sotto::{Client, Error};

const DIR_VAR: &str = "SOTTO_FULL_DISK_DIR";

/// Fills the file system holding `dir` to the last byte.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    while file.write_all(&block).and_then(|()| file.flush()).is_ok() {}
    // Byte by byte for what a block no longer fits in.
    while file.write_all(&[0]).and_then(|()| file.flush()).is_ok() {}
    path
}

fn is_disk_full(e: &Error) -> bool {
    match e {
        Error::Store(StoreError::DiskFull) => true,
        Error::ReceiveIncomplete { error, .. } => is_disk_full(error),
        _ => false,
    }
}

#[test]
fn a_full_disk_on_the_device_is_reported_reading_works_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "mount -t tmpfs -o size=900k tmpfs '{dir}' && exec '{exe}' --exact full_disk_inner --ignored --nocapture",
        dir = dir.path().display(),
        exe = exe.display(),
    );
    let out = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .env(DIR_VAR, dir.path())
        .output()
        .expect("unshare (util-linux) must be installed to run this test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "inner test failed:\n{text}");
    assert!(text.contains("1 passed"), "inner test did not run:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_full_disk_on_the_device_is_reported_reading_works_and_nothing_is_lost on a small file system"]
async fn full_disk_inner() {
    let small = PathBuf::from(std::env::var(DIR_VAR).expect("run by the outer test"));
    let other = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let alice = Client::create(small.join("alice"), b"alice", options())
        .await
        .unwrap();
    let bob = client(other.path(), "bob").await;
    alice.register(&addr).await.unwrap();
    bob.register(&addr).await.unwrap();
    alice.add_contact("bob", &bob.address()).await.unwrap();
    bob.add_contact("alice", &alice.address()).await.unwrap();
    let mut incoming = alice.incoming();
    bob.send("alice", b"before").await.unwrap();
    expect_texts(&mut incoming, &["before"]).await;
    alice.disconnect().await;
    drop(alice);
    tokio::time::sleep(Duration::from_millis(50)).await;

    // The disk fills up while Alice is away; Bob writes.
    let filler = fill(&small);
    for t in ["while full 1", "while full 2"] {
        bob.send("alice", t.as_bytes()).await.unwrap();
    }
    let manual = sotto::ClientOptions {
        auto_receive: false,
        ..options()
    };
    // Opening and reading work on the full disk.
    let alice = Client::open(small.join("alice"), b"alice", manual.clone())
        .await
        .unwrap();
    assert_eq!(bodies(&alice, "bob").await, vec!["before"]);
    // Receiving fails as a failure, in words a user understands, and
    // leaves both envelopes on the relay.
    alice.connect(&addr).await.unwrap();
    let err = alice.sync().await.unwrap_err();
    assert!(is_disk_full(&err), "{err}");
    assert!(err.to_string().contains("disk is full"), "{err}");
    assert!(
        matches!(
            err,
            Error::ReceiveIncomplete {
                stored: 0,
                left: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(alice.fetch_envelopes().await.unwrap().len(), 2);
    // Sending fails before anything leaves.
    let err = alice.send("bob", b"no room").await.unwrap_err();
    assert!(is_disk_full(&err), "{err}");
    assert_eq!(bodies(&alice, "bob").await, vec!["before"]);

    // Space again: everything arrives, once.
    std::fs::remove_file(filler).unwrap();
    assert_eq!(alice.sync().await.unwrap(), 2);
    assert_eq!(
        bodies(&alice, "bob").await,
        vec!["before", "while full 1", "while full 2"]
    );
    alice.send("bob", b"room again").await.unwrap();
    relay.shutdown().await;
}

/// The relay cannot record acknowledgements (its disk is full): `sync`
/// reports it instead of counting the envelopes as done, and nothing is
/// lost or stored twice once the relay works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_cannot_record_acknowledgements_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InterceptingStore::new());
    let relay = relay_with(ServerConfig::default(), store.clone()).await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    alice.disconnect().await;
    drop(alice);
    tokio::time::sleep(Duration::from_millis(20)).await;
    bob.send("alice", b"one").await.unwrap();
    bob.send("alice", b"two").await.unwrap();
    let alice = reopen_manual(dir.path(), "alice").await;
    alice.connect(&addr).await.unwrap();

    *store.failing_acks.lock().unwrap() = true;
    let err = alice.sync().await.unwrap_err();
    assert!(
        matches!(err, Error::ReceiveIncomplete { left: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("not acknowledged"), "{err}");
    // Stored all the same (they are in the history) and still queued.
    assert_eq!(bodies(&alice, "bob").await, vec!["one", "two"]);
    assert_eq!(alice.fetch_envelopes().await.unwrap().len(), 2);

    *store.failing_acks.lock().unwrap() = false;
    assert_eq!(alice.sync().await.unwrap(), 0);
    assert_eq!(alice.fetch_envelopes().await.unwrap().len(), 0);
    assert_eq!(bodies(&alice, "bob").await, vec!["one", "two"]);
    relay.shutdown().await;
}
