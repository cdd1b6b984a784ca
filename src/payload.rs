//! What a client puts inside a relay envelope.
//!
//! The relay carries `Sealed(sender IK -> recipient IK, Payload)`
//! (sotto-core's sealed envelope, version 2): only the recipient learns who
//! sent it, and opening it authenticates the sender before anything inside
//! is read.
//!
//! ```text
//! Payload = 0x02 (version) || kind(1) || message id(16) || u64be(sent_at ms) || body
//! kind 0x01: body is access_key(16) || a sotto-core Message or PreKeyMessage
//! kind 0x02: body is a decryption-error notice: digest(32), the
//!            CiphertextDigest of the sotto-core message that failed
//! kind 0x03: body is a receipt: what(1: 0x01 delivered | 0x02 read)
//!            || u16be(n) || n × envelope id(16), 1 <= n <= 1000
//! kind 0x04: body is an identity change: the sender's previous identity
//!            key(32), which it claims to replace (unproven: the recipient's
//!            user decides)
//! kind 0x05: body is a message between accounts' devices (docs/devices.md):
//!            access_key(16) || from account(32) || u32be(from device)
//!            || to account(32) || a sotto-core Message or PreKeyMessage.
//!            From one of the recipient's own devices (from account = the
//!            recipient's account) it is a "sent" copy of a message to
//!            the account `to account`.
//! kind 0x06: body is a signed device list (sotto-core, protocol.md §12)
//! kind 0x07: body is a link offer: the account's access_key(16) ||
//!            LinkOffer (sotto-core)
//! kind 0x08: body is a link accept: LinkAccept (sotto-core)
//! kind 0x09: as kind 0x05, for a message whose body is detached (sotto-core
//!            `body`): the sotto-core message holds the body's key, and
//!            the envelope carries the blob after the sealed layer:
//!            0xD0 || u32be(len(sealed)) || sealed || blob
//! kind 0x0A: body is a chunk of a history transfer (docs/devices.md):
//!            u16be(len) || the transfer's header(len) || u64be(chunk index);
//!            the chunk's frame travels after the sealed layer as a
//!            detached body does (it is encrypted under the transfer key)
//! kind 0x0B: body is a history transfer's status, from the receiving
//!            device: transfer id(16) || u64be(next chunk) || u8(complete)
//! kind 0x0C: as kind 0x05, for a group control (a sender key or a
//!            membership change, docs/groups.md) instead of a chat
//!            message: the sotto-core message's plaintext is the control
//! kind 0x0D: body is a group message to one member device:
//!            access_key(16) || from account(32) || u32be(from device)
//!            || to account(32) || body reference(69, sotto-core `body`);
//!            the blob travels after the sealed layer as for kind 0x09,
//!            and opens to a sotto-core group message (protocol.md §14),
//!            the same bytes for every member device
//! ```
//!
//! Kind 0x01 is what a primary device sends to a contact's primary device
//! (the only kind before linked devices, so older clients keep reading
//! it); every other message between devices is kind 0x05, which names
//! both accounts: the recipient refuses one addressed to another account
//! (a contact that lists someone else's device key as its own cannot make
//! that device take messages meant for the contact), and finds the
//! sender's device in the sender's account's list.
//!
//! The message id is the store's envelope id: random, chosen when the
//! message is first stored, the same on every retry and resend, and never
//! shown to the relay (the relay's own message id is derived from the
//! ciphertext, see [`relay_message_id`]). `sent_at` is the sender's clock.
//! Payload version 1 (which named the sender inside, unauthenticated) is
//! refused.
//!
//! A message carries its sender's unidentified-access key
//! ([`sotto_core::AccessKey`]): the recipient keeps it for the sender's
//! contact and presents it to the relay whenever it sends to that contact,
//! so its envelopes never count against the sender's first-contact
//! allowance (docs/relay.md §6). Receipts and notices carry none: they
//! answer a message, whose key the answering side already holds.

use sha2::Digest;
use sotto_core::access::ACCESS_KEY_LEN;
use sotto_core::{AccessKey, DeviceId, IdentityKey, IdentityKeyPair};
use sotto_relay::MessageId;
use sotto_store::{CiphertextDigest, EnvelopeId};

/// Payload format version.
pub const PAYLOAD_VERSION: u8 = 0x02;
/// Kind byte: a protocol message.
pub const KIND_MESSAGE: u8 = 0x01;
/// Kind byte: a decryption-error notice.
pub const KIND_DECRYPTION_ERROR: u8 = 0x02;
/// Kind byte: a delivery or read receipt.
pub const KIND_RECEIPT: u8 = 0x03;
/// Kind byte: an identity change (the sender's previous identity key).
pub const KIND_IDENTITY_CHANGE: u8 = 0x04;
/// Kind byte: a message between accounts' devices.
pub const KIND_DEVICE_MESSAGE: u8 = 0x05;
/// Kind byte: a signed device list.
pub const KIND_DEVICE_LIST: u8 = 0x06;
/// Kind byte: a link offer.
pub const KIND_LINK_OFFER: u8 = 0x07;
/// Kind byte: a link accept.
pub const KIND_LINK_ACCEPT: u8 = 0x08;
/// Kind byte: a message between devices whose body is detached.
pub const KIND_DETACHED_MESSAGE: u8 = 0x09;
/// Kind byte: a chunk of a history transfer.
pub const KIND_HISTORY_CHUNK: u8 = 0x0A;
/// Kind byte: a history transfer's status.
pub const KIND_HISTORY_STATUS: u8 = 0x0B;
/// Kind of a group control carried through a pairwise session.
pub const KIND_GROUP_CONTROL: u8 = 0x0C;
/// Kind of a group message's envelope to one member device.
pub const KIND_GROUP_MESSAGE: u8 = 0x0D;
/// First byte of an envelope that carries a detached body after its sealed
/// layer (a sealed envelope starts with its version, 0x01 or 0x02).
pub const DETACHED_FRAME: u8 = 0xD0;
/// Bytes an envelope with a detached body adds around the sealed layer.
pub const DETACHED_FRAME_OVERHEAD: usize = 1 + 4;
/// Bytes of a device message's body before the sotto-core message.
pub(crate) const DEVICE_MESSAGE_HEADER: usize = ACCESS_KEY_LEN + 32 + 4 + 32;
/// Most envelope ids one receipt names.
pub const MAX_RECEIPT_IDS: usize = 1000;
/// Bytes before the body.
pub const PAYLOAD_OVERHEAD: usize = 1 + 1 + 16 + 8;
/// Domain string of the relay-visible message id.
const RELAY_ID_DOMAIN: &[u8] = b"sotto/relay-message-id/v1";

/// A decoded payload, borrowing its body.
#[derive(Clone, Copy)]
pub(crate) struct Payload<'a> {
    pub(crate) kind: u8,
    pub(crate) message_id: [u8; 16],
    pub(crate) sent_at: u64,
    pub(crate) body: &'a [u8],
}

/// The fields of a message between accounts' devices (kind 0x05).
pub(crate) struct DeviceMessage<'a> {
    pub(crate) access_key: AccessKey,
    pub(crate) from_account: IdentityKey,
    pub(crate) from_device: DeviceId,
    pub(crate) to_account: IdentityKey,
    pub(crate) message: &'a [u8],
}

/// What a receipt confirms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReceiptKind {
    /// The recipient's device stored the messages.
    Delivered,
    /// The recipient read them.
    Read,
}

impl<'a> Payload<'a> {
    /// The sender's access key and the sotto-core message of a message
    /// payload; `None` for anything else, or a body too short to hold a
    /// key and a message.
    pub(crate) fn message(&self) -> Option<(AccessKey, &'a [u8])> {
        if self.kind != KIND_MESSAGE {
            return None;
        }
        let (key, message) = self.body.split_first_chunk::<ACCESS_KEY_LEN>()?;
        if message.is_empty() {
            return None;
        }
        Some((AccessKey::from_bytes(*key), message))
    }

    /// The device message in this payload; `None` for anything else, or a
    /// body too short or naming an invalid account key.
    pub(crate) fn device_message(&self) -> Option<DeviceMessage<'a>> {
        if !matches!(
            self.kind,
            KIND_DEVICE_MESSAGE | KIND_DETACHED_MESSAGE | KIND_GROUP_CONTROL | KIND_GROUP_MESSAGE
        ) || self.body.len() <= DEVICE_MESSAGE_HEADER
        {
            return None;
        }
        let (key, rest) = self.body.split_first_chunk::<ACCESS_KEY_LEN>()?;
        let (from_account, rest) = rest.split_first_chunk::<32>()?;
        let (from_device, rest) = rest.split_first_chunk::<4>()?;
        let (to_account, message) = rest.split_first_chunk::<32>()?;
        Some(DeviceMessage {
            access_key: AccessKey::from_bytes(*key),
            from_account: IdentityKey::from_bytes(from_account).ok()?,
            from_device: DeviceId::new(u32::from_be_bytes(*from_device)),
            to_account: IdentityKey::from_bytes(to_account).ok()?,
            message,
        })
    }

    /// The receipt in this payload; `None` for anything else or a receipt
    /// body that is not exactly well-formed.
    pub(crate) fn receipt(&self) -> Option<(ReceiptKind, Vec<EnvelopeId>)> {
        if self.kind != KIND_RECEIPT {
            return None;
        }
        let (&what, rest) = self.body.split_first()?;
        let kind = match what {
            0x01 => ReceiptKind::Delivered,
            0x02 => ReceiptKind::Read,
            _ => return None,
        };
        let (n, ids) = rest.split_first_chunk::<2>()?;
        let n = usize::from(u16::from_be_bytes(*n));
        if n == 0 || n > MAX_RECEIPT_IDS || ids.len() != n * 16 {
            return None;
        }
        let ids = ids
            .chunks_exact(16)
            .map(|c| {
                let mut id = [0u8; 16];
                id.copy_from_slice(c);
                EnvelopeId(id)
            })
            .collect();
        Some((kind, ids))
    }

    /// The previous identity an identity change names; `None` for anything
    /// else, or a body that is not exactly one valid identity key.
    pub(crate) fn previous_identity(&self) -> Option<IdentityKey> {
        if self.kind != KIND_IDENTITY_CHANGE {
            return None;
        }
        let key: [u8; 32] = self.body.try_into().ok()?;
        IdentityKey::from_bytes(&key).ok()
    }

    /// The digest a decryption-error notice names; `None` for anything
    /// else, or a notice body of the wrong length.
    pub(crate) fn notice_digest(&self) -> Option<CiphertextDigest> {
        if self.kind != KIND_DECRYPTION_ERROR {
            return None;
        }
        let digest: [u8; 32] = self.body.try_into().ok()?;
        Some(CiphertextDigest(digest))
    }
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
    /// The sealed outer layer did not open or did not authenticate its
    /// sender (not for us, forged, or tampered with).
    #[error("cannot open the sealed envelope: {0}")]
    Sealed(sotto_core::Error),
    /// The system's random number generator failed.
    #[error("no randomness for a payload id")]
    NoRandomness,
}

/// Seals a payload from `sender` to `recipient` (hides the sender from the
/// relay, proves it to the recipient).
pub(crate) fn seal(
    sender: &IdentityKeyPair,
    recipient: &IdentityKey,
    payload: &[u8],
) -> Result<Vec<u8>, PayloadError> {
    let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
    sotto_core::sealed::seal(sender, recipient, payload, &mut rng).map_err(PayloadError::Sealed)
}

/// [`seal`] with the static part to that recipient computed before
/// (sotto-core [`StaticSecret`](sotto_core::sealed::StaticSecret)).
pub(crate) fn seal_with(
    sender: &IdentityKeyPair,
    static_shared: &sotto_core::sealed::StaticSecret,
    payload: &[u8],
) -> Result<Vec<u8>, PayloadError> {
    let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
    sotto_core::sealed::seal_with(sender, static_shared, payload, &mut rng)
        .map_err(PayloadError::Sealed)
}

/// Opens a sealed payload addressed to `local`, authenticating its sender.
pub(crate) fn unseal(
    local: &IdentityKeyPair,
    bytes: &[u8],
) -> Result<sotto_core::sealed::Opened, PayloadError> {
    sotto_core::sealed::open(local, bytes).map_err(PayloadError::Sealed)
}

/// The id under which the relay stores the envelope of `ciphertext`:
/// `SHA-256("sotto/relay-message-id/v1" || ciphertext)[0..16]`. The same
/// for every retry of one ciphertext (so the relay stores it once), new for
/// a message encrypted again, and unlinkable by the relay to the store's
/// envelope id or to anything else it sees (it never sees the ciphertext).
pub(crate) fn relay_message_id(ciphertext: &[u8]) -> MessageId {
    let mut h = sha2::Sha256::new();
    h.update(RELAY_ID_DOMAIN);
    h.update(ciphertext);
    let digest: [u8; 32] = h.finalize().into();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    MessageId(id)
}

/// A message payload: the sender's own access key, then the sotto-core
/// message. The buffer holds the key, so it is wiped on drop.
pub(crate) fn encode(
    message_id: &[u8; 16],
    sent_at: u64,
    access_key: &AccessKey,
    message: &[u8],
) -> zeroize::Zeroizing<Vec<u8>> {
    let mut body = zeroize::Zeroizing::new(Vec::with_capacity(ACCESS_KEY_LEN + message.len()));
    body.extend_from_slice(access_key.as_bytes());
    body.extend_from_slice(message);
    zeroize::Zeroizing::new(encode_kind(KIND_MESSAGE, message_id, sent_at, &body))
}

fn encode_kind(kind: u8, message_id: &[u8; 16], sent_at: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PAYLOAD_OVERHEAD + body.len());
    out.push(PAYLOAD_VERSION);
    out.push(kind);
    out.extend_from_slice(message_id);
    out.extend_from_slice(&sent_at.to_be_bytes());
    out.extend_from_slice(body);
    out
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Payload<'_>, PayloadError> {
    if let Some(&version) = bytes.first()
        && version != PAYLOAD_VERSION
    {
        return Err(PayloadError::UnsupportedVersion(version));
    }
    if bytes.len() < PAYLOAD_OVERHEAD {
        return Err(PayloadError::TooShort(bytes.len()));
    }
    let kind = bytes[1];
    if !matches!(
        kind,
        KIND_MESSAGE
            | KIND_DECRYPTION_ERROR
            | KIND_RECEIPT
            | KIND_IDENTITY_CHANGE
            | KIND_DEVICE_MESSAGE
            | KIND_DEVICE_LIST
            | KIND_LINK_OFFER
            | KIND_LINK_ACCEPT
            | KIND_DETACHED_MESSAGE
            | KIND_HISTORY_CHUNK
            | KIND_HISTORY_STATUS
            | KIND_GROUP_CONTROL
            | KIND_GROUP_MESSAGE
    ) {
        return Err(PayloadError::UnknownKind(kind));
    }
    let mut message_id = [0u8; 16];
    message_id.copy_from_slice(&bytes[2..18]);
    let mut sent_at = [0u8; 8];
    sent_at.copy_from_slice(&bytes[18..26]);
    Ok(Payload {
        kind,
        message_id,
        sent_at: u64::from_be_bytes(sent_at),
        body: &bytes[PAYLOAD_OVERHEAD..],
    })
}

/// A receipt for at most [`MAX_RECEIPT_IDS`] envelope ids (the caller
/// splits longer lists).
pub(crate) fn encode_receipt(
    receipt_id: &[u8; 16],
    sent_at: u64,
    kind: ReceiptKind,
    ids: &[EnvelopeId],
) -> Vec<u8> {
    let ids = &ids[..ids.len().min(MAX_RECEIPT_IDS)];
    let mut body = Vec::with_capacity(3 + 16 * ids.len());
    body.push(match kind {
        ReceiptKind::Delivered => 0x01,
        ReceiptKind::Read => 0x02,
    });
    // At most MAX_RECEIPT_IDS (1000) ids: fits in a u16.
    body.extend_from_slice(&(ids.len() as u16).to_be_bytes());
    for id in ids {
        body.extend_from_slice(id.as_bytes());
    }
    encode_kind(KIND_RECEIPT, receipt_id, sent_at, &body)
}

/// A message between accounts' devices (kind 0x05; see the module's
/// table). The buffer holds the access key, so it is wiped on drop.
pub(crate) fn encode_device_message(
    kind: u8,
    message_id: &[u8; 16],
    sent_at: u64,
    access_key: &AccessKey,
    from: (&IdentityKey, DeviceId),
    to_account: &IdentityKey,
    message: &[u8],
) -> zeroize::Zeroizing<Vec<u8>> {
    let mut body =
        zeroize::Zeroizing::new(Vec::with_capacity(DEVICE_MESSAGE_HEADER + message.len()));
    body.extend_from_slice(access_key.as_bytes());
    body.extend_from_slice(from.0.as_bytes());
    body.extend_from_slice(&from.1.get().to_be_bytes());
    body.extend_from_slice(to_account.as_bytes());
    body.extend_from_slice(message);
    zeroize::Zeroizing::new(encode_kind(kind, message_id, sent_at, &body))
}

/// The envelope of a sealed payload whose body travels detached next to
/// it: `0xD0 || u32be(len(sealed)) || sealed || blob`.
pub(crate) fn frame_detached(sealed: &[u8], blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DETACHED_FRAME_OVERHEAD + sealed.len() + blob.len());
    out.push(DETACHED_FRAME);
    // A sealed envelope is far below 4 GiB (the relay's frames are).
    out.extend_from_slice(
        &u32::try_from(sealed.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(sealed);
    out.extend_from_slice(blob);
    out
}

/// Splits what the relay carried into the sealed layer and the detached
/// body it carries, if any; `None` for a frame that does not parse.
pub(crate) fn split_detached(bytes: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    match bytes.split_first() {
        Some((&DETACHED_FRAME, rest)) => {
            let (len, rest) = rest.split_first_chunk::<4>()?;
            let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
            if len > rest.len() {
                return None;
            }
            let (sealed, blob) = rest.split_at(len);
            Some((sealed, Some(blob)))
        }
        _ => Some((bytes, None)),
    }
}

/// The body of a history chunk's payload (kind 0x0A).
pub(crate) fn history_chunk_body(header: &[u8], index: u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(2 + header.len() + 8);
    // A header is a few dozen bytes.
    body.extend_from_slice(
        &u16::try_from(header.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    body.extend_from_slice(header);
    body.extend_from_slice(&index.to_be_bytes());
    body
}

/// The header and chunk index of a history chunk's payload.
pub(crate) fn parse_history_chunk(body: &[u8]) -> Option<(&[u8], u64)> {
    let (len, rest) = body.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    let header = rest.get(..len)?;
    let index: [u8; 8] = rest.get(len..)?.try_into().ok()?;
    Some((header, u64::from_be_bytes(index)))
}

/// The body of a history transfer's status (kind 0x0B).
pub(crate) fn history_status_body(id: &[u8; 16], next_chunk: u64, complete: bool) -> Vec<u8> {
    let mut body = Vec::with_capacity(25);
    body.extend_from_slice(id);
    body.extend_from_slice(&next_chunk.to_be_bytes());
    body.push(u8::from(complete));
    body
}

/// The transfer id, next chunk and completion of a status.
pub(crate) fn parse_history_status(body: &[u8]) -> Option<([u8; 16], u64, bool)> {
    let (id, rest) = body.split_first_chunk::<16>()?;
    let (next, rest) = rest.split_first_chunk::<8>()?;
    let complete = match rest {
        [0] => false,
        [1] => true,
        _ => return None,
    };
    Some((*id, u64::from_be_bytes(*next), complete))
}

/// A payload of `kind` around `body` (device list, link offer, accept),
/// under a fresh random id. The buffer may hold a key: wiped on drop.
pub(crate) fn encode_control(
    kind: u8,
    sent_at: u64,
    body: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, PayloadError> {
    let id = MessageId::random().map_err(|_| PayloadError::NoRandomness)?;
    Ok(zeroize::Zeroizing::new(encode_kind(
        kind, &id.0, sent_at, body,
    )))
}

/// A notice that the message whose ciphertext has digest `failed` could
/// not be decrypted. Its authenticity comes from the sealed envelope.
pub(crate) fn encode_notice(
    notice_id: &[u8; 16],
    sent_at: u64,
    failed: &CiphertextDigest,
) -> Vec<u8> {
    encode_kind(KIND_DECRYPTION_ERROR, notice_id, sent_at, failed.as_bytes())
}

/// An identity change: the sender claims to replace `previous`.
pub(crate) fn encode_identity_change(
    change_id: &[u8; 16],
    sent_at: u64,
    previous: &IdentityKey,
) -> Vec<u8> {
    encode_kind(
        KIND_IDENTITY_CHANGE,
        change_id,
        sent_at,
        previous.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_changes_carry_exactly_one_valid_key() {
        let previous = *IdentityKeyPair::from_seed(&[4; 32]).public();
        let bytes = encode_identity_change(&[1; 16], 7, &previous);
        let p = decode(&bytes).unwrap();
        assert_eq!(p.kind, KIND_IDENTITY_CHANGE);
        assert_eq!(p.previous_identity(), Some(previous));
        assert_eq!(p.message(), None);
        assert_eq!(
            decode(&bytes[..bytes.len() - 1])
                .unwrap()
                .previous_identity(),
            None
        );
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(decode(&long).unwrap().previous_identity(), None);
    }

    #[test]
    fn roundtrip_and_rejects() {
        let key = AccessKey::from_bytes([5; 16]);
        let bytes = encode(&[7; 16], 42, &key, b"body");
        let p = decode(&bytes).unwrap();
        assert_eq!(p.kind, KIND_MESSAGE);
        assert_eq!(p.message_id, [7; 16]);
        assert_eq!(p.sent_at, 42);
        assert_eq!(p.body, [&[5; 16][..], b"body"].concat());
        assert_eq!(p.message(), Some((key.clone(), &b"body"[..])));
        assert_eq!(p.notice_digest(), None);
        // A message body must hold a key and at least one byte more.
        for cut in PAYLOAD_OVERHEAD..=PAYLOAD_OVERHEAD + 16 {
            assert_eq!(decode(&bytes[..cut]).unwrap().message(), None, "{cut}");
        }
        for len in 1..PAYLOAD_OVERHEAD {
            assert_eq!(
                decode(&bytes[..len]).err(),
                Some(PayloadError::TooShort(len))
            );
        }
        for version in [0x01, 0x03] {
            let mut bad = bytes.clone();
            bad[0] = version;
            assert_eq!(
                decode(&bad).err(),
                Some(PayloadError::UnsupportedVersion(version))
            );
        }
        let mut bad = bytes.clone();
        bad[1] = 0x7F;
        assert_eq!(decode(&bad).err(), Some(PayloadError::UnknownKind(0x7F)));
        let mut bad = bytes.clone();
        bad[1] = 0;
        assert_eq!(decode(&bad).err(), Some(PayloadError::UnknownKind(0)));
    }

    #[test]
    fn notices_carry_exactly_one_digest() {
        let digest = CiphertextDigest::of(b"what was sent");
        let bytes = encode_notice(&[1; 16], 5, &digest);
        let p = decode(&bytes).unwrap();
        assert_eq!(p.notice_digest(), Some(digest));
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]).unwrap().notice_digest(),
            None
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer).unwrap().notice_digest(), None);
    }

    #[test]
    fn receipts_roundtrip_and_malformed_ones_are_refused() {
        let ids = [EnvelopeId([1; 16]), EnvelopeId([2; 16])];
        for kind in [ReceiptKind::Delivered, ReceiptKind::Read] {
            let bytes = encode_receipt(&[9; 16], 7, kind, &ids);
            let p = decode(&bytes).unwrap();
            assert_eq!(p.receipt(), Some((kind, ids.to_vec())));
            assert_eq!(p.notice_digest(), None);
            // Truncated, longer, or an unknown kind byte: refused.
            assert_eq!(decode(&bytes[..bytes.len() - 1]).unwrap().receipt(), None);
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(decode(&longer).unwrap().receipt(), None);
            let mut what = bytes.clone();
            what[PAYLOAD_OVERHEAD] = 0x07;
            assert_eq!(decode(&what).unwrap().receipt(), None);
        }
        // Zero ids is not a receipt; more than the maximum are cut.
        let empty = encode_receipt(&[9; 16], 7, ReceiptKind::Delivered, &[]);
        assert_eq!(decode(&empty).unwrap().receipt(), None);
        let many = vec![EnvelopeId([3; 16]); MAX_RECEIPT_IDS + 5];
        let cut = encode_receipt(&[9; 16], 7, ReceiptKind::Delivered, &many);
        assert_eq!(
            decode(&cut).unwrap().receipt().unwrap().1.len(),
            MAX_RECEIPT_IDS
        );
        // A message is not a receipt, nor a receipt a message.
        let key = AccessKey::from_bytes([2; 16]);
        assert_eq!(
            decode(&encode(&[1; 16], 0, &key, b"x")).unwrap().receipt(),
            None
        );
        let receipt = encode_receipt(&[9; 16], 7, ReceiptKind::Delivered, &ids);
        assert_eq!(decode(&receipt).unwrap().message(), None);
    }

    #[test]
    fn relay_ids_follow_the_ciphertext_not_the_store_id() {
        assert_eq!(relay_message_id(b"a"), relay_message_id(b"a"));
        assert_ne!(relay_message_id(b"a"), relay_message_id(b"b"));
        let digest = CiphertextDigest::of(b"a");
        assert_ne!(&relay_message_id(b"a").0[..], &digest.as_bytes()[..16]);
    }
}
