//! Paired, interleaved ratios: Sotto against vodozemac and the raw AEAD,
//! measured so that load from other processes cancels out.
//!
//! `throughput.rs` (criterion) measures each implementation for several
//! seconds, one after the other; on a shared 2-core machine the load can
//! change between two of them, and so can their ratio. Here the
//! implementations being compared run in alternating blocks of about
//! `BLOCK` each (order reversed every round), the ratio is taken within
//! each round, and the median over `ROUNDS` rounds is reported with its
//! interquartile range. The operations are exactly those of `throughput.rs`.
//!
//! Runs with every `cargo bench -p sotto-benches`; criterion's options are
//! accepted and ignored, except `--test` (one short round), `--list` and
//! `--profile-time` (nothing runs) and a filter (runs only when it matches a
//! name printed here, e.g. `paired/one_way`).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use sotto_benches::{SIZES, established_pair, established_pair_v2, rng};

mod common;
use common::{olm_pair, plaintext};

/// Rounds per comparison.
const ROUNDS: usize = 31;
/// Time each implementation runs per round.
const BLOCK: Duration = Duration::from_millis(15);

/// Runs `n` iterations of one implementation.
type Runner = Box<dyn FnMut(u64)>;

struct Contender {
    name: &'static str,
    run: Runner,
    iters_per_block: u64,
    per_iter_ns: Vec<f64>,
}

impl Contender {
    fn new(name: &'static str, run: Runner) -> Self {
        Self {
            name,
            run,
            iters_per_block: 1,
            per_iter_ns: Vec::new(),
        }
    }

    fn time(&mut self, iters: u64) -> f64 {
        let start = Instant::now();
        (self.run)(iters);
        start.elapsed().as_nanos() as f64 / iters as f64
    }

    /// Warms up and picks the iterations that fill about `BLOCK`.
    fn calibrate(&mut self) {
        let mut iters = 1u64;
        let mut spent = Duration::ZERO;
        let per_iter = loop {
            let start = Instant::now();
            (self.run)(iters);
            let elapsed = start.elapsed();
            spent += elapsed;
            if spent >= BLOCK * 4 {
                break elapsed.as_nanos() as f64 / iters as f64;
            }
            iters *= 2;
        };
        self.iters_per_block = ((BLOCK.as_nanos() as f64 / per_iter) as u64).max(1);
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Alternates the contenders for `rounds` rounds; the first is Sotto.
/// Prints the median time per iteration of each and, for each other one,
/// the median and interquartile range of the per-round ratio
/// `messages/s of Sotto / messages/s of it`.
fn compare(name: &str, mut contenders: Vec<Contender>, rounds: usize, test: bool) {
    for c in &mut contenders {
        if !test {
            c.calibrate();
        }
    }
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..contenders.len()).collect()
        } else {
            (0..contenders.len()).rev().collect()
        };
        for i in order {
            let c = &mut contenders[i];
            let per_iter = c.time(c.iters_per_block);
            c.per_iter_ns.push(per_iter);
        }
    }
    let times: Vec<String> = contenders
        .iter()
        .map(|c| {
            let s = sorted(c.per_iter_ns.clone());
            format!("{} {}", c.name, fmt_ns(quantile(&s, 0.5)))
        })
        .collect();
    println!("{name:<28} per iteration (median): {}", times.join(", "));
    let sotto = &contenders[0];
    for other in &contenders[1..] {
        let ratios = sorted(
            other
                .per_iter_ns
                .iter()
                .zip(&sotto.per_iter_ns)
                .map(|(o, s)| o / s)
                .collect(),
        );
        println!(
            "{:<28} Sotto / {:<9} = {:.2}  (IQR {:.2} – {:.2}, {} rounds)",
            "",
            other.name,
            quantile(&ratios, 0.5),
            quantile(&ratios, 0.25),
            quantile(&ratios, 0.75),
            ratios.len()
        );
    }
}

fn one_way(size: usize) -> Vec<Contender> {
    let data = plaintext(size);
    let mut r = rng(1);
    let (mut alice, mut bob) = established_pair(&mut r).expect("pair");
    let (mut wire, mut out) = (Vec::new(), Vec::new());
    let sotto_data = data.clone();
    let sotto = Contender::new(
        "sotto",
        Box::new(move |n| {
            for _ in 0..n {
                alice.encrypt_into(&sotto_data, &mut wire).expect("encrypt");
                bob.decrypt_into(&wire, &mut out, &mut r).expect("decrypt");
                black_box(out.len());
            }
        }),
    );
    let (mut oa, mut ob) = olm_pair();
    let olm_data = data.clone();
    let olm = Contender::new(
        "vodozemac",
        Box::new(move |n| {
            for _ in 0..n {
                let m = oa.encrypt(&olm_data).expect("encrypt");
                black_box(ob.decrypt(&m).expect("decrypt").len());
            }
        }),
    );
    let cipher = ChaCha20Poly1305::new(&[7u8; 32].into());
    let nonce = Nonce::from([9u8; 12]);
    let mut buf = data;
    let raw = Contender::new(
        "raw_aead",
        Box::new(move |n| {
            for _ in 0..n {
                let tag = cipher
                    .encrypt_inout_detached(&nonce, b"", buf.as_mut_slice().into())
                    .expect("encrypt");
                cipher
                    .decrypt_inout_detached(&nonce, b"", buf.as_mut_slice().into(), &tag)
                    .expect("decrypt");
                black_box(buf.len());
            }
        }),
    );
    vec![sotto, olm, raw]
}

/// Protocol v2's and v1's sessions (v2 first, so that the ratios printed
/// are v2's), each running `size`-byte messages one way, or both ways in
/// turn with `ping_pong` (so that every message ratchets).
fn v2_and_v1(size: usize, ping_pong: bool, seed: u8) -> Vec<Contender> {
    let data = plaintext(size);
    let mut sessions = Vec::new();
    for (name, v2) in [("sotto_v2", true), ("sotto_v1", false)] {
        let mut r = rng(seed);
        let (mut alice, mut bob) = if v2 {
            established_pair_v2(&mut r)
        } else {
            established_pair(&mut r)
        }
        .expect("pair");
        let (mut wire, mut out) = (Vec::new(), Vec::new());
        let data = data.clone();
        sessions.push(Contender::new(
            name,
            Box::new(move |n| {
                for _ in 0..n {
                    alice.encrypt_into(&data, &mut wire).expect("encrypt");
                    bob.decrypt_into(&wire, &mut out, &mut r).expect("decrypt");
                    if ping_pong {
                        bob.encrypt_into(&data, &mut wire).expect("encrypt");
                        alice
                            .decrypt_into(&wire, &mut out, &mut r)
                            .expect("decrypt");
                    }
                    black_box(out.len());
                }
            }),
        ));
    }
    sessions
}

/// Protocol v2 one way against v1 one way, vodozemac and the raw AEAD.
fn one_way_v2(size: usize) -> Vec<Contender> {
    let mut sessions = v2_and_v1(size, false, 3);
    // vodozemac and the raw AEAD, as in `one_way`.
    sessions.extend(one_way(size).into_iter().skip(1));
    sessions
}

/// Protocol v2 ping-pong against v1's and vodozemac's.
fn ping_pong_v2(size: usize) -> Vec<Contender> {
    let mut sessions = v2_and_v1(size, true, 4);
    sessions.extend(ping_pong(size).into_iter().skip(1));
    sessions
}

/// Session setup with a first message of 64 bytes: protocol v2's hybrid
/// handshake, v1's X3DH (both: initiate from a bundle, which verifies its
/// signatures, encrypt, respond) and vodozemac's Olm (outbound session,
/// encrypt, inbound session), plain and with the one-time key's signature
/// made and checked as Matrix does; and one X25519 Diffie-Hellman, so that
/// `sotto / x25519_dh` is the cost in DH units. Olm's inbound session
/// consumes its one-time key, so each Olm iteration also generates one (a
/// base-point multiplication); Sotto's responder reuses its prekeys.
fn setup() -> Vec<Contender> {
    let data = plaintext(64);
    let mut sessions = Vec::new();
    for (name, v2) in [("sotto_v2", true), ("sotto_v1", false)] {
        let mut r = rng(6);
        let parties = sotto_benches::Parties::new(&mut r);
        let bundle = if v2 {
            parties.bundle_v2()
        } else {
            parties.bundle()
        };
        let data = data.clone();
        sessions.push(Contender::new(
            name,
            Box::new(move |n| {
                for _ in 0..n {
                    let mut alice = sotto_core::Session::initiate(&parties.alice, &bundle, &mut r)
                        .expect("initiate");
                    let first = alice.encrypt(&data).expect("encrypt");
                    let (bob, plain) =
                        sotto_core::Session::respond(&parties.bob, &parties.keys, &first, &mut r)
                            .expect("respond");
                    black_box((bob, plain.plaintext.len()));
                }
            }),
        ));
    }
    sessions.push(olm_setup("vodozemac", false));
    // Olm as Matrix uses it: the one-time key is signed by its owner's
    // Ed25519 key, and the initiator verifies that signature before the
    // outbound session (vodozemac leaves both to the application), as
    // Sotto's `initiate` verifies the signed prekey.
    sessions.push(olm_setup("vodozemac_signed", true));
    // The unit: one X25519 Diffie-Hellman (x25519-dalek, as sotto-core
    // uses it).
    let secret = x25519_dalek::StaticSecret::from([0x42; 32]);
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([0x24; 32]));
    sessions.push(Contender::new(
        "x25519_dh",
        Box::new(move |n| {
            for _ in 0..n {
                black_box(secret.diffie_hellman(black_box(&public)).to_bytes());
            }
        }),
    ));
    sessions
}

/// Olm's session setup with a first message of 64 bytes (see [`setup`]);
/// with `signed`, the one-time key is signed and the signature checked.
fn olm_setup(name: &'static str, signed: bool) -> Contender {
    let alice = vodozemac::olm::Account::new();
    let mut bob = vodozemac::olm::Account::new();
    let data = plaintext(64);
    Contender::new(
        name,
        Box::new(move |n| {
            for _ in 0..n {
                bob.generate_one_time_keys(1);
                let otk = bob
                    .one_time_keys()
                    .into_values()
                    .next()
                    .expect("one-time key");
                bob.mark_keys_as_published();
                if signed {
                    let signature = bob.sign(otk.as_bytes());
                    bob.ed25519_key()
                        .verify(otk.as_bytes(), &signature)
                        .expect("signed one-time key");
                }
                let mut outbound = alice
                    .create_outbound_session(
                        vodozemac::olm::SessionConfig::version_1(),
                        bob.curve25519_key(),
                        otk,
                    )
                    .expect("outbound");
                let vodozemac::olm::OlmMessage::PreKey(first) =
                    outbound.encrypt(&data).expect("encrypt")
                else {
                    panic!("a first Olm message is a pre-key message");
                };
                let created = bob
                    .create_inbound_session(
                        vodozemac::olm::SessionConfig::version_1(),
                        alice.curve25519_key(),
                        &first,
                    )
                    .expect("inbound");
                black_box(created.plaintext.len());
            }
        }),
    )
}

fn ping_pong(size: usize) -> Vec<Contender> {
    let data = plaintext(size);
    let mut r = rng(2);
    let (mut alice, mut bob) = established_pair(&mut r).expect("pair");
    let (mut wire, mut out) = (Vec::new(), Vec::new());
    let sotto_data = data.clone();
    let sotto = Contender::new(
        "sotto",
        Box::new(move |n| {
            for _ in 0..n {
                alice.encrypt_into(&sotto_data, &mut wire).expect("encrypt");
                bob.decrypt_into(&wire, &mut out, &mut r).expect("decrypt");
                bob.encrypt_into(&sotto_data, &mut wire).expect("encrypt");
                alice
                    .decrypt_into(&wire, &mut out, &mut r)
                    .expect("decrypt");
                black_box(out.len());
            }
        }),
    );
    let (mut oa, mut ob) = olm_pair();
    let olm = Contender::new(
        "vodozemac",
        Box::new(move |n| {
            for _ in 0..n {
                let m = oa.encrypt(&data).expect("encrypt");
                black_box(ob.decrypt(&m).expect("decrypt").len());
                let m = ob.encrypt(&data).expect("encrypt");
                black_box(oa.decrypt(&m).expect("decrypt").len());
            }
        }),
    );
    vec![sotto, olm]
}

/// What to do, from criterion's command line.
struct Args {
    test: bool,
    skip: bool,
    filters: Vec<String>,
}

fn args() -> Args {
    // criterion's options that take a value.
    const WITH_VALUE: [&str; 19] = [
        "-c",
        "--color",
        "-s",
        "--save-baseline",
        "-b",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--format",
        "--profile-time",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--plotting-backend",
        "--output-format",
    ];
    let mut parsed = Args {
        test: false,
        skip: false,
        filters: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let option = arg.split('=').next().unwrap_or_default();
        match option {
            "--test" => parsed.test = true,
            "--list" | "--profile-time" => parsed.skip = true,
            _ if WITH_VALUE.contains(&option) => {
                if !arg.contains('=') {
                    args.next();
                }
            }
            _ if arg.starts_with('-') => {}
            _ => parsed.filters.push(arg),
        }
    }
    parsed
}

fn main() {
    let args = args();
    if args.skip {
        return;
    }
    let selected = |name: &str| {
        args.filters.is_empty() || args.filters.iter().any(|f| name.contains(f.as_str()))
    };
    let rounds = if args.test { 1 } else { ROUNDS };
    if args.test {
        println!("Paired ratios, --test: one cold iteration each, not a measurement");
    } else {
        println!(
            "Paired ratios: {rounds} rounds of ~{} ms per implementation, order alternating",
            BLOCK.as_millis()
        );
    }
    for size in SIZES {
        let name = format!("paired/one_way/{size}");
        if selected(&name) {
            compare(&name, one_way(size), rounds, args.test);
        }
    }
    for size in SIZES {
        let name = format!("paired/one_way_v2/{size}");
        if selected(&name) {
            compare(&name, one_way_v2(size), rounds, args.test);
        }
    }
    for size in SIZES {
        let name = format!("paired/ping_pong/{size}");
        if selected(&name) {
            compare(&name, ping_pong(size), rounds, args.test);
        }
    }
    for size in SIZES {
        let name = format!("paired/ping_pong_v2/{size}");
        if selected(&name) {
            compare(&name, ping_pong_v2(size), rounds, args.test);
        }
    }
    if selected("paired/setup") {
        compare("paired/setup", setup(), rounds, args.test);
    }
}
