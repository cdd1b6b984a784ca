//! Plaintext padding (PROTOCOL.md "Padding").
//!
//! `0x80` is appended, then zeros up to `padded_len(n + 1)`: 256 bytes for
//! short messages, Padmé above that, so a ciphertext leaks at most
//! O(log log n) bits of its length.

use crate::error::{Error, Result};

/// The largest plaintext the protocol carries: 16 MiB, inclusive.
pub const MAX_PLAINTEXT_LEN: usize = 16 * 1024 * 1024;

/// The smallest padded length (every plaintext up to 255 bytes pads to it).
pub const MIN_PADDED_LEN: usize = 256;

/// The number of bytes encrypted for a padded input of `l = n + 1` bytes.
///
/// `l <= 256 -> 256`; otherwise Padmé: `E = floor(log2 l)`,
/// `S = floor(log2 E) + 1`, `mask = 2^(E-S) - 1`, `(l + mask) & !mask`.
pub const fn padded_len(l: usize) -> usize {
    if l <= MIN_PADDED_LEN {
        return MIN_PADDED_LEN;
    }
    let e = usize::BITS - 1 - l.leading_zeros(); // floor(log2 l), l > 256 so e >= 8
    let s = (u32::BITS - 1 - e.leading_zeros()) + 1; // floor(log2 e) + 1
    let mask = (1usize << (e - s)) - 1;
    (l + mask) & !mask
}

/// The padded length for a plaintext of `n` bytes, or an error above the
/// maximum.
pub fn padded_len_for_plaintext(n: usize) -> Result<usize> {
    if n > MAX_PLAINTEXT_LEN {
        return Err(Error::PlaintextTooLarge {
            len: n,
            max: MAX_PLAINTEXT_LEN,
        });
    }
    Ok(padded_len(n + 1))
}

/// Appends `plaintext` to `out` followed by its padding.
pub fn pad_into(plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let total = padded_len_for_plaintext(plaintext.len())?;
    out.reserve(total);
    out.extend_from_slice(plaintext);
    out.push(0x80);
    out.resize(out.len() + total - plaintext.len() - 1, 0);
    Ok(())
}

/// Returns `plaintext` padded.
pub fn pad(plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    pad_into(plaintext, &mut out)?;
    Ok(out)
}

/// The length of the plaintext inside `padded`, checking that the padding
/// is exactly the canonical one for that length.
pub fn unpadded_len(padded: &[u8]) -> Result<usize> {
    let marker = padded
        .iter()
        .rposition(|&b| b != 0)
        .ok_or(Error::InvalidPadding)?;
    if padded[marker] != 0x80 || marker > MAX_PLAINTEXT_LEN {
        return Err(Error::InvalidPadding);
    }
    if padded_len(marker + 1) != padded.len() {
        return Err(Error::InvalidPadding);
    }
    Ok(marker)
}

/// Returns the plaintext inside `padded`.
pub fn unpad(padded: &[u8]) -> Result<&[u8]> {
    let n = unpadded_len(padded)?;
    Ok(&padded[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_lengths() {
        assert_eq!(padded_len(1), 256);
        assert_eq!(padded_len(256), 256);
        assert_eq!(padded_len(257), 272);
        assert_eq!(padded_len(1025), 1088);
        assert_eq!(padded_len(1_048_577), 1_081_344);
    }

    #[test]
    fn padme_is_monotone_and_not_smaller() {
        let mut prev = 0;
        for l in 1..100_000 {
            let p = padded_len(l);
            assert!(p >= l && p >= prev);
            prev = p;
        }
    }

    #[test]
    fn roundtrip_and_rejects() {
        for n in [0usize, 1, 254, 255, 256, 300, 4097, 70_000] {
            let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let padded = pad(&data).unwrap();
            assert_eq!(padded.len(), padded_len(n + 1));
            assert_eq!(unpad(&padded).unwrap(), &data[..]);
        }
        assert_eq!(unpad(&[0u8; 256]), Err(Error::InvalidPadding));
        let mut p = pad(b"hi").unwrap();
        p.push(0);
        assert_eq!(unpad(&p), Err(Error::InvalidPadding));
        let mut p = pad(b"hi").unwrap();
        p[2] = 0x81;
        assert_eq!(unpad(&p), Err(Error::InvalidPadding));
        assert!(pad(&vec![0u8; MAX_PLAINTEXT_LEN + 1]).is_err());
    }
}
