//! The `groups` section of the test vectors (PROTOCOL.md section 14,
//! "Test vectors"): a sender key's random draws, its distributions and
//! messages, and one receiver's view of them, with the serialized states
//! at the end.

use std::collections::VecDeque;
use std::convert::Infallible;

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use rand_core::{TryCryptoRng, TryRng};
use serde::{Deserialize, Serialize};
use sotto_core::group::{
    DistributionStatus, GroupError, GroupId, SenderKey, SenderKeyDistribution, SenderKeyReceiver,
};

use super::Report;

/// One sender and one receiver of a group.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupVector {
    pub description: String,
    /// The one 32-byte draw of `GroupId::generate`.
    pub group_id: String,
    /// The draws of `SenderKey::generate`, then of each `rotate`.
    pub chains: Vec<GroupChainVector>,
    pub events: Vec<GroupEvent>,
    /// `SenderKey::to_bytes` after the last event.
    pub sender_state: String,
    /// `SenderKeyReceiver::to_bytes` after the last event.
    pub receiver_state: String,
}

/// What one chain drew, in order, and what follows from it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupChainVector {
    /// The 4 bytes drawn for the chain id.
    pub chain_id_draw: String,
    /// The chain id: `u32be(chain_id_draw)`.
    pub chain_id: u32,
    /// The 32 bytes drawn for the chain key.
    pub chain_key: String,
    /// The 32 bytes drawn for the Ed25519 seed of the signing key.
    pub signing_seed: String,
    /// The signing public key.
    pub signing_public: String,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum GroupEvent {
    /// The sender encrypts `plaintext` into `wire`.
    Send { plaintext: String, wire: String },
    /// The sender rotates: it draws the next entry of `chains`.
    Rotate,
    /// The sender's `distribution()` at this point.
    Distribution { distribution: String },
    /// The receiver takes in the k-th distribution event (0-based); the
    /// first one creates it, with status "added".
    Process {
        distribution_index: usize,
        status: String,
    },
    /// The receiver decrypts the k-th send (0-based) to its plaintext.
    Receive { send_index: usize },
    /// The receiver refuses the k-th send for `error`, unchanged.
    Refuse { send_index: usize, error: String },
}

/// An RNG that records every draw (generation) or serves a fixed list of
/// draws, each of the length asked (checking).
struct DrawRng {
    inner: Option<ChaCha20Rng>,
    script: VecDeque<Vec<u8>>,
    drawn: Vec<Vec<u8>>,
    bad_draws: usize,
}

impl DrawRng {
    fn recording(seed: u8) -> Self {
        Self {
            inner: Some(ChaCha20Rng::from_seed([seed; 32])),
            script: VecDeque::new(),
            drawn: Vec::new(),
            bad_draws: 0,
        }
    }

    fn scripted(draws: Vec<Vec<u8>>) -> Self {
        Self {
            inner: None,
            script: draws.into(),
            drawn: Vec::new(),
            bad_draws: 0,
        }
    }
}

impl TryRng for DrawRng {
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
        match &mut self.inner {
            Some(rng) => rand_core::Rng::fill_bytes(rng, dst),
            None => match self.script.pop_front() {
                Some(draw) if draw.len() == dst.len() => dst.copy_from_slice(&draw),
                _ => {
                    self.bad_draws += 1;
                    dst.fill(0);
                }
            },
        }
        self.drawn.push(dst.to_vec());
        Ok(())
    }
}

impl TryCryptoRng for DrawRng {}

/// The error code of the vectors for a refusal of section 14.
pub fn error_code(e: &GroupError) -> &'static str {
    match e {
        GroupError::Duplicate { .. } => "duplicate",
        GroupError::UnknownChain(_) => "unknown_chain",
        GroupError::TooManySkipped { .. } => "too_many_skipped",
        GroupError::InvalidSignature => "invalid_signature",
        GroupError::GroupMismatch => "group_mismatch",
        GroupError::ChainConflict(_) => "chain_conflict",
        GroupError::AuthenticationFailed => "authentication_failed",
        _ => "other",
    }
}

fn status_code(s: DistributionStatus) -> &'static str {
    match s {
        DistributionStatus::Added => "added",
        DistributionStatus::AlreadyKnown => "already_known",
        _ => "other",
    }
}

// ---------------------------------------------------------------- generate

/// A script step for generation.
pub enum Step {
    Send(Vec<u8>),
    Rotate,
    Distribution,
    /// Process the k-th distribution.
    Process(usize),
    /// Receive the k-th send.
    Receive(usize),
    /// Refuse the k-th send, for this error code.
    Refuse(usize, &'static str),
}

fn generate_group(description: &str, seed: u8, steps: Vec<Step>) -> Result<GroupVector, String> {
    let mut rng = DrawRng::recording(seed);
    let group = GroupId::generate(&mut rng);
    let mut sender = SenderKey::generate(group, &mut rng);
    let mut receiver: Option<SenderKeyReceiver> = None;
    let mut distributions: Vec<Vec<u8>> = Vec::new();
    let mut sent: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut events = Vec::new();
    let e = |e: GroupError| e.to_string();
    for step in steps {
        match step {
            Step::Send(plaintext) => {
                let wire = sender.encrypt(&plaintext).map_err(e)?;
                events.push(GroupEvent::Send {
                    plaintext: hex::encode(&plaintext),
                    wire: hex::encode(&wire),
                });
                sent.push((plaintext, wire));
            }
            Step::Rotate => {
                sender.rotate(&mut rng);
                events.push(GroupEvent::Rotate);
            }
            Step::Distribution => {
                let bytes = sender.distribution().to_bytes().to_vec();
                events.push(GroupEvent::Distribution {
                    distribution: hex::encode(&bytes),
                });
                distributions.push(bytes);
            }
            Step::Process(k) => {
                let bytes = distributions.get(k).ok_or("no such distribution")?;
                let d = SenderKeyDistribution::from_bytes(bytes).map_err(e)?;
                let status = match &mut receiver {
                    None => {
                        receiver = Some(SenderKeyReceiver::new(&d));
                        DistributionStatus::Added
                    }
                    Some(r) => r.process(&d).map_err(e)?,
                };
                events.push(GroupEvent::Process {
                    distribution_index: k,
                    status: status_code(status).into(),
                });
            }
            Step::Receive(k) => {
                let (plaintext, wire) = sent.get(k).ok_or("no such send")?;
                let r = receiver.as_mut().ok_or("no receiver yet")?;
                if r.decrypt(wire).map_err(e)? != *plaintext {
                    return Err(format!("generation: send {k} decrypted wrongly"));
                }
                events.push(GroupEvent::Receive { send_index: k });
            }
            Step::Refuse(k, code) => {
                let (_, wire) = sent.get(k).ok_or("no such send")?;
                let r = receiver.as_mut().ok_or("no receiver yet")?;
                match r.decrypt(wire) {
                    Err(err) if error_code(&err) == code => {}
                    other => return Err(format!("generation: send {k}: {other:?}")),
                }
                events.push(GroupEvent::Refuse {
                    send_index: k,
                    error: code.into(),
                });
            }
        }
    }
    // Draw 0 is the group id; then 3 draws per chain.
    let drawn = &rng.drawn;
    if rng.bad_draws != 0 || drawn.len() % 3 != 1 {
        return Err("unexpected draws".into());
    }
    let chains = drawn[1..]
        .chunks(3)
        .map(|c| {
            let id: [u8; 4] = c[0].as_slice().try_into().map_err(|_| "chain id draw")?;
            let seed: [u8; 32] = c[2].as_slice().try_into().map_err(|_| "seed draw")?;
            Ok(GroupChainVector {
                chain_id_draw: hex::encode(id),
                chain_id: u32::from_be_bytes(id),
                chain_key: hex::encode(&c[1]),
                signing_seed: hex::encode(seed),
                signing_public: hex::encode(signing_public(&seed)),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(GroupVector {
        description: description.into(),
        group_id: hex::encode(group.as_bytes()),
        chains,
        events,
        sender_state: hex::encode(sender.to_bytes().as_slice()),
        receiver_state: hex::encode(receiver.ok_or("no receiver")?.to_bytes().as_slice()),
    })
}

/// The Ed25519 public key of a seed (RFC 8032), computed apart from the
/// sender key.
fn signing_public(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes()
}

fn text(label: &str) -> Vec<u8> {
    label.as_bytes().to_vec()
}

pub fn group_vectors() -> Result<Vec<GroupVector>, String> {
    use Step::{Distribution, Process, Receive as Rx, Refuse, Rotate, Send as Tx};
    let long = (0..300).map(|i| b"sotto groups "[i % 13]).collect();
    let one_chain = vec![
        Distribution,
        Process(0),
        Tx(Vec::new()),     // 0: iteration 0, empty
        Tx(text("second")), // 1
        Tx(long),           // 2: 300 bytes, padded to 304
        Tx(text("fourth")), // 3
        Tx(text("fifth")),  // 4
        Rx(0),
        Rx(3), // skips 1 and 2
        Rx(1), // from the skipped keys
        Refuse(1, "duplicate"),
        Rx(4),
        Process(0), // the first distribution again: nothing rewinds
        Refuse(0, "duplicate"),
        Distribution, // at iteration 5
        Process(1),
        // Send 2 stays skipped: the receiver's state holds its key.
    ];
    let rotation = vec![
        Distribution,
        Process(0),
        Tx(text("old chain 0")), // 0
        Tx(text("old chain 1")), // 1
        Tx(text("old chain 2")), // 2
        Rx(0),
        Rotate,
        Distribution,
        Tx(text("new chain 0")), // 3
        Tx(text("new chain 1")), // 4
        Refuse(4, "unknown_chain"),
        Process(1),
        Rx(4), // skips new chain 0
        Rx(2), // late, old chain: skips old chain 1
        Rx(1),
        Tx(text("new chain 2")), // 5
        Rx(5),
        // Send 3 stays skipped.
    ];
    Ok(vec![
        generate_group(
            "one chain: in and out of order, a replay, the first distribution again",
            60,
            one_chain,
        )?,
        generate_group(
            "rotation: the new chain before and after its distribution, late messages of the old",
            61,
            rotation,
        )?,
    ])
}

// ------------------------------------------------------------------- check

pub fn check_group(i: usize, v: &GroupVector, report: &mut Report) -> Result<(), String> {
    let at = format!("groups[{i}]");
    let hex32 = |s: &str| -> Result<[u8; 32], String> {
        hex::decode(s)
            .map_err(|e| e.to_string())?
            .try_into()
            .map_err(|_| format!("{at}: expected 32 bytes"))
    };
    // The draws, in order: the group id, then three per chain.
    let mut draws = vec![hex32(&v.group_id)?.to_vec()];
    for (c, chain) in v.chains.iter().enumerate() {
        let id = hex::decode(&chain.chain_id_draw).map_err(|e| e.to_string())?;
        report.check(
            id.len() == 4 && u32::from_be_bytes([id[0], id[1], id[2], id[3]]) == chain.chain_id,
            || format!("{at}.chains[{c}]: chain_id is not u32be(chain_id_draw)"),
        );
        let seed = hex32(&chain.signing_seed)?;
        report.check(
            hex::encode(signing_public(&seed)) == chain.signing_public,
            || format!("{at}.chains[{c}]: signing public key differs"),
        );
        draws.push(id);
        draws.push(hex32(&chain.chain_key)?.to_vec());
        draws.push(seed.to_vec());
    }
    let mut rng = DrawRng::scripted(draws);
    let group = GroupId::generate(&mut rng);
    let mut sender = SenderKey::generate(group, &mut rng);
    let mut receiver: Option<SenderKeyReceiver> = None;
    let mut distributions: Vec<String> = Vec::new();
    let sends: Vec<(&String, &String)> = v
        .events
        .iter()
        .filter_map(|e| match e {
            GroupEvent::Send { plaintext, wire } => Some((plaintext, wire)),
            _ => None,
        })
        .collect();
    let mut send_no = 0;
    for (j, event) in v.events.iter().enumerate() {
        let at = format!("{at}.events[{j}]");
        match event {
            GroupEvent::Send { plaintext, wire } => {
                send_no += 1;
                let plaintext = hex::decode(plaintext).map_err(|e| e.to_string())?;
                match sender.encrypt(&plaintext) {
                    Ok(w) => report.check(hex::encode(&w) == *wire, || {
                        format!("{at}: send #{}: wire differs", send_no - 1)
                    }),
                    Err(e) => report.fail(format!("{at}: encrypt failed: {e}")),
                }
            }
            GroupEvent::Rotate => sender.rotate(&mut rng),
            GroupEvent::Distribution { distribution } => {
                let made = hex::encode(sender.distribution().to_bytes().as_slice());
                report.check(made == *distribution, || {
                    format!("{at}: distribution differs")
                });
                distributions.push(distribution.clone());
            }
            GroupEvent::Process {
                distribution_index,
                status,
            } => {
                let Some(bytes) = distributions.get(*distribution_index) else {
                    report.fail(format!("{at}: no distribution {distribution_index}"));
                    continue;
                };
                let bytes = hex::decode(bytes).map_err(|e| e.to_string())?;
                let d = match SenderKeyDistribution::from_bytes(&bytes) {
                    Ok(d) => d,
                    Err(e) => {
                        report.fail(format!("{at}: distribution does not decode: {e}"));
                        continue;
                    }
                };
                let got = match &mut receiver {
                    None => {
                        receiver = Some(SenderKeyReceiver::new(&d));
                        Ok(DistributionStatus::Added)
                    }
                    Some(r) => r.process(&d),
                };
                match got {
                    Ok(s) => report.check(status_code(s) == status, || {
                        format!("{at}: status {s:?}, file says {status}")
                    }),
                    Err(e) => report.fail(format!("{at}: distribution refused: {e}")),
                }
            }
            GroupEvent::Receive { send_index } | GroupEvent::Refuse { send_index, .. } => {
                let Some((plaintext, wire)) = sends.get(*send_index) else {
                    report.fail(format!("{at}: send_index {send_index} out of range"));
                    continue;
                };
                let Some(r) = receiver.as_mut() else {
                    report.fail(format!("{at}: no receiver yet"));
                    continue;
                };
                let wire = hex::decode(wire).map_err(|e| e.to_string())?;
                let before = r.to_bytes();
                let got = r.decrypt(&wire);
                match (event, got) {
                    (GroupEvent::Receive { .. }, Ok(p)) => report
                        .check(hex::encode(&p) == **plaintext, || {
                            format!("{at}: send {send_index} decrypted to another plaintext")
                        }),
                    (GroupEvent::Refuse { error, .. }, Err(e)) => {
                        report.check(error_code(&e) == error, || {
                            format!("{at}: send {send_index} refused as {e:?}, file says {error}")
                        });
                        report.check(r.to_bytes() == before, || {
                            format!("{at}: the refusal changed the receiver")
                        });
                    }
                    (_, got) => report.fail(format!("{at}: send {send_index}: {got:?}")),
                }
            }
        }
    }
    report.check(rng.bad_draws == 0 && rng.script.is_empty(), || {
        format!(
            "{at}: {} listed draws unused, {} draws beyond the list",
            rng.script.len(),
            rng.bad_draws
        )
    });
    report.check(
        hex::encode(sender.to_bytes().as_slice()) == v.sender_state,
        || format!("{at}: sender state differs"),
    );
    match receiver {
        Some(r) => {
            report.check(
                hex::encode(r.to_bytes().as_slice()) == v.receiver_state,
                || format!("{at}: receiver state differs"),
            );
            // The file's states decode and serialize back to themselves.
            let state = hex::decode(&v.receiver_state).map_err(|e| e.to_string())?;
            report.check(
                SenderKeyReceiver::from_bytes(&state)
                    .map(|r| r.to_bytes().to_vec())
                    .as_deref()
                    == Ok(state.as_slice()),
                || format!("{at}: the receiver state does not read back"),
            );
        }
        None => report.fail(format!("{at}: no receiver was made")),
    }
    let state = hex::decode(&v.sender_state).map_err(|e| e.to_string())?;
    report.check(
        SenderKey::from_bytes(&state)
            .map(|s| s.to_bytes().to_vec())
            .as_deref()
            == Ok(state.as_slice()),
        || format!("{at}: the sender state does not read back"),
    );
    Ok(())
}
