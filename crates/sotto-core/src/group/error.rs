//! The error type of group messaging (docs/protocol.md section 14).

use super::id::ChainId;

/// Everything that can go wrong with sender keys and group messages.
///
/// Every variant is a refusal: the operation that returned it changed no
/// state (a failed decrypt leaves its receiver byte-identical, a failed
/// encrypt its sender key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
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
    /// A version or format byte this implementation does not speak.
    #[error("unsupported version {0:#04x}")]
    UnsupportedVersion(u8),
    /// A type byte that names no group message type.
    #[error("unknown message type {0:#04x}")]
    UnknownMessageType(u8),
    /// A ciphertext longer than the largest possible one.
    #[error("ciphertext too long: {len} bytes, maximum {max}")]
    CiphertextTooLong {
        /// Length received.
        len: usize,
        /// Maximum length.
        max: usize,
    },
    /// A ciphertext whose length is no padded length plus the tag: bytes
    /// were cut from the message or added to it.
    #[error("ciphertext of {len} bytes: not a padded length plus the tag")]
    InvalidCiphertextLength {
        /// Length received.
        len: usize,
    },
    /// A sender's signing public key that is malformed, non-canonical or
    /// of small order.
    #[error("invalid sender signing key")]
    InvalidSigningKey,
    /// A group message whose signature does not verify under its chain's
    /// signing key: it was not made by the sender the chain belongs to, or
    /// was altered on the way.
    #[error("invalid group message signature")]
    InvalidSignature,
    /// A message or distribution of another group than this state's.
    #[error("message or distribution of another group")]
    GroupMismatch,
    /// A message of a chain this receiver has no distribution for (or has
    /// dropped): ask the sender for its current distribution.
    #[error("unknown sender key chain {0}")]
    UnknownChain(ChainId),
    /// A distribution whose chain id the receiver already holds with
    /// another signing key. Refused: a known chain is never replaced.
    #[error("sender key chain {0} is already held with another signing key")]
    ChainConflict(ChainId),
    /// An iteration below the chain's position whose message key is not
    /// held: the message was decrypted already (a replay), or it is older
    /// than the distribution the chain came from, or its skipped key was
    /// evicted.
    #[error("duplicate or too old message (chain {chain}, iteration {iteration})")]
    Duplicate {
        /// The message's chain.
        chain: ChainId,
        /// The message's iteration.
        iteration: u32,
    },
    /// Decrypting would require skipping more message keys than allowed.
    #[error("message gap of {gap} exceeds the maximum of {max}")]
    TooManySkipped {
        /// Keys that would have to be skipped.
        gap: u64,
        /// The limit ([`MAX_SKIP`](crate::MAX_SKIP)).
        max: u32,
    },
    /// A correctly signed message whose AEAD tag does not check.
    #[error("message authentication failed")]
    AuthenticationFailed,
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
    /// The chain has reached its last iteration: rotate the sender key.
    #[error("sender key chain exhausted: rotate it")]
    CounterExhausted,
    /// Serialized state (sender key or receiver) that does not decode.
    #[error("corrupt serialized group state: {0}")]
    CorruptState(&'static str),
}

/// Result alias for group messaging.
pub type GroupResult<T> = core::result::Result<T, GroupError>;

impl GroupError {
    /// The group error for an error of the parts shared with one-to-one
    /// messaging: the byte reader of [`crate::wire`] (truncation, trailing
    /// bytes) and the padding of [`crate::pad`]. Anything else they could
    /// say is a malformed structure.
    pub(crate) fn from_core(e: crate::Error) -> Self {
        match e {
            crate::Error::Truncated { needed, got } => Self::Truncated { needed, got },
            crate::Error::TrailingBytes(n) => Self::TrailingBytes(n),
            crate::Error::UnsupportedVersion(v) => Self::UnsupportedVersion(v),
            crate::Error::PlaintextTooLarge { len, max } => Self::PlaintextTooLarge { len, max },
            crate::Error::InvalidPadding => Self::InvalidPadding,
            crate::Error::CounterExhausted => Self::CounterExhausted,
            _ => Self::CorruptState("malformed structure"),
        }
    }
}
