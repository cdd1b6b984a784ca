//! Blobs (protocol version 5): upload in pieces, resume, download with a
//! token, deletion when every token is done or the blob expires, limits.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sotto_relay::protocol::{Request, Response};
use sotto_relay::{
    BlobId, BlobState, BlobStorage, BlobToken, ClientError, ErrorCode, MemoryStore, RelayClient,
    ServerConfig, ServerHandle, UnixTime,
};

use crate::common::*;

/// A day: the blobs' time to live in these tests.
const DAY: Duration = Duration::from_secs(86_400);

/// Bytes that show where they sit in the blob, so a piece out of place
/// shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i / 251) as u8).wrapping_add(i as u8))
        .collect()
}

/// A configuration whose blobs go to `dir`.
fn dir_config(dir: &Path) -> ServerConfig {
    ServerConfig {
        blobs: BlobStorage::dir(dir).unwrap(),
        ..config()
    }
}

async fn start_dir(dir: &Path) -> ServerHandle {
    start_with(dir_config(dir), Arc::new(MemoryStore::new())).await
}

/// The error code of a client error that must be the relay's refusal.
fn code(e: ClientError) -> ErrorCode {
    match e {
        ClientError::Server { code, .. } => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Uploads `data` from `offset` in pieces of `piece` bytes.
async fn upload(client: &RelayClient, id: &BlobId, data: &[u8], offset: usize, piece: usize) {
    let mut at = offset;
    while at < data.len() {
        let end = (at + piece).min(data.len());
        let stored = client
            .blob_put(id, at as u64, &data[at..end])
            .await
            .unwrap();
        assert_eq!(stored, end as u64);
        at = end;
    }
}

/// Downloads the whole blob in pieces of `piece` bytes.
async fn download(client: &RelayClient, id: &BlobId, token: &BlobToken, piece: u32) -> Vec<u8> {
    let state = client.blob_status(id, Some(token)).await.unwrap();
    let mut out = Vec::new();
    while (out.len() as u64) < state.total_len {
        let chunk = client
            .blob_get(id, token, out.len() as u64, piece)
            .await
            .unwrap();
        assert!(!chunk.is_empty() && chunk.len() <= piece as usize);
        out.extend_from_slice(&chunk);
    }
    out
}

/// Files in `dir`.
fn files(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[tokio::test]
async fn a_blob_uploaded_in_pieces_comes_down_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = start_dir(tmp.path()).await;
    let alice = owner(relay.local_addr(), &identity(1)).await;
    let tokens = [BlobToken::random().unwrap(), BlobToken::random().unwrap()];
    let data = pattern(3 << 20 | 12_345);
    let id = alice
        .blob_create(data.len() as u64, DAY, &tokens)
        .await
        .unwrap();
    assert!(alice.max_blob_chunk() >= 1 << 19);
    upload(&alice, &id, &data, 0, alice.max_blob_chunk()).await;
    assert_eq!(
        alice.blob_status(&id, None).await.unwrap(),
        BlobState {
            stored_len: data.len() as u64,
            total_len: data.len() as u64
        }
    );
    // Recipients need no login: the token is the capability.
    for token in &tokens {
        let bob = connect(relay.local_addr()).await;
        assert_eq!(download(&bob, &id, token, 700_001).await, data);
    }
    // A piece larger than a frame is cut to one.
    let anyone = connect(relay.local_addr()).await;
    let big = anyone.blob_get(&id, &tokens[0], 0, u32::MAX).await.unwrap();
    assert!(big.len() <= 1 << 20 && big.len() >= alice.max_blob_chunk());
    assert!(
        anyone
            .blob_get(&id, &tokens[0], data.len() as u64, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The answers' buffers were charged to the frame pools, and are back.
    eventually("frame memory given back", || {
        relay.frame_memory() == sotto_relay::FrameMemory::default()
    })
    .await;
    relay.shutdown().await;
}

#[tokio::test]
async fn a_resent_put_changes_nothing_and_the_status_says_where_to_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = start_dir(tmp.path()).await;
    let token = BlobToken::random().unwrap();
    let data = pattern(1 << 20);
    let piece = 300_000;
    let id = {
        let alice = owner(relay.local_addr(), &identity(1)).await;
        let id = alice
            .blob_create(data.len() as u64, DAY, std::slice::from_ref(&token))
            .await
            .unwrap();
        upload(&alice, &id, &data[..2 * piece], 0, piece).await;
        // The connection is lost (dropped) after the second piece.
        id
    };
    let alice = owner(relay.local_addr(), &identity(1)).await;
    let state = alice.blob_status(&id, None).await.unwrap();
    assert_eq!(state.stored_len, 2 * piece as u64);
    // A resend of the first piece, with other bytes: answered with what is
    // stored, and nothing is written.
    assert_eq!(
        alice.blob_put(&id, 0, &[0xEE; 1000]).await.unwrap(),
        2 * piece as u64
    );
    assert_eq!(
        alice
            .blob_put(&id, piece as u64 + 5, &data[piece + 5..2 * piece + 10])
            .await
            .unwrap(),
        2 * piece as u64
    );
    // A gap is refused, and changes nothing either.
    let gap = alice.blob_put(&id, 2 * piece as u64 + 1, b"x").await;
    assert_eq!(code(gap.unwrap_err()), ErrorCode::InvalidBlobRequest);
    // Past the end too.
    let past = alice
        .blob_put(&id, 2 * piece as u64, &vec![0; data.len() - 2 * piece + 1])
        .await;
    assert_eq!(code(past.unwrap_err()), ErrorCode::InvalidBlobRequest);
    upload(&alice, &id, &data, state.stored_len as usize, piece).await;
    let bob = connect(relay.local_addr()).await;
    assert_eq!(download(&bob, &id, &token, 1 << 18).await, data);
    relay.shutdown().await;
}

#[tokio::test]
async fn wrong_tokens_unknown_ids_and_another_mailboxs_puts_are_not_found() {
    let relay = start().await;
    let alice = owner(relay.local_addr(), &identity(1)).await;
    let mallory = owner(relay.local_addr(), &identity(2)).await;
    let token = BlobToken::random().unwrap();
    let wrong = BlobToken::random().unwrap();
    let id = alice
        .blob_create(4, DAY, std::slice::from_ref(&token))
        .await
        .unwrap();
    let unknown = BlobId::random().unwrap();
    assert_ne!(id, unknown);
    let not_found =
        |r: Result<_, ClientError>| assert_eq!(code(r.unwrap_err()), ErrorCode::NotFound);
    not_found(mallory.blob_put(&id, 0, b"evil").await.map(|_| ()));
    not_found(mallory.blob_status(&id, None).await.map(|_| ()));
    not_found(mallory.blob_status(&id, Some(&wrong)).await.map(|_| ()));
    not_found(alice.blob_put(&unknown, 0, b"abcd").await.map(|_| ()));
    alice.blob_put(&id, 0, b"abcd").await.unwrap();
    not_found(mallory.blob_get(&id, &wrong, 0, 4).await.map(|_| ()));
    not_found(mallory.blob_get(&unknown, &token, 0, 4).await.map(|_| ()));
    not_found(mallory.blob_done(&id, &wrong).await.map(|_| ()));
    not_found(mallory.blob_done(&unknown, &token).await.map(|_| ()));
    // The messages do not tell which it was.
    let messages: Vec<String> = [
        mallory.blob_get(&id, &wrong, 0, 4).await.unwrap_err(),
        mallory.blob_get(&unknown, &token, 0, 4).await.unwrap_err(),
    ]
    .into_iter()
    .map(|e| e.to_string())
    .collect();
    assert_eq!(messages[0], messages[1]);
    // The token opens it for anyone, logged in as anyone or not.
    assert_eq!(mallory.blob_get(&id, &token, 0, 4).await.unwrap(), b"abcd");
    assert_eq!(
        mallory
            .blob_status(&id, Some(&token))
            .await
            .unwrap()
            .stored_len,
        4
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn creating_and_putting_need_a_login_and_a_download_waits_for_the_whole_blob() {
    let relay = start().await;
    let anonymous = connect(relay.local_addr()).await;
    let token = BlobToken::random().unwrap();
    let e = anonymous
        .blob_create(10, DAY, std::slice::from_ref(&token))
        .await;
    assert_eq!(code(e.unwrap_err()), ErrorCode::AuthRequired);
    let alice = owner(relay.local_addr(), &identity(1)).await;
    let id = alice
        .blob_create(10, DAY, std::slice::from_ref(&token))
        .await
        .unwrap();
    let e = anonymous.blob_put(&id, 0, b"x").await;
    assert_eq!(code(e.unwrap_err()), ErrorCode::AuthRequired);
    alice.blob_put(&id, 0, b"012345678").await.unwrap();
    let e = anonymous.blob_get(&id, &token, 0, 10).await;
    assert_eq!(code(e.unwrap_err()), ErrorCode::BlobIncomplete);
    assert_eq!(
        anonymous.blob_status(&id, Some(&token)).await.unwrap(),
        BlobState {
            stored_len: 9,
            total_len: 10
        }
    );
    alice.blob_put(&id, 9, b"9").await.unwrap();
    assert_eq!(
        anonymous.blob_get(&id, &token, 3, 4).await.unwrap(),
        b"3456"
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn the_last_token_done_deletes_the_blob_and_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = start_dir(tmp.path()).await;
    let alice = owner(relay.local_addr(), &identity(1)).await;
    let tokens: Vec<BlobToken> = (0..3).map(|_| BlobToken::random().unwrap()).collect();
    let id = alice.blob_create(5, DAY, &tokens).await.unwrap();
    alice.blob_put(&id, 0, b"hello").await.unwrap();
    assert_eq!(files(tmp.path()), 2);
    let bob = connect(relay.local_addr()).await;
    assert!(!bob.blob_done(&id, &tokens[0]).await.unwrap());
    assert!(!bob.blob_done(&id, &tokens[0]).await.unwrap(), "idempotent");
    assert!(!bob.blob_done(&id, &tokens[2]).await.unwrap());
    // Some done: still there, for the others.
    assert_eq!(files(tmp.path()), 2);
    assert_eq!(bob.blob_get(&id, &tokens[1], 0, 5).await.unwrap(), b"hello");
    assert!(bob.blob_done(&id, &tokens[1]).await.unwrap());
    assert_eq!(files(tmp.path()), 0, "both files are gone");
    // After deletion: NotFound, also for a token that was done.
    let again = bob.blob_done(&id, &tokens[1]).await;
    assert_eq!(code(again.unwrap_err()), ErrorCode::NotFound);
    let get = bob.blob_get(&id, &tokens[0], 0, 5).await;
    assert_eq!(code(get.unwrap_err()), ErrorCode::NotFound);
    relay.shutdown().await;
}

#[tokio::test]
async fn an_expired_blob_is_deleted_by_the_sweep_complete_or_not() {
    let tmp = tempfile::tempdir().unwrap();
    // Half past an hour: the expiry is rounded up to the next full hour.
    let clock = TestClock::at(UnixTime::from_secs(1_800_000_000 + 1800));
    let config = ServerConfig {
        sweep_interval: Duration::from_millis(50),
        ..dir_config(tmp.path())
    };
    let relay = start_with_clock(config, Arc::new(MemoryStore::new()), clock.clone()).await;
    let alice = owner(relay.local_addr(), &identity(1)).await;
    let token = BlobToken::random().unwrap();
    let hour = Duration::from_secs(3600);
    let complete = alice
        .blob_create(3, hour, std::slice::from_ref(&token))
        .await
        .unwrap();
    alice.blob_put(&complete, 0, b"abc").await.unwrap();
    let partial = alice
        .blob_create(3, hour, std::slice::from_ref(&token))
        .await
        .unwrap();
    alice.blob_put(&partial, 0, b"a").await.unwrap();
    let lasting = alice
        .blob_create(3, 5 * hour, std::slice::from_ref(&token))
        .await
        .unwrap();
    assert_eq!(files(tmp.path()), 6);
    // Kept at least its time to live (rounded up to the hour)...
    clock.advance(hour);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(files(tmp.path()), 6);
    assert!(alice.blob_status(&complete, None).await.is_ok());
    // ...and not an hour more.
    clock.advance(hour);
    for id in [complete, partial] {
        let e = alice.blob_status(&id, None).await;
        assert_eq!(code(e.unwrap_err()), ErrorCode::NotFound);
    }
    let dir = tmp.path().to_path_buf();
    eventually("the sweep deleted the expired blobs", || files(&dir) == 2).await;
    assert!(alice.blob_status(&lasting, None).await.is_ok());
    relay.shutdown().await;
}

#[tokio::test]
async fn blob_bytes_up_and_down_count_against_the_byte_rate_limit() {
    let rate = 256.0 * 1024.0;
    let config = ServerConfig {
        rate_limit: sotto_relay::RateLimit {
            bytes_per_second: rate,
            byte_burst: rate,
            ..config().rate_limit
        },
        ..config()
    };
    let relay = start_with(config, Arc::new(MemoryStore::new())).await;
    let alice = owner(relay.local_addr(), &identity(1)).await;
    let token = BlobToken::random().unwrap();
    let data = pattern(768 << 10);
    let id = alice
        .blob_create(data.len() as u64, DAY, std::slice::from_ref(&token))
        .await
        .unwrap();
    // A burst's worth goes at once, the other 512 KiB at 256 KiB/s.
    let started = std::time::Instant::now();
    upload(&alice, &id, &data, 0, 64 << 10).await;
    let up = started.elapsed();
    let bob = connect(relay.local_addr()).await;
    let started = std::time::Instant::now();
    assert_eq!(download(&bob, &id, &token, 64 << 10).await, data);
    let down = started.elapsed();
    for (what, took) in [("up", up), ("down", down)] {
        assert!(
            took >= Duration::from_millis(1500),
            "{what}: 768 KiB in {took:?} at 256 KiB/s with a 256 KiB burst"
        );
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn blobs_that_expired_while_the_relay_was_down_go_at_start_up() {
    use sotto_relay::blob::{BlobLimits, BlobStore, DirBlobStore, NewBlob};
    let tmp = tempfile::tempdir().unwrap();
    let now = UnixTime::from_secs(1_800_000_000);
    {
        // Left by an earlier run: one expired an hour ago, one lasting.
        let store = DirBlobStore::open(tmp.path()).unwrap();
        let limits = BlobLimits {
            max_bytes_per_mailbox: 100,
            max_total_bytes: 100,
        };
        for expiry_hour in [now.hour() - 1, now.hour() + 1] {
            let blob = NewBlob {
                uploader: address(&identity(1)),
                total_len: 3,
                expiry_hour,
                verifiers: vec![BlobToken::from_bytes([1; 32]).verifier()],
            };
            store.create(blob, &limits).unwrap();
        }
    }
    assert_eq!(files(tmp.path()), 4);
    let config = ServerConfig {
        sweep_interval: Duration::from_secs(3600),
        ..dir_config(tmp.path())
    };
    let relay = start_with_clock(config, Arc::new(MemoryStore::new()), TestClock::at(now)).await;
    let dir = tmp.path().to_path_buf();
    eventually("the start-up sweep deleted the expired blob", || {
        files(&dir) == 2
    })
    .await;
    relay.shutdown().await;
}

#[tokio::test]
async fn at_the_smallest_frame_limit_blobs_still_go_up_and_down() {
    let max_frame_size = sotto_relay::protocol::MIN_MAX_FRAME_SIZE;
    let config = ServerConfig {
        max_frame_size,
        connection_send_budget: u64::from(max_frame_size),
        ..config()
    };
    let relay = start_with(config, Arc::new(MemoryStore::new())).await;
    let alice = owner(relay.local_addr(), &identity(1)).await;
    assert_eq!(alice.max_blob_chunk(), max_frame_size as usize - 29);
    let tokens: Vec<BlobToken> = (0..64).map(|_| BlobToken::random().unwrap()).collect();
    assert!(matches!(
        alice.blob_create(10, DAY, &tokens).await,
        Err(ClientError::RequestTooLarge {
            len: 2066,
            max: 2055
        })
    ));
    let data = pattern(10_000);
    let id = alice
        .blob_create(data.len() as u64, DAY, &tokens[..63])
        .await
        .unwrap();
    upload(&alice, &id, &data, 0, alice.max_blob_chunk()).await;
    let bob = connect(relay.local_addr()).await;
    assert_eq!(download(&bob, &id, &tokens[62], u32::MAX).await, data);
    relay.shutdown().await;
}

#[tokio::test]
async fn sizes_times_and_quotas_are_refused_with_typed_errors() {
    let config = ServerConfig {
        max_blob_size: 1000,
        max_blob_ttl: DAY,
        max_blob_bytes_per_mailbox: 1500,
        max_total_blob_bytes: 2500,
        ..config()
    };
    let relay = start_with(config, Arc::new(MemoryStore::new())).await;
    let alice = owner(relay.local_addr(), &identity(1)).await;
    let bob = owner(relay.local_addr(), &identity(2)).await;
    let token = [BlobToken::random().unwrap()];
    let refused = |r: Result<BlobId, ClientError>| code(r.unwrap_err());
    assert_eq!(
        refused(alice.blob_create(1001, DAY, &token).await),
        ErrorCode::BlobTooLarge
    );
    assert_eq!(
        refused(
            alice
                .blob_create(10, DAY + Duration::from_secs(1), &token)
                .await
        ),
        ErrorCode::InvalidBlobRequest
    );
    assert_eq!(
        refused(alice.blob_create(10, Duration::ZERO, &token).await),
        ErrorCode::InvalidBlobRequest
    );
    alice.blob_create(1000, DAY, &token).await.unwrap();
    assert_eq!(
        refused(alice.blob_create(501, DAY, &token).await),
        ErrorCode::MailboxFull
    );
    alice.blob_create(500, DAY, &token).await.unwrap();
    bob.blob_create(1000, DAY, &token).await.unwrap();
    assert_eq!(
        refused(bob.blob_create(1, DAY, &token).await),
        ErrorCode::StorageFull
    );
    // Refused before sending: no token, or more than 64.
    assert!(matches!(
        alice.blob_create(1, DAY, &[]).await,
        Err(ClientError::TooManyRecipients { count: 0, max: 64 })
    ));
    let many: Vec<BlobToken> = (0..65).map(|_| BlobToken::random().unwrap()).collect();
    assert!(matches!(
        alice.blob_create(1, DAY, &many).await,
        Err(ClientError::TooManyRecipients { count: 65, .. })
    ));
    relay.shutdown().await;
}

#[tokio::test]
async fn below_version_5_blob_requests_are_unknown_and_the_client_does_not_send_them() {
    let relay = start().await;
    let mut raw = Raw::connect(relay.local_addr()).await;
    raw.request(0, &Request::Hello { versions: vec![4] }).await;
    assert!(matches!(raw.response(0).await, Response::Welcome(w) if w.version == 4));
    let token = BlobToken::from_bytes([1; 32]);
    let requests = [
        Request::BlobCreate {
            total_len: 1,
            ttl_secs: 60,
            verifiers: vec![token.verifier()],
        },
        Request::BlobPut {
            id: BlobId([2; 16]),
            offset: 0,
            data: b"x".to_vec(),
        },
        Request::BlobStatus {
            id: BlobId([2; 16]),
            token: Some(token.clone()),
        },
        Request::BlobGet {
            id: BlobId([2; 16]),
            token: token.clone(),
            offset: 0,
            max_len: 1,
        },
        Request::BlobDone {
            id: BlobId([2; 16]),
            token: token.clone(),
        },
    ];
    for (i, request) in requests.iter().enumerate() {
        let id = i as u32 + 1;
        raw.request(id, request).await;
        let (code, _) = error_of(raw.response(id).await);
        assert_eq!(code, ErrorCode::UnknownRequest);
    }
    // Not fatal: the connection goes on.
    raw.request(9, &Request::Ping).await;
    assert_eq!(raw.response(9).await, Response::Pong);

    // A relay that speaks 4 at most: the client refuses without asking.
    let config = ServerConfig {
        blobs: BlobStorage::Off,
        ..config()
    };
    let old = start_with(config, Arc::new(MemoryStore::new())).await;
    let alice = owner(old.local_addr(), &identity(1)).await;
    let unsupported = |e: ClientError| {
        assert!(
            matches!(
                e,
                ClientError::Unsupported {
                    version: 4,
                    needed: 5,
                    ..
                }
            ),
            "{e:?}"
        );
    };
    unsupported(
        alice
            .blob_create(1, DAY, std::slice::from_ref(&token))
            .await
            .unwrap_err(),
    );
    unsupported(alice.blob_put(&BlobId([2; 16]), 0, b"x").await.unwrap_err());
    unsupported(alice.blob_status(&BlobId([2; 16]), None).await.unwrap_err());
    unsupported(
        alice
            .blob_get(&BlobId([2; 16]), &token, 0, 1)
            .await
            .unwrap_err(),
    );
    unsupported(alice.blob_done(&BlobId([2; 16]), &token).await.unwrap_err());
    old.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test]
async fn the_metrics_count_blobs_created_deleted_expired_and_their_bytes() {
    let clock = TestClock::at(UnixTime::from_secs(1_800_000_000));
    let config = ServerConfig {
        sweep_interval: Duration::from_millis(50),
        ..config()
    };
    let server = sotto_relay::Server::bind("127.0.0.1:0", config, Arc::new(MemoryStore::new()))
        .await
        .unwrap()
        .with_clock(Arc::new(clock.clone()))
        .with_metrics("127.0.0.1:0")
        .await
        .unwrap();
    let metrics = server.metrics_addr().unwrap();
    let relay = server.spawn();
    let alice = owner(relay.local_addr(), &identity(1)).await;
    let token = BlobToken::random().unwrap();
    let done = alice
        .blob_create(5, DAY, std::slice::from_ref(&token))
        .await
        .unwrap();
    alice.blob_put(&done, 0, b"hello").await.unwrap();
    alice.blob_put(&done, 0, b"hello").await.unwrap();
    alice.blob_get(&done, &token, 0, 5).await.unwrap();
    alice.blob_done(&done, &token).await.unwrap();
    alice
        .blob_create(7, Duration::from_secs(60), std::slice::from_ref(&token))
        .await
        .unwrap();
    let (_, page) = crate::metrics::http(metrics, "GET", "/metrics").await;
    for line in [
        "sotto_relay_blobs_created_total 2",
        "sotto_relay_blobs_deleted_total 1",
        "sotto_relay_blob_bytes_stored_total 5",
        "sotto_relay_blob_bytes_served_total 5",
        "sotto_relay_stored_blobs 1",
        "sotto_relay_stored_blob_bytes 7",
        "sotto_relay_requests_total{type=\"blob_put\"} 2",
    ] {
        assert!(page.lines().any(|l| l == line), "{line} in\n{page}");
    }
    clock.advance(Duration::from_secs(7200));
    let started = std::time::Instant::now();
    loop {
        let (_, page) = crate::metrics::http(metrics, "GET", "/metrics").await;
        if page
            .lines()
            .any(|l| l == "sotto_relay_blobs_expired_total 1")
        {
            assert!(page.lines().any(|l| l == "sotto_relay_stored_blobs 0"));
            break;
        }
        assert!(started.elapsed() < WAIT, "no expiry in\n{page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.shutdown().await;
}
