//! Setup shared by the throughput benchmarks.

use vodozemac::olm::{Account, OlmMessage, Session, SessionConfig};

/// Two Olm sessions past the handshake (one message each way).
pub(crate) fn olm_pair() -> (Session, Session) {
    let alice = Account::new();
    let mut bob = Account::new();
    bob.generate_one_time_keys(1);
    let otk = bob
        .one_time_keys()
        .into_values()
        .next()
        .expect("one-time key");
    let mut alice_session = alice
        .create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk)
        .expect("outbound");
    let first = alice_session.encrypt("hello").expect("encrypt");
    let OlmMessage::PreKey(pre) = first else {
        panic!("first Olm message is a pre-key message");
    };
    let created = bob
        .create_inbound_session(SessionConfig::version_1(), alice.curve25519_key(), &pre)
        .expect("inbound");
    let mut bob_session = created.session;
    let reply = bob_session.encrypt("hi").expect("encrypt");
    alice_session.decrypt(&reply).expect("decrypt");
    (alice_session, bob_session)
}

/// `size` bytes of plaintext.
pub(crate) fn plaintext(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}
