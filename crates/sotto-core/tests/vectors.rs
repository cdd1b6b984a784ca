//! The committed test vectors are exactly what the code generates, and the
//! checker replays them (and catches a tampered file).
#![cfg(test)]

#[path = "../examples/vectors/conformance.rs"]
mod conformance;

const VECTORS: &str = include_str!("../../../docs/test-vectors/v1.json");
const VECTORS_V2: &str = include_str!("../../../docs/test-vectors/v2.json");

#[test]
fn committed_vectors_are_exactly_what_the_code_generates() {
    let generated = conformance::generate_json().expect("generation");
    assert!(
        generated == VECTORS,
        "docs/test-vectors/v1.json is stale: run `cargo run -p sotto-core --example vectors -- generate docs/test-vectors/v1.json`"
    );
}

#[test]
fn checker_replays_the_committed_vectors_without_mismatch() {
    let report = conformance::check_json(VECTORS);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    // Two X3DH runs, two sessions with dozens of events, padding entries.
    assert!(report.checks > 50, "{}", report.summary());
}

#[test]
fn checker_reports_a_tampered_wire_byte() {
    let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let mut v = v;
    let wire = v["sessions"][0]["events"][0]["wire"]
        .as_str()
        .unwrap()
        .to_owned();
    // Flip the last hex digit (inside the AEAD tag).
    let mut chars: Vec<char> = wire.chars().collect();
    let last = chars.len() - 1;
    chars[last] = if chars[last] == '0' { '1' } else { '0' };
    v["sessions"][0]["events"][0]["wire"] = serde_json::Value::String(chars.into_iter().collect());
    let report = conformance::check_json(&v.to_string());
    // The send no longer matches, and Bob's receive of it fails.
    assert!(report.failures.len() >= 2, "{:?}", report.failures);
    assert!(
        report
            .summary()
            .ends_with(&format!("{} failed", report.failures.len()))
    );
}

#[test]
fn checker_reports_wrong_shared_secret_and_padding() {
    let mut v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    v["x3dh"][1]["shared_secret"] = serde_json::Value::String("00".repeat(32));
    v["padding"][3]["padded_length"] = serde_json::json!(255);
    let report = conformance::check_json(&v.to_string());
    assert_eq!(report.failures.len(), 3, "{:?}", report.failures);
}

#[test]
fn checker_reports_unused_or_missing_ratchet_keys() {
    let mut v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    v["sessions"][1]["bob_ratchet_privates"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::Value::String("11".repeat(32)));
    let report = conformance::check_json(&v.to_string());
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
}

#[test]
fn checker_rejects_a_file_outside_the_schema() {
    let report = conformance::check_json(r#"{"version": 1}"#);
    assert_eq!(report.failures.len(), 1);
}

#[test]
fn checker_reports_a_tampered_offer_and_a_wrong_device_list_verdict() {
    let mut v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let offer = v["devices"]["links"][0]["offer"]
        .as_str()
        .unwrap()
        .to_owned();
    // Flip the last hex digit (inside the MAC).
    let mut chars: Vec<char> = offer.chars().collect();
    let last = chars.len() - 1;
    chars[last] = if chars[last] == '0' { '1' } else { '0' };
    v["devices"]["links"][0]["offer"] = serde_json::Value::String(chars.into_iter().collect());
    v["devices"]["updates"][3]["error"] = serde_json::Value::Null;
    v["devices"]["invalid_lists"][0]["error"] = serde_json::json!("empty");
    let report = conformance::check_json(&v.to_string());
    // The offer differs, and the new device refuses it; the older list is
    // refused; the format byte is not an empty list.
    assert_eq!(report.failures.len(), 4, "{:?}", report.failures);
}

#[test]
fn checker_reports_a_tampered_detached_blob_and_references() {
    let mut v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    // Another high nibble in the blob's byte 10 (the checker's own bit
    // flips at bit 0 cannot undo it).
    let blob = v["detached_bodies"][1]["blob"].as_str().unwrap().to_owned();
    let mut chars: Vec<char> = blob.chars().collect();
    chars[20] = if chars[20] == '0' { '8' } else { '0' };
    v["detached_bodies"][1]["blob"] = serde_json::Value::String(chars.into_iter().collect());
    // A reference naming a blob one byte longer (format(1) || key(32) ||
    // u32be(length) || digest(32), in hex).
    let reference = v["detached_bodies"][3]["reference"]
        .as_str()
        .unwrap()
        .to_owned();
    let (head, rest) = reference.split_at(2 * 33);
    let (len, digest) = rest.split_at(8);
    let len = u32::from_str_radix(len, 16).unwrap() + 1;
    v["detached_bodies"][3]["reference"] = serde_json::json!(format!("{head}{len:08x}{digest}"));
    // A reference naming another blob of the same length: the high bit of
    // its digest's last byte flipped (the checker's own flip of bit 0
    // cannot undo it).
    let reference = v["detached_bodies"][4]["reference"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut chars: Vec<char> = reference.chars().collect();
    let high = chars.len() - 2;
    let nibble = chars[high].to_digit(16).unwrap() ^ 8;
    chars[high] = char::from_digit(nibble, 16).unwrap();
    v["detached_bodies"][4]["reference"] = serde_json::Value::String(chars.into_iter().collect());
    let report = conformance::check_json(&v.to_string());
    // The blob differs from the sealed one, the reference made from it
    // (its digest) differs from the file's, and it does not open; each
    // reference differs from the one made, and its blob does not open.
    assert_eq!(report.failures.len(), 7, "{:?}", report.failures);
}

#[test]
fn checker_replays_the_group_section() {
    let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    // A rotation, a replay, a message of an unknown chain, skipped keys
    // left in the receiver's state.
    let ops: Vec<&str> = groups
        .iter()
        .flat_map(|g| g["events"].as_array().unwrap())
        .map(|e| e["op"].as_str().unwrap())
        .collect();
    for op in [
        "send",
        "rotate",
        "distribution",
        "process",
        "receive",
        "refuse",
    ] {
        assert!(ops.contains(&op), "no {op} event");
    }
    let without: serde_json::Value = {
        let mut w = v.clone();
        w["groups"] = serde_json::json!([]);
        w
    };
    let all = conformance::check_json(VECTORS);
    let rest = conformance::check_json(&without.to_string());
    assert!(rest.failures.is_empty(), "{:?}", rest.failures);
    assert!(
        all.checks >= rest.checks + 50,
        "{} vs {}",
        all.summary(),
        rest.summary()
    );
}

#[test]
fn checker_reports_a_tampered_group_message_a_wrong_refusal_and_a_wrong_chain_id() {
    let mut v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    // Send 3 of the first group: its last hex digit (inside the signature).
    let events = v["groups"][0]["events"].as_array_mut().unwrap();
    let send = events
        .iter_mut()
        .filter(|e| e["op"] == "send")
        .nth(3)
        .unwrap();
    let wire = send["wire"].as_str().unwrap().to_owned();
    let mut chars: Vec<char> = wire.chars().collect();
    let last = chars.len() - 1;
    chars[last] = if chars[last] == '0' { '1' } else { '0' };
    send["wire"] = serde_json::Value::String(chars.into_iter().collect());
    // The second group's refusal of a new-chain message named wrongly.
    let refusal = v["groups"][1]["events"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["op"] == "refuse")
        .unwrap();
    refusal["error"] = serde_json::json!("duplicate");
    // A chain id that is not the u32be of its draw.
    v["groups"][1]["chains"][1]["chain_id"] = serde_json::json!(7);
    let report = conformance::check_json(&v.to_string());
    // The send differs, its receive fails and so the receiver's final
    // state differs; the refusal's code differs; the chain id differs from
    // its draw.
    assert_eq!(report.failures.len(), 5, "{:?}", report.failures);
}

#[test]
fn checker_reports_a_tampered_group_change_winner_and_refusal() {
    let mut v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let g = &mut v["group_membership"];
    // The high bit of the add's last signature byte (the checker's own
    // flips of bit 0 cannot undo it): the change differs from the one
    // made, and the file's bytes no longer verify.
    let change = g["changes"][1]["change"].as_str().unwrap().to_owned();
    let mut chars: Vec<char> = change.chars().collect();
    let high = chars.len() - 2;
    let nibble = chars[high].to_digit(16).unwrap() ^ 8;
    chars[high] = char::from_digit(nibble, 16).unwrap();
    g["changes"][1]["change"] = serde_json::Value::String(chars.into_iter().collect());
    // Another "since" for a member of the create's state.
    g["changes"][0]["state"]["members"][0]["since"] = serde_json::json!(2);
    // The other change of a concurrent pair named the winner: both
    // arrival orders disagree with it.
    let winner = g["concurrent"][0]["winner"].as_u64().unwrap();
    g["concurrent"][0]["winner"] = serde_json::json!(1 - winner);
    // A refusal for another reason.
    g["invalid"][2]["error"] = serde_json::json!("already_member");
    let report = conformance::check_json(&v.to_string());
    assert_eq!(report.failures.len(), 6, "{:?}", report.failures);
}

#[test]
fn committed_v2_vectors_are_exactly_what_the_code_generates() {
    let generated = conformance::v2::generate_json().expect("generation");
    assert!(
        generated == VECTORS_V2,
        "docs/test-vectors/v2.json is stale: run `cargo run -p sotto-core --example vectors -- generate-v2 docs/test-vectors/v2.json`"
    );
}

#[test]
fn checker_replays_the_committed_v2_vectors_without_mismatch() {
    let report = conformance::v2::check_json(VECTORS_V2);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    // Three bundles, four key agreements, three sessions, refusals.
    assert!(report.checks > 100, "{}", report.summary());
    let v: serde_json::Value = serde_json::from_str(VECTORS_V2).unwrap();
    let versions: Vec<u64> = v["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["versions"].as_u64().unwrap())
        .collect();
    assert!(versions.contains(&2) && versions.contains(&3));
}

/// `hex` with the high bit of its byte `at` flipped.
fn flip_high_bit(hex: &str, at: usize) -> String {
    let mut chars: Vec<char> = hex.chars().collect();
    let nibble = chars[2 * at].to_digit(16).unwrap() ^ 8;
    chars[2 * at] = char::from_digit(nibble, 16).unwrap();
    chars.into_iter().collect()
}

#[test]
fn v2_checker_reports_a_tampered_kem_ciphertext_seed_and_first_message() {
    let mut v: serde_json::Value = serde_json::from_str(VECTORS_V2).unwrap();
    // A CT that is not Encaps(ek, m): it differs, and the responder's SK
    // (from ML-KEM's implicit rejection) differs from the file's.
    let ct = v["pqxdh"][1]["kem_ciphertext"].as_str().unwrap().to_owned();
    v["pqxdh"][1]["kem_ciphertext"] = serde_json::json!(flip_high_bit(&ct, 100));
    // Another KEM seed: ek, its signature and the encoding differ.
    let seed = v["bundles"][2]["kem_prekey_seed"]
        .as_str()
        .unwrap()
        .to_owned();
    v["bundles"][2]["kem_prekey_seed"] = serde_json::json!(flip_high_bit(&seed, 0));
    let report = conformance::v2::check_json(&v.to_string());
    assert!(report.failures.len() >= 5, "{:?}", report.failures);

    // A first message whose CT was changed: it differs from the one sent,
    // and Bob cannot decrypt it.
    let mut v: serde_json::Value = serde_json::from_str(VECTORS_V2).unwrap();
    let wire = v["sessions"][0]["events"][0]["wire"]
        .as_str()
        .unwrap()
        .to_owned();
    let ct_at = 2 + 32 + 32 + 4 + 1 + 4 + 4;
    v["sessions"][0]["events"][0]["wire"] = serde_json::json!(flip_high_bit(&wire, ct_at + 7));
    let report = conformance::v2::check_json(&v.to_string());
    assert!(
        report.failures.iter().any(|f| f.contains("wire differs"))
            && report
                .failures
                .iter()
                .any(|f| f.contains("failed to decrypt send 0")),
        "{:?}",
        report.failures
    );
}

#[test]
fn v2_checker_reports_a_wrong_refusal_code() {
    let mut v: serde_json::Value = serde_json::from_str(VECTORS_V2).unwrap();
    v["invalid_bundles"][0]["error"] = serde_json::json!("invalid_kem_key");
    v["invalid_prekey_messages"][0]["error"] = serde_json::json!("unknown_kem_prekey");
    let report = conformance::v2::check_json(&v.to_string());
    assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
}

#[test]
fn v2_checker_rejects_a_file_outside_the_schema() {
    let report = conformance::v2::check_json(VECTORS);
    assert_eq!(report.failures.len(), 1);
}
