//! Newest-first paging over a large history.
//!
//! Sealing dominates the cost of this test in unoptimised builds (about
//! 0.15 ms per message there, a few microseconds optimised), so the
//! 100,000 messages go in through one batch and the pages checked decrypt
//! a few thousand of them, not all.
#![cfg(test)]

mod common;

use common::{T0, options};
use sotto_store::{DeliveryState, Direction, NewMessage, Store};

const TOTAL: u64 = 100_000;

fn body(seq: u64) -> String {
    format!("message number {seq}")
}

fn direction(seq: u64) -> Direction {
    if seq % 2 == 1 {
        Direction::Incoming
    } else {
        Direction::Outgoing
    }
}

/// Checks that `page` holds exactly `seqs` (newest first), decrypted right.
fn check_page(page: &sotto_store::HistoryPage, seqs: &[u64]) {
    let got: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
    assert_eq!(got, seqs);
    for entry in &page.entries {
        let m = entry.message.as_ref().unwrap();
        assert_eq!(m.seq, entry.seq);
        assert_eq!(m.body.as_slice(), body(entry.seq).as_bytes());
        assert_eq!(m.timestamp, T0 + entry.seq);
        assert_eq!(m.direction, direction(entry.seq));
    }
}

#[test]
fn paging_over_100k_messages_returns_the_right_pages() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::create(dir.path().join("s.db"), b"pw", &options()).unwrap();
    store.add_contact("alice", "Alice", None).unwrap();

    let bodies: Vec<String> = (1..=TOTAL).map(body).collect();
    let messages: Vec<NewMessage<'_>> = (1..=TOTAL)
        .zip(&bodies)
        .map(|(seq, b)| NewMessage {
            direction: direction(seq),
            state: DeliveryState::Read,
            timestamp: T0 + seq,
            body: b.as_bytes(),
        })
        .collect();
    assert_eq!(
        store.import_messages("alice", &messages).unwrap(),
        1..TOTAL + 1
    );
    assert_eq!(store.message_count("alice").unwrap(), TOTAL);

    // The newest page, and following `next_before` from it.
    let page = store.history("alice", None, 25).unwrap();
    check_page(&page, &(TOTAL - 24..=TOTAL).rev().collect::<Vec<_>>());
    assert_eq!(page.next_before, Some(TOTAL - 24));
    let page = store.history("alice", page.next_before, 25).unwrap();
    check_page(&page, &(TOTAL - 49..=TOTAL - 25).rev().collect::<Vec<_>>());

    // A page in the middle, a large page, and the oldest end.
    let page = store.history("alice", Some(50_000), 10).unwrap();
    check_page(&page, &(49_990..50_000).rev().collect::<Vec<_>>());
    let page = store.history("alice", Some(70_001), 2_000).unwrap();
    check_page(&page, &(68_001..=70_000).rev().collect::<Vec<_>>());
    assert_eq!(page.next_before, Some(68_001));
    let page = store.history("alice", Some(3), 10).unwrap();
    check_page(&page, &[2, 1]);
    assert_eq!(page.next_before, None);
    assert!(
        store
            .history("alice", Some(1), 10)
            .unwrap()
            .entries
            .is_empty()
    );

    // Page boundaries across the whole range.
    for k in 0..100 {
        let before = TOTAL + 1 - k * 1_000;
        let page = store.history("alice", Some(before), 3).unwrap();
        check_page(&page, &[before - 1, before - 2, before - 3]);
        assert_eq!(page.next_before, Some(before - 3));
    }

    // After deleting some, pages skip them and stay full.
    assert!(store.delete_message("alice", 99_999).unwrap());
    assert!(store.delete_message("alice", 99_997).unwrap());
    let page = store.history("alice", None, 4).unwrap();
    check_page(&page, &[100_000, 99_998, 99_996, 99_995]);
    assert_eq!(store.message_count("alice").unwrap(), TOTAL - 2);
}
