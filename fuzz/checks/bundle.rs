//! Checks of the `bundle` fuzz target, shared with the corpus replay in
//! `crates/sotto-core/tests/fuzz_corpus.rs`.
//!
//! Any input: `PreKeyBundle::decode` never panics and what it accepts
//! encodes back to exactly the input; `verify` never panics; and
//! `Session::initiate` with the bundle fails whenever `verify` does, and
//! when it succeeds produces a PreKeyMessage naming the bundle's prekeys.

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sotto_core::wire::PreKeyMessage;
use sotto_core::{IdentityKeyPair, PreKeyBundle, Session};

pub(crate) fn check(data: &[u8]) {
    let bundle = match PreKeyBundle::decode(data) {
        Ok(bundle) => bundle,
        Err(e) => {
            let _ = format!("{e} {e:?}");
            return;
        }
    };
    assert_eq!(bundle.encode(), data, "bundle did not round-trip");
    let _ = format!("{bundle:?}");
    let verified = bundle.verify();
    let alice = IdentityKeyPair::from_seed(&[0xA1; 32]);
    let mut rng = ChaCha20Rng::from_seed([5; 32]);
    match Session::initiate(&alice, &bundle, &mut rng) {
        Ok(mut session) => {
            assert!(
                verified.is_ok(),
                "initiated from a bundle that does not verify"
            );
            assert_eq!(session.remote_identity(), &bundle.identity_key);
            let wire = session.encrypt(b"first").expect("a new session encrypts");
            let message =
                PreKeyMessage::parse(&wire).expect("the first message is a PreKeyMessage");
            assert_eq!(message.signed_prekey_id, bundle.signed_prekey_id);
            assert_eq!(
                message.one_time_prekey_id,
                bundle.one_time_prekey.map(|(id, _)| id)
            );
        }
        Err(e) => {
            let _ = format!("{e} {e:?}");
        }
    }
}
