//! The operator's HTTP endpoint: `/health` follows the store, `/metrics`
//! counts what the relay did, and names no mailbox or message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use sotto_relay::{MemoryStore, Server, ServerConfig, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;
use crate::gated_store::GatedStore;

/// An HTTP/1.1 request; the status code and the body of the answer.
pub(crate) async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    tokio::time::timeout(WAIT, async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("{method} {path} HTTP/1.1\r\nHost: relay\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        if method != "HEAD" {
            assert_eq!(body.len(), length, "{head}");
        }
        (status, body.to_owned())
    })
    .await
    .expect("HTTP answer in time")
}

/// Every sample of a `/metrics` page, by series (`name{labels}`).
fn samples(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

async fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let (status, page) = http(addr, "GET", "/metrics").await;
    assert_eq!(status, 200, "{page}");
    samples(&page)
}

fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} among {:?}", samples.keys()))
}

async fn start_with_metrics(
    config: ServerConfig,
    store: Arc<dyn sotto_relay::MailboxStore>,
) -> ServerHandle {
    Server::bind("127.0.0.1:0", config, store)
        .await
        .unwrap()
        .with_metrics("127.0.0.1:0")
        .await
        .unwrap()
        .spawn()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn metrics_count_connections_envelopes_requests_and_refusals_without_user_data() {
    let relay = start_with_metrics(config(), Arc::new(MemoryStore::new())).await;
    let (addr, http_addr) = (relay.local_addr(), relay.metrics_addr().unwrap());
    let (status, body) = http(http_addr, "GET", "/health").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let before = scrape(http_addr).await;
    assert_eq!(
        value(&before, "sotto_relay_connections_accepted_total"),
        0.0
    );
    assert_eq!(
        value(&before, "sotto_relay_requests_total{type=\"send\"}"),
        0.0
    );

    // Bob registers and stays; Alice sends him one envelope and tries a
    // mailbox that does not exist.
    let bob = identity(0x42);
    let bob_conn = registered(addr, &bob).await;
    let alice = connect(addr).await;
    let payload = b"an envelope for the metrics test";
    alice
        .send(&address(&bob), mid(7), None, payload)
        .await
        .unwrap();
    let nobody = alice
        .send(&address(&identity(0x43)), mid(8), None, b"x")
        .await;
    assert!(nobody.is_err());

    let queued = scrape(http_addr).await;
    assert_eq!(
        value(&queued, "sotto_relay_connections_accepted_total"),
        2.0
    );
    assert_eq!(value(&queued, "sotto_relay_connections_open"), 2.0);
    assert_eq!(value(&queued, "sotto_relay_envelopes_queued_total"), 1.0);
    assert_eq!(value(&queued, "sotto_relay_stored_envelopes"), 1.0);
    assert_eq!(
        value(&queued, "sotto_relay_stored_bytes"),
        payload.len() as f64
    );
    assert_eq!(value(&queued, "sotto_relay_store_up"), 1.0);
    assert_eq!(
        value(&queued, "sotto_relay_requests_total{type=\"send\"}"),
        2.0
    );
    assert_eq!(
        value(&queued, "sotto_relay_requests_total{type=\"hello\"}"),
        2.0
    );
    assert_eq!(
        value(&queued, "sotto_relay_requests_total{type=\"authenticate\"}"),
        1.0
    );
    assert_eq!(
        value(
            &queued,
            "sotto_relay_errors_total{code=\"unknown_recipient\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &queued,
            "sotto_relay_request_duration_seconds_count{type=\"send\"}"
        ),
        2.0
    );
    assert_eq!(
        value(
            &queued,
            "sotto_relay_request_duration_seconds_bucket{type=\"send\",le=\"+Inf\"}"
        ),
        2.0
    );

    // Bob fetches (it was also pushed to him) and acknowledges.
    let pending = bob_conn.fetch_pending().await.unwrap();
    let ids: Vec<u64> = pending.iter().map(|e| e.id).collect();
    assert_eq!(bob_conn.ack(&ids).await.unwrap(), 1);
    let acked = scrape(http_addr).await;
    assert!(value(&acked, "sotto_relay_envelopes_delivered_total") >= 1.0);
    assert_eq!(
        value(&acked, "sotto_relay_envelopes_acknowledged_total"),
        1.0
    );
    assert_eq!(value(&acked, "sotto_relay_stored_envelopes"), 0.0);
    assert_eq!(value(&acked, "sotto_relay_stored_bytes"), 0.0);
    assert_eq!(
        value(&acked, "sotto_relay_requests_total{type=\"ack\"}"),
        1.0
    );

    // Nothing in the page names a mailbox, a message or a payload.
    let (_, page) = http(http_addr, "GET", "/metrics").await;
    for secret in [
        hex(address(&bob).as_bytes()),
        hex(&mid(7).0),
        String::from_utf8_lossy(payload).into_owned(),
    ] {
        assert!(!page.contains(&secret), "{secret} in\n{page}");
    }

    // Only GET (and HEAD) of the two paths.
    assert_eq!(http(http_addr, "GET", "/").await.0, 404);
    assert_eq!(http(http_addr, "GET", "/metrics/../admin").await.0, 404);
    assert_eq!(http(http_addr, "POST", "/metrics").await.0, 405);
    let (status, body) = http(http_addr, "HEAD", "/health").await;
    assert_eq!((status, body.as_str()), (200, ""));

    // A connection closed is no longer open.
    alice.close().await;
    let started = std::time::Instant::now();
    loop {
        let now = scrape(http_addr).await;
        if value(&now, "sotto_relay_connections_open") == 1.0 {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "the closed connection still counts"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn refused_connections_are_counted_by_reason() {
    let relay = start_with_metrics(
        ServerConfig {
            max_connections_per_address: 1,
            ..config()
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let first = connect(relay.local_addr()).await;
    let mut second = Raw::connect(relay.local_addr()).await;
    second.expect_closed().await;
    let page = scrape(relay.metrics_addr().unwrap()).await;
    assert_eq!(
        value(
            &page,
            "sotto_relay_connections_refused_total{reason=\"max_connections_per_address\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &page,
            "sotto_relay_connections_refused_total{reason=\"max_connections\"}"
        ),
        0.0
    );
    drop(first);
    relay.shutdown().await;
}

#[tokio::test]
async fn health_is_503_while_the_store_does_not_answer() {
    let store = Arc::new(GatedStore::default());
    let relay = start_with_metrics(config(), store.clone()).await;
    let http_addr = relay.metrics_addr().unwrap();
    assert_eq!(http(http_addr, "GET", "/health").await.0, 200);

    store.break_totals(true);
    let (status, body) = http(http_addr, "GET", "/health").await;
    assert_eq!((status, body.as_str()), (503, "store unavailable\n"));
    let page = scrape(http_addr).await;
    assert_eq!(value(&page, "sotto_relay_store_up"), 0.0);
    assert!(!page.contains_key("sotto_relay_stored_bytes"));

    store.break_totals(false);
    assert_eq!(http(http_addr, "GET", "/health").await.0, 200);
    relay.shutdown().await;
}

#[tokio::test]
async fn without_metrics_nothing_is_served() {
    let relay = start().await;
    assert_eq!(relay.metrics_addr(), None);
    relay.shutdown().await;
}
