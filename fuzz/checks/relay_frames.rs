//! Checks of the `relay_frames` fuzz target, shared with the corpus replay
//! in `crates/sotto-relay/tests/fuzz_corpus.rs`.
//!
//! Any input, read as a frame body either way: `RequestFrame::decode` (the
//! relay reading a client) and `ServerFrame::decode` (a client reading the
//! relay) never panic, and what they accept encodes back to exactly the
//! input and decodes again to the same value.

use sotto_relay::protocol::{RequestFrame, ServerFrame};

pub(crate) fn check(data: &[u8]) {
    match RequestFrame::decode(data) {
        Ok(frame) => {
            let body = frame.request.encode(frame.request_id);
            assert_eq!(RequestFrame::decode(&body).as_ref(), Ok(&frame));
            assert_eq!(body, data, "request did not re-encode to its input");
        }
        Err(e) => {
            let _ = format!("{e} {e:?}");
        }
    }
    match ServerFrame::decode(data) {
        Ok(frame) => {
            let _ = format!("{frame:?}");
            let body = frame.encode();
            assert_eq!(ServerFrame::decode(&body).as_ref(), Ok(&frame));
            assert_eq!(body, data, "server frame did not re-encode to its input");
        }
        Err(e) => {
            let _ = format!("{e} {e:?}");
        }
    }
}
