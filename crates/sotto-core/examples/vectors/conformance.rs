//! Generation and replay of the protocol test vectors (schema: PROTOCOL.md
//! "Test vectors"). Shared by the `vectors` example and the test that keeps
//! `docs/test-vectors/v1.json` current.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::VecDeque;
use std::convert::Infallible;

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use rand_core::{TryCryptoRng, TryRng};
use serde::{Deserialize, Serialize};
use sotto_core::{
    IdentityKeyPair, OneTimePreKey, OneTimePreKeyId, PreKeyBundle, PreKeySource, Session,
    SignedPreKey, SignedPreKeyId, hazmat, pad, sealed,
};

/// The whole file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vectors {
    pub version: u32,
    pub x3dh: Vec<X3dhVector>,
    pub sessions: Vec<SessionVector>,
    pub padding: Vec<PaddingVector>,
    pub sealed: Vec<SealedVector>,
}

/// One sealed envelope (PROTOCOL.md "Sealed envelope"): who seals, to whom,
/// the ephemeral key drawn, the contents and the exact bytes.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedVector {
    pub description: String,
    pub sender_identity_seed: String,
    pub recipient_identity_seed: String,
    pub ephemeral_private: String,
    pub contents: String,
    pub sealed: String,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct X3dhVector {
    pub description: String,
    pub alice_identity_seed: String,
    pub alice_ephemeral_private: String,
    pub bob_identity_seed: String,
    pub bob_signed_prekey_id: u32,
    pub bob_signed_prekey_private: String,
    pub bob_signed_prekey_signature: String,
    pub bob_one_time_prekey_id: Option<u32>,
    pub bob_one_time_prekey_private: Option<String>,
    pub shared_secret: String,
    pub associated_data: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionVector {
    pub description: String,
    pub x3dh: usize,
    pub alice_ratchet_privates: Vec<String>,
    pub bob_ratchet_privates: Vec<String>,
    pub events: Vec<Event>,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Event {
    Send {
        by: Party,
        plaintext: String,
        wire: String,
    },
    Receive {
        by: Party,
        send_index: usize,
    },
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Party {
    Alice,
    Bob,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaddingVector {
    pub length: usize,
    pub padded_length: usize,
}

/// An RNG that records every 32-byte draw (generation) or serves a fixed
/// list of them (checking).
pub struct KeyRng {
    inner: Option<ChaCha20Rng>,
    script: VecDeque<[u8; 32]>,
    pub drawn: Vec<[u8; 32]>,
    pub bad_draws: usize,
}

impl KeyRng {
    fn recording(seed: u8) -> Self {
        Self {
            inner: Some(ChaCha20Rng::from_seed([seed; 32])),
            script: VecDeque::new(),
            drawn: Vec::new(),
            bad_draws: 0,
        }
    }

    fn scripted(keys: Vec<[u8; 32]>) -> Self {
        Self {
            inner: None,
            script: keys.into(),
            drawn: Vec::new(),
            bad_draws: 0,
        }
    }

    fn next_key(&mut self) -> [u8; 32] {
        let mut key = [0u8; 32];
        match &mut self.inner {
            Some(rng) => rand_core::Rng::fill_bytes(rng, &mut key),
            None => match self.script.pop_front() {
                Some(k) => key = k,
                None => self.bad_draws += 1,
            },
        }
        self.drawn.push(key);
        key
    }
}

impl TryRng for KeyRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.bad_draws += 1;
        Ok(0)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.bad_draws += 1;
        Ok(0)
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        if dst.len() == 32 {
            dst.copy_from_slice(&self.next_key());
        } else {
            // The protocol only ever draws whole 32-byte keys.
            self.bad_draws += 1;
            dst.fill(0);
        }
        Ok(())
    }
}

impl TryCryptoRng for KeyRng {}

struct PreKeys {
    signed: SignedPreKey,
    one_time: Option<OneTimePreKey>,
}

impl PreKeySource for PreKeys {
    fn signed_prekey(&self, id: SignedPreKeyId) -> Option<SignedPreKey> {
        (id == self.signed.id()).then(|| self.signed.clone())
    }

    fn one_time_prekey(&self, id: OneTimePreKeyId) -> Option<OneTimePreKey> {
        self.one_time.as_ref().filter(|k| k.id() == id).cloned()
    }
}

fn key32(hex_str: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(hex_str).map_err(|e| format!("bad hex {hex_str:?}: {e}"))?;
    bytes
        .try_into()
        .map_err(|_| format!("expected 32 bytes: {hex_str:?}"))
}

/// The parties' key material of one X3DH vector.
struct Parties {
    alice: IdentityKeyPair,
    bob: IdentityKeyPair,
    prekeys: PreKeys,
    ephemeral: [u8; 32],
}

impl Parties {
    fn from_vector(v: &X3dhVector) -> Result<Self, String> {
        let alice = IdentityKeyPair::from_seed(&key32(&v.alice_identity_seed)?);
        let bob = IdentityKeyPair::from_seed(&key32(&v.bob_identity_seed)?);
        let signed = SignedPreKey::from_private_bytes(
            SignedPreKeyId::new(v.bob_signed_prekey_id),
            &bob,
            &key32(&v.bob_signed_prekey_private)?,
        );
        let one_time = match (&v.bob_one_time_prekey_id, &v.bob_one_time_prekey_private) {
            (Some(id), Some(private)) => Some(OneTimePreKey::from_private_bytes(
                OneTimePreKeyId::new(*id),
                &key32(private)?,
            )),
            (None, None) => None,
            _ => return Err("one-time prekey id and private must both be null or set".into()),
        };
        Ok(Self {
            alice,
            bob,
            prekeys: PreKeys { signed, one_time },
            ephemeral: key32(&v.alice_ephemeral_private)?,
        })
    }

    fn bundle(&self) -> PreKeyBundle {
        PreKeyBundle::new(
            &self.bob,
            &self.prekeys.signed,
            self.prekeys.one_time.as_ref(),
        )
    }
}

// ---------------------------------------------------------------- generate

fn seeded_key(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut k = [0u8; 32];
    rand_core::Rng::fill_bytes(rng, &mut k);
    k
}

fn x3dh_vector(description: &str, seed: u8, with_opk: bool) -> Result<X3dhVector, String> {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let alice_seed = seeded_key(&mut rng);
    let bob_seed = seeded_key(&mut rng);
    let spk_private = seeded_key(&mut rng);
    let opk_private = seeded_key(&mut rng);
    let ephemeral = seeded_key(&mut rng);
    let bob = IdentityKeyPair::from_seed(&bob_seed);
    let spk_id = SignedPreKeyId::new(u32::from(seed) * 1000 + 1);
    let spk = SignedPreKey::from_private_bytes(spk_id, &bob, &spk_private);
    let mut v = X3dhVector {
        description: description.into(),
        alice_identity_seed: hex::encode(alice_seed),
        alice_ephemeral_private: hex::encode(ephemeral),
        bob_identity_seed: hex::encode(bob_seed),
        bob_signed_prekey_id: spk.id().get(),
        bob_signed_prekey_private: hex::encode(spk_private),
        bob_signed_prekey_signature: hex::encode(spk.signature()),
        bob_one_time_prekey_id: with_opk.then_some(u32::from(seed) * 1000 + 77),
        bob_one_time_prekey_private: with_opk.then(|| hex::encode(opk_private)),
        shared_secret: String::new(),
        associated_data: String::new(),
    };
    let parties = Parties::from_vector(&v)?;
    let (sk, ad) = hazmat::x3dh_initiate(&parties.alice, &parties.bundle(), &parties.ephemeral)
        .map_err(|e| e.to_string())?;
    v.shared_secret = hex::encode(*sk);
    v.associated_data = hex::encode(ad);
    Ok(v)
}

fn sealed_vector(description: &str, seed: u8, contents: &[u8]) -> Result<SealedVector, String> {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let sender_seed = seeded_key(&mut rng);
    let recipient_seed = seeded_key(&mut rng);
    let ephemeral = seeded_key(&mut rng);
    let sender = IdentityKeyPair::from_seed(&sender_seed);
    let recipient = IdentityKeyPair::from_seed(&recipient_seed);
    let sealed = sealed::seal(
        &sender,
        recipient.public(),
        contents,
        &mut KeyRng::scripted(vec![ephemeral]),
    )
    .map_err(|e| e.to_string())?;
    Ok(SealedVector {
        description: description.into(),
        sender_identity_seed: hex::encode(sender_seed),
        recipient_identity_seed: hex::encode(recipient_seed),
        ephemeral_private: hex::encode(ephemeral),
        contents: hex::encode(contents),
        sealed: hex::encode(sealed),
    })
}

/// A script step for generation.
enum Step {
    Send(Party, Vec<u8>),
    /// Receive the k-th send.
    Receive(Party, usize),
}

fn text(label: &str) -> Vec<u8> {
    label.as_bytes().to_vec()
}

fn long_text(len: usize) -> Vec<u8> {
    (0..len).map(|i| b"sotto vectors "[i % 14]).collect()
}

struct Runner {
    parties: Parties,
    alice_rng: KeyRng,
    bob_rng: KeyRng,
    alice: Session,
    bob: Option<Session>,
}

fn generate_session(
    description: &str,
    x3dh_index: usize,
    x3dh: &X3dhVector,
    seed: u8,
    steps: Vec<Step>,
) -> Result<SessionVector, String> {
    let parties = Parties::from_vector(x3dh)?;
    let mut alice_rng = KeyRng::recording(seed);
    let first_ratchet = alice_rng.next_key();
    let alice = hazmat::initiate_session(
        &parties.alice,
        &parties.bundle(),
        &parties.ephemeral,
        &first_ratchet,
    )
    .map_err(|e| e.to_string())?;
    let mut r = Runner {
        parties,
        alice_rng,
        bob_rng: KeyRng::recording(seed.wrapping_add(100)),
        alice,
        bob: None,
    };
    let mut events = Vec::new();
    let mut sent: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for step in steps {
        match step {
            Step::Send(by, plaintext) => {
                let wire = match by {
                    Party::Alice => r.alice.encrypt(&plaintext),
                    Party::Bob => r
                        .bob
                        .as_mut()
                        .ok_or("bob cannot send before receiving")?
                        .encrypt(&plaintext),
                }
                .map_err(|e| e.to_string())?;
                events.push(Event::Send {
                    by,
                    plaintext: hex::encode(&plaintext),
                    wire: hex::encode(&wire),
                });
                sent.push((plaintext, wire));
            }
            Step::Receive(by, k) => {
                let (plaintext, wire) = sent.get(k).ok_or("receive of an unknown send")?;
                let got = receive(&mut r, by, wire)?;
                if &got != plaintext {
                    return Err(format!("generation: send {k} decrypted wrongly"));
                }
                events.push(Event::Receive { by, send_index: k });
            }
        }
    }
    Ok(SessionVector {
        description: description.into(),
        x3dh: x3dh_index,
        alice_ratchet_privates: r.alice_rng.drawn.iter().map(hex::encode).collect(),
        bob_ratchet_privates: r.bob_rng.drawn.iter().map(hex::encode).collect(),
        events,
    })
}

fn receive(r: &mut Runner, by: Party, wire: &[u8]) -> Result<Vec<u8>, String> {
    match by {
        Party::Alice => r
            .alice
            .decrypt(wire, &mut r.alice_rng)
            .map_err(|e| e.to_string()),
        Party::Bob => match &mut r.bob {
            Some(session) => session
                .decrypt(wire, &mut r.bob_rng)
                .map_err(|e| e.to_string()),
            None => {
                let (session, first) =
                    Session::respond(&r.parties.bob, &r.parties.prekeys, wire, &mut r.bob_rng)
                        .map_err(|e| e.to_string())?;
                r.bob = Some(session);
                Ok(first.plaintext.clone())
            }
        },
    }
}

/// Builds the vectors from fixed seeds.
pub fn generate() -> Result<Vectors, String> {
    use Party::{Alice as A, Bob as B};
    use Step::{Receive as Rx, Send as Tx};

    let x3dh = vec![
        x3dh_vector("X3DH with a one-time prekey (DH1..DH4)", 1, true)?,
        x3dh_vector("X3DH without a one-time prekey (DH1..DH3)", 2, false)?,
    ];

    // Session 0: in order, empty and > 4 KiB plaintexts, several DH steps
    // each way.
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

    // Session 1: Bob receives Alice's PreKeyMessages out of order (the
    // third first), out-of-order delivery inside a chain, and a skipped
    // message delivered after several DH steps.
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

    let sessions = vec![
        generate_session(
            "in order, empty and 5000-byte plaintexts, DH steps each way",
            0,
            &x3dh[0],
            10,
            s0,
        )?,
        generate_session(
            "out of order: PreKeyMessages, inside a chain, skipped keys after DH steps",
            1,
            &x3dh[1],
            20,
            s1,
        )?,
    ];

    let padding = [
        0usize, 1, 254, 255, 256, 257, 1000, 4095, 4096, 65_535, 1_048_576, 16_777_216,
    ]
    .into_iter()
    .map(|n| PaddingVector {
        length: n,
        padded_length: pad::padded_len(n + 1),
    })
    .collect();

    let sealed = vec![
        sealed_vector("empty contents", 30, &[])?,
        sealed_vector("a 300-byte payload", 31, &long_text(300))?,
    ];

    Ok(Vectors {
        version: 1,
        x3dh,
        sessions,
        padding,
        sealed,
    })
}

/// The vectors as the exact JSON text of the file.
pub fn generate_json() -> Result<String, String> {
    let v = generate()?;
    let mut json = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
    json.push('\n');
    Ok(json)
}

// ------------------------------------------------------------------- check

/// The outcome of a replay.
#[derive(Default)]
pub struct Report {
    pub checks: usize,
    pub failures: Vec<String>,
}

impl Report {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.checks += 1;
        if !ok {
            self.failures.push(format!("MISMATCH {}", what()));
        }
    }

    fn fail(&mut self, what: String) {
        self.checks += 1;
        self.failures.push(format!("MISMATCH {what}"));
    }

    /// `conformance: N checks, M failed`.
    pub fn summary(&self) -> String {
        format!(
            "conformance: {} checks, {} failed",
            self.checks,
            self.failures.len()
        )
    }
}

/// Replays any file of the schema.
pub fn check_json(text: &str) -> Report {
    let mut report = Report::default();
    match serde_json::from_str::<Vectors>(text) {
        Ok(v) => check(&v, &mut report),
        Err(e) => report.fail(format!("file does not follow the schema: {e}")),
    }
    report
}

fn check(v: &Vectors, report: &mut Report) {
    report.check(v.version == 1, || format!("version {} != 1", v.version));
    for (i, x) in v.x3dh.iter().enumerate() {
        check_x3dh(i, x, report);
    }
    for (i, s) in v.sessions.iter().enumerate() {
        match v.x3dh.get(s.x3dh) {
            Some(x) => check_session(i, s, x, report),
            None => report.fail(format!("sessions[{i}]: x3dh index {} out of range", s.x3dh)),
        }
    }
    for (i, s) in v.sealed.iter().enumerate() {
        if let Err(e) = check_sealed(i, s, report) {
            report.fail(format!("sealed[{i}]: {e}"));
        }
    }
    for (i, p) in v.padding.iter().enumerate() {
        let got = pad::padded_len_for_plaintext(p.length).ok();
        report.check(got == Some(p.padded_length), || {
            format!(
                "padding[{i}]: length {} pads to {:?}, file says {}",
                p.length, got, p.padded_length
            )
        });
    }
}

fn check_sealed(i: usize, s: &SealedVector, report: &mut Report) -> Result<(), String> {
    let sender = IdentityKeyPair::from_seed(&key32(&s.sender_identity_seed)?);
    let recipient = IdentityKeyPair::from_seed(&key32(&s.recipient_identity_seed)?);
    let contents = hex::decode(&s.contents).map_err(|e| e.to_string())?;
    let want = hex::decode(&s.sealed).map_err(|e| e.to_string())?;
    let mut rng = KeyRng::scripted(vec![key32(&s.ephemeral_private)?]);
    let got = sealed::seal(&sender, recipient.public(), &contents, &mut rng)
        .map_err(|e| e.to_string())?;
    report.check(got == want, || {
        format!("sealed[{i}]: sealing gives other bytes")
    });
    match sealed::open(&recipient, &want) {
        Ok(opened) => {
            report.check(opened.sender == *sender.public(), || {
                format!("sealed[{i}]: opened with another sender")
            });
            report.check(*opened.contents == contents, || {
                format!("sealed[{i}]: opened to other contents")
            });
        }
        Err(e) => report.fail(format!("sealed[{i}]: does not open: {e}")),
    }
    Ok(())
}

fn check_x3dh(i: usize, x: &X3dhVector, report: &mut Report) {
    let parties = match Parties::from_vector(x) {
        Ok(p) => p,
        Err(e) => return report.fail(format!("x3dh[{i}]: {e}")),
    };
    report.check(
        hex::encode(parties.prekeys.signed.signature()) == x.bob_signed_prekey_signature,
        || format!("x3dh[{i}]: signed prekey signature differs"),
    );
    match hazmat::x3dh_initiate(&parties.alice, &parties.bundle(), &parties.ephemeral) {
        Ok((sk, ad)) => {
            report.check(hex::encode(*sk) == x.shared_secret, || {
                format!(
                    "x3dh[{i}]: initiator shared secret {} != {}",
                    hex::encode(*sk),
                    x.shared_secret
                )
            });
            report.check(hex::encode(ad) == x.associated_data, || {
                format!(
                    "x3dh[{i}]: associated data {} != {}",
                    hex::encode(ad),
                    x.associated_data
                )
            });
        }
        Err(e) => report.fail(format!("x3dh[{i}]: initiator failed: {e}")),
    }
    let ephemeral_public = x25519_public(&parties.ephemeral);
    match hazmat::x3dh_respond(
        &parties.bob,
        &parties.prekeys.signed,
        parties.prekeys.one_time.as_ref(),
        parties.alice.public(),
        &ephemeral_public,
    ) {
        Ok((sk, _)) => report.check(hex::encode(*sk) == x.shared_secret, || {
            format!("x3dh[{i}]: responder shared secret differs")
        }),
        Err(e) => report.fail(format!("x3dh[{i}]: responder failed: {e}")),
    }
}

/// EK_A's public key (X25519 base-point multiplication, via the prekey type
/// that performs it).
fn x25519_public(private: &[u8; 32]) -> [u8; 32] {
    OneTimePreKey::from_private_bytes(OneTimePreKeyId::new(0), private)
        .public()
        .to_bytes()
}

fn keys(list: &[String]) -> Result<Vec<[u8; 32]>, String> {
    list.iter().map(|k| key32(k)).collect()
}

fn check_session(i: usize, s: &SessionVector, x: &X3dhVector, report: &mut Report) {
    let setup = Parties::from_vector(x).and_then(|p| {
        Ok((
            p,
            keys(&s.alice_ratchet_privates)?,
            keys(&s.bob_ratchet_privates)?,
        ))
    });
    let (parties, alice_keys, bob_keys) = match setup {
        Ok(v) => v,
        Err(e) => return report.fail(format!("sessions[{i}]: {e}")),
    };
    let Some(first) = alice_keys.first() else {
        return report.fail(format!("sessions[{i}]: alice_ratchet_privates is empty"));
    };
    let alice = match hazmat::initiate_session(
        &parties.alice,
        &parties.bundle(),
        &parties.ephemeral,
        first,
    ) {
        Ok(s) => s,
        Err(e) => return report.fail(format!("sessions[{i}]: initiation failed: {e}")),
    };
    let mut r = Runner {
        parties,
        alice_rng: KeyRng::scripted(alice_keys[1..].to_vec()),
        bob_rng: KeyRng::scripted(bob_keys),
        alice,
        bob: None,
    };
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
                let plaintext = match hex::decode(plaintext) {
                    Ok(p) => p,
                    Err(e) => {
                        report.fail(format!("{at}: bad plaintext hex: {e}"));
                        continue;
                    }
                };
                let produced = match by {
                    Party::Alice => r.alice.encrypt(&plaintext).map_err(|e| e.to_string()),
                    Party::Bob => match &mut r.bob {
                        Some(b) => b.encrypt(&plaintext).map_err(|e| e.to_string()),
                        None => Err("bob sends before he has a session".into()),
                    },
                };
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
                let wire = match hex::decode(wire) {
                    Ok(w) => w,
                    Err(e) => {
                        report.fail(format!("{at}: bad wire hex: {e}"));
                        continue;
                    }
                };
                match receive(&mut r, *by, &wire) {
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
    // Exactly the keys drawn, in the order drawn: none left over, none missing.
    for (who, rng) in [("alice", &r.alice_rng), ("bob", &r.bob_rng)] {
        report.check(rng.bad_draws == 0 && rng.script.is_empty(), || {
            format!(
                "sessions[{i}]: {who}: {} listed ratchet keys unused, {} draws beyond the list",
                rng.script.len(),
                rng.bad_draws
            )
        });
    }
}
