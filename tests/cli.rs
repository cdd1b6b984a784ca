//! The CLI itself: `demo`, and `talk` driven through pseudo-terminals.
#![cfg(test)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The `chat` example, built by `cargo test` next to the test binaries.
fn chat_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug_dir = exe.parent().unwrap().parent().unwrap();
    let path = debug_dir.join("examples").join("chat");
    assert!(path.exists(), "build the example first: {}", path.display());
    path
}

fn chat(profile: &Path, args: &[&str]) -> Output {
    chat_with_env(profile, args, &[])
}

fn chat_with_env(profile: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(chat_binary());
    command
        .arg("--profile")
        .arg(profile)
        .args(args)
        .env("SOTTO_PASSPHRASE", "cli test passphrase")
        .env_remove("SOTTO_RELAY_CA")
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `chat talk NAME` with `input` on a pipe as its terminal, to the end.
fn talk_with_input(profile: &Path, name: &str, input: &[u8]) -> Output {
    use std::io::Write;
    let mut talk = Command::new(chat_binary())
        .arg("--profile")
        .arg(profile)
        .args(["talk", name])
        .env("SOTTO_PASSPHRASE", "cli test passphrase")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    talk.stdin.take().unwrap().write_all(input).unwrap();
    talk.wait_with_output().unwrap()
}

/// Profiles `alice` and `bob` in `dir`, registered with the relay at
/// `addr`, each the other's contact; with their addresses.
fn alice_and_bob(dir: &Path, addr: &str) -> (PathBuf, PathBuf, String, String) {
    let alice = dir.join("alice");
    let bob = dir.join("bob");
    for profile in [&alice, &bob] {
        ok(chat(profile, &["init"]));
        ok(chat(profile, &["register", "--relay", addr]));
    }
    let alice_address = ok(chat(&alice, &["whoami"])).trim().to_owned();
    let bob_address = ok(chat(&bob, &["whoami"])).trim().to_owned();
    ok(chat(&alice, &["add", "bob", &bob_address]));
    ok(chat(&bob, &["add", "alice", &alice_address]));
    (alice, bob, alice_address, bob_address)
}

struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The short form of an address `whoami` printed (the full form, once
/// the profile speaks protocol v2): how the chat prints contacts and
/// devices.
fn short(address: &str) -> String {
    address.parse::<sotto::Address>().unwrap().to_string()
}

/// `chat relay` on an ephemeral loopback port; returns it and its address.
fn start_relay(dir: &Path) -> (Relay, String) {
    start_relay_with(dir, &[])
}

/// `chat relay` with extra arguments (such as its TLS certificate).
fn start_relay_with(dir: &Path, extra: &[&std::ffi::OsStr]) -> (Relay, String) {
    let mut child = Command::new(chat_binary())
        .args(["relay", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("relay.db"))
        .args(extra)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    // "Relay listening on 127.0.0.1:PORT (database ...)."
    let addr = line
        .split_whitespace()
        .nth(3)
        .unwrap_or_else(|| panic!("unexpected relay output {line:?}"))
        .to_owned();
    (Relay(child), addr)
}

#[test]
fn demo_exits_zero_and_finds_no_plaintext() {
    let output = Command::new(chat_binary())
        .arg("demo")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = ok(output);
    assert!(stdout.contains("No plaintext found"), "{stdout}");
    assert!(stdout.contains("Out-of-order delivery"), "{stdout}");
    assert!(stdout.contains("they match"), "{stdout}");
}

#[test]
fn user_mistakes_are_one_line_errors_with_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("nobody");
    // No profile yet.
    let out = chat(&profile, &["whoami"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");

    ok(chat(&profile, &["init"]));
    // A mistyped address.
    let out = chat(&profile, &["add", "bob", "sotto:1234"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    // Sending without a relay.
    let out = chat(&profile, &["send", "bob", "hi"]);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8(out.stderr).unwrap().lines().count(), 1);
    // A wrong passphrase.
    let out = Command::new(chat_binary())
        .arg("--profile")
        .arg(&profile)
        .arg("whoami")
        .env("SOTTO_PASSPHRASE", "not the passphrase")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim(), "error: wrong passphrase");
}

#[test]
fn talk_in_two_terminals_delivers_messages_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, addr) = start_relay(dir.path());
    let (alice, bob, _, _) = alice_and_bob(dir.path(), &addr);

    let talk = |profile: &Path, peer: &str| {
        let mut cmd = Command::new(chat_binary());
        cmd.arg("--profile")
            .arg(profile)
            .args(["talk", peer])
            .env("SOTTO_PASSPHRASE", "cli test passphrase");
        let mut session = rexpect::session::spawn_command(cmd, Some(30_000)).unwrap();
        session.exp_string("Talking to").unwrap();
        session
    };
    let mut a = talk(&alice, "bob");
    let mut b = talk(&bob, "alice");

    a.send_line("hello bob, typed in a terminal").unwrap();
    b.exp_string("alice: hello bob, typed in a terminal")
        .unwrap();
    b.send_line("hi alice, right back").unwrap();
    a.exp_string("bob: hi alice, right back").unwrap();

    // The in-chat commands.
    a.send_line("/verify").unwrap();
    a.exp_string("Safety number with bob:").unwrap();
    a.send_line("/history").unwrap();
    a.exp_string("me: hello bob, typed in a terminal").unwrap();
    for s in [&mut a, &mut b] {
        s.send_line("/quit").unwrap();
        s.exp_eof().unwrap();
    }

    // Both histories hold the conversation.
    let history = ok(chat(&bob, &["history", "alice"]));
    assert!(
        history.contains("alice: hello bob, typed in a terminal"),
        "{history}"
    );
    assert!(history.contains("me: hi alice, right back"), "{history}");
}

#[test]
fn profiles_register_and_talk_over_tls_with_a_relay_certificate() {
    let dir = tempfile::tempdir().unwrap();
    // A relay with a self-signed certificate, pinned by the clients.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.path().join("relay-cert.pem");
    let key_path = dir.path().join("relay-key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let (_relay, addr) = start_relay_with(
        dir.path(),
        &[
            "--tls-cert".as_ref(),
            cert_path.as_os_str(),
            "--tls-key".as_ref(),
            key_path.as_os_str(),
        ],
    );
    let port = addr.rsplit(':').next().unwrap();
    let relay = format!("tls://localhost:{port}");
    let alice = dir.path().join("alice");
    let bob = dir.path().join("bob");
    ok(chat(&alice, &["init"]));
    ok(chat(&bob, &["init"]));

    // Without the relay's certificate, the system's trust store refuses it.
    let out = chat(&alice, &["register", "--relay", &relay]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains("TLS"), "{err}");
    // A mistyped scheme is refused before any connection.
    let out = chat(&alice, &["register", "--relay", "tsl://localhost:1"]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unknown scheme"), "{err}");

    // --relay-ca, or SOTTO_RELAY_CA.
    let ca = cert_path.to_str().unwrap();
    let registered = ok(chat(
        &alice,
        &["--relay-ca", ca, "register", "--relay", &relay],
    ));
    assert!(
        registered.contains(&format!("Registered with {relay}.")),
        "{registered}"
    );
    let with_ca = [("SOTTO_RELAY_CA", cert_path.as_path())];
    ok(chat_with_env(
        &bob,
        &["register", "--relay", &relay],
        &with_ca,
    ));
    let bob_address = ok(chat(&bob, &["whoami"])).trim().to_owned();
    ok(chat(&alice, &["add", "bob", &bob_address]));
    ok(chat_with_env(
        &alice,
        &["send", "bob", "hello over tls"],
        &with_ca,
    ));
    let synced = ok(chat_with_env(&bob, &["sync"], &with_ca));
    assert!(synced.contains("hello over tls"), "{synced}");
}

/// A damaged profile is never shown as if it were whole: `history` marks the
/// lost messages and exits non-zero, `check` names every problem.
#[test]
fn a_damaged_profile_is_reported_by_history_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, addr) = start_relay(dir.path());
    let alice = dir.path().join("alice");
    let bob = dir.path().join("bob");
    for p in [&alice, &bob] {
        ok(chat(p, &["init"]));
        ok(chat(p, &["register", "--relay", &addr]));
    }
    let address = |p: &Path| ok(chat(p, &["whoami"])).trim().to_owned();
    ok(chat(&alice, &["add", "bob", &address(&bob)]));
    ok(chat(&bob, &["add", "alice", &address(&alice)]));
    for i in 1..=4 {
        ok(chat(&alice, &["send", "bob", &format!("message {i}")]));
    }
    assert!(ok(chat(&bob, &["sync"])).contains("4 new message(s)"));
    let healthy = ok(chat(&bob, &["check"]));
    assert!(healthy.contains("no problem found"), "{healthy}");

    // Two rows vanish from the file, as a damaged index page can make them.
    {
        let conn = rusqlite::Connection::open(bob.join("sotto.db")).unwrap();
        // Row ids are conversation (19 bits) || seq (28) || part (16):
        // docs/storage.md section 3, "Message rows".
        conn.execute(
            "DELETE FROM messages WHERE ((id >> 16) & 268435455) IN (2, 3)",
            [],
        )
        .unwrap();
    }
    let history = chat(&bob, &["history", "alice"]);
    let stdout = String::from_utf8_lossy(&history.stdout);
    let stderr = String::from_utf8_lossy(&history.stderr);
    assert!(!history.status.success(), "{stdout}");
    assert!(
        stdout.contains("message 1") && stdout.contains("message 4"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("missing").count(), 2, "{stdout}");
    assert!(
        stderr.contains("2 message(s) could not be read"),
        "{stderr}"
    );

    let check = chat(&bob, &["check"]);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success());
    assert_eq!(stdout.matches("problem:").count(), 2, "{stdout}");
    assert!(stdout.contains("2 problem(s)"), "{stdout}");
}

/// What a new user hits first: an empty passphrase, a profile that does not
/// exist, a relay port that is taken, a contact who never registered, a
/// line that is not UTF-8 in `talk`.
#[test]
fn first_steps_fail_clearly_and_talk_never_drops_a_line() {
    let dir = tempfile::tempdir().unwrap();
    // An empty SOTTO_PASSPHRASE is refused like an empty prompt answer.
    let out = Command::new(chat_binary())
        .arg("--profile")
        .arg(dir.path().join("empty"))
        .arg("init")
        .env("SOTTO_PASSPHRASE", "")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must not be empty"));
    assert!(!dir.path().join("empty").join("sotto.db").exists());
    // No profile: said before any passphrase is asked (stdin is closed).
    let out = Command::new(chat_binary())
        .arg("--profile")
        .arg(dir.path().join("nobody"))
        .arg("whoami")
        .env_remove("SOTTO_PASSPHRASE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no profile in"));

    let (_relay, addr) = start_relay(dir.path());
    // A second relay on the same port fails and leaves no database.
    let second = dir.path().join("second.db");
    let out = Command::new(chat_binary())
        .args(["relay", "--listen", &addr, "--db"])
        .arg(&second)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        !second.exists(),
        "a relay that could not listen left a database"
    );

    let alice = dir.path().join("alice");
    let bob = dir.path().join("bob");
    ok(chat(&alice, &["init"]));
    ok(chat(&alice, &["register", "--relay", &addr]));
    ok(chat(&bob, &["init"]));
    let bob_address = ok(chat(&bob, &["whoami"])).trim().to_owned();
    ok(chat(&alice, &["add", "bob", &bob_address]));
    // Bob never registered.
    let out = chat(&alice, &["send", "bob", "hello?"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("has not registered with this relay"),
        "{stderr}"
    );

    // Bob registers; Alice talks with a line that is not UTF-8 between two
    // others, the last with leading spaces: all three arrive, nothing is
    // dropped, the chat ends normally.
    ok(chat(&bob, &["register", "--relay", &addr]));
    let out = talk_with_input(&alice, "bob", b"first\n\xff\xfe not utf-8\n  indented\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("not valid UTF-8"));
    let synced = ok(chat(&bob, &["sync"]));
    assert!(synced.contains("3 new message(s)"), "{synced}");
    assert!(synced.contains(":   indented"), "{synced}");
}

/// `chat relay` again on `addr` (a port a relay just released) with the
/// database in `dir`.
fn restart_relay_on(dir: &Path, addr: &str) -> Relay {
    for _ in 0..100 {
        let mut child = Command::new(chat_binary())
            .args(["relay", "--listen", addr, "--db"])
            .arg(dir.join("relay.db"))
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.starts_with("Relay listening") {
            return Relay(child);
        }
        let _ = child.wait();
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("could not listen on {addr} again");
}

#[test]
fn send_and_talk_work_offline_first_with_the_relay_down() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, addr) = start_relay(dir.path());
    let alice = dir.path().join("alice");
    let bob = dir.path().join("bob");
    let carol = dir.path().join("carol");
    for profile in [&alice, &bob] {
        ok(chat(profile, &["init"]));
        ok(chat(profile, &["register", "--relay", &addr]));
    }
    ok(chat(&carol, &["init"]));
    let bob_address = ok(chat(&bob, &["whoami"])).trim().to_owned();
    let carol_address = ok(chat(&carol, &["whoami"])).trim().to_owned();
    ok(chat(&alice, &["add", "bob", &bob_address]));
    ok(chat(&alice, &["add", "carol", &carol_address]));
    ok(chat(&alice, &["send", "bob", "hello"]));

    drop(relay);
    // A session with Bob exists: stored, queued, said so, exit 0.
    let out = ok(chat(
        &alice,
        &["send", "bob", "written while the relay is down"],
    ));
    assert!(out.contains("Stored;"), "{out}");
    assert!(out.contains("next connection"), "{out}");
    // A first message needs the relay: refused, nothing stored.
    let out = chat(&alice, &["send", "carol", "hi carol"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("needs their keys from the relay"),
        "{stderr}"
    );
    let history = ok(chat(&alice, &["history", "carol"]));
    assert!(history.contains("No messages with carol"), "{history}");
    // `talk` starts anyway and stores what is typed.
    let out = talk_with_input(&alice, "bob", b"typed offline\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("go out when it is back"), "{stdout}");

    // The relay is back: Alice's next connection sends both, in order.
    let _relay = restart_relay_on(dir.path(), &addr);
    ok(chat(&alice, &["sync"]));
    let synced = ok(chat(&bob, &["sync"]));
    let first = synced.find("written while the relay is down");
    let second = synced.find("typed offline");
    assert!(
        first.is_some() && second.is_some() && first < second,
        "{synced}"
    );
}

#[test]
fn an_identity_change_is_listed_with_both_safety_numbers_and_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, addr) = start_relay(dir.path());
    let alice = dir.path().join("alice");
    let bob = dir.path().join("bob");
    let bob2 = dir.path().join("bob2");
    for profile in [&alice, &bob, &bob2] {
        ok(chat(profile, &["init"]));
        ok(chat(profile, &["register", "--relay", &addr]));
    }
    let alice_address = ok(chat(&alice, &["whoami"])).trim().to_owned();
    let bob_address = ok(chat(&bob, &["whoami"])).trim().to_owned();
    let bob2_address = ok(chat(&bob2, &["whoami"])).trim().to_owned();
    ok(chat(&alice, &["add", "bob", &bob_address]));
    ok(chat(&bob2, &["add", "alice", &alice_address]));
    // One device each: the account's device list, version 1.
    let devices = ok(chat(&alice, &["devices"]));
    assert!(
        devices.contains("device list version 1")
            && devices.contains(&format!("1  {}  (this device", short(&alice_address))),
        "{devices}"
    );

    ok(chat(
        &bob2,
        &["announce", "alice", "--previous", &bob_address],
    ));
    ok(chat(&bob2, &["send", "alice", "new phone, same bob"]));
    let changes = ok(chat(&alice, &["changes"]));
    assert!(
        changes.contains(&format!("{} says they are bob", short(&bob2_address))),
        "{changes}"
    );
    let new_number = ok(chat(&bob2, &["verify", "alice"]));
    let new_number = new_number.lines().nth(1).unwrap().trim();
    assert!(
        changes.contains(&format!("new safety number: {new_number}")),
        "{changes}\n{new_number}"
    );
    // Not Bob's until accepted.
    let history = ok(chat(&alice, &["history", "bob"]));
    assert!(!history.contains("new phone"), "{history}");

    ok(chat(&alice, &["accept-change", &bob2_address]));
    let history = ok(chat(&alice, &["history", "bob"]));
    assert!(history.contains("bob: new phone, same bob"), "{history}");
    assert!(ok(chat(&alice, &["changes"])).contains("No identity change waiting"));
}

/// A loopback listener that is no relay; each connection is served by
/// `serve` on its own thread. The threads end with the test process.
fn foreign_server(serve: fn(std::net::TcpStream)) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

#[test]
fn register_at_a_port_that_is_not_a_relay_says_so() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("alice");
    ok(chat(&profile, &["init"]));

    // An HTTP server answers the client's first bytes with a 400.
    let http = foreign_server(|mut stream| {
        let _ = stream.read(&mut [0u8; 1024]);
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = stream.read_to_end(&mut Vec::new());
    });
    // Another server accepts and never says a word.
    let silent = foreign_server(|mut stream| {
        let _ = stream.read_to_end(&mut Vec::new());
    });
    for (addr, expected) in [
        (
            &http,
            "not a Sotto relay: the server answered \"HTTP/1.1 400",
        ),
        (&silent, "no Sotto relay answered"),
    ] {
        let out = chat(&profile, &["register", "--relay", addr]);
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(expected), "{err}");
    }
    // Nothing was remembered.
    let out = chat(&profile, &["send", "bob", "hi"]);
    assert!(!out.status.success());
}

#[test]
fn export_and_import_move_a_profile_with_its_history_and_recovery_follows() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, addr) = start_relay(dir.path());
    let (alice, bob, alice_address, _) = alice_and_bob(dir.path(), &addr);
    ok(chat(&alice, &["send", "bob", "first from alice"]));
    ok(chat(&bob, &["sync"]));
    ok(chat(&bob, &["send", "alice", "reply from bob"]));
    ok(chat(&alice, &["sync"]));
    ok(chat(&bob, &["verify", "alice", "--confirm"]));

    // Export, with a progress bar on stderr.
    let archive = dir.path().join("alice.sottoarchive");
    let pass: &[(&str, &Path)] = &[("SOTTO_ARCHIVE_PASSPHRASE", Path::new("archive pass"))];
    let out = chat_with_env(&alice, &["export", archive.to_str().unwrap()], pass);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = ok(out);
    assert!(stdout.contains("Exported 2 message(s)"), "{stdout}");
    assert!(stderr.contains("] 100% 2/2 messages"), "{stderr}");
    assert!(stderr.contains("\r["), "{stderr}");
    // Never over an existing file.
    let before = std::fs::read(&archive).unwrap();
    let out = chat_with_env(&alice, &["export", archive.to_str().unwrap()], pass);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("exists already"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(std::fs::read(&archive).unwrap(), before);

    // A wrong archive passphrase: refused, no profile left.
    let moved = dir.path().join("alice-new-device");
    let wrong: &[(&str, &Path)] = &[("SOTTO_ARCHIVE_PASSPHRASE", Path::new("not it"))];
    let out = chat_with_env(&moved, &["import", archive.to_str().unwrap()], wrong);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("wrong passphrase or key"), "{err}");
    assert!(!moved.exists(), "the folder it created is gone again");

    // Import into a new profile: the same address, contacts and history.
    let out = chat_with_env(&moved, &["import", archive.to_str().unwrap()], pass);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = ok(out);
    assert!(stdout.contains(&short(&alice_address)), "{stdout}");
    assert!(stderr.contains("100% 2/2 messages"), "{stderr}");
    assert_eq!(
        short(ok(chat(&moved, &["whoami"])).trim()),
        short(&alice_address)
    );
    assert_eq!(
        ok(chat(&moved, &["contacts"])),
        ok(chat(&alice, &["contacts"]))
    );
    let history = ok(chat(&moved, &["history", "bob"]));
    assert_eq!(history, ok(chat(&alice, &["history", "bob"])));
    assert!(history.contains("[1] me: first from alice"), "{history}");
    assert!(history.contains("[2] bob: reply from bob"), "{history}");
    // Not over an existing profile.
    let out = chat_with_env(&moved, &["import", archive.to_str().unwrap()], pass);
    assert!(!out.status.success());

    // The new device registers; Bob's next message was made with the old
    // device's session: it fails once, Alice asks for it again, Bob starts
    // a new session and resends, and it arrives.
    ok(chat(&moved, &["register", "--relay", &addr]));
    ok(chat(&bob, &["send", "alice", "after the move"]));
    ok(chat(&moved, &["sync"]));
    ok(chat(&bob, &["sync"]));
    let synced = ok(chat(&moved, &["sync"]));
    assert!(synced.contains("bob: after the move"), "{synced}");
    ok(chat(&moved, &["send", "bob", "hello from the new device"]));
    let synced = ok(chat(&bob, &["sync"]));
    assert!(
        synced.contains("alice: hello from the new device"),
        "{synced}"
    );
    let history = ok(chat(&moved, &["history", "bob"]));
    assert!(history.contains("[3] bob: after the move"), "{history}");
    assert!(
        history.contains("[4] me: hello from the new device"),
        "{history}"
    );
}

/// `chat link` on a new profile shows a code (text and QR code) and waits;
/// `chat link CODE` on the account's device links it; both list the same
/// two devices, and a message to the account reaches both.
#[test]
fn link_shows_a_code_and_the_account_device_links_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, addr) = start_relay(dir.path());
    let (alice, bob, alice_address, bob_address) = alice_and_bob(dir.path(), &addr);
    let laptop = dir.path().join("alice-laptop");
    // History the laptop should get.
    ok(chat(&bob, &["send", "alice", "before the laptop existed"]));
    assert!(ok(chat(&alice, &["sync"])).contains("before the laptop existed"));

    let mut waiting = Command::new(chat_binary())
        .arg("--profile")
        .arg(&laptop)
        .args(["link", "--relay", &addr])
        .env("SOTTO_PASSPHRASE", "cli test passphrase")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut shown = BufReader::new(waiting.stdout.take().unwrap());
    let mut code = None;
    let mut lines = Vec::new();
    while code.is_none() {
        let mut line = String::new();
        assert!(
            shown.read_line(&mut line).unwrap() > 0,
            "no code: {lines:?}"
        );
        code = line
            .split_whitespace()
            .find(|w| w.starts_with("sotto-link:"))
            .map(str::to_owned);
        lines.push(line);
    }
    let code = code.unwrap();
    // A QR code follows the text: lines of half blocks.
    let mut qr_lines = 0;
    for _ in 0..60 {
        let mut line = String::new();
        shown.read_line(&mut line).unwrap();
        if line.contains('▀') || line.contains('▄') || line.contains('█') {
            qr_lines += 1;
        }
        if line.starts_with("Waiting") {
            break;
        }
    }
    assert!(qr_lines > 20, "{qr_lines} lines of QR code");

    // A typo is a clear error; the code itself links.
    let typo = format!("{}x", &code[..code.len() - 1]);
    let out = chat(&alice, &["link", &typo]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a link code"));
    let linked = ok(chat(&alice, &["link", &code]));
    assert!(linked.contains("Linked device 2"), "{linked}");
    assert!(
        linked.contains("The new device has your whole history"),
        "{linked}"
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut shown, &mut rest).unwrap();
    assert!(waiting.wait().unwrap().success());
    assert!(
        rest.contains(&format!(
            "Linked: this is device 2 of {}",
            short(&alice_address)
        )),
        "{rest}"
    );
    assert!(rest.contains("History received: 1 message,"), "{rest}");
    let history = ok(chat(&laptop, &["history", &bob_address]));
    assert!(history.contains("before the laptop existed"), "{history}");

    for profile in [&alice, &laptop] {
        let devices = ok(chat(profile, &["devices"]));
        assert!(devices.contains("version 2"), "{devices}");
        assert!(devices.contains("(this device"), "{devices}");
        assert_eq!(ok(chat(profile, &["whoami"])).trim(), alice_address);
    }
    ok(chat(&bob, &["send", "alice", "to both of your devices"]));
    for profile in [&alice, &laptop] {
        let synced = ok(chat(profile, &["sync"]));
        assert!(synced.contains("to both of your devices"), "{synced}");
    }
    // Unlinked, the laptop gets nothing new.
    ok(chat(&alice, &["unlink", "2"]));
    ok(chat(&bob, &["send", "alice", "after the unlink"]));
    assert!(ok(chat(&alice, &["sync"])).contains("after the unlink"));
    assert!(!ok(chat(&laptop, &["sync"])).contains("after the unlink"));
}

/// `chat link --relay ADDR` on the new device, in the background: its
/// process, its stdout, and the code it shows.
fn show_link_code(
    profile: &Path,
    addr: &str,
) -> (Child, BufReader<std::process::ChildStdout>, String) {
    let mut waiting = Command::new(chat_binary())
        .arg("--profile")
        .arg(profile)
        .args(["link", "--relay", addr])
        .env("SOTTO_PASSPHRASE", "cli test passphrase")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let Some(stdout) = waiting.stdout.take() else {
        let _ = waiting.kill();
        let _ = waiting.wait();
        panic!("no stdout");
    };
    let mut shown = BufReader::new(stdout);
    loop {
        let mut line = String::new();
        if shown.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = waiting.kill();
            let _ = waiting.wait();
            panic!("no link code shown");
        }
        if let Some(code) = line
            .split_whitespace()
            .find(|w| w.starts_with("sotto-link:"))
        {
            return (waiting, shown, code.to_owned());
        }
    }
}

/// The account's device is SIGKILLed while it sends a large history to the
/// device it just linked; `chat sync` later goes on from the chunk the
/// relay had not taken, and the new device ends with the whole history.
#[test]
fn a_history_transfer_survives_a_sigkill_of_the_sender() {
    const HISTORY: usize = 40_000;
    let dir = tempfile::tempdir().unwrap();
    let (_relay, addr) = start_relay(dir.path());
    let (alice, _bob, alice_address, bob_address) = alice_and_bob(dir.path(), &addr);
    {
        use sotto::store::{DeliveryState, Direction, NewMessage, OpenOptions, Store};
        let mut store = Store::open(
            alice.join(sotto::PROFILE_DB),
            b"cli test passphrase",
            &OpenOptions::new(),
        )
        .unwrap();
        let bodies: Vec<Vec<u8>> = (0..HISTORY)
            .map(|i| format!("old message {i:06} {}", "y".repeat(150)).into_bytes())
            .collect();
        let messages: Vec<NewMessage<'_>> = bodies
            .iter()
            .map(|body| NewMessage {
                direction: Direction::Incoming,
                state: DeliveryState::Received,
                timestamp: 1_700_000_000_000,
                body,
            })
            .collect();
        store
            .import_messages(&short(&bob_address), &messages)
            .unwrap();
    }
    let laptop = dir.path().join("alice-laptop");
    let (mut waiting, shown, code) = show_link_code(&laptop, &addr);

    let mut sender = Command::new(chat_binary())
        .arg("--profile")
        .arg(&alice)
        .args(["link", &code])
        .env("SOTTO_PASSPHRASE", "cli test passphrase")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(sender.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the sender ended early"
        );
        if line.starts_with("Sending your history") {
            break;
        }
    }
    // Mid-transfer: the file is written and the first chunks go out.
    std::thread::sleep(std::time::Duration::from_millis(150));
    sender.kill().unwrap();
    sender.wait().unwrap();

    // Any command that connects resumes the transfer; the new device,
    // still waiting, takes the rest.
    ok(chat(&alice, &["sync"]));
    let mut rest = String::new();
    let mut shown = shown;
    std::io::Read::read_to_string(&mut shown, &mut rest).unwrap();
    assert!(waiting.wait().unwrap().success(), "{rest}");
    assert!(
        rest.contains(&format!(
            "Linked: this is device 2 of {}",
            short(&alice_address)
        )),
        "{rest}"
    );
    assert!(
        rest.contains(&format!("History received: {HISTORY} messages")),
        "{rest}"
    );
    let history = ok(chat(&laptop, &["history", &bob_address, "--limit", "1"]));
    assert!(
        history.contains(&format!("old message {:06}", HISTORY - 1)),
        "{history}"
    );
}

#[test]
fn a_disappearing_messages_timer_is_set_shown_and_reaches_the_contact() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, addr) = start_relay(dir.path());
    let (alice, bob, _, _) = alice_and_bob(dir.path(), &addr);
    ok(chat(&alice, &["send", "bob", "hi"]));
    ok(chat(&bob, &["sync"]));
    assert!(ok(chat(&alice, &["timer", "bob"])).contains("Messages with bob do not disappear."));
    let set = ok(chat(&alice, &["timer", "bob", "1h"]));
    assert!(
        set.contains("you set messages to disappear 1h after they are read or sent"),
        "{set}"
    );
    ok(chat(&bob, &["sync"]));
    let shown = ok(chat(&bob, &["timer", "alice"]));
    assert!(
        shown.contains("Messages with alice disappear 1h after they are read or sent."),
        "{shown}"
    );
    let history = ok(chat(&bob, &["history", "alice"]));
    assert!(
        history.contains("(alice set messages to disappear 1h after they are read or sent)"),
        "{history}"
    );
    ok(chat(&bob, &["timer", "alice", "off"]));
    ok(chat(&alice, &["sync"]));
    let history = ok(chat(&alice, &["history", "bob"]));
    assert!(
        history.contains("(you set messages to disappear 1h")
            && history.contains("(bob turned disappearing messages off)"),
        "{history}"
    );
    // A duration the chat cannot read is a one-line error.
    let bad = chat(&alice, &["timer", "bob", "5 minutes"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a duration"));
}

/// The largest file in `dir` (the relay's blob being written), if any.
fn largest_file_len(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Runs `chat ARGS PATHS` on `profile` and SIGKILLs it once a file in
/// `dir` holds at least `len` bytes (the process must still be running
/// then).
fn kill_once_a_file_grows(
    profile: &Path,
    args: &[&str],
    paths: &[&PathBuf],
    dir: &Path,
    len: usize,
    deadline: std::time::Instant,
) {
    let mut child = Command::new(chat_binary())
        .arg("--profile")
        .arg(profile)
        .args(args)
        .args(paths)
        .env("SOTTO_PASSPHRASE", "cli test passphrase")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while largest_file_len(dir) < len as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "`chat {args:?}` never wrote {len} bytes to {}",
            dir.display()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "`chat {args:?}` ended early"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_file_survives_sigkills_of_the_sender_and_the_recipient_mid_transfer() {
    const LEN: usize = 48 << 20;
    let dir = tempfile::tempdir().unwrap();
    let (_relay, addr) = start_relay(dir.path());
    let (alice, bob, _, _) = alice_and_bob(dir.path(), &addr);
    ok(chat(&alice, &["send", "bob", "a file follows"]));
    ok(chat(&bob, &["sync"]));
    let source = dir.path().join("video.bin");
    let bytes: Vec<u8> = (0..LEN)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&source, &bytes).unwrap();
    let blobs = dir.path().join("relay.db.blobs");

    // The sender, killed once the relay holds part of the file.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let files = [&source];
    kill_once_a_file_grows(
        &alice,
        &["send-file", "bob"],
        &files,
        &blobs,
        LEN / 4,
        deadline,
    );
    let held = largest_file_len(&blobs);
    assert!(held < LEN as u64, "the upload ended before the kill");

    // Any command that connects goes on from what the relay holds.
    ok(chat(&alice, &["sync"]));
    let history = ok(chat(&alice, &["history", "bob"]));
    assert!(
        history.contains("me: [file: video.bin, 48.0 MiB"),
        "{history}"
    );

    // The recipient, killed mid-download, goes on where it stopped.
    let parts = bob.join(sotto::ATTACHMENTS_DIR);
    kill_once_a_file_grows(&bob, &["sync"], &[], &parts, LEN / 4, deadline);
    let synced = ok(chat(&bob, &["sync"]));
    assert!(
        synced.contains("Received the file of message #"),
        "{synced}"
    );
    let history = ok(chat(&bob, &["history", "alice"]));
    let line = history
        .lines()
        .find(|l| l.contains("[file: video.bin"))
        .unwrap_or_else(|| panic!("{history}"));
    let seq = &line[1..line.find(']').unwrap()];
    let saved = dir.path().join("saved.bin");
    ok(chat(&bob, &["save", "alice", seq, saved.to_str().unwrap()]));
    assert!(
        std::fs::read(&saved).unwrap() == bytes,
        "the saved file differs"
    );
}
