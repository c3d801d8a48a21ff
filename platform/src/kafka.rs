//! Kafka client configuration and topics. The same settings point at the local Tansu broker or at
//! Apache Kafka in production. Topics are created at start-up (the local broker does not auto-create).

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("creating topic {topic}: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

/// Topic names, with an optional prefix so tests and tenants can share a broker.
#[derive(Debug, Clone)]
pub struct Topics {
    pub inbound_messages: String,
    pub ticket_events: String,
}

/// Partitions per topic: per-client order only needs the key, this bounds consumer parallelism.
pub const PARTITIONS: i32 = 4;

impl Topics {
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            inbound_messages: format!("{prefix}inbound.messages"),
            ticket_events: format!("{prefix}ticket.events"),
        }
    }

    pub fn all(&self) -> [&str; 2] {
        [&self.inbound_messages, &self.ticket_events]
    }
}

/// Base client configuration for `brokers`.
pub fn config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("socket.keepalive.enable", "true")
        .set("log_level", "4");
    c
}

/// Producer that waits for all in-sync replicas and never duplicates on its own retries.
pub fn producer_config(brokers: &str) -> ClientConfig {
    let mut c = config(brokers);
    c.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "30000");
    c
}

/// Creates the topics if they are missing.
pub async fn ensure_topics(brokers: &str, topics: &[&str]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = config(brokers).create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for res in admin.create_topics(new.iter(), &opts).await? {
        match res {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaError::CreateTopic { topic, code }),
        }
    }
    Ok(())
}

/// A consumer positioned at the end of every partition of `topic`, without a consumer group: each
/// process sees every new record (wake-ups for streams, not work to share).
pub fn tail(brokers: &str, topic: &str) -> Result<rdkafka::consumer::StreamConsumer, KafkaError> {
    use rdkafka::consumer::Consumer;
    let consumer: rdkafka::consumer::StreamConsumer = config(brokers)
        // librdkafka wants a group id; manual assignment joins no group.
        .set("group.id", format!("inbox-tail-{topic}"))
        .set("enable.auto.commit", "false")
        // A wake-up is only as good as it is prompt: with librdkafka's default (500 ms) a fetch
        // on an idle partition is held that long, so a new record waited up to 500 ms (measured
        // with `stream-bench`: p50 ~450 ms). Short fetches cost a few idle requests per second.
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::End)?;
        }
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}
