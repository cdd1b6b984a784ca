//! The link handshake between a device holding the account key and a new
//! device (docs/protocol.md, "Link handshake").
//!
//! ```text
//! link_key   = HKDF-SHA256(salt = "sotto/link/v1", ikm = secret,
//!                          info = device key || account key, L = 32)
//! LinkOffer  = 0x01 || account key(32) || u32be(device id)
//!              || u16be(len) || SignedDeviceList(len) || mac(32)
//!              mac = HMAC-SHA256(link_key, "sotto/link-offer/v1" || everything before mac)
//! LinkAccept = 0x01 || u64be(version) || mac(32)
//!              mac = HMAC-SHA256(link_key, "sotto/link-accept/v1" || device key
//!                                || account key || u64be(version))
//! history    = HKDF-Expand(PRK = link_key, info = "sotto/link/v1/history" || u64be(version), L = 32)
//! ```
//!
//! Pure functions over bytes: the caller carries them between the devices
//! inside sealed envelopes and keeps whatever state lies between them.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{DeviceId, DeviceList, LinkCode, SignedDeviceList};
use crate::error::{Error, Result};
use crate::keys::{IdentityKey, Secret32};
use crate::wire::Reader;

/// HKDF salt of the link key.
pub const LINK_KEY_SALT: &[u8] = b"sotto/link/v1";
/// MACed in front of a link offer.
pub const LINK_OFFER_DOMAIN: &[u8] = b"sotto/link-offer/v1";
/// MACed in front of a link acceptance.
pub const LINK_ACCEPT_DOMAIN: &[u8] = b"sotto/link-accept/v1";
/// HKDF-Expand info prefix of the history transfer key.
pub const HISTORY_TRANSFER_INFO: &[u8] = b"sotto/link/v1/history";
/// Format byte of a link offer.
pub const LINK_OFFER_VERSION: u8 = 0x01;
/// Format byte of a link acceptance.
pub const LINK_ACCEPT_VERSION: u8 = 0x01;
/// Length of a link acceptance.
pub const LINK_ACCEPT_LEN: usize = 1 + 8 + MAC_LEN;
/// Length of an HMAC-SHA256 tag.
const MAC_LEN: usize = 32;

/// The key both ends of a link derive from the link code and the account
/// key. It authenticates the offer and the acceptance (only someone who
/// saw the code has it) and keys the later history transfer.
///
/// It remembers the two public keys it binds. Secret: kept in a `Box`,
/// wiped on drop, `Debug` redacted.
#[derive(Clone)]
pub struct LinkKey {
    key: Secret32,
    device: IdentityKey,
    account: IdentityKey,
}

impl LinkKey {
    /// `HKDF-SHA256(salt = "sotto/link/v1", ikm = secret, info = device key
    /// || account key)`, 32 bytes: on the account device from the code it
    /// read and its own account key, on the new device from its code and
    /// the account key named in the offer.
    pub fn derive(code: &LinkCode, account: &IdentityKey) -> Self {
        let device = *code.device_key();
        let mut info = [0u8; 64];
        info[..32].copy_from_slice(device.as_bytes());
        info[32..].copy_from_slice(account.as_bytes());
        let hk = Hkdf::<Sha256>::new(Some(LINK_KEY_SALT), code.secret());
        let mut okm = Zeroizing::new([0u8; 32]);
        // 32 <= 255 * 32: expand cannot fail for this length.
        let _ = hk.expand(&info, okm.as_mut());
        Self {
            key: Secret32::new(*okm),
            device,
            account: *account,
        }
    }

    /// The new device's identity key.
    pub fn device_key(&self) -> &IdentityKey {
        &self.device
    }

    /// The account key.
    pub fn account(&self) -> &IdentityKey {
        &self.account
    }

    /// The key of the end-to-end encrypted history transfer that follows
    /// the link of device list `version`:
    /// `HKDF-Expand(PRK = link_key, info = "sotto/link/v1/history" ||
    /// u64be(version))`, 32 bytes.
    pub fn history_transfer_key(&self, version: u64) -> Result<HistoryTransferKey> {
        let mut info = [0u8; HISTORY_TRANSFER_INFO.len() + 8];
        info[..HISTORY_TRANSFER_INFO.len()].copy_from_slice(HISTORY_TRANSFER_INFO);
        info[HISTORY_TRANSFER_INFO.len()..].copy_from_slice(&version.to_be_bytes());
        // A 32-byte PRK is the hash length: `from_prk` accepts it.
        let hk = Hkdf::<Sha256>::from_prk(self.key.as_bytes())
            .map_err(|_| Error::CorruptState("hkdf prk length"))?;
        let mut okm = Zeroizing::new([0u8; 32]);
        hk.expand(&info, okm.as_mut())
            .map_err(|_| Error::CorruptState("hkdf length"))?;
        Ok(HistoryTransferKey(Secret32::new(*okm)))
    }

    /// The key's bytes (for `hazmat` only).
    #[cfg(feature = "hazmat")]
    pub(crate) fn secret_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// `HMAC-SHA256(link_key, domain || parts...)`.
    fn mac(&self, domain: &[u8], parts: &[&[u8]]) -> Result<[u8; MAC_LEN]> {
        // HMAC accepts keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.as_bytes())
            .map_err(|_| Error::CorruptState("hmac key"))?;
        mac.update(domain);
        for part in parts {
            mac.update(part);
        }
        Ok(mac.finalize().into_bytes().into())
    }

    /// Checks `tag` against the MAC of `domain || parts...` in constant
    /// time: [`Error::LinkAuthenticationFailed`] if it differs.
    fn check_mac(&self, tag: &[u8; MAC_LEN], domain: &[u8], parts: &[&[u8]]) -> Result<()> {
        let expected = self.mac(domain, parts)?;
        if bool::from(expected.ct_eq(tag)) {
            Ok(())
        } else {
            Err(Error::LinkAuthenticationFailed)
        }
    }
}

impl core::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LinkKey")
            .field("device", &self.device)
            .field("account", &self.account)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The key of the history transfer that follows a link (32 bytes). Secret:
/// kept in a `Box`, wiped on drop, `Debug` redacted.
#[derive(Clone)]
pub struct HistoryTransferKey(Secret32);

impl HistoryTransferKey {
    /// The key's bytes, to key the transfer's AEAD. This exposes the
    /// secret: copy it only into buffers that are wiped.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }
}

impl core::fmt::Debug for HistoryTransferKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("HistoryTransferKey(<redacted>)")
    }
}

/// What the account device sends the new device: the account key, the
/// device id it assigns, and the signed device list that lists the new
/// device under that id, authenticated with the link key.
///
/// The MAC proves the offer comes from someone who saw the link code, so
/// nobody can pull the new device into another account; the signature
/// proves the account vouches for the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkOffer {
    account: IdentityKey,
    device_id: DeviceId,
    device_list: SignedDeviceList,
    mac: [u8; MAC_LEN],
}

impl LinkOffer {
    /// The account device's offer. `device_list` must verify under the
    /// link key's account ([`Error::AccountMismatch`],
    /// [`Error::InvalidSignature`]) and list the link key's device
    /// ([`Error::DeviceNotListed`]); the device's id in it is the id
    /// assigned.
    pub fn new(link_key: &LinkKey, device_list: &SignedDeviceList) -> Result<Self> {
        let list = device_list.verify(&link_key.account)?;
        let device_id = list
            .contains(&link_key.device)
            .ok_or(Error::DeviceNotListed)?;
        let mut offer = Self {
            account: link_key.account,
            device_id,
            device_list: device_list.clone(),
            mac: [0u8; MAC_LEN],
        };
        offer.mac = link_key.mac(LINK_OFFER_DOMAIN, &[&offer.body()])?;
        Ok(offer)
    }

    /// The account key the offer names (unverified until
    /// [`verify`](Self::verify)).
    pub fn account(&self) -> &IdentityKey {
        &self.account
    }

    /// The device id the offer assigns (unverified until
    /// [`verify`](Self::verify)).
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    /// The signed device list the offer carries (unverified until
    /// [`verify`](Self::verify); keep it, once verified, to store and pass
    /// on as the account's list).
    pub fn device_list(&self) -> &SignedDeviceList {
        &self.device_list
    }

    /// Everything before the MAC.
    fn body(&self) -> Vec<u8> {
        let list = self.device_list.to_bytes();
        let mut out = Vec::with_capacity(1 + 32 + 4 + 2 + list.len() + MAC_LEN);
        out.push(LINK_OFFER_VERSION);
        out.extend_from_slice(self.account.as_bytes());
        out.extend_from_slice(&self.device_id.get().to_be_bytes());
        // At most MAX_SIGNED_DEVICE_LIST_LEN (818) bytes.
        out.extend_from_slice(&u16::try_from(list.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(&list);
        out
    }

    /// `body || mac`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.body();
        out.extend_from_slice(&self.mac);
        out
    }

    /// Strict decoding: format byte, a valid account key, a device list
    /// that decodes strictly and fills its length exactly, the MAC, no
    /// trailing bytes. Nothing is authenticated until
    /// [`verify`](Self::verify).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let format = r.u8()?;
        if format != LINK_OFFER_VERSION {
            return Err(Error::UnsupportedVersion(format));
        }
        let account = IdentityKey::from_bytes(r.array::<32>()?)?;
        let device_id = DeviceId::new(r.u32()?);
        let len = usize::from(r.u16()?);
        let device_list = SignedDeviceList::from_bytes(r.take(len)?)?;
        let mac = *r.array::<MAC_LEN>()?;
        r.finish()?;
        Ok(Self {
            account,
            device_id,
            device_list,
            mac,
        })
    }

    /// The new device's check of an offer, with the code it showed: the
    /// MAC under the link key of this code and the offer's account
    /// ([`Error::LinkAuthenticationFailed`]), then the list under the
    /// offer's account key ([`Error::AccountMismatch`],
    /// [`Error::InvalidSignature`]), then that the list has the code's
    /// device key under the assigned id ([`Error::DeviceNotListed`],
    /// [`Error::LinkDeviceMismatch`]).
    ///
    /// The account is the one whoever read the code chose: show it to the
    /// user (its address or safety number) before going on.
    pub fn verify(&self, code: &LinkCode) -> Result<VerifiedOffer> {
        let link_key = LinkKey::derive(code, &self.account);
        link_key.check_mac(&self.mac, LINK_OFFER_DOMAIN, &[&self.body()])?;
        let device_list = self.device_list.verify(&self.account)?;
        match device_list.contains(code.device_key()) {
            None => return Err(Error::DeviceNotListed),
            Some(listed) if listed != self.device_id => {
                return Err(Error::LinkDeviceMismatch {
                    assigned: self.device_id,
                    listed,
                });
            }
            Some(_) => {}
        }
        Ok(VerifiedOffer {
            link_key,
            device_id: self.device_id,
            device_list,
        })
    }
}

/// A link offer the new device has verified: the link key, its id in the
/// account, and the account's device list (whose
/// [`account`](DeviceList::account) is the account joined).
#[derive(Debug)]
#[non_exhaustive]
pub struct VerifiedOffer {
    /// The link key, for [`LinkAccept::new`] and the history transfer.
    pub link_key: LinkKey,
    /// The id the account gave this device.
    pub device_id: DeviceId,
    /// The verified device list that lists this device.
    pub device_list: DeviceList,
}

/// What the new device answers to an offer it verified: the version of the
/// device list it accepts, authenticated with the link key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkAccept {
    version: u64,
    mac: [u8; MAC_LEN],
}

impl LinkAccept {
    /// The acceptance of device list `version`.
    pub fn new(link_key: &LinkKey, version: u64) -> Result<Self> {
        let mac = link_key.mac(LINK_ACCEPT_DOMAIN, &[&accept_message(link_key, version)])?;
        Ok(Self { version, mac })
    }

    /// The device list version accepted (unverified until
    /// [`verify`](Self::verify)).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// `0x01 || u64be(version) || mac`.
    pub fn to_bytes(&self) -> [u8; LINK_ACCEPT_LEN] {
        let mut out = [0u8; LINK_ACCEPT_LEN];
        out[0] = LINK_ACCEPT_VERSION;
        out[1..9].copy_from_slice(&self.version.to_be_bytes());
        out[9..].copy_from_slice(&self.mac);
        out
    }

    /// Strict decoding: format byte, exactly [`LINK_ACCEPT_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let format = r.u8()?;
        if format != LINK_ACCEPT_VERSION {
            return Err(Error::UnsupportedVersion(format));
        }
        let version = r.u64()?;
        let mac = *r.array::<MAC_LEN>()?;
        r.finish()?;
        Ok(Self { version, mac })
    }

    /// The account device's check: the MAC under its link key
    /// ([`Error::LinkAuthenticationFailed`]), then that the version is the
    /// one it offered ([`Error::LinkVersionMismatch`]).
    pub fn verify(&self, link_key: &LinkKey, offered_version: u64) -> Result<()> {
        link_key.check_mac(
            &self.mac,
            LINK_ACCEPT_DOMAIN,
            &[&accept_message(link_key, self.version)],
        )?;
        if self.version != offered_version {
            return Err(Error::LinkVersionMismatch {
                offered: offered_version,
                accepted: self.version,
            });
        }
        Ok(())
    }
}

/// `device key || account key || u64be(version)`: what the acceptance's
/// MAC covers after its domain string.
fn accept_message(link_key: &LinkKey, version: u64) -> [u8; 72] {
    let mut message = [0u8; 72];
    message[..32].copy_from_slice(link_key.device.as_bytes());
    message[32..64].copy_from_slice(link_key.account.as_bytes());
    message[64..].copy_from_slice(&version.to_be_bytes());
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::IdentityKeyPair;
    use rand::SeedableRng;
    use rand::rngs::ChaCha20Rng;

    /// An account with its primary device, a new device with its code, and
    /// the list that adds it.
    struct Linking {
        account: IdentityKeyPair,
        device: IdentityKeyPair,
        code: LinkCode,
        next: DeviceList,
        signed: SignedDeviceList,
    }

    fn linking(seed: u8) -> Linking {
        let mut rng = ChaCha20Rng::from_seed([seed; 32]);
        let account = IdentityKeyPair::generate(&mut rng);
        let device = IdentityKeyPair::generate(&mut rng);
        let code = LinkCode::generate(device.public(), &mut rng);
        let next = DeviceList::primary(account.public(), 100)
            .with_device(device.public(), 200)
            .unwrap();
        let signed = next.sign(&account).unwrap();
        Linking {
            account,
            device,
            code,
            next,
            signed,
        }
    }

    #[test]
    fn both_ends_derive_the_same_link_key_as_specified() {
        let l = linking(1);
        let read: LinkCode = l.code.to_string().parse().unwrap();
        let at_account = LinkKey::derive(&read, l.account.public());
        let at_device = LinkKey::derive(&l.code, l.account.public());
        assert_eq!(at_account.key.as_bytes(), at_device.key.as_bytes());
        let mut expected = [0u8; 32];
        let mut info = l.device.public().to_bytes().to_vec();
        info.extend_from_slice(l.account.public().as_bytes());
        Hkdf::<Sha256>::new(Some(b"sotto/link/v1"), l.code.secret())
            .expand(&info, &mut expected)
            .unwrap();
        assert_eq!(at_account.key.as_bytes(), &expected);
        // Another account key gives another link key.
        let other = IdentityKeyPair::from_seed(&[9; 32]);
        assert_ne!(
            LinkKey::derive(&l.code, other.public()).key.as_bytes(),
            &expected
        );
    }

    #[test]
    fn an_offer_and_its_acceptance_complete_a_link() {
        let l = linking(2);
        let link_key = LinkKey::derive(&l.code, l.account.public());
        let offer = LinkOffer::new(&link_key, &l.signed).unwrap();
        assert_eq!(
            offer.device_id(),
            l.next.contains(l.device.public()).unwrap()
        );
        let bytes = offer.to_bytes();
        let received = LinkOffer::from_bytes(&bytes).unwrap();
        assert_eq!(received, offer);
        assert_eq!(received.account(), l.account.public());
        let verified = received.verify(&l.code).unwrap();
        assert_eq!(verified.device_list, l.next);
        assert_eq!(verified.device_id, offer.device_id());
        let accept = LinkAccept::new(&verified.link_key, l.next.version()).unwrap();
        let accept = LinkAccept::from_bytes(&accept.to_bytes()).unwrap();
        assert_eq!(accept.version(), 2);
        accept.verify(&link_key, l.next.version()).unwrap();
        assert_eq!(
            accept.verify(&link_key, 3),
            Err(Error::LinkVersionMismatch {
                offered: 3,
                accepted: 2
            })
        );
        assert_eq!(
            link_key.history_transfer_key(2).unwrap().as_bytes(),
            verified
                .link_key
                .history_transfer_key(2)
                .unwrap()
                .as_bytes()
        );
    }

    #[test]
    fn the_offer_layout_and_mac_are_as_specified() {
        let l = linking(3);
        let link_key = LinkKey::derive(&l.code, l.account.public());
        let bytes = LinkOffer::new(&link_key, &l.signed).unwrap().to_bytes();
        let list = l.signed.to_bytes();
        assert_eq!(bytes[0], 0x01);
        assert_eq!(&bytes[1..33], l.account.public().as_bytes());
        assert_eq!(&bytes[33..37], &2u32.to_be_bytes());
        assert_eq!(&bytes[37..39], &(list.len() as u16).to_be_bytes());
        assert_eq!(&bytes[39..39 + list.len()], list.as_slice());
        assert_eq!(bytes.len(), 39 + list.len() + 32);
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(link_key.key.as_bytes()).unwrap();
        mac.update(b"sotto/link-offer/v1");
        mac.update(&bytes[..bytes.len() - 32]);
        assert_eq!(
            &bytes[bytes.len() - 32..],
            mac.finalize().into_bytes().as_slice()
        );
    }

    #[test]
    fn the_acceptance_layout_and_mac_are_as_specified() {
        let l = linking(4);
        let link_key = LinkKey::derive(&l.code, l.account.public());
        let bytes = LinkAccept::new(&link_key, 7).unwrap().to_bytes();
        assert_eq!(bytes[0], 0x01);
        assert_eq!(&bytes[1..9], &7u64.to_be_bytes());
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(link_key.key.as_bytes()).unwrap();
        mac.update(b"sotto/link-accept/v1");
        mac.update(l.device.public().as_bytes());
        mac.update(l.account.public().as_bytes());
        mac.update(&7u64.to_be_bytes());
        assert_eq!(&bytes[9..], mac.finalize().into_bytes().as_slice());
    }

    #[test]
    fn the_history_key_is_hkdf_expand_of_the_link_key() {
        let l = linking(5);
        let link_key = LinkKey::derive(&l.code, l.account.public());
        let mut expected = [0u8; 32];
        let mut info = b"sotto/link/v1/history".to_vec();
        info.extend_from_slice(&2u64.to_be_bytes());
        Hkdf::<Sha256>::from_prk(link_key.key.as_bytes())
            .unwrap()
            .expand(&info, &mut expected)
            .unwrap();
        assert_eq!(
            link_key.history_transfer_key(2).unwrap().as_bytes(),
            &expected
        );
        assert_ne!(
            link_key.history_transfer_key(3).unwrap().as_bytes(),
            &expected
        );
    }

    #[test]
    fn an_offer_made_without_the_code_is_refused() {
        let l = linking(6);
        // Someone who never saw the code: same device key, another secret.
        let mut rng = ChaCha20Rng::from_seed([66; 32]);
        let guess = LinkCode::generate(l.device.public(), &mut rng);
        let forged = LinkOffer::new(&LinkKey::derive(&guess, l.account.public()), &l.signed)
            .unwrap()
            .to_bytes();
        assert_eq!(
            LinkOffer::from_bytes(&forged)
                .unwrap()
                .verify(&l.code)
                .err(),
            Some(Error::LinkAuthenticationFailed)
        );
    }

    #[test]
    fn a_flipped_bit_anywhere_in_an_offer_is_refused() {
        let l = linking(7);
        let link_key = LinkKey::derive(&l.code, l.account.public());
        let bytes = LinkOffer::new(&link_key, &l.signed).unwrap().to_bytes();
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            let refused = LinkOffer::from_bytes(&bad).and_then(|o| o.verify(&l.code));
            assert!(refused.is_err(), "byte {at}");
        }
    }

    #[test]
    fn the_account_can_only_offer_a_list_it_signed_that_lists_the_device() {
        let l = linking(8);
        let link_key = LinkKey::derive(&l.code, l.account.public());
        let without = DeviceList::primary(l.account.public(), 0)
            .sign(&l.account)
            .unwrap();
        assert_eq!(
            LinkOffer::new(&link_key, &without),
            Err(Error::DeviceNotListed)
        );
        let stranger = IdentityKeyPair::from_seed(&[77; 32]);
        let foreign = DeviceList::primary(stranger.public(), 0)
            .with_device(l.device.public(), 0)
            .unwrap()
            .sign(&stranger)
            .unwrap();
        assert_eq!(
            LinkOffer::new(&link_key, &foreign),
            Err(Error::AccountMismatch)
        );
    }

    /// An offer whose MAC is right (made with the link key) but whose
    /// contents are not what the new device must accept.
    fn offer_with(
        link_key: &LinkKey,
        account: IdentityKey,
        device_id: DeviceId,
        list: &SignedDeviceList,
    ) -> LinkOffer {
        let mut offer = LinkOffer {
            account,
            device_id,
            device_list: list.clone(),
            mac: [0; 32],
        };
        offer.mac = link_key.mac(LINK_OFFER_DOMAIN, &[&offer.body()]).unwrap();
        offer
    }

    #[test]
    fn an_authentic_offer_must_still_list_this_device_under_its_id_and_verify() {
        let l = linking(9);
        let link_key = LinkKey::derive(&l.code, l.account.public());
        let account = *l.account.public();
        let wrong_id = offer_with(&link_key, account, DeviceId::new(5), &l.signed);
        assert_eq!(
            wrong_id.verify(&l.code).err(),
            Some(Error::LinkDeviceMismatch {
                assigned: DeviceId::new(5),
                listed: DeviceId::new(2)
            })
        );
        let without = DeviceList::primary(&account, 0).sign(&l.account).unwrap();
        let unlisted = offer_with(&link_key, account, DeviceId::new(2), &without);
        assert_eq!(unlisted.verify(&l.code).err(), Some(Error::DeviceNotListed));
        // A list signed by another key, under the account's name.
        let stranger = IdentityKeyPair::from_seed(&[78; 32]);
        let mut bytes = l.next.to_bytes();
        let mut message = b"sotto/device-list/v1".to_vec();
        message.extend_from_slice(&bytes);
        bytes.extend_from_slice(stranger.sign(&message).as_bytes());
        let forged = SignedDeviceList::from_bytes(&bytes).unwrap();
        let unsigned = offer_with(&link_key, account, DeviceId::new(2), &forged);
        assert_eq!(
            unsigned.verify(&l.code).err(),
            Some(Error::InvalidSignature)
        );
        // A list of another account than the offer names.
        let stranger_key = LinkKey::derive(&l.code, stranger.public());
        let other = offer_with(
            &stranger_key,
            *stranger.public(),
            DeviceId::new(2),
            &l.signed,
        );
        assert_eq!(other.verify(&l.code).err(), Some(Error::AccountMismatch));
    }

    #[test]
    fn an_acceptance_without_the_link_key_is_refused() {
        let l = linking(10);
        let link_key = LinkKey::derive(&l.code, l.account.public());
        let other = LinkKey::derive(
            &LinkCode::generate(l.device.public(), &mut ChaCha20Rng::from_seed([1; 32])),
            l.account.public(),
        );
        let accept = LinkAccept::new(&other, 2).unwrap();
        assert_eq!(
            accept.verify(&link_key, 2),
            Err(Error::LinkAuthenticationFailed)
        );
        let mut bytes = LinkAccept::new(&link_key, 2).unwrap().to_bytes();
        bytes[8] ^= 1;
        assert_eq!(
            LinkAccept::from_bytes(&bytes).unwrap().verify(&link_key, 2),
            Err(Error::LinkAuthenticationFailed)
        );
    }

    #[test]
    fn parsers_refuse_bad_formats_lengths_and_trailing_bytes() {
        let l = linking(11);
        let link_key = LinkKey::derive(&l.code, l.account.public());
        let offer = LinkOffer::new(&link_key, &l.signed).unwrap().to_bytes();
        let accept = LinkAccept::new(&link_key, 2).unwrap().to_bytes();
        for len in 0..offer.len() {
            assert!(LinkOffer::from_bytes(&offer[..len]).is_err(), "{len}");
        }
        for len in 0..accept.len() {
            assert!(
                matches!(
                    LinkAccept::from_bytes(&accept[..len]),
                    Err(Error::Truncated { .. })
                ),
                "{len}"
            );
        }
        let mut longer = offer.clone();
        longer.push(0);
        assert_eq!(LinkOffer::from_bytes(&longer), Err(Error::TrailingBytes(1)));
        let mut longer = accept.to_vec();
        longer.push(0);
        assert_eq!(
            LinkAccept::from_bytes(&longer),
            Err(Error::TrailingBytes(1))
        );
        let mut v2 = offer.clone();
        v2[0] = 2;
        assert_eq!(
            LinkOffer::from_bytes(&v2),
            Err(Error::UnsupportedVersion(2))
        );
        let mut v2 = accept;
        v2[0] = 2;
        assert_eq!(
            LinkAccept::from_bytes(&v2),
            Err(Error::UnsupportedVersion(2))
        );
        // A length prefix one short or one long of the list.
        let mut short = offer.clone();
        short[38] -= 1;
        assert!(LinkOffer::from_bytes(&short).is_err());
        let mut long = offer;
        long[38] += 1;
        assert!(LinkOffer::from_bytes(&long).is_err());
    }

    #[test]
    fn debug_does_not_show_the_keys() {
        let l = linking(12);
        let link_key = LinkKey::derive(&l.code, l.account.public());
        let shown = format!("{link_key:?}");
        assert!(shown.contains("<redacted>"));
        let hex: String = link_key
            .key
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!shown.contains(&hex[..16]));
        assert!(
            !shown.contains(format!("{:?}", &link_key.key.as_bytes()[..4]).trim_end_matches(']'))
        );
        let history = link_key.history_transfer_key(2).unwrap();
        assert_eq!(format!("{history:?}"), "HistoryTransferKey(<redacted>)");
    }
}
