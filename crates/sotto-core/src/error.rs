//! The one error type of the protocol core.

use crate::devices::DeviceId;
use crate::keys::{OneTimePreKeyId, SignedPreKeyId};

/// Everything that can go wrong in `sotto-core`.
///
/// Every variant is a refusal: the operation that returned it changed no
/// state (a failed decrypt leaves its session byte-identical).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ended before a complete structure was read.
    #[error("truncated input: needed {needed} bytes, got {got}")]
    Truncated {
        /// Bytes required.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// Bytes were left over after a complete structure.
    #[error("{0} trailing bytes after a complete structure")]
    TrailingBytes(usize),
    /// A version byte this implementation does not speak.
    #[error("unsupported version {0:#04x}")]
    UnsupportedVersion(u8),
    /// A type byte that names no known message type.
    #[error("unknown message type {0:#04x}")]
    UnknownMessageType(u8),
    /// A flag byte that is neither 0x00 nor 0x01.
    #[error("invalid flag byte {0:#04x}")]
    InvalidFlag(u8),
    /// A ciphertext shorter than the smallest possible one.
    #[error("ciphertext too short: {len} bytes, minimum {min}")]
    CiphertextTooShort {
        /// Length received.
        len: usize,
        /// Minimum length.
        min: usize,
    },
    /// A ciphertext longer than the largest possible one.
    #[error("ciphertext too long: {len} bytes, maximum {max}")]
    CiphertextTooLong {
        /// Length received.
        len: usize,
        /// Maximum length.
        max: usize,
    },
    /// An Ed25519 public key that is malformed, non-canonical or of small order.
    #[error("invalid identity key")]
    InvalidIdentityKey,
    /// A signature that does not verify under the claimed identity key.
    #[error("invalid signature")]
    InvalidSignature,
    /// A Diffie-Hellman exchange produced the all-zero value (small-order key).
    #[error("key agreement with a small-order public key")]
    NonContributoryKey,
    /// A PreKeyMessage base key that is not the canonical X25519 encoding
    /// (top bit set, or a value of at least 2^255 - 19): X25519 would read
    /// it as a second encoding of another key, so the same X3DH run could
    /// arrive under two names.
    #[error("non-canonical base key")]
    InvalidBaseKey,
    /// A signed or one-time prekey that is not the canonical X25519
    /// encoding or is of small order (every key agreement with it would be
    /// all zeros).
    #[error("invalid prekey: non-canonical or of small order")]
    InvalidPreKey,
    /// An ML-KEM encapsulation key of the wrong length, or one that fails
    /// FIPS 203's modulus check.
    #[error("invalid ML-KEM key")]
    InvalidKemKey,
    /// A v2 PreKeyMessage names a KEM prekey the responder does not have.
    #[error("unknown or already used KEM prekey {0}")]
    UnknownKemPreKey(crate::keys::KemPreKeyId),
    /// A prekey bundle whose parts contradict each other.
    #[error("invalid prekey bundle: {0}")]
    InvalidBundle(&'static str),
    /// The bundle offers a lower protocol version than the initiator knows
    /// its owner speaks: a relay stripped it (PROTOCOL.md section 16).
    #[error(
        "protocol downgrade: the bundle offers version {offered}, its owner speaks version {expected}"
    )]
    Downgrade {
        /// The version the bundle allows.
        offered: u8,
        /// The version the initiator required.
        expected: u8,
    },
    /// The message is authentic-looking but its key could not open it.
    #[error("message authentication failed")]
    AuthenticationFailed,
    /// The message was already decrypted by this session.
    #[error("duplicate message (chain index {0} already used)")]
    Duplicate(u32),
    /// Decrypting would require skipping more message keys than allowed.
    #[error("message gap of {gap} exceeds the maximum of {max}")]
    TooManySkipped {
        /// Keys that would have to be skipped.
        gap: u64,
        /// The limit (MAX_SKIP).
        max: u32,
    },
    /// A decrypted plaintext whose padding is not the canonical one.
    #[error("invalid plaintext padding")]
    InvalidPadding,
    /// The plaintext is larger than the protocol allows.
    #[error("plaintext of {len} bytes exceeds the maximum of {max}")]
    PlaintextTooLarge {
        /// Length given.
        len: usize,
        /// Maximum length.
        max: usize,
    },
    /// A message counter would overflow (2^32 messages in one chain).
    #[error("message counter exhausted")]
    CounterExhausted,
    /// A PreKeyMessage names a signed prekey the responder does not have.
    #[error("unknown signed prekey {0}")]
    UnknownSignedPreKey(SignedPreKeyId),
    /// A PreKeyMessage names a one-time prekey the responder does not have
    /// (never issued, or already used).
    #[error("unknown or already used one-time prekey {0}")]
    UnknownOneTimePreKey(OneTimePreKeyId),
    /// The message belongs to a different session than the one asked.
    #[error("message does not belong to this session")]
    SessionMismatch,
    /// A session that has not received yet cannot send (responder before
    /// its first decrypt) or cannot decrypt a plain message.
    #[error("session has no {0} chain yet")]
    NoChain(&'static str),
    /// The sender of a PreKeyMessage is not the identity this session set
    /// belongs to.
    #[error("message is from a different identity than expected")]
    IdentityMismatch,
    /// Serialized state (session, key or bundle) that does not decode.
    #[error("corrupt serialized state: {0}")]
    CorruptState(&'static str),
    /// A device list that names no device.
    #[error("a device list must name at least one device")]
    EmptyDeviceList,
    /// A device list with more devices than allowed.
    #[error("{count} devices exceed the maximum of {max} per account")]
    TooManyDevices {
        /// Devices in the list (or that it would have).
        count: usize,
        /// The limit (`MAX_DEVICES`).
        max: usize,
    },
    /// Two devices of a list share an id.
    #[error("device id {0} appears twice in the device list")]
    DuplicateDeviceId(DeviceId),
    /// An encoded device list whose ids are not in ascending order.
    #[error("device ids out of order: {next} follows {previous}")]
    DeviceIdsOutOfOrder {
        /// The id before.
        previous: DeviceId,
        /// The id that should have been greater.
        next: DeviceId,
    },
    /// Two devices of a list share an identity key.
    #[error("devices {first} and {second} have the same identity key")]
    DuplicateDeviceKey {
        /// The first device with the key.
        first: DeviceId,
        /// The second device with the key.
        second: DeviceId,
    },
    /// A device list of version 0: versions start at 1.
    #[error("device list version 0: versions start at 1")]
    DeviceListVersionZero,
    /// The device list is at the largest version and cannot be replaced.
    #[error("device list version exhausted")]
    DeviceListVersionExhausted,
    /// A device list, link key or signer that belongs to another account
    /// than the one expected.
    #[error("device list belongs to another account")]
    AccountMismatch,
    /// An offered device list that is not newer than the one already held:
    /// a relay can withhold a list, never bring back an older one.
    #[error("device list version {offered} does not supersede version {current}")]
    DeviceListRollback {
        /// Version of the list held.
        current: u64,
        /// Version of the list offered.
        offered: u64,
    },
    /// Two different device lists signed with the same version: the
    /// account key signed twice for one version (a restored backup or a
    /// stolen key).
    #[error("two different device lists carry version {version}")]
    DeviceListConflict {
        /// The version both lists carry.
        version: u64,
    },
    /// A device id that the list does not contain.
    #[error("device {0} is not in the device list")]
    UnknownDevice(DeviceId),
    /// A device key that the list already contains.
    #[error("this key is already device {0} of the account")]
    DeviceAlreadyListed(DeviceId),
    /// A device key that the list does not contain.
    #[error("the device list does not list this device")]
    DeviceNotListed,
    /// A link code that does not start with `sotto-link:`.
    #[error("not a link code: it must start with \"sotto-link:\"")]
    InvalidLinkCodePrefix,
    /// A character that is not a base32 symbol (nor a space or dash), or
    /// a last symbol that no link code ends with.
    #[error("invalid character at position {position} of the link code")]
    InvalidLinkCodeCharacter {
        /// 0-based index, in characters, in the text given.
        position: usize,
    },
    /// A link code with too few or too many symbols.
    #[error("link code has {symbols} symbols, expected {expected}")]
    InvalidLinkCodeLength {
        /// Symbols found (spaces and dashes not counted).
        symbols: usize,
        /// Symbols of every link code.
        expected: usize,
    },
    /// A link code whose checksum does not match: a character was mistyped.
    #[error("link code checksum mismatch: a character is mistyped")]
    LinkCodeChecksum,
    /// A link offer or acceptance whose MAC does not verify under the link
    /// key: it was not made by someone who saw the link code.
    #[error("link message does not authenticate under this link code")]
    LinkAuthenticationFailed,
    /// A link offer whose device list lists this device under another id
    /// than the one the offer assigns.
    #[error("link offer assigns device id {assigned}, its list says {listed}")]
    LinkDeviceMismatch {
        /// Id the offer assigns.
        assigned: DeviceId,
        /// Id the list gives the device.
        listed: DeviceId,
    },
    /// A link acceptance for another device list version than the one
    /// offered.
    #[error("link accepted device list version {accepted}, offered {offered}")]
    LinkVersionMismatch {
        /// Version offered.
        offered: u64,
        /// Version accepted.
        accepted: u64,
    },
}

/// Result alias for `sotto-core`.
pub type Result<T> = core::result::Result<T, Error>;
