//! # Sotto
//!
//! End-to-end encrypted messaging whose history lives only on the user's
//! devices. This facade re-exports the protocol core; the store, the relay
//! client and `sotto::Client` join it as they land.
#![forbid(unsafe_code)]

pub use sotto_core as core;

// The README's examples compile and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
struct ReadmeDoctests;
