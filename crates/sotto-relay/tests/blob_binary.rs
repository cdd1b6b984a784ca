//! Blobs on the relay binary: a real process with its blob directory,
//! SIGKILLed in the middle of an upload and started again, and the memory
//! it uses for a blob far larger than its buffers.
#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sotto_core::IdentityKeyPair;
use sotto_relay::{BlobId, BlobToken, ClientConfig, RelayClient};

const DAY: Duration = Duration::from_secs(86_400);

/// A relay process, killed when dropped.
struct RelayProcess {
    child: Child,
    addr: SocketAddr,
}

impl RelayProcess {
    /// Starts `sotto-relay` with `args` on a free loopback port, without a
    /// rate limit worth the name, and waits for it to listen.
    fn start(args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sotto-relay"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SOTTO_RELAY_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--log", "warn"])
            .args(args)
            .env("SOTTO_RELAY_RATE_LIMIT_BYTES_PER_SECOND", "4GiB")
            .env("SOTTO_RELAY_RATE_LIMIT_BYTE_BURST", "4GiB")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
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

    /// SIGKILL: no shutdown, nothing flushed.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The process's peak resident memory so far (`VmHWM`), in bytes.
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        kib * 1024
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config() -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(30),
        ..ClientConfig::default()
    }
}

async fn login(addr: SocketAddr, id: &IdentityKeyPair) -> RelayClient {
    let client = RelayClient::connect(addr, config()).await.unwrap();
    client.authenticate(id).await.unwrap();
    client
}

/// Bytes that show where they sit in the blob.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i / 4093) as u8).wrapping_mul(7).wrapping_add(i as u8))
        .collect()
}

async fn download(client: &RelayClient, id: &BlobId, token: &BlobToken, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let chunk = client
            .blob_get(id, token, out.len() as u64, 1 << 20)
            .await
            .unwrap();
        assert!(!chunk.is_empty());
        out.extend_from_slice(&chunk);
    }
    out
}

fn blob_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, Iterator::count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_upload_keeps_every_answered_byte_and_the_upload_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("relay.db");
    let db = db.to_str().unwrap();
    let blobs = tmp.path().join("relay.db.blobs");
    let alice = IdentityKeyPair::from_seed(&[1; 32]);
    let token = BlobToken::random().unwrap();
    let data = pattern(8 << 20);

    let relay = RelayProcess::start(&["--db", db]);
    let client = login(relay.addr, &alice).await;
    let piece = client.max_blob_chunk();
    let id = client
        .blob_create(data.len() as u64, DAY, std::slice::from_ref(&token))
        .await
        .unwrap();
    // The relay keeps blobs next to its database by default.
    assert_eq!(blob_files(&blobs), 2);
    let mut answered = 0u64;
    for _ in 0..3 {
        let end = (answered as usize + piece).min(data.len());
        answered = client
            .blob_put(&id, answered, &data[answered as usize..end])
            .await
            .unwrap();
    }
    // One more put on its way as the process dies.
    let in_flight = {
        let from = answered as usize;
        let bytes = data[from..from + piece].to_vec();
        let client = std::sync::Arc::new(client);
        let sender = client.clone();
        let put = tokio::spawn(async move { sender.blob_put(&id, from as u64, &bytes).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        relay.kill();
        put
    };
    let _ = in_flight.await.unwrap();

    let relay = RelayProcess::start(&["--db", db]);
    let client = login(relay.addr, &alice).await;
    let state = client.blob_status(&id, None).await.unwrap();
    assert_eq!(state.total_len, data.len() as u64);
    assert!(
        state.stored_len >= answered,
        "{} stored, {answered} answered before the kill",
        state.stored_len
    );
    let mut at = state.stored_len as usize;
    while at < data.len() {
        let end = (at + piece).min(data.len());
        at = client
            .blob_put(&id, at as u64, &data[at..end])
            .await
            .unwrap() as usize;
    }
    let bob = RelayClient::connect(relay.addr, config()).await.unwrap();
    let back = download(&bob, &id, &token, data.len()).await;
    assert!(back == data, "the blob came back different");
    assert!(bob.blob_done(&id, &token).await.unwrap());
    assert_eq!(blob_files(&blobs), 0);
}

/// A 256 MiB blob goes up and comes down through a relay process whose
/// peak memory stays a small fraction of it: it holds a frame or two per
/// connection, never the blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_blob_passes_through_the_relay_in_constant_memory() {
    const LEN: usize = 256 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("blobs");
    let relay = RelayProcess::start(&["--memory", "--blob-dir", dir.to_str().unwrap()]);
    let alice = IdentityKeyPair::from_seed(&[2; 32]);
    let token = BlobToken::random().unwrap();
    let client = login(relay.addr, &alice).await;
    let before = relay.peak_rss();
    let id = client
        .blob_create(LEN as u64, DAY, std::slice::from_ref(&token))
        .await
        .unwrap();
    let piece = client.max_blob_chunk();
    let chunk = pattern(piece);
    let started = Instant::now();
    let mut at = 0;
    while at < LEN {
        let n = piece.min(LEN - at);
        at = client.blob_put(&id, at as u64, &chunk[..n]).await.unwrap() as usize;
    }
    let up = started.elapsed();
    let started = Instant::now();
    let mut got = 0;
    while got < LEN {
        let data = client
            .blob_get(&id, &token, got as u64, 1 << 20)
            .await
            .unwrap();
        // Byte `p` of the blob is byte `p % piece` of the chunk.
        let mut off = 0;
        while off < data.len() {
            let p = (got + off) % piece;
            let n = (piece - p).min(data.len() - off);
            assert!(
                data[off..off + n] == chunk[p..p + n],
                "bytes differ at {}",
                got + off
            );
            off += n;
        }
        got += data.len();
    }
    let down = started.elapsed();
    let peak = relay.peak_rss();
    eprintln!(
        "256 MiB blob: up {up:?}, down {down:?}; relay peak RSS {} MiB before, {} MiB after",
        before >> 20,
        peak >> 20
    );
    assert!(
        peak < before + (48 << 20),
        "the relay's peak RSS grew from {} to {} MiB for a 256 MiB blob",
        before >> 20,
        peak >> 20
    );
    assert_eq!(
        std::fs::metadata(dir.join(format!("{id}.data")))
            .unwrap()
            .len(),
        LEN as u64
    );
}
