//! Row-level access inside one transaction: every read opens (and checks)
//! a sealed value for its place, every write seals for its place.

use std::cell::Cell;

use rand_core::CryptoRng;
use rusqlite::{Connection, OptionalExtension, params};
use sotto_core::{
    DeviceId, IdentityKeyPair, KemPreKey, KemPreKeyId, OneTimePreKey, OneTimePreKeyId,
    PreKeySource, SessionSet, SignedPreKey, SignedPreKeyId,
};
use zeroize::Zeroizing;

use crate::crypto::{ConversationKey, Domain, Keys, Place};
use crate::error::{Error, Result, Row};
use crate::layout;
use crate::records::{
    self, ContactRecord, OutboxRecord, PreKeyIds, decode_contact, decode_conversation,
    decode_identity, decode_message, decode_one_time_prekey_state, decode_prekey_ids,
    encode_contact, encode_conversation, encode_identity, encode_one_time_prekey_state,
    encode_prekey_ids, padded, unpadded,
};
use crate::types::{EnvelopeId, Message, OneTimePreKeyInfo, PeerDevice};

/// An error reading a row: a missing or mistyped column is corruption of
/// that row; anything else is the database's own failure.
pub(crate) fn corrupt_or_db(e: rusqlite::Error, table: &'static str, row: Row) -> Error {
    match e {
        rusqlite::Error::QueryReturnedNoRows
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => Error::Corrupt { table, row },
        other => Error::from(other),
    }
}

pub(crate) fn seq_to_sql(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| Error::UnknownMessage(seq))
}

pub(crate) fn seq_from_sql(seq: i64, table: &'static str) -> Result<u64> {
    u64::try_from(seq).map_err(|_| Error::Corrupt {
        table,
        row: Row::Named("seq"),
    })
}

pub(crate) fn lookup_from_sql(bytes: Vec<u8>, table: &'static str) -> Result<[u8; 32]> {
    bytes.try_into().map_err(|_| Error::Corrupt {
        table,
        row: Row::Named("lookup"),
    })
}

/// The row part of a message's associated data: `conversation || u64be(seq)`.
pub(crate) fn message_row(conversation: &[u8; 32], seq: u64) -> [u8; 40] {
    let mut row = [0u8; 40];
    row[..32].copy_from_slice(conversation);
    row[32..].copy_from_slice(&seq.to_be_bytes());
    row
}

/// A conversation with its key unwrapped.
pub(crate) struct Conversation {
    pub(crate) lookup: [u8; 32],
    /// Its number in the `messages` row ids (`conversations.num`,
    /// [`crate::layout`]).
    pub(crate) num: u32,
    pub(crate) contact: String,
    pub(crate) key: ConversationKey,
    pub(crate) next_seq: u64,
    /// Seqs deleted on purpose (sorted, disjoint, inclusive ranges): every
    /// other seq below `next_seq` must have a row.
    pub(crate) deleted: Vec<(u64, u64)>,
    /// Its disappearing messages timer, if one was ever set.
    pub(crate) timer: Option<crate::types::DisappearingTimer>,
}

impl Conversation {
    /// Seals a message record for its place, `(conversation, seq)`, under
    /// this conversation's key. Needs no database: sealing can run apart
    /// from the writing (a batch of rows sealed on several threads).
    pub(crate) fn seal_message<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        seq: u64,
        record: &[u8],
    ) -> Result<Vec<u8>> {
        let row = message_row(&self.lookup, seq);
        self.key
            .sealing()
            .seal(rng, Place::new("messages", "sealed", &row), record)
    }

    /// Opens message `seq`'s sealed record; `None` if it does not open
    /// for that place under this conversation's key.
    pub(crate) fn open_message_record(
        &self,
        seq: u64,
        sealed: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        let row = message_row(&self.lookup, seq);
        self.key
            .sealing()
            .open(Place::new("messages", "sealed", &row), sealed)
    }
}

/// A conversation number that `conn`'s `conversations` does not hold,
/// drawn at random from `1..=MAX_NUM`.
pub(crate) fn free_conversation_num<R: CryptoRng + ?Sized>(
    conn: &Connection,
    rng: &mut R,
) -> Result<u32> {
    let mut taken =
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM conversations WHERE num = ?1)")?;
    // Half the numbers free: 64 draws all miss with probability 2^-64.
    for _ in 0..64 {
        let mut bytes = [0u8; 4];
        rng.fill_bytes(&mut bytes);
        let num = u32::from_be_bytes(bytes) % layout::MAX_NUM + 1;
        if !taken.query_row(params![num], |r| r.get::<_, bool>(0))? {
            return Ok(num);
        }
    }
    let count: i64 = conn.query_row("SELECT count(*) FROM conversations", [], |r| r.get(0))?;
    Err(Error::LayoutLimit {
        what: "conversations",
        value: u64::try_from(count).unwrap_or(0),
        max: u64::from(layout::MAX_NUM),
    })
}

/// A raw outbox row.
pub(crate) struct OutboxRow {
    pub(crate) lookup: [u8; 32],
    pub(crate) conversation: [u8; 32],
    pub(crate) seq: u64,
    pub(crate) sealed: Vec<u8>,
}

/// The database as seen through the store's keys, inside one transaction.
pub(crate) struct Db<'a> {
    conn: &'a Connection,
    keys: &'a Keys,
}

impl<'a> Db<'a> {
    pub(crate) fn new(conn: &'a Connection, keys: &'a Keys) -> Self {
        Self { conn, keys }
    }

    pub(crate) fn lookup(&self, domain: Domain, parts: &[&[u8]]) -> [u8; 32] {
        self.keys.lookup().compute(domain, parts)
    }

    fn open_value(&self, place: Place<'_>, sealed: &[u8], row: Row) -> Result<Zeroizing<Vec<u8>>> {
        self.keys.value().open(place, sealed).ok_or(Error::Corrupt {
            table: place.table,
            row,
        })
    }

    /// The opened value of `table`'s row `lookup`, for the tables that are
    /// `(lookup, sealed)` pairs; `None` without such a row.
    pub(crate) fn sealed_row(
        &self,
        table: &'static str,
        lookup: &[u8; 32],
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let row = Row::lookup(lookup);
        let sql = format!("SELECT sealed FROM {table} WHERE lookup = ?1");
        let Some(sealed) = self.query_sealed(&sql, &lookup[..], table, row)? else {
            return Ok(None);
        };
        self.open_value(Place::new(table, "sealed", lookup), &sealed, row)
            .map(Some)
    }

    /// Seals `plain` for `table`'s row `lookup` and writes it (inserted or
    /// replaced), with `extra` as the value of a third column when the
    /// table has one (`extra_column`).
    pub(crate) fn put_sealed_row<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        table: &'static str,
        lookup: &[u8; 32],
        plain: &[u8],
        extra: Option<(&'static str, &[u8])>,
    ) -> Result<()> {
        let sealed = self
            .keys
            .value()
            .seal(rng, Place::new(table, "sealed", lookup), plain)?;
        match extra {
            None => {
                let sql =
                    format!("INSERT OR REPLACE INTO {table} (lookup, sealed) VALUES (?1, ?2)");
                self.conn
                    .prepare_cached(&sql)?
                    .execute(params![&lookup[..], sealed])?;
            }
            Some((column, value)) => {
                let sql = format!(
                    "INSERT OR REPLACE INTO {table} (lookup, sealed, {column}) VALUES (?1, ?2, ?3)"
                );
                self.conn
                    .prepare_cached(&sql)?
                    .execute(params![&lookup[..], sealed, value])?;
            }
        }
        Ok(())
    }

    fn query_sealed(
        &self,
        sql: &str,
        key: &[u8],
        table: &'static str,
        row: Row,
    ) -> Result<Option<Vec<u8>>> {
        self.conn
            .prepare_cached(sql)?
            .query_row(params![key], |r| r.get::<_, Vec<u8>>(0))
            .optional()
            .map_err(|e| corrupt_or_db(e, table, row))
    }

    // ---- identity ---------------------------------------------------------

    pub(crate) fn identity(&self) -> Result<IdentityKeyPair> {
        let row = Row::Named("identity");
        let sealed: Vec<u8> = self
            .conn
            .prepare_cached("SELECT sealed FROM identity WHERE slot = 0")?
            .query_row([], |r| r.get(0))
            .map_err(|e| corrupt_or_db(e, "identity", row))?;
        // The row the store opened last: no AEAD, no key derivation.
        if let Some(pair) = self.keys.cached_identity(&sealed) {
            return Ok(pair);
        }
        let plain = self.open_value(Place::new("identity", "sealed", b"identity"), &sealed, row)?;
        let seed = decode_identity(&plain).map_err(|_| Error::Corrupt {
            table: "identity",
            row,
        })?;
        let pair = IdentityKeyPair::from_seed(&seed);
        self.keys.cache_identity(sealed, &pair);
        Ok(pair)
    }

    pub(crate) fn put_identity<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        identity: &IdentityKeyPair,
    ) -> Result<()> {
        let record = encode_identity(&identity.to_seed());
        let sealed =
            self.keys
                .value()
                .seal(rng, Place::new("identity", "sealed", b"identity"), &record)?;
        self.conn.execute(
            "INSERT OR REPLACE INTO identity (slot, sealed) VALUES (0, ?1)",
            params![sealed],
        )?;
        Ok(())
    }

    // ---- prekey ids -------------------------------------------------------

    pub(crate) fn prekey_ids(&self) -> Result<PreKeyIds> {
        let row = Row::Named("prekey_ids");
        let sealed: Vec<u8> = self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE name = 'prekey_ids'")?
            .query_row([], |r| r.get(0))
            .map_err(|e| corrupt_or_db(e, "meta", row))?;
        let plain = self.open_value(Place::new("meta", "value", b"prekey_ids"), &sealed, row)?;
        decode_prekey_ids(&plain).map_err(|_| Error::Corrupt { table: "meta", row })
    }

    pub(crate) fn put_prekey_ids<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        ids: &PreKeyIds,
    ) -> Result<()> {
        let sealed = self.keys.value().seal(
            rng,
            Place::new("meta", "value", b"prekey_ids"),
            &encode_prekey_ids(ids),
        )?;
        self.conn.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('prekey_ids', ?1)",
            params![sealed],
        )?;
        Ok(())
    }

    // ---- the account's own device list ------------------------------------

    /// The signed device list this profile's account published last, if
    /// it has one (raw signed bytes; the caller verifies them).
    pub(crate) fn own_device_list(&self) -> Result<Option<Zeroizing<Vec<u8>>>> {
        self.meta_value("device_list")
    }

    pub(crate) fn put_own_device_list<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        signed: &[u8],
    ) -> Result<()> {
        self.put_meta_value(rng, "device_list", signed)
    }

    // ---- contacts' device lists -------------------------------------------

    /// The contact's newest signed device list as stored (raw signed bytes;
    /// the caller verifies them against the contact's pinned key).
    pub(crate) fn contact_device_list(&self, contact: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let lookup = self.contact_lookup(contact);
        let row = Row::lookup(&lookup);
        self.query_sealed(
            "SELECT sealed FROM contact_device_lists WHERE contact = ?1",
            &lookup,
            "contact_device_lists",
            row,
        )?
        .map(|sealed| {
            self.open_value(
                Place::new("contact_device_lists", "sealed", &lookup),
                &sealed,
                row,
            )
        })
        .transpose()
    }

    pub(crate) fn put_contact_device_list<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        contact: &str,
        signed: &[u8],
    ) -> Result<()> {
        let lookup = self.contact_lookup(contact);
        let sealed = self.keys.value().seal(
            rng,
            Place::new("contact_device_lists", "sealed", &lookup),
            signed,
        )?;
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO contact_device_lists (contact, sealed) VALUES (?1, ?2)",
            )?
            .execute(params![&lookup[..], sealed])?;
        Ok(())
    }

    // ---- signed prekeys ---------------------------------------------------

    fn signed_prekey_lookup(&self, id: SignedPreKeyId) -> [u8; 32] {
        self.lookup(Domain::SignedPreKey, &[&id.get().to_be_bytes()])
    }

    /// Opens a sealed prekey of `table` and checks that it is stored under
    /// the lookup key of its own id (a row moved elsewhere is corrupt).
    fn open_prekey<K>(
        &self,
        table: &'static str,
        domain: Domain,
        lookup: &[u8; 32],
        sealed: &[u8],
        decode: fn(&[u8]) -> sotto_core::Result<K>,
        id_of: fn(&K) -> u32,
    ) -> Result<K> {
        let row = Row::lookup(lookup);
        let corrupt = || Error::Corrupt { table, row };
        let plain = self.open_value(Place::new(table, "sealed", lookup), sealed, row)?;
        let key = decode(&plain).map_err(|_| corrupt())?;
        if self.lookup(domain, &[&id_of(&key).to_be_bytes()]) != *lookup {
            return Err(corrupt());
        }
        Ok(key)
    }

    fn open_signed_prekey(&self, lookup: &[u8; 32], sealed: &[u8]) -> Result<SignedPreKey> {
        self.open_prekey(
            "signed_prekeys",
            Domain::SignedPreKey,
            lookup,
            sealed,
            SignedPreKey::from_bytes,
            |key| key.id().get(),
        )
    }

    pub(crate) fn signed_prekey(&self, id: SignedPreKeyId) -> Result<Option<SignedPreKey>> {
        let lookup = self.signed_prekey_lookup(id);
        self.query_sealed(
            "SELECT sealed FROM signed_prekeys WHERE lookup = ?1",
            &lookup,
            "signed_prekeys",
            Row::lookup(&lookup),
        )?
        .map(|sealed| self.open_signed_prekey(&lookup, &sealed))
        .transpose()
    }

    pub(crate) fn current_signed_prekey(&self) -> Result<SignedPreKey> {
        let row: Option<(Vec<u8>, Vec<u8>)> = self
            .conn
            .prepare_cached("SELECT lookup, sealed FROM signed_prekeys WHERE current = 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(|e| corrupt_or_db(e, "signed_prekeys", Row::Named("current")))?;
        let (lookup, sealed) = row.ok_or(Error::Corrupt {
            table: "signed_prekeys",
            row: Row::Named("current"),
        })?;
        self.open_signed_prekey(&lookup_from_sql(lookup, "signed_prekeys")?, &sealed)
    }

    /// Stores a signed prekey; `since` is when it was made (current) or
    /// retired (previous), ms since the Unix epoch, 0 if unknown.
    pub(crate) fn put_signed_prekey<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        key: &SignedPreKey,
        current: bool,
        since: u64,
    ) -> Result<()> {
        let lookup = self.signed_prekey_lookup(key.id());
        let sealed = self.keys.value().seal(
            rng,
            Place::new("signed_prekeys", "sealed", &lookup),
            &key.to_bytes(),
        )?;
        self.conn.execute(
            "INSERT OR REPLACE INTO signed_prekeys (lookup, current, sealed, since)
             VALUES (?1, ?2, ?3, ?4)",
            params![&lookup[..], current, sealed, seq_to_sql(since)?],
        )?;
        Ok(())
    }

    /// `since` of the current signed prekey (0 if unknown).
    pub(crate) fn current_signed_prekey_since(&self) -> Result<u64> {
        let since: i64 = self
            .conn
            .prepare_cached("SELECT since FROM signed_prekeys WHERE current = 1")?
            .query_row([], |r| r.get(0))
            .map_err(|e| corrupt_or_db(e, "signed_prekeys", Row::Named("current")))?;
        seq_from_sql(since, "signed_prekeys")
    }

    /// Starts the rotation clock of a current signed prekey whose age is
    /// unknown.
    pub(crate) fn set_current_signed_prekey_since(&self, since: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE signed_prekeys SET since = ?1 WHERE current = 1",
            params![seq_to_sql(since)?],
        )?;
        Ok(())
    }

    /// Deletes every signed prekey but the current one, and the base keys
    /// remembered for them; returns how many prekeys.
    pub(crate) fn delete_previous_signed_prekeys(&self) -> Result<usize> {
        let n = self
            .conn
            .execute("DELETE FROM signed_prekeys WHERE current = 0", [])?;
        self.forget_orphan_base_keys()?;
        Ok(n)
    }

    /// Deletes the previous signed prekeys retired at or before `cutoff`
    /// (ms), and their base keys; returns how many prekeys.
    pub(crate) fn delete_signed_prekeys_retired_by(&self, cutoff: u64) -> Result<usize> {
        let n = self.conn.execute(
            "DELETE FROM signed_prekeys WHERE current = 0 AND since <= ?1",
            params![seq_to_sql(cutoff)?],
        )?;
        if n > 0 {
            self.forget_orphan_base_keys()?;
        }
        Ok(n)
    }

    fn forget_orphan_base_keys(&self) -> Result<()> {
        self.conn.execute(
            "DELETE FROM used_base_keys
             WHERE signed_prekey NOT IN (SELECT lookup FROM signed_prekeys)",
            [],
        )?;
        Ok(())
    }

    // ---- base keys of first messages ---------------------------------------

    fn base_key_lookup(&self, signed_prekey: SignedPreKeyId, base_key: &[u8; 32]) -> [u8; 32] {
        self.lookup(
            Domain::BaseKey,
            &[&signed_prekey.get().to_be_bytes(), base_key],
        )
    }

    /// True if a PreKeyMessage with this base key already started a session
    /// against this signed prekey.
    pub(crate) fn base_key_used(
        &self,
        signed_prekey: SignedPreKeyId,
        base_key: &[u8; 32],
    ) -> Result<bool> {
        let lookup = self.base_key_lookup(signed_prekey, base_key);
        Ok(self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM used_base_keys WHERE lookup = ?1)")?
            .query_row(params![&lookup[..]], |r| r.get(0))?)
    }

    /// Remembers a base key that started a session (for as long as its
    /// signed prekey is kept).
    pub(crate) fn record_base_key(
        &self,
        signed_prekey: SignedPreKeyId,
        base_key: &[u8; 32],
    ) -> Result<()> {
        let lookup = self.base_key_lookup(signed_prekey, base_key);
        let prekey = self.signed_prekey_lookup(signed_prekey);
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO used_base_keys (lookup, signed_prekey) VALUES (?1, ?2)",
            )?
            .execute(params![&lookup[..], &prekey[..]])?;
        Ok(())
    }

    /// Marks the current signed prekey as previous, retired at `now` (ms).
    pub(crate) fn demote_current_signed_prekey(&self, now: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE signed_prekeys SET current = 0, since = ?1 WHERE current = 1",
            params![seq_to_sql(now)?],
        )?;
        Ok(())
    }

    // ---- one-time prekeys -------------------------------------------------

    fn one_time_prekey_lookup(&self, id: OneTimePreKeyId) -> [u8; 32] {
        self.lookup(Domain::OneTimePreKey, &[&id.get().to_be_bytes()])
    }

    fn open_one_time_prekey(&self, lookup: &[u8; 32], sealed: &[u8]) -> Result<OneTimePreKey> {
        self.open_prekey(
            "one_time_prekeys",
            Domain::OneTimePreKey,
            lookup,
            sealed,
            OneTimePreKey::from_bytes,
            |key| key.id().get(),
        )
    }

    pub(crate) fn one_time_prekey(&self, id: OneTimePreKeyId) -> Result<Option<OneTimePreKey>> {
        let lookup = self.one_time_prekey_lookup(id);
        self.query_sealed(
            "SELECT sealed FROM one_time_prekeys WHERE lookup = ?1",
            &lookup,
            "one_time_prekeys",
            Row::lookup(&lookup),
        )?
        .map(|sealed| self.open_one_time_prekey(&lookup, &sealed))
        .transpose()
    }

    /// The connection, for whole-file checks.
    pub(crate) fn conn(&self) -> &Connection {
        self.conn
    }

    // ---- KEM prekeys (protocol v2) ---------------------------------------

    fn kem_prekey_lookup(&self, id: KemPreKeyId) -> [u8; 32] {
        self.lookup(Domain::KemPreKey, &[&id.get().to_be_bytes()])
    }

    fn open_kem_prekey(&self, lookup: &[u8; 32], sealed: &[u8]) -> Result<KemPreKey> {
        self.open_prekey(
            "kem_prekeys",
            Domain::KemPreKey,
            lookup,
            sealed,
            KemPreKey::from_bytes,
            |key| key.id().get(),
        )
    }

    /// The KEM prekey with `id`, last-resort or one-time.
    pub(crate) fn kem_prekey(&self, id: KemPreKeyId) -> Result<Option<KemPreKey>> {
        let lookup = self.kem_prekey_lookup(id);
        self.query_sealed(
            "SELECT sealed FROM kem_prekeys WHERE lookup = ?1",
            &lookup,
            "kem_prekeys",
            Row::lookup(&lookup),
        )?
        .map(|sealed| self.open_kem_prekey(&lookup, &sealed))
        .transpose()
    }

    /// Whether the KEM prekey with `id` is the last-resort one (`None`:
    /// there is no such key).
    pub(crate) fn kem_prekey_is_last_resort(&self, id: KemPreKeyId) -> Result<Option<bool>> {
        let lookup = self.kem_prekey_lookup(id);
        Ok(self
            .conn
            .prepare_cached("SELECT last_resort FROM kem_prekeys WHERE lookup = ?1")?
            .query_row(params![&lookup[..]], |r| r.get::<_, bool>(0))
            .optional()?)
    }

    /// The current last-resort KEM prekey, if one was made.
    pub(crate) fn last_resort_kem_prekey(&self) -> Result<Option<KemPreKey>> {
        let row: Option<(Vec<u8>, Vec<u8>)> = self
            .conn
            .prepare_cached("SELECT lookup, sealed FROM kem_prekeys WHERE last_resort = 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(|e| corrupt_or_db(e, "kem_prekeys", Row::Named("last_resort")))?;
        match row {
            None => Ok(None),
            Some((lookup, sealed)) => {
                let lookup = lookup_from_sql(lookup, "kem_prekeys")?;
                self.open_kem_prekey(&lookup, &sealed).map(Some)
            }
        }
    }

    /// Stores a KEM prekey; a new last-resort key replaces the previous
    /// one, which is deleted (first messages made with it no longer
    /// decrypt: replace it only as often as signed prekeys are dropped).
    pub(crate) fn put_kem_prekey<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        key: &KemPreKey,
        last_resort: bool,
    ) -> Result<()> {
        let lookup = self.kem_prekey_lookup(key.id());
        let sealed = self.keys.value().seal(
            rng,
            Place::new("kem_prekeys", "sealed", &lookup),
            &key.to_bytes(),
        )?;
        if last_resort {
            self.conn
                .prepare_cached("DELETE FROM kem_prekeys WHERE last_resort = 1")?
                .execute([])?;
        }
        self.conn
            .prepare_cached(
                "INSERT INTO kem_prekeys (lookup, last_resort, sealed) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![&lookup[..], last_resort, sealed])?;
        Ok(())
    }

    /// Deletes a KEM prekey; returns whether it existed.
    pub(crate) fn delete_kem_prekey(&self, id: KemPreKeyId) -> Result<bool> {
        let lookup = self.kem_prekey_lookup(id);
        Ok(self
            .conn
            .prepare_cached("DELETE FROM kem_prekeys WHERE lookup = ?1")?
            .execute(params![&lookup[..]])?
            > 0)
    }

    /// The ids of the one-time KEM prekeys (rows that cannot be read are
    /// left out: `check` reports them).
    pub(crate) fn one_time_kem_prekey_ids(&self) -> Result<Vec<KemPreKeyId>> {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = self
            .conn
            .prepare_cached("SELECT lookup, sealed FROM kem_prekeys WHERE last_resort = 0")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut ids = Vec::with_capacity(rows.len());
        for (lookup, sealed) in rows {
            let Ok(lookup) = lookup_from_sql(lookup, "kem_prekeys") else {
                continue;
            };
            if let Ok(key) = self.open_kem_prekey(&lookup, &sealed) {
                ids.push(key.id());
            }
        }
        Ok(ids)
    }

    /// How many one-time KEM prekeys the store holds.
    pub(crate) fn count_one_time_kem_prekeys(&self) -> Result<usize> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM kem_prekeys WHERE last_resort = 0",
            [],
            |r| r.get(0),
        )?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Opens every signed and one-time prekey row; returns the errors.
    pub(crate) fn check_prekey_rows(&self) -> Result<Vec<Error>> {
        let mut problems = Vec::new();
        for (table, sql) in [
            (
                "signed_prekeys",
                "SELECT lookup, sealed FROM signed_prekeys",
            ),
            (
                "one_time_prekeys",
                "SELECT lookup, sealed FROM one_time_prekeys",
            ),
            ("kem_prekeys", "SELECT lookup, sealed FROM kem_prekeys"),
        ] {
            let mut stmt = self.conn.prepare(sql)?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            for row in rows {
                let opened = row
                    .map_err(|e| corrupt_or_db(e, table, Row::Named("lookup")))
                    .and_then(|(lookup, sealed)| {
                        let lookup = lookup_from_sql(lookup, table)?;
                        match table {
                            "signed_prekeys" => {
                                self.open_signed_prekey(&lookup, &sealed).map(|_| ())
                            }
                            "kem_prekeys" => self.open_kem_prekey(&lookup, &sealed).map(|_| ()),
                            _ => self.open_one_time_prekey(&lookup, &sealed).map(|_| ()),
                        }
                    });
                if let Err(e) = opened {
                    problems.push(e);
                }
            }
        }
        Ok(problems)
    }

    /// Every one-time prekey row as `(lookup, sealed key)`, still sealed.
    fn one_time_prekey_rows(&self, column: &str) -> Result<Vec<([u8; 32], Vec<u8>)>> {
        // `column` is one of this module's constant column names.
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT lookup, {column} FROM one_time_prekeys"))?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (lookup, sealed) =
                row.map_err(|e| corrupt_or_db(e, "one_time_prekeys", Row::Named("lookup")))?;
            out.push((lookup_from_sql(lookup, "one_time_prekeys")?, sealed));
        }
        Ok(out)
    }

    /// The id of every one-time prekey row whose key opens, each row on its
    /// own (for the migration to version 3).
    pub(crate) fn one_time_prekey_ids(&self) -> Result<Vec<Result<OneTimePreKeyId>>> {
        Ok(self
            .one_time_prekey_rows("sealed")?
            .into_iter()
            .map(|(lookup, sealed)| Ok(self.open_one_time_prekey(&lookup, &sealed)?.id()))
            .collect())
    }

    /// Stores a one-time prekey with its state.
    pub(crate) fn put_one_time_prekey<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        key: &OneTimePreKey,
        state: &OneTimePreKeyInfo,
    ) -> Result<()> {
        let lookup = self.one_time_prekey_lookup(key.id());
        let sealed = self.keys.value().seal(
            rng,
            Place::new("one_time_prekeys", "sealed", &lookup),
            &key.to_bytes(),
        )?;
        let state = self.seal_one_time_prekey_state(rng, &lookup, state)?;
        self.conn
            .prepare_cached(
                "INSERT INTO one_time_prekeys (lookup, sealed, state) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![&lookup[..], sealed, state])?;
        Ok(())
    }

    fn seal_one_time_prekey_state<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        lookup: &[u8; 32],
        state: &OneTimePreKeyInfo,
    ) -> Result<Vec<u8>> {
        self.keys.value().seal(
            rng,
            Place::new("one_time_prekeys", "state", lookup),
            &encode_one_time_prekey_state(state),
        )
    }

    /// Replaces the state of the one-time prekey `state.id`; returns
    /// whether it exists.
    pub(crate) fn put_one_time_prekey_state<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        state: &OneTimePreKeyInfo,
    ) -> Result<bool> {
        let lookup = self.one_time_prekey_lookup(state.id);
        let sealed = self.seal_one_time_prekey_state(rng, &lookup, state)?;
        Ok(self
            .conn
            .prepare_cached("UPDATE one_time_prekeys SET state = ?1 WHERE lookup = ?2")?
            .execute(params![sealed, &lookup[..]])?
            > 0)
    }

    /// The state of every one-time prekey, each row on its own: a state
    /// that does not open, or names another key, is `Corrupt`.
    pub(crate) fn one_time_prekey_states(&self) -> Result<Vec<Result<OneTimePreKeyInfo>>> {
        Ok(self
            .one_time_prekey_rows("state")?
            .into_iter()
            .map(|(lookup, sealed)| {
                let row = Row::lookup(&lookup);
                let corrupt = || Error::Corrupt {
                    table: "one_time_prekeys",
                    row,
                };
                let plain = self.open_value(
                    Place::new("one_time_prekeys", "state", &lookup),
                    &sealed,
                    row,
                )?;
                let state = decode_one_time_prekey_state(&plain).map_err(|_| corrupt())?;
                if self.one_time_prekey_lookup(state.id) != lookup {
                    return Err(corrupt());
                }
                Ok(state)
            })
            .collect())
    }

    pub(crate) fn delete_one_time_prekey(&self, id: OneTimePreKeyId) -> Result<bool> {
        let lookup = self.one_time_prekey_lookup(id);
        Ok(self
            .conn
            .prepare_cached("DELETE FROM one_time_prekeys WHERE lookup = ?1")?
            .execute(params![&lookup[..]])?
            > 0)
    }

    pub(crate) fn count_one_time_prekeys(&self) -> Result<usize> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM one_time_prekeys", [], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    // ---- contacts ---------------------------------------------------------

    pub(crate) fn contact_lookup(&self, id: &str) -> [u8; 32] {
        self.lookup(Domain::Contact, &[id.as_bytes()])
    }

    fn open_contact(&self, lookup: &[u8; 32], sealed: &[u8]) -> Result<ContactRecord> {
        let row = Row::lookup(lookup);
        let plain = self.open_value(Place::new("contacts", "sealed", lookup), sealed, row)?;
        let corrupt = || Error::Corrupt {
            table: "contacts",
            row,
        };
        let record =
            decode_contact(unpadded(&plain).map_err(|_| corrupt())?).map_err(|_| corrupt())?;
        if self.contact_lookup(&record.id) != *lookup {
            return Err(corrupt());
        }
        Ok(record)
    }

    pub(crate) fn contact(&self, id: &str) -> Result<Option<ContactRecord>> {
        let lookup = self.contact_lookup(id);
        self.query_sealed(
            "SELECT sealed FROM contacts WHERE lookup = ?1",
            &lookup,
            "contacts",
            Row::lookup(&lookup),
        )?
        .map(|sealed| self.open_contact(&lookup, &sealed))
        .transpose()
    }

    /// Every contact row, each opened on its own.
    pub(crate) fn all_contacts(&self) -> Result<Vec<Result<ContactRecord>>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT lookup, sealed FROM contacts")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            out.push(
                row.map_err(|e| corrupt_or_db(e, "contacts", Row::Named("lookup")))
                    .and_then(|(lookup, sealed)| {
                        let lookup = lookup_from_sql(lookup, "contacts")?;
                        self.open_contact(&lookup, &sealed)
                    }),
            );
        }
        Ok(out)
    }

    pub(crate) fn put_contact<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        record: &ContactRecord,
    ) -> Result<()> {
        let lookup = self.contact_lookup(&record.id);
        let plain = padded(&encode_contact(record))?;
        let sealed =
            self.keys
                .value()
                .seal(rng, Place::new("contacts", "sealed", &lookup), &plain)?;
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO contacts (lookup, sealed) VALUES (?1, ?2)")?
            .execute(params![&lookup[..], sealed])?;
        Ok(())
    }

    /// Deletes the contact, its sessions with every device and its device
    /// list.
    pub(crate) fn delete_contact(&self, id: &str) -> Result<bool> {
        let lookup = self.contact_lookup(id);
        // The device ids come from the stored list; a damaged list leaves
        // its sessions behind (unreachable: their lookups need the list).
        if let Ok(Some(list)) = crate::devices::contact_list(self, id) {
            for device in list.devices() {
                self.delete_sessions(&self.session_lookup(id, PeerDevice::Contact(device.id)))?;
            }
        }
        self.conn.execute(
            "DELETE FROM contact_device_lists WHERE contact = ?1",
            params![&lookup[..]],
        )?;
        self.conn.execute(
            "DELETE FROM sessions WHERE contact = ?1",
            params![&lookup[..]],
        )?;
        Ok(self.conn.execute(
            "DELETE FROM contacts WHERE lookup = ?1",
            params![&lookup[..]],
        )? > 0)
    }

    // ---- sessions ---------------------------------------------------------

    /// The `sessions` row of the sessions with `device`, seen from the
    /// conversation with `contact`: a contact's primary device keeps the
    /// contact's own lookup (as before linked devices), its other devices
    /// and our own devices have theirs.
    pub(crate) fn session_lookup(&self, contact: &str, device: PeerDevice) -> [u8; 32] {
        match device {
            PeerDevice::Contact(id) if id == DeviceId::PRIMARY => self.contact_lookup(contact),
            PeerDevice::Contact(id) => self.lookup(
                Domain::DeviceSession,
                &[contact.as_bytes(), &id.get().to_be_bytes()],
            ),
            PeerDevice::Own(id) => {
                self.lookup(Domain::OwnDeviceSession, &[&id.get().to_be_bytes()])
            }
        }
    }

    pub(crate) fn delete_sessions(&self, lookup: &[u8; 32]) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM sessions WHERE contact = ?1")?
            .execute(params![&lookup[..]])?
            > 0)
    }

    /// The contact's sessions (an empty set if there are none).
    pub(crate) fn sessions(&self, contact: &[u8; 32]) -> Result<SessionSet> {
        let row = Row::lookup(contact);
        let Some(sealed) = self.query_sealed(
            "SELECT sealed FROM sessions WHERE contact = ?1",
            contact,
            "sessions",
            row,
        )?
        else {
            return Ok(SessionSet::new());
        };
        let plain = self.open_value(Place::new("sessions", "sealed", contact), &sealed, row)?;
        let corrupt = || Error::Corrupt {
            table: "sessions",
            row,
        };
        SessionSet::from_bytes(unpadded(&plain).map_err(|_| corrupt())?).map_err(|_| corrupt())
    }

    pub(crate) fn put_sessions<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        contact: &[u8; 32],
        sessions: &SessionSet,
    ) -> Result<()> {
        let plain = padded(&sessions.to_bytes())?;
        let sealed =
            self.keys
                .value()
                .seal(rng, Place::new("sessions", "sealed", contact), &plain)?;
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO sessions (contact, sealed) VALUES (?1, ?2)")?
            .execute(params![&contact[..], sealed])?;
        Ok(())
    }

    // ---- conversations ----------------------------------------------------

    pub(crate) fn conversation_lookup(&self, contact: &str) -> [u8; 32] {
        self.lookup(Domain::Conversation, &[contact.as_bytes()])
    }

    pub(crate) fn conversation_by_lookup(&self, lookup: &[u8; 32]) -> Result<Option<Conversation>> {
        let row = Row::lookup(lookup);
        let found: Option<(i64, Vec<u8>, i64)> = self
            .conn
            .prepare_cached("SELECT next_seq, sealed, num FROM conversations WHERE lookup = ?1")?
            .query_row(params![&lookup[..]], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(|e| corrupt_or_db(e, "conversations", row))?;
        let Some((next_seq, sealed, num)) = found else {
            return Ok(None);
        };
        let corrupt = || Error::Corrupt {
            table: "conversations",
            row,
        };
        let num = layout::valid_num(num).ok_or_else(corrupt)?;
        let plain = self.open_value(Place::new("conversations", "sealed", lookup), &sealed, row)?;
        let (key, contact, deleted, timer) =
            decode_conversation(unpadded(&plain).map_err(|_| corrupt())?).map_err(|_| corrupt())?;
        if self.conversation_lookup(&contact) != *lookup {
            return Err(corrupt());
        }
        Ok(Some(Conversation {
            lookup: *lookup,
            num,
            contact,
            key: ConversationKey::from_bytes(key),
            next_seq: u64::try_from(next_seq).map_err(|_| corrupt())?,
            deleted,
            timer,
        }))
    }

    /// The conversation with `contact`, `None` if there is none. A row
    /// whose lookup key was damaged (a flipped bit in the file) is not
    /// found by its key, and would pass for no conversation at all: its
    /// messages hidden, and a new conversation begun over them. So when
    /// there is no row under the key, every row whose sealed record does
    /// not open where it is, is tried where this conversation's would be;
    /// one that opens there is this conversation, damaged:
    /// [`Error::Corrupt`]. That costs one AEAD open per conversation, only
    /// when the conversation is not there.
    pub(crate) fn conversation(&self, contact: &str) -> Result<Option<Conversation>> {
        let lookup = self.conversation_lookup(contact);
        if let Some(found) = self.conversation_by_lookup(&lookup)? {
            return Ok(Some(found));
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT lookup, sealed FROM conversations")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        for row in rows {
            let Ok((stored, sealed)) = row else {
                continue;
            };
            let value = self.keys.value();
            if value
                .open(Place::new("conversations", "sealed", &stored), &sealed)
                .is_some()
            {
                continue;
            }
            if value
                .open(Place::new("conversations", "sealed", &lookup), &sealed)
                .is_some()
            {
                return Err(Error::Corrupt {
                    table: "conversations",
                    row: Row::lookup(&lookup),
                });
            }
        }
        Ok(None)
    }

    pub(crate) fn conversation_or_create<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        contact: &str,
    ) -> Result<Conversation> {
        if let Some(c) = self.conversation(contact)? {
            return Ok(c);
        }
        self.create_conversation(rng, contact, 1, Vec::new())
    }

    /// A new conversation under a fresh key, whose next seq is `next_seq`
    /// and whose seqs in `deleted` (sorted, disjoint ranges) were deleted
    /// on purpose.
    pub(crate) fn create_conversation<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        contact: &str,
        next_seq: u64,
        deleted: Vec<(u64, u64)>,
    ) -> Result<Conversation> {
        let lookup = self.conversation_lookup(contact);
        let key = ConversationKey::generate(rng);
        let plain = padded(&encode_conversation(
            key.as_bytes(),
            contact,
            &deleted,
            None,
        ))?;
        let sealed =
            self.keys
                .value()
                .seal(rng, Place::new("conversations", "sealed", &lookup), &plain)?;
        let num = self.free_conversation_num(rng)?;
        self.conn.execute(
            "INSERT INTO conversations (lookup, next_seq, sealed, num) VALUES (?1, ?2, ?3, ?4)",
            params![&lookup[..], seq_to_sql(next_seq)?, sealed, num],
        )?;
        Ok(Conversation {
            lookup,
            num,
            contact: contact.to_owned(),
            key,
            next_seq,
            deleted,
            timer: None,
        })
    }

    /// A conversation number no conversation has, drawn at random (so
    /// the numbers do not tell in which order conversations began).
    pub(crate) fn free_conversation_num<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> Result<u32> {
        free_conversation_num(self.conn, rng)
    }

    /// The number of the conversation `lookup` in the `messages` row ids;
    /// `None` without such a conversation.
    pub(crate) fn conversation_num(&self, lookup: &[u8; 32]) -> Result<Option<u32>> {
        let num: Option<i64> = self
            .conn
            .prepare_cached("SELECT num FROM conversations WHERE lookup = ?1")?
            .query_row(params![&lookup[..]], |r| r.get(0))
            .optional()
            .map_err(|e| corrupt_or_db(e, "conversations", Row::lookup(lookup)))?;
        num.map(|n| {
            layout::valid_num(n).ok_or(Error::Corrupt {
                table: "conversations",
                row: Row::lookup(lookup),
            })
        })
        .transpose()
    }

    /// The lookup key of every conversation, in no particular order.
    pub(crate) fn conversation_lookups(&self) -> Result<Vec<[u8; 32]>> {
        let mut stmt = self.conn.prepare("SELECT lookup FROM conversations")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = Vec::new();
        for row in rows {
            let lookup =
                row.map_err(|e| corrupt_or_db(e, "conversations", Row::Named("lookup")))?;
            out.push(lookup_from_sql(lookup, "conversations")?);
        }
        Ok(out)
    }

    /// Seals the conversation record again (after its deleted seqs or its
    /// timer changed).
    pub(crate) fn put_conversation_record<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        conversation: &Conversation,
    ) -> Result<()> {
        let lookup = conversation.lookup;
        let plain = padded(&encode_conversation(
            conversation.key.as_bytes(),
            &conversation.contact,
            &conversation.deleted,
            conversation.timer.as_ref(),
        ))?;
        let sealed =
            self.keys
                .value()
                .seal(rng, Place::new("conversations", "sealed", &lookup), &plain)?;
        self.conn
            .prepare_cached("UPDATE conversations SET sealed = ?1 WHERE lookup = ?2")?
            .execute(params![sealed, &lookup[..]])?;
        Ok(())
    }

    pub(crate) fn save_next_seq(&self, conversation: &Conversation) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE conversations SET next_seq = ?1 WHERE lookup = ?2")?
            .execute(params![
                seq_to_sql(conversation.next_seq)?,
                &conversation.lookup[..]
            ])?;
        Ok(())
    }

    /// Deletes the conversation row (and with it its key), its messages and
    /// its outbox entries.
    pub(crate) fn delete_conversation(&self, lookup: &[u8; 32]) -> Result<bool> {
        if let Some(num) = self.conversation_num(lookup)? {
            let (start, end) = layout::conversation_span(num);
            self.conn
                .prepare_cached("DELETE FROM messages WHERE id >= ?1 AND id < ?2")?
                .execute(params![start, end])?;
        }
        self.conn.execute(
            "DELETE FROM outbox WHERE conversation = ?1",
            params![&lookup[..]],
        )?;
        self.conn.execute(
            "DELETE FROM expiring WHERE conversation = ?1",
            params![&lookup[..]],
        )?;
        self.conn.execute(
            "DELETE FROM downloads WHERE conversation = ?1",
            params![&lookup[..]],
        )?;
        Ok(self.conn.execute(
            "DELETE FROM conversations WHERE lookup = ?1",
            params![&lookup[..]],
        )? > 0)
    }

    // ---- messages ---------------------------------------------------------

    /// Seals and inserts a message record at `seq`.
    pub(crate) fn insert_message<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        conversation: &Conversation,
        seq: u64,
        record: &[u8],
    ) -> Result<()> {
        let sealed = conversation.seal_message(rng, seq, record)?;
        self.insert_message_rows(conversation.num, seq, &sealed)
    }

    /// Writes a sealed message value as its rows ([`crate::layout`]).
    /// A message already at `seq` is a constraint error, as it always was.
    fn insert_message_rows(&self, num: u32, seq: u64, sealed: &[u8]) -> Result<()> {
        let (start, _) = layout::writable_span(num, seq)?;
        let mut stmt = self
            .conn
            .prepare_cached("INSERT INTO messages (id, sealed) VALUES (?1, ?2)")?;
        for (part, bytes) in layout::parts(sealed)? {
            stmt.execute(params![start + part, bytes])?;
        }
        Ok(())
    }

    /// Replaces the record of an existing message (nothing without one).
    pub(crate) fn update_message<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        conversation: &Conversation,
        seq: u64,
        record: &[u8],
    ) -> Result<()> {
        let sealed = conversation.seal_message(rng, seq, record)?;
        let (start, end) = layout::writable_span(conversation.num, seq)?;
        let mut update = self
            .conn
            .prepare_cached("UPDATE messages SET sealed = ?2 WHERE id = ?1")?;
        let mut last = start;
        for (part, bytes) in layout::parts(&sealed)? {
            // Parts of the same length (a new state, the usual update)
            // are rewritten in place.
            if update.execute(params![start + part, bytes])? == 0 {
                if part == 0 {
                    return Ok(());
                }
                self.conn
                    .prepare_cached("INSERT INTO messages (id, sealed) VALUES (?1, ?2)")?
                    .execute(params![start + part, bytes])?;
            }
            last = start + part;
        }
        self.conn
            .prepare_cached("DELETE FROM messages WHERE id > ?1 AND id < ?2")?
            .execute(params![last, end])?;
        Ok(())
    }

    /// Opens a sealed message record.
    pub(crate) fn open_message_record(
        &self,
        conversation: &Conversation,
        seq: u64,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        conversation
            .open_message_record(seq, sealed)
            .ok_or(Error::Corrupt {
                table: "messages",
                row: Row::Seq(seq),
            })
    }

    pub(crate) fn open_message(
        &self,
        conversation: &Conversation,
        seq: u64,
        sealed: &[u8],
    ) -> Result<Message> {
        let record = self.open_message_record(conversation, seq, sealed)?;
        decode_message(seq, &record).map_err(|_| Error::Corrupt {
            table: "messages",
            row: Row::Seq(seq),
        })
    }

    /// Message `seq`'s sealed value, its parts put together; `None`
    /// without such a message.
    pub(crate) fn message_sealed(
        &self,
        conversation: &Conversation,
        seq: u64,
    ) -> Result<Option<Vec<u8>>> {
        let Some((start, end)) = layout::message_span(conversation.num, seq) else {
            return Ok(None);
        };
        let rows = self.assembled_rows(start, end, false, usize::MAX)?;
        match rows.into_iter().next() {
            None => Ok(None),
            Some((_, sealed)) => sealed.map(Some),
        }
    }

    /// Up to `limit` messages with `seq < before`, newest first, still
    /// sealed (a message whose rows do not fit together is `Corrupt`).
    pub(crate) fn message_rows(
        &self,
        conversation: &[u8; 32],
        before: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Result<Vec<u8>>)>> {
        let Some(num) = self.conversation_num(conversation)? else {
            return Ok(Vec::new());
        };
        let (start, end) = layout::messages_before(num, before);
        self.assembled_rows(start, end, true, limit)
    }

    /// The messages whose rows have ids in `start..end`, put together, in
    /// id order or its reverse; at most `limit`.
    fn assembled_rows(
        &self,
        start: i64,
        end: i64,
        descending: bool,
        limit: usize,
    ) -> Result<Vec<layout::Assembled>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let mut stmt = self.conn.prepare_cached(if descending {
            "SELECT id, sealed FROM messages WHERE id >= ?1 AND id < ?2 ORDER BY id DESC"
        } else {
            "SELECT id, sealed FROM messages WHERE id >= ?1 AND id < ?2 ORDER BY id"
        })?;
        let mut rows = stmt.query(params![start, end])?;
        let mut assembler = layout::Assembler::new(descending);
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let value = row.get_ref(1)?;
            if let Some(done) = assembler.push(id, value.as_blob().ok()) {
                out.push(done);
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
        out.extend(assembler.finish());
        Ok(out)
    }

    /// Every message of `conversation`, oldest first, each put together
    /// from its rows (or `Corrupt`), handed to `f` one at a time: memory
    /// stays bounded by one message.
    pub(crate) fn for_each_message(
        &self,
        conversation: &Conversation,
        mut f: impl FnMut(u64, Result<Vec<u8>>) -> Result<()>,
    ) -> Result<()> {
        let (start, end) = layout::conversation_span(conversation.num);
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, sealed FROM messages WHERE id >= ?1 AND id < ?2 ORDER BY id",
        )?;
        let mut rows = stmt.query(params![start, end])?;
        let mut assembler = layout::Assembler::new(false);
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            if let Some((seq, sealed)) = assembler.push(id, row.get_ref(1)?.as_blob().ok()) {
                f(seq, sealed)?;
            }
        }
        if let Some((seq, sealed)) = assembler.finish() {
            f(seq, sealed)?;
        }
        Ok(())
    }

    pub(crate) fn count_messages(&self, conversation: &[u8; 32]) -> Result<u64> {
        let Some(num) = self.conversation_num(conversation)? else {
            return Ok(0);
        };
        let (start, end) = layout::conversation_span(num);
        // Part 0 of every message: ids that are multiples of 2^16.
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM messages WHERE id >= ?1 AND id < ?2 AND (id & 65535) = 0",
            )?
            .query_row(params![start, end], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(crate) fn delete_message(&self, conversation: &[u8; 32], seq: u64) -> Result<bool> {
        let sql_seq = seq_to_sql(seq)?;
        self.conn.execute(
            "DELETE FROM outbox WHERE conversation = ?1 AND seq = ?2",
            params![&conversation[..], sql_seq],
        )?;
        self.delete_expiry(conversation, seq)?;
        self.delete_download(conversation, seq)?;
        let Some(num) = self.conversation_num(conversation)? else {
            return Ok(false);
        };
        let Some((start, end)) = layout::message_span(num, seq) else {
            return Ok(false);
        };
        Ok(self
            .conn
            .prepare_cached("DELETE FROM messages WHERE id >= ?1 AND id < ?2")?
            .execute(params![start, end])?
            > 0)
    }

    // ---- disappearing messages -------------------------------------------

    /// Records that message `seq` of `conversation` disappears at
    /// `deadline` (ms since the Unix epoch), unless it already has a
    /// deadline; returns whether it was recorded.
    pub(crate) fn schedule_expiry<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        conversation: &[u8; 32],
        seq: u64,
        deadline: u64,
    ) -> Result<bool> {
        let sql_seq = seq_to_sql(seq)?;
        let exists: bool = self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM expiring WHERE conversation = ?1 AND seq = ?2)",
            )?
            .query_row(params![&conversation[..], sql_seq], |r| r.get(0))?;
        if exists {
            return Ok(false);
        }
        let row = message_row(conversation, seq);
        let sealed = self.keys.value().seal(
            rng,
            Place::new("expiring", "sealed", &row),
            &deadline.to_be_bytes(),
        )?;
        self.conn
            .prepare_cached("INSERT INTO expiring (conversation, seq, sealed) VALUES (?1, ?2, ?3)")?
            .execute(params![&conversation[..], sql_seq, sealed])?;
        Ok(true)
    }

    /// Every message with a deadline: its conversation's lookup, its seq
    /// and its deadline, or why the row cannot be read.
    #[allow(clippy::type_complexity)]
    pub(crate) fn expiry_rows(&self) -> Result<Vec<([u8; 32], u64, Result<u64>)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT conversation, seq, sealed FROM expiring")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (lookup, seq, sealed) =
                row.map_err(|e| corrupt_or_db(e, "expiring", Row::Named("row")))?;
            let lookup = lookup_from_sql(lookup, "expiring")?;
            let Ok(seq) = u64::try_from(seq) else {
                return Err(Error::Corrupt {
                    table: "expiring",
                    row: Row::lookup(&lookup),
                });
            };
            let row = message_row(&lookup, seq);
            let deadline = self
                .open_value(
                    Place::new("expiring", "sealed", &row),
                    &sealed,
                    Row::Seq(seq),
                )
                .and_then(|plain| {
                    <[u8; 8]>::try_from(plain.as_slice())
                        .map(u64::from_be_bytes)
                        .map_err(|_| Error::Corrupt {
                            table: "expiring",
                            row: Row::Seq(seq),
                        })
                });
            out.push((lookup, seq, deadline));
        }
        Ok(out)
    }

    /// Forgets the deadline of message `seq` of `conversation`.
    pub(crate) fn delete_expiry(&self, conversation: &[u8; 32], seq: u64) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM expiring WHERE conversation = ?1 AND seq = ?2")?
            .execute(params![&conversation[..], seq_to_sql(seq)?])?
            > 0)
    }

    // ---- attachments ------------------------------------------------------

    /// Records that message `seq` of `conversation` has an attachment to
    /// download.
    pub(crate) fn add_download(&self, conversation: &[u8; 32], seq: u64) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO downloads (conversation, seq) VALUES (?1, ?2)")?
            .execute(params![&conversation[..], seq_to_sql(seq)?])?;
        Ok(())
    }

    pub(crate) fn delete_download(&self, conversation: &[u8; 32], seq: u64) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM downloads WHERE conversation = ?1 AND seq = ?2")?
            .execute(params![&conversation[..], seq_to_sql(seq)?])?
            > 0)
    }

    /// Every message with an attachment to download: its conversation's
    /// lookup and its seq, in order.
    pub(crate) fn downloads(&self) -> Result<Vec<([u8; 32], u64)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT conversation, seq FROM downloads ORDER BY conversation, seq")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (lookup, seq) =
                row.map_err(|e| corrupt_or_db(e, "downloads", Row::Named("row")))?;
            let lookup = lookup_from_sql(lookup, "downloads")?;
            let seq = u64::try_from(seq).map_err(|_| Error::Corrupt {
                table: "downloads",
                row: Row::lookup(&lookup),
            })?;
            out.push((lookup, seq));
        }
        Ok(out)
    }

    pub(crate) fn put_upload<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        id: &[u8; 16],
        record: &[u8],
    ) -> Result<()> {
        let sealed = self
            .keys
            .value()
            .seal(rng, Place::new("uploads", "sealed", id), record)?;
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO uploads (id, sealed) VALUES (?1, ?2)")?
            .execute(params![&id[..], sealed])?;
        Ok(())
    }

    pub(crate) fn delete_upload(&self, id: &[u8; 16]) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM uploads WHERE id = ?1")?
            .execute(params![&id[..]])?
            > 0)
    }

    /// Every upload: its id and its record, or why it cannot be read.
    #[allow(clippy::type_complexity)]
    pub(crate) fn uploads(&self) -> Result<Vec<([u8; 16], Result<Zeroizing<Vec<u8>>>)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, sealed FROM uploads ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, sealed) = row.map_err(|e| corrupt_or_db(e, "uploads", Row::Named("row")))?;
            let id: [u8; 16] = id.try_into().map_err(|_| Error::Corrupt {
                table: "uploads",
                row: Row::Named("id"),
            })?;
            let record = self.open_value(
                Place::new("uploads", "sealed", &id),
                &sealed,
                Row::Named("upload"),
            );
            out.push((id, record));
        }
        Ok(out)
    }

    // ---- seen envelopes ---------------------------------------------------

    pub(crate) fn seen_lookup(&self, sender: &str, id: &EnvelopeId) -> [u8; 32] {
        self.lookup(Domain::SeenEnvelope, &[sender.as_bytes(), id.as_bytes()])
    }

    /// The seen-envelope row of envelope `id` from `device`, in the
    /// conversation with `contact`: envelope ids are the sending device's,
    /// so a contact's are kept per contact (as they always were), and our
    /// own devices' per device.
    pub(crate) fn seen_lookup_from(
        &self,
        contact: &str,
        device: PeerDevice,
        id: &EnvelopeId,
    ) -> [u8; 32] {
        match device {
            PeerDevice::Contact(_) => self.seen_lookup(contact, id),
            PeerDevice::Own(d) => self.lookup(
                Domain::SeenOwnEnvelope,
                &[&d.get().to_be_bytes(), id.as_bytes()],
            ),
        }
    }

    // ---- outbox -----------------------------------------------------------

    pub(crate) fn outbox_lookup(&self, id: &EnvelopeId) -> [u8; 32] {
        self.lookup(Domain::Outbox, &[id.as_bytes()])
    }

    /// A new entry the relay has not accepted yet (`record.accepted` is 0).
    pub(crate) fn insert_outbox<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        conversation: &Conversation,
        record: &OutboxRecord,
    ) -> Result<()> {
        let seq = record.seq;
        let lookup = self.outbox_lookup(&record.id);
        let record = records::encode_outbox(record);
        let sealed = conversation.key.sealing().seal(
            rng,
            Place::new("outbox", "sealed", &lookup),
            &record,
        )?;
        self.conn
            .prepare_cached(
                "INSERT INTO outbox (lookup, conversation, seq, sealed, accepted)
                 VALUES (?1, ?2, ?3, ?4, 0)",
            )?
            .execute(params![
                &lookup[..],
                &conversation.lookup[..],
                seq_to_sql(seq)?,
                sealed
            ])?;
        Ok(())
    }

    /// Rewrites an entry after the relay accepted it (again).
    pub(crate) fn update_outbox<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        conversation: &Conversation,
        row: &OutboxRow,
        record: &OutboxRecord,
    ) -> Result<()> {
        let sealed = conversation.key.sealing().seal(
            rng,
            Place::new("outbox", "sealed", &row.lookup),
            &records::encode_outbox(record),
        )?;
        self.conn
            .prepare_cached("UPDATE outbox SET sealed = ?1, accepted = ?2 WHERE lookup = ?3")?
            .execute(params![sealed, record.accepted > 0, &row.lookup[..]])?;
        Ok(())
    }

    pub(crate) fn outbox_row(&self, id: &EnvelopeId) -> Result<Option<OutboxRow>> {
        let lookup = self.outbox_lookup(id);
        let row: Option<(Vec<u8>, i64, Vec<u8>)> = self
            .conn
            .prepare_cached("SELECT conversation, seq, sealed FROM outbox WHERE lookup = ?1")?
            .query_row(params![&lookup[..]], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(|e| corrupt_or_db(e, "outbox", Row::lookup(&lookup)))?;
        row.map(|(conversation, seq, sealed)| {
            Ok(OutboxRow {
                lookup,
                conversation: lookup_from_sql(conversation, "outbox")?,
                seq: seq_from_sql(seq, "outbox")?,
                sealed,
            })
        })
        .transpose()
    }

    /// The outbox rows the relay has accepted (`true`: awaiting a receipt)
    /// or not (`false`: to send), oldest first.
    pub(crate) fn outbox_rows(&self, accepted: bool) -> Result<Vec<Result<OutboxRow>>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT lookup, conversation, seq, sealed FROM outbox WHERE accepted = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([accepted], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Vec<u8>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            out.push(
                row.map_err(|e| corrupt_or_db(e, "outbox", Row::Named("row")))
                    .and_then(|(lookup, conversation, seq, sealed)| {
                        Ok(OutboxRow {
                            lookup: lookup_from_sql(lookup, "outbox")?,
                            conversation: lookup_from_sql(conversation, "outbox")?,
                            seq: seq_from_sql(seq, "outbox")?,
                            sealed,
                        })
                    }),
            );
        }
        Ok(out)
    }

    /// The outbox rows of message `seq` of a conversation (one per device
    /// it still waits for).
    pub(crate) fn outbox_rows_of_message(
        &self,
        conversation: &[u8; 32],
        seq: u64,
    ) -> Result<Vec<OutboxRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT lookup, sealed FROM outbox WHERE conversation = ?1 AND seq = ?2",
        )?;
        let rows = stmt.query_map(params![&conversation[..], seq_to_sql(seq)?], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (lookup, sealed) = row.map_err(|e| corrupt_or_db(e, "outbox", Row::Seq(seq)))?;
            out.push(OutboxRow {
                lookup: lookup_from_sql(lookup, "outbox")?,
                conversation: *conversation,
                seq,
                sealed,
            });
        }
        Ok(out)
    }

    /// Opens an outbox row with its conversation's key.
    pub(crate) fn open_outbox(
        &self,
        conversation: &Conversation,
        row: &OutboxRow,
    ) -> Result<OutboxRecord> {
        let corrupt = || Error::Corrupt {
            table: "outbox",
            row: Row::Seq(row.seq),
        };
        let plain = conversation
            .key
            .sealing()
            .open(Place::new("outbox", "sealed", &row.lookup), &row.sealed)
            .ok_or_else(corrupt)?;
        let record = records::decode_outbox(&plain).map_err(|_| corrupt())?;
        if record.seq != row.seq || self.outbox_lookup(&record.id) != row.lookup {
            return Err(corrupt());
        }
        Ok(record)
    }

    pub(crate) fn delete_outbox(&self, lookup: &[u8; 32]) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM outbox WHERE lookup = ?1")?
            .execute(params![&lookup[..]])?
            > 0)
    }
}

// ---- sealed meta rows and moving rows (history transfer) -------------------

impl Db<'_> {
    /// The sealed `meta` row `name`, opened (its place's row part is the
    /// name), if there is one.
    pub(crate) fn meta_value(&self, name: &'static str) -> Result<Option<Zeroizing<Vec<u8>>>> {
        self.meta_value_named(name, Row::Named(name))
    }

    /// [`meta_value`](Self::meta_value) for a row whose name is built at
    /// run time; errors name it `row`.
    pub(crate) fn meta_value_named(
        &self,
        name: &str,
        row: Row,
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE name = ?1")?
            .query_row(params![name], |r| r.get(0))
            .optional()
            .map_err(|e| corrupt_or_db(e, "meta", row))?;
        sealed
            .map(|sealed| {
                self.open_value(Place::new("meta", "value", name.as_bytes()), &sealed, row)
            })
            .transpose()
    }

    /// Seals `plaintext` into the `meta` row `name` (created or replaced).
    pub(crate) fn put_meta_value<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        name: &str,
        plaintext: &[u8],
    ) -> Result<()> {
        let sealed =
            self.keys
                .value()
                .seal(rng, Place::new("meta", "value", name.as_bytes()), plaintext)?;
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)")?
            .execute(params![name, sealed])?;
        Ok(())
    }

    /// Deletes the `meta` row `name`; returns whether it existed.
    pub(crate) fn delete_meta(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM meta WHERE name = ?1")?
            .execute(params![name])?
            > 0)
    }

    /// Inserts message rows of `conversation`, already sealed for their
    /// places ([`Conversation::seal_message`]), with one statement.
    pub(crate) fn insert_sealed_messages<'r>(
        &self,
        conversation: &Conversation,
        rows: impl IntoIterator<Item = (u64, &'r [u8])>,
    ) -> Result<()> {
        for (seq, sealed) in rows {
            self.insert_message_rows(conversation.num, seq, sealed)?;
        }
        Ok(())
    }

    /// Moves message `from` of `conversation` to seq `to` (which must be
    /// free). `record` is its plaintext, sealed again for the new place;
    /// without it (a row that does not open) the sealed value moves as it
    /// is, and stays unreadable there.
    pub(crate) fn move_message<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        conversation: &Conversation,
        from: u64,
        to: u64,
        record: Option<&[u8]>,
    ) -> Result<()> {
        let Some((start, end)) = layout::message_span(conversation.num, from) else {
            return Ok(());
        };
        let (to_start, _) = layout::writable_span(conversation.num, to)?;
        match record {
            Some(record) => {
                let sealed = conversation.seal_message(rng, to, record)?;
                self.conn
                    .prepare_cached("DELETE FROM messages WHERE id >= ?1 AND id < ?2")?
                    .execute(params![start, end])?;
                self.insert_message_rows(conversation.num, to, &sealed)?;
            }
            None => {
                // Its parts move together, each keeping its place.
                self.conn
                    .prepare_cached(
                        "UPDATE messages SET id = id - ?1 + ?3 WHERE id >= ?1 AND id < ?2",
                    )?
                    .execute(params![start, end, to_start])?;
            }
        }
        Ok(())
    }

    /// The outbox rows of one conversation, still sealed.
    pub(crate) fn outbox_rows_of(&self, conversation: &[u8; 32]) -> Result<Vec<OutboxRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT lookup, seq, sealed FROM outbox WHERE conversation = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![&conversation[..]], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (lookup, seq, sealed) =
                row.map_err(|e| corrupt_or_db(e, "outbox", Row::Named("row")))?;
            out.push(OutboxRow {
                lookup: lookup_from_sql(lookup, "outbox")?,
                conversation: *conversation,
                seq: seq_from_sql(seq, "outbox")?,
                sealed,
            });
        }
        Ok(out)
    }

    /// Points outbox entry `row` at message `to`: its seq column and, when
    /// its record opened, the seq inside the record (sealed again). An
    /// entry that does not open keeps its sealed value, and stays
    /// unreadable.
    pub(crate) fn move_outbox<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        conversation: &Conversation,
        row: &OutboxRow,
        to: u64,
        record: Option<&mut OutboxRecord>,
    ) -> Result<()> {
        let sealed = match record {
            Some(record) => {
                record.seq = to;
                conversation.key.sealing().seal(
                    rng,
                    Place::new("outbox", "sealed", &row.lookup),
                    &records::encode_outbox(record),
                )?
            }
            None => row.sealed.clone(),
        };
        self.conn
            .prepare_cached("UPDATE outbox SET seq = ?1, sealed = ?2 WHERE lookup = ?3")?
            .execute(params![seq_to_sql(to)?, sealed, &row.lookup[..]])?;
        Ok(())
    }
}

/// The responder's prekeys, read from the database inside the transaction
/// that decrypts. A storage error is kept and reported instead of the
/// protocol's "unknown prekey".
pub(crate) struct DbPreKeys<'a> {
    db: &'a Db<'a>,
    error: Cell<Option<Error>>,
}

impl<'a> DbPreKeys<'a> {
    pub(crate) fn new(db: &'a Db<'a>) -> Self {
        Self {
            db,
            error: Cell::new(None),
        }
    }

    /// The first storage error met while looking up prekeys.
    pub(crate) fn take_error(&self) -> Option<Error> {
        self.error.take()
    }

    fn keep<T>(&self, result: Result<Option<T>>) -> Option<T> {
        match result {
            Ok(found) => found,
            Err(e) => {
                let first = self.error.take().unwrap_or(e);
                self.error.set(Some(first));
                None
            }
        }
    }
}

impl PreKeySource for DbPreKeys<'_> {
    fn signed_prekey(&self, id: SignedPreKeyId) -> Option<SignedPreKey> {
        self.keep(self.db.signed_prekey(id))
    }

    fn one_time_prekey(&self, id: OneTimePreKeyId) -> Option<OneTimePreKey> {
        self.keep(self.db.one_time_prekey(id))
    }

    fn kem_prekey(&self, id: KemPreKeyId) -> Option<KemPreKey> {
        self.keep(self.db.kem_prekey(id))
    }
}

#[cfg(test)]
mod tests {
    use crate::layout::PART_LEN;
    use crate::options::{KdfParams, OpenOptions};
    use crate::store::Store;

    fn rows_of(store: &Store) -> i64 {
        store
            .conn
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_message_rewritten_longer_or_shorter_keeps_exactly_its_parts() {
        let dir = tempfile::tempdir().unwrap();
        let options = OpenOptions::new().kdf(KdfParams::new(64, 1, 1).unwrap());
        let mut store = Store::create(dir.path().join("s.db"), b"pw", &options).unwrap();
        let lengths = [10, 3 * PART_LEN + 7, PART_LEN, 5 * PART_LEN, 1];
        store
            .write(|db, rng| {
                let conversation = db.conversation_or_create(rng, "carol")?;
                db.insert_message(rng, &conversation, 1, b"neighbour before")?;
                db.insert_message(rng, &conversation, 3, b"neighbour after")?;
                db.insert_message(rng, &conversation, 2, &[0; 10])?;
                for len in lengths {
                    let record = vec![len as u8; len];
                    db.update_message(rng, &conversation, 2, &record)?;
                    let sealed = db.message_sealed(&conversation, 2)?.unwrap();
                    assert_eq!(
                        db.open_message_record(&conversation, 2, &sealed)?
                            .as_slice(),
                        record
                    );
                }
                // Updating a message that is not there writes nothing.
                db.update_message(rng, &conversation, 9, &[1; 2000])?;
                assert!(db.message_sealed(&conversation, 9)?.is_none());
                // Moving keeps the parts together, sealed again or as is.
                db.move_message(rng, &conversation, 2, 7, Some(&[4; 1500]))?;
                db.move_message(rng, &conversation, 7, 8, None)?;
                assert!(db.message_sealed(&conversation, 7)?.is_none());
                let sealed = db.message_sealed(&conversation, 8)?.unwrap();
                // Moved as is: sealed for seq 7, so it does not open at 8.
                assert!(db.open_message_record(&conversation, 8, &sealed).is_err());
                assert!(conversation.open_message_record(7, &sealed).is_some());
                for (seq, want) in [(1, &b"neighbour before"[..]), (3, b"neighbour after")] {
                    let sealed = db.message_sealed(&conversation, seq)?.unwrap();
                    assert_eq!(
                        db.open_message_record(&conversation, seq, &sealed)?
                            .as_slice(),
                        want
                    );
                }
                Ok(())
            })
            .unwrap();
        // Two one-part neighbours and the moved message's parts.
        let sealed_len: usize = 41 + 1500;
        assert_eq!(rows_of(&store), 2 + sealed_len.div_ceil(PART_LEN) as i64);
        assert!(store.delete_conversation("carol").unwrap());
        assert_eq!(rows_of(&store), 0);
    }
}
