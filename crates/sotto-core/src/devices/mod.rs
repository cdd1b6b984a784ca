//! Linked devices: one account, several devices (docs/protocol.md,
//! "Linked devices").
//!
//! An account is its **account key**, the Ed25519 identity key the profile
//! was created with (a Sotto address is this key). Each device has its own
//! device identity key, with its own prekeys and relay mailbox; the device
//! the account was created on uses the account key as its device key, so a
//! profile from before linked devices is a one-device account as it is.
//! Safety numbers are computed from account keys and do not change when
//! devices come and go.
//!
//! - [`DeviceList`] / [`SignedDeviceList`]: the account key signs a
//!   versioned list of its device keys. A contact verifies it against the
//!   account key it pinned, keeps the highest version seen and refuses
//!   older ones ([`DeviceList::supersedes`]): a relay can withhold a new
//!   list, never bring back an old one.
//! - [`LinkCode`]: what a new device shows (its device key and a fresh
//!   secret), read by a device holding the account key.
//! - [`LinkKey`], [`LinkOffer`], [`LinkAccept`]: the handshake that puts
//!   the new device into the list, authenticated by the code's secret.
//!
//! # Linking, step by step
//!
//! ```
//! use sotto_core::{DeviceList, IdentityKeyPair, LinkAccept, LinkCode, LinkKey, LinkOffer};
//! # use rand::SeedableRng;
//! # let mut rng = rand::rngs::ChaCha20Rng::from_seed([3; 32]);
//! let account = IdentityKeyPair::generate(&mut rng); // the primary device
//! let current = DeviceList::primary(account.public(), 1_700_000_000_000);
//!
//! // 1. The new device makes its identity key and shows a code.
//! let device = IdentityKeyPair::generate(&mut rng);
//! let code = LinkCode::generate(device.public(), &mut rng);
//! let shown = code.to_string(); // "sotto-link:xxxxx-xxxxx-…"
//!
//! // 2. The account device reads it, lists the device and sends an offer
//! //    (sealed to `read.device_key()`).
//! let read: LinkCode = shown.parse()?;
//! let link_key = LinkKey::derive(&read, account.public());
//! let next = current.with_device(read.device_key(), 1_700_000_001_000)?;
//! let signed = next.sign(&account)?;
//! let offer = LinkOffer::new(&link_key, &signed)?.to_bytes();
//!
//! // 3. The new device checks the offer with its code, shows the account
//! //    to the user and answers (sealed with its device key).
//! let verified = LinkOffer::from_bytes(&offer)?.verify(&code)?;
//! assert_eq!(verified.device_list.account(), account.public());
//! let accept = LinkAccept::new(&verified.link_key, verified.device_list.version())?.to_bytes();
//!
//! // 4. The account device checks the answer (and that its envelope came
//! //    from the code's device key), then publishes `signed`.
//! LinkAccept::from_bytes(&accept)?.verify(&link_key, next.version())?;
//! # Ok::<(), sotto_core::Error>(())
//! ```
//!
//! # Security considerations
//!
//! - The code is the only secret of the handshake: whoever reads it can
//!   make an offer the new device accepts (pulling it into their account),
//!   and can answer an offer. It is shown, never sent; the new device
//!   shows the account it is about to join before accepting.
//! - The acceptance proves knowledge of the code, not of the device key:
//!   the account device takes it only from a sealed envelope that opens as
//!   coming from the code's device key, and publishes the new list only
//!   after that.
//! - The link code's 16-bit checksum catches typos, not tampering; a typo
//!   it misses changes the secret (the MACs fail) or the device key (the
//!   offer goes to a mailbox nobody answers from).
//! - Ids name devices only together with their keys (see [`DeviceId`]).

mod base32;
mod code;
mod id;
mod link;
mod list;

pub use code::{
    LINK_CODE_CHECKSUM_DOMAIN, LINK_CODE_PREFIX, LINK_CODE_SYMBOLS, LINK_CODE_VERSION,
    LINK_SECRET_LEN, LinkCode,
};
pub use id::DeviceId;
pub use link::{
    HISTORY_TRANSFER_INFO, HistoryTransferKey, LINK_ACCEPT_DOMAIN, LINK_ACCEPT_LEN,
    LINK_ACCEPT_VERSION, LINK_KEY_SALT, LINK_OFFER_DOMAIN, LINK_OFFER_VERSION, LinkAccept, LinkKey,
    LinkOffer, VerifiedOffer,
};
pub use list::{
    DEVICE_LIST_SIGNATURE_CONTEXT, DEVICE_LIST_VERSION, Device, DeviceList, MAX_DEVICES,
    MAX_SIGNED_DEVICE_LIST_LEN, SignedDeviceList,
};
