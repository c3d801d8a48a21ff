//! The AFC verdict consumer: Kafka `afc.verdicts` → signature and claims check → record in
//! PostgreSQL (one verdict per message, ever) → signal the client's ticket workflow, which applies
//! it with the ticket's own spec. The offset moves (in PostgreSQL, see `source`: no consumer group,
//! so a killed process does not leave its partitions stuck) only after that, so a crash anywhere
//! redelivers the verdict and the idempotent record makes that harmless.
//!
//! A verdict that cannot be trusted or applied (bad signature, bad JSON, unknown message, bad
//! status, contradicting an earlier verdict) goes to `afc.verdicts.dlq` with the reason and changes
//! nothing. A duplicate changes nothing either (it re-sends the wake-up, which is harmless).

use std::time::Duration;

use rdkafka::Message as _;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tickets::afc_provider::{AfcStatus, VerdictRecord};
use tickets::{Author, PgStore, ticket_id_opened_by};
use tokio_util::sync::CancellationToken;

use crate::afc_kafka::{Rejection, VerdictKey};
use crate::client::Tickets;
use crate::source::LeasedSource;
use crate::spec::TicketSpec;

#[derive(Clone)]
pub struct VerdictConsumer {
    pub kafka: platform::kafka::KafkaSettings,
    /// `fetch.wait.max.ms` of its source.
    pub wait_ms: u32,
    /// `afc.verdicts` (with the topic prefix).
    pub topic: String,
    pub store: PgStore,
    pub tickets: Tickets,
    pub key: VerdictKey,
    pub producer: FutureProducer,
    pub dlq_topic: String,
    /// For a verdict whose ticket already closed: it opens the next one, as a new message would.
    pub spec: TicketSpec,
    pub history_limit: Option<u32>,
}

/// What became of one verdict record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    Applied,
    Duplicate,
    DeadLettered(Rejection),
}

impl VerdictConsumer {
    pub async fn run(self, shutdown: CancellationToken) {
        let Some(source) = LeasedSource::start_retrying(
            &self.kafka,
            self.wait_ms,
            self.store.clone(),
            &self.topic,
            &shutdown,
        )
        .await
        else {
            return;
        };
        loop {
            let record = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = source.recv() => r,
            };
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "kafka receive failed; retrying");
                    continue;
                }
            };
            let mut backoff = Duration::from_millis(100);
            loop {
                match self.handle(&record).await {
                    Ok(h) => {
                        tracing::debug!(offset = record.offset(), outcome = ?h, "afc verdict handled");
                        break;
                    }
                    Err(e) => tracing::warn!(
                        partition = record.partition(), offset = record.offset(), error = %e,
                        "afc verdict not yet handled; retrying"
                    ),
                }
                tokio::select! {
                    // Shutting down: the offset stays uncommitted, the verdict is redelivered.
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            if let Err(e) = source.done(&record).await {
                tracing::warn!(error = %e, "offset not saved; the verdict may be redelivered");
            }
        }
    }

    /// Handles one record; an error is transient (database, Temporal, DLQ publish) and retried.
    pub async fn handle(
        &self,
        record: &BorrowedMessage<'_>,
    ) -> Result<Handled, Box<dyn std::error::Error + Send + Sync>> {
        let token = record.payload().unwrap_or_default();
        let v = match self.key.verify(token) {
            Ok(v) => v,
            Err(r) => return self.dead_letter(record, r).await,
        };
        // Only client messages and manager replies are ever sent to AFC.
        let subject = self
            .store
            .afc_verdict_subject(v.message_id)
            .await?
            .filter(|s| s.author != Author::System);
        let Some(subject) = subject else {
            return self
                .dead_letter(record, Rejection::UnknownMessage(v.message_id))
                .await;
        };
        if subject.client_id != v.chat_id {
            let r = Rejection::WrongChat {
                claimed: v.chat_id,
                message_id: v.message_id,
            };
            return self.dead_letter(record, r).await;
        }
        let token_text = String::from_utf8_lossy(token);
        let recorded = self
            .store
            .record_afc_verdict(
                v.message_id,
                &subject.client_id,
                v.status,
                token_text.trim(),
            )
            .await?;
        if let VerdictRecord::Contradicts { earlier } = recorded {
            let r = Rejection::Contradicts {
                message_id: v.message_id,
                earlier: earlier.as_str(),
                new: v.status.as_str(),
            };
            return self.dead_letter(record, r).await;
        }
        match subject.author {
            // A duplicate wakes the ticket again: harmless, and it covers a crash between the
            // record above and this signal.
            Author::Client => {
                self.tickets
                    .afc_verdict(
                        &subject.client_id,
                        v.message_id,
                        ticket_id_opened_by(v.message_id),
                        &self.spec,
                        self.history_limit,
                    )
                    .await?;
            }
            // Replies were already delivered: a suspicious one raises an operator alert.
            Author::Manager if v.status == AfcStatus::Suspicious => {
                self.store.record_flagged_reply(v.message_id).await?;
            }
            _ => {}
        }
        tracing::info!(
            message_id = %v.message_id, client_id = %subject.client_id, status = v.status.as_str(),
            duplicate = recorded == VerdictRecord::Duplicate, "afc verdict recorded"
        );
        Ok(if recorded == VerdictRecord::Duplicate {
            Handled::Duplicate
        } else {
            Handled::Applied
        })
    }

    async fn dead_letter(
        &self,
        record: &BorrowedMessage<'_>,
        reason: Rejection,
    ) -> Result<Handled, Box<dyn std::error::Error + Send + Sync>> {
        let value = serde_json::json!({
            "reason": reason.to_string(),
            "value": String::from_utf8_lossy(record.payload().unwrap_or_default()),
            "topic": record.topic(),
            "partition": record.partition(),
            "offset": record.offset(),
        })
        .to_string();
        let key = record.key().unwrap_or_default();
        self.producer
            .send(
                FutureRecord::to(&self.dlq_topic).key(key).payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)?;
        tracing::warn!(
            partition = record.partition(), offset = record.offset(), reason = %reason,
            "afc verdict dead-lettered"
        );
        Ok(Handled::DeadLettered(reason))
    }
}
