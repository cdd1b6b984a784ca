//! `chat talk NAME`: the interactive chat, working with or without the
//! relay.

use std::io::Write;
use std::sync::Arc;

use sotto::{Client, ClientEvent, SendStatus, Sent};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{CliResult, connect, display_name, print_history, print_identity_change};

pub(crate) async fn talk(client: &Client, name: &str) -> CliResult<()> {
    let s = |e: sotto::Error| e.to_string();
    let history = client.history(name, None, 10).await.map_err(s)?;
    let contacts = client.contacts().await.map_err(s)?;
    let contact_address = contacts
        .iter()
        .flatten()
        .find(|c| c.name == name || c.address.to_string() == name)
        .map(|c| c.address)
        .ok_or_else(|| format!("no contact named {name:?}"))?;
    print_history(name, &history);
    let mut events = client.events();
    // Offline first: if the relay cannot be reached, the chat starts
    // anyway; lines are stored and go out when it is back.
    let mut offline = false;
    if let Err(why) = connect(client).await {
        let relay = client.saved_relay().ok_or(why.clone())?;
        client.keep_connected(&relay).await.map_err(s)?;
        println!("({why}; messages are stored and go out when it is back)");
        offline = true;
    }
    println!("Talking to {name}. Type a message and press Enter; /history, /verify, /quit.");
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let prompt = |out: &Arc<std::sync::Mutex<std::io::Stdout>>| {
        if let Ok(mut o) = out.lock() {
            let _ = write!(o, "> ");
            let _ = o.flush();
        }
    };
    prompt(&out);
    // Lines as bytes: a line that is not UTF-8 is sent as it is, never
    // dropped, and never ends the chat.
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
                let command = std::str::from_utf8(&line).map(str::trim).ok();
                match command {
                    Some("") => {}
                    Some("/quit") => break,
                    Some("/history") => {
                        let items = client.history(name, None, 20).await.map_err(s)?;
                        print_history(name, &items);
                    }
                    Some("/verify") => {
                        let number = client.safety_number(name).await.map_err(s)?;
                        println!("Safety number with {name}: {number}");
                    }
                    // Sent as typed: leading spaces are part of the message.
                    _ => {
                        if command.is_none() {
                            println!("(that line is not valid UTF-8; it is sent as it is)");
                        }
                        match client.send(name, &line).await {
                            // While the relay is away, one line said so.
                            Ok(sent) if sent.status == SendStatus::Queued && offline => {}
                            Ok(sent) if sent.status == SendStatus::Queued => {
                                println!("(stored; the relay did not take it yet, it is sent again later)")
                            }
                            Ok(Sent { status: SendStatus::Failed(reason), seq, .. }) => {
                                println!("(message #{seq} not sent: {reason})")
                            }
                            Ok(_) => {}
                            Err(e) => println!("(not sent: {e})"),
                        }
                    }
                }
                prompt(&out);
            }
            _ = tokio::signal::ctrl_c() => {
                // Leave the terminal on a fresh line.
                println!();
                break;
            }
            event = events.next() => {
                match event {
                    Some(ClientEvent::Message(m)) => {
                        let who = if m.contact == contact_address { name.to_owned() } else { display_name(&m.name, &m.contact) };
                        println!("\r{who}: {}", crate::message_text(&m));
                        prompt(&out);
                    }
                    Some(ClientEvent::Undecryptable { reason, resend_requested, .. }) => {
                        if resend_requested {
                            println!("\r(a message could not be decrypted: {reason}; asked the sender to send it again)");
                        } else {
                            println!("\r(a message could not be decrypted: {reason})");
                        }
                        prompt(&out);
                    }
                    Some(ClientEvent::PeerCouldNotDecrypt { seq: Some(seq), session_reset, .. }) => {
                        let how = if session_reset { "started a new session and sent it again" } else { "sent it again" };
                        println!("\r(your contact could not decrypt message #{seq}; {how})");
                        prompt(&out);
                    }
                    // One line when the relay goes away, one when it is back.
                    Some(ClientEvent::Disconnected { reason }) if !offline => {
                        offline = true;
                        println!("\r(relay connection lost: {reason}; reconnecting in the background, messages are stored meanwhile)");
                        prompt(&out);
                    }
                    Some(ClientEvent::Connected { sent_from_outbox }) if offline => {
                        offline = false;
                        println!("\r(connected to the relay again; {sent_from_outbox} queued message(s) went out)");
                        prompt(&out);
                    }
                    Some(ClientEvent::IdentityChanged(change)) => {
                        println!();
                        print_identity_change(&change);
                        prompt(&out);
                    }
                    Some(ClientEvent::SendFailed { seq, reason, .. }) => {
                        println!("\r(message #{seq} could not be sent: {reason})");
                        prompt(&out);
                    }
                    Some(ClientEvent::DisappearingTimerChanged { contact, timer, by_us }) if contact == contact_address => {
                        let who = if by_us { "you" } else { name };
                        println!("\r({})", crate::timer_note(who, timer));
                        prompt(&out);
                    }
                    Some(_) => {}
                    None => break,
                }
            }
        }
    }
    Ok(())
}
