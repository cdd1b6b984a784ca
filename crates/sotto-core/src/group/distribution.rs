//! The sender key distribution: what a sender gives each member device so
//! that it can read the sender's group messages (docs/protocol.md
//! section 14).
//!
//! ```text
//! SenderKeyDistribution = 0x01 (format) || group_id(32) || u32be(chain_id)
//!                         || u32be(iteration) || chain_key(32)
//!                         || signing public key(32, Ed25519)        (105 bytes)
//! ```
//!
//! It carries a chain key: it is a secret, sent only inside the pairwise
//! session (section 4) of each member device, never in the clear.

use zeroize::Zeroizing;

use super::chain_key::SenderChainKey;
use super::error::{GroupError, GroupResult};
use super::id::{ChainId, GROUP_ID_LEN, GroupId};
use super::signing_key::SenderVerifyingKey;
use crate::keys::Secret32;
use crate::wire::Reader;

/// Format byte of a sender key distribution.
pub const DISTRIBUTION_VERSION: u8 = 0x01;
/// Length of an encoded sender key distribution.
pub const DISTRIBUTION_LEN: usize = 1 + GROUP_ID_LEN + 4 + 4 + 32 + 32;

/// One sender key chain as a receiver starts from it: the chain key at
/// `iteration` (the receiver can read that message and the ones after, not
/// those before) and the public key that verifies the chain's messages.
///
/// Secret (it holds a chain key): wiped on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct SenderKeyDistribution {
    group_id: GroupId,
    chain_id: ChainId,
    chain: SenderChainKey,
    verifying_key: SenderVerifyingKey,
}

impl SenderKeyDistribution {
    pub(crate) fn new(
        group_id: GroupId,
        chain_id: ChainId,
        chain: SenderChainKey,
        verifying_key: SenderVerifyingKey,
    ) -> Self {
        Self {
            group_id,
            chain_id,
            chain,
            verifying_key,
        }
    }

    /// The group.
    pub fn group_id(&self) -> &GroupId {
        &self.group_id
    }

    /// The chain it starts.
    pub fn chain_id(&self) -> ChainId {
        self.chain_id
    }

    /// The first iteration the receiver will be able to read.
    pub fn iteration(&self) -> u32 {
        self.chain.iteration()
    }

    /// The key that verifies the chain's messages.
    pub fn verifying_key(&self) -> &SenderVerifyingKey {
        &self.verifying_key
    }

    pub(crate) fn chain(&self) -> &SenderChainKey {
        &self.chain
    }

    /// The 105 bytes to encrypt with each member device's session. They
    /// hold the chain key: the buffer is wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<[u8; DISTRIBUTION_LEN]> {
        let mut out = Zeroizing::new([0u8; DISTRIBUTION_LEN]);
        out[0] = DISTRIBUTION_VERSION;
        out[1..33].copy_from_slice(self.group_id.as_bytes());
        out[33..37].copy_from_slice(&self.chain_id.get().to_be_bytes());
        out[37..41].copy_from_slice(&self.chain.iteration().to_be_bytes());
        out[41..73].copy_from_slice(self.chain.key().as_bytes());
        out[73..105].copy_from_slice(self.verifying_key.as_bytes());
        out
    }

    /// Strict decoding: format byte 0x01 ([`GroupError::UnsupportedVersion`]),
    /// exactly [`DISTRIBUTION_LEN`] bytes ([`GroupError::Truncated`],
    /// [`GroupError::TrailingBytes`]), a signing key that passes the strict
    /// key check ([`GroupError::InvalidSigningKey`]).
    pub fn from_bytes(bytes: &[u8]) -> GroupResult<Self> {
        let mut r = Reader::new(bytes);
        let version = r.u8().map_err(GroupError::from_core)?;
        if version != DISTRIBUTION_VERSION {
            return Err(GroupError::UnsupportedVersion(version));
        }
        let group_id =
            GroupId::from_bytes(*r.array::<GROUP_ID_LEN>().map_err(GroupError::from_core)?);
        let chain_id = ChainId::new(r.u32().map_err(GroupError::from_core)?);
        let iteration = r.u32().map_err(GroupError::from_core)?;
        let key = Secret32::from_slice(r.take(32).map_err(GroupError::from_core)?)
            .ok_or(GroupError::CorruptState("chain key length"))?;
        let verifying_key =
            SenderVerifyingKey::from_bytes(r.array::<32>().map_err(GroupError::from_core)?)?;
        r.finish().map_err(GroupError::from_core)?;
        Ok(Self {
            group_id,
            chain_id,
            chain: SenderChainKey::new(key, iteration),
            verifying_key,
        })
    }
}

impl core::fmt::Debug for SenderKeyDistribution {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SenderKeyDistribution")
            .field("group_id", &self.group_id)
            .field("chain_id", &self.chain_id)
            .field("iteration", &self.chain.iteration())
            .field("verifying_key", &self.verifying_key)
            .field("chain_key", &"<redacted>")
            .finish()
    }
}
