//! What a client puts inside a relay envelope.
//!
//! The relay carries `Sealed(recipient IK, Payload)` (sotto-core's sealed
//! envelope): only the recipient learns who sent it.
//!
//! ```text
//! Payload = 0x01 (version) || kind(1) || sender IK(32, Ed25519) || message id(16) || body
//! kind 0x01: body is a sotto-core Message or PreKeyMessage
//! kind 0x02: body is a decryption-error notice:
//!            failed envelope id(16) || u64be(timestamp ms) || signature(64)
//!            signature = Ed25519(sender IK, "sotto/decryption-error/v1"
//!                        || sender IK(32) || recipient IK(32) || failed id(16) || u64be(timestamp))
//! ```
//!
//! The relay never parses this; the recipient uses the sender's identity
//! key to find the contact and its sessions. The key is not trusted on its
//! own: only a session with that contact can decrypt the body, so a forged
//! sender field makes the message undecryptable, not misattributed.

use sotto_core::{IdentityKey, IdentityKeyPair};

/// Payload format version.
pub const PAYLOAD_VERSION: u8 = 0x01;
/// Kind byte: a protocol message.
pub const KIND_MESSAGE: u8 = 0x01;
/// Kind byte: a decryption-error notice.
pub const KIND_DECRYPTION_ERROR: u8 = 0x02;
/// Domain string of the notice signature.
const NOTICE_DOMAIN: &[u8] = b"sotto/decryption-error/v1";
/// Length of a notice body.
const NOTICE_LEN: usize = 16 + 8 + 64;
/// Bytes before the body.
pub const PAYLOAD_OVERHEAD: usize = 1 + 1 + 32 + 16;

/// A decoded payload, borrowing its body.
#[derive(Clone, Copy)]
pub(crate) struct Payload<'a> {
    pub(crate) kind: u8,
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
    /// The sealed outer layer did not open (not for us, or tampered with).
    #[error("cannot open the sealed envelope: {0}")]
    Sealed(sotto_core::Error),
    /// No randomness for the sealed envelope's ephemeral key.
    #[error("the system random number generator failed")]
    Random,
}

/// Seals a payload for `recipient` (hides the sender from the relay).
pub(crate) fn seal(recipient: &IdentityKey, payload: &[u8]) -> Result<Vec<u8>, PayloadError> {
    let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
    sotto_core::sealed::seal(recipient, payload, &mut rng).map_err(|_| PayloadError::Random)
}

/// Opens a sealed payload addressed to `local`.
pub(crate) fn unseal(
    local: &IdentityKeyPair,
    bytes: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, PayloadError> {
    sotto_core::sealed::open(local, bytes).map_err(PayloadError::Sealed)
}

pub(crate) fn encode(sender: &IdentityKey, message_id: &[u8; 16], body: &[u8]) -> Vec<u8> {
    encode_kind(KIND_MESSAGE, sender, message_id, body)
}

fn encode_kind(kind: u8, sender: &IdentityKey, message_id: &[u8; 16], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PAYLOAD_OVERHEAD + body.len());
    out.push(PAYLOAD_VERSION);
    out.push(kind);
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
    let kind = bytes[1];
    if kind != KIND_MESSAGE && kind != KIND_DECRYPTION_ERROR {
        return Err(PayloadError::UnknownKind(kind));
    }
    let sender = IdentityKey::from_slice(&bytes[2..34]).map_err(|_| PayloadError::InvalidSender)?;
    let mut message_id = [0u8; 16];
    message_id.copy_from_slice(&bytes[34..50]);
    Ok(Payload {
        kind,
        sender,
        message_id,
        body: &bytes[PAYLOAD_OVERHEAD..],
    })
}

/// A verified decryption-error notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Notice {
    pub(crate) failed: [u8; 16],
    pub(crate) timestamp: u64,
}

fn notice_message(
    sender: &IdentityKey,
    recipient: &IdentityKey,
    failed: &[u8; 16],
    timestamp: u64,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(NOTICE_DOMAIN.len() + 32 + 32 + 16 + 8);
    m.extend_from_slice(NOTICE_DOMAIN);
    m.extend_from_slice(sender.as_bytes());
    m.extend_from_slice(recipient.as_bytes());
    m.extend_from_slice(failed);
    m.extend_from_slice(&timestamp.to_be_bytes());
    m
}

/// A signed notice that `sender` could not decrypt envelope `failed` from
/// `recipient`.
pub(crate) fn encode_notice(
    sender: &IdentityKeyPair,
    recipient: &IdentityKey,
    notice_id: &[u8; 16],
    failed: &[u8; 16],
    timestamp: u64,
) -> Vec<u8> {
    let signature = sender.sign(&notice_message(
        sender.public(),
        recipient,
        failed,
        timestamp,
    ));
    let mut body = Vec::with_capacity(NOTICE_LEN);
    body.extend_from_slice(failed);
    body.extend_from_slice(&timestamp.to_be_bytes());
    body.extend_from_slice(&signature);
    encode_kind(KIND_DECRYPTION_ERROR, sender.public(), notice_id, &body)
}

/// Checks a notice body from `payload` addressed to `recipient`: exact
/// length and a valid signature by the payload's sender.
pub(crate) fn verify_notice(payload: &Payload<'_>, recipient: &IdentityKey) -> Option<Notice> {
    if payload.kind != KIND_DECRYPTION_ERROR || payload.body.len() != NOTICE_LEN {
        return None;
    }
    let mut failed = [0u8; 16];
    failed.copy_from_slice(&payload.body[..16]);
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&payload.body[16..24]);
    let timestamp = u64::from_be_bytes(ts);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&payload.body[24..]);
    let message = notice_message(&payload.sender, recipient, &failed, timestamp);
    payload.sender.verify(&message, &signature).ok()?;
    Some(Notice { failed, timestamp })
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
        let mut bad = bytes.clone();
        bad[1] = 0;
        assert_eq!(decode(&bad).err(), Some(PayloadError::UnknownKind(0)));
    }

    #[test]
    fn notices_verify_only_for_their_sender_recipient_and_bytes() {
        let mut rng = rand::rngs::StdRng::from_seed([4; 32]);
        let bob = sotto_core::IdentityKeyPair::generate(&mut rng);
        let alice = sotto_core::IdentityKeyPair::generate(&mut rng);
        let mallory = sotto_core::IdentityKeyPair::generate(&mut rng);
        let bytes = encode_notice(&bob, alice.public(), &[1; 16], &[2; 16], 99);
        let p = decode(&bytes).unwrap();
        assert_eq!(
            verify_notice(&p, alice.public()),
            Some(Notice {
                failed: [2; 16],
                timestamp: 99
            })
        );
        // Addressed to someone else.
        assert_eq!(verify_notice(&p, mallory.public()), None);
        // Every flipped byte of the body breaks it.
        for i in PAYLOAD_OVERHEAD..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert_eq!(
                verify_notice(&decode(&bad).unwrap(), alice.public()),
                None,
                "byte {i}"
            );
        }
        // Claiming to be Bob with Mallory's signature.
        let mut forged = encode_notice(&mallory, alice.public(), &[1; 16], &[2; 16], 99);
        forged[2..34].copy_from_slice(bob.public().as_bytes());
        assert_eq!(
            verify_notice(&decode(&forged).unwrap(), alice.public()),
            None
        );
        // Truncated body.
        let short = &bytes[..bytes.len() - 1];
        assert_eq!(verify_notice(&decode(short).unwrap(), alice.public()), None);
    }
}
