//! Identity changes: a contact who lost (or replaced) their identity key
//! has a new address. The new identity tells its contacts which identity it
//! replaces; each contact's user compares the new safety number out of
//! band and accepts the change, or refuses it. Until then the new
//! identity's messages stay apart, under its own address.
//!
//! Nothing proves such a claim (the old key may be gone): anyone can claim
//! to be anyone, which is why it is only ever a question to the user, with
//! both safety numbers, and never applied by itself.

use sotto_relay::{MailboxAddress, MessageId};

use super::Client;
use super::shared::{Shared, now_ms};
use super::types::IdentityChange;
use crate::address::Address;
use crate::error::{Error, Result};
use crate::payload;

impl Shared {
    /// The event for `claimant` claiming to be `previous`, with both
    /// safety numbers.
    pub(crate) fn identity_change(
        &self,
        previous: Address,
        name: String,
        claimant: Address,
    ) -> IdentityChange {
        let me = &self.account;
        IdentityChange {
            old_safety_number: sotto_core::safety_number(me, previous.identity_key()),
            new_safety_number: sotto_core::safety_number(me, claimant.identity_key()),
            contact: previous,
            name,
            new_address: claimant,
        }
    }
}

impl Client {
    /// Tells `contact` (a name or an address) that this profile is the new
    /// identity of `previous`, the address this user had before. The
    /// contact's app asks its user to compare the new safety number and
    /// accept. Needs the relay.
    pub async fn announce_identity_change(&self, contact: &str, previous: &Address) -> Result<()> {
        if previous == &self.address() {
            return Err(Error::OwnAddress);
        }
        let contact = self.resolve(contact).await?;
        let identity = contact
            .identity_key
            .ok_or_else(|| Error::UnknownContact(contact.name.clone()))?;
        let conn = self.connection()?;
        let change_id = MessageId::random().map_err(|_| Error::NoRandomness)?;
        let claim =
            payload::encode_identity_change(&change_id.0, now_ms(), previous.identity_key());
        let sealed = payload::seal(&self.shared.identity, &identity, &claim)?;
        let access = self.shared.access_key_for(&identity).await;
        conn.send(
            &MailboxAddress::of(&identity),
            change_id,
            access.as_ref(),
            &sealed,
        )
        .await?;
        tracing::info!("identity change announced");
        Ok(())
    }

    /// The identity changes waiting for the user's decision.
    pub async fn identity_changes(&self) -> Result<Vec<IdentityChange>> {
        let claims = self
            .shared
            .with_store(|s| {
                let mut claims = Vec::new();
                for contact in s.contacts()?.into_iter().flatten() {
                    let Some(previous) = contact.claims_to_succeed else {
                        continue;
                    };
                    let Some(old) = s.contact(&previous)? else {
                        continue;
                    };
                    claims.push((old.id, old.name, contact.id));
                }
                Ok(claims)
            })
            .await?;
        Ok(claims
            .into_iter()
            .filter_map(|(previous, name, claimant)| {
                Some(self.shared.identity_change(
                    previous.parse().ok()?,
                    name,
                    claimant.parse().ok()?,
                ))
            })
            .collect())
    }

    /// Accepts that `new_address` is the contact it claimed to be (see
    /// [`ClientEvent::IdentityChanged`](crate::ClientEvent::IdentityChanged)):
    /// it takes the contact's name, unverified, and its messages are that
    /// contact's conversation from now on; the old identity keeps its
    /// history, without a name. Compare the new safety number first.
    pub async fn accept_identity_change(&self, new_address: &Address) -> Result<()> {
        let claimant = new_address.to_string();
        self.shared
            .with_store_result(move |s| {
                let Some(previous) = s.contact(&claimant)?.and_then(|c| c.claims_to_succeed) else {
                    return Ok(Err(Error::NoIdentityChange));
                };
                s.accept_successor(&previous, &claimant)?;
                Ok(Ok(()))
            })
            .await?;
        tracing::info!("identity change accepted");
        Ok(())
    }

    /// Refuses the identity change claimed by `new_address`: the claim is
    /// forgotten, the contact keeps its identity, and the claimant stays a
    /// stranger (its messages stay under its own address).
    pub async fn refuse_identity_change(&self, new_address: &Address) -> Result<()> {
        let claimant = new_address.to_string();
        self.shared
            .with_store_result(move |s| {
                if s.contact(&claimant)?
                    .and_then(|c| c.claims_to_succeed)
                    .is_none()
                {
                    return Ok(Err(Error::NoIdentityChange));
                }
                s.set_contact_claim(&claimant, None)?;
                Ok(Ok(()))
            })
            .await?;
        tracing::info!("identity change refused");
        Ok(())
    }
}
