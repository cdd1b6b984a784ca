//! The first-contact allowance: how many envelopes a mailbox takes from
//! senders that do not present its access key (docs/relay.md §6, "Access").
//!
//! One token bucket per recipient mailbox, in the relay's memory: a burst
//! of [`FirstContactLimit::burst`], then one more per
//! [`FirstContactLimit::interval`]. Time is the server's [`Clock`]
//! (whole seconds), so tests move it by hand.
//!
//! [`Clock`]: crate::clock::Clock

use std::collections::HashMap;

use super::config::FirstContactLimit;
use crate::address::MailboxAddress;
use crate::clock::UnixTime;

/// A mailbox's allowance.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// First contacts left.
    tokens: u32,
    /// When the interval of the next token began (seconds since the epoch).
    refilled_at: u64,
}

impl Bucket {
    /// Adds the tokens earned since `refilled_at`, up to the burst.
    fn refill(&mut self, limit: &FirstContactLimit, now: u64) {
        if self.tokens >= limit.burst {
            self.refilled_at = now;
            return;
        }
        let interval = limit.interval.as_secs().max(1);
        let earned = now.saturating_sub(self.refilled_at) / interval;
        if earned == 0 {
            return;
        }
        let tokens = u64::from(self.tokens).saturating_add(earned);
        if tokens >= u64::from(limit.burst) {
            self.tokens = limit.burst;
            self.refilled_at = now;
        } else {
            // Below the burst, so it fits in a u32.
            self.tokens = tokens as u32;
            self.refilled_at = self.refilled_at.saturating_add(earned * interval);
        }
    }

    fn is_full(&self, limit: &FirstContactLimit) -> bool {
        self.tokens >= limit.burst
    }
}

/// The allowances of every mailbox that used some recently. A mailbox
/// whose bucket is full again is not kept: absent means full.
#[derive(Debug)]
pub(crate) struct FirstContacts {
    limit: FirstContactLimit,
    buckets: HashMap<MailboxAddress, Bucket>,
    /// The second of the last sweep for full buckets, so a table full of
    /// partly used ones is swept at most once per second.
    last_prune: Option<u64>,
}

impl FirstContacts {
    pub(crate) fn new(limit: FirstContactLimit) -> Self {
        Self {
            limit,
            buckets: HashMap::new(),
            last_prune: None,
        }
    }

    /// Takes one first contact from `mailbox`'s allowance at `now`; false
    /// when none is left (or when the table of allowances is full of
    /// partly used ones: then first contacts wait, memory stays bounded).
    pub(crate) fn take(&mut self, mailbox: &MailboxAddress, now: UnixTime) -> bool {
        let now = now.as_secs();
        let limit = self.limit;
        if let Some(bucket) = self.buckets.get_mut(mailbox) {
            bucket.refill(&limit, now);
            if bucket.tokens == 0 {
                return false;
            }
            bucket.tokens -= 1;
            return true;
        }
        if limit.burst == 0 {
            return false;
        }
        if self.buckets.len() >= limit.tracked_mailboxes && !self.prune(now) {
            return false;
        }
        self.buckets.insert(
            *mailbox,
            Bucket {
                tokens: limit.burst - 1,
                refilled_at: now,
            },
        );
        true
    }

    /// Gives back a first contact taken for an envelope that was not
    /// stored after all (refused for another reason, or a repeat of one
    /// already queued).
    pub(crate) fn give_back(&mut self, mailbox: &MailboxAddress, now: UnixTime) {
        let limit = self.limit;
        if let Some(bucket) = self.buckets.get_mut(mailbox) {
            bucket.refill(&limit, now.as_secs());
            bucket.tokens = bucket.tokens.saturating_add(1).min(limit.burst);
            if bucket.is_full(&limit) {
                self.buckets.remove(mailbox);
            }
        }
    }

    /// Forgets the buckets that are full again; at most once per second.
    /// Returns whether there is room for another mailbox.
    fn prune(&mut self, now: u64) -> bool {
        if self.last_prune == Some(now) {
            return false;
        }
        self.last_prune = Some(now);
        let limit = self.limit;
        self.buckets.retain(|_, bucket| {
            bucket.refill(&limit, now);
            !bucket.is_full(&limit)
        });
        self.buckets.len() < limit.tracked_mailboxes
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T0: u64 = 1_800_000_000;

    fn at(secs: u64) -> UnixTime {
        UnixTime::from_secs(T0 + secs)
    }

    fn limit(burst: u32, tracked_mailboxes: usize) -> FirstContactLimit {
        FirstContactLimit {
            burst,
            interval: Duration::from_secs(180),
            tracked_mailboxes,
        }
    }

    fn mailbox(n: u8) -> MailboxAddress {
        MailboxAddress::from_bytes([n; 32])
    }

    #[test]
    fn a_burst_then_one_per_interval_per_mailbox() {
        let mut contacts = FirstContacts::new(limit(3, 10));
        for _ in 0..3 {
            assert!(contacts.take(&mailbox(1), at(0)));
        }
        assert!(!contacts.take(&mailbox(1), at(0)));
        // Other mailboxes have their own allowance.
        assert!(contacts.take(&mailbox(2), at(0)));
        // One more per interval, not before.
        assert!(!contacts.take(&mailbox(1), at(179)));
        assert!(contacts.take(&mailbox(1), at(180)));
        assert!(!contacts.take(&mailbox(1), at(359)));
        assert!(contacts.take(&mailbox(1), at(360)));
        // After a long pause, at most the burst.
        for _ in 0..3 {
            assert!(contacts.take(&mailbox(1), at(100_000)));
        }
        assert!(!contacts.take(&mailbox(1), at(100_000)));
        // A clock that goes back earns nothing.
        assert!(!contacts.take(&mailbox(1), at(50)));
    }

    #[test]
    fn a_token_given_back_can_be_used_again() {
        let mut contacts = FirstContacts::new(limit(1, 10));
        assert!(contacts.take(&mailbox(1), at(0)));
        assert!(!contacts.take(&mailbox(1), at(0)));
        contacts.give_back(&mailbox(1), at(0));
        assert!(contacts.take(&mailbox(1), at(0)));
        // Giving back never exceeds the burst.
        contacts.give_back(&mailbox(1), at(0));
        contacts.give_back(&mailbox(1), at(0));
        assert!(contacts.take(&mailbox(1), at(0)));
        assert!(!contacts.take(&mailbox(1), at(0)));
    }

    #[test]
    fn no_burst_means_contacts_only() {
        let mut contacts = FirstContacts::new(limit(0, 10));
        assert!(!contacts.take(&mailbox(1), at(0)));
        assert!(!contacts.take(&mailbox(1), at(1_000_000)));
    }

    #[test]
    fn the_table_is_bounded_and_forgets_only_full_allowances() {
        let mut contacts = FirstContacts::new(limit(2, 2));
        assert!(contacts.take(&mailbox(1), at(0)));
        assert!(contacts.take(&mailbox(2), at(0)));
        assert!(contacts.take(&mailbox(2), at(0)));
        // Full of partly used allowances: a third mailbox waits. Refusing
        // here, rather than forgetting one, keeps an attacker from
        // resetting a victim's allowance by touching many mailboxes.
        assert!(!contacts.take(&mailbox(3), at(1)));
        assert_eq!(contacts.buckets.len(), 2);
        // Once one is full again it is forgotten and makes room; the other
        // (one token back of two) is kept.
        assert!(contacts.take(&mailbox(3), at(180)));
        assert_eq!(contacts.buckets.len(), 2);
        assert!(contacts.take(&mailbox(2), at(180)));
        assert!(!contacts.take(&mailbox(2), at(180)));
        assert!(!contacts.take(&mailbox(4), at(181)));
    }
}
