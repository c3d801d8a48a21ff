//! An example of the bank's bot worker, for `make run` and tests: consumes `bot.commands`,
//! answers a few commands on `bot.replies` (see [`answer`]), optionally after a delay. A bank
//! writes its own in any language: the contract is the two JSON records of [`crate::bots`].

use std::time::Duration;

use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;

use crate::bots::{BotTopics, CommandRecord, ReplyRecord};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("kafka: {0}")]
    Topics(#[from] platform::kafka::KafkaError),
}

pub struct BotWorker {
    pub kafka: platform::kafka::KafkaSettings,
    pub topics: BotTopics,
    /// Consumer group (a fresh member per start, see `run`).
    pub group: String,
    /// Wait this long before answering each command.
    pub delay: Duration,
}

/// The example's answer to `c`: text, and whether a manager should take over.
pub fn answer(c: &CommandRecord) -> (String, bool) {
    match c.command.as_str() {
        "status" => ("All bank services are working normally.".into(), false),
        "hours" => (
            "Our managers answer on weekdays from 09:00 to 18:00 (Moscow time). This chat is open around the clock.".into(),
            false,
        ),
        "rates" => (
            "Example rates for today: USD 92.10 / 93.40, EUR 99.80 / 101.20.".into(),
            false,
        ),
        "help" => (
            "Commands: /status, /hours, /rates, /manager (talk to a person).".into(),
            false,
        ),
        "manager" => ("Connecting you with a manager.".into(), true),
        other => (
            format!("I do not know /{other}. Write /help to see what I can do."),
            false,
        ),
    }
}

impl BotWorker {
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        platform::kafka::ensure_topics(&self.kafka, &self.topics.all()).await?;
        // A member of its own per start, as the AFC emulator (a SIGKILLed member is never
        // evicted by the local broker); reading from the start again only repeats answers,
        // and a repeated answer changes nothing.
        let group = format!("{}-{}", self.group, uuid::Uuid::new_v4().simple());
        let consumer: StreamConsumer = platform::kafka::config(&self.kafka)
            .set("group.id", &group)
            .set("enable.auto.commit", "true")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .create()?;
        consumer.subscribe(&[&self.topics.commands])?;
        let producer: FutureProducer = platform::kafka::producer_config(&self.kafka).create()?;
        tracing::info!(topic = %self.topics.commands, delay_ms = self.delay.as_millis() as u64, "bot worker ready");
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
            let command: CommandRecord = match serde_json::from_slice(
                record.payload().unwrap_or_default(),
            ) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(offset = record.offset(), error = %e, "skipping an unreadable command");
                    continue;
                }
            };
            let (producer, topic, delay) =
                (producer.clone(), self.topics.replies.clone(), self.delay);
            let stop = shutdown.clone();
            // Each command answered on its own: a slow one does not hold the others.
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                let (text, hand_over) = answer(&command);
                let reply = ReplyRecord {
                    correlation_id: command.correlation_id,
                    client_id: command.client_id.clone(),
                    text,
                    hand_over,
                };
                let Ok(value) = serde_json::to_vec(&reply) else {
                    return;
                };
                while let Err(e) = platform::kafka::publish_acked(
                    &producer,
                    &topic,
                    &command.client_id,
                    &value,
                    Duration::from_secs(30),
                )
                .await
                {
                    tracing::warn!(error = %e, "publishing an answer failed; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                tracing::info!(command_id = %command.correlation_id, command = %command.command, "bot answer sent");
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_answers_its_commands_and_hands_over_on_manager() {
        let mut c = CommandRecord {
            correlation_id: uuid::Uuid::nil(),
            command: "status".into(),
            args: String::new(),
            client_id: "web:a".into(),
            channel: "web".into(),
            sent_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            deadline: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        };
        assert!(!answer(&c).1);
        c.command = "manager".into();
        assert!(answer(&c).1);
        c.command = "nope".into();
        assert!(answer(&c).0.contains("/help"));
    }
}
