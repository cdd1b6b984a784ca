//! Groups: their membership and sender keys, their history and the group
//! messages waiting for the relay (docs/storage.md, "Groups").
//!
//! The store keeps what sotto-core's group types serialize as opaque,
//! sealed values: the membership state, this device's own sender key
//! (its sending chain), and one receiving state per (group, sending
//! device). The caller runs the protocol and hands the store the new
//! states together with what they produced, and each such step is ONE
//! transaction:
//!
//! - [`send_group_message`](Store::send_group_message): our advanced
//!   sender key, the message in the group's history (`Pending`), and the
//!   encrypted message with its recipients in `group_outbox`;
//! - [`receive_group_message`](Store::receive_group_message): the sending
//!   device's advanced receiving state, the message in history, and its
//!   envelope id as seen (a second copy is a duplicate).
//!
//! A group's history is a conversation like a contact's, under the
//! conversation id `#group:` + the group id in hex (a contact id cannot
//! begin with `#`), paged with [`group_history`](Store::group_history);
//! its message records name their author (record version 3).

mod records;

use std::sync::Arc;

use rusqlite::params;
use sotto_core::group::{GROUP_ID_LEN, GroupId};
use sotto_core::{BodyKey, IdentityKey};
use zeroize::Zeroizing;

use crate::crypto::Domain;
use crate::db::{Conversation, Db, lookup_from_sql, seq_from_sql, seq_to_sql};
use crate::error::{Error, Result, Row};
use crate::records::{encode_group_message, set_message_state};
use crate::store::Store;
use crate::testing::FaultPoint;
use crate::types::{DeliveryState, Direction, EnvelopeId, HistoryPage, Message, Received};
use records::{
    GroupOutboxRecord, MAX_LISTED_DEVICES, decode_group, decode_group_outbox, encode_group,
    encode_group_outbox,
};

/// The id of group `id`'s conversation: `#group:` and the id in hex.
pub fn group_conversation_id(id: &GroupId) -> String {
    let mut out = String::with_capacity(GROUP_CONVERSATION_PREFIX.len() + 2 * GROUP_ID_LEN);
    out.push_str(GROUP_CONVERSATION_PREFIX);
    for byte in id.as_bytes() {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Most group envelopes set aside per group for want of their sender key.
pub const MAX_DEFERRED_PER_GROUP: u64 = 256;

/// The conversation that holds group `id`'s envelopes set aside.
fn deferred_conversation_id(id: &GroupId) -> String {
    let mut out = group_conversation_id(id);
    out.replace_range(..GROUP_CONVERSATION_PREFIX.len(), "#deferred:");
    out
}

/// The prefix of a group's conversation id.
pub const GROUP_CONVERSATION_PREFIX: &str = "#group:";

/// A group as stored: the protocol's states as sotto-core serializes them.
#[derive(Clone)]
pub struct StoredGroup {
    /// The group.
    pub id: GroupId,
    /// The membership state (sotto-core).
    pub state: Vec<u8>,
    /// This device's sender key for the group (sotto-core), once made.
    pub sender_key: Option<Zeroizing<Vec<u8>>>,
    /// The devices that hold our current sender key (its distribution
    /// reached their sessions); a new chain empties it.
    pub shared_with: Vec<IdentityKey>,
    /// We left the group, or were removed: nothing is sent to it.
    pub left: bool,
}

impl core::fmt::Debug for StoredGroup {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StoredGroup")
            .field("state_len", &self.state.len())
            .field("has_sender_key", &self.sender_key.is_some())
            .field("shared_with", &self.shared_with.len())
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

/// A device a group message goes to, and the account it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupRecipient {
    /// The device's key (its sealed envelopes are to this key).
    pub device: IdentityKey,
    /// The member account the device belongs to (ours for our own other
    /// devices).
    pub account: IdentityKey,
}

/// A group message to store and send
/// ([`send_group_message`](Store::send_group_message)).
pub struct GroupSend<'a> {
    /// The group.
    pub group: GroupId,
    /// Our sender key after encrypting the message.
    pub sender_key: &'a [u8],
    /// Our account (the message's author).
    pub author: &'a IdentityKey,
    /// The message's body, for our history.
    pub body: &'a [u8],
    /// When it was sent (ms since the Unix epoch).
    pub sent_at: u64,
    /// The key the encrypted message is sealed under for the relay.
    pub body_key: BodyKey,
    /// The encrypted message sealed under `body_key`: the same bytes for
    /// every recipient and every retry.
    pub blob: Arc<[u8]>,
    /// Every device it goes to.
    pub recipients: Vec<GroupRecipient>,
}

/// A group message waiting for the relay.
#[derive(Clone)]
pub struct GroupOutboxEntry {
    /// The envelope id it goes under (the same on every retry).
    pub id: EnvelopeId,
    /// The group.
    pub group: GroupId,
    /// Its seq in the group's history.
    pub seq: u64,
    /// The key of `blob`.
    pub body_key: Arc<BodyKey>,
    /// The encrypted message sealed under `body_key`.
    pub blob: Arc<[u8]>,
    /// The devices the relay has not taken it for yet.
    pub recipients: Vec<GroupRecipient>,
}

impl core::fmt::Debug for GroupOutboxEntry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GroupOutboxEntry")
            .field("id", &self.id)
            .field("seq", &self.seq)
            .field("blob_len", &self.blob.len())
            .field("recipients", &self.recipients.len())
            .finish_non_exhaustive()
    }
}

/// A group message received and decrypted, to store
/// ([`receive_group_message`](Store::receive_group_message)).
pub struct GroupReceive<'a> {
    /// The group.
    pub group: GroupId,
    /// The device that sent it (authenticated by the sealed layer).
    pub device: &'a IdentityKey,
    /// The member account that device belongs to.
    pub author: &'a IdentityKey,
    /// Its receiving state after decrypting the message.
    pub receiver_state: &'a [u8],
    /// The envelope id the sender gave it.
    pub envelope_id: EnvelopeId,
    /// The decrypted body.
    pub body: &'a [u8],
    /// When it arrived (ms since the Unix epoch).
    pub received_at: u64,
    /// True for a copy of a message our own account sent from another
    /// device: stored as outgoing, `Sent`.
    pub own: bool,
}

fn group_lookup(db: &Db<'_>, id: &GroupId) -> [u8; 32] {
    db.lookup(Domain::Group, &[id.as_bytes()])
}

fn receiver_lookup(db: &Db<'_>, id: &GroupId, device: &IdentityKey) -> [u8; 32] {
    db.lookup(Domain::GroupSenderKey, &[id.as_bytes(), device.as_bytes()])
}

fn corrupt(table: &'static str, lookup: &[u8; 32]) -> Error {
    Error::Corrupt {
        table,
        row: Row::lookup(lookup),
    }
}

fn load_group(db: &Db<'_>, id: &GroupId) -> Result<Option<StoredGroup>> {
    let lookup = group_lookup(db, id);
    let Some(plain) = db.sealed_row("groups", &lookup)? else {
        return Ok(None);
    };
    let group = decode_group(&plain).map_err(|_| corrupt("groups", &lookup))?;
    if group.id != *id {
        return Err(corrupt("groups", &lookup));
    }
    Ok(Some(group))
}

fn save_group<R: rand_core::CryptoRng + ?Sized>(
    db: &Db<'_>,
    rng: &mut R,
    group: &StoredGroup,
) -> Result<()> {
    if group.shared_with.len() > MAX_LISTED_DEVICES {
        return Err(Error::TooLong {
            what: "group's device list",
            len: group.shared_with.len(),
            max: MAX_LISTED_DEVICES,
        });
    }
    let lookup = group_lookup(db, &group.id);
    db.put_sealed_row(rng, "groups", &lookup, &encode_group(group), None)
}

fn group_conversation<R: rand_core::CryptoRng + ?Sized>(
    db: &Db<'_>,
    rng: &mut R,
    id: &GroupId,
) -> Result<Conversation> {
    db.conversation_or_create(rng, &group_conversation_id(id))
}

impl Store {
    /// Stores `group` (added, or replacing what was stored for its id),
    /// making its conversation if it has none yet.
    pub fn put_group(&mut self, group: &StoredGroup) -> Result<()> {
        self.write(|db, rng| {
            save_group(db, rng, group)?;
            group_conversation(db, rng, &group.id)?;
            Ok(())
        })
    }

    /// The group `id`, if stored.
    pub fn group(&self, id: &GroupId) -> Result<Option<StoredGroup>> {
        self.read(|db| load_group(db, id))
    }

    /// Every stored group, in no particular order; a row that cannot be
    /// read is reported in place.
    pub fn groups(&self) -> Result<Vec<Result<StoredGroup>>> {
        self.read(|db| {
            let mut stmt = db.conn().prepare("SELECT lookup FROM groups")?;
            let lookups = stmt
                .query_map([], |r| r.get::<_, Vec<u8>>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut out = Vec::with_capacity(lookups.len());
            for lookup in lookups {
                let lookup = lookup_from_sql(lookup, "groups")?;
                out.push(match db.sealed_row("groups", &lookup) {
                    Ok(Some(plain)) => decode_group(&plain).map_err(|_| corrupt("groups", &lookup)),
                    Ok(None) => continue,
                    Err(e) => Err(e),
                });
            }
            Ok(out)
        })
    }

    /// Deletes group `id`: its record, every sending device's receiving
    /// state, its history and what of it waits for the relay. Returns
    /// whether it was stored.
    pub fn delete_group(&mut self, id: &GroupId) -> Result<bool> {
        let deleted = self.write(|db, _| {
            let lookup = group_lookup(db, id);
            let conversation = db.conversation_lookup(&group_conversation_id(id));
            db.conn().execute(
                "DELETE FROM group_sender_keys WHERE grp = ?1",
                params![&lookup[..]],
            )?;
            db.conn().execute(
                "DELETE FROM group_outbox WHERE conversation = ?1",
                params![&conversation[..]],
            )?;
            db.delete_conversation(&conversation)?;
            Ok(db
                .conn()
                .execute("DELETE FROM groups WHERE lookup = ?1", params![&lookup[..]])?
                > 0)
        })?;
        if deleted {
            self.checkpoint()?;
        }
        Ok(deleted)
    }

    /// The receiving state of `device`'s sender key in group `id`.
    pub fn group_receiver(
        &self,
        id: &GroupId,
        device: &IdentityKey,
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        self.read(|db| db.sealed_row("group_sender_keys", &receiver_lookup(db, id, device)))
    }

    /// Stores the receiving state of `device`'s sender key in group `id`
    /// (from a distribution).
    pub fn put_group_receiver(
        &mut self,
        id: &GroupId,
        device: &IdentityKey,
        state: &[u8],
    ) -> Result<()> {
        self.write(|db, rng| {
            let lookup = receiver_lookup(db, id, device);
            let group = group_lookup(db, id);
            db.put_sealed_row(
                rng,
                "group_sender_keys",
                &lookup,
                state,
                Some(("grp", &group[..])),
            )
        })
    }

    /// Deletes the receiving state of `device`'s sender key in group
    /// `id` (the device left the group). Returns whether there was one.
    pub fn delete_group_receiver(&mut self, id: &GroupId, device: &IdentityKey) -> Result<bool> {
        self.write(|db, _| {
            let lookup = receiver_lookup(db, id, device);
            Ok(db.conn().execute(
                "DELETE FROM group_sender_keys WHERE lookup = ?1",
                params![&lookup[..]],
            )? > 0)
        })
    }

    /// Stores, in ONE transaction, our sender key advanced by encrypting a
    /// message, the message in the group's history (outgoing, `Pending`),
    /// and the encrypted message with its recipients in the group outbox.
    /// Hand the returned entry to the relay once this returns; after a
    /// crash it is in [`group_outbox`](Self::group_outbox), the same bytes
    /// under the same id. Refused ([`Error::NoSuchGroup`]) for a group
    /// not stored or left.
    pub fn send_group_message(&mut self, send: GroupSend<'_>) -> Result<GroupOutboxEntry> {
        crate::records::check_body(send.body)?;
        if send.recipients.len() > MAX_LISTED_DEVICES {
            return Err(Error::TooLong {
                what: "group message's recipients",
                len: send.recipients.len(),
                max: MAX_LISTED_DEVICES,
            });
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let db = Db::new(&tx, &self.keys);
        let rng = &mut self.rng;
        let mut group = match load_group(&db, &send.group)? {
            Some(group) if !group.left => group,
            _ => return Err(Error::NoSuchGroup),
        };
        group.sender_key = Some(Zeroizing::new(send.sender_key.to_vec()));
        save_group(&db, rng, &group)?;
        let mut conversation = group_conversation(&db, rng, &send.group)?;
        let seq = conversation.next_seq;
        conversation.next_seq += 1;
        let id = EnvelopeId::random(rng);
        let record = encode_group_message(
            Direction::Outgoing,
            DeliveryState::Pending,
            send.sent_at,
            &id,
            send.author,
            send.body,
        )?;
        db.insert_message(rng, &conversation, seq, &record)?;
        db.save_next_seq(&conversation)?;
        let outbox = GroupOutboxRecord {
            id,
            seq,
            body_key: send.body_key,
            recipients: send.recipients,
            blob: send.blob.to_vec(),
        };
        insert_group_outbox(&db, rng, &conversation, &outbox)?;
        self.faults.check(FaultPoint::SendBeforeCommit)?;
        tx.commit()?;
        self.faults.check(FaultPoint::SendAfterCommit)?;
        Ok(GroupOutboxEntry {
            id,
            group: send.group,
            seq,
            body_key: Arc::new(outbox.body_key),
            blob: send.blob,
            recipients: outbox.recipients,
        })
    }

    /// Every group message the relay has not taken for all its
    /// recipients, oldest first; a row that cannot be read is reported in
    /// place.
    pub fn group_outbox(&self) -> Result<Vec<Result<GroupOutboxEntry>>> {
        self.read(|db| {
            let mut stmt = db
                .conn()
                .prepare("SELECT conversation, seq, sealed FROM group_outbox ORDER BY id")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut out = Vec::with_capacity(rows.len());
            for (conversation, seq, sealed) in rows {
                let conversation = lookup_from_sql(conversation, "group_outbox")?;
                let seq = seq_from_sql(seq, "group_outbox")?;
                out.push(open_group_outbox(db, &conversation, seq, &sealed));
            }
            Ok(out)
        })
    }

    /// The relay took group message `id` for `devices`: they leave its
    /// recipients; once none is left the entry goes and the message is
    /// `Sent`. Returns whether the entry is done (or was not there).
    pub fn group_message_taken(
        &mut self,
        id: &EnvelopeId,
        devices: &[IdentityKey],
    ) -> Result<bool> {
        self.update_group_outbox(id, devices, DeliveryState::Sent)
    }

    /// The relay refused group message `id` for `devices` for good (they
    /// do not exist, or they refuse us): they leave its recipients as if
    /// taken. The message is `Sent` once no recipient is left, if any
    /// recipient took it; else it becomes `Failed(reason)`. Returns
    /// whether the entry is done.
    pub fn group_message_refused(
        &mut self,
        id: &EnvelopeId,
        devices: &[IdentityKey],
        reason: crate::types::SendFailure,
    ) -> Result<bool> {
        self.update_group_outbox(id, devices, DeliveryState::Failed(reason))
    }

    fn update_group_outbox(
        &mut self,
        id: &EnvelopeId,
        devices: &[IdentityKey],
        outcome: DeliveryState,
    ) -> Result<bool> {
        self.write(|db, rng| {
            let lookup = db.lookup(Domain::GroupOutbox, &[id.as_bytes()]);
            let row: Option<(Vec<u8>, i64, Vec<u8>, i64)> = {
                use rusqlite::OptionalExtension;
                db.conn()
                    .prepare_cached(
                        "SELECT conversation, seq, sealed, taken FROM group_outbox WHERE lookup = ?1",
                    )?
                    .query_row(params![&lookup[..]], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .optional()?
            };
            let Some((conversation, seq, sealed, taken)) = row else {
                return Ok(true);
            };
            let conversation = lookup_from_sql(conversation, "group_outbox")?;
            let seq = seq_from_sql(seq, "group_outbox")?;
            let entry = open_group_outbox(db, &conversation, seq, &sealed)?;
            let taken = taken != 0 || outcome == DeliveryState::Sent;
            let left: Vec<GroupRecipient> = entry
                .recipients
                .iter()
                .filter(|r| !devices.contains(&r.device))
                .copied()
                .collect();
            let Some(conversation) = db.conversation_by_lookup(&conversation)? else {
                return Err(corrupt("group_outbox", &lookup));
            };
            if !left.is_empty() {
                let record = GroupOutboxRecord {
                    id: entry.id,
                    seq,
                    body_key: BodyKey::from_bytes(entry.body_key.as_bytes()),
                    recipients: left,
                    blob: entry.blob.to_vec(),
                };
                write_group_outbox(db, rng, &conversation, &record, taken)?;
                return Ok(false);
            }
            db.conn().execute(
                "DELETE FROM group_outbox WHERE lookup = ?1",
                params![&lookup[..]],
            )?;
            let state = if taken { DeliveryState::Sent } else { outcome };
            if let Some(sealed) = db.message_sealed(&conversation, seq)? {
                let mut record = db.open_message_record(&conversation, seq, &sealed)?;
                if record.get(2) == Some(&DeliveryState::Pending.to_byte()) {
                    set_message_state(&mut record, state).map_err(|_| Error::Corrupt {
                        table: "messages",
                        row: Row::Seq(seq),
                    })?;
                    db.update_message(rng, &conversation, seq, &record)?;
                }
            }
            Ok(true)
        })
    }

    /// Stores, in ONE transaction, a decrypted group message: the sending
    /// device's advanced receiving state, the message in the group's
    /// history (with its author), and its envelope id as seen.
    /// [`Received::Duplicate`] (nothing changed) for an envelope id seen
    /// before from that device in that group; [`Error::NoSuchGroup`] for a
    /// group not stored. Acknowledge the envelope to the relay only after
    /// this returns `Ok`.
    pub fn receive_group_message(&mut self, received: GroupReceive<'_>) -> Result<Received> {
        crate::records::check_body(received.body)?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let db = Db::new(&tx, &self.keys);
        let rng = &mut self.rng;
        if load_group(&db, &received.group)?.is_none() {
            return Err(Error::NoSuchGroup);
        }
        let seen = db.lookup(
            Domain::SeenGroupEnvelope,
            &[
                received.group.as_bytes(),
                received.device.as_bytes(),
                received.envelope_id.as_bytes(),
            ],
        );
        // The client decrypted it already: look in the archive of older
        // ids too (seen.rs), not only in the recent set.
        if db.was_ever_seen(&seen)? {
            return Ok(Received::Duplicate);
        }
        let receiver = receiver_lookup(&db, &received.group, received.device);
        let group = group_lookup(&db, &received.group);
        db.put_sealed_row(
            rng,
            "group_sender_keys",
            &receiver,
            received.receiver_state,
            Some(("grp", &group[..])),
        )?;
        self.faults.check(FaultPoint::ReceiveAfterDecrypt)?;
        let mut conversation = group_conversation(&db, rng, &received.group)?;
        let seq = conversation.next_seq;
        conversation.next_seq += 1;
        let (direction, state) = if received.own {
            (Direction::Outgoing, DeliveryState::Sent)
        } else {
            (Direction::Incoming, DeliveryState::Received)
        };
        let record = encode_group_message(
            direction,
            state,
            received.received_at,
            &received.envelope_id,
            received.author,
            received.body,
        )?;
        db.insert_message(rng, &conversation, seq, &record)?;
        db.save_next_seq(&conversation)?;
        db.mark_seen(&seen, self.seen.generation(&db)?)?;
        self.seen.recorded(&db, 1)?;
        tx.commit()?;
        Ok(Received::Stored(Message {
            seq,
            direction,
            state,
            timestamp: received.received_at,
            envelope_id: received.envelope_id,
            author: Some(*received.author),
            event: None,
            body: Zeroizing::new(received.body.to_vec()),
        }))
    }

    /// Sets aside a group message's envelope (as the relay carried it)
    /// that cannot be read yet: its sender key has not come. At most
    /// [`MAX_DEFERRED_PER_GROUP`] wait per group; the oldest goes to make
    /// room. Sealed like every message; read back with
    /// [`deferred_group_envelopes`](Self::deferred_group_envelopes).
    pub fn defer_group_envelope(&mut self, id: &GroupId, envelope: &[u8], now: u64) -> Result<()> {
        crate::records::check_body(envelope)?;
        self.write(|db, rng| {
            let mut conversation = db.conversation_or_create(rng, &deferred_conversation_id(id))?;
            if db.count_messages(&conversation.lookup)? >= MAX_DEFERRED_PER_GROUP
                && let Some((oldest, _)) = db
                    .message_rows(&conversation.lookup, u64::MAX, usize::MAX)?
                    .last()
            {
                db.delete_message(&conversation.lookup, *oldest)?;
            }
            let seq = conversation.next_seq;
            conversation.next_seq += 1;
            let record = crate::records::encode_message(
                Direction::Incoming,
                DeliveryState::Received,
                now,
                &EnvelopeId::random(rng),
                None,
                envelope,
            )?;
            db.insert_message(rng, &conversation, seq, &record)?;
            db.save_next_seq(&conversation)
        })
    }

    /// The envelopes set aside for group `id`, oldest first, each with the
    /// number to delete it by.
    pub fn deferred_group_envelopes(&self, id: &GroupId) -> Result<Vec<(u64, Zeroizing<Vec<u8>>)>> {
        self.read(|db| {
            let Some(conversation) = db.conversation(&deferred_conversation_id(id))? else {
                return Ok(Vec::new());
            };
            let rows = db.message_rows(&conversation.lookup, u64::MAX, usize::MAX)?;
            let mut out: Vec<_> = rows
                .into_iter()
                .filter_map(|(seq, sealed)| {
                    let message = db.open_message(&conversation, seq, &sealed.ok()?).ok()?;
                    Some((seq, message.body))
                })
                .collect();
            out.reverse();
            Ok(out)
        })
    }

    /// Deletes envelope `seq` set aside for group `id` (read at last, or
    /// refused). Returns whether it was there.
    pub fn delete_deferred_group_envelope(&mut self, id: &GroupId, seq: u64) -> Result<bool> {
        self.write(|db, _| {
            let lookup = db.conversation_lookup(&deferred_conversation_id(id));
            db.delete_message(&lookup, seq)
        })
    }

    /// A page of group `id`'s history, as [`history`](Self::history) pages
    /// a contact's; each message names its author.
    pub fn group_history(
        &self,
        id: &GroupId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<HistoryPage> {
        self.history(&group_conversation_id(id), before, limit)
    }
}

fn insert_group_outbox<R: rand_core::CryptoRng + ?Sized>(
    db: &Db<'_>,
    rng: &mut R,
    conversation: &Conversation,
    record: &GroupOutboxRecord,
) -> Result<()> {
    write_group_outbox(db, rng, conversation, record, false)
}

/// Writes (inserts or replaces, keeping its place in the order) a group
/// outbox row, sealed for its place: `(conversation, seq)`.
fn write_group_outbox<R: rand_core::CryptoRng + ?Sized>(
    db: &Db<'_>,
    rng: &mut R,
    conversation: &Conversation,
    record: &GroupOutboxRecord,
    taken: bool,
) -> Result<()> {
    let lookup = db.lookup(Domain::GroupOutbox, &[record.id.as_bytes()]);
    let place = crate::db::message_row(&conversation.lookup, record.seq);
    let sealed = conversation.key.sealing().seal(
        rng,
        crate::crypto::Place::new("group_outbox", "sealed", &place),
        &encode_group_outbox(record),
    )?;
    db.conn()
        .prepare_cached(
            "INSERT INTO group_outbox (lookup, conversation, seq, sealed, taken)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (lookup) DO UPDATE SET sealed = excluded.sealed, taken = excluded.taken",
        )?
        .execute(params![
            &lookup[..],
            &conversation.lookup[..],
            seq_to_sql(record.seq)?,
            sealed,
            i64::from(taken),
        ])?;
    Ok(())
}

fn open_group_outbox(
    db: &Db<'_>,
    conversation: &[u8; 32],
    seq: u64,
    sealed: &[u8],
) -> Result<GroupOutboxEntry> {
    let bad = || Error::Corrupt {
        table: "group_outbox",
        row: Row::Seq(seq),
    };
    let conversation = db.conversation_by_lookup(conversation)?.ok_or_else(bad)?;
    let group = conversation
        .contact
        .strip_prefix(GROUP_CONVERSATION_PREFIX)
        .and_then(parse_hex_id)
        .ok_or_else(bad)?;
    let place = crate::db::message_row(&conversation.lookup, seq);
    let plain = conversation
        .key
        .sealing()
        .open(
            crate::crypto::Place::new("group_outbox", "sealed", &place),
            sealed,
        )
        .ok_or_else(bad)?;
    let record = decode_group_outbox(&plain).map_err(|_| bad())?;
    if record.seq != seq {
        return Err(bad());
    }
    Ok(GroupOutboxEntry {
        id: record.id,
        group,
        seq,
        body_key: Arc::new(record.body_key),
        blob: record.blob.into(),
        recipients: record.recipients,
    })
}

fn parse_hex_id(hex: &str) -> Option<GroupId> {
    let bytes = hex.as_bytes();
    if bytes.len() != 2 * GROUP_ID_LEN {
        return None;
    }
    let mut id = [0u8; GROUP_ID_LEN];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let digit = |c: u8| HEX.iter().position(|h| *h == c);
        id[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(GroupId::from_bytes(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_conversation_id_reads_back_as_its_group() {
        let id = GroupId::from_bytes([0xa5; 32]);
        let conversation = group_conversation_id(&id);
        assert!(conversation.starts_with(GROUP_CONVERSATION_PREFIX));
        let parsed = conversation
            .strip_prefix(GROUP_CONVERSATION_PREFIX)
            .and_then(parse_hex_id);
        assert_eq!(parsed, Some(id));
        assert_eq!(parse_hex_id("zz"), None);
        assert_eq!(parse_hex_id(&"g".repeat(64)), None);
    }
}
