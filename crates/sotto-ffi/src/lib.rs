//! # sotto-ffi: Sotto for Kotlin, Swift and Python
//!
//! [UniFFI](https://mozilla.github.io/uniffi-rs/) bindings over
//! [`sotto::Client`], in UniFFI's proc-macro style (no UDL file). One
//! object, [`Client`], with async calls that become suspend functions in
//! Kotlin, `async` functions in Swift and coroutines in Python's asyncio;
//! records and enums for what they give back; one error enum,
//! [`SottoError`], raised as typed exceptions; events through a callback
//! interface ([`EventListener`]) or awaited one by one
//! ([`Client::next_event`]).
//!
//! docs/bindings.md is the manual: building for Android and iOS, the
//! Python package, the API in each language, threading and lifetimes.
//!
//! ## What crosses the boundary
//! Addresses, contact and group names are strings; message bodies are
//! bytes. The profile's passphrase is the one secret that crosses as a
//! string, going in; its bytes are wiped once the store is unlocked.
//! Nothing that comes out is a key.
//!
//! ## Runtime
//! The library owns one multi-threaded tokio runtime, started on the
//! first call and kept for the life of the process; async calls run on it
//! and the caller's executor only waits for them (see `runtime.rs`).
//!
//! ## `unsafe_code`
//! This crate is `#![forbid(unsafe_code)]`, like every crate of the
//! workspace, and it compiles so: no line written here is unsafe. The
//! FFI entry points (`extern "C"` functions under `#[unsafe(no_mangle)]`,
//! and the unsafe blocks that turn handles back into objects) come from
//! UniFFI's macros (`setup_scaffolding!`, `#[uniffi::export]`,
//! `#[derive(uniffi::Object)]` ...). rustc does not apply the
//! `unsafe_code` lint to code expanded from another crate's macros, so
//! `forbid` does not reach that generated code: its soundness rests on
//! UniFFI (pinned to one version in Cargo.toml) and on the generated
//! foreign code calling it as UniFFI intends. The lint still refuses any
//! unsafe code written in this crate.
#![forbid(unsafe_code)]

uniffi::setup_scaffolding!("sotto");

mod client;
mod error;
mod event;
mod runtime;
mod types;

pub use client::Client;
pub use error::{Result, SottoError};
pub use event::{Event, EventListener};
pub use types::{
    ClientOptions, Contact, DeliveryState, Device, DeviceList, GroupInfo, HistoryItem,
    IdentityChange, IncomingMessage, SendFailure, SendStatus, Sent, UnreadableRow,
};
