//! Load and faults: many clients exchange messages through one relay process
//! on loopback while the relay is SIGKILLed and restarted and clients are
//! killed mid-send and mid-receive; then every history is checked (nothing
//! lost, nothing duplicated, per-sender order kept, every session working).
//!
//! ```text
//! cargo run --release --example load -- --clients 200 --messages 30 --relay-kills 2 --client-kills 20
//! ```
//! (those are the defaults). With `--relays 3 --redis redis://127.0.0.1:6379`
//! three relay processes share one Redis store and each client reaches them
//! through a TCP balancer (a relay kill then takes one of them down while
//! its clients move to the others). Everything stays on 127.0.0.1; the run is
//! bounded by `--timeout-secs` and stops by itself.
//! See `docs/reliability.md`, "Load and faults". Exits non-zero unless the
//! run passes.

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "load/harness.rs"]
mod harness;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "load",
    about = "Sotto load-and-fault harness (loopback only, bounded, stops by itself)"
)]
struct Args {
    /// Clients (each its own profile), at least 2.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Messages each client sends.
    #[arg(long, default_value_t = 30)]
    messages: usize,
    /// Each client writes to the next N clients of a ring (and hears from
    /// the previous N).
    #[arg(long, default_value_t = 2)]
    fanout: usize,
    /// Times the relay process is SIGKILLed and restarted during the run.
    #[arg(long, default_value_t = 2)]
    relay_kills: usize,
    /// Relay processes. Several share the Redis store given by --redis
    /// (one keeps a SQLite file); each kill takes the next one down.
    #[arg(long, default_value_t = 1)]
    relays: usize,
    /// With --relays above 1: the Redis server they share
    /// (`redis://HOST:PORT`); the run's keys get a prefix of their own.
    #[arg(long)]
    redis: Option<String>,
    /// Client kills, alternately aimed at a send and at a receive in flight.
    #[arg(long, default_value_t = 20)]
    client_kills: usize,
    /// Longest random pause of a client between two sends, milliseconds.
    #[arg(long, default_value_t = 1000)]
    think_ms: u64,
    /// Size of every message body, bytes.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// The run fails if it has not finished after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Seed of the random choices (victims, kill points, pauses).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep profiles and the relay database in this (new or empty)
    /// directory instead of a temporary one.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// No progress lines, only the report.
    #[arg(long)]
    quiet: bool,
    /// Also attack the relay: run once without and once with attackers
    /// from other loopback addresses (idle floods from 127.0.0.2,
    /// slowloris from 127.0.0.3, anonymous send floods from 127.0.0.4) and
    /// compare the honest send-to-stored latency. The target is p50 and
    /// p99 under attack at most twice those without.
    #[arg(long)]
    abuse: bool,
    /// With --abuse: idle connections held open at once.
    #[arg(long, default_value_t = 1000)]
    abuse_idle: usize,
    /// With --abuse: slowloris connections held open at once.
    #[arg(long, default_value_t = 100)]
    abuse_slowloris: usize,
    /// With --abuse: anonymous send-flood connections at once.
    #[arg(long, default_value_t = 4)]
    abuse_flood: usize,
    /// With --abuse: size of each flooded envelope, bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    abuse_flood_size: usize,
    /// With --abuse: the flood stops after this many bytes stored.
    #[arg(long, default_value_t = 256 << 20)]
    abuse_flood_max_bytes: u64,
}

/// The attack may at most double the honest latency.
const ABUSE_TARGET: f64 = 2.0;

fn main() -> ExitCode {
    // Started again by the harness as the relay process.
    if let Some(result) = harness::relay_child_main() {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("load relay: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = Args::parse();
    let program = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("load: cannot find this program: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = harness::Config {
        clients: args.clients,
        messages: args.messages,
        fanout: args.fanout,
        relay_kills: args.relay_kills,
        relays: args.relays,
        redis: args.redis.map(|url| harness::SharedRedis {
            url,
            prefix: format!("sotto-load-{}-{}", std::process::id(), args.seed),
        }),
        client_kills: args.client_kills,
        think: Duration::from_millis(args.think_ms),
        size: args.size,
        timeout: Duration::from_secs(args.timeout_secs),
        seed: args.seed,
        dir: args.keep,
        relay_program: program,
        relay_args: Vec::new(),
        verbose: !args.quiet,
        abuse: None,
    };
    if args.abuse {
        let abuse = harness::Abuse {
            idle_connections: args.abuse_idle,
            slowloris_connections: args.abuse_slowloris,
            flood_connections: args.abuse_flood,
            flood_envelope: args.abuse_flood_size,
            flood_max_bytes: args.abuse_flood_max_bytes,
        };
        return compare_under_attack(config, abuse);
    }
    match harness::run(&config) {
        Ok(report) => {
            println!("{report}");
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("load: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `config` without, then with the attack, and compares the honest
/// latencies. Exits 0 only if both runs pass and the target is met.
fn compare_under_attack(config: harness::Config, abuse: harness::Abuse) -> ExitCode {
    let mut reports = Vec::new();
    for (name, abuse) in [("without attack", None), ("with attack", Some(abuse))] {
        eprintln!("load: run {name}");
        let config = harness::Config {
            abuse,
            ..config.clone()
        };
        match harness::run(&config) {
            Ok(report) => {
                println!("== {name} ==\n{report}\n");
                reports.push(report);
            }
            Err(e) => {
                eprintln!("load: FAILED ({name}): {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let (quiet, attacked) = (&reports[0], &reports[1]);
    let ratio = |with: f64, without: f64| with / without.max(0.001);
    let p50 = ratio(attacked.latency_p50_ms, quiet.latency_p50_ms);
    let p99 = ratio(attacked.latency_p99_ms, quiet.latency_p99_ms);
    let met = p50 <= ABUSE_TARGET && p99 <= ABUSE_TARGET;
    println!(
        "honest send-to-stored latency without attack: p50 {:.1} ms, p99 {:.1} ms",
        quiet.latency_p50_ms, quiet.latency_p99_ms
    );
    println!(
        "honest send-to-stored latency with attack:    p50 {:.1} ms ({p50:.2}x), p99 {:.1} ms ({p99:.2}x)",
        attacked.latency_p50_ms, attacked.latency_p99_ms
    );
    println!(
        "target (at most {ABUSE_TARGET}x): {}",
        if met { "met" } else { "NOT met" }
    );
    if met && quiet.is_clean() && attacked.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
