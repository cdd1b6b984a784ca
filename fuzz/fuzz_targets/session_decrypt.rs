//! Fuzz target `session_decrypt`: its checks are in `fuzz/checks/session_decrypt.rs`,
//! which the corpus replay tests include too.
#![no_main]

#[allow(dead_code)]
#[path = "../checks/session_decrypt.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
