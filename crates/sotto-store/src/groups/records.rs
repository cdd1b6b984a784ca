//! The sealed records of groups (docs/storage.md, "Groups").
//!
//! ```text
//! group         0x01 || group id(32) || u32be(len) || membership state (sotto-core)
//!                   || u8(0 | 1) [|| u32be(len) || own sender key (sotto-core)]
//!                   || u16be(n) || n × device key(32)   (devices holding our sender key)
//!                   || u8(flags: bit0 left)
//! group outbox  0x01 || envelope id(16) || u64be(seq) || body key(32)
//!                   || u16be(n) || n × (device key(32) || account key(32))
//!                   || blob
//! ```

use sotto_core::{BodyKey, IdentityKey};
use zeroize::Zeroizing;

use sotto_core::group::{GROUP_ID_LEN, GroupId};

use super::{GroupRecipient, StoredGroup};
use crate::records::{Decoded, Malformed, Reader};
use crate::types::EnvelopeId;

const GROUP_RECORD: u8 = 0x01;
const GROUP_OUTBOX_RECORD: u8 = 0x01;
const FLAG_LEFT: u8 = 0x01;

/// Most device keys a group record or an outbox entry lists.
pub(super) const MAX_LISTED_DEVICES: usize = u16::MAX as usize;

fn push_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn read_bytes<'a>(r: &mut Reader<'a>) -> Decoded<&'a [u8]> {
    let len = usize::try_from(r.u32()?).map_err(|_| Malformed)?;
    r.take(len)
}

fn read_key(r: &mut Reader<'_>) -> Decoded<IdentityKey> {
    IdentityKey::from_bytes(&r.array::<32>()?).map_err(|_| Malformed)
}

pub(super) fn encode_group(group: &StoredGroup) -> Zeroizing<Vec<u8>> {
    let key_len = group.sender_key.as_ref().map_or(0, |k| k.len());
    let mut out = Zeroizing::new(Vec::with_capacity(
        32 + group.state.len() + key_len + 32 * group.shared_with.len(),
    ));
    out.push(GROUP_RECORD);
    out.extend_from_slice(group.id.as_bytes());
    push_bytes(&mut out, &group.state);
    match &group.sender_key {
        Some(key) => {
            out.push(1);
            push_bytes(&mut out, key);
        }
        None => out.push(0),
    }
    let shared = &group.shared_with[..group.shared_with.len().min(MAX_LISTED_DEVICES)];
    out.extend_from_slice(&(shared.len() as u16).to_be_bytes());
    for device in shared {
        out.extend_from_slice(device.as_bytes());
    }
    out.push(if group.left { FLAG_LEFT } else { 0 });
    out
}

pub(super) fn decode_group(bytes: &[u8]) -> Decoded<StoredGroup> {
    let mut r = Reader::new(bytes);
    if r.u8()? != GROUP_RECORD {
        return Err(Malformed);
    }
    let id = GroupId::from_bytes(r.array::<GROUP_ID_LEN>()?);
    let state = read_bytes(&mut r)?.to_vec();
    let sender_key = match r.u8()? {
        0 => None,
        1 => Some(Zeroizing::new(read_bytes(&mut r)?.to_vec())),
        _ => return Err(Malformed),
    };
    let n = usize::from(r.u16()?);
    let shared_with = (0..n)
        .map(|_| read_key(&mut r))
        .collect::<Decoded<Vec<_>>>()?;
    let flags = r.u8()?;
    if flags & !FLAG_LEFT != 0 {
        return Err(Malformed);
    }
    r.finish()?;
    Ok(StoredGroup {
        id,
        state,
        sender_key,
        shared_with,
        left: flags & FLAG_LEFT != 0,
    })
}

/// A group message waiting for the relay to take it for every recipient.
pub(super) struct GroupOutboxRecord {
    pub(super) id: EnvelopeId,
    pub(super) seq: u64,
    pub(super) body_key: BodyKey,
    pub(super) recipients: Vec<GroupRecipient>,
    pub(super) blob: Vec<u8>,
}

pub(super) fn encode_group_outbox(r: &GroupOutboxRecord) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(
        60 + 64 * r.recipients.len() + r.blob.len(),
    ));
    out.push(GROUP_OUTBOX_RECORD);
    out.extend_from_slice(r.id.as_bytes());
    out.extend_from_slice(&r.seq.to_be_bytes());
    out.extend_from_slice(r.body_key.as_bytes());
    let recipients = &r.recipients[..r.recipients.len().min(MAX_LISTED_DEVICES)];
    out.extend_from_slice(&(recipients.len() as u16).to_be_bytes());
    for recipient in recipients {
        out.extend_from_slice(recipient.device.as_bytes());
        out.extend_from_slice(recipient.account.as_bytes());
    }
    out.extend_from_slice(&r.blob);
    out
}

pub(super) fn decode_group_outbox(bytes: &[u8]) -> Decoded<GroupOutboxRecord> {
    let mut r = Reader::new(bytes);
    if r.u8()? != GROUP_OUTBOX_RECORD {
        return Err(Malformed);
    }
    let id = EnvelopeId(r.array::<16>()?);
    let seq = r.u64()?;
    let body_key = BodyKey::from_bytes(&r.array::<32>()?);
    let n = usize::from(r.u16()?);
    let recipients = (0..n)
        .map(|_| {
            Ok(GroupRecipient {
                device: read_key(&mut r)?,
                account: read_key(&mut r)?,
            })
        })
        .collect::<Decoded<Vec<_>>>()?;
    Ok(GroupOutboxRecord {
        id,
        seq,
        body_key,
        recipients,
        blob: r.rest().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use sotto_core::IdentityKeyPair;

    fn key(seed: u8) -> IdentityKey {
        let mut rng = rand::rngs::StdRng::from_seed([seed; 32]);
        *IdentityKeyPair::generate(&mut rng).public()
    }

    #[test]
    fn a_group_record_round_trips_and_a_cut_or_altered_one_is_refused() {
        let group = StoredGroup {
            id: GroupId::from_bytes([7; 32]),
            state: b"membership".to_vec(),
            sender_key: Some(Zeroizing::new(b"chain".to_vec())),
            shared_with: vec![key(1), key(2)],
            left: true,
        };
        let bytes = encode_group(&group);
        let back = decode_group(&bytes).unwrap();
        assert_eq!(back.id, group.id);
        assert_eq!(back.state, group.state);
        assert_eq!(back.sender_key.as_deref(), group.sender_key.as_deref());
        assert_eq!(back.shared_with, group.shared_with);
        assert!(back.left);
        for cut in 0..bytes.len() {
            assert!(decode_group(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(decode_group(&longer).is_err());
        let mut flags = bytes.to_vec();
        *flags.last_mut().unwrap() = 0x80;
        assert!(decode_group(&flags).is_err());
    }

    #[test]
    fn a_group_outbox_record_round_trips() {
        let record = GroupOutboxRecord {
            id: EnvelopeId([3; 16]),
            seq: 42,
            body_key: BodyKey::from_bytes(&[9; 32]),
            recipients: vec![GroupRecipient {
                device: key(3),
                account: key(4),
            }],
            blob: b"blob".to_vec(),
        };
        let bytes = encode_group_outbox(&record);
        let back = decode_group_outbox(&bytes).unwrap();
        assert_eq!(back.id, record.id);
        assert_eq!(back.seq, 42);
        assert_eq!(back.body_key.as_bytes(), record.body_key.as_bytes());
        assert_eq!(back.recipients, record.recipients);
        assert_eq!(back.blob, record.blob);
        for cut in 0..59 {
            assert!(decode_group_outbox(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
