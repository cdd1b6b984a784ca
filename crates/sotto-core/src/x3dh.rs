//! X3DH key agreement (PROTOCOL.md "X3DH"), and protocol v2's hybrid
//! form with an ML-KEM shared secret SS (section 16):
//! `SK = HKDF(salt = 0x00*32, ikm = 0xFF*32 || DH1 || DH2 || DH3 [|| DH4]
//! || SS, info = "Sotto_PQXDH_v2")`.
//!
//! ```text
//! DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)
//! DH4 = DH(EK_A, OPK_B)   (only when an OPK was used)
//! SK  = HKDF-SHA256(salt = 0x00*32, ikm = 0xFF*32 || DH1 || DH2 || DH3 [|| DH4],
//!                   info = "Sotto_X3DH_v1", L = 32)
//! AD  = Encode(IK_A) || Encode(IK_B)
//! ```

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::Result;
use crate::keys::{
    IdentityKey, IdentityKeyPair, OneTimePreKey, PreKeyBundle, Secret32, SignedPreKey,
    diffie_hellman, x25519_public,
};

/// HKDF info string of X3DH.
pub const X3DH_INFO: &[u8] = b"Sotto_X3DH_v1";
/// HKDF info string of protocol v2's hybrid key agreement.
pub const PQXDH_INFO: &[u8] = b"Sotto_PQXDH_v2";
/// Length of the associated data `Encode(IK_A) || Encode(IK_B)`.
pub const AD_LEN: usize = 66;

/// What X3DH yields: the shared secret SK and the associated data AD.
pub(crate) struct X3dhOutput {
    pub(crate) shared_secret: Secret32,
    pub(crate) associated_data: [u8; AD_LEN],
}

fn associated_data(initiator: &IdentityKey, responder: &IdentityKey) -> [u8; AD_LEN] {
    let mut ad = [0u8; AD_LEN];
    ad[..33].copy_from_slice(&initiator.encode());
    ad[33..].copy_from_slice(&responder.encode());
    ad
}

/// SK from the DH outputs, and in protocol v2 the KEM's shared secret.
fn derive(dhs: &[&Secret32], kem_secret: Option<&Secret32>) -> Result<Secret32> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * 6));
    ikm.extend_from_slice(&[0xFF; 32]);
    for dh in dhs {
        ikm.extend_from_slice(dh.as_bytes());
    }
    let info = match kem_secret {
        Some(ss) => {
            ikm.extend_from_slice(ss.as_bytes());
            PQXDH_INFO
        }
        None => X3DH_INFO,
    };
    let hk = Hkdf::<Sha256>::new(Some(&[0u8; 32]), &ikm);
    let mut sk = Zeroizing::new([0u8; 32]);
    hk.expand(info, sk.as_mut())
        .map_err(|_| crate::error::Error::CorruptState("hkdf length"))?;
    Ok(Secret32::new(*sk))
}

/// The initiator's half, with the KEM's shared secret in protocol v2. The
/// bundle signature must have been verified.
pub(crate) fn initiate(
    alice: &IdentityKeyPair,
    bundle: &PreKeyBundle,
    ephemeral: &Secret32,
    kem_secret: Option<&Secret32>,
) -> Result<(X3dhOutput, [u8; 32])> {
    let dh1 = diffie_hellman(alice.dh_private(), bundle.signed_prekey.as_bytes())?;
    let dh2 = diffie_hellman(ephemeral, bundle.identity_key.dh_public())?;
    let dh3 = diffie_hellman(ephemeral, bundle.signed_prekey.as_bytes())?;
    let shared_secret = match &bundle.one_time_prekey {
        Some((_, opk)) => {
            let dh4 = diffie_hellman(ephemeral, opk.as_bytes())?;
            derive(&[&dh1, &dh2, &dh3, &dh4], kem_secret)?
        }
        None => derive(&[&dh1, &dh2, &dh3], kem_secret)?,
    };
    Ok((
        X3dhOutput {
            shared_secret,
            associated_data: associated_data(alice.public(), &bundle.identity_key),
        },
        x25519_public(ephemeral),
    ))
}

/// The responder's half.
pub(crate) fn respond(
    bob: &IdentityKeyPair,
    signed_prekey: &SignedPreKey,
    one_time_prekey: Option<&OneTimePreKey>,
    alice: &IdentityKey,
    base_key: &[u8; 32],
    kem_secret: Option<&Secret32>,
) -> Result<X3dhOutput> {
    let dh1 = diffie_hellman(signed_prekey.private(), alice.dh_public())?;
    let dh2 = diffie_hellman(bob.dh_private(), base_key)?;
    let dh3 = diffie_hellman(signed_prekey.private(), base_key)?;
    let shared_secret = match one_time_prekey {
        Some(opk) => {
            let dh4 = diffie_hellman(opk.private(), base_key)?;
            derive(&[&dh1, &dh2, &dh3, &dh4], kem_secret)?
        }
        None => derive(&[&dh1, &dh2, &dh3], kem_secret)?,
    };
    Ok(X3dhOutput {
        shared_secret,
        associated_data: associated_data(alice, bob.public()),
    })
}
