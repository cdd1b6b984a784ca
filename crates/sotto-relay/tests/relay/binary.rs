//! The `sotto-relay` binary as an operator runs it: a configuration file,
//! environment overrides, flags, the HTTP endpoint, and SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sotto_relay::ErrorCode;
use sotto_relay::protocol::{Response, ServerFrame};

use crate::common::*;
use crate::metrics::http;

const RELAY: &str = env!("CARGO_BIN_EXE_sotto-relay");

/// The binary with no `SOTTO_RELAY_` variable from the test's own
/// environment.
fn relay() -> Command {
    let mut command = Command::new(RELAY);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SOTTO_RELAY_") {
            command.env_remove(name);
        }
    }
    command.stdin(Stdio::null());
    command
}

fn output(command: &mut Command) -> Output {
    command.output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The line `key = value` of a `--check-config` listing.
fn setting<'a>(listing: &'a str, key: &str) -> &'a str {
    listing
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in\n{listing}"))
}

#[test]
fn flags_override_the_environment_which_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:7001\"\nserver_id = \"from-file\"\nmax_frame_size = \"2MiB\"\n\
         store = \"memory:\"\n[first_contact]\nburst = 3\n",
    )
    .unwrap();
    let out = output(
        relay()
            .arg("--config")
            .arg(&file)
            .args(["--listen", "127.0.0.1:7003", "--check-config"])
            .env("SOTTO_RELAY_LISTEN", "127.0.0.1:7002")
            .env("SOTTO_RELAY_SERVER_ID", "from-env")
            .env("SOTTO_RELAY_FIRST_CONTACT_BURST", "9"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    assert_eq!(setting(&listing, "listen"), "\"127.0.0.1:7003\"");
    assert_eq!(setting(&listing, "server_id"), "\"from-env\"");
    assert_eq!(setting(&listing, "max_frame_size"), "\"2MiB\"");
    assert_eq!(setting(&listing, "store"), "\"memory:\"");
    assert_eq!(setting(&listing, "burst"), "9");

    // The file may also come from the environment.
    let out = output(
        relay()
            .arg("--check-config")
            .env("SOTTO_RELAY_CONFIG", &file),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(setting(&stdout(&out), "listen"), "\"127.0.0.1:7001\"");

    // The listing is itself a configuration file giving the same settings.
    let listed = dir.path().join("listed.toml");
    std::fs::write(&listed, &listing).unwrap();
    let again = output(relay().arg("--config").arg(&listed).arg("--check-config"));
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        stdout(&again).lines().skip(1).collect::<Vec<_>>(),
        listing.lines().skip(1).collect::<Vec<_>>()
    );
}

#[test]
fn a_typo_or_a_bad_value_stops_the_relay_with_a_message_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    for (text, expected) in [
        (
            "store = \"memory:\"\n\n[rate_limit]\nrequest_per_second = 5\n",
            "relay.toml:4: unknown setting `rate_limit.request_per_second` \
             (did you mean `rate_limit.requests_per_second`?)",
        ),
        (
            "envelope_ttl = 30\n",
            "relay.toml:1: envelope_ttl: a duration needs a unit",
        ),
        (
            "max_frame_size = 512\n",
            "invalid relay configuration: max_frame_size must be at least 2055",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = output(relay().arg("--config").arg(&file));
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(stderr(&out).contains(expected), "{text}: {}", stderr(&out));
    }
    let out = output(
        relay()
            .args(["--memory"])
            .env("SOTTO_RELAY_MAX_CONECTIONS", "5"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown setting `SOTTO_RELAY_MAX_CONECTIONS`"),
        "{}",
        stderr(&out)
    );
    // The client tools' variable is not the relay's business.
    let out = output(
        relay()
            .args(["--memory", "--check-config"])
            .env("SOTTO_RELAY_CA", "/some/ca.pem"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn the_example_configuration_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("relay.example.toml");
    let out = output(relay().arg("--config").arg(&example).arg("--check-config"));
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A relay process, killed if the test fails before it exits.
struct RelayProcess {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
}

impl RelayProcess {
    fn start(config: &Path) -> Self {
        let mut child = relay()
            .arg("--config")
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // The first lines name the addresses; read them on a thread, so a
        // relay that fails to start fails the test in time.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for _ in 0..2 {
                let _ = tx.send(lines.next().and_then(Result::ok).unwrap_or_default());
            }
        });
        let line = || rx.recv_timeout(WAIT).unwrap_or_default();
        let (first, second) = (line(), line());
        let addr = first.strip_prefix("sotto-relay listening on ");
        let metrics = second
            .strip_prefix("sotto-relay metrics on http://")
            .and_then(|s| s.strip_suffix("/metrics"));
        let (Some(addr), Some(metrics)) = (addr, metrics) else {
            let _ = child.kill();
            panic!("the relay did not start: {first:?} {second:?}");
        };
        Self {
            addr: addr.parse().unwrap(),
            metrics: metrics.parse().unwrap(),
            child,
        }
    }

    /// Waits for the process to exit, at most `limit`.
    fn exit_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < limit, "the relay did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_clients_and_exits_0_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nstore = \"sqlite:{}\"\nmetrics_listen = \"127.0.0.1:0\"\n\
             server_id = \"sigterm-test\"\nlog = \"warn\"\n",
            dir.path().join("relay.db").display()
        ),
    )
    .unwrap();
    let mut relay = RelayProcess::start(&config);
    let (status, body) = http(relay.metrics, "GET", "/health").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // A client that stored something and stays connected.
    let bob = identity(0x61);
    let bob_conn = registered(relay.addr, &bob).await;
    connect(relay.addr)
        .await
        .send(&address(&bob), mid(1), None, b"kept across the stop")
        .await
        .unwrap();
    drop(bob_conn);
    let mut client = Raw::connect(relay.addr).await;
    let welcome = client.hello().await;
    assert_eq!(welcome.server_id, "sigterm-test");

    let started = Instant::now();
    signal(relay.child.id(), "TERM");
    match client.recv().await {
        Some(ServerFrame::Response {
            request_id: 0,
            response: Response::Error(e),
        }) => assert_eq!(e.code, ErrorCode::ShuttingDown),
        other => panic!("expected ShuttingDown, got {other:?}"),
    }
    client.expect_closed().await;
    let status = tokio::task::block_in_place(|| relay.exit_within(Duration::from_secs(5)));
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // The database is intact: a relay started on it again has the envelope.
    let relay = RelayProcess::start(&config);
    let bob_conn = owner(relay.addr, &bob).await;
    assert_eq!(bob_conn.fetch_pending().await.unwrap().len(), 1);
}
