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
    /// The relay speaks none of the protocol versions this client offered.
    #[error(
        "relay refused our protocol version: we offer {offered:?}, {}",
        relay_versions(.supported.as_deref(), .message)
    )]
    UnsupportedVersion {
        /// The versions this client offered
        /// ([`SUPPORTED_VERSIONS`](crate::protocol::SUPPORTED_VERSIONS)).
        offered: Vec<u16>,
        /// The versions the relay speaks, as its refusal lists them
        /// (docs/relay.md §3); `None` if its message does not.
        supported: Option<Vec<u16>>,
        /// The relay's message.
        message: String,
    },
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
    ProtocolViolation(#[from] ProtocolViolation),
    /// A fetched bundle's identity key does not hash to the requested
    /// address: the relay served someone else's keys.
    #[error("prekey bundle does not belong to the requested mailbox")]
    BundleMismatch,
    /// A fetched bundle's signed prekey signature does not verify.
    #[error("invalid prekey bundle: {0}")]
    InvalidBundle(#[source] sotto_core::Error),
    /// An envelope larger than the relay accepts.
    #[error("payload of {len} bytes exceeds the relay's maximum of {max}")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// The relay's maximum.
        max: usize,
    },
    /// A request the relay does not take: it negotiated protocol `version`,
    /// and the request needs `needed` or later (or it answered
    /// `UnknownRequest`). Nothing was sent or stored; fall back to what
    /// that version offers (for [`send_multi`](super::RelayClient::send_multi):
    /// one [`send`](super::RelayClient::send) per recipient).
    #[error(
        "the relay does not take {request}: it speaks protocol version {version}, {request} needs {needed}"
    )]
    Unsupported {
        /// The request's name, e.g. `"SendMulti"`.
        request: &'static str,
        /// The protocol version the relay negotiated.
        version: u16,
        /// The first version that defines the request.
        needed: u16,
    },
    /// A `SendMulti` naming more recipients than one request may
    /// ([`MAX_MULTI_RECIPIENTS`](crate::protocol::MAX_MULTI_RECIPIENTS));
    /// nothing was sent. Split them over several requests.
    #[error("{count} recipients in one request, at most {max} allowed")]
    TooManyRecipients {
        /// Recipients given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A request whose frame would be larger than the relay's
    /// `max_frame_size` (a `SendMulti` whose recipients and body together
    /// do not fit); nothing was sent. Split the recipients over several
    /// requests.
    #[error("request of {len} bytes exceeds the relay's frame limit of {max}")]
    RequestTooLarge {
        /// The frame's length.
        len: usize,
        /// The relay's `max_frame_size`.
        max: usize,
    },
    /// No answer in time.
    #[error("relay did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection is closed.
    #[error("relay connection closed")]
    Closed,
    /// The server name given for TLS is neither a DNS name nor an IP
    /// address.
    #[error("invalid TLS server name {0:?}")]
    InvalidServerName(String),
    /// The relay's TLS certificate did not verify against the trusted
    /// roots (unknown issuer, wrong name, expired...).
    #[cfg(feature = "tls")]
    #[error(
        "the relay's TLS certificate is not trusted: {}",
        certificate_problem(.0)
    )]
    UntrustedCertificate(crate::tls::rustls::CertificateError),
    /// The TLS handshake failed for another reason, or the session cannot
    /// bind the login signature (not TLS 1.3).
    #[cfg(feature = "tls")]
    #[error("TLS handshake with the relay failed: {0}")]
    TlsHandshake(#[source] crate::tls::TlsError),
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

/// How the relay broke the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// Its first frame was neither `Welcome` nor an error.
    #[error("expected Welcome")]
    ExpectedWelcome,
    /// Its `Welcome` chose a version this client did not offer.
    #[error("it chose protocol version {0}, which we did not offer")]
    VersionNotOffered(u16),
    /// An answer of another type than the request calls for.
    #[error("unexpected response type")]
    UnexpectedResponse,
    /// `Authenticated` names another mailbox than the identity that
    /// signed.
    #[error("it authenticated another mailbox")]
    WrongMailbox,
    /// A page of envelopes whose ids do not increase past the requested
    /// one.
    #[error("envelope ids out of order")]
    EnvelopesOutOfOrder,
    /// An answer to a `SendMulti` with another number of outcomes than
    /// the request had recipients.
    #[error("{answered} outcomes for {sent} recipients")]
    OutcomeCount {
        /// Recipients in the request.
        sent: usize,
        /// Outcomes in the answer.
        answered: usize,
    },
}

impl ClientError {
    /// The relay's error code, if the relay refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Server { code, .. } => Some(*code),
            Self::UnsupportedVersion { .. } => Some(ErrorCode::UnsupportedVersion),
            _ => None,
        }
    }
}

/// The relay's side of an `UnsupportedVersion` refusal, in words.
fn relay_versions(supported: Option<&[u16]>, message: &str) -> String {
    match supported {
        Some(versions) => format!("it speaks {versions:?}"),
        None => format!("it says {message:?}"),
    }
}

/// Why a certificate is not trusted, in words a user can act on.
#[cfg(feature = "tls")]
fn certificate_problem(e: &crate::tls::rustls::CertificateError) -> std::borrow::Cow<'static, str> {
    use crate::tls::rustls::CertificateError;
    match e {
        CertificateError::UnknownIssuer => {
            "it is not issued by a trusted certificate authority (unknown issuer)".into()
        }
        // An issuer with a trusted authority's name but another key.
        CertificateError::BadSignature => {
            "it is not signed by a trusted certificate authority (bad signature)".into()
        }
        other => other.to_string().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_went_wrong() {
        let refused = |supported, message: &str| ClientError::UnsupportedVersion {
            offered: vec![2],
            supported,
            message: message.into(),
        };
        assert_eq!(
            refused(Some(vec![3, 4]), "unsupported protocol version: ...").to_string(),
            "relay refused our protocol version: we offer [2], it speaks [3, 4]"
        );
        assert_eq!(
            refused(None, "go away").to_string(),
            "relay refused our protocol version: we offer [2], it says \"go away\""
        );
        assert_eq!(
            ClientError::from(ProtocolViolation::VersionNotOffered(7)).to_string(),
            "relay broke the protocol: it chose protocol version 7, which we did not offer"
        );
    }

    #[test]
    fn errors_can_cross_threads() {
        fn bounds<T: std::error::Error + Send + Sync + 'static>() {}
        bounds::<ClientError>();
        bounds::<ProtocolViolation>();
    }
}
