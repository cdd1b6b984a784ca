//! Deterministic entry points for conformance testing (feature `hazmat`,
//! off by default).
//!
//! These take secret key material directly instead of drawing it from an
//! RNG. They exist so that `docs/test-vectors` can be generated and replayed
//! byte for byte; an application never needs them, and using them with
//! reused keys breaks the protocol's security.

use zeroize::Zeroizing;

use crate::error::Result;
use crate::keys::{
    IdentityKeyPair, KemCiphertext, KemPreKey, OneTimePreKey, PreKeyBundle, Secret32, SignedPreKey,
};
use crate::ratchet::{RatchetKeyPair, Session};
use crate::x3dh;

/// X3DH as the initiator with an explicit ephemeral private key: returns
/// `(SK, AD)`. Verifies the bundle first, as `Session::initiate` does.
pub fn x3dh_initiate(
    alice: &IdentityKeyPair,
    bundle: &PreKeyBundle,
    ephemeral_private: &[u8; 32],
) -> Result<(Zeroizing<[u8; 32]>, [u8; 66])> {
    bundle.verify()?;
    let (out, _) = x3dh::initiate(alice, bundle, &Secret32::new(*ephemeral_private), None)?;
    Ok((
        Zeroizing::new(*out.shared_secret.as_bytes()),
        out.associated_data,
    ))
}

/// X3DH as the responder: returns `(SK, AD)`.
pub fn x3dh_respond(
    bob: &IdentityKeyPair,
    signed_prekey: &SignedPreKey,
    one_time_prekey: Option<&OneTimePreKey>,
    alice: &crate::keys::IdentityKey,
    base_key: &[u8; 32],
) -> Result<(Zeroizing<[u8; 32]>, [u8; 66])> {
    let out = x3dh::respond(bob, signed_prekey, one_time_prekey, alice, base_key, None)?;
    Ok((
        Zeroizing::new(*out.shared_secret.as_bytes()),
        out.associated_data,
    ))
}

/// `Session::initiate` with explicit ephemeral and first ratchet private
/// keys, and for a v2 bundle the KEM's 32-byte message `m`
/// (`kem_message`; required exactly when the bundle has a KEM prekey).
pub fn initiate_session(
    alice: &IdentityKeyPair,
    bundle: &PreKeyBundle,
    ephemeral_private: &[u8; 32],
    kem_message: Option<&[u8; 32]>,
    ratchet_private: &[u8; 32],
) -> Result<Session> {
    let kem = match (&bundle.kem_prekey, kem_message) {
        (Some(kem), Some(m)) => Some((kem.id, kem_encapsulate(&kem.key, m)?)),
        _ => None,
    };
    Session::initiate_with(
        alice,
        bundle,
        &Secret32::new(*ephemeral_private),
        kem,
        RatchetKeyPair::from_private(Secret32::new(*ratchet_private)),
    )
}

/// ML-KEM.Encaps to `key` with the message `m`: the ciphertext and the
/// shared secret.
fn kem_encapsulate(
    key: &crate::keys::KemPublic,
    m: &[u8; 32],
) -> Result<(KemCiphertext, Secret32)> {
    crate::keys::encapsulate(key, &mut FixedBytes(*m))
}

/// What [`pqxdh_initiate`] returns: SK, AD, the KEM ciphertext and the
/// KEM's shared secret SS.
pub type PqxdhInitiated = (
    Zeroizing<[u8; 32]>,
    [u8; 66],
    KemCiphertext,
    Zeroizing<[u8; 32]>,
);

/// Protocol v2's hybrid key agreement as the initiator, with explicit
/// ephemeral private key and KEM message `m`: returns `(SK, AD, CT, SS)`.
pub fn pqxdh_initiate(
    alice: &IdentityKeyPair,
    bundle: &PreKeyBundle,
    ephemeral_private: &[u8; 32],
    kem_message: &[u8; 32],
) -> Result<PqxdhInitiated> {
    bundle.verify()?;
    let kem = bundle
        .kem_prekey
        .as_ref()
        .ok_or(crate::Error::InvalidBundle("no KEM prekey"))?;
    let (ciphertext, shared) = kem_encapsulate(&kem.key, kem_message)?;
    let (out, _) = x3dh::initiate(
        alice,
        bundle,
        &Secret32::new(*ephemeral_private),
        Some(&shared),
    )?;
    Ok((
        Zeroizing::new(*out.shared_secret.as_bytes()),
        out.associated_data,
        ciphertext,
        Zeroizing::new(*shared.as_bytes()),
    ))
}

/// Protocol v2's hybrid key agreement as the responder: returns `(SK, AD)`.
pub fn pqxdh_respond(
    bob: &IdentityKeyPair,
    signed_prekey: &SignedPreKey,
    one_time_prekey: Option<&OneTimePreKey>,
    kem_prekey: &KemPreKey,
    ciphertext: &KemCiphertext,
    alice: &crate::keys::IdentityKey,
    base_key: &[u8; 32],
) -> Result<(Zeroizing<[u8; 32]>, [u8; 66])> {
    let shared = kem_prekey.decapsulate(ciphertext);
    let out = x3dh::respond(
        bob,
        signed_prekey,
        one_time_prekey,
        alice,
        base_key,
        Some(&shared),
    )?;
    Ok((
        Zeroizing::new(*out.shared_secret.as_bytes()),
        out.associated_data,
    ))
}

/// An RNG that yields given bytes: ML-KEM draws its message `m` as one
/// 32-byte read, which this answers with `m`.
struct FixedBytes([u8; 32]);

impl rand_core::TryRng for FixedBytes {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> core::result::Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> core::result::Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> core::result::Result<(), Self::Error> {
        for (d, s) in dest.iter_mut().zip(self.0.iter().cycle()) {
            *d = *s;
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for FixedBytes {}

/// The 32 bytes of a link key, for the conformance vectors' `link_key`.
pub fn link_key_bytes(link_key: &crate::devices::LinkKey) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(*link_key.secret_bytes())
}
