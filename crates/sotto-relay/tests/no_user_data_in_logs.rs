//! The relay and its client log at every level without writing payloads,
//! keys, signatures, mailbox addresses or message ids.
#![cfg(test)]

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sotto_core::{IdentityKeyPair, OneTimePreKey, OneTimePreKeyId, SignedPreKey, SignedPreKeyId};
use sotto_relay::protocol::{ChannelBinding, PROTOCOL_VERSION, Request, auth_message};
use sotto_relay::{
    ClientConfig, MailboxAddress, MemoryStore, MessageId, PreKeyUpload, RelayClient, Server,
    ServerConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Everything the subscriber formats, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const PAYLOAD: &[u8] = b"opaque payload PANGOLIN-5521";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn raw_frame(stream: &mut TcpStream, body: &[u8]) {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    let _ = stream.write_all(&frame).await;
}

async fn drain(stream: &mut TcpStream) {
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_and_client_logs_hold_no_payloads_keys_or_addresses() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();

    let server = Server::bind(
        "127.0.0.1:0",
        ServerConfig::default(),
        Arc::new(MemoryStore::new()),
    )
    .await
    .unwrap()
    .spawn();
    let addr = server.local_addr();
    let config = ClientConfig::default();

    // Bob publishes and receives; Alice sends without an account.
    let bob = IdentityKeyPair::from_seed(&[0xB0; 32]);
    let bob_address = MailboxAddress::of(bob.public());
    let spk = SignedPreKey::from_private_bytes(SignedPreKeyId::new(1), &bob, &[0x5B; 32]);
    let opk = OneTimePreKey::from_private_bytes(OneTimePreKeyId::new(7), &[0x0B; 32]);
    let bob_conn = RelayClient::connect(addr, config.clone()).await.unwrap();
    bob_conn.authenticate(&bob).await.unwrap();
    bob_conn
        .upload_prekeys(PreKeyUpload::new(Some(&spk), std::slice::from_ref(&opk)))
        .await
        .unwrap();
    let alice_conn = RelayClient::connect(addr, config.clone()).await.unwrap();
    let bundle = alice_conn.fetch_bundle(&bob_address).await.unwrap();
    let message_id = MessageId([0x4D; 16]);
    alice_conn
        .send(&bob_address, message_id, None, PAYLOAD)
        .await
        .unwrap();
    let pending = bob_conn.fetch_pending().await.unwrap();
    assert_eq!(pending[0].payload, PAYLOAD);
    bob_conn.ack(&[pending[0].id]).await.unwrap();

    // Misbehaving connections: a refused signature and a malformed frame,
    // both carrying the key and the payload.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw_frame(
        &mut raw,
        &Request::Hello {
            versions: vec![PROTOCOL_VERSION],
        }
        .encode(1),
    )
    .await;
    let bad_auth = Request::Authenticate {
        identity_key: bob.public().to_bytes(),
        signature: bob.sign(&auth_message(
            "another relay",
            &[0; 32],
            &ChannelBinding::None,
        )),
    };
    raw_frame(&mut raw, &bad_auth.encode(2)).await;
    drain(&mut raw).await;
    let mut raw = TcpStream::connect(addr).await.unwrap();
    let mut malformed = vec![0x42, 0, 0, 0, 1];
    malformed.extend_from_slice(bob.public().as_bytes());
    malformed.extend_from_slice(PAYLOAD);
    raw_frame(&mut raw, &malformed).await;
    drain(&mut raw).await;

    bob_conn.close().await;
    alice_conn.close().await;
    server.shutdown().await;

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    // The capture works and sees the debug-level connection events.
    assert!(logs.contains("connection opened"), "{logs}");
    assert!(logs.contains("relay stopped"), "{logs}");
    let secrets: [(&str, Vec<u8>); 7] = [
        ("payload", PAYLOAD.to_vec()),
        ("identity key", bob.public().to_bytes().to_vec()),
        ("mailbox address", bob_address.as_bytes().to_vec()),
        ("message id", message_id.0.to_vec()),
        ("signed prekey", spk.public().as_bytes().to_vec()),
        ("one-time prekey", opk.public().as_bytes().to_vec()),
        (
            "prekey signature",
            bundle.signed_prekey_signature.as_bytes()[..32].to_vec(),
        ),
    ];
    for (what, bytes) in secrets {
        let mut forms = vec![
            hex(&bytes),
            hex(&bytes).to_uppercase(),
            format!("{:?}", &bytes[..8])
                .trim_end_matches(']')
                .to_owned(),
        ];
        if let Ok(text) = std::str::from_utf8(&bytes) {
            forms.push(text.to_owned());
        }
        for form in forms {
            assert!(!logs.contains(&form), "the {what} is in the logs: {logs}");
        }
    }
}
