//! The trace context kept with a client message (`messages.trace_parent`, written by the inbound
//! consumer while span export is on), read by the stages that pick the message up from the store:
//! the checking activities, the outbox relay and the WebSocket push. Only strings here: the store
//! knows nothing of OpenTelemetry.

use uuid::Uuid;

use crate::domain::event_kind;
use crate::store::{PgStore, Result};

/// The events whose payload names a client message (`message_id`).
const MESSAGE_EVENTS: &[&str] = &[
    event_kind::MESSAGE_ACCEPTED,
    event_kind::MESSAGE_BLOCKED,
    event_kind::MESSAGE_VISIBLE,
];

impl PgStore {
    /// The stored `traceparent`s of `messages` (those that have one), oldest message first.
    pub async fn message_trace_parents(&self, messages: &[Uuid]) -> Result<Vec<String>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(
            "SELECT trace_parent FROM messages
             WHERE id = ANY($1) AND trace_parent IS NOT NULL ORDER BY created_at, id",
        )
        .bind(messages)
        .fetch_all(self.pool())
        .await?)
    }

    /// `(seq, traceparent)` of the events among `seqs` that are about a client message with a
    /// stored trace context (`message_accepted`, `message_blocked`, `message_visible`).
    pub async fn event_trace_parents(&self, seqs: &[i64]) -> Result<Vec<(i64, String)>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        // The CASE keeps the cast away from other kinds' payloads, whatever order the planner
        // evaluates the conditions in.
        Ok(sqlx::query_as(
            "SELECT e.seq, m.trace_parent FROM events e
             JOIN messages m ON m.id = CASE WHEN e.kind = ANY($2)
                                            THEN (e.payload->>'message_id')::uuid END
             WHERE e.seq = ANY($1) AND m.trace_parent IS NOT NULL",
        )
        .bind(seqs)
        .bind(MESSAGE_EVENTS)
        .fetch_all(self.pool())
        .await?)
    }
}
