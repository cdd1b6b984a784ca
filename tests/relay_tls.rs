//! `sotto::Client` and its relay over TLS, and a relay that changes its
//! identity under a plain-TCP profile.
#![cfg(test)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use sotto::relay::tls::{self, rustls};
use sotto::relay::{ClientError, MemoryStore, Server, ServerConfig, ServerHandle};
use sotto::{ClientOptions, Error, RelayTrust};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A private certificate authority, and a relay certificate it issued.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl Pki {
    fn new(host: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test relay CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = params.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(params, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![host.to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        Self {
            ca_pem,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn server(&self) -> Arc<rustls::ServerConfig> {
        tls::server_config(self.cert_pem.as_bytes(), self.key_pem.as_bytes()).unwrap()
    }

    fn pinned(&self) -> ClientOptions {
        ClientOptions {
            relay_trust: RelayTrust::PinnedPem(self.ca_pem.as_bytes().to_vec()),
            ..options()
        }
    }
}

async fn tls_relay(pki: &Pki) -> ServerHandle {
    Server::bind(
        "127.0.0.1:0",
        ServerConfig::default(),
        Arc::new(MemoryStore::new()),
    )
    .await
    .unwrap()
    .with_tls(pki.server())
    .spawn()
}

fn tls_address(relay: &ServerHandle) -> String {
    format!("tls://localhost:{}", relay.local_addr().port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_profiles_exchange_messages_over_tls_with_a_pinned_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("localhost");
    let relay = tls_relay(&pki).await;
    let addr = tls_address(&relay);

    let alice = client_with(dir.path(), "alice", pki.pinned()).await;
    let bob = client_with(dir.path(), "bob", pki.pinned()).await;
    alice.register(&addr).await.unwrap();
    bob.register(&addr).await.unwrap();
    // The profile remembers the relay in its tls:// form.
    assert_eq!(alice.saved_relay().as_deref(), Some(addr.as_str()));
    alice.add_contact("bob", &bob.address()).await.unwrap();
    bob.add_contact("alice", &alice.address()).await.unwrap();

    let mut alice_in = alice.incoming();
    let mut bob_in = bob.incoming();
    alice.send("bob", b"hello over tls").await.unwrap();
    expect_texts(&mut bob_in, &["hello over tls"]).await;
    bob.send("alice", b"and back").await.unwrap();
    expect_texts(&mut alice_in, &["and back"]).await;

    // A later session reaches the remembered relay over TLS again.
    drop(alice);
    let alice = reopen(dir.path(), "alice", pki.pinned()).await;
    let mut alice_in = alice.incoming();
    bob.send("alice", b"while you were away").await.unwrap();
    alice.connect_saved().await.unwrap();
    expect_texts(&mut alice_in, &["while you were away"]).await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_with_the_wrong_ca_is_told_the_certificate_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let relay = tls_relay(&Pki::new("localhost")).await;
    let stranger = Pki::new("localhost");
    let alice = client_with(dir.path(), "alice", stranger.pinned()).await;
    let err = alice.register(&tls_address(&relay)).await.unwrap_err();
    match &err {
        Error::Relay(ClientError::UntrustedCertificate(reason)) => {
            // Same CA name, another key: not the trusted authority.
            assert!(
                matches!(
                    reason,
                    rustls::CertificateError::BadSignature
                        | rustls::CertificateError::UnknownIssuer
                ),
                "{reason:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("not trusted"), "{err}");
    assert!(
        err.to_string().contains("trusted certificate authority"),
        "{err}"
    );
    assert!(!alice.is_connected());
    assert_eq!(alice.saved_relay(), None);

    // Unusable pinned certificates are a setup error, before connecting.
    let options = ClientOptions {
        relay_trust: RelayTrust::PinnedPem(b"not a certificate".to_vec()),
        ..options()
    };
    let bob = client_with(dir.path(), "bob", options).await;
    let err = bob.register(&tls_address(&relay)).await.unwrap_err();
    assert!(matches!(err, Error::TlsConfig(_)), "{err:?}");
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_client_to_a_tls_relay_is_turned_away_and_told_to_use_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("localhost");
    let relay = tls_relay(&pki).await;
    let alice = client_with(dir.path(), "alice", pki.pinned()).await;
    let plain = format!("localhost:{}", relay.local_addr().port());
    let err = alice.register(&plain).await.unwrap_err();
    assert!(
        matches!(err, Error::Relay(ClientError::RelayExpectsTls)),
        "{err:?}"
    );
    assert!(err.to_string().contains("tls://"), "{err}");
    // And a mistyped address never reaches the network.
    let err = alice.register("https://localhost:1").await.unwrap_err();
    assert!(matches!(err, Error::RelayAddress(_)), "{err:?}");
    relay.shutdown().await;
}

/// Where the child test of [`the_platform_trust_store_is_the_default`] finds
/// the relay's certificate and key.
const PKI_DIR_VAR: &str = "SOTTO_TEST_PLATFORM_PKI_DIR";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_trust_store_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("localhost");
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.path().join("cert.pem"), &pki.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &pki.key_pem).unwrap();

    // This process's platform store does not hold the private CA: the
    // default trust refuses the relay (or, on a machine without any CA
    // certificates, cannot be set up at all).
    let relay = tls_relay(&pki).await;
    let alice = client(dir.path(), "alice").await;
    match alice.register(&tls_address(&relay)).await.unwrap_err() {
        Error::Relay(ClientError::UntrustedCertificate(_)) | Error::TlsConfig(_) => {}
        other => panic!("{other:?}"),
    }
    relay.shutdown().await;

    // A process whose platform store is the private CA (SSL_CERT_FILE, as
    // the platform verifier reads it on Linux) reaches the relay with the
    // default options.
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "platform_trust_child",
            "--ignored",
            "--nocapture",
        ])
        .env("SSL_CERT_FILE", dir.path().join("ca.pem"))
        .env_remove("SSL_CERT_DIR")
        .env(PKI_DIR_VAR, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Run by [`the_platform_trust_store_is_the_default`] in a child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the_platform_trust_store_is_the_default with its own trust store"]
async fn platform_trust_child() {
    let pki_dir = std::path::PathBuf::from(std::env::var_os(PKI_DIR_VAR).unwrap());
    let read = |name: &str| std::fs::read(pki_dir.join(name)).unwrap();
    let relay = Server::bind(
        "127.0.0.1:0",
        ServerConfig::default(),
        Arc::new(MemoryStore::new()),
    )
    .await
    .unwrap()
    .with_tls(tls::server_config(&read("cert.pem"), &read("key.pem")).unwrap())
    .spawn();
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(options().relay_trust, RelayTrust::Platform);
    let alice = client(dir.path(), "alice").await;
    alice.register(&tls_address(&relay)).await.unwrap();
    relay.shutdown().await;
}

/// Binds `addr` again right after the previous listener there was closed.
async fn rebind(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("could not bind {addr} again");
}

async fn read_body(stream: &mut (impl AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(body)
}

async fn write_body(stream: &mut (impl AsyncWrite + Unpin), body: &[u8]) {
    stream
        .write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(body).await.unwrap();
}

/// A relay turned forwarder: for each connection on `listener`, it passes
/// the client's `Hello` to the relay at `honest`, that relay's `Welcome`
/// (its server id and challenge) back, and then everything both ways.
/// Reports the type byte of each client's first frame after `Welcome` (1
/// is `Authenticate`), or `None` if the client hung up instead.
fn forwarder(
    listener: TcpListener,
    honest: SocketAddr,
) -> tokio::sync::mpsc::UnboundedReceiver<Option<u8>> {
    let (report, reports) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut victim, _)) = listener.accept().await else {
                return;
            };
            let report = report.clone();
            tokio::spawn(async move {
                let mut upstream = TcpStream::connect(honest).await.unwrap();
                let Some(hello) = read_body(&mut victim).await else {
                    return;
                };
                write_body(&mut upstream, &hello).await;
                let welcome = read_body(&mut upstream).await.unwrap();
                write_body(&mut victim, &welcome).await;
                let next = read_body(&mut victim).await;
                let _ = report.send(next.as_ref().and_then(|b| b.first().copied()));
                if let Some(next) = next {
                    write_body(&mut upstream, &next).await;
                    let _ = tokio::io::copy_bidirectional(&mut victim, &mut upstream).await;
                }
            });
        }
    });
    reports
}

async fn plain_relay(server_id: &str) -> ServerHandle {
    relay_with(
        ServerConfig {
            server_id: server_id.into(),
            ..ServerConfig::default()
        },
        Arc::new(MemoryStore::new()),
    )
    .await
}

async fn next_report(reports: &mut tokio::sync::mpsc::UnboundedReceiver<Option<u8>>) -> Option<u8> {
    tokio::time::timeout(WAIT, reports.recv())
        .await
        .expect("a connection through the forwarder")
        .expect("forwarder running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_tcp_profile_refuses_a_relay_whose_server_id_changed_since_registration() {
    let dir = tempfile::tempdir().unwrap();
    // R: an honest relay, where the victim's identity has a mailbox too.
    let honest = plain_relay("relay-r.example").await;
    // M: the relay the victim registers with over plain TCP.
    let malicious = plain_relay("relay-m.example").await;
    let m_addr = malicious.local_addr();
    let victim = client(dir.path(), "victim").await;
    victim.register(&m_addr.to_string()).await.unwrap();
    victim.disconnect().await;
    drop(victim);

    // M now forwards R's challenges, hoping the victim signs one for it.
    malicious.shutdown().await;
    let mut reports = forwarder(rebind(m_addr).await, honest.local_addr());

    let victim = reopen(dir.path(), "victim", options()).await;
    let err = victim.connect_saved().await.unwrap_err();
    match &err {
        Error::RelayIdChanged {
            relay,
            registered,
            actual,
        } => {
            assert_eq!(relay, &m_addr.to_string());
            assert_eq!(registered, "relay-m.example");
            assert_eq!(actual, "relay-r.example");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("relay-r.example"), "{err}");
    // The victim hung up after Welcome: nothing signed reached R.
    assert_eq!(next_report(&mut reports).await, None);
    assert!(!victim.is_connected());

    // An explicit ClientConfig::expected_server_id still decides.
    drop(victim);
    let mut options = options();
    options.relay.expected_server_id = Some("relay-r.example".into());
    let victim = reopen(dir.path(), "victim", options).await;
    victim.connect_saved().await.unwrap();
    assert_eq!(next_report(&mut reports).await, Some(0x01));
    victim.disconnect().await;
    honest.shutdown().await;
}
