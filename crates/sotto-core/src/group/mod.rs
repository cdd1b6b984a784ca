//! Groups (docs/protocol.md, section 15 "Groups: membership").

pub mod membership;
