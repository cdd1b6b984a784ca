//! Sealed envelopes: an outer layer that hides who sent a message from the
//! relay (docs/protocol.md, "Sealed envelope").
//!
//! ```text
//! Sealed = 0x01 (version) || EPK(32) || AEAD ciphertext || tag(16)
//! shared = X25519(ephemeral, IK_B in X25519 form)        (all-zero -> error)
//! okm    = HKDF-SHA256(salt = EPK || Encode(IK_B), ikm = shared,
//!                      info = "Sotto_Sealed_v1", L = 44)
//!          -> key = okm[0..32], nonce = okm[32..44]
//! AEAD   = ChaCha20-Poly1305(key, nonce, aad = 0x01 || EPK || Encode(IK_B))
//! ```
//! A fresh ephemeral key per envelope makes every key and nonce single-use.
//! What is inside (the sender's identity and the Double Ratchet message) is
//! readable only with the recipient's identity key; the sender is
//! authenticated by the inner layer, not by this one.

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::{
    IdentityKey, IdentityKeyPair, Secret32, diffie_hellman, random_secret, x25519_public,
};
use crate::wire::TAG_LEN;

/// Version byte of a sealed envelope.
pub const SEALED_VERSION: u8 = 0x01;
/// HKDF info string of sealed envelopes.
pub const SEALED_INFO: &[u8] = b"Sotto_Sealed_v1";
/// Bytes a sealed envelope adds to its contents.
pub const SEALED_OVERHEAD: usize = 1 + 32 + TAG_LEN;

struct SealingKeys {
    key: Zeroizing<[u8; 32]>,
    nonce: [u8; 12],
    aad: [u8; 66],
}

fn derive(shared: &Secret32, ephemeral_public: &[u8; 32], recipient: &IdentityKey) -> SealingKeys {
    let mut salt = [0u8; 65];
    salt[..32].copy_from_slice(ephemeral_public);
    salt[32..].copy_from_slice(&recipient.encode());
    let hk = Hkdf::<Sha256>::new(Some(&salt), shared.as_bytes());
    let mut okm = Zeroizing::new([0u8; 44]);
    // 44 <= 255 * 32: expand cannot fail for this length.
    let _ = hk.expand(SEALED_INFO, okm.as_mut());
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&okm[..32]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&okm[32..]);
    let mut aad = [0u8; 66];
    aad[0] = SEALED_VERSION;
    aad[1..33].copy_from_slice(ephemeral_public);
    aad[33..].copy_from_slice(&recipient.encode());
    SealingKeys { key, nonce, aad }
}

/// Seals `contents` so that only `recipient` can open them. Draws one
/// 32-byte ephemeral key from `rng`.
pub fn seal<R: CryptoRng + ?Sized>(
    recipient: &IdentityKey,
    contents: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>> {
    let ephemeral = random_secret(rng);
    let ephemeral_public = x25519_public(&ephemeral);
    let shared = diffie_hellman(&ephemeral, recipient.dh_public())?;
    let k = derive(&shared, &ephemeral_public, recipient);
    let mut out = Vec::with_capacity(SEALED_OVERHEAD + contents.len());
    out.push(SEALED_VERSION);
    out.extend_from_slice(&ephemeral_public);
    out.extend_from_slice(contents);
    let cipher = ChaCha20Poly1305::new((&*k.key).into());
    let tag = cipher
        .encrypt_inout_detached(&Nonce::from(k.nonce), &k.aad, (&mut out[33..]).into())
        .map_err(|_| Error::PlaintextTooLarge {
            len: contents.len(),
            max: u32::MAX as usize,
        })?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Opens an envelope sealed to `local`'s identity.
pub fn open(local: &IdentityKeyPair, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if sealed.len() < SEALED_OVERHEAD {
        return Err(Error::Truncated {
            needed: SEALED_OVERHEAD,
            got: sealed.len(),
        });
    }
    if sealed[0] != SEALED_VERSION {
        return Err(Error::UnsupportedVersion(sealed[0]));
    }
    let mut ephemeral_public = [0u8; 32];
    ephemeral_public.copy_from_slice(&sealed[1..33]);
    let shared = diffie_hellman(local.dh_private(), &ephemeral_public)?;
    let k = derive(&shared, &ephemeral_public, local.public());
    let (body, tag) = sealed[33..].split_at(sealed.len() - 33 - TAG_LEN);
    let tag = Tag::try_from(tag).map_err(|_| Error::AuthenticationFailed)?;
    let mut out = Zeroizing::new(body.to_vec());
    let cipher = ChaCha20Poly1305::new((&*k.key).into());
    cipher
        .decrypt_inout_detached(
            &Nonce::from(k.nonce),
            &k.aad,
            out.as_mut_slice().into(),
            &tag,
        )
        .map_err(|_| Error::AuthenticationFailed)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn only_the_recipient_opens_and_every_byte_is_authenticated() {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([9; 32]);
        let bob = IdentityKeyPair::generate(&mut rng);
        let eve = IdentityKeyPair::generate(&mut rng);
        let sealed = seal(bob.public(), b"sender and message", &mut rng).unwrap();
        assert_eq!(sealed.len(), SEALED_OVERHEAD + 18);
        assert_eq!(
            open(&bob, &sealed).unwrap().as_slice(),
            b"sender and message"
        );
        assert_eq!(
            open(&eve, &sealed).unwrap_err(),
            Error::AuthenticationFailed
        );
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(open(&bob, &bad).is_err(), "byte {i}");
        }
        for len in 0..SEALED_OVERHEAD {
            assert!(matches!(
                open(&bob, &sealed[..len]),
                Err(Error::Truncated { .. })
            ));
        }
        // Empty contents work too; two seals of the same bytes differ.
        let empty = seal(bob.public(), b"", &mut rng).unwrap();
        assert!(open(&bob, &empty).unwrap().is_empty());
        assert_ne!(
            seal(bob.public(), b"x", &mut rng).unwrap(),
            seal(bob.public(), b"x", &mut rng).unwrap()
        );
        // A small-order ephemeral key is refused.
        let mut zero = sealed.clone();
        zero[1..33].fill(0);
        assert_eq!(open(&bob, &zero).unwrap_err(), Error::NonContributoryKey);
    }
}
