//! The Sotto CLI chat.
//!
//! ```text
//! cargo run --release --example chat                  # the full-screen interface
//! cargo run --release --example chat -- demo
//! cargo run --release --example chat -- relay --listen 127.0.0.1:7447 --db relay.db
//! cargo run --release --example chat -- --profile alice init
//! cargo run --release --example chat -- --profile alice register --relay 127.0.0.1:7447
//! cargo run --release --example chat -- --profile alice --relay-ca ca.pem register --relay tls://relay.example:7447
//! cargo run --release --example chat -- --profile alice talk bob
//! cargo run --release --example chat -- --profile laptop link --relay 127.0.0.1:7447
//! cargo run --release --example chat -- --profile alice link sotto-link:...
//! cargo run --release --example chat -- --profile alice group create friends bob carol
//! cargo run --release --example chat -- --profile alice talk '#friends'
//! ```
//! See `docs/cli.md`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "chat/archive.rs"]
mod archive;
#[path = "chat/demo.rs"]
mod demo;
#[path = "chat/files.rs"]
mod files;
#[path = "chat/group.rs"]
mod group;
#[path = "chat/link.rs"]
mod link;
#[path = "chat/relay.rs"]
mod relay;
#[path = "chat/talk.rs"]
mod talk;
#[path = "chat/tui.rs"]
mod tui;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sotto::store::DeliveryState;
use sotto::{
    Address, Client, ClientOptions, ConversationEvent, HistoryItem, RelayTrust, SendStatus,
};
use tokio_stream::StreamExt;

#[derive(Parser)]
#[command(
    name = "chat",
    about = "Sotto: end-to-end encrypted chat whose history stays on your device"
)]
struct Cli {
    /// Profile directory (holds the encrypted store).
    #[arg(
        long,
        global = true,
        env = "SOTTO_PROFILE",
        default_value = "sotto-profile"
    )]
    profile: PathBuf,
    /// PEM certificates (a private CA or the relay's own certificate) that
    /// a tls:// relay must chain to, instead of the system's trust store.
    #[arg(long, global = true, env = "SOTTO_RELAY_CA", value_name = "PEM")]
    relay_ca: Option<PathBuf>,
    /// Without a command: the full-screen interface (`tui`).
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a relay server until Ctrl-C.
    Relay {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7447")]
        listen: String,
        /// SQLite file for the queues and prekeys (created if missing).
        #[arg(long)]
        db: PathBuf,
        /// Serve TLS with this PEM certificate chain (leaf first); needs
        /// --tls-key.
        #[arg(long, value_name = "PEM", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Create a new profile (a new identity) in --profile.
    Init,
    /// Publish this profile's keys on a relay and remember the relay.
    Register {
        /// Relay address: host:port (plain TCP) or tls://host:port.
        #[arg(long)]
        relay: String,
    },
    /// Print this profile's address.
    Whoami,
    /// Add a contact by name and address.
    Add {
        /// A name of your choice.
        name: String,
        /// Their address (`sotto:...`, from their `whoami`).
        address: String,
    },
    /// List contacts.
    Contacts,
    /// List this account's devices (its signed device list).
    Devices,
    /// Link devices to one account. On a new device (a new --profile, made
    /// here with --relay): show a link code and wait. On the device that
    /// holds the account: `link CODE` links the device showing CODE.
    Link {
        /// The code the new device shows (on the account's device).
        code: Option<String>,
        /// On a new device: the relay the account uses (registers there).
        #[arg(long)]
        relay: Option<String>,
        /// On the account's device: do not send the history to the new
        /// device.
        #[arg(long)]
        no_history: bool,
    },
    /// Remove a device from this account (on the device that holds the
    /// account): it gets nothing new from then on.
    Unlink {
        /// The device's id (see `devices`).
        device: u32,
    },
    /// Check the profile's store for damage (SQLite's integrity check and
    /// the store's own: every row readable, no message missing).
    Check,
    /// Send one message (to a contact, or to `#GROUP`).
    Send {
        /// Contact name or address, or `#GROUP`.
        name: String,
        /// The message.
        text: String,
    },
    /// Send a file (encrypted on this device, stored on the relay until
    /// the contact fetched it).
    SendFile {
        /// Contact name or address.
        name: String,
        /// The file.
        path: PathBuf,
    },
    /// Write the file of a message (see `history`) to PATH.
    Save {
        /// Contact name or address.
        name: String,
        /// The message's number in `history`.
        seq: u64,
        /// Where to write it (a new file).
        path: PathBuf,
    },
    /// Fetch waiting messages (and files) and print them.
    Sync,
    /// Show the conversation with a contact (or `#GROUP`), newest last.
    History {
        /// Contact name or address, or `#GROUP`.
        name: String,
        /// How many messages.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Set the disappearing messages timer of the conversation with a
    /// contact (both sides delete a message that long after it was read
    /// or sent), or show it without DURATION.
    Timer {
        /// Contact name or address.
        name: String,
        /// How long messages stay: `30s`, `5m`, `1h`, `7d`, or `off`.
        duration: Option<String>,
    },
    /// Show the safety number with a contact; --confirm marks it verified.
    Verify {
        /// Contact name or address.
        name: String,
        /// You compared the number with your contact and it matched.
        #[arg(long)]
        confirm: bool,
    },
    /// Tell a contact that this profile is your new identity, replacing
    /// the address you had before (a new phone, a lost profile).
    Announce {
        /// Contact name or address.
        name: String,
        /// Your previous address.
        #[arg(long)]
        previous: String,
    },
    /// List identity changes waiting for your decision: someone who says
    /// they are one of your contacts under a new address.
    Changes,
    /// Accept an identity change after comparing the new safety number with
    /// the contact: the contact's name moves to the new address.
    AcceptChange {
        /// The new address.
        address: String,
    },
    /// Refuse an identity change: the contact keeps its identity.
    RefuseChange {
        /// The new address.
        address: String,
    },
    /// The full-screen interface (also what `chat` alone opens):
    /// conversations, history, delivery marks, the connection state.
    Tui,
    /// Interactive chat: type to send, incoming messages appear as they
    /// arrive. `#NAME` talks in a group.
    Talk {
        /// Contact name or address, or `#GROUP`.
        name: String,
    },
    /// Group chats: create, add, remove, leave, rename, members.
    Group {
        #[command(subcommand)]
        command: group::GroupCommand,
    },
    /// List your groups and their members.
    Groups,
    /// Write this profile's identity, contacts and whole history to a new
    /// encrypted archive (a backup, or to move to a new device).
    Export {
        /// The archive to write; an existing file is never replaced.
        file: PathBuf,
    },
    /// Create a profile in --profile (a new folder) from an archive made by
    /// `export`; then `register` again.
    Import {
        /// The archive to read.
        file: PathBuf,
    },
    /// A scripted conversation on an embedded relay, then a scan of every
    /// file for the plaintexts.
    Demo {
        /// Keep the relay database and both profiles in this directory.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
}

/// A user-facing failure: one line, non-zero exit.
type CliResult<T> = Result<T, String>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> CliResult<ExitCode> {
    let command = cli.command.unwrap_or(Command::Tui);
    if let Command::Tui = command {
        // Before the passphrase is asked for: without a terminal there is
        // nothing to draw on.
        tui::need_terminal()?;
    }
    match command {
        Command::Relay {
            listen,
            db,
            tls_cert,
            tls_key,
        } => relay::relay(&listen, &db, tls_cert.zip(tls_key)).await,
        Command::Init => init(&cli.profile).await,
        Command::Link {
            code: None, relay, ..
        } => link::show_code(&cli.profile, cli.relay_ca.as_deref(), relay).await,
        Command::Demo { keep } => demo::run(keep).await,
        command @ (Command::Export { .. } | Command::Import { .. }) => {
            archive::history_archive(&cli.profile, command).await
        }
        command => {
            // `sync` receives itself, so that it can report what failed.
            let auto_receive = !matches!(command, Command::Sync);
            let client = open(&cli.profile, cli.relay_ca.as_deref(), auto_receive).await?;
            profile_command(&client, command).await?;
            client.disconnect().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn passphrase(confirm: bool) -> CliResult<zeroize::Zeroizing<String>> {
    if let Ok(p) = std::env::var("SOTTO_PASSPHRASE") {
        // The same rule as at the prompt.
        if p.is_empty() {
            return Err(
                "the passphrase must not be empty (SOTTO_PASSPHRASE is set but empty)".into(),
            );
        }
        return Ok(zeroize::Zeroizing::new(p));
    }
    let first = zeroize::Zeroizing::new(
        rpassword::prompt_password("Passphrase: ")
            .map_err(|e| format!("cannot read the passphrase: {e} (set SOTTO_PASSPHRASE)"))?,
    );
    if confirm {
        let again = zeroize::Zeroizing::new(
            rpassword::prompt_password("Passphrase again: ")
                .map_err(|e| format!("cannot read the passphrase: {e}"))?,
        );
        if *first != *again {
            return Err("the passphrases differ".into());
        }
    }
    if first.is_empty() {
        return Err("the passphrase must not be empty".into());
    }
    Ok(first)
}

async fn init(profile: &std::path::Path) -> CliResult<ExitCode> {
    if profile.join(sotto::PROFILE_DB).exists() {
        return Err(format!("a profile exists already in {}", profile.display()));
    }
    let pass = passphrase(true)?;
    let client = Client::create(profile, pass.as_bytes(), ClientOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    println!("Created a profile in {}", profile.display());
    println!("Your address: {}", client.address().shareable());
    Ok(ExitCode::SUCCESS)
}

async fn open(
    profile: &std::path::Path,
    relay_ca: Option<&std::path::Path>,
    auto_receive: bool,
) -> CliResult<Client> {
    // Before asking for the passphrase: there may be nothing to open.
    if !profile.join(sotto::PROFILE_DB).exists() {
        return Err(format!(
            "no profile in {} (create one with `init`, or pass --profile DIR)",
            profile.display()
        ));
    }
    let mut options = ClientOptions {
        auto_receive,
        ..ClientOptions::default()
    };
    if let Some(path) = relay_ca {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read the relay CA file {}: {e}", path.display()))?;
        options.relay_trust = RelayTrust::PinnedPem(pem);
    }
    let pass = passphrase(false)?;
    Client::open(profile, pass.as_bytes(), options)
        .await
        .map_err(|e| e.to_string())
}

async fn connect(client: &Client) -> CliResult<()> {
    let relay = client
        .saved_relay()
        .ok_or("no relay known for this profile: run `register --relay ADDR` first")?;
    client
        .connect(&relay)
        .await
        .map_err(|e| format!("cannot reach the relay at {relay}: {e}"))
}

async fn profile_command(client: &Client, command: Command) -> CliResult<()> {
    let s = |e: sotto::Error| e.to_string();
    match command {
        Command::Register { relay } => {
            client
                .register(&relay)
                .await
                .map_err(|e| format!("cannot register with the relay at {relay}: {e}"))?;
            let relay = client.saved_relay().unwrap_or(relay);
            println!("Registered with {relay}.");
            println!("Your address: {}", client.address().shareable());
        }
        Command::Whoami => println!("{}", client.address().shareable()),
        Command::Devices => {
            // Connecting takes the account's newest list first; offline,
            // the list held here is shown.
            let _ = connect(client).await;
            let devices = client.devices().await.map_err(s)?;
            let me = client.address();
            println!(
                "Devices of {me} (device list version {}):",
                devices.version()
            );
            for device in devices.devices() {
                let mut notes = Vec::new();
                if device.id == client.device_id() {
                    notes.push("this device");
                }
                if Address::of(&device.identity) == me {
                    notes.push("holds the account key");
                }
                let notes = if notes.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", notes.join(", "))
                };
                println!("  {}  {}{notes}", device.id, Address::of(&device.identity));
            }
        }
        Command::Add { name, address } => {
            let address: Address = address.parse().map_err(|e| format!("{e}"))?;
            client.add_contact(&name, &address).await.map_err(s)?;
            println!("Added {name}.");
        }
        Command::Contacts => {
            let mut unreadable = 0;
            for c in client.contacts().await.map_err(s)? {
                let Ok(c) = c else {
                    unreadable += 1;
                    continue;
                };
                let name = if c.name.is_empty() {
                    "(unnamed)"
                } else {
                    &c.name
                };
                let mark = if c.verified { " [verified]" } else { "" };
                println!("{name}{mark}  {}", c.address);
            }
            damaged(unreadable, "contact")?;
        }
        Command::Check => {
            let report = client.check().await.map_err(s)?;
            for problem in &report.problems {
                println!("problem: {problem}");
            }
            println!(
                "checked {} contact(s), {} conversation(s), {} message(s): {}",
                report.contacts,
                report.conversations,
                report.messages,
                if report.is_ok() {
                    "no problem found".to_owned()
                } else {
                    format!("{} problem(s)", report.problems.len())
                }
            );
            if !report.is_ok() {
                return Err(
                    "the store is damaged; restore it from a backup if you have one".into(),
                );
            }
        }
        Command::Send { name, text } if group::group_name(&name).is_some() => {
            group::send(client, group::group_name(&name).unwrap_or_default(), &text).await?
        }
        Command::Send { name, text } => {
            // Offline first: without the relay, a message to someone we
            // already talk to is stored and goes out on the next connection.
            let offline = connect(client).await.err();
            let sent = client.send(&name, text.as_bytes()).await.map_err(s)?;
            match (sent.status, offline) {
                (SendStatus::Accepted, _) => println!("Sent."),
                (SendStatus::Queued, Some(why)) => println!(
                    "Stored; {why}. It goes out on the next connection (any command that connects, e.g. `sync`)."
                ),
                (SendStatus::Queued, None) => println!(
                    "Stored; the relay did not take it yet, it goes out on the next connection."
                ),
                (SendStatus::Failed(reason), _) => {
                    return Err(format!("the relay refused the message for good: {reason}"));
                }
                (status, _) => println!("Stored ({status:?})."),
            }
        }
        Command::Sync => {
            let mut incoming = client.incoming();
            let mut events = client.events();
            connect(client).await?;
            let result = client.sync().await;
            // Files the messages carry, fetched now (also those left by an
            // earlier run).
            let files = if result.is_ok() {
                client.transfer_files().await.map(|_| ())
            } else {
                Ok(())
            };
            let mut file_lines = Vec::new();
            while let Ok(Some(event)) =
                tokio::time::timeout(std::time::Duration::from_millis(50), events.next()).await
            {
                match event {
                    sotto::ClientEvent::GroupMessage(m) => {
                        let who = group::member_names(client, &[m.from]).await.remove(0);
                        println!(
                            "#{} {who}: {}",
                            m.group_name,
                            String::from_utf8_lossy(&m.body)
                        );
                    }
                    sotto::ClientEvent::FileReceived { contact, seq } => file_lines.push(format!(
                        "Received the file of message #{seq} from {contact}."
                    )),
                    sotto::ClientEvent::FileFailed {
                        contact,
                        seq,
                        reason,
                    } => file_lines.push(format!(
                        "The file of message #{seq} from {contact} did not arrive: {reason}."
                    )),
                    _ => {}
                }
            }
            // What was stored is shown even when part of the mailbox could
            // not be (it stays on the relay, and the error says why).
            while let Ok(Some(m)) =
                tokio::time::timeout(std::time::Duration::from_millis(50), incoming.next()).await
            {
                println!(
                    "{}: {}",
                    display_name(&m.name, &m.contact),
                    message_text(&m)
                );
            }
            for line in file_lines {
                println!("{line}");
            }
            let count = result.map_err(s)?;
            println!("{count} new message(s).");
            files.map_err(s)?;
        }
        Command::SendFile { name, path } => files::send_file(client, &name, &path).await?,
        Command::Save { name, seq, path } => files::save(client, &name, seq, &path).await?,
        Command::History { name, limit } if group::group_name(&name).is_some() => {
            group::history(client, group::group_name(&name).unwrap_or_default(), limit).await?
        }
        Command::History { name, limit } => {
            let items = client.history(&name, None, limit).await.map_err(s)?;
            print_history(&name, &items);
            damaged(items.iter().filter(|i| i.body.is_err()).count(), "message")?;
        }
        Command::Timer { name, duration } => match duration {
            None => match client.disappearing_timer(&name).await.map_err(s)? {
                Some(timer) => println!(
                    "Messages with {name} disappear {} after they are read or sent.",
                    format_duration(timer)
                ),
                None => println!("Messages with {name} do not disappear."),
            },
            Some(text) => {
                let timer = parse_duration(&text)?;
                let offline = connect(client).await.err();
                client
                    .set_disappearing_timer(&name, timer)
                    .await
                    .map_err(s)?;
                println!("{}.", timer_note("you", timer));
                if let Some(why) = offline {
                    println!("Stored; {why}. {name} is told on the next connection.");
                }
            }
        },
        Command::Verify { name, confirm } => {
            let number = client.safety_number(&name).await.map_err(s)?;
            println!("Safety number with {name}:");
            println!("  {number}");
            if confirm {
                client.mark_verified(&name).await.map_err(s)?;
                println!("Marked {name} as verified.");
            } else if client.is_verified(&name).await.map_err(s)? {
                println!("{name} is verified.");
            } else {
                println!(
                    "Compare it with {name} in person or on a call; if it matches, run `verify {name} --confirm`."
                );
            }
        }
        Command::Announce { name, previous } => {
            let previous: Address = previous.parse().map_err(|e| format!("{e}"))?;
            connect(client).await?;
            client
                .announce_identity_change(&name, &previous)
                .await
                .map_err(s)?;
            println!(
                "Told {name} that you were {previous}; they will be asked to compare safety numbers."
            );
        }
        Command::Changes => {
            let _ = connect(client).await;
            let changes = client.identity_changes().await.map_err(s)?;
            if changes.is_empty() {
                println!("No identity change waiting.");
            }
            for change in changes {
                print_identity_change(&change);
            }
        }
        Command::AcceptChange { address } => {
            let address: Address = address.parse().map_err(|e| format!("{e}"))?;
            client.accept_identity_change(&address).await.map_err(s)?;
            println!("Accepted: the contact is now {address} (not verified yet).");
        }
        Command::RefuseChange { address } => {
            let address: Address = address.parse().map_err(|e| format!("{e}"))?;
            client.refuse_identity_change(&address).await.map_err(s)?;
            println!("Refused: nothing changed.");
        }
        Command::Tui => tui::run(client).await?,
        Command::Talk { name } => match group::group_name(&name) {
            Some(group) => group::talk(client, group).await?,
            None => talk::talk(client, &name).await?,
        },
        Command::Group { command } => group::group(client, command).await?,
        Command::Groups => group::list(client).await?,
        Command::Link {
            code: Some(code),
            no_history,
            ..
        } => link::accept_code(client, &code, !no_history).await?,
        Command::Unlink { device } => link::unlink(client, device).await?,
        Command::Relay { .. }
        | Command::Link { code: None, .. }
        | Command::Init
        | Command::Demo { .. }
        | Command::Export { .. }
        | Command::Import { .. } => {}
    }
    Ok(())
}

fn display_name(name: &str, address: &Address) -> String {
    if name.is_empty() {
        address.to_string()
    } else {
        name.to_owned()
    }
}

fn print_identity_change(change: &sotto::IdentityChange) {
    println!(
        "{} says they are {} under a new address.",
        change.new_address, change.name
    );
    println!("  old safety number: {}", change.old_safety_number);
    println!("  new safety number: {}", change.new_safety_number);
    println!(
        "  Compare the new number with {} in person or on a call, then `accept-change {}` or `refuse-change {}`.",
        change.name, change.new_address, change.new_address
    );
}

/// An error when `count` rows could not be read: the listing above them is
/// not whole, and the exit status must say so.
fn damaged(count: usize, what: &str) -> CliResult<()> {
    if count == 0 {
        return Ok(());
    }
    Err(format!(
        "{count} {what}(s) could not be read: the store is damaged (run `check`)"
    ))
}

/// A received message as one line of text: its body, or its file.
pub(crate) fn message_text(m: &sotto::IncomingMessage) -> String {
    match &m.attachment {
        Some(attachment) => files::describe(attachment),
        None => String::from_utf8_lossy(&m.body).into_owned(),
    }
}

/// Who changed a timer, as a history line names them.
fn who_set(ours: bool, name: &str) -> &str {
    if ours { "you" } else { name }
}

/// A timer change as one line: "alice set messages to disappear after 1h".
pub(crate) fn timer_note(who: &str, timer: Option<Duration>) -> String {
    match timer {
        Some(t) => format!(
            "{who} set messages to disappear {} after they are read or sent",
            format_duration(t)
        ),
        None => format!("{who} turned disappearing messages off"),
    }
}

/// `30s`, `5m`, `2h`, `7d` (the largest unit that divides it), or seconds.
fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s >= len && s.is_multiple_of(len) {
            return format!("{}{unit}", s / len);
        }
    }
    format!("{s}s")
}

/// `off`, or a number with a unit: `s`, `m`, `h`, `d`.
pub(crate) fn parse_duration(text: &str) -> CliResult<Option<Duration>> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad = || format!("not a duration: {text:?} (examples: 30s, 5m, 1h, 7d, off)");
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let len = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let seconds = n
        .checked_mul(len)
        .filter(|&s| s > 0 && s <= u64::from(u32::MAX))
        .ok_or_else(bad)?;
    Ok(Some(Duration::from_secs(seconds)))
}

fn print_history(name: &str, items: &[HistoryItem]) {
    if items.is_empty() {
        println!("No messages with {name} yet.");
    }
    for item in items.iter().rev() {
        let who = if item.outgoing { "me" } else { name };
        let note = match item.state {
            Some(DeliveryState::Failed(reason)) => format!("  (not sent: {reason})"),
            _ => String::new(),
        };
        if let Some(ConversationEvent::TimerChanged { seconds }) = item.event {
            let timer = (seconds > 0).then(|| Duration::from_secs(u64::from(seconds)));
            println!(
                "[{}] ({})",
                item.seq,
                timer_note(who_set(item.outgoing, name), timer)
            );
            continue;
        }
        if let Some(attachment) = &item.attachment {
            println!(
                "[{}] {who}: {}{note}",
                item.seq,
                files::describe(attachment)
            );
            continue;
        }
        match &item.body {
            Ok(body) => println!(
                "[{}] {who}: {}{note}",
                item.seq,
                String::from_utf8_lossy(body)
            ),
            Err(e) => println!("[{}] (unreadable: {e})", item.seq),
        }
    }
}
