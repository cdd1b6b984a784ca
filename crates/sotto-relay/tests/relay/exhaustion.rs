//! Anonymous clients cannot exhaust the relay: connection slots are
//! limited per source address, connections that do nothing useful are
//! closed early, frames must arrive in time, and the memory request frames
//! hold is bounded per connection and relay-wide (docs/relay.md §8).
//! Attackers connect from other loopback addresses (127.0.0.2 and up) than
//! the honest clients (127.0.0.1).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sotto_relay::protocol::{PROTOCOL_VERSION, Request, Response, ServerFrame};
use sotto_relay::{
    ErrorCode, FrameMemory, MailboxAddress, MemoryStore, MessageId, RateLimit, ServerConfig,
};
use tokio::io::AsyncWriteExt;

use crate::common::*;

/// Bytes a `Send` frame adds to its envelope when it carries no access key.
const KEYLESS_SEND_OVERHEAD: usize = sotto_relay::protocol::SEND_OVERHEAD - 16;

const ATTACKER: [u8; 4] = [127, 0, 0, 2];

fn hello() -> Request {
    Request::Hello {
        versions: vec![PROTOCOL_VERSION],
    }
}

/// The next frame must be a connection-level error with this code; returns
/// its message.
async fn expect_error(raw: &mut Raw, code: ErrorCode) -> String {
    match raw.recv().await {
        Some(ServerFrame::Response {
            request_id: 0,
            response: Response::Error(e),
        }) => {
            assert_eq!(e.code, code, "{}", e.message);
            e.message
        }
        other => panic!("expected error {code:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn an_attacker_at_its_address_limit_cannot_lock_out_clients_from_other_addresses() {
    let relay = start_with(
        ServerConfig {
            max_connections: 40,
            max_connections_per_address: 16,
            ..config()
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let bob_conn = registered(addr, &bob).await;

    // The attacker tries to take every slot of the relay from one address:
    // it says Hello and then idles. Connections are accepted in order, so
    // the first 16 are served and the rest refused before anything else.
    let mut held = Vec::new();
    for i in 0..40 {
        let mut raw = Raw::connect_from(ATTACKER, addr).await;
        if i < 16 {
            raw.hello().await;
            held.push(raw);
        } else {
            let message = expect_error(&mut raw, ErrorCode::ServerBusy).await;
            assert!(
                message.contains("too many connections from this address")
                    && message.contains("16"),
                "{message}"
            );
            raw.expect_closed().await;
        }
    }

    // Clients from another address are served: anonymous and as owners.
    let sender = connect(addr).await;
    sender
        .send(&address(&bob), mid(1), None, b"through")
        .await
        .unwrap();
    let alice_conn = registered(addr, &identity(1)).await;
    alice_conn.ping().await.unwrap();
    assert_eq!(bob_conn.fetch_pending().await.unwrap().len(), 1);

    // A closed connection gives its address the slot back.
    drop(held.pop());
    let started = Instant::now();
    loop {
        let mut raw = Raw::connect_from(ATTACKER, addr).await;
        raw.request(0, &hello()).await;
        match raw.recv().await {
            Some(ServerFrame::Response {
                response: Response::Welcome(_),
                ..
            }) => break,
            Some(ServerFrame::Response {
                response: Response::Error(e),
                ..
            }) if e.code == ErrorCode::ServerBusy && started.elapsed() < WAIT => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("no slot came back: {other:?}"),
        }
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn an_unauthenticated_connection_doing_nothing_useful_is_closed_long_before_an_idle_owner() {
    let relay = start_with(
        ServerConfig {
            unauthenticated_timeout: Duration::from_millis(400),
            idle_timeout: Duration::from_secs(5),
            ..config()
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let addr = relay.local_addr();
    let bob = identity(2);
    register(addr, &bob).await;
    // An owner that says nothing after logging in.
    let silent_owner = sotto_relay::RelayClient::connect(
        addr,
        sotto_relay::ClientConfig {
            keepalive: None,
            ..client_config()
        },
    )
    .await
    .unwrap();
    silent_owner.authenticate(&bob).await.unwrap();

    // Hello, then only pings: pings are not useful, the connection goes.
    let pinger = tokio::spawn(async move {
        let mut raw = Raw::connect_from(ATTACKER, addr).await;
        raw.hello().await;
        let started = Instant::now();
        for id in 1..100u32 {
            raw.request(id, &Request::Ping).await;
            match raw.recv().await {
                Some(ServerFrame::Response {
                    response: Response::Pong,
                    ..
                }) => {}
                Some(ServerFrame::Response {
                    request_id: 0,
                    response: Response::Error(e),
                }) => {
                    assert_eq!(e.code, ErrorCode::TimedOut);
                    assert!(e.message.contains("unauthenticated"), "{}", e.message);
                    raw.expect_closed().await;
                    return started.elapsed();
                }
                other => panic!("{other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the pinging connection was never closed");
    });
    // Sends that store something are useful: that connection stays.
    let mut sender = Raw::connect_from([127, 0, 0, 3], addr).await;
    sender.hello().await;
    for i in 0..12u8 {
        sender
            .request(
                u32::from(i) + 1,
                &Request::Send {
                    access_key: None,
                    recipient: address(&bob),
                    message_id: mid(i),
                    payload: b"useful".to_vec(),
                },
            )
            .await;
        assert!(matches!(
            sender.response(u32::from(i) + 1).await,
            Response::Sent { .. }
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let closed_after = pinger.await.unwrap();
    assert!(
        closed_after >= Duration::from_millis(350) && closed_after < Duration::from_secs(3),
        "closed after {closed_after:?}"
    );
    // 1.2 s later the useful sender and the silent owner are still served.
    sender.request(99, &Request::Ping).await;
    assert_eq!(sender.response(99).await, Response::Pong);
    assert!(!silent_owner.is_closed());
    silent_owner.ping().await.unwrap();

    // Hello and nothing else: closed at the same deadline.
    let mut idle = Raw::connect_from(ATTACKER, addr).await;
    idle.hello().await;
    let started = Instant::now();
    let message = expect_error(&mut idle, ErrorCode::TimedOut).await;
    assert!(message.contains("unauthenticated"), "{message}");
    assert!(started.elapsed() >= Duration::from_millis(350));
    idle.expect_closed().await;
    relay.shutdown().await;
}

#[tokio::test]
async fn a_frame_that_does_not_arrive_in_time_closes_the_connection() {
    let relay = start_with(
        ServerConfig {
            frame_timeout: Duration::from_millis(500),
            ..config()
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let addr = relay.local_addr();

    // Announces 1000 bytes, sends 10, stalls: closed at the frame deadline,
    // before Hello as after it, authenticated or not.
    for after_hello in [false, true] {
        let mut raw = Raw::connect_from(ATTACKER, addr).await;
        if after_hello {
            raw.hello().await;
        }
        raw.stream.write_all(&1000u32.to_be_bytes()).await.unwrap();
        raw.stream.write_all(&[0u8; 10]).await.unwrap();
        let started = Instant::now();
        let message = expect_error(&mut raw, ErrorCode::TimedOut).await;
        assert!(message.contains("did not arrive completely"), "{message}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(450) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
        raw.expect_closed().await;
    }
    let owner_conn = sotto_relay::RelayClient::connect(addr, client_config())
        .await
        .unwrap();
    owner_conn.authenticate(&identity(5)).await.unwrap();
    drop(owner_conn);

    // A frame that trickles in but completes in time is served.
    let mut raw = Raw::connect_from(ATTACKER, addr).await;
    raw.hello().await;
    let body = Request::Ping.encode(7);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    for byte in frame {
        raw.stream.write_all(&[byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(raw.response(7).await, Response::Pong);
    relay.shutdown().await;
}

/// Writes `bytes` to `raw`'s stream, giving up when the relay stops
/// reading for `patience`; returns how much was written.
async fn write_until_stalled(raw: &mut Raw, bytes: &[u8], patience: Duration) -> usize {
    let mut written = 0;
    for chunk in bytes.chunks(16 * 1024) {
        match tokio::time::timeout(patience, raw.stream.write_all(chunk)).await {
            Ok(Ok(())) => written += chunk.len(),
            _ => break,
        }
    }
    written
}

/// Waits until `memory` stops changing for `quiet` (at most [`WAIT`]).
async fn settled(relay: &sotto_relay::ServerHandle, quiet: Duration) -> FrameMemory {
    let started = Instant::now();
    let mut last = relay.frame_memory();
    let mut since = Instant::now();
    while since.elapsed() < quiet && started.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let now = relay.frame_memory();
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_hold_no_more_than_the_unauthenticated_frame_budget() {
    // Defaults, except that frames may take their time: the attack below
    // holds its frames for the whole test.
    let config = ServerConfig {
        frame_timeout: Duration::from_secs(60),
        ..config()
    };
    let budget = config.unauthenticated_frame_budget;
    let max_frame = config.max_frame_size as usize;
    assert_eq!((budget, max_frame), (32 << 20, 1 << 20));
    let relay = start_with(config, Arc::new(MemoryStore::new())).await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let bob_conn = registered(addr, &bob).await;
    assert_eq!(
        settled(&relay, Duration::from_millis(100)).await,
        FrameMemory::default()
    );

    // A frame's buffer grows as its bytes arrive: announcing the largest
    // frame and sending 10 bytes holds one first chunk (4 KiB).
    let mut probe = Raw::connect_from(ATTACKER, addr).await;
    probe.hello().await;
    probe
        .stream
        .write_all(&(max_frame as u32).to_be_bytes())
        .await
        .unwrap();
    probe.stream.write_all(&[0u8; 10]).await.unwrap();
    let held = settled(&relay, Duration::from_millis(200)).await;
    assert_eq!(held.unauthenticated, 4096, "{held:?}");
    drop(probe);

    // 100 slowloris connections from two addresses each announce the
    // largest frame and send all of it but the last byte: 100 MiB offered.
    const N: usize = 100;
    let mut attackers = Vec::new();
    for i in 0..N {
        let source = [127, 0, 0, 3 + (i % 2) as u8];
        attackers.push(tokio::spawn(async move {
            let mut raw = Raw::connect_from(source, addr).await;
            raw.hello().await;
            let mut frame = (max_frame as u32).to_be_bytes().to_vec();
            frame.resize(4 + max_frame - 1, 0xAA);
            let written = write_until_stalled(&mut raw, &frame, Duration::from_secs(2)).await;
            (raw, written)
        }));
    }
    // The most the relay holds at any moment of the attack (sampled).
    let mut peak = 0;
    let sampling = Instant::now();
    while !attackers.iter().all(|a| a.is_finished()) || sampling.elapsed() < Duration::from_secs(3)
    {
        assert!(sampling.elapsed() < WAIT, "the attack did not finish");
        peak = peak.max(relay.frame_memory().unauthenticated);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut held_streams = Vec::new();
    let mut offered = 0;
    for attacker in attackers {
        let (raw, written) = attacker.await.unwrap();
        offered += written;
        held_streams.push(raw);
    }
    eprintln!(
        "{N} slowloris connections offered {offered} bytes; the relay held at most {peak} bytes \
         for unauthenticated frames (budget {budget})"
    );
    // The budget, plus the free first chunk of each frame.
    assert!(peak <= budget + (N * 4096) as u64, "{peak}");
    // The attack did fill it.
    assert!(peak >= budget - (1 << 20), "{peak}");

    // Meanwhile owners are served, with large envelopes too (their pool is
    // separate), and anonymous senders with small ones (the first 4 KiB of
    // a frame never wait).
    let alice_conn = registered(addr, &identity(1)).await;
    alice_conn
        .send(&address(&bob), mid(1), None, &vec![1; 512 * 1024])
        .await
        .unwrap();
    let anonymous = connect(addr).await;
    anonymous
        .send(&address(&bob), mid(2), None, b"small and anonymous")
        .await
        .unwrap();
    let got = bob_conn.fetch_pending().await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].payload.len(), 512 * 1024);

    // The memory comes back when the attackers leave (or their frames
    // were refused for want of memory).
    drop(held_streams);
    eventually("frame memory given back", || {
        relay.frame_memory() == FrameMemory::default()
    })
    .await;
    relay.shutdown().await;
}

#[tokio::test]
async fn a_frame_that_cannot_get_memory_in_time_is_refused_and_others_go_on() {
    const MAX_FRAME: u32 = 64 * 1024;
    let relay = start_with(
        ServerConfig {
            max_frame_size: MAX_FRAME,
            // Room for one largest frame of unauthenticated connections.
            unauthenticated_frame_budget: u64::from(MAX_FRAME),
            frame_timeout: Duration::from_secs(30),
            ..config()
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let bob_conn = registered(addr, &bob).await;
    let send_frame = |id: u32| {
        let body = Request::Send {
            access_key: None,
            recipient: address(&bob),
            message_id: MessageId([id as u8; 16]),
            payload: vec![0xAB; MAX_FRAME as usize - KEYLESS_SEND_OVERHEAD],
        }
        .encode(id);
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        frame
    };
    // The attacker holds all of the pool with a frame it does not finish.
    let mut holder = Raw::connect_from(ATTACKER, addr).await;
    holder.hello().await;
    let held = send_frame(1);
    holder
        .stream
        .write_all(&held[..held.len() - 1])
        .await
        .unwrap();
    let memory = settled(&relay, Duration::from_millis(200)).await;
    assert_eq!(memory.unauthenticated, u64::from(MAX_FRAME));

    // Another anonymous large frame waits a second, then is refused.
    let mut late = Raw::connect_from([127, 0, 0, 3], addr).await;
    late.hello().await;
    let started = Instant::now();
    late.stream.write_all(&send_frame(2)).await.unwrap();
    let message = expect_error(&mut late, ErrorCode::ServerBusy).await;
    assert!(message.contains("no memory for a frame"), "{message}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    late.expect_closed().await;

    // Small anonymous frames and owners' frames are not affected.
    let anonymous = connect(addr).await;
    anonymous
        .send(&address(&bob), mid(3), None, b"small")
        .await
        .unwrap();
    let alice = registered(addr, &identity(1)).await;
    alice
        .send(
            &address(&bob),
            mid(4),
            None,
            &vec![4; sotto_relay::protocol::max_payload_len(MAX_FRAME)],
        )
        .await
        .unwrap();

    // The held frame completes: stored, and its memory given back.
    holder
        .stream
        .write_all(&held[held.len() - 1..])
        .await
        .unwrap();
    assert!(matches!(holder.response(1).await, Response::Sent { .. }));
    assert_eq!(bob_conn.fetch_pending().await.unwrap().len(), 3);
    assert_eq!(
        settled(&relay, Duration::from_millis(100)).await,
        FrameMemory::default()
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn a_connection_holds_at_most_three_frames_however_many_it_pipelines() {
    const MAX_FRAME: u32 = 64 * 1024;
    let relay = start_with(
        ServerConfig {
            max_frame_size: MAX_FRAME,
            // One request a second: the pipelined frames wait.
            rate_limit: RateLimit {
                requests_per_second: 1.0,
                request_burst: 1.0,
                ..RateLimit::default()
            },
            ..config()
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let addr = relay.local_addr();
    let mut raw = Raw::connect_from(ATTACKER, addr).await;
    raw.hello().await;
    // Ten largest frames, pipelined (a background task: the relay stops
    // reading once it holds three).
    let mut writer = raw.stream;
    let flood = tokio::spawn(async move {
        let mut written = 0;
        for i in 0..10u32 {
            let body = Request::Send {
                access_key: None,
                recipient: MailboxAddress::from_bytes([9; 32]),
                message_id: MessageId([i as u8; 16]),
                payload: vec![0xCC; MAX_FRAME as usize - KEYLESS_SEND_OVERHEAD],
            }
            .encode(i + 1);
            assert_eq!(body.len(), MAX_FRAME as usize);
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            match tokio::time::timeout(Duration::from_secs(2), writer.write_all(&frame)).await {
                Ok(Ok(())) => written += 1,
                _ => break,
            }
        }
        (writer, written)
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let memory = settled(&relay, Duration::from_millis(200)).await;
    assert!(
        memory.unauthenticated <= 3 * u64::from(MAX_FRAME),
        "{memory:?}"
    );
    assert!(
        memory.unauthenticated >= 2 * u64::from(MAX_FRAME),
        "{memory:?}"
    );
    drop(flood);
    relay.shutdown().await;
}
