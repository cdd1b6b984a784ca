//! Fuzz target `store_open`: its checks are in `fuzz/checks/store_open.rs`,
//! which the corpus replay tests include too.
#![no_main]

#[allow(dead_code)]
#[path = "../checks/store_open.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
