//! The relay's binary protocol (docs/relay.md is the byte-level spec).
//!
//! Everything travels in frames: `u32be(length) || body`, with
//! `1 <= length <= max_frame_size`. Every body starts with
//! `type(u8) || u32be(request_id)`. The client's first frame is
//! [`Request::Hello`], which offers protocol versions; the relay answers
//! [`Response::Welcome`] with the chosen version, its server id and a fresh
//! 32-byte challenge, or with an [`ErrorCode::UnsupportedVersion`] error and
//! closes. The layout of `Hello`, `Welcome` and `Error` is the same in every
//! version, so negotiation itself never depends on the version.
//!
//! Responses echo the request id and have type `request type | 0x80`;
//! errors have type `0xFF`. Frames the relay sends on its own (pushes) have
//! types `0xC0..` and request id 0, so clients number their requests from 1.

mod auth;
mod codec;
mod error_code;
pub(crate) mod frame;
pub(crate) mod request;
mod response;
pub(crate) mod version;

pub use auth::{
    AUTH_DOMAIN, CHALLENGE_LEN, ChannelBinding, TLS_EXPORTER_LABEL, TLS_EXPORTER_LEN, auth_message,
};
pub use error_code::ErrorCode;
pub use request::{
    KEM_PREKEY_WIRE_LEN, MultiRecipient, OneTimePreKeyPublic, PreKeyUpload, Request, RequestFrame,
    SignedPreKeyPublic, send_multi_frame_len,
};
pub use response::{
    AuthInfo, ErrorFrame, KemPreKeyStock, PreKeyStock, Push, RecipientOutcome, Response,
    ServerFrame, Welcome,
};

/// The four bytes that open `Hello` and `Welcome`: `"SOTR"`.
pub const MAGIC: [u8; 4] = *b"SOTR";

/// The protocol version this implementation speaks best.
///
/// Version 2 binds the login signature to the TLS channel
/// ([`auth_message`]); version 1 signed without it and is no longer spoken.
/// Version 3 is version 2 with one more request, [`Request::SendMulti`]
/// ([`SEND_MULTI_VERSION`]); everything else is the same. Version 4 adds
/// the ML-KEM-768 prekey directory of core protocol v2
/// ([`KEM_PREKEYS_VERSION`]). Version 5 adds blobs, opaque files a client
/// uploads for its recipients to download ([`BLOBS_VERSION`]).
pub const PROTOCOL_VERSION: u16 = 5;

/// Every protocol version this implementation speaks, lowest first. A
/// client offers them all and learns from the relay's choice which
/// requests it may use (docs/relay.md §3).
pub const SUPPORTED_VERSIONS: &[u16] = &[2, 3, 4, PROTOCOL_VERSION];

/// The first protocol version with KEM prekeys: the KEM part of
/// [`Request::UploadPreKeys`], [`Request::FetchBundleV2`] and the KEM
/// stock in [`PreKeyStock`]. On an older connection the relay refuses the
/// first two as a relay that predates them does, and reports no KEM
/// stock.
pub const KEM_PREKEYS_VERSION: u16 = 4;

/// The first protocol version with blobs: [`Request::BlobCreate`],
/// [`Request::BlobPut`], [`Request::BlobStatus`], [`Request::BlobGet`]
/// and [`Request::BlobDone`] (docs/relay.md §12). On an older connection
/// the relay answers them [`ErrorCode::UnknownRequest`], as a relay that
/// predates them does.
pub const BLOBS_VERSION: u16 = 5;

/// Most tokens (recipients) one blob may have: `1 <= n <= 64`.
pub const MAX_BLOB_TOKENS: usize = 64;

/// Bytes of a `BlobPut` frame body in front of its data: `type(1) ||
/// request_id(4) || blob_id(16) || u64be(offset)`.
pub const BLOB_PUT_OVERHEAD: usize = 1 + 4 + 16 + 8;

/// Bytes of a `BlobData` frame body in front of its data: `type(1) ||
/// request_id(4) || u64be(offset)`.
pub const BLOB_DATA_OVERHEAD: usize = 1 + 4 + 8;

/// The most data one `BlobPut` or `BlobData` carries in a frame of
/// `max_frame_size` bytes: the frame less the `BlobPut` header (the
/// larger of the two), so a chunk that goes up also comes down whole.
pub fn max_blob_chunk(max_frame_size: u32) -> usize {
    (max_frame_size as usize).saturating_sub(BLOB_PUT_OVERHEAD)
}

/// The first protocol version that defines [`Request::SendMulti`]. On a
/// connection that negotiated an older one the relay answers it
/// [`ErrorCode::UnknownRequest`], as a relay that predates it does.
pub const SEND_MULTI_VERSION: u16 = 3;

/// Most recipients one [`Request::SendMulti`] may name. A request naming
/// more is refused with the non-fatal [`ErrorCode::TooManyRecipients`]
/// before anything of it is stored (docs/relay.md §6, "Multi-recipient
/// send", and §8 for why 1000).
pub const MAX_MULTI_RECIPIENTS: usize = 1000;

/// Most versions a `Hello` may offer.
pub const MAX_OFFERED_VERSIONS: usize = 16;

/// Default maximum frame size (length prefix value): 1 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 1 << 20;

/// Bytes in front of every frame body's payload: `type(u8) ||
/// request_id(u32be)`.
const BODY_HEADER_LEN: usize = 1 + 4;

/// The longest `BundleV2` (`0x8C`) frame body: a v2 bundle with a one-time
/// prekey (docs/protocol.md §16.2), `0x02 || versions || IK(32) ||
/// u32be(spk_id) || SPK(32) || sig(64) || 0x01 || u32be(opk_id) || OPK(32)
/// || kem_prekey`: 1428 bytes.
pub const MAX_BUNDLE_V2_FRAME_LEN: usize =
    BODY_HEADER_LEN + 1 + 1 + 32 + 4 + 32 + 64 + 1 + 4 + 32 + KEM_PREKEY_WIRE_LEN;

/// The longest `DeviceList` (`0x8A`) frame body: `u16be(len) || list`
/// with a list of [`MAX_DEVICE_LIST_LEN`] bytes: 2055 bytes. (`Publish
/// DeviceList` is as long.)
pub const MAX_DEVICE_LIST_FRAME_LEN: usize = BODY_HEADER_LEN + 2 + MAX_DEVICE_LIST_LEN;

/// The longest `Error` (`0xFF`) frame body: `u16be(code) || message` with
/// a message of [`MAX_ERROR_MESSAGE_LEN`] bytes: 1031 bytes.
pub const MAX_ERROR_FRAME_LEN: usize = BODY_HEADER_LEN + 2 + MAX_ERROR_MESSAGE_LEN;

/// The longest `Welcome` (`0x80`) frame body: with a server id of
/// [`MAX_SERVER_ID_LEN`] bytes, 303 bytes.
pub const MAX_WELCOME_FRAME_LEN: usize =
    BODY_HEADER_LEN + 4 + 2 + 4 + 1 + MAX_SERVER_ID_LEN + CHALLENGE_LEN;

/// The frame body of the largest `UploadPreKeys` that carries one KEM
/// prekey and no one-time prekey (protocol 4): flags, a signed prekey
/// (`u32be(spk_id) || SPK(32) || sig(64)`), an access verifier (32),
/// `u16be(0)` one-time prekeys, `kem_flags`, the KEM prekey and
/// `u16be(0)` more: 1395 bytes. What an owner needs to send at least once
/// to be reachable over protocol v2; its other keys can follow in further
/// uploads, one KEM prekey or some one-time prekeys in each.
pub const MIN_V2_UPLOAD_FRAME_LEN: usize =
    BODY_HEADER_LEN + 1 + (4 + 32 + 64) + 32 + 2 + 1 + KEM_PREKEY_WIRE_LEN + 2;

/// The larger of two lengths, for constants.
const fn max_len(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// Smallest maximum frame size a relay may announce: 2055 bytes, the
/// longest of the frames whose length no request bounds
/// ([`MAX_DEVICE_LIST_FRAME_LEN`], [`MAX_BUNDLE_V2_FRAME_LEN`],
/// [`MAX_ERROR_FRAME_LEN`], [`MAX_WELCOME_FRAME_LEN`]; the answers to
/// `Fetch` and `SendMulti` are sized to the frame or to their request)
/// and of [`MIN_V2_UPLOAD_FRAME_LEN`]. So at any setting every answer the
/// relay gives fits in the limit it announces, and an owner can publish
/// its keys for protocol v2 (docs/relay.md §8).
pub const MIN_MAX_FRAME_SIZE: u32 = max_len(
    max_len(MAX_DEVICE_LIST_FRAME_LEN, MAX_BUNDLE_V2_FRAME_LEN),
    max_len(
        max_len(MAX_ERROR_FRAME_LEN, MAX_WELCOME_FRAME_LEN),
        MIN_V2_UPLOAD_FRAME_LEN,
    ),
) as u32;

/// Longest server id, in bytes of UTF-8.
pub const MAX_SERVER_ID_LEN: usize = 255;

/// Longest error message the relay sends, in bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = 1024;

/// Bytes of a `Send` request in front of the payload, with an access key:
/// `type(1) || request_id(4) || recipient(32) || message_id(16) ||
/// flags(1) || access_key(16)`.
pub const SEND_OVERHEAD: usize = 1 + 4 + 32 + 16 + 1 + 16;

/// The largest envelope payload that fits in a `Send` frame of
/// `max_frame_size` bytes, whether or not it carries an access key.
pub fn max_payload_len(max_frame_size: u32) -> usize {
    (max_frame_size as usize).saturating_sub(SEND_OVERHEAD)
}

/// Longest signed device list a frame carries (a full list of 16 devices
/// takes 818 bytes; docs/protocol.md, section 12).
pub const MAX_DEVICE_LIST_LEN: usize = 2048;

/// Writes `u16be(len) || list` (the caller keeps `list` within
/// [`MAX_DEVICE_LIST_LEN`]; a longer one is cut and then refused by the
/// reader).
fn put_device_list(out: &mut Vec<u8>, list: &[u8]) {
    let len = list.len().min(MAX_DEVICE_LIST_LEN);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&list[..len]);
}

/// Reads `u16be(len) || list`, 1 <= len <= [`MAX_DEVICE_LIST_LEN`].
fn get_device_list(r: &mut codec::Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let len = usize::from(r.u16()?);
    if len == 0 || len > MAX_DEVICE_LIST_LEN {
        return Err(DecodeError::InvalidField("device list length"));
    }
    Ok(r.bytes(len)?.to_vec())
}

/// A frame body that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body ended before a complete field.
    #[error("truncated frame: needed {needed} bytes, got {got}")]
    Truncated {
        /// Bytes required.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// Bytes were left after a complete message.
    #[error("{0} trailing bytes after a complete message")]
    TrailingBytes(usize),
    /// A type byte that this version does not define.
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    /// A field whose value is not allowed.
    #[error("invalid field: {0}")]
    InvalidField(&'static str),
    /// A KEM prekey (of id `id`) of an upload whose encapsulation key
    /// FIPS 203's input check refuses; the rest of the body was not read.
    /// The relay answers it with the non-fatal
    /// [`ErrorCode::InvalidPreKey`].
    #[error("KEM prekey {id} is not a valid ML-KEM-768 encapsulation key")]
    InvalidKemPreKey {
        /// The prekey's id.
        id: u32,
    },
    /// A `SendMulti` naming more recipients than
    /// [`MAX_MULTI_RECIPIENTS`]; the rest of the body was not read. The
    /// relay answers it with the non-fatal
    /// [`ErrorCode::TooManyRecipients`].
    #[error("{count} recipients in one request, at most {max} allowed")]
    TooManyRecipients {
        /// Recipients the request names.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// Frame type bytes (docs/relay.md "Frame types").
pub(crate) mod frame_type {
    pub(crate) const HELLO: u8 = 0x00;
    pub(crate) const AUTHENTICATE: u8 = 0x01;
    pub(crate) const UPLOAD_PREKEYS: u8 = 0x02;
    pub(crate) const FETCH_BUNDLE: u8 = 0x03;
    pub(crate) const SEND: u8 = 0x04;
    pub(crate) const FETCH: u8 = 0x05;
    pub(crate) const ACK: u8 = 0x06;
    pub(crate) const PREKEY_COUNT: u8 = 0x07;
    pub(crate) const PING: u8 = 0x08;
    pub(crate) const PUBLISH_DEVICE_LIST: u8 = 0x09;
    pub(crate) const FETCH_DEVICE_LIST: u8 = 0x0A;
    pub(crate) const SEND_MULTI: u8 = 0x0B;
    pub(crate) const FETCH_BUNDLE_V2: u8 = 0x0C;
    pub(crate) const BLOB_CREATE: u8 = 0x0D;
    pub(crate) const BLOB_PUT: u8 = 0x0E;
    pub(crate) const BLOB_STATUS: u8 = 0x0F;
    pub(crate) const BLOB_GET: u8 = 0x10;
    pub(crate) const BLOB_DONE: u8 = 0x11;
    pub(crate) const RESPONSE_BIT: u8 = 0x80;
    pub(crate) const PUSH_ENVELOPE: u8 = 0xC0;
    pub(crate) const PUSH_PREKEYS_LOW: u8 = 0xC1;
    pub(crate) const ERROR: u8 = 0xFF;
}

#[cfg(test)]
mod frame_size_tests {
    //! The lengths behind [`MIN_MAX_FRAME_SIZE`], against the encoders.

    use super::*;
    use sotto_core::{
        AccessVerifier, IdentityKeyPair, KemPreKey, KemPreKeyId, OneTimePreKey, OneTimePreKeyId,
        PreKeyBundle, SignedPreKey, SignedPreKeyId,
    };

    fn identity() -> IdentityKeyPair {
        IdentityKeyPair::from_seed(&[9; 32])
    }

    fn kem_key(id: &IdentityKeyPair) -> KemPreKey {
        KemPreKey::from_seed(KemPreKeyId::new(1), id, &[1; 64])
    }

    #[test]
    fn the_named_lengths_are_those_of_the_encodings() {
        let id = identity();
        let spk = SignedPreKey::from_private_bytes(SignedPreKeyId::new(1), &id, &[2; 32]);
        let opk = OneTimePreKey::from_private_bytes(OneTimePreKeyId::new(2), &[3; 32]);
        let bundle = PreKeyBundle::new_v2(&id, &spk, Some(&opk), &kem_key(&id));
        let response = Response::BundleV2(Box::new(bundle)).encode(u32::MAX);
        assert_eq!(response.len(), MAX_BUNDLE_V2_FRAME_LEN);
        assert_eq!(MAX_BUNDLE_V2_FRAME_LEN, 1428);

        let list = Response::DeviceList(vec![7; MAX_DEVICE_LIST_LEN]).encode(u32::MAX);
        assert_eq!(list.len(), MAX_DEVICE_LIST_FRAME_LEN);
        let publish = Request::PublishDeviceList {
            list: vec![7; MAX_DEVICE_LIST_LEN],
        };
        assert_eq!(publish.encode(u32::MAX).len(), MAX_DEVICE_LIST_FRAME_LEN);

        let error = Response::error(ErrorCode::Internal, "x".repeat(2 * MAX_ERROR_MESSAGE_LEN));
        assert_eq!(error.encode(u32::MAX).len(), MAX_ERROR_FRAME_LEN);

        let welcome = Response::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            max_frame_size: u32::MAX,
            server_id: "r".repeat(MAX_SERVER_ID_LEN),
            challenge: [0; CHALLENGE_LEN],
        });
        assert_eq!(welcome.encode(0).len(), MAX_WELCOME_FRAME_LEN);

        let upload = PreKeyUpload::new(Some(&spk), &[])
            .with_access_verifier(AccessVerifier::from_bytes([4; 32]))
            .with_signed_prekey_v2_only(true)
            .with_last_resort_kem_prekey(&kem_key(&id));
        let upload = Request::UploadPreKeys(upload).encode(u32::MAX);
        assert_eq!(upload.len(), MIN_V2_UPLOAD_FRAME_LEN);
        // The same with the KEM prekey as a one-time one.
        let one_time = PreKeyUpload::new(Some(&spk), &[])
            .with_access_verifier(AccessVerifier::from_bytes([4; 32]))
            .with_one_time_kem_prekeys(&[kem_key(&id)], false);
        assert_eq!(
            Request::UploadPreKeys(one_time).encode(1).len(),
            MIN_V2_UPLOAD_FRAME_LEN
        );
    }

    #[test]
    fn the_smallest_frame_limit_holds_every_answer_and_a_v2_upload() {
        assert_eq!(MIN_MAX_FRAME_SIZE, 2055);
        for len in [
            MAX_BUNDLE_V2_FRAME_LEN,
            MAX_DEVICE_LIST_FRAME_LEN,
            MAX_ERROR_FRAME_LEN,
            MAX_WELCOME_FRAME_LEN,
            MIN_V2_UPLOAD_FRAME_LEN,
        ] {
            assert!(len <= MIN_MAX_FRAME_SIZE as usize, "{len}");
        }
        // A v2 upload fits with its KEM prekey and no more: the largest
        // one-KEM-key upload and not much else.
        assert!(MIN_V2_UPLOAD_FRAME_LEN + KEM_PREKEY_WIRE_LEN > MIN_MAX_FRAME_SIZE as usize);
        // Everything else has a fixed length well below, or is sized to the
        // frame (`Envelopes`, pushes) or to its request (`SentMulti`).
        let stock = PreKeyStock {
            remaining: u32::MAX,
            threshold: u32::MAX,
            kem: Some(KemPreKeyStock {
                remaining: u32::MAX,
                threshold: u32::MAX,
            }),
        };
        let fixed = [
            Response::Authenticated(AuthInfo {
                address: crate::MailboxAddress::from_bytes([1; 32]),
                pending_envelopes: u32::MAX,
                pending_bytes: u64::MAX,
                prekeys: stock,
            })
            .encode(1),
            Response::PreKeyCount(stock).encode(1),
            Push::PreKeysLow(stock).encode(),
        ];
        for body in fixed {
            assert!(body.len() < MIN_MAX_FRAME_SIZE as usize);
        }
    }
}
