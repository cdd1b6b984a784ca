//! The names of a group and of its states and changes: [`GroupId`],
//! [`ChangeHash`], [`StateHash`].

use rand_core::CryptoRng;

/// Writes `name(` then the hex of `bytes` (the first `max` of them, then an
/// ellipsis when there are more) and `)`.
fn hex(
    f: &mut core::fmt::Formatter<'_>,
    name: &str,
    bytes: &[u8],
    max: usize,
) -> core::fmt::Result {
    write!(f, "{name}(")?;
    for b in bytes.iter().take(max) {
        write!(f, "{b:02x}")?;
    }
    if bytes.len() > max {
        write!(f, "…")?;
    }
    write!(f, ")")
}

/// The id of a group: 16 random bytes chosen by its creator, the same for
/// the group's whole life. Every change names it, so that a change of one
/// group can never be applied to another.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId([u8; GroupId::LEN]);

impl GroupId {
    /// Bytes of a group id.
    pub const LEN: usize = 16;

    /// A fresh id: one 16-byte draw from the caller's RNG.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; Self::LEN];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The id with these bytes.
    pub const fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes, as they are on the wire.
    pub const fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

impl core::fmt::Debug for GroupId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        hex(f, "GroupId", &self.0, Self::LEN)
    }
}

/// SHA-256 of one signed change (docs/protocol.md 15.2): names the change,
/// orders concurrent changes, and becomes the `head` of the state the
/// change produces.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeHash([u8; 32]);

impl ChangeHash {
    /// The hash with these bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl core::fmt::Debug for ChangeHash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        hex(f, "ChangeHash", &self.0, 8)
    }
}

/// SHA-256 of a group state (docs/protocol.md 15.3): the id, revision,
/// name, members and the change that produced it. A change names the state
/// it applies to by this hash (its `parent`); two members whose states have
/// the same hash have the same member list.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateHash([u8; 32]);

impl StateHash {
    /// The parent of a create: the state before the group exists, all
    /// zeros (no state hashes to it).
    pub const NONE: Self = Self([0; 32]);

    /// The hash with these bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl core::fmt::Debug for StateHash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        hex(f, "StateHash", &self.0, 8)
    }
}
