//! Prekey ids: a `u32` on the wire, a type of its own in the API so that a
//! signed prekey's id cannot be passed where a one-time prekey's is meant.

macro_rules! prekey_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u32);

        impl $name {
            /// The largest id.
            pub const MAX: Self = Self(u32::MAX);

            /// The id with this number.
            pub const fn new(id: u32) -> Self {
                Self(id)
            }

            /// The number (encoded as `u32be` on the wire).
            pub const fn get(self) -> u32 {
                self.0
            }
        }

        impl From<u32> for $name {
            fn from(id: u32) -> Self {
                Self(id)
            }
        }

        impl From<$name> for u32 {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                core::fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

prekey_id! {
    /// The id of a signed prekey, chosen by its owner and named in every
    /// PreKeyMessage made with it.
    SignedPreKeyId
}

prekey_id! {
    /// The id of a one-time prekey, chosen by its owner and named in the
    /// PreKeyMessage that used it.
    OneTimePreKeyId
}

prekey_id! {
    /// The id of an ML-KEM prekey (protocol v2), last-resort or one-time:
    /// one space of ids for both, chosen by the owner and named in the
    /// PreKeyMessage that used it.
    KemPreKeyId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_display_and_convert_as_their_number() {
        let spk = SignedPreKeyId::new(7);
        assert_eq!(spk.get(), 7);
        assert_eq!(u32::from(spk), 7);
        assert_eq!(SignedPreKeyId::from(7), spk);
        assert_eq!(spk.to_string(), "7");
        assert_eq!(format!("{spk:?}"), "SignedPreKeyId(7)");
        let opk = OneTimePreKeyId::new(3);
        assert_eq!(opk.to_string(), "3");
        assert!(opk < OneTimePreKeyId::MAX);
        assert_eq!(OneTimePreKeyId::MAX.get(), u32::MAX);
    }
}
