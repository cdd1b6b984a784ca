//! Multi-recipient send (docs/relay.md §6, "Multi-recipient send"): one
//! request, one shared body, one header per recipient; each recipient gets
//! `header || body` as if it had been sent alone.

use std::sync::Arc;

use sotto_core::{AccessKey, IdentityKeyPair};
use sotto_relay::protocol::{
    MAX_MULTI_RECIPIENTS, Request, Response, SEND_MULTI_VERSION, ServerFrame, Welcome,
};
use sotto_relay::{
    ClientError, ErrorCode, FirstContactLimit, MailboxAddress, MailboxStore, MemoryStore,
    MessageId, MultiRecipient, RecipientOutcome, RelayClient, RelayEvent, ServerConfig,
    SqliteStore, StoreTotals,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// A recipient without an access key.
fn to(id: &IdentityKeyPair, n: u8, header: &[u8]) -> MultiRecipient {
    MultiRecipient::new(address(id), mid(n), None, header.to_vec())
}

fn envelope(header: &[u8], body: &[u8]) -> Vec<u8> {
    [header, body].concat()
}

/// The next pushed envelope, skipping prekey notices.
async fn next_pushed(
    events: &mut tokio::sync::mpsc::Receiver<RelayEvent>,
) -> sotto_relay::Envelope {
    loop {
        match next_event(events).await {
            RelayEvent::Envelope(e) => return e,
            RelayEvent::PreKeysLow(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
}

fn stored_ids(outcomes: &[RecipientOutcome]) -> Vec<u64> {
    outcomes
        .iter()
        .map(|o| match o {
            RecipientOutcome::Stored { envelope_id } => *envelope_id,
            other => panic!("not stored: {other:?}"),
        })
        .collect()
}

async fn connected_recipients_get_pushes_and_an_offline_one_fetches_later(
    store: Arc<dyn MailboxStore>,
) {
    let relay = start_with(config(), store.clone()).await;
    let addr = relay.local_addr();
    let (bob, carol, dave) = (identity(2), identity(3), identity(4));
    let bob_conn = registered(addr, &bob).await;
    let carol_conn = registered(addr, &carol).await;
    register(addr, &dave).await;
    let mut bob_events = bob_conn.take_events().unwrap();
    let mut carol_events = carol_conn.take_events().unwrap();

    let alice = connect(addr).await;
    assert!(alice.supports_send_multi());
    let body = vec![0xB0; 5000];
    let recipients = [
        to(&bob, 1, b"for bob"),
        to(&carol, 1, b"for carol"),
        to(&dave, 1, b"for dave"),
    ];
    let outcomes = alice.send_multi(&body, &recipients).await.unwrap();
    let ids = stored_ids(&outcomes);

    // Pushed to those connected, as any envelope is.
    let pushed = next_pushed(&mut bob_events).await;
    assert_eq!(
        (pushed.id, &pushed.payload),
        (ids[0], &envelope(b"for bob", &body))
    );
    let pushed = next_pushed(&mut carol_events).await;
    assert_eq!(
        (pushed.id, &pushed.payload),
        (ids[1], &envelope(b"for carol", &body))
    );
    // Fetched by the one who comes later.
    let dave_conn = connect(addr).await;
    let info = dave_conn.authenticate(&dave).await.unwrap();
    assert_eq!(info.pending_envelopes, 1);
    assert_eq!(info.pending_bytes, 8 + 5000);
    let pending = dave_conn.fetch_pending().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].id, &pending[0].payload),
        (ids[2], &envelope(b"for dave", &body))
    );
    // Each acknowledges its own; nothing is left.
    assert_eq!(bob_conn.ack(&ids[..1]).await.unwrap(), 1);
    assert_eq!(carol_conn.ack(&ids[1..2]).await.unwrap(), 1);
    assert_eq!(dave_conn.ack(&ids[2..]).await.unwrap(), 1);
    assert_eq!(store.totals().unwrap(), StoreTotals::default());
    relay.shutdown().await;
}

#[tokio::test]
async fn connected_recipients_get_pushes_and_an_offline_one_fetches_later_memory() {
    connected_recipients_get_pushes_and_an_offline_one_fetches_later(Arc::new(MemoryStore::new()))
        .await;
}

#[tokio::test]
async fn connected_recipients_get_pushes_and_an_offline_one_fetches_later_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    connected_recipients_get_pushes_and_an_offline_one_fetches_later(Arc::new(
        SqliteStore::open(dir.path().join("r.db")).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn a_relay_restart_after_a_multi_send_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let (bob, carol) = (identity(2), identity(3));
    let relay = start_with(config(), Arc::new(SqliteStore::open(&db).unwrap())).await;
    register(relay.local_addr(), &bob).await;
    register(relay.local_addr(), &carol).await;
    let alice = connect(relay.local_addr()).await;
    let outcomes = alice
        .send_multi(b"body", &[to(&bob, 1, b"b:"), to(&carol, 1, b"c:")])
        .await
        .unwrap();
    let ids = stored_ids(&outcomes);
    drop(alice);
    relay.shutdown().await;

    let relay = start_with(config(), Arc::new(SqliteStore::open(&db).unwrap())).await;
    for (id, who, header) in [(ids[0], &bob, b"b:"), (ids[1], &carol, b"c:")] {
        let conn = owner(relay.local_addr(), who).await;
        let pending = conn.fetch_pending().await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (pending[0].id, &pending[0].payload),
            (id, &envelope(header, b"body"))
        );
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn a_recipient_without_a_valid_access_key_is_refused_while_the_others_are_stored() {
    let relay = start_with(
        ServerConfig {
            first_contact: FirstContactLimit {
                burst: 1,
                ..FirstContactLimit::default()
            },
            ..config()
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let addr = relay.local_addr();
    let (bob, carol, dave) = (identity(2), identity(3), identity(4));
    let key = |id: &IdentityKeyPair| AccessKey::derive(id).unwrap();
    for guarded in [&bob, &dave] {
        let conn = owner(addr, guarded).await;
        let upload = prekeys(guarded, 0, 0).with_access_verifier(key(guarded).verifier());
        conn.upload_prekeys(upload).await.unwrap();
    }
    register(addr, &carol).await;
    let nobody = MailboxAddress::from_bytes([0xAB; 32]);

    let alice = connect(addr).await;
    let with = |id: &IdentityKeyPair, n: u8, access: AccessKey| {
        MultiRecipient::new(address(id), mid(n), Some(access), b"h".to_vec())
    };
    let recipients = [
        // Bob's first-contact allowance (1) takes the first without his key.
        to(&bob, 1, b"h"),
        to(&bob, 2, b"h"),
        // A wrong key is no key.
        with(&bob, 3, key(&carol)),
        to(&carol, 1, b"h"),
        with(&dave, 1, key(&dave)),
        MultiRecipient::new(nobody, mid(1), None, b"h".to_vec()),
        to(&carol, 2, b""),
    ];
    let outcomes = alice.send_multi(b"", &recipients).await.unwrap();
    let refusals: Vec<_> = outcomes.iter().map(RecipientOutcome::refusal).collect();
    assert_eq!(
        refusals,
        [
            None,
            Some(ErrorCode::AccessDenied),
            Some(ErrorCode::AccessDenied),
            None,
            None,
            Some(ErrorCode::UnknownRecipient),
            Some(ErrorCode::InvalidEnvelope),
        ]
    );
    // A single send to Bob would have been refused the same way.
    let err = alice
        .send(&address(&bob), mid(9), None, b"h")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AccessDenied));

    // The refused ones stored nothing. Resent, the stored ones store
    // nothing twice; the first contact, its allowance used up, is refused
    // before its message id is looked at, as a single send's retry is.
    let bob_conn = owner(addr, &bob).await;
    assert_eq!(bob_conn.fetch_pending().await.unwrap().len(), 1);
    let again = alice
        .send_multi(b"", &[recipients[0].clone(), recipients[3].clone()])
        .await
        .unwrap();
    assert_eq!(
        again,
        [
            RecipientOutcome::Refused(ErrorCode::AccessDenied),
            RecipientOutcome::Duplicate {
                envelope_id: outcomes[3].envelope_id().unwrap()
            }
        ]
    );
    let err = alice
        .send(&address(&bob), mid(1), None, b"h")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AccessDenied));
    let carol_conn = owner(addr, &carol).await;
    assert_eq!(carol_conn.fetch_pending().await.unwrap().len(), 1);
    // With his key, Bob's mailbox takes the rest.
    let keyed = alice
        .send_multi(b"", &[with(&bob, 2, key(&bob))])
        .await
        .unwrap();
    assert!(matches!(keyed[0], RecipientOutcome::Stored { .. }));
    relay.shutdown().await;
}

#[tokio::test]
async fn a_request_over_the_recipient_limit_is_refused_and_nothing_is_stored() {
    let store = Arc::new(MemoryStore::new());
    let relay = start_with(config(), store.clone()).await;
    let addr = relay.local_addr();
    let bob = identity(2);
    register(addr, &bob).await;
    let too_many: Vec<MultiRecipient> = (0..=MAX_MULTI_RECIPIENTS)
        .map(|i| {
            MultiRecipient::new(
                address(&bob),
                MessageId::random().unwrap(),
                None,
                vec![i as u8],
            )
        })
        .collect();

    // The client does not send it...
    let alice = connect(addr).await;
    let err = alice.send_multi(b"body", &too_many).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::TooManyRecipients {
                count: 1001,
                max: 1000
            }
        ),
        "{err}"
    );
    // ...and the relay refuses it, without closing the connection.
    let mut raw = Raw::connect(addr).await;
    raw.hello().await;
    let request = Request::SendMulti {
        recipients: too_many.clone(),
        body: b"body".to_vec(),
    };
    raw.request(5, &request).await;
    let (code, message) = error_of(raw.response(5).await);
    assert_eq!(code, ErrorCode::TooManyRecipients);
    assert!(
        message.contains("1001") && message.contains("1000"),
        "{message}"
    );
    raw.request(6, &Request::Ping).await;
    assert_eq!(raw.response(6).await, Response::Pong);
    assert_eq!(store.totals().unwrap(), StoreTotals::default());

    // At the limit it goes through.
    let outcomes = alice
        .send_multi(b"body", &too_many[..MAX_MULTI_RECIPIENTS])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), MAX_MULTI_RECIPIENTS);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, RecipientOutcome::Stored { .. }))
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn a_request_over_the_frame_limit_is_refused_and_nothing_is_stored() {
    let store = Arc::new(MemoryStore::new());
    let relay = start_with(
        ServerConfig {
            max_frame_size: 4096,
            ..config()
        },
        store.clone(),
    )
    .await;
    let addr = relay.local_addr();
    let (bob, carol) = (identity(2), identity(3));
    register(addr, &bob).await;
    register(addr, &carol).await;
    let recipients = [to(&bob, 1, b"hb"), to(&carol, 1, b"hc")];

    // The client knows the limit and does not send it.
    let alice = connect(addr).await;
    let err = alice.send_multi(&[0; 4000], &recipients).await.unwrap_err();
    assert!(
        matches!(err, ClientError::RequestTooLarge { len, max: 4096 } if len > 4096),
        "{err}"
    );
    // Nor an envelope a single `Send` could not carry.
    let err = alice
        .send_multi(&[0; 4025], &recipients[..1])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::PayloadTooLarge {
                len: 4027,
                max: 4026
            }
        ),
        "{err}"
    );
    // The relay refuses the frame before reading it, and hangs up.
    let mut raw = Raw::connect(addr).await;
    raw.hello().await;
    raw.request(
        3,
        &Request::SendMulti {
            recipients: recipients.to_vec(),
            body: vec![0; 4000],
        },
    )
    .await;
    assert_eq!(error_of(raw.response(0).await).0, ErrorCode::FrameTooLarge);
    raw.expect_closed().await;
    // Within the frame, an envelope longer than a `Send` carries is
    // refused for its recipient.
    let mut raw = Raw::connect(addr).await;
    raw.hello().await;
    raw.request(
        3,
        &Request::SendMulti {
            recipients: vec![to(&bob, 2, b"")],
            body: vec![0; 4030],
        },
    )
    .await;
    assert_eq!(
        raw.response(3).await,
        Response::SentMulti(vec![RecipientOutcome::Refused(ErrorCode::InvalidEnvelope)])
    );
    assert_eq!(store.totals().unwrap(), StoreTotals::default());

    // What fits goes through, the largest envelope included.
    let outcomes = alice
        .send_multi(&[0; 4026], &[to(&bob, 3, b"")])
        .await
        .unwrap();
    assert!(matches!(outcomes[0], RecipientOutcome::Stored { .. }));
    relay.shutdown().await;
}

/// Sends `request` as frame `id` on a raw connection, then closes it
/// without reading the answer (as a connection lost before the reply).
async fn send_and_hang_up(addr: std::net::SocketAddr, id: u32, request: &Request) {
    let mut raw = Raw::connect(addr).await;
    raw.hello().await;
    raw.request(id, request).await;
    raw.stream.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_request_resent_after_a_dropped_connection_stores_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("r.db")).unwrap());
    let relay = start_with(config(), store.clone()).await;
    let addr = relay.local_addr();
    let (bob, carol) = (identity(2), identity(3));
    register(addr, &bob).await;
    register(addr, &carol).await;
    let recipients = vec![to(&bob, 1, b"b"), to(&carol, 1, b"c")];
    let request = Request::SendMulti {
        recipients: recipients.clone(),
        body: b"the body".to_vec(),
    };
    send_and_hang_up(addr, 1, &request).await;
    // The relay stored it anyway (the answer was lost)...
    eventually("the first attempt is stored", || {
        store.totals().unwrap().envelopes == 2
    })
    .await;
    // ...so the resend on a new connection stores nothing new.
    let alice = connect(addr).await;
    let outcomes = alice.send_multi(b"the body", &recipients).await.unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, RecipientOutcome::Duplicate { .. })),
        "{outcomes:?}"
    );
    assert_eq!(store.totals().unwrap().envelopes, 2);
    for (who, header) in [(&bob, b"b"), (&carol, b"c")] {
        let conn = owner(addr, who).await;
        let pending = conn.fetch_pending().await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].payload, envelope(header, b"the body"));
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn the_send_budget_counts_the_body_once_and_mailboxes_count_every_envelope() {
    let store = Arc::new(MemoryStore::new());
    let relay = start_with(
        ServerConfig {
            max_frame_size: 4096,
            connection_send_budget: 7000,
            ..config()
        },
        store.clone(),
    )
    .await;
    let addr = relay.local_addr();
    let ids: Vec<IdentityKeyPair> = (10..20).map(identity).collect();
    for id in &ids {
        register(addr, id).await;
    }
    let alice = connect(addr).await;
    let body = vec![1; 3000];
    let recipients = |n: u8| -> Vec<_> { ids.iter().map(|id| to(id, n, &[2; 10])).collect() };
    // 3000 + 10 × 10 bytes arrived, and are held; each mailbox counts
    // its envelope of 3010 bytes.
    let outcomes = alice.send_multi(&body, &recipients(1)).await.unwrap();
    assert_eq!(stored_ids(&outcomes).len(), 10);
    assert_eq!(
        store.totals().unwrap(),
        StoreTotals {
            envelopes: 10,
            bytes: 3100
        }
    );
    assert_eq!(store.usage(&address(&ids[0])).unwrap().bytes, 3010);
    // A repeat is a duplicate and costs nothing: another 3100 fit...
    let again = alice.send_multi(&body, &recipients(1)).await.unwrap();
    assert!(
        again
            .iter()
            .all(|o| matches!(o, RecipientOutcome::Duplicate { .. }))
    );
    let outcomes = alice.send_multi(&body, &recipients(2)).await.unwrap();
    assert_eq!(stored_ids(&outcomes).len(), 10);
    // ...and a third 3100 would go over the budget of 7000: fatal, and
    // nothing of it is stored.
    let err = alice.send_multi(&body, &recipients(3)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::SendBudgetExceeded));
    assert_eq!(store.totals().unwrap().envelopes, 20);
    // A new connection has a budget of its own.
    let outcomes = connect(addr)
        .await
        .send_multi(&body, &recipients(3))
        .await
        .unwrap();
    assert_eq!(stored_ids(&outcomes).len(), 10);
    relay.shutdown().await;
}

/// A `SendMulti` body to mangle: two recipients, one with an access key.
fn valid_body(id: u32) -> Vec<u8> {
    Request::SendMulti {
        recipients: vec![
            MultiRecipient::new(
                address(&identity(2)),
                mid(1),
                Some(AccessKey::from_bytes([5; 16])),
                b"header".to_vec(),
            ),
            to(&identity(3), 1, b""),
        ],
        body: b"body".to_vec(),
    }
    .encode(id)
}

#[tokio::test]
async fn malformed_requests_get_a_clear_error_and_others_keep_being_served() {
    let store = Arc::new(MemoryStore::new());
    let relay = start_with(config(), store.clone()).await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let bob_conn = registered(addr, &bob).await;
    register(addr, &identity(3)).await;

    let valid = valid_body(7);
    let mut mangled: Vec<(&str, Vec<u8>)> = Vec::new();
    // Every truncation.
    for cut in 5..valid.len() {
        mangled.push(("truncated", valid[..cut].to_vec()));
    }
    // A count above and below the recipients there are, and zero.
    for n in [3u16, 1, 0] {
        let mut body = valid.clone();
        body[5..7].copy_from_slice(&n.to_be_bytes());
        mangled.push(("count mismatch", body));
    }
    // Bytes after the body.
    mangled.push(("trailing bytes", [&valid[..], b"x"].concat()));
    // Unknown recipient flags.
    let mut body = valid.clone();
    body[7 + 48] = 0x03;
    mangled.push(("flags", body));

    for (what, body) in &mangled {
        let mut raw = Raw::connect(addr).await;
        raw.hello().await;
        raw.send(body).await;
        let (code, message) = error_of(raw.response(7).await);
        assert_eq!(code, ErrorCode::Malformed, "{what}: {message}");
        assert!(!message.is_empty(), "{what}");
        raw.expect_closed().await;
    }
    // Nothing of it was stored, and everyone else is served throughout.
    assert_eq!(store.totals().unwrap(), StoreTotals::default());
    let alice = connect(addr).await;
    alice
        .send(&address(&bob), mid(1), None, b"still here")
        .await
        .unwrap();
    assert_eq!(bob_conn.fetch_pending().await.unwrap().len(), 1);
    relay.shutdown().await;
}

#[tokio::test]
async fn on_a_version_2_connection_send_multi_is_an_unknown_request() {
    let relay = start().await;
    let mut raw = Raw::connect(relay.local_addr()).await;
    raw.request(0, &Request::Hello { versions: vec![2] }).await;
    match raw.response(0).await {
        Response::Welcome(w) => assert_eq!(w.version, 2),
        other => panic!("{other:?}"),
    }
    // As a relay from before version 3 answers it: refused, not fatal,
    // and its content is not even looked at.
    for (id, body) in [(3, valid_body(3)), (4, valid_body(4)[..9].to_vec())] {
        raw.send(&body).await;
        let (code, message) = error_of(raw.response(id).await);
        assert_eq!(code, ErrorCode::UnknownRequest);
        assert!(message.contains("0x0b"), "{message}");
    }
    raw.request(5, &Request::Ping).await;
    assert_eq!(raw.response(5).await, Response::Pong);
    relay.shutdown().await;
}

/// A stand-in for an older relay: answers `Hello` with a `Welcome` of
/// `version`, and every request after it with `UnknownRequest`.
async fn older_relay(version: u16) -> std::net::SocketAddr {
    let unknown = Response::error(ErrorCode::UnknownRequest, "unknown request type 0x0b");
    fake_relay(version, unknown).await
}

/// A stand-in relay: answers `Hello` with a `Welcome` of `version`, and
/// every request after it with `answer`.
async fn fake_relay(version: u16, answer: Response) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut first = true;
        loop {
            let mut len = [0u8; 4];
            if tcp.read_exact(&mut len).await.is_err() {
                return;
            }
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            tcp.read_exact(&mut body).await.unwrap();
            let id = u32::from_be_bytes(body[1..5].try_into().unwrap());
            let response = if first {
                first = false;
                Response::Welcome(Welcome {
                    version,
                    max_frame_size: 1 << 20,
                    server_id: "older".into(),
                    challenge: [1; 32],
                })
            } else {
                answer.clone()
            };
            let frame = ServerFrame::Response {
                request_id: id,
                response,
            }
            .encode();
            tcp.write_all(&(frame.len() as u32).to_be_bytes())
                .await
                .unwrap();
            tcp.write_all(&frame).await.unwrap();
        }
    });
    addr
}

#[tokio::test]
async fn the_client_falls_back_on_a_typed_error_where_the_relay_does_not_take_it() {
    // A version-2 relay: known from the handshake, nothing is sent.
    let client = RelayClient::connect(older_relay(2).await, client_config())
        .await
        .unwrap();
    assert!(!client.supports_send_multi());
    let err = client
        .send_multi(b"body", &[to(&identity(2), 1, b"h")])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Unsupported {
                request: "SendMulti",
                version: 2,
                needed: SEND_MULTI_VERSION
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("protocol version 2"), "{err}");
    // A relay that negotiated it and answers `UnknownRequest` all the
    // same: the same error.
    let client = RelayClient::connect(older_relay(3).await, client_config())
        .await
        .unwrap();
    assert!(client.supports_send_multi());
    let err = client
        .send_multi(b"body", &[to(&identity(2), 1, b"h")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Unsupported { version: 3, .. }),
        "{err}"
    );
    // No recipients: nothing to ask.
    assert_eq!(client.send_multi(b"body", &[]).await.unwrap(), []);
}

#[tokio::test]
async fn an_answer_with_another_number_of_outcomes_is_a_protocol_violation() {
    let one = Response::SentMulti(vec![RecipientOutcome::Stored { envelope_id: 1 }]);
    let client = RelayClient::connect(fake_relay(3, one).await, client_config())
        .await
        .unwrap();
    let err = client
        .send_multi(
            b"body",
            &[to(&identity(2), 1, b"h"), to(&identity(3), 1, b"h")],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::ProtocolViolation(sotto_relay::ProtocolViolation::OutcomeCount {
                sent: 2,
                answered: 1
            })
        ),
        "{err}"
    );
}
