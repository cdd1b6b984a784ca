//! Fuzz target `group_membership`: its checks are in
//! `fuzz/checks/group_membership.rs`, which the corpus replay and property
//! tests include too.
#![no_main]

#[allow(dead_code)]
#[path = "../checks/group_membership.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
