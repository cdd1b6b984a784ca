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
/// The small-subgroup test compares with the five canonical encodings of
/// such points (no curve arithmetic): the curve's points of order dividing
/// 8 have u = 0 (order 2), 1 (order 4) and two u-coordinates of order 8,
/// and the twist's points of order dividing 4 add u = p - 1. Every other
/// encoding of a small-order point is non-canonical, refused above. The
/// tests check each against an X25519 that comes out all zeros.
pub fn check_x25519_public(key: &PreKeyPublic) -> Result<()> {
    let key = key.as_bytes();
    if !crate::wire::is_canonical_x25519(key) {
        return Err(Error::InvalidPreKey);
    }
    if SMALL_ORDER_X25519.contains(key) {
        return Err(Error::InvalidPreKey);
    }
    Ok(())
}

/// The canonical X25519 encodings of the points of small order on
/// Curve25519 and its twist (see [`check_x25519_public`]), little-endian.
const SMALL_ORDER_X25519: [[u8; 32]; 5] = [
    // 0
    [0; 32],
    // 1
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    // Order 8.
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ],
    // Order 8.
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ],
    // p - 1 (order 4 on the twist).
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
];
