//! The parsers of linked devices never panic, on any bytes or text, and
//! what they accept round-trips: the checks of the `devices` fuzz target
//! (`fuzz/checks/devices.rs`), run on random and on mutated valid inputs.
#![cfg(test)]

#[path = "../../../fuzz/checks/devices.rs"]
mod devices;

use std::sync::LazyLock;

use devices::{ACCOUNT, CODE, DEVICE, LINK_KEY};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use sotto_core::{DeviceList, LinkAccept, LinkCode, LinkOffer, SignedDeviceList};

/// A valid input of each parser, made with the fuzz target's fixed keys:
/// a device list, the signed list, an offer, an acceptance, a link code.
static SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let v1 = DeviceList::primary(ACCOUNT.public(), 1_000);
    let v2 = v1.with_device(DEVICE.public(), 2_000).unwrap();
    let signed = v2.sign(&ACCOUNT).unwrap();
    let offer = LinkOffer::new(&LINK_KEY, &signed).unwrap();
    let accept = LinkAccept::new(&LINK_KEY, v2.version()).unwrap();
    vec![
        v2.to_bytes(),
        signed.to_bytes(),
        offer.to_bytes(),
        accept.to_bytes().to_vec(),
        CODE.to_string().into_bytes(),
    ]
});

#[test]
fn the_seeds_parse_and_verify_so_mutations_start_from_valid_input() {
    let [list, signed, offer, accept, code] = SEEDS.as_slice() else {
        panic!("five seeds");
    };
    let list = DeviceList::from_bytes(list).unwrap();
    assert_eq!(
        SignedDeviceList::from_bytes(signed)
            .unwrap()
            .verify(ACCOUNT.public())
            .unwrap(),
        list
    );
    let verified = LinkOffer::from_bytes(offer).unwrap().verify(&CODE).unwrap();
    assert_eq!(verified.device_list, list);
    LinkAccept::from_bytes(accept)
        .unwrap()
        .verify(&LINK_KEY, 2)
        .unwrap();
    let code: LinkCode = std::str::from_utf8(code).unwrap().parse().unwrap();
    assert_eq!(code, *CODE);
    for seed in SEEDS.iter() {
        devices::check(seed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_a_parser(data in vec(any::<u8>(), 0..1024)) {
        devices::check(&data);
    }

    #[test]
    fn mutated_valid_inputs_never_panic_a_parser(
        which in 0usize..5,
        edits in vec((any::<Index>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<Index>()),
        extra in vec(any::<u8>(), 0..3),
    ) {
        let mut data = SEEDS[which].clone();
        for (at, byte) in edits {
            let i = at.index(data.len());
            data[i] = byte;
        }
        if let Some(cut) = cut {
            data.truncate(cut.index(data.len() + 1));
        }
        data.extend(extra);
        devices::check(&data);
    }

    #[test]
    fn arbitrary_text_never_panics_the_link_code_reader(
        text in "\\PC{0,160}",
        body in "[a-zA-Z0-9 \\-=_é]{0,120}",
    ) {
        devices::check(text.as_bytes());
        devices::check(format!("sotto-link:{body}").as_bytes());
        devices::check(format!(" SOTTO-LINK:{body} ").as_bytes());
    }

    #[test]
    fn mistyped_link_codes_are_refused_or_read_back_whole(
        edits in vec((any::<Index>(), proptest::sample::select(
            "abcxyz234567ABXYZ019- é\t".chars().collect::<Vec<char>>(),
        )), 1..3),
    ) {
        let mut chars: Vec<char> = CODE.to_string().chars().collect();
        for (at, c) in edits {
            let i = at.index(chars.len());
            chars[i] = c;
        }
        let text: String = chars.into_iter().collect();
        devices::check(text.as_bytes());
        if let Ok(code) = text.parse::<LinkCode>() {
            // Only case or separators changed, or a typo the 16-bit
            // checksum let through: either way it reads back as itself.
            prop_assert_eq!(code.to_string().parse::<LinkCode>().ok(), Some(code));
        }
    }
}
