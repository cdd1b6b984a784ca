//! Shared setup for the end-to-end tests: a relay on loopback and clients
//! with light key-derivation parameters (the passphrase KDF is not what
//! these tests are about).
#![allow(dead_code, unreachable_pub, missing_docs, unused_imports)]

mod intercepting_store;
pub mod log_capture;
pub use intercepting_store::{EnqueueHook, InterceptingStore, RefuseHook, RewriteHook};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sotto::relay::{
    FirstContactLimit, MemoryStore, Server, ServerConfig, ServerHandle, SqliteStore,
};
use sotto::store::{KdfParams, OpenOptions};
use sotto::{Client, ClientOptions, IncomingMessage};
use tokio_stream::{Stream, StreamExt};

pub const WAIT: Duration = Duration::from_secs(20);

pub fn options() -> ClientOptions {
    ClientOptions {
        store: OpenOptions::new().kdf(KdfParams::new(256, 1, 1).unwrap()),
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        one_time_prekeys: 20,
        ..ClientOptions::default()
    }
}

pub async fn memory_relay() -> ServerHandle {
    relay_with(ServerConfig::default(), Arc::new(MemoryStore::new())).await
}

/// A relay configuration for tests whose subject is not first contact:
/// every mailbox takes any number of envelopes from senders without its
/// access key. By default a mailbox takes 20 of those, then one per
/// 3 minutes (docs/relay.md §6), so a test that writes many messages to
/// someone who never wrote back would see them wait in the outbox.
pub fn unlimited_first_contacts() -> ServerConfig {
    ServerConfig {
        first_contact: FirstContactLimit {
            burst: u32::MAX,
            ..FirstContactLimit::default()
        },
        ..ServerConfig::default()
    }
}

pub async fn sqlite_relay(db: &Path) -> ServerHandle {
    sqlite_relay_with(db, ServerConfig::default()).await
}

pub async fn sqlite_relay_with(db: &Path, config: ServerConfig) -> ServerHandle {
    relay_with(config, Arc::new(SqliteStore::open(db).unwrap())).await
}

pub async fn sqlite_relay_on(db: &Path, addr: std::net::SocketAddr) -> ServerHandle {
    sqlite_relay_on_with(db, addr, ServerConfig::default()).await
}

pub async fn sqlite_relay_on_with(
    db: &Path,
    addr: std::net::SocketAddr,
    config: ServerConfig,
) -> ServerHandle {
    // The port was just released by the previous relay; retry briefly.
    for _ in 0..100 {
        if let Ok(server) = Server::bind(
            addr,
            config.clone(),
            Arc::new(SqliteStore::open(db).unwrap()),
        )
        .await
        {
            return server.spawn();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("could not bind {addr} again");
}

pub async fn relay_with(
    config: ServerConfig,
    store: Arc<dyn sotto::relay::MailboxStore>,
) -> ServerHandle {
    Server::bind("127.0.0.1:0", config, store)
        .await
        .unwrap()
        .spawn()
}

pub async fn client(dir: &Path, name: &str) -> Client {
    client_with(dir, name, options()).await
}

pub async fn client_with(dir: &Path, name: &str, options: ClientOptions) -> Client {
    Client::create(dir.join(name), name.as_bytes(), options)
        .await
        .unwrap()
}

pub async fn reopen(dir: &Path, name: &str, options: ClientOptions) -> Client {
    Client::open(dir.join(name), name.as_bytes(), options)
        .await
        .unwrap()
}

/// Reopens a profile in manual-receive mode (`auto_receive: false`), to see
/// the envelopes waiting on the relay.
pub async fn reopen_manual(dir: &Path, name: &str) -> Client {
    reopen(
        dir,
        name,
        ClientOptions {
            auto_receive: false,
            ..options()
        },
    )
    .await
}

/// Two registered clients that know each other as "alice" and "bob".
pub async fn pair(dir: &Path, relay: &str) -> (Client, Client) {
    let alice = client(dir, "alice").await;
    let bob = client(dir, "bob").await;
    alice.register(relay).await.unwrap();
    bob.register(relay).await.unwrap();
    alice.add_contact("bob", &bob.address()).await.unwrap();
    bob.add_contact("alice", &alice.address()).await.unwrap();
    (alice, bob)
}

pub async fn next_message(
    incoming: &mut (impl Stream<Item = IncomingMessage> + Unpin),
) -> IncomingMessage {
    tokio::time::timeout(WAIT, incoming.next())
        .await
        .expect("a message in time")
        .expect("stream open")
}

pub async fn expect_texts(
    incoming: &mut (impl Stream<Item = IncomingMessage> + Unpin),
    texts: &[&str],
) {
    for text in texts {
        let m = next_message(incoming).await;
        assert_eq!(String::from_utf8_lossy(&m.body), *text);
    }
}

/// Bodies of a history, oldest first.
pub async fn bodies(client: &Client, contact: &str) -> Vec<String> {
    let mut items = client.history(contact, None, 1000).await.unwrap();
    items.reverse();
    items
        .into_iter()
        .map(|i| String::from_utf8(i.body.unwrap()).unwrap())
        .collect()
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file of an SQLite database (main, WAL, SHM).
pub fn database_files(base: &Path) -> Vec<std::path::PathBuf> {
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| {
            let mut name = base.as_os_str().to_owned();
            name.push(suffix);
            std::path::PathBuf::from(name)
        })
        .filter(|p| p.exists())
        .collect()
}

#[path = "../../crates/sotto-relay/tests/support/redis.rs"]
mod test_redis;
pub use test_redis::TestRedis;
