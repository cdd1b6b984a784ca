//! A crash (simulated by an injected fault) at any point of receive or
//! send leaves a consistent store: redelivery stores exactly one message
//! and the session keeps working; no ciphertext leaves without its
//! session state committed.
#![cfg(test)]

mod common;

use common::{ALICE_PASS, BOB_PASS, Pair, deliver, envelope, options};
use sotto_store::testing::FaultPoint;
use sotto_store::{Error, Received, Store};

/// Simulates a process restart: a fresh handle on the file replaces the
/// old one (which had no transaction open: the faulted one rolled back).
fn restart_bob(p: &mut Pair) {
    p.bob = Store::open(p.bob_path(), BOB_PASS, &options()).unwrap();
}

fn restart_alice(p: &mut Pair) {
    p.alice = Store::open(p.alice_path(), ALICE_PASS, &options()).unwrap();
}

fn is_injected(r: &Result<impl std::fmt::Debug, Error>, point: FaultPoint) -> bool {
    matches!(r, Err(Error::InjectedFault(p)) if *p == point)
}

/// Checks the conversation still works both ways, several times (DH steps).
fn still_talks(p: &mut Pair) {
    for i in 0..3 {
        let m = p.alice_sends(&format!("ping {i}"));
        assert_eq!(deliver(&m, "alice", &mut p.bob), format!("ping {i}"));
        let r = p.bob_sends(&format!("pong {i}"));
        assert_eq!(deliver(&r, "bob", &mut p.alice), format!("pong {i}"));
    }
}

#[test]
fn fault_before_commit_of_a_first_message_rolls_everything_back() {
    for point in [
        FaultPoint::ReceiveAfterDecrypt,
        FaultPoint::ReceiveBeforeCommit,
    ] {
        let mut p = common::pair();
        let first = p.alice_sends("first");
        p.bob.inject_fault(point);
        assert!(is_injected(
            &p.bob.receive(&envelope(&first, "alice")),
            point
        ));
        restart_bob(&mut p);
        // Nothing of the decrypt survived: no message, no contact, no
        // session, the one-time prekey is still there.
        assert_eq!(p.bob.message_count("alice").unwrap(), 0);
        assert!(p.bob.contact("alice").unwrap().is_none());
        assert!(!p.bob.has_session("alice").unwrap());
        assert_eq!(p.bob.one_time_prekey_count().unwrap(), 5);
        // The relay was not acked, so it redelivers.
        assert_eq!(deliver(&first, "alice", &mut p.bob), "first");
        assert!(matches!(
            p.bob.receive(&envelope(&first, "alice")).unwrap(),
            Received::Duplicate
        ));
        assert_eq!(p.bob.message_count("alice").unwrap(), 1);
        assert_eq!(p.bob.one_time_prekey_count().unwrap(), 4);
        still_talks(&mut p);
    }
}

#[test]
fn fault_before_commit_mid_conversation_rolls_back_the_ratchet_step() {
    for point in [
        FaultPoint::ReceiveAfterDecrypt,
        FaultPoint::ReceiveBeforeCommit,
    ] {
        let mut p = common::pair();
        still_talks(&mut p);
        // This one makes Bob do a DH ratchet step (Alice's new ratchet key).
        let m = p.alice_sends("needs a ratchet step");
        let count = p.bob.message_count("alice").unwrap();
        p.bob.inject_fault(point);
        assert!(is_injected(&p.bob.receive(&envelope(&m, "alice")), point));
        restart_bob(&mut p);
        assert_eq!(p.bob.message_count("alice").unwrap(), count);
        assert_eq!(deliver(&m, "alice", &mut p.bob), "needs a ratchet step");
        assert_eq!(p.bob.message_count("alice").unwrap(), count + 1);
        still_talks(&mut p);
    }
}

#[test]
fn fault_after_commit_then_redelivery_is_a_duplicate() {
    let mut p = common::pair();
    let first = p.alice_sends("first");
    p.bob.inject_fault(FaultPoint::ReceiveAfterCommit);
    assert!(is_injected(
        &p.bob.receive(&envelope(&first, "alice")),
        FaultPoint::ReceiveAfterCommit
    ));
    restart_bob(&mut p);
    // Committed, but the relay was never acked: it redelivers.
    assert_eq!(p.bob.message_count("alice").unwrap(), 1);
    assert!(matches!(
        p.bob.receive(&envelope(&first, "alice")).unwrap(),
        Received::Duplicate
    ));
    assert_eq!(p.bob.message_count("alice").unwrap(), 1);
    // The next message (same session) decrypts.
    let second = p.alice_sends("second");
    assert_eq!(deliver(&second, "alice", &mut p.bob), "second");
    still_talks(&mut p);
}

#[test]
fn batch_fault_rolls_back_the_whole_batch_and_redelivery_stores_each_once() {
    let mut p = common::pair();
    let sent: Vec<_> = (0..10).map(|i| p.alice_sends(&format!("b{i}"))).collect();
    let envelopes: Vec<_> = sent.iter().map(|m| envelope(m, "alice")).collect();
    p.bob.inject_fault(FaultPoint::ReceiveBeforeCommit);
    assert!(is_injected(
        &p.bob.receive_batch(&envelopes),
        FaultPoint::ReceiveBeforeCommit
    ));
    restart_bob(&mut p);
    assert_eq!(p.bob.message_count("alice").unwrap(), 0);

    p.bob.inject_fault(FaultPoint::ReceiveAfterCommit);
    assert!(is_injected(
        &p.bob.receive_batch(&envelopes),
        FaultPoint::ReceiveAfterCommit
    ));
    restart_bob(&mut p);
    assert_eq!(p.bob.message_count("alice").unwrap(), 10);
    let again = p.bob.receive_batch(&envelopes).unwrap();
    assert!(again.iter().all(|r| matches!(r, Ok(Received::Duplicate))));
    assert_eq!(p.bob.message_count("alice").unwrap(), 10);
    still_talks(&mut p);
}

#[test]
fn send_fault_before_commit_returns_no_ciphertext_and_changes_nothing() {
    for point in [FaultPoint::SendAfterEncrypt, FaultPoint::SendBeforeCommit] {
        let mut p = common::pair();
        still_talks(&mut p);
        let count = p.alice.message_count("bob").unwrap();
        let outbox = p.alice.outbox().unwrap().len();
        let session_before = p.alice.session_state_for_tests("bob").unwrap().unwrap();
        p.alice.inject_fault(point);
        assert!(is_injected(&p.alice.send("bob", b"lost", 0), point));
        restart_alice(&mut p);
        assert_eq!(p.alice.message_count("bob").unwrap(), count);
        assert_eq!(p.alice.outbox().unwrap().len(), outbox);
        assert_eq!(
            *p.alice.session_state_for_tests("bob").unwrap().unwrap(),
            *session_before,
            "the session did not advance"
        );
        let m = p.alice_sends("after the crash");
        assert_eq!(deliver(&m, "alice", &mut p.bob), "after the crash");
        still_talks(&mut p);
    }
}

#[test]
fn send_fault_after_commit_leaves_the_ciphertext_in_the_outbox_for_retry() {
    let mut p = common::pair();
    p.alice.inject_fault(FaultPoint::SendAfterCommit);
    assert!(is_injected(
        &p.alice.send("bob", b"committed", 0),
        FaultPoint::SendAfterCommit
    ));
    restart_alice(&mut p);
    let pending: Vec<_> = p
        .alice
        .outbox()
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(pending.len(), 1);
    // Retry: sent, but the relay's confirmation is lost; sent again.
    assert_eq!(deliver(&pending[0], "alice", &mut p.bob), "committed");
    assert!(matches!(
        p.bob.receive(&envelope(&pending[0], "alice")).unwrap(),
        Received::Duplicate
    ));
    assert!(p.alice.mark_sent(&pending[0].id, 0).unwrap());
    assert!(p.alice.outbox().unwrap().is_empty());
    assert_eq!(p.bob.message_count("alice").unwrap(), 1);
    still_talks(&mut p);
}
