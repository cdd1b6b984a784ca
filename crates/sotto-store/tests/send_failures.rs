//! Messages that cannot leave: refused before they are stored when too
//! large, given up for good without holding back the ones behind them.
#![cfg(test)]

mod common;

use common::{T0, deliver, envelope, pair};
use sotto_store::{DeliveryState, Error, Received, SendFailure, Store};

#[test]
fn a_message_too_large_is_refused_before_anything_is_stored() {
    let mut p = pair();
    let first = p.alice_sends("before");
    let count = p.alice.message_count("bob").unwrap();
    let outbox = p.alice.outbox().unwrap().len();

    let big = vec![b'x'; 10_000];
    let err = p.alice.send_within("bob", &big, T0, 4_000).unwrap_err();
    let Error::MessageTooLarge { len, max } = err else {
        panic!("expected MessageTooLarge, got {err:?}");
    };
    assert_eq!(len, 10_000);
    assert!(max > 0 && max < 4_000, "largest body {max}");
    // Nothing stored, nothing queued.
    assert_eq!(p.alice.message_count("bob").unwrap(), count);
    assert_eq!(p.alice.outbox().unwrap().len(), outbox);

    // The largest body the error names fits; one byte more does not.
    let fits = p
        .alice
        .send_within("bob", &vec![b'y'; max], T0, 4_000)
        .unwrap();
    let [fits] = &fits.entries[..] else {
        panic!("one device, one entry")
    };
    assert!(fits.ciphertext.len() <= 4_000);
    assert!(matches!(
        p.alice.send_within("bob", &vec![b'y'; max + 1], T0, 4_000),
        Err(Error::MessageTooLarge { .. })
    ));

    // The session did not advance for the refused ones: what was sent
    // before and after decrypts in order on Bob's side.
    assert_eq!(deliver(&first, "alice", &mut p.bob), "before");
    let received = p.bob.receive(&envelope(fits, "alice")).unwrap();
    assert!(matches!(received, Received::Stored(m) if m.body.len() == max));
}

#[test]
fn a_failed_entry_leaves_the_outbox_and_the_next_one_still_arrives() {
    let mut p = pair();
    let lost = p.alice_sends("refused for good");
    let next = p.alice_sends("after it");

    assert_eq!(
        p.alice
            .fail_outbox_entry(&lost.id, SendFailure::Rejected)
            .unwrap(),
        Some(lost.seq)
    );
    // Once only.
    assert_eq!(
        p.alice
            .fail_outbox_entry(&lost.id, SendFailure::Rejected)
            .unwrap(),
        None
    );
    let outbox: Vec<_> = p.alice.outbox().unwrap().into_iter().flatten().collect();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].id, next.id);
    let failed = p.alice.message("bob", lost.seq).unwrap().unwrap();
    assert_eq!(failed.state, DeliveryState::Failed(SendFailure::Rejected));

    // Bob gets the next message although the one before never came.
    assert_eq!(deliver(&next, "alice", &mut p.bob), "after it");
}

#[test]
fn failed_state_survives_reopening() {
    let mut p = pair();
    let lost = p.alice_sends("too big, say");
    p.alice
        .fail_outbox_entry(&lost.id, SendFailure::TooLarge)
        .unwrap();
    let path = p.alice_path();
    drop(p.alice);
    let alice = Store::open(&path, common::ALICE_PASS, &common::options()).unwrap();
    assert_eq!(
        alice.message("bob", lost.seq).unwrap().unwrap().state,
        DeliveryState::Failed(SendFailure::TooLarge)
    );
}
