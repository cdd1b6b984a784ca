//! Fuzz target `relay_frames`: its checks are in `fuzz/checks/relay_frames.rs`,
//! which the corpus replay tests include too.
#![no_main]

#[allow(dead_code)]
#[path = "../checks/relay_frames.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
