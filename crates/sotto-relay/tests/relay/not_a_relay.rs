//! A client pointed at a port where no Sotto relay listens says so at once
//! (`ClientError::NotARelay`) instead of waiting out its connect timeout:
//! a server that answers with anything but a relay's first frame, or that
//! says nothing within the hello deadline.
//!
//! Every client here has a connect timeout of an hour: only the hello
//! detection can end these connects before the hang guard.

use std::net::SocketAddr;
use std::time::Duration;

use sotto_relay::{ClientConfig, ClientError, NotARelay, RelayClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::*;

const HTTP_400: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// A connect timeout no test waits out.
fn patient(hello_timeout: Duration) -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(3600),
        hello_timeout,
        ..client_config()
    }
}

/// Fails the test instead of hanging on it.
async fn guarded<T>(connect: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), connect)
        .await
        .expect("the connect did not end")
}

/// An HTTP server: reads what the client sends, answers 400 and closes.
async fn http_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let _ = tcp.read(&mut request).await;
                let _ = tcp.write_all(HTTP_400).await;
                let _ = tcp.shutdown().await;
                // Until the client hangs up: closing with its bytes unread
                // could reset the connection before it reads the answer.
                let _ = tcp.read_to_end(&mut Vec::new()).await;
            });
        }
    });
    addr
}

/// A server that speaks first, as an SSH server does.
async fn banner_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tcp.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
                let _ = tcp.read_to_end(&mut Vec::new()).await;
            });
        }
    });
    addr
}

/// A server that accepts connections and never says a word.
async fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tcp.read_to_end(&mut Vec::new()).await;
            });
        }
    });
    addr
}

fn answered(err: &ClientError) -> &[u8] {
    match err {
        ClientError::NotARelay(NotARelay::Answered { start }) => start,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_http_server_is_not_a_relay() {
    let addr = http_server().await;
    let err = guarded(RelayClient::connect(addr, patient(WAIT)))
        .await
        .unwrap_err();
    assert!(answered(&err).starts_with(b"HTTP/1.1 400"), "{err:?}");
    assert!(err.to_string().contains("not a Sotto relay"), "{err}");
    assert!(err.to_string().contains("HTTP/1.1 400"), "{err}");
}

#[tokio::test]
async fn a_server_that_speaks_first_is_not_a_relay() {
    let addr = banner_server().await;
    let err = guarded(RelayClient::connect(addr, patient(WAIT)))
        .await
        .unwrap_err();
    assert!(answered(&err).starts_with(b"SSH-2.0"), "{err:?}");
}

#[tokio::test]
async fn a_silent_server_is_not_a_relay_once_the_hello_deadline_passes() {
    let addr = silent_server().await;
    let hello_timeout = Duration::from_millis(300);
    let err = guarded(RelayClient::connect(addr, patient(hello_timeout)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::NotARelay(NotARelay::Silent { waited }) if waited == hello_timeout),
        "{err:?}"
    );
    assert!(err.to_string().contains("no Sotto relay answered"), "{err}");
}

#[test]
fn the_default_hello_deadline_is_a_few_seconds() {
    let config = ClientConfig::default();
    assert!(config.hello_timeout <= Duration::from_secs(5));
    assert!(config.hello_timeout < config.connect_timeout);
}

#[tokio::test]
async fn a_relay_is_still_a_relay() {
    let relay = start().await;
    let client = guarded(RelayClient::connect(
        relay.local_addr(),
        patient(Duration::from_secs(5)),
    ))
    .await
    .unwrap();
    client.ping().await.unwrap();
    relay.shutdown().await;
}

#[cfg(feature = "tls")]
mod over_tls {
    use std::sync::Arc;

    use sotto_relay::tls;

    use super::*;

    fn trust() -> Arc<tls::rustls::ClientConfig> {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        tls::client_config(cert.cert.pem().as_bytes()).unwrap()
    }

    async fn connect_tls(addr: SocketAddr, hello_timeout: Duration) -> ClientError {
        guarded(RelayClient::connect_tls(
            addr,
            "localhost",
            trust(),
            patient(hello_timeout),
        ))
        .await
        .unwrap_err()
    }

    #[tokio::test]
    async fn an_http_server_is_not_a_tls_relay() {
        let err = connect_tls(http_server().await, WAIT).await;
        assert!(answered(&err).starts_with(b"HTTP/1.1 400"), "{err:?}");
    }

    #[tokio::test]
    async fn a_silent_server_is_not_a_tls_relay() {
        let hello_timeout = Duration::from_millis(300);
        let err = connect_tls(silent_server().await, hello_timeout).await;
        assert!(
            matches!(err, ClientError::NotARelay(NotARelay::Silent { waited }) if waited == hello_timeout),
            "{err:?}"
        );
    }
}
