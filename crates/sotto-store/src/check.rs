//! A full check of the store: SQLite's own integrity check, then every
//! sealed row opened and every conversation's messages counted against
//! what it must hold.

use crate::db::{Db, lookup_from_sql};
use crate::error::{Error, Result, Row};
use crate::records;
use crate::send::open_outbox_rows;
use crate::store::Store;

/// What [`Store::check`] found.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct CheckReport {
    /// Every problem, each as the error reading that row would give
    /// ([`Error::Corrupt`], [`Error::MissingRow`]) or
    /// [`Error::IntegrityCheck`] for what SQLite itself reports.
    pub problems: Vec<Error>,
    /// Contacts read.
    pub contacts: usize,
    /// Conversations read.
    pub conversations: usize,
    /// Message rows read.
    pub messages: u64,
}

impl CheckReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Every `(lookup, sealed)` of a table keyed by a lookup.
fn lookup_rows(db: &Db<'_>, sql: &str, table: &'static str) -> Result<Vec<[u8; 32]>> {
    let mut stmt = db.conn().prepare(sql)?;
    let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(lookup_from_sql(row?, table)?);
    }
    Ok(out)
}

fn check_messages(
    db: &Db<'_>,
    conversation: &crate::db::Conversation,
    report: &mut CheckReport,
) -> Result<()> {
    let mut expected = 1u64;
    let gap = |report: &mut CheckReport, from: u64, to: u64| {
        let mut seq = from;
        while seq < to {
            if let Some(first) = records::deleted_range_start(&conversation.deleted, seq) {
                let last = conversation
                    .deleted
                    .iter()
                    .find(|r| r.0 == first)
                    .map_or(seq, |r| r.1);
                seq = last.saturating_add(1);
                continue;
            }
            report.problems.push(Error::MissingRow {
                table: "messages",
                row: Row::Seq(seq),
            });
            seq += 1;
        }
    };
    db.for_each_message(conversation, |seq, sealed| {
        report.messages += 1;
        gap(report, expected, seq.min(conversation.next_seq));
        expected = seq.saturating_add(1);
        if seq >= conversation.next_seq {
            report.problems.push(Error::Corrupt {
                table: "conversations",
                row: Row::lookup(&conversation.lookup),
            });
        }
        if let Some(e) = sealed
            .and_then(|sealed| db.open_message(conversation, seq, &sealed))
            .err()
        {
            report.problems.push(e);
        }
        Ok(())
    })?;
    gap(report, expected, conversation.next_seq);
    Ok(())
}

impl Store {
    /// Checks the whole store and reports every problem found, without
    /// changing anything: SQLite's `integrity_check`, then the identity,
    /// every prekey, contact, session, conversation, message and outbox
    /// row opened with the store's keys, and every conversation's messages
    /// counted against its sequence numbers (a row that is neither there
    /// nor deleted through the store is [`Error::MissingRow`]). Reads the
    /// whole file: for a `check` command, not for every start.
    pub fn check(&self) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        {
            let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
            let lines = stmt.query_map([], |r| r.get::<_, String>(0))?;
            for line in lines {
                let line = line?;
                if line != "ok" {
                    report.problems.push(Error::IntegrityCheck(line));
                }
            }
        }
        self.read(|db| {
            let mut problem = |r: Result<()>| {
                if let Err(e) = r {
                    report.problems.push(e);
                }
            };
            problem(db.identity().map(|_| ()));
            problem(db.prekey_ids().map(|_| ()));
            problem(db.current_signed_prekey().map(|_| ()));
            for e in db.check_prekey_rows()? {
                report.problems.push(e);
            }
            for contact in db.all_contacts()? {
                match contact {
                    Ok(_) => report.contacts += 1,
                    Err(e) => report.problems.push(e),
                }
            }
            for lookup in lookup_rows(db, "SELECT contact FROM sessions", "sessions")? {
                if let Err(e) = db.sessions(&lookup) {
                    report.problems.push(e);
                }
            }
            for lookup in lookup_rows(db, "SELECT lookup FROM conversations", "conversations")? {
                match db.conversation_by_lookup(&lookup) {
                    Ok(Some(conversation)) => {
                        report.conversations += 1;
                        check_messages(db, &conversation, &mut report)?;
                    }
                    Ok(None) => {}
                    Err(e) => report.problems.push(e),
                }
            }
            for accepted in [false, true] {
                for entry in open_outbox_rows(db, db.outbox_rows(accepted)?) {
                    if let Err(e) = entry {
                        report.problems.push(e);
                    }
                }
            }
            Ok(())
        })?;
        Ok(report)
    }
}
