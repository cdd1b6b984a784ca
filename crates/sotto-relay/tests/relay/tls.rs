//! The protocol over TLS (feature `tls`).

use std::sync::Arc;

use sotto_relay::{MemoryStore, RelayClient, Server, tls};

use crate::common::*;

#[tokio::test]
async fn clients_talk_to_a_tls_relay_and_plain_clients_are_turned_away() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let server_tls = tls::server_config(
        cert.cert.pem().as_bytes(),
        cert.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let client_tls = tls::client_config(cert.cert.pem().as_bytes()).unwrap();
    let relay = Server::bind("127.0.0.1:0", config(), Arc::new(MemoryStore::new()))
        .await
        .unwrap()
        .with_tls(server_tls)
        .spawn();
    let addr = relay.local_addr();

    let bob = identity(2);
    let bob_conn = RelayClient::connect_tls(addr, "localhost", client_tls.clone(), client_config())
        .await
        .unwrap();
    bob_conn.authenticate(&bob).await.unwrap();
    bob_conn.upload_prekeys(prekeys(&bob, 0, 0)).await.unwrap();
    let alice = RelayClient::connect_tls(addr, "localhost", client_tls.clone(), client_config())
        .await
        .unwrap();
    alice
        .send(&address(&bob), mid(1), b"over tls")
        .await
        .unwrap();
    let got = bob_conn.fetch_pending().await.unwrap();
    assert_eq!(got[0].payload, b"over tls");

    // Wrong name: the certificate does not match.
    assert!(
        RelayClient::connect_tls(addr, "example.org", client_tls, client_config())
            .await
            .is_err()
    );
    // Plain TCP against the TLS port fails cleanly, and the relay goes on.
    assert!(RelayClient::connect(addr, client_config()).await.is_err());
    bob_conn.ping().await.unwrap();
    relay.shutdown().await;
}
