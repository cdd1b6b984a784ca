//! The names of a group's states and changes: [`ChangeHash`],
//! [`StateHash`]. The group itself is named by the [`GroupId`] its
//! sender keys use.
//!
//! [`GroupId`]: crate::group::GroupId

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
