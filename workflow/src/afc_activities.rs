//! Activities of the external AFC provider (Kafka): hand pending messages to the AFC system, apply
//! the verdicts the verdict consumer recorded, and raise the timeout alert. Each is idempotent.
//!
//! Fail-closed: a message only leaves `pending` through [`PgStore::apply_verdicts`] with a verdict
//! the AFC system signed; until then no manager sees it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tickets::external_afc::{AfcOutgoing, AfcStatus, HeldMessage};
use tickets::{PgStore, TicketClassification, Verdict};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::activities::{CheckInput, CheckOutcome, apply_checked, follow_messages};
use crate::afc_kafka::{AfcMessage, Cipher};
use spec::TicketSpec;

/// Publishes AFC messages to the AFC system's topic.
#[derive(Clone)]
pub struct AfcPublisher {
    pub producer: FutureProducer,
    pub topic: String,
    pub cipher: Cipher,
}

impl AfcPublisher {
    /// Publishes every message and waits for the broker's acknowledgements.
    pub async fn publish(&self, messages: &[AfcMessage]) -> Result<(), PublishError> {
        let values = messages
            .iter()
            .map(|m| Ok((m.chat_id.as_str(), self.cipher.seal(m)?)))
            .collect::<Result<Vec<_>, PublishError>>()?;
        // The AFC system may carry the trace on: W3C `traceparent` in the headers (export on).
        let headers = platform::telemetry::kafka_headers(&tracing::Span::current());
        let sends = values.iter().map(|(key, value)| {
            let mut record = FutureRecord::to(&self.topic).key(*key).payload(value);
            if let Some(h) = &headers {
                record = record.headers(h.clone());
            }
            self.producer.send(record, Duration::from_secs(30))
        });
        for res in futures::future::join_all(sends).await {
            res.map_err(|(e, _)| PublishError::Kafka(e))?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("sealing an AFC message: {0}")]
    Seal(#[from] crate::afc_kafka::AfcError),
    #[error("publishing to AFC: {0}")]
    Kafka(rdkafka::error::KafkaError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishInput {
    pub ticket_id: Uuid,
    pub client_id: String,
    pub spec_version: String,
    /// Also hand this ticket's manager replies to AFC (`check_manager_replies: true`).
    pub replies_of: Option<Uuid>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishOutcome {
    /// Client messages published by this call.
    pub published: usize,
    /// The client's messages waiting for a verdict, with when they were handed over.
    pub held: Vec<HeldMessage>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfcApplied {
    pub outcome: CheckOutcome,
    pub held: Vec<HeldMessage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutInput {
    pub ticket_id: Uuid,
    pub client_id: String,
    pub message_ids: Vec<Uuid>,
    pub timeout_ms: u64,
}

static AFC_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

/// Messages that waited past the AFC timeout since the process started (a counter metric; it is
/// also in every alert's log line as `afc_timeouts_total`).
pub fn afc_timeouts_total() -> u64 {
    AFC_TIMEOUTS.load(Ordering::Relaxed)
}

/// Counts `n` more overdue messages; returns the new total.
pub(crate) fn count_afc_timeouts(n: u64) -> u64 {
    AFC_TIMEOUTS.fetch_add(n, Ordering::Relaxed) + n
}

pub struct AfcActivities {
    pub store: PgStore,
    pub publisher: AfcPublisher,
}

/// Classification of a ticket from its first passed message (same rule as the builtin check).
fn classify(spec: &TicketSpec, body: &str) -> TicketClassification {
    let c = spec.classify(body);
    TicketClassification {
        category: c.category,
        priority: c.priority.level(),
        queue: c.queue,
        fields: serde_json::to_value(c.fields).unwrap_or_default(),
    }
}

#[activities]
impl AfcActivities {
    /// Hands every client message not yet sent to the AFC system (and the ticket's manager
    /// replies, if asked), then marks them sent so a retry does not publish them again. A message
    /// published twice (crash before the mark) is harmless: verdicts are idempotent.
    #[activity]
    pub async fn publish_pending(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: PublishInput,
    ) -> Result<PublishOutcome, ActivityError> {
        let unsent = self
            .store
            .afc_unsent(&input.client_id, input.replies_of)
            .await?;
        let span = if unsent.is_empty() {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "afc_publish",
                ticket_id = %input.ticket_id,
                client_id = %input.client_id,
                messages = unsent.len(),
            )
        };
        follow_messages(&self.store, &span, unsent.iter().map(|m| m.id)).await;
        self.hand_over(input, unsent).instrument(span).await
    }

    /// Applies the verdicts recorded for the client's held messages, with this ticket's spec
    /// (warning text, classification). The first passed message queues the ticket.
    #[activity]
    pub async fn apply_afc_verdicts(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: CheckInput,
    ) -> Result<AfcApplied, ActivityError> {
        let decided = self.store.afc_decided_pending(&input.client_id).await?;
        let held_before = self.store.afc_held(&input.client_id).await?;
        if decided.is_empty() && held_before.is_empty() {
            return Ok(AfcApplied::default());
        }
        let span = if decided.is_empty() {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "apply_afc_verdicts",
                ticket_id = %input.ticket_id,
                client_id = %input.client_id,
                messages = decided.len(),
                manager_id = tracing::field::Empty,
            )
        };
        follow_messages(&self.store, &span, decided.iter().map(|(id, _, _)| *id)).await;
        self.apply(input, decided).instrument(span).await
    }

    /// The AFC system did not answer in time: an alert per message still held (the message stays
    /// held; its verdict is applied whenever it comes). Returns the ids still held.
    #[activity]
    pub async fn report_afc_timeout(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: TimeoutInput,
    ) -> Result<Vec<Uuid>, ActivityError> {
        let held = self
            .store
            .record_afc_timeout(
                input.ticket_id,
                &input.client_id,
                &input.message_ids,
                input.timeout_ms,
            )
            .await?;
        let n = held.len() as u64;
        let total = count_afc_timeouts(n);
        if n > 0 {
            tracing::warn!(
                ticket_id = %input.ticket_id, client_id = %input.client_id,
                held = n, timeout_ms = input.timeout_ms, afc_timeouts_total = total,
                "AFC verdicts overdue: messages stay held"
            );
        }
        Ok(held)
    }
}

impl AfcActivities {
    /// The rest of [`AfcActivities::publish_pending`], over the messages not yet sent.
    async fn hand_over(
        &self,
        input: PublishInput,
        unsent: Vec<AfcOutgoing>,
    ) -> Result<PublishOutcome, ActivityError> {
        let messages: Vec<AfcMessage> = unsent
            .iter()
            .map(|m| AfcMessage {
                id: m.id,
                chat_id: m.client_id.clone(),
                body: m.body.clone(),
                from_client: m.from_client,

                attachments: m.files.iter().map(Into::into).collect(),
            })
            .collect();
        if !messages.is_empty() {
            self.publisher.publish(&messages).await?;
            let ids: Vec<Uuid> = messages.iter().map(|m| m.id).collect();
            self.store.mark_afc_sent(&ids).await?;
        }
        let held = self.store.afc_held(&input.client_id).await?;
        if !held.is_empty() {
            self.store
                .open_ticket(input.ticket_id, &input.client_id, &input.spec_version)
                .await?;
        }
        let published = unsent.iter().filter(|m| m.from_client).count();
        tracing::info!(
            ticket_id = %input.ticket_id, client_id = %input.client_id,
            published, replies = messages.len() - published, held = held.len(),
            "messages handed to AFC"
        );
        Ok(PublishOutcome { published, held })
    }

    /// The rest of [`AfcActivities::apply_afc_verdicts`], over the decided messages.
    async fn apply(
        &self,
        input: CheckInput,
        decided: Vec<(Uuid, String, AfcStatus)>,
    ) -> Result<AfcApplied, ActivityError> {
        let spec = &input.spec;
        self.store
            .open_ticket(input.ticket_id, &input.client_id, &spec.version)
            .await?;
        let mut outcome = CheckOutcome::default();
        if !decided.is_empty() {
            let verdicts: Vec<(Uuid, Verdict)> = decided
                .iter()
                .map(|(id, _, status)| (*id, status.verdict()))
                .collect();
            let classification = decided
                .iter()
                .zip(&verdicts)
                .find(|(_, (_, v))| *v == Verdict::Passed)
                .map(|((_, body, _), _)| classify(spec, body));
            outcome =
                apply_checked(&self.store, &input, &verdicts, classification.as_ref()).await?;
        }
        let held = self.store.afc_held(&input.client_id).await?;
        Ok(AfcApplied { outcome, held })
    }
}
