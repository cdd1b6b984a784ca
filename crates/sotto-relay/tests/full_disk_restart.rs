//! The relay binary, SIGKILLed on a full disk, starts again on the same
//! database: a real process, a real kill, a real restart. SQLite's
//! `max_page_count` (`--max-db-bytes`) stands in for the full disk.
#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sha2::Digest;
use sotto_core::{IdentityKeyPair, SignedPreKey, SignedPreKeyId};
use sotto_relay::{ClientConfig, ErrorCode, MailboxAddress, MessageId, PreKeyUpload, RelayClient};

/// A relay process, killed when dropped.
struct RelayProcess {
    child: Child,
    addr: SocketAddr,
}

impl RelayProcess {
    /// Starts `sotto-relay` on a free loopback port with `db`, capped at
    /// 256 KiB, and waits for it to listen.
    fn start(db: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sotto-relay"))
            .args(["--listen", "127.0.0.1:0", "--server-id", "full-disk-test"])
            .arg("--db")
            .arg(db)
            .args(["--max-db-bytes", "262144", "--log", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // The first line names the address; read it on a thread, so a relay
        // that fails to start fails the test in time instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let Some(addr) = line.trim().strip_prefix("sotto-relay listening on ") else {
            let status = child.try_wait();
            let _ = child.kill();
            panic!("the relay did not start: {line:?}, {status:?}");
        };
        let addr = addr.parse().unwrap();
        Self { child, addr }
    }

    /// SIGKILL: no shutdown, nothing flushed or checkpointed.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Length and SHA-256 of a file, if it exists.
fn fingerprint(path: &Path) -> Option<(usize, Vec<u8>)> {
    let bytes = std::fs::read(path).ok()?;
    Some((bytes.len(), sha2::Sha256::digest(&bytes).to_vec()))
}

fn config() -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    }
}

fn numbered(i: u32) -> MessageId {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&i.to_be_bytes());
    MessageId(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_on_a_full_disk_starts_again_serves_fetch_and_ack_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let wal = dir.path().join("relay.db-wal");
    let bob = IdentityKeyPair::from_seed(&[2; 32]);
    let bob_address = MailboxAddress::of(bob.public());
    let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
    let spk = SignedPreKey::generate(SignedPreKeyId::new(1), &bob, &mut rng);

    // Fill the database until the relay refuses, then kill it.
    let relay = RelayProcess::start(&db);
    let bob_conn = RelayClient::connect(relay.addr, config()).await.unwrap();
    bob_conn.authenticate(&bob).await.unwrap();
    bob_conn
        .upload_prekeys(PreKeyUpload::new(Some(&spk), &[]))
        .await
        .unwrap();
    let sender = RelayClient::connect(relay.addr, config()).await.unwrap();
    let mut stored = 0u32;
    let refused = loop {
        assert!(stored < 500, "the relay never filled up");
        match sender
            .send(&bob_address, numbered(stored), None, &[0xAB; 8192])
            .await
        {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
    };
    assert!(stored > 5, "{stored} envelopes fit");
    assert_eq!(refused.code(), Some(ErrorCode::StorageFull));
    assert!(refused.to_string().contains("disk is full"), "{refused}");
    relay.kill();
    let before = (fingerprint(&db), fingerprint(&wal));
    assert!(
        before.1.as_ref().is_some_and(|w| w.0 > 0),
        "the kill left a write-ahead log"
    );

    // It starts again on the full database, and starting wrote nothing.
    let relay = RelayProcess::start(&db);
    let bob_conn = RelayClient::connect(relay.addr, config()).await.unwrap();
    let info = bob_conn.authenticate(&bob).await.unwrap();
    assert_eq!(info.pending_envelopes, stored);
    let pending = bob_conn.fetch_pending().await.unwrap();
    assert_eq!(pending.len(), stored as usize);
    assert_eq!(
        (fingerprint(&db), fingerprint(&wal)),
        before,
        "starting and reading needed no space"
    );

    // Still full: new envelopes are refused, clearly.
    let sender = RelayClient::connect(relay.addr, config()).await.unwrap();
    let refused = sender
        .send(&bob_address, numbered(1000), None, &[1; 8192])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::StorageFull));
    assert!(refused.to_string().contains("disk is full"), "{refused}");

    // Acknowledging frees space; sending works again, without a restart.
    let ids: Vec<u64> = pending.iter().map(|e| e.id).collect();
    assert_eq!(bob_conn.ack(&ids).await.unwrap(), stored);
    for i in 0..stored.min(5) {
        sender
            .send(&bob_address, numbered(2000 + i), None, &[2; 8192])
            .await
            .unwrap();
    }
    assert_eq!(
        bob_conn.fetch_pending().await.unwrap().len(),
        stored.min(5) as usize
    );
    relay.kill();
}
