//! Protocol version 2's test vectors (docs/protocol.md 16.9): v2 bundles,
//! the hybrid key agreement, sessions with their exact wire bytes, and
//! refusals. `generate_json` writes `docs/test-vectors/v2.json`;
//! `check_json` replays any file of that schema.

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use sotto_core::wire::PreKeyMessage;
use sotto_core::{
    Error, IdentityKeyPair, KEM_CIPHERTEXT_LEN, KEM_SEED_LEN, KemCiphertext, KemPreKey,
    KemPreKeyId, OneTimePreKey, OneTimePreKeyId, PreKeyBundle, PreKeySource, ProtocolVersions,
    Session, Signature, SignedPreKey, SignedPreKeyId, hazmat,
};

use super::{
    Event, KeyRng, Party, Report, Step, bytes_n, key32, keys, long_text, seeded_key, text,
    x25519_public,
};

/// The whole file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorsV2 {
    pub version: u32,
    pub bundles: Vec<BundleVector>,
    pub pqxdh: Vec<PqxdhVector>,
    pub sessions: Vec<SessionVector>,
    pub invalid_bundles: Vec<InvalidBundleVector>,
    pub invalid_prekey_messages: Vec<InvalidPreKeyMessageVector>,
}

/// A responder's keys and the v2 bundle they publish (16.1, 16.2).
#[derive(Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct BundleVector {
    pub description: String,
    pub identity_seed: String,
    /// `0x03` (versions 1 and 2) or `0x02` (version 2 only).
    pub versions: u8,
    pub signed_prekey_id: u32,
    pub signed_prekey_private: String,
    pub signed_prekey_signature: String,
    pub one_time_prekey_id: Option<u32>,
    pub one_time_prekey_private: Option<String>,
    pub kem_prekey_id: u32,
    /// `one_time` or `last_resort`: the owner's record, not the wire's.
    pub kem_prekey_kind: String,
    /// `d || z`, 64 bytes.
    pub kem_prekey_seed: String,
    /// `ek`, 1184 bytes.
    pub kem_encapsulation_key: String,
    pub kem_prekey_signature: String,
    pub encoding: String,
}

/// One run of the hybrid key agreement (16.3) against `bundles[bundle]`.
#[derive(Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct PqxdhVector {
    pub description: String,
    pub bundle: usize,
    pub alice_identity_seed: String,
    pub alice_ephemeral_private: String,
    /// ML-KEM's `m`, 32 bytes.
    pub kem_message: String,
    pub kem_ciphertext: String,
    pub kem_shared_secret: String,
    pub shared_secret: String,
    pub associated_data: String,
}

/// A session started by `pqxdh[pqxdh]`, as version 1's sessions.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionVector {
    pub description: String,
    pub pqxdh: usize,
    pub alice_ratchet_privates: Vec<String>,
    pub bob_ratchet_privates: Vec<String>,
    pub events: Vec<Event>,
}

/// Bundle bytes that decoding or verifying refuses, for `error`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidBundleVector {
    pub description: String,
    pub encoding: String,
    pub error: String,
}

/// A PreKeyMessage that the responder of `pqxdh[pqxdh]`'s bundle, holding
/// all its prekeys, refuses with `error`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidPreKeyMessageVector {
    pub description: String,
    pub pqxdh: usize,
    pub wire: String,
    pub error: String,
}

/// The error codes of the file.
fn error_code(e: &Error) -> &'static str {
    match e {
        Error::UnsupportedVersion(_) => "unsupported_version",
        Error::Truncated { .. } => "truncated",
        Error::TrailingBytes(_) => "trailing_bytes",
        Error::InvalidFlag(_) => "invalid_flag",
        Error::InvalidBundle(_) => "invalid_bundle",
        Error::InvalidKemKey => "invalid_kem_key",
        Error::InvalidSignature => "invalid_signature",
        Error::InvalidIdentityKey => "invalid_identity_key",
        Error::InvalidPreKey => "invalid_prekey",
        Error::AuthenticationFailed => "authentication_failed",
        Error::UnknownKemPreKey(_) => "unknown_kem_prekey",
        _ => "other",
    }
}

const ONE_TIME: &str = "one_time";
const LAST_RESORT: &str = "last_resort";

/// A responder's keys, built from a bundle vector. One-time keys are
/// deleted once the first message that used them decrypts.
struct Owner {
    identity: IdentityKeyPair,
    versions: ProtocolVersions,
    signed: SignedPreKey,
    one_time: Option<OneTimePreKey>,
    kem: Option<KemPreKey>,
    kem_is_one_time: bool,
}

impl PreKeySource for Owner {
    fn signed_prekey(&self, id: SignedPreKeyId) -> Option<SignedPreKey> {
        (id == self.signed.id()).then(|| self.signed.clone())
    }

    fn one_time_prekey(&self, id: OneTimePreKeyId) -> Option<OneTimePreKey> {
        self.one_time.as_ref().filter(|k| k.id() == id).cloned()
    }

    fn kem_prekey(&self, id: KemPreKeyId) -> Option<KemPreKey> {
        self.kem.as_ref().filter(|k| k.id() == id).cloned()
    }
}

impl Owner {
    fn from_vector(v: &BundleVector) -> Result<Self, String> {
        let identity = IdentityKeyPair::from_seed(&key32(&v.identity_seed)?);
        let versions = match ProtocolVersions::from_byte(v.versions) {
            Some(versions) if versions.speaks_v2() => versions,
            _ => return Err(format!("versions {:#04x} is not a v2 bundle's", v.versions)),
        };
        let signed = SignedPreKey::from_private_bytes(
            SignedPreKeyId::new(v.signed_prekey_id),
            &identity,
            &key32(&v.signed_prekey_private)?,
        );
        let one_time = match (&v.one_time_prekey_id, &v.one_time_prekey_private) {
            (Some(id), Some(private)) => Some(OneTimePreKey::from_private_bytes(
                OneTimePreKeyId::new(*id),
                &key32(private)?,
            )),
            (None, None) => None,
            _ => return Err("one-time prekey id and private must both be null or set".into()),
        };
        let kem_is_one_time = match v.kem_prekey_kind.as_str() {
            ONE_TIME => true,
            LAST_RESORT => false,
            other => return Err(format!("unknown kem_prekey_kind {other:?}")),
        };
        let seed: [u8; KEM_SEED_LEN] = bytes_n(&v.kem_prekey_seed)?;
        let kem = KemPreKey::from_seed(KemPreKeyId::new(v.kem_prekey_id), &identity, &seed);
        Ok(Self {
            identity,
            versions,
            signed,
            one_time,
            kem: Some(kem),
            kem_is_one_time,
        })
    }

    /// The signed prekey's signature the bundle carries for `versions`.
    fn spk_signature(&self) -> Signature {
        if self.versions.speaks_v1() {
            *self.signed.signature()
        } else {
            self.signed.v2_only_signature(&self.identity)
        }
    }

    /// The bundle without its KEM prekey: what a relay that strips it
    /// serves (a version 1 bundle).
    fn stripped_bundle(&self) -> PreKeyBundle {
        PreKeyBundle::from_parts(
            *self.identity.public(),
            self.signed.id(),
            *self.signed.public(),
            self.spk_signature(),
            self.one_time.as_ref().map(|k| (k.id(), *k.public())),
        )
    }

    fn bundle(&self) -> Result<PreKeyBundle, String> {
        let kem = self.kem.as_ref().ok_or("the KEM prekey is gone")?;
        Ok(self
            .stripped_bundle()
            .with_kem_prekey(self.versions, kem.signed_public()))
    }

    /// What the owner deletes after the first message that used its keys
    /// decrypts.
    fn consume(&mut self, used_one_time: Option<OneTimePreKeyId>, used_kem: Option<KemPreKeyId>) {
        if used_one_time.is_some() {
            self.one_time = None;
        }
        if used_kem.is_some() && self.kem_is_one_time {
            self.kem = None;
        }
    }
}

/// The initiator's inputs of one key agreement.
struct Initiator {
    identity: IdentityKeyPair,
    ephemeral: [u8; 32],
    kem_message: [u8; 32],
}

impl Initiator {
    fn from_vector(p: &PqxdhVector) -> Result<Self, String> {
        Ok(Self {
            identity: IdentityKeyPair::from_seed(&key32(&p.alice_identity_seed)?),
            ephemeral: key32(&p.alice_ephemeral_private)?,
            kem_message: key32(&p.kem_message)?,
        })
    }
}

// ---------------------------------------------------------------- generate

fn bundle_vector(
    description: &str,
    seed: u8,
    versions: ProtocolVersions,
    with_opk: bool,
    kem_kind: &str,
) -> Result<BundleVector, String> {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let identity_seed = seeded_key(&mut rng);
    let spk_private = seeded_key(&mut rng);
    let opk_private = seeded_key(&mut rng);
    let mut kem_seed = [0u8; KEM_SEED_LEN];
    kem_seed[..32].copy_from_slice(&seeded_key(&mut rng));
    kem_seed[32..].copy_from_slice(&seeded_key(&mut rng));
    let base = u32::from(seed) * 1000;
    let mut v = BundleVector {
        description: description.into(),
        identity_seed: hex::encode(identity_seed),
        versions: versions.to_byte(),
        signed_prekey_id: base + 1,
        signed_prekey_private: hex::encode(spk_private),
        signed_prekey_signature: String::new(),
        one_time_prekey_id: with_opk.then_some(base + 77),
        one_time_prekey_private: with_opk.then(|| hex::encode(opk_private)),
        kem_prekey_id: base + if kem_kind == ONE_TIME { 500 } else { 1 },
        kem_prekey_kind: kem_kind.into(),
        kem_prekey_seed: hex::encode(kem_seed),
        kem_encapsulation_key: String::new(),
        kem_prekey_signature: String::new(),
        encoding: String::new(),
    };
    let owner = Owner::from_vector(&v)?;
    let bundle = owner.bundle()?;
    bundle.verify().map_err(|e| e.to_string())?;
    let kem = owner.kem.as_ref().ok_or("no KEM prekey")?;
    v.signed_prekey_signature = hex::encode(owner.spk_signature());
    v.kem_encapsulation_key = hex::encode(kem.public().as_bytes());
    v.kem_prekey_signature = hex::encode(kem.signature());
    v.encoding = hex::encode(bundle.encode());
    Ok(v)
}

fn pqxdh_vector(
    description: &str,
    seed: u8,
    bundle_index: usize,
    bundles: &[BundleVector],
) -> Result<PqxdhVector, String> {
    let b = bundles.get(bundle_index).ok_or("bundle index")?;
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let alice_seed = seeded_key(&mut rng);
    let ephemeral = seeded_key(&mut rng);
    let kem_message = seeded_key(&mut rng);
    let alice = IdentityKeyPair::from_seed(&alice_seed);
    let owner = Owner::from_vector(b)?;
    let (sk, ad, ct, ss) =
        hazmat::pqxdh_initiate(&alice, &owner.bundle()?, &ephemeral, &kem_message)
            .map_err(|e| e.to_string())?;
    Ok(PqxdhVector {
        description: description.into(),
        bundle: bundle_index,
        alice_identity_seed: hex::encode(alice_seed),
        alice_ephemeral_private: hex::encode(ephemeral),
        kem_message: hex::encode(kem_message),
        kem_ciphertext: hex::encode(ct.as_bytes()),
        kem_shared_secret: hex::encode(*ss),
        shared_secret: hex::encode(*sk),
        associated_data: hex::encode(ad),
    })
}

struct Runner {
    owner: Owner,
    alice_rng: KeyRng,
    bob_rng: KeyRng,
    alice: Session,
    bob: Option<Session>,
}

impl Runner {
    fn start(
        p: &PqxdhVector,
        b: &BundleVector,
        alice_rng: KeyRng,
        bob_rng: KeyRng,
        first: &[u8; 32],
    ) -> Result<Self, String> {
        let owner = Owner::from_vector(b)?;
        let initiator = Initiator::from_vector(p)?;
        let alice = hazmat::initiate_session(
            &initiator.identity,
            &owner.bundle()?,
            &initiator.ephemeral,
            Some(&initiator.kem_message),
            first,
        )
        .map_err(|e| format!("initiation failed: {e}"))?;
        if alice.version() != 2 {
            return Err(format!(
                "initiation gave a version {} session",
                alice.version()
            ));
        }
        Ok(Self {
            owner,
            alice_rng,
            bob_rng,
            alice,
            bob: None,
        })
    }

    fn send(&mut self, by: Party, plaintext: &[u8]) -> Result<Vec<u8>, String> {
        match by {
            Party::Alice => self.alice.encrypt(plaintext),
            Party::Bob => self
                .bob
                .as_mut()
                .ok_or("bob sends before he has a session")?
                .encrypt(plaintext),
        }
        .map_err(|e| e.to_string())
    }

    fn receive(&mut self, by: Party, wire: &[u8]) -> Result<Vec<u8>, String> {
        match by {
            Party::Alice => self
                .alice
                .decrypt(wire, &mut self.alice_rng)
                .map_err(|e| e.to_string()),
            Party::Bob => match &mut self.bob {
                Some(session) => session
                    .decrypt(wire, &mut self.bob_rng)
                    .map_err(|e| e.to_string()),
                None => {
                    let (session, first) = Session::respond(
                        &self.owner.identity,
                        &self.owner,
                        wire,
                        &mut self.bob_rng,
                    )
                    .map_err(|e| e.to_string())?;
                    self.owner
                        .consume(first.used_one_time_prekey, first.used_kem_prekey);
                    self.bob = Some(session);
                    Ok(first.plaintext.clone())
                }
            },
        }
    }
}

fn generate_session(
    description: &str,
    pqxdh_index: usize,
    v: &VectorsV2,
    seed: u8,
    steps: Vec<Step>,
) -> Result<SessionVector, String> {
    let p = v.pqxdh.get(pqxdh_index).ok_or("pqxdh index")?;
    let b = v.bundles.get(p.bundle).ok_or("bundle index")?;
    let mut alice_rng = KeyRng::recording(seed);
    let first = alice_rng.next_key();
    let bob_rng = KeyRng::recording(seed.wrapping_add(100));
    let mut r = Runner::start(p, b, alice_rng, bob_rng, &first)?;
    let mut events = Vec::new();
    let mut sent: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for step in steps {
        match step {
            Step::Send(by, plaintext) => {
                let wire = r.send(by, &plaintext)?;
                events.push(Event::Send {
                    by,
                    plaintext: hex::encode(&plaintext),
                    wire: hex::encode(&wire),
                });
                sent.push((plaintext, wire));
            }
            Step::Receive(by, k) => {
                let (plaintext, wire) = sent.get(k).ok_or("receive of an unknown send")?;
                if &r.receive(by, wire)? != plaintext {
                    return Err(format!("generation: send {k} decrypted wrongly"));
                }
                events.push(Event::Receive { by, send_index: k });
            }
        }
    }
    Ok(SessionVector {
        description: description.into(),
        pqxdh: pqxdh_index,
        alice_ratchet_privates: r.alice_rng.drawn.iter().map(hex::encode).collect(),
        bob_ratchet_privates: r.bob_rng.drawn.iter().map(hex::encode).collect(),
        events,
    })
}

/// Offsets in a v2 bundle encoding (16.2).
const VERSIONS_AT: usize = 1;
const SPK_SIG_AT: usize = 2 + 32 + 4 + 32;
const FLAG_AT: usize = SPK_SIG_AT + 64;

fn kem_fields_at(has_opk: bool) -> usize {
    FLAG_AT + 1 + if has_opk { 4 + 32 } else { 0 }
}

fn invalid_bundles(bundles: &[BundleVector]) -> Result<Vec<InvalidBundleVector>, String> {
    // bundles[0]: versions 0x03 with a one-time prekey; bundles[2]: 0x02.
    let both = bundles.first().ok_or("no bundle 0")?;
    let v2_only = bundles.get(2).ok_or("no bundle 2")?;
    let both_owner = Owner::from_vector(both)?;
    let v2_only_owner = Owner::from_vector(v2_only)?;
    let good = hex::decode(&both.encoding).map_err(|e| e.to_string())?;
    let good_v2_only = hex::decode(&v2_only.encoding).map_err(|e| e.to_string())?;
    let patched = |bytes: &[u8], at: usize, with: &[u8]| {
        let mut b = bytes.to_vec();
        b[at..at + with.len()].copy_from_slice(with);
        b
    };
    let kem_at = kem_fields_at(both.one_time_prekey_id.is_some()) + 4;
    let kem_sig_at = kem_at + sotto_core::KEM_PUBLIC_LEN;
    // A coefficient of 4095 (>= q = 3329) in the encapsulation key, signed
    // by the owner so that the modulus check is the only thing wrong.
    let mut bad_key = good[kem_at..kem_sig_at].to_vec();
    bad_key[0] = 0xff;
    bad_key[1] |= 0x0f;
    let bad_key_sig = both_owner
        .identity
        .sign(&[&[sotto_core::keys::KEM_TYPE_ML_KEM_768][..], &bad_key].concat());
    let mut modulus = patched(&good, kem_at, &bad_key);
    modulus[kem_sig_at..].copy_from_slice(bad_key_sig.as_bytes());
    let mut kem_sig_flipped = good.clone();
    let last = kem_sig_flipped.len() - 1;
    kem_sig_flipped[last] ^= 0x01;
    // Another owner's valid KEM key in place of this one's.
    let other_key = hex::decode(&v2_only.kem_encapsulation_key).map_err(|e| e.to_string())?;
    let mut trailing = good.clone();
    trailing.push(0x00);
    let entries: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "versions 0x03 changed to 0x02 (the signed prekey's signature is version 1's)",
            patched(&good, VERSIONS_AT, &[0x02]),
            "invalid_signature",
        ),
        (
            "versions 0x02 changed to 0x03 (the signed prekey's signature is the v2-only one)",
            patched(&good_v2_only, VERSIONS_AT, &[0x03]),
            "invalid_signature",
        ),
        (
            "versions 0x01",
            patched(&good, VERSIONS_AT, &[0x01]),
            "invalid_bundle",
        ),
        (
            "versions 0x04",
            patched(&good, VERSIONS_AT, &[0x04]),
            "invalid_bundle",
        ),
        (
            "an encapsulation key failing the modulus check (a coefficient of 4095), signed",
            modulus,
            "invalid_kem_key",
        ),
        (
            "a bit of the KEM prekey's signature flipped",
            kem_sig_flipped,
            "invalid_signature",
        ),
        (
            "another owner's encapsulation key under this owner's KEM signature",
            patched(&good, kem_at, &other_key),
            "invalid_signature",
        ),
        (
            "has_opk 0x02",
            patched(&good, FLAG_AT, &[0x02]),
            "invalid_flag",
        ),
        (
            "the KEM signature's last byte missing",
            good[..good.len() - 1].to_vec(),
            "truncated",
        ),
        ("a byte after the KEM signature", trailing, "trailing_bytes"),
        (
            "the v2-only owner's keys served as a version 1 bundle (KEM prekey stripped)",
            v2_only_owner.stripped_bundle().encode(),
            "invalid_signature",
        ),
    ];
    entries
        .into_iter()
        .map(|(description, bytes, error)| {
            // The generator agrees with the file it writes.
            match PreKeyBundle::decode(&bytes).and_then(|b| b.verify()) {
                Err(e) if error_code(&e) == error => Ok(InvalidBundleVector {
                    description: description.into(),
                    encoding: hex::encode(&bytes),
                    error: error.into(),
                }),
                other => Err(format!("invalid bundle {description:?}: {other:?}")),
            }
        })
        .collect()
}

fn invalid_prekey_messages(v: &VectorsV2) -> Result<Vec<InvalidPreKeyMessageVector>, String> {
    // The first message of pqxdh[0] (one-time prekey and one-time KEM
    // prekey), from its session 0.
    let index = 0;
    let p = v.pqxdh.get(index).ok_or("no pqxdh 0")?;
    let has_opk = v
        .bundles
        .get(p.bundle)
        .ok_or("bundle index")?
        .one_time_prekey_id
        .is_some();
    let wire = match v.sessions.first().and_then(|s| s.events.first()) {
        Some(Event::Send { wire, .. }) => hex::decode(wire).map_err(|e| e.to_string())?,
        _ => return Err("session 0 does not start with a send".into()),
    };
    let ct_at = PreKeyMessage::prefix_len(has_opk) + 4;
    let message_at = PreKeyMessage::prefix_len_v2(has_opk);
    let flip = |at: usize| {
        let mut w = wire.clone();
        w[at] ^= 0x01;
        w
    };
    let mut unknown_kem = wire.clone();
    unknown_kem[ct_at - 4..ct_at].copy_from_slice(&999_999u32.to_be_bytes());
    let mut embedded_v1 = wire.clone();
    embedded_v1[message_at] = 0x01;
    let entries: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "bit 0 of CT's first byte flipped (ML-KEM's implicit rejection gives another SS)",
            flip(ct_at),
            "authentication_failed",
        ),
        (
            "bit 0 of CT's last byte flipped",
            flip(ct_at + KEM_CIPHERTEXT_LEN - 1),
            "authentication_failed",
        ),
        (
            "a kem_id the responder does not have",
            unknown_kem,
            "unknown_kem_prekey",
        ),
        (
            "the embedded Message of version 1",
            embedded_v1,
            "unsupported_version",
        ),
        ("cut inside CT", wire[..ct_at + 100].to_vec(), "truncated"),
    ];
    let owner = Owner::from_vector(v.bundles.get(p.bundle).ok_or("bundle index")?)?;
    entries
        .into_iter()
        .map(|(description, bytes, error)| {
            let mut rng = KeyRng::recording(0);
            match Session::respond(&owner.identity, &owner, &bytes, &mut rng) {
                Err(e) if error_code(&e) == error => Ok(InvalidPreKeyMessageVector {
                    description: description.into(),
                    pqxdh: index,
                    wire: hex::encode(&bytes),
                    error: error.into(),
                }),
                other => Err(format!(
                    "invalid PreKeyMessage {description:?}: {:?}",
                    other.map(|_| ())
                )),
            }
        })
        .collect()
}

/// Builds the vectors from fixed seeds.
pub fn generate() -> Result<VectorsV2, String> {
    use Party::{Alice as A, Bob as B};
    use Step::{Receive as Rx, Send as Tx};

    let bundles = vec![
        bundle_vector(
            "versions 1 and 2, a one-time prekey, a one-time KEM prekey",
            41,
            ProtocolVersions::V1_AND_V2,
            true,
            ONE_TIME,
        )?,
        bundle_vector(
            "versions 1 and 2, no one-time prekey, the last-resort KEM prekey",
            42,
            ProtocolVersions::V1_AND_V2,
            false,
            LAST_RESORT,
        )?,
        bundle_vector(
            "version 2 only, a one-time prekey, the last-resort KEM prekey",
            43,
            ProtocolVersions::V2_ONLY,
            true,
            LAST_RESORT,
        )?,
    ];
    let pqxdh = vec![
        pqxdh_vector("DH1..DH4 and a one-time KEM prekey", 51, 0, &bundles)?,
        pqxdh_vector("DH1..DH3 and the last-resort KEM prekey", 52, 1, &bundles)?,
        pqxdh_vector(
            "another initiator, the same last-resort KEM prekey",
            53,
            1,
            &bundles,
        )?,
        pqxdh_vector(
            "a version-2-only owner: DH1..DH4 and the last-resort KEM prekey",
            54,
            2,
            &bundles,
        )?,
    ];
    let mut v = VectorsV2 {
        version: 2,
        bundles,
        pqxdh,
        sessions: Vec::new(),
        invalid_bundles: Vec::new(),
        invalid_prekey_messages: Vec::new(),
    };

    // Session 0: in order, empty and 5000-byte plaintexts, DH steps each way.
    let s0 = vec![
        Tx(A, Vec::new()),
        Rx(B, 0),
        Tx(B, text("reply 1")),
        Rx(A, 1),
        Tx(A, long_text(5000)),
        Rx(B, 2),
        Tx(B, text("reply 2")),
        Tx(B, text("reply 3")),
        Rx(A, 3),
        Rx(A, 4),
        Tx(A, text("third chain of alice")),
        Rx(B, 5),
        Tx(B, long_text(300)),
        Rx(A, 6),
        Tx(A, text("fourth")),
        Rx(B, 7),
    ];
    // Session 1: PreKeyMessages out of order, out-of-order delivery inside
    // a chain, skipped keys delivered after several DH steps.
    let s1 = vec![
        Tx(A, text("a0")), // 0
        Tx(A, text("a1")), // 1
        Tx(A, text("a2")), // 2
        Rx(B, 2),
        Rx(B, 0),
        Tx(B, text("b0")), // 3
        Rx(A, 3),
        Tx(A, text("a3 (new chain, PN = 3)")), // 4
        Tx(A, text("a4")),                     // 5
        Rx(B, 5),
        Rx(B, 4),
        Tx(B, text("b1")), // 6
        Tx(B, text("b2")), // 7
        Tx(B, text("b3")), // 8
        Rx(A, 8),
        Rx(A, 6),
        Tx(A, text("a5")), // 9
        Rx(B, 9),
        Tx(B, text("b4")), // 10
        Rx(A, 10),
        Tx(A, text("a6")), // 11
        Rx(B, 11),
        Rx(B, 1), // skipped in the first chain, three DH steps ago
        Rx(A, 7), // skipped, two DH steps ago
    ];
    // Session 2: a version-2-only owner; the first two PreKeyMessages
    // arrive together.
    let s2 = vec![
        Tx(A, text("hello, v2 only")),
        Tx(A, text("still a PreKeyMessage")),
        Rx(B, 0),
        Rx(B, 1),
        Tx(B, text("hi")),
        Rx(A, 2),
        Tx(A, long_text(1000)),
        Rx(B, 3),
    ];
    v.sessions = vec![
        generate_session(
            "in order, empty and 5000-byte plaintexts, DH steps each way",
            0,
            &v,
            60,
            s0,
        )?,
        generate_session(
            "out of order: PreKeyMessages, inside a chain, skipped keys after DH steps",
            1,
            &v,
            61,
            s1,
        )?,
        generate_session("a version-2-only owner", 3, &v, 62, s2)?,
    ];
    v.invalid_bundles = invalid_bundles(&v.bundles)?;
    v.invalid_prekey_messages = invalid_prekey_messages(&v)?;
    Ok(v)
}

/// The vectors as the exact JSON text of the file.
pub fn generate_json() -> Result<String, String> {
    let v = generate()?;
    let mut json = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
    json.push('\n');
    Ok(json)
}

// ------------------------------------------------------------------- check

/// Replays any file of the schema.
pub fn check_json(text: &str) -> Report {
    let mut report = Report::default();
    match serde_json::from_str::<VectorsV2>(text) {
        Ok(v) => check(&v, &mut report),
        Err(e) => report.fail(format!("file does not follow the schema: {e}")),
    }
    report
}

fn check(v: &VectorsV2, report: &mut Report) {
    report.check(v.version == 2, || format!("version {} != 2", v.version));
    for (i, b) in v.bundles.iter().enumerate() {
        if let Err(e) = check_bundle(i, b, report) {
            report.fail(format!("bundles[{i}]: {e}"));
        }
    }
    for (i, p) in v.pqxdh.iter().enumerate() {
        let result = v
            .bundles
            .get(p.bundle)
            .ok_or_else(|| format!("bundle index {} out of range", p.bundle))
            .and_then(|b| check_pqxdh(i, p, b, report));
        if let Err(e) = result {
            report.fail(format!("pqxdh[{i}]: {e}"));
        }
    }
    for (i, s) in v.sessions.iter().enumerate() {
        if let Err(e) = check_session(i, s, v, report) {
            report.fail(format!("sessions[{i}]: {e}"));
        }
    }
    for (i, b) in v.invalid_bundles.iter().enumerate() {
        let got = hex::decode(&b.encoding)
            .map_err(|e| e.to_string())
            .map(|bytes| PreKeyBundle::decode(&bytes).and_then(|bundle| bundle.verify()));
        match got {
            Ok(Err(e)) => report.check(error_code(&e) == b.error, || {
                format!(
                    "invalid_bundles[{i}]: refused with {} ({e}), file says {}",
                    error_code(&e),
                    b.error
                )
            }),
            Ok(Ok(())) => report.fail(format!("invalid_bundles[{i}]: accepted")),
            Err(e) => report.fail(format!("invalid_bundles[{i}]: {e}")),
        }
    }
    for (i, m) in v.invalid_prekey_messages.iter().enumerate() {
        if let Err(e) = check_invalid_prekey_message(i, m, v, report) {
            report.fail(format!("invalid_prekey_messages[{i}]: {e}"));
        }
    }
}

fn check_bundle(i: usize, b: &BundleVector, report: &mut Report) -> Result<(), String> {
    let owner = Owner::from_vector(b)?;
    let kem = owner.kem.as_ref().ok_or("no KEM prekey")?;
    report.check(
        hex::encode(owner.spk_signature()) == b.signed_prekey_signature,
        || format!("bundles[{i}]: signed prekey signature differs"),
    );
    report.check(
        hex::encode(kem.public().as_bytes()) == b.kem_encapsulation_key,
        || format!("bundles[{i}]: encapsulation key (KeyGen from the seed) differs"),
    );
    report.check(
        hex::encode(kem.signature()) == b.kem_prekey_signature,
        || format!("bundles[{i}]: KEM prekey signature differs"),
    );
    let bundle = owner.bundle()?;
    report.check(hex::encode(bundle.encode()) == b.encoding, || {
        format!("bundles[{i}]: encoding differs")
    });
    let bytes = hex::decode(&b.encoding).map_err(|e| e.to_string())?;
    match PreKeyBundle::decode(&bytes) {
        Ok(decoded) => {
            report.check(decoded == bundle, || {
                format!("bundles[{i}]: decodes to another bundle")
            });
            report.check(decoded.verify().is_ok(), || {
                format!("bundles[{i}]: does not verify")
            });
        }
        Err(e) => report.fail(format!("bundles[{i}]: does not decode: {e}")),
    }
    Ok(())
}

fn check_pqxdh(
    i: usize,
    p: &PqxdhVector,
    b: &BundleVector,
    report: &mut Report,
) -> Result<(), String> {
    let owner = Owner::from_vector(b)?;
    let alice = Initiator::from_vector(p)?;
    match hazmat::pqxdh_initiate(
        &alice.identity,
        &owner.bundle()?,
        &alice.ephemeral,
        &alice.kem_message,
    ) {
        Ok((sk, ad, ct, ss)) => {
            for (what, got, want) in [
                (
                    "kem_ciphertext",
                    hex::encode(ct.as_bytes()),
                    &p.kem_ciphertext,
                ),
                ("kem_shared_secret", hex::encode(*ss), &p.kem_shared_secret),
                (
                    "shared_secret (initiator)",
                    hex::encode(*sk),
                    &p.shared_secret,
                ),
                ("associated_data", hex::encode(ad), &p.associated_data),
            ] {
                report.check(got == *want, || format!("pqxdh[{i}]: {what} differs"));
            }
        }
        Err(e) => report.fail(format!("pqxdh[{i}]: initiator failed: {e}")),
    }
    let ct: [u8; KEM_CIPHERTEXT_LEN] = bytes_n(&p.kem_ciphertext)?;
    let kem = owner.kem.as_ref().ok_or("no KEM prekey")?;
    match hazmat::pqxdh_respond(
        &owner.identity,
        &owner.signed,
        owner.one_time.as_ref(),
        kem,
        &KemCiphertext::from_bytes(&ct),
        alice.identity.public(),
        &x25519_public(&alice.ephemeral),
    ) {
        Ok((sk, ad)) => {
            report.check(hex::encode(*sk) == p.shared_secret, || {
                format!("pqxdh[{i}]: responder shared secret differs")
            });
            report.check(hex::encode(ad) == p.associated_data, || {
                format!("pqxdh[{i}]: responder associated data differs")
            });
        }
        Err(e) => report.fail(format!("pqxdh[{i}]: responder failed: {e}")),
    }
    Ok(())
}

fn check_session(
    i: usize,
    s: &SessionVector,
    v: &VectorsV2,
    report: &mut Report,
) -> Result<(), String> {
    let p = v
        .pqxdh
        .get(s.pqxdh)
        .ok_or_else(|| format!("pqxdh index {} out of range", s.pqxdh))?;
    let b = v
        .bundles
        .get(p.bundle)
        .ok_or_else(|| format!("bundle index {} out of range", p.bundle))?;
    let alice_keys = keys(&s.alice_ratchet_privates)?;
    let bob_keys = keys(&s.bob_ratchet_privates)?;
    let (first, rest) = alice_keys
        .split_first()
        .ok_or("alice_ratchet_privates is empty")?;
    let mut r = Runner::start(
        p,
        b,
        KeyRng::scripted(rest.to_vec()),
        KeyRng::scripted(bob_keys),
        first,
    )?;
    let sends: Vec<(Party, &String, &String)> = s
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Send {
                by,
                plaintext,
                wire,
            } => Some((*by, plaintext, wire)),
            Event::Receive { .. } => None,
        })
        .collect();
    let mut send_no = 0;
    for (j, event) in s.events.iter().enumerate() {
        let at = format!("sessions[{i}].events[{j}]");
        match event {
            Event::Send {
                by,
                plaintext,
                wire,
            } => {
                send_no += 1;
                let produced = hex::decode(plaintext)
                    .map_err(|e| format!("bad plaintext hex: {e}"))
                    .and_then(|p| r.send(*by, &p));
                match produced {
                    Ok(w) => report.check(hex::encode(&w) == *wire, || {
                        format!("{at}: send #{} by {by:?}: wire differs", send_no - 1)
                    }),
                    Err(e) => report.fail(format!("{at}: encrypt failed: {e}")),
                }
            }
            Event::Receive { by, send_index } => {
                let Some((_, plaintext, wire)) = sends.get(*send_index) else {
                    report.fail(format!("{at}: send_index {send_index} out of range"));
                    continue;
                };
                let got = hex::decode(wire)
                    .map_err(|e| format!("bad wire hex: {e}"))
                    .and_then(|w| r.receive(*by, &w));
                match got {
                    Ok(got) => report.check(hex::encode(&got) == **plaintext, || {
                        format!("{at}: {by:?} decrypted send {send_index} to different plaintext")
                    }),
                    Err(e) => report.fail(format!(
                        "{at}: {by:?} failed to decrypt send {send_index}: {e}"
                    )),
                }
            }
        }
    }
    // Exactly the keys drawn, in the order drawn.
    for (who, rng) in [("alice", &r.alice_rng), ("bob", &r.bob_rng)] {
        report.check(rng.bad_draws == 0 && rng.script.is_empty(), || {
            format!(
                "sessions[{i}]: {who}: {} listed ratchet keys unused, {} draws beyond the list",
                rng.script.len(),
                rng.bad_draws
            )
        });
    }
    Ok(())
}

fn check_invalid_prekey_message(
    i: usize,
    m: &InvalidPreKeyMessageVector,
    v: &VectorsV2,
    report: &mut Report,
) -> Result<(), String> {
    let p = v
        .pqxdh
        .get(m.pqxdh)
        .ok_or_else(|| format!("pqxdh index {} out of range", m.pqxdh))?;
    let b = v
        .bundles
        .get(p.bundle)
        .ok_or_else(|| format!("bundle index {} out of range", p.bundle))?;
    let owner = Owner::from_vector(b)?;
    let wire = hex::decode(&m.wire).map_err(|e| e.to_string())?;
    // The responder's ratchet key, if a refused message makes it draw one.
    let mut rng = KeyRng::recording(0);
    match Session::respond(&owner.identity, &owner, &wire, &mut rng) {
        Err(e) => report.check(error_code(&e) == m.error, || {
            format!(
                "invalid_prekey_messages[{i}]: refused with {} ({e}), file says {}",
                error_code(&e),
                m.error
            )
        }),
        Ok(_) => report.fail(format!("invalid_prekey_messages[{i}]: accepted")),
    }
    Ok(())
}
