//! The AFC verdict consumer: Kafka `afc.verdicts` → signature and claims check → one PostgreSQL
//! transaction that records the verdict (one per message, ever) and applies it to the client's
//! ticket with the spec it checks (`PgStore::take_afc_verdict`): the message becomes visible or
//! is replaced by the warning, the ticket is classified and queued, with no Temporal call; the
//! ticket workflow hears of it through the outbox only when its lifecycle changes (queued). A
//! ticket whose workflow applies its own verdicts (opened before this path, or of another spec
//! version) is signalled instead, and applies it with its own spec. The offset moves (in PostgreSQL, see `source`: no consumer group,
//! so a killed process does not leave its partitions stuck) only after that, so a crash anywhere
//! redelivers the verdict and the idempotent record makes that harmless.
//!
//! A verdict that cannot be trusted or applied (bad signature, bad JSON, unknown message, bad
//! status, contradicting an earlier verdict) goes to `afc.verdicts.dlq` with the reason and changes
//! nothing. A duplicate changes nothing either (it re-sends the wake-up, which is harmless).

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use rdkafka::Message as _;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tickets::external_afc::{AfcStatus, AfcTaken, VerdictRecord};
use tickets::{Author, PgStore, ticket_id_opened_by};
use tokio_util::sync::CancellationToken;

use crate::afc_kafka::{Rejection, VerdictKey};
use crate::client::Tickets;
use crate::source::LeasedSource;
use spec::checker::CheckedSpec;

#[derive(Clone)]
pub struct VerdictConsumer {
    pub kafka: platform::kafka::KafkaSettings,
    /// How its source fetches.
    pub fetch: crate::source::Fetch,
    /// `afc.verdicts` (with the topic prefix).
    pub topic: String,
    pub store: PgStore,
    pub tickets: Tickets,
    pub key: VerdictKey,
    pub producer: FutureProducer,
    pub dlq_topic: String,
    /// The current spec, compiled: verdicts of its tickets are applied with it; a verdict whose
    /// ticket closed opens the next one, as a new message would.
    pub check: Arc<CheckedSpec>,
    pub history_limit: Option<u32>,
}

/// Verdicts handled before their offsets are saved at most.
const MAX_BATCH: usize = 256;

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
            self.fetch,
            self.store.clone(),
            &self.topic,
            &shutdown,
        )
        .await
        else {
            return;
        };
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = source.recv() => r,
            };
            // Whatever else is already fetched is handled before the offsets move, once.
            let mut next_offsets = Vec::new();
            let mut record = Some(first);
            while let Some(r) = record.take() {
                match r {
                    Ok(r) => {
                        if !self.handle_retrying(&r, &shutdown).await {
                            return; // shutting down: the offsets stay, the verdicts are redelivered
                        }
                        next_offsets.push((r.partition(), r.offset() + 1));
                    }
                    Err(e) => tracing::warn!(error = %e, "kafka receive failed; retrying"),
                }
                if next_offsets.len() < MAX_BATCH {
                    record = source.recv().now_or_never();
                }
            }
            if let Err(e) = source.done_upto(&next_offsets).await {
                tracing::warn!(error = %e, "offsets not saved; the verdicts may be redelivered");
            }
        }
    }

    /// Handles `record`, retrying transient failures with a backoff; false on shutdown.
    async fn handle_retrying(
        &self,
        record: &BorrowedMessage<'_>,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.handle(record).await {
                Ok(h) => {
                    tracing::debug!(offset = record.offset(), outcome = ?h, "afc verdict handled");
                    return true;
                }
                Err(e) => tracing::warn!(
                    partition = record.partition(), offset = record.offset(), error = %e,
                    "afc verdict not yet handled; retrying"
                ),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
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
        let token_text = token_text.trim();
        let duplicate = match subject.author {
            Author::Client => {
                let taken = self
                    .store
                    .take_afc_verdict(
                        v.message_id,
                        &subject.client_id,
                        v.status,
                        token_text,
                        self.check.as_ref(),
                    )
                    .await?;
                match taken {
                    AfcTaken::Contradicts { earlier } => {
                        return self.contradicts(record, &v, earlier).await;
                    }
                    AfcTaken::Applied { duplicate, .. } | AfcTaken::Command { duplicate } => {
                        duplicate
                    }
                    // A duplicate wakes the ticket again: harmless, and it covers a crash between
                    // the record and this signal.
                    AfcTaken::Workflow { duplicate } => {
                        self.tickets
                            .afc_verdict(
                                &subject.client_id,
                                v.message_id,
                                ticket_id_opened_by(v.message_id),
                                &self.check.spec,
                                self.history_limit,
                            )
                            .await?;
                        duplicate
                    }
                }
            }
            _ => {
                let recorded = self
                    .store
                    .record_afc_verdict(v.message_id, &subject.client_id, v.status, token_text)
                    .await?;
                if let VerdictRecord::Contradicts { earlier } = recorded {
                    return self.contradicts(record, &v, earlier).await;
                }
                // Replies were already delivered: a suspicious one raises an operator alert.
                if v.status == AfcStatus::Suspicious {
                    self.store.record_flagged_reply(v.message_id).await?;
                }
                recorded == VerdictRecord::Duplicate
            }
        };
        tracing::info!(
            message_id = %v.message_id, client_id = %subject.client_id, status = v.status.as_str(),
            duplicate, "afc verdict recorded"
        );
        Ok(if duplicate {
            Handled::Duplicate
        } else {
            Handled::Applied
        })
    }

    async fn contradicts(
        &self,
        record: &BorrowedMessage<'_>,
        v: &crate::afc_kafka::VerifiedVerdict,
        earlier: AfcStatus,
    ) -> Result<Handled, Box<dyn std::error::Error + Send + Sync>> {
        let r = Rejection::Contradicts {
            message_id: v.message_id,
            earlier: earlier.as_str(),
            new: v.status.as_str(),
        };
        self.dead_letter(record, r).await
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
