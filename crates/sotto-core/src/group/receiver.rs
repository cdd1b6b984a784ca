//! What a device holds to read one sender device's group messages: the
//! chains it got distributions for, and the message keys it skipped
//! (docs/protocol.md section 14).

use std::collections::VecDeque;

use super::chain_key::SenderChainKey;
use super::distribution::SenderKeyDistribution;
use super::error::{GroupError, GroupResult};
use super::id::{ChainId, GroupId};
use super::message::{GroupMessage, associated_data};
use super::message_key::GroupMessageKey;
use super::signing_key::SenderVerifyingKey;
use super::skipped::SkippedGroupKeys;
use crate::MAX_SKIP;
use crate::wire::TAG_LEN;

/// The most chains a receiver keeps per sender device: the current one
/// and the four before it, so that late messages of a chain replaced by
/// a rotation still decrypt. The oldest added is dropped first.
pub const MAX_SENDER_CHAINS: usize = 5;

/// One chain of the sender, as far as this receiver has read it.
#[derive(Clone, Debug)]
pub(crate) struct ReceiverChain {
    pub(crate) chain_id: ChainId,
    pub(crate) chain: SenderChainKey,
    pub(crate) verifying_key: SenderVerifyingKey,
}

/// What [`SenderKeyReceiver::process`] did with a distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DistributionStatus {
    /// A chain the receiver did not hold: its messages can be read now.
    Added,
    /// The receiver already holds this chain (same id, same signing key)
    /// and keeps it as it is: a distribution never rewinds a chain, nor
    /// moves it forward past keys the receiver still holds.
    AlreadyKnown,
}

/// The receiving state for one sender device in one group.
///
/// Built from the sender's first distribution; later distributions (after
/// the sender rotated) are added with [`process`](Self::process). Decrypt
/// is transactional: on any error the receiver is exactly as it was.
///
/// Secret: wiped on drop, redacted in `Debug`. Serialize it with
/// [`to_bytes`](Self::to_bytes) and seal the bytes before they touch disk.
#[derive(Clone)]
pub struct SenderKeyReceiver {
    group_id: GroupId,
    /// Most recently added first; never empty, at most
    /// [`MAX_SENDER_CHAINS`].
    chains: VecDeque<ReceiverChain>,
    skipped: SkippedGroupKeys,
}

/// A decrypt that succeeded on paper: the state it would leave behind.
enum Commit {
    /// The key was a stored skipped key, at this position.
    Skipped(usize),
    /// The chain at this index advances; keys skipped on the way.
    Advance {
        chain: usize,
        next: SenderChainKey,
        skipped: Vec<GroupMessageKey>,
    },
}

impl SenderKeyReceiver {
    /// A receiver holding the chain of `distribution`. It reads the
    /// distribution's iteration and every later one, none before.
    pub fn new(distribution: &SenderKeyDistribution) -> Self {
        let mut chains = VecDeque::with_capacity(MAX_SENDER_CHAINS);
        chains.push_back(chain_of(distribution));
        Self {
            group_id: *distribution.group_id(),
            chains,
            skipped: SkippedGroupKeys::default(),
        }
    }

    /// Takes in another distribution of the same sender device.
    ///
    /// - Another group's: [`GroupError::GroupMismatch`].
    /// - A chain id already held with the same signing key:
    ///   [`DistributionStatus::AlreadyKnown`], and nothing changes, so a
    ///   replayed old distribution cannot bring back keys already used.
    /// - A chain id already held with another signing key:
    ///   [`GroupError::ChainConflict`], and nothing changes.
    /// - A new chain: [`DistributionStatus::Added`]; it becomes the most
    ///   recent, and beyond [`MAX_SENDER_CHAINS`] the oldest added is
    ///   dropped with its skipped keys.
    pub fn process(
        &mut self,
        distribution: &SenderKeyDistribution,
    ) -> GroupResult<DistributionStatus> {
        if distribution.group_id() != &self.group_id {
            return Err(GroupError::GroupMismatch);
        }
        if let Some(held) = self.find(distribution.chain_id()) {
            let held = &self.chains[held];
            if held.verifying_key != *distribution.verifying_key() {
                return Err(GroupError::ChainConflict(distribution.chain_id()));
            }
            return Ok(DistributionStatus::AlreadyKnown);
        }
        self.chains.push_front(chain_of(distribution));
        while self.chains.len() > MAX_SENDER_CHAINS {
            if let Some(dropped) = self.chains.pop_back() {
                self.skipped.forget_chain(dropped.chain_id);
            }
        }
        Ok(DistributionStatus::Added)
    }

    /// The group.
    pub fn group_id(&self) -> &GroupId {
        &self.group_id
    }

    /// The chains held, most recently added first.
    pub fn chain_ids(&self) -> impl Iterator<Item = ChainId> + '_ {
        self.chains.iter().map(|c| c.chain_id)
    }

    /// The iteration the receiver expects next in a chain it holds.
    pub fn next_iteration(&self, chain: ChainId) -> Option<u32> {
        self.find(chain).map(|i| self.chains[i].chain.iteration())
    }

    /// Number of skipped message keys held (all chains).
    pub fn skipped_key_count(&self) -> usize {
        self.skipped.len()
    }

    /// Decrypts a group message of this sender.
    pub fn decrypt(&mut self, message: &[u8]) -> GroupResult<Vec<u8>> {
        let mut out = Vec::new();
        self.decrypt_into(message, &mut out)?;
        Ok(out)
    }

    /// Decrypts into `out` (replacing its contents), checking in this
    /// order: the form of the message ([`GroupMessage::parse`]), its group
    /// ([`GroupError::GroupMismatch`]), its chain
    /// ([`GroupError::UnknownChain`]), its signature under the chain's
    /// signing key ([`GroupError::InvalidSignature`]), its iteration
    /// ([`GroupError::Duplicate`], [`GroupError::TooManySkipped`]), then
    /// the AEAD tag and the padding. Nothing is derived from a message
    /// whose signature does not verify. On error `out` is wiped and
    /// cleared and the receiver is unchanged.
    pub fn decrypt_into(&mut self, message: &[u8], out: &mut Vec<u8>) -> GroupResult<()> {
        let result = self.decrypt_parsed(message, out);
        if result.is_err() {
            zeroize::Zeroize::zeroize(out);
            out.clear();
        }
        result
    }

    fn decrypt_parsed(&mut self, message: &[u8], out: &mut Vec<u8>) -> GroupResult<()> {
        let message = GroupMessage::parse(message)?;
        if message.group_id() != &self.group_id {
            return Err(GroupError::GroupMismatch);
        }
        let index = self
            .find(message.chain_id())
            .ok_or(GroupError::UnknownChain(message.chain_id()))?;
        self.chains[index]
            .verifying_key
            .verify(message.signed_bytes(), message.signature())?;
        let (commit, key) = self.plan(index, &message)?;
        let ciphertext = message.ciphertext();
        let (body, tag) = ciphertext.split_at(ciphertext.len() - TAG_LEN);
        out.resize(body.len(), 0);
        key.open(&associated_data(message.header()), body, out, tag)?;
        let len = crate::pad::unpadded_len(out).map_err(GroupError::from_core)?;
        out.truncate(len);
        self.apply(commit);
        Ok(())
    }

    /// The message key of `message` in the chain at `index`, and the state
    /// change using it would commit, without touching `self`.
    fn plan(
        &self,
        index: usize,
        message: &GroupMessage<'_>,
    ) -> GroupResult<(Commit, GroupMessageKey)> {
        let held = &self.chains[index];
        let iteration = message.iteration();
        if iteration < held.chain.iteration() {
            let position =
                self.skipped
                    .position(held.chain_id, iteration)
                    .ok_or(GroupError::Duplicate {
                        chain: held.chain_id,
                        iteration,
                    })?;
            let key = self
                .skipped
                .get(position)
                .map(|k| k.key.clone())
                .ok_or(GroupError::CorruptState("skipped key position"))?;
            return Ok((Commit::Skipped(position), key));
        }
        let mut next = held.chain.clone();
        let skipped = next.skip_to(iteration, MAX_SKIP)?;
        let key = next.step()?;
        Ok((
            Commit::Advance {
                chain: index,
                next,
                skipped,
            },
            key,
        ))
    }

    fn apply(&mut self, commit: Commit) {
        match commit {
            Commit::Skipped(position) => self.skipped.remove(position),
            Commit::Advance {
                chain,
                next,
                skipped,
            } => {
                if let Some(held) = self.chains.get_mut(chain) {
                    held.chain = next;
                    let chain_id = held.chain_id;
                    self.skipped.extend(chain_id, skipped);
                }
            }
        }
    }

    fn find(&self, chain_id: ChainId) -> Option<usize> {
        self.chains.iter().position(|c| c.chain_id == chain_id)
    }

    pub(crate) fn from_parts(
        group_id: GroupId,
        chains: VecDeque<ReceiverChain>,
        skipped: SkippedGroupKeys,
    ) -> Self {
        Self {
            group_id,
            chains,
            skipped,
        }
    }

    pub(crate) fn chains(&self) -> &VecDeque<ReceiverChain> {
        &self.chains
    }

    pub(crate) fn skipped(&self) -> &SkippedGroupKeys {
        &self.skipped
    }
}

fn chain_of(distribution: &SenderKeyDistribution) -> ReceiverChain {
    ReceiverChain {
        chain_id: distribution.chain_id(),
        chain: distribution.chain().clone(),
        verifying_key: *distribution.verifying_key(),
    }
}

impl core::fmt::Debug for SenderKeyReceiver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SenderKeyReceiver")
            .field("group_id", &self.group_id)
            .field(
                "chains",
                &self
                    .chains
                    .iter()
                    .map(|c| (c.chain_id, c.chain.iteration()))
                    .collect::<Vec<_>>(),
            )
            .field("skipped_keys", &self.skipped.len())
            .field("secrets", &"<redacted>")
            .finish()
    }
}
