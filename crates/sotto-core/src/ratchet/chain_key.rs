//! Sending and receiving chain keys.
//!
//! `KDF_CK(CK) -> CK' = HMAC-SHA256(CK, 0x02), MK = HMAC-SHA256(CK, 0x01)`

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::message_key::MessageKey;
use crate::error::{Error, Result};
use crate::keys::Secret32;

type HmacSha256 = Hmac<Sha256>;

/// A symmetric-ratchet chain key with the index of the next message key.
#[derive(Clone, Debug)]
pub(crate) struct ChainKey {
    key: Secret32,
    index: u32,
}

impl ChainKey {
    pub(crate) fn new(key: Secret32, index: u32) -> Self {
        Self { key, index }
    }

    pub(crate) fn key(&self) -> &Secret32 {
        &self.key
    }

    /// Index of the message key the next step yields (N or Nr).
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// Steps the chain in place and returns the message key for the old
    /// index. The keyed HMAC state is built once and cloned for the two
    /// outputs (same bytes as two independent HMACs, one key schedule).
    pub(crate) fn step(&mut self) -> Result<MessageKey> {
        let next_index = self.index.checked_add(1).ok_or(Error::CounterExhausted)?;
        // HMAC accepts keys of any length: this cannot fail.
        let mac = <HmacSha256 as KeyInit>::new_from_slice(self.key.as_bytes())
            .map_err(|_| Error::CorruptState("hmac key"))?;
        let mut mk_mac = mac.clone();
        mk_mac.update(&[0x01]);
        let mut ck_mac = mac;
        ck_mac.update(&[0x02]);
        let message_key = MessageKey::new(self.index, mk_mac.finalize().into_bytes().into());
        self.key
            .as_mut_bytes()
            .copy_from_slice(&ck_mac.finalize().into_bytes());
        self.index = next_index;
        Ok(message_key)
    }
}
