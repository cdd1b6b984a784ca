//! Bad input and floods hit only the client that sends them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngExt;
use sotto_relay::protocol::{Request, Response};
use sotto_relay::{
    ClientError, ErrorCode, MailboxAddress, MailboxLimits, MailboxStore, MemoryStore, MessageId,
    RateLimit, ServerConfig, SqliteStore, StoreTotals,
};
use tokio::io::AsyncWriteExt;

use crate::common::*;

#[tokio::test]
async fn malformed_frames_close_only_the_sender_and_others_keep_being_served() {
    let relay = start().await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let bob_conn = registered(addr, &bob).await;

    // Not a Hello (bad magic) as first frame.
    let mut raw = Raw::connect(addr).await;
    let mut hello = Request::Hello { versions: vec![1] }.encode(0);
    hello[5] = b'X';
    raw.send(&hello).await;
    assert_eq!(error_of(raw.response(0).await).0, ErrorCode::Malformed);
    raw.expect_closed().await;

    // A request before Hello.
    let mut raw = Raw::connect(addr).await;
    raw.request(3, &Request::Ping).await;
    assert_eq!(
        error_of(raw.response(3).await).0,
        ErrorCode::UnexpectedRequest
    );
    raw.expect_closed().await;

    // A truncated request after Hello: the id is echoed, then the relay hangs up.
    let mut raw = Raw::connect(addr).await;
    raw.hello().await;
    let body = Request::Authenticate {
        identity_key: [1; 32],
        signature: sotto_core::Signature::from_bytes([2; 64]),
    }
    .encode(7);
    raw.send(&body[..50]).await;
    assert_eq!(error_of(raw.response(7).await).0, ErrorCode::Malformed);
    raw.expect_closed().await;

    // A zero-length frame.
    let mut raw = Raw::connect(addr).await;
    raw.hello().await;
    raw.stream.write_all(&[0, 0, 0, 0]).await.unwrap();
    assert_eq!(error_of(raw.response(0).await).0, ErrorCode::Malformed);
    raw.expect_closed().await;

    // An unknown request type is refused but the connection stays usable.
    let mut raw = Raw::connect(addr).await;
    raw.hello().await;
    raw.send(&[0x42, 0, 0, 0, 9, 1, 2, 3]).await;
    assert_eq!(error_of(raw.response(9).await).0, ErrorCode::UnknownRequest);
    raw.request(10, &Request::Ping).await;
    assert_eq!(raw.response(10).await, Response::Pong);

    // Random bodies on fresh connections (bounded): never a panic, never a hang.
    let mut rng = rng();
    for _ in 0..40 {
        let mut raw = Raw::connect(addr).await;
        if rng.random_bool(0.5) {
            raw.hello().await;
        }
        let len = rng.random_range(1..300);
        let body: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        raw.send(&body).await;
        // Whatever the relay answers, it answers in time or closes.
        let _ = raw.recv().await;
    }

    // Everyone else was served throughout.
    let sender = connect(addr).await;
    sender
        .send(&address(&bob), mid(1), None, b"still here")
        .await
        .unwrap();
    assert_eq!(bob_conn.fetch_pending().await.unwrap().len(), 1);
    relay.shutdown().await;
}

#[tokio::test]
async fn oversized_frames_are_refused_before_they_are_read() {
    let relay = start_with(
        ServerConfig {
            max_frame_size: 4096,
            ..config()
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let bob_conn = registered(addr, &bob).await;

    // Announce 64 MiB, send a little of it.
    let mut raw = Raw::connect(addr).await;
    raw.hello().await;
    raw.stream
        .write_all(&(64u32 << 20).to_be_bytes())
        .await
        .unwrap();
    raw.stream.write_all(&[0u8; 10_000]).await.unwrap();
    let (code, text) = error_of(raw.response(0).await);
    assert_eq!(code, ErrorCode::FrameTooLarge);
    assert!(text.contains("4096"), "{text}");
    raw.expect_closed().await;

    // Before Hello, too.
    let mut raw = Raw::connect(addr).await;
    raw.stream.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    assert_eq!(error_of(raw.response(0).await).0, ErrorCode::FrameTooLarge);
    raw.expect_closed().await;

    // The client knows the limit and refuses locally.
    let sender = connect(addr).await;
    assert_eq!(sender.max_payload_len(), 4096 - 70);
    let err = sender
        .send(&address(&bob), mid(1), None, &vec![0; 4096])
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ClientError::PayloadTooLarge {
            len: 4096,
            max: 4026
        }
    ));
    // The largest payload that fits goes through and comes back whole.
    sender
        .send(&address(&bob), mid(2), None, &vec![7; 4026])
        .await
        .unwrap();
    let got = bob_conn.fetch_pending().await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, vec![7; 4026]);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_connection_does_not_starve_the_others() {
    let relay = start_with(
        ServerConfig {
            rate_limit: RateLimit {
                requests_per_second: 50.0,
                request_burst: 20.0,
                ..RateLimit::default()
            },
            ..config()
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let addr = relay.local_addr();
    let victim = identity(3);
    register(addr, &victim).await;
    let bob = identity(2);
    let bob_conn = registered(addr, &bob).await;

    // The flooder pipelines sends without reading answers, for at most
    // 1.5 s or 20 000 frames.
    let flood = tokio::spawn(async move {
        let mut raw = Raw::connect(addr).await;
        raw.hello().await;
        let started = Instant::now();
        let mut sent = 0u32;
        while sent < 20_000 && started.elapsed() < Duration::from_millis(1500) {
            let body = Request::Send {
                recipient: address(&victim),
                message_id: sotto_relay::MessageId::random().unwrap(),
                access_key: None,
                payload: vec![0xAB; 64],
            }
            .encode(sent + 1);
            let frame_write = async {
                let mut frame = (body.len() as u32).to_be_bytes().to_vec();
                frame.extend_from_slice(&body);
                raw.stream.write_all(&frame).await
            };
            // Once the relay stops reading, writes block: stop at the deadline.
            match tokio::time::timeout(Duration::from_millis(200), frame_write).await {
                Ok(Ok(())) => sent += 1,
                _ => break,
            }
        }
        (sent, started.elapsed(), raw)
    });

    // Meanwhile, another client gets prompt service.
    let sender = connect(addr).await;
    let mut slowest = Duration::ZERO;
    for i in 0..20u8 {
        let t = Instant::now();
        sender
            .send(&address(&bob), mid(i), None, b"normal")
            .await
            .unwrap();
        bob_conn.ping().await.unwrap();
        slowest = slowest.max(t.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(2),
        "slowest round trip {slowest:?}"
    );

    let (sent, elapsed, raw) = flood.await.unwrap();
    // Pipelined frames are processed at the configured rate, not at the
    // rate they arrive.
    let victim_conn = owner(addr, &identity(3)).await;
    let stored = victim_conn.fetch_pending().await.unwrap().len() as f64;
    let allowed = 20.0 + 50.0 * (elapsed.as_secs_f64() + 0.5);
    assert!(sent > 100, "the flood did flood ({sent} frames)");
    assert!(
        stored <= allowed,
        "{stored} stored, at most {allowed} allowed"
    );
    drop(raw);
    assert_eq!(bob_conn.fetch_pending().await.unwrap().len(), 20);
    relay.shutdown().await;
}

#[tokio::test]
async fn over_the_connection_limit_clients_are_told_the_relay_is_busy() {
    let relay = start_with(
        ServerConfig {
            max_connections: 2,
            ..config()
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let addr = relay.local_addr();
    let a = connect(addr).await;
    let _b = connect(addr).await;
    let err = sotto_relay::RelayClient::connect(addr, client_config())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ServerBusy));
    // A slot frees up when a client leaves.
    a.close().await;
    let started = Instant::now();
    loop {
        match sotto_relay::RelayClient::connect(addr, client_config()).await {
            Ok(c) => {
                c.ping().await.unwrap();
                break;
            }
            Err(e) if started.elapsed() < WAIT => {
                assert_eq!(e.code(), Some(ErrorCode::ServerBusy));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("no slot freed: {e}"),
        }
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn a_silent_connection_is_dropped_after_the_handshake_timeout() {
    let relay = start_with(
        ServerConfig {
            handshake_timeout: Duration::from_millis(200),
            ..config()
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let mut raw = Raw::connect(relay.local_addr()).await;
    let t = Instant::now();
    raw.expect_closed().await;
    assert!(t.elapsed() >= Duration::from_millis(150));
    relay.shutdown().await;
}

#[tokio::test]
async fn shutdown_tells_connected_clients() {
    let relay = start().await;
    let bob_conn = owner(relay.local_addr(), &identity(2)).await;
    let mut events = bob_conn.take_events().unwrap();
    relay.shutdown().await;
    loop {
        match next_event(&mut events).await {
            sotto_relay::RelayEvent::Closed { reason: Some(e) } => {
                assert_eq!(e.code, ErrorCode::ShuttingDown);
                break;
            }
            sotto_relay::RelayEvent::PreKeysLow(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(bob_conn.is_closed());
    assert!(matches!(bob_conn.ping().await, Err(ClientError::Closed)));
}

#[tokio::test]
async fn idle_connections_are_closed_unless_the_client_pings() {
    let relay = start_with(
        ServerConfig {
            idle_timeout: Duration::from_millis(300),
            ..config()
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let addr = relay.local_addr();
    let pinging = sotto_relay::RelayClient::connect(
        addr,
        sotto_relay::ClientConfig {
            keepalive: Some(Duration::from_millis(100)),
            ..client_config()
        },
    )
    .await
    .unwrap();
    let silent = sotto_relay::RelayClient::connect(
        addr,
        sotto_relay::ClientConfig {
            keepalive: None,
            ..client_config()
        },
    )
    .await
    .unwrap();
    // The silent client authenticates (its last frame), then says nothing.
    silent.authenticate(&identity(4)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(silent.is_closed());
    assert!(matches!(silent.ping().await, Err(ClientError::Closed)));
    assert!(!pinging.is_closed());
    pinging.ping().await.unwrap();
    relay.shutdown().await;
}

async fn sends_to_unregistered_addresses_store_nothing(store: Arc<dyn MailboxStore>) {
    let relay = start_with(config(), store.clone()).await;
    let addr = relay.local_addr();
    let anonymous = connect(addr).await;
    let mut rng = rng();
    // Addresses nobody owns: each refused, the connection stays usable.
    for i in 0..200u32 {
        let target = MailboxAddress::from_bytes(rng.random());
        let payload = vec![0xAB; 1000];
        let err = anonymous
            .send(&target, MessageId::random().unwrap(), None, &payload)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::UnknownRecipient), "send {i}");
        if i == 0 {
            assert!(err.to_string().contains("no such mailbox"), "{err}");
        }
    }
    anonymous.ping().await.unwrap();
    // An owner who authenticated but published no signed prekey has no
    // mailbox either.
    let carol = identity(7);
    let carol_conn = owner(addr, &carol).await;
    let err = anonymous
        .send(&address(&carol), mid(1), None, b"hello")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownRecipient));
    assert_eq!(
        store.totals().unwrap(),
        StoreTotals::default(),
        "nothing stored"
    );
    assert!(carol_conn.fetch_pending().await.unwrap().is_empty());

    // Once she publishes her prekeys, the same send goes through.
    carol_conn
        .upload_prekeys(prekeys(&carol, 0, 1))
        .await
        .unwrap();
    anonymous
        .send(&address(&carol), mid(1), None, b"hello")
        .await
        .unwrap();
    assert_eq!(carol_conn.fetch_pending().await.unwrap().len(), 1);
    relay.shutdown().await;
}

#[tokio::test]
async fn sends_to_unregistered_addresses_are_refused_and_store_nothing_memory() {
    sends_to_unregistered_addresses_store_nothing(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn sends_to_unregistered_addresses_are_refused_and_store_nothing_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("relay.db")).unwrap();
    sends_to_unregistered_addresses_store_nothing(Arc::new(store)).await;
}

#[tokio::test]
async fn a_connection_rotating_over_mailboxes_is_cut_off_at_its_send_budget_and_others_are_served()
{
    const BUDGET: u64 = 16 * 1024;
    let store = Arc::new(MemoryStore::new());
    let relay = start_with(
        ServerConfig {
            max_frame_size: 4096,
            connection_send_budget: BUDGET,
            // Eight mailboxes could hold twice the budget.
            mailbox_limits: MailboxLimits {
                max_envelopes: 100,
                max_bytes: 4000,
            },
            ..config()
        },
        store.clone(),
    )
    .await;
    let addr = relay.local_addr();
    let victims: Vec<_> = (10..18u8).map(identity).collect();
    for victim in &victims {
        register(addr, victim).await;
    }
    let bob = identity(2);
    let bob_conn = registered(addr, &bob).await;
    let honest = connect(addr).await;
    honest
        .send(&address(&bob), mid(1), None, b"before")
        .await
        .unwrap();

    let attacker = connect(addr).await;
    let mut stored = 0u64;
    let mut refused = None;
    for i in 0..100u32 {
        let victim = address(&victims[i as usize % victims.len()]);
        let id = MessageId::random().unwrap();
        match attacker.send(&victim, id, None, &[0xEE; 1000]).await {
            Ok(receipt) => {
                assert!(!receipt.duplicate);
                stored += 1000;
                // Neither a repeat nor a refused envelope counts (the check
                // comes first, so only while the budget still has room).
                if stored + 1000 <= BUDGET {
                    let retry = attacker
                        .send(&victim, id, None, &[0xEE; 1000])
                        .await
                        .unwrap();
                    assert!(retry.duplicate);
                    let nobody = MailboxAddress::from_bytes([i as u8; 32]);
                    let err = attacker
                        .send(&nobody, mid(0), None, &[0; 1000])
                        .await
                        .unwrap_err();
                    assert_eq!(err.code(), Some(ErrorCode::UnknownRecipient));
                }
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("the budget stopped the connection");
    assert_eq!(refused.code(), Some(ErrorCode::SendBudgetExceeded));
    assert!(refused.to_string().contains("16384"), "{refused}");
    // 16 envelopes of 1000 bytes fit in 16 KiB, the 17th does not.
    assert_eq!(stored, 16_000);
    assert_eq!(store.totals().unwrap().bytes, 16_000 + 6);
    // The relay closed the connection.
    eventually("the attacker's connection closed", || attacker.is_closed()).await;
    assert!(matches!(attacker.ping().await, Err(ClientError::Closed)));

    // Everyone else is served as before.
    honest
        .send(&address(&bob), mid(2), None, b"after")
        .await
        .unwrap();
    let got = bob_conn.fetch_pending().await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.payload.as_slice()).collect::<Vec<_>>(),
        [&b"before"[..], b"after"]
    );
    // A new connection has a budget of its own (an honest client that hit
    // it reconnects and goes on).
    let again = connect(addr).await;
    again
        .send(&address(&victims[0]), mid(3), None, &[1; 1000])
        .await
        .unwrap();
    relay.shutdown().await;
}
