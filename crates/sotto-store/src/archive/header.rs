//! The archive header and the key it leads to.
//!
//! ```text
//! header = magic(8) || u8(kdf) || u32be(m KiB) || u32be(t) || u32be(p)
//!          || salt(16) || archive id(16) || u64be(message count) || u64be(contact count)
//! kdf 1: key = Argon2id v0x13(passphrase, salt, m, t, p), 32 bytes
//! kdf 0: key = HKDF-SHA256(salt, key given by the caller,
//!              "sotto/history-archive/v1 caller key"), 32 bytes; m = t = p = 0
//! magic  = "SOTTOHA1" (a backup archive) | "SOTTOHT1" (a history transfer)
//! ```
//!
//! The header is in the clear (it is needed before anything can be
//! decrypted) and authenticated by every chunk, whose associated data
//! holds it. The salt is random per archive, so two archives never share a
//! key, even under one passphrase or one caller key: the chunk nonces
//! (the chunk's index) can then repeat across archives safely. The magic
//! says what the stream is ([`ArchiveKind`]): being in every chunk's
//! associated data, it cannot be changed to pass a transfer off as a
//! backup or the other way round.

use std::io::Read;

use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::chunks::read_full;
use super::{ArchiveError, ArchiveId, ArchiveKey, ArchiveKind, ArchiveLock};
use crate::crypto::{SALT_LEN, argon2id};
use crate::error::{Error, Result};
use crate::options::KdfParams;

/// The first bytes of every backup archive (format version 1).
pub(crate) const MAGIC: [u8; 8] = *b"SOTTOHA1";
/// The first bytes of every history transfer (format version 1).
pub(crate) const TRANSFER_MAGIC: [u8; 8] = *b"SOTTOHT1";
/// Length of the encoded header.
pub(crate) const HEADER_LEN: usize = 8 + 1 + 12 + SALT_LEN + 16 + 8 + 8;

const KDF_CALLER_KEY: u8 = 0;
const KDF_ARGON2ID: u8 = 1;
const CALLER_KEY_INFO: &[u8] = b"sotto/history-archive/v1 caller key";

/// How the chunk key is derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kdf {
    /// kdf 0: from a key the caller gives.
    CallerKey,
    /// kdf 1: from a passphrase.
    Argon2id(KdfParams),
}

/// The secret an archive is locked with.
#[derive(Clone, Copy)]
pub(crate) enum ArchiveSecret<'a> {
    Passphrase(&'a [u8]),
    Key(&'a ArchiveKey),
}

impl ArchiveKind {
    fn magic(self) -> [u8; 8] {
        match self {
            Self::Backup => MAGIC,
            Self::Transfer => TRANSFER_MAGIC,
        }
    }

    fn from_magic(bytes: &[u8]) -> Option<Self> {
        if bytes == MAGIC {
            Some(Self::Backup)
        } else if bytes == TRANSFER_MAGIC {
            Some(Self::Transfer)
        } else {
            None
        }
    }

    /// `Ok` if this is `expected`, [`ArchiveError::WrongKind`] otherwise.
    pub(crate) fn expect(self, expected: Self) -> Result<(), ArchiveError> {
        if self == expected {
            Ok(())
        } else {
            Err(ArchiveError::WrongKind {
                expected,
                found: self,
            })
        }
    }
}

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// A backup archive or a history transfer (the magic).
    pub(crate) kind: ArchiveKind,
    pub(crate) kdf: Kdf,
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) id: ArchiveId,
    /// Message records (readable and unreadable) in the archive.
    pub(crate) messages: u64,
    /// Contact records in the archive.
    pub(crate) contacts: u64,
}

impl Header {
    /// A header with a fresh random salt and id.
    pub(crate) fn generate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        kind: ArchiveKind,
        kdf: Kdf,
        messages: u64,
        contacts: u64,
    ) -> Self {
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        Self {
            kind,
            kdf,
            salt,
            id: ArchiveId(id),
            messages,
            contacts,
        }
    }

    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(&self.kind.magic());
        match self.kdf {
            Kdf::CallerKey => out[8] = KDF_CALLER_KEY,
            Kdf::Argon2id(p) => {
                out[8] = KDF_ARGON2ID;
                out[9..13].copy_from_slice(&p.memory_kib().to_be_bytes());
                out[13..17].copy_from_slice(&p.iterations().to_be_bytes());
                out[17..21].copy_from_slice(&p.parallelism().to_be_bytes());
            }
        }
        out[21..37].copy_from_slice(&self.salt);
        out[37..53].copy_from_slice(&self.id.0);
        out[53..61].copy_from_slice(&self.messages.to_be_bytes());
        out[61..69].copy_from_slice(&self.contacts.to_be_bytes());
        out
    }

    /// Strict decoding: parameters out of [`KdfParams::new`]'s range are
    /// refused before any memory is spent on them.
    pub(crate) fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Self, ArchiveError> {
        let kind = ArchiveKind::from_magic(&bytes[..8]).ok_or(ArchiveError::NotAnArchive)?;
        let word =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let long = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let (m, t, p) = (word(9), word(13), word(17));
        let kdf = match bytes[8] {
            KDF_CALLER_KEY if (m, t, p) == (0, 0, 0) => Kdf::CallerKey,
            KDF_CALLER_KEY => return Err(ArchiveError::MalformedHeader),
            KDF_ARGON2ID => {
                Kdf::Argon2id(KdfParams::new(m, t, p).map_err(|_| ArchiveError::MalformedHeader)?)
            }
            other => return Err(ArchiveError::UnsupportedKdf(other)),
        };
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&bytes[21..37]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[37..53]);
        Ok(Self {
            kind,
            kdf,
            salt,
            id: ArchiveId(id),
            messages: long(53),
            contacts: long(61),
        })
    }

    /// Reads and decodes the header at the start of `input`; returns it
    /// with its bytes (the chunks' associated data holds them).
    pub(crate) fn read(input: &mut impl Read) -> Result<(Self, [u8; HEADER_LEN]), ArchiveError> {
        let mut bytes = [0u8; HEADER_LEN];
        let n = read_full(input, &mut bytes)?;
        if n < MAGIC.len() || ArchiveKind::from_magic(&bytes[..8]).is_none() {
            return Err(ArchiveError::NotAnArchive);
        }
        if n < HEADER_LEN {
            return Err(ArchiveError::Truncated { chunks: 0 });
        }
        Ok((Self::decode(&bytes)?, bytes))
    }

    /// What locks this archive.
    pub(crate) fn lock(&self) -> ArchiveLock {
        match self.kdf {
            Kdf::CallerKey => ArchiveLock::Key,
            Kdf::Argon2id(_) => ArchiveLock::Passphrase,
        }
    }

    /// The chunk key, from `secret` and this header's salt. Costly for a
    /// passphrase (Argon2id with the header's parameters).
    pub(crate) fn derive_key(&self, secret: ArchiveSecret<'_>) -> Result<Zeroizing<[u8; 32]>> {
        match (self.kdf, secret) {
            (Kdf::Argon2id(params), ArchiveSecret::Passphrase(passphrase)) => {
                argon2id(passphrase, &self.salt, params)
            }
            (Kdf::CallerKey, ArchiveSecret::Key(key)) => {
                let mut out = Zeroizing::new([0u8; 32]);
                Hkdf::<Sha256>::new(Some(&self.salt), key.as_bytes())
                    .expand(CALLER_KEY_INFO, out.as_mut_slice())
                    .map_err(|_| Error::InvalidKdfParams("HKDF output length"))?;
                Ok(out)
            }
            _ => Err(Error::Archive(ArchiveError::WrongLock {
                expected: self.lock(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn header_roundtrips_and_is_strict() {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([3; 32]);
        let params = KdfParams::new(64, 2, 1).unwrap();
        let header = Header::generate(
            &mut rng,
            ArchiveKind::Backup,
            Kdf::Argon2id(params),
            10_000,
            7,
        );
        let bytes = header.encode();
        assert_eq!(bytes.len(), 69);
        assert_eq!(&bytes[..8], b"SOTTOHA1");
        assert_eq!(bytes[8], 1);
        assert_eq!(Header::decode(&bytes).unwrap(), header);
        assert_eq!(
            Header::read(&mut &bytes[..]).unwrap(),
            (header, bytes),
            "read from a stream"
        );

        let caller = Header::generate(&mut rng, ArchiveKind::Backup, Kdf::CallerKey, 0, 0);
        let encoded = caller.encode();
        assert_eq!(encoded[8..21], [0; 13]);
        assert_eq!(Header::decode(&encoded).unwrap(), caller);

        // A transfer differs in its magic only.
        let transfer = Header {
            kind: ArchiveKind::Transfer,
            ..caller
        };
        let transfer_bytes = transfer.encode();
        assert_eq!(&transfer_bytes[..8], b"SOTTOHT1");
        assert_eq!(transfer_bytes[8..], encoded[8..]);
        assert_eq!(Header::decode(&transfer_bytes).unwrap(), transfer);
        assert_eq!(
            Header::read(&mut &transfer_bytes[..]).unwrap().0.kind,
            ArchiveKind::Transfer
        );
        assert!(matches!(
            ArchiveKind::Transfer.expect(ArchiveKind::Backup),
            Err(ArchiveError::WrongKind {
                expected: ArchiveKind::Backup,
                found: ArchiveKind::Transfer
            })
        ));

        let mut bad = bytes;
        bad[0] ^= 1;
        assert!(matches!(
            Header::decode(&bad),
            Err(ArchiveError::NotAnArchive)
        ));
        let mut bad = bytes;
        bad[8] = 2;
        assert!(matches!(
            Header::decode(&bad),
            Err(ArchiveError::UnsupportedKdf(2))
        ));
        // A memory cost beyond the store's limit is refused unread.
        let mut bad = bytes;
        bad[9..13].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Header::decode(&bad),
            Err(ArchiveError::MalformedHeader)
        ));
        let mut bad = encoded;
        bad[16] = 1;
        assert!(matches!(
            Header::decode(&bad),
            Err(ArchiveError::MalformedHeader)
        ));

        assert!(matches!(
            Header::read(&mut &bytes[..40]),
            Err(ArchiveError::Truncated { chunks: 0 })
        ));
        assert!(matches!(
            Header::read(&mut &b"SQLite format 3\0"[..]),
            Err(ArchiveError::NotAnArchive)
        ));
        assert!(matches!(
            Header::read(&mut &b""[..]),
            Err(ArchiveError::NotAnArchive)
        ));
    }

    #[test]
    fn keys_depend_on_secret_salt_and_lock() {
        let mut rng = rand::rngs::ChaCha20Rng::from_seed([4; 32]);
        let params = KdfParams::new(64, 1, 1).unwrap();
        let a = Header::generate(&mut rng, ArchiveKind::Backup, Kdf::Argon2id(params), 0, 0);
        let b = Header::generate(&mut rng, ArchiveKind::Backup, Kdf::Argon2id(params), 0, 0);
        let pass = ArchiveSecret::Passphrase(b"pw");
        let key_a = a.derive_key(pass).unwrap();
        assert_eq!(*key_a, *a.derive_key(pass).unwrap());
        assert_ne!(*key_a, *b.derive_key(pass).unwrap(), "salt");
        assert_ne!(
            *key_a,
            *a.derive_key(ArchiveSecret::Passphrase(b"pW")).unwrap()
        );

        let caller = ArchiveKey::from_bytes(&[9; 32]);
        let c = Header::generate(&mut rng, ArchiveKind::Backup, Kdf::CallerKey, 0, 0);
        let d = Header::generate(&mut rng, ArchiveKind::Backup, Kdf::CallerKey, 0, 0);
        let key_c = c.derive_key(ArchiveSecret::Key(&caller)).unwrap();
        assert_ne!(*key_c, [9; 32], "the caller's key is not used as it is");
        assert_ne!(*key_c, *d.derive_key(ArchiveSecret::Key(&caller)).unwrap());

        assert!(matches!(
            c.derive_key(pass),
            Err(Error::Archive(ArchiveError::WrongLock {
                expected: ArchiveLock::Key
            }))
        ));
        assert!(matches!(
            a.derive_key(ArchiveSecret::Key(&caller)),
            Err(Error::Archive(ArchiveError::WrongLock {
                expected: ArchiveLock::Passphrase
            }))
        ));
    }
}
