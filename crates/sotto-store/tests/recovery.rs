//! Session recovery on the sender's side: a reported decryption failure
//! resets the session once and resends each message at most once.
#![cfg(test)]

mod common;

use common::{deliver, envelope, pair};
use sotto_store::{CiphertextDigest, Error, OutboxEntry, Received, Recovery};

/// How the recipient names a message it could not decrypt.
fn d(sent: &OutboxEntry) -> CiphertextDigest {
    CiphertextDigest::of(&sent.ciphertext)
}

#[test]
fn a_reported_failure_resets_once_and_resends_under_the_same_envelope_id_only_for_a_digest_we_sent()
{
    let mut p = pair();
    let m1 = p.alice_sends("one");
    assert_eq!(deliver(&m1, "alice", &mut p.bob), "one");
    let m2 = p.alice_sends("two");
    let m3 = p.alice_sends("three");

    // Bob reports he could not decrypt m2: the current session is broken.
    assert_eq!(
        p.alice.plan_recovery("bob", &d(&m2)).unwrap(),
        Recovery::ResetAndResend { seq: m2.seq }
    );
    // A reset needs a fresh bundle.
    assert!(matches!(
        p.alice.recover("bob", &d(&m2), None),
        Err(Error::NoSession)
    ));
    let opk = p.bob.one_time_prekeys().unwrap()[0].id;
    let bundle = p.bob.prekey_bundle(Some(opk)).unwrap();
    let resent = p
        .alice
        .recover("bob", &d(&m2), Some(&bundle))
        .unwrap()
        .unwrap();
    assert_eq!(resent.id, m2.id);
    assert_eq!(resent.seq, m2.seq);
    assert_ne!(resent.ciphertext, m2.ciphertext);
    // It is back in the outbox, under its id.
    assert!(
        p.alice
            .outbox()
            .unwrap()
            .into_iter()
            .flatten()
            .any(|e| e.id == m2.id && e.ciphertext == resent.ciphertext)
    );

    // Bob decrypts the resend (a new session); the original, if it ever
    // arrives, is the same envelope: stored once.
    assert_eq!(deliver(&resent, "alice", &mut p.bob), "two");
    assert!(matches!(
        p.bob.receive(&envelope(&m2, "alice")).unwrap(),
        Received::Duplicate
    ));

    // The same notice again (a replay): nothing happens, the digest is no
    // longer the one of what was last sent for m2.
    assert_eq!(
        p.alice.plan_recovery("bob", &d(&m2)).unwrap(),
        Recovery::Ignore
    );
    assert!(
        p.alice
            .recover("bob", &d(&m2), Some(&bundle))
            .unwrap()
            .is_none()
    );

    // m3 was sent before the reset: resent under the new session, no
    // second reset, and only once.
    assert_eq!(
        p.alice.plan_recovery("bob", &d(&m3)).unwrap(),
        Recovery::Resend { seq: m3.seq }
    );
    let resent3 = p.alice.recover("bob", &d(&m3), None).unwrap().unwrap();
    assert_eq!(deliver(&resent3, "alice", &mut p.bob), "three");
    assert_eq!(
        p.alice.plan_recovery("bob", &d(&m3)).unwrap(),
        Recovery::Ignore
    );

    // Messages after the reset that fail call for a new reset.
    let m4 = p.alice_sends("four");
    assert_eq!(
        p.alice.plan_recovery("bob", &d(&m4)).unwrap(),
        Recovery::ResetAndResend { seq: m4.seq }
    );
    assert_eq!(deliver(&m4, "alice", &mut p.bob), "four");

    // Notices about incoming or unknown messages are ignored.
    let b = p.bob_sends("from bob");
    assert_eq!(deliver(&b, "bob", &mut p.alice), "from bob");
    assert_eq!(
        p.alice.plan_recovery("bob", &d(&b)).unwrap(),
        Recovery::Ignore
    );
    let unknown = CiphertextDigest([0x55; 32]);
    assert_eq!(
        p.alice.plan_recovery("bob", &unknown).unwrap(),
        Recovery::Ignore
    );
    assert!(matches!(
        p.alice.plan_recovery("nobody", &d(&m1)),
        Err(Error::UnknownContact)
    ));

    // History: each message once, in order.
    let bodies: Vec<String> = p
        .bob
        .history("alice", None, 50)
        .unwrap()
        .messages()
        .filter(|m| m.direction == sotto_store::Direction::Incoming)
        .map(|m| String::from_utf8(m.body.to_vec()).unwrap())
        .collect();
    assert_eq!(bodies, vec!["four", "three", "two", "one"]);
}

#[test]
fn recovery_state_survives_reopening_the_store() {
    let mut p = pair();
    let m1 = p.alice_sends("one");
    let opk = p.bob.one_time_prekeys().unwrap()[0].id;
    let bundle = p.bob.prekey_bundle(Some(opk)).unwrap();
    p.alice
        .recover("bob", &d(&m1), Some(&bundle))
        .unwrap()
        .unwrap();
    let path = p.alice_path();
    drop(p.alice);
    let alice = sotto_store::Store::open(&path, common::ALICE_PASS, &common::options()).unwrap();
    // Replaying the notice after a restart is still ignored.
    assert_eq!(
        alice.plan_recovery("bob", &d(&m1)).unwrap(),
        Recovery::Ignore
    );
}

/// A resend that fails too (the new session is broken as well) calls for
/// another reset, a bounded number of times until a delivery is confirmed.
#[test]
fn a_failed_resend_resets_again_at_most_three_times_in_a_row() {
    let mut p = pair();
    let m = p.alice_sends("hard to deliver");
    let bundle = |bob: &sotto_store::Store| {
        let opk = bob.one_time_prekeys().unwrap()[0].id;
        bob.prekey_bundle(Some(opk)).unwrap()
    };
    let b = bundle(&p.bob);
    let mut last = p.alice.recover("bob", &d(&m), Some(&b)).unwrap().unwrap();
    for _ in 1..sotto_store::MAX_RESETS_IN_ROW {
        // Bob cannot decrypt the resend either: another reset.
        assert_eq!(
            p.alice.plan_recovery("bob", &d(&last)).unwrap(),
            Recovery::ResetAndResend { seq: m.seq }
        );
        last = p
            .alice
            .recover("bob", &d(&last), Some(&b))
            .unwrap()
            .unwrap();
    }
    // Three resets in a row: no more.
    assert_eq!(
        p.alice.plan_recovery("bob", &d(&last)).unwrap(),
        Recovery::Ignore
    );
    // Bob finally stores the last resend and confirms: the count starts over.
    assert_eq!(deliver(&last, "alice", &mut p.bob), "hard to deliver");
    p.alice.mark_sent(&last.id, 0).unwrap();
    assert_eq!(
        p.alice.mark_delivered("bob", &[last.id]).unwrap(),
        vec![m.seq]
    );
    let m2 = p.alice_sends("next");
    let b = bundle(&p.bob);
    let r = p.alice.recover("bob", &d(&m2), Some(&b)).unwrap().unwrap();
    assert_eq!(
        p.alice.plan_recovery("bob", &d(&r)).unwrap(),
        Recovery::ResetAndResend { seq: m2.seq }
    );
}
