//! What is inside each sealed value (the plaintext formats).
//!
//! Every record starts with a version byte `0x01`. Variable-size records
//! are padded with `sotto_core::pad` before sealing, so their sizes reveal
//! as little as protocol ciphertexts do.
//!
//! ```text
//! identity      0x01 || Ed25519 seed(32)
//! prekey_ids    0x01 || u32be(next signed prekey id) || u32be(next one-time prekey id)
//! contact       pad(0x01 || flags(bit0 verified, bit1 has key, bit2 recovery,
//!                   bit3 newest sent_at) || [identity key(32)]
//!                   || u16be(len) || contact id || u16be(len) || name
//!                   || [u64be(boundary) || u16be(n) || n * u64be(resent seq)]
//!                   || [u64be(newest sent_at)] || [u8(resets in a row), flag bit 4]
//!                   || [access key(16), flag bit 5]
//!                   || [u16be(len) || id of the contact it claims to succeed, flag bit 6])
//! conversation  pad(0x01 || conversation key(32) || u16be(len) || contact id
//!                   || [u32be(n) || n × (u64be(first) || u64be(last))
//!                       || [0x54 || u32be(timer seconds) || u64be(set_at ms)
//!                           || setter account key(32)]])
//!               the optional tail lists the seqs deleted on purpose, as ranges
//!               (n = 0 only before a timer), then the disappearing
//!               messages timer, if one was ever set
//! session       pad(SessionSet::to_bytes())
//! message       0x01 || direction(0 in | 1 out) || state(1) || u64be(timestamp ms)
//!                   || envelope id(16) || pad(body)
//!               or, for an outgoing message with the digest of its ciphertext:
//!               0x02 || direction || state || u64be(timestamp ms) || envelope id(16)
//!                   || ciphertext digest(32) || pad(body)
//!               or, for a group message, with the account that wrote it:
//!               0x03 || direction || state || u64be(timestamp ms) || envelope id(16)
//!                   || author account key(32) || pad(body)
//!               or, for an event of the conversation (a timer change):
//!               0x05 || direction || state || u64be(timestamp ms) || envelope id(16)
//!                   || zeros(32) || pad(0x01 || u32be(timer seconds))
//! outbox        0x02 || u64be(seq) || envelope id(16) || u64be(accepted_at ms, 0 = not yet)
//!                   || u32be(times accepted) || ciphertext
//!               (version 0x01, without the two counters, is still read)
//! signed prekey SignedPreKey::to_bytes()      one-time prekey OneTimePreKey::to_bytes()
//! one-time prekey state
//!               0x01 || u32be(id) || flags(bit0 publication time known, bit1 retired)
//!                   || u64be(published_at ms) || u64be(retired_at ms)   (0 when not known / not retired)
//! ```

use sotto_core::pad::{MAX_PLAINTEXT_LEN, pad_into, unpad};
use sotto_core::{AccessKey, BodyKey, DeviceId, IdentityKey, OneTimePreKeyId};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::types::{
    CiphertextDigest, ConversationEvent, DeliveryState, Direction, DisappearingTimer, EnvelopeId,
    Message, OneTimePreKeyInfo, PeerDevice,
};

const RECORD_VERSION: u8 = 0x01;
/// Version of a message record that carries a ciphertext digest.
const MESSAGE_WITH_DIGEST: u8 = 0x02;
/// Version of a message record that names its author (a group message).
const MESSAGE_WITH_AUTHOR: u8 = 0x03;
/// Version of a message record without a digest whose head keeps 32 zero
/// bytes in its place, so that every new message record's head is the same
/// length: a record's sealed length must not tell whether it has a digest
/// (a message sent from this device) or not (received, or a "sent" copy
/// from another device).
const MESSAGE_WITHOUT_DIGEST: u8 = 0x04;
/// Version of a record in a conversation's history that is an event of
/// the conversation (its disappearing messages timer changed), not a
/// message: the head of a 0x04 record (zeros in the digest's place), and
/// the event as body: `0x01 || u32be(seconds, 0 = off)`.
const MESSAGE_EVENT: u8 = 0x05;
/// The event kind of a timer change.
const EVENT_TIMER: u8 = 0x01;

/// Longest contact id accepted, in bytes.
pub const MAX_CONTACT_ID_LEN: usize = 1024;
/// Longest contact name accepted, in bytes.
pub const MAX_CONTACT_NAME_LEN: usize = 4096;

/// A malformed record; the caller names table and row.
#[derive(Debug)]
pub(crate) struct Malformed;

pub(crate) type Decoded<T> = core::result::Result<T, Malformed>;

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub(crate) fn take(&mut self, n: usize) -> Decoded<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(Malformed);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Decoded<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Decoded<[u8; N]> {
        self.take(N)?.try_into().map_err(|_| Malformed)
    }

    pub(crate) fn u16(&mut self) -> Decoded<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Decoded<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Decoded<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn string(&mut self) -> Decoded<String> {
        let len = usize::from(self.u16()?);
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| Malformed)
    }

    pub(crate) fn version(&mut self) -> Decoded<()> {
        if self.u8()? == RECORD_VERSION {
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    pub(crate) fn rest(self) -> &'a [u8] {
        self.bytes
    }

    pub(crate) fn finish(self) -> Decoded<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(Malformed)
        }
    }
}

/// Pads `record` into a buffer that is wiped on drop.
pub(crate) fn padded(record: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::new());
    pad_into(record, &mut out)?;
    Ok(out)
}

/// The record inside a padded plaintext.
pub(crate) fn unpadded(plaintext: &[u8]) -> Decoded<&[u8]> {
    unpad(plaintext).map_err(|_| Malformed)
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    // Lengths are checked against the limits above before encoding.
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn check_contact_id(id: &str) -> Result<()> {
    if id.len() > MAX_CONTACT_ID_LEN {
        return Err(Error::TooLong {
            what: "contact id",
            len: id.len(),
            max: MAX_CONTACT_ID_LEN,
        });
    }
    Ok(())
}

/// [`check_contact_id`] for a contact being added (or a sender being
/// received from): an id that begins with `#` is refused, since
/// conversations under such ids are a group's (`#group:`).
pub(crate) fn check_new_contact_id(id: &str) -> Result<()> {
    check_contact_id(id)?;
    if id.starts_with('#') {
        return Err(Error::ReservedContactId);
    }
    Ok(())
}

pub(crate) fn check_contact_name(name: &str) -> Result<()> {
    if name.len() > MAX_CONTACT_NAME_LEN {
        return Err(Error::TooLong {
            what: "contact name",
            len: name.len(),
            max: MAX_CONTACT_NAME_LEN,
        });
    }
    Ok(())
}

pub(crate) fn check_body(body: &[u8]) -> Result<()> {
    if body.len() > MAX_PLAINTEXT_LEN {
        return Err(Error::TooLong {
            what: "message body",
            len: body.len(),
            max: MAX_PLAINTEXT_LEN,
        });
    }
    Ok(())
}

// ---- identity -------------------------------------------------------------

pub(crate) fn encode_identity(seed: &[u8; 32]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(33));
    out.push(RECORD_VERSION);
    out.extend_from_slice(seed);
    out
}

pub(crate) fn decode_identity(bytes: &[u8]) -> Decoded<Zeroizing<[u8; 32]>> {
    let mut r = Reader::new(bytes);
    r.version()?;
    let seed = Zeroizing::new(r.array::<32>()?);
    r.finish()?;
    Ok(seed)
}

// ---- prekey id counters ---------------------------------------------------

/// The next unused prekey ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PreKeyIds {
    pub(crate) next_signed: u32,
    pub(crate) next_one_time: u32,
    /// The next ML-KEM prekey id (schema 7; 1 in a record written before).
    pub(crate) next_kem: u32,
    /// One-time KEM prekeys retired from the relay's stock: every one
    /// below `below` was replaced there at `at` (ms), and is deleted once
    /// the grace period has passed (`Store::prune_kem_prekeys`).
    pub(crate) kem_retired: Option<KemRetired>,
}

/// See [`PreKeyIds::kem_retired`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KemRetired {
    pub(crate) below: u32,
    pub(crate) at: u64,
}

/// `version || u32be(next signed) || u32be(next one-time) || u32be(next
/// KEM) [|| u32be(retired below) || u64be(retired at)]`; a record of 9
/// bytes (before schema 7) has no KEM counter, one of 13 no retirement.
pub(crate) fn encode_prekey_ids(ids: &PreKeyIds) -> Vec<u8> {
    let mut out = Vec::with_capacity(25);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&ids.next_signed.to_be_bytes());
    out.extend_from_slice(&ids.next_one_time.to_be_bytes());
    out.extend_from_slice(&ids.next_kem.to_be_bytes());
    if let Some(retired) = ids.kem_retired {
        out.extend_from_slice(&retired.below.to_be_bytes());
        out.extend_from_slice(&retired.at.to_be_bytes());
    }
    out
}

pub(crate) fn decode_prekey_ids(bytes: &[u8]) -> Decoded<PreKeyIds> {
    let mut r = Reader::new(bytes);
    r.version()?;
    let next_signed = r.u32()?;
    let next_one_time = r.u32()?;
    let next_kem = if bytes.len() > 9 { r.u32()? } else { 1 };
    let kem_retired = if bytes.len() > 13 {
        Some(KemRetired {
            below: r.u32()?,
            at: r.u64()?,
        })
    } else {
        None
    };
    r.finish()?;
    Ok(PreKeyIds {
        next_signed,
        next_one_time,
        next_kem,
        kem_retired,
    })
}

// ---- one-time prekey states -------------------------------------------------

const STATE_PUBLISHED_AT_KNOWN: u8 = 0b01;
const STATE_RETIRED: u8 = 0b10;
/// Length of an encoded one-time prekey state.
pub(crate) const ONE_TIME_PREKEY_STATE_LEN: usize = 22;

/// Where a one-time prekey is in its life (see `prekeys.rs`): published
/// (when, if known) and, once the relay's stock no longer holds it,
/// retired (when).
pub(crate) fn encode_one_time_prekey_state(state: &OneTimePreKeyInfo) -> Vec<u8> {
    let mut flags = 0;
    if state.published_at.is_some() {
        flags |= STATE_PUBLISHED_AT_KNOWN;
    }
    if state.retired_at.is_some() {
        flags |= STATE_RETIRED;
    }
    let mut out = Vec::with_capacity(ONE_TIME_PREKEY_STATE_LEN);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&state.id.get().to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&state.published_at.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&state.retired_at.unwrap_or(0).to_be_bytes());
    out
}

pub(crate) fn decode_one_time_prekey_state(bytes: &[u8]) -> Decoded<OneTimePreKeyInfo> {
    let mut r = Reader::new(bytes);
    r.version()?;
    let id = OneTimePreKeyId::new(r.u32()?);
    let flags = r.u8()?;
    if flags & !(STATE_PUBLISHED_AT_KNOWN | STATE_RETIRED) != 0 {
        return Err(Malformed);
    }
    let published_at = r.u64()?;
    let retired_at = r.u64()?;
    r.finish()?;
    let known = |bit: u8, value: u64| -> Decoded<Option<u64>> {
        match (flags & bit != 0, value) {
            (true, v) => Ok(Some(v)),
            (false, 0) => Ok(None),
            (false, _) => Err(Malformed),
        }
    };
    Ok(OneTimePreKeyInfo {
        id,
        published_at: known(STATE_PUBLISHED_AT_KNOWN, published_at)?,
        retired_at: known(STATE_RETIRED, retired_at)?,
    })
}

// ---- contacts -------------------------------------------------------------

pub(crate) struct ContactRecord {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) identity_key: Option<IdentityKey>,
    pub(crate) verified: bool,
    /// Session recovery bookkeeping (see `recovery.rs`).
    pub(crate) recovery: RecoveryState,
    /// See [`NewestSentAt`].
    pub(crate) newest_sent_at: NewestSentAt,
    /// The contact's unidentified-access key, learnt from its messages:
    /// with it, the relay queues what we send it without limit.
    pub(crate) access_key: Option<AccessKey>,
    /// The id of another contact whose new identity this contact claims to
    /// be (an identity change not yet accepted or refused by the user).
    pub(crate) claims_to_succeed: Option<String>,
    /// The lowest protocol version a new session with the contact's
    /// primary device may run (1 or 2): 2 once the contact's address said
    /// it speaks version 2, so that a relay cannot strip its KEM prekey.
    pub(crate) min_version: u8,
}

/// Most resent seqs remembered per contact since the last reset.
pub(crate) const MAX_RESENT_REMEMBERED: usize = 1024;

/// What session recovery remembers about a contact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RecoveryState {
    /// Outgoing messages with `seq <= boundary` were sent before the last
    /// session reset.
    pub(crate) boundary: u64,
    /// Seqs already resent since that reset (each is resent at most once).
    pub(crate) resent: Vec<u64>,
    /// Resets since the contact last confirmed a delivery (a receipt): a
    /// session that keeps failing is reset again, at most
    /// `MAX_RESETS_IN_ROW` times.
    pub(crate) resets_in_row: u8,
}

/// The newest `sent_at` (the contact's clock) of a message decrypted from
/// a contact: a message that fails to decrypt and is older than this is a
/// late one whose keys are gone, not a sign of a broken session.
pub(crate) type NewestSentAt = u64;

/// Version of a contact record that keeps the identity key's X25519 form
/// after it (version 1 records hold the Ed25519 key alone).
const CONTACT_RECORD_VERSION: u8 = 0x02;

pub(crate) fn encode_contact(c: &ContactRecord) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(104 + c.id.len() + c.name.len()));
    out.push(CONTACT_RECORD_VERSION);
    let has_recovery = c.recovery.boundary != 0 || !c.recovery.resent.is_empty();
    out.push(
        u8::from(c.verified)
            | (u8::from(c.identity_key.is_some()) << 1)
            | (u8::from(has_recovery) << 2)
            | (u8::from(c.newest_sent_at != 0) << 3)
            | (u8::from(c.recovery.resets_in_row != 0) << 4)
            | (u8::from(c.access_key.is_some()) << 5)
            | (u8::from(c.claims_to_succeed.is_some()) << 6)
            | (u8::from(c.min_version >= 2) << 7),
    );
    if let Some(key) = &c.identity_key {
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(key.dh_public());
    }
    push_str(&mut out, &c.id);
    push_str(&mut out, &c.name);
    if has_recovery {
        out.extend_from_slice(&c.recovery.boundary.to_be_bytes());
        let resent = &c.recovery.resent[..c.recovery.resent.len().min(MAX_RESENT_REMEMBERED)];
        out.extend_from_slice(&(resent.len() as u16).to_be_bytes());
        for seq in resent {
            out.extend_from_slice(&seq.to_be_bytes());
        }
    }
    if c.newest_sent_at != 0 {
        out.extend_from_slice(&c.newest_sent_at.to_be_bytes());
    }
    if c.recovery.resets_in_row != 0 {
        out.push(c.recovery.resets_in_row);
    }
    if let Some(key) = &c.access_key {
        out.extend_from_slice(key.as_bytes());
    }
    if let Some(previous) = &c.claims_to_succeed {
        push_str(&mut out, previous);
    }
    out
}

/// Decodes a contact record the store sealed. The identity key of a
/// version 2 record is restored as it was validated when written (no curve
/// arithmetic: the sealed row is the store's own); a version 1 record's is
/// validated. For records from elsewhere, use [`decode_contact_untrusted`].
pub(crate) fn decode_contact(bytes: &[u8]) -> Decoded<ContactRecord> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != RECORD_VERSION && version != CONTACT_RECORD_VERSION {
        return Err(Malformed);
    }
    let flags = r.u8()?;
    let identity_key = if flags & 0b10 != 0 {
        let key = r.array::<32>()?;
        Some(if version == CONTACT_RECORD_VERSION {
            IdentityKey::from_validated_parts(key, r.array::<32>()?)
        } else {
            IdentityKey::from_bytes(&key).map_err(|_| Malformed)?
        })
    } else {
        None
    };
    let id = r.string()?;
    let name = r.string()?;
    let mut recovery = RecoveryState::default();
    if flags & 0b100 != 0 {
        recovery.boundary = u64::from_be_bytes(r.array::<8>()?);
        let count = usize::from(u16::from_be_bytes(r.array::<2>()?));
        if count > MAX_RESENT_REMEMBERED {
            return Err(Malformed);
        }
        for _ in 0..count {
            recovery.resent.push(u64::from_be_bytes(r.array::<8>()?));
        }
    }
    let newest_sent_at = if flags & 0b1000 != 0 { r.u64()? } else { 0 };
    if flags & 0b1_0000 != 0 {
        recovery.resets_in_row = r.u8()?;
    }
    let access_key = if flags & 0b10_0000 != 0 {
        Some(AccessKey::from_bytes(r.array::<16>()?))
    } else {
        None
    };
    let claims_to_succeed = if flags & 0b100_0000 != 0 {
        Some(r.string()?)
    } else {
        None
    };
    r.finish()?;
    Ok(ContactRecord {
        id,
        name,
        identity_key,
        verified: flags & 0b01 != 0,
        recovery,
        newest_sent_at,
        access_key,
        claims_to_succeed,
        min_version: if flags & 0b1000_0000 != 0 { 2 } else { 1 },
    })
}

/// [`decode_contact`] for a record that did not come from this store's
/// own rows (an archive, a history transfer): the identity key is
/// validated, and its X25519 form must be the one the key has.
pub(crate) fn decode_contact_untrusted(bytes: &[u8]) -> Decoded<ContactRecord> {
    let mut record = decode_contact(bytes)?;
    if let Some(key) = &record.identity_key {
        let valid = IdentityKey::from_bytes(key.as_bytes()).map_err(|_| Malformed)?;
        if valid.dh_public() != key.dh_public() {
            return Err(Malformed);
        }
        record.identity_key = Some(valid);
    }
    Ok(record)
}

// ---- conversations --------------------------------------------------------

/// Most ranges of deleted seqs one conversation record keeps.
pub(crate) const MAX_DELETED_RANGES: usize = 100_000;

pub(crate) fn encode_conversation(
    key: &[u8; 32],
    contact: &str,
    deleted: &[(u64, u64)],
    timer: Option<&DisappearingTimer>,
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(
        39 + contact.len() + 16 * deleted.len() + TIMER_TAIL_LEN,
    ));
    out.push(RECORD_VERSION);
    out.extend_from_slice(key);
    push_str(&mut out, contact);
    if !deleted.is_empty() || timer.is_some() {
        // Bounded by MAX_DELETED_RANGES, which fits in a u32. A timer
        // without deleted seqs follows a count of 0.
        out.extend_from_slice(&(deleted.len() as u32).to_be_bytes());
        for (first, last) in deleted {
            out.extend_from_slice(&first.to_be_bytes());
            out.extend_from_slice(&last.to_be_bytes());
        }
    }
    if let Some(timer) = timer {
        out.push(TIMER_TAG);
        out.extend_from_slice(&timer.seconds.to_be_bytes());
        out.extend_from_slice(&timer.set_at.to_be_bytes());
        out.extend_from_slice(timer.set_by.as_bytes());
    }
    out
}

/// The tag of a conversation record's timer tail.
const TIMER_TAG: u8 = 0x54;
/// The timer tail's length: tag, seconds, set_at, setter.
const TIMER_TAIL_LEN: usize = 1 + 4 + 8 + 32;

/// A conversation record: its key, its contact id, the seqs deleted on
/// purpose (sorted, disjoint, inclusive ranges) and its disappearing
/// messages timer, if one was ever set.
pub(crate) type ConversationRecord = (
    Zeroizing<[u8; 32]>,
    String,
    Vec<(u64, u64)>,
    Option<DisappearingTimer>,
);

pub(crate) fn decode_conversation(bytes: &[u8]) -> Decoded<ConversationRecord> {
    let mut r = Reader::new(bytes);
    r.version()?;
    let key = Zeroizing::new(r.array::<32>()?);
    let contact = r.string()?;
    let mut deleted = Vec::new();
    let mut timer = None;
    if !r.bytes.is_empty() {
        let n = usize::try_from(r.u32()?).map_err(|_| Malformed)?;
        if n > MAX_DELETED_RANGES {
            return Err(Malformed);
        }
        let mut previous_last = 0u64;
        for _ in 0..n {
            let (first, last) = (r.u64()?, r.u64()?);
            // Sorted, disjoint, not touching, seqs from 1.
            if first == 0 || first > last || (!deleted.is_empty() && first <= previous_last + 1) {
                return Err(Malformed);
            }
            previous_last = last;
            deleted.push((first, last));
        }
        if !r.bytes.is_empty() {
            if r.u8()? != TIMER_TAG {
                return Err(Malformed);
            }
            let seconds = r.u32()?;
            let set_at = r.u64()?;
            let set_by = IdentityKey::from_bytes(&r.array::<32>()?).map_err(|_| Malformed)?;
            timer = Some(DisappearingTimer {
                seconds,
                set_at,
                set_by,
            });
        } else if n == 0 {
            // A count of 0 is written only before a timer.
            return Err(Malformed);
        }
    }
    r.finish()?;
    Ok((key, contact, deleted, timer))
}

/// Adds `seq` to sorted, disjoint ranges, merging neighbours.
pub(crate) fn add_to_ranges(ranges: &mut Vec<(u64, u64)>, seq: u64) {
    let i = ranges.partition_point(|&(_, last)| last.saturating_add(1) < seq);
    match ranges.get_mut(i) {
        Some(r) if r.0 <= seq && seq <= r.1 => return,
        Some(r) if r.1.saturating_add(1) == seq => r.1 = seq,
        Some(r) if seq.saturating_add(1) == r.0 => r.0 = seq,
        _ => ranges.insert(i, (seq, seq)),
    }
    // A range grown at its end may now touch the next one.
    if let (Some(&(_, last)), Some(&(next_first, next_last))) = (ranges.get(i), ranges.get(i + 1))
        && last.saturating_add(1) >= next_first
    {
        ranges[i].1 = next_last.max(last);
        ranges.remove(i + 1);
    }
}

/// The first seq of the range that holds `seq`, if one does.
pub(crate) fn deleted_range_start(ranges: &[(u64, u64)], seq: u64) -> Option<u64> {
    let i = ranges.partition_point(|&(_, last)| last < seq);
    ranges
        .get(i)
        .and_then(|&(first, _)| (first <= seq).then_some(first))
}

// ---- messages -------------------------------------------------------------

const MESSAGE_HEADER_LEN: usize = 1 + 1 + 1 + 8 + 16;

/// The message record: header, then the padded body. An outgoing message
/// keeps the digest of the ciphertext last sent for it, so that a notice
/// naming that digest can be matched (`recovery.rs`).
pub(crate) fn encode_message(
    direction: Direction,
    state: DeliveryState,
    timestamp: u64,
    id: &EnvelopeId,
    digest: Option<&CiphertextDigest>,
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::with_capacity(
        MESSAGE_HEADER_LEN + 32 + sotto_core::pad::padded_len_for_plaintext(body.len())?,
    ));
    out.push(if digest.is_some() {
        MESSAGE_WITH_DIGEST
    } else {
        MESSAGE_WITHOUT_DIGEST
    });
    out.push(match direction {
        Direction::Incoming => 0,
        Direction::Outgoing => 1,
    });
    out.push(state.to_byte());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(id.as_bytes());
    match digest {
        Some(digest) => out.extend_from_slice(digest.as_bytes()),
        None => out.extend_from_slice(&[0; 32]),
    }
    pad_into(body, &mut out)?;
    Ok(out)
}

/// A group message's record: as [`encode_message`], with the account that
/// wrote it in place of a digest.
pub(crate) fn encode_group_message(
    direction: Direction,
    state: DeliveryState,
    timestamp: u64,
    id: &EnvelopeId,
    author: &IdentityKey,
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::with_capacity(
        MESSAGE_HEADER_LEN + 32 + sotto_core::pad::padded_len_for_plaintext(body.len())?,
    ));
    out.push(MESSAGE_WITH_AUTHOR);
    out.push(match direction {
        Direction::Incoming => 0,
        Direction::Outgoing => 1,
    });
    out.push(state.to_byte());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(author.as_bytes());
    pad_into(body, &mut out)?;
    Ok(out)
}

/// The length of a message record's head (everything before the padded
/// body: version, direction, state, timestamp, envelope id and, in a
/// version-2 record, the digest), after checking that the head is well
/// formed.
pub(crate) fn message_head_len(bytes: &[u8]) -> Decoded<usize> {
    let len = match bytes.first() {
        Some(&RECORD_VERSION) => MESSAGE_HEADER_LEN,
        Some(
            &MESSAGE_WITH_DIGEST | &MESSAGE_WITH_AUTHOR | &MESSAGE_WITHOUT_DIGEST | &MESSAGE_EVENT,
        ) => MESSAGE_HEADER_LEN + 32,
        _ => return Err(Malformed),
    };
    if bytes.len() < len || bytes[1] > 1 || DeliveryState::from_byte(bytes[2]).is_none() {
        return Err(Malformed);
    }
    Ok(len)
}

/// A message record from its head ([`message_head_len`]) and its body,
/// unpadded: the body is padded as in every stored record.
pub(crate) fn message_record_from_parts(head: &[u8], body: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    check_body(body)?;
    let mut out = Zeroizing::new(Vec::with_capacity(
        head.len() + sotto_core::pad::padded_len_for_plaintext(body.len())?,
    ));
    out.extend_from_slice(head);
    pad_into(body, &mut out)?;
    Ok(out)
}

/// A message record of format 0x01 (27-byte head, written before format
/// 0x04) as format 0x04: the same head and padded body with 32 zero bytes
/// between them. `None` for any other record.
pub(crate) fn message_head_without_digest_to_pad(record: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if record.first() != Some(&RECORD_VERSION)
        || message_head_len(record).ok()? != MESSAGE_HEADER_LEN
    {
        return None;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(record.len() + 32));
    out.push(MESSAGE_WITHOUT_DIGEST);
    out.extend_from_slice(&record[1..MESSAGE_HEADER_LEN]);
    out.extend_from_slice(&[0; 32]);
    out.extend_from_slice(&record[MESSAGE_HEADER_LEN..]);
    Some(out)
}

/// The digest kept in an outgoing message record, if it has one.
pub(crate) fn message_digest(bytes: &[u8]) -> Decoded<Option<CiphertextDigest>> {
    match bytes.first() {
        Some(&RECORD_VERSION | &MESSAGE_WITH_AUTHOR | &MESSAGE_WITHOUT_DIGEST | &MESSAGE_EVENT) => {
            Ok(None)
        }
        Some(&MESSAGE_WITH_DIGEST) => {
            let digest = bytes
                .get(MESSAGE_HEADER_LEN..MESSAGE_HEADER_LEN + 32)
                .ok_or(Malformed)?;
            Ok(Some(CiphertextDigest(
                digest.try_into().map_err(|_| Malformed)?,
            )))
        }
        _ => Err(Malformed),
    }
}

/// Replaces the digest of an outgoing message record (after it was
/// encrypted again), upgrading a version-1 record.
pub(crate) fn set_message_digest(
    seq: u64,
    record: &[u8],
    digest: &CiphertextDigest,
) -> Result<Zeroizing<Vec<u8>>> {
    let m = decode_message(seq, record).map_err(|_| Error::Corrupt {
        table: "messages",
        row: crate::error::Row::Seq(seq),
    })?;
    encode_message(
        m.direction,
        m.state,
        m.timestamp,
        &m.envelope_id,
        Some(digest),
        &m.body,
    )
}

pub(crate) fn decode_message(seq: u64, bytes: &[u8]) -> Decoded<Message> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if !matches!(
        version,
        RECORD_VERSION
            | MESSAGE_WITH_DIGEST
            | MESSAGE_WITH_AUTHOR
            | MESSAGE_WITHOUT_DIGEST
            | MESSAGE_EVENT
    ) {
        return Err(Malformed);
    }
    let direction = match r.u8()? {
        0 => Direction::Incoming,
        1 => Direction::Outgoing,
        _ => return Err(Malformed),
    };
    let state = DeliveryState::from_byte(r.u8()?).ok_or(Malformed)?;
    let timestamp = r.u64()?;
    let envelope_id = EnvelopeId(r.array::<16>()?);
    let mut author = None;
    match version {
        MESSAGE_WITH_DIGEST | MESSAGE_WITHOUT_DIGEST | MESSAGE_EVENT => {
            let digest = r.take(32)?;
            // Without a digest, its place holds zeros.
            if version != MESSAGE_WITH_DIGEST && digest.iter().any(|&b| b != 0) {
                return Err(Malformed);
            }
        }
        MESSAGE_WITH_AUTHOR => {
            author = Some(IdentityKey::from_bytes(&r.array::<32>()?).map_err(|_| Malformed)?);
        }
        _ => {}
    }
    let body = unpadded(r.rest())?;
    let (event, body) = if version == MESSAGE_EVENT {
        (Some(decode_event(body)?), &[][..])
    } else {
        (None, body)
    };
    Ok(Message {
        seq,
        direction,
        state,
        timestamp,
        envelope_id,
        author,
        event,
        body: Zeroizing::new(body.to_vec()),
    })
}

/// An event's record in a conversation's history: written by us
/// (`Outgoing`) or by the contact (`Incoming`), at `timestamp`.
pub(crate) fn encode_event(
    direction: Direction,
    timestamp: u64,
    id: &EnvelopeId,
    event: &ConversationEvent,
) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = encode_message(
        direction,
        DeliveryState::Read,
        timestamp,
        id,
        None,
        &encode_event_body(event),
    )?;
    out[0] = MESSAGE_EVENT;
    Ok(out)
}

fn encode_event_body(event: &ConversationEvent) -> [u8; 5] {
    match event {
        ConversationEvent::TimerChanged { seconds } => {
            let s = seconds.to_be_bytes();
            [EVENT_TIMER, s[0], s[1], s[2], s[3]]
        }
    }
}

fn decode_event(body: &[u8]) -> Decoded<ConversationEvent> {
    let mut r = Reader::new(body);
    let event = match r.u8()? {
        EVENT_TIMER => ConversationEvent::TimerChanged { seconds: r.u32()? },
        _ => return Err(Malformed),
    };
    r.finish()?;
    Ok(event)
}

/// Rewrites the state byte of an encoded message record in place.
pub(crate) fn set_message_state(record: &mut [u8], state: DeliveryState) -> Decoded<()> {
    if record.len() < MESSAGE_HEADER_LEN
        || !matches!(
            record[0],
            RECORD_VERSION
                | MESSAGE_WITH_DIGEST
                | MESSAGE_WITH_AUTHOR
                | MESSAGE_WITHOUT_DIGEST
                | MESSAGE_EVENT
        )
    {
        return Err(Malformed);
    }
    record[2] = state.to_byte();
    Ok(())
}

// ---- outbox ---------------------------------------------------------------

/// Version of an outbox record that says whether, when and how often the
/// relay accepted the ciphertext.
const OUTBOX_WITH_ACCEPTANCE: u8 = 0x02;
/// Version of an outbox record that also names the device the ciphertext
/// is encrypted to: `kind(1: 0 contact, 1 own) || u32be(device id)` after
/// the acceptance fields. Older records are for the contact's primary
/// device, the only device there was.
const OUTBOX_WITH_DEVICE: u8 = 0x03;
/// Version of an outbox record that also says whether the message's body
/// is detached (sotto-core `body`): `u8(0 | 1) [|| body key(32)]` after the
/// device. Older records carry their body inside the ciphertext.
const OUTBOX_WITH_BODY_KEY: u8 = 0x04;

/// An outbox entry as stored.
pub(crate) struct OutboxRecord {
    pub(crate) seq: u64,
    pub(crate) id: EnvelopeId,
    /// When the relay last accepted it (ms); 0 while it never did.
    pub(crate) accepted_at: u64,
    /// How many times the relay accepted it (first send and resends).
    pub(crate) accepted: u32,
    /// The device it is encrypted to.
    pub(crate) to: PeerDevice,
    /// The key of the message's detached body, when the ciphertext holds
    /// only a reference to it.
    pub(crate) body_key: Option<BodyKey>,
    pub(crate) ciphertext: Vec<u8>,
}

pub(crate) fn encode_outbox(r: &OutboxRecord) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(75 + r.ciphertext.len()));
    out.push(OUTBOX_WITH_BODY_KEY);
    out.extend_from_slice(&r.seq.to_be_bytes());
    out.extend_from_slice(r.id.as_bytes());
    out.extend_from_slice(&r.accepted_at.to_be_bytes());
    out.extend_from_slice(&r.accepted.to_be_bytes());
    let (kind, device) = match r.to {
        PeerDevice::Contact(id) => (0u8, id),
        PeerDevice::Own(id) => (1u8, id),
    };
    out.push(kind);
    out.extend_from_slice(&device.get().to_be_bytes());
    match &r.body_key {
        Some(key) => {
            out.push(1);
            out.extend_from_slice(key.as_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&r.ciphertext);
    out
}

pub(crate) fn decode_outbox(bytes: &[u8]) -> Decoded<OutboxRecord> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if !matches!(
        version,
        RECORD_VERSION | OUTBOX_WITH_ACCEPTANCE | OUTBOX_WITH_DEVICE | OUTBOX_WITH_BODY_KEY
    ) {
        return Err(Malformed);
    }
    let seq = r.u64()?;
    let id = EnvelopeId(r.array::<16>()?);
    let (accepted_at, accepted) = if version >= OUTBOX_WITH_ACCEPTANCE {
        (r.u64()?, r.u32()?)
    } else {
        (0, 0)
    };
    let to = if version >= OUTBOX_WITH_DEVICE {
        let kind = r.u8()?;
        let device = DeviceId::new(r.u32()?);
        match kind {
            0 => PeerDevice::Contact(device),
            1 => PeerDevice::Own(device),
            _ => return Err(Malformed),
        }
    } else {
        PeerDevice::CONTACT_PRIMARY
    };
    let body_key = if version >= OUTBOX_WITH_BODY_KEY {
        match r.u8()? {
            0 => None,
            1 => Some(BodyKey::from_bytes(&r.array::<32>()?)),
            _ => return Err(Malformed),
        }
    } else {
        None
    };
    Ok(OutboxRecord {
        seq,
        id,
        accepted_at,
        accepted,
        to,
        body_key,
        ciphertext: r.rest().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_roundtrip_and_state_rewrite() {
        let id = EnvelopeId([4; 16]);
        let mut rec = encode_message(
            Direction::Outgoing,
            DeliveryState::Pending,
            1234,
            &id,
            None,
            b"body",
        )
        .unwrap();
        // Without a digest, the head is as long as with one.
        assert_eq!(rec.len(), MESSAGE_HEADER_LEN + 32 + 256);
        assert_eq!(rec[0], MESSAGE_WITHOUT_DIGEST);
        set_message_state(&mut rec, DeliveryState::Sent).unwrap();
        let m = decode_message(9, &rec).unwrap();
        assert_eq!(m.seq, 9);
        assert_eq!(m.direction, Direction::Outgoing);
        assert_eq!(m.state, DeliveryState::Sent);
        assert_eq!(m.timestamp, 1234);
        assert_eq!(m.envelope_id, id);
        assert_eq!(m.body.as_slice(), b"body");
        assert!(decode_message(9, &rec[..rec.len() - 1]).is_err());
        assert_eq!(message_digest(&rec).unwrap(), None);

        // The reserved bytes are zeros.
        let mut nonzero = rec.to_vec();
        nonzero[MESSAGE_HEADER_LEN] = 1;
        assert!(decode_message(9, &nonzero).is_err());
        // Every new record's head has one length, whatever the direction
        // and whether it has a digest, so sealed lengths tell neither.
        let incoming = encode_message(
            Direction::Incoming,
            DeliveryState::Received,
            1,
            &id,
            None,
            b"body",
        )
        .unwrap();
        assert_eq!(incoming.len(), rec.len());
        // A version 1 record (written before) is still read.
        let mut v1 = rec[..MESSAGE_HEADER_LEN].to_vec();
        v1[0] = RECORD_VERSION;
        v1.extend_from_slice(&rec[MESSAGE_HEADER_LEN + 32..]);
        assert_eq!(decode_message(9, &v1).unwrap().body.as_slice(), b"body");
        assert_eq!(message_head_len(&v1).unwrap(), MESSAGE_HEADER_LEN);
        // Upgraded, it is the record written today.
        assert_eq!(
            message_head_without_digest_to_pad(&v1).unwrap().as_slice(),
            &rec[..]
        );
        assert!(message_head_without_digest_to_pad(&rec).is_none());

        let digest = CiphertextDigest::of(b"ciphertext");
        let with = set_message_digest(9, &rec, &digest).unwrap();
        assert_eq!(with.len(), MESSAGE_HEADER_LEN + 32 + 256);
        assert_eq!(message_digest(&with).unwrap(), Some(digest));
        let m = decode_message(9, &with).unwrap();
        assert_eq!(m.state, DeliveryState::Sent);
        assert_eq!(m.envelope_id, id);
        assert_eq!(m.body.as_slice(), b"body");
        assert!(message_digest(&with[..40]).is_err());
    }

    #[test]
    fn deleted_ranges_merge_and_roundtrip() {
        let mut r = Vec::new();
        for seq in [5, 7, 6, 1, 3, 2, 9, 9, 10] {
            add_to_ranges(&mut r, seq);
        }
        assert_eq!(r, vec![(1, 3), (5, 7), (9, 10)]);
        add_to_ranges(&mut r, 4);
        assert_eq!(r, vec![(1, 7), (9, 10)]);
        add_to_ranges(&mut r, 8);
        assert_eq!(r, vec![(1, 10)]);
        for seq in 1..=10 {
            assert_eq!(deleted_range_start(&r, seq), Some(1));
        }
        assert_eq!(deleted_range_start(&r, 11), None);
        assert_eq!(deleted_range_start(&r, 0), None);
        let record = encode_conversation(&[7; 32], "carol", &[(2, 2), (4, 9)], None);
        let (key, contact, deleted, _) = decode_conversation(&record).unwrap();
        assert_eq!(
            (*key, contact.as_str(), deleted),
            ([7; 32], "carol", vec![(2, 2), (4, 9)])
        );
        // A record without the tail reads as "nothing deleted".
        assert!(
            decode_conversation(&encode_conversation(&[7; 32], "carol", &[], None))
                .unwrap()
                .2
                .is_empty()
        );
        // Overlapping or unsorted ranges are malformed.
        assert!(
            decode_conversation(&encode_conversation(&[7; 32], "c", &[(4, 9), (2, 2)], None))
                .is_err()
        );
        assert!(
            decode_conversation(&encode_conversation(&[7; 32], "c", &[(2, 5), (5, 9)], None))
                .is_err()
        );
    }

    #[test]
    fn a_conversation_keeps_its_timer_with_or_without_deleted_seqs() {
        let timer = DisappearingTimer {
            seconds: 3600,
            set_at: 1_700_000_000_000,
            set_by: *sotto_core::IdentityKeyPair::from_seed(&[5; 32]).public(),
        };
        for deleted in [vec![], vec![(2, 2), (4, 9)]] {
            let record = encode_conversation(&[7; 32], "carol", &deleted, Some(&timer));
            let (_, _, read_deleted, read_timer) = decode_conversation(&record).unwrap();
            assert_eq!((read_deleted, read_timer), (deleted, Some(timer)));
            // Cut anywhere in the tail: malformed.
            for cut in 1..TIMER_TAIL_LEN {
                assert!(decode_conversation(&record[..record.len() - cut]).is_err());
            }
        }
        // A count of 0 without a timer after it is malformed.
        let mut bare = encode_conversation(&[7; 32], "carol", &[], None).to_vec();
        bare.extend_from_slice(&0u32.to_be_bytes());
        assert!(decode_conversation(&bare).is_err());
    }

    #[test]
    fn an_event_record_reads_back_as_an_event_with_an_empty_body() {
        let id = EnvelopeId([3; 16]);
        let event = ConversationEvent::TimerChanged { seconds: 30 };
        let record = encode_event(Direction::Incoming, 42, &id, &event).unwrap();
        // As long as any other message record of the same padded body.
        let plain = encode_message(
            Direction::Incoming,
            DeliveryState::Read,
            42,
            &id,
            None,
            b"12345",
        )
        .unwrap();
        assert_eq!(record.len(), plain.len());
        let m = decode_message(7, &record).unwrap();
        assert_eq!((m.event, m.body.is_empty()), (Some(event), true));
        assert_eq!(message_digest(&record).unwrap(), None);
        // An event of an unknown kind, or a timer cut short, is malformed.
        for body in [&[0x09, 0, 0, 0, 30][..], &[EVENT_TIMER, 0, 0, 30][..]] {
            let mut wrong = encode_message(
                Direction::Incoming,
                DeliveryState::Read,
                42,
                &id,
                None,
                body,
            )
            .unwrap();
            wrong[0] = MESSAGE_EVENT;
            assert!(decode_message(7, &wrong).is_err());
        }
    }

    #[test]
    fn outbox_records_of_every_version_decode() {
        let record = OutboxRecord {
            seq: 7,
            id: EnvelopeId([3; 16]),
            accepted_at: 1234,
            accepted: 2,
            to: PeerDevice::Own(DeviceId::new(4)),
            body_key: Some(BodyKey::from_bytes(&[8; 32])),
            ciphertext: b"ct".to_vec(),
        };
        let back = decode_outbox(&encode_outbox(&record)).unwrap();
        assert_eq!(back.body_key, Some(BodyKey::from_bytes(&[8; 32])));
        let plain = OutboxRecord {
            body_key: None,
            ..record
        };
        let back = decode_outbox(&encode_outbox(&plain)).unwrap();
        assert_eq!(back.body_key, None);
        let record = plain;
        assert_eq!(
            (back.seq, back.id, back.accepted_at, back.accepted, back.to),
            (
                7,
                EnvelopeId([3; 16]),
                1234,
                2,
                PeerDevice::Own(DeviceId::new(4))
            )
        );
        assert_eq!(back.ciphertext, b"ct");
        // Version 2: acceptance, no device (the contact's primary).
        let mut v2 = vec![OUTBOX_WITH_ACCEPTANCE];
        v2.extend_from_slice(&7u64.to_be_bytes());
        v2.extend_from_slice(&[3; 16]);
        v2.extend_from_slice(&1234u64.to_be_bytes());
        v2.extend_from_slice(&2u32.to_be_bytes());
        v2.extend_from_slice(b"ct");
        let old = decode_outbox(&v2).unwrap();
        assert_eq!((old.accepted_at, old.accepted), (1234, 2));
        assert_eq!(old.to, PeerDevice::CONTACT_PRIMARY);
        assert_eq!(old.ciphertext, b"ct");
        let mut v1 = vec![RECORD_VERSION];
        v1.extend_from_slice(&7u64.to_be_bytes());
        v1.extend_from_slice(&[3; 16]);
        v1.extend_from_slice(b"ct");
        let old = decode_outbox(&v1).unwrap();
        assert_eq!((old.seq, old.accepted_at, old.accepted), (7, 0, 0));
        assert_eq!(old.to, PeerDevice::CONTACT_PRIMARY);
        assert_eq!(old.ciphertext, b"ct");
        assert!(decode_outbox(&[9, 0, 0]).is_err());
        // An unknown device kind, or body-key flag, is malformed.
        for at in [37, 42] {
            let mut bad = encode_outbox(&record);
            bad[at] = 2;
            assert!(decode_outbox(&bad).is_err());
        }
        // Version 3: no body key.
        let mut v3 = encode_outbox(&record).to_vec();
        v3[0] = OUTBOX_WITH_DEVICE;
        v3.remove(42);
        assert_eq!(decode_outbox(&v3).unwrap().body_key, None);
        assert_eq!(decode_outbox(&v3).unwrap().ciphertext, b"ct");
    }

    #[test]
    fn contact_and_counters_roundtrip() {
        let key = *sotto_core::IdentityKeyPair::from_seed(&[1; 32]).public();
        let rec = ContactRecord {
            id: "id".into(),
            name: "Name".into(),
            identity_key: Some(key),
            verified: true,
            recovery: RecoveryState {
                boundary: 7,
                resent: vec![3, 5],
                resets_in_row: 2,
            },
            newest_sent_at: 99,
            access_key: Some(AccessKey::from_bytes([6; 16])),
            claims_to_succeed: Some("previous id".into()),
            min_version: 2,
        };
        let encoded = encode_contact(&rec);
        assert_eq!(encoded[0], CONTACT_RECORD_VERSION);
        let back = decode_contact(&encoded).unwrap();
        assert_eq!(back.identity_key.unwrap().dh_public(), key.dh_public());
        assert_eq!(
            decode_contact_untrusted(&encoded).unwrap().identity_key,
            Some(key)
        );
        // From elsewhere, a record whose X25519 form is not the key's is
        // refused; the store's own rows are trusted as written.
        let mut wrong_dh = encoded.to_vec();
        wrong_dh[2 + 32] ^= 1;
        assert!(decode_contact_untrusted(&wrong_dh).is_err());
        assert!(decode_contact(&wrong_dh).is_ok());
        // A version 1 record (the Ed25519 key alone) is still read, its key
        // validated.
        let mut v1 = vec![RECORD_VERSION];
        v1.extend_from_slice(&encoded[1..2 + 32]);
        v1.extend_from_slice(&encoded[2 + 64..]);
        let old = decode_contact(&v1).unwrap();
        assert_eq!(old.identity_key.unwrap().dh_public(), key.dh_public());
        assert_eq!(old.name, "Name");
        let mut invalid = v1.clone();
        invalid[2..34].fill(0);
        invalid[2] = 1;
        assert!(decode_contact(&invalid).is_err());
        assert_eq!(back.claims_to_succeed.as_deref(), Some("previous id"));
        assert_eq!(back.min_version, 2);
        assert_eq!(back.id, "id");
        assert_eq!(back.name, "Name");
        assert_eq!(back.identity_key, Some(key));
        assert!(back.verified);
        assert_eq!(back.recovery, rec.recovery);
        assert_eq!(back.newest_sent_at, 99);
        assert_eq!(back.access_key, rec.access_key);
        // Without the optional fields (as older records were written), and
        // with the access key alone.
        let plain = ContactRecord {
            id: "id".into(),
            name: String::new(),
            identity_key: None,
            verified: false,
            recovery: RecoveryState::default(),
            newest_sent_at: 0,
            access_key: None,
            claims_to_succeed: None,
            min_version: 1,
        };
        let encoded = encode_contact(&plain);
        assert_eq!(encoded[1], 0, "no flag bits");
        assert!(decode_contact(&encoded).unwrap().access_key.is_none());
        assert_eq!(decode_contact(&encoded).unwrap().min_version, 1);
        let keyed = ContactRecord {
            access_key: Some(AccessKey::from_bytes([7; 16])),
            ..plain
        };
        let encoded = encode_contact(&keyed);
        assert_eq!(encoded[1], 0b10_0000);
        assert_eq!(&encoded[encoded.len() - 16..], &[7; 16]);
        assert_eq!(
            decode_contact(&encoded).unwrap().access_key,
            keyed.access_key
        );
        // A key cut short, or a flag whose field is missing, is malformed.
        assert!(decode_contact(&encoded[..encoded.len() - 1]).is_err());
        let mut unknown = encoded.to_vec();
        unknown[1] |= 0b100_0000;
        assert!(decode_contact(&unknown).is_err());
        let ids = PreKeyIds {
            next_signed: 3,
            next_one_time: 77,
            next_kem: 5,
            kem_retired: None,
        };
        assert_eq!(decode_prekey_ids(&encode_prekey_ids(&ids)).unwrap(), ids);
        let retiring = PreKeyIds {
            kem_retired: Some(KemRetired { below: 4, at: 99 }),
            ..ids
        };
        let encoded = encode_prekey_ids(&retiring);
        assert_eq!(encoded.len(), 25);
        assert_eq!(decode_prekey_ids(&encoded).unwrap(), retiring);
        assert!(decode_prekey_ids(&encoded[..20]).is_err());
        // A record from before schema 7 (no KEM counter) reads with 1.
        let old = &encode_prekey_ids(&ids)[..9];
        assert_eq!(decode_prekey_ids(old).unwrap().next_kem, 1);
        assert!(decode_prekey_ids(&[1, 0, 0]).is_err());
    }

    #[test]
    fn one_time_prekey_states_roundtrip_and_reject_malformed_ones() {
        for state in [
            OneTimePreKeyInfo {
                id: OneTimePreKeyId::new(7),
                published_at: None,
                retired_at: None,
            },
            OneTimePreKeyInfo {
                id: OneTimePreKeyId::MAX,
                published_at: Some(1_700_000_000_000),
                retired_at: None,
            },
            OneTimePreKeyInfo {
                id: OneTimePreKeyId::new(1),
                published_at: Some(5),
                retired_at: Some(0),
            },
        ] {
            let bytes = encode_one_time_prekey_state(&state);
            assert_eq!(bytes.len(), ONE_TIME_PREKEY_STATE_LEN);
            assert_eq!(decode_one_time_prekey_state(&bytes).unwrap(), state);
            assert!(decode_one_time_prekey_state(&bytes[..21]).is_err());
        }
        let mut bytes = encode_one_time_prekey_state(&OneTimePreKeyInfo {
            id: OneTimePreKeyId::new(1),
            published_at: None,
            retired_at: None,
        });
        bytes[5] = 0b100; // an unknown flag
        assert!(decode_one_time_prekey_state(&bytes).is_err());
        bytes[5] = 0;
        bytes[13] = 1; // a time without its flag
        assert!(decode_one_time_prekey_state(&bytes).is_err());
        bytes[13] = 0;
        bytes[0] = 2; // another version
        assert!(decode_one_time_prekey_state(&bytes).is_err());
    }
}
