//! An end-to-end conversation, with every `tracing` event of the client,
//! relay and store captured at TRACE level: the logs, and the `Debug` of
//! the facade's values, hold no message text, passphrase, contact name or
//! key.
#![cfg(test)]

mod common;

use common::log_capture::Capture;
use common::{WAIT, contains, memory_relay, next_message, options};
use sotto::Client;

const ALICE_PASS: &[u8] = b"passphrase AARDVARK-1";
const BOB_PASS: &[u8] = b"passphrase AARDVARK-2";
const ALICE_NAME: &str = "Contact OKAPI";
const BOB_NAME: &str = "Contact TAPIR";
const TEXTS: [&str; 3] = [
    "first text MARMOT-001",
    "reply text MARMOT-002",
    "queued text MARMOT-003",
];

fn forms(bytes: &[u8]) -> Vec<String> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = vec![
        hex.to_uppercase(),
        hex,
        format!("{:?}", &bytes[..bytes.len().min(8)])
            .trim_end_matches(']')
            .to_owned(),
    ];
    if let Ok(text) = std::str::from_utf8(bytes) {
        out.push(text.to_owned());
    }
    out
}

fn assert_absent(haystack: &str, bytes: &[u8], what: &str, context: &str) {
    for form in forms(bytes) {
        assert!(
            !haystack.contains(&form),
            "{what} appears as {form:?} in the {context}:\n{haystack}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_leaves_no_user_data_in_logs_or_debug_output() {
    let capture = Capture::install();

    let relay = memory_relay().await;
    let relay_addr = relay.local_addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let alice = Client::create(dir.path().join("a"), ALICE_PASS, options())
        .await
        .unwrap();
    let bob = Client::create(dir.path().join("b"), BOB_PASS, options())
        .await
        .unwrap();
    alice.register(&relay_addr).await.unwrap();
    bob.register(&relay_addr).await.unwrap();
    alice.add_contact(BOB_NAME, &bob.address()).await.unwrap();
    bob.add_contact(ALICE_NAME, &alice.address()).await.unwrap();
    let mut bob_in = bob.incoming();
    let mut alice_in = alice.incoming();

    alice.send(BOB_NAME, TEXTS[0].as_bytes()).await.unwrap();
    let first = next_message(&mut bob_in).await;
    bob.send(ALICE_NAME, TEXTS[1].as_bytes()).await.unwrap();
    let reply = next_message(&mut alice_in).await;
    // One message waits at the relay while Bob is away.
    bob.disconnect().await;
    alice.send(BOB_NAME, TEXTS[2].as_bytes()).await.unwrap();
    bob.connect(&relay_addr).await.unwrap();
    let queued = next_message(&mut bob_in).await;
    assert_eq!(queued.body, TEXTS[2].as_bytes());

    let history = alice.history(BOB_NAME, None, 10).await.unwrap();
    assert_eq!(history.len(), 3);
    let safety = alice.safety_number(BOB_NAME).await.unwrap();
    let debug =
        format!("{first:?} {reply:#?} {queued:?} {history:?} {history:#?} {alice:?} {bob:#?}");
    tokio::time::timeout(WAIT, alice.disconnect())
        .await
        .unwrap();
    tokio::time::timeout(WAIT, bob.disconnect()).await.unwrap();
    relay.shutdown().await;

    let logs = capture.text();
    // The capture sees the relay's debug-level events, and the client's
    // spans and events: connecting, sending, each envelope's outcome.
    assert!(logs.contains("connection opened"), "{logs}");
    for expected in [
        "sotto::client::supervisor: message=connected and authenticated",
        "sotto::client::send: body_len=",
        "sotto::client::mailbox: envelope_len=",
        "outcome=\"stored\"",
        "outcome=\"receipt\"",
    ] {
        assert!(
            logs.contains(expected),
            "no {expected:?} in the logs:\n{logs}"
        );
    }
    for (context, haystack) in [("logs", &logs), ("Debug output", &debug)] {
        for text in TEXTS {
            assert_absent(haystack, text.as_bytes(), "a message text", context);
        }
        assert_absent(haystack, ALICE_PASS, "a passphrase", context);
        assert_absent(haystack, BOB_PASS, "a passphrase", context);
        assert_absent(haystack, ALICE_NAME.as_bytes(), "a contact name", context);
        assert_absent(haystack, BOB_NAME.as_bytes(), "a contact name", context);
        assert!(
            !contains(haystack.as_bytes(), safety.to_string().as_bytes()),
            "the safety number is in the {context}"
        );
    }
}
