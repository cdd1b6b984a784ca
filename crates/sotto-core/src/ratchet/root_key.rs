//! The root key and the DH ratchet's KDF (PROTOCOL.md "Double Ratchet").
//!
//! `KDF_RK(RK, dh_out) = HKDF-SHA256(salt = RK, ikm = dh_out,
//! info = "Sotto_Ratchet_v1", L = 64) -> RK' = out[0..32], CK = out[32..64]`

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::chain_key::ChainKey;
use crate::keys::Secret32;

/// HKDF info string of the root chain.
pub const RATCHET_INFO: &[u8] = b"Sotto_Ratchet_v1";

/// The root key RK: it absorbs every DH ratchet output.
#[derive(Clone, Debug)]
pub(crate) struct RootKey(pub(crate) Secret32);

impl RootKey {
    /// One DH ratchet step: a new root key and a fresh chain starting at
    /// index 0.
    pub(crate) fn ratchet_step(&self, dh_out: &Secret32) -> (RootKey, ChainKey) {
        let hk = Hkdf::<Sha256>::new(Some(self.0.as_bytes()), dh_out.as_bytes());
        let mut okm = Zeroizing::new([0u8; 64]);
        // 64 <= 255 * 32: expand cannot fail for this length.
        let _ = hk.expand(RATCHET_INFO, okm.as_mut());
        let mut rk = Zeroizing::new([0u8; 32]);
        let mut ck = Zeroizing::new([0u8; 32]);
        rk.copy_from_slice(&okm[..32]);
        ck.copy_from_slice(&okm[32..]);
        (
            RootKey(Secret32::new(*rk)),
            ChainKey::new(Secret32::new(*ck), 0),
        )
    }
}
