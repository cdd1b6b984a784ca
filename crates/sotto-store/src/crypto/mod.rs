//! The store's key hierarchy and its two operations on data: sealing
//! values (AEAD bound to their place) and computing lookup keys (HMAC).
//!
//! ```text
//! passphrase --Argon2id(salt, m, t, p)--> KEK      app key --HKDF(salt)--> KEK
//!                     KEK --XChaCha20-Poly1305--> wrapped database key (meta)
//! database key --HKDF-SHA256--> value key   (seals rows, wraps conversation keys)
//!              \-HKDF-SHA256--> lookup key  (HMAC-SHA256 of identifiers)
//! conversation key (random, per conversation) --> seals its messages and outbox
//! ```

mod keys;
mod lookup;
mod seal;
mod unlock;

pub(crate) use keys::{ConversationKey, DatabaseKey, Keys};
pub(crate) use lookup::Domain;
pub(crate) use seal::Place;
pub(crate) use unlock::{KdfRecord, SALT_LEN, Secret, argon2id};
