//! TLS with rustls (feature `tls`), using the *ring* crypto provider.
//!
//! The relay protocol runs unchanged inside TLS. TLS hides which mailboxes
//! a client talks to and the envelope framing from the network; the
//! envelopes themselves are end-to-end encrypted either way.

use std::sync::Arc;

pub use tokio_rustls::rustls;

use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS configuration that could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The PEM input holds no certificate or no private key.
    #[error("PEM input has no {0}")]
    Missing(&'static str),
    /// The PEM input does not parse.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// rustls refused the configuration.
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Missing("certificate"));
    }
    Ok(certs)
}

/// A server configuration from a PEM certificate chain (leaf first) and a
/// PEM private key (PKCS#8, PKCS#1 or SEC1). TLS 1.2 and 1.3.
pub fn server_config(
    cert_chain_pem: &[u8],
    private_key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certificates(cert_chain_pem)?;
    let key = PrivateKeyDer::from_pem_slice(private_key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Missing("private key"),
        other => TlsError::Pem(other.to_string()),
    })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// A client configuration that trusts exactly the PEM certificates given
/// (a private CA, or a relay's self-signed certificate).
pub fn client_config(trusted_roots_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(trusted_roots_pem)? {
        roots.add(cert)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_garbage_pem_is_refused() {
        assert!(matches!(
            server_config(b"", b""),
            Err(TlsError::Missing("certificate"))
        ));
        assert!(client_config(b"not pem").is_err());
    }
}
