//! What the relay's SQLite database holds: exactly what was sent, until acked.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use sotto_relay::{SqliteStore, UnixTime};

use sotto_relay::ServerConfig;

use crate::common::*;

/// `(id, mailbox, message_id, payload, expiry_hour)`.
type EnvelopeRow = (i64, Vec<u8>, Vec<u8>, Vec<u8>, i64);

fn columns(db: &Connection, table: &str) -> Vec<String> {
    let mut stmt = db
        .prepare(&format!(
            "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
        ))
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_database_holds_only_the_opaque_bytes_that_were_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    // 10 minutes into an hour: the stored expiry is rounded up to the next
    // whole hour, so the file does not say when within the hour mail came.
    let now = UnixTime::from_secs(1_800_000_000 + 600);
    let ttl = Duration::from_secs(48 * 3600);
    let relay = start_with_clock(
        ServerConfig {
            envelope_ttl: ttl,
            ..config()
        },
        Arc::new(SqliteStore::open(&path).unwrap()),
        TestClock::at(now),
    )
    .await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let alice = identity(1);
    register(addr, &bob).await;

    // Alice is authenticated on her connection: still nothing about her is kept.
    let alice_conn = owner(addr, &alice).await;
    let payloads: Vec<Vec<u8>> = (0..3u8)
        .map(|i| {
            let mut p = b"OPAQUE-MARKER-".to_vec();
            p.extend_from_slice(&[i; 40]);
            p
        })
        .collect();
    let mut sent = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let r = alice_conn
            .send(&address(&bob), mid(i as u8), None, p)
            .await
            .unwrap();
        sent.push(r.envelope_id);
    }

    {
        let db = Connection::open(&path).unwrap();
        let mut tables: Vec<String> = db
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        tables.retain(|t| t != "sqlite_sequence");
        assert_eq!(
            tables,
            [
                "bodies",
                "device_lists",
                "envelopes",
                "kem_prekeys",
                "last_resort_kem_prekeys",
                "listed_devices",
                "mailbox_usage",
                "one_time_prekeys",
                "signed_prekeys",
                "totals"
            ]
        );
        // An envelope row is the recipient, the sender's dedupe id, the
        // payload and the hour it expires: no sender, no arrival time. A
        // multi-recipient send's envelopes share one body, which is the
        // body as sent and nothing else.
        assert_eq!(
            columns(&db, "envelopes"),
            [
                "id",
                "mailbox",
                "message_id",
                "payload",
                "expiry_hour",
                "body"
            ]
        );
        assert_eq!(columns(&db, "bodies"), ["id", "data"]);
        assert_eq!(columns(&db, "totals"), ["id", "count", "bytes"]);
        // A device list row is the account's mailbox, the list's version
        // and the signed list as published: nothing about who fetched it.
        assert_eq!(columns(&db, "device_lists"), ["mailbox", "version", "list"]);
        // Which device mailboxes each stored list names, as anyone reads
        // them off the lists: nothing more.
        assert_eq!(columns(&db, "listed_devices"), ["device", "account"]);
        let rows: Vec<EnvelopeRow> = db
            .prepare(
                "SELECT id, mailbox, message_id, payload, expiry_hour FROM envelopes ORDER BY id",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 3);
        let expiry_hour = (1_800_000_000 / 3600 + 48 + 1) as i64;
        for (i, (id, mailbox, message_id, payload, expiry)) in rows.iter().enumerate() {
            assert_eq!(*id as u64, sent[i]);
            assert_eq!(mailbox.as_slice(), address(&bob).as_bytes());
            assert_eq!(message_id.as_slice(), &[i as u8; 16]);
            assert_eq!(payload, &payloads[i], "stored byte for byte");
            assert_eq!(*expiry, expiry_hour, "now + ttl, rounded up to the hour");
        }
        let totals: (i64, i64) = db
            .query_row("SELECT count, bytes FROM totals", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(totals, (3, 3 * 54));
        // Alice's identity key and address appear nowhere.
        let mut stmt = db
            .prepare(
                "SELECT mailbox FROM envelopes UNION ALL SELECT message_id FROM envelopes
                 UNION ALL SELECT payload FROM envelopes UNION ALL SELECT mailbox FROM mailbox_usage",
            )
            .unwrap();
        let blobs: Vec<Vec<u8>> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for blob in blobs {
            assert!(!contains(&blob, alice.public().as_bytes()));
            assert!(!contains(&blob, address(&alice).as_bytes()));
        }
    }

    // Once acked, the bytes are gone from the file, not just unlinked.
    let bob_conn = owner(addr, &bob).await;
    assert_eq!(bob_conn.ack(&sent).await.unwrap(), 3);
    drop((bob_conn, alice_conn));
    relay.shutdown().await;
    let mut files = vec![std::fs::read(&path).unwrap()];
    if let Ok(wal) = std::fs::read(dir.path().join("relay.db-wal")) {
        files.push(wal);
    }
    for file in files {
        assert!(
            !contains(&file, b"OPAQUE-MARKER-"),
            "acked payload left on disk"
        );
    }
}

#[tokio::test]
async fn a_multi_send_body_is_kept_once_until_every_recipient_acked_it_then_gone_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let relay = start_with(config(), Arc::new(SqliteStore::open(&path).unwrap())).await;
    let addr = relay.local_addr();
    let recipients: Vec<_> = (2..5u8).map(identity).collect();
    for id in &recipients {
        register(addr, id).await;
    }
    let mut body = b"SHARED-BODY-MARKER-".to_vec();
    body.extend_from_slice(&[0x77; 3000]);
    let sent = connect(addr)
        .await
        .send_multi(
            &body,
            &recipients
                .iter()
                .map(|id| {
                    sotto_relay::MultiRecipient::new(address(id), mid(1), None, b"HDR".to_vec())
                })
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    {
        let db = Connection::open(&path).unwrap();
        let (bodies, headers): (i64, i64) = db
            .query_row(
                "SELECT (SELECT COUNT(*) FROM bodies), (SELECT SUM(length(payload)) FROM envelopes)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (bodies, headers),
            (1, 9),
            "the body once, a header per recipient"
        );
    }
    // Acknowledged by all but one: still there for that one.
    for (id, outcome) in recipients.iter().zip(&sent).take(2) {
        let conn = owner(addr, id).await;
        conn.ack(&[outcome.envelope_id().unwrap()]).await.unwrap();
    }
    let last = owner(addr, &recipients[2]).await;
    let pending = last.fetch_pending().await.unwrap();
    assert_eq!(pending[0].payload, [&b"HDR"[..], &body].concat());
    // Acknowledged by the last: the bytes are gone from the file.
    last.ack(&[pending[0].id]).await.unwrap();
    drop(last);
    relay.shutdown().await;
    let mut files = vec![std::fs::read(&path).unwrap()];
    if let Ok(wal) = std::fs::read(dir.path().join("relay.db-wal")) {
        files.push(wal);
    }
    for file in files {
        assert!(
            !contains(&file, b"SHARED-BODY-MARKER-"),
            "acked body left on disk"
        );
    }
}
