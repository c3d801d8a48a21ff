//! An emulator of the bank's AFC system, for `make run` and tests: consumes `afc.msgs`, decrypts,
//! applies configurable rules (the built-in AFC rules: card numbers and regexes), and answers on
//! `afc.verdicts` with an RS256-signed verdict. Optional delay per message and error rate (a failed
//! check is retried after the delay, as a flaky AFC system would; nothing is dropped).

use std::time::Duration;

use jsonwebtoken::EncodingKey;
use rdkafka::Message as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rsa::rand_core::{OsRng, RngCore};
use tickets::Verdict;
use tokio_util::sync::CancellationToken;

use crate::afc::Rules;
use crate::afc_kafka::{AfcError, AfcTopics, Cipher, VerdictClaims, sign_verdict};

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
        loop {
            let record = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = consumer.recv() => r,
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
                    let status = match self.rules.check(&m.body) {
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
                    // Retried until the broker takes it: committing past an unanswered message
                    // would lose it.
                    while let Err((e, _)) = producer
                        .send(
                            FutureRecord::to(&self.topics.verdicts)
                                .key(&m.chat_id)
                                .payload(&token),
                            Duration::from_secs(30),
                        )
                        .await
                    {
                        tracing::warn!(error = %e, "publishing a verdict failed; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                    tracing::info!(message_id = %m.id, chat_id = %m.chat_id, status, from_client = m.from_client, "afc verdict sent");
                }
            }
            if let Err(e) = consumer.commit_message(&record, CommitMode::Async) {
                tracing::warn!(error = %e, "offset commit failed");
            }
        }
    }
}
