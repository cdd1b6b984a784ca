//! Files between two clients through a relay: a large one arrives intact
//! although the relay goes away twice mid-transfer, a changed or moved
//! chunk is refused, the relay's files hold nothing of it, and deleting
//! the message (or its running out of time) deletes the file.
#![cfg(test)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};
use sotto::relay::{BlobStorage, RateLimit, Server, ServerConfig, ServerHandle, SqliteStore};
use sotto::{Client, ClientEvent, Clock, FileFailure};

const MIB: usize = 1 << 20;
const LONG_WAIT: Duration = Duration::from_secs(180);

/// A relay on SQLite with its blobs in `dir/blobs`, the per-connection
/// rate limits lifted (a 100 MiB file is the subject, not the limits).
fn config(dir: &Path) -> ServerConfig {
    ServerConfig {
        rate_limit: RateLimit {
            requests_per_second: 1e9,
            request_burst: 1e9,
            bytes_per_second: 1e12,
            byte_burst: 1e12,
        },
        blobs: BlobStorage::dir(dir.join("blobs")).unwrap(),
        ..unlimited_first_contacts()
    }
}

async fn relay(dir: &Path, addr: SocketAddr) -> ServerHandle {
    for _ in 0..100 {
        if let Ok(server) = Server::bind(
            addr,
            config(dir),
            Arc::new(SqliteStore::open(dir.join("relay.db")).unwrap()),
        )
        .await
        {
            return server.spawn();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("could not bind {addr}");
}

/// Alice and Bob connected (and reconnecting) to the relay at `addr`,
/// with a session each way.
async fn connected_pair(dir: &Path, addr: &str, clock: Option<&Clock>) -> (Client, Client) {
    let options = || sotto::ClientOptions {
        clock: clock.cloned().unwrap_or_default(),
        ..options()
    };
    let alice = client_with(dir, "alice", options()).await;
    let bob = client_with(dir, "bob", options()).await;
    alice.register(addr).await.unwrap();
    bob.register(addr).await.unwrap();
    alice.add_contact("bob", &bob.address()).await.unwrap();
    bob.add_contact("alice", &alice.address()).await.unwrap();
    alice.connect(addr).await.unwrap();
    bob.connect(addr).await.unwrap();
    let mut bob_in = bob.incoming();
    alice.send("bob", b"hello").await.unwrap();
    next_message(&mut bob_in).await;
    (alice, bob)
}

/// A file of `len` bytes: random, with a marker at every MiB, so that a
/// scan can tell whether any part of it is somewhere in the clear.
fn write_file(path: &Path, len: usize) -> [u8; 32] {
    let mut bytes = vec![0u8; len];
    rand::rand_core::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
    for (i, at) in (0..len.saturating_sub(32)).step_by(MIB).enumerate() {
        let marker = format!("FILE-MARKER-{i:08}-6a1f");
        bytes[at..at + marker.len()].copy_from_slice(marker.as_bytes());
    }
    std::fs::write(path, &bytes).unwrap();
    Sha256::digest(&bytes).into()
}

fn sha256_of(path: &Path) -> [u8; 32] {
    Sha256::digest(std::fs::read(path).unwrap()).into()
}

/// Every file under `dir`.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The files under `dir` that hold a file marker.
fn files_with_markers(dir: &Path) -> Vec<PathBuf> {
    all_files(dir)
        .into_iter()
        .filter(|f| contains(&std::fs::read(f).unwrap_or_default(), b"FILE-MARKER-"))
        .collect()
}

/// Waits for the first event `pick` returns something for.
async fn until<T>(
    events: &mut sotto::Events,
    wait: Duration,
    mut pick: impl FnMut(&ClientEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(wait, async {
        loop {
            let event = events.next().await.expect("events end");
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    })
    .await
    .expect("the event in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_file_arrives_intact_with_the_relay_cut_off_twice() {
    let dir = tempfile::tempdir().unwrap();
    let relay_dir = dir.path().join("relay");
    std::fs::create_dir(&relay_dir).unwrap();
    let first = relay(&relay_dir, "127.0.0.1:0".parse().unwrap()).await;
    let addr = first.local_addr();
    let (alice, bob) = connected_pair(dir.path(), &addr.to_string(), None).await;
    let source = dir.path().join("big.bin");
    let expected = write_file(&source, 100 * MIB);
    let (mut alice_events, mut bob_events) = (alice.events(), bob.events());

    alice.send_file("bob", &source).await.unwrap();
    // Cut off a third of the way up.
    until(&mut alice_events, LONG_WAIT, |e| match e {
        ClientEvent::FileProgress {
            outgoing: true,
            done,
            total,
            ..
        } if *done * 3 >= *total => Some(()),
        _ => None,
    })
    .await;
    first.shutdown().await;
    let second = relay(&relay_dir, addr).await;
    let sent = until(&mut alice_events, LONG_WAIT, |e| match e {
        ClientEvent::FileSent { seq, .. } => Some(*seq),
        _ => None,
    })
    .await;
    // Cut off again halfway down.
    until(&mut bob_events, LONG_WAIT, |e| match e {
        ClientEvent::FileProgress {
            outgoing: false,
            done,
            total,
            ..
        } if *done * 2 >= *total => Some(()),
        _ => None,
    })
    .await;
    second.shutdown().await;
    let third = relay(&relay_dir, addr).await;
    let received = until(&mut bob_events, LONG_WAIT, |e| match e {
        ClientEvent::FileReceived { seq, .. } => Some(*seq),
        ClientEvent::FileFailed { reason, .. } => panic!("the file failed: {reason}"),
        _ => None,
    })
    .await;

    // Both histories list it; Bob writes it out byte for byte.
    let item = |items: Vec<sotto::HistoryItem>, seq| {
        items
            .into_iter()
            .find(|i| i.seq == seq)
            .and_then(|i| i.attachment)
            .unwrap()
    };
    let on_bob = item(bob.history("alice", None, 10).await.unwrap(), received);
    assert_eq!(
        (on_bob.name.as_str(), on_bob.len, on_bob.here),
        ("big.bin", (100 * MIB) as u64, true)
    );
    assert!(item(alice.history("bob", None, 10).await.unwrap(), sent).here);
    let out = dir.path().join("saved.bin");
    assert_eq!(
        bob.save_attachment("alice", received, &out).await.unwrap(),
        (100 * MIB) as u64
    );
    assert_eq!(sha256_of(&out), expected);
    std::fs::remove_file(&out).unwrap();
    std::fs::remove_file(&source).unwrap();

    // Every recipient device fetched it: the relay deleted the blob. Its
    // files, and the profiles' (which keep it encrypted), hold no marker.
    assert!(
        all_files(&relay_dir.join("blobs"))
            .iter()
            .all(|f| std::fs::metadata(f).unwrap().len() < 4096),
        "{:?}",
        all_files(&relay_dir.join("blobs"))
    );
    alice.disconnect().await;
    bob.disconnect().await;
    third.shutdown().await;
    assert_eq!(files_with_markers(dir.path()), Vec::<PathBuf>::new());

    // Deleting the message deletes the file, and its key with it.
    assert!(bob.delete_message("alice", received).await.unwrap());
    assert!(matches!(
        bob.save_attachment("alice", received, &out).await,
        Err(sotto::Error::Store(_))
    ));
    let kept = all_files(&dir.path().join("bob").join(sotto::ATTACHMENTS_DIR));
    assert!(kept.is_empty(), "{kept:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_or_swapped_chunk_on_the_relay_is_refused_and_nothing_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let relay_dir = dir.path().join("relay");
    std::fs::create_dir(&relay_dir).unwrap();
    let server = relay(&relay_dir, "127.0.0.1:0".parse().unwrap()).await;
    let addr = server.local_addr().to_string();
    let (alice, bob) = connected_pair(dir.path(), &addr, None).await;
    // Bob away while the files go up, so the relay's copies can be
    // changed before he fetches them.
    bob.disconnect().await;
    let mut alice_events = alice.events();
    for (name, len) in [
        ("changed.bin", 3 * 65_536 + 100),
        ("swapped.bin", 3 * 65_536),
    ] {
        let path = dir.path().join(name);
        write_file(&path, len);
        alice.send_file("bob", &path).await.unwrap();
        until(&mut alice_events, WAIT, |e| {
            matches!(e, ClientEvent::FileSent { .. }).then_some(())
        })
        .await;
    }
    // The two largest files in the relay's blob folder are the blobs, in
    // the order they were made (by length: the first is longer).
    let mut blobs: Vec<(u64, PathBuf)> = all_files(&relay_dir.join("blobs"))
        .into_iter()
        .map(|f| (std::fs::metadata(&f).unwrap().len(), f))
        .filter(|(len, _)| *len > 65_536)
        .collect();
    blobs.sort();
    assert_eq!(blobs.len(), 2, "{blobs:?}");
    let stride = 65_536 + 16;
    let mut swapped = std::fs::read(&blobs[0].1).unwrap();
    let (a, b) = swapped.split_at_mut(stride);
    a.swap_with_slice(&mut b[..stride]);
    std::fs::write(&blobs[0].1, &swapped).unwrap();
    let mut changed = std::fs::read(&blobs[1].1).unwrap();
    changed[2 * stride + 7] ^= 0x01;
    std::fs::write(&blobs[1].1, &changed).unwrap();

    let mut bob_events = bob.events();
    bob.connect(&addr).await.unwrap();
    let mut failures = Vec::new();
    while failures.len() < 2 {
        let (seq, reason) = until(&mut bob_events, WAIT, |e| match e {
            ClientEvent::FileFailed { seq, reason, .. } => Some((*seq, *reason)),
            ClientEvent::FileReceived { .. } => panic!("a changed file was taken"),
            _ => None,
        })
        .await;
        failures.push((seq, reason));
    }
    assert!(failures.iter().all(|(_, r)| *r == FileFailure::Tampered));
    for (seq, _) in &failures {
        assert!(matches!(
            bob.save_attachment("alice", *seq, dir.path().join("out"))
                .await,
            Err(sotto::Error::AttachmentNotHere(_))
        ));
    }
    let kept = all_files(&dir.path().join("bob").join(sotto::ATTACHMENTS_DIR));
    assert!(kept.is_empty(), "{kept:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disappearing_file_goes_with_its_message_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let relay_dir = dir.path().join("relay");
    std::fs::create_dir(&relay_dir).unwrap();
    let server = relay(&relay_dir, "127.0.0.1:0".parse().unwrap()).await;
    let addr = server.local_addr().to_string();
    let clock = Clock::manual(1_800_000_000_000);
    let (alice, bob) = connected_pair(dir.path(), &addr, Some(&clock)).await;
    alice
        .set_disappearing_timer("bob", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    let (mut alice_events, mut bob_events) = (alice.events(), bob.events());
    let path = dir.path().join("note.txt");
    write_file(&path, 200_000);
    alice.send_file("bob", &path).await.unwrap();
    let sent = until(&mut alice_events, WAIT, |e| match e {
        ClientEvent::FileSent { seq, .. } => Some(*seq),
        _ => None,
    })
    .await;
    let received = until(&mut bob_events, WAIT, |e| match e {
        ClientEvent::FileReceived { seq, .. } => Some(*seq),
        _ => None,
    })
    .await;
    bob.mark_read("alice", received).await.unwrap();
    let folder = |name: &str| dir.path().join(name).join(sotto::ATTACHMENTS_DIR);
    assert_eq!(all_files(&folder("alice")).len(), 1);
    assert_eq!(all_files(&folder("bob")).len(), 1);
    clock.advance(Duration::from_secs(61));
    // Alice's copy counts from when the relay took her message.
    assert!(alice.expire_messages().await.unwrap() >= 1);
    assert_eq!(bob.expire_messages().await.unwrap(), 1);
    assert!(all_files(&folder("alice")).is_empty());
    assert!(all_files(&folder("bob")).is_empty());
    for (client, contact, seq) in [(&alice, "bob", sent), (&bob, "alice", received)] {
        let items = client.history(contact, None, 10).await.unwrap();
        assert!(items.iter().all(|i| i.seq != seq));
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_can_be_the_first_message_to_a_contact() {
    let dir = tempfile::tempdir().unwrap();
    let relay_dir = dir.path().join("relay");
    std::fs::create_dir(&relay_dir).unwrap();
    let server = relay(&relay_dir, "127.0.0.1:0".parse().unwrap()).await;
    let addr = server.local_addr().to_string();
    let alice = client(dir.path(), "alice").await;
    let bob = client(dir.path(), "bob").await;
    alice.register(&addr).await.unwrap();
    bob.register(&addr).await.unwrap();
    alice.add_contact("bob", &bob.address()).await.unwrap();
    alice.connect(&addr).await.unwrap();
    bob.connect(&addr).await.unwrap();
    let mut bob_events = bob.events();
    let path = dir.path().join("first.pdf");
    let expected = write_file(&path, 70_000);
    alice.send_file("bob", &path).await.unwrap();
    let seq = until(&mut bob_events, WAIT, |e| match e {
        ClientEvent::FileReceived { seq, .. } => Some(*seq),
        _ => None,
    })
    .await;
    let contact = alice.address().to_string();
    let items = bob.history(&contact, None, 10).await.unwrap();
    let file = items.iter().find_map(|i| i.attachment.clone()).unwrap();
    assert_eq!(
        (file.name.as_str(), file.media_type.as_str(), file.len),
        ("first.pdf", "application/pdf", 70_000)
    );
    let out = dir.path().join("out.pdf");
    bob.save_attachment(&contact, seq, &out).await.unwrap();
    assert_eq!(sha256_of(&out), expected);
    server.shutdown().await;
}
