//! Frames a client sends.

use sotto_core::{
    AccessKey, AccessVerifier, KEM_PUBLIC_LEN, KemPreKey, KemPreKeyId, KemPublic, OneTimePreKey,
    OneTimePreKeyId, PreKeyPublic, Signature, SignedKemPreKey, SignedPreKey, SignedPreKeyId,
};

use super::codec::{Reader, header};
use super::frame_type as t;
use super::{
    BLOBS_VERSION, DecodeError, KEM_PREKEYS_VERSION, MAGIC, MAX_BLOB_TOKENS, MAX_MULTI_RECIPIENTS,
    MAX_OFFERED_VERSIONS, SEND_MULTI_VERSION,
};
use crate::address::MailboxAddress;
use crate::blob::{BlobId, BlobToken, BlobVerifier};
use crate::envelope::MessageId;

/// The public half of a signed prekey, as uploaded to the relay.
///
/// Built with [`new`](Self::new) or from a [`SignedPreKey`], so that a
/// field can be added without breaking callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignedPreKeyPublic {
    /// Prekey id.
    pub id: SignedPreKeyId,
    /// X25519 public key.
    pub public: PreKeyPublic,
    /// `Ed25519-Sign(IK, 0x05 || public)`.
    pub signature: Signature,
}

impl SignedPreKeyPublic {
    /// The public half with these parts (not checked: the relay checks the
    /// signature and the key when they are uploaded).
    pub fn new(id: SignedPreKeyId, public: PreKeyPublic, signature: Signature) -> Self {
        Self {
            id,
            public,
            signature,
        }
    }
}

impl From<&SignedPreKey> for SignedPreKeyPublic {
    fn from(key: &SignedPreKey) -> Self {
        Self::new(key.id(), *key.public(), *key.signature())
    }
}

/// The public half of a one-time prekey, as uploaded to the relay.
///
/// Built with [`new`](Self::new), from a [`OneTimePreKey`] or from an
/// `(id, key)` pair, so that a field can be added without breaking
/// callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct OneTimePreKeyPublic {
    /// Prekey id.
    pub id: OneTimePreKeyId,
    /// X25519 public key.
    pub public: PreKeyPublic,
}

impl OneTimePreKeyPublic {
    /// The public half with these parts (not checked: the relay checks the
    /// key when it is uploaded).
    pub fn new(id: OneTimePreKeyId, public: PreKeyPublic) -> Self {
        Self { id, public }
    }
}

impl From<&OneTimePreKey> for OneTimePreKeyPublic {
    fn from(key: &OneTimePreKey) -> Self {
        Self::new(key.id(), *key.public())
    }
}

/// The pairs a store hands out for upload
/// (`sotto_store::Store::fresh_one_time_prekeys`).
impl From<(OneTimePreKeyId, PreKeyPublic)> for OneTimePreKeyPublic {
    fn from((id, public): (OneTimePreKeyId, PreKeyPublic)) -> Self {
        Self::new(id, public)
    }
}

/// What an owner publishes in its prekey directory entry.
///
/// Built with [`new`](Self::new), [`from_public`](Self::from_public) or
/// [`default`](Self::default) and the `with_` methods, so that a field can
/// be added without breaking callers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PreKeyUpload {
    /// A new signed prekey, replacing the published one; `None` keeps it.
    pub signed_prekey: Option<SignedPreKeyPublic>,
    /// One-time prekeys to add (a stored key with the same id is replaced).
    pub one_time_prekeys: Vec<OneTimePreKeyPublic>,
    /// Delete every stored one-time prekey before adding these (for a client
    /// that lost the private halves of the ones it uploaded before).
    pub replace_one_time_prekeys: bool,
    /// The owner's access verifier, replacing the published one; `None`
    /// keeps it. Stored with the signed prekey, so it is sent only together
    /// with one (docs/relay.md §5).
    pub access_verifier: Option<AccessVerifier>,
    /// Protocol 4 ([`KEM_PREKEYS_VERSION`]): a new last-resort ML-KEM-768
    /// prekey, replacing the published one (served in a v2 bundle when no
    /// one-time KEM prekey is left); `None` keeps it.
    pub last_resort_kem_prekey: Option<SignedKemPreKey>,
    /// Protocol 4: one-time KEM prekeys to add (a stored key with the same
    /// id is replaced); each is handed out in at most one v2 bundle.
    pub one_time_kem_prekeys: Vec<SignedKemPreKey>,
    /// Protocol 4: delete every stored one-time KEM prekey before adding
    /// these.
    pub replace_one_time_kem_prekeys: bool,
    /// Protocol 4, only with a signed prekey: its signature is the
    /// "v2 only" one (`SignedPreKey::v2_only_signature`, docs/protocol.md
    /// §16.2): its owner speaks protocol v2 only, and its v2 bundles say
    /// so (`ProtocolVersions::V2_ONLY`). Without it a signed prekey is
    /// checked, and served, as one for versions 1 and 2.
    pub signed_prekey_v2_only: bool,
}

impl PreKeyUpload {
    /// An upload of a signed prekey and one-time prekeys from the core types.
    pub fn new(signed_prekey: Option<&SignedPreKey>, one_time_prekeys: &[OneTimePreKey]) -> Self {
        Self::from_public(
            signed_prekey.map(SignedPreKeyPublic::from),
            one_time_prekeys
                .iter()
                .map(OneTimePreKeyPublic::from)
                .collect(),
        )
    }

    /// An upload of public halves only (what a store hands out), adding the
    /// one-time prekeys to the stored ones.
    pub fn from_public(
        signed_prekey: Option<SignedPreKeyPublic>,
        one_time_prekeys: Vec<OneTimePreKeyPublic>,
    ) -> Self {
        Self {
            signed_prekey,
            one_time_prekeys,
            replace_one_time_prekeys: false,
            access_verifier: None,
            last_resort_kem_prekey: None,
            one_time_kem_prekeys: Vec::new(),
            replace_one_time_kem_prekeys: false,
            signed_prekey_v2_only: false,
        }
    }

    /// The same upload, also publishing `key` as the last-resort KEM
    /// prekey (protocol 4).
    pub fn with_last_resort_kem_prekey(mut self, key: &KemPreKey) -> Self {
        self.last_resort_kem_prekey = Some(key.signed_public());
        self
    }

    /// The same upload, also adding `keys` as one-time KEM prekeys
    /// (protocol 4); replacing the stored ones if `replace`.
    pub fn with_one_time_kem_prekeys(mut self, keys: &[KemPreKey], replace: bool) -> Self {
        self.one_time_kem_prekeys = keys.iter().map(KemPreKey::signed_public).collect();
        self.replace_one_time_kem_prekeys = replace;
        self
    }

    /// The same upload, its signed prekey marked as signed for protocol
    /// v2 only (protocol 4; see
    /// [`signed_prekey_v2_only`](Self::signed_prekey_v2_only)).
    pub fn with_signed_prekey_v2_only(mut self, v2_only: bool) -> Self {
        self.signed_prekey_v2_only = v2_only;
        self
    }

    /// Whether the upload carries anything of protocol 4's KEM prekey
    /// directory: it can only be sent on a connection that negotiated it.
    pub fn has_kem_part(&self) -> bool {
        self.last_resort_kem_prekey.is_some()
            || !self.one_time_kem_prekeys.is_empty()
            || self.replace_one_time_kem_prekeys
            || self.signed_prekey_v2_only
    }

    /// The same upload, replacing the stored one-time prekeys if `replace`
    /// (see [`replace_one_time_prekeys`](Self::replace_one_time_prekeys)).
    pub fn with_replace_one_time_prekeys(mut self, replace: bool) -> Self {
        self.replace_one_time_prekeys = replace;
        self
    }

    /// The same upload, also publishing `verifier` (only with a signed
    /// prekey).
    pub fn with_access_verifier(mut self, verifier: AccessVerifier) -> Self {
        self.access_verifier = Some(verifier);
        self
    }
}

/// Flag bits of `UploadPreKeys`.
mod upload_flags {
    /// A signed prekey follows.
    pub(super) const SIGNED_PREKEY: u8 = 0x01;
    /// Replace the stored one-time prekeys.
    pub(super) const REPLACE_ONE_TIME: u8 = 0x02;
    /// An access verifier follows the signed prekey.
    pub(super) const ACCESS_VERIFIER: u8 = 0x04;
    /// Protocol 4: the KEM part follows the one-time prekeys.
    pub(super) const KEM: u8 = 0x08;
}

/// Flag bits of the KEM part of `UploadPreKeys` (protocol 4).
mod kem_flags {
    /// A last-resort KEM prekey follows.
    pub(super) const LAST_RESORT: u8 = 0x01;
    /// Replace the stored one-time KEM prekeys.
    pub(super) const REPLACE_ONE_TIME: u8 = 0x02;
    /// The upload's signed prekey is signed for protocol v2 only.
    pub(super) const SIGNED_PREKEY_V2_ONLY: u8 = 0x04;
}

/// Bytes of one KEM prekey in an upload: `u32be(id) || ek(1184) ||
/// sig(64)`.
pub const KEM_PREKEY_WIRE_LEN: usize = 4 + KEM_PUBLIC_LEN + 64;

fn put_kem_prekey(out: &mut Vec<u8>, key: &SignedKemPreKey) {
    out.extend_from_slice(&key.id.get().to_be_bytes());
    out.extend_from_slice(key.key.as_bytes());
    out.extend_from_slice(key.signature.as_bytes());
}

/// Reads one KEM prekey; an encapsulation key that FIPS 203's input check
/// refuses is [`DecodeError::InvalidKemPreKey`] (the frame itself is well
/// formed: the relay refuses the upload and goes on).
fn get_kem_prekey(r: &mut Reader<'_>) -> Result<SignedKemPreKey, DecodeError> {
    let id = r.u32()?;
    let key = r.bytes(KEM_PUBLIC_LEN)?;
    let signature = Signature::from_bytes(r.array()?);
    let key = KemPublic::from_bytes(key).map_err(|_| DecodeError::InvalidKemPreKey { id })?;
    Ok(SignedKemPreKey {
        id: KemPreKeyId::new(id),
        key,
        signature,
    })
}

/// Flag bit of `Send` and of each `SendMulti` recipient: an access key
/// follows.
const SEND_WITH_ACCESS_KEY: u8 = 0x01;

/// One recipient of a [`Request::SendMulti`]: what a `Send` to it would
/// carry besides the envelope, and the header that goes in front of the
/// shared body.
///
/// The relay queues `header || body` for `address` exactly as if a `Send`
/// with this message id and access key had carried it. Built with
/// [`new`](Self::new), so that a field can be added without breaking
/// callers. `Debug` shows the header's length, not its bytes.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MultiRecipient {
    /// The recipient's mailbox.
    pub address: MailboxAddress,
    /// Sender-chosen dedupe id, per recipient as for `Send`.
    pub message_id: MessageId,
    /// The recipient's access key, if the sender has it (docs/relay.md
    /// §6, "Access"; without it, or with a wrong one, the envelope is a
    /// first contact).
    pub access_key: Option<AccessKey>,
    /// What this recipient's envelope starts with (at most 65 535 bytes;
    /// may be empty).
    pub header: Vec<u8>,
}

impl MultiRecipient {
    /// A recipient with these parts.
    pub fn new(
        address: MailboxAddress,
        message_id: MessageId,
        access_key: Option<AccessKey>,
        header: Vec<u8>,
    ) -> Self {
        Self {
            address,
            message_id,
            access_key,
            header,
        }
    }

    /// Bytes this recipient takes in a `SendMulti` body: `address(32) ||
    /// message_id(16) || flags(1) || [access_key(16)] || u16be(len) ||
    /// header`.
    pub fn encoded_len(&self) -> usize {
        let key = if self.access_key.is_some() { 16 } else { 0 };
        32 + 16 + 1 + key + 2 + self.header.len()
    }
}

impl core::fmt::Debug for MultiRecipient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Like `Envelope`: never the bytes of what is sent.
        f.debug_struct("MultiRecipient")
            .field("address", &self.address)
            .field("message_id", &self.message_id)
            .field("access_key", &self.access_key.is_some())
            .field("header_len", &self.header.len())
            .finish()
    }
}

/// The length of a `SendMulti` frame body (what the relay compares with
/// its `max_frame_size`) for a body of `body_len` bytes and these
/// recipients: `type(1) || request_id(4) || u16be(n) || recipients ||
/// u32be(body_len) || body`.
pub fn send_multi_frame_len(body_len: usize, recipients: &[MultiRecipient]) -> usize {
    let recipients: usize = recipients.iter().map(MultiRecipient::encoded_len).sum();
    5 + 2 + recipients + 4 + body_len
}

/// Writes `flags(u8) || [access_key(16)]`, as `Send` and each `SendMulti`
/// recipient carry them.
fn put_access_key(out: &mut Vec<u8>, access_key: Option<&AccessKey>) {
    match access_key {
        Some(key) => {
            out.push(SEND_WITH_ACCESS_KEY);
            out.extend_from_slice(key.as_bytes());
        }
        None => out.push(0),
    }
}

/// Reads `flags(u8) || [access_key(16)]`; flag bits other than bit 0 are
/// refused as `field`.
fn get_access_key(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<Option<AccessKey>, DecodeError> {
    let flags = r.u8()?;
    if flags & !SEND_WITH_ACCESS_KEY != 0 {
        return Err(DecodeError::InvalidField(field));
    }
    Ok(if flags & SEND_WITH_ACCESS_KEY != 0 {
        Some(AccessKey::from_bytes(r.array()?))
    } else {
        None
    })
}

/// Writes the KEM part of an upload: `kem_flags(u8) || [last_resort] ||
/// u16be(m) || m × kem_prekey`.
fn put_kem_part(out: &mut Vec<u8>, upload: &PreKeyUpload) {
    let mut flags = 0u8;
    if upload.last_resort_kem_prekey.is_some() {
        flags |= kem_flags::LAST_RESORT;
    }
    if upload.replace_one_time_kem_prekeys {
        flags |= kem_flags::REPLACE_ONE_TIME;
    }
    if upload.signed_prekey_v2_only {
        flags |= kem_flags::SIGNED_PREKEY_V2_ONLY;
    }
    out.push(flags);
    if let Some(key) = &upload.last_resort_kem_prekey {
        put_kem_prekey(out, key);
    }
    let m = upload.one_time_kem_prekeys.len().min(usize::from(u16::MAX));
    out.reserve(2 + m * KEM_PREKEY_WIRE_LEN);
    out.extend_from_slice(&(m as u16).to_be_bytes());
    for key in upload.one_time_kem_prekeys.iter().take(m) {
        put_kem_prekey(out, key);
    }
}

/// A request (client to relay).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// `0x00`, first frame only: `"SOTR" || u8(n) || n × u16be(version)`,
    /// `1 <= n <= 16`.
    Hello {
        /// Offered versions.
        versions: Vec<u16>,
    },
    /// `0x01`: `IK(32) || signature(64)` over
    /// [`auth_message`](super::auth_message).
    Authenticate {
        /// The owner's Ed25519 identity public key.
        identity_key: [u8; 32],
        /// Signature over the challenge message.
        signature: Signature,
    },
    /// `0x02` (authenticated): `flags(u8) || [u32be(spk_id) || SPK(32) ||
    /// sig(64)] || [verifier(32)] || u16be(n) || n × (u32be(id) || OPK(32))
    /// || [kem part]`. Flag bit 0: a signed prekey follows; bit 1: replace
    /// the stored one-time prekeys; bit 2 (only with bit 0): an access
    /// verifier follows; bit 3 (protocol 4 only): the KEM part follows,
    /// `kem_flags(u8) || [kem_prekey] || u16be(m) || m × kem_prekey`, each
    /// `kem_prekey = u32be(id) || ek(1184) || sig(64)`; KEM flag bit 0: a
    /// last-resort KEM prekey follows; bit 1: replace the stored one-time
    /// KEM prekeys; bit 2 (only with a signed prekey): the signed prekey
    /// is signed for protocol v2 only.
    UploadPreKeys(PreKeyUpload),
    /// `0x03`: `address(32)`.
    FetchBundle {
        /// Whose bundle.
        address: MailboxAddress,
    },
    /// `0x0C` (protocol version 4, [`KEM_PREKEYS_VERSION`]): `address(32)`.
    /// Like `FetchBundle`, and if the owner published KEM prekeys the
    /// answer is a v2 bundle: with one one-time KEM prekey, removed as the
    /// one-time prekey is, or the last-resort one when none is left.
    FetchBundleV2 {
        /// Whose bundle.
        address: MailboxAddress,
    },
    /// `0x04`: `recipient(32) || message_id(16) || flags(u8) ||
    /// [access_key(16)] || payload(rest)`. Flag bit 0: an access key
    /// follows.
    Send {
        /// Recipient mailbox.
        recipient: MailboxAddress,
        /// Sender-chosen dedupe id.
        message_id: MessageId,
        /// The recipient's access key, if the sender has it (docs/relay.md
        /// §6: without it, or with a wrong one, the envelope counts against
        /// the mailbox's first-contact allowance).
        access_key: Option<AccessKey>,
        /// Opaque bytes (at least one).
        payload: Vec<u8>,
    },
    /// `0x05` (authenticated): `u64be(after) || u16be(max_count)`: queued
    /// envelopes with id greater than `after`, oldest first.
    Fetch {
        /// Only envelopes with a larger id.
        after: u64,
        /// At most this many (0: the relay's page size).
        max_count: u16,
    },
    /// `0x06` (authenticated): `u16be(n) || n × u64be(id)`.
    Ack {
        /// Envelope ids to delete from the caller's own mailbox.
        ids: Vec<u64>,
    },
    /// `0x07` (authenticated): empty. How many one-time prekeys are left.
    PreKeyCount,
    /// `0x08`: empty. Keeps the connection alive.
    Ping,
    /// `0x09` (authenticated): `u16be(len) || list`: the signed device
    /// list of the connection's own account (1 to
    /// [`MAX_DEVICE_LIST_LEN`](super::MAX_DEVICE_LIST_LEN) bytes). The
    /// relay keeps the one with the highest version.
    PublishDeviceList {
        /// The signed list (docs/protocol.md, section 12).
        list: Vec<u8>,
    },
    /// `0x0A`: `address(32)`: the device list published for that mailbox.
    FetchDeviceList {
        /// Whose list (the account key's mailbox).
        address: MailboxAddress,
    },
    /// `0x0B` (protocol version 3, [`SEND_MULTI_VERSION`]): `u16be(n) ||
    /// n × recipient || u32be(body_len) || body`, each recipient
    /// `address(32) || message_id(16) || flags(u8) || [access_key(16)] ||
    /// u16be(header_len) || header`, `1 <= n <=`
    /// [`MAX_MULTI_RECIPIENTS`]. Queues `header || body` for each
    /// recipient as a `Send` would; the body travels once.
    SendMulti {
        /// Who gets an envelope, in the order the answer lists them.
        recipients: Vec<MultiRecipient>,
        /// What every envelope ends with.
        body: Vec<u8>,
    },
    /// `0x0D` (protocol 5, [`BLOBS_VERSION`], authenticated):
    /// `u64be(total_len) || u32be(ttl_secs) || u8(n) || n × verifier(32)`,
    /// `1 <= n <=` [`MAX_BLOB_TOKENS`]. Creates an empty blob of
    /// `total_len` bytes owned by the connection's mailbox; answered
    /// `BlobCreated` with the id the relay drew.
    BlobCreate {
        /// The blob's length.
        total_len: u64,
        /// Seconds until the relay deletes it, complete or not.
        ttl_secs: u32,
        /// One [verifier](BlobToken::verifier) per recipient.
        verifiers: Vec<BlobVerifier>,
    },
    /// `0x0E` (protocol 5, authenticated as the uploader): `blob_id(16) ||
    /// u64be(offset) || data(rest)`. Appends `data` if `offset` is what is
    /// stored; an `offset` below it is a resend, answered without writing.
    BlobPut {
        /// The blob.
        id: BlobId,
        /// Where `data` starts in the blob.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// `0x0F` (protocol 5): `blob_id(16) || u8(has_token) || [token(32)]`:
    /// how much of the blob is stored. For its uploader (authenticated) or
    /// the holder of one of its tokens.
    BlobStatus {
        /// The blob.
        id: BlobId,
        /// One of its tokens, unless asked by the uploader.
        token: Option<BlobToken>,
    },
    /// `0x10` (protocol 5): `blob_id(16) || token(32) || u64be(offset) ||
    /// u32be(max_len)`: up to `max_len` bytes of a complete blob from
    /// `offset`.
    BlobGet {
        /// The blob.
        id: BlobId,
        /// One of its tokens.
        token: BlobToken,
        /// The first byte wanted.
        offset: u64,
        /// At most this many (and at most what fits in a frame).
        max_len: u32,
    },
    /// `0x11` (protocol 5): `blob_id(16) || token(32)`: the holder of
    /// `token` has the blob. Once every token is done the blob is deleted.
    BlobDone {
        /// The blob.
        id: BlobId,
        /// One of its tokens.
        token: BlobToken,
    },
}

/// A request with its id, as carried in one frame body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFrame {
    /// Echoed in the response.
    pub request_id: u32,
    /// The request.
    pub request: Request,
}

/// A request body that does not parse, with the request id if it could be
/// read (0 otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestDecodeError {
    pub(crate) request_id: u32,
    pub(crate) error: DecodeError,
}

impl Request {
    /// The frame body of this request with `request_id`.
    pub fn encode(&self, request_id: u32) -> Vec<u8> {
        match self {
            Self::Hello { versions } => {
                let mut out = header(t::HELLO, request_id, 5 + 2 * versions.len());
                out.extend_from_slice(&MAGIC);
                out.push(versions.len().min(usize::from(u8::MAX)) as u8);
                for v in versions.iter().take(usize::from(u8::MAX)) {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                out
            }
            Self::Authenticate {
                identity_key,
                signature,
            } => {
                let mut out = header(t::AUTHENTICATE, request_id, 96);
                out.extend_from_slice(identity_key);
                out.extend_from_slice(signature.as_bytes());
                out
            }
            Self::UploadPreKeys(upload) => {
                let n = upload.one_time_prekeys.len().min(usize::from(u16::MAX));
                let mut out = header(t::UPLOAD_PREKEYS, request_id, 135 + 36 * n);
                let mut flags = 0u8;
                if upload.signed_prekey.is_some() {
                    flags |= upload_flags::SIGNED_PREKEY;
                }
                if upload.replace_one_time_prekeys {
                    flags |= upload_flags::REPLACE_ONE_TIME;
                }
                if upload.access_verifier.is_some() {
                    flags |= upload_flags::ACCESS_VERIFIER;
                }
                if upload.has_kem_part() {
                    flags |= upload_flags::KEM;
                }
                out.push(flags);
                if let Some(spk) = &upload.signed_prekey {
                    out.extend_from_slice(&spk.id.get().to_be_bytes());
                    out.extend_from_slice(spk.public.as_bytes());
                    out.extend_from_slice(spk.signature.as_bytes());
                }
                if let Some(verifier) = &upload.access_verifier {
                    out.extend_from_slice(verifier.as_bytes());
                }
                out.extend_from_slice(&(n as u16).to_be_bytes());
                for opk in upload.one_time_prekeys.iter().take(n) {
                    out.extend_from_slice(&opk.id.get().to_be_bytes());
                    out.extend_from_slice(opk.public.as_bytes());
                }
                if upload.has_kem_part() {
                    put_kem_part(&mut out, upload);
                }
                out
            }
            Self::FetchBundle { address } => {
                let mut out = header(t::FETCH_BUNDLE, request_id, 32);
                out.extend_from_slice(address.as_bytes());
                out
            }
            Self::FetchBundleV2 { address } => {
                let mut out = header(t::FETCH_BUNDLE_V2, request_id, 32);
                out.extend_from_slice(address.as_bytes());
                out
            }
            Self::Send {
                recipient,
                message_id,
                access_key,
                payload,
            } => {
                let mut out = header(t::SEND, request_id, 65 + payload.len());
                out.extend_from_slice(recipient.as_bytes());
                out.extend_from_slice(&message_id.0);
                put_access_key(&mut out, access_key.as_ref());
                out.extend_from_slice(payload);
                out
            }
            Self::SendMulti { recipients, body } => {
                // Longer lists, headers and bodies than the fields can
                // say are cut (the client refuses them before encoding).
                let recipients = &recipients[..recipients.len().min(usize::from(u16::MAX))];
                let body = &body[..body.len().min(u32::MAX as usize)];
                let len = send_multi_frame_len(body.len(), recipients);
                let mut out = header(t::SEND_MULTI, request_id, len.saturating_sub(5));
                out.extend_from_slice(&(recipients.len() as u16).to_be_bytes());
                for recipient in recipients {
                    out.extend_from_slice(recipient.address.as_bytes());
                    out.extend_from_slice(&recipient.message_id.0);
                    put_access_key(&mut out, recipient.access_key.as_ref());
                    let head =
                        &recipient.header[..recipient.header.len().min(usize::from(u16::MAX))];
                    out.extend_from_slice(&(head.len() as u16).to_be_bytes());
                    out.extend_from_slice(head);
                }
                out.extend_from_slice(&(body.len() as u32).to_be_bytes());
                out.extend_from_slice(body);
                out
            }
            Self::Fetch { after, max_count } => {
                let mut out = header(t::FETCH, request_id, 10);
                out.extend_from_slice(&after.to_be_bytes());
                out.extend_from_slice(&max_count.to_be_bytes());
                out
            }
            Self::Ack { ids } => {
                let n = ids.len().min(usize::from(u16::MAX));
                let mut out = header(t::ACK, request_id, 2 + 8 * n);
                out.extend_from_slice(&(n as u16).to_be_bytes());
                for id in ids.iter().take(n) {
                    out.extend_from_slice(&id.to_be_bytes());
                }
                out
            }
            Self::PreKeyCount => header(t::PREKEY_COUNT, request_id, 0),
            Self::Ping => header(t::PING, request_id, 0),
            Self::PublishDeviceList { list } => {
                let mut out = header(t::PUBLISH_DEVICE_LIST, request_id, 2 + list.len());
                super::put_device_list(&mut out, list);
                out
            }
            Self::FetchDeviceList { address } => {
                let mut out = header(t::FETCH_DEVICE_LIST, request_id, 32);
                out.extend_from_slice(address.as_bytes());
                out
            }
            Self::BlobCreate {
                total_len,
                ttl_secs,
                verifiers,
            } => {
                // More verifiers than the count can say are cut (the
                // client refuses more than 64 before encoding).
                let n = verifiers.len().min(usize::from(u8::MAX));
                let mut out = header(t::BLOB_CREATE, request_id, 13 + 32 * n);
                out.extend_from_slice(&total_len.to_be_bytes());
                out.extend_from_slice(&ttl_secs.to_be_bytes());
                out.push(n as u8);
                for verifier in verifiers.iter().take(n) {
                    out.extend_from_slice(verifier);
                }
                out
            }
            Self::BlobPut { id, offset, data } => {
                let mut out = header(t::BLOB_PUT, request_id, 24 + data.len());
                out.extend_from_slice(&id.0);
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(data);
                out
            }
            Self::BlobStatus { id, token } => {
                let mut out = header(t::BLOB_STATUS, request_id, 49);
                out.extend_from_slice(&id.0);
                match token {
                    Some(token) => {
                        out.push(1);
                        out.extend_from_slice(token.as_bytes());
                    }
                    None => out.push(0),
                }
                out
            }
            Self::BlobGet {
                id,
                token,
                offset,
                max_len,
            } => {
                let mut out = header(t::BLOB_GET, request_id, 60);
                out.extend_from_slice(&id.0);
                out.extend_from_slice(token.as_bytes());
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(&max_len.to_be_bytes());
                out
            }
            Self::BlobDone { id, token } => {
                let mut out = header(t::BLOB_DONE, request_id, 48);
                out.extend_from_slice(&id.0);
                out.extend_from_slice(token.as_bytes());
                out
            }
        }
    }
}

/// Reads a token, leaving no copy of it behind in the reader's stack
/// frame.
fn get_token(r: &mut Reader<'_>) -> Result<BlobToken, DecodeError> {
    let mut bytes = r.array::<32>()?;
    let token = BlobToken::from_bytes(bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    Ok(token)
}

impl RequestFrame {
    /// Strictly parses a request frame body, as defined in the newest
    /// protocol version.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_with_id(body, None).map_err(|e| e.error)
    }

    /// Parses a request frame body on a connection that negotiated
    /// `version` (`None`: before `Hello`, where every type parses): a type
    /// that version does not define is [`DecodeError::UnknownType`].
    pub(crate) fn decode_with_id(
        body: &[u8],
        version: Option<u16>,
    ) -> Result<Self, RequestDecodeError> {
        let mut r = Reader::new(body);
        let (frame_type, request_id) = match (r.u8(), r.u32()) {
            (Ok(ty), Ok(id)) => (ty, id),
            (Err(error), _) | (_, Err(error)) => {
                return Err(RequestDecodeError {
                    request_id: 0,
                    error,
                });
            }
        };
        if !defined_in(frame_type, version) {
            return Err(RequestDecodeError {
                request_id,
                error: DecodeError::UnknownType(frame_type),
            });
        }
        decode_body(frame_type, version, r)
            .map(|request| Self {
                request_id,
                request,
            })
            .map_err(|error| RequestDecodeError { request_id, error })
    }
}

/// Whether protocol `version` defines request type `frame_type` (every
/// type the decoder knows, before a version is negotiated).
fn defined_in(frame_type: u8, version: Option<u16>) -> bool {
    match (frame_type, version) {
        (t::SEND_MULTI, Some(version)) => version >= SEND_MULTI_VERSION,
        (t::FETCH_BUNDLE_V2, Some(version)) => version >= KEM_PREKEYS_VERSION,
        (t::BLOB_CREATE | t::BLOB_PUT | t::BLOB_STATUS | t::BLOB_GET | t::BLOB_DONE, Some(v)) => {
            v >= BLOBS_VERSION
        }
        _ => true,
    }
}

fn decode_body(
    frame_type: u8,
    version: Option<u16>,
    mut r: Reader<'_>,
) -> Result<Request, DecodeError> {
    let request = match frame_type {
        t::HELLO => {
            if r.array::<4>()? != MAGIC {
                return Err(DecodeError::InvalidField("magic"));
            }
            let n = usize::from(r.u8()?);
            if n == 0 || n > MAX_OFFERED_VERSIONS {
                return Err(DecodeError::InvalidField("version count"));
            }
            let versions = (0..n).map(|_| r.u16()).collect::<Result<_, _>>()?;
            Request::Hello { versions }
        }
        t::AUTHENTICATE => Request::Authenticate {
            identity_key: r.array()?,
            signature: Signature::from_bytes(r.array()?),
        },
        t::UPLOAD_PREKEYS => {
            let flags = r.u8()?;
            let mut known = upload_flags::SIGNED_PREKEY
                | upload_flags::REPLACE_ONE_TIME
                | upload_flags::ACCESS_VERIFIER;
            // The KEM part is protocol 4's: an older connection refuses
            // the bit as a relay that predates it does.
            if version.is_none_or(|v| v >= KEM_PREKEYS_VERSION) {
                known |= upload_flags::KEM;
            }
            // The verifier is stored with the signed prekey: never alone.
            let verifier_alone = flags & upload_flags::ACCESS_VERIFIER != 0
                && flags & upload_flags::SIGNED_PREKEY == 0;
            if flags & !known != 0 || verifier_alone {
                return Err(DecodeError::InvalidField("upload flags"));
            }
            let signed_prekey = if flags & upload_flags::SIGNED_PREKEY != 0 {
                Some(SignedPreKeyPublic::new(
                    SignedPreKeyId::new(r.u32()?),
                    PreKeyPublic::from_bytes(r.array()?),
                    Signature::from_bytes(r.array()?),
                ))
            } else {
                None
            };
            let access_verifier = if flags & upload_flags::ACCESS_VERIFIER != 0 {
                Some(AccessVerifier::from_bytes(r.array()?))
            } else {
                None
            };
            let n = usize::from(r.u16()?);
            let with_kem = flags & upload_flags::KEM != 0;
            let fits = if with_kem {
                r.remaining() >= n * 36
            } else {
                r.remaining() == n * 36
            };
            if !fits {
                return Err(DecodeError::InvalidField("one-time prekey count"));
            }
            let mut one_time_prekeys = Vec::with_capacity(n);
            for _ in 0..n {
                one_time_prekeys.push(OneTimePreKeyPublic::new(
                    OneTimePreKeyId::new(r.u32()?),
                    PreKeyPublic::from_bytes(r.array()?),
                ));
            }
            let mut upload = PreKeyUpload {
                signed_prekey,
                one_time_prekeys,
                replace_one_time_prekeys: flags & upload_flags::REPLACE_ONE_TIME != 0,
                access_verifier,
                ..PreKeyUpload::default()
            };
            if with_kem {
                get_kem_part(&mut r, &mut upload)?;
            }
            Request::UploadPreKeys(upload)
        }
        t::FETCH_BUNDLE => Request::FetchBundle {
            address: MailboxAddress::from_bytes(r.array()?),
        },
        t::FETCH_BUNDLE_V2 => Request::FetchBundleV2 {
            address: MailboxAddress::from_bytes(r.array()?),
        },
        t::SEND => {
            let recipient = MailboxAddress::from_bytes(r.array()?);
            let message_id = MessageId(r.array()?);
            let access_key = get_access_key(&mut r, "send flags")?;
            Request::Send {
                recipient,
                message_id,
                access_key,
                payload: r.rest().to_vec(),
            }
        }
        t::FETCH => Request::Fetch {
            after: r.u64()?,
            max_count: r.u16()?,
        },
        t::ACK => {
            let n = usize::from(r.u16()?);
            if r.remaining() != n * 8 {
                return Err(DecodeError::InvalidField("ack count"));
            }
            let ids = (0..n).map(|_| r.u64()).collect::<Result<_, _>>()?;
            Request::Ack { ids }
        }
        t::PREKEY_COUNT => Request::PreKeyCount,
        t::PING => Request::Ping,
        t::PUBLISH_DEVICE_LIST => Request::PublishDeviceList {
            list: super::get_device_list(&mut r)?,
        },
        t::FETCH_DEVICE_LIST => Request::FetchDeviceList {
            address: MailboxAddress::from_bytes(r.array()?),
        },
        t::SEND_MULTI => {
            let n = usize::from(r.u16()?);
            if n == 0 {
                return Err(DecodeError::InvalidField("recipient count"));
            }
            // Refused before anything is allocated for the recipients.
            if n > MAX_MULTI_RECIPIENTS {
                return Err(DecodeError::TooManyRecipients {
                    count: n,
                    max: MAX_MULTI_RECIPIENTS,
                });
            }
            let mut recipients = Vec::with_capacity(n);
            for _ in 0..n {
                let address = MailboxAddress::from_bytes(r.array()?);
                let message_id = MessageId(r.array()?);
                let access_key = get_access_key(&mut r, "recipient flags")?;
                let len = usize::from(r.u16()?);
                let header = r.bytes(len)?.to_vec();
                recipients.push(MultiRecipient::new(address, message_id, access_key, header));
            }
            let len = r.u32()? as usize;
            let body = r.bytes(len)?.to_vec();
            Request::SendMulti { recipients, body }
        }
        t::BLOB_CREATE => {
            let total_len = r.u64()?;
            let ttl_secs = r.u32()?;
            let n = usize::from(r.u8()?);
            if n == 0 || n > MAX_BLOB_TOKENS || r.remaining() != 32 * n {
                return Err(DecodeError::InvalidField("blob token count"));
            }
            let verifiers = (0..n).map(|_| r.array()).collect::<Result<_, _>>()?;
            Request::BlobCreate {
                total_len,
                ttl_secs,
                verifiers,
            }
        }
        t::BLOB_PUT => Request::BlobPut {
            id: BlobId(r.array()?),
            offset: r.u64()?,
            data: r.rest().to_vec(),
        },
        t::BLOB_STATUS => {
            let id = BlobId(r.array()?);
            let token = if r.flag("blob token flag")? {
                Some(get_token(&mut r)?)
            } else {
                None
            };
            Request::BlobStatus { id, token }
        }
        t::BLOB_GET => Request::BlobGet {
            id: BlobId(r.array()?),
            token: get_token(&mut r)?,
            offset: r.u64()?,
            max_len: r.u32()?,
        },
        t::BLOB_DONE => Request::BlobDone {
            id: BlobId(r.array()?),
            token: get_token(&mut r)?,
        },
        other => return Err(DecodeError::UnknownType(other)),
    };
    r.finish()?;
    Ok(request)
}

/// Reads the KEM part of an upload into `upload`.
fn get_kem_part(r: &mut Reader<'_>, upload: &mut PreKeyUpload) -> Result<(), DecodeError> {
    let flags = r.u8()?;
    let known =
        kem_flags::LAST_RESORT | kem_flags::REPLACE_ONE_TIME | kem_flags::SIGNED_PREKEY_V2_ONLY;
    let v2_only = flags & kem_flags::SIGNED_PREKEY_V2_ONLY != 0;
    if flags & !known != 0 || (v2_only && upload.signed_prekey.is_none()) {
        return Err(DecodeError::InvalidField("KEM upload flags"));
    }
    if flags & kem_flags::LAST_RESORT != 0 {
        upload.last_resort_kem_prekey = Some(get_kem_prekey(r)?);
    }
    let m = usize::from(r.u16()?);
    if r.remaining() != m * KEM_PREKEY_WIRE_LEN {
        return Err(DecodeError::InvalidField("one-time KEM prekey count"));
    }
    upload.one_time_kem_prekeys.reserve_exact(m);
    for _ in 0..m {
        upload.one_time_kem_prekeys.push(get_kem_prekey(r)?);
    }
    upload.replace_one_time_kem_prekeys = flags & kem_flags::REPLACE_ONE_TIME != 0;
    upload.signed_prekey_v2_only = v2_only;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_requests() -> Vec<Request> {
        vec![
            Request::Hello {
                versions: vec![1, 2],
            },
            Request::Authenticate {
                identity_key: [1; 32],
                signature: Signature::from_bytes([2; 64]),
            },
            Request::UploadPreKeys(PreKeyUpload {
                signed_prekey: Some(SignedPreKeyPublic::new(
                    SignedPreKeyId::new(5),
                    PreKeyPublic::from_bytes([3; 32]),
                    Signature::from_bytes([4; 64]),
                )),
                one_time_prekeys: vec![
                    OneTimePreKeyPublic::new(
                        OneTimePreKeyId::new(1),
                        PreKeyPublic::from_bytes([5; 32]),
                    ),
                    OneTimePreKeyPublic::new(
                        OneTimePreKeyId::new(2),
                        PreKeyPublic::from_bytes([6; 32]),
                    ),
                ],
                replace_one_time_prekeys: true,
                access_verifier: Some(AccessVerifier::from_bytes([10; 32])),
                ..PreKeyUpload::default()
            }),
            Request::UploadPreKeys(PreKeyUpload::default()),
            Request::UploadPreKeys(kem_upload()),
            Request::UploadPreKeys(
                PreKeyUpload::default().with_one_time_kem_prekeys(&kem_keys(1), true),
            ),
            Request::FetchBundleV2 {
                address: MailboxAddress::from_bytes([7; 32]),
            },
            Request::FetchBundle {
                address: MailboxAddress::from_bytes([7; 32]),
            },
            Request::Send {
                recipient: MailboxAddress::from_bytes([8; 32]),
                message_id: MessageId([9; 16]),
                access_key: None,
                payload: b"opaque".to_vec(),
            },
            Request::Send {
                recipient: MailboxAddress::from_bytes([8; 32]),
                message_id: MessageId([9; 16]),
                access_key: Some(AccessKey::from_bytes([11; 16])),
                payload: b"opaque".to_vec(),
            },
            Request::Fetch {
                after: 42,
                max_count: 10,
            },
            Request::Ack { ids: vec![1, 2, 3] },
            Request::PreKeyCount,
            Request::Ping,
            Request::PublishDeviceList { list: vec![1; 100] },
            Request::FetchDeviceList {
                address: MailboxAddress::from_bytes([12; 32]),
            },
            Request::SendMulti {
                recipients: multi_recipients(),
                body: b"shared body".to_vec(),
            },
            // One recipient, an empty header and an empty body: still
            // every field is there.
            Request::SendMulti {
                recipients: vec![MultiRecipient::new(
                    MailboxAddress::from_bytes([15; 32]),
                    MessageId([16; 16]),
                    None,
                    Vec::new(),
                )],
                body: Vec::new(),
            },
            Request::BlobCreate {
                total_len: 5 << 30,
                ttl_secs: 86_400,
                verifiers: vec![[20; 32], [21; 32]],
            },
            Request::BlobPut {
                id: BlobId([22; 16]),
                offset: 1 << 33,
                data: vec![23; 100],
            },
            Request::BlobStatus {
                id: BlobId([24; 16]),
                token: None,
            },
            Request::BlobStatus {
                id: BlobId([24; 16]),
                token: Some(BlobToken::from_bytes([25; 32])),
            },
            Request::BlobGet {
                id: BlobId([26; 16]),
                token: BlobToken::from_bytes([27; 32]),
                offset: 7,
                max_len: 1 << 20,
            },
            Request::BlobDone {
                id: BlobId([28; 16]),
                token: BlobToken::from_bytes([29; 32]),
            },
        ]
    }

    fn is_blob_request(request: &Request) -> bool {
        matches!(
            request,
            Request::BlobCreate { .. }
                | Request::BlobPut { .. }
                | Request::BlobStatus { .. }
                | Request::BlobGet { .. }
                | Request::BlobDone { .. }
        )
    }

    #[test]
    fn blob_requests_are_unknown_before_version_5() {
        for version in [2, 3, 4] {
            for request in all_requests().iter().filter(|r| is_blob_request(r)) {
                let err =
                    RequestFrame::decode_with_id(&request.encode(9), Some(version)).unwrap_err();
                assert_eq!(err.request_id, 9);
                assert!(matches!(err.error, DecodeError::UnknownType(0x0D..=0x11)));
                let ok = RequestFrame::decode_with_id(&request.encode(9), Some(5)).unwrap();
                assert_eq!(&ok.request, request);
            }
        }
    }

    #[test]
    fn a_blob_needs_one_to_64_tokens_as_its_count_says() {
        let create = |n: usize| Request::BlobCreate {
            total_len: 1,
            ttl_secs: 1,
            verifiers: vec![[1; 32]; n],
        };
        assert!(RequestFrame::decode(&create(64).encode(1)).is_ok());
        for n in [0, 65] {
            assert_eq!(
                RequestFrame::decode(&create(n).encode(1)),
                Err(DecodeError::InvalidField("blob token count")),
                "{n}"
            );
        }
        let mut body = create(2).encode(1);
        body[17] = 3;
        assert!(RequestFrame::decode(&body).is_err());
        let mut status = Request::BlobStatus {
            id: BlobId([1; 16]),
            token: None,
        }
        .encode(1);
        status[21] = 2;
        assert!(RequestFrame::decode(&status).is_err());
    }

    fn kem_keys(n: u32) -> Vec<KemPreKey> {
        let identity = sotto_core::IdentityKeyPair::from_seed(&[1; 32]);
        (0..n)
            .map(|i| KemPreKey::from_seed(KemPreKeyId::new(i), &identity, &[i as u8; 64]))
            .collect()
    }

    /// An upload with every part of protocol 4's.
    fn kem_upload() -> PreKeyUpload {
        let keys = kem_keys(3);
        PreKeyUpload::from_public(
            Some(SignedPreKeyPublic::new(
                SignedPreKeyId::new(5),
                PreKeyPublic::from_bytes([3; 32]),
                Signature::from_bytes([4; 64]),
            )),
            vec![OneTimePreKeyPublic::new(
                OneTimePreKeyId::new(1),
                PreKeyPublic::from_bytes([5; 32]),
            )],
        )
        .with_last_resort_kem_prekey(&keys[0])
        .with_one_time_kem_prekeys(&keys[1..], false)
        .with_signed_prekey_v2_only(true)
    }

    /// Whether `request` is defined in protocol 4 only.
    fn is_kem_request(request: &Request) -> bool {
        match request {
            Request::FetchBundleV2 { .. } => true,
            Request::UploadPreKeys(upload) => upload.has_kem_part(),
            _ => false,
        }
    }

    #[test]
    fn kem_parts_are_unknown_before_version_4_and_bad_kem_keys_are_named() {
        for version in [2, 3] {
            for request in all_requests().iter().filter(|r| is_kem_request(r)) {
                let err =
                    RequestFrame::decode_with_id(&request.encode(4), Some(version)).unwrap_err();
                assert_eq!(err.request_id, 4);
                assert!(
                    matches!(
                        err.error,
                        DecodeError::UnknownType(0x0C) | DecodeError::InvalidField("upload flags")
                    ),
                    "{err:?}"
                );
            }
        }
        // An upload without a KEM part is the same in every version.
        let plain = Request::UploadPreKeys(PreKeyUpload::default()).encode(1);
        assert!(RequestFrame::decode_with_id(&plain, Some(2)).is_ok());
        // A KEM key failing FIPS 203's check: the frame is well formed, the
        // key's id is named.
        let mut body = Request::UploadPreKeys(
            PreKeyUpload::default().with_one_time_kem_prekeys(&kem_keys(2), false),
        )
        .encode(1);
        let second_key = body.len() - KEM_PREKEY_WIRE_LEN + 4;
        body[second_key] = 0xff;
        body[second_key + 1] |= 0x0f;
        assert_eq!(
            RequestFrame::decode_with_id(&body, Some(4))
                .unwrap_err()
                .error,
            DecodeError::InvalidKemPreKey { id: 1 }
        );
        // The v2-only mark needs a signed prekey.
        let mut body = Request::UploadPreKeys(
            PreKeyUpload::default().with_one_time_kem_prekeys(&kem_keys(1), false),
        )
        .encode(1);
        body[8] |= 0x04; // type, id, flags, u16 count: the KEM flags
        assert_eq!(
            RequestFrame::decode(&body),
            Err(DecodeError::InvalidField("KEM upload flags"))
        );
    }

    fn multi_recipients() -> Vec<MultiRecipient> {
        vec![
            MultiRecipient::new(
                MailboxAddress::from_bytes([12; 32]),
                MessageId([13; 16]),
                Some(AccessKey::from_bytes([14; 16])),
                b"header one".to_vec(),
            ),
            MultiRecipient::new(
                MailboxAddress::from_bytes([15; 32]),
                MessageId([16; 16]),
                None,
                Vec::new(),
            ),
            MultiRecipient::new(
                MailboxAddress::from_bytes([17; 32]),
                MessageId([18; 16]),
                None,
                vec![19; 300],
            ),
        ]
    }

    #[test]
    fn every_request_round_trips() {
        for (i, request) in all_requests().into_iter().enumerate() {
            let body = request.encode(i as u32 + 1);
            let decoded = RequestFrame::decode(&body).unwrap();
            assert_eq!(decoded.request_id, i as u32 + 1);
            assert_eq!(decoded.request, request);
        }
    }

    #[test]
    fn every_truncation_and_extension_is_rejected_without_panic() {
        for request in all_requests() {
            let body = request.encode(1);
            for cut in 0..body.len() {
                // A Send with a shorter payload is still a valid Send.
                if let Request::Send { access_key, .. } = &request
                    && cut >= 54 + access_key.as_ref().map_or(0, |_| 16)
                {
                    continue;
                }
                // So is a BlobPut with less data.
                if matches!(request, Request::BlobPut { .. }) && cut >= 29 {
                    continue;
                }
                assert!(
                    RequestFrame::decode(&body[..cut]).is_err(),
                    "{request:?} cut {cut}"
                );
            }
            if !matches!(request, Request::Send { .. } | Request::BlobPut { .. }) {
                let mut longer = body.clone();
                longer.push(0);
                assert!(RequestFrame::decode(&longer).is_err());
            }
        }
    }

    #[test]
    fn the_encoded_length_of_a_send_multi_is_its_frame_length() {
        for request in all_requests() {
            if let Request::SendMulti { recipients, body } = &request {
                assert_eq!(
                    request.encode(1).len(),
                    send_multi_frame_len(body.len(), recipients)
                );
            }
        }
    }

    /// The body of a `SendMulti` with `n` recipients as the count says,
    /// `present` of them actually written.
    fn send_multi_body(n: u16, present: usize) -> Vec<u8> {
        let recipients = vec![
            MultiRecipient::new(
                MailboxAddress::from_bytes([1; 32]),
                MessageId([2; 16]),
                None,
                b"h".to_vec()
            );
            present
        ];
        let mut body = Request::SendMulti {
            recipients,
            body: b"body".to_vec(),
        }
        .encode(1);
        body[5..7].copy_from_slice(&n.to_be_bytes());
        body
    }

    #[test]
    fn a_send_multi_whose_count_does_not_match_its_recipients_is_refused() {
        assert!(RequestFrame::decode(&send_multi_body(3, 3)).is_ok());
        for (n, present) in [(4, 3), (2, 3), (1, 3), (3, 0)] {
            assert!(
                RequestFrame::decode(&send_multi_body(n, present)).is_err(),
                "count {n}, {present} recipients"
            );
        }
        assert_eq!(
            RequestFrame::decode(&send_multi_body(0, 0)),
            Err(DecodeError::InvalidField("recipient count"))
        );
        // Bytes after the body.
        let mut body = send_multi_body(3, 3);
        body.extend_from_slice(b"more");
        assert_eq!(
            RequestFrame::decode(&body),
            Err(DecodeError::TrailingBytes(4))
        );
        // A body length past the end.
        let mut body = send_multi_body(1, 1);
        let at = body.len() - 8;
        body[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            RequestFrame::decode(&body),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn a_send_multi_over_the_recipient_limit_is_refused_before_its_recipients_are_read() {
        let limit = MAX_MULTI_RECIPIENTS as u16;
        let at_limit = send_multi_body(limit, MAX_MULTI_RECIPIENTS);
        assert!(matches!(
            RequestFrame::decode(&at_limit),
            Ok(RequestFrame {
                request: Request::SendMulti { ref recipients, .. },
                ..
            }) if recipients.len() == MAX_MULTI_RECIPIENTS
        ));
        for n in [limit + 1, u16::MAX] {
            // The count alone decides: nothing after it needs to be there.
            for body in [send_multi_body(n, 0), send_multi_body(n, 2)] {
                let err = RequestFrame::decode_with_id(&body, Some(3)).unwrap_err();
                assert_eq!(err.request_id, 1);
                assert_eq!(
                    err.error,
                    DecodeError::TooManyRecipients {
                        count: usize::from(n),
                        max: MAX_MULTI_RECIPIENTS
                    }
                );
            }
        }
    }

    #[test]
    fn send_multi_is_unknown_on_a_version_2_connection() {
        let body = send_multi_body(1, 1);
        let err = RequestFrame::decode_with_id(&body, Some(2)).unwrap_err();
        assert_eq!(err.request_id, 1);
        assert_eq!(err.error, DecodeError::UnknownType(0x0B));
        assert!(RequestFrame::decode_with_id(&body, Some(3)).is_ok());
        // Before Hello every type parses (the relay then refuses it as
        // not Hello).
        assert!(RequestFrame::decode_with_id(&body, None).is_ok());
        // Every other request is the same in both versions.
        for request in all_requests() {
            if !matches!(request, Request::SendMulti { .. })
                && !is_kem_request(&request)
                && !is_blob_request(&request)
            {
                assert!(RequestFrame::decode_with_id(&request.encode(1), Some(2)).is_ok());
            }
        }
    }

    #[test]
    fn multi_recipient_debug_shows_no_header_bytes() {
        let recipient = MultiRecipient::new(
            MailboxAddress::from_bytes([1; 32]),
            MessageId([2; 16]),
            Some(AccessKey::from_bytes([3; 16])),
            b"secret-header".to_vec(),
        );
        let shown = format!("{recipient:?}");
        assert!(shown.contains("header_len: 13"), "{shown}");
        assert!(!shown.contains("secret") && !shown.contains("115, 101"));
    }

    #[test]
    fn unknown_flags_and_a_verifier_without_a_signed_prekey_are_refused() {
        let send = Request::Send {
            recipient: MailboxAddress::from_bytes([8; 32]),
            message_id: MessageId([9; 16]),
            access_key: None,
            payload: b"x".to_vec(),
        };
        let mut body = send.encode(1);
        // type || id || recipient || message id, then the flags.
        for flags in [0x02, 0x80] {
            body[53] = flags;
            assert_eq!(
                RequestFrame::decode(&body),
                Err(DecodeError::InvalidField("send flags"))
            );
        }
        // A SendMulti recipient's flags: type || id || count || address ||
        // message id, then the flags.
        let mut body = send_multi_body(1, 1);
        for flags in [0x02, 0x80] {
            body[55] = flags;
            assert_eq!(
                RequestFrame::decode(&body),
                Err(DecodeError::InvalidField("recipient flags"))
            );
        }
        let upload = Request::UploadPreKeys(PreKeyUpload::default()).encode(1);
        for flags in [0x04, 0x06, 0x10] {
            let mut body = upload.clone();
            body[5] = flags;
            if flags == 0x04 || flags == 0x06 {
                body.splice(6..6, [0u8; 32]);
            }
            assert_eq!(
                RequestFrame::decode(&body),
                Err(DecodeError::InvalidField("upload flags")),
                "flags {flags:#04x}"
            );
        }
    }

    #[test]
    fn hello_needs_magic_and_a_sane_version_count() {
        let mut body = Request::Hello { versions: vec![1] }.encode(0);
        body[5] = b'X';
        assert_eq!(
            RequestFrame::decode(&body),
            Err(DecodeError::InvalidField("magic"))
        );
        let body = [0, 0, 0, 0, 0, b'S', b'O', b'T', b'R', 0];
        assert!(RequestFrame::decode(&body).is_err());
    }

    #[test]
    fn unknown_type_keeps_the_request_id() {
        let err = RequestFrame::decode_with_id(&[0x42, 0, 0, 0, 9], Some(3)).unwrap_err();
        assert_eq!(err.request_id, 9);
        assert_eq!(err.error, DecodeError::UnknownType(0x42));
    }
}
