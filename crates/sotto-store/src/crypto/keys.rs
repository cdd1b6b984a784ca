//! The database key and the subkeys derived from it.

use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::lookup::LookupKey;
use super::seal::{Place, SealingKey};
use super::unlock::{KdfRecord, Secret};
use crate::error::{Error, Result};

const VALUE_KEY_INFO: &[u8] = b"sotto-store/v1 value key";
const LOOKUP_KEY_INFO: &[u8] = b"sotto-store/v1 lookup key";

/// The random 32-byte database key (DBK). Everything in the file hangs off
/// it; it is stored only wrapped by the KEK.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct DatabaseKey(Box<[u8; 32]>);

impl DatabaseKey {
    pub(crate) fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = Box::new([0u8; 32]);
        rng.fill_bytes(key.as_mut_slice());
        Self(key)
    }

    fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut key = Box::new([0u8; 32]);
        if bytes.len() != 32 {
            return None;
        }
        key.copy_from_slice(bytes);
        Some(Self(key))
    }

    /// Seals the DBK under the KEK derived from `secret`; the AD is the
    /// encoded `kdf` record, so record and wrapped key belong together.
    pub(crate) fn wrap<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        record: &KdfRecord,
        secret: Secret<'_>,
    ) -> Result<Vec<u8>> {
        let kek = SealingKey::new(&*record.derive_kek(secret)?);
        let encoded = record.encode();
        let wrapped = kek.seal(rng, wrap_place(&encoded), self.0.as_slice())?;
        // Read back before anyone commits it: a wrapped key that does not
        // open to this exact key would lock the user out.
        let check = kek
            .open(wrap_place(&encoded), &wrapped)
            .ok_or(Error::Corrupt {
                table: "meta",
                row: crate::error::Row::Named("wrapped_key"),
            })?;
        if !bool::from(check.as_slice().ct_eq(self.0.as_slice())) {
            return Err(Error::Corrupt {
                table: "meta",
                row: crate::error::Row::Named("wrapped_key"),
            });
        }
        Ok(wrapped)
    }

    /// Unwraps the DBK; the error for a secret that does not open it is
    /// `WrongPassphrase` / `WrongKey`.
    pub(crate) fn unwrap(record: &KdfRecord, secret: Secret<'_>, wrapped: &[u8]) -> Result<Self> {
        let kek = SealingKey::new(&*record.derive_kek(secret)?);
        let encoded = record.encode();
        let plain = kek
            .open(wrap_place(&encoded), wrapped)
            .ok_or_else(|| secret.wrong())?;
        Self::from_slice(&plain).ok_or_else(|| secret.wrong())
    }
}

fn wrap_place(record: &[u8]) -> Place<'_> {
    Place::new("meta", "wrapped_key", record)
}

/// The keys an open store works with. Derived once per open.
pub(crate) struct Keys {
    database: DatabaseKey,
    value: SealingKey,
    lookup: LookupKey,
    /// The identity key pair last opened from the `identity` row, with
    /// that row's sealed bytes: while the row holds the same bytes, the
    /// pair is this one, without opening or deriving it again. Wiped when
    /// the store closes (the pair zeroizes on drop).
    identity: std::sync::Mutex<Option<(Vec<u8>, sotto_core::IdentityKeyPair)>>,
}

impl Keys {
    /// HKDF-SHA256(salt = none, ikm = DBK) with one info string per subkey.
    pub(crate) fn derive(database: DatabaseKey) -> Result<Self> {
        let hk = Hkdf::<Sha256>::new(None, database.0.as_slice());
        let mut value = Zeroizing::new([0u8; 32]);
        let mut lookup = Zeroizing::new([0u8; 32]);
        hk.expand(VALUE_KEY_INFO, value.as_mut_slice())
            .and_then(|()| hk.expand(LOOKUP_KEY_INFO, lookup.as_mut_slice()))
            .map_err(|_| Error::InvalidKdfParams("HKDF output length"))?;
        Ok(Self {
            value: SealingKey::new(&value),
            lookup: LookupKey::new(&lookup)?,
            database,
            identity: std::sync::Mutex::new(None),
        })
    }

    /// The identity key pair opened from the sealed `identity` row
    /// `sealed`, if it is the one opened last.
    pub(crate) fn cached_identity(&self, sealed: &[u8]) -> Option<sotto_core::IdentityKeyPair> {
        let cache = self
            .identity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*cache {
            Some((row, pair)) if row.as_slice() == sealed => Some(pair.clone()),
            _ => None,
        }
    }

    /// Remembers `pair` as what the sealed `identity` row `sealed` holds.
    pub(crate) fn cache_identity(&self, sealed: Vec<u8>, pair: &sotto_core::IdentityKeyPair) {
        *self
            .identity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((sealed, pair.clone()));
    }

    pub(crate) fn database(&self) -> &DatabaseKey {
        &self.database
    }

    /// Seals rows that are not per-conversation, and wraps conversation keys.
    pub(crate) fn value(&self) -> &SealingKey {
        &self.value
    }

    pub(crate) fn lookup(&self) -> &LookupKey {
        &self.lookup
    }
}

/// A conversation's own key: seals its messages and outbox entries.
/// Deleting the conversation row destroys it (crypto-shredding).
pub(crate) struct ConversationKey {
    raw: Zeroizing<[u8; 32]>,
    key: SealingKey,
}

impl ConversationKey {
    pub(crate) fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut raw = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(raw.as_mut_slice());
        Self::from_bytes(raw)
    }

    pub(crate) fn from_bytes(raw: Zeroizing<[u8; 32]>) -> Self {
        let key = SealingKey::new(&raw);
        Self { raw, key }
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.raw
    }

    pub(crate) fn sealing(&self) -> &SealingKey {
        &self.key
    }
}
