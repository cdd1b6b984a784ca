//! Where a relay is and how to reach it: `host:port`, `tcp://host:port` or
//! `tls://host:port`.

use core::fmt;
use core::str::FromStr;
use std::net::{Ipv4Addr, Ipv6Addr};

/// How a relay is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayTransport {
    /// Plain TCP (`host:port` or `tcp://host:port`). The relay protocol's
    /// login signature is then bound to the relay's id and challenge only;
    /// see `docs/relay.md` §4.
    Tcp,
    /// TLS 1.3 (`tls://host:port`); the certificate must be valid for
    /// `host`, and the login signature is bound to the TLS session.
    Tls,
}

/// A relay address, parsed strictly.
///
/// | written | transport |
/// | --- | --- |
/// | `host:port`, `tcp://host:port` | plain TCP |
/// | `tls://host:port` | TLS 1.3 |
///
/// `host` is a DNS name, an IPv4 address or an IPv6 address in brackets
/// (`[::1]`); `port` is 1 to 65535. Nothing else is accepted: no other
/// scheme, no user, path, query or spaces. [`Display`](fmt::Display) writes
/// the canonical form (`host:port` for plain TCP, `tls://host:port` for
/// TLS), which parses back to the same address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelayAddress {
    transport: RelayTransport,
    host: String,
    port: u16,
}

/// A relay address that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayAddressError {
    /// Nothing was given.
    #[error("empty relay address (expected host:port or tls://host:port)")]
    Empty,
    /// A scheme other than `tcp://` or `tls://`.
    #[error("unknown scheme {0:?} in relay address (expected tls:// or tcp://)")]
    UnknownScheme(String),
    /// Spaces, control characters, a user, a path or a query.
    #[error("unexpected {0:?} in relay address (expected host:port or tls://host:port)")]
    UnexpectedCharacter(char),
    /// No `:port` after the host.
    #[error("relay address {0:?} has no port (expected host:port)")]
    MissingPort(String),
    /// The port is not a number from 1 to 65535.
    #[error("invalid port {0:?} in relay address (expected 1 to 65535)")]
    InvalidPort(String),
    /// The host is not a DNS name, an IPv4 address or a bracketed IPv6
    /// address.
    #[error("invalid host {0:?} in relay address (IPv6 goes in brackets: [::1]:7447)")]
    InvalidHost(String),
}

impl RelayAddress {
    /// Plain TCP or TLS.
    pub fn transport(&self) -> RelayTransport {
        self.transport
    }

    /// The host as written, without brackets for IPv6: the name a TLS
    /// certificate must be valid for.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl FromStr for RelayAddress {
    type Err = RelayAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(RelayAddressError::Empty);
        }
        let (transport, rest) = match s.split_once("://") {
            Some(("tls", rest)) => (RelayTransport::Tls, rest),
            Some(("tcp", rest)) => (RelayTransport::Tcp, rest),
            Some((scheme, _)) => {
                return Err(RelayAddressError::UnknownScheme(format!("{scheme}://")));
            }
            None => (RelayTransport::Tcp, s),
        };
        if let Some(c) = rest
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '?' | '#'))
        {
            return Err(RelayAddressError::UnexpectedCharacter(c));
        }
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| RelayAddressError::InvalidHost(rest.to_owned()))?;
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(RelayAddressError::InvalidHost(host.to_owned()));
            }
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| RelayAddressError::MissingPort(rest.to_owned()))?;
            (host, port)
        } else {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| RelayAddressError::MissingPort(rest.to_owned()))?;
            if !is_dns_name(host) && host.parse::<Ipv4Addr>().is_err() {
                return Err(RelayAddressError::InvalidHost(host.to_owned()));
            }
            (host, port)
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(RelayAddressError::InvalidPort(port.to_owned())),
        };
        Ok(Self {
            transport,
            host: host.to_owned(),
            port,
        })
    }
}

/// Letters, digits and hyphens in dot-separated labels of 1 to 63 bytes,
/// no hyphen at either end of a label, 253 bytes at most (RFC 1123); one
/// trailing dot is allowed. Underscores are accepted too: local resolvers
/// (container networks, hosts files) use them.
fn is_dns_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        // All-numeric is an IPv4 address (or a mistyped one), not a name.
        && !name.split('.').all(|label| label.bytes().all(|b| b.is_ascii_digit()))
}

impl fmt::Display for RelayAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.transport == RelayTransport::Tls {
            f.write_str("tls://")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<RelayAddress, RelayAddressError> {
        s.parse()
    }

    #[test]
    fn the_three_forms_parse_and_print_canonically() {
        let plain = parse("relay.example:7447").unwrap();
        assert_eq!(plain.transport(), RelayTransport::Tcp);
        assert_eq!((plain.host(), plain.port()), ("relay.example", 7447));
        assert_eq!(plain.to_string(), "relay.example:7447");
        assert_eq!(parse("tcp://relay.example:7447").unwrap(), plain);

        let tls = parse("tls://relay.example:443").unwrap();
        assert_eq!(tls.transport(), RelayTransport::Tls);
        assert_eq!(tls.to_string(), "tls://relay.example:443");
        assert_eq!(parse(&tls.to_string()).unwrap(), tls);

        let v4 = parse("127.0.0.1:7447").unwrap();
        assert_eq!(v4.host(), "127.0.0.1");
        let v6 = parse("tls://[::1]:7447").unwrap();
        assert_eq!(v6.host(), "::1");
        assert_eq!(v6.to_string(), "tls://[::1]:7447");
        assert_eq!(parse(&v6.to_string()).unwrap(), v6);
        assert_eq!(parse("localhost:1").unwrap().port(), 1);
        assert_eq!(parse("relay.example.:65535").unwrap().port(), 65535);
        assert_eq!(parse("my_relay:7447").unwrap().host(), "my_relay");
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        use RelayAddressError as E;
        assert_eq!(parse(""), Err(E::Empty));
        assert_eq!(
            parse("https://relay.example:443"),
            Err(E::UnknownScheme("https://".into()))
        );
        assert_eq!(
            parse("TLS://relay.example:443"),
            Err(E::UnknownScheme("TLS://".into()))
        );
        assert_eq!(
            parse("tls://relay.example:443/path"),
            Err(E::UnexpectedCharacter('/'))
        );
        assert_eq!(
            parse("tls://user@relay.example:443"),
            Err(E::UnexpectedCharacter('@'))
        );
        assert_eq!(parse(" relay.example:1"), Err(E::UnexpectedCharacter(' ')));
        assert_eq!(
            parse("relay.example:7447\n"),
            Err(E::UnexpectedCharacter('\n'))
        );
        assert_eq!(
            parse("tls://relay.example"),
            Err(E::MissingPort("relay.example".into()))
        );
        for port in ["0", "65536", "+1", "", "http", "-1"] {
            assert_eq!(
                parse(&format!("relay.example:{port}")),
                Err(E::InvalidPort(port.into())),
                "{port:?}"
            );
        }
        for host in [
            "",
            "::1",
            "bad!name",
            "-lead",
            "a..b",
            "999.1.1.1",
            "1.2.3",
            "é",
        ] {
            assert!(
                matches!(parse(&format!("{host}:7447")), Err(E::InvalidHost(_))),
                "{host:?}"
            );
        }
        assert!(matches!(parse("[not-v6]:7447"), Err(E::InvalidHost(_))));
        assert!(matches!(parse("[::1]7447"), Err(E::MissingPort(_))));
        assert!(matches!(parse("[::1:7447"), Err(E::InvalidHost(_))));
        // Errors say what is expected.
        assert!(
            E::UnknownScheme("https://".into())
                .to_string()
                .contains("tls://")
        );
    }

    #[test]
    fn arbitrary_input_never_panics() {
        for s in [
            "tls://",
            "tls://:",
            "[",
            "]",
            ":",
            "::",
            "tls://[]:1",
            "\u{0}",
            "é:1",
            "a:1:2",
            "tls://tls://a:1",
        ] {
            let _ = parse(s);
        }
        assert!(parse("a:1:2").is_err());
        assert!(parse("tls://tls://a:1").is_err());
    }
}
