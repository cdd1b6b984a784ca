//! Safety numbers (PROTOCOL.md "Safety number").
//!
//! Per party: `h = SHA-512(u16be(0) || Encode(IK) || stable_id)`, then 5200
//! times `h = SHA-512(h || Encode(IK))`; `h[0..30]` as six 5-byte big-endian
//! integers, each mod 100000 as five digits. The safety number is both
//! parties' 30 digits, the numerically smaller first. In Sotto the stable id
//! of a party is its raw 32-byte Ed25519 identity key: the address is
//! derived from that key, and there is no other account identifier.

use sha2::{Digest, Sha512};

use crate::keys::IdentityKey;

/// Iterations of SHA-512 per party.
pub const SAFETY_NUMBER_ITERATIONS: usize = 5200;

/// The 30-digit half of one party.
pub fn fingerprint_digits(identity: &IdentityKey) -> String {
    let encoded = identity.encode();
    let mut hasher = Sha512::new();
    hasher.update(0u16.to_be_bytes());
    hasher.update(encoded);
    hasher.update(identity.as_bytes());
    let mut h = hasher.finalize();
    for _ in 0..SAFETY_NUMBER_ITERATIONS {
        let mut hasher = Sha512::new();
        hasher.update(h);
        hasher.update(encoded);
        h = hasher.finalize();
    }
    let mut out = String::with_capacity(30);
    for chunk in h[..30].chunks_exact(5) {
        let v = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        out.push_str(&format!("{:05}", v % 100_000));
    }
    out
}

/// The 60-digit safety number of two identities; the same on both sides.
pub fn safety_number(a: &IdentityKey, b: &IdentityKey) -> SafetyNumber {
    let fa = fingerprint_digits(a);
    let fb = fingerprint_digits(b);
    // Equal-length decimal strings: lexicographic order is numeric order.
    let digits = if fa <= fb { fa + &fb } else { fb + &fa };
    SafetyNumber { digits }
}

/// Sixty decimal digits that two people compare to detect an attacker in
/// the middle.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SafetyNumber {
    digits: String,
}

impl SafetyNumber {
    /// The 60 digits without separators.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// Twelve groups of five digits, as people read them out.
    pub fn grouped(&self) -> String {
        let groups: Vec<&str> = (0..12)
            .filter_map(|i| self.digits.get(i * 5..i * 5 + 5))
            .collect();
        groups.join(" ")
    }
}

impl core::fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.grouped())
    }
}
