//! `Debug` and `Display` of the store's types never show message bodies,
//! contact ids or names, ciphertexts or keys.
#![cfg(test)]

mod common;

use common::{T0, envelope, options};
use sotto_store::{
    DeliveryState, Direction, NewMessage, OutboxEntry, Received, Store, sotto_core::SessionSet,
};

const CONTACT_ID: &str = "contact-id-QUOKKA";
const CONTACT_NAME: &str = "Display Name WOMBAT";
const BODY: &str = "the body says NUMBAT-7731";

/// Every way `bytes` could show up in text: as text, lower and upper hex,
/// and the `Debug` list of its first bytes.
fn assert_hidden(rendered: &str, bytes: &[u8], what: &str) {
    let mut forms = vec![
        hex::encode(bytes),
        hex::encode_upper(bytes),
        format!("{:?}", &bytes[..bytes.len().min(8)])
            .trim_end_matches(']')
            .to_owned(),
    ];
    if let Ok(text) = std::str::from_utf8(bytes) {
        forms.push(text.to_owned());
    }
    for form in forms {
        assert!(
            !rendered.contains(&form),
            "{what} shows up as {form:?} in {rendered}"
        );
    }
}

fn debug_and_display_of_everything(
    alice: &Store,
    outbox: &[OutboxEntry],
    received: &Received,
) -> String {
    let mut out = format!("{alice:?} {alice:#?} {outbox:?} {outbox:#?} {received:?} {received:#?}");
    let page = alice.history(CONTACT_ID, None, 50).unwrap();
    out += &format!("{page:?} {page:#?}");
    for message in page.messages() {
        out += &format!("{message:?} {:?}", message.envelope_id);
    }
    let contact = alice.contact(CONTACT_ID).unwrap().unwrap();
    out += &format!("{contact:?} {contact:#?}");
    for entry in outbox {
        out += &format!("{:?}", envelope(entry, CONTACT_ID));
    }
    let new = NewMessage {
        direction: Direction::Outgoing,
        state: DeliveryState::Sent,
        timestamp: T0,
        body: BODY.as_bytes(),
    };
    out += &format!("{new:?}");
    out
}

#[test]
fn debug_and_display_show_no_bodies_names_ciphertexts_or_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut alice = Store::create(dir.path().join("alice.db"), b"alice", &options()).unwrap();
    let mut bob = Store::create(dir.path().join("bob.db"), b"bob", &options()).unwrap();
    let published = bob.fresh_one_time_prekeys(1, T0).unwrap();
    let bundle = bob.prekey_bundle(Some(published[0].0)).unwrap();
    alice.add_contact(CONTACT_ID, CONTACT_NAME, None).unwrap();
    alice.start_session(CONTACT_ID, &bundle).unwrap();
    let first = alice.send(CONTACT_ID, BODY.as_bytes(), T0).unwrap();
    let stored = bob.receive(&envelope(&first, "alice-at-bob")).unwrap();
    let reply = bob.send("alice-at-bob", BODY.as_bytes(), T0).unwrap();
    let received = alice.receive(&envelope(&reply, CONTACT_ID)).unwrap();
    assert!(matches!(received, Received::Stored(_)));
    let outbox: Vec<OutboxEntry> = alice.outbox().unwrap().into_iter().flatten().collect();
    assert!(!outbox.is_empty());

    // Errors about a contact, its rows or its messages name none of them.
    let mut forged = reply.clone();
    forged.id = sotto_store::EnvelopeId([9; 16]);
    let errors = [
        alice
            .send("no-such-QUOKKA", BODY.as_bytes(), T0)
            .unwrap_err(),
        alice
            .add_contact(CONTACT_ID, CONTACT_NAME, None)
            .unwrap_err(),
        alice
            .rename_contact("no-such-QUOKKA", CONTACT_NAME)
            .unwrap_err(),
        alice.receive(&envelope(&forged, CONTACT_ID)).unwrap_err(),
    ];
    let rendered = debug_and_display_of_everything(&alice, &outbox, &received)
        + &format!("{stored:?} {bob:?}")
        + &errors
            .iter()
            .map(|e| format!("{e} {e:?} "))
            .collect::<String>();
    assert!(rendered.contains("redacted"));
    assert_hidden(&rendered, BODY.as_bytes(), "a message body");
    assert_hidden(&rendered, CONTACT_ID.as_bytes(), "a contact id");
    assert_hidden(&rendered, CONTACT_NAME.as_bytes(), "a contact name");
    assert_hidden(&rendered, b"alice-at-bob", "a sender id");
    for entry in outbox.iter().chain([&first, &reply]) {
        assert_hidden(&rendered, &entry.ciphertext[..32], "a ciphertext");
    }
    let identity = alice.identity().unwrap();
    assert_hidden(
        &rendered,
        identity.to_seed().as_slice(),
        "the identity seed",
    );
    assert_hidden(
        &rendered,
        &alice.signed_prekey().unwrap().to_bytes()[5..37],
        "the signed prekey",
    );
    // Every secret of the session state (the whole serialized set is
    // secret apart from its public keys; look for its key-bearing tail).
    let state = alice.session_state_for_tests(CONTACT_ID).unwrap().unwrap();
    assert!(SessionSet::from_bytes(&state).is_ok());
    for chunk in state[6 + 98..].chunks(32).filter(|c| c.len() == 32) {
        assert_hidden(&rendered, chunk, "session state");
    }
}
