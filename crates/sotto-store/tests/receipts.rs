//! Delivery and read receipts on the sender's side, and resending what no
//! receipt confirmed.
#![cfg(test)]

mod common;

use std::time::Duration;

use common::{T0, deliver, envelope, pair};
use sotto_store::{DeliveryState, Received, ResendPolicy};

const MIN: u64 = 60_000;

fn policy() -> ResendPolicy {
    ResendPolicy {
        first: Duration::from_secs(5 * 60),
        max: Duration::from_secs(30 * 60),
    }
}

#[test]
fn an_accepted_message_waits_for_its_receipt_and_is_offered_again_when_overdue() {
    let mut p = pair();
    let a = p.alice_sends("one");
    let b = p.alice_sends("two");
    assert!(p.alice.mark_sent(&a.id, T0).unwrap());
    // Accepted: no longer to send, not yet overdue.
    let to_send: Vec<_> = p
        .alice
        .outbox()
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(to_send, vec![b.clone()]);
    assert!(
        p.alice
            .overdue(T0 + 5 * MIN - 1, &policy())
            .unwrap()
            .is_empty()
    );
    let due: Vec<_> = p
        .alice
        .overdue(T0 + 5 * MIN, &policy())
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    // The same id and ciphertext: the recipient stores it once.
    assert_eq!(due, vec![a.clone()]);

    // Sent again at +5 min: the next wait is twice as long.
    p.alice.mark_sent(&a.id, T0 + 5 * MIN).unwrap();
    assert!(
        p.alice
            .overdue(T0 + 14 * MIN, &policy())
            .unwrap()
            .is_empty()
    );
    assert_eq!(p.alice.overdue(T0 + 15 * MIN, &policy()).unwrap().len(), 1);

    // Bob stores it (twice: the resend is a duplicate) and confirms.
    assert_eq!(deliver(&a, "alice", &mut p.bob), "one");
    assert!(matches!(
        p.bob.receive(&envelope(&a, "alice")).unwrap(),
        Received::Duplicate
    ));
    // A receipt from someone else changes nothing.
    assert!(p.alice.mark_delivered("carol", &[a.id]).unwrap().is_empty());
    assert_eq!(p.alice.mark_delivered("bob", &[a.id]).unwrap(), vec![a.seq]);
    assert_eq!(
        p.alice.message("bob", a.seq).unwrap().unwrap().state,
        DeliveryState::Delivered
    );
    assert!(p.alice.overdue(u64::MAX, &policy()).unwrap().is_empty());
    // Confirmed twice (a receipt for the resend): nothing more happens.
    assert!(p.alice.mark_delivered("bob", &[a.id]).unwrap().is_empty());
    // A receipt never moves a message back.
    p.alice.mark_sent(&a.id, T0).unwrap();
    assert_eq!(
        p.alice.message("bob", a.seq).unwrap().unwrap().state,
        DeliveryState::Delivered
    );
}

#[test]
fn read_receipts_mark_read_and_end_waiting() {
    let mut p = pair();
    let a = p.alice_sends("one");
    let b = p.alice_sends("two");
    deliver(&a, "alice", &mut p.bob);
    p.alice.mark_sent(&a.id, T0).unwrap();
    p.alice.mark_sent(&b.id, T0).unwrap();
    p.alice.mark_delivered("bob", &[a.id]).unwrap();
    // a was delivered, b never confirmed: both read now.
    let mut read = p.alice.mark_read_by_contact("bob", &[a.id, b.id]).unwrap();
    read.sort_unstable();
    assert_eq!(read, vec![a.seq, b.seq]);
    for m in [&a, &b] {
        assert_eq!(
            p.alice.message("bob", m.seq).unwrap().unwrap().state,
            DeliveryState::Read
        );
    }
    assert!(p.alice.overdue(u64::MAX, &policy()).unwrap().is_empty());
    assert!(
        p.alice
            .mark_read_by_contact("carol", &[a.id])
            .unwrap()
            .is_empty()
    );
    // Incoming messages are never touched by a receipt.
    let r = p.bob_sends("reply");
    deliver(&r, "bob", &mut p.alice);
    assert!(
        p.alice
            .mark_read_by_contact("bob", &[r.id])
            .unwrap()
            .is_empty()
    );
    assert!(p.alice.mark_delivered("bob", &[r.id]).unwrap().is_empty());
}
