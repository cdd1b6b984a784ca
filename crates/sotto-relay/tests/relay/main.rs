//! Integration tests of the relay: real server, real client, loopback only.
//! Every loop is bounded in count and time.

// Test helpers (not only `#[test]` functions) may fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[cfg(feature = "redis")]
#[path = "../support/redis.rs"]
mod test_redis;

mod abuse;
mod access;
mod auth;
mod binary;
mod blobs;
mod delivery;
mod device_lists;
mod exhaustion;
mod expiry;
mod full_disk;
mod gated_store;
mod limits;
mod metrics;
mod multi_send;
mod not_a_relay;
mod prekeys;
#[cfg(feature = "redis")]
mod redis_cluster_push;
#[cfg(feature = "redis")]
mod redis_push;
mod shutdown;
mod storage;
#[cfg(feature = "tls")]
mod tls;
mod version;
