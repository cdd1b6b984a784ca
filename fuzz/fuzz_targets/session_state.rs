//! Fuzz target `session_state`: its checks are in `fuzz/checks/session_state.rs`,
//! which the corpus replay tests include too.
#![no_main]

#[allow(dead_code)]
#[path = "../checks/session_state.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
