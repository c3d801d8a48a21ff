//! The backlog gauges, read from PostgreSQL every [`EVERY`]: what waits for the AFC check, for a
//! manager and for the outbox relay. The figures are the database's, so every workflow instance
//! reports the same values (aggregate with `max`, not `sum`).

use std::collections::BTreeSet;
use std::time::Duration;

use tickets::PgStore;
use tickets::gauges::Backlog;
use tokio_util::sync::CancellationToken;

/// How often the backlog is read: a scrape interval's worth, on a few cheap index reads.
pub const EVERY: Duration = Duration::from_secs(10);

/// Reads and reports the backlog until `shutdown`. A failed read leaves the last figures in place
/// (`inbox_dependency_up{dependency="postgres"}` tells why they stopped moving).
pub async fn run(store: PgStore, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut queues = BTreeSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.backlog().await {
            Ok(b) => report(&b, &mut queues),
            Err(e) => tracing::warn!(error = %e, "cannot read the backlog gauges"),
        }
    }
}

/// `seen` holds the (queue, status) pairs reported before: one that has no ticket any more is
/// set to 0, not left at its last count.
fn report(b: &Backlog, seen: &mut BTreeSet<(String, String)>) {
    metrics::gauge!("inbox_afc_pending_oldest_seconds").set(b.afc_pending_oldest_seconds);
    metrics::gauge!("inbox_ready_managers").set(b.ready_managers as f64);
    metrics::gauge!("inbox_outbox_unpublished").set(b.outbox_unpublished as f64);
    metrics::gauge!("inbox_outbox_oldest_unpublished_seconds")
        .set(b.outbox_oldest_unpublished_seconds);
    let now: BTreeSet<(String, String)> = b
        .open_tickets
        .iter()
        .map(|q| (q.queue.clone(), q.status.clone()))
        .collect();
    for (queue, status) in seen.difference(&now) {
        metrics::gauge!("inbox_open_tickets", "queue" => queue.clone(), "status" => status.clone())
            .set(0.0);
    }
    for q in &b.open_tickets {
        metrics::gauge!("inbox_open_tickets", "queue" => q.queue.clone(), "status" => q.status.clone())
            .set(q.count as f64);
    }
    seen.extend(now);
}
