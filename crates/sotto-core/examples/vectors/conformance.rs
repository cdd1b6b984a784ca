//! Generation and replay of the protocol test vectors (schema: PROTOCOL.md
//! "Test vectors"). Shared by the `vectors` example and the test that keeps
//! `docs/test-vectors/v1.json` current.

#![allow(dead_code, unreachable_pub, missing_docs)]

// Child modules: `main.rs` and `tests/vectors.rs` both include this
// file, so their paths are spelled out.
#[path = "group_membership.rs"]
mod group_membership;
#[path = "groups.rs"]
mod groups;
#[path = "v2.rs"]
pub mod v2;

use std::collections::VecDeque;
use std::convert::Infallible;

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use rand_core::{TryCryptoRng, TryRng};
use serde::{Deserialize, Serialize};
use sotto_core::body::{BODY_AD, BODY_REFERENCE_LEN, blob_len};
use sotto_core::{
    BodyKey, BodyReference, Device, DeviceId, DeviceList, Error, IdentityKey, IdentityKeyPair,
    LinkAccept, LinkCode, LinkKey, LinkOffer, OneTimePreKey, OneTimePreKeyId, PreKeyBundle,
    PreKeySource, Session, SignedDeviceList, SignedPreKey, SignedPreKeyId, hazmat, pad, sealed,
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
    pub devices: DevicesVectors,
    pub detached_bodies: Vec<DetachedBodyVector>,
    pub groups: Vec<groups::GroupVector>,
    pub group_membership: group_membership::GroupMembershipVectors,
}

/// One detached body (PROTOCOL.md "Detached bodies"): the key drawn, the
/// body, the reference each device's session carries and the blob.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetachedBodyVector {
    pub description: String,
    pub key: String,
    pub body: String,
    pub reference: String,
    pub blob: String,
}

/// Linked devices (PROTOCOL.md "Linked devices").
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesVectors {
    pub lists: Vec<DeviceListVector>,
    pub invalid_lists: Vec<InvalidListVector>,
    pub updates: Vec<UpdateVector>,
    pub link_codes: Vec<LinkCodeVector>,
    pub links: Vec<LinkVector>,
}

/// A device list, its encoding and the account key's signed form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceListVector {
    pub description: String,
    pub account_identity_seed: String,
    pub version: u64,
    pub issued_at: u64,
    pub devices: Vec<DeviceVector>,
    pub encoding: String,
    pub signed: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceVector {
    pub id: u32,
    pub identity_key: String,
    pub added_at: u64,
}

/// A signed list that decoding or verifying against `account` refuses,
/// with the rule it breaks.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidListVector {
    pub description: String,
    pub account: String,
    pub signed: String,
    pub error: String,
}

/// Whether `lists[offered]` supersedes `lists[current]` (or no list).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateVector {
    pub description: String,
    pub current: Option<usize>,
    pub offered: usize,
    pub error: Option<String>,
}

/// A link code as typed: what it reads as, or the error.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkCodeVector {
    pub description: String,
    pub text: String,
    pub device_key: Option<String>,
    pub link_secret: Option<String>,
    pub error: Option<String>,
}

/// One link: the code, the link key, the offer of `lists[list]`, the
/// acceptance and the history transfer key.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkVector {
    pub description: String,
    pub account_identity_seed: String,
    pub device_identity_seed: String,
    pub link_secret: String,
    pub link_code: String,
    pub list: usize,
    pub device_id: u32,
    pub link_key: String,
    pub offer: String,
    pub accept: String,
    pub history_transfer_key: String,
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

/// An RNG that serves one fixed `N`-byte value (a link secret, a group id),
/// in one draw.
struct SecretRng<const N: usize> {
    secret: Option<[u8; N]>,
    bad_draws: usize,
}

impl<const N: usize> TryRng for SecretRng<N> {
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
        match self.secret.take() {
            Some(secret) if dst.len() == N => dst.copy_from_slice(&secret),
            _ => {
                self.bad_draws += 1;
                dst.fill(0);
            }
        }
        Ok(())
    }
}

impl<const N: usize> TryCryptoRng for SecretRng<N> {}

/// The link code of `device` with this secret, as `LinkCode::generate`
/// makes it.
fn link_code(device: &IdentityKey, secret: [u8; 16]) -> Result<LinkCode, String> {
    let mut rng = SecretRng {
        secret: Some(secret),
        bad_draws: 0,
    };
    let code = LinkCode::generate(device, &mut rng);
    if rng.bad_draws != 0 || rng.secret.is_some() {
        return Err("a link code draws exactly one 16-byte secret".into());
    }
    Ok(code)
}

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

fn bytes_n<const N: usize>(hex_str: &str) -> Result<[u8; N], String> {
    let bytes = hex::decode(hex_str).map_err(|e| format!("bad hex {hex_str:?}: {e}"))?;
    bytes
        .try_into()
        .map_err(|_| format!("expected {N} bytes: {hex_str:?}"))
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

// ------------------------------------------------------- linked devices

/// 2023-11-14T22:13:20Z in milliseconds: the vectors' clock.
const T0: u64 = 1_700_000_000_000;

fn device_list_vector(
    description: &str,
    account_seed: &[u8; 32],
    list: &DeviceList,
) -> Result<DeviceListVector, String> {
    let account = IdentityKeyPair::from_seed(account_seed);
    let signed = list.sign(&account).map_err(|e| e.to_string())?;
    Ok(DeviceListVector {
        description: description.into(),
        account_identity_seed: hex::encode(account_seed),
        version: list.version(),
        issued_at: list.issued_at(),
        devices: list
            .devices()
            .iter()
            .map(|d| DeviceVector {
                id: d.id.get(),
                identity_key: hex::encode(d.identity.as_bytes()),
                added_at: d.added_at,
            })
            .collect(),
        encoding: hex::encode(list.to_bytes()),
        signed: hex::encode(signed.to_bytes()),
    })
}

/// `encoding || Ed25519-Sign(account, "sotto/device-list/v1" || encoding)`
/// for any bytes, so that a broken rule is the only thing wrong.
fn sign_raw(account: &IdentityKeyPair, encoding: &[u8]) -> Vec<u8> {
    let mut message = b"sotto/device-list/v1".to_vec();
    message.extend_from_slice(encoding);
    let mut out = encoding.to_vec();
    out.extend_from_slice(account.sign(&message).as_bytes());
    out
}

/// The error code of the vectors for an error of the device parsers.
fn error_code(e: &Error) -> &'static str {
    match e {
        Error::UnsupportedVersion(_) => "unsupported_format",
        Error::Truncated { .. } => "truncated",
        Error::TrailingBytes(_) => "trailing_bytes",
        Error::EmptyDeviceList => "empty",
        Error::TooManyDevices { .. } => "too_many_devices",
        Error::DuplicateDeviceId(_) => "duplicate_id",
        Error::DeviceIdsOutOfOrder { .. } => "ids_out_of_order",
        Error::DuplicateDeviceKey { .. } => "duplicate_key",
        Error::DeviceListVersionZero => "version_zero",
        Error::InvalidIdentityKey => "invalid_key",
        Error::InvalidSignature => "invalid_signature",
        Error::AccountMismatch => "account_mismatch",
        Error::DeviceListRollback { .. } => "rollback",
        Error::DeviceListConflict { .. } => "conflict",
        Error::InvalidLinkCodePrefix => "prefix",
        Error::InvalidLinkCodeCharacter { .. } => "character",
        Error::InvalidLinkCodeLength { .. } => "length",
        Error::LinkCodeChecksum => "checksum",
        _ => "other",
    }
}

fn invalid_lists(
    account_seed: &[u8; 32],
    good: &DeviceList,
    other_account: &IdentityKey,
) -> Result<Vec<InvalidListVector>, String> {
    let account = IdentityKeyPair::from_seed(account_seed);
    let enc = good.to_bytes();
    // Offsets in the encoding: the count at 49, device i at 50 + 44 i
    // (id, then key 4 bytes later, then added_at 36 bytes later).
    let patched = |at: usize, with: &[u8]| {
        let mut b = enc.clone();
        b[at..at + with.len()].copy_from_slice(with);
        b
    };
    let mut small_order = [0u8; 32];
    small_order[0] = 1;
    // y = 3 + p: a point of large order, encoded non-canonically.
    let mut non_canonical = [0xffu8; 32];
    non_canonical[0] = 0xf0;
    non_canonical[31] = 0x7f;
    let seventeen = {
        let mut b = enc[..49].to_vec();
        b.push(17);
        for i in 0..17u8 {
            b.extend_from_slice(&u32::from(i + 1).to_be_bytes());
            b.extend_from_slice(
                IdentityKeyPair::from_seed(&[i + 100; 32])
                    .public()
                    .as_bytes(),
            );
            b.extend_from_slice(&T0.to_be_bytes());
        }
        b
    };
    let signed = sign_raw(&account, &enc);
    let mut flipped = signed.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    let mut trailing = signed.clone();
    trailing.push(0);
    let entries: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "format byte 0x02",
            sign_raw(&account, &patched(0, &[0x02])),
            "unsupported_format",
        ),
        (
            "version 0",
            sign_raw(&account, &patched(33, &0u64.to_be_bytes())),
            "version_zero",
        ),
        (
            "no device",
            sign_raw(
                &account,
                &enc[..50]
                    .iter()
                    .copied()
                    .enumerate()
                    .map(|(i, b)| if i == 49 { 0 } else { b })
                    .collect::<Vec<u8>>(),
            ),
            "empty",
        ),
        (
            "17 devices",
            sign_raw(&account, &seventeen),
            "too_many_devices",
        ),
        (
            "two devices with id 1",
            sign_raw(&account, &patched(94, &1u32.to_be_bytes())),
            "duplicate_id",
        ),
        (
            "ids 1, 3, 2",
            sign_raw(&account, &{
                let mut b = patched(94, &3u32.to_be_bytes());
                b[138..142].copy_from_slice(&2u32.to_be_bytes());
                b
            }),
            "ids_out_of_order",
        ),
        (
            "the account's key listed twice",
            sign_raw(&account, &patched(98, good.account().as_bytes())),
            "duplicate_key",
        ),
        (
            "a device key of small order",
            sign_raw(&account, &patched(98, &small_order)),
            "invalid_key",
        ),
        (
            "a device key encoded non-canonically",
            sign_raw(&account, &patched(98, &non_canonical)),
            "invalid_key",
        ),
        (
            "an account key of small order",
            sign_raw(&account, &patched(1, &small_order)),
            "invalid_key",
        ),
        ("a byte after the signature", trailing, "trailing_bytes"),
        (
            "the signature's last byte missing",
            signed[..signed.len() - 1].to_vec(),
            "truncated",
        ),
        (
            "a bit of the signature flipped",
            flipped,
            "invalid_signature",
        ),
        (
            "verified against another account key",
            signed.clone(),
            "account_mismatch",
        ),
    ];
    entries
        .into_iter()
        .map(|(description, bytes, error)| {
            let expected = if error == "account_mismatch" {
                other_account
            } else {
                good.account()
            };
            // The generator agrees with the file it writes.
            let got = SignedDeviceList::from_bytes(&bytes).and_then(|s| s.verify(expected));
            match got {
                Err(e) if error_code(&e) == error => Ok(InvalidListVector {
                    description: description.into(),
                    account: hex::encode(expected.as_bytes()),
                    signed: hex::encode(&bytes),
                    error: error.into(),
                }),
                other => Err(format!("invalid list {description:?}: {other:?}")),
            }
        })
        .collect()
}

/// The text of a link code with this payload, its checksum recomputed:
/// for the codes `LinkCode` never prints (another format byte, an invalid
/// key). Base32 written out bit by bit, apart from the library's.
fn code_text(payload: &mut [u8; 51]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"sotto/link-code/v1")
        .chain_update(&payload[..49])
        .finalize();
    payload[49..].copy_from_slice(&digest[..2]);
    let bits: Vec<u8> = payload
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let symbols: Vec<char> = bits
        .chunks(5)
        .map(|chunk| {
            let v = (0..5).fold(0usize, |acc, i| {
                (acc << 1) | usize::from(*chunk.get(i).unwrap_or(&0))
            });
            char::from(b"abcdefghijklmnopqrstuvwxyz234567"[v])
        })
        .collect();
    let groups: Vec<String> = symbols.chunks(5).map(|g| g.iter().collect()).collect();
    format!("sotto-link:{}", groups.join("-"))
}

/// The text with its `index`-th symbol (separators not counted) replaced.
fn replace_symbol(text: &str, index: usize, with: char) -> String {
    let prefix = "sotto-link:";
    let mut seen = 0;
    let body: String = text[prefix.len()..]
        .chars()
        .map(|c| {
            if c == '-' {
                return c;
            }
            seen += 1;
            if seen - 1 == index { with } else { c }
        })
        .collect();
    format!("{prefix}{body}")
}

/// Link codes as typed: valid ones in several forms, and one of each
/// mistake, for the code of `device` with `secret`.
fn link_code_vectors(
    device: &IdentityKey,
    secret: [u8; 16],
) -> Result<Vec<LinkCodeVector>, String> {
    let code = link_code(device, secret)?;
    let text = code.to_string();
    let mut payload = [0u8; 51];
    payload[0] = 0x01;
    payload[1..33].copy_from_slice(device.as_bytes());
    payload[33..49].copy_from_slice(&secret);
    if code_text(&mut payload.clone()) != text {
        return Err("the library prints another text than the vectors' encoder".into());
    }
    let body: String = text["sotto-link:".len()..]
        .chars()
        .filter(|c| *c != '-')
        .collect();
    let mut bad_version = payload;
    bad_version[0] = 0x02;
    let mut bad_key = payload;
    bad_key[1..33].fill(0);
    bad_key[1] = 1;
    let alphabet = "abcdefghijklmnopqrstuvwxyz234567";
    let next_symbol = |c: char| -> Result<char, String> {
        let v = alphabet.find(c).ok_or("not a symbol")?;
        alphabet
            .chars()
            .nth((v + 1) % 32)
            .ok_or_else(|| "no symbol".into())
    };
    // The last symbol carries 3 bits and 2 zero bits: the next symbol of
    // the alphabet has a non-zero unused bit.
    let last = body.chars().last().ok_or("empty code")?;
    let middle = body.chars().nth(40).ok_or("short code")?;
    let spaced: Vec<String> = body
        .to_uppercase()
        .as_bytes()
        .chunks(5)
        .map(|g| String::from_utf8_lossy(g).into_owned())
        .collect();
    let valid = |description: &str, text: String| LinkCodeVector {
        description: description.into(),
        text,
        device_key: Some(hex::encode(device.as_bytes())),
        link_secret: Some(hex::encode(secret)),
        error: None,
    };
    let invalid = |description: &str, text: String, error: &str| LinkCodeVector {
        description: description.into(),
        text,
        device_key: None,
        link_secret: None,
        error: Some(error.into()),
    };
    let out = vec![
        valid("as printed", text.clone()),
        valid(
            "upper case, spaces, white space around",
            format!(" \tSOTTO-LINK: {}\n", spaced.join(" ")),
        ),
        valid("no separators", format!("Sotto-Link:{body}")),
        invalid(
            "another prefix",
            text.replacen("sotto-link:", "sotto-lnk:", 1),
            "prefix",
        ),
        invalid("no prefix", body.clone(), "prefix"),
        invalid("a zero typed", replace_symbol(&text, 10, '0'), "character"),
        invalid(
            "a last symbol with a non-zero unused bit",
            replace_symbol(&text, 81, next_symbol(last)?),
            "character",
        ),
        invalid(
            "a symbol missing",
            text[..text.len() - 1].to_string(),
            "length",
        ),
        invalid("a symbol too many", format!("{text}a"), "length"),
        invalid(
            "a mistyped symbol",
            replace_symbol(&text, 40, next_symbol(middle)?),
            "checksum",
        ),
        invalid(
            "format byte 0x02",
            code_text(&mut bad_version),
            "unsupported_format",
        ),
        invalid(
            "a device key of small order",
            code_text(&mut bad_key),
            "invalid_key",
        ),
    ];
    // The generator agrees with the file it writes.
    for v in &out {
        let got = v.text.parse::<LinkCode>();
        let agrees = match (&got, &v.error) {
            (Ok(read), None) => *read == code,
            (Err(e), Some(want)) => error_code(e) == want,
            _ => false,
        };
        if !agrees {
            return Err(format!("link code {:?}: {got:?}", v.description));
        }
    }
    Ok(out)
}

fn link_vector(
    description: &str,
    account_seed: &[u8; 32],
    device_seed: &[u8; 32],
    secret: [u8; 16],
    list_index: usize,
    list: &DeviceList,
) -> Result<LinkVector, String> {
    let account = IdentityKeyPair::from_seed(account_seed);
    let device = IdentityKeyPair::from_seed(device_seed);
    let code = link_code(device.public(), secret)?;
    let link_key = LinkKey::derive(&code, account.public());
    let signed = list.sign(&account).map_err(|e| e.to_string())?;
    let offer = LinkOffer::new(&link_key, &signed).map_err(|e| e.to_string())?;
    let accept = LinkAccept::new(&link_key, list.version()).map_err(|e| e.to_string())?;
    let history = link_key
        .history_transfer_key(list.version())
        .map_err(|e| e.to_string())?;
    Ok(LinkVector {
        description: description.into(),
        account_identity_seed: hex::encode(account_seed),
        device_identity_seed: hex::encode(device_seed),
        link_secret: hex::encode(secret),
        link_code: code.to_string(),
        list: list_index,
        device_id: offer.device_id().get(),
        link_key: hex::encode(*hazmat::link_key_bytes(&link_key)),
        offer: hex::encode(offer.to_bytes()),
        accept: hex::encode(accept.to_bytes()),
        history_transfer_key: hex::encode(history.as_bytes()),
    })
}

fn devices_vectors() -> Result<DevicesVectors, String> {
    let mut rng = ChaCha20Rng::from_seed([40; 32]);
    let account_seed = seeded_key(&mut rng);
    let second_seed = seeded_key(&mut rng);
    let third_seed = seeded_key(&mut rng);
    let rival_seed = seeded_key(&mut rng);
    let other_account_seed = seeded_key(&mut rng);
    let secrets = seeded_key(&mut rng);
    let mut first_secret = [0u8; 16];
    first_secret.copy_from_slice(&secrets[..16]);
    let mut second_secret = [0u8; 16];
    second_secret.copy_from_slice(&secrets[16..]);
    let pk = |seed: &[u8; 32]| *IdentityKeyPair::from_seed(seed).public();
    let e = |e: Error| e.to_string();

    let v1 = DeviceList::primary(&pk(&account_seed), T0);
    let v2 = v1.with_device(&pk(&second_seed), T0 + 60_000).map_err(e)?;
    let v3 = v2.with_device(&pk(&third_seed), T0 + 120_000).map_err(e)?;
    let v4 = v3
        .without_device(DeviceId::new(2), T0 + 180_000)
        .map_err(e)?;
    let rival_v2 = v1.with_device(&pk(&rival_seed), T0 + 90_000).map_err(e)?;
    let other = DeviceList::primary(&pk(&other_account_seed), T0);
    let mut full = v1.clone();
    for i in 1..16u8 {
        full = full
            .with_device(&pk(&[i; 32]), T0 + u64::from(i) * 1000)
            .map_err(e)?;
    }
    let lists = vec![
        (
            "a new account: the primary device alone",
            &account_seed,
            &v1,
        ),
        ("version 2: a second device linked", &account_seed, &v2),
        ("version 3: a third device linked", &account_seed, &v3),
        ("version 4: the second device removed", &account_seed, &v4),
        (
            "another version 2, with another device",
            &account_seed,
            &rival_v2,
        ),
        ("another account", &other_account_seed, &other),
        ("16 devices, the most a list holds", &account_seed, &full),
    ]
    .into_iter()
    .map(|(description, seed, list)| device_list_vector(description, seed, list))
    .collect::<Result<Vec<_>, String>>()?;

    let update =
        |description: &str, current: Option<usize>, offered: usize, error: Option<&str>| {
            UpdateVector {
                description: description.into(),
                current,
                offered,
                error: error.map(Into::into),
            }
        };
    let updates = vec![
        update("the first list seen of an account", None, 0, None),
        update("a device linked", Some(0), 1, None),
        update("versions skipped (a list withheld)", Some(1), 3, None),
        update("an older list", Some(3), 1, Some("rollback")),
        update("the same list again", Some(1), 1, Some("rollback")),
        update(
            "another list with the same version",
            Some(1),
            4,
            Some("conflict"),
        ),
        update(
            "another account's list",
            Some(0),
            5,
            Some("account_mismatch"),
        ),
    ];

    let links = vec![
        link_vector(
            "the second device joins the primary device's account (version 2, id 2)",
            &account_seed,
            &second_seed,
            first_secret,
            1,
            &v2,
        )?,
        link_vector(
            "the third device joins (version 3, id 3)",
            &account_seed,
            &third_seed,
            second_secret,
            2,
            &v3,
        )?,
    ];

    Ok(DevicesVectors {
        lists,
        invalid_lists: invalid_lists(&account_seed, &v3, &pk(&other_account_seed))?,
        updates,
        link_codes: link_code_vectors(&pk(&second_seed), first_secret)?,
        links,
    })
}

// ------------------------------------------------------- detached bodies

/// `body` with its trailing bytes zero, so that unpadding must keep zeros
/// that belong to the body.
fn ending_in_zeros(mut body: Vec<u8>, zeros: usize) -> Vec<u8> {
    let len = body.len();
    body[len - zeros..].fill(0);
    body
}

fn detached_body_vectors() -> Result<Vec<DetachedBodyVector>, String> {
    // One key per body, each drawn by `BodyKey::generate` from a seeded
    // RNG that records its draws.
    let mut rng = KeyRng::recording(50);
    let bodies = vec![
        ("an empty body: pads to 256 bytes", Vec::new()),
        ("a short body", text("a body sent to every device")),
        (
            "255 bytes ending in two zero bytes: 0x80 fills the 256 bytes exactly",
            ending_in_zeros(long_text(255), 2),
        ),
        (
            "1087 bytes: padded to 1088, a Padmé boundary, 0x80 alone",
            long_text(1087),
        ),
        (
            "16 KiB, the smallest body sotto-store sends detached: padded to 17408",
            long_text(16 * 1024),
        ),
    ];
    let mut out = Vec::new();
    for (description, body) in bodies {
        let key = BodyKey::generate(&mut rng);
        let blob = key.seal(&body).map_err(|e| e.to_string())?;
        let reference = BodyReference::new(&key, &blob).map_err(|e| e.to_string())?;
        let encoded = reference.to_bytes();
        // The generator agrees with the file it writes.
        let opened = BodyReference::from_bytes(encoded.as_slice()).and_then(|r| r.open(&blob));
        if opened.as_deref().map(Vec::as_slice) != Ok(&body[..]) {
            return Err(format!("detached body {description:?}: {opened:?}"));
        }
        out.push(DetachedBodyVector {
            description: description.into(),
            key: hex::encode(key.as_bytes()),
            body: hex::encode(&body),
            reference: hex::encode(encoded.as_slice()),
            blob: hex::encode(&blob),
        });
    }
    if rng.bad_draws != 0 || rng.drawn.len() != out.len() {
        return Err("a body key is exactly one 32-byte draw".into());
    }
    Ok(out)
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
        None,
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
        devices: devices_vectors()?,
        detached_bodies: detached_body_vectors()?,
        groups: groups::group_vectors()?,
        group_membership: group_membership::generate()?,
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
    check_devices(&v.devices, report);
    for (i, d) in v.detached_bodies.iter().enumerate() {
        if let Err(e) = check_detached_body(i, d, report) {
            report.fail(format!("detached_bodies[{i}]: {e}"));
        }
    }
    for (i, g) in v.groups.iter().enumerate() {
        if let Err(e) = groups::check_group(i, g, report) {
            report.fail(format!("groups[{i}]: {e}"));
        }
    }
    group_membership::check(&v.group_membership, report);
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
        None,
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

// --------------------------------------------------- check: linked devices

fn check_devices(v: &DevicesVectors, report: &mut Report) {
    let mut lists = Vec::new();
    for (i, l) in v.lists.iter().enumerate() {
        match check_list(l, report) {
            Ok(list) => lists.push(Some(list)),
            Err(e) => {
                report.fail(format!("devices.lists[{i}]: {e}"));
                lists.push(None);
            }
        }
    }
    for (i, l) in v.invalid_lists.iter().enumerate() {
        let got = key32(&l.account).and_then(|account| {
            let account = IdentityKey::from_bytes(&account).map_err(|e| e.to_string())?;
            let bytes = hex::decode(&l.signed).map_err(|e| e.to_string())?;
            Ok(SignedDeviceList::from_bytes(&bytes).and_then(|s| s.verify(&account)))
        });
        match got {
            Ok(Err(e)) => report.check(error_code(&e) == l.error, || {
                format!(
                    "devices.invalid_lists[{i}]: refused as {e:?}, file says {}",
                    l.error
                )
            }),
            Ok(Ok(_)) => report.fail(format!("devices.invalid_lists[{i}]: accepted")),
            Err(e) => report.fail(format!("devices.invalid_lists[{i}]: {e}")),
        }
    }
    for (i, u) in v.updates.iter().enumerate() {
        let list = |k: usize| lists.get(k).and_then(Option::as_ref);
        let Some(offered) = list(u.offered) else {
            report.fail(format!("devices.updates[{i}]: no list {}", u.offered));
            continue;
        };
        let current = match u.current {
            Some(k) => match list(k) {
                Some(c) => Some(c),
                None => {
                    report.fail(format!("devices.updates[{i}]: no list {k}"));
                    continue;
                }
            },
            None => None,
        };
        let got = offered.supersedes(current).err().map(|e| error_code(&e));
        report.check(got == u.error.as_deref(), || {
            format!("devices.updates[{i}]: {got:?}, file says {:?}", u.error)
        });
    }
    for (i, c) in v.link_codes.iter().enumerate() {
        if let Err(e) = check_link_code(c, report) {
            report.fail(format!("devices.link_codes[{i}]: {e}"));
        }
    }
    for (i, l) in v.links.iter().enumerate() {
        let list = lists.get(l.list).and_then(Option::as_ref);
        let signed = v.lists.get(l.list).map(|x| x.signed.as_str());
        match (list, signed) {
            (Some(list), Some(signed)) => {
                if let Err(e) = check_link(i, l, list, signed, report) {
                    report.fail(format!("devices.links[{i}]: {e}"));
                }
            }
            _ => report.fail(format!("devices.links[{i}]: no list {}", l.list)),
        }
    }
}

fn check_list(l: &DeviceListVector, report: &mut Report) -> Result<DeviceList, String> {
    let account = IdentityKeyPair::from_seed(&key32(&l.account_identity_seed)?);
    let devices = l
        .devices
        .iter()
        .map(|d| {
            let key =
                IdentityKey::from_bytes(&key32(&d.identity_key)?).map_err(|e| e.to_string())?;
            Ok(Device::new(DeviceId::new(d.id), key, d.added_at))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let list = DeviceList::new(*account.public(), l.version, l.issued_at, devices)
        .map_err(|e| e.to_string())?;
    let what = &l.description;
    report.check(hex::encode(list.to_bytes()) == l.encoding, || {
        format!("devices.lists ({what}): encoding differs")
    });
    let encoding = hex::decode(&l.encoding).map_err(|e| e.to_string())?;
    report.check(
        DeviceList::from_bytes(&encoding).as_ref() == Ok(&list),
        || format!("devices.lists ({what}): the encoding decodes to another list"),
    );
    let signed = list.sign(&account).map_err(|e| e.to_string())?;
    report.check(hex::encode(signed.to_bytes()) == l.signed, || {
        format!("devices.lists ({what}): signed list differs")
    });
    let file_signed = hex::decode(&l.signed).map_err(|e| e.to_string())?;
    let verified =
        SignedDeviceList::from_bytes(&file_signed).and_then(|s| s.verify(account.public()));
    report.check(verified.as_ref() == Ok(&list), || {
        format!("devices.lists ({what}): signed list does not verify: {verified:?}")
    });
    Ok(list)
}

fn check_link_code(c: &LinkCodeVector, report: &mut Report) -> Result<(), String> {
    let got = c.text.parse::<LinkCode>();
    match (&c.error, &c.device_key, &c.link_secret) {
        (None, Some(key), Some(secret)) => {
            let key = IdentityKey::from_bytes(&key32(key)?).map_err(|e| e.to_string())?;
            let want = link_code(&key, bytes_n::<16>(secret)?)?;
            report.check(got.as_ref() == Ok(&want), || {
                format!("link code {:?} reads as {got:?}", c.description)
            });
        }
        (Some(error), None, None) => {
            let code = got.as_ref().err().map(error_code);
            report.check(code == Some(error.as_str()), || {
                format!("link code {:?}: {got:?}, file says {error}", c.description)
            });
        }
        _ => return Err("set either error or device_key and link_secret".into()),
    }
    Ok(())
}

fn check_link(
    i: usize,
    l: &LinkVector,
    list: &DeviceList,
    signed_hex: &str,
    report: &mut Report,
) -> Result<(), String> {
    let at = format!("devices.links[{i}]");
    let account = IdentityKeyPair::from_seed(&key32(&l.account_identity_seed)?);
    let device = IdentityKeyPair::from_seed(&key32(&l.device_identity_seed)?);
    let code = link_code(device.public(), bytes_n::<16>(&l.link_secret)?)?;
    report.check(code.to_string() == l.link_code, || {
        format!("{at}: link code text differs")
    });
    report.check(
        l.link_code.parse::<LinkCode>().as_ref() == Ok(&code),
        || format!("{at}: link code does not read back"),
    );
    // The account device's side.
    let link_key = LinkKey::derive(&code, account.public());
    report.check(
        hex::encode(*hazmat::link_key_bytes(&link_key)) == l.link_key,
        || format!("{at}: link key differs"),
    );
    let signed = SignedDeviceList::from_bytes(&hex::decode(signed_hex).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    match LinkOffer::new(&link_key, &signed) {
        Ok(offer) => report.check(hex::encode(offer.to_bytes()) == l.offer, || {
            format!("{at}: offer differs")
        }),
        Err(e) => report.fail(format!("{at}: no offer: {e}")),
    }
    // The new device's side.
    let offer_bytes = hex::decode(&l.offer).map_err(|e| e.to_string())?;
    let verified = LinkOffer::from_bytes(&offer_bytes).and_then(|o| o.verify(&code));
    let verified = match verified {
        Ok(v) => v,
        Err(e) => {
            report.fail(format!("{at}: the new device refuses the offer: {e}"));
            return Ok(());
        }
    };
    report.check(verified.device_id.get() == l.device_id, || {
        format!("{at}: device id {} != {}", verified.device_id, l.device_id)
    });
    report.check(verified.device_list == *list, || {
        format!("{at}: the offer carries another list")
    });
    let version = list.version();
    match LinkAccept::new(&verified.link_key, version) {
        Ok(accept) => report.check(hex::encode(accept.to_bytes()) == l.accept, || {
            format!("{at}: acceptance differs")
        }),
        Err(e) => report.fail(format!("{at}: no acceptance: {e}")),
    }
    // The account device's check of the acceptance in the file.
    let accept_bytes = hex::decode(&l.accept).map_err(|e| e.to_string())?;
    let accepted = LinkAccept::from_bytes(&accept_bytes).and_then(|a| a.verify(&link_key, version));
    report.check(accepted.is_ok(), || {
        format!("{at}: the account device refuses the acceptance: {accepted:?}")
    });
    match link_key.history_transfer_key(version) {
        Ok(key) => report.check(
            hex::encode(key.as_bytes()) == l.history_transfer_key,
            || format!("{at}: history transfer key differs"),
        ),
        Err(e) => report.fail(format!("{at}: no history transfer key: {e}")),
    }
    Ok(())
}

// ------------------------------------------------- check: detached bodies

/// ChaCha20-Poly1305 of `plaintext` as it is, under `key`, the zero nonce
/// and `BODY_AD`: a blob that authenticates but was never padded, which
/// `BodyKey::seal` cannot make.
fn seal_unpadded(key: &[u8; 32], plaintext: &[u8]) -> Result<Vec<u8>, String> {
    use chacha20poly1305::aead::AeadInOut;
    use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
    let mut out = plaintext.to_vec();
    let tag = ChaCha20Poly1305::new(key.into())
        .encrypt_inout_detached(&Nonce::default(), &BODY_AD, out.as_mut_slice().into())
        .map_err(|e| e.to_string())?;
    out.extend_from_slice(&tag);
    Ok(out)
}

fn check_detached_body(
    i: usize,
    d: &DetachedBodyVector,
    report: &mut Report,
) -> Result<(), String> {
    let at = format!("detached_bodies[{i}] ({})", d.description);
    let key_bytes = key32(&d.key)?;
    let body = hex::decode(&d.body).map_err(|e| e.to_string())?;
    let reference = hex::decode(&d.reference).map_err(|e| e.to_string())?;
    let blob = hex::decode(&d.blob).map_err(|e| e.to_string())?;

    // The sender's side: the key is one 32-byte draw, the blob and the
    // reference are these bytes.
    let mut rng = KeyRng::scripted(vec![key_bytes]);
    let key = BodyKey::generate(&mut rng);
    report.check(
        key.as_bytes() == &key_bytes && rng.bad_draws == 0 && rng.script.is_empty(),
        || format!("{at}: the key is not the one 32-byte draw"),
    );
    match key.seal(&body) {
        Ok(sealed) => report.check(sealed == blob, || format!("{at}: blob differs")),
        Err(e) => report.fail(format!("{at}: sealing failed: {e}")),
    }
    report.check(blob_len(body.len()).ok() == Some(blob.len()), || {
        format!("{at}: the blob's length is not the padded body's + 16")
    });
    match BodyReference::new(&key, &blob) {
        Ok(made) => report.check(made.to_bytes().as_slice() == reference.as_slice(), || {
            format!("{at}: reference differs")
        }),
        Err(e) => report.fail(format!("{at}: no reference to the blob: {e}")),
    }

    // The receiver's side: the file's reference opens the file's blob.
    let decoded = match BodyReference::from_bytes(&reference) {
        Ok(r) => r,
        Err(e) => {
            report.fail(format!("{at}: the reference does not decode: {e}"));
            return Ok(());
        }
    };
    match decoded.open(&blob) {
        Ok(opened) => report.check(*opened == body, || format!("{at}: opens to another body")),
        Err(e) => report.fail(format!("{at}: the blob does not open: {e}")),
    }

    // Refused: a reference of another format or length; a blob with a bit
    // flipped, a byte short, or of another length than the reference
    // says; a reference whose digest is not the blob's; another body of
    // the same length under the same key (what another recipient of the
    // message could make); a blob that authenticates but is not padded.
    let mut other_format = reference.clone();
    other_format[0] ^= 0x03;
    report.check(
        BodyReference::from_bytes(&other_format) == Err(Error::UnsupportedVersion(other_format[0])),
        || {
            format!(
                "{at}: a reference of format {:#04x} is not refused",
                other_format[0]
            )
        },
    );
    report.check(
        BodyReference::from_bytes(&reference[..BODY_REFERENCE_LEN - 1]).is_err()
            && BodyReference::from_bytes(&[&reference[..], &[0]].concat()).is_err(),
        || {
            format!(
                "{at}: a reference of {} or {} bytes is not refused",
                BODY_REFERENCE_LEN - 1,
                BODY_REFERENCE_LEN + 1
            )
        },
    );
    for at_byte in [0, blob.len() / 2, blob.len() - 1] {
        let mut tampered = blob.clone();
        tampered[at_byte] ^= 0x01;
        report.check(
            decoded.open(&tampered) == Err(Error::AuthenticationFailed),
            || format!("{at}: a blob with byte {at_byte} flipped is not refused"),
        );
    }
    report.check(
        decoded.open(&blob[..blob.len() - 1]) == Err(Error::AuthenticationFailed),
        || format!("{at}: a blob one byte short is not refused"),
    );
    // The reference's own fields changed: the length one more, the
    // digest's last bit flipped.
    let changed = |offset: usize, change: &dyn Fn(&mut [u8])| {
        let mut bytes = reference.clone();
        change(&mut bytes[offset..]);
        BodyReference::from_bytes(&bytes)
    };
    let longer = changed(33, &|len| {
        let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        len[..4].copy_from_slice(&n.wrapping_add(1).to_be_bytes());
    });
    report.check(
        longer.and_then(|r| r.open(&blob)) == Err(Error::AuthenticationFailed),
        || format!("{at}: a blob shorter than its reference says is not refused"),
    );
    let other_digest = changed(BODY_REFERENCE_LEN - 1, &|digest| digest[0] ^= 0x01);
    report.check(
        other_digest.and_then(|r| r.open(&blob)) == Err(Error::AuthenticationFailed),
        || format!("{at}: a blob whose digest is not the reference's is not refused"),
    );
    // Another body of the same padded length: the body with its first
    // byte changed, or one byte for an empty body (both pad to 256).
    let mut other_body = body.clone();
    match other_body.first_mut() {
        Some(first) => *first ^= 0x01,
        None => other_body.push(0x01),
    }
    let forged = key.seal(&other_body).map_err(|e| e.to_string())?;
    report.check(forged.len() == blob.len(), || {
        format!("{at}: the other body's blob is not of the same length")
    });
    report.check(
        decoded.open(&forged) == Err(Error::AuthenticationFailed),
        || format!("{at}: another body of the same length under the same key is not refused"),
    );
    let mut unpadded = pad::pad(&body).map_err(|e| e.to_string())?;
    unpadded.push(0);
    let unpadded = seal_unpadded(&key_bytes, &unpadded)?;
    match BodyReference::new(&key, &unpadded) {
        Ok(unpadded_reference) => report.check(
            unpadded_reference.open(&unpadded) == Err(Error::AuthenticationFailed),
            || format!("{at}: a blob whose padding is not canonical is not refused"),
        ),
        Err(e) => report.fail(format!("{at}: no reference to the unpadded blob: {e}")),
    }
    Ok(())
}
