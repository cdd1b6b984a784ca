//! The receive pipeline: one sealed envelope in, a typed outcome out.
//!
//! [`receive`] is a plain function over the store: no network, no async.
//! The connection code fetches envelopes, calls it, and acts on the
//! outcome (acknowledge, announce, answer a notice, send a receipt). Its
//! rules:
//!
//! 1. The sealed layer must open and authenticate its sender, and the
//!    payload must parse; otherwise the envelope is dropped and nobody is
//!    told (a relay can make such envelopes; answering them would let it
//!    steer us).
//! 2. A delivery receipt confirms only envelopes that were encrypted to
//!    the very device that authenticated it; read receipts and
//!    decryption-error notices count only from a contact whose pinned
//!    identity is the authenticated sender (its primary device); from
//!    anyone else they are dropped.
//! 3. A message from an unknown sender creates a nameless contact (the
//!    user names it later); if the message does not decrypt, the contact
//!    is removed again.
//! 4. An identity change (someone claims to be a contact under a new
//!    identity) counts only when it names a contact with a name, and comes
//!    from someone who is not a named contact: the claim is kept on the
//!    claimant's (nameless) contact, whose messages stay apart from the
//!    named contact's until the user accepts. Anything else is dropped.
//! 5. A message whose session-starting key agreement names another
//!    identity than the authenticated sender is refused
//!    ([`Undecryptable::IdentityMismatch`]): the sealed layer decides who
//!    wrote, never the ciphertext inside.
//! 6. A message that does not decrypt asks its sender to resend only when
//!    that can help and cannot be provoked by a relay: not for a replayed
//!    chain index (`Duplicate`), not for a gap beyond the protocol's limit
//!    (`TooManySkipped`, which a relay withholding messages can cause), not
//!    for a replayed first message, and not for a message older (by the
//!    sender's clock) than one already decrypted from that sender — then
//!    the session evidently works and the message is merely late. Session
//!    recovery runs between primary devices: other devices get no notice.
//! 7. A message from a device other than an account's primary (payload
//!    kind 0x05) names both accounts: it must be addressed to this
//!    account, and the held device list of the sending account must name
//!    the authenticated device key under the device id it gives; a list
//!    that does not is refreshed from the relay once
//!    ([`Outcome::UnknownDevice`]) and the message is dropped if it still
//!    does not. A copy from one of our own devices is stored as our
//!    outgoing message in the conversation with the account it names.
//! 8. A device list counts only if the account it names is a contact
//!    (pinned identity) or this account, signed by that key and newer
//!    than the one held.

use sotto_core::{AccessKey, IdentityKey, IdentityKeyPair};
use sotto_store::{CiphertextDigest, DeviceListChange, EnvelopeId, PeerDevice, Received, Store};

use super::types::{DropReason, IncomingMessage, Undecryptable};
use crate::address::Address;
use crate::payload::{self, PayloadError, ReceiptKind};

/// A device list that changed, as the app hears of it.
#[derive(Debug)]
pub(crate) struct ListChanged {
    pub(crate) account: Address,
    /// This account's own list.
    pub(crate) own: bool,
    pub(crate) change: DeviceListChange,
    /// Our own list no longer names this device.
    pub(crate) unlinked: bool,
}

/// A delivery receipt owed: to which device (of which account), for which
/// envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owed {
    pub(crate) to: IdentityKey,
    pub(crate) account: IdentityKey,
    pub(crate) id: EnvelopeId,
}

/// What one envelope came to. Short-lived (one per envelope, moved once):
/// its variants' sizes do not matter.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Outcome {
    /// A new message, committed to history; a delivery receipt is owed.
    /// With `sent_copy`, a message this account sent from another of its
    /// devices, stored as outgoing.
    Stored {
        message: Box<IncomingMessage>,
        sent_copy: bool,
        receipt: Owed,
    },
    /// Stored before. For a message the receipt is owed again (the first
    /// may have been lost: that is why the sender sent it again).
    Duplicate { receipt: Option<Owed> },
    /// A contact's receipt, applied to our outgoing messages: `seqs` are
    /// the messages whose state changed.
    Receipt {
        contact: Address,
        kind: ReceiptKind,
        seqs: Vec<u64>,
    },
    /// Not authenticated or not readable: acknowledge, count, say nothing
    /// to anyone.
    Dropped(DropReason),
    /// An authenticated message that will never decrypt. With `notify`,
    /// ask its sender to resend the ciphertext with that digest.
    Undecryptable {
        from: Address,
        reason: Undecryptable,
        notify: Option<CiphertextDigest>,
    },
    /// `claimant` claims to be the contact `previous` (named `name`) under
    /// a new identity; the claim is recorded, the user decides.
    IdentityChangeClaimed {
        previous: Address,
        name: String,
        claimant: Address,
    },
    /// A message from a device of `account` that the held device list does
    /// not vouch for: fetch the account's newest list and try again once.
    UnknownDevice { account: IdentityKey },
    /// A device list changed (a contact's, or our own account's).
    DevicesChanged(ListChanged),
    /// A link offer or accept (docs/devices.md, "Linking") from the device
    /// `from`: handled by the linking code, which knows what it waits for.
    Link {
        from: IdentityKey,
        kind: u8,
        body: Vec<u8>,
    },
    /// A history transfer's chunk (with its frame) or status from the
    /// device `from`: handled by the transfer code.
    History {
        from: IdentityKey,
        kind: u8,
        body: Vec<u8>,
        chunk: Option<Vec<u8>>,
    },
    /// A contact's decryption-error notice about our ciphertext `failed`:
    /// answering it needs the relay (a new bundle, a resend).
    Notice {
        contact: Address,
        failed: CiphertextDigest,
    },
    /// A group control from a device of `contact` (or a copy from one of
    /// ours), committed to the store to be acted on; a delivery receipt is
    /// owed.
    Control { contact: String, receipt: Owed },
    /// A group message, committed to the group's history.
    GroupMessage(Box<crate::client::groups::IncomingGroupMessage>),
    /// A message of group `group` whose sender key has not come yet: set
    /// it aside in the store, acknowledge it, and try it again when a
    /// sender key comes.
    GroupKeyPending { group: sotto_core::group::GroupId },
}

impl Outcome {
    /// A short, secret-free name of the outcome, for logs.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Stored { .. } => "stored",
            Self::Duplicate { .. } => "duplicate",
            Self::Receipt { .. } => "receipt",
            Self::Dropped(_) => "dropped",
            Self::Undecryptable { .. } => "undecryptable",
            Self::IdentityChangeClaimed { .. } => "identity change",
            Self::Notice { .. } => "notice",
            Self::UnknownDevice { .. } => "unknown device",
            Self::DevicesChanged(_) => "device list",
            Self::Link { .. } => "link",
            Self::History { .. } => "history transfer",
            Self::Control { .. } => "group control",
            Self::GroupMessage(_) => "group message",
            Self::GroupKeyPending { .. } => "group message waiting for its key",
        }
    }
}

/// Opens, authenticates and stores one sealed envelope addressed to `me`
/// (see the module's rules). `now` is the receive time (ms since the Unix
/// epoch). An error is a local failure (disk, lock, damaged store): the
/// envelope must stay on the relay and come again.
pub(crate) fn receive(
    store: &mut Store,
    me: &IdentityKeyPair,
    groups: &super::groups::cache::MemberCache,
    sealed: &[u8],
    now: u64,
) -> sotto_store::Result<Outcome> {
    let Some((sealed, detached)) = payload::split_detached(sealed) else {
        return Ok(Outcome::Dropped(DropReason::Malformed));
    };
    let opened = match payload::unseal(me, sealed) {
        Ok(opened) => opened,
        Err(PayloadError::Sealed(sotto_core::Error::UnsupportedVersion(_))) => {
            return Ok(Outcome::Dropped(DropReason::UnsupportedVersion));
        }
        Err(_) => return Ok(Outcome::Dropped(DropReason::Unauthenticated)),
    };
    let payload = match payload::decode(&opened.contents) {
        Ok(p) => p,
        Err(PayloadError::UnsupportedVersion(_)) => {
            return Ok(Outcome::Dropped(DropReason::UnsupportedVersion));
        }
        Err(_) => return Ok(Outcome::Dropped(DropReason::Malformed)),
    };
    // A detached body comes with a payload that says so, and only then.
    let carries = matches!(
        payload.kind,
        payload::KIND_DETACHED_MESSAGE | payload::KIND_HISTORY_CHUNK | payload::KIND_GROUP_MESSAGE
    );
    if detached.is_some() != carries {
        return Ok(Outcome::Dropped(DropReason::Malformed));
    }
    let sender = opened.sender;
    let from = Address::of(&sender);
    let id = from.to_string();
    let contact = store.contact(&id)?;
    let known = contact
        .as_ref()
        .is_some_and(|c| c.identity_key == Some(sender));

    match payload.kind {
        payload::KIND_RECEIPT => {
            let Some((kind, ids)) = payload.receipt() else {
                return Ok(Outcome::Dropped(DropReason::Malformed));
            };
            return receipt(store, &sender, known, kind, &ids);
        }
        payload::KIND_DECRYPTION_ERROR => {
            let Some(failed) = payload.notice_digest() else {
                return Ok(Outcome::Dropped(DropReason::Malformed));
            };
            if !known {
                return Ok(Outcome::Dropped(DropReason::NotAContact));
            }
            return Ok(Outcome::Notice {
                contact: from,
                failed,
            });
        }
        payload::KIND_IDENTITY_CHANGE => {
            let Some(previous) = payload.previous_identity() else {
                return Ok(Outcome::Dropped(DropReason::Malformed));
            };
            return claim_identity_change(store, &id, contact.as_ref(), &sender, &previous);
        }
        payload::KIND_DEVICE_LIST => {
            return super::devices::receive_device_list(store, payload.body);
        }
        payload::KIND_LINK_OFFER | payload::KIND_LINK_ACCEPT => {
            return Ok(Outcome::Link {
                from: sender,
                kind: payload.kind,
                body: payload.body.to_vec(),
            });
        }
        payload::KIND_HISTORY_CHUNK | payload::KIND_HISTORY_STATUS => {
            return Ok(Outcome::History {
                from: sender,
                kind: payload.kind,
                body: payload.body.to_vec(),
                chunk: detached.map(<[u8]>::to_vec),
            });
        }
        _ => {}
    }
    if unlinked(store, me)? {
        return Ok(Outcome::Dropped(DropReason::Unlinked));
    }
    if matches!(
        payload.kind,
        payload::KIND_DEVICE_MESSAGE | payload::KIND_DETACHED_MESSAGE | payload::KIND_GROUP_CONTROL
    ) {
        return device_message(store, &sender, &payload, detached, now);
    }
    if payload.kind == payload::KIND_GROUP_MESSAGE {
        return super::groups::message::receive(
            store, me, groups, &sender, &payload, detached, now,
        );
    }

    // A message from a primary device: the sender's access key, then the
    // sotto-core message.
    let Some((access_key, ciphertext)) = payload.message() else {
        return Ok(Outcome::Dropped(DropReason::Malformed));
    };
    if sender == store.account_key()? {
        // Our own account key writes to us only in device messages.
        return Ok(Outcome::Dropped(DropReason::Malformed));
    }
    let incoming = Incoming {
        conversation: from,
        device: PeerDevice::CONTACT_PRIMARY,
        sender,
        access_key: Some(access_key),
        ciphertext,
        detached: None,
        message_id: payload.message_id,
        sent_at: payload.sent_at,
        control: false,
    };
    store_message(store, contact, incoming, now)
}

/// True on a linked device that its account's list no longer names: it
/// takes no message any more (the account device unlinked it).
pub(crate) fn unlinked(store: &Store, me: &IdentityKeyPair) -> sotto_store::Result<bool> {
    if store.account_key()? == *me.public() {
        return Ok(false);
    }
    let id = store.own_device_id()?;
    Ok(!store
        .own_devices()?
        .and_then(|list| list.device(id).map(|d| d.identity))
        .is_some_and(|key| key == *me.public()))
}

/// A message that passed every check but decryption, on its way into the
/// store.
struct Incoming<'a> {
    /// The conversation's account: the sender's, or for a "sent" copy the
    /// account it was sent to.
    conversation: Address,
    device: PeerDevice,
    /// The device key the sealed layer authenticated.
    sender: IdentityKey,
    /// The access key to remember for the contact (none for our own
    /// devices' copies).
    access_key: Option<AccessKey>,
    ciphertext: &'a [u8],
    /// The blob of a detached body (payload kind 0x09).
    detached: Option<&'a [u8]>,
    message_id: [u8; 16],
    sent_at: u64,
    /// A group control (payload kind 0x0C), kept apart from the chat.
    control: bool,
}

/// A message between accounts' devices (payload kind 0x05): it must be
/// addressed to this account, and its sender must be the device that the
/// held list of the sending account names (our own list for a "sent"
/// copy from one of our devices).
fn device_message(
    store: &mut Store,
    sender: &IdentityKey,
    payload: &payload::Payload<'_>,
    detached: Option<&[u8]>,
    now: u64,
) -> sotto_store::Result<Outcome> {
    let Some(m) = payload.device_message() else {
        return Ok(Outcome::Dropped(DropReason::Malformed));
    };
    let mine = store.account_key()?;
    let (account, device) = if m.from_account == mine {
        if m.to_account == mine {
            return Ok(Outcome::Dropped(DropReason::Malformed));
        }
        (m.to_account, PeerDevice::Own(m.from_device))
    } else {
        if m.to_account != mine {
            return Ok(Outcome::Dropped(DropReason::Misdirected));
        }
        (m.from_account, PeerDevice::Contact(m.from_device))
    };
    let conversation = Address::of(&account);
    let id = conversation.to_string();
    let contact = store.contact(&id)?;
    if contact
        .as_ref()
        .is_some_and(|c| c.identity_key.is_some_and(|k| k != account))
    {
        return Ok(Outcome::Dropped(DropReason::NotAContact));
    }
    let vouched = if device == PeerDevice::CONTACT_PRIMARY {
        Some(m.from_account)
    } else if contact.is_none() && !device.is_own() {
        None
    } else {
        store.device_key(&id, device)?
    };
    if vouched != Some(*sender) {
        return Ok(Outcome::UnknownDevice {
            account: m.from_account,
        });
    }
    let incoming = Incoming {
        conversation,
        device,
        sender: *sender,
        access_key: (!device.is_own()).then_some(m.access_key),
        ciphertext: m.message,
        detached,
        message_id: payload.message_id,
        sent_at: payload.sent_at,
        control: payload.kind == payload::KIND_GROUP_CONTROL,
    };
    store_message(store, contact, incoming, now)
}

/// Stores a message that came through the checks above (rules 3, 5 and 6).
fn store_message(
    store: &mut Store,
    contact: Option<sotto_store::Contact>,
    m: Incoming<'_>,
    now: u64,
) -> sotto_store::Result<Outcome> {
    let id = m.conversation.to_string();
    let account = *m.conversation.identity_key();
    // A first message from someone not yet in the contacts (or a copy of
    // one we sent from another device to someone this device does not
    // know yet): keep it under their address until the user names them.
    let (created, name) = match contact {
        Some(c) => (false, c.name),
        None => {
            store.add_contact(&id, "", Some(&account))?;
            (true, String::new())
        }
    };
    let envelope = sotto_store::Envelope {
        id: EnvelopeId(m.message_id),
        sender: &id,
        device: m.device,
        ciphertext: m.ciphertext,
        sent_at: m.sent_at,
        received_at: now,
    };
    let result = if m.control {
        store.receive_control(&envelope)
    } else {
        store.receive_with_body(&envelope, m.detached)
    };
    if result.is_err() && created {
        let _ = store.delete_contact(&id);
    }
    // A message that decrypted, from a device of the account pinned for
    // this contact (the sealed layer authenticated it): from now on we
    // present its access key when we write to it. Best effort: the
    // message is stored already, and every later message carries the key
    // again.
    if matches!(result, Ok(Received::Stored(_) | Received::Duplicate))
        && let Some(access_key) = &m.access_key
    {
        let _ = store.set_contact_access_key(&id, &account, access_key);
    }
    let from = m.conversation;
    // The receipt goes to the device that sent it; for a copy from one of
    // ours, in our own account's name.
    let owed = Owed {
        to: m.sender,
        account: if m.device.is_own() {
            store.account_key()?
        } else {
            account
        },
        id: envelope.id,
    };
    let undecryptable = |reason, notify| Outcome::Undecryptable {
        from,
        reason,
        notify,
    };
    Ok(match result {
        Ok(Received::Stored(_)) if m.control => Outcome::Control {
            contact: id,
            receipt: owed,
        },
        Ok(Received::Stored(stored)) => {
            let attachment = super::attachments::describe_reference(&stored.body);
            Outcome::Stored {
                message: Box::new(IncomingMessage {
                    contact: from,
                    name,
                    seq: stored.seq,
                    body: if attachment.is_some() {
                        Vec::new()
                    } else {
                        stored.body.to_vec()
                    },
                    received_at: stored.timestamp,
                    attachment,
                }),
                sent_copy: m.device.is_own(),
                receipt: owed,
            }
        }
        Ok(Received::Duplicate) => Outcome::Duplicate {
            receipt: Some(owed),
        },
        Ok(_) => Outcome::Duplicate { receipt: None },
        Err(sotto_store::Error::Protocol(e)) => {
            let provocable = matches!(
                e,
                sotto_core::Error::Duplicate(_) | sotto_core::Error::TooManySkipped { .. }
            );
            let late = !created && m.sent_at < store.newest_sent_at(&id)?;
            // Session recovery runs between primary devices.
            let primary = m.device == PeerDevice::CONTACT_PRIMARY;
            let notify = (!created && !provocable && !late && primary)
                .then(|| CiphertextDigest::of(m.ciphertext));
            undecryptable(Undecryptable::Protocol(e), notify)
        }
        // A replayed first message: nothing to resend.
        Err(sotto_store::Error::ReplayedFirstMessage) => {
            undecryptable(Undecryptable::ReplayedFirstMessage, None)
        }
        Err(sotto_store::Error::IdentityMismatch) => {
            undecryptable(Undecryptable::IdentityMismatch, None)
        }
        Err(sotto_store::Error::UnknownDevice) => Outcome::Dropped(DropReason::UnknownDevice),
        Err(e) => return Err(e),
    })
}

/// A receipt from the device `sender` (rule 2): a delivery receipt
/// confirms only the envelopes that were encrypted to that very device; a
/// read receipt counts from a contact's primary device.
fn receipt(
    store: &mut Store,
    sender: &IdentityKey,
    known: bool,
    kind: ReceiptKind,
    ids: &[EnvelopeId],
) -> sotto_store::Result<Outcome> {
    let contact = Address::of(sender);
    match kind {
        ReceiptKind::Delivered => {
            let mut confirmed = store.confirm_delivery(sender, ids)?;
            // Controls (groups) are not the chat's messages.
            confirmed.retain(|(conversation, _)| !conversation.starts_with('#'));
            let Some((first, _)) = confirmed.first() else {
                return Ok(if known {
                    Outcome::Receipt {
                        contact,
                        kind,
                        seqs: Vec::new(),
                    }
                } else {
                    Outcome::Dropped(DropReason::NotAContact)
                });
            };
            let contact = first.parse().unwrap_or(contact);
            let seqs = confirmed.into_iter().map(|(_, seq)| seq).collect();
            Ok(Outcome::Receipt {
                contact,
                kind,
                seqs,
            })
        }
        ReceiptKind::Read if known => {
            let seqs = store.mark_read_by_contact(&contact.to_string(), ids)?;
            Ok(Outcome::Receipt {
                contact,
                kind,
                seqs,
            })
        }
        ReceiptKind::Read => Ok(Outcome::Dropped(DropReason::NotAContact)),
    }
}

/// Records that `sender` (contact id `id`, `contact` if known) claims to be
/// the contact whose identity was `previous` (rule 4).
fn claim_identity_change(
    store: &mut Store,
    id: &str,
    contact: Option<&sotto_store::Contact>,
    sender: &IdentityKey,
    previous: &IdentityKey,
) -> sotto_store::Result<Outcome> {
    let previous_address = Address::of(previous);
    let previous_id = previous_address.to_string();
    let named = store
        .contact(&previous_id)?
        .filter(|c| !c.name.is_empty() && c.identity_key.as_ref() == Some(previous));
    let (Some(named), false) = (named, previous == sender) else {
        return Ok(Outcome::Dropped(DropReason::NotAContact));
    };
    match contact {
        // A named contact does not become someone else.
        Some(c) if !c.name.is_empty() => return Ok(Outcome::Dropped(DropReason::NotAContact)),
        Some(_) => {}
        None => store.add_contact(id, "", Some(sender))?,
    }
    store.set_contact_claim(id, Some(&previous_id))?;
    Ok(Outcome::IdentityChangeClaimed {
        previous: previous_address,
        name: named.name,
        claimant: Address::of(sender),
    })
}

#[cfg(test)]
#[path = "receive_tests.rs"]
mod tests;
