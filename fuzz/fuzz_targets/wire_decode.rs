//! Fuzz target `wire_decode`: its checks are in `fuzz/checks/wire_decode.rs`,
//! which the corpus replay tests include too.
#![no_main]

#[allow(dead_code)]
#[path = "../checks/wire_decode.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
