//! Public key material as its own types: the X25519 public key of a
//! prekey and an Ed25519 signature.
//!
//! Neither is secret, so both are plain `Copy` values with a readable
//! `Debug`. Neither is checked on construction: a signature is checked by
//! [`IdentityKey::verify`](super::IdentityKey::verify), a prekey by
//! [`check_x25519_public`](super::check_x25519_public) (both run in
//! [`PreKeyBundle::verify`](super::PreKeyBundle::verify)).

/// Writes the first 8 bytes of `bytes` in hex, then an ellipsis: enough
/// to tell keys apart in a log, short enough to read.
fn short_hex(f: &mut core::fmt::Formatter<'_>, name: &str, bytes: &[u8]) -> core::fmt::Result {
    write!(f, "{name}(")?;
    for b in bytes.iter().take(8) {
        write!(f, "{b:02x}")?;
    }
    write!(f, "…)")
}

/// The X25519 public key of a signed or one-time prekey (32 bytes, as
/// sent on the wire).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PreKeyPublic([u8; 32]);

impl PreKeyPublic {
    /// The key with these bytes (not validated: see the module docs).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32-byte X25519 public key, borrowed.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The raw 32-byte X25519 public key.
    pub const fn to_bytes(self) -> [u8; 32] {
        self.0
    }

    /// `Encode(key) = 0x05 || key`: what a signed prekey's signature covers.
    pub fn encode(&self) -> [u8; 33] {
        super::encode_x25519(&self.0)
    }
}

impl From<[u8; 32]> for PreKeyPublic {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl From<PreKeyPublic> for [u8; 32] {
    fn from(key: PreKeyPublic) -> Self {
        key.0
    }
}

impl AsRef<[u8]> for PreKeyPublic {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl core::fmt::Debug for PreKeyPublic {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        short_hex(f, "PreKeyPublic", &self.0)
    }
}

/// An Ed25519 signature (64 bytes, as sent on the wire).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; 64]);

impl Signature {
    /// The signature with these bytes (not validated: see the module docs).
    pub const fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    /// The raw 64 bytes, borrowed.
    pub const fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// The raw 64 bytes.
    pub const fn to_bytes(self) -> [u8; 64] {
        self.0
    }
}

impl From<[u8; 64]> for Signature {
    fn from(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }
}

impl From<Signature> for [u8; 64] {
    fn from(signature: Signature) -> Self {
        signature.0
    }
}

impl AsRef<[u8]> for Signature {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl core::fmt::Debug for Signature {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        short_hex(f, "Signature", &self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::X25519_PREFIX;
    use super::*;

    #[test]
    fn bytes_round_trip_unchanged() {
        let key = PreKeyPublic::from_bytes([7; 32]);
        assert_eq!(key.to_bytes(), [7; 32]);
        assert_eq!(key.as_bytes(), &[7; 32]);
        assert_eq!(<[u8; 32]>::from(key), [7; 32]);
        assert_eq!(key.encode()[0], X25519_PREFIX);
        assert_eq!(&key.encode()[1..], &[7; 32]);
        let sig = Signature::from([9; 64]);
        assert_eq!(sig.to_bytes(), [9; 64]);
        assert_eq!(sig.as_bytes(), &[9; 64]);
    }

    #[test]
    fn debug_shows_a_short_hex_prefix() {
        let mut bytes = [0u8; 32];
        bytes[0] = 0xab;
        bytes[31] = 0xcd;
        assert_eq!(
            format!("{:?}", PreKeyPublic::from_bytes(bytes)),
            "PreKeyPublic(ab00000000000000…)"
        );
        assert_eq!(
            format!("{:?}", Signature::from_bytes([0x11; 64])),
            "Signature(1111111111111111…)"
        );
    }
}
