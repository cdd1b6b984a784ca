//! Group ids and sender key chain ids.

use rand_core::CryptoRng;

/// Length of a group id.
pub const GROUP_ID_LEN: usize = 32;

/// The name of one group: 32 random bytes, drawn once when the group is
/// created and carried in the clear in every group message header.
///
/// Not secret (every member sees it), but it says nothing about who is in
/// the group: it is random, not derived from the members or the creator.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId([u8; GROUP_ID_LEN]);

impl GroupId {
    /// A fresh group id: one 32-byte draw from the caller's RNG.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; GROUP_ID_LEN];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The group id with these bytes (read back from storage or a message).
    pub const fn from_bytes(bytes: [u8; GROUP_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; GROUP_ID_LEN] {
        &self.0
    }
}

impl core::fmt::Debug for GroupId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GroupId(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// The id of one sender key chain: a random `u32` drawn when the chain is
/// made (`u32be` on the wire). A message names its chain by this id; a
/// receiver holds a few chains of each sender and picks the one named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChainId(u32);

impl ChainId {
    /// The chain id with this number.
    pub const fn new(id: u32) -> Self {
        Self(id)
    }

    /// The number (encoded as `u32be` on the wire).
    pub const fn get(self) -> u32 {
        self.0
    }

    /// A fresh chain id: one 4-byte draw, read as `u32be`.
    pub(crate) fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 4];
        rng.fill_bytes(&mut bytes);
        Self(u32::from_be_bytes(bytes))
    }
}

impl From<u32> for ChainId {
    fn from(id: u32) -> Self {
        Self(id)
    }
}

impl From<ChainId> for u32 {
    fn from(id: ChainId) -> Self {
        id.0
    }
}

impl core::fmt::Display for ChainId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_group_id_is_one_32_byte_draw_and_shows_its_prefix() {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([1; 32]);
        let id = GroupId::generate(&mut rng);
        let mut again = rand::rngs::ChaCha20Rng::from_seed([1; 32]);
        let mut bytes = [0u8; 32];
        rand_core::Rng::fill_bytes(&mut again, &mut bytes);
        assert_eq!(id.as_bytes(), &bytes);
        assert_eq!(GroupId::from_bytes(bytes), id);
        let debug = format!("{id:?}");
        assert!(debug.starts_with("GroupId("));
        assert!(debug.contains(&hex::encode(&bytes[..8])));
        assert!(!debug.contains(&hex::encode(&bytes[8..])));
    }

    #[test]
    fn a_chain_id_is_four_bytes_big_endian_and_displays_as_its_number() {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([2; 32]);
        let id = ChainId::generate(&mut rng);
        let mut again = rand::rngs::ChaCha20Rng::from_seed([2; 32]);
        let mut bytes = [0u8; 4];
        rand_core::Rng::fill_bytes(&mut again, &mut bytes);
        assert_eq!(id.get(), u32::from_be_bytes(bytes));
        assert_eq!(ChainId::new(7).to_string(), "7");
        assert_eq!(u32::from(ChainId::from(9)), 9);
    }
}
