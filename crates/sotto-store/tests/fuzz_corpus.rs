//! The seed corpus of `fuzz/corpus/store_open` replayed through the fuzz
//! target's own check (`fuzz/checks/store_open.rs`), on the stable
//! toolchain in the ordinary test run: an input a fuzzer once found stays
//! fixed.
#![cfg(test)]

#[path = "../../../fuzz/checks/replay.rs"]
mod replay;
#[path = "../../../fuzz/checks/store_open.rs"]
mod store_open;

#[test]
fn store_open_corpus_is_handled() {
    replay::replay("store_open", store_open::check);
}

#[test]
fn store_open_input_sets_bytes_then_truncates() {
    let template = [0u8; 10];
    assert_eq!(store_open::edited(&template, &[]), template);
    // Offset 12 wraps to 2; the one leftover byte truncates to 7 % 10.
    assert_eq!(
        store_open::edited(&template, &[0, 0, 12, 0xAA, 7]),
        [0, 0, 0xAA, 0, 0, 0, 0]
    );
}
