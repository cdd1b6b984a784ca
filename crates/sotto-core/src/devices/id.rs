//! Device ids: the number an account gives each of its devices.

/// The number that names one device of an account, unique within its
/// device list (docs/protocol.md, "Linked devices"); `u32be` on the wire.
///
/// An id names a device only together with the device's key: once a device
/// is removed, a list made by another implementation may give its id to a
/// new device. Keep per-device state by the device's identity key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(u32);

impl DeviceId {
    /// The id of the device an account was created on (its device key is
    /// the account key): [`DeviceList::primary`](super::DeviceList::primary)
    /// lists it under this id.
    pub const PRIMARY: Self = Self(1);

    /// The id with this number.
    pub const fn new(id: u32) -> Self {
        Self(id)
    }

    /// The number (encoded as `u32be` on the wire).
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl From<u32> for DeviceId {
    fn from(id: u32) -> Self {
        Self(id)
    }
}

impl From<DeviceId> for u32 {
    fn from(id: DeviceId) -> Self {
        id.0
    }
}

impl core::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_display_order_and_convert_as_their_number() {
        let id = DeviceId::new(7);
        assert_eq!(id.get(), 7);
        assert_eq!(u32::from(id), 7);
        assert_eq!(DeviceId::from(7), id);
        assert_eq!(id.to_string(), "7");
        assert_eq!(format!("{id:?}"), "DeviceId(7)");
        assert!(DeviceId::PRIMARY < id);
        assert_eq!(DeviceId::PRIMARY.get(), 1);
    }
}
