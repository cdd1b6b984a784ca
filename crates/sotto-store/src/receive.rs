//! Receiving: decrypt, store and deduplicate in one transaction.
//!
//! For each envelope, inside the caller's `BEGIN IMMEDIATE` transaction:
//! skip it if its (sender, envelope id) was seen; load the sender's
//! contact and sessions from the database; refuse a PreKeyMessage from an
//! identity other than the pinned one, and one whose X3DH run (signed
//! prekey, base key) already started a session; decrypt (one-time and signed
//! prekeys are read from the same transaction); delete the consumed
//! one-time prekey; store the message; record the envelope id; save the
//! sessions and contact. A batch loads each sender's state once and saves
//! it once, before the one commit.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use rand::rngs::StdRng;
use sotto_core::{BodyReference, IdentityKeyPair, SessionSet};
use zeroize::Zeroizing;

use crate::controls::control_conversation_id;
use crate::db::{Conversation, Db, DbPreKeys};
use crate::error::{Error, Result};
use crate::records::{self, ContactRecord, check_new_contact_id};
use crate::store::Store;
use crate::testing::{FaultPoint, Faults};
use crate::types::{DeliveryState, Direction, Envelope, Message, PeerDevice, Received};

/// Most envelopes one batch takes.
pub const MAX_BATCH: usize = 100_000;

/// One contact's state while a batch runs (never kept past the
/// transaction): the contact record and the conversation, shared by every
/// device that writes into it.
struct ContactState {
    contact: Option<ContactRecord>,
    contact_dirty: bool,
    conversation: Option<Conversation>,
    conversation_dirty: bool,
}

/// One device's sessions while a batch runs.
struct DeviceSessions {
    sessions: SessionSet,
    dirty: bool,
}

/// Everything a batch has loaded so far.
#[derive(Default)]
struct Batch {
    identity: Option<IdentityKeyPair>,
    contacts: HashMap<String, ContactState>,
    /// By `sessions` row lookup.
    sessions: HashMap<[u8; 32], DeviceSessions>,
    /// A one-time prekey was deleted: checkpoint after the commit.
    consumed_one_time_prekey: bool,
    /// The recent seen-envelope generation ids are recorded under.
    seen_generation: i64,
    /// Envelope ids recorded in this transaction.
    seen_recorded: u64,
}

/// Splits an error: `Err` for one that aborts the whole transaction,
/// `Ok` for one that only fails this envelope.
fn envelope_error(e: Error) -> Result<Error> {
    if e.is_fatal() { Err(e) } else { Ok(e) }
}

impl Batch {
    /// The local identity, `contact`'s state and the sessions of `lookup`,
    /// loaded from the database the first time the batch needs them.
    fn prepare(
        &mut self,
        db: &Db<'_>,
        contact: &str,
        lookup: [u8; 32],
    ) -> Result<(&IdentityKeyPair, &mut ContactState, &mut DeviceSessions)> {
        let identity = match self.identity.take() {
            Some(identity) => identity,
            None => db.identity()?,
        };
        let identity = self.identity.insert(identity);
        let state = match self.contacts.entry(contact.to_owned()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(ContactState {
                contact: db.contact(contact)?,
                contact_dirty: false,
                conversation: None,
                conversation_dirty: false,
            }),
        };
        let sessions = match self.sessions.entry(lookup) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(DeviceSessions {
                sessions: db.sessions(&lookup)?,
                dirty: false,
            }),
        };
        Ok((identity, state, sessions))
    }

    /// Writes back every changed state.
    fn flush(&self, db: &Db<'_>, rng: &mut StdRng) -> Result<()> {
        for state in self.contacts.values() {
            if state.contact_dirty
                && let Some(contact) = &state.contact
            {
                db.put_contact(rng, contact)?;
            }
            if state.conversation_dirty
                && let Some(conversation) = &state.conversation
            {
                db.save_next_seq(conversation)?;
            }
        }
        for (lookup, device) in &self.sessions {
            if device.dirty {
                db.put_sessions(rng, lookup, &device.sessions)?;
            }
        }
        Ok(())
    }
}

/// The sender's identity key in a PreKeyMessage, read from its fixed
/// position (PROTOCOL.md "Wire format": `0x01 || 0x01 || IK_A(32) || ...`)
/// without decoding the point; sotto-core validates the whole message when
/// it decrypts. `None` for anything that is not a PreKeyMessage.
fn prekey_sender_identity(ciphertext: &[u8]) -> Option<&[u8; 32]> {
    match ciphertext {
        [version, kind, rest @ ..]
            if *version == sotto_core::wire::VERSION
                && *kind == sotto_core::wire::TYPE_PREKEY_MESSAGE =>
        {
            rest.get(..32)?.try_into().ok()
        }
        _ => None,
    }
}

/// Receives one envelope into `batch`. The outer `Err` aborts the
/// transaction; the inner result is this envelope's outcome, and an inner
/// error leaves both the database and `batch` as they were.
///
/// Its envelope id is looked up in the recent set first; only an envelope
/// that would be refused is looked up in the archive of older ids, and
/// is a duplicate if it is there (`seen.rs` says why that is enough).
fn receive_one(
    db: &Db<'_>,
    rng: &mut StdRng,
    faults: &mut Faults,
    batch: &mut Batch,
    envelope: &Envelope<'_>,
    detached: Option<&[u8]>,
    control: bool,
) -> Result<Result<Received>> {
    if let Err(e) = check_new_contact_id(envelope.sender) {
        return Ok(Err(e));
    }
    let seen = db.seen_lookup_from(envelope.sender, envelope.device, &envelope.id);
    if db.is_seen(&seen)? {
        return Ok(Ok(Received::Duplicate));
    }
    match receive_unseen(db, rng, faults, batch, envelope, detached, control, &seen)? {
        Err(_) if db.is_archived(&seen)? => Ok(Ok(Received::Duplicate)),
        outcome => Ok(outcome),
    }
}

/// [`receive_one`] for an envelope whose id is not in the recent set.
#[allow(clippy::too_many_arguments)]
fn receive_unseen(
    db: &Db<'_>,
    rng: &mut StdRng,
    faults: &mut Faults,
    batch: &mut Batch,
    envelope: &Envelope<'_>,
    detached: Option<&[u8]>,
    control: bool,
    seen: &[u8; 32],
) -> Result<Result<Received>> {
    // The key the device's sessions must be with: a contact's primary
    // device is the contact's pinned identity (pinned by its first
    // message when there is none yet); any other device must be vouched
    // for by a device list held here.
    let primary = envelope.device == PeerDevice::CONTACT_PRIMARY;
    let vouched = if primary {
        None
    } else {
        match crate::devices::peer_key(db, envelope.sender, envelope.device) {
            Ok(Some(key)) => Some(key),
            Ok(None) => return Ok(Err(Error::UnknownDevice)),
            Err(e) => return envelope_error(e).map(Err),
        }
    };
    let lookup = db.session_lookup(envelope.sender, envelope.device);
    let (identity, state, device) = match batch.prepare(db, envelope.sender, lookup) {
        Ok(prepared) => prepared,
        Err(e) => return envelope_error(e).map(Err),
    };
    let pinned = match vouched {
        Some(key) => Some(key),
        None => state.contact.as_ref().and_then(|c| c.identity_key),
    };

    // A new session may only come from the pinned identity. Existing
    // sessions were created under the pin, so this covers every way a
    // message can reach a session of another identity.
    if let Some(sender) = prekey_sender_identity(envelope.ciphertext)
        && let Some(pinned) = pinned
        && pinned.as_bytes() != sender
    {
        return Ok(Err(Error::IdentityMismatch));
    }

    // A first message whose X3DH run started a session before, and whose
    // session has since left the set, would otherwise run X3DH again.
    let new_run = device.sessions.would_start_session(envelope.ciphertext);
    if let Some((signed_prekey, base_key)) = &new_run {
        match db.base_key_used(*signed_prekey, base_key) {
            Ok(true) => return Ok(Err(Error::ReplayedFirstMessage)),
            Ok(false) => {}
            Err(e) => return envelope_error(e).map(Err),
        }
    }

    let prekeys = DbPreKeys::new(db);
    // With a detached body the sessions advance only once the body opened
    // too: a blob altered, swapped or forged under the same key (by the
    // relay, or with another recipient's help) costs that envelope alone.
    let mut trial = detached.map(|_| device.sessions.clone());
    let sessions = trial.as_mut().unwrap_or(&mut device.sessions);
    let mut decrypted = match sessions.decrypt(identity, &prekeys, envelope.ciphertext, rng) {
        Ok(d) => d,
        Err(e) => {
            // The set is unchanged on error (sotto-core guarantees it).
            return match prekeys.take_error() {
                Some(storage) => envelope_error(storage).map(Err),
                None => Ok(Err(Error::Protocol(e))),
            };
        }
    };
    let body = match detached {
        None => Zeroizing::new(std::mem::take(&mut decrypted.plaintext)),
        Some(blob) => {
            let reference = Zeroizing::new(std::mem::take(&mut decrypted.plaintext));
            match BodyReference::from_bytes(&reference).and_then(|r| r.open(blob)) {
                Ok(body) => body,
                Err(e) => return Ok(Err(Error::Protocol(e))),
            }
        }
    };
    if let Some(trial) = trial {
        device.sessions = trial;
    }
    faults.check(FaultPoint::ReceiveAfterDecrypt)?;

    // From here on the in-memory sessions have advanced: any failure must
    // abort the transaction (outer error), never leave a half-applied state.
    device.dirty = true;
    if decrypted.new_session {
        let remote = device
            .sessions
            .remote_identity()
            .copied()
            .ok_or(Error::IdentityMismatch)?;
        if !primary {
            if Some(remote) != pinned {
                return Err(Error::IdentityMismatch);
            }
        } else {
            match &mut state.contact {
                Some(contact) => match contact.identity_key {
                    Some(pinned) if pinned != remote => return Err(Error::IdentityMismatch),
                    Some(_) => {}
                    None => {
                        contact.identity_key = Some(remote);
                        state.contact_dirty = true;
                    }
                },
                None => {
                    state.contact = Some(ContactRecord {
                        recovery: Default::default(),
                        id: envelope.sender.to_owned(),
                        name: String::new(),
                        identity_key: Some(remote),
                        verified: false,
                        newest_sent_at: 0,
                        access_key: None,
                        claims_to_succeed: None,
                        min_version: 1,
                    });
                    state.contact_dirty = true;
                }
            }
        }
    }
    // A control message goes to the contact's control conversation, which
    // the batch does not keep (it is not the contact's conversation).
    let mut control_conversation = if control {
        Some(db.conversation_or_create(rng, &control_conversation_id(envelope.sender))?)
    } else {
        None
    };
    let conversation = match control_conversation.as_mut() {
        Some(conversation) => conversation,
        None => {
            let conversation = match state.conversation.take() {
                Some(conversation) => conversation,
                None => db.conversation_or_create(rng, envelope.sender)?,
            };
            state.conversation.insert(conversation)
        }
    };
    let seq = conversation.next_seq;
    // A copy from one of our own devices is a message we sent from there.
    let (direction, delivery, timestamp) = match envelope.device {
        PeerDevice::Own(_) => (
            Direction::Outgoing,
            DeliveryState::Sent,
            if envelope.sent_at > 0 {
                envelope.sent_at
            } else {
                envelope.received_at
            },
        ),
        PeerDevice::Contact(_) => {
            if let Some(contact) = &mut state.contact
                && envelope.sent_at > contact.newest_sent_at
            {
                contact.newest_sent_at = envelope.sent_at;
                state.contact_dirty = true;
            }
            (
                Direction::Incoming,
                DeliveryState::Received,
                envelope.received_at,
            )
        }
    };
    // A control is kept with the key of the device that sent it: what it
    // says (a sender key) may be about that very device.
    let body = match control {
        false => body,
        true => {
            let device_key = device
                .sessions
                .remote_identity()
                .copied()
                .ok_or(Error::IdentityMismatch)?;
            let mut prefixed = Zeroizing::new(Vec::with_capacity(32 + body.len()));
            prefixed.extend_from_slice(device_key.as_bytes());
            prefixed.extend_from_slice(&body);
            prefixed
        }
    };
    let record =
        records::encode_message(direction, delivery, timestamp, &envelope.id, None, &body)?;
    db.insert_message(rng, conversation, seq, &record)?;
    // A copy of a message we sent from another device: sent already, so
    // a disappearing message's countdown starts now.
    if direction == Direction::Outgoing && !control {
        crate::disappearing::start_countdown(db, rng, conversation, seq, envelope.received_at)?;
    }
    // A file to fetch: the client downloads it, even after a crash.
    if !control && sotto_core::attachment::is_reference(&body) {
        db.add_download(&conversation.lookup, seq)?;
    }
    conversation.next_seq += 1;
    match &control_conversation {
        Some(conversation) => db.save_next_seq(conversation)?,
        None => state.conversation_dirty = true,
    }
    db.mark_seen(seen, batch.seen_generation)?;
    batch.seen_recorded += 1;
    if decrypted.new_session
        && let Some((signed_prekey, base_key)) = &new_run
    {
        db.record_base_key(*signed_prekey, base_key)?;
    }
    if let Some(id) = decrypted.used_one_time_prekey {
        db.delete_one_time_prekey(id)?;
        batch.consumed_one_time_prekey = true;
    }
    // A one-time KEM prekey goes with its first message; the last-resort
    // one stays until it is replaced.
    if let Some(id) = decrypted.used_kem_prekey
        && db.kem_prekey_is_last_resort(id)? == Some(false)
    {
        db.delete_kem_prekey(id)?;
    }
    Ok(Ok(Received::Stored(Message {
        seq,
        direction,
        state: delivery,
        timestamp,
        envelope_id: envelope.id,
        author: None,
        event: None,
        body,
    })))
}

impl Store {
    /// Receives one envelope in ONE transaction: load the sender's
    /// sessions, decrypt, save the advanced sessions, delete a consumed
    /// one-time prekey, store the message, record the envelope id.
    ///
    /// Acknowledge the envelope to the relay only after this returns `Ok`
    /// ([`Received::Stored`] or [`Received::Duplicate`]). On error nothing
    /// was changed: a tampered or undecryptable envelope is a typed error
    /// (usually [`Error::Protocol`]) and the session is as it was.
    ///
    /// A PreKeyMessage from a sender with no contact creates the contact
    /// (empty name) and pins the identity key it carries.
    pub fn receive(&mut self, envelope: &Envelope<'_>) -> Result<Received> {
        self.receive_with_body(envelope, None)
    }

    /// [`receive`](Self::receive) for a message whose body is detached
    /// (sotto-core `body`): `detached_body` is the blob that travelled next
    /// to the envelope, and the ciphertext holds its key and digest. The
    /// message is stored only if the blob is the one the sender named (its
    /// length and digest) and opens under that key; otherwise it is a
    /// typed error and nothing changed, the sessions included.
    pub fn receive_with_body(
        &mut self,
        envelope: &Envelope<'_>,
        detached_body: Option<&[u8]>,
    ) -> Result<Received> {
        self.receive_single(envelope, detached_body, false)
    }

    /// One envelope in its own transaction (see
    /// [`receive_with_body`](Self::receive_with_body) and
    /// [`receive_control`](Self::receive_control)).
    fn receive_single(
        &mut self,
        envelope: &Envelope<'_>,
        detached_body: Option<&[u8]>,
        control: bool,
    ) -> Result<Received> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let db = Db::new(&tx, &self.keys);
        let mut batch = Batch {
            seen_generation: self.seen.generation(&db)?,
            ..Batch::default()
        };
        let received = receive_one(
            &db,
            &mut self.rng,
            &mut self.faults,
            &mut batch,
            envelope,
            detached_body,
            control,
        )??;
        batch.flush(&db, &mut self.rng)?;
        self.seen.recorded(&db, batch.seen_recorded)?;
        self.faults.check(FaultPoint::ReceiveBeforeCommit)?;
        tx.commit()?;
        self.faults.check(FaultPoint::ReceiveAfterCommit)?;
        if batch.consumed_one_time_prekey {
            // A one-time prekey may have been deleted: do not leave it in the WAL.
            self.checkpoint()?;
        }
        Ok(received)
    }

    /// [`receive`](Self::receive) for a control message (payload kind
    /// 0x0C: a group's sender key or membership change, carried through
    /// the pairwise session): the same checks, session and transaction,
    /// but the plaintext goes to the contact's control conversation
    /// ([`control_conversation_id`]), not to the chat with the contact.
    /// It is kept (and returned) with the key of the device whose session
    /// decrypted it in front: `device key(32) || control`. The caller acts
    /// on it ([`controls`](Self::controls)) and then
    /// deletes it ([`delete_control`](Self::delete_control)); a control
    /// acted on must therefore be safe to act on twice (a crash between
    /// the two).
    pub fn receive_control(&mut self, envelope: &Envelope<'_>) -> Result<Received> {
        self.receive_single(envelope, None, true)
    }

    /// Receives many envelopes in ONE transaction (one durable commit),
    /// each with the semantics of [`receive`](Self::receive). Envelopes
    /// fail independently: the inner results say, per envelope, stored,
    /// duplicate or why it was refused (a refused envelope changed
    /// nothing). The outer error means nothing was committed (database
    /// failure): retry or receive one by one.
    ///
    /// Each sender's sessions are loaded once and saved once per batch.
    pub fn receive_batch(&mut self, envelopes: &[Envelope<'_>]) -> Result<Vec<Result<Received>>> {
        if envelopes.len() > MAX_BATCH {
            return Err(Error::TooLong {
                what: "envelope batch",
                len: envelopes.len(),
                max: MAX_BATCH,
            });
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let db = Db::new(&tx, &self.keys);
        let mut batch = Batch {
            seen_generation: self.seen.generation(&db)?,
            ..Batch::default()
        };
        let mut results = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            results.push(receive_one(
                &db,
                &mut self.rng,
                &mut self.faults,
                &mut batch,
                envelope,
                None,
                false,
            )?);
        }
        batch.flush(&db, &mut self.rng)?;
        self.seen.recorded(&db, batch.seen_recorded)?;
        self.faults.check(FaultPoint::ReceiveBeforeCommit)?;
        tx.commit()?;
        self.faults.check(FaultPoint::ReceiveAfterCommit)?;
        if batch.consumed_one_time_prekey {
            self.checkpoint()?;
        }
        Ok(results)
    }
}
