//! Checks of the `wire_decode` fuzz target, shared with the corpus replay
//! in `crates/sotto-core/tests/fuzz_corpus.rs`.
//!
//! Any input: parsing never panics, the three parsers agree on what the
//! bytes are, and what parses is exactly one message: re-encoding the
//! parsed fields gives back the input byte for byte. The same bytes are
//! also opened as a sealed envelope (the outer layer of what a client
//! receives) addressed to a fixed identity, which must not panic either.

use std::sync::LazyLock;

use sotto_core::IdentityKeyPair;
use sotto_core::sealed::{self, SEALED_OVERHEAD};
use sotto_core::wire::{
    MAX_CIPHERTEXT_LEN, MIN_CIPHERTEXT_LEN, Message, PreKeyMessage, TYPE_MESSAGE,
    TYPE_PREKEY_MESSAGE, VERSION, WireMessage,
};

/// The identity sealed envelopes are opened with (Bob's of the
/// `session_decrypt` fixture).
static RECIPIENT: LazyLock<IdentityKeyPair> =
    LazyLock::new(|| IdentityKeyPair::from_seed(&[0xB0; 32]));

pub(crate) fn check(data: &[u8]) {
    match sealed::open(&RECIPIENT, data) {
        Ok(opened) => assert_eq!(opened.contents.len() + SEALED_OVERHEAD, data.len()),
        Err(e) => {
            let _ = format!("{e} {e:?}");
        }
    }
    let as_message = Message::parse(data);
    let as_prekey = PreKeyMessage::parse(data);
    match WireMessage::parse(data) {
        Ok(WireMessage::Message(m)) => {
            assert!(as_message.is_ok() && as_prekey.is_err());
            assert_eq!(encode_message(&m), data);
        }
        Ok(WireMessage::PreKey(p)) => {
            assert!(as_prekey.is_ok() && as_message.is_err());
            let mut out = vec![VERSION, TYPE_PREKEY_MESSAGE];
            out.extend_from_slice(p.identity_key.as_bytes());
            out.extend_from_slice(&p.base_key);
            out.extend_from_slice(&p.signed_prekey_id.get().to_be_bytes());
            match p.one_time_prekey_id {
                None => out.push(0x00),
                Some(id) => {
                    out.push(0x01);
                    out.extend_from_slice(&id.get().to_be_bytes());
                }
            }
            assert_eq!(
                out.len(),
                PreKeyMessage::prefix_len(p.one_time_prekey_id.is_some())
            );
            out.extend_from_slice(&encode_message(&p.message));
            assert_eq!(out, data);
        }
        Err(e) => {
            assert!(as_message.is_err() && as_prekey.is_err());
            // Error rendering never panics either.
            let _ = format!("{e} {e:?}");
        }
    }
}

fn encode_message(m: &Message<'_>) -> Vec<u8> {
    assert_eq!(&m.header.encode(), m.header_bytes);
    assert!((MIN_CIPHERTEXT_LEN..=MAX_CIPHERTEXT_LEN).contains(&m.ciphertext.len()));
    let mut out = vec![VERSION, TYPE_MESSAGE];
    out.extend_from_slice(m.header_bytes);
    out.extend_from_slice(m.ciphertext);
    out
}
