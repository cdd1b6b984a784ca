//! A 32-byte secret that lives on the heap and is wiped on drop.

use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};

/// 32 secret bytes in a `Box`, so moving the owner does not leave copies
/// on the stack; zeroized on drop; `Debug` is redacted.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct Secret32(Box<[u8; 32]>);

impl Secret32 {
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        let mut bytes = bytes;
        let out = Self(Box::new(bytes));
        bytes.zeroize();
        out
    }

    pub(crate) fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut boxed = Box::new([0u8; 32]);
        if bytes.len() != 32 {
            return None;
        }
        boxed.copy_from_slice(bytes);
        Some(Self(boxed))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn as_mut_bytes(&mut self) -> &mut [u8; 32] {
        &mut self.0
    }
}

impl core::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secret32(<redacted>)")
    }
}

/// Draws 32 bytes from the caller's RNG: exactly one `fill_bytes` of 32.
pub(crate) fn random_secret<R: CryptoRng + ?Sized>(rng: &mut R) -> Secret32 {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(bytes.as_mut());
    Secret32::new(*bytes)
}

/// X25519 with the protocol's rule: an all-zero output is an error.
///
/// `private` is clamped by X25519 itself (RFC 7748), so any 32 bytes work.
pub(crate) fn diffie_hellman(private: &Secret32, public: &[u8; 32]) -> Result<Secret32> {
    let secret = x25519_dalek::StaticSecret::from(*private.as_bytes());
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(Error::NonContributoryKey);
    }
    Ok(Secret32::new(shared.to_bytes()))
}

/// The X25519 public key of a private scalar.
pub(crate) fn x25519_public(private: &Secret32) -> [u8; 32] {
    let secret = x25519_dalek::StaticSecret::from(*private.as_bytes());
    x25519_dalek::PublicKey::from(&secret).to_bytes()
}
