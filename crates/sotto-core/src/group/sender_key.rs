//! A device's own sender key in one group: what it encrypts its group
//! messages with (docs/protocol.md section 14).

use rand_core::CryptoRng;

use super::chain_key::SenderChainKey;
use super::distribution::SenderKeyDistribution;
use super::error::{GroupError, GroupResult};
use super::id::{ChainId, GroupId};
use super::message::{GROUP_HEADER_LEN, associated_data, write_header};
use super::signing_key::{GROUP_SIGNATURE_LEN, SenderSigningKey, SenderVerifyingKey};
use crate::keys::random_secret;
use crate::wire::TAG_LEN;

/// The sending state of one device in one group: a chain id, a chain key
/// at an iteration, and the chain's Ed25519 signing key.
///
/// Each [`encrypt`](Self::encrypt) takes the next message key and steps
/// the chain, so a key that encrypted a message is gone once the message
/// is made. [`distribution`](Self::distribution) gives what member
/// devices need to read the messages from the current iteration on;
/// [`rotate`](Self::rotate) starts a new chain that nobody can read until
/// they get its distribution (after a member leaves or is removed).
///
/// Secret: wiped on drop, redacted in `Debug`. Serialize it with
/// [`to_bytes`](Self::to_bytes) and seal the bytes before they touch disk.
///
/// Not `Clone`: two copies would each encrypt their next message under the
/// same message key, hence the same AEAD key and nonce. Keep one sender
/// key per group and device, and store it after every encrypt.
pub struct SenderKey {
    group_id: GroupId,
    chain_id: ChainId,
    chain: SenderChainKey,
    signing: SenderSigningKey,
}

impl SenderKey {
    /// A new sender key for `group`. Draws from `rng`, in this order: the
    /// chain id (4 bytes, read as `u32be`), the chain key (32 bytes), the
    /// Ed25519 seed of the signing key (32 bytes). The chain starts at
    /// iteration 0.
    pub fn generate<R: CryptoRng + ?Sized>(group: GroupId, rng: &mut R) -> Self {
        let chain_id = ChainId::generate(rng);
        let chain = SenderChainKey::new(random_secret(rng), 0);
        let signing = SenderSigningKey::generate(rng);
        Self {
            group_id: group,
            chain_id,
            chain,
            signing,
        }
    }

    /// Replaces the chain with a new one: new chain id, chain key and
    /// signing key, iteration 0, drawn as [`generate`](Self::generate)
    /// draws them, except that a chain id equal to the current one is drawn
    /// again (receivers would refuse a second chain under the same id).
    ///
    /// Call it when a member leaves or is removed, then send the new
    /// [`distribution`](Self::distribution) to the remaining member devices
    /// only: the removed member keeps the old chain, not the new one.
    pub fn rotate<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) {
        let mut chain_id = ChainId::generate(rng);
        while chain_id == self.chain_id {
            chain_id = ChainId::generate(rng);
        }
        self.chain_id = chain_id;
        self.chain = SenderChainKey::new(random_secret(rng), 0);
        self.signing = SenderSigningKey::generate(rng);
    }

    /// The group.
    pub fn group_id(&self) -> &GroupId {
        &self.group_id
    }

    /// The current chain.
    pub fn chain_id(&self) -> ChainId {
        self.chain_id
    }

    /// The iteration the next message will have.
    pub fn iteration(&self) -> u32 {
        self.chain.iteration()
    }

    /// The public key that verifies the current chain's messages.
    pub fn verifying_key(&self) -> SenderVerifyingKey {
        self.signing.verifying_key()
    }

    /// What a member device needs to read this sender's messages from the
    /// next one on: the group, chain id, current iteration and chain key,
    /// and the signing public key (never the signing private key).
    ///
    /// It exposes the chain key on purpose, for the member devices' pairwise
    /// sessions. A device that receives it can read every later message of
    /// the chain, none of the earlier ones.
    pub fn distribution(&self) -> SenderKeyDistribution {
        SenderKeyDistribution::new(
            self.group_id,
            self.chain_id,
            self.chain.clone(),
            self.signing.verifying_key(),
        )
    }

    /// Encrypts `plaintext` into a group message (section 14): the next
    /// message key, padding, ChaCha20-Poly1305 with the 64-byte associated
    /// data, then the signature over header and ciphertext.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> GroupResult<Vec<u8>> {
        let mut out = Vec::new();
        self.encrypt_into(plaintext, &mut out)?;
        Ok(out)
    }

    /// As [`encrypt`](Self::encrypt), replacing the contents of `out` with
    /// the message. Reusing `out` saves an allocation per message. On error
    /// `out` is cleared and the sender key is unchanged.
    pub fn encrypt_into(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> GroupResult<()> {
        out.clear();
        let padded_len =
            crate::pad::padded_len_for_plaintext(plaintext.len()).map_err(GroupError::from_core)?;
        let mut next = self.chain.clone();
        let message_key = next.step()?;
        out.reserve(GROUP_HEADER_LEN + padded_len + TAG_LEN + GROUP_SIGNATURE_LEN);
        write_header(out, &self.group_id, self.chain_id, message_key.iteration());
        let ad = associated_data(out);
        let sealed = crate::pad::pad_into(plaintext, out)
            .map_err(GroupError::from_core)
            .and_then(|()| message_key.seal(&ad, &mut out[GROUP_HEADER_LEN..]));
        let tag = match sealed {
            Ok(tag) => tag,
            Err(e) => {
                zeroize::Zeroize::zeroize(out);
                out.clear();
                return Err(e);
            }
        };
        out.extend_from_slice(&tag);
        let signature = self.signing.sign(out);
        out.extend_from_slice(&signature);
        self.chain = next;
        Ok(())
    }

    pub(crate) fn from_parts(
        group_id: GroupId,
        chain_id: ChainId,
        chain: SenderChainKey,
        signing: SenderSigningKey,
    ) -> Self {
        Self {
            group_id,
            chain_id,
            chain,
            signing,
        }
    }

    pub(crate) fn chain(&self) -> &SenderChainKey {
        &self.chain
    }

    pub(crate) fn signing(&self) -> &SenderSigningKey {
        &self.signing
    }
}

impl core::fmt::Debug for SenderKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SenderKey")
            .field("group_id", &self.group_id)
            .field("chain_id", &self.chain_id)
            .field("iteration", &self.chain.iteration())
            .field("verifying_key", &self.signing.verifying_key())
            .field("secrets", &"<redacted>")
            .finish()
    }
}
