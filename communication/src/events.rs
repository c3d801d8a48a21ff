//! Wake-ups for the channel deliveries: the process's one outbox tail (`edge::stream::listen`,
//! which also feeds the web chat's streams) announces, after each batch, which clients have
//! something new. The store stays the source of truth: a woken delivery reads its events after
//! its cursor from there.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use tickets::PgStore;
use tickets::outbox::Numbering;
use tokio::sync::broadcast;

pub type Wakeups = broadcast::Sender<Arc<str>>;

/// What the tail does after each batch: announce the clients of its client-visible events, each
/// in a span continuing its message's trace (export on).
pub fn wake_deliveries(
    store: PgStore,
    wakeups: Wakeups,
) -> impl FnMut(Vec<Numbering>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    move |events| {
        let (store, wakeups) = (store.clone(), wakeups.clone());
        Box::pin(async move {
            let visible: Vec<Numbering> = events.into_iter().filter(|e| e.client_visible).collect();
            if visible.is_empty() {
                return;
            }
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
        })
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
