//! What a client puts inside a relay envelope.
//!
//! ```text
//! Payload = 0x01 (version) || kind(1) || sender IK(32, Ed25519) || message id(16) || body
//! kind 0x01: body is a sotto-core Message or PreKeyMessage
//! ```
//!
//! The relay never parses this; the recipient uses the sender's identity
//! key to find the contact and its sessions. The key is not trusted on its
//! own: only a session with that contact can decrypt the body, so a forged
//! sender field makes the message undecryptable, not misattributed.

use sotto_core::IdentityKey;

/// Payload format version.
pub const PAYLOAD_VERSION: u8 = 0x01;
/// Kind byte: a protocol message.
pub const KIND_MESSAGE: u8 = 0x01;
/// Bytes before the body.
pub const PAYLOAD_OVERHEAD: usize = 1 + 1 + 32 + 16;

/// A decoded payload, borrowing its body.
#[derive(Clone, Copy)]
pub(crate) struct Payload<'a> {
    pub(crate) sender: IdentityKey,
    pub(crate) message_id: [u8; 16],
    pub(crate) body: &'a [u8],
}

/// Why a payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Shorter than the fixed header.
    #[error("payload too short ({0} bytes)")]
    TooShort(usize),
    /// A version this client does not speak.
    #[error("unsupported payload version {0}")]
    UnsupportedVersion(u8),
    /// A kind this client does not know.
    #[error("unknown payload kind {0}")]
    UnknownKind(u8),
    /// The sender field is not a valid identity key.
    #[error("invalid sender identity key")]
    InvalidSender,
}

pub(crate) fn encode(sender: &IdentityKey, message_id: &[u8; 16], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PAYLOAD_OVERHEAD + body.len());
    out.push(PAYLOAD_VERSION);
    out.push(KIND_MESSAGE);
    out.extend_from_slice(sender.as_bytes());
    out.extend_from_slice(message_id);
    out.extend_from_slice(body);
    out
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Payload<'_>, PayloadError> {
    if bytes.len() < PAYLOAD_OVERHEAD {
        return Err(PayloadError::TooShort(bytes.len()));
    }
    if bytes[0] != PAYLOAD_VERSION {
        return Err(PayloadError::UnsupportedVersion(bytes[0]));
    }
    if bytes[1] != KIND_MESSAGE {
        return Err(PayloadError::UnknownKind(bytes[1]));
    }
    let sender = IdentityKey::from_slice(&bytes[2..34]).map_err(|_| PayloadError::InvalidSender)?;
    let mut message_id = [0u8; 16];
    message_id.copy_from_slice(&bytes[34..50]);
    Ok(Payload {
        sender,
        message_id,
        body: &bytes[PAYLOAD_OVERHEAD..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn roundtrip_and_rejects() {
        let mut rng = rand::rngs::StdRng::from_seed([3; 32]);
        let ik = *sotto_core::IdentityKeyPair::generate(&mut rng).public();
        let bytes = encode(&ik, &[7; 16], b"body");
        let p = decode(&bytes).unwrap();
        assert_eq!(p.sender, ik);
        assert_eq!(p.message_id, [7; 16]);
        assert_eq!(p.body, b"body");
        for len in 0..PAYLOAD_OVERHEAD {
            assert_eq!(
                decode(&bytes[..len]).err(),
                Some(PayloadError::TooShort(len))
            );
        }
        let mut bad = bytes.clone();
        bad[0] = 2;
        assert_eq!(
            decode(&bad).err(),
            Some(PayloadError::UnsupportedVersion(2))
        );
        let mut bad = bytes.clone();
        bad[1] = 9;
        assert_eq!(decode(&bad).err(), Some(PayloadError::UnknownKind(9)));
    }
}
