//! sotto-store
#![forbid(unsafe_code)]
