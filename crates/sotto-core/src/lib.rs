//! # sotto-core
//!
//! The protocol of Sotto: X3DH key agreement and the Double Ratchet with the
//! exact constants of `docs/protocol.md`, the strict wire format, padding,
//! safety numbers, and the device lists and link handshake of linked
//! devices ([`devices`]). Pure: no I/O, no clock, no global RNG — every random byte
//! comes from the `rand_core::CryptoRng` the caller passes in.
//!
//! ```
//! use sotto_core::{
//!     IdentityKeyPair, OneTimePreKey, OneTimePreKeyId, PreKeyBundle, Session, SignedPreKey,
//!     SignedPreKeyId,
//! };
//! # struct Keys(SignedPreKey, OneTimePreKey);
//! # impl sotto_core::PreKeySource for Keys {
//! #     fn signed_prekey(&self, id: SignedPreKeyId) -> Option<SignedPreKey> { (id == self.0.id()).then(|| self.0.clone()) }
//! #     fn one_time_prekey(&self, id: OneTimePreKeyId) -> Option<OneTimePreKey> { (id == self.1.id()).then(|| self.1.clone()) }
//! # }
//! let mut rng = rand::rngs::SysRng;
//! # let mut rng = rand::rngs::ChaCha20Rng::from_seed([7; 32]);
//! # use rand::SeedableRng;
//! let alice = IdentityKeyPair::generate(&mut rng);
//! let bob = IdentityKeyPair::generate(&mut rng);
//! let spk = SignedPreKey::generate(SignedPreKeyId::new(1), &bob, &mut rng);
//! let opk = OneTimePreKey::generate(OneTimePreKeyId::new(7), &mut rng);
//! let bundle = PreKeyBundle::new(&bob, &spk, Some(&opk));
//!
//! let mut to_bob = Session::initiate(&alice, &bundle, &mut rng)?;
//! let wire = to_bob.encrypt(b"hello")?;
//! let (mut to_alice, first) = Session::respond(&bob, &Keys(spk, opk), &wire, &mut rng)?;
//! assert_eq!(first.plaintext, b"hello");
//! let reply = to_alice.encrypt(b"hi")?;
//! assert_eq!(to_bob.decrypt(&reply, &mut rng)?, b"hi");
//! # Ok::<(), sotto_core::Error>(())
//! ```
#![forbid(unsafe_code)]

pub mod access;
pub mod attachment;
pub mod body;
pub mod devices;
mod error;
pub mod group;
#[cfg(feature = "hazmat")]
pub mod hazmat;
pub mod keys;
mod message_aead;
pub mod pad;
pub(crate) mod ratchet;
mod safety;
pub mod sealed;
mod session_set;
pub mod wire;
pub mod x3dh;

pub use access::{AccessKey, AccessVerifier};
pub use body::{BodyKey, BodyReference};
pub use devices::{
    Device, DeviceId, DeviceList, HistoryTransferKey, LinkAccept, LinkCode, LinkKey, LinkOffer,
    MAX_DEVICES, SignedDeviceList, VerifiedOffer,
};
pub use error::{Error, Result};
pub use group::{
    ChainId, DistributionStatus, GroupError, GroupId, GroupMessage, SenderKey,
    SenderKeyDistribution, SenderKeyReceiver, SenderVerifyingKey,
};
pub use keys::{
    IdentityKey, IdentityKeyPair, KEM_CIPHERTEXT_LEN, KEM_PUBLIC_LEN, KEM_SEED_LEN, KemCiphertext,
    KemPreKey, KemPreKeyId, KemPublic, OneTimePreKey, OneTimePreKeyId, PreKeyBundle, PreKeyPublic,
    PreKeySource, ProtocolVersions, Signature, SignedKemPreKey, SignedPreKey, SignedPreKeyId,
};
pub use ratchet::{
    AEAD_AD_LEN_V2, Decrypted, MAX_SKIP, MAX_SKIPPED_KEYS, MESSAGE_INFO, RATCHET_INFO, Role,
    SESSION_STATE_VERSION, SESSION_STATE_VERSION_V2, SESSION_STATE_VERSION_V3, Session,
};
pub use safety::{SAFETY_NUMBER_ITERATIONS, SafetyNumber, fingerprint_digits, safety_number};
pub use session_set::{MAX_SESSIONS, SESSION_SET_VERSION, SessionSet};

/// Re-exported so callers can name the RNG bound without a direct dependency.
pub use rand_core;
