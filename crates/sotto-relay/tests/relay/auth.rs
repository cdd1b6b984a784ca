//! Mailbox ownership: only the key holder reads, acks or re-keys.

use sotto_relay::protocol::{ChannelBinding, Request, auth_message};
use sotto_relay::{ClientConfig, ClientError, ErrorCode, RelayClient};

use crate::common::*;

#[tokio::test]
async fn another_client_cannot_read_ack_or_replace_a_mailbox() {
    let relay = start().await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let mallory = identity(6);

    let bob_conn = owner(addr, &bob).await;
    bob_conn.upload_prekeys(prekeys(&bob, 0, 5)).await.unwrap();
    let sender = connect(addr).await;
    let mut ids = Vec::new();
    for i in 0..3u8 {
        ids.push(
            sender
                .send(&address(&bob), mid(i), None, b"for bob")
                .await
                .unwrap()
                .envelope_id,
        );
    }

    // Mallory, authenticated as herself, sees only her own (empty) mailbox
    // and her acks of Bob's ids delete nothing.
    let mallory_conn = owner(addr, &mallory).await;
    assert!(mallory_conn.fetch_pending().await.unwrap().is_empty());
    assert_eq!(mallory_conn.ack(&ids).await.unwrap(), 0);
    // Her upload lands in her own directory entry, not Bob's.
    mallory_conn
        .upload_prekeys(prekeys(&mallory, 100, 2))
        .await
        .unwrap();
    let bundle = sender.fetch_bundle(&address(&bob)).await.unwrap();
    assert_eq!(bundle.identity_key, *bob.public());
    assert_eq!(bundle.one_time_prekey.map(|k| k.0.get()), Some(0));

    // Without authentication, owner operations are refused.
    let anonymous = connect(addr).await;
    for result in [
        anonymous.fetch(0, 0).await.map(|_| ()),
        anonymous.ack(&ids).await.map(|_| ()),
        anonymous
            .upload_prekeys(prekeys(&bob, 0, 1))
            .await
            .map(|_| ()),
        anonymous.prekey_count().await.map(|_| ()),
    ] {
        assert_eq!(result.unwrap_err().code(), Some(ErrorCode::AuthRequired));
    }
    // And the connection is still usable.
    anonymous.ping().await.unwrap();

    // Bob still has everything.
    assert_eq!(bob_conn.fetch_pending().await.unwrap().len(), 3);
    assert_eq!(bob_conn.prekey_count().await.unwrap().remaining, 4);
    relay.shutdown().await;
}

#[tokio::test]
async fn forged_or_replayed_challenge_signatures_are_refused() {
    let relay = start().await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let mallory = identity(6);

    // Bob's key, Mallory's signature.
    let mut raw = Raw::connect(addr).await;
    let welcome = raw.hello().await;
    let message = auth_message(
        &welcome.server_id,
        &welcome.challenge,
        &ChannelBinding::None,
    );
    raw.request(
        1,
        &Request::Authenticate {
            identity_key: *bob.public().as_bytes(),
            signature: mallory.sign(&message),
        },
    )
    .await;
    let (code, text) = error_of(raw.response(1).await);
    assert_eq!(code, ErrorCode::AuthFailed);
    assert!(text.contains("signature"), "{text}");
    raw.expect_closed().await;

    // A genuine signature by Bob over another connection's challenge.
    let mut first = Raw::connect(addr).await;
    let w1 = first.hello().await;
    let replayed = bob.sign(&auth_message(
        &w1.server_id,
        &w1.challenge,
        &ChannelBinding::None,
    ));
    let mut second = Raw::connect(addr).await;
    let w2 = second.hello().await;
    assert_ne!(w1.challenge, w2.challenge, "challenges are fresh");
    second
        .request(
            1,
            &Request::Authenticate {
                identity_key: *bob.public().as_bytes(),
                signature: replayed,
            },
        )
        .await;
    assert_eq!(error_of(second.response(1).await).0, ErrorCode::AuthFailed);

    // A genuine signature bound to another relay's id.
    let mut third = Raw::connect(addr).await;
    let w3 = third.hello().await;
    third
        .request(
            1,
            &Request::Authenticate {
                identity_key: *bob.public().as_bytes(),
                signature: bob.sign(&auth_message(
                    "other-relay",
                    &w3.challenge,
                    &ChannelBinding::None,
                )),
            },
        )
        .await;
    assert_eq!(error_of(third.response(1).await).0, ErrorCode::AuthFailed);

    // A key that is not a valid Ed25519 point encoding.
    let mut fourth = Raw::connect(addr).await;
    fourth.hello().await;
    fourth
        .request(
            1,
            &Request::Authenticate {
                identity_key: [0xFF; 32],
                signature: sotto_core::Signature::from_bytes([0; 64]),
            },
        )
        .await;
    assert_eq!(error_of(fourth.response(1).await).0, ErrorCode::AuthFailed);

    // The genuine article works.
    let bob_conn = owner(addr, &bob).await;
    assert!(bob_conn.fetch_pending().await.unwrap().is_empty());
    let (code, _) = match bob_conn.authenticate(&bob).await {
        Err(ClientError::Server { code, message }) => (code, message),
        other => panic!("{other:?}"),
    };
    assert_eq!(code, ErrorCode::AlreadyAuthenticated);
    relay.shutdown().await;
}

#[tokio::test]
async fn client_refuses_a_relay_with_another_server_id() {
    let relay = start().await;
    let err = RelayClient::connect(
        relay.local_addr(),
        ClientConfig {
            expected_server_id: Some("my-relay".into()),
            ..client_config()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ClientError::ServerIdMismatch { ref actual, .. } if actual == "test-relay")
    );
    let ok = RelayClient::connect(
        relay.local_addr(),
        ClientConfig {
            expected_server_id: Some("test-relay".into()),
            ..client_config()
        },
    )
    .await
    .unwrap();
    assert_eq!(ok.welcome().server_id, "test-relay");
    relay.shutdown().await;
}
