//! `chat demo`: a scripted conversation on an embedded relay, then proof
//! that no plaintext reached the disk.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use sotto::relay::{BlobStorage, Server, ServerConfig, SqliteStore};
use sotto::{Client, ClientOptions, IncomingMessage, SendStatus};
use tokio_stream::{Stream, StreamExt};

use crate::CliResult;

const WAIT: Duration = Duration::from_secs(20);

struct Script {
    /// Every plaintext sent, to look for on disk afterwards.
    sent: Vec<String>,
}

impl Script {
    async fn send(
        &mut self,
        from: &Client,
        from_name: &str,
        to: &str,
        text: &str,
    ) -> CliResult<()> {
        let sent = from
            .send(to, text.as_bytes())
            .await
            .map_err(|e| format!("{from_name} could not send: {e}"))?;
        let note = match sent.status {
            SendStatus::Accepted => "",
            SendStatus::Queued => "  (queued)",
            _ => "  (not sent)",
        };
        println!("  {from_name:>5} -> {to:<5} {text}{note}");
        self.sent.push(text.to_owned());
        Ok(())
    }
}

async fn expect(
    incoming: &mut (impl Stream<Item = IncomingMessage> + Unpin),
    who: &str,
    text: &str,
) -> CliResult<()> {
    let message = tokio::time::timeout(WAIT, incoming.next())
        .await
        .map_err(|_| format!("{who} did not receive {text:?} in time"))?
        .ok_or_else(|| format!("{who}'s message stream ended"))?;
    let body = String::from_utf8_lossy(&message.body);
    if body != text {
        return Err(format!("{who} received {body:?}, expected {text:?}"));
    }
    println!("  {who:>5} <-       {body}   [stored as #{}]", message.seq);
    Ok(())
}

fn options(auto_receive: bool) -> ClientOptions {
    ClientOptions {
        auto_receive,
        reconnect_min: Duration::from_millis(50),
        ..ClientOptions::default()
    }
}

const ALICE_PASS: &[u8] = b"alice demo passphrase";
const BOB_PASS: &[u8] = b"bob demo passphrase";

pub(crate) async fn run(keep: Option<PathBuf>) -> CliResult<ExitCode> {
    let io = |e: std::io::Error| e.to_string();
    let s = |e: sotto::Error| e.to_string();
    let (temp, dir) = match keep {
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(io)?;
            if std::fs::read_dir(&dir).map_err(io)?.next().is_some() {
                return Err(format!("{} is not empty", dir.display()));
            }
            (None, dir)
        }
        None => {
            let t = tempfile::tempdir().map_err(io)?;
            let d = t.path().to_path_buf();
            (Some(t), d)
        }
    };

    println!("Sotto demo in {}", dir.display());
    let relay_db = dir.join("relay.db");
    let relay_store = SqliteStore::open(&relay_db).map_err(|e| e.to_string())?;
    let config = ServerConfig {
        blobs: BlobStorage::dir(dir.join("relay.db.blobs")).map_err(|e| e.to_string())?,
        ..ServerConfig::default()
    };
    let server = Server::bind("127.0.0.1:0", config, Arc::new(relay_store))
        .await
        .map_err(|e| e.to_string())?;
    let relay_addr = server.local_addr().to_string();
    let relay = server.spawn();
    println!(
        "Relay listening on {relay_addr} (SQLite queue {})",
        relay_db.display()
    );

    let alice = Client::create(dir.join("alice"), ALICE_PASS, options(true))
        .await
        .map_err(s)?;
    let bob = Client::create(dir.join("bob"), BOB_PASS, options(true))
        .await
        .map_err(s)?;
    alice.register(&relay_addr).await.map_err(s)?;
    bob.register(&relay_addr).await.map_err(s)?;
    alice.add_contact("bob", &bob.address()).await.map_err(s)?;
    bob.add_contact("alice", &alice.address())
        .await
        .map_err(s)?;
    println!("Alice is {}", alice.address().shareable());
    println!("Bob   is {}", bob.address().shareable());
    let mut alice_in = alice.incoming();
    let mut bob_in = bob.incoming();
    let mut script = Script { sent: Vec::new() };

    println!("\n1. First contact (X3DH from Bob's published prekeys), both online");
    script
        .send(
            &alice,
            "alice",
            "bob",
            "Hi Bob, it's Alice. Lunch tomorrow?",
        )
        .await?;
    expect(&mut bob_in, "bob", "Hi Bob, it's Alice. Lunch tomorrow?").await?;
    script
        .send(&bob, "bob", "alice", "Sure! The noodle place at noon?")
        .await?;
    expect(&mut alice_in, "alice", "Sure! The noodle place at noon?").await?;

    println!("\n2. Bob goes offline; Alice keeps writing; Bob catches up");
    bob.disconnect().await;
    let offline = [
        "Noon works.",
        "I'll book a table for two.",
        "Bring the book you promised me!",
    ];
    for text in offline {
        script.send(&alice, "alice", "bob", text).await?;
    }
    println!("  (bob reconnects)");
    bob.connect(&relay_addr).await.map_err(s)?;
    for text in offline {
        expect(&mut bob_in, "bob", text).await?;
    }

    println!(
        "\n3. Out-of-order delivery: Bob's device receives the next three in the order 3, 1, 2"
    );
    bob.disconnect().await;
    let reordered = [
        "First: the table is booked.",
        "Second: it's by the window.",
        "Third: see you there.",
    ];
    for text in reordered {
        script.send(&alice, "alice", "bob", text).await?;
    }
    {
        // A second handle on Bob's profile that receives by hand, as a
        // background task of an app might.
        let manual = Client::open(dir.join("bob"), BOB_PASS, options(false))
            .await
            .map_err(s)?;
        manual.connect(&relay_addr).await.map_err(s)?;
        let envelopes = manual.fetch_envelopes().await.map_err(s)?;
        if envelopes.len() != 3 {
            return Err(format!(
                "expected 3 waiting envelopes, found {}",
                envelopes.len()
            ));
        }
        let mut envelopes: Vec<Option<_>> = envelopes.into_iter().map(Some).collect();
        for index in [2usize, 0, 1] {
            let envelope = envelopes[index].take().ok_or("envelope delivered twice")?;
            let message = manual
                .receive_envelope(envelope)
                .await
                .map_err(s)?
                .ok_or("a new message was taken for a duplicate")?;
            let body = String::from_utf8_lossy(&message.body);
            if body != reordered[index] {
                return Err(format!("message {} decrypted to {body:?}", index + 1));
            }
            println!(
                "    bob <-       {body}   [delivered as #{}, stored as #{}]",
                index + 1,
                message.seq
            );
        }
        manual.disconnect().await;
    }
    bob.connect(&relay_addr).await.map_err(s)?;
    script
        .send(&bob, "bob", "alice", "Got all three. See you at noon!")
        .await?;
    expect(&mut alice_in, "alice", "Got all three. See you at noon!").await?;

    println!("\n4. Safety numbers (compare out of band)");
    let a = alice.safety_number("bob").await.map_err(s)?;
    let b = bob.safety_number("alice").await.map_err(s)?;
    println!("  alice sees {a}");
    println!("  bob   sees {b}");
    if a != b {
        return Err("the safety numbers differ".into());
    }
    alice.mark_verified("bob").await.map_err(s)?;
    bob.mark_verified("alice").await.map_err(s)?;
    println!("  they match; both marked verified");

    println!("\n5. Alice links her computer: it gets her history, then writes from it");
    let computer = link_computer(&alice, &dir, &relay_addr).await?;
    let mut alice_events = alice.events();
    script
        .send(&computer, "alice", "bob", "Writing from my computer now.")
        .await?;
    expect(&mut bob_in, "bob", "Writing from my computer now.").await?;
    let copy = tokio::time::timeout(WAIT, async {
        while let Some(event) = alice_events.next().await {
            if let sotto::ClientEvent::SentFromOtherDevice(m) = event {
                return Some(m);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or("the phone did not get the copy of the computer's message")?;
    println!(
        "  alice's phone <- her own message from the computer   [stored as #{}]",
        copy.seq
    );

    println!("\n6. A group: Alice starts #lunch with Bob and Carol, then removes Carol");
    let carol = Client::create(dir.join("carol"), CAROL_PASS, options(true))
        .await
        .map_err(s)?;
    carol.register(&relay_addr).await.map_err(s)?;
    for (who, name, other) in [
        (&alice, "carol", &carol),
        (&bob, "carol", &carol),
        (&carol, "alice", &alice),
        (&carol, "bob", &bob),
    ] {
        who.add_contact(name, &other.address()).await.map_err(s)?;
    }
    let mut bob_events = bob.events();
    let mut carol_events = carol.events();
    let mut computer_events = computer.events();
    alice
        .create_group("lunch", &["bob", "carol"])
        .await
        .map_err(s)?;
    println!("  alice created #lunch with bob and carol (signed by her account key)");
    let mut group_sent = Vec::new();
    let first = "Lunch crew: noon at the noodle place.";
    group_send(&alice, "alice", first, &mut group_sent).await?;
    for (who, events) in [
        ("bob", &mut bob_events),
        ("carol", &mut carol_events),
        ("alice's computer", &mut computer_events),
    ] {
        expect_group(events, who, first).await?;
    }
    let reply = "Count me in!";
    group_send(&carol, "carol", reply, &mut group_sent).await?;
    expect_group(&mut bob_events, "bob", reply).await?;
    alice
        .remove_from_group("lunch", &["carol"])
        .await
        .map_err(s)?;
    println!("  alice removed carol: every remaining device makes a new sender key");
    let after = "Carol can't come after all; just us two.";
    group_send(&alice, "alice", after, &mut group_sent).await?;
    expect_group(&mut bob_events, "bob", after).await?;
    let _ = carol.sync().await;
    let carol_has = carol.group_history("lunch", None, 100).await.map_err(s)?;
    if carol_has
        .iter()
        .any(|i| i.body.as_deref() == Ok(after.as_bytes()))
    {
        return Err("carol read a message sent after her removal".into());
    }
    println!(
        "  carol's history of #lunch: {} messages, none sent after her removal",
        carol_has.len()
    );
    carol.disconnect().await;
    drop(carol);

    println!("\n7. Transcript, from Alice's encrypted history");
    let history = alice.history("bob", None, 100).await.map_err(s)?;
    for item in history.iter().rev() {
        let who = if item.outgoing { "alice" } else { "bob" };
        let body = item
            .body
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_else(|e| format!("(unreadable: {e})"));
        println!("  #{:<2} {who:>5}: {body}", item.seq);
    }
    let bob_count = bob.history("alice", None, 100).await.map_err(s)?.len();
    let bob_address = bob.address().to_string();
    let on_computer = computer.history(&bob_address, None, 100).await.map_err(s)?;
    let n = script.sent.len();
    if history.len() != n || bob_count != n || on_computer.len() != n {
        return Err(format!(
            "expected {n} messages in each history: alice's phone has {}, her computer {}, bob {bob_count}",
            history.len(),
            on_computer.len()
        ));
    }
    println!("  (the same {n} messages, in the same order, on Alice's computer)");

    alice.disconnect().await;
    bob.disconnect().await;
    computer.disconnect().await;
    drop((alice, bob, computer, alice_in, bob_in));
    relay.shutdown().await;

    println!("\n8. Looking for the plaintexts on disk");
    script.sent.extend(group_sent);
    let files = files_to_scan(&dir);
    let mut found = Vec::new();
    let mut total = 0usize;
    for file in &files {
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        total += bytes.len();
        for text in &script.sent {
            for needle in needles(text) {
                if contains(&bytes, &needle) {
                    found.push(format!("{} contains {text:?}", file.display()));
                }
            }
        }
    }
    for file in &files {
        println!("  scanned {}", file.display());
    }
    let result = if found.is_empty() {
        println!(
            "No plaintext found: {} messages looked for in {} files ({total} bytes).",
            script.sent.len(),
            files.len()
        );
        ExitCode::SUCCESS
    } else {
        for f in &found {
            println!("  FOUND: {f}");
        }
        ExitCode::FAILURE
    };
    match temp {
        Some(t) => drop(t),
        None => println!("Files kept in {}", dir.display()),
    }
    Ok(result)
}

const COMPUTER_PASS: &[u8] = b"alice's computer demo passphrase";
const CAROL_PASS: &[u8] = b"carol demo passphrase";

/// Sends `text` to #lunch from `from` and keeps it for the scan.
async fn group_send(
    from: &Client,
    name: &str,
    text: &str,
    sent: &mut Vec<String>,
) -> CliResult<()> {
    from.send_to_group("lunch", text.as_bytes())
        .await
        .map_err(|e| format!("{name} could not send to #lunch: {e}"))?;
    println!("  {name:>5} -> #lunch {text}");
    sent.push(text.to_owned());
    Ok(())
}

/// Waits until `events` brings the group message `text`.
async fn expect_group(events: &mut sotto::Events, who: &str, text: &str) -> CliResult<()> {
    let got = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            if let sotto::ClientEvent::GroupMessage(m) = event
                && m.body == text.as_bytes()
            {
                return Some(m.seq);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| format!("{who} did not receive {text:?} in #lunch in time"))?;
    println!("  {who:>5} <- #lunch {text}   [stored as #{got}]");
    Ok(())
}

/// Links a new profile, Alice's computer, to her account, sends it her
/// history and returns it, open as her account's device.
async fn link_computer(alice: &Client, dir: &Path, relay_addr: &str) -> CliResult<Client> {
    let s = |e: sotto::Error| e.to_string();
    let path = dir.join("alice-computer");
    let computer = Client::create(&path, COMPUTER_PASS, options(true))
        .await
        .map_err(s)?;
    computer.register(relay_addr).await.map_err(s)?;
    let code = computer.start_linking().await.map_err(s)?;
    println!("  the computer shows its link code: {code}");
    let waiting = {
        let computer = computer.clone();
        tokio::spawn(async move { computer.wait_for_link(WAIT).await })
    };
    let linked = alice.link_device(&code, WAIT).await.map_err(s)?;
    waiting.await.map_err(|e| e.to_string())?.map_err(s)?;
    println!(
        "  alice's phone linked it as device {} (device list version {})",
        linked.id, linked.version
    );
    computer.disconnect().await;
    drop(computer);
    let computer = Client::open(&path, COMPUTER_PASS, options(true))
        .await
        .map_err(s)?;
    let mut events = computer.events();
    computer.connect(relay_addr).await.map_err(s)?;
    alice.send_history().await.map_err(s)?;
    let done = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            if let sotto::ClientEvent::HistoryTransfer(t) = event
                && t.complete
            {
                return Some(t);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or("the computer did not get the history in time")?;
    println!(
        "  the computer received the history, end to end encrypted: {} messages",
        done.messages_total
    );
    Ok(computer)
}

/// The relay's database and every profile, with their WAL and SHM files.
fn files_to_scan(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for base in [
        dir.join("relay.db"),
        dir.join("alice").join(sotto::PROFILE_DB),
        dir.join("alice-computer").join(sotto::PROFILE_DB),
        dir.join("bob").join(sotto::PROFILE_DB),
        dir.join("carol").join(sotto::PROFILE_DB),
    ] {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = base.clone().into_os_string();
            name.push(suffix);
            let path = PathBuf::from(name);
            if path.exists() {
                files.push(path);
            }
        }
    }
    // A history transfer's file, had it been left behind.
    let transfer = dir.join("alice").join("history-out.sotto");
    if transfer.exists() {
        files.push(transfer);
    }
    files
}

/// The text as UTF-8 and as UTF-16 (both byte orders), and a distinctive
/// fragment of it, so a partial or re-encoded copy is found too.
fn needles(text: &str) -> Vec<Vec<u8>> {
    let mut out = vec![text.as_bytes().to_vec()];
    out.push(text.encode_utf16().flat_map(u16::to_le_bytes).collect());
    out.push(text.encode_utf16().flat_map(u16::to_be_bytes).collect());
    if text.len() > 12 {
        out.push(text.as_bytes()[..12].to_vec());
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
