//! Group messaging with sender keys (docs/protocol.md section 14), the
//! design of Signal's and WhatsApp's groups.
//!
//! Each device of a group has its own [`SenderKey`] for that group: a
//! chain key ratcheted with the Double Ratchet's symmetric step and an
//! Ed25519 signing key pair. It encrypts a message once for the whole
//! group; each member device reads it with a [`SenderKeyReceiver`] built
//! from the sender's [`SenderKeyDistribution`], which the sender sends to
//! each member device through their pairwise session. The group message
//! itself travels to each member device inside a sealed envelope
//! (section 8), which tells the recipient which sender's receiver to use.
//!
//! ```
//! use sotto_core::group::{GroupId, SenderKey, SenderKeyDistribution, SenderKeyReceiver};
//! # use rand::SeedableRng;
//! # let mut rng = rand::rngs::ChaCha20Rng::from_seed([7; 32]);
//! let group = GroupId::generate(&mut rng);
//! let mut alice = SenderKey::generate(group, &mut rng);
//!
//! // Alice sends her distribution to Bob's device through their session...
//! let bytes = alice.distribution().to_bytes();
//! // ...and Bob's device builds its receiver for Alice's device from it.
//! let mut from_alice = SenderKeyReceiver::new(&SenderKeyDistribution::from_bytes(&*bytes)?);
//!
//! let message = alice.encrypt(b"hello group")?;
//! assert_eq!(from_alice.decrypt(&message)?, b"hello group");
//!
//! // A member left: Alice rotates and distributes the new chain to the
//! // remaining members only.
//! alice.rotate(&mut rng);
//! from_alice.process(&alice.distribution())?;
//! assert_eq!(from_alice.decrypt(&alice.encrypt(b"after")?)?, b"after");
//! # Ok::<(), sotto_core::group::GroupError>(())
//! ```
//!
//! What a member can and cannot do, and what rotation buys, is in the
//! security argument of section 14. In short: a member reads every message
//! sent while it holds the chain; it cannot forge another member's
//! messages (they are signed); a key that decrypted a message is gone, but
//! whoever steals a chain key reads the chain's later messages until the
//! sender rotates.
//!
//! Who is in a group, and how every member's copy of the member list comes
//! to agree, is [`membership`] (section 15), which names the group by the
//! same [`GroupId`].

mod chain_key;
mod distribution;
mod error;
mod id;
pub mod membership;
#[cfg(test)]
mod memory_hygiene;
mod message;
mod message_key;
mod receiver;
mod sender_key;
mod signing_key;
mod skipped;
mod state;

pub use distribution::{DISTRIBUTION_LEN, DISTRIBUTION_VERSION, SenderKeyDistribution};
pub use error::{GroupError, GroupResult};
pub use id::{ChainId, GROUP_ID_LEN, GroupId};
pub use message::{
    GROUP_AD_LEN, GROUP_HEADER_LEN, GROUP_MESSAGE_VERSION, GroupMessage, MAX_GROUP_MESSAGE_LEN,
    MIN_GROUP_MESSAGE_LEN, TYPE_GROUP_MESSAGE,
};
pub use message_key::GROUP_MESSAGE_INFO;
pub use receiver::{DistributionStatus, MAX_SENDER_CHAINS, SenderKeyReceiver};
pub use sender_key::SenderKey;
pub use signing_key::{GROUP_SIGNATURE_LEN, SenderVerifyingKey};
pub use state::{GROUP_STATE_VERSION, SENDER_KEY_STATE_LEN};
