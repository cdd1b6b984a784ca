//! Unidentified access (docs/relay.md §6, "Access"): a mailbox whose owner
//! published an access verifier takes envelopes without limit only from
//! senders holding its access key; strangers get the first-contact
//! allowance and no more. The tests play the stranger.

use std::sync::Arc;
use std::time::Duration;

use sotto_core::{AccessKey, IdentityKeyPair};
use sotto_relay::{
    ErrorCode, FirstContactLimit, MailboxLimits, MailboxStore, MemoryStore, RelayClient,
    ServerConfig, SqliteStore, UnixTime,
};

use crate::common::*;

const BURST: u32 = 20;
const INTERVAL: Duration = Duration::from_secs(180);

fn access_config() -> ServerConfig {
    ServerConfig {
        first_contact: FirstContactLimit {
            burst: BURST,
            interval: INTERVAL,
            ..FirstContactLimit::default()
        },
        ..config()
    }
}

fn access_key(id: &IdentityKeyPair) -> AccessKey {
    AccessKey::derive(id).unwrap()
}

/// Connects as `id`'s owner and publishes a signed prekey with the access
/// verifier of `id`'s key.
async fn registered_with_verifier(addr: std::net::SocketAddr, id: &IdentityKeyPair) -> RelayClient {
    let client = owner(addr, id).await;
    let upload = prekeys(id, 0, 0).with_access_verifier(access_key(id).verifier());
    client.upload_prekeys(upload).await.unwrap();
    client
}

/// Sends `count` junk envelopes to `to`; returns how many were queued and
/// checks every refusal is `AccessDenied`.
async fn flood(
    sender: &RelayClient,
    to: &IdentityKeyPair,
    key: Option<&AccessKey>,
    count: u32,
) -> u32 {
    let mut queued = 0;
    for _ in 0..count {
        let id = sotto_relay::MessageId::random().unwrap();
        match sender.send(&address(to), id, key, &[0xEE; 100]).await {
            Ok(receipt) => {
                assert!(!receipt.duplicate);
                queued += 1;
            }
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::AccessDenied), "{e}"),
        }
    }
    queued
}

async fn strangers_get_the_burst_contacts_get_through(store: Arc<dyn MailboxStore>) {
    let clock = TestClock::at(UnixTime::from_secs(1_800_000_000));
    let relay = start_with_clock(access_config(), store, clock.clone()).await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let bob_conn = registered_with_verifier(addr, &bob).await;

    // An anonymous connection floods Bob's mailbox with junk: the first
    // BURST envelopes are first contacts, everything after is refused.
    let attacker = connect(addr).await;
    assert_eq!(flood(&attacker, &bob, None, 200).await, BURST);
    let err = attacker
        .send(&address(&bob), mid(1), None, b"junk")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AccessDenied));
    assert!(
        err.to_string()
            .contains("only takes messages from its contacts"),
        "{err}"
    );
    // Refusals are not fatal: the connection still works...
    attacker.ping().await.unwrap();
    // ...and a new connection does not get a new allowance: it is Bob's.
    let second = connect(addr).await;
    assert_eq!(flood(&second, &bob, None, 50).await, 0);

    // A contact holding Bob's key sends as much as it likes meanwhile.
    let alice = connect(addr).await;
    let key = access_key(&bob);
    assert_eq!(flood(&alice, &bob, Some(&key), 300).await, 300);
    let pending = bob_conn.fetch_pending().await.unwrap();
    assert_eq!(pending.len(), (BURST + 300) as usize);

    // Time earns a stranger one more envelope per interval, not more.
    clock.advance(INTERVAL - Duration::from_secs(1));
    assert_eq!(flood(&attacker, &bob, None, 5).await, 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(flood(&attacker, &bob, None, 5).await, 1);
    clock.advance(10 * INTERVAL);
    assert_eq!(flood(&attacker, &bob, None, 50).await, 10);

    // Other mailboxes have their own allowance, and one that published no
    // verifier takes everyone, as before.
    let carol = identity(3);
    let _carol_conn = registered_with_verifier(addr, &carol).await;
    assert_eq!(flood(&attacker, &carol, None, 30).await, BURST);
    let dave = identity(4);
    register(addr, &dave).await;
    assert_eq!(flood(&attacker, &dave, None, 60).await, 60);
    relay.shutdown().await;
}

#[tokio::test]
async fn a_stranger_flooding_a_mailbox_gets_only_the_first_contact_burst_while_a_contact_sends_freely_memory()
 {
    strangers_get_the_burst_contacts_get_through(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn a_stranger_flooding_a_mailbox_gets_only_the_first_contact_burst_while_a_contact_sends_freely_sqlite()
 {
    let dir = tempfile::tempdir().unwrap();
    strangers_get_the_burst_contacts_get_through(Arc::new(
        SqliteStore::open(dir.path().join("r.db")).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn a_wrong_key_is_treated_as_no_key() {
    let relay = start_with(access_config(), Arc::new(MemoryStore::new())).await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let carol = identity(3);
    let bob_conn = registered_with_verifier(addr, &bob).await;
    let _carol_conn = registered_with_verifier(addr, &carol).await;

    // Carol's real key, a flipped bit of Bob's, or garbage: first contacts.
    let mut flipped = *access_key(&bob).as_bytes();
    flipped[0] ^= 0x01;
    let wrong = [
        access_key(&carol),
        AccessKey::from_bytes(flipped),
        AccessKey::from_bytes([0; 16]),
    ];
    let attacker = connect(addr).await;
    let mut queued = 0;
    for key in &wrong {
        queued += flood(&attacker, &bob, Some(key), 10).await;
    }
    assert_eq!(queued, BURST, "a wrong key takes from the allowance");
    for key in &wrong {
        assert_eq!(flood(&attacker, &bob, Some(key), 5).await, 0);
    }
    // Bob's own key still works, and opens only Bob's mailbox.
    assert_eq!(
        flood(&attacker, &bob, Some(&access_key(&bob)), 30).await,
        30
    );
    assert_eq!(
        flood(&attacker, &carol, Some(&access_key(&bob)), 30).await,
        BURST
    );
    assert_eq!(
        bob_conn.fetch_pending().await.unwrap().len(),
        (BURST + 30) as usize
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn first_contacts_that_store_nothing_do_not_use_up_the_allowance() {
    let relay = start_with(
        ServerConfig {
            mailbox_limits: MailboxLimits {
                max_envelopes: 3,
                max_bytes: 1 << 20,
            },
            first_contact: FirstContactLimit {
                burst: 2,
                ..FirstContactLimit::default()
            },
            ..config()
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let bob_conn = registered_with_verifier(addr, &bob).await;
    let key = access_key(&bob);
    let stranger = connect(addr).await;

    // A first contact, retried: stored once, counted once.
    let first = stranger
        .send(&address(&bob), mid(1), None, b"hello")
        .await
        .unwrap();
    for _ in 0..5 {
        let retry = stranger
            .send(&address(&bob), mid(1), None, b"hello")
            .await
            .unwrap();
        assert_eq!(
            (retry.envelope_id, retry.duplicate),
            (first.envelope_id, true)
        );
    }
    // A full mailbox refuses as full, and that costs no allowance either.
    let contact = connect(addr).await;
    for i in 10..12 {
        contact
            .send(&address(&bob), mid(i), Some(&key), b"x")
            .await
            .unwrap();
    }
    for _ in 0..5 {
        let err = stranger
            .send(&address(&bob), mid(2), None, b"again")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::MailboxFull));
    }
    let pending = bob_conn.fetch_pending().await.unwrap();
    bob_conn.ack(&[pending[0].id]).await.unwrap();
    // One first contact of the two is left.
    stranger
        .send(&address(&bob), mid(2), None, b"again")
        .await
        .unwrap();
    bob_conn.ack(&[pending[1].id]).await.unwrap();
    let err = stranger
        .send(&address(&bob), mid(3), None, b"third")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AccessDenied));
    relay.shutdown().await;
}
