//! Long-term and medium-term keys (PROTOCOL.md "Keys and encodings").

mod bundle;
mod identity;
mod prekey;
mod secret;

pub use bundle::{BUNDLE_VERSION, PreKeyBundle};
pub use identity::{IdentityKey, IdentityKeyPair};
pub use prekey::{OneTimePreKey, PreKeySource, SignedPreKey};
pub(crate) use secret::{Secret32, diffie_hellman, random_secret, x25519_public};

/// Prefix of an encoded Ed25519 public key.
pub const ED25519_PREFIX: u8 = 0xED;
/// Prefix of an encoded X25519 public key.
pub const X25519_PREFIX: u8 = 0x05;

/// `Encode(X25519 key) = 0x05 || key`.
pub fn encode_x25519(key: &[u8; 32]) -> [u8; 33] {
    let mut out = [0u8; 33];
    out[0] = X25519_PREFIX;
    out[1..].copy_from_slice(key);
    out
}
