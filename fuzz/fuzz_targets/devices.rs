//! Fuzz target `devices`: its checks are in `fuzz/checks/devices.rs`,
//! which the corpus replay and property tests include too.
#![no_main]

#[allow(dead_code)]
#[path = "../checks/devices.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
