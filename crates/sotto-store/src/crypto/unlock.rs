//! From the user's secret to the key-encryption key (KEK).
//!
//! The `kdf` record in `meta` says how (it is read before anything is
//! decrypted, so it is stored in the clear):
//! ```text
//! 0x01 (version) || method (0x01 passphrase | 0x02 app key) || salt(16)
//!      || u32be(memory KiB) || u32be(iterations) || u32be(parallelism)
//! ```
//! (the three costs are zero for an app key). Passphrase: KEK =
//! Argon2id v0x13(passphrase, salt, m, t, p), 32 bytes. App key: KEK =
//! HKDF-SHA256(salt, app key, "sotto-store/v1 app-key kek"), 32 bytes.

use argon2::{Algorithm, Argon2, Params, Version};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result, UnlockMethod};
use crate::options::{KdfParams, MAX_ITERATIONS, MAX_MEMORY_KIB, MAX_PARALLELISM};

const KDF_RECORD_VERSION: u8 = 0x01;
const METHOD_PASSPHRASE: u8 = 0x01;
const METHOD_APP_KEY: u8 = 0x02;
pub(crate) const SALT_LEN: usize = 16;
/// Length of an encoded [`KdfRecord`].
pub(crate) const KDF_RECORD_LEN: usize = 2 + SALT_LEN + 12;
const APP_KEY_INFO: &[u8] = b"sotto-store/v1 app-key kek";

/// The secret the user or application unlocks with.
#[derive(Clone, Copy)]
pub(crate) enum Secret<'a> {
    Passphrase(&'a [u8]),
    AppKey(&'a [u8; 32]),
}

impl Secret<'_> {
    pub(crate) fn method(&self) -> UnlockMethod {
        match self {
            Self::Passphrase(_) => UnlockMethod::Passphrase,
            Self::AppKey(_) => UnlockMethod::AppKey,
        }
    }

    /// The error for a secret that does not unwrap the database key.
    pub(crate) fn wrong(&self) -> Error {
        match self {
            Self::Passphrase(_) => Error::WrongPassphrase,
            Self::AppKey(_) => Error::WrongKey,
        }
    }
}

/// How the KEK of a file is derived.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct KdfRecord {
    method: UnlockMethod,
    params: Option<KdfParams>,
    salt: [u8; SALT_LEN],
}

impl KdfRecord {
    /// A fresh record (new random salt) for `secret`.
    pub(crate) fn generate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        secret: Secret<'_>,
        params: KdfParams,
    ) -> Self {
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        Self {
            method: secret.method(),
            params: matches!(secret, Secret::Passphrase(_)).then_some(params),
            salt,
        }
    }

    pub(crate) fn method(&self) -> UnlockMethod {
        self.method
    }

    pub(crate) fn encode(&self) -> [u8; KDF_RECORD_LEN] {
        let mut out = [0u8; KDF_RECORD_LEN];
        out[0] = KDF_RECORD_VERSION;
        out[1] = match self.method {
            UnlockMethod::Passphrase => METHOD_PASSPHRASE,
            UnlockMethod::AppKey => METHOD_APP_KEY,
        };
        out[2..18].copy_from_slice(&self.salt);
        if let Some(p) = &self.params {
            out[18..22].copy_from_slice(&p.memory_kib().to_be_bytes());
            out[22..26].copy_from_slice(&p.iterations().to_be_bytes());
            out[26..30].copy_from_slice(&p.parallelism().to_be_bytes());
        }
        out
    }

    /// Strict decoding; `None` for anything malformed or out of range.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; KDF_RECORD_LEN] = bytes.try_into().ok()?;
        if bytes[0] != KDF_RECORD_VERSION {
            return None;
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&bytes[2..18]);
        let word =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let (m, t, p) = (word(18), word(22), word(26));
        let (method, params) = match bytes[1] {
            METHOD_PASSPHRASE => {
                if m > MAX_MEMORY_KIB || t > MAX_ITERATIONS || p > MAX_PARALLELISM {
                    return None;
                }
                (
                    UnlockMethod::Passphrase,
                    Some(KdfParams::new(m, t, p).ok()?),
                )
            }
            METHOD_APP_KEY if (m, t, p) == (0, 0, 0) => (UnlockMethod::AppKey, None),
            _ => return None,
        };
        Some(Self {
            method,
            params,
            salt,
        })
    }

    /// Derives the KEK. Costly for a passphrase (Argon2id): done once per
    /// open or re-key, never per operation.
    pub(crate) fn derive_kek(&self, secret: Secret<'_>) -> Result<Zeroizing<[u8; 32]>> {
        let mut kek = Zeroizing::new([0u8; 32]);
        match (secret, self.params) {
            (Secret::Passphrase(passphrase), Some(p)) => {
                return argon2id(passphrase, &self.salt, p);
            }
            (Secret::AppKey(key), None) => {
                Hkdf::<Sha256>::new(Some(&self.salt), key)
                    .expand(APP_KEY_INFO, kek.as_mut_slice())
                    .map_err(|_| Error::InvalidKdfParams("HKDF output length"))?;
            }
            _ => {
                return Err(Error::WrongUnlockMethod {
                    expected: self.method,
                });
            }
        }
        Ok(kek)
    }
}

/// Argon2id, version 0x13, 32 bytes of output: the passphrase's key for a
/// store file (its KEK) and for a history archive.
pub(crate) fn argon2id(
    passphrase: &[u8],
    salt: &[u8; SALT_LEN],
    p: KdfParams,
) -> Result<Zeroizing<[u8; 32]>> {
    let mut key = Zeroizing::new([0u8; 32]);
    let params = Params::new(
        p.memory_kib(),
        p.iterations(),
        p.parallelism(),
        Some(key.len()),
    )
    .map_err(|_| Error::InvalidKdfParams("rejected by Argon2"))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, key.as_mut_slice())
        .map_err(|_| Error::InvalidKdfParams("rejected by Argon2"))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn record_roundtrip_and_strictness() {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([5; 32]);
        let params = KdfParams::new(64, 2, 1).unwrap();
        let rec = KdfRecord::generate(&mut rng, Secret::Passphrase(b"pw"), params);
        let bytes = rec.encode();
        assert!(KdfRecord::decode(&bytes) == Some(rec));
        assert!(KdfRecord::decode(&bytes[..29]).is_none());
        let mut bad = bytes;
        bad[0] = 2;
        assert!(KdfRecord::decode(&bad).is_none());
        let mut bad = bytes;
        bad[1] = 9;
        assert!(KdfRecord::decode(&bad).is_none());
        let mut huge = bytes;
        huge[18..22].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(KdfRecord::decode(&huge).is_none());

        let key = [9u8; 32];
        let app = KdfRecord::generate(&mut rng, Secret::AppKey(&key), params);
        assert!(KdfRecord::decode(&app.encode()) == Some(app));
    }

    #[test]
    fn kek_depends_on_secret_and_salt() {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([6; 32]);
        let params = KdfParams::new(64, 1, 1).unwrap();
        let rec = KdfRecord::generate(&mut rng, Secret::Passphrase(b"pw"), params);
        let a = rec.derive_kek(Secret::Passphrase(b"pw")).unwrap();
        assert_eq!(*a, *rec.derive_kek(Secret::Passphrase(b"pw")).unwrap());
        assert_ne!(*a, *rec.derive_kek(Secret::Passphrase(b"pW")).unwrap());
        let rec2 = KdfRecord::generate(&mut rng, Secret::Passphrase(b"pw"), params);
        assert_ne!(*a, *rec2.derive_kek(Secret::Passphrase(b"pw")).unwrap());
        assert!(matches!(
            rec.derive_kek(Secret::AppKey(&[0; 32])),
            Err(Error::WrongUnlockMethod {
                expected: UnlockMethod::Passphrase
            })
        ));
    }
}
