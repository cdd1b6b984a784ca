//! What the relay's SQLite database holds: exactly what was sent, until acked.

use std::sync::Arc;

use rusqlite::Connection;
use sotto_relay::SqliteStore;

use crate::common::*;

/// `(id, mailbox, message_id, payload)`.
type EnvelopeRow = (i64, Vec<u8>, Vec<u8>, Vec<u8>);

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
    let relay = start_with(config(), Arc::new(SqliteStore::open(&path).unwrap())).await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let alice = identity(1);

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
            .send(&address(&bob), mid(i as u8), p)
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
                "envelopes",
                "mailbox_usage",
                "one_time_prekeys",
                "signed_prekeys"
            ]
        );
        // An envelope row is the recipient, the sender's dedupe id and the
        // payload: no sender, no time.
        assert_eq!(
            columns(&db, "envelopes"),
            ["id", "mailbox", "message_id", "payload"]
        );
        let rows: Vec<EnvelopeRow> = db
            .prepare("SELECT id, mailbox, message_id, payload FROM envelopes ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 3);
        for (i, (id, mailbox, message_id, payload)) in rows.iter().enumerate() {
            assert_eq!(*id as u64, sent[i]);
            assert_eq!(mailbox.as_slice(), address(&bob).as_bytes());
            assert_eq!(message_id.as_slice(), &[i as u8; 16]);
            assert_eq!(payload, &payloads[i], "stored byte for byte");
        }
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
