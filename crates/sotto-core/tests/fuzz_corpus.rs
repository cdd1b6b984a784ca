//! The seed corpora of `fuzz/corpus/` replayed through the fuzz targets'
//! own checks (`fuzz/checks/`), on the stable toolchain in the ordinary
//! test run: an input a fuzzer once found stays fixed.
#![cfg(test)]

#[path = "../../../fuzz/checks/bundle.rs"]
mod bundle;
#[path = "../../../fuzz/checks/devices.rs"]
mod devices;
#[path = "../../../fuzz/checks/group_membership.rs"]
mod group_membership;
#[path = "../../../fuzz/checks/group_message.rs"]
mod group_message;
#[path = "../../../fuzz/checks/replay.rs"]
mod replay;
#[path = "../../../fuzz/checks/session_decrypt.rs"]
mod session_decrypt;
#[path = "../../../fuzz/checks/session_state.rs"]
mod session_state;
#[path = "../../../fuzz/checks/wire_decode.rs"]
mod wire_decode;

#[test]
fn wire_decode_corpus_is_handled() {
    replay::replay("wire_decode", wire_decode::check);
}

#[test]
fn session_decrypt_corpus_is_handled() {
    replay::replay("session_decrypt", session_decrypt::check);
}

#[test]
fn session_decrypt_fixture_transcript_is_handled() {
    // Two of these decrypt (Bob skipped them), so the success branch of the
    // check runs even if the corpus lost them.
    for message in &session_decrypt::fixture().transcript {
        session_decrypt::check(message);
    }
}

#[test]
fn session_state_corpus_is_handled() {
    replay::replay("session_state", session_state::check);
}

#[test]
fn bundle_corpus_is_handled() {
    replay::replay("bundle", bundle::check);
}

#[test]
fn devices_corpus_is_handled() {
    replay::replay("devices", devices::check);
}

#[test]
fn group_message_corpus_is_handled() {
    replay::replay("group_message", group_message::check);
}

#[test]
fn group_message_fixture_transcript_and_distributions_are_handled() {
    // Three messages of the transcript decrypt (their keys were skipped),
    // so the success branch runs even if the corpus lost them.
    let f = group_message::fixture();
    for input in f.transcript.iter().chain(&f.distributions) {
        group_message::check(input);
    }
    group_message::check(&f.receiver.to_bytes());
    group_message::check(&f.sender.to_bytes());
}

#[test]
fn group_membership_corpus_is_handled() {
    replay::replay("group_membership", group_membership::check);
}
