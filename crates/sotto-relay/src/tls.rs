//! TLS with rustls (feature `tls`), using the *ring* crypto provider.
//!
//! The relay protocol runs inside TLS 1.3, and only 1.3: the login
//! signature covers a keying-material exporter value of the TLS session
//! ([`channel_binding`], docs/relay.md §4), and an exporter is only safe to
//! use this way on TLS 1.2 with the extended master secret, which TLS 1.3
//! always has. TLS hides which mailboxes a client talks to and the envelope
//! framing from the network; the envelopes themselves are end-to-end
//! encrypted either way.

use std::sync::Arc;

pub use tokio_rustls::rustls;

use rustls::crypto::ring::default_provider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, ConfigBuilder, ProtocolVersion, WantsVerifier};

use crate::protocol::{ChannelBinding, TLS_EXPORTER_LABEL, TLS_EXPORTER_LEN};

/// A TLS configuration that could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The PEM input holds no certificate or no private key.
    #[error("PEM input has no {0}")]
    Missing(&'static str),
    /// The PEM input does not parse.
    #[error("invalid PEM: {0}")]
    Pem(#[source] rustls::pki_types::pem::Error),
    /// rustls refused the configuration.
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    /// The TLS session is not TLS 1.3 (`None`: no handshake finished), so
    /// it cannot bind the login signature.
    #[error("the relay protocol needs TLS 1.3, the connection {}", negotiated(.0))]
    NotTls13(Option<ProtocolVersion>),
}

/// What a session that is not TLS 1.3 negotiated, in words.
fn negotiated(version: &Option<ProtocolVersion>) -> String {
    match version {
        Some(version) => format!("uses {version:?}"),
        None => "has no finished handshake".to_owned(),
    }
}

/// The protocol versions the relay and its client use: TLS 1.3 only.
static VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::Pem)?;
    if certs.is_empty() {
        return Err(TlsError::Missing("certificate"));
    }
    Ok(certs)
}

/// A server configuration from a PEM certificate chain (leaf first) and a
/// PEM private key (PKCS#8, PKCS#1 or SEC1). TLS 1.3 only. With the
/// `server` feature.
#[cfg(feature = "server")]
pub fn server_config(
    cert_chain_pem: &[u8],
    private_key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certificates(cert_chain_pem)?;
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(private_key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::Missing("private key"),
            other => TlsError::Pem(other),
        })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_protocol_versions(VERSIONS)?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// A client configuration that trusts exactly the PEM certificates given
/// (a private CA, or a relay's self-signed certificate). TLS 1.3 only.
pub fn client_config(trusted_roots_pem: &[u8]) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(trusted_roots_pem)? {
        roots.add(cert)?;
    }
    let config = client_config_builder()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The start of a client configuration with the relay's choices made (the
/// *ring* provider, TLS 1.3 only), for a caller that brings its own
/// certificate verifier (for example the operating system's).
pub fn client_config_builder() -> Result<ConfigBuilder<ClientConfig, WantsVerifier>, TlsError> {
    Ok(
        ClientConfig::builder_with_provider(Arc::new(default_provider()))
            .with_protocol_versions(VERSIONS)?,
    )
}

/// The channel binding of an established TLS connection (either side):
/// the RFC 8446 §7.5 exporter value with label
/// [`TLS_EXPORTER_LABEL`], no
/// context, 32 bytes.
///
/// Refuses anything but TLS 1.3: on TLS 1.2 an exporter value is only
/// unique to the session with the extended master secret extension, and
/// without it a forwarding relay could make both its sessions export the
/// same value.
pub fn channel_binding<D>(
    connection: &rustls::ConnectionCommon<D>,
) -> Result<ChannelBinding, TlsError> {
    match connection.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => {}
        version => return Err(TlsError::NotTls13(version)),
    }
    let value =
        connection.export_keying_material([0u8; TLS_EXPORTER_LEN], TLS_EXPORTER_LABEL, None)?;
    Ok(ChannelBinding::TlsExporter(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_garbage_pem_is_refused() {
        #[cfg(feature = "server")]
        assert!(matches!(
            server_config(b"", b""),
            Err(TlsError::Missing("certificate"))
        ));
        assert!(client_config(b"not pem").is_err());
    }
}
