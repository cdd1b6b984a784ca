//! The seed corpora of `fuzz/corpus/` replayed through the fuzz targets'
//! own checks (`fuzz/checks/`), on the stable toolchain in the ordinary
//! test run: an input a fuzzer once found stays fixed.
#![cfg(test)]

#[path = "../../../fuzz/checks/relay_frames.rs"]
mod relay_frames;
#[path = "../../../fuzz/checks/relay_requests.rs"]
mod relay_requests;
#[path = "../../../fuzz/checks/replay.rs"]
mod replay;

#[test]
fn relay_frames_corpus_is_handled() {
    replay::replay("relay_frames", relay_frames::check);
}

#[test]
fn relay_requests_corpus_is_handled() {
    replay::replay("relay_requests", relay_requests::check);
}

#[test]
fn relay_requests_input_splits_into_frames() {
    assert!(relay_requests::frames(&[]).is_empty());
    assert_eq!(relay_requests::frames(&[0, 0]), vec![&[][..]]);
    assert_eq!(
        relay_requests::frames(&[0, 2, 7, 8, 0, 9, 1]),
        vec![&[7, 8][..], &[1][..]]
    );
    // At most 32 frames per input.
    assert_eq!(relay_requests::frames(&[0; 100]).len(), 32);
}
