//! `sotto-relay`: runs a Sotto relay (see docs/relay.md, "Deployment").

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use std::time::Duration;

use sotto_relay::{
    MailboxStore, MemoryStore, Server, ServerConfig, SqliteOptions, SqliteStore, UnixTime,
};

const USAGE: &str = "\
usage: sotto-relay [options]

  --listen ADDR            address to listen on (default 127.0.0.1:7447)
  --db PATH                SQLite database file (default ./sotto-relay.db)
  --memory                 keep everything in memory instead (lost on exit)
  --server-id ID           id bound into client signatures (default sotto-relay)
  --max-frame BYTES        largest frame accepted (default 1048576)
  --max-envelopes N        envelopes queued per mailbox (default 10000)
  --max-mailbox-bytes N    payload bytes queued per mailbox (default 268435456)
  --max-total-bytes N      payload bytes queued in all mailboxes (default 17179869184)
  --envelope-ttl-days N    days an unacknowledged envelope is kept (default 30)
  --connection-send-budget N
                           payload bytes one connection may store (default 67108864)
  --max-db-bytes N         largest size of the SQLite file; beyond it new envelopes
                           are refused as on a full disk (default: no limit)
  --max-connections N      simultaneous connections (default 10000)
  --max-connections-per-address N
                           simultaneous connections per IPv4 address or IPv6 /64
                           (default 64)
  --unauthenticated-timeout-secs N
                           close an unauthenticated connection after N s without
                           a useful request (default 30)
  --frame-timeout-secs N   time a frame has to arrive completely (default 10)
  --unauthenticated-frame-budget BYTES
                           frame memory of all unauthenticated connections
                           (default 33554432)
  --authenticated-frame-budget BYTES
                           frame memory of all authenticated connections
                           (default 268435456)
  --first-contact-burst N  envelopes without the access key a mailbox takes at once (default 20)
  --first-contact-interval-secs N
                           then one more per this many seconds (default 180)
  --tls-cert PEM           certificate chain, PEM (needs the `tls` feature)
  --tls-key PEM            private key, PEM (needs the `tls` feature)
  --log LEVEL              error, warn, info, debug or trace (default info)
  -h, --help               this text";

struct Options {
    listen: String,
    db: Option<PathBuf>,
    max_db_bytes: Option<u64>,
    config: ServerConfig,
    tls: Option<(PathBuf, PathBuf)>,
    log: tracing::Level,
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: not a number: {value}"))
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        listen: "127.0.0.1:7447".to_owned(),
        db: Some(PathBuf::from("sotto-relay.db")),
        max_db_bytes: None,
        config: ServerConfig::default(),
        tls: None,
        log: tracing::Level::INFO,
    };
    let (mut cert, mut key) = (None, None);
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        if flag == "--memory" {
            options.db = None;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => options.listen = value,
            "--db" => options.db = Some(PathBuf::from(value)),
            "--server-id" => options.config.server_id = value,
            "--max-frame" => options.config.max_frame_size = parse_number(&flag, &value)?,
            "--max-envelopes" => {
                options.config.mailbox_limits.max_envelopes = parse_number(&flag, &value)?;
            }
            "--max-mailbox-bytes" => {
                options.config.mailbox_limits.max_bytes = parse_number(&flag, &value)?;
            }
            "--max-total-bytes" => options.config.max_total_bytes = parse_number(&flag, &value)?,
            "--envelope-ttl-days" => {
                let days: u64 = parse_number(&flag, &value)?;
                let secs = days
                    .checked_mul(24 * 3600)
                    .ok_or_else(|| format!("{flag}: too many days: {value}"))?;
                options.config.envelope_ttl = Duration::from_secs(secs);
            }
            "--connection-send-budget" => {
                options.config.connection_send_budget = parse_number(&flag, &value)?;
            }
            "--max-connections" => options.config.max_connections = parse_number(&flag, &value)?,
            "--max-connections-per-address" => {
                options.config.max_connections_per_address = parse_number(&flag, &value)?;
            }
            "--unauthenticated-timeout-secs" => {
                options.config.unauthenticated_timeout =
                    Duration::from_secs(parse_number(&flag, &value)?);
            }
            "--frame-timeout-secs" => {
                options.config.frame_timeout = Duration::from_secs(parse_number(&flag, &value)?);
            }
            "--unauthenticated-frame-budget" => {
                options.config.unauthenticated_frame_budget = parse_number(&flag, &value)?;
            }
            "--authenticated-frame-budget" => {
                options.config.authenticated_frame_budget = parse_number(&flag, &value)?;
            }
            "--max-db-bytes" => options.max_db_bytes = Some(parse_number(&flag, &value)?),
            "--first-contact-burst" => {
                options.config.first_contact.burst = parse_number(&flag, &value)?;
            }
            "--first-contact-interval-secs" => {
                let secs: u64 = parse_number(&flag, &value)?;
                options.config.first_contact.interval = Duration::from_secs(secs);
            }
            "--tls-cert" => cert = Some(PathBuf::from(value)),
            "--tls-key" => key = Some(PathBuf::from(value)),
            "--log" => {
                options.log = value
                    .parse()
                    .map_err(|_| format!("--log: unknown level {value}"))?;
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    options.tls = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".to_owned()),
    };
    if options.db.is_none() && options.max_db_bytes.is_some() {
        return Err("--max-db-bytes limits the SQLite file: not with --memory".to_owned());
    }
    options.config.validate()?;
    Ok(Some(options))
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sotto-relay: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_max_level(options.log)
        .with_writer(std::io::stderr)
        .init();
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sotto-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    // Check the TLS files before touching the database.
    let tls = load_tls(options.tls)?;
    let store: Arc<dyn MailboxStore> = match &options.db {
        // A database from before envelopes expired gets the configured TTL.
        Some(path) => Arc::new(SqliteStore::open_with(
            path,
            &SqliteOptions {
                envelope_ttl: options.config.envelope_ttl,
                max_database_bytes: options.max_db_bytes,
            },
            UnixTime::now(),
        )?),
        None => Arc::new(MemoryStore::new()),
    };
    let server = Server::bind(options.listen.as_str(), options.config, store).await?;
    let server = with_tls(server, tls);
    println!("sotto-relay listening on {}", server.local_addr());
    server
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}

#[cfg(feature = "tls")]
type Tls = Option<Arc<sotto_relay::tls::rustls::ServerConfig>>;

#[cfg(feature = "tls")]
fn load_tls(files: Option<(PathBuf, PathBuf)>) -> Result<Tls, Box<dyn std::error::Error>> {
    let Some((cert, key)) = files else {
        return Ok(None);
    };
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    Ok(Some(sotto_relay::tls::server_config(
        &read(&cert)?,
        &read(&key)?,
    )?))
}

#[cfg(feature = "tls")]
fn with_tls(server: Server, tls: Tls) -> Server {
    match tls {
        Some(config) => server.with_tls(config),
        None => server,
    }
}

/// Nothing to configure in a build without TLS.
#[cfg(not(feature = "tls"))]
struct Tls;

#[cfg(not(feature = "tls"))]
fn load_tls(files: Option<(PathBuf, PathBuf)>) -> Result<Tls, Box<dyn std::error::Error>> {
    match files {
        None => Ok(Tls),
        Some(_) => Err("this build has no TLS support (build with --features tls)".into()),
    }
}

#[cfg(not(feature = "tls"))]
fn with_tls(server: Server, _: Tls) -> Server {
    server
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn flags_are_parsed_and_checked() {
        let o = parse(args(
            "--listen 0.0.0.0:9 --memory --max-frame 4096 --server-id r1",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(o.listen, "0.0.0.0:9");
        assert!(o.db.is_none());
        assert_eq!(o.config.max_frame_size, 4096);
        assert_eq!(o.config.server_id, "r1");
        assert!(parse(args("--help")).unwrap().is_none());
        assert!(parse(args("--max-frame 10")).is_err());
        assert!(parse(args("--max-frame lots")).is_err());
        assert!(parse(args("--tls-cert a.pem")).is_err());
        assert!(parse(args("--bogus 1")).is_err());
        assert!(parse(args("--db")).is_err());

        let o = parse(args(
            "--envelope-ttl-days 7 --max-total-bytes 1000000 --connection-send-budget 2000000",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(o.config.envelope_ttl, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(o.config.max_total_bytes, 1_000_000);
        assert_eq!(o.config.connection_send_budget, 2_000_000);
        let defaults = parse(args("")).unwrap().unwrap().config;
        assert_eq!(defaults.envelope_ttl, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(defaults.max_total_bytes, 16 << 30);
        assert_eq!(defaults.connection_send_budget, 64 << 20);
        // Refused: zero days, an overflow, a budget below the largest envelope.
        assert!(parse(args("--envelope-ttl-days 0")).is_err());
        assert!(parse(args("--envelope-ttl-days 999999999999999999")).is_err());
        assert!(parse(args("--connection-send-budget 1000")).is_err());
        assert!(parse(args("--max-total-bytes 0")).is_err());

        let o = parse(args(
            "--max-connections-per-address 8 --unauthenticated-timeout-secs 5 \
             --frame-timeout-secs 3 --unauthenticated-frame-budget 2000000 \
             --authenticated-frame-budget 3000000 --max-db-bytes 1000000",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(o.config.max_connections_per_address, 8);
        assert_eq!(o.config.unauthenticated_timeout, Duration::from_secs(5));
        assert_eq!(o.config.frame_timeout, Duration::from_secs(3));
        assert_eq!(o.config.unauthenticated_frame_budget, 2_000_000);
        assert_eq!(o.config.authenticated_frame_budget, 3_000_000);
        assert_eq!(o.max_db_bytes, Some(1_000_000));
        let all_defaults = parse(args("")).unwrap().unwrap();
        assert_eq!(all_defaults.max_db_bytes, None);
        assert_eq!(all_defaults.config.max_connections_per_address, 64);
        assert_eq!(
            all_defaults.config.unauthenticated_timeout,
            Duration::from_secs(30)
        );
        assert_eq!(all_defaults.config.frame_timeout, Duration::from_secs(10));
        // Refused: zero, and a budget below the largest frame.
        assert!(parse(args("--max-connections-per-address 0")).is_err());
        assert!(parse(args("--frame-timeout-secs 0")).is_err());
        assert!(parse(args("--unauthenticated-frame-budget 1000")).is_err());
        assert!(parse(args("--memory --max-db-bytes 1000000")).is_err());

        let o = parse(args(
            "--first-contact-burst 0 --first-contact-interval-secs 600",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(o.config.first_contact.burst, 0);
        assert_eq!(o.config.first_contact.interval, Duration::from_secs(600));
        assert_eq!(defaults.first_contact.burst, 20);
        assert_eq!(defaults.first_contact.interval, Duration::from_secs(180));
        assert!(parse(args("--first-contact-interval-secs 0")).is_err());
    }
}
