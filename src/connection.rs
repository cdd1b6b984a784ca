//! Reaching a relay: plain TCP or TLS, which certificates to trust, and
//! which relay this profile registered with.
//!
//! The relay's login signature (docs/relay.md §4) is bound to the TLS
//! session over `tls://`, so a relay that forwards another relay's
//! challenge gets an answer that is useless there. Over plain TCP there is
//! nothing to bind to: the client then refuses a relay whose server id is
//! not the one this profile saw when it registered at that address. That
//! cannot help on first contact, which is why TLS is recommended.

use std::path::Path;

use sotto_relay::{ClientConfig, ClientError, RelayClient};

use crate::client::{ClientOptions, RELAY_FILE};
use crate::error::{Error, Result};
use crate::relay_address::{RelayAddress, RelayTransport};

/// Which certificates a `tls://` relay's certificate must chain to.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayTrust {
    /// The operating system's trust store (default): a relay with a
    /// certificate from a public certificate authority.
    #[default]
    Platform,
    /// Only these PEM certificates, instead of the platform's: a private
    /// CA, or the relay's own self-signed certificate.
    PinnedPem(Vec<u8>),
}

impl core::fmt::Debug for RelayTrust {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Platform => f.write_str("Platform"),
            Self::PinnedPem(pem) => write!(f, "PinnedPem({} bytes)", pem.len()),
        }
    }
}

/// What the profile's relay file says: the address given to
/// [`Client::register`](crate::Client::register) and the server id the
/// relay announced then.
///
/// ```text
/// tls://relay.example:7447
/// server-id relay.example
/// max-frame 1048576
/// ```
///
/// `max-frame` is the largest frame the relay announced, so that a message
/// too large for it is refused at `send` even while the relay cannot be
/// reached. Profiles registered before the server id (or the frame limit)
/// was remembered lack those lines. Lines this version does not know are
/// ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SavedRelay {
    pub(crate) address: String,
    pub(crate) server_id: Option<String>,
    pub(crate) max_frame: Option<u32>,
}

const SERVER_ID_LINE: &str = "server-id ";
const MAX_FRAME_LINE: &str = "max-frame ";

impl SavedRelay {
    /// The profile's saved relay, if it has one.
    pub(crate) fn load(profile_dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(profile_dir.join(RELAY_FILE)).ok()?;
        let mut lines = text.lines();
        let address = lines.next()?.trim().to_owned();
        if address.is_empty() {
            return None;
        }
        let mut server_id = None;
        let mut max_frame = None;
        for line in lines {
            if let Some(id) = line.strip_prefix(SERVER_ID_LINE) {
                server_id = server_id.or_else(|| unescape(id));
            } else if let Some(n) = line.strip_prefix(MAX_FRAME_LINE) {
                max_frame = max_frame.or_else(|| n.trim().parse().ok());
            }
        }
        Some(Self {
            address,
            server_id,
            max_frame,
        })
    }

    /// Writes the relay file: replaced in one step (write, then rename), so
    /// the address and the server id always belong together.
    pub(crate) fn store(&self, profile_dir: &Path) -> Result<()> {
        let mut text = format!("{}\n", self.address);
        if let Some(id) = &self.server_id {
            text.push_str(SERVER_ID_LINE);
            text.push_str(&escape(id));
            text.push('\n');
        }
        if let Some(max) = self.max_frame {
            text.push_str(&format!("{MAX_FRAME_LINE}{max}\n"));
        }
        let temporary = profile_dir.join(format!("{RELAY_FILE}.new"));
        crate::profile::write_private(&temporary, text.as_bytes())?;
        std::fs::rename(&temporary, profile_dir.join(RELAY_FILE))?;
        Ok(())
    }
}

/// Server ids are any UTF-8: backslashes and control characters (a line
/// break would end the line) are written as `\u{…}`.
fn escape(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        if c == '\\' || c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// The inverse of [`escape`]; `None` for a line that was not written by it.
fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let after = rest[at..].strip_prefix("\\u{")?;
        let (hex, tail) = after.split_once('}')?;
        out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
        rest = tail;
    }
    out.push_str(rest);
    Some(out)
}

/// Remembers `address`, the server id its relay announced and its frame
/// limit, after a successful registration.
pub(crate) fn remember(
    profile_dir: &Path,
    address: &str,
    server_id: &str,
    max_frame: u32,
) -> Result<()> {
    let address: RelayAddress = address.parse()?;
    SavedRelay {
        address: address.to_string(),
        server_id: Some(server_id.to_owned()),
        max_frame: Some(max_frame),
    }
    .store(profile_dir)
}

/// Connects to the relay at `relay_addr` and runs the handshake (not yet
/// authenticated): over TLS with `options.relay_trust`, or plain TCP with
/// the server id this profile registered with at that address, if any
/// (unless `options.relay.expected_server_id` is set, which wins).
pub(crate) async fn connect(
    relay_addr: &str,
    options: &ClientOptions,
    profile_dir: &Path,
) -> Result<RelayClient> {
    let address: RelayAddress = relay_addr.parse()?;
    let mut config = options.relay.clone();
    match address.transport() {
        RelayTransport::Tls => connect_tls(&address, &options.relay_trust, config).await,
        RelayTransport::Tcp => {
            let registered = registered_server_id(profile_dir, &address);
            if config.expected_server_id.is_none() {
                config.expected_server_id.clone_from(&registered);
            }
            let target = (address.host(), address.port());
            match RelayClient::connect(target, config).await {
                Err(ClientError::ServerIdMismatch { expected, actual })
                    if registered.as_ref() == Some(&expected) =>
                {
                    Err(Error::RelayIdChanged {
                        relay: address.to_string(),
                        registered: expected,
                        actual,
                    })
                }
                other => Ok(other?),
            }
        }
    }
}

/// The server id remembered for `address`, if the profile registered there.
fn registered_server_id(profile_dir: &Path, address: &RelayAddress) -> Option<String> {
    let saved = SavedRelay::load(profile_dir)?;
    let saved_address: RelayAddress = saved.address.parse().ok()?;
    (saved_address == *address)
        .then_some(saved.server_id)
        .flatten()
}

#[cfg(feature = "tls")]
async fn connect_tls(
    address: &RelayAddress,
    trust: &RelayTrust,
    config: ClientConfig,
) -> Result<RelayClient> {
    let tls = tls_config(trust)?;
    let target = (address.host(), address.port());
    Ok(RelayClient::connect_tls(target, address.host(), tls, config).await?)
}

#[cfg(not(feature = "tls"))]
async fn connect_tls(
    _address: &RelayAddress,
    _trust: &RelayTrust,
    _config: ClientConfig,
) -> Result<RelayClient> {
    Err(Error::TlsConfig(crate::error::TlsConfigError::NotBuilt))
}

/// The rustls client configuration for `trust` (TLS 1.3, *ring*).
#[cfg(feature = "tls")]
pub(crate) fn tls_config(
    trust: &RelayTrust,
) -> Result<std::sync::Arc<sotto_relay::tls::rustls::ClientConfig>> {
    use rustls_platform_verifier::BuilderVerifierExt;
    use sotto_relay::tls;

    use crate::error::TlsConfigError;
    match trust {
        RelayTrust::PinnedPem(pem) => tls::client_config(pem)
            .map_err(|e| Error::TlsConfig(TlsConfigError::PinnedCertificates(e))),
        RelayTrust::Platform => {
            let config = tls::client_config_builder()
                .map_err(|e| Error::TlsConfig(TlsConfigError::Config(e)))?
                .with_platform_verifier()
                .map_err(|e| Error::TlsConfig(TlsConfigError::PlatformTrustStore(e)))?
                .with_no_client_auth();
            Ok(std::sync::Arc::new(config))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_file_keeps_the_address_form_and_the_server_id() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(SavedRelay::load(dir.path()), None);
        remember(
            dir.path(),
            "tls://relay.example:7447",
            "relay.example",
            4096,
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join(RELAY_FILE)).unwrap();
        assert_eq!(
            text,
            "tls://relay.example:7447\nserver-id relay.example\nmax-frame 4096\n"
        );
        assert_eq!(
            SavedRelay::load(dir.path()),
            Some(SavedRelay {
                address: "tls://relay.example:7447".into(),
                server_id: Some("relay.example".into()),
                max_frame: Some(4096),
            })
        );
        // Written in canonical form.
        remember(dir.path(), "tcp://127.0.0.1:7447", "r", 1 << 20).unwrap();
        assert_eq!(
            SavedRelay::load(dir.path()).unwrap().address,
            "127.0.0.1:7447"
        );
        assert!(remember(dir.path(), "ftp://x:1", "r", 1 << 20).is_err());
    }

    #[test]
    fn an_old_relay_file_has_no_server_id() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RELAY_FILE), "127.0.0.1:7447").unwrap();
        assert_eq!(
            SavedRelay::load(dir.path()),
            Some(SavedRelay {
                address: "127.0.0.1:7447".into(),
                server_id: None,
                max_frame: None,
            })
        );
        let address = "127.0.0.1:7447".parse().unwrap();
        assert_eq!(registered_server_id(dir.path(), &address), None);
    }

    #[test]
    fn the_server_id_is_remembered_for_its_own_address_only() {
        let dir = tempfile::tempdir().unwrap();
        remember(dir.path(), "127.0.0.1:7447", "relay-a", 1 << 20).unwrap();
        let same = "tcp://127.0.0.1:7447".parse().unwrap();
        let other = "127.0.0.1:7448".parse().unwrap();
        assert_eq!(
            registered_server_id(dir.path(), &same).as_deref(),
            Some("relay-a")
        );
        assert_eq!(registered_server_id(dir.path(), &other), None);
    }

    #[test]
    fn any_server_id_survives_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for id in [
            "plain",
            "two\nlines",
            "back\\slash \\u{41}",
            "tab\there",
            "ü\r",
        ] {
            remember(dir.path(), "relay.example:1", id, 1 << 20).unwrap();
            assert_eq!(
                SavedRelay::load(dir.path()).unwrap().server_id.as_deref(),
                Some(id)
            );
        }
        assert_eq!(unescape("bad \\x"), None);
        assert_eq!(unescape("bad \\u{110000}"), None);
        assert_eq!(unescape("cut \\u{41"), None);
    }

    #[test]
    fn debug_of_pinned_certificates_shows_their_size_only() {
        let shown = format!("{:?}", RelayTrust::PinnedPem(b"-----BEGIN".to_vec()));
        assert_eq!(shown, "PinnedPem(10 bytes)");
    }
}
