//! `Debug` output of sender keys, distributions and receivers never
//! contains a chain key, message key or signing key.
#![cfg(test)]

mod group_common;

use group_common::Group;

/// The renderings a secret could leak in: lower and upper hex, and the
/// `Debug` of the byte array or slice.
fn renderings(secret: &[u8]) -> Vec<String> {
    vec![
        hex::encode(secret),
        hex::encode_upper(secret),
        format!("{secret:?}"),
        format!("{:?}", &secret[..8])
            .trim_end_matches(']')
            .to_string(),
    ]
}

fn assert_no_leak(debug: &str, secret: &[u8], what: &str) {
    assert!(
        secret.iter().any(|&b| b != 0),
        "{what}: test secret is all zero"
    );
    for r in renderings(secret) {
        assert!(!debug.contains(&r), "{what} leaked as {r} in {debug}");
    }
}

#[test]
fn debug_of_sender_keys_distributions_and_receivers_is_redacted() {
    let mut g = Group::new(50);
    let wires = g.send_many(0, 3);
    g.receive(&wires[2], 2);

    // SenderKey = version, kind, group(32), chain id, iteration, chain
    // key(32), signing seed(32).
    let sender = g.alice.to_bytes();
    let debug = format!("{:?} {:#?}", g.alice, g.alice);
    assert!(debug.contains("redacted"));
    assert_no_leak(&debug, &sender[42..74], "sender chain key");
    assert_no_leak(&debug, &sender[74..106], "signing seed");

    // Distribution = version, group(32), chain id, iteration, chain
    // key(32), signing public key(32).
    let distribution = g.alice.distribution();
    let bytes = distribution.to_bytes();
    let debug = format!("{distribution:?} {distribution:#?}");
    assert!(debug.contains("redacted"));
    assert_no_leak(&debug, &bytes[41..73], "distributed chain key");

    // Receiver: one chain (key at 43..75), two skipped keys (40 bytes
    // each from 109, the key in the last 32).
    let receiver = g.bob.to_bytes();
    assert_eq!(receiver.len(), 109 + 2 * 40);
    let debug = format!("{:?} {:#?}", g.bob, g.bob);
    assert!(debug.contains("redacted"));
    assert_no_leak(&debug, &receiver[43..75], "receiver chain key");
    for k in 0..2 {
        let at = 109 + 40 * k + 8;
        assert_no_leak(&debug, &receiver[at..at + 32], "skipped message key");
    }
}
