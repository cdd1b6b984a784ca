//! Printable addresses: how people hand each other their identity.

use core::fmt;
use core::hash::{Hash, Hasher};
use core::str::FromStr;

use sha2::{Digest, Sha256};
use sotto_core::{IdentityKey, ProtocolVersions};
use sotto_relay::MailboxAddress;

/// Prefix of every printed address.
pub const ADDRESS_PREFIX: &str = "sotto:";
/// Domain string of the short form's checksum.
const CHECKSUM_DOMAIN: &[u8] = b"sotto/address-checksum/v1";
/// Domain string of the full form's checksum (with protocol versions).
const CHECKSUM_DOMAIN_VERSIONS: &[u8] = b"sotto/address-checksum/v2";
/// Hex digits after the prefix: short form (key, checksum) and full form
/// (key, versions, checksum).
const SHORT_DIGITS: usize = 72;
const FULL_DIGITS: usize = 74;

/// A person's address: their Ed25519 identity key and, when its owner
/// said so, the protocol versions they speak.
///
/// Two printed forms:
/// - short: `sotto:` + 64 hex digits of the key + 8 hex digits of
///   checksum (`SHA-256("sotto/address-checksum/v1" || key)[0..4]`);
///   what [`Display`](fmt::Display) prints, the contact's id;
/// - full: `sotto:` + 64 hex digits of the key + 2 of the versions byte
///   (`02` or `03`, as in a v2 bundle: docs/protocol.md 16.2) + 8 of
///   checksum (`SHA-256("sotto/address-checksum/v2" || key || versions)[0..4]`);
///   what [`shareable`](Self::shareable) prints and what a profile gives
///   out. A contact added from a full form that names version 2 gets
///   sessions of version 2 only: a relay that strips the KEM prekey from
///   its bundle is caught ([`Error::Downgrade`](crate::Error::Downgrade)).
///
/// The checksums make a mistyped or truncated address refused instead of
/// naming a stranger. Addresses are equal when they name the same
/// identity key, whatever versions they carry.
///
/// The address is public: it only lets others send to you and compute your
/// relay mailbox.
#[derive(Clone, Copy)]
pub struct Address {
    identity: IdentityKey,
    versions: Option<ProtocolVersions>,
}

impl PartialEq for Address {
    fn eq(&self, other: &Self) -> bool {
        self.identity == other.identity
    }
}

impl Eq for Address {}

impl Hash for Address {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity.hash(state);
    }
}

/// Why a string is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// It does not start with `sotto:`.
    #[error("an address starts with \"sotto:\"")]
    MissingPrefix,
    /// It has the wrong number of characters.
    #[error("an address has 72 or 74 hex digits after \"sotto:\", this one has {0}")]
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
    /// The versions byte of a full address names no known combination.
    #[error("the address names protocol versions this client does not know")]
    UnknownVersions,
}

/// The checksum of the short form (`versions` `None`) or of the full
/// form with this versions byte.
fn checksum(key: &[u8; 32], versions: Option<u8>) -> [u8; 4] {
    let mut h = Sha256::new();
    match versions {
        None => {
            h.update(CHECKSUM_DOMAIN);
            h.update(key);
        }
        Some(byte) => {
            h.update(CHECKSUM_DOMAIN_VERSIONS);
            h.update(key);
            h.update([byte]);
        }
    }
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
    /// The address of an identity key, saying nothing of its versions.
    pub fn of(identity: &IdentityKey) -> Self {
        Self {
            identity: *identity,
            versions: None,
        }
    }

    /// The same address, saying its owner speaks `versions`.
    pub fn with_versions(self, versions: ProtocolVersions) -> Self {
        Self {
            versions: Some(versions),
            ..self
        }
    }

    /// The protocol versions the address says its owner speaks (`None`:
    /// a short address, which says nothing).
    pub fn versions(&self) -> Option<ProtocolVersions> {
        self.versions
    }

    /// The lowest protocol version a session with the owner may run: 2 if
    /// the address says they speak version 2, else 1.
    pub fn min_protocol_version(&self) -> u8 {
        if self.versions.is_some_and(ProtocolVersions::speaks_v2) {
            2
        } else {
            1
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

    /// The form to give to others: the full form when the versions are
    /// known, else the short one.
    pub fn shareable(&self) -> impl fmt::Display + '_ {
        Shareable(self)
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, versions: Option<ProtocolVersions>) -> fmt::Result {
        f.write_str(ADDRESS_PREFIX)?;
        for b in self.identity.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        if let Some(v) = versions {
            write!(f, "{:02x}", v.to_byte())?;
        }
        for b in checksum(
            self.identity.as_bytes(),
            versions.map(ProtocolVersions::to_byte),
        ) {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

struct Shareable<'a>(&'a Address);

impl fmt::Display for Shareable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write(f, self.0.versions)
    }
}

/// The short form: the identity alone (see [`Address`]).
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, None)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.shareable())
    }
}

impl FromStr for Address {
    type Err = AddressError;

    /// Reads either form (see [`Address`]), in either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let hex = s
            .strip_prefix(ADDRESS_PREFIX)
            .ok_or(AddressError::MissingPrefix)?
            .as_bytes();
        if hex.len() != SHORT_DIGITS && hex.len() != FULL_DIGITS {
            return Err(AddressError::WrongLength(hex.len()));
        }
        let mut bytes = [0u8; FULL_DIGITS / 2];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or(AddressError::NotHex)?;
            let lo = hex_value(pair[1]).ok_or(AddressError::NotHex)?;
            bytes[i] = (hi << 4) | lo;
        }
        let bytes = &bytes[..hex.len() / 2];
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[..32]);
        let (versions, check) = if hex.len() == FULL_DIGITS {
            (Some(bytes[32]), &bytes[33..])
        } else {
            (None, &bytes[32..])
        };
        // The checksum first: a typo in the versions byte is a typo.
        if checksum(&key, versions) != *check {
            return Err(AddressError::BadChecksum);
        }
        let versions = versions
            .map(|byte| ProtocolVersions::from_byte(byte).ok_or(AddressError::UnknownVersions))
            .transpose()?;
        let identity = IdentityKey::from_bytes(&key).map_err(|_| AddressError::InvalidKey)?;
        Ok(Self { identity, versions })
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

    #[test]
    fn the_full_form_carries_the_versions_and_names_the_same_person() {
        let short = address();
        let full = short.with_versions(ProtocolVersions::V1_AND_V2);
        let text = full.shareable().to_string();
        assert_eq!(text.len(), 6 + 74);
        assert_eq!(&text[6 + 64..6 + 66], "03");
        let back: Address = text.parse().unwrap();
        assert_eq!(back.versions(), Some(ProtocolVersions::V1_AND_V2));
        assert_eq!(back.min_protocol_version(), 2);
        // Equal to the short form, which is its contact id.
        assert_eq!(back, short);
        assert_eq!(back.to_string(), short.to_string());
        assert_eq!(short.shareable().to_string(), short.to_string());
        assert_eq!(short.min_protocol_version(), 1);
        let v2_only = short.with_versions(ProtocolVersions::V2_ONLY);
        assert_eq!(
            v2_only
                .shareable()
                .to_string()
                .parse::<Address>()
                .unwrap()
                .versions(),
            Some(ProtocolVersions::V2_ONLY)
        );
    }

    #[test]
    fn a_changed_versions_byte_is_a_typo_and_unknown_versions_are_refused() {
        let full = address().with_versions(ProtocolVersions::V1_AND_V2);
        let text = full.shareable().to_string();
        // 03 -> 01 (a stripped "speaks v2"): the checksum catches it.
        let stripped = format!("{}01{}", &text[..6 + 64], &text[6 + 66..]);
        assert_eq!(stripped.parse::<Address>(), Err(AddressError::BadChecksum));
        // Cutting the versions byte out leaves a short form whose checksum
        // is another domain's.
        let cut = format!("{}{}", &text[..6 + 64], &text[6 + 66..]);
        assert_eq!(cut.parse::<Address>(), Err(AddressError::BadChecksum));
        // A well-formed full address naming versions nobody defined.
        let key = *full.identity_key().as_bytes();
        let mut unknown = String::from(ADDRESS_PREFIX);
        for b in key.iter().chain(&[0x07]).chain(&checksum(&key, Some(0x07))) {
            unknown.push_str(&format!("{b:02x}"));
        }
        assert_eq!(
            unknown.parse::<Address>(),
            Err(AddressError::UnknownVersions)
        );
        assert_eq!(
            text[..text.len() - 1].parse::<Address>(),
            Err(AddressError::WrongLength(73))
        );
    }
}
