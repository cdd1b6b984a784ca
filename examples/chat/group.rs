//! `chat group …`, `chat groups`, and `chat talk #NAME`: group chats
//! (docs/groups.md).

use std::io::Write;

use clap::Subcommand;
use sotto::{Client, ClientEvent, GroupHistoryItem, SendStatus};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{CliResult, connect};

#[derive(Subcommand)]
pub(crate) enum GroupCommand {
    /// Create a group with contacts (by name or address).
    Create {
        /// The group's name.
        name: String,
        /// Its members (contacts), besides you.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Add contacts to a group.
    Add {
        /// The group's name (or id).
        group: String,
        /// Contacts to add.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Remove members from a group: they read nothing sent afterwards.
    Remove {
        /// The group's name (or id).
        group: String,
        /// Members to remove.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Leave a group.
    Leave {
        /// The group's name (or id).
        group: String,
    },
    /// Rename a group.
    Rename {
        /// The group's name (or id).
        group: String,
        /// Its new name.
        name: String,
    },
    /// Show a group's members.
    Members {
        /// The group's name (or id).
        group: String,
    },
}

/// A group named on the command line: `#NAME` or `NAME`.
pub(crate) fn group_name(arg: &str) -> Option<&str> {
    arg.strip_prefix('#')
}

pub(crate) async fn group(client: &Client, command: GroupCommand) -> CliResult<()> {
    let s = |e: sotto::Error| e.to_string();
    connect(client).await?;
    let _ = client.sync().await;
    match command {
        GroupCommand::Create { name, members } => {
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            client.create_group(&name, &members).await.map_err(s)?;
            println!(
                "Created #{name} with {}. Talk with `talk #{name}`.",
                members.join(", ")
            );
        }
        GroupCommand::Add { group, members } => {
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            client.add_to_group(&group, &members).await.map_err(s)?;
            println!("Added {} to #{group}.", members.join(", "));
        }
        GroupCommand::Remove { group, members } => {
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            client
                .remove_from_group(&group, &members)
                .await
                .map_err(s)?;
            println!(
                "Removed {} from #{group}: they read nothing sent from now on.",
                members.join(", ")
            );
        }
        GroupCommand::Leave { group } => {
            client.leave_group(&group).await.map_err(s)?;
            println!("You left #{group}.");
        }
        GroupCommand::Rename { group, name } => {
            client.rename_group(&group, &name).await.map_err(s)?;
            println!("Renamed #{group} to #{name}.");
        }
        GroupCommand::Members { group } => {
            let info = client.group(&group).await.map_err(s)?;
            let names = member_names(client, &info.members).await;
            println!("#{} ({} members):", info.name, names.len());
            for name in names {
                println!("  {name}");
            }
        }
    }
    Ok(())
}

/// `chat groups`: every group, with its members.
pub(crate) async fn list(client: &Client) -> CliResult<()> {
    let _ = connect(client).await;
    let _ = client.sync().await;
    let groups = client.groups().await.map_err(|e| e.to_string())?;
    if groups.is_empty() {
        println!("No groups yet (`group create NAME MEMBER…`).");
    }
    for g in groups {
        let names = member_names(client, &g.members).await;
        let left = if g.left { "  (you left)" } else { "" };
        println!("#{}  {}{left}", g.name, names.join(", "));
    }
    Ok(())
}

/// The members' contact names ("you" for this account, the address for
/// someone who is not a named contact).
pub(crate) async fn member_names(client: &Client, members: &[sotto::Address]) -> Vec<String> {
    let me = client.address();
    let contacts = client.contacts().await.unwrap_or_default();
    members
        .iter()
        .map(|m| {
            if *m == me {
                return "you".to_owned();
            }
            contacts
                .iter()
                .flatten()
                .find(|c| c.address == *m && !c.name.is_empty())
                .map_or_else(|| m.to_string(), |c| c.name.clone())
        })
        .collect()
}

/// Who wrote a group message, by contact name.
async fn author(client: &Client, item: &GroupHistoryItem) -> String {
    if item.outgoing {
        return "me".to_owned();
    }
    match item.author {
        Some(a) => member_names(client, &[a]).await.remove(0),
        None => "?".to_owned(),
    }
}

pub(crate) async fn history(client: &Client, group: &str, limit: usize) -> CliResult<()> {
    let items = client
        .group_history(group, None, limit)
        .await
        .map_err(|e| e.to_string())?;
    if items.is_empty() {
        println!("No messages in #{group} yet.");
    }
    for item in items.iter().rev() {
        let who = author(client, item).await;
        match &item.body {
            Ok(body) => println!("[{}] {who}: {}", item.seq, String::from_utf8_lossy(body)),
            Err(e) => println!("[{}] (unreadable: {e})", item.seq),
        }
    }
    Ok(())
}

pub(crate) async fn send(client: &Client, group: &str, text: &str) -> CliResult<()> {
    let _ = connect(client).await;
    let sent = client
        .send_to_group(group, text.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    match sent.status {
        SendStatus::Accepted => println!("Sent to #{group}."),
        SendStatus::Failed(reason) => return Err(format!("not sent: {reason}")),
        _ => println!("Stored; it goes out on the next connection."),
    }
    Ok(())
}

/// `chat talk #NAME`: the interactive group chat.
pub(crate) async fn talk(client: &Client, group: &str) -> CliResult<()> {
    let s = |e: sotto::Error| e.to_string();
    let mut events = client.events();
    connect(client).await?;
    let _ = client.sync().await;
    let info = client.group(group).await.map_err(s)?;
    history(client, group, 10).await?;
    println!(
        "Talking in #{} ({} members). Type a message and press Enter; /members, /quit.",
        info.name,
        info.members.len()
    );
    let prompt = || {
        print!("> ");
        let _ = std::io::stdout().flush();
    };
    prompt();
    let mut lines = BufReader::new(tokio::io::stdin()).split(b'\n');
    loop {
        tokio::select! {
            line = lines.next_segment() => {
                let mut line = match line {
                    Ok(Some(line)) => line,
                    Ok(None) => break,
                    Err(e) => return Err(format!("cannot read the terminal: {e}")),
                };
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                match std::str::from_utf8(&line).map(str::trim).ok() {
                    Some("") => {}
                    Some("/quit") => break,
                    Some("/members") => {
                        let info = client.group(group).await.map_err(s)?;
                        println!("{}", member_names(client, &info.members).await.join(", "));
                    }
                    _ => match client.send_to_group(group, &line).await {
                        Ok(sent) if sent.status == SendStatus::Queued => {
                            println!("(stored; it goes out when the relay takes it)")
                        }
                        Ok(_) => {}
                        Err(e) => println!("(not sent: {e})"),
                    },
                }
                prompt();
            }
            _ = tokio::signal::ctrl_c() => {
                println!();
                break;
            }
            event = events.next() => match event {
                Some(ClientEvent::GroupMessage(m)) if m.group == info.id => {
                    let who = member_names(client, &[m.from]).await.remove(0);
                    println!("\r{who}: {}", String::from_utf8_lossy(&m.body));
                    prompt();
                }
                Some(ClientEvent::GroupChanged(c)) if c.group == info.id => {
                    let by = member_names(client, &[c.by]).await.remove(0);
                    for a in member_names(client, &c.added).await {
                        println!("\r({by} added {a})");
                    }
                    for r in member_names(client, &c.removed).await {
                        println!("\r({by} removed {r})");
                    }
                    if c.renamed {
                        println!("\r({by} renamed the group #{})", c.name);
                    }
                    if c.left {
                        println!("\r(you are no longer in #{})", c.name);
                        break;
                    }
                    prompt();
                }
                Some(_) => {}
                None => break,
            }
        }
    }
    Ok(())
}
