//! Two handles on one file (as two processes would have, e.g. the app and
//! its notification extension) never use stale session state.
#![cfg(test)]

mod common;

use common::{BOB_PASS, deliver, envelope, options};
use sotto_store::{Received, Store};

#[test]
fn handles_take_turns_on_one_session() {
    let mut p = common::pair();
    let mut bob_a = Store::open(p.bob_path(), BOB_PASS, &options()).unwrap();
    let mut bob_b = Store::open(p.bob_path(), BOB_PASS, &options()).unwrap();

    let m1 = p.alice_sends("one");
    let m2 = p.alice_sends("two");
    let m3 = p.alice_sends("three");
    // A creates the session from Alice's PreKeyMessage; B continues it.
    assert_eq!(deliver(&m1, "alice", &mut bob_a), "one");
    assert_eq!(deliver(&m2, "alice", &mut bob_b), "two");
    assert_eq!(deliver(&m3, "alice", &mut bob_a), "three");
    // A duplicate seen by the other handle is a duplicate.
    assert!(matches!(
        bob_b.receive(&envelope(&m1, "alice")).unwrap(),
        Received::Duplicate
    ));

    // Both handles send: B's send uses the session A advanced.
    let r1 = bob_a.send("alice", b"reply from A", 0).unwrap();
    let r2 = bob_b.send("alice", b"reply from B", 0).unwrap();
    assert_eq!(deliver(&r2, "bob", &mut p.alice), "reply from B");
    assert_eq!(deliver(&r1, "bob", &mut p.alice), "reply from A");

    // After Alice's DH step, alternate again.
    for i in 0..6 {
        let m = p.alice_sends(&format!("m{i}"));
        let handle = if i % 2 == 0 { &mut bob_a } else { &mut bob_b };
        assert_eq!(deliver(&m, "alice", handle), format!("m{i}"));
        let r = handle.send("alice", format!("r{i}").as_bytes(), 0).unwrap();
        assert_eq!(deliver(&r, "bob", &mut p.alice), format!("r{i}"));
    }
    assert_eq!(bob_a.message_count("alice").unwrap(), 17);
    assert_eq!(bob_b.history("alice", None, 100).unwrap().entries.len(), 17);
    // And the original handle sees it all too.
    assert_eq!(p.bob.message_count("alice").unwrap(), 17);
}

#[test]
fn concurrent_receivers_on_two_threads_store_everything_once() {
    let mut p = common::pair();
    let first = p.alice_sends("first");
    deliver(&first, "alice", &mut p.bob);
    let sent: Vec<_> = (0..40).map(|i| p.alice_sends(&format!("c{i}"))).collect();
    let path = p.bob_path();

    std::thread::scope(|scope| {
        for parity in 0..2 {
            let sent = &sent;
            let path = path.clone();
            scope.spawn(move || {
                let mut bob = Store::open(&path, BOB_PASS, &options()).unwrap();
                // Both threads get every message, in opposite orders: each
                // envelope is stored by whichever thread gets to it first
                // and is a duplicate for the other.
                let mut order: Vec<_> = sent.iter().collect();
                if parity == 1 {
                    order.reverse();
                }
                for m in order {
                    let r = bob.receive(&envelope(m, "alice")).unwrap();
                    assert!(matches!(r, Received::Stored(_) | Received::Duplicate));
                }
            });
        }
    });
    assert_eq!(p.bob.message_count("alice").unwrap(), 41);
    let bodies: std::collections::BTreeSet<_> = p
        .bob
        .history("alice", None, 100)
        .unwrap()
        .messages()
        .map(|m| String::from_utf8(m.body.to_vec()).unwrap())
        .collect();
    assert_eq!(bodies.len(), 41);
    let r = p.bob_sends("all received");
    assert_eq!(deliver(&r, "bob", &mut p.alice), "all received");
}
