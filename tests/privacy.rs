//! What the relay holds and who may touch a mailbox.
#![cfg(test)]

mod common;

use std::net::SocketAddr;

use common::*;
use sotto::relay::protocol::{
    ChannelBinding, ErrorCode, PROTOCOL_VERSION, Request, Response, ServerFrame, auth_message,
};
use sotto::relay::{ClientConfig, MailboxAddress, PreKeyUpload, RelayClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_database_after_a_conversation_contains_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let relay = sqlite_relay(&db).await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    let mut bob_in = bob.incoming();
    let mut alice_in = alice.incoming();

    let mut sent = Vec::new();
    for i in 0..6 {
        let a = format!("PLAINTEXT-MARKER alice {i}: meet at the old mill");
        alice.send("bob", a.as_bytes()).await.unwrap();
        expect_texts(&mut bob_in, &[&a]).await;
        let b = format!("PLAINTEXT-MARKER bob {i}: bring the map");
        bob.send("alice", b.as_bytes()).await.unwrap();
        expect_texts(&mut alice_in, &[&b]).await;
        sent.push(a);
        sent.push(b);
    }
    // Some envelopes still queued when we look: Bob offline.
    bob.disconnect().await;
    for i in 0..3 {
        let a = format!("PLAINTEXT-MARKER queued {i}");
        alice.send("bob", a.as_bytes()).await.unwrap();
        sent.push(a);
    }

    let files = database_files(&db);
    assert!(!files.is_empty());
    let mut scanned = 0;
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        scanned += bytes.len();
        assert!(
            !contains(&bytes, b"PLAINTEXT-MARKER"),
            "{} holds a plaintext",
            file.display()
        );
        for text in &sent {
            assert!(!contains(&bytes, text.as_bytes()));
        }
    }
    assert!(scanned > 0);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_do_not_show_the_relay_who_sent_them() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    bob.disconnect().await;
    drop(bob);
    alice.send("bob", b"first contact").await.unwrap();
    alice.send("bob", b"second").await.unwrap();
    let bob = reopen_manual(dir.path(), "bob").await;
    bob.connect(&addr).await.unwrap();
    let envelopes = bob.fetch_envelopes().await.unwrap();
    assert_eq!(envelopes.len(), 2);
    let alice_key = alice.address().identity_key().to_bytes();
    for e in &envelopes {
        // Neither the sender's identity (not even inside the PreKeyMessage)
        // nor the plaintext is visible to the relay.
        assert!(!contains(&e.payload, &alice_key));
        assert!(!contains(&e.payload, b"first contact"));
        assert_eq!(e.payload[0], 0x02, "sealed envelope version");
    }
    let payloads: Vec<Vec<u8>> = envelopes.iter().map(|e| e.payload.clone()).collect();
    for e in envelopes {
        bob.receive_envelope(e).await.unwrap().unwrap();
    }
    assert_eq!(bodies(&bob, "alice").await, vec!["first contact", "second"]);
    // The store's envelope ids (which a notice or a resend would reuse)
    // appear nowhere in what the relay held.
    bob.disconnect().await;
    drop(bob);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let store = sotto::store::Store::open(
        dir.path().join("bob").join(sotto::PROFILE_DB),
        b"bob",
        &options().store,
    )
    .unwrap();
    let page = store
        .history(&alice.address().to_string(), None, 10)
        .unwrap();
    let ids: Vec<[u8; 16]> = page.messages().map(|m| m.envelope_id.0).collect();
    assert_eq!(ids.len(), 2);
    for id in ids {
        for payload in &payloads {
            assert!(!contains(payload, &id));
        }
    }
    relay.shutdown().await;
}

async fn raw_request(stream: &mut tokio::net::TcpStream, id: u32, request: &Request) -> Response {
    let body = request.encode(id);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await.unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.unwrap();
    match ServerFrame::decode(&body).unwrap() {
        ServerFrame::Response { response, .. } => response,
        other => panic!("unexpected frame {other:?}"),
    }
}

fn code(response: Response) -> ErrorCode {
    match response {
        Response::Error(e) => e.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_but_the_owner_reads_acks_or_replaces_a_mailbox() {
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr: SocketAddr = relay.local_addr();
    let (alice, bob) = pair(dir.path(), &addr.to_string()).await;
    bob.disconnect().await;
    alice.send("bob", b"for bob only").await.unwrap();

    // Mallory authenticates as herself: her fetches see only her own
    // (empty) mailbox, her acks of Bob's envelope ids delete nothing, and
    // her prekey uploads change only her own bundle.
    let mut rng = rand::rng();
    let mallory = sotto::core::IdentityKeyPair::generate(&mut rng);
    let conn = RelayClient::connect(addr, ClientConfig::default())
        .await
        .unwrap();
    conn.authenticate(&mallory).await.unwrap();
    assert!(conn.fetch_pending().await.unwrap().is_empty());
    for id in 0..64 {
        assert_eq!(conn.ack(&[id]).await.unwrap(), 0);
    }
    let spk = sotto::core::SignedPreKey::generate(
        sotto::core::SignedPreKeyId::new(9),
        &mallory,
        &mut rng,
    );
    conn.upload_prekeys(PreKeyUpload::new(Some(&spk), &[]))
        .await
        .unwrap();
    let bob_mailbox = bob.address().mailbox();
    let bundle = conn.fetch_bundle(&bob_mailbox).await.unwrap();
    assert_eq!(bundle.identity_key, *bob.address().identity_key());

    // Without authenticating, owner requests are refused.
    let anonymous = RelayClient::connect(addr, ClientConfig::default())
        .await
        .unwrap();
    assert_eq!(
        anonymous.fetch(0, 0).await.unwrap_err().code(),
        Some(ErrorCode::AuthRequired)
    );
    assert_eq!(
        anonymous.ack(&[1]).await.unwrap_err().code(),
        Some(ErrorCode::AuthRequired)
    );
    assert_eq!(
        anonymous
            .upload_prekeys(PreKeyUpload::new(Some(&spk), &[]))
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::AuthRequired)
    );

    // A forged challenge signature (Bob's key, Mallory's signature) is
    // refused, and so is a signature over another connection's challenge.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let Response::Welcome(welcome) = raw_request(
        &mut raw,
        0,
        &Request::Hello {
            versions: vec![PROTOCOL_VERSION],
        },
    )
    .await
    else {
        panic!("expected Welcome");
    };
    let message = auth_message(
        &welcome.server_id,
        &welcome.challenge,
        &ChannelBinding::None,
    );
    let forged = Request::Authenticate {
        identity_key: *bob.address().identity_key().as_bytes(),
        signature: mallory.sign(&message),
    };
    assert_eq!(
        code(raw_request(&mut raw, 1, &forged).await),
        ErrorCode::AuthFailed
    );

    // Bob still gets his message, exactly once.
    let mut bob_in = bob.incoming();
    bob.connect(&addr.to_string()).await.unwrap();
    expect_texts(&mut bob_in, &["for bob only"]).await;
    assert_eq!(bodies(&bob, "alice").await, vec!["for bob only"]);
    let _ = MailboxAddress::of(bob.address().identity_key());
    relay.shutdown().await;
}

/// Every file of a profile is the owner's alone, whatever the umask: the
/// folder 0700, the store, its -wal and -shm, and the relay file 0600. A
/// profile made by an older version with world-readable modes is tightened
/// when opened; one whose folder others can write to is refused.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let relay = memory_relay().await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;
    let mut bob_in = bob.incoming();
    alice.send("bob", b"hello").await.unwrap();
    expect_texts(&mut bob_in, &["hello"]).await;

    let profile = dir.path().join("alice");
    assert_eq!(mode(&profile), 0o700);
    let mut files = 0;
    for entry in std::fs::read_dir(&profile).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        files += 1;
    }
    // sotto.db, its -wal and -shm, and the relay address.
    assert!(files >= 4, "{files} files");

    // A profile left world-readable (older versions, a copy) is tightened.
    alice.disconnect().await;
    drop(alice);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    std::fs::set_permissions(&profile, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(&profile).unwrap() {
        std::fs::set_permissions(
            entry.unwrap().path(),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    let alice = reopen(dir.path(), "alice", options()).await;
    assert_eq!(mode(&profile), 0o700);
    for entry in std::fs::read_dir(&profile).unwrap() {
        assert_eq!(mode(&entry.unwrap().path()), 0o600);
    }
    drop(alice);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    // One that others can write to is refused with a clear error.
    std::fs::set_permissions(&profile, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = sotto::Client::open(&profile, b"alice", options())
        .await
        .unwrap_err();
    assert!(
        matches!(err, sotto::Error::InsecureProfile { mode: 0o777, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 700"));
    relay.shutdown().await;
}
