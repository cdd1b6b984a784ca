//! Version negotiation.

use sotto_relay::protocol::{Request, Response, SUPPORTED_VERSIONS};
use sotto_relay::{ClientError, ErrorCode, RelayClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

#[tokio::test]
async fn an_unknown_protocol_version_gets_a_clear_error() {
    let relay = start().await;
    let mut raw = Raw::connect(relay.local_addr()).await;
    raw.request(
        0,
        &Request::Hello {
            versions: vec![6, 99],
        },
    )
    .await;
    let (code, message) = error_of(raw.response(0).await);
    assert_eq!(code, ErrorCode::UnsupportedVersion);
    assert!(
        message.contains("[6, 99]") && message.contains("[2, 3, 4, 5]"),
        "{message}"
    );
    raw.expect_closed().await;

    // Offering several, the highest common one is chosen.
    for (offered, chosen) in [
        (vec![7, 1, 2, 3, 4, 5], 5),
        (vec![7, 1, 2, 3, 4], 4),
        (vec![7, 1, 2, 3], 3),
        (vec![7, 1, 2], 2),
    ] {
        let mut raw = Raw::connect(relay.local_addr()).await;
        raw.request(0, &Request::Hello { versions: offered }).await;
        match raw.response(0).await {
            Response::Welcome(w) => {
                assert_eq!(w.version, chosen);
                assert_eq!(w.server_id, "test-relay");
                assert_eq!(w.max_frame_size, 1 << 20);
            }
            other => panic!("{other:?}"),
        }
    }
    // The client offers both and gets the newest.
    let client = connect(relay.local_addr()).await;
    assert_eq!(client.protocol_version(), 5);
    assert!(client.supports_send_multi());
    assert!(client.supports_blobs());
    relay.shutdown().await;
}

#[tokio::test]
async fn a_version_1_client_is_refused_with_unsupported_version() {
    // Version 1 signed logins without the channel binding; this relay no
    // longer accepts them, and says so before any challenge is issued.
    let relay = start().await;
    let mut raw = Raw::connect(relay.local_addr()).await;
    raw.request(0, &Request::Hello { versions: vec![1] }).await;
    let (code, message) = error_of(raw.response(0).await);
    assert_eq!(code, ErrorCode::UnsupportedVersion);
    assert!(
        message.contains("client offers [1], this relay speaks [2, 3, 4, 5]"),
        "{message}"
    );
    raw.expect_closed().await;
    relay.shutdown().await;
}

#[tokio::test]
async fn the_client_reports_a_relay_that_refuses_its_version() {
    // A stand-in for a future relay that no longer speaks version 2.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut len = [0u8; 4];
        tcp.read_exact(&mut len).await.unwrap();
        let mut hello = vec![0u8; u32::from_be_bytes(len) as usize];
        tcp.read_exact(&mut hello).await.unwrap();
        let body = Response::error(
            ErrorCode::UnsupportedVersion,
            "unsupported protocol version: client offers [2], this relay speaks [3]",
        )
        .encode(0);
        tcp.write_all(&(body.len() as u32).to_be_bytes())
            .await
            .unwrap();
        tcp.write_all(&body).await.unwrap();
    });
    let err = RelayClient::connect(addr, client_config())
        .await
        .unwrap_err();
    match &err {
        ClientError::UnsupportedVersion {
            offered, supported, ..
        } => {
            assert_eq!(offered, SUPPORTED_VERSIONS);
            assert_eq!(supported.as_deref(), Some(&[3][..]));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.code(), Some(ErrorCode::UnsupportedVersion));
    assert!(err.to_string().contains("protocol version"), "{err}");
    assert!(err.to_string().contains("it speaks [3]"), "{err}");
    fake.await.unwrap();
}

/// A relay on a store that keeps no KEM prekeys speaks protocol 3 at most
/// (4 is the KEM prekey directory), says so when refusing, and a client
/// offering every version gets 3.
#[tokio::test]
async fn a_store_without_kem_prekeys_caps_the_protocol_at_3() {
    let store = std::sync::Arc::new(crate::gated_store::GatedStore::default());
    let relay = start_with(config(), store).await;
    let mut raw = Raw::connect(relay.local_addr()).await;
    raw.request(0, &Request::Hello { versions: vec![4] }).await;
    let (code, message) = error_of(raw.response(0).await);
    assert_eq!(code, ErrorCode::UnsupportedVersion);
    assert!(message.contains("speaks [2, 3]"), "{message}");
    let mut raw = Raw::connect(relay.local_addr()).await;
    assert_eq!(raw.hello().await.version, 3);
    let client = connect(relay.local_addr()).await;
    assert!(!client.supports_kem_prekeys());
    assert!(!client.supports_blobs());
    relay.shutdown().await;
}

/// A relay without blob storage speaks protocol 4 at most (5 is blobs).
#[tokio::test]
async fn a_relay_without_blobs_caps_the_protocol_at_4() {
    let config = sotto_relay::ServerConfig {
        blobs: sotto_relay::BlobStorage::Off,
        ..config()
    };
    let relay = start_with(config, std::sync::Arc::new(sotto_relay::MemoryStore::new())).await;
    let mut raw = Raw::connect(relay.local_addr()).await;
    raw.request(0, &Request::Hello { versions: vec![5] }).await;
    let (code, message) = error_of(raw.response(0).await);
    assert_eq!(code, ErrorCode::UnsupportedVersion);
    assert!(message.contains("speaks [2, 3, 4]"), "{message}");
    let client = connect(relay.local_addr()).await;
    assert_eq!(client.protocol_version(), 4);
    assert!(!client.supports_blobs());
    relay.shutdown().await;
}
