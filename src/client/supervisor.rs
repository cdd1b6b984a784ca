//! The connection in the background: catch up on connecting, handle what
//! the relay pushes, retry the outbox and overdue messages, keep prekeys
//! in stock, and reconnect with jittered exponential backoff when the
//! connection drops. One [`ClientEvent::Disconnected`] per outage and one
//! [`ClientEvent::Connected`] when it is over, never one per attempt.

use std::sync::Arc;
use std::time::Duration;

use sotto_relay::{RelayClient, RelayEvent};
use sotto_store::ResendPolicy;
use tokio::sync::mpsc::Receiver;
use tokio::time::{Instant, interval_at, sleep};
use tracing::Instrument;

use super::shared::Shared;
use super::types::{ClientEvent, DisconnectReason, Step};
use crate::error::Result;

/// A connection, its pushes, and whether its catch-up read the mailbox to
/// the end.
pub(crate) type Connected = (Arc<RelayClient>, Option<Receiver<RelayEvent>>, bool);

/// How often a connected client checks the signed prekey schedule.
const PREKEY_SCHEDULE_PERIOD: Duration = Duration::from_secs(3600);

/// A connection that lasted this long was a working one: the next outage
/// starts again from the shortest delay.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);

/// How often a connected client looks for overdue receipts: half the first
/// wait, between 10 ms and a minute.
fn resend_check_period(policy: &ResendPolicy) -> Duration {
    (policy.first / 2).clamp(Duration::from_millis(10), Duration::from_secs(60))
}

/// Exponential backoff with jitter: each delay is drawn uniformly from the
/// upper half of the current step, and the step doubles up to `max`, so
/// many clients cut off at once do not come back at the same instant.
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        Self {
            min,
            max: max.max(min),
            step: min,
        }
    }

    /// The next delay.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        step / 2 + step.mul_f64(random_unit() / 2.0)
    }

    /// Back to the shortest delay.
    pub(crate) fn reset(&mut self) {
        self.step = self.min;
    }
}

/// A uniform random number in [0, 1).
fn random_unit() -> f64 {
    use rand::rand_core::Rng;
    let bits = rand::rand_core::UnwrapErr(rand::rngs::SysRng).next_u64() >> 11;
    bits as f64 / (1u64 << 53) as f64
}

impl Shared {
    /// After (re)connecting: prekeys, outbox out, overdue resends, mailbox
    /// in. Returns whether the mailbox was read to the end, and how many
    /// messages left the outbox.
    pub(crate) async fn catch_up(&self, conn: &Arc<RelayClient>) -> (bool, usize) {
        if let Err(e) = self.sync_device_list(conn).await {
            self.report(Step::Devices, e);
        }
        // A device its account unlinked publishes nothing any more: the
        // relay removed its mailbox, and it must not register a new one.
        if !self.is_unlinked().await
            && let Err(e) = self.maintain_prekeys(conn).await
        {
            self.report(Step::PreKeys, e);
        }
        let sent = self.retry_outbox(conn).await;
        if let Err(e) = self.resend_overdue(conn).await {
            self.report(Step::Resend, e);
        }
        if self.options.auto_receive
            && let Err(e) = self.drain_mailbox(conn).await
        {
            self.report(Step::Mailbox, e);
            return (false, sent);
        }
        if let Err(e) = self.resume_history(conn).await {
            self.report(Step::Devices, e);
        }
        // Files to put up or fetch (the files task moves them).
        self.files.notify_one();
        // Controls left by a crash, or changes that came ahead of the one
        // they build on.
        match self.process_all_controls().await {
            Ok(true) => self.retry_deferred_group_messages().await,
            Ok(false) => {}
            Err(e) => self.report(Step::Groups, e),
        }
        (true, sent)
    }

    /// Hands the outbox to the relay and reports it; returns how many went
    /// out.
    async fn retry_outbox(&self, conn: &RelayClient) -> usize {
        match self.flush_outbox(conn).await {
            Ok(flushed) => {
                let count = flushed.sent.len();
                if count > 0 {
                    tracing::info!(count, "outbox flushed");
                    self.emit(ClientEvent::OutboxFlushed { count });
                }
                if let Some(e) = flushed.held {
                    self.report(Step::Outbox, e);
                }
                count
            }
            Err(e) => {
                self.report(Step::Outbox, e);
                0
            }
        }
    }

    pub(crate) async fn open_connection(&self, relay_addr: &str) -> Result<Arc<RelayClient>> {
        async {
            let conn =
                crate::connection::connect(relay_addr, &self.options, &self.profile_dir).await?;
            conn.authenticate(&self.identity).await?;
            tracing::info!("connected and authenticated");
            Ok(Arc::new(conn))
        }
        .instrument(tracing::info_span!("connect"))
        .await
    }
}

/// Keeps a connection: handles pushes while it lives, reconnects with
/// jittered exponential backoff when it ends. `current` is the connection
/// [`Client::connect`](crate::Client::connect) made, already caught up.
pub(crate) async fn supervise(
    shared: Arc<Shared>,
    relay_addr: String,
    mut current: Option<(Connected, usize)>,
) {
    let mut backoff = Backoff::new(shared.options.reconnect_min, shared.options.reconnect_max);
    let mut outage = false;
    loop {
        let ((conn, events, in_order), sent) = match current.take() {
            Some(c) => c,
            None => match shared.open_connection(&relay_addr).await {
                Ok(conn) => {
                    let events = conn.take_events();
                    shared.set_connection(Some(conn.clone()));
                    let (caught_up, sent) = shared.catch_up(&conn).await;
                    ((conn, events, caught_up), sent)
                }
                Err(e) => {
                    tracing::info!(error = %e, "relay unreachable");
                    if !outage {
                        outage = true;
                        shared.emit(ClientEvent::Disconnected {
                            reason: DisconnectReason::Unreachable(Arc::new(e)),
                        });
                    }
                    sleep(backoff.next_delay()).await;
                    continue;
                }
            },
        };
        shared.emit(ClientEvent::Connected {
            sent_from_outbox: sent,
        });
        let up_since = Instant::now();
        let reason = serve(&shared, &conn, events, in_order).await;
        shared.set_connection(None);
        tracing::info!(%reason, "relay connection lost");
        outage = true;
        shared.emit(ClientEvent::Disconnected { reason });
        if up_since.elapsed() >= STABLE_CONNECTION {
            backoff.reset();
        }
        sleep(backoff.next_delay()).await;
    }
}

/// Serves one live connection until it ends; returns why it ended.
async fn serve(
    shared: &Shared,
    conn: &Arc<RelayClient>,
    events: Option<Receiver<RelayEvent>>,
    mut in_order: bool,
) -> DisconnectReason {
    let Some(mut events) = events else {
        return DisconnectReason::Closed(None);
    };
    let mut schedule = interval_at(
        Instant::now() + PREKEY_SCHEDULE_PERIOD,
        PREKEY_SCHEDULE_PERIOD,
    );
    let resend_period = resend_check_period(&shared.options.resend);
    let mut resends = interval_at(Instant::now() + resend_period, resend_period);
    let mut outbox_retry = Backoff::new(
        shared.options.outbox_retry_min,
        shared.options.reconnect_max,
    );
    let mut next_outbox_retry = Instant::now() + outbox_retry.next_delay();
    loop {
        let outbox_held = shared.outbox_is_held() || shared.history_is_held();
        let event = tokio::select! {
            event = events.recv() => event,
            // Something started waiting: look again at what is held.
            () = shared.held.notified(), if !outbox_held => continue,
            _ = schedule.tick() => {
                if let Err(e) = shared.maintain_prekeys(conn).await {
                    shared.report(Step::PreKeys, e);
                }
                continue;
            }
            // Entries the relay refused for now are tried again with
            // backoff, oldest first (and so is a history transfer).
            _ = tokio::time::sleep_until(next_outbox_retry), if outbox_held => {
                shared.retry_outbox(conn).await;
                shared.retry_history(conn).await;
                if shared.outbox_is_held() || shared.history_is_held() {
                    next_outbox_retry = Instant::now() + outbox_retry.next_delay();
                } else {
                    outbox_retry.reset();
                }
                continue;
            }
            _ = resends.tick() => {
                if let Err(e) = shared.resend_overdue(conn).await {
                    shared.report(Step::Resend, e);
                }
                if !outbox_held {
                    // The next refusal starts from the shortest delay.
                    outbox_retry.reset();
                    next_outbox_retry = Instant::now() + outbox_retry.next_delay();
                }
                continue;
            }
        };
        match event {
            Some(RelayEvent::Envelope(envelope)) => {
                if !shared.options.auto_receive {
                    continue;
                }
                // A pushed envelope is newer than any left in the mailbox
                // by a failed catch-up or receive: read the mailbox first,
                // or it would be stored out of order.
                if !in_order {
                    match shared.drain_mailbox(conn).await {
                        Ok(_) => in_order = true,
                        Err(e) => {
                            shared.report(Step::Mailbox, e);
                            // Connection gone: it stays queued, and comes
                            // in order after reconnecting. Otherwise
                            // something in the mailbox keeps failing; do
                            // not hold back everything newer because of it.
                            if conn.is_closed() {
                                continue;
                            }
                        }
                    }
                }
                if let Err(e) = shared.process(conn, envelope).await {
                    in_order = false;
                    shared.report(Step::Receive, e);
                }
                // Receipts go out in one batch per burst of pushes.
                if events.is_empty() {
                    shared.flush_receipts(conn).await;
                }
            }
            Some(RelayEvent::PreKeysLow(_)) => match shared.replenish(conn).await {
                Ok(count) if count > 0 => shared.emit(ClientEvent::PreKeysPublished { count }),
                Ok(_) => {}
                Err(e) => shared.report(Step::PreKeys, e),
            },
            Some(RelayEvent::Closed { reason }) => {
                return DisconnectReason::Closed(reason.map(|r| r.code));
            }
            Some(_) => {}
            None => return DisconnectReason::Closed(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_maximum_and_resets() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        let mut b = Backoff::new(min, max);
        let mut step = min;
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(
                d >= step / 2 && d <= step,
                "{d:?} outside [{:?}, {step:?}]",
                step / 2
            );
            step = (step * 2).min(max);
        }
        b.reset();
        assert!(b.next_delay() <= min);
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let delays: std::collections::HashSet<_> = (0..20).map(|_| b.next_delay()).collect();
        assert!(delays.len() > 1, "twenty equal delays: no jitter");
    }
}
