//! Printable addresses: how people hand each other their identity.

use core::fmt;
use core::str::FromStr;

use sha2::{Digest, Sha256};
use sotto_core::IdentityKey;
use sotto_relay::MailboxAddress;

/// Prefix of every printed address.
pub const ADDRESS_PREFIX: &str = "sotto:";
/// Domain string of the address checksum.
const CHECKSUM_DOMAIN: &[u8] = b"sotto/address-checksum/v1";

/// A person's address: their Ed25519 identity key, printed as
/// `sotto:` + 64 hex digits of the key + 8 hex digits of checksum
/// (`SHA-256("sotto/address-checksum/v1" || key)[0..4]`), so that a
/// mistyped or truncated address is refused instead of naming a stranger.
///
/// The address is public: it only lets others send to you and compute your
/// relay mailbox.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address {
    identity: IdentityKey,
}

/// Why a string is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// It does not start with `sotto:`.
    #[error("an address starts with \"sotto:\"")]
    MissingPrefix,
    /// It has the wrong number of characters.
    #[error("an address has 72 hex digits after \"sotto:\", this one has {0}")]
    WrongLength(usize),
    /// It has a character that is not a hex digit.
    #[error("an address has only hex digits after \"sotto:\"")]
    NotHex,
    /// The checksum does not match: a typo.
    #[error("the address checksum does not match (a typo?)")]
    BadChecksum,
    /// The key part is not a valid identity key.
    #[error("the address does not hold a valid identity key")]
    InvalidKey,
}

fn checksum(key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(CHECKSUM_DOMAIN);
    h.update(key);
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl Address {
    /// The address of an identity key.
    pub fn of(identity: &IdentityKey) -> Self {
        Self {
            identity: *identity,
        }
    }

    /// The identity key.
    pub fn identity_key(&self) -> &IdentityKey {
        &self.identity
    }

    /// The relay mailbox of this address.
    pub fn mailbox(&self) -> MailboxAddress {
        MailboxAddress::of(&self.identity)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ADDRESS_PREFIX)?;
        for b in self.identity.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        for b in checksum(self.identity.as_bytes()) {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let hex = s
            .strip_prefix(ADDRESS_PREFIX)
            .ok_or(AddressError::MissingPrefix)?
            .as_bytes();
        if hex.len() != 72 {
            return Err(AddressError::WrongLength(hex.len()));
        }
        let mut bytes = [0u8; 36];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or(AddressError::NotHex)?;
            let lo = hex_value(pair[1]).ok_or(AddressError::NotHex)?;
            bytes[i] = (hi << 4) | lo;
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[..32]);
        if checksum(&key) != bytes[32..] {
            return Err(AddressError::BadChecksum);
        }
        let identity = IdentityKey::from_bytes(&key).map_err(|_| AddressError::InvalidKey)?;
        Ok(Self { identity })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn address() -> Address {
        let mut rng = rand::rngs::StdRng::from_seed([5; 32]);
        Address::of(sotto_core::IdentityKeyPair::generate(&mut rng).public())
    }

    #[test]
    fn printed_address_parses_back() {
        let a = address();
        let text = a.to_string();
        assert_eq!(text.len(), 6 + 72);
        assert_eq!(text.parse::<Address>(), Ok(a));
        assert_eq!(
            text.to_uppercase()
                .replace("SOTTO:", "sotto:")
                .parse::<Address>(),
            Ok(a)
        );
    }

    #[test]
    fn typos_and_truncation_are_refused() {
        let text = address().to_string();
        let mut typo = text.clone().into_bytes();
        typo[10] = if typo[10] == b'0' { b'1' } else { b'0' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(typo.parse::<Address>(), Err(AddressError::BadChecksum));
        assert_eq!(
            text[..70].parse::<Address>(),
            Err(AddressError::WrongLength(64))
        );
        assert_eq!(
            text[6..].parse::<Address>(),
            Err(AddressError::MissingPrefix)
        );
        let not_hex = text.replacen('a', "g", 1);
        if not_hex != text {
            assert_eq!(not_hex.parse::<Address>(), Err(AddressError::NotHex));
        }
    }
}
