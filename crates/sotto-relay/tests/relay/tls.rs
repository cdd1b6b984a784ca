//! The protocol over TLS (feature `tls`), and relays that forward another
//! relay's challenge.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use sotto_relay::protocol::{PROTOCOL_VERSION, Request, Response, ServerFrame};
use sotto_relay::tls::rustls;
use sotto_relay::{ClientError, ErrorCode, MemoryStore, RelayClient, Server, ServerHandle, tls};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::common::*;

/// A private certificate authority for one test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A TLS server configuration for `host`, certified by this CA.
    fn server(&self, host: &str) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![host.to_owned()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        tls::server_config(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap()
    }

    /// A client configuration that trusts this CA only.
    fn client(&self) -> Arc<rustls::ClientConfig> {
        tls::client_config(self.pem.as_bytes()).unwrap()
    }
}

/// A relay with server id `id`, over TLS when `tls` is given.
async fn relay(id: &str, tls: Option<Arc<rustls::ServerConfig>>) -> ServerHandle {
    let config = sotto_relay::ServerConfig {
        server_id: id.into(),
        ..config()
    };
    let server = Server::bind("127.0.0.1:0", config, Arc::new(MemoryStore::new()))
        .await
        .unwrap();
    match tls {
        Some(tls) => server.with_tls(tls),
        None => server,
    }
    .spawn()
}

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
    assert_eq!(bob_conn.protocol_version(), PROTOCOL_VERSION);
    let alice = RelayClient::connect_tls(addr, "localhost", client_tls.clone(), client_config())
        .await
        .unwrap();
    alice
        .send(&address(&bob), mid(1), None, b"over tls")
        .await
        .unwrap();
    let got = bob_conn.fetch_pending().await.unwrap();
    assert_eq!(got[0].payload, b"over tls");

    // Wrong name: the certificate does not match.
    let err = RelayClient::connect_tls(addr, "example.org", client_tls, client_config())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::UntrustedCertificate(_)),
        "{err:?}"
    );
    // Plain TCP against the TLS port is told to use TLS, and the relay
    // goes on.
    let err = RelayClient::connect(addr, client_config())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::RelayExpectsTls), "{err:?}");
    assert!(err.to_string().contains("tls://"), "{err}");
    bob_conn.ping().await.unwrap();
    relay.shutdown().await;
}

#[tokio::test]
async fn a_client_refuses_a_relay_certificate_from_another_ca() {
    let relay_ca = Ca::new("relay CA");
    let other_ca = Ca::new("someone else's CA");
    let relay = relay("test-relay", Some(relay_ca.server("localhost"))).await;
    let err = RelayClient::connect_tls(
        relay.local_addr(),
        "localhost",
        other_ca.client(),
        client_config(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::UntrustedCertificate(rustls::CertificateError::UnknownIssuer)
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("not trusted"), "{err}");
    assert!(err.to_string().contains("unknown issuer"), "{err}");
    // The right CA works.
    RelayClient::connect_tls(
        relay.local_addr(),
        "localhost",
        relay_ca.client(),
        client_config(),
    )
    .await
    .unwrap()
    .authenticate(&identity(1))
    .await
    .unwrap();
    relay.shutdown().await;
}

#[tokio::test]
async fn a_tls_client_to_a_plain_relay_is_told_so() {
    let relay = start().await;
    let err = RelayClient::connect_tls(
        relay.local_addr(),
        "localhost",
        Ca::new("ca").client(),
        client_config(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::RelayWithoutTls), "{err:?}");
    relay.shutdown().await;
}

/// Any byte stream, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The next frame body, or `None` once the stream has ended.
async fn try_read_body(stream: &mut (impl Stream + ?Sized)) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(body)
}

async fn try_write_body(stream: &mut (impl Stream + ?Sized), body: &[u8]) -> Option<()> {
    stream
        .write_all(&(body.len() as u32).to_be_bytes())
        .await
        .ok()?;
    stream.write_all(body).await.ok()?;
    stream.flush().await.ok()
}

async fn read_body(stream: &mut (impl Stream + ?Sized)) -> Vec<u8> {
    try_read_body(stream).await.expect("a frame")
}

async fn write_body(stream: &mut (impl Stream + ?Sized), body: &[u8]) {
    try_write_body(stream, body).await.expect("frame written");
}

/// How the malicious relay M reaches the honest relay R, or is reached by
/// its victim.
#[derive(Clone)]
enum Leg {
    Plain,
    /// Towards R: trust R's CA and expect this name. Towards the victim:
    /// serve this configuration.
    TlsClient(Arc<rustls::ClientConfig>, &'static str),
    TlsServer(Arc<rustls::ServerConfig>),
}

/// The malicious relay M: accepts one victim on `listener`, opens its own
/// connection to the honest relay R at `honest`, passes R's `Welcome`
/// (server id and challenge) to the victim and the victim's `Authenticate`
/// to R, and returns R's answer to that `Authenticate` along with M's
/// connection to R, on which it would now act as the victim.
async fn forwarding_relay(
    listener: TcpListener,
    to_victim: Leg,
    honest: SocketAddr,
    to_honest: Leg,
) -> (Response, Box<dyn Stream>) {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut victim: Box<dyn Stream> = match to_victim {
        Leg::TlsServer(config) => Box::new(TlsAcceptor::from(config).accept(tcp).await.unwrap()),
        _ => Box::new(tcp),
    };
    let tcp = TcpStream::connect(honest).await.unwrap();
    let mut upstream: Box<dyn Stream> = match to_honest {
        Leg::TlsClient(config, name) => Box::new(
            TlsConnector::from(config)
                .connect(name.try_into().unwrap(), tcp)
                .await
                .unwrap(),
        ),
        _ => Box::new(tcp),
    };
    // Hello: victim -> R. Welcome (R's id and challenge): R -> victim.
    let hello = read_body(&mut victim).await;
    write_body(&mut upstream, &hello).await;
    let welcome = read_body(&mut upstream).await;
    write_body(&mut victim, &welcome).await;
    // The victim's signature, presented to R as M's own login.
    let authenticate = read_body(&mut victim).await;
    write_body(&mut upstream, &authenticate).await;
    let answer = read_body(&mut upstream).await;
    write_body(&mut victim, &answer).await;
    match ServerFrame::decode(&answer).unwrap() {
        ServerFrame::Response { response, .. } => (response, upstream),
        other => panic!("unexpected frame from R: {other:?}"),
    }
}

/// Runs the forwarding attack with the given legs and returns what R
/// answered M, what the victim's `authenticate` returned, and whether M could
/// then fetch the victim's mailbox at R.
async fn forwarding_attack(
    honest_tls: Option<Arc<rustls::ServerConfig>>,
    to_honest: Leg,
    to_victim: Leg,
    victim_tls: Option<Arc<rustls::ClientConfig>>,
) -> (Response, Result<(), ClientError>, bool) {
    let honest = relay("relay-r.test", honest_tls).await;
    let connect_r = |tls: &Leg| {
        let tls = tls.clone();
        let addr = honest.local_addr();
        async move {
            match tls {
                Leg::TlsClient(config, name) => {
                    RelayClient::connect_tls(addr, name, config, client_config()).await
                }
                _ => RelayClient::connect(addr, client_config()).await,
            }
            .unwrap()
        }
    };
    // The victim has a mailbox at R, with a message waiting.
    let victim = identity(2);
    let own = connect_r(&to_honest).await;
    own.authenticate(&victim).await.unwrap();
    own.upload_prekeys(prekeys(&victim, 0, 3)).await.unwrap();
    own.close().await;
    connect_r(&to_honest)
        .await
        .send(&address(&victim), mid(7), None, b"for the victim only")
        .await
        .unwrap();

    // The victim logs in at M, a relay it trusts (its certificate too).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let m_addr = listener.local_addr().unwrap();
    let attacker = tokio::spawn(forwarding_relay(
        listener,
        to_victim,
        honest.local_addr(),
        to_honest.clone(),
    ));
    let victim_conn = match victim_tls {
        Some(config) => RelayClient::connect_tls(m_addr, "relay-m.test", config, client_config())
            .await
            .unwrap(),
        None => RelayClient::connect(m_addr, client_config()).await.unwrap(),
    };
    assert_eq!(victim_conn.welcome().server_id, "relay-r.test");
    let victim_result = victim_conn.authenticate(&victim).await.map(|_| ());
    let (answer, mut upstream) = tokio::time::timeout(WAIT, attacker).await.unwrap().unwrap();

    // Whatever R answered, M now tries to read the victim's mailbox (a
    // connection closed after AuthFailed reads as "nothing").
    let fetch = Request::Fetch {
        after: 0,
        max_count: 0,
    };
    let fetched = tokio::time::timeout(WAIT, async {
        if try_write_body(&mut upstream, &fetch.encode(99))
            .await
            .is_none()
        {
            return false;
        }
        while let Some(body) = try_read_body(&mut upstream).await {
            match ServerFrame::decode(&body).unwrap() {
                ServerFrame::Response {
                    request_id: 99,
                    response: Response::Envelopes { envelopes, .. },
                } => return !envelopes.is_empty(),
                ServerFrame::Response {
                    request_id: 99,
                    response: Response::Error(_),
                } => return false,
                _ => {}
            }
        }
        false
    })
    .await
    .unwrap();

    // The message still waits for the victim at R.
    let own = connect_r(&to_honest).await;
    own.authenticate(&victim).await.unwrap();
    assert_eq!(own.fetch_pending().await.unwrap().len(), 1);
    honest.shutdown().await;
    (answer, victim_result, fetched)
}

fn auth_failed(response: &Response) -> bool {
    matches!(response, Response::Error(e) if e.code == ErrorCode::AuthFailed)
}

#[tokio::test]
async fn a_forwarding_relay_cannot_log_in_elsewhere_with_the_victims_signature() {
    // R is an honest relay; M a relay the victim trusts (its CA is the
    // victim's) that connects to R as an ordinary TLS client and forwards
    // R's challenge. The victim's signature covers the exporter of its TLS
    // session with M; R checks it against its session with M: they differ.
    let r_ca = Ca::new("R's CA");
    let m_ca = Ca::new("M's CA");
    let (answer, victim, fetched) = forwarding_attack(
        Some(r_ca.server("relay-r.test")),
        Leg::TlsClient(r_ca.client(), "relay-r.test"),
        Leg::TlsServer(m_ca.server("relay-m.test")),
        Some(m_ca.client()),
    )
    .await;
    assert!(auth_failed(&answer), "R let M in as the victim: {answer:?}");
    assert!(!fetched, "M read the victim's mailbox at R");
    assert_eq!(
        victim.unwrap_err().code(),
        Some(ErrorCode::AuthFailed),
        "the victim sees R's refusal, forwarded"
    );
}

#[tokio::test]
async fn a_forwarding_relay_cannot_strip_or_add_tls_on_one_side() {
    let r_ca = Ca::new("R's CA");
    let m_ca = Ca::new("M's CA");
    // Victim over TLS to M, M over plain TCP to a plain R: the victim's
    // signature covers a TLS exporter, R expects no binding.
    let (answer, _, fetched) = forwarding_attack(
        None,
        Leg::Plain,
        Leg::TlsServer(m_ca.server("relay-m.test")),
        Some(m_ca.client()),
    )
    .await;
    assert!(auth_failed(&answer), "{answer:?}");
    assert!(!fetched);
    // Victim over plain TCP to M, M over TLS to R: R expects the exporter
    // of its session with M, the victim signed none.
    let (answer, _, fetched) = forwarding_attack(
        Some(r_ca.server("relay-r.test")),
        Leg::TlsClient(r_ca.client(), "relay-r.test"),
        Leg::Plain,
        None,
    )
    .await;
    assert!(auth_failed(&answer), "{answer:?}");
    assert!(!fetched);
}
