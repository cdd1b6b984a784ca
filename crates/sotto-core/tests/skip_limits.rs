//! MAX_SKIP: a header that needs more than 1000 skipped keys in one chain
//! is refused with `TooManySkipped`, the session is unchanged, and the
//! conversation goes on. Large gaps are made honestly: the sender encrypts
//! that many messages and only the last one is delivered.
#![cfg(test)]

mod common;

use common::{Pair, reject_unchanged, text};
use sotto_core::{Error, MAX_SKIP};

fn too_many(gap: u64) -> Error {
    Error::TooManySkipped { gap, max: MAX_SKIP }
}

#[test]
fn gap_above_max_skip_in_the_current_chain_is_refused_and_session_unchanged() {
    assert_eq!(MAX_SKIP, 1000);
    let mut p = Pair::new(20);
    // Bob receives message 0 of Alice's chain: Nr = 1.
    let first = p.a_sends(&text(0));
    p.b_receives(&first, &text(0));
    // Messages 1..=1002 of the same chain.
    let wires: Vec<Vec<u8>> = (1..=1002).map(|i| p.a_sends(&text(i))).collect();
    let last = &wires[1001]; // index 1002: gap 1002 - 1 = 1001
    assert_eq!(reject_unchanged(&mut p.b, last, &mut p.rng), too_many(1001));
    // Exactly MAX_SKIP is allowed: index 1001, gap 1000.
    p.b_receives(&wires[1000], &text(1001));
    assert_eq!(p.b.skipped_key_count(), 1000);
    // Now the refused message is next in line.
    p.b_receives(last, &text(1002));
    // Every skipped one still decrypts, in any order.
    for i in (1..=1000).rev() {
        p.b_receives(&wires[i - 1], &text(i));
    }
    assert_eq!(p.b.skipped_key_count(), 0);
    p.round_trip("after the gap");
}

#[test]
fn gap_above_max_skip_via_previous_chain_length_is_refused_and_session_unchanged() {
    let mut p = Pair::new(21);
    // Alice's chain R1: Bob receives message 0 (Nr = 1) and answers; the
    // answer reaches Alice only after she sent 1002 more on R1.
    let first = p.a_sends(&text(0));
    p.b_receives(&first, &text(0));
    let answer = p.b_sends(b"answer");
    let r1: Vec<Vec<u8>> = (1..=1002).map(|i| p.a_sends(&text(i))).collect();
    p.a_receives(&answer, b"answer");
    // Alice's new chain R2 carries PN = 1003: Bob would have to skip
    // 1003 - 1 = 1002 keys of R1 first.
    let r2_first = p.a_sends(b"first on the new chain");
    assert_eq!(
        reject_unchanged(&mut p.b, &r2_first, &mut p.rng),
        too_many(1002)
    );
    // R1 still works as the current chain: index 1001 (gap exactly 1000).
    p.b_receives(&r1[1000], &text(1001));
    // Now PN - Nr = 1003 - 1002 = 1: the new chain is accepted.
    p.b_receives(&r2_first, b"first on the new chain");
    // The remaining R1 message arrives after the DH step, from the skipped store.
    p.b_receives(&r1[1001], &text(1002));
    p.b_receives(&r1[0], &text(1));
    p.round_trip("after the gap");
}

#[test]
fn gap_above_max_skip_at_the_start_of_a_new_chain_is_refused_and_session_unchanged() {
    let mut p = Pair::new(22);
    // Alice's next chain starts right away (Pair ends with her receiving).
    let wires: Vec<Vec<u8>> = (0..=1001).map(|i| p.a_sends(&text(i))).collect();
    // Index 1001 of a new chain: 1001 keys to skip.
    assert_eq!(
        reject_unchanged(&mut p.b, &wires[1001], &mut p.rng),
        too_many(1001)
    );
    // Index 1000 of the new chain: exactly MAX_SKIP, accepted.
    p.b_receives(&wires[1000], &text(1000));
    p.b_receives(&wires[1001], &text(1001));
    p.b_receives(&wires[0], &text(0));
    p.b_receives(&wires[999], &text(999));
    assert_eq!(p.b.skipped_key_count(), 998);
    p.round_trip("after the gap");
}

#[test]
fn gap_above_max_skip_in_the_responders_very_first_message_is_refused() {
    use common::{FIRST_OPK_ID, Party, rng};
    use sotto_core::Session;

    let mut rng = rng(23);
    let alice = Party::new(&mut rng, 0);
    let mut bob = Party::new(&mut rng, 1);
    let mut a = Session::initiate(&alice.identity, &bob.bundle(Some(FIRST_OPK_ID)), &mut rng)
        .expect("initiate");
    let wires: Vec<Vec<u8>> = (0..=1001)
        .map(|i| a.encrypt(&text(i)).expect("encrypt"))
        .collect();
    // Bob has no session yet: N = 1001 of the first chain is too far.
    assert_eq!(
        bob.respond(&wires[1001], &mut rng).err(),
        Some(too_many(1001))
    );
    assert!(bob.prekeys.has_one_time(FIRST_OPK_ID));
    let (mut b, t) = bob.respond(&wires[1000], &mut rng).expect("respond");
    assert_eq!(t, text(1000));
    assert_eq!(b.skipped_key_count(), 1000);
    assert_eq!(
        b.decrypt(&wires[1001], &mut rng).expect("decrypt"),
        text(1001)
    );
    assert_eq!(b.decrypt(&wires[3], &mut rng).expect("decrypt"), text(3));
}
