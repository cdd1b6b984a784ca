//! Errors of the relay client.

use std::time::Duration;

use super::NotARelay;
use crate::protocol::{DecodeError, ErrorCode};

/// Everything that can go wrong talking to a relay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The network failed (connect, read, write, TLS).
    #[error("relay connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The relay speaks none of this client's protocol versions.
    #[error("relay refused our protocol version: {0}")]
    UnsupportedVersion(String),
    /// The relay refused a request.
    #[error("relay refused the request ({code}): {message}")]
    Server {
        /// Why.
        code: ErrorCode,
        /// The relay's short explanation.
        message: String,
    },
    /// The relay's id is not the one configured.
    #[error("relay identifies as {actual:?}, expected {expected:?}")]
    ServerIdMismatch {
        /// Configured.
        expected: String,
        /// Received.
        actual: String,
    },
    /// The relay sent a frame that does not parse.
    #[error("malformed frame from the relay: {0}")]
    Malformed(#[from] DecodeError),
    /// The relay broke the protocol (wrong response type, wrong address...).
    #[error("relay broke the protocol: {0}")]
    ProtocolViolation(&'static str),
    /// A fetched bundle's identity key does not hash to the requested
    /// address: the relay served someone else's keys.
    #[error("prekey bundle does not belong to the requested mailbox")]
    BundleMismatch,
    /// A fetched bundle's signed prekey signature does not verify.
    #[error("invalid prekey bundle: {0}")]
    InvalidBundle(sotto_core::Error),
    /// An envelope larger than the relay accepts.
    #[error("payload of {len} bytes exceeds the relay's maximum of {max}")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// The relay's maximum.
        max: usize,
    },
    /// No answer in time.
    #[error("relay did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection is closed.
    #[error("relay connection closed")]
    Closed,
    /// TLS configuration or server name problem.
    #[error("TLS: {0}")]
    Tls(String),
    /// The relay's TLS certificate did not verify against the trusted
    /// roots (unknown issuer, wrong name, expired...).
    #[error("the relay's TLS certificate is not trusted: {0}")]
    UntrustedCertificate(String),
    /// The TLS handshake failed for another reason, or the session cannot
    /// bind the login signature (not TLS 1.3).
    #[error("TLS handshake with the relay failed: {0}")]
    TlsHandshake(String),
    /// A plain-TCP connection reached a relay that speaks TLS.
    #[error("the relay speaks TLS: connect with a tls:// address")]
    RelayExpectsTls,
    /// A TLS connection reached a relay that does not speak TLS.
    #[error("the relay does not speak TLS: connect over plain TCP (host:port), or fix the port")]
    RelayWithoutTls,
    /// The server at this address is no Sotto relay: its answer cannot
    /// start a relay's first frame, or it said nothing within
    /// [`ClientConfig::hello_timeout`](super::ClientConfig::hello_timeout).
    #[error("{0}")]
    NotARelay(NotARelay),
}

impl ClientError {
    /// The relay's error code, if the relay refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Server { code, .. } => Some(*code),
            Self::UnsupportedVersion(_) => Some(ErrorCode::UnsupportedVersion),
            _ => None,
        }
    }
}
