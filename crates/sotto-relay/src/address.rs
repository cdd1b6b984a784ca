//! Mailbox addresses, derived from the owner's identity key.

use sha2::{Digest, Sha256};
use sotto_core::IdentityKey;

/// Domain separation string of the address derivation.
pub const MAILBOX_ADDRESS_DOMAIN: &[u8] = b"sotto-relay/mailbox/v1";

/// The address of a mailbox: `SHA-256("sotto-relay/mailbox/v1" || IK)`,
/// where `IK` is the owner's 32-byte Ed25519 identity public key.
///
/// Anyone who knows a contact's identity key can compute its address, and
/// a bundle fetched for an address can be checked against it
/// ([`MailboxAddress::of`] of the bundle's identity key). Hashing with a
/// domain string keeps the address independent of the key encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxAddress([u8; 32]);

impl MailboxAddress {
    /// The address of the mailbox owned by `identity`.
    pub fn of(identity: &IdentityKey) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(MAILBOX_ADDRESS_DOMAIN);
        hasher.update(identity.as_bytes());
        Self(hasher.finalize().into())
    }

    /// An address from its 32 raw bytes (as carried on the wire).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex of the 32 bytes.
    pub fn to_hex(&self) -> String {
        use core::fmt::Write;
        let mut out = String::with_capacity(64);
        for b in &self.0 {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    /// The address whose [`to_hex`](Self::to_hex) is `hex` (64 lower-case
    /// hex digits); `None` for anything else.
    pub fn from_hex(hex: &str) -> Option<Self> {
        fn digit(c: u8) -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            }
        }
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (b, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            *b = (digit(pair[0])? << 4) | digit(pair[1])?;
        }
        Some(Self(bytes))
    }
}

impl core::fmt::Debug for MailboxAddress {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "MailboxAddress(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

impl core::fmt::Display for MailboxAddress {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sotto_core::IdentityKeyPair;

    #[test]
    fn hex_round_trips_and_nothing_else_parses() {
        let a = MailboxAddress::from_bytes(core::array::from_fn(|i| i as u8 * 7));
        assert_eq!(MailboxAddress::from_hex(&a.to_hex()), Some(a));
        let upper = a.to_hex().to_ascii_uppercase();
        for bad in [&upper[..], "", &a.to_hex()[..62], "g".repeat(64).as_str()] {
            assert_eq!(MailboxAddress::from_hex(bad), None, "{bad}");
        }
        assert_eq!(MailboxAddress::from_hex(&format!("{}0", a.to_hex())), None);
    }

    #[test]
    fn address_is_domain_separated_hash_of_the_identity_key() {
        let id = IdentityKeyPair::from_seed(&[1; 32]);
        let mut h = Sha256::new();
        h.update(b"sotto-relay/mailbox/v1");
        h.update(id.public().as_bytes());
        let expected: [u8; 32] = h.finalize().into();
        assert_eq!(MailboxAddress::of(id.public()).as_bytes(), &expected);
        assert_ne!(
            MailboxAddress::of(id.public()),
            MailboxAddress::of(IdentityKeyPair::from_seed(&[2; 32]).public())
        );
        assert_eq!(MailboxAddress::of(id.public()).to_hex().len(), 64);
    }
}
