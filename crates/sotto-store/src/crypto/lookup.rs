//! Lookup keys: what WHERE clauses use instead of identifiers.
//!
//! `lookup = HMAC-SHA256(lookup subkey, u8(len domain) || domain ||
//! for each part: u32be(len part) || part)`. The domain keeps, say, a
//! contact's row key and its conversation's row key unrelated.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// What a lookup key identifies. Each has its own domain label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Domain {
    /// `contacts.lookup`, `sessions.contact` (of the contact's primary
    /// device) and `contact_device_lists.contact`: parts = [contact id].
    Contact,
    /// `conversations.lookup`, `messages.conversation`, `outbox.conversation`:
    /// parts = [contact id].
    Conversation,
    /// `seen_envelopes.lookup`: parts = [sender contact id, envelope id].
    SeenEnvelope,
    /// `outbox.lookup`: parts = [envelope id].
    Outbox,
    /// `signed_prekeys.lookup`: parts = [u32be(id)].
    SignedPreKey,
    /// `one_time_prekeys.lookup`: parts = [u32be(id)].
    OneTimePreKey,
    /// `used_base_keys.lookup`: parts = [u32be(signed prekey id), base key].
    BaseKey,
    /// `kem_prekeys.lookup`: parts = [u32be(id)].
    KemPreKey,
    /// `sessions.contact` of a contact's device other than its primary:
    /// parts = [contact id, u32be(device id)]. (The primary device's
    /// sessions keep the [`Contact`](Self::Contact) lookup they always had.)
    DeviceSession,
    /// `sessions.contact` of another device of our own account: parts =
    /// [u32be(device id)].
    OwnDeviceSession,
    /// `seen_envelopes.lookup` of a copy from one of our own devices:
    /// parts = [u32be(device id), envelope id].
    SeenOwnEnvelope,
    /// `groups.lookup` and `group_sender_keys.grp`: parts = [group id].
    Group,
    /// `group_sender_keys.lookup`: parts = [group id, sending device key].
    GroupSenderKey,
    /// `group_outbox.lookup`: parts = [envelope id].
    GroupOutbox,
    /// `seen_envelopes.lookup` of a group message: parts = [group id,
    /// sending device key, envelope id].
    SeenGroupEnvelope,
}

impl Domain {
    /// The domain label hashed in front of the parts.
    pub(crate) fn label(self) -> &'static [u8] {
        match self {
            Self::Contact => b"sotto-store/contact",
            Self::Conversation => b"sotto-store/conversation",
            Self::SeenEnvelope => b"sotto-store/seen-envelope",
            Self::Outbox => b"sotto-store/outbox",
            Self::SignedPreKey => b"sotto-store/signed-prekey",
            Self::OneTimePreKey => b"sotto-store/one-time-prekey",
            Self::BaseKey => b"sotto-store/base-key",
            Self::KemPreKey => b"sotto-store/kem-prekey",
            Self::DeviceSession => b"sotto-store/device-session",
            Self::OwnDeviceSession => b"sotto-store/own-device-session",
            Self::SeenOwnEnvelope => b"sotto-store/seen-own-envelope",
            Self::Group => b"sotto-store/group",
            Self::GroupSenderKey => b"sotto-store/group-sender-key",
            Self::GroupOutbox => b"sotto-store/group-outbox",
            Self::SeenGroupEnvelope => b"sotto-store/seen-group-envelope",
        }
    }
}

/// The keyed HMAC state; cloned per computation so the key schedule runs
/// once per open. Every copy is wiped on drop.
#[derive(Clone)]
pub(crate) struct LookupKey {
    mac: Hmac<Sha256>,
}

// The keyed HMAC state is two SHA-256 states that depend on the key;
// with sha2's `zeroize` feature they are wiped on drop. Checked here so a
// feature change cannot silently drop it.
const _: fn() = || {
    fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    wiped_on_drop::<sha2::block_api::Sha256VarCore>();
    wiped_on_drop::<chacha20poly1305::XChaCha20Poly1305>();
};

impl LookupKey {
    pub(crate) fn new(key: &[u8; 32]) -> crate::Result<Self> {
        // HMAC takes keys of any length; the error cannot happen.
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .map_err(|_| crate::Error::InvalidKdfParams("HMAC key length"))?;
        Ok(Self { mac })
    }

    pub(crate) fn compute(&self, domain: Domain, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        let label = domain.label();
        mac.update(&[label.len() as u8]);
        mac.update(label);
        for part in parts {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_and_parts_separate() {
        let k = LookupKey::new(&[3; 32]).unwrap();
        let a = k.compute(Domain::Contact, &[b"alice"]);
        assert_eq!(a, k.compute(Domain::Contact, &[b"alice"]));
        assert_ne!(a, k.compute(Domain::Conversation, &[b"alice"]));
        assert_ne!(
            a,
            LookupKey::new(&[4; 32])
                .unwrap()
                .compute(Domain::Contact, &[b"alice"])
        );
        assert_ne!(
            k.compute(Domain::SeenEnvelope, &[b"ab", b"c"]),
            k.compute(Domain::SeenEnvelope, &[b"a", b"bc"])
        );
    }
}
