//! Graceful shutdown: the listener closes at once, a request in hand is
//! answered, then its client is told `ShuttingDown`; what takes longer
//! than the grace period is cut.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sotto_relay::protocol::{Request, Response, ServerFrame};
use sotto_relay::{ErrorCode, Server, ServerConfig};
use tokio::net::TcpStream;

use crate::common::*;
use crate::gated_store::GatedStore;
use crate::metrics::http;

/// Waits until `addr` refuses connections: the listener is closed.
async fn until_refused(addr: SocketAddr) {
    let started = Instant::now();
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            started.elapsed() < WAIT,
            "the relay still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn send_request(to: &sotto_core::IdentityKeyPair) -> Request {
    Request::Send {
        recipient: address(to),
        message_id: mid(1),
        access_key: None,
        payload: b"in flight at shutdown".to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_is_answered_then_the_client_is_told_and_the_server_stops() {
    let store = Arc::new(GatedStore::default());
    // A grace period far longer than the test: the server stops because
    // its connections finished, not because it cut them.
    let config = ServerConfig {
        shutdown_grace: Duration::from_secs(60),
        ..config()
    };
    let relay = Server::bind("127.0.0.1:0", config, store.clone())
        .await
        .unwrap()
        .with_metrics("127.0.0.1:0")
        .await
        .unwrap()
        .spawn();
    let (addr, http_addr) = (relay.local_addr(), relay.metrics_addr().unwrap());
    let bob = identity(0x51);
    register(addr, &bob).await;
    // An idle client, and one whose `Send` is held in the store.
    let mut idle = Raw::connect(addr).await;
    idle.hello().await;
    let mut sender = Raw::connect(addr).await;
    sender.hello().await;
    store.close_gate();
    sender.request(1, &send_request(&bob)).await;
    eventually("the Send reached the store", || store.waiting() == 1).await;

    let started = Instant::now();
    let stopping = tokio::spawn(relay.shutdown());
    until_refused(addr).await;
    // Draining: the health check tells load balancers to look elsewhere.
    let (status, body) = http(http_addr, "GET", "/health").await;
    assert_eq!((status, body.as_str()), (503, "shutting down\n"));
    // The idle client is told at once.
    match idle.recv().await {
        Some(ServerFrame::Response {
            request_id: 0,
            response: Response::Error(e),
        }) => assert_eq!(e.code, ErrorCode::ShuttingDown),
        other => panic!("expected ShuttingDown, got {other:?}"),
    }
    idle.expect_closed().await;
    assert!(!stopping.is_finished(), "a request is still in hand");

    // The request in hand completes and is answered, then ShuttingDown.
    store.open_gate();
    match sender.response(1).await {
        Response::Sent {
            duplicate: false, ..
        } => {}
        other => panic!("expected Sent, got {other:?}"),
    }
    match sender.recv().await {
        Some(ServerFrame::Response {
            request_id: 0,
            response: Response::Error(e),
        }) => assert_eq!(e.code, ErrorCode::ShuttingDown),
        other => panic!("expected ShuttingDown, got {other:?}"),
    }
    sender.expect_closed().await;
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("the server stops once its connections are done")
        .unwrap();
    assert!(started.elapsed() < WAIT);
    // It was stored, and the HTTP endpoint is gone with the server.
    let totals = sotto_relay::MailboxStore::totals(&store.inner).unwrap();
    assert_eq!(totals.envelopes, 1);
    assert!(TcpStream::connect(http_addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_outlasts_the_grace_period_is_cut() {
    let store = Arc::new(GatedStore::default());
    let config = ServerConfig {
        shutdown_grace: Duration::from_millis(300),
        ..config()
    };
    let relay = start_with(config, store.clone()).await;
    let addr = relay.local_addr();
    let bob = identity(0x52);
    register(addr, &bob).await;
    let mut sender = Raw::connect(addr).await;
    sender.hello().await;
    store.close_gate();
    sender.request(1, &send_request(&bob)).await;
    eventually("the Send reached the store", || store.waiting() == 1).await;

    tokio::time::timeout(WAIT, relay.shutdown())
        .await
        .expect("the grace period bounds the shutdown");
    // Cut without an answer.
    assert!(sender.recv().await.is_none());
    store.open_gate();
}
