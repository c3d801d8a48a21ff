//! Wake-ups for connected clients: every communication instance reads all of `ticket.events` (manual
//! assignment at the end, no consumer group) and announces which client has something new. The
//! store stays the source of truth: a woken session reads its events after its cursor from there.

use std::sync::Arc;

use prost::Message as _;
use rdkafka::Message as _;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub type Wakeups = broadcast::Sender<Arc<str>>;

/// Reads the wake-ups until `shutdown`. Client sessions are people reading a chat: a wake-up
/// within ~50-100 ms is prompt enough, and a longer fetch wait (`wait_ms`, default 50) saves the
/// local broker a third of a core (see `platform::kafka::tail`). Returns early only when the
/// consumer cannot be made (the supervisor starts it again).
pub async fn listen(
    kafka: platform::kafka::KafkaSettings,
    topic: String,
    wait_ms: u32,
    wakeups: Wakeups,
    shutdown: CancellationToken,
) {
    platform::kafka::follow(kafka, topic, wait_ms, shutdown, |r| {
        match proto::v1::TicketEvent::decode(r.payload().unwrap_or_default()) {
            Ok(e) if e.client_visible => {
                let span = match platform::telemetry::kafka_traceparent(r) {
                    Some(parent) => event_span(&e, parent),
                    None => tracing::Span::none(),
                };
                span.in_scope(|| {
                    let _ = wakeups.send(Arc::from(e.client_id.as_str()));
                });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "undecodable ticket event"),
        }
    })
    .await;
}

/// The wake-up's span, a child of the relay's (the record's `traceparent`).
fn event_span(e: &proto::v1::TicketEvent, parent: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "ticket_event",
        kind = %e.kind,
        event_id = e.seq,
        client_id = %e.client_id,
        ticket_id = tracing::field::Empty,
        manager_id = tracing::field::Empty,
    );
    platform::telemetry::set_parent(&span, parent);
    if !e.ticket_id.is_empty() {
        span.record("ticket_id", e.ticket_id.as_str());
    }
    if !e.manager_id.is_empty() {
        span.record("manager_id", e.manager_id.as_str());
    }
    span
}
