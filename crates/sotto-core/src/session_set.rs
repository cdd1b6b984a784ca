//! All sessions with one remote identity (PROTOCOL.md: simultaneous
//! initiation keeps both sessions, decrypts with whichever matches, and
//! sends with the one that most recently decrypted).

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::{IdentityKey, IdentityKeyPair, PreKeyBundle, PreKeySource, SignedPreKeyId};
use crate::ratchet::{Decrypted, Session};
use crate::wire::{Reader, WireMessage};

/// How many sessions a set keeps; older ones are dropped.
pub const MAX_SESSIONS: usize = 5;

/// Version byte of the serialized set.
pub const SESSION_SET_VERSION: u8 = 0x01;

/// The sessions with one remote identity, most recently used first.
#[derive(Clone, Default)]
pub struct SessionSet {
    sessions: Vec<Session>,
}

impl SessionSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// True if there is a session to send with.
    pub fn has_session(&self) -> bool {
        !self.sessions.is_empty()
    }

    /// Number of sessions held.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True if the set holds no session.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The session that sends (the one that most recently decrypted or was
    /// created).
    pub fn active(&self) -> Option<&Session> {
        self.sessions.first()
    }

    /// The identity of the other party, if any session exists.
    pub fn remote_identity(&self) -> Option<&IdentityKey> {
        self.sessions.first().map(Session::remote_identity)
    }

    /// Starts a new session from `bundle` and makes it the active one.
    /// Refuses ([`Error::Downgrade`]) a bundle of a lower protocol version
    /// than a session already held with the same identity.
    pub fn initiate<R: CryptoRng + ?Sized>(
        &mut self,
        local: &IdentityKeyPair,
        bundle: &PreKeyBundle,
        rng: &mut R,
    ) -> Result<()> {
        self.initiate_at_least(local, bundle, 1, rng)
    }

    /// [`initiate`](Self::initiate), requiring protocol version
    /// `min_version` or higher of the bundle (for example because the
    /// owner's address says it speaks version 2): a lower one is
    /// [`Error::Downgrade`] and changes nothing.
    pub fn initiate_at_least<R: CryptoRng + ?Sized>(
        &mut self,
        local: &IdentityKeyPair,
        bundle: &PreKeyBundle,
        min_version: u8,
        rng: &mut R,
    ) -> Result<()> {
        if let Some(existing) = self.remote_identity()
            && *existing != bundle.identity_key
        {
            return Err(Error::IdentityMismatch);
        }
        // A remote identity that has spoken protocol version 2 with us
        // speaks it: a bundle without a KEM prekey for it now means the
        // relay stripped it (docs/protocol.md 16.7).
        let required = self.highest_version().max(min_version);
        let session = Session::initiate_at_least(local, bundle, required, rng)?;
        self.promote(session);
        Ok(())
    }

    /// The highest protocol version of the sessions held (1 when empty):
    /// what [`initiate`](Self::initiate) requires of a new bundle.
    pub fn highest_version(&self) -> u8 {
        self.sessions
            .iter()
            .map(Session::version)
            .max()
            .unwrap_or(1)
    }

    /// Encrypts with the active session.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encrypt_into(plaintext, &mut out)?;
        Ok(out)
    }

    /// Encrypts with the active session into `out`.
    pub fn encrypt_into(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.sessions
            .first_mut()
            .ok_or(Error::NoChain("sending"))?
            .encrypt_into(plaintext, out)
    }

    /// For a PreKeyMessage that no session of this set matches, the signed
    /// prekey id and base key of the X3DH run that decrypting it would start;
    /// `None` for anything else (a plain Message, a PreKeyMessage of an
    /// existing session, bytes that do not parse). A store remembers these
    /// to refuse a first message that is replayed after its session left
    /// the set (docs/protocol.md, "Replays").
    ///
    /// Cheap: it reads the fixed fields of a PreKeyMessage (docs/protocol.md
    /// "Wire format") without validating the identity key; decrypting
    /// validates the whole message.
    pub fn would_start_session(&self, message: &[u8]) -> Option<(SignedPreKeyId, [u8; 32])> {
        let (&[version, kind], rest) = message.split_first_chunk::<2>()?;
        if !matches!(version, crate::wire::VERSION | crate::wire::VERSION_V2)
            || kind != crate::wire::TYPE_PREKEY_MESSAGE
        {
            return None;
        }
        let (identity, rest) = rest.split_first_chunk::<32>()?;
        let (base_key, rest) = rest.split_first_chunk::<32>()?;
        let (spk_id, _) = rest.split_first_chunk::<4>()?;
        if self
            .sessions
            .iter()
            .any(|s| s.matches_x3dh_run(identity, base_key))
        {
            return None;
        }
        Some((SignedPreKeyId::new(u32::from_be_bytes(*spk_id)), *base_key))
    }

    /// Decrypts a message from the remote identity, creating a session for a
    /// new PreKeyMessage. The session that decrypts becomes the active one.
    /// On error nothing changes.
    pub fn decrypt<R: CryptoRng + ?Sized>(
        &mut self,
        local: &IdentityKeyPair,
        prekeys: &(impl PreKeySource + ?Sized),
        message: &[u8],
        rng: &mut R,
    ) -> Result<Decrypted> {
        let mut plaintext = Vec::new();
        match WireMessage::parse(message)? {
            WireMessage::PreKey(p) => {
                if let Some(i) = self
                    .sessions
                    .iter()
                    .position(|s| s.matches_prekey_message(&p))
                {
                    let mut session = self.sessions[i].clone();
                    session.decrypt_message(&p.message, &mut plaintext, rng)?;
                    self.sessions.remove(i);
                    self.promote(session);
                    return Ok(Decrypted {
                        plaintext,
                        used_one_time_prekey: None,
                        used_kem_prekey: None,
                        new_session: false,
                    });
                }
                if let Some(existing) = self.remote_identity()
                    && *existing != p.identity_key
                {
                    return Err(Error::IdentityMismatch);
                }
                let (session, used) =
                    Session::respond_parsed(local, prekeys, &p, &mut plaintext, rng)?;
                self.promote(session);
                Ok(Decrypted {
                    plaintext,
                    used_one_time_prekey: used,
                    used_kem_prekey: p.kem.map(|(id, _)| id),
                    new_session: true,
                })
            }
            WireMessage::Message(m) => {
                let mut first_error = None;
                for i in 0..self.sessions.len() {
                    let mut session = self.sessions[i].clone();
                    match session.decrypt_message(&m, &mut plaintext, rng) {
                        Ok(()) => {
                            self.sessions.remove(i);
                            self.promote(session);
                            return Ok(Decrypted {
                                plaintext,
                                used_one_time_prekey: None,
                                used_kem_prekey: None,
                                new_session: false,
                            });
                        }
                        // A duplicate in any session is the most precise answer.
                        Err(Error::Duplicate(n)) => return Err(Error::Duplicate(n)),
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                Err(first_error.unwrap_or(Error::NoChain("receiving")))
            }
        }
    }

    fn promote(&mut self, session: Session) {
        self.sessions.insert(0, session);
        self.sessions.truncate(MAX_SESSIONS);
    }

    /// Serializes every session: `0x01 || u8(count) || count * (u32be(len)
    /// || session bytes)`. Contains secrets; wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let parts: Vec<Zeroizing<Vec<u8>>> = self.sessions.iter().map(Session::to_bytes).collect();
        let total = 2 + parts.iter().map(|p| 4 + p.len()).sum::<usize>();
        let mut out = Zeroizing::new(Vec::with_capacity(total));
        out.push(SESSION_SET_VERSION);
        out.push(self.sessions.len() as u8);
        for p in &parts {
            out.extend_from_slice(&(p.len() as u32).to_be_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    /// Restores a set from [`SessionSet::to_bytes`] output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let bad = |_| Error::CorruptState("session set");
        let version = r.u8().map_err(bad)?;
        if version != SESSION_SET_VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let count = usize::from(r.u8().map_err(bad)?);
        if count > MAX_SESSIONS {
            return Err(Error::CorruptState("too many sessions"));
        }
        let mut sessions = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.u32().map_err(bad)? as usize;
            let session = Session::from_bytes(r.take(len).map_err(bad)?)?;
            if let Some(first) = sessions.first().map(Session::remote_identity)
                && first != session.remote_identity()
            {
                return Err(Error::CorruptState("mixed identities in session set"));
            }
            sessions.push(session);
        }
        r.finish().map_err(bad)?;
        Ok(Self { sessions })
    }
}

impl core::fmt::Debug for SessionSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionSet")
            .field("sessions", &self.sessions)
            .finish()
    }
}
