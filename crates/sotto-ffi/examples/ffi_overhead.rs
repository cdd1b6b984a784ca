//! The Rust half of the bindings' overhead benchmark
//! (`crates/sotto-ffi/benches/ffi_overhead.py` runs it): the calls the
//! Python half makes through the bindings, made on `sotto::Client`
//! directly, against the same relay, with the same profiles' settings.
//!
//! ```text
//! ffi_overhead RELAY_ADDR WORK_DIR N
//! ```
//! Prints one JSON object: nanoseconds of each `send`, each `next` of an
//! event already waiting (a receive), each `is_verified` and each
//! `history` page of one message (small store reads: the cost of one
//! call, polled in place and run as a task by the bindings), N of each.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use sotto::store::{KdfParams, OpenOptions};
use sotto::{Client, ClientEvent, ClientOptions};

type Error = Box<dyn std::error::Error>;

fn options() -> Result<ClientOptions, Error> {
    Ok(ClientOptions {
        store: OpenOptions::new().kdf(KdfParams::new(64, 1, 1)?),
        ..ClientOptions::default()
    })
}

fn ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

async fn next_message(events: &mut sotto::Events) -> Result<(), Error> {
    loop {
        match events.next().await {
            Some(ClientEvent::Message(_)) => return Ok(()),
            Some(_) => {}
            None => return Err("the event stream ended".into()),
        }
    }
}

async fn run(relay: &str, dir: &std::path::Path, n: usize) -> Result<serde_json::Value, Error> {
    let alice = Client::create(dir.join("alice"), b"bench", options()?).await?;
    let bob = Client::create(dir.join("bob"), b"bench", options()?).await?;
    let mut bob_events = bob.events();
    let mut alice_events = alice.events();
    alice.register(relay).await?;
    bob.register(relay).await?;
    alice.add_contact("bob", &bob.address()).await?;
    bob.add_contact("alice", &alice.address()).await?;
    // The session exists before timing starts (the first message's X3DH
    // is not what is measured), and Alice has Bob's access key from his
    // answer (without it the relay takes only a first contact's allowance).
    alice.send("bob", b"hello").await?;
    next_message(&mut bob_events).await?;
    bob.send("alice", b"hi").await?;
    next_message(&mut alice_events).await?;

    let body = [7u8; 32];
    let mut send = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        alice.send("bob", &body).await?;
        send.push(ns(start));
    }
    // Every message stored and announced, then each waiting event read.
    while bob.history("alice", None, n + 1).await?.len() < n + 1 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut receive = Vec::with_capacity(n);
    while receive.len() < n {
        let start = Instant::now();
        let event = bob_events.next().await;
        let took = ns(start);
        match event {
            Some(ClientEvent::Message(_)) => receive.push(took),
            Some(_) => {}
            None => return Err("the event stream ended".into()),
        }
    }
    let mut call = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        alice.is_verified("bob").await?;
        call.push(ns(start));
    }
    let mut task = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        alice.history("bob", None, 1).await?;
        task.push(ns(start));
    }
    alice.disconnect().await;
    bob.disconnect().await;
    Ok(serde_json::json!({ "send": send, "receive": receive, "call": call, "task": task }))
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let [_, relay, dir, n] = args.as_slice() else {
        return Err("usage: ffi_overhead RELAY_ADDR WORK_DIR N".into());
    };
    let n: usize = n.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let out = runtime.block_on(run(relay, std::path::Path::new(dir), n))?;
    println!("{out}");
    Ok(())
}
