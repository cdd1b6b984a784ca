//! Contacts, their pinned identity keys, and starting sessions.

use sotto_core::{AccessKey, IdentityKey, PreKeyBundle, SafetyNumber};

use crate::error::{Error, Result};
use crate::records::{ContactRecord, check_contact_id, check_contact_name, check_new_contact_id};
use crate::store::Store;
use crate::types::{Contact, PeerDevice};

impl From<ContactRecord> for Contact {
    fn from(r: ContactRecord) -> Self {
        Self {
            id: r.id,
            name: r.name,
            identity_key: r.identity_key,
            verified: r.verified,
            access_key: r.access_key,
            claims_to_succeed: r.claims_to_succeed,
            min_protocol_version: r.min_version,
        }
    }
}

impl Store {
    /// Adds a contact. `id` is the application's identifier for them (for
    /// example their relay account); `identity_key`, if known, is pinned:
    /// sessions with another key are refused.
    pub fn add_contact(
        &mut self,
        id: &str,
        name: &str,
        identity_key: Option<&IdentityKey>,
    ) -> Result<()> {
        self.add_contact_speaking(id, name, identity_key, 1)
    }

    /// [`add_contact`](Self::add_contact) and
    /// [`require_protocol_version`](Self::require_protocol_version) in one
    /// transaction: the contact never exists without the version its
    /// address said.
    pub fn add_contact_speaking(
        &mut self,
        id: &str,
        name: &str,
        identity_key: Option<&IdentityKey>,
        min_version: u8,
    ) -> Result<()> {
        check_new_contact_id(id)?;
        check_protocol_version(min_version)?;
        check_contact_name(name)?;
        self.write(|db, rng| {
            if db.contact(id)?.is_some() {
                return Err(Error::ContactExists);
            }
            db.put_contact(
                rng,
                &ContactRecord {
                    recovery: Default::default(),
                    id: id.to_owned(),
                    name: name.to_owned(),
                    identity_key: identity_key.copied(),
                    verified: false,
                    newest_sent_at: 0,
                    access_key: None,
                    claims_to_succeed: None,
                    min_version,
                },
            )
        })
    }

    /// The newest `sent_at` (by the contact's clock) of any message
    /// decrypted from contact `id`; 0 if none or unknown. A message that
    /// cannot be decrypted and claims an older time is a late arrival
    /// whose keys are gone, not a sign that the session broke.
    pub fn newest_sent_at(&self, id: &str) -> Result<u64> {
        check_contact_id(id)?;
        Ok(self
            .read(|db| db.contact(id))?
            .map_or(0, |c| c.newest_sent_at))
    }

    /// The contact with this id.
    pub fn contact(&self, id: &str) -> Result<Option<Contact>> {
        check_contact_id(id)?;
        Ok(self.read(|db| db.contact(id))?.map(Contact::from))
    }

    /// Every contact, in no particular order. A row that cannot be read
    /// is reported in place and does not hide the others.
    pub fn contacts(&self) -> Result<Vec<Result<Contact>>> {
        Ok(self
            .read(|db| db.all_contacts())?
            .into_iter()
            .map(|r| r.map(Contact::from))
            .collect())
    }

    /// Changes a contact's display name.
    pub fn rename_contact(&mut self, id: &str, name: &str) -> Result<()> {
        check_contact_id(id)?;
        check_contact_name(name)?;
        self.update_contact(id, |c| c.name = name.to_owned())
    }

    /// Records that contact `id` speaks protocol version `version` (1 or
    /// 2), as its address said: from now on a new session with its primary
    /// device is started only from a bundle of that version or higher, and
    /// a lower one is refused with `Protocol(Downgrade)` (a relay that
    /// stripped the KEM prekey, docs/protocol.md 16.7). Never lowers what
    /// was recorded before. A version this store does not know is
    /// `Protocol(UnsupportedVersion)`.
    pub fn require_protocol_version(&mut self, id: &str, version: u8) -> Result<()> {
        check_contact_id(id)?;
        check_protocol_version(version)?;
        self.update_contact(id, |c| c.min_version = c.min_version.max(version))
    }

    /// Records (or, with `None`, clears) that contact `id` claims to be the
    /// new identity of contact `previous` (an identity change the user has
    /// not decided on yet).
    pub fn set_contact_claim(&mut self, id: &str, previous: Option<&str>) -> Result<()> {
        check_contact_id(id)?;
        if let Some(previous) = previous {
            check_contact_id(previous)?;
        }
        self.update_contact(id, |c| c.claims_to_succeed = previous.map(str::to_owned))
    }

    /// Accepts that contact `successor` is the new identity of contact
    /// `previous`, as `successor` claimed ([`set_contact_claim`](Self::set_contact_claim)),
    /// in one transaction: `successor` takes `previous`'s name, unverified
    /// (its safety number is new), and its claim is settled; `previous`
    /// keeps its history under its old identity, without a name. Refused
    /// with [`Error::UnknownContact`] unless `successor` claims exactly
    /// `previous`.
    pub fn accept_successor(&mut self, previous: &str, successor: &str) -> Result<()> {
        check_contact_id(previous)?;
        check_contact_id(successor)?;
        self.write(|db, rng| {
            let mut old = db.contact(previous)?.ok_or(Error::UnknownContact)?;
            let mut new = db.contact(successor)?.ok_or(Error::UnknownContact)?;
            if new.claims_to_succeed.as_deref() != Some(previous) {
                return Err(Error::UnknownContact);
            }
            new.name = std::mem::take(&mut old.name);
            new.verified = false;
            new.claims_to_succeed = None;
            db.put_contact(rng, &old)?;
            db.put_contact(rng, &new)
        })
    }

    /// Records whether the user verified the contact's safety number.
    pub fn set_contact_verified(&mut self, id: &str, verified: bool) -> Result<()> {
        check_contact_id(id)?;
        self.update_contact(id, |c| c.verified = verified)
    }

    /// Remembers the unidentified-access key that contact `id` gave us (in
    /// a message it sent), to present to the relay when sending to it
    /// (docs/relay.md §6). `from` is the identity that authenticated the
    /// message: the key is kept only if it is the identity pinned for the
    /// contact, so nobody else can set it ([`Error::IdentityMismatch`]).
    /// Returns whether the stored key changed; the same key again writes
    /// nothing.
    pub fn set_contact_access_key(
        &mut self,
        id: &str,
        from: &IdentityKey,
        key: &AccessKey,
    ) -> Result<bool> {
        check_contact_id(id)?;
        self.write(|db, rng| {
            let mut record = db.contact(id)?.ok_or(Error::UnknownContact)?;
            if record.identity_key.as_ref() != Some(from) {
                return Err(Error::IdentityMismatch);
            }
            if record.access_key.as_ref() == Some(key) {
                return Ok(false);
            }
            record.access_key = Some(key.clone());
            db.put_contact(rng, &record)?;
            Ok(true)
        })
    }

    fn update_contact(&mut self, id: &str, change: impl FnOnce(&mut ContactRecord)) -> Result<()> {
        self.write(|db, rng| {
            let mut record = db.contact(id)?.ok_or(Error::UnknownContact)?;
            change(&mut record);
            db.put_contact(rng, &record)
        })
    }

    /// Deletes a contact with its sessions and its conversation (messages
    /// and conversation key); returns whether the contact existed.
    pub fn delete_contact(&mut self, id: &str) -> Result<bool> {
        check_contact_id(id)?;
        let existed = self.write(|db, _| {
            let conversation = db.conversation_lookup(id);
            db.delete_conversation(&conversation)?;
            db.delete_contact(id)
        })?;
        self.checkpoint()?;
        Ok(existed)
    }

    /// Starts a session with `contact` from their prekey bundle (verifying
    /// its signature) and stores it; the next [`send`](Self::send) uses it.
    ///
    /// The bundle's identity key is pinned if the contact had none; a
    /// different pinned key is [`Error::IdentityMismatch`].
    pub fn start_session(&mut self, contact: &str, bundle: &PreKeyBundle) -> Result<()> {
        self.start_session_with(contact, PeerDevice::CONTACT_PRIMARY, bundle)
    }

    /// Starts a session with `device`, seen from the conversation with
    /// `contact` (one of the contact's devices, or one of our own), from the
    /// device's prekey bundle. For the contact's primary device this is
    /// [`start_session`](Self::start_session); any other device must be
    /// vouched for by a device list held here, under the bundle's identity
    /// key ([`Error::UnknownDevice`], [`Error::IdentityMismatch`]).
    pub fn start_session_with(
        &mut self,
        contact: &str,
        device: PeerDevice,
        bundle: &PreKeyBundle,
    ) -> Result<()> {
        check_contact_id(contact)?;
        self.write(|db, rng| {
            // What the contact's address said it speaks binds its primary
            // device; the others are vouched for by its device list.
            let mut min_version = 1;
            if device == PeerDevice::CONTACT_PRIMARY {
                let mut record = db.contact(contact)?.ok_or(Error::UnknownContact)?;
                min_version = record.min_version;
                match &record.identity_key {
                    Some(pinned) if *pinned != bundle.identity_key => {
                        return Err(Error::IdentityMismatch);
                    }
                    Some(_) => {}
                    None => {
                        record.identity_key = Some(bundle.identity_key);
                        db.put_contact(rng, &record)?;
                    }
                }
            } else {
                let key =
                    crate::devices::peer_key(db, contact, device)?.ok_or(Error::UnknownDevice)?;
                if key != bundle.identity_key {
                    return Err(Error::IdentityMismatch);
                }
            }
            let identity = db.identity()?;
            let lookup = db.session_lookup(contact, device);
            let mut sessions = db.sessions(&lookup)?;
            sessions.initiate_at_least(&identity, bundle, min_version, rng)?;
            db.put_sessions(rng, &lookup, &sessions)
        })
    }

    /// True if there is a session to send to `contact`'s primary device
    /// with.
    pub fn has_session(&self, contact: &str) -> Result<bool> {
        self.has_session_with(contact, PeerDevice::CONTACT_PRIMARY)
    }

    /// True if there is a session to send to `device` with, seen from the
    /// conversation with `contact`.
    pub fn has_session_with(&self, contact: &str, device: PeerDevice) -> Result<bool> {
        check_contact_id(contact)?;
        self.read(|db| {
            Ok(db
                .sessions(&db.session_lookup(contact, device))?
                .has_session())
        })
    }

    /// The safety number with `contact`, once their identity key is known.
    pub fn safety_number(&self, contact: &str) -> Result<Option<SafetyNumber>> {
        check_contact_id(contact)?;
        self.read(|db| {
            let record = db.contact(contact)?.ok_or(Error::UnknownContact)?;
            // Between accounts: the same on every device of both.
            let local = crate::devices::account_key(db)?;
            Ok(record
                .identity_key
                .map(|theirs| sotto_core::safety_number(&local, &theirs)))
        })
    }
}

/// A protocol version a contact can be required to speak: 1 or 2.
fn check_protocol_version(version: u8) -> Result<()> {
    if (1..=2).contains(&version) {
        Ok(())
    } else {
        Err(Error::Protocol(sotto_core::Error::UnsupportedVersion(
            version,
        )))
    }
}
