//! The full-screen interface (`chat` with no command), driven in a
//! pseudo-terminal as a person would: keys in, the screen read back
//! through a terminal emulator (`vt100`) and checked.
#![cfg(test)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PASSPHRASE: &str = "tui test passphrase";
const ROWS: u16 = 24;
const COLS: u16 = 90;
/// How long the screen may take to show something.
const WAIT: Duration = Duration::from_secs(20);

/// The `chat` example, built by `cargo test` next to the test binaries.
fn chat_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug_dir = exe.parent().unwrap().parent().unwrap();
    let path = debug_dir.join("examples").join("chat");
    assert!(path.exists(), "build the example first: {}", path.display());
    path
}

fn chat(profile: &Path, args: &[&str]) -> Output {
    Command::new(chat_binary())
        .arg("--profile")
        .arg(profile)
        .args(args)
        .env("SOTTO_PASSPHRASE", PASSPHRASE)
        .env_remove("SOTTO_RELAY_CA")
        .stdin(Stdio::null())
        .output()
        .unwrap()
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

struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `chat relay` on an ephemeral loopback port; returns it and its address.
fn start_relay(dir: &Path) -> (Relay, String) {
    start_relay_at(dir, "127.0.0.1:0")
}

fn start_relay_at(dir: &Path, listen: &str) -> (Relay, String) {
    let mut child = Command::new(chat_binary())
        .args(["relay", "--listen", listen, "--db"])
        .arg(dir.join("relay.db"))
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    // "Relay listening on 127.0.0.1:PORT (database ...)."
    let addr = line.split_whitespace().nth(3).unwrap().to_owned();
    (Relay(child), addr)
}

/// A registered profile named `name` in `dir`.
fn profile(dir: &Path, name: &str, relay: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    ok(chat(&path, &["init"]));
    ok(chat(&path, &["register", "--relay", relay]));
    let address = ok(chat(&path, &["whoami"])).trim().to_owned();
    (path, address)
}

/// The interface running in a pseudo-terminal of `ROWS`×`COLS`, and what
/// it shows.
struct Screen {
    session: rexpect::session::PtySession,
    parser: vt100::Parser,
    /// Every byte it wrote.
    output: Vec<u8>,
}

impl Screen {
    /// `chat --profile PROFILE` with no command, in a shell that sizes the
    /// terminal first and prints its modes (`stty -a`) once the chat has
    /// ended, to check that the chat left them as they were.
    fn open(profile: &Path) -> Self {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!(
                "echo \"shell $$\"; stty rows {ROWS} cols {COLS} && \"$0\" --profile \"$1\"; echo \"chat exited with $?\"; stty -a"
            ))
            .arg(chat_binary())
            .arg(profile)
            .env("SOTTO_PASSPHRASE", PASSPHRASE)
            .env("TERM", "xterm-256color")
            .env_remove("SOTTO_RELAY_CA");
        let session =
            rexpect::session::spawn_command(command, Some(WAIT.as_millis() as u64)).unwrap();
        Self {
            session,
            parser: vt100::Parser::new(ROWS.try_into().unwrap(), COLS.try_into().unwrap(), 0),
            output: Vec::new(),
        }
    }

    /// Takes in what the interface wrote so far.
    fn pump(&mut self) {
        let mut bytes = Vec::new();
        while let Some(c) = self.session.try_read() {
            // The reader hands out each byte as a char of the same value.
            bytes.push(u8::try_from(u32::from(c)).unwrap());
        }
        self.parser.process(&bytes);
        self.output.extend_from_slice(&bytes);
    }

    fn contents(&self) -> String {
        self.parser.screen().contents()
    }

    /// The screen's rows, `width` columns from column `col`.
    fn rows(&self, col: u16, width: u16) -> Vec<String> {
        self.parser.screen().rows(col, width).collect()
    }

    /// Waits until the screen satisfies `check`; fails with the screen.
    fn wait_for(&mut self, what: &str, check: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.pump();
            if check(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {what}:\n{}",
                self.contents()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_for_text(&mut self, text: &str) {
        self.wait_for(&format!("{text:?}"), |s| s.contents().contains(text));
    }

    /// Keys, as the terminal sends them.
    fn keys(&mut self, keys: &str) {
        self.session.send(keys).unwrap();
        self.session.flush().unwrap();
    }

    /// The row of the conversation list that shows `name`.
    fn list_row(&self, name: &str) -> Option<String> {
        self.rows(0, 24)
            .into_iter()
            .find(|r| r.trim_start_matches(['│', '>', ' ']).starts_with(name))
    }

    /// The unread count the list shows for `name` (0 when none).
    fn unread(&self, name: &str) -> Option<u32> {
        let row = self.list_row(name)?;
        let row = row.trim_end_matches(['│', ' ']);
        let count = row.rsplit(' ').next()?;
        Some(count.parse().unwrap_or(0))
    }

    /// The input line's text.
    fn input_line(&self) -> String {
        let rows = self.rows(0, COLS);
        rows[usize::from(ROWS) - 4]
            .trim_matches(['│', ' '])
            .to_owned()
    }
}

#[test]
fn the_interface_sends_receives_marks_delivery_and_counts_unread() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, addr) = start_relay(dir.path());
    let (alice, alice_address) = profile(dir.path(), "alice", &addr);
    let (bob, bob_address) = profile(dir.path(), "bob", &addr);
    let (carol, carol_address) = profile(dir.path(), "carol", &addr);
    ok(chat(&alice, &["add", "bob", &bob_address]));
    ok(chat(&alice, &["add", "carol", &carol_address]));
    ok(chat(&bob, &["add", "alice", &alice_address]));
    ok(chat(&carol, &["add", "alice", &alice_address]));
    ok(chat(&alice, &["group", "create", "lunch", "bob", "carol"]));
    ok(chat(&carol, &["sync"]));
    // One message from Carol already in Alice's store before the
    // interface opens (counted from the history), one while it is open
    // (counted as it arrives).
    ok(chat(&carol, &["send", "alice", "lunch at noon?"]));
    let synced = ok(chat(&alice, &["sync"]));
    assert!(synced.contains("carol: lunch at noon?"), "{synced}");

    let mut screen = Screen::open(&alice);
    screen.wait_for("the relay connected", |s| {
        s.contents().contains(&format!("connected to {addr}"))
    });
    // The first conversation is open, Carol's waits with one unread.
    screen.wait_for("bob's conversation open", |s| {
        s.contents().contains(" bob ") && s.list_row("bob").is_some_and(|r| r.contains('>'))
    });
    assert_eq!(screen.unread("carol"), Some(1), "{}", screen.contents());
    assert_eq!(screen.unread("bob"), Some(0), "{}", screen.contents());
    assert_eq!(screen.unread("#lunch"), Some(0), "{}", screen.contents());

    // Alice types to Bob.
    screen.keys("hello bob, from the full screen\r");
    screen.wait_for_text("me: hello bob, from the full screen");
    assert_eq!(screen.input_line(), "", "{}", screen.contents());
    // Bob receives it (and confirms delivery to Alice's device).
    let synced = ok(chat(&bob, &["sync"]));
    assert!(
        synced.contains("alice: hello bob, from the full screen"),
        "{synced}"
    );
    screen.wait_for_text("me: hello bob, from the full screen  (delivered)");

    // Bob replies; it appears in the open conversation, read at once.
    ok(chat(&bob, &["send", "alice", "hi alice, seen it"]));
    screen.wait_for_text("bob: hi alice, seen it");
    assert_eq!(screen.unread("bob"), Some(0), "{}", screen.contents());

    // Carol writes again while Bob's conversation is open: her count
    // goes up.
    ok(chat(&carol, &["send", "alice", "or one?"]));
    screen.wait_for("carol's unread count at 2", |s| {
        s.unread("carol") == Some(2)
    });
    // And in the group.
    ok(chat(&carol, &["send", "#lunch", "who is in?"]));
    screen.wait_for("one unread in #lunch", |s| s.unread("#lunch") == Some(1));
    // The capture in docs/cli.md.
    println!("{}", screen.contents());

    // Tab opens Carol's conversation: her messages, nothing unread.
    screen.keys("\t");
    screen.wait_for("carol's conversation", |s| {
        s.contents().contains("carol: lunch at noon?") && s.contents().contains("carol: or one?")
    });
    assert_eq!(screen.unread("carol"), Some(0), "{}", screen.contents());

    // Editing: a typo fixed with Home, Right, Delete; a word added at End.
    screen.keys("nxoon");
    screen.keys("\x1b[H\x1b[C\x1b[3~"); // Home, Right, Delete
    screen.keys("\x1b[F works"); // End
    screen.wait_for("the edited line", |s| s.input_line() == "noon works");
    screen.keys("\x7f\x7f\x7f\x7f\x7fsuits me\r"); // Backspace ×5
    screen.wait_for_text("me: noon suits me");
    let synced = ok(chat(&carol, &["sync"]));
    assert!(synced.contains("alice: noon suits me"), "{synced}");
    // Up brings the line back; Ctrl-U clears it.
    screen.keys("\x1b[A");
    screen.wait_for("the earlier line", |s| s.input_line() == "noon suits me");
    screen.keys("\x15");
    screen.wait_for("an empty input line", |s| s.input_line().is_empty());

    // A longer conversation than one page of history.
    let mut lines = String::new();
    for i in 1..=60 {
        lines.push_str(&format!("line {i}\r"));
    }
    screen.keys(&lines);
    screen.wait_for_text("me: line 60  (");

    // Ctrl-N: the group, its message read, and Alice's answer reaches Bob.
    screen.keys("\x0e");
    screen.wait_for_text("carol: who is in?");
    assert_eq!(screen.unread("#lunch"), Some(0), "{}", screen.contents());
    screen.keys("me too\r");
    screen.wait_for_text("me: me too  (sent)");
    let synced = ok(chat(&bob, &["sync"]));
    assert!(synced.contains("#lunch alice: me too"), "{synced}");

    // Ctrl-P: back to Carol, opened again from the store with the newest
    // page; Page Up reads older pages until the first message.
    screen.keys("\x10");
    screen.wait_for_text("me: line 60  (");
    assert!(!screen.contents().contains("lunch at noon?"));
    for _ in 0..10 {
        screen.keys("\x1b[5~");
        screen.pump();
        if screen
            .contents()
            .contains("(beginning of the conversation)")
        {
            break;
        }
        screen.wait_for("older rows", |s| !s.contents().contains("me: line 60"));
    }
    screen.wait_for_text("(beginning of the conversation)");
    screen.wait_for_text("[1] carol: lunch at noon?");
    screen.wait_for_text(" newer below: PgDn ");
    // Page Down comes back to the newest.
    for _ in 0..10 {
        screen.keys("\x1b[6~");
    }
    screen.wait_for_text("me: line 60  (");
    screen.wait_for("no more below", |s| !s.contents().contains("newer below"));

    // Shift-Tab goes back to Bob, with the history from the store.
    screen.keys("\x1b[Z");
    screen.wait_for("bob's conversation again", |s| {
        s.contents()
            .contains("me: hello bob, from the full screen  (delivered)")
            && s.contents().contains("bob: hi alice, seen it")
    });

    // The relay goes away: the status line says so, a message waits in
    // the outbox (queued), and goes out when the relay is back.
    drop(relay);
    screen.wait_for_text("offline (");
    screen.keys("still there?\r");
    screen.wait_for_text("me: still there?  (queued)");
    let relay = start_relay_at(dir.path(), &addr).0;
    screen.wait_for_text(&format!("connected to {addr}"));
    screen.wait_for_text("me: still there?  (sent)");

    // The commands of the input line.
    screen.keys("/verify\r");
    screen.wait_for_text("| safety number with bob: ");
    screen.keys("/nope\r");
    screen.wait_for_text("| unknown command /nope");
    assert!(!screen.contents().contains("me: /nope"));

    // A relay that stops answering holds a send up (for its 30 s request
    // timeout), not the interface: Ctrl-C still ends it at once, and
    // leaves the terminal as it was.
    let stopped = Command::new("kill")
        .args(["-STOP", &relay.0.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    screen.keys("anyone?\r");
    screen.wait_for_text("| sending...");
    let quitting = Instant::now();
    screen.keys("\x03");
    screen.ends_with_the_terminal_restored();
    assert!(
        quitting.elapsed() < Duration::from_secs(10),
        "quitting took {:?}",
        quitting.elapsed()
    );
}

impl Screen {
    /// The process id of the chat, the shell's child.
    fn chat_pid(&mut self) -> u32 {
        self.wait_for("the shell's pid", |s| {
            String::from_utf8_lossy(&s.output).contains("shell ")
        });
        let output = String::from_utf8_lossy(&self.output).into_owned();
        let shell: u32 = output
            .split("shell ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|pid| pid.parse().ok())
            .unwrap();
        // `/proc/PID/stat`: "PID (COMM) STATE PPID ...".
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                let (_, after) = stat.rsplit_once(") ")?;
                let parent: u32 = after.split_whitespace().nth(1)?.parse().ok()?;
                (parent == shell && stat.contains("(chat)")).then_some(pid)
            })
            .next()
            .unwrap()
    }

    /// Waits for the end, then checks that the chat exited with 0 and gave
    /// the terminal back: the normal screen, the cursor shown, and raw mode
    /// off (line editing and signals on, as `stty -a` prints after it).
    fn ends_with_the_terminal_restored(mut self) {
        let rest = self.session.exp_eof().unwrap();
        let rest: Vec<u8> = rest.chars().map(|c| u32::from(c) as u8).collect();
        self.parser.process(&rest);
        self.output.extend_from_slice(&rest);
        let all = String::from_utf8_lossy(&self.output).into_owned();
        assert!(all.contains("chat exited with 0"), "{all}");
        assert!(
            !self.parser.screen().alternate_screen(),
            "still on the alternate screen"
        );
        assert!(!self.parser.screen().hide_cursor(), "the cursor is hidden");
        let modes: Vec<&str> = all
            .rsplit("chat exited with 0")
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        for mode in ["icanon", "isig", "icrnl", "opost"] {
            assert!(modes.contains(&mode), "{mode} is off: {modes:?}");
        }
    }
}

#[test]
fn without_a_relay_or_contacts_it_says_so_and_sigterm_restores_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let dana = dir.path().join("dana");
    ok(chat(&dana, &["init"]));
    let mut screen = Screen::open(&dana);
    screen.wait_for_text("no relay: run `chat register --relay ADDR`");
    screen.wait_for_text("no contacts yet");
    screen.keys("hello?\r");
    screen.wait_for_text("no conversation open");
    let pid = screen.chat_pid();
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    screen.ends_with_the_terminal_restored();
}

#[test]
fn without_a_terminal_the_interface_says_so_instead_of_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let alice = dir.path().join("alice");
    ok(chat(&alice, &["init"]));
    for args in [&[][..], &["tui"][..]] {
        let started = Instant::now();
        let out = chat(&alice, args);
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("error: the interface needs a terminal"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn files_go_with_send_and_save_and_the_timer_is_set_from_the_input_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, addr) = start_relay(dir.path());
    let (alice, alice_address) = profile(dir.path(), "alice", &addr);
    let (bob, bob_address) = profile(dir.path(), "bob", &addr);
    ok(chat(&alice, &["add", "bob", &bob_address]));
    ok(chat(&bob, &["add", "alice", &alice_address]));
    ok(chat(&alice, &["send", "bob", "a file follows"]));
    ok(chat(&bob, &["sync"]));
    let source = dir.path().join("notes.txt");
    let text: String = (0..20_000)
        .map(|i| format!("line {i} of the notes\n"))
        .collect();
    std::fs::write(&source, &text).unwrap();

    let mut screen = Screen::open(&alice);
    screen.wait_for_text("a file follows");
    screen.keys(&format!("/send {}\r", source.display()));
    screen.wait_for_text("file sent as #");
    screen.wait_for_text("[file: notes.txt");
    screen.keys("/timer 1h\r");
    screen.wait_for_text("] (you set messages to disappear 1h after they are read");
    screen.keys("\x11");
    screen.ends_with_the_terminal_restored();

    let synced = ok(chat(&bob, &["sync"]));
    assert!(
        synced.contains("Received the file of message #"),
        "{synced}"
    );
    let history = ok(chat(&bob, &["history", "alice"]));
    let line = history
        .lines()
        .find(|l| l.contains("[file: notes.txt"))
        .unwrap_or_else(|| panic!("{history}"));
    let seq: u64 = line[1..line.find(']').unwrap()].parse().unwrap();
    let saved = dir.path().join("saved.txt");
    let mut screen = Screen::open(&bob);
    screen.wait_for_text("[file: notes.txt");
    screen.wait_for_text("] (alice set messages to disappear 1h");
    screen.keys(&format!("/save {seq} {}\r", saved.display()));
    screen.wait_for_text("saved ");
    screen.keys("\x11");
    screen.ends_with_the_terminal_restored();
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), text);
}
