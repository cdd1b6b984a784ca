//! The challenge a client signs to prove it owns a mailbox (docs/relay.md §4).

/// Domain separation string of the challenge signature. It starts with a
/// byte (`'s'`) that no other signed message of Sotto starts with (signed
/// prekeys sign `0x05 || key`), so a challenge signature can never be
/// mistaken for a prekey signature or vice versa.
///
/// Protocol version 2 signs `…/v2`, which adds the channel binding; the
/// version-1 message (`…/v1`, without it) is never accepted.
pub const AUTH_DOMAIN: &[u8] = b"sotto-relay/auth/v2";

/// Length of the relay's challenge.
pub const CHALLENGE_LEN: usize = 32;

/// Label of the TLS keying-material exporter (RFC 8446 §7.5) whose output
/// is the channel binding of a TLS connection.
pub const TLS_EXPORTER_LABEL: &[u8] = b"EXPORTER-sotto-relay-auth";

/// Length of the TLS exporter output used as channel binding.
pub const TLS_EXPORTER_LEN: usize = 32;

/// What the login signature is bound to besides the relay's id and
/// challenge: the transport the two ends share.
///
/// Over TLS both ends compute the same exporter value from their own TLS
/// session. A relay that forwards another relay's challenge to a victim
/// holds two different TLS sessions (one with the victim, one with the other
/// relay), so the victim's signature covers a value the other relay does
/// not compute, and does not verify there.
///
/// Plain TCP has nothing to bind to ([`ChannelBinding::None`]): there only
/// the server id protects against forwarding, and only if the client checks
/// it (`ClientConfig::expected_server_id`).
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelBinding {
    /// Plain TCP: an empty binding (`n = 0`).
    None,
    /// TLS 1.3: the 32-byte exporter value with label
    /// [`TLS_EXPORTER_LABEL`] and no context.
    TlsExporter([u8; TLS_EXPORTER_LEN]),
}

impl ChannelBinding {
    /// The bytes that go into the signed message (empty for plain TCP).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::None => &[],
            Self::TlsExporter(value) => value,
        }
    }
}

impl core::fmt::Debug for ChannelBinding {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Derived from the TLS session's secrets: not printed.
        match self {
            Self::None => f.write_str("ChannelBinding::None"),
            Self::TlsExporter(_) => f.write_str("ChannelBinding::TlsExporter(..)"),
        }
    }
}

/// The message a client signs with its identity key:
///
/// ```text
/// "sotto-relay/auth/v2" || u8(len(server_id)) || server_id || challenge(32)
///                       || u8(len(binding)) || binding
/// ```
///
/// The server id names the relay the signature is meant for; the fresh
/// challenge makes it single-use; the channel binding ties it to this one
/// connection, so a relay that forwards another relay's `Welcome` cannot use
/// the answer there (see [`ChannelBinding`]). `server_id` is at most 255
/// bytes (the relay enforces it at configuration, the client when parsing
/// `Welcome`); a longer one is cut to its first 255 bytes here rather than
/// panicking.
pub fn auth_message(
    server_id: &str,
    challenge: &[u8; CHALLENGE_LEN],
    binding: &ChannelBinding,
) -> Vec<u8> {
    let id = server_id.as_bytes();
    let id = &id[..id.len().min(super::MAX_SERVER_ID_LEN)];
    let binding = binding.as_bytes();
    let mut out =
        Vec::with_capacity(AUTH_DOMAIN.len() + 1 + id.len() + CHALLENGE_LEN + 1 + binding.len());
    out.extend_from_slice(AUTH_DOMAIN);
    out.push(id.len() as u8);
    out.extend_from_slice(id);
    out.extend_from_slice(challenge);
    // At most 32 bytes by construction.
    out.push(binding.len() as u8);
    out.extend_from_slice(binding);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_domain_id_challenge_and_binding() {
        let m = auth_message("relay-a", &[9; 32], &ChannelBinding::TlsExporter([4; 32]));
        assert_eq!(&m[..19], b"sotto-relay/auth/v2");
        assert_eq!(m[19], 7);
        assert_eq!(&m[20..27], b"relay-a");
        assert_eq!(&m[27..59], &[9; 32]);
        assert_eq!(m[59], 32);
        assert_eq!(&m[60..], &[4; 32]);
    }

    #[test]
    fn plain_tcp_binding_is_empty_and_differs_from_any_tls_binding() {
        let plain = auth_message("relay-a", &[9; 32], &ChannelBinding::None);
        assert_eq!(plain.len(), 19 + 1 + 7 + 32 + 1);
        assert_eq!(plain.last(), Some(&0));
        assert_ne!(
            plain,
            auth_message("relay-a", &[9; 32], &ChannelBinding::TlsExporter([0; 32]))
        );
        assert_ne!(
            auth_message("relay-a", &[9; 32], &ChannelBinding::TlsExporter([1; 32])),
            auth_message("relay-a", &[9; 32], &ChannelBinding::TlsExporter([2; 32]))
        );
    }

    #[test]
    fn debug_does_not_show_the_exporter_value() {
        let shown = format!("{:?}", ChannelBinding::TlsExporter([0xAB; 32]));
        assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
    }
}
