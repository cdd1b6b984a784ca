//! Double Ratchet sessions (PROTOCOL.md "Double Ratchet").

mod chain_key;
#[cfg(test)]
mod memory_hygiene;
mod message_key;
mod root_key;
mod skipped;
mod state;

use rand_core::CryptoRng;

use crate::error::{Error, Result};
use crate::keys::{
    IdentityKey, IdentityKeyPair, KemCiphertext, KemPreKeyId, OneTimePreKeyId, PreKeyBundle,
    PreKeySource, Secret32, SignedPreKeyId, diffie_hellman, encapsulate, random_secret,
    x25519_public,
};
use crate::wire::{
    HEADER_LEN, Header, Message, PreKeyMessage, TAG_LEN, TYPE_MESSAGE, VERSION, VERSION_V2,
    WireMessage, write_prekey_prefix,
};
use crate::x3dh::{self, AD_LEN};
use chain_key::ChainKey;
use message_key::MessageKey;
use root_key::RootKey;
use skipped::SkippedKeys;

pub use message_key::MESSAGE_INFO;
pub use root_key::RATCHET_INFO;
pub use skipped::MAX_SKIPPED_KEYS;
pub use state::{SESSION_STATE_VERSION, SESSION_STATE_VERSION_V2, SESSION_STATE_VERSION_V3};

/// The most message keys one header may make a chain skip.
pub const MAX_SKIP: u32 = 1000;

/// Length of the AEAD associated data of version 1: `AD || 0x01 || header`.
const AEAD_AD_LEN: usize = AD_LEN + 1 + HEADER_LEN;
/// Length of the AEAD associated data of version 2: `AD || 0x02 || header`
/// and zero bytes up to 128, so that Poly1305 starts the ciphertext on a
/// 64-byte boundary of its input (PROTOCOL.md section 16, "AEAD").
pub const AEAD_AD_LEN_V2: usize = 128;

/// The AEAD's associated data of one message.
struct AeadAd {
    bytes: [u8; AEAD_AD_LEN_V2],
    len: usize,
}

impl AeadAd {
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Which side of X3DH created the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Ran X3DH from a bundle and sent first (Alice).
    Initiator,
    /// Was created by a PreKeyMessage (Bob).
    Responder,
}

/// An X25519 ratchet key pair.
#[derive(Clone, Debug)]
pub(crate) struct RatchetKeyPair {
    private: Secret32,
    public: [u8; 32],
}

impl RatchetKeyPair {
    fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_private(random_secret(rng))
    }

    pub(crate) fn from_private(private: Secret32) -> Self {
        let public = x25519_public(&private);
        Self { private, public }
    }

    /// A pair restored from state this library wrote: the public half is
    /// taken as it was stored, not recomputed.
    pub(crate) fn from_parts(private: Secret32, public: [u8; 32]) -> Self {
        Self { private, public }
    }
}

/// What an initiator keeps sending until its first reply decrypts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingPreKey {
    signed_prekey_id: SignedPreKeyId,
    one_time_prekey_id: Option<OneTimePreKeyId>,
    /// Protocol v2: the KEM prekey and the ciphertext made for it.
    kem: Option<(KemPreKeyId, KemCiphertext)>,
}

/// One Double Ratchet session with one remote identity.
///
/// All methods are transactional: on error the session is exactly as it was.
#[derive(Clone)]
pub struct Session {
    /// The protocol version (1 or 2): the wire version byte and the AEAD's
    /// associated data layout.
    version: u8,
    role: Role,
    local_identity: IdentityKey,
    remote_identity: IdentityKey,
    associated_data: [u8; AD_LEN],
    /// EK_A: identifies the X3DH run this session came from.
    base_key: [u8; 32],
    root_key: RootKey,
    sending_ratchet: RatchetKeyPair,
    remote_ratchet: Option<[u8; 32]>,
    sending_chain: Option<ChainKey>,
    /// PN: length of the previous sending chain.
    previous_counter: u32,
    receiving_chain: Option<ChainKey>,
    skipped: SkippedKeys,
    pending_prekey: Option<PendingPreKey>,
}

/// A decrypt that succeeded on paper: the state it would leave behind.
enum Commit {
    /// The key came from the skipped store at this position.
    Skipped(usize),
    /// The current receiving chain advanced; keys skipped on the way.
    SameChain {
        chain: ChainKey,
        skipped: Vec<MessageKey>,
    },
    /// A DH ratchet step.
    NewChain(Box<NewChain>),
}

struct NewChain {
    previous_skipped: Vec<MessageKey>,
    root_key: RootKey,
    remote_ratchet: [u8; 32],
    receiving_chain: ChainKey,
    new_skipped: Vec<MessageKey>,
    sending_ratchet: RatchetKeyPair,
    sending_chain: ChainKey,
    previous_counter: u32,
}

impl Session {
    /// Starts a session as the initiator: verifies the bundle's signature
    /// (before any DH), runs X3DH, and derives the first sending chain.
    ///
    /// The protocol version is the highest the bundle allows: 2 with a
    /// KEM prekey (the hybrid handshake of section 16), else 1.
    ///
    /// Draws from `rng`, in this order: the ephemeral key EK_A (32 bytes),
    /// in version 2 the KEM's message `m` (32 bytes), then the first
    /// ratchet private key (32 bytes).
    pub fn initiate<R: CryptoRng + ?Sized>(
        local: &IdentityKeyPair,
        bundle: &PreKeyBundle,
        rng: &mut R,
    ) -> Result<Self> {
        Self::initiate_at_least(local, bundle, 1, rng)
    }

    /// [`initiate`](Self::initiate), refusing a bundle that allows less
    /// than protocol version `minimum` with [`Error::Downgrade`], before
    /// anything is drawn: for a contact known to speak version 2 (its
    /// address says so, or an earlier bundle or session did), a bundle
    /// without a KEM prekey means that the relay stripped it.
    pub fn initiate_at_least<R: CryptoRng + ?Sized>(
        local: &IdentityKeyPair,
        bundle: &PreKeyBundle,
        minimum: u8,
        rng: &mut R,
    ) -> Result<Self> {
        if bundle.version() < minimum {
            return Err(Error::Downgrade {
                offered: bundle.version(),
                expected: minimum,
            });
        }
        bundle.verify()?;
        let ephemeral = random_secret(rng);
        let kem = match &bundle.kem_prekey {
            Some(kem) => Some((kem.id, encapsulate(&kem.key, rng)?)),
            None => None,
        };
        let ratchet = RatchetKeyPair::generate(rng);
        Self::initiate_verified(local, bundle, &ephemeral, kem, ratchet)
    }

    /// [`initiate`](Self::initiate) with the keys it would draw given.
    #[cfg(any(test, feature = "hazmat"))]
    pub(crate) fn initiate_with(
        local: &IdentityKeyPair,
        bundle: &PreKeyBundle,
        ephemeral: &Secret32,
        kem: Option<(KemPreKeyId, (KemCiphertext, Secret32))>,
        sending_ratchet: RatchetKeyPair,
    ) -> Result<Self> {
        bundle.verify()?;
        Self::initiate_verified(local, bundle, ephemeral, kem, sending_ratchet)
    }

    /// [`initiate_with`](Self::initiate_with) for a bundle whose
    /// signatures the caller has just verified: each is checked once.
    fn initiate_verified(
        local: &IdentityKeyPair,
        bundle: &PreKeyBundle,
        ephemeral: &Secret32,
        kem: Option<(KemPreKeyId, (KemCiphertext, Secret32))>,
        sending_ratchet: RatchetKeyPair,
    ) -> Result<Self> {
        if kem.is_some() != bundle.kem_prekey.is_some() {
            return Err(Error::InvalidBundle("KEM ciphertext without a KEM prekey"));
        }
        let kem_secret = kem.as_ref().map(|(_, (_, ss))| ss);
        let (agreed, base_key) = x3dh::initiate(local, bundle, ephemeral, kem_secret)?;
        let root = RootKey(agreed.shared_secret);
        let dh = diffie_hellman(&sending_ratchet.private, bundle.signed_prekey.as_bytes())?;
        let (root_key, sending_chain) = root.ratchet_step(&dh);
        Ok(Self {
            version: if kem.is_some() { VERSION_V2 } else { VERSION },
            role: Role::Initiator,
            local_identity: *local.public(),
            remote_identity: bundle.identity_key,
            associated_data: agreed.associated_data,
            base_key,
            root_key,
            sending_ratchet,
            remote_ratchet: Some(bundle.signed_prekey.to_bytes()),
            sending_chain: Some(sending_chain),
            previous_counter: 0,
            receiving_chain: None,
            skipped: SkippedKeys::default(),
            pending_prekey: Some(PendingPreKey {
                signed_prekey_id: bundle.signed_prekey_id,
                one_time_prekey_id: bundle.one_time_prekey.map(|(id, _)| id),
                kem: kem.map(|(id, (ciphertext, _))| (id, ciphertext)),
            }),
        })
    }

    /// Creates the responder's session from a PreKeyMessage and decrypts it.
    ///
    /// Nothing is created unless the message decrypts. On success the
    /// caller must delete the one-time prekey named by
    /// [`Decrypted::used_one_time_prekey`] (PROTOCOL.md: once the first
    /// message decrypts, never before), and the KEM prekey named by
    /// [`Decrypted::used_kem_prekey`] if it is a one-time one.
    pub fn respond<R: CryptoRng + ?Sized>(
        local: &IdentityKeyPair,
        prekeys: &(impl PreKeySource + ?Sized),
        message: &[u8],
        rng: &mut R,
    ) -> Result<(Self, Decrypted)> {
        let prekey_message = PreKeyMessage::parse(message)?;
        let mut plaintext = Vec::new();
        let (session, used) =
            Self::respond_parsed(local, prekeys, &prekey_message, &mut plaintext, rng)?;
        Ok((
            session,
            Decrypted {
                plaintext,
                used_one_time_prekey: used,
                used_kem_prekey: prekey_message.kem.map(|(id, _)| id),
                new_session: true,
            },
        ))
    }

    pub(crate) fn respond_parsed<R: CryptoRng + ?Sized>(
        local: &IdentityKeyPair,
        prekeys: &(impl PreKeySource + ?Sized),
        message: &PreKeyMessage<'_>,
        out: &mut Vec<u8>,
        rng: &mut R,
    ) -> Result<(Self, Option<OneTimePreKeyId>)> {
        let signed_prekey = prekeys
            .signed_prekey(message.signed_prekey_id)
            .ok_or(Error::UnknownSignedPreKey(message.signed_prekey_id))?;
        let one_time_prekey = match message.one_time_prekey_id {
            Some(id) => Some(
                prekeys
                    .one_time_prekey(id)
                    .ok_or(Error::UnknownOneTimePreKey(id))?,
            ),
            None => None,
        };
        let kem_secret = match message.kem {
            Some((id, ciphertext)) => {
                let key = prekeys.kem_prekey(id).ok_or(Error::UnknownKemPreKey(id))?;
                Some(key.decapsulate(&KemCiphertext::from_bytes(ciphertext)))
            }
            None => None,
        };
        let agreed = x3dh::respond(
            local,
            &signed_prekey,
            one_time_prekey.as_ref(),
            &message.identity_key,
            &message.base_key,
            kem_secret.as_ref(),
        )?;
        let mut session = Self {
            version: message.message.version,
            role: Role::Responder,
            local_identity: *local.public(),
            remote_identity: message.identity_key,
            associated_data: agreed.associated_data,
            base_key: message.base_key,
            root_key: RootKey(agreed.shared_secret),
            // Bob's first ratchet key pair is his signed prekey (its public
            // half as the prekey holds it: no recomputation).
            sending_ratchet: RatchetKeyPair::from_parts(
                signed_prekey.private().clone(),
                *signed_prekey.public().as_bytes(),
            ),
            remote_ratchet: None,
            sending_chain: None,
            previous_counter: 0,
            receiving_chain: None,
            skipped: SkippedKeys::default(),
            pending_prekey: None,
        };
        session.decrypt_message(&message.message, out, rng)?;
        Ok((session, message.one_time_prekey_id))
    }

    /// Which side of X3DH this session is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The protocol version of this session (1 or 2).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The identity key of the other party.
    pub fn remote_identity(&self) -> &IdentityKey {
        &self.remote_identity
    }

    /// Our identity key.
    pub fn local_identity(&self) -> &IdentityKey {
        &self.local_identity
    }

    /// The initiator's ephemeral key EK_A, which names the X3DH run.
    pub fn base_key(&self) -> &[u8; 32] {
        &self.base_key
    }

    /// True while this (initiator) session still wraps its messages in
    /// PreKeyMessages, i.e. before it has decrypted a reply.
    pub fn is_pending_prekey(&self) -> bool {
        self.pending_prekey.is_some()
    }

    /// Number of skipped message keys held.
    pub fn skipped_key_count(&self) -> usize {
        self.skipped.len()
    }

    /// True if `message` is a PreKeyMessage of the X3DH run that created
    /// this session (same IK_A and EK_A).
    pub fn matches_prekey_message(&self, message: &PreKeyMessage<'_>) -> bool {
        self.matches_x3dh_run(message.identity_key.as_bytes(), &message.base_key)
    }

    /// True if this session is the responder's side of the X3DH run named
    /// by the initiator's identity key and base key (raw bytes, as they
    /// appear in a PreKeyMessage).
    pub(crate) fn matches_x3dh_run(&self, identity: &[u8; 32], base_key: &[u8; 32]) -> bool {
        self.role == Role::Responder
            && *base_key == self.base_key
            && identity == self.remote_identity.as_bytes()
    }

    /// Encrypts `plaintext` into a fresh buffer.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encrypt_into(plaintext, &mut out)?;
        Ok(out)
    }

    /// Encrypts `plaintext`, replacing the contents of `out` with the wire
    /// message. Reusing `out` across calls avoids an allocation per message.
    pub fn encrypt_into(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let padded_len = crate::pad::padded_len_for_plaintext(plaintext.len())?;
        let chain = self
            .sending_chain
            .as_ref()
            .ok_or(Error::NoChain("sending"))?;
        let header = Header {
            ratchet_key: self.sending_ratchet.public,
            previous_chain_length: self.previous_counter,
            index: chain.index(),
        }
        .encode();
        let mut next_chain = chain.clone();
        let message_key = next_chain.step()?;

        out.clear();
        out.reserve(PreKeyMessage::prefix_len_v2(true) + 2 + HEADER_LEN + padded_len + TAG_LEN);
        if let Some(pending) = &self.pending_prekey {
            write_prekey_prefix(
                out,
                &self.local_identity,
                &self.base_key,
                pending.signed_prekey_id,
                pending.one_time_prekey_id,
                pending.kem.as_ref().map(|(id, ct)| (*id, ct.as_bytes())),
            );
        }
        out.push(self.version);
        out.push(TYPE_MESSAGE);
        out.extend_from_slice(&header);
        let start = out.len();
        crate::pad::pad_into(plaintext, out)?;
        let aad = self.aead_ad(&header);
        let tag = message_key.seal(aad.as_slice(), &mut out[start..])?;
        out.extend_from_slice(&tag);
        self.sending_chain = Some(next_chain);
        Ok(())
    }

    /// Decrypts a Message or PreKeyMessage of this session.
    pub fn decrypt<R: CryptoRng + ?Sized>(
        &mut self,
        message: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.decrypt_into(message, &mut out, rng)?;
        Ok(out)
    }

    /// Decrypts into `out` (replacing its contents). On error `out` is
    /// cleared and the session is unchanged.
    pub fn decrypt_into<R: CryptoRng + ?Sized>(
        &mut self,
        message: &[u8],
        out: &mut Vec<u8>,
        rng: &mut R,
    ) -> Result<()> {
        match WireMessage::parse(message)? {
            WireMessage::Message(m) => self.decrypt_message(&m, out, rng),
            WireMessage::PreKey(p) => {
                if !self.matches_prekey_message(&p) {
                    return Err(Error::SessionMismatch);
                }
                self.decrypt_message(&p.message, out, rng)
            }
        }
    }

    /// `AD || version || header`, and in version 2 zero bytes up to
    /// [`AEAD_AD_LEN_V2`].
    fn aead_ad(&self, header: &[u8; HEADER_LEN]) -> AeadAd {
        let mut bytes = [0u8; AEAD_AD_LEN_V2];
        bytes[..AD_LEN].copy_from_slice(&self.associated_data);
        bytes[AD_LEN] = self.version;
        bytes[AD_LEN + 1..AEAD_AD_LEN].copy_from_slice(header);
        let len = if self.version == VERSION_V2 {
            AEAD_AD_LEN_V2
        } else {
            AEAD_AD_LEN
        };
        AeadAd { bytes, len }
    }

    pub(crate) fn decrypt_message<R: CryptoRng + ?Sized>(
        &mut self,
        message: &Message<'_>,
        out: &mut Vec<u8>,
        rng: &mut R,
    ) -> Result<()> {
        if message.version != self.version {
            out.clear();
            return Err(Error::SessionMismatch);
        }
        let (commit, message_key) = match self.plan(&message.header, rng) {
            Ok(planned) => planned,
            Err(e) => {
                out.clear();
                return Err(e);
            }
        };
        let aad = self.aead_ad(message.header_bytes);
        let aad = aad.as_slice();
        let (body, tag) = message
            .ciphertext
            .split_at(message.ciphertext.len() - TAG_LEN);
        // With a reused buffer only the gap beyond its current length is
        // filled; decryption then overwrites every byte.
        out.resize(body.len(), 0);
        let opened = message_key
            .open(aad, body, out, tag)
            .and_then(|()| crate::pad::unpadded_len(out));
        match opened {
            Ok(len) => {
                out.truncate(len);
                self.apply(commit, &message.header.ratchet_key);
                Ok(())
            }
            Err(e) => {
                zeroize::Zeroize::zeroize(out);
                out.clear();
                Err(e)
            }
        }
    }

    /// Works out the message key for `header` and the state change that
    /// decrypting it would commit, without touching `self`.
    fn plan<R: CryptoRng + ?Sized>(
        &self,
        header: &Header,
        rng: &mut R,
    ) -> Result<(Commit, MessageKey)> {
        if let Some(pos) = self.skipped.position(&header.ratchet_key, header.index) {
            let key = self
                .skipped
                .get(pos)
                .map(|k| k.key.clone())
                .ok_or(Error::CorruptState("skipped index"))?;
            return Ok((Commit::Skipped(pos), key));
        }

        if self.remote_ratchet == Some(header.ratchet_key) {
            let chain = self
                .receiving_chain
                .as_ref()
                .ok_or(Error::NoChain("receiving"))?;
            if header.index < chain.index() {
                return Err(Error::Duplicate(header.index));
            }
            let mut chain = chain.clone();
            let skipped = skip_message_keys(&mut chain, header.index)?;
            let key = chain.step()?;
            return Ok((Commit::SameChain { chain, skipped }, key));
        }

        // A new ratchet key: finish the current receiving chain up to PN,
        // then one DH ratchet step (Signal's DHRatchet).
        let mut previous_skipped = Vec::new();
        match &self.receiving_chain {
            Some(chain) => {
                let mut chain = chain.clone();
                previous_skipped = skip_message_keys(&mut chain, header.previous_chain_length)?;
            }
            None => check_gap(0, header.previous_chain_length)?,
        }
        let dh_receive = diffie_hellman(&self.sending_ratchet.private, &header.ratchet_key)?;
        let (root_key, mut receiving_chain) = self.root_key.ratchet_step(&dh_receive);
        check_gap(0, header.index)?;
        let new_skipped = skip_message_keys(&mut receiving_chain, header.index)?;
        let key = receiving_chain.step()?;
        let sending_ratchet = RatchetKeyPair::generate(rng);
        let dh_send = diffie_hellman(&sending_ratchet.private, &header.ratchet_key)?;
        let (root_key, sending_chain) = root_key.ratchet_step(&dh_send);
        let previous_counter = self.sending_chain.as_ref().map_or(0, ChainKey::index);
        Ok((
            Commit::NewChain(Box::new(NewChain {
                previous_skipped,
                root_key,
                remote_ratchet: header.ratchet_key,
                receiving_chain,
                new_skipped,
                sending_ratchet,
                sending_chain,
                previous_counter,
            })),
            key,
        ))
    }

    fn apply(&mut self, commit: Commit, ratchet_key: &[u8; 32]) {
        match commit {
            Commit::Skipped(pos) => self.skipped.remove(pos),
            Commit::SameChain { chain, skipped } => {
                self.skipped.extend(ratchet_key, skipped);
                self.receiving_chain = Some(chain);
            }
            Commit::NewChain(step) => {
                let step = *step;
                if let Some(old) = self.remote_ratchet {
                    self.skipped.extend(&old, step.previous_skipped);
                }
                self.skipped.extend(&step.remote_ratchet, step.new_skipped);
                self.root_key = step.root_key;
                self.remote_ratchet = Some(step.remote_ratchet);
                self.receiving_chain = Some(step.receiving_chain);
                self.sending_ratchet = step.sending_ratchet;
                self.sending_chain = Some(step.sending_chain);
                self.previous_counter = step.previous_counter;
            }
        }
        // A reply has decrypted: the initiator stops sending PreKeyMessages.
        self.pending_prekey = None;
    }
}

fn check_gap(from: u32, until: u32) -> Result<()> {
    let gap = u64::from(until.saturating_sub(from));
    if gap > u64::from(MAX_SKIP) {
        return Err(Error::TooManySkipped { gap, max: MAX_SKIP });
    }
    Ok(())
}

/// Steps `chain` up to index `until` (exclusive), returning the keys it
/// passes (Signal's SkipMessageKeys, with the MAX_SKIP check first).
fn skip_message_keys(chain: &mut ChainKey, until: u32) -> Result<Vec<MessageKey>> {
    check_gap(chain.index(), until)?;
    let mut keys = Vec::new();
    while chain.index() < until {
        keys.push(chain.step()?);
    }
    Ok(keys)
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("remote_identity", &self.remote_identity)
            .field(
                "sending_index",
                &self.sending_chain.as_ref().map(ChainKey::index),
            )
            .field(
                "receiving_index",
                &self.receiving_chain.as_ref().map(ChainKey::index),
            )
            .field("skipped_keys", &self.skipped.len())
            .field("secrets", &"<redacted>")
            .finish()
    }
}

/// The result of a successful decrypt.
#[derive(Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// The one-time prekey this message consumed: delete it now.
    pub used_one_time_prekey: Option<OneTimePreKeyId>,
    /// Protocol v2: the KEM prekey this message's session was made with;
    /// delete it now if it is a one-time one (keep a last-resort one).
    pub used_kem_prekey: Option<KemPreKeyId>,
    /// True when the message created a new session.
    pub new_session: bool,
}

impl core::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Decrypted")
            .field("plaintext_len", &self.plaintext.len())
            .field("used_one_time_prekey", &self.used_one_time_prekey)
            .field("used_kem_prekey", &self.used_kem_prekey)
            .field("new_session", &self.new_session)
            .finish()
    }
}
