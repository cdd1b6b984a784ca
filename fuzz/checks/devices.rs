//! Checks of the `devices` fuzz target, shared with the corpus replay in
//! `crates/sotto-core/tests/fuzz_corpus.rs` and the property tests of
//! `crates/sotto-core/tests/device_parsers.rs`.
//!
//! Any input, to every parser of linked devices: `DeviceList`,
//! `SignedDeviceList`, `LinkOffer` and `LinkAccept` from the bytes, and
//! `LinkCode` from the bytes read as text. None panics; what one accepts
//! encodes back to exactly the input; a verification that succeeds (the
//! corpus holds inputs made with the fixed keys below) gives what its
//! documentation promises.

use std::sync::LazyLock;

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sotto_core::{
    DeviceList, IdentityKeyPair, LinkAccept, LinkCode, LinkKey, LinkOffer, SignedDeviceList,
};

/// The account key the corpus's signed lists and offers are made with.
pub(crate) static ACCOUNT: LazyLock<IdentityKeyPair> =
    LazyLock::new(|| IdentityKeyPair::from_seed(&[0xA0; 32]));

/// The new device's identity of the corpus's offers.
pub(crate) static DEVICE: LazyLock<IdentityKeyPair> =
    LazyLock::new(|| IdentityKeyPair::from_seed(&[0xD0; 32]));

/// The link code the new device showed.
pub(crate) static CODE: LazyLock<LinkCode> =
    LazyLock::new(|| LinkCode::generate(DEVICE.public(), &mut ChaCha20Rng::from_seed([0xC0; 32])));

/// The link key of `CODE` and `ACCOUNT`.
pub(crate) static LINK_KEY: LazyLock<LinkKey> =
    LazyLock::new(|| LinkKey::derive(&CODE, ACCOUNT.public()));

pub(crate) fn check(data: &[u8]) {
    device_list(data);
    signed_device_list(data);
    link_offer(data);
    link_accept(data);
    link_code(&String::from_utf8_lossy(data));
}

fn device_list(data: &[u8]) {
    match DeviceList::from_bytes(data) {
        Ok(list) => {
            assert_eq!(list.to_bytes(), data, "device list did not round-trip");
            // What decodes is a list the constructor accepts as it is.
            let rebuilt = DeviceList::new(
                *list.account(),
                list.version(),
                list.issued_at(),
                list.devices().to_vec(),
            );
            assert_eq!(rebuilt.as_ref(), Ok(&list));
            assert!(list.supersedes(Some(&list)).is_err());
            for device in list.devices() {
                assert_eq!(list.contains(&device.identity), Some(device.id));
            }
        }
        Err(e) => {
            let _ = format!("{e} {e:?}");
        }
    }
}

fn signed_device_list(data: &[u8]) {
    match SignedDeviceList::from_bytes(data) {
        Ok(signed) => {
            assert_eq!(signed.to_bytes(), data, "signed list did not round-trip");
            if let Ok(list) = signed.verify(ACCOUNT.public()) {
                assert_eq!(list.account(), ACCOUNT.public());
                // Ed25519 signatures are deterministic, and a strict
                // verification admits no other encoding of one.
                let resigned = list.sign(&ACCOUNT).expect("the account signs its own list");
                assert_eq!(resigned.to_bytes(), data);
            }
        }
        Err(e) => {
            let _ = format!("{e} {e:?}");
        }
    }
}

fn link_offer(data: &[u8]) {
    match LinkOffer::from_bytes(data) {
        Ok(offer) => {
            assert_eq!(offer.to_bytes(), data, "link offer did not round-trip");
            match offer.verify(&CODE) {
                Ok(verified) => {
                    assert_eq!(verified.device_list.account(), offer.account());
                    assert_eq!(verified.device_id, offer.device_id());
                    assert_eq!(
                        verified.device_list.contains(CODE.device_key()),
                        Some(offer.device_id())
                    );
                    // Only the code's holder and the account make such an offer.
                    assert_eq!(offer.account(), ACCOUNT.public());
                }
                Err(e) => {
                    let _ = format!("{e} {e:?}");
                }
            }
        }
        Err(e) => {
            let _ = format!("{e} {e:?}");
        }
    }
}

fn link_accept(data: &[u8]) {
    match LinkAccept::from_bytes(data) {
        Ok(accept) => {
            assert_eq!(
                accept.to_bytes(),
                data,
                "link acceptance did not round-trip"
            );
            let verified = accept.verify(&LINK_KEY, accept.version());
            if verified.is_ok() {
                let made = LinkAccept::new(&LINK_KEY, accept.version()).expect("a MAC");
                assert_eq!(made, accept);
            }
        }
        Err(e) => {
            let _ = format!("{e} {e:?}");
        }
    }
}

fn link_code(text: &str) {
    match text.parse::<LinkCode>() {
        Ok(code) => {
            let printed = code.to_string();
            assert_eq!(printed.parse::<LinkCode>().as_ref(), Ok(&code));
            // The printed form is the input up to case, spaces and dashes.
            let canonical = |s: &str| -> String {
                s.trim()
                    .to_lowercase()
                    .chars()
                    .skip("sotto-link:".len())
                    .filter(|c| *c != '-' && !c.is_whitespace())
                    .collect()
            };
            assert_eq!(canonical(text), canonical(&printed));
        }
        Err(e) => {
            let _ = format!("{e} {e:?}");
        }
    }
}
