//! The Redis server of the tests and benchmarks that need one, shared by
//! the relay's tests (`tests/relay/redis_push.rs`), the workspace's tests
//! (`tests/common`) and the benchmarks (`benches/benches/relay.rs`), each
//! of which includes this file by path.
//!
//! The server is named by `SOTTO_TEST_REDIS_URL` (`.ci/run` starts one).
//! Each user gets a key prefix of its own, so users run in parallel on one
//! server, and the prefix's keys are deleted on drop.
#![allow(unreachable_pub, dead_code, clippy::panic, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The variable that names the server.
pub const REDIS_URL_VAR: &str = "SOTTO_TEST_REDIS_URL";

/// A Redis server and a fresh key prefix on it.
pub struct TestRedis {
    pub url: String,
    pub prefix: String,
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

impl TestRedis {
    /// The server with a prefix starting `sotto-<name>-`. Without
    /// `SOTTO_TEST_REDIS_URL`: a panic when `CI` is set (a test must not
    /// pass by being skipped), else `None` and a note on stderr.
    pub fn new(name: &str) -> Option<Self> {
        let url = match std::env::var(REDIS_URL_VAR) {
            Ok(url) if !url.is_empty() => url,
            _ if in_ci() => panic!(
                "{REDIS_URL_VAR} is not set and CI is: {name} needs a Redis server \
                 (`.ci/run` starts one) and must not pass by being skipped"
            ),
            _ => {
                eprintln!("{name} skipped: set {REDIS_URL_VAR}=redis://127.0.0.1:PORT to run it");
                return None;
            }
        };
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let prefix = format!(
            "sotto-{name}-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Some(Self { url, prefix })
    }

    /// Runs one command and returns its answer.
    pub fn command<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let client = redis::Client::open(self.url.as_str()).expect("Redis URL");
        let mut conn = client.get_connection().expect("Redis connection");
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut conn).expect("Redis command")
    }

    /// The field `name` of `INFO section`.
    pub fn info(&self, section: &str, name: &str) -> Option<String> {
        let info: String = self.command(&["INFO", section]);
        let field = format!("{name}:");
        info.lines()
            .find_map(|l| l.trim().strip_prefix(field.as_str()).map(str::to_owned))
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let pattern = format!("{}:*", self.prefix);
        let mut cursor = 0u64;
        loop {
            let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(10_000)
                .query(&mut conn)
            else {
                return;
            };
            if !keys.is_empty() {
                let _ = redis::cmd("UNLINK").arg(&keys).query::<()>(&mut conn);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}
