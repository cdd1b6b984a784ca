//! RFC 4648 base32 (section 6) without padding, lowercase, for link codes.
//!
//! An encoding, not a cryptographic primitive: link codes need the 5-bit
//! packing and nothing else (their reader handles case, separators and
//! positions itself), so it is these few lines rather than a dependency.
//! The tests hold it to RFC 4648's own vectors, to every one- and two-byte
//! input, and to random round trips; `docs/test-vectors/check_vectors.py`
//! checks its output against Python's `base64.b32encode`.

/// The RFC 4648 base32 alphabet, lowercase: value `v` is `ALPHABET[v]`.
pub(crate) const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Symbols that encode `len` bytes without padding: `ceil(8 * len / 5)`.
pub(crate) const fn encoded_len(len: usize) -> usize {
    (len * 8).div_ceil(5)
}

/// The value (0..32) of a base32 symbol, in either case.
pub(crate) fn symbol_value(c: char) -> Option<u8> {
    match c {
        'a'..='z' => Some(c as u8 - b'a'),
        'A'..='Z' => Some(c as u8 - b'A'),
        '2'..='7' => Some(c as u8 - b'2' + 26),
        _ => None,
    }
}

/// Writes the symbols of `bytes` into `out`, which holds exactly
/// [`encoded_len`]`(bytes.len())` of them. The last symbol's unused low
/// bits are zero.
pub(crate) fn encode(bytes: &[u8], out: &mut [u8]) {
    // At most 4 bits wait in `acc` between bytes, 12 after one is added.
    let mut acc: u16 = 0;
    let mut bits: u32 = 0;
    let mut slots = out.iter_mut();
    for &byte in bytes {
        acc = (acc << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            if let Some(slot) = slots.next() {
                *slot = ALPHABET[usize::from((acc >> bits) & 0x1f)];
            }
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0
        && let Some(slot) = slots.next()
    {
        *slot = ALPHABET[usize::from((acc << (5 - bits)) & 0x1f)];
    }
}

/// Packs symbol values (each below 32) into `out`. False unless the values
/// are the canonical encoding of exactly `out.len()` bytes: as many
/// symbols as [`encoded_len`] says, and zero bits after the last byte (so
/// that each byte string has one encoding only).
pub(crate) fn decode(values: &[u8], out: &mut [u8]) -> bool {
    if values.len() != encoded_len(out.len()) {
        return false;
    }
    // At most 7 bits wait in `acc` between symbols, 12 after one is added.
    let mut acc: u16 = 0;
    let mut bits: u32 = 0;
    let mut slots = out.iter_mut();
    for &value in values {
        acc = (acc << 5) | u16::from(value & 0x1f);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            if let Some(slot) = slots.next() {
                // The 8 bits above the `bits` still waiting.
                *slot = (acc >> bits) as u8;
            }
            acc &= (1 << bits) - 1;
        }
    }
    acc == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_vec(bytes: &[u8]) -> String {
        let mut out = vec![0u8; encoded_len(bytes.len())];
        encode(bytes, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn decode_vec(text: &str, len: usize) -> Option<Vec<u8>> {
        let values: Option<Vec<u8>> = text.chars().map(symbol_value).collect();
        let mut out = vec![0u8; len];
        decode(&values?, &mut out).then_some(out)
    }

    #[test]
    fn rfc_4648_vectors_without_padding() {
        // RFC 4648 section 10, lowercased, padding removed.
        let vectors = [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(encode_vec(plain.as_bytes()), encoded);
            assert_eq!(
                decode_vec(encoded, plain.len()).as_deref(),
                Some(plain.as_bytes())
            );
            assert_eq!(
                decode_vec(&encoded.to_uppercase(), plain.len()).as_deref(),
                Some(plain.as_bytes())
            );
        }
    }

    #[test]
    fn every_symbol_has_its_alphabet_value() {
        for (value, &symbol) in ALPHABET.iter().enumerate() {
            let c = char::from(symbol);
            assert_eq!(symbol_value(c), Some(value as u8));
            assert_eq!(symbol_value(c.to_ascii_uppercase()), Some(value as u8));
        }
        for c in [
            '0', '1', '8', '9', '=', '-', ' ', '@', '[', '`', '{', 'é', '\0',
        ] {
            assert_eq!(symbol_value(c), None, "{c:?}");
        }
        let accepted = (0..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|&c| symbol_value(c).is_some())
            .count();
        assert_eq!(accepted, 26 * 2 + 6);
    }

    #[test]
    fn every_one_and_two_byte_input_round_trips() {
        for a in 0..=255u8 {
            let one = [a];
            assert_eq!(decode_vec(&encode_vec(&one), 1), Some(one.to_vec()));
            for b in 0..=255u8 {
                let two = [a, b];
                assert_eq!(decode_vec(&encode_vec(&two), 2), Some(two.to_vec()));
            }
        }
    }

    #[test]
    fn lengths_round_trip_with_patterned_bytes() {
        for len in 0..=64usize {
            let bytes: Vec<u8> = (0..len)
                .map(|i| (i as u8).wrapping_mul(37) ^ 0xa5)
                .collect();
            let text = encode_vec(&bytes);
            assert_eq!(text.len(), encoded_len(len));
            assert_eq!(decode_vec(&text, len), Some(bytes));
        }
    }

    #[test]
    fn non_canonical_trailing_bits_and_wrong_counts_are_refused() {
        // "f" is "my": 'y' carries 3 bits of 'f' and 2 zero bits.
        assert_eq!(decode_vec("my", 1), Some(b"f".to_vec()));
        assert_eq!(decode_vec("mz", 1), None);
        assert_eq!(decode_vec("m7", 1), None);
        assert_eq!(decode_vec("mya", 1), None);
        assert_eq!(decode_vec("m", 1), None);
        assert_eq!(decode_vec("mzxw6", 2), None);
        // Every last symbol of a 51-byte code except the 8 canonical ones.
        let canonical = (0..32u8).filter(|v| v & 0b11 == 0).count();
        let mut values = vec![0u8; encoded_len(51)];
        let accepted = (0..32u8)
            .filter(|&last| {
                *values.last_mut().unwrap() = last;
                decode(&values, &mut [0u8; 51])
            })
            .count();
        assert_eq!(accepted, canonical);
    }
}
