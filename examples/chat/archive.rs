//! `chat export FILE` and `chat import FILE`: the history as an encrypted
//! archive.

use std::process::ExitCode;
use std::sync::Arc;

use sotto::{Client, ClientOptions};

use crate::{CliResult, Command, open, passphrase};

/// `[#####...............] 25% 2500/10000 messages` on stderr, redrawn in
/// place.
pub(crate) fn draw_bar(done: u64, total: u64) {
    let fraction = if total == 0 {
        1.0
    } else {
        done.min(total) as f64 / total as f64
    };
    let percent = (fraction * 100.0) as usize;
    let filled = percent / 5;
    eprint!(
        "\r[{}{}] {percent:>3}% {done}/{total} messages",
        "#".repeat(filled),
        ".".repeat(20 - filled),
    );
}

/// `export FILE` and `import FILE`: the history as an encrypted archive,
/// with a progress bar on stderr.
pub(crate) async fn history_archive(
    profile: &std::path::Path,
    command: Command,
) -> CliResult<ExitCode> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let archive_passphrase = |confirm: bool| -> CliResult<zeroize::Zeroizing<String>> {
        let pass = match std::env::var("SOTTO_ARCHIVE_PASSPHRASE") {
            Ok(p) => zeroize::Zeroizing::new(p),
            Err(_) => {
                let ask = |prompt: &str| {
                    rpassword::prompt_password(prompt).map(zeroize::Zeroizing::new).map_err(|e| {
                        format!("cannot read the archive passphrase: {e} (set SOTTO_ARCHIVE_PASSPHRASE)")
                    })
                };
                let first = ask("Archive passphrase: ")?;
                if confirm && *first != *ask("Archive passphrase again: ")? {
                    return Err("the archive passphrases differ".into());
                }
                first
            }
        };
        if pass.is_empty() {
            return Err("the archive passphrase must not be empty".into());
        }
        Ok(pass)
    };
    // `[#####...............] 25% 2500/10000 messages`, redrawn in place.
    let drawn = Arc::new(AtomicBool::new(false));
    let bar = {
        let drawn = drawn.clone();
        let mut last = None;
        move |p: sotto::store::ArchiveProgress| {
            let percent = (p.fraction() * 100.0) as usize;
            if last == Some((percent, p.messages_done)) {
                return;
            }
            last = Some((percent, p.messages_done));
            draw_bar(p.messages_done, p.messages_total);
            drawn.store(true, Ordering::Relaxed);
        }
    };
    let end_bar = || {
        if drawn.load(Ordering::Relaxed) {
            eprintln!();
        }
    };
    match command {
        Command::Export { file } => {
            if file.exists() {
                return Err(format!(
                    "{} exists already; an export never replaces a file",
                    file.display()
                ));
            }
            let client = open(profile, None, true).await?;
            let pass = archive_passphrase(true)?;
            let exported = client.export_history(&file, pass.as_bytes(), bar).await;
            end_bar();
            let summary = exported.map_err(|e| e.to_string())?;
            println!(
                "Exported {} message(s) in {} conversation(s) and {} contact(s) to {} ({} bytes).",
                summary.messages,
                summary.conversations,
                summary.contacts,
                file.display(),
                summary.bytes
            );
            println!("Keep it as safe as the profile: its passphrase is all that protects it.");
            if !summary.is_complete() {
                return Err(format!(
                    "the store is damaged: {} message(s), {} conversation(s) and {} contact(s) could not be read and are not in the archive (run `check`)",
                    summary.unreadable_messages,
                    summary.unreadable_conversations,
                    summary.unreadable_contacts
                ));
            }
        }
        Command::Import { file } => {
            if profile.join(sotto::PROFILE_DB).exists() {
                return Err(format!(
                    "a profile exists already in {}; import into a new --profile folder",
                    profile.display()
                ));
            }
            if !file.is_file() {
                return Err(format!("no archive at {}", file.display()));
            }
            let archive_pass = archive_passphrase(false)?;
            if std::env::var_os("SOTTO_PASSPHRASE").is_none() {
                eprintln!("Choose a passphrase for the new profile.");
            }
            let pass = passphrase(true)?;
            let imported = Client::import_history(
                profile,
                &file,
                archive_pass.as_bytes(),
                pass.as_bytes(),
                ClientOptions::default(),
                bar,
            )
            .await;
            end_bar();
            let client = imported.map_err(|e| e.to_string())?;
            println!("Restored the profile in {}.", profile.display());
            println!("Your address: {}", client.address().shareable());
            println!(
                "Run `register --relay ADDR` next: the archive holds no session keys, so contacts' next messages start new sessions by themselves."
            );
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}
