//! Group chats end to end (docs/groups.md): a group of five on a relay,
//! messages with members offline and a member removed in the middle, a
//! forged message, a stranger's message, and a scan of every file for the
//! plaintexts.
#![cfg(test)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{WAIT, client, contains, sqlite_relay_with, unlimited_first_contacts};
use sotto::{Client, ClientEvent, GroupId};

/// `names` registered on `relay`, every one a contact of every other.
async fn people(dir: &Path, relay: &str, names: &[&str]) -> Vec<Client> {
    let mut clients = Vec::new();
    for name in names {
        let c = client(dir, name).await;
        c.register(relay).await.unwrap();
        clients.push(c);
    }
    for (i, a) in clients.iter().enumerate() {
        for (j, b) in clients.iter().enumerate() {
            if i != j {
                a.add_contact(names[j], &b.address()).await.unwrap();
            }
        }
    }
    clients
}

/// Waits until `client` has `count` messages in `group`'s history, and
/// returns the bodies, oldest first.
async fn group_bodies(client: &Client, group: &GroupId, count: usize) -> Vec<String> {
    let group = sotto::group_id_hex(group);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let _ = client.sync().await;
        if let Ok(mut items) = client.group_history(&group, None, 1000).await
            && items.len() >= count
        {
            items.reverse();
            return items
                .into_iter()
                .map(|i| String::from_utf8(i.body.unwrap()).unwrap())
                .collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} group messages in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `client` knows `group`.
async fn knows(client: &Client, group: &GroupId) {
    let group = sotto::group_id_hex(group);
    let deadline = tokio::time::Instant::now() + WAIT;
    while client.group(&group).await.is_err() {
        let _ = client.sync().await;
        assert!(tokio::time::Instant::now() < deadline, "the group in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_five_talks_and_a_removed_member_reads_nothing_after() {
    let dir = tempfile::tempdir().unwrap();
    let relay = sqlite_relay_with(&dir.path().join("relay.db"), unlimited_first_contacts()).await;
    let addr = relay.local_addr().to_string();
    let names = ["alice", "bob", "carol", "dave", "erin"];
    let all = people(dir.path(), &addr, &names).await;
    for c in &all {
        c.connect(&addr).await.unwrap();
    }
    let (alice, bob, carol, dave, erin) = (&all[0], &all[1], &all[2], &all[3], &all[4]);

    let mut changes = bob.events();
    let group = alice
        .create_group("garden club 7f3a", &["bob", "carol", "dave", "erin"])
        .await
        .unwrap();
    for c in &all[1..] {
        knows(c, &group).await;
    }
    // Bob heard of it as an event.
    let joined = tokio::time::timeout(WAIT, async {
        while let Some(event) = changes.next().await {
            if let ClientEvent::GroupChanged(change) = event {
                return change;
            }
        }
        panic!("events ended");
    })
    .await
    .unwrap();
    assert!(joined.joined);
    assert_eq!(joined.name, "garden club 7f3a");
    let info = carol.group("garden club 7f3a").await.unwrap();
    assert_eq!(info.members.len(), 5);

    let hex = sotto::group_id_hex(&group);
    alice.send_to_group(&hex, b"hello everyone").await.unwrap();
    bob.send_to_group("garden club 7f3a", b"hi from bob")
        .await
        .unwrap();
    for c in &all {
        let bodies = group_bodies(c, &group, 2).await;
        assert!(bodies.contains(&"hello everyone".to_owned()));
        assert!(bodies.contains(&"hi from bob".to_owned()));
    }
    // Each message names its author.
    let items = carol.group_history(&hex, None, 10).await.unwrap();
    let from_bob = items
        .iter()
        .find(|i| i.body.as_deref() == Ok(&b"hi from bob"[..]))
        .unwrap();
    assert_eq!(from_bob.author, Some(bob.address()));

    // Dave goes offline; Alice removes Erin; everyone talks on.
    dave.disconnect().await;
    alice.remove_from_group(&hex, &["erin"]).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !erin.group(&hex).await.unwrap().left {
        let _ = erin.sync().await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "erin removed in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while carol.group(&hex).await.unwrap().members.len() != 4 {
        let _ = carol.sync().await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "carol sees it in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    alice.send_to_group(&hex, b"after erin left").await.unwrap();
    carol.send_to_group(&hex, b"carol after too").await.unwrap();
    for c in [alice, bob, carol] {
        let bodies = group_bodies(c, &group, 4).await;
        assert!(bodies.contains(&"after erin left".to_owned()));
        assert!(bodies.contains(&"carol after too".to_owned()));
    }
    // Dave comes back and catches up.
    dave.connect(&addr).await.unwrap();
    let bodies = group_bodies(dave, &group, 4).await;
    assert!(bodies.contains(&"carol after too".to_owned()));
    // Erin has nothing after her removal, and cannot send any more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = erin.sync().await;
    let erin_has = group_bodies(erin, &group, 2).await;
    assert_eq!(erin_has.len(), 2, "{erin_has:?}");
    assert!(erin.send_to_group(&hex, b"let me in").await.is_err());

    // No file anyone wrote holds a plaintext.
    for c in &all {
        c.disconnect().await;
    }
    drop(all);
    relay.shutdown().await;
    let texts: [&[u8]; 4] = [
        b"hello everyone",
        b"hi from bob",
        b"after erin left",
        b"carol after too",
    ];
    let mut scanned = 0;
    for entry in walk(dir.path()) {
        // A file SQLite removed meanwhile (a journal) has nothing to scan.
        let Ok(bytes) = std::fs::read(&entry) else {
            continue;
        };
        for text in texts {
            assert!(
                !contains(&bytes, text),
                "{} holds a plaintext",
                entry.display()
            );
        }
        // Nor the group's name or id: not the relay's files, not a store.
        assert!(
            !contains(&bytes, b"garden club 7f3a"),
            "{}",
            entry.display()
        );
        assert!(!contains(&bytes, group.as_bytes()), "{}", entry.display());
        assert!(!contains(&bytes, hex.as_bytes()), "{}", entry.display());
        scanned += 1;
    }
    assert!(scanned > 10, "only {scanned} files");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A removed member who keeps writing to the group (her client never
/// took her removal) is set aside by everyone: nothing of
/// hers shows up after her removal. A group message delivered twice (the
/// receiver died after storing it, before acknowledging it) is stored
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_is_set_aside_and_a_crash_before_the_ack_stores_once() {
    use sotto::{ClientOptions, DropReason, Fault};

    let dir = tempfile::tempdir().unwrap();
    let relay = sqlite_relay_with(&dir.path().join("relay.db"), unlimited_first_contacts()).await;
    let addr = relay.local_addr().to_string();
    let names = ["alice", "bob", "mallory"];
    let mut all = people(dir.path(), &addr, &names).await;
    for c in &all {
        c.connect(&addr).await.unwrap();
    }
    let group = all[0]
        .create_group("team", &["bob", "mallory"])
        .await
        .unwrap();
    let hex = sotto::group_id_hex(&group);
    for c in &all[1..] {
        knows(c, &group).await;
    }
    all[2]
        .send_to_group(&hex, b"mallory was here")
        .await
        .unwrap();
    group_bodies(&all[1], &group, 1).await;
    // Mallory is offline when Alice removes her; she comes back with a
    // client that does not read its mailbox (so it never takes the
    // removal) and writes to the group as she last knew it.
    let mallory = all.pop().unwrap();
    mallory.disconnect().await;
    drop(mallory);
    all[0].remove_from_group(&hex, &["mallory"]).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while all[1].group(&hex).await.unwrap().members.len() != 2 {
        let _ = all[1].sync().await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob sees it in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mallory = common::reopen_manual(dir.path(), "mallory").await;
    mallory.connect(&addr).await.unwrap();
    assert_eq!(mallory.group(&hex).await.unwrap().members.len(), 3);
    let mut bob_events = all[1].events();
    // Her client still lists everyone as she last knew, and sends.
    let _ = mallory.send_to_group(&hex, b"i am still here").await;
    let dropped = tokio::time::timeout(WAIT, async {
        while let Some(event) = bob_events.next().await {
            match event {
                ClientEvent::Dropped {
                    reason: DropReason::NotAMember,
                } => return true,
                ClientEvent::GroupMessage(m) => panic!("shown: {:?}", m),
                _ => {}
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(dropped, "bob set mallory's message aside");
    assert_eq!(group_bodies(&all[1], &group, 1).await.len(), 1);

    // Bob dies after storing Alice's next message, before acknowledging.
    let bob = all.pop().unwrap();
    bob.disconnect().await;
    drop(bob);
    all[0].send_to_group(&hex, b"stored once").await.unwrap();
    let crashing = common::reopen(
        dir.path(),
        "bob",
        ClientOptions {
            fault: Some(Fault::CrashBeforeAck),
            ..common::options()
        },
    )
    .await;
    crashing.connect(&addr).await.unwrap();
    let _ = crashing.sync().await;
    crashing.disconnect().await;
    drop(crashing);
    let bob = common::reopen(dir.path(), "bob", common::options()).await;
    bob.connect(&addr).await.unwrap();
    let bodies = group_bodies(&bob, &group, 2).await;
    assert_eq!(bodies, ["mallory was here", "stored once"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = bob.sync().await;
    assert_eq!(group_bodies(&bob, &group, 2).await.len(), 2, "stored once");
    relay.shutdown().await;
}

/// Fifty members, most of whom do not know each other (they learn each
/// other's access keys from the group's introductions): three of them
/// write, one is removed in the middle, and exactly the right members
/// read each message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_members_who_do_not_know_each_other_read_exactly_what_they_should() {
    const N: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let relay = sqlite_relay_with(&dir.path().join("relay.db"), unlimited_first_contacts()).await;
    let addr = relay.local_addr().to_string();
    let names: Vec<String> = (0..N).map(|i| format!("m{i:02}")).collect();
    let mut all = Vec::with_capacity(N);
    for name in &names {
        let c = client(dir.path(), name).await;
        c.register(&addr).await.unwrap();
        c.connect(&addr).await.unwrap();
        all.push(c);
    }
    // Only the creator knows everyone.
    for (name, c) in names.iter().zip(&all).skip(1) {
        all[0].add_contact(name, &c.address()).await.unwrap();
    }
    let members: Vec<&str> = names[1..].iter().map(String::as_str).collect();
    let group = all[0].create_group("fifty", &members).await.unwrap();
    let hex = sotto::group_id_hex(&group);
    for c in &all[1..] {
        knows(c, &group).await;
    }
    all[0]
        .send_to_group(&hex, b"one from the creator")
        .await
        .unwrap();
    all[7].send_to_group(&hex, b"one from m07").await.unwrap();
    for c in &all {
        group_bodies(c, &group, 2).await;
    }
    all[0].remove_from_group(&hex, &["m49"]).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while all[23].group(&hex).await.unwrap().members.len() != N - 1 {
        let _ = all[23].sync().await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "m23 sees it in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    all[23]
        .send_to_group(&hex, b"one from m23 after")
        .await
        .unwrap();
    for c in &all[..N - 1] {
        let bodies = group_bodies(c, &group, 3).await;
        assert_eq!(bodies.len(), 3);
        assert!(bodies.contains(&"one from m23 after".to_owned()));
    }
    let _ = all[N - 1].sync().await;
    let removed = group_bodies(&all[N - 1], &group, 2).await;
    assert_eq!(removed.len(), 2, "the removed member reads nothing after");
    relay.shutdown().await;
}

/// Group messages delivered out of order (3, 1, 2) are each stored once;
/// a message sent while the sender is offline waits in its store and goes
/// out when it connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_delivery_and_an_offline_sender_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let relay = sqlite_relay_with(&dir.path().join("relay.db"), unlimited_first_contacts()).await;
    let addr = relay.local_addr().to_string();
    let mut all = people(dir.path(), &addr, &["alice", "bob"]).await;
    for c in &all {
        c.connect(&addr).await.unwrap();
    }
    let group = all[0].create_group("pair", &["bob"]).await.unwrap();
    let hex = sotto::group_id_hex(&group);
    knows(&all[1], &group).await;
    all[0].send_to_group(&hex, b"zero").await.unwrap();
    group_bodies(&all[1], &group, 1).await;

    // Bob reads by hand: three messages, in the order 3, 1, 2.
    let bob = all.pop().unwrap();
    bob.disconnect().await;
    drop(bob);
    for text in ["one", "two", "three"] {
        all[0].send_to_group(&hex, text.as_bytes()).await.unwrap();
    }
    let manual = common::reopen_manual(dir.path(), "bob").await;
    manual.connect(&addr).await.unwrap();
    let envelopes = manual.fetch_envelopes().await.unwrap();
    assert_eq!(envelopes.len(), 3);
    let mut envelopes: Vec<Option<_>> = envelopes.into_iter().map(Some).collect();
    for index in [2usize, 0, 1] {
        let envelope = envelopes[index].take().unwrap();
        manual.receive_envelope(envelope).await.unwrap();
    }
    let bodies = group_bodies(&manual, &group, 4).await;
    assert_eq!(bodies, ["zero", "three", "one", "two"]);
    manual.disconnect().await;
    drop(manual);

    // Alice writes offline: stored, queued, sent on connecting.
    all[0].disconnect().await;
    let sent = all[0]
        .send_to_group(&hex, b"written offline")
        .await
        .unwrap();
    assert_eq!(sent.status, sotto::SendStatus::Queued);
    all[0].connect(&addr).await.unwrap();
    let bob = common::reopen(dir.path(), "bob", common::options()).await;
    bob.connect(&addr).await.unwrap();
    let bodies = group_bodies(&bob, &group, 5).await;
    assert_eq!(bodies.last().map(String::as_str), Some("written offline"));
    assert_eq!(bodies.len(), 5);
    relay.shutdown().await;
}

/// A seeded random schedule of adds, removes, leaves and sends among six
/// accounts (each step waits until every device has it): every member
/// ends with the same member list, and each message is in the history of
/// exactly the accounts that were members when it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_schedules_keep_membership_and_histories_consistent() {
    use rand::{RngExt, SeedableRng};
    use std::collections::{BTreeMap, BTreeSet};

    let dir = tempfile::tempdir().unwrap();
    let relay = sqlite_relay_with(&dir.path().join("relay.db"), unlimited_first_contacts()).await;
    let addr = relay.local_addr().to_string();
    let names = ["a", "b", "c", "d", "e", "f"];
    let all = people(dir.path(), &addr, &names).await;
    for c in &all {
        c.connect(&addr).await.unwrap();
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    // The creator ("a", the only one who adds and removes others here)
    // starts with b and c.
    let group = all[0].create_group("mix", &["b", "c"]).await.unwrap();
    let hex = sotto::group_id_hex(&group);
    let mut members: BTreeSet<usize> = [0, 1, 2].into();
    // What each account should have read: message text -> readers.
    let mut expected: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let settle = |members: BTreeSet<usize>| {
        let all = &all;
        let hex = hex.clone();
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let mut agreed = true;
                for &m in &members {
                    let _ = all[m].sync().await;
                    match all[m].group(&hex).await {
                        Ok(info) if info.members.len() == members.len() && !info.left => {}
                        _ => agreed = false,
                    }
                }
                if agreed {
                    return;
                }
                assert!(tokio::time::Instant::now() < deadline, "membership settles");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    settle(members.clone()).await;
    let mut sent = 0;
    for step in 0..24 {
        let outsiders: Vec<usize> = (1..names.len()).filter(|i| !members.contains(i)).collect();
        let insiders: Vec<usize> = members.iter().copied().filter(|&i| i != 0).collect();
        match rng.random_range(0..10) {
            0..=1 if !outsiders.is_empty() => {
                let who = outsiders[rng.random_range(0..outsiders.len())];
                all[0].add_to_group(&hex, &[names[who]]).await.unwrap();
                members.insert(who);
            }
            2 if insiders.len() > 1 => {
                let who = insiders[rng.random_range(0..insiders.len())];
                all[0].remove_from_group(&hex, &[names[who]]).await.unwrap();
                members.remove(&who);
            }
            3 if insiders.len() > 1 => {
                // A non-creator member leaves on its own account device.
                let who = insiders[rng.random_range(0..insiders.len())];
                all[who].leave_group(&hex).await.unwrap();
                members.remove(&who);
            }
            _ => {
                let list: Vec<usize> = members.iter().copied().collect();
                let who = list[rng.random_range(0..list.len())];
                let text = format!("step {step} from {}", names[who]);
                all[who].send_to_group(&hex, text.as_bytes()).await.unwrap();
                for &m in &members {
                    expected.entry(m).or_default().push(text.clone());
                }
                sent += 1;
            }
        }
        settle(members.clone()).await;
        // Everyone has what was sent to them so far.
        for (&m, texts) in &expected {
            if members.contains(&m) {
                let _ = all[m].sync().await;
            }
            let have = group_bodies(&all[m], &group, texts.len()).await;
            for text in texts {
                assert!(have.contains(text), "{} misses {text:?}", names[m]);
            }
        }
    }
    assert!(sent > 5, "the schedule sent only {sent} messages");
    // Nobody has a message they should not have, and nothing twice.
    for (i, c) in all.iter().enumerate() {
        let mine = expected.get(&i).cloned().unwrap_or_default();
        let have = match c.group_history(&hex, None, 1000).await {
            Ok(items) => items
                .into_iter()
                .map(|i| String::from_utf8(i.body.unwrap()).unwrap())
                .collect::<Vec<_>>(),
            Err(_) => Vec::new(),
        };
        let mut sorted_have = have.clone();
        sorted_have.sort();
        let mut sorted_mine = mine.clone();
        sorted_mine.sort();
        assert_eq!(sorted_have, sorted_mine, "{}'s history", names[i]);
    }
    let mut lists: BTreeSet<Vec<String>> = BTreeSet::new();
    for &m in &members {
        let mut list: Vec<String> = all[m]
            .group(&hex)
            .await
            .unwrap()
            .members
            .iter()
            .map(ToString::to_string)
            .collect();
        list.sort();
        lists.insert(list);
    }
    assert_eq!(lists.len(), 1, "every member holds the same member list");
    relay.shutdown().await;
}

/// A device linked to a member's account learns the account's groups,
/// reads the group's messages from then on, and writes to it; the
/// account's other device gets the copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newly_linked_device_joins_its_accounts_groups() {
    let dir = tempfile::tempdir().unwrap();
    let relay = sqlite_relay_with(&dir.path().join("relay.db"), unlimited_first_contacts()).await;
    let addr = relay.local_addr().to_string();
    let all = people(dir.path(), &addr, &["alice", "bob"]).await;
    for c in &all {
        c.connect(&addr).await.unwrap();
    }
    let (alice, bob) = (&all[0], &all[1]);
    let group = alice.create_group("two", &["bob"]).await.unwrap();
    let hex = sotto::group_id_hex(&group);
    knows(bob, &group).await;
    bob.send_to_group(&hex, b"before the laptop").await.unwrap();
    group_bodies(alice, &group, 1).await;

    // Alice links her laptop.
    let laptop = client(dir.path(), "alice-laptop").await;
    laptop.register(&addr).await.unwrap();
    let code = laptop.start_linking().await.unwrap();
    let waiting = {
        let laptop = laptop.clone();
        tokio::spawn(async move { laptop.wait_for_link(WAIT).await })
    };
    alice.link_device(&code, WAIT).await.unwrap();
    waiting.await.unwrap().unwrap();
    laptop.disconnect().await;
    drop(laptop);
    let laptop = common::reopen(dir.path(), "alice-laptop", common::options()).await;
    laptop.connect(&addr).await.unwrap();
    knows(&laptop, &group).await;
    assert_eq!(laptop.group(&hex).await.unwrap().members.len(), 2);

    bob.send_to_group(&hex, b"hello laptop").await.unwrap();
    let on_laptop = group_bodies(&laptop, &group, 1).await;
    assert_eq!(on_laptop, ["hello laptop"]);
    laptop
        .send_to_group(&hex, b"from the laptop")
        .await
        .unwrap();
    let on_bob = group_bodies(bob, &group, 3).await;
    assert_eq!(on_bob[2], "from the laptop");
    let on_phone = group_bodies(alice, &group, 3).await;
    assert_eq!(
        on_phone,
        ["before the laptop", "hello laptop", "from the laptop"]
    );
    // The phone shows the laptop's message as its own account's.
    let items = alice.group_history(&hex, None, 1).await.unwrap();
    assert!(items[0].outgoing);
    relay.shutdown().await;
}
