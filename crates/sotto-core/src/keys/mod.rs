//! Long-term and medium-term keys (PROTOCOL.md "Keys and encodings").

mod bundle;
mod identity;
mod ids;
mod kem;
mod prekey;
mod public;
mod secret;

pub(crate) use bundle::signed_prekey_message;
pub use bundle::{
    BUNDLE_VERSION, BUNDLE_VERSION_V2, PreKeyBundle, ProtocolVersions, V2_ONLY_DOMAIN,
};
pub use identity::{IdentityKey, IdentityKeyPair};
pub use ids::{KemPreKeyId, OneTimePreKeyId, SignedPreKeyId};
pub(crate) use kem::encapsulate;
pub use kem::{
    KEM_CIPHERTEXT_LEN, KEM_PUBLIC_LEN, KEM_SEED_LEN, KEM_TYPE_ML_KEM_768, KemCiphertext,
    KemPreKey, KemPublic, SignedKemPreKey,
};
pub use prekey::{OneTimePreKey, PreKeySource, SignedPreKey};
pub use public::{PreKeyPublic, Signature};
pub(crate) use secret::{Secret32, diffie_hellman, random_secret, x25519_public};

use crate::error::{Error, Result};

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

/// Checks a received X25519 public key that will be kept and used later (a
/// signed or one-time prekey): it must be the canonical encoding (a value
/// below 2^255 - 19) and must not lie in the small subgroup of the curve or
/// its twist. Such a key would make every Diffie-Hellman with it all zeros
/// (`Error::NonContributoryKey`), so a bundle carrying one can never start a
/// session; refusing it when it is published or fetched keeps it from
/// reaching a directory or a store at all. `Error::InvalidPreKey` otherwise.
///
/// The small-subgroup test is one X25519 with a fixed scalar: every clamped
/// scalar is a multiple of the cofactor 8, so the result is all zeros
/// exactly for keys of order dividing 8 (on the curve, or 4 on the twist).
pub fn check_x25519_public(key: &PreKeyPublic) -> Result<()> {
    let key = key.as_bytes();
    if !crate::wire::is_canonical_x25519(key) {
        return Err(Error::InvalidPreKey);
    }
    // Any fixed value works: only the clamped multiple of 8 matters.
    let probe = Secret32::new([0x5A; 32]);
    match diffie_hellman(&probe, key) {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::InvalidPreKey),
    }
}
