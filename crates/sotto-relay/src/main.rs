//! `sotto-relay`: runs a Sotto relay (see docs/relay.md, "Deployment").

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use sotto_relay::server::settings::{CONFIG_ENV, ENV_PREFIX};
use sotto_relay::server::{RelaySettings, StoreSpec};
use sotto_relay::{
    BlobStorage, MailboxStore, MemoryStore, Server, SqliteOptions, SqliteStore, UnixTime,
};

const USAGE: &str = "\
usage: sotto-relay [--config FILE] [options]

Settings come from, each overriding the one before: the defaults, the
configuration file (--config, or SOTTO_RELAY_CONFIG), environment variables
SOTTO_RELAY_<SETTING> (e.g. SOTTO_RELAY_MAX_FRAME_SIZE=2MiB), and the
options below. docs/relay.md §8 lists every setting.

  --config FILE            TOML configuration file (see relay.example.toml)
  --check-config           print the settings in effect, as a file, and exit
  --listen ADDR            address to listen on (default 127.0.0.1:7447)
  --store SPEC             sqlite:PATH, memory:, redis://HOST[:PORT] or a
                           Redis Cluster, redis+cluster://HOST:PORT,HOST:PORT
                           (default sqlite:sotto-relay.db)
  --redis-key-prefix P     what every Redis key starts with (default sotto):
                           relays sharing a store use the same
  --db PATH                SQLite database file (same as --store sqlite:PATH)
  --blob-dir DIR           where blobs (attachments) are kept (default: PATH.blobs
                           next to a SQLite file, memory for memory:; a Redis
                           store needs one, shared by all its relays)
  --memory                 keep everything in memory instead (lost on exit)
  --metrics-listen ADDR    serve GET /health and GET /metrics over HTTP here
                           (default: off)
  --server-id ID           id bound into client signatures (default sotto-relay)
  --max-frame BYTES        largest frame accepted (default 1048576, at least 2055)
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
  -h, --help               this text

On SIGTERM or Ctrl-C the relay stops accepting, lets requests in hand
finish, tells clients ShuttingDown and exits 0 (after at most
shutdown_grace, default 5 s); a second signal stops it at once.";

/// Flags that set one setting, in the setting's own units.
const FLAGS: &[(&str, &str)] = &[
    ("--listen", "listen"),
    ("--store", "store"),
    ("--redis-key-prefix", "redis_key_prefix"),
    ("--blob-dir", "blob_dir"),
    ("--metrics-listen", "metrics_listen"),
    ("--server-id", "server_id"),
    ("--max-frame", "max_frame_size"),
    ("--max-envelopes", "mailbox_limits.max_envelopes"),
    ("--max-mailbox-bytes", "mailbox_limits.max_bytes"),
    ("--max-total-bytes", "max_total_bytes"),
    ("--connection-send-budget", "connection_send_budget"),
    ("--max-db-bytes", "max_db_bytes"),
    ("--max-connections", "max_connections"),
    (
        "--max-connections-per-address",
        "max_connections_per_address",
    ),
    (
        "--unauthenticated-frame-budget",
        "unauthenticated_frame_budget",
    ),
    ("--authenticated-frame-budget", "authenticated_frame_budget"),
    ("--first-contact-burst", "first_contact.burst"),
    ("--tls-cert", "tls_cert"),
    ("--tls-key", "tls_key"),
    ("--log", "log"),
];

/// Flags that set a duration as a whole number of days or seconds.
const DURATION_FLAGS: &[(&str, &str, &str)] = &[
    ("--envelope-ttl-days", "envelope_ttl", "d"),
    (
        "--unauthenticated-timeout-secs",
        "unauthenticated_timeout",
        "s",
    ),
    ("--frame-timeout-secs", "frame_timeout", "s"),
    (
        "--first-contact-interval-secs",
        "first_contact.interval",
        "s",
    ),
];

/// What the command line asks for.
#[derive(Debug)]
enum Command {
    Help,
    /// Print the settings in effect and exit.
    Check(Box<RelaySettings>),
    Run(Box<RelaySettings>),
}

/// Reads the command line on top of the configuration file and the
/// environment `vars`, and checks the result.
fn parse(
    args: impl IntoIterator<Item = String>,
    vars: Vec<(String, String)>,
) -> Result<Command, String> {
    // First the flags as given, to find the file; applied after it.
    let mut flags = Vec::new();
    let mut config = None;
    let mut check = false;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--check-config" => check = true,
            "--memory" => flags.push((flag, None)),
            _ => {
                let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
                if flag == "--config" {
                    config = Some(PathBuf::from(value));
                } else {
                    flags.push((flag, Some(value)));
                }
            }
        }
    }
    let config = config.or_else(|| {
        vars.iter()
            .find(|(name, value)| name == CONFIG_ENV && !value.is_empty())
            .map(|(_, value)| PathBuf::from(value))
    });
    let mut settings = RelaySettings::load(config.as_deref(), vars).map_err(|e| e.to_string())?;
    for (flag, value) in flags {
        apply_flag(&mut settings, &flag, value).map_err(|e| e.to_string())?;
    }
    settings.validate().map_err(|e| e.to_string())?;
    Ok(if check {
        Command::Check(Box::new(settings))
    } else {
        Command::Run(Box::new(settings))
    })
}

fn apply_flag(
    settings: &mut RelaySettings,
    flag: &str,
    value: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let Some(value) = value else {
        // `--memory`, the only flag without a value.
        settings.store = StoreSpec::Memory;
        return Ok(());
    };
    if flag == "--db" {
        settings.store = StoreSpec::Sqlite(PathBuf::from(value));
        return Ok(());
    }
    if let Some((_, key)) = FLAGS.iter().find(|(f, _)| *f == flag) {
        return Ok(settings.set(key, &value, flag)?);
    }
    if let Some((_, key, unit)) = DURATION_FLAGS.iter().find(|(f, _, _)| *f == flag) {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{flag}: not a number: {value}").into());
        }
        return Ok(settings.set(key, &format!("{value}{unit}"), flag)?);
    }
    Err(format!("unknown option {flag} (sotto-relay --help lists them)").into())
}

/// The environment variables the settings may come from: the relay's
/// own. A value that is not UTF-8 is passed on lossily, to be refused
/// with the variable's name.
fn relay_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            name.starts_with(ENV_PREFIX)
                .then(|| (name, value.to_string_lossy().into_owned()))
        })
        .collect()
}

fn main() -> ExitCode {
    let settings = match parse(std::env::args().skip(1), relay_env()) {
        Ok(Command::Run(settings)) => settings,
        Ok(Command::Check(settings)) => {
            print!(
                "# sotto-relay: the settings in effect (defaults, file, environment, flags)\n{}",
                settings.to_toml()
            );
            return ExitCode::SUCCESS;
        }
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sotto-relay: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_max_level(settings.log)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sotto-relay: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(*settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sotto-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: RelaySettings) -> Result<(), Box<dyn std::error::Error>> {
    // Check the TLS files before touching the database.
    let blob_dir = settings.blob_dir_in_effect();
    let tls = load_tls(settings.tls_cert.zip(settings.tls_key))?;
    let store = open_store(
        &settings.store,
        &SqliteOptions {
            // A database from before envelopes expired gets the
            // configured TTL.
            envelope_ttl: settings.server.envelope_ttl,
            max_database_bytes: settings.max_db_bytes,
        },
        &settings.redis_key_prefix,
    )?;
    let mut config = settings.server;
    if let Some(dir) = blob_dir {
        config.blobs =
            BlobStorage::dir(&dir).map_err(|e| format!("blob directory {}: {e}", dir.display()))?;
    }
    let grace = config.shutdown_grace;
    let mut server = Server::bind(settings.listen.as_str(), config, store).await?;
    if let Some(addr) = &settings.metrics_listen {
        server = server
            .with_metrics(addr.as_str())
            .await
            .map_err(|e| format!("metrics endpoint {addr}: {e}"))?;
    }
    let server = with_tls(server, tls);
    // Before serving: a relay that cannot catch signals does not start.
    let mut signals = Signals::new()?;
    println!("sotto-relay listening on {}", server.local_addr());
    if let Some(addr) = server.metrics_addr() {
        println!("sotto-relay metrics on http://{addr}/metrics");
    }
    let (stop, stopping) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let signal = signals.recv().await;
        tracing::info!(
            signal,
            grace_secs = grace.as_secs_f64(),
            "stopping: no new connections, requests in hand finish"
        );
        let _ = stop.send(());
        let signal = signals.recv().await;
        eprintln!("sotto-relay: {signal} again: stopping now");
        std::process::exit(1);
    });
    server
        .run_until(async {
            let _ = stopping.await;
        })
        .await;
    Ok(())
}

/// Opens the store `spec` names (a Redis one with `redis_key_prefix`).
fn open_store(
    spec: &StoreSpec,
    sqlite: &SqliteOptions,
    redis_key_prefix: &str,
) -> Result<Arc<dyn MailboxStore>, Box<dyn std::error::Error>> {
    match spec {
        StoreSpec::Sqlite(path) => Ok(Arc::new(SqliteStore::open_with(
            path,
            sqlite,
            UnixTime::now(),
        )?)),
        StoreSpec::Memory => Ok(Arc::new(MemoryStore::new())),
        #[cfg(not(feature = "redis"))]
        StoreSpec::Redis(_) => {
            let _ = redis_key_prefix;
            Err(format!(
                "store {spec}: this relay was built without Redis (use sqlite:PATH or memory:)"
            )
            .into())
        }
        #[cfg(feature = "redis")]
        StoreSpec::Redis(url) => Ok(Arc::new(sotto_relay::RedisStore::open_with(
            url,
            &sotto_relay::RedisOptions {
                key_prefix: redis_key_prefix.to_owned(),
                ..sotto_relay::RedisOptions::default()
            },
        )?)),
        other => Err(format!(
            "store {other}: this relay was built without Redis (use sqlite:PATH or memory:)"
        )
        .into()),
    }
}

/// SIGTERM and SIGINT (Ctrl-C).
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    #[cfg(not(unix))]
    fn new() -> std::io::Result<Self> {
        Ok(Self {})
    }

    /// The next signal's name.
    #[cfg(unix)]
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }

    #[cfg(not(unix))]
    async fn recv(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
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
    use std::time::Duration;

    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn run_settings(command: Result<Command, String>) -> RelaySettings {
        match command.unwrap() {
            Command::Run(settings) => *settings,
            other => panic!("expected settings to run with, got {other:?}"),
        }
    }

    fn flags(s: &str) -> RelaySettings {
        run_settings(parse(args(s), Vec::new()))
    }

    fn refused(s: &str) -> String {
        parse(args(s), Vec::new()).unwrap_err()
    }

    #[test]
    fn flags_are_parsed_and_checked() {
        let o = flags("--listen 0.0.0.0:9 --memory --max-frame 4096 --server-id r1");
        assert_eq!(o.listen, "0.0.0.0:9");
        assert_eq!(o.store, StoreSpec::Memory);
        assert_eq!(o.server.max_frame_size, 4096);
        assert_eq!(o.server.server_id, "r1");
        assert!(matches!(
            parse(args("--help"), Vec::new()),
            Ok(Command::Help)
        ));
        refused("--max-frame 10");
        refused("--max-frame lots");
        assert!(refused("--tls-cert a.pem").contains("tls_cert and tls_key go together"));
        assert!(refused("--bogus 1").contains("unknown option --bogus"));
        assert!(refused("--db").contains("--db needs a value"));

        let o = flags(
            "--envelope-ttl-days 7 --max-total-bytes 1000000 --connection-send-budget 2000000",
        );
        assert_eq!(o.server.envelope_ttl, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(o.server.max_total_bytes, 1_000_000);
        assert_eq!(o.server.connection_send_budget, 2_000_000);
        let defaults = flags("").server;
        assert_eq!(defaults.envelope_ttl, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(defaults.max_total_bytes, 16 << 30);
        assert_eq!(defaults.connection_send_budget, 64 << 20);
        // Refused: zero days, an overflow, a budget below the largest envelope.
        refused("--envelope-ttl-days 0");
        refused("--envelope-ttl-days 999999999999999999");
        refused("--envelope-ttl-days 7d");
        refused("--connection-send-budget 1000");
        refused("--max-total-bytes 0");

        let o = flags(
            "--max-connections-per-address 8 --unauthenticated-timeout-secs 5 \
             --frame-timeout-secs 3 --unauthenticated-frame-budget 2000000 \
             --authenticated-frame-budget 3000000 --max-db-bytes 1000000",
        );
        assert_eq!(o.server.max_connections_per_address, 8);
        assert_eq!(o.server.unauthenticated_timeout, Duration::from_secs(5));
        assert_eq!(o.server.frame_timeout, Duration::from_secs(3));
        assert_eq!(o.server.unauthenticated_frame_budget, 2_000_000);
        assert_eq!(o.server.authenticated_frame_budget, 3_000_000);
        assert_eq!(o.max_db_bytes, Some(1_000_000));
        let all_defaults = flags("");
        assert_eq!(all_defaults, RelaySettings::default());
        assert_eq!(all_defaults.max_db_bytes, None);
        assert_eq!(
            all_defaults.store,
            StoreSpec::Sqlite("sotto-relay.db".into())
        );
        // Refused: zero, and a budget below the largest frame.
        refused("--max-connections-per-address 0");
        refused("--frame-timeout-secs 0");
        refused("--unauthenticated-frame-budget 1000");
        assert!(refused("--memory --max-db-bytes 1000000").contains("max_db_bytes"));

        let o = flags("--first-contact-burst 0 --first-contact-interval-secs 600");
        assert_eq!(o.server.first_contact.burst, 0);
        assert_eq!(o.server.first_contact.interval, Duration::from_secs(600));
        assert_eq!(defaults.first_contact.burst, 20);
        assert_eq!(defaults.first_contact.interval, Duration::from_secs(180));
        refused("--first-contact-interval-secs 0");

        // The new ones.
        let o = flags("--store memory: --metrics-listen 127.0.0.1:0 --db relay.db");
        assert_eq!(o.metrics_listen.as_deref(), Some("127.0.0.1:0"));
        // Later flags win over earlier ones.
        assert_eq!(o.store, StoreSpec::Sqlite("relay.db".into()));
        assert!(refused("--store relay.db").contains("unknown store"));
        assert!(matches!(
            parse(args("--check-config --memory"), Vec::new()),
            Ok(Command::Check(_))
        ));
    }

    #[test]
    fn flags_override_the_environment_which_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(
            &file,
            "server_id = \"file\"\nlisten = \"127.0.0.1:1001\"\nstore = \"memory:\"\n\
             max_frame_size = \"2MiB\"\n",
        )
        .unwrap();
        let vars = vec![
            ("SOTTO_RELAY_SERVER_ID".to_owned(), "env".to_owned()),
            ("SOTTO_RELAY_LISTEN".to_owned(), "127.0.0.1:1002".to_owned()),
        ];
        let config = format!("--config {} --listen 127.0.0.1:1003", file.display());
        let o = run_settings(parse(args(&config), vars.clone()));
        assert_eq!(o.listen, "127.0.0.1:1003", "flag over env over file");
        assert_eq!(o.server.server_id, "env", "env over file");
        assert_eq!(o.server.max_frame_size, 2 << 20, "file over default");
        assert_eq!(o.store, StoreSpec::Memory);

        // The file named by the environment, when no flag names one.
        let mut with_config = vars;
        with_config.push((CONFIG_ENV.to_owned(), file.display().to_string()));
        let o = run_settings(parse(Vec::new(), with_config));
        assert_eq!(o.listen, "127.0.0.1:1002");
        assert_eq!(o.server.max_frame_size, 2 << 20);

        // A flag error names the flag.
        let e = parse(args(&format!("{config} --max-frame huge")), Vec::new()).unwrap_err();
        assert!(e.starts_with("--max-frame: max_frame_size: "), "{e}");
    }

    #[test]
    #[cfg(not(feature = "redis"))]
    fn redis_is_refused_clearly_by_a_build_without_it() {
        let spec: StoreSpec = "redis://127.0.0.1:6379".parse().unwrap();
        let e = open_store(&spec, &SqliteOptions::default(), "sotto")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("this relay was built without Redis"), "{e}");
    }

    #[test]
    #[cfg(feature = "redis")]
    fn a_redis_store_that_does_not_answer_is_a_clear_error() {
        // Port 9 (discard) on loopback: nothing speaks Redis there.
        let spec: StoreSpec = "redis://127.0.0.1:9".parse().unwrap();
        assert!(open_store(&spec, &SqliteOptions::default(), "sotto").is_err());
    }
}
