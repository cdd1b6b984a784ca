//! Sender keys and receivers as versioned bytes, for the store
//! (docs/protocol.md section 14, "Saved state").
//!
//! ```text
//! SenderKey         = 0x01 (version) || 0x01 (kind) || group_id(32)
//!                     || u32be(chain_id) || u32be(iteration) || chain_key(32)
//!                     || signing seed(32)                              (106 bytes)
//! SenderKeyReceiver = 0x01 (version) || 0x02 (kind) || group_id(32)
//!                     || u8(n, 1..=5) || n * (u32be(chain_id) || u32be(iteration)
//!                        || chain_key(32) || signing public key(32))   most recent first
//!                     || u16be(count <= 2000)
//!                     || count * (u32be(chain_id) || u32be(iteration) || MK(32))  oldest first
//! ```
//!
//! Decoding is strict and returns [`GroupError::CorruptState`] (or
//! [`GroupError::UnsupportedVersion`]) for anything malformed.

use std::collections::{HashSet, VecDeque};

use zeroize::Zeroizing;

use super::chain_key::SenderChainKey;
use super::error::{GroupError, GroupResult};
use super::id::{ChainId, GROUP_ID_LEN, GroupId};
use super::message_key::GroupMessageKey;
use super::receiver::{MAX_SENDER_CHAINS, ReceiverChain, SenderKeyReceiver};
use super::sender_key::SenderKey;
use super::signing_key::{SenderSigningKey, SenderVerifyingKey};
use super::skipped::{SkippedGroupKey, SkippedGroupKeys};
use crate::MAX_SKIPPED_KEYS;
use crate::keys::Secret32;
use crate::wire::Reader;

/// Version byte of the serialized sender key and receiver formats.
pub const GROUP_STATE_VERSION: u8 = 0x01;
/// Kind byte of a serialized [`SenderKey`].
const KIND_SENDER_KEY: u8 = 0x01;
/// Kind byte of a serialized [`SenderKeyReceiver`].
const KIND_RECEIVER: u8 = 0x02;
/// Length of a serialized sender key.
pub const SENDER_KEY_STATE_LEN: usize = 2 + GROUP_ID_LEN + 4 + 4 + 32 + 32;

/// Every decoding failure is `CorruptState`, except an unknown version.
fn corrupt(e: GroupError) -> GroupError {
    match e {
        GroupError::CorruptState(_) | GroupError::UnsupportedVersion(_) => e,
        GroupError::InvalidSigningKey => GroupError::CorruptState("signing key"),
        GroupError::TrailingBytes(_) => GroupError::CorruptState("trailing bytes"),
        _ => GroupError::CorruptState("truncated"),
    }
}

/// Reads the version and kind bytes.
fn header(r: &mut Reader<'_>, kind: u8) -> GroupResult<GroupId> {
    let version = r.u8().map_err(GroupError::from_core)?;
    if version != GROUP_STATE_VERSION {
        return Err(GroupError::UnsupportedVersion(version));
    }
    if r.u8().map_err(GroupError::from_core)? != kind {
        return Err(GroupError::CorruptState("kind"));
    }
    Ok(GroupId::from_bytes(
        *r.array::<GROUP_ID_LEN>().map_err(GroupError::from_core)?,
    ))
}

fn secret(r: &mut Reader<'_>) -> GroupResult<Secret32> {
    Secret32::from_slice(r.take(32).map_err(GroupError::from_core)?)
        .ok_or(GroupError::CorruptState("secret length"))
}

fn u32be(r: &mut Reader<'_>) -> GroupResult<u32> {
    r.u32().map_err(GroupError::from_core)
}

impl SenderKey {
    /// Serializes the sender key. The bytes hold the chain key and the
    /// signing key's seed: seal them before they touch disk. The buffer is
    /// wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(SENDER_KEY_STATE_LEN));
        out.push(GROUP_STATE_VERSION);
        out.push(KIND_SENDER_KEY);
        out.extend_from_slice(self.group_id().as_bytes());
        out.extend_from_slice(&self.chain_id().get().to_be_bytes());
        out.extend_from_slice(&self.chain().iteration().to_be_bytes());
        out.extend_from_slice(self.chain().key().as_bytes());
        out.extend_from_slice(self.signing().to_seed().as_slice());
        out
    }

    /// Restores a sender key from [`SenderKey::to_bytes`] output.
    pub fn from_bytes(bytes: &[u8]) -> GroupResult<Self> {
        Self::decode(bytes).map_err(corrupt)
    }

    fn decode(bytes: &[u8]) -> GroupResult<Self> {
        let mut r = Reader::new(bytes);
        let group_id = header(&mut r, KIND_SENDER_KEY)?;
        let chain_id = ChainId::new(u32be(&mut r)?);
        let iteration = u32be(&mut r)?;
        let chain = SenderChainKey::new(secret(&mut r)?, iteration);
        let seed = secret(&mut r)?;
        r.finish().map_err(GroupError::from_core)?;
        Ok(Self::from_parts(
            group_id,
            chain_id,
            chain,
            SenderSigningKey::from_seed(seed.as_bytes()),
        ))
    }
}

impl SenderKeyReceiver {
    /// Serializes the receiver. The bytes hold chain keys and skipped
    /// message keys: seal them before they touch disk. The buffer is wiped
    /// on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let chains = self.chains();
        let skipped = self.skipped();
        let mut out = Zeroizing::new(Vec::with_capacity(
            2 + GROUP_ID_LEN + 1 + chains.len() * 72 + 2 + skipped.len() * 40,
        ));
        out.push(GROUP_STATE_VERSION);
        out.push(KIND_RECEIVER);
        out.extend_from_slice(self.group_id().as_bytes());
        // At most MAX_SENDER_CHAINS (5) chains and MAX_SKIPPED_KEYS (2000)
        // keys are ever held: the counts fit.
        let n = u8::try_from(chains.len()).unwrap_or(u8::MAX);
        out.push(n);
        for c in chains.iter().take(usize::from(n)) {
            out.extend_from_slice(&c.chain_id.get().to_be_bytes());
            out.extend_from_slice(&c.chain.iteration().to_be_bytes());
            out.extend_from_slice(c.chain.key().as_bytes());
            out.extend_from_slice(c.verifying_key.as_bytes());
        }
        let count = u16::try_from(skipped.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for k in skipped.iter().take(usize::from(count)) {
            out.extend_from_slice(&k.chain_id.get().to_be_bytes());
            out.extend_from_slice(&k.key.iteration().to_be_bytes());
            out.extend_from_slice(k.key.secret().as_bytes());
        }
        out
    }

    /// Restores a receiver from [`SenderKeyReceiver::to_bytes`] output.
    ///
    /// Besides the form, it refuses what no receiver holds: no chain or
    /// more than [`MAX_SENDER_CHAINS`], a chain id twice, more than
    /// [`MAX_SKIPPED_KEYS`] skipped keys, a skipped key of a chain not
    /// held, at or past its chain's iteration, or stored twice.
    pub fn from_bytes(bytes: &[u8]) -> GroupResult<Self> {
        Self::decode(bytes).map_err(corrupt)
    }

    fn decode(bytes: &[u8]) -> GroupResult<Self> {
        let mut r = Reader::new(bytes);
        let group_id = header(&mut r, KIND_RECEIVER)?;
        let n = usize::from(r.u8().map_err(GroupError::from_core)?);
        if n == 0 || n > MAX_SENDER_CHAINS {
            return Err(GroupError::CorruptState("chain count"));
        }
        let mut chains: VecDeque<ReceiverChain> = VecDeque::with_capacity(n);
        for _ in 0..n {
            let chain_id = ChainId::new(u32be(&mut r)?);
            let iteration = u32be(&mut r)?;
            let chain = SenderChainKey::new(secret(&mut r)?, iteration);
            let verifying_key =
                SenderVerifyingKey::from_bytes(r.array::<32>().map_err(GroupError::from_core)?)?;
            if chains.iter().any(|c| c.chain_id == chain_id) {
                return Err(GroupError::CorruptState("chain id twice"));
            }
            chains.push_back(ReceiverChain {
                chain_id,
                chain,
                verifying_key,
            });
        }
        let count = usize::from(r.u16().map_err(GroupError::from_core)?);
        if count > MAX_SKIPPED_KEYS {
            return Err(GroupError::CorruptState("too many skipped keys"));
        }
        let mut skipped = SkippedGroupKeys::default();
        let mut seen = HashSet::with_capacity(count);
        for _ in 0..count {
            let chain_id = ChainId::new(u32be(&mut r)?);
            let iteration = u32be(&mut r)?;
            let key = GroupMessageKey::from_secret(iteration, secret(&mut r)?);
            let chain = chains
                .iter()
                .find(|c| c.chain_id == chain_id)
                .ok_or(GroupError::CorruptState("skipped key of a chain not held"))?;
            if iteration >= chain.chain.iteration() {
                return Err(GroupError::CorruptState("skipped key not behind its chain"));
            }
            if !seen.insert((chain_id, iteration)) {
                return Err(GroupError::CorruptState("skipped key twice"));
            }
            skipped.push_restored(SkippedGroupKey { chain_id, key });
        }
        r.finish().map_err(GroupError::from_core)?;
        Ok(Self::from_parts(group_id, chains, skipped))
    }
}
