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
//! 2. Receipts and decryption-error notices count only from a contact
//!    whose pinned identity is the authenticated sender; from anyone else
//!    they are dropped.
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
//!    the session evidently works and the message is merely late.

use sotto_core::{IdentityKey, IdentityKeyPair};
use sotto_store::{CiphertextDigest, EnvelopeId, Received, Store};

use super::types::{DropReason, IncomingMessage, Undecryptable};
use crate::address::Address;
use crate::payload::{self, PayloadError, ReceiptKind};

/// A delivery receipt owed: to whom, for which envelope.
pub(crate) type Owed = (IdentityKey, EnvelopeId);

/// What one envelope came to. Short-lived (one per envelope, moved once):
/// its variants' sizes do not matter.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Outcome {
    /// A new message, committed to history; a delivery receipt is owed.
    Stored {
        message: Box<IncomingMessage>,
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
    /// A contact's decryption-error notice about our ciphertext `failed`:
    /// answering it needs the relay (a new bundle, a resend).
    Notice {
        contact: Address,
        failed: CiphertextDigest,
    },
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
    sealed: &[u8],
    now: u64,
) -> sotto_store::Result<Outcome> {
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
            if !known {
                return Ok(Outcome::Dropped(DropReason::NotAContact));
            }
            let seqs = match kind {
                ReceiptKind::Delivered => store.mark_delivered(&id, &ids)?,
                ReceiptKind::Read => store.mark_read_by_contact(&id, &ids)?,
            };
            return Ok(Outcome::Receipt {
                contact: from,
                kind,
                seqs,
            });
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
        _ => {}
    }

    // A message: the sender's access key, then the sotto-core message.
    let Some((access_key, ciphertext)) = payload.message() else {
        return Ok(Outcome::Dropped(DropReason::Malformed));
    };
    // A first message from someone not yet in the contacts: keep it under
    // their address until the user names them.
    let (created, name) = match contact {
        Some(c) => (false, c.name),
        None => {
            store.add_contact(&id, "", Some(&sender))?;
            (true, String::new())
        }
    };
    let envelope = sotto_store::Envelope {
        id: EnvelopeId(payload.message_id),
        sender: &id,
        ciphertext,
        sent_at: payload.sent_at,
        received_at: now,
    };
    let result = store.receive(&envelope);
    if result.is_err() && created {
        let _ = store.delete_contact(&id);
    }
    // A message that decrypted, from the identity pinned for this contact
    // (the sealed layer authenticated it): from now on we present its
    // access key when we write to it. Best effort: the message is stored
    // already, and every later message carries the key again.
    if matches!(result, Ok(Received::Stored(_) | Received::Duplicate)) {
        let _ = store.set_contact_access_key(&id, &sender, &access_key);
    }
    let undecryptable = |reason, notify| Outcome::Undecryptable {
        from,
        reason,
        notify,
    };
    Ok(match result {
        Ok(Received::Stored(m)) => Outcome::Stored {
            message: Box::new(IncomingMessage {
                contact: from,
                name,
                seq: m.seq,
                body: m.body.to_vec(),
                received_at: m.timestamp,
            }),
            receipt: (sender, envelope.id),
        },
        Ok(Received::Duplicate) => Outcome::Duplicate {
            receipt: Some((sender, envelope.id)),
        },
        Ok(_) => Outcome::Duplicate { receipt: None },
        Err(sotto_store::Error::Protocol(e)) => {
            let provocable = matches!(
                e,
                sotto_core::Error::Duplicate(_) | sotto_core::Error::TooManySkipped { .. }
            );
            let late = !created && payload.sent_at < store.newest_sent_at(&id)?;
            let notify =
                (!created && !provocable && !late).then(|| CiphertextDigest::of(ciphertext));
            undecryptable(Undecryptable::Protocol(e), notify)
        }
        // A replayed first message: nothing to resend.
        Err(sotto_store::Error::ReplayedFirstMessage) => {
            undecryptable(Undecryptable::ReplayedFirstMessage, None)
        }
        Err(sotto_store::Error::IdentityMismatch) => {
            undecryptable(Undecryptable::IdentityMismatch, None)
        }
        Err(e) => return Err(e),
    })
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
