//! The chain key of a sender key, ratcheted with the Double Ratchet's
//! symmetric step (docs/protocol.md section 4):
//!
//! `KDF_CK(CK) -> CK' = HMAC-SHA256(CK, 0x02), MK = HMAC-SHA256(CK, 0x01)`

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::error::{GroupError, GroupResult};
use super::message_key::GroupMessageKey;
use crate::keys::Secret32;

type HmacSha256 = Hmac<Sha256>;

/// A sender key's chain key with its iteration: the index of the message
/// key the next step yields.
#[derive(Clone, Debug)]
pub(crate) struct SenderChainKey {
    key: Secret32,
    iteration: u32,
}

impl SenderChainKey {
    pub(crate) fn new(key: Secret32, iteration: u32) -> Self {
        Self { key, iteration }
    }

    pub(crate) fn key(&self) -> &Secret32 {
        &self.key
    }

    /// The iteration of the message key the next step yields.
    pub(crate) fn iteration(&self) -> u32 {
        self.iteration
    }

    /// Steps the chain in place and returns the message key of the old
    /// iteration. The last iteration, `u32::MAX`, is never used: the chain
    /// would have no next one ([`GroupError::CounterExhausted`]).
    pub(crate) fn step(&mut self) -> GroupResult<GroupMessageKey> {
        let next = self
            .iteration
            .checked_add(1)
            .ok_or(GroupError::CounterExhausted)?;
        // HMAC accepts keys of any length: this cannot fail. The keyed
        // state is built once and cloned for the two outputs.
        let mac = <HmacSha256 as KeyInit>::new_from_slice(self.key.as_bytes())
            .map_err(|_| GroupError::CorruptState("hmac key"))?;
        let mut mk_mac = mac.clone();
        mk_mac.update(&[0x01]);
        let mut ck_mac = mac;
        ck_mac.update(&[0x02]);
        let message_key =
            GroupMessageKey::new(self.iteration, mk_mac.finalize().into_bytes().into());
        self.key
            .as_mut_bytes()
            .copy_from_slice(&ck_mac.finalize().into_bytes());
        self.iteration = next;
        Ok(message_key)
    }

    /// Steps the chain up to `iteration` (exclusive), returning the keys it
    /// passes, after checking that there are at most `max` of them.
    pub(crate) fn skip_to(
        &mut self,
        iteration: u32,
        max: u32,
    ) -> GroupResult<Vec<GroupMessageKey>> {
        let gap = u64::from(iteration.saturating_sub(self.iteration));
        if gap > u64::from(max) {
            return Err(GroupError::TooManySkipped { gap, max });
        }
        let mut keys = Vec::with_capacity(usize::try_from(gap).unwrap_or(0));
        while self.iteration < iteration {
            keys.push(self.step()?);
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hmac(key: &[u8], byte: u8) -> [u8; 32] {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap();
        mac.update(&[byte]);
        mac.finalize().into_bytes().into()
    }

    #[test]
    fn a_step_is_kdf_ck_of_the_double_ratchet() {
        let ck = [0x42u8; 32];
        let mut chain = SenderChainKey::new(Secret32::new(ck), 7);
        let mk = chain.step().unwrap();
        assert_eq!(mk.iteration(), 7);
        assert_eq!(mk.secret().as_bytes(), &hmac(&ck, 0x01));
        assert_eq!(chain.key().as_bytes(), &hmac(&ck, 0x02));
        assert_eq!(chain.iteration(), 8);
    }

    #[test]
    fn skipping_checks_the_gap_first_and_the_last_iteration_is_never_used() {
        let mut chain = SenderChainKey::new(Secret32::new([1; 32]), 0);
        assert_eq!(
            chain.skip_to(11, 10).unwrap_err(),
            GroupError::TooManySkipped { gap: 11, max: 10 }
        );
        assert_eq!(chain.iteration(), 0);
        assert_eq!(chain.skip_to(10, 10).unwrap().len(), 10);
        assert_eq!(chain.iteration(), 10);

        let mut last = SenderChainKey::new(Secret32::new([1; 32]), u32::MAX - 1);
        assert_eq!(last.step().unwrap().iteration(), u32::MAX - 1);
        assert_eq!(last.step().unwrap_err(), GroupError::CounterExhausted);
        assert_eq!(last.iteration(), u32::MAX);
    }
}
