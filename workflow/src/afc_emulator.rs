//! An emulator of the bank's AFC system, for `make run` and tests: consumes `afc.msgs`, decrypts,
//! applies configurable rules (the built-in AFC rules: card numbers and regexes), and answers on
//! `afc.verdicts` with an RS256-signed verdict. Optional delay per message and error rate (a failed
//! check is retried after the delay, as a flaky AFC system would; nothing is dropped).

use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::FuturesOrdered;
use jsonwebtoken::EncodingKey;
use rdkafka::Message as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use rsa::rand_core::{OsRng, RngCore};
use tickets::Verdict;
use tokio_util::sync::CancellationToken;

use crate::afc_kafka::{AfcError, AfcTopics, Cipher, VerdictClaims, sign_verdict};
use tickets::screening::Rules;

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("kafka: {0}")]
    Topics(#[from] platform::kafka::KafkaError),
    #[error(transparent)]
    Afc(#[from] AfcError),
}

pub struct Emulator {
    pub kafka: platform::kafka::KafkaSettings,
    pub topics: AfcTopics,
    /// Consumer group: a restarted emulator resumes where the last one committed.
    pub group: String,
    pub cipher: Cipher,
    pub signing_key: EncodingKey,
    pub rules: Rules,
    /// Wait this long before answering each message.
    pub delay: Duration,
    /// Fraction (0..=1) of checks that fail and are retried after `delay` (at least 100 ms).
    pub error_rate: f64,
}

impl Emulator {
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), EmulatorError> {
        platform::kafka::ensure_topics(&self.kafka, &self.topics.all()).await?;
        // A group of its own per start: the local broker never evicts a member that was
        // SIGKILLed, so a restarted emulator joining the old group got no partition and answered
        // nothing (seen in `e2e/tests/afc.rs`). It reads `afc.msgs` from the start again, which
        // only repeats verdicts, and a repeated verdict changes nothing.
        let group = format!("{}-{}", self.group, uuid::Uuid::new_v4().simple());
        let consumer: StreamConsumer = platform::kafka::config(&self.kafka)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .create()?;
        consumer.subscribe(&[&self.topics.msgs])?;
        let producer: FutureProducer = platform::kafka::producer_config(&self.kafka).create()?;
        tracing::info!(
            topic = %self.topics.msgs, encrypted = !self.cipher.is_clear(),
            "afc emulator ready"
        );
        // Verdicts being published, oldest first: offsets are committed in that order once the
        // broker has each, so a restart never skips an unanswered message. Several are in flight
        // at once: one acknowledgement at a time capped the emulator at ~50 verdicts a second.
        let mut in_flight: FuturesOrdered<Answered> = FuturesOrdered::new();
        loop {
            let record = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                Some((partition, offset)) = in_flight.next(), if !in_flight.is_empty() => {
                    self.commit(&consumer, partition, offset);
                    continue;
                }
                r = consumer.recv(), if in_flight.len() < MAX_IN_FLIGHT => r,
            };
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "kafka receive failed; retrying");
                    continue;
                }
            };
            match self.cipher.open(record.payload().unwrap_or_default()) {
                Err(e) => {
                    tracing::error!(offset = record.offset(), error = %e, "skipping an unreadable AFC message")
                }
                Ok(m) => {
                    loop {
                        let pause = tokio::time::sleep(self.delay);
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = pause => {}
                        }
                        if self.error_rate > 0.0
                            && f64::from(OsRng.next_u32()) / f64::from(u32::MAX) < self.error_rate
                        {
                            tracing::warn!(message_id = %m.id, "emulated AFC failure; retrying");
                            let backoff =
                                tokio::time::sleep(self.delay.max(Duration::from_millis(100)));
                            tokio::select! {
                                _ = shutdown.cancelled() => return Ok(()),
                                _ = backoff => {}
                            }
                            continue;
                        }
                        break;
                    }
                    // The text and the files' names (the emulator has no lists of hashes).
                    let mut checked = m.body.clone();
                    for a in &m.attachments {
                        checked.push('\n');
                        checked.push_str(&a.name);
                    }
                    let status = match self.rules.check(&checked) {
                        Verdict::Passed => "ok",
                        Verdict::Blocked { .. } => "suspicious",
                    };
                    let token = sign_verdict(
                        &self.signing_key,
                        &VerdictClaims {
                            chat_id: m.chat_id.clone(),
                            message_id: m.id.to_string(),
                            status: status.into(),
                        },
                    )?;
                    let (producer, topic) = (producer.clone(), self.topics.verdicts.clone());
                    let (partition, offset) = (record.partition(), record.offset());
                    in_flight.push_back(Box::pin(async move {
                        // Retried until the broker takes it: committing past an unanswered
                        // message would lose it (a shutdown drops it uncommitted: redelivered).
                        while let Err((e, _)) = producer
                            .send(
                                FutureRecord::to(&topic).key(&m.chat_id).payload(&token),
                                Duration::from_secs(30),
                            )
                            .await
                        {
                            tracing::warn!(error = %e, "publishing a verdict failed; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        tracing::info!(message_id = %m.id, chat_id = %m.chat_id, status, from_client = m.from_client, "afc verdict sent");
                        (partition, offset)
                    }));
                    continue;
                }
            }
            // Skipped: committed in its turn, after the verdicts before it.
            let (partition, offset) = (record.partition(), record.offset());
            in_flight.push_back(Box::pin(async move { (partition, offset) }));
        }
    }

    /// Commits the group's position past `offset` (asynchronously; a lost commit repeats
    /// verdicts, which changes nothing).
    fn commit(&self, consumer: &StreamConsumer, partition: i32, offset: i64) {
        let mut tpl = TopicPartitionList::new();
        let next =
            tpl.add_partition_offset(&self.topics.msgs, partition, Offset::Offset(offset + 1));
        if let Err(e) = next.and_then(|()| consumer.commit(&tpl, CommitMode::Async)) {
            tracing::warn!(error = %e, "offset commit failed");
        }
    }
}

/// A verdict being published: resolves to its record's partition and offset once the broker has it.
type Answered = std::pin::Pin<Box<dyn std::future::Future<Output = (i32, i64)> + Send>>;

/// Verdicts published at once at most.
const MAX_IN_FLIGHT: usize = 256;
