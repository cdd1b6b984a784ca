//! Files: `send-file`, `save`, and what `sync` fetches.

use std::path::Path;
use std::time::Duration;

use sotto::{Client, ClientEvent, Error, Step};

use crate::{CliResult, connect};

fn s(e: Error) -> String {
    e.to_string()
}

/// How long `send-file` waits for the next sign of progress.
const PROGRESS_WAIT: Duration = Duration::from_secs(60);

/// `chat send-file NAME PATH`: encrypts the file into the profile, then
/// waits (with a progress bar) until it is on the relay and its message
/// went out; offline, it waits in the profile for the next connection.
pub(crate) async fn send_file(client: &Client, name: &str, path: &Path) -> CliResult<()> {
    let mut events = client.events();
    let offline = connect(client).await.err();
    client.send_file(name, path).await.map_err(s)?;
    if let Some(why) = offline {
        println!(
            "Encrypted and stored; {why}. It is sent on the next connection (any command that connects, e.g. `sync`)."
        );
        return Ok(());
    }
    let mut drawn = false;
    loop {
        let event = match tokio::time::timeout(PROGRESS_WAIT, events.next()).await {
            Ok(Some(event)) => event,
            _ => {
                if drawn {
                    eprintln!();
                }
                println!(
                    "The relay stopped taking the file; the rest is sent on the next connection."
                );
                return Ok(());
            }
        };
        match event {
            ClientEvent::FileProgress {
                outgoing: true,
                done,
                total,
                ..
            } => {
                crate::archive::draw_bar(done, total);
                drawn = true;
            }
            ClientEvent::FileSent { seq, .. } => {
                if drawn {
                    eprintln!();
                }
                println!("Sent the file as message #{seq}.");
                return Ok(());
            }
            ClientEvent::Error {
                step: Step::Files,
                error,
            } => {
                if drawn {
                    eprintln!();
                }
                return Err(format!("the file could not be sent: {error}"));
            }
            _ => {}
        }
    }
}

/// `chat save NAME SEQ PATH`: the file of message SEQ, decrypted into
/// PATH; fetched first if it is not here yet.
pub(crate) async fn save(client: &Client, name: &str, seq: u64, dest: &Path) -> CliResult<()> {
    if dest.exists() {
        return Err(format!("{} exists already", dest.display()));
    }
    let len = match client.save_attachment(name, seq, dest).await {
        Err(Error::AttachmentNotHere(_)) => {
            connect(client).await?;
            client.sync().await.map_err(s)?;
            client.transfer_files().await.map_err(s)?;
            client.save_attachment(name, seq, dest).await.map_err(s)?
        }
        other => other.map_err(s)?,
    };
    println!("Saved {len} bytes to {}.", dest.display());
    Ok(())
}

/// One line for a file in a history: `[file: NAME, SIZE, TYPE]`.
pub(crate) fn describe(attachment: &sotto::Attachment) -> String {
    let here = if attachment.here {
        ""
    } else {
        ", not downloaded yet"
    };
    format!(
        "[file: {}, {}, {}{here}]",
        attachment.name,
        size(attachment.len),
        attachment.media_type
    )
}

/// A byte count as people read it.
pub(crate) fn size(len: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if len < 1024 {
        return format!("{len} B");
    }
    let mut value = len as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
