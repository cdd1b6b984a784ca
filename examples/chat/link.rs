//! `chat link`, `chat link CODE` and `chat unlink ID`: devices of one
//! account (docs/devices.md).

use std::process::ExitCode;
use std::time::Duration;

use sotto::core::{DeviceId, LinkCode};
use sotto::{Client, ClientEvent, ClientOptions};

use crate::{CliResult, connect, open, passphrase};

/// How long the new device waits for the account device, and the account
/// device for the new one's answer.
const LINK_WAIT: Duration = Duration::from_secs(600);

/// `chat link` on the new device: a new profile (made here if `--profile`
/// holds none, registered with `relay`) shows its link code as text and as
/// a QR code, and waits for the account's device to send its offer.
pub(crate) async fn show_code(
    profile: &std::path::Path,
    relay_ca: Option<&std::path::Path>,
    relay: Option<String>,
) -> CliResult<ExitCode> {
    let client = if profile.join(sotto::PROFILE_DB).exists() {
        let client = open(profile, relay_ca, true).await?;
        match relay {
            Some(relay) => register(&client, &relay).await?,
            None => connect(&client).await?,
        }
        client
    } else {
        let relay = relay.ok_or(
            "no profile here yet: pass --relay ADDR (the relay your account uses) to make one",
        )?;
        let pass = passphrase(true)?;
        let client = Client::create(profile, pass.as_bytes(), ClientOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        println!("Created a profile for this device in {}", profile.display());
        register(&client, &relay).await?;
        client
    };
    let code = client.start_linking().await.map_err(|e| match e {
        sotto::Error::NotLinkable => format!(
            "{e}: this profile has contacts or devices of its own (use a new --profile folder)"
        ),
        e => e.to_string(),
    })?;
    println!("On the device that holds your account, run:");
    println!();
    println!("    chat link {code}");
    println!();
    println!("or scan this code there:");
    println!("{}", qr(&code.to_string()));
    println!("Waiting for your account's device (up to 10 minutes; Ctrl-C to give up)...");
    let joined = client
        .wait_for_link(LINK_WAIT)
        .await
        .map_err(|e| format!("not linked: {e}"))?;
    client.disconnect().await;
    drop(client);
    println!(
        "Linked: this is device {} of {}.",
        joined.device, joined.account
    );
    println!("Messages to and from your account now reach this device too.");
    // From now on the profile is the account's device: open it again, and
    // take the history the other device sends.
    let client = open(profile, relay_ca, true).await?;
    receive_history(&client).await?;
    client.disconnect().await;
    Ok(ExitCode::SUCCESS)
}

/// How long the new device waits for the history to start, and then for
/// each next part of it.
const HISTORY_WAIT: Duration = Duration::from_secs(120);

/// Waits for the history the account's device sends, with a progress bar.
async fn receive_history(client: &Client) -> CliResult<()> {
    let mut events = client.events();
    connect(client).await?;
    println!("Receiving your history from your other device...");
    let mut drawn = false;
    loop {
        let event = match tokio::time::timeout(HISTORY_WAIT, events.next()).await {
            Ok(Some(event)) => event,
            _ => {
                if drawn {
                    eprintln!();
                }
                println!(
                    "No more of the history arrived for a while; the rest is taken whenever this device connects."
                );
                return Ok(());
            }
        };
        let ClientEvent::HistoryTransfer(t) = event else {
            continue;
        };
        crate::archive::draw_bar(t.messages_done, t.messages_total);
        drawn = true;
        if t.complete {
            eprintln!();
            let n = t.messages_total;
            let plural = if n == 1 { "" } else { "s" };
            println!("History received: {n} message{plural}, the same as on your other device.");
            return Ok(());
        }
    }
}

async fn register(client: &Client, relay: &str) -> CliResult<()> {
    client
        .register(relay)
        .await
        .map_err(|e| format!("cannot register with the relay at {relay}: {e}"))
}

/// The text as a QR code of Unicode half blocks (two modules per
/// character cell). Blocks are drawn in the terminal's text colour, light
/// on most terminals: the code's dark modules are left blank and the light
/// ones (quiet zone included) drawn, so that it shows dark on light.
fn qr(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .build(),
        // The code is 93 characters: it always fits; say so if not.
        Err(e) => format!("(no QR code: {e})"),
    }
}

/// `chat link CODE` on the account's device.
pub(crate) async fn accept_code(client: &Client, code: &str, send_history: bool) -> CliResult<()> {
    let code: LinkCode = code
        .trim()
        .parse()
        .map_err(|e| format!("that is not a link code ({e}): copy it again from the new device"))?;
    connect(client).await?;
    println!("Sending the offer; waiting for the new device to accept...");
    let linked = client
        .link_device(&code, LINK_WAIT)
        .await
        .map_err(|e| match e {
            sotto::Error::NotAccountDevice => {
                format!("{e}: run this on the device where you created the account")
            }
            e => format!("not linked: {e}"),
        })?;
    println!(
        "Linked device {} (device list version {}). Your contacts learn of it now.",
        linked.id, linked.version
    );
    if !send_history {
        return Ok(());
    }
    println!("Sending your history to it, end to end encrypted...");
    let mut events = client.events();
    client.send_history().await.map_err(|e| {
        format!(
            "the history was not sent entirely ({e}); it goes on when this device connects again"
        )
    })?;
    // Every part is with the relay; wait (a while) for the new device to
    // confirm it has all of it.
    let confirmed = tokio::time::timeout(LINK_WAIT, async {
        while let Some(event) = events.next().await {
            if let ClientEvent::HistoryTransfer(t) = event
                && t.outgoing
                && t.complete
            {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if confirmed {
        println!("The new device has your whole history.");
    } else {
        println!(
            "The history waits for the new device on the relay; it takes it when it connects."
        );
    }
    Ok(())
}

/// `chat unlink ID` on the account's device.
pub(crate) async fn unlink(client: &Client, id: u32) -> CliResult<()> {
    connect(client).await?;
    let change = client
        .unlink_device(DeviceId::new(id))
        .await
        .map_err(|e| format!("not unlinked: {e}"))?;
    println!(
        "Unlinked device {id} (device list version {}): it gets nothing new from now on.",
        change.version
    );
    Ok(())
}
