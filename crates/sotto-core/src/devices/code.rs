//! The link code a new device shows to be linked (docs/protocol.md,
//! "Link code").
//!
//! ```text
//! payload = 0x01 || device key(32) || secret(16) || checksum(2)        (51 bytes)
//! checksum = SHA-256("sotto/link-code/v1" || 0x01 || device key || secret)[0..2]
//! text     = "sotto-link:" || base32(payload), lowercase, no padding,
//!            a '-' after every 5 symbols                               (82 symbols)
//! ```

use core::fmt::Write as _;
use core::str::FromStr;

use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::base32;
use crate::error::{Error, Result};
use crate::keys::IdentityKey;

/// What every link code starts with (any case on input).
pub const LINK_CODE_PREFIX: &str = "sotto-link:";
/// Format byte of a link code's payload.
pub const LINK_CODE_VERSION: u8 = 0x01;
/// Hashed in front of a link code's payload to make its checksum.
pub const LINK_CODE_CHECKSUM_DOMAIN: &[u8] = b"sotto/link-code/v1";
/// Length of the secret a link code carries.
pub const LINK_SECRET_LEN: usize = 16;
/// Bytes of a link code's payload covered by its checksum.
const CHECKED_LEN: usize = 1 + 32 + LINK_SECRET_LEN;
/// Bytes of a link code's payload.
const PAYLOAD_LEN: usize = CHECKED_LEN + 2;
/// Base32 symbols of every link code (spaces and dashes not counted): 82.
pub const LINK_CODE_SYMBOLS: usize = base32::encoded_len(PAYLOAD_LEN);
/// Symbols between two separators in the text a link code prints.
const GROUP_LEN: usize = 5;
/// What a link code prints between groups. On input, dashes and white
/// space are both accepted anywhere after the prefix.
const SEPARATOR: char = '-';

/// The link secret: lives in a `Box`, wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct LinkSecret(Box<[u8; LINK_SECRET_LEN]>);

/// What a new device shows so that a device holding the account key can
/// link it: the new device's identity key and a fresh 16-byte secret.
///
/// Whoever reads the code can offer the new device a link and learns the
/// key that authenticates the handshake (see [`LinkKey`](super::LinkKey)),
/// so it is shown only to the user linking it (on screen, as a QR code or
/// read aloud) and never sent over a network. Its text
/// ([`Display`](core::fmt::Display)) is `sotto-link:` and 82 lowercase
/// base32 symbols in groups of five joined by `-`; [`FromStr`] accepts
/// any case, dashes and white space anywhere after the prefix, and names
/// the mistake of a mistyped code (prefix, character, length, checksum).
///
/// The secret is wiped on drop and not shown by `Debug`; the text is the
/// secret, so it belongs only on the screen that shows it.
#[derive(Clone)]
pub struct LinkCode {
    device_key: IdentityKey,
    secret: LinkSecret,
}

impl LinkCode {
    /// A fresh code for the new device's identity key: 16 bytes are drawn
    /// from `rng`, in one read.
    pub fn generate<R: CryptoRng + ?Sized>(device_key: &IdentityKey, rng: &mut R) -> Self {
        let mut secret = Box::new([0u8; LINK_SECRET_LEN]);
        rng.fill_bytes(secret.as_mut_slice());
        Self {
            device_key: *device_key,
            secret: LinkSecret(secret),
        }
    }

    /// The new device's identity key, as the code carries it.
    pub fn device_key(&self) -> &IdentityKey {
        &self.device_key
    }

    pub(crate) fn secret(&self) -> &[u8; LINK_SECRET_LEN] {
        &self.secret.0
    }

    /// `0x01 || device key || secret || checksum`.
    fn payload(&self) -> Zeroizing<[u8; PAYLOAD_LEN]> {
        let mut payload = Zeroizing::new([0u8; PAYLOAD_LEN]);
        payload[0] = LINK_CODE_VERSION;
        payload[1..33].copy_from_slice(self.device_key.as_bytes());
        payload[33..CHECKED_LEN].copy_from_slice(self.secret());
        let sum = checksum(&payload[..CHECKED_LEN]);
        payload[CHECKED_LEN..].copy_from_slice(&sum);
        payload
    }
}

/// `SHA-256("sotto/link-code/v1" || checked)[0..2]`.
fn checksum(checked: &[u8]) -> [u8; 2] {
    let mut h = Sha256::new();
    h.update(LINK_CODE_CHECKSUM_DOMAIN);
    h.update(checked);
    let digest = h.finalize();
    [digest[0], digest[1]]
}

impl core::fmt::Display for LinkCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let payload = self.payload();
        let mut symbols = Zeroizing::new([0u8; LINK_CODE_SYMBOLS]);
        base32::encode(payload.as_slice(), symbols.as_mut_slice());
        f.write_str(LINK_CODE_PREFIX)?;
        for (i, &symbol) in symbols.iter().enumerate() {
            if i > 0 && i % GROUP_LEN == 0 {
                f.write_char(SEPARATOR)?;
            }
            f.write_char(char::from(symbol))?;
        }
        Ok(())
    }
}

impl FromStr for LinkCode {
    type Err = Error;

    /// Reads a code as a person typed or pasted it. White space around it
    /// is ignored; the prefix may be in any case; after it, dashes and
    /// white space are ignored and symbols may be in any case. The checks,
    /// in order: [`Error::InvalidLinkCodePrefix`],
    /// [`Error::InvalidLinkCodeCharacter`] (with its position),
    /// [`Error::InvalidLinkCodeLength`], [`Error::LinkCodeChecksum`] (a
    /// mistyped symbol), [`Error::UnsupportedVersion`],
    /// [`Error::InvalidIdentityKey`].
    fn from_str(text: &str) -> Result<Self> {
        let leading = text.chars().take_while(|c| c.is_whitespace()).count();
        let trimmed = text.trim();
        let body = match trimmed.get(..LINK_CODE_PREFIX.len()) {
            Some(head) if head.eq_ignore_ascii_case(LINK_CODE_PREFIX) => trimmed
                .get(LINK_CODE_PREFIX.len()..)
                .ok_or(Error::InvalidLinkCodePrefix)?,
            _ => return Err(Error::InvalidLinkCodePrefix),
        };
        // The prefix is ASCII: as many characters as bytes.
        let body_start = leading + LINK_CODE_PREFIX.len();
        let mut values = Zeroizing::new([0u8; LINK_CODE_SYMBOLS]);
        let mut count = 0usize;
        let mut last_position = body_start;
        for (i, c) in body.chars().enumerate() {
            if c == SEPARATOR || c.is_whitespace() {
                continue;
            }
            let position = body_start + i;
            let value =
                base32::symbol_value(c).ok_or(Error::InvalidLinkCodeCharacter { position })?;
            if let Some(slot) = values.get_mut(count) {
                *slot = value;
            }
            count += 1;
            last_position = position;
        }
        if count != LINK_CODE_SYMBOLS {
            return Err(Error::InvalidLinkCodeLength {
                symbols: count,
                expected: LINK_CODE_SYMBOLS,
            });
        }
        let mut payload = Zeroizing::new([0u8; PAYLOAD_LEN]);
        // The last symbol carries 3 bits of the payload and 2 zero bits.
        if !base32::decode(values.as_slice(), payload.as_mut_slice()) {
            return Err(Error::InvalidLinkCodeCharacter {
                position: last_position,
            });
        }
        // The checksum first: a typo anywhere is reported as one.
        let (checked, sum) = payload.split_at(CHECKED_LEN);
        if !bool::from(checksum(checked).ct_eq(sum)) {
            return Err(Error::LinkCodeChecksum);
        }
        if payload[0] != LINK_CODE_VERSION {
            return Err(Error::UnsupportedVersion(payload[0]));
        }
        let device_key = IdentityKey::from_slice(&payload[1..33])?;
        let mut secret = Box::new([0u8; LINK_SECRET_LEN]);
        secret.copy_from_slice(&payload[33..CHECKED_LEN]);
        Ok(Self {
            device_key,
            secret: LinkSecret(secret),
        })
    }
}

impl PartialEq for LinkCode {
    /// The secrets in constant time.
    fn eq(&self, other: &Self) -> bool {
        self.device_key == other.device_key
            && bool::from(self.secret().ct_eq(other.secret().as_slice()))
    }
}

impl Eq for LinkCode {}

impl core::fmt::Debug for LinkCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LinkCode")
            .field("device_key", &self.device_key)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::IdentityKeyPair;
    use rand::SeedableRng;
    use rand::rngs::ChaCha20Rng;

    fn code(seed: u8) -> LinkCode {
        let device = IdentityKeyPair::from_seed(&[seed; 32]);
        LinkCode::generate(device.public(), &mut ChaCha20Rng::from_seed([seed; 32]))
    }

    /// The text with the symbol at `index` (0-based, separators not
    /// counted) replaced by `with`.
    fn with_symbol(text: &str, index: usize, with: char) -> String {
        let mut seen = 0;
        text.chars()
            .enumerate()
            .map(|(i, c)| {
                if i < LINK_CODE_PREFIX.len() || c == '-' {
                    return c;
                }
                seen += 1;
                if seen - 1 == index { with } else { c }
            })
            .collect()
    }

    #[test]
    fn the_text_is_the_prefix_and_82_symbols_in_groups_of_five() {
        let text = code(1).to_string();
        let body = text.strip_prefix("sotto-link:").unwrap();
        let groups: Vec<&str> = body.split('-').collect();
        assert_eq!(groups.len(), 17);
        assert!(groups[..16].iter().all(|g| g.len() == 5));
        assert_eq!(groups[16].len(), 2);
        assert!(
            body.chars()
                .all(|c| c == '-' || c.is_ascii_lowercase() || ('2'..='7').contains(&c))
        );
        assert_eq!(text.len(), 11 + 82 + 16);
    }

    #[test]
    fn the_payload_is_version_key_secret_and_checksum() {
        let c = code(2);
        let payload = c.payload();
        assert_eq!(payload[0], 0x01);
        assert_eq!(&payload[1..33], c.device_key().as_bytes());
        assert_eq!(&payload[33..49], c.secret());
        let mut h = Sha256::new();
        h.update(b"sotto/link-code/v1");
        h.update(&payload[..49]);
        assert_eq!(&payload[49..], &h.finalize()[..2]);
    }

    #[test]
    fn a_code_reads_back_in_any_case_with_spaces_or_dashes() {
        let c = code(3);
        let text = c.to_string();
        assert_eq!(text.parse::<LinkCode>().unwrap(), c);
        assert_eq!(text.to_uppercase().parse::<LinkCode>().unwrap(), c);
        let spaced = text
            .replace('-', " ")
            .replacen("sotto link:", "sotto-link:", 1);
        assert_eq!(spaced.parse::<LinkCode>().unwrap(), c);
        let body = text.strip_prefix("sotto-link:").unwrap().replace('-', "");
        let ragged = format!("  \tSotto-Link: {} \n", body.to_uppercase());
        assert_eq!(ragged.parse::<LinkCode>().unwrap(), c);
        let mixed: String = body
            .chars()
            .enumerate()
            .flat_map(|(i, ch)| {
                let sep = match i % 3 {
                    0 => Some(' '),
                    1 => Some('-'),
                    _ => None,
                };
                sep.into_iter().chain(Some(ch))
            })
            .collect();
        assert_eq!(
            format!("sotto-link:{mixed}").parse::<LinkCode>().unwrap(),
            c
        );
        assert_ne!(code(4), c);
    }

    #[test]
    fn a_wrong_prefix_is_named() {
        let text = code(5).to_string();
        for bad in [
            text.replacen("sotto-link:", "sotto-lnk:", 1),
            text.replacen("sotto-link:", "", 1),
            text.replacen("sotto-link:", "sotto link:", 1),
            String::new(),
            "sotto-lin".into(),
            "sotto-linké".into(),
        ] {
            assert_eq!(
                bad.parse::<LinkCode>(),
                Err(Error::InvalidLinkCodePrefix),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_character_outside_the_alphabet_is_named_with_its_position() {
        let text = code(6).to_string();
        for bad in ['0', '1', '8', '9', '=', '_', 'ä'] {
            let typo = with_symbol(&text, 7, bad);
            // Symbol 7 is in the second group: 11 + 5 + 1 + 2.
            assert_eq!(
                typo.parse::<LinkCode>(),
                Err(Error::InvalidLinkCodeCharacter { position: 19 }),
                "{typo}"
            );
        }
        let padded = format!("  {text}");
        let typo = with_symbol(padded.trim_start(), 0, '0');
        assert_eq!(
            format!("  {typo}").parse::<LinkCode>(),
            Err(Error::InvalidLinkCodeCharacter { position: 13 })
        );
    }

    #[test]
    fn a_missing_or_extra_symbol_is_a_length_error() {
        let text = code(7).to_string();
        assert_eq!(
            text[..text.len() - 1].parse::<LinkCode>(),
            Err(Error::InvalidLinkCodeLength {
                symbols: 81,
                expected: 82
            })
        );
        assert_eq!(
            format!("{text}a").parse::<LinkCode>(),
            Err(Error::InvalidLinkCodeLength {
                symbols: 83,
                expected: 82
            })
        );
        assert_eq!(
            "sotto-link:".parse::<LinkCode>(),
            Err(Error::InvalidLinkCodeLength {
                symbols: 0,
                expected: 82
            })
        );
    }

    #[test]
    fn every_mistyped_symbol_is_caught() {
        let c = code(8);
        let text = c.to_string();
        let mut checksum_errors = 0;
        for index in 0..LINK_CODE_SYMBOLS {
            for &symbol in base32::ALPHABET {
                let typo = with_symbol(&text, index, char::from(symbol));
                if typo == text {
                    continue;
                }
                match typo.parse::<LinkCode>() {
                    Err(Error::LinkCodeChecksum) => checksum_errors += 1,
                    // The last symbol's two low bits must be zero.
                    Err(Error::InvalidLinkCodeCharacter { position }) => {
                        assert_eq!(index, LINK_CODE_SYMBOLS - 1);
                        assert_eq!(position, text.len() - 1);
                    }
                    other => panic!("symbol {index} as {symbol}: {other:?}"),
                }
            }
        }
        // 81 symbols with 31 wrong values each, and 7 canonical wrong last
        // symbols: a 16-bit checksum lets about 1 in 65536 through, and
        // none of these.
        assert_eq!(checksum_errors, 81 * 31 + 7);
    }

    #[test]
    fn a_valid_checksum_over_a_bad_version_or_key_is_refused() {
        let c = code(9);
        let encode = |payload: &mut [u8; PAYLOAD_LEN]| {
            let sum = checksum(&payload[..CHECKED_LEN]);
            payload[CHECKED_LEN..].copy_from_slice(&sum);
            let mut symbols = [0u8; LINK_CODE_SYMBOLS];
            base32::encode(payload, &mut symbols);
            format!("sotto-link:{}", core::str::from_utf8(&symbols).unwrap())
        };
        let mut payload = *c.payload();
        payload[0] = 0x02;
        assert_eq!(
            encode(&mut payload).parse::<LinkCode>(),
            Err(Error::UnsupportedVersion(2))
        );
        let mut payload = *c.payload();
        payload[1..33].copy_from_slice(&{
            let mut small_order = [0u8; 32];
            small_order[0] = 1;
            small_order
        });
        assert_eq!(
            encode(&mut payload).parse::<LinkCode>(),
            Err(Error::InvalidIdentityKey)
        );
        let mut payload = *c.payload();
        assert_eq!(encode(&mut payload).parse::<LinkCode>().unwrap(), c);
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let c = code(10);
        let shown = format!("{c:?}");
        assert!(shown.contains("<redacted>"));
        let secret_hex: String = c.secret().iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.contains(&secret_hex));
        assert!(!shown.contains(format!("{:?}", &c.secret()[..4]).trim_end_matches(']')));
        let body = c.to_string();
        assert!(!shown.contains(&body[11..31]));
    }
}
