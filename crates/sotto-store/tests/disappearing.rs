//! Disappearing messages: the timer each side may change (the later change
//! wins on both), the countdown from sending or reading, the deletion when
//! it runs out (nothing of the message left in the file), and archives
//! that leave counting-down messages out.
#![cfg(test)]

mod common;

use common::{T0, deliver, files, options, read};
use sotto_store::{ConversationEvent, DisappearingTimer, Error, Expired, KdfParams, Store};

const MINUTE: u64 = 60_000;

fn timer(store: &Store, seconds: u32, set_at: u64) -> DisappearingTimer {
    DisappearingTimer {
        seconds,
        set_at,
        set_by: store.account_key().unwrap(),
    }
}

/// The events in `contact`'s history, oldest first, each with whether
/// this side made the change.
fn events(store: &Store, contact: &str) -> Vec<(ConversationEvent, bool)> {
    let mut out: Vec<_> = store
        .history(contact, None, 100)
        .unwrap()
        .messages()
        .filter_map(|m| {
            m.event
                .map(|e| (e, m.direction == sotto_store::Direction::Outgoing))
        })
        .collect();
    out.reverse();
    out
}

fn bodies(store: &Store, contact: &str) -> Vec<String> {
    let mut out: Vec<_> = store
        .history(contact, None, 100)
        .unwrap()
        .entries
        .into_iter()
        .map(|e| {
            let m = e.message.expect("every row reads");
            String::from_utf8(m.body.to_vec()).unwrap()
        })
        .filter(|b| !b.is_empty())
        .collect();
    out.reverse();
    out
}

/// The sealed rows of every message of the store at `path`.
fn sealed_messages(path: &std::path::Path) -> Vec<(Vec<u8>, i64, Vec<u8>)> {
    common::raw_messages::all(&rusqlite::Connection::open(path).unwrap())
}

/// Whether any 32-byte piece of `value` is in the file or its log.
fn on_disk(path: &std::path::Path, value: &[u8]) -> bool {
    let disk: Vec<Vec<u8>> = files(path).iter().map(|f| read(f)).collect();
    value.chunks_exact(32).any(|piece| {
        disk.iter()
            .any(|bytes| bytes.windows(32).any(|w| w == piece))
    })
}

#[test]
fn the_later_change_wins_on_both_sides_whatever_order_they_arrive_in() {
    let mut p = common::pair();
    let m = p.alice_sends("hello");
    deliver(&m, "alice", &mut p.bob);
    let by_alice = timer(&p.alice, 3600, T0 + 10);
    let by_bob = timer(&p.bob, 60, T0 + 20);

    // Alice's change, then Bob's, on her side; the other order on his.
    assert!(
        p.alice
            .set_disappearing_timer("bob", &by_alice, T0)
            .unwrap()
    );
    assert!(p.alice.set_disappearing_timer("bob", &by_bob, T0).unwrap());
    assert!(p.bob.set_disappearing_timer("alice", &by_bob, T0).unwrap());
    assert!(
        !p.bob
            .set_disappearing_timer("alice", &by_alice, T0)
            .unwrap()
    );
    assert_eq!(p.alice.disappearing_timer("bob").unwrap(), Some(by_bob));
    assert_eq!(p.bob.disappearing_timer("alice").unwrap(), Some(by_bob));

    // The same instant on both clocks: the greater key wins, on both.
    let a = timer(&p.alice, 5, T0 + 30);
    let b = timer(&p.bob, 7, T0 + 30);
    let winner = if a.supersedes(&b) { a } else { b };
    p.alice.set_disappearing_timer("bob", &a, T0).unwrap();
    p.alice.set_disappearing_timer("bob", &b, T0).unwrap();
    p.bob.set_disappearing_timer("alice", &b, T0).unwrap();
    p.bob.set_disappearing_timer("alice", &a, T0).unwrap();
    assert_eq!(p.alice.disappearing_timer("bob").unwrap(), Some(winner));
    assert_eq!(p.bob.disappearing_timer("alice").unwrap(), Some(winner));

    // Each change taken is an event in the history, with who made it.
    let seconds = |s| ConversationEvent::TimerChanged { seconds: s };
    let mut on_bobs_side = vec![(seconds(60), true), (seconds(7), true)];
    let mut on_alices_side = vec![
        (seconds(3600), true),
        (seconds(60), false),
        (seconds(5), true),
    ];
    if winner == a {
        on_bobs_side.push((seconds(5), false));
    } else {
        on_alices_side.push((seconds(7), false));
    }
    assert_eq!(events(&p.bob, "alice"), on_bobs_side);
    assert_eq!(events(&p.alice, "bob"), on_alices_side);
    // An unknown contact has no conversation to set it on.
    assert!(matches!(
        p.alice
            .set_disappearing_timer("carol", &timer(&p.alice, 1, T0), T0),
        Err(Error::UnknownContact)
    ));
}

#[test]
fn sent_messages_disappear_after_the_timer_from_when_the_relay_took_them() {
    let mut p = common::pair();
    p.alice
        .set_disappearing_timer("bob", &timer(&p.alice, 60, T0), T0)
        .unwrap();
    let first = p.alice_sends("first secret");
    let second = p.alice_sends("second secret, still queued");
    assert_eq!(p.alice.next_expiry().unwrap(), None);
    assert!(p.alice.mark_sent(&first.id, T0 + 1000).unwrap());
    assert_eq!(p.alice.next_expiry().unwrap(), Some(T0 + 1000 + MINUTE));
    // Sent again (a resend): the deadline stays.
    p.alice.mark_sent(&first.id, T0 + 5000).unwrap();
    assert_eq!(p.alice.next_expiry().unwrap(), Some(T0 + 1000 + MINUTE));

    assert_eq!(p.alice.expire_messages(T0 + MINUTE).unwrap(), vec![]);
    p.alice.checkpoint().unwrap();
    let rows_before = sealed_messages(&p.alice_path());
    let expired = p.alice.expire_messages(T0 + 1000 + MINUTE).unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].contact, "bob");
    assert_eq!(
        bodies(&p.alice, "bob"),
        vec!["second secret, still queued".to_owned()]
    );
    // Gone from the file and its log; the history reads as one with a
    // message deleted, not a damaged one.
    let row = &rows_before
        .iter()
        .find(|r| r.1 == expired[0].seq as i64)
        .unwrap()
        .2;
    assert!(!on_disk(&p.alice_path(), row));
    assert!(p.alice.check().unwrap().is_ok());
    // The message still queued has no deadline until the relay takes it.
    assert_eq!(p.alice.next_expiry().unwrap(), None);
    p.alice.mark_sent(&second.id, T0 + 2 * MINUTE).unwrap();
    assert_eq!(p.alice.next_expiry().unwrap(), Some(T0 + 3 * MINUTE));
}

#[test]
fn received_messages_disappear_after_the_timer_from_when_they_were_read() {
    let mut p = common::pair();
    let hello = p.alice_sends("hello");
    deliver(&hello, "alice", &mut p.bob);
    p.bob
        .set_disappearing_timer("alice", &timer(&p.alice, 30, T0), T0)
        .unwrap();
    let mut seqs = Vec::new();
    for text in ["read soon", "read later", "never read"] {
        let m = p.alice_sends(text);
        deliver(&m, "alice", &mut p.bob);
        seqs.push(p.bob.history("alice", None, 1).unwrap().entries[0].seq);
    }
    // Received but unread: no countdown.
    assert_eq!(p.bob.expire_messages(T0 + 10 * MINUTE).unwrap(), vec![]);
    p.bob.checkpoint().unwrap();
    let rows_before = sealed_messages(&p.bob_path());
    assert!(p.bob.mark_read("alice", seqs[0], T0 + MINUTE).unwrap());
    assert!(!p.bob.mark_read("alice", seqs[0], T0 + MINUTE).unwrap());
    assert!(p.bob.mark_read("alice", seqs[1], T0 + 2 * MINUTE).unwrap());
    assert_eq!(
        p.bob.expire_messages(T0 + MINUTE + 30_000).unwrap(),
        vec![Expired {
            contact: "alice".into(),
            seq: seqs[0],
            attachment: None,
        }]
    );
    assert_eq!(
        p.bob.expire_messages(T0 + 3 * MINUTE).unwrap(),
        vec![Expired {
            contact: "alice".into(),
            seq: seqs[1],
            attachment: None,
        }]
    );
    assert_eq!(
        bodies(&p.bob, "alice"),
        vec!["hello".to_owned(), "never read".to_owned()]
    );
    for seq in &seqs[..2] {
        let row = &rows_before.iter().find(|r| r.1 == *seq as i64).unwrap().2;
        assert!(
            !on_disk(&p.bob_path(), row),
            "message {seq} is still on disk"
        );
    }
    // A message read before the timer was on keeps no deadline: "hello"
    // stays. One read with the timer off does not count down either.
    p.bob
        .set_disappearing_timer("alice", &timer(&p.alice, 0, T0 + 1), T0)
        .unwrap();
    assert!(p.bob.mark_read("alice", seqs[2], T0 + 4 * MINUTE).unwrap());
    assert_eq!(p.bob.next_expiry().unwrap(), None);
    assert!(matches!(
        p.bob.mark_read("alice", 999, T0),
        Err(Error::UnknownMessage(999))
    ));
}

#[test]
fn an_archive_leaves_out_the_messages_counting_down() {
    let mut p = common::pair();
    p.alice
        .set_disappearing_timer("bob", &timer(&p.alice, 3600, T0), T0)
        .unwrap();
    let gone = p.alice_sends("counting down");
    p.alice.mark_sent(&gone.id, T0).unwrap();
    p.alice_sends("queued, no deadline yet");
    let archive = p.dir.path().join("backup.sotto");
    let mut file = std::fs::File::create(&archive).unwrap();
    p.alice
        .export_archive(
            &mut file,
            b"archive passphrase",
            KdfParams::new(64, 1, 1).unwrap(),
            |_| {},
        )
        .unwrap();
    drop(file);
    let restored = Store::import_archive(
        p.dir.path().join("restored.db"),
        &mut std::fs::File::open(&archive).unwrap(),
        b"archive passphrase",
        b"new store passphrase",
        &options(),
        |_| {},
    )
    .unwrap();
    assert_eq!(
        bodies(&restored, "bob"),
        vec!["queued, no deadline yet".to_owned()]
    );
    assert!(restored.check().unwrap().is_ok());
    // The timer's change is kept as an event.
    assert_eq!(
        events(&restored, "bob"),
        vec![(ConversationEvent::TimerChanged { seconds: 3600 }, true)]
    );
}
