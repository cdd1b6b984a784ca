//! The challenge a client signs to prove it owns a mailbox.

/// Domain separation string of the challenge signature. It starts with a
/// byte (`'s'`) that no other signed message of Sotto starts with (signed
/// prekeys sign `0x05 || key`), so a challenge signature can never be
/// mistaken for a prekey signature or vice versa.
pub const AUTH_DOMAIN: &[u8] = b"sotto-relay/auth/v1";

/// Length of the relay's challenge.
pub const CHALLENGE_LEN: usize = 32;

/// The message a client signs with its identity key:
/// `"sotto-relay/auth/v1" || u8(len(server_id)) || server_id || challenge`.
///
/// Binding the server id means a signature obtained by one relay cannot be
/// replayed to another; the fresh challenge means it cannot be replayed to
/// the same relay. `server_id` is at most 255 bytes (the relay enforces it
/// at configuration, the client when parsing `Welcome`); a longer one is cut
/// to its first 255 bytes here rather than panicking.
pub fn auth_message(server_id: &str, challenge: &[u8; CHALLENGE_LEN]) -> Vec<u8> {
    let id = server_id.as_bytes();
    let id = &id[..id.len().min(super::MAX_SERVER_ID_LEN)];
    let mut out = Vec::with_capacity(AUTH_DOMAIN.len() + 1 + id.len() + CHALLENGE_LEN);
    out.extend_from_slice(AUTH_DOMAIN);
    out.push(id.len() as u8);
    out.extend_from_slice(id);
    out.extend_from_slice(challenge);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_domain_length_id_challenge() {
        let m = auth_message("relay-a", &[9; 32]);
        assert_eq!(&m[..19], b"sotto-relay/auth/v1");
        assert_eq!(m[19], 7);
        assert_eq!(&m[20..27], b"relay-a");
        assert_eq!(&m[27..], &[9; 32]);
    }
}
