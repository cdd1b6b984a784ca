//! The Lua scripts of [`RedisStore`](super::RedisStore): each trait method
//! that changes more than one key is one script, which Redis runs as one
//! atomic step (nothing else runs in between), invoked by its SHA-1 with
//! `EVALSHA` (loaded on first use and again after a server restart).
//!
//! Every script starts with a flags line (Redis 7 "shebang"), then
//! `lua/common.lua` (key names and the deletion every method shares), then
//! its own body:
//!
//! - writers have no flags: Redis refuses them as a whole, before they
//!   run, when it is over `maxmemory`, so a script never stops half-way
//!   for lack of memory;
//! - deleters (`ack`, `sweep`) have `allow-oom`: they run over
//!   `maxmemory`, since deleting is what frees memory;
//! - readers (`fetch`, `usage`) have `no-writes`.

use redis::Script;

const COMMON: &str = include_str!("lua/common.lua");

/// A script with its flags line and the shared functions.
fn script(flags: &str, body: &str) -> Script {
    Script::new(&format!("#!lua{flags}\n{COMMON}\n{body}"))
}

/// The compiled (hashed) scripts, one per operation.
pub(super) struct Scripts {
    /// `enqueue` and `enqueue_many`.
    pub(super) enqueue: Script,
    pub(super) fetch: Script,
    pub(super) ack: Script,
    pub(super) sweep: Script,
    pub(super) usage: Script,
    pub(super) publish_prekeys: Script,
    pub(super) take_bundle: Script,
    pub(super) take_bundle_v2: Script,
    pub(super) publish_device_list: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        const WRITES: &str = "";
        const DELETES: &str = " flags=allow-oom";
        const READS: &str = " flags=no-writes";
        Self {
            enqueue: script(WRITES, include_str!("lua/enqueue.lua")),
            fetch: script(READS, include_str!("lua/fetch.lua")),
            ack: script(DELETES, include_str!("lua/ack.lua")),
            sweep: script(DELETES, include_str!("lua/sweep.lua")),
            usage: script(READS, include_str!("lua/usage.lua")),
            publish_prekeys: script(WRITES, include_str!("lua/publish_prekeys.lua")),
            take_bundle: script(WRITES, include_str!("lua/take_bundle.lua")),
            take_bundle_v2: script(WRITES, include_str!("lua/take_bundle_v2.lua")),
            publish_device_list: script(WRITES, include_str!("lua/publish_device_list.lua")),
        }
    }
}
