//! Wake-ups for connected clients and channel deliveries: every communication instance follows the
//! outbox from its newest event (`tickets::outbox::OutboxTail`, woken by the numbering's
//! `NOTIFY`) and announces which client has something new. The store stays the source of truth: a
//! woken session reads its events after its cursor from there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tickets::PgStore;
use tickets::outbox::{Numbering, OutboxTail};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub type Wakeups = broadcast::Sender<Arc<str>>;

/// Announces the clients of newly numbered client-visible events until `shutdown`. A failed read
/// is retried a second later; sessions and deliveries re-read on their own meanwhile.
pub async fn listen(store: PgStore, wakeups: Wakeups, shutdown: CancellationToken) {
    let mut tail = OutboxTail::new(store.clone());
    loop {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => return,
            b = tail.next() => b,
        };
        match batch {
            Ok(events) => {
                let visible: Vec<Numbering> =
                    events.into_iter().filter(|e| e.client_visible).collect();
                let traces = trace_parents(&store, visible.iter().map(|e| e.seq).collect()).await;
                for e in &visible {
                    let span = match traces.get(&e.seq) {
                        Some(parent) => event_span(e, parent),
                        None => tracing::Span::none(),
                    };
                    span.in_scope(|| {
                        let _ = wakeups.send(Arc::from(e.client_id.as_str()));
                    });
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbox tail failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// The stored trace contexts of the messages the events `seqs` are about, by seq: a wake-up or a
/// push continues its message's trace. One query, only while span export is on.
pub(crate) async fn trace_parents(store: &PgStore, seqs: Vec<i64>) -> BTreeMap<i64, String> {
    if !platform::telemetry::enabled() || seqs.is_empty() {
        return BTreeMap::new();
    }
    match store.event_trace_parents(&seqs).await {
        Ok(t) => t.into_iter().collect(),
        Err(e) => {
            tracing::debug!(error = %e, "trace contexts of the events not read");
            BTreeMap::new()
        }
    }
}

/// The wake-up's span, a child of its message's stored trace context.
fn event_span(e: &Numbering, parent: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "ticket_event",
        event_id = e.seq,
        client_id = %e.client_id,
        manager_id = tracing::field::Empty,
    );
    platform::telemetry::set_parent(&span, parent);
    if let Some(m) = &e.manager_id {
        span.record("manager_id", m.as_str());
    }
    span
}
