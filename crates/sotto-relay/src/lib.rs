//! sotto-relay
#![forbid(unsafe_code)]
