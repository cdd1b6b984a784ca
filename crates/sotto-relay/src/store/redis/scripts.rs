//! The Lua scripts of [`RedisStore`](super::RedisStore): each trait method
//! that changes more than one key is one script, which Redis runs as one
//! atomic step (nothing else runs in between), invoked by its SHA-1 with
//! `EVALSHA` (loaded on first use and again after a server restart).
//!
//! Every script starts with a flags line (Redis 7 "shebang"), then
//! `lua/common.lua` (key names and helpers), then the key layout's
//! envelope removal (`lua/standalone.lua` for one server, `lua/cluster.lua`
//! for a Redis Cluster, where a script touches one slot only), then
//! `lua/mailbox.lua` (a mailbox's removal), then its own body:
//!
//! - writers have no flags: Redis refuses them as a whole, before they
//!   run, when it is over `maxmemory`, so a script never stops half-way
//!   for lack of memory;
//! - deleters (`ack`, `sweep`, and on a Cluster the reconcile's `settle`)
//!   have `allow-oom`: they run over `maxmemory`, since deleting is what
//!   frees memory;
//! - readers (`fetch`, `usage`) have `no-writes`.

use redis::Script;

const COMMON: &str = include_str!("lua/common.lua");
const STANDALONE: &str = include_str!("lua/standalone.lua");
const CLUSTER: &str = include_str!("lua/cluster.lua");
const MAILBOX: &str = include_str!("lua/mailbox.lua");

const WRITES: &str = "";
const DELETES: &str = " flags=allow-oom";
const READS: &str = " flags=no-writes";

/// A script of the standalone layout with its flags line and the shared
/// functions.
fn script(flags: &str, body: &str) -> Script {
    Script::new(&format!(
        "#!lua{flags}\n{COMMON}\n{STANDALONE}\n{MAILBOX}\n{body}"
    ))
}

/// A script of the Cluster layout.
fn cluster_script(flags: &str, body: &str) -> Script {
    Script::new(&format!(
        "#!lua{flags}\n{COMMON}\n{CLUSTER}\n{MAILBOX}\n{body}"
    ))
}

/// The compiled (hashed) scripts, one per operation.
pub(super) struct Scripts {
    /// `enqueue` and `enqueue_many`.
    pub(super) enqueue: Script,
    /// `fetch`, in both layouts (an envelope on a Cluster holds no shared
    /// body, so the script reads its mailbox's slot only).
    pub(super) fetch: Script,
    pub(super) ack: Script,
    pub(super) sweep: Script,
    /// `usage`, in both layouts.
    pub(super) usage: Script,
    /// `publish_prekeys`, `take_bundle` and `take_bundle_v2`: one
    /// mailbox's keys, in both layouts.
    pub(super) publish_prekeys: Script,
    pub(super) take_bundle: Script,
    pub(super) take_bundle_v2: Script,
    pub(super) publish_device_list: Script,
    /// The Cluster layout's own.
    pub(super) cluster: ClusterScripts,
}

/// The scripts of the Cluster layout (docs/relay.md §9, "Redis Cluster"):
/// each touches one slot.
pub(super) struct ClusterScripts {
    /// The `{global}` slot's step of every operation: reservations, ids,
    /// totals, the expiry buckets. A writer (refused by a full server)
    /// when it reserves or gives out an id ...
    pub(super) account: Script,
    /// ... and a deleter (runs on a full server) when it only takes off
    /// the totals and forgets settled reservations.
    pub(super) release: Script,
    pub(super) enqueue: Script,
    pub(super) ack: Script,
    pub(super) sweep: Script,
    pub(super) settle: Script,
    pub(super) stale: Script,
    pub(super) kem_count: Script,
    pub(super) device_list: Script,
    pub(super) device_link: Script,
    pub(super) propagated: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
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
            cluster: ClusterScripts {
                account: cluster_script(WRITES, include_str!("lua/cluster/account.lua")),
                release: cluster_script(DELETES, include_str!("lua/cluster/account.lua")),
                enqueue: cluster_script(WRITES, include_str!("lua/cluster/enqueue.lua")),
                ack: cluster_script(DELETES, include_str!("lua/cluster/ack.lua")),
                sweep: cluster_script(DELETES, include_str!("lua/cluster/sweep.lua")),
                settle: cluster_script(DELETES, include_str!("lua/cluster/settle.lua")),
                stale: cluster_script(READS, include_str!("lua/cluster/stale.lua")),
                kem_count: cluster_script(READS, include_str!("lua/cluster/kem_count.lua")),
                device_list: cluster_script(WRITES, include_str!("lua/cluster/device_list.lua")),
                device_link: cluster_script(WRITES, include_str!("lua/cluster/device_link.lua")),
                propagated: cluster_script(DELETES, include_str!("lua/cluster/propagated.lua")),
            },
        }
    }
}
