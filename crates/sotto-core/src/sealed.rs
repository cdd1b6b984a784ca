//! Sealed envelopes: an outer layer that hides who sent a message from the
//! relay and proves it to the recipient (docs/protocol.md, "Sealed
//! envelope").
//!
//! ```text
//! Sealed  = 0x02 (version) || EPK(32) || sender_ct(32 + 16) || contents_ct(n + 16)
//! header  = 0x02 || EPK || Encode(IK_B)                          (66 bytes)
//! e       = X25519(ephemeral, IK_B)                              (all-zero -> error)
//! okm1    = HKDF-SHA256(salt = EPK || Encode(IK_B), ikm = e,
//!                       info = "Sotto_Sealed_v2_sender", L = 76)
//!           -> key1 = okm1[0..32], nonce1 = okm1[32..44], chain = okm1[44..76]
//! sender_ct   = ChaCha20-Poly1305(key1, nonce1, aad = header, IK_A(32, Ed25519))
//! s       = X25519(IK_A, IK_B)                                   (all-zero -> error)
//! okm2    = HKDF-SHA256(salt = chain, ikm = s,
//!                       info = "Sotto_Sealed_v2_contents", L = 44)
//!           -> key2 = okm2[0..32], nonce2 = okm2[32..44]
//! contents_ct = ChaCha20-Poly1305(key2, nonce2, aad = header || sender_ct, contents)
//! ```
//!
//! The first layer hides the sender's identity key from everyone but the
//! recipient. The second is keyed by a static-static Diffie-Hellman between
//! the two identity keys, so only the holder of `IK_A`'s (or `IK_B`'s)
//! private key can produce contents that open: [`open`] returns the sender
//! it has authenticated, before anything inside is looked at. A relay that
//! forges, alters or re-labels an envelope gets an authentication error and
//! nothing else. A fresh ephemeral key per envelope makes every key and
//! nonce single-use.

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

/// Version byte of a sealed envelope. Version 1 (whose outer layer did not
/// authenticate the sender) is refused with [`Error::UnsupportedVersion`].
pub const SEALED_VERSION: u8 = 0x02;
/// HKDF info string of the layer that hides the sender.
pub const SEALED_SENDER_INFO: &[u8] = b"Sotto_Sealed_v2_sender";
/// HKDF info string of the layer that carries the contents.
pub const SEALED_CONTENTS_INFO: &[u8] = b"Sotto_Sealed_v2_contents";
/// Length of the encrypted sender identity key (key and tag).
const SENDER_CT_LEN: usize = 32 + TAG_LEN;
/// Bytes before the contents ciphertext.
const CONTENTS_OFFSET: usize = 1 + 32 + SENDER_CT_LEN;
/// Bytes a sealed envelope adds to its contents.
pub const SEALED_OVERHEAD: usize = CONTENTS_OFFSET + TAG_LEN;

/// `0x02 || EPK || Encode(IK_B)`.
type Header = [u8; 66];

/// Keys of the sender layer, and the chain that feeds the contents layer.
struct SenderLayer {
    key: Zeroizing<[u8; 32]>,
    nonce: [u8; 12],
    chain: Zeroizing<[u8; 32]>,
}

/// Keys of the contents layer.
struct ContentsLayer {
    key: Zeroizing<[u8; 32]>,
    nonce: [u8; 12],
}

fn header(ephemeral_public: &[u8; 32], recipient: &IdentityKey) -> Header {
    let mut h = [0u8; 66];
    h[0] = SEALED_VERSION;
    h[1..33].copy_from_slice(ephemeral_public);
    h[33..].copy_from_slice(&recipient.encode());
    h
}

fn sender_layer(ephemeral_shared: &Secret32, header: &Header) -> SenderLayer {
    // salt = EPK || Encode(IK_B): the header without its version byte.
    let hk = Hkdf::<Sha256>::new(Some(&header[1..]), ephemeral_shared.as_bytes());
    let mut okm = Zeroizing::new([0u8; 76]);
    // 76 <= 255 * 32: expand cannot fail for this length.
    let _ = hk.expand(SEALED_SENDER_INFO, okm.as_mut());
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&okm[..32]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&okm[32..44]);
    let mut chain = Zeroizing::new([0u8; 32]);
    chain.copy_from_slice(&okm[44..]);
    SenderLayer { key, nonce, chain }
}

fn contents_layer(chain: &[u8; 32], static_shared: &Secret32) -> ContentsLayer {
    let hk = Hkdf::<Sha256>::new(Some(chain), static_shared.as_bytes());
    let mut okm = Zeroizing::new([0u8; 44]);
    // 44 <= 255 * 32: expand cannot fail for this length.
    let _ = hk.expand(SEALED_CONTENTS_INFO, okm.as_mut());
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&okm[..32]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&okm[32..]);
    ContentsLayer { key, nonce }
}

/// `header || sender_ct`, the associated data of the contents layer.
fn contents_aad(header: &Header, sender_ct: &[u8]) -> [u8; 66 + SENDER_CT_LEN] {
    let mut aad = [0u8; 66 + SENDER_CT_LEN];
    aad[..66].copy_from_slice(header);
    aad[66..].copy_from_slice(sender_ct);
    aad
}

/// Seals `contents` from `sender` so that only `recipient` can open them,
/// and so that opening proves `sender` made them. Draws one 32-byte
/// ephemeral key from `rng`.
pub fn seal<R: CryptoRng + ?Sized>(
    sender: &IdentityKeyPair,
    recipient: &IdentityKey,
    contents: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>> {
    let static_shared = StaticSecret::new(sender, recipient)?;
    seal_with(sender, &static_shared, contents, rng)
}

/// The static part of sealing from one identity to another,
/// `DH(IK_A, IK_B)`: it depends only on the two identity keys, so a sender
/// that seals to the same device again and again (every group message to
/// every member device) computes it once and seals with
/// [`seal_with`], saving one of the two Diffie-Hellman operations per
/// envelope. The bytes sealed are the same as [`seal`]'s. Secret: wiped on
/// drop, redacted in `Debug`.
pub struct StaticSecret {
    recipient: IdentityKey,
    shared: Secret32,
}

impl StaticSecret {
    /// `DH(IK_A, IK_B)` for sealing from `sender` to `recipient`.
    pub fn new(sender: &IdentityKeyPair, recipient: &IdentityKey) -> Result<Self> {
        Ok(Self {
            recipient: *recipient,
            shared: diffie_hellman(sender.dh_private(), recipient.dh_public())?,
        })
    }

    /// The identity this secret seals to.
    pub fn recipient(&self) -> &IdentityKey {
        &self.recipient
    }
}

impl core::fmt::Debug for StaticSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StaticSecret")
            .field("recipient", &self.recipient)
            .finish_non_exhaustive()
    }
}

/// [`seal`] with the static part computed before ([`StaticSecret::new`],
/// for `sender` and the recipient it names): the same envelope, one
/// Diffie-Hellman operation fewer.
pub fn seal_with<R: CryptoRng + ?Sized>(
    sender: &IdentityKeyPair,
    static_shared: &StaticSecret,
    contents: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>> {
    let recipient = &static_shared.recipient;
    let ephemeral = random_secret(rng);
    let ephemeral_public = x25519_public(&ephemeral);
    let ephemeral_shared = diffie_hellman(&ephemeral, recipient.dh_public())?;
    let static_shared = &static_shared.shared;
    let header = header(&ephemeral_public, recipient);
    let outer = sender_layer(&ephemeral_shared, &header);
    let inner = contents_layer(&outer.chain, static_shared);

    let too_large = || Error::PlaintextTooLarge {
        len: contents.len(),
        max: u32::MAX as usize,
    };
    let mut out = Vec::with_capacity(SEALED_OVERHEAD + contents.len());
    out.push(SEALED_VERSION);
    out.extend_from_slice(&ephemeral_public);
    out.extend_from_slice(sender.public().as_bytes());
    let tag = ChaCha20Poly1305::new((&*outer.key).into())
        .encrypt_inout_detached(&Nonce::from(outer.nonce), &header, (&mut out[33..]).into())
        .map_err(|_| too_large())?;
    out.extend_from_slice(&tag);
    let aad = contents_aad(&header, &out[33..CONTENTS_OFFSET]);
    out.extend_from_slice(contents);
    let tag = ChaCha20Poly1305::new((&*inner.key).into())
        .encrypt_inout_detached(
            &Nonce::from(inner.nonce),
            &aad,
            (&mut out[CONTENTS_OFFSET..]).into(),
        )
        .map_err(|_| too_large())?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// What [`open`] found: the authenticated sender and the contents.
pub struct Opened {
    /// The identity key that sealed the envelope (authenticated: only its
    /// private key, or the recipient's own, could have made it).
    pub sender: IdentityKey,
    /// The contents, wiped on drop.
    pub contents: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for Opened {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Opened")
            .field("sender", &self.sender)
            .field("contents_len", &self.contents.len())
            .finish()
    }
}

fn decrypt_in_place(
    key: &[u8; 32],
    nonce: [u8; 12],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8],
) -> Result<()> {
    let tag = Tag::try_from(tag).map_err(|_| Error::AuthenticationFailed)?;
    ChaCha20Poly1305::new(key.into())
        .decrypt_inout_detached(&Nonce::from(nonce), aad, buf.into(), &tag)
        .map_err(|_| Error::AuthenticationFailed)
}

/// Opens an envelope sealed to `local`'s identity and authenticates its
/// sender. Every failure (wrong recipient, a forged or altered envelope, an
/// invalid or small-order sender key) is an error and reveals nothing.
pub fn open(local: &IdentityKeyPair, sealed: &[u8]) -> Result<Opened> {
    if let Some(&version) = sealed.first()
        && version != SEALED_VERSION
    {
        return Err(Error::UnsupportedVersion(version));
    }
    if sealed.len() < SEALED_OVERHEAD {
        return Err(Error::Truncated {
            needed: SEALED_OVERHEAD,
            got: sealed.len(),
        });
    }
    let mut ephemeral_public = [0u8; 32];
    ephemeral_public.copy_from_slice(&sealed[1..33]);
    let ephemeral_shared = diffie_hellman(local.dh_private(), &ephemeral_public)?;
    let header = header(&ephemeral_public, local.public());
    let outer = sender_layer(&ephemeral_shared, &header);

    let sender_ct = &sealed[33..CONTENTS_OFFSET];
    let mut sender = [0u8; 32];
    sender.copy_from_slice(&sender_ct[..32]);
    decrypt_in_place(
        &outer.key,
        outer.nonce,
        &header,
        &mut sender,
        &sender_ct[32..],
    )?;
    let sender = IdentityKey::from_bytes(&sender)?;
    let static_shared = diffie_hellman(local.dh_private(), sender.dh_public())?;
    let inner = contents_layer(&outer.chain, &static_shared);

    let aad = contents_aad(&header, sender_ct);
    let (body, tag) = sealed[CONTENTS_OFFSET..].split_at(sealed.len() - CONTENTS_OFFSET - TAG_LEN);
    let mut contents = Zeroizing::new(body.to_vec());
    decrypt_in_place(&inner.key, inner.nonce, &aad, contents.as_mut_slice(), tag)?;
    Ok(Opened { sender, contents })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sealing_with_a_static_secret_computed_before_gives_the_same_envelope() {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([4; 32]);
        let alice = IdentityKeyPair::generate(&mut rng);
        let bob = IdentityKeyPair::generate(&mut rng);
        let static_shared = StaticSecret::new(&alice, bob.public()).unwrap();
        assert_eq!(static_shared.recipient(), bob.public());
        assert!(!format!("{static_shared:?}").contains("shared"));
        let mut a = rand::rngs::ChaCha20Rng::from_seed([5; 32]);
        let mut b = rand::rngs::ChaCha20Rng::from_seed([5; 32]);
        let plain = seal(&alice, bob.public(), b"same bytes", &mut a).unwrap();
        let with = seal_with(&alice, &static_shared, b"same bytes", &mut b).unwrap();
        assert_eq!(plain, with);
        let opened = open(&bob, &with).unwrap();
        assert_eq!(opened.sender, *alice.public());
        assert_eq!(opened.contents.as_slice(), b"same bytes");
    }

    #[test]
    fn only_the_recipient_opens_and_every_byte_is_authenticated() {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([9; 32]);
        let alice = IdentityKeyPair::generate(&mut rng);
        let bob = IdentityKeyPair::generate(&mut rng);
        let eve = IdentityKeyPair::generate(&mut rng);
        let sealed = seal(&alice, bob.public(), b"sender and message", &mut rng).unwrap();
        assert_eq!(sealed.len(), SEALED_OVERHEAD + 18);
        let opened = open(&bob, &sealed).unwrap();
        assert_eq!(opened.sender, *alice.public());
        assert_eq!(opened.contents.as_slice(), b"sender and message");
        assert_eq!(
            open(&eve, &sealed).unwrap_err(),
            Error::AuthenticationFailed
        );
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(open(&bob, &bad).is_err(), "byte {i}");
        }
        for len in 1..SEALED_OVERHEAD {
            assert!(matches!(
                open(&bob, &sealed[..len]),
                Err(Error::Truncated { .. })
            ));
        }
        // Empty contents work too; two seals of the same bytes differ.
        let empty = seal(&alice, bob.public(), b"", &mut rng).unwrap();
        assert!(open(&bob, &empty).unwrap().contents.is_empty());
        assert_ne!(
            seal(&alice, bob.public(), b"x", &mut rng).unwrap(),
            seal(&alice, bob.public(), b"x", &mut rng).unwrap()
        );
        // A small-order ephemeral key is refused.
        let mut zero = sealed.clone();
        zero[1..33].fill(0);
        assert_eq!(open(&bob, &zero).unwrap_err(), Error::NonContributoryKey);
        // Version 1 envelopes (no sender authentication) are refused.
        let mut v1 = sealed.clone();
        v1[0] = 0x01;
        assert_eq!(open(&bob, &v1).unwrap_err(), Error::UnsupportedVersion(1));
    }

    /// What a relay can do without either identity private key: re-encrypt
    /// the sender layer to name someone else, or seal with a key of its own
    /// and claim a sender. Neither opens.
    #[test]
    fn nobody_without_the_senders_key_can_make_an_envelope_that_names_them() {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([10; 32]);
        let alice = IdentityKeyPair::generate(&mut rng);
        let bob = IdentityKeyPair::generate(&mut rng);
        let mallory = IdentityKeyPair::generate(&mut rng);

        // Mallory seals honestly as herself: Bob sees Mallory, not Alice.
        let own = seal(&mallory, bob.public(), b"hi", &mut rng).unwrap();
        assert_eq!(open(&bob, &own).unwrap().sender, *mallory.public());

        // Mallory builds the sender layer naming Alice (she can: it needs
        // only Bob's public key) but has no DH(IK_A, IK_B) for the contents.
        let ephemeral = random_secret(&mut rng);
        let epk = x25519_public(&ephemeral);
        let h = header(&epk, bob.public());
        let outer = sender_layer(
            &diffie_hellman(&ephemeral, bob.public().dh_public()).unwrap(),
            &h,
        );
        let mut forged = vec![SEALED_VERSION];
        forged.extend_from_slice(&epk);
        forged.extend_from_slice(alice.public().as_bytes());
        let tag = ChaCha20Poly1305::new((&*outer.key).into())
            .encrypt_inout_detached(&Nonce::from(outer.nonce), &h, (&mut forged[33..]).into())
            .unwrap();
        forged.extend_from_slice(&tag);
        // Her best guess for the contents key: DH(Mallory, Bob).
        let guess = contents_layer(
            &outer.chain,
            &diffie_hellman(mallory.dh_private(), bob.public().dh_public()).unwrap(),
        );
        let aad = contents_aad(&h, &forged[33..CONTENTS_OFFSET]);
        forged.extend_from_slice(b"junk");
        let tag = ChaCha20Poly1305::new((&*guess.key).into())
            .encrypt_inout_detached(
                &Nonce::from(guess.nonce),
                &aad,
                (&mut forged[CONTENTS_OFFSET..]).into(),
            )
            .unwrap();
        forged.extend_from_slice(&tag);
        assert_eq!(
            open(&bob, &forged).unwrap_err(),
            Error::AuthenticationFailed
        );

        // Splicing Alice's genuine sender layer onto other contents fails too.
        let genuine = seal(&alice, bob.public(), b"real", &mut rng).unwrap();
        let mut spliced = genuine[..CONTENTS_OFFSET].to_vec();
        spliced.extend_from_slice(&own[CONTENTS_OFFSET..]);
        assert_eq!(
            open(&bob, &spliced).unwrap_err(),
            Error::AuthenticationFailed
        );
    }
}
