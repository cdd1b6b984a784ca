//! Deterministic entry points for conformance testing (feature `hazmat`,
//! off by default).
//!
//! These take secret key material directly instead of drawing it from an
//! RNG. They exist so that `docs/test-vectors` can be generated and replayed
//! byte for byte; an application never needs them, and using them with
//! reused keys breaks the protocol's security.

use zeroize::Zeroizing;

use crate::error::Result;
use crate::keys::{IdentityKeyPair, OneTimePreKey, PreKeyBundle, Secret32, SignedPreKey};
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
    let (out, _) = x3dh::initiate(alice, bundle, &Secret32::new(*ephemeral_private))?;
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
    let out = x3dh::respond(bob, signed_prekey, one_time_prekey, alice, base_key)?;
    Ok((
        Zeroizing::new(*out.shared_secret.as_bytes()),
        out.associated_data,
    ))
}

/// `Session::initiate` with explicit ephemeral and first ratchet private keys.
pub fn initiate_session(
    alice: &IdentityKeyPair,
    bundle: &PreKeyBundle,
    ephemeral_private: &[u8; 32],
    ratchet_private: &[u8; 32],
) -> Result<Session> {
    Session::initiate_with(
        alice,
        bundle,
        &Secret32::new(*ephemeral_private),
        RatchetKeyPair::from_private(Secret32::new(*ratchet_private)),
    )
}

/// The 32 bytes of a link key, for the conformance vectors' `link_key`.
pub fn link_key_bytes(link_key: &crate::devices::LinkKey) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(*link_key.secret_bytes())
}
