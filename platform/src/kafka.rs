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

/// Producer that waits for all in-sync replicas and keeps each partition's order across its own
/// retries (one request in flight per broker connection). It is at-least-once: a retry after a lost
/// ack can write a record twice, which every consumer of ours absorbs (messages are stored by an id
/// derived from their source, events are read by `seq`, verdicts are recorded once per message).
///
/// Not the idempotent producer: when a broker dies with requests in flight, librdkafka bumps the
/// producer epoch locally, and the local broker (Tansu 0.6.0) panics on the first produce with an
/// epoch it did not hand out (`lite.rs` `idempotent_message_check`), which kills its storage task:
/// the broker keeps its port open and fails every request until restarted. Seen in
/// `e2e/tests/stack_faults.rs` on every broker restart under load.
pub fn producer_config(brokers: &str) -> ClientConfig {
    let mut c = config(brokers);
    c.set("acks", "all")
        .set("enable.idempotence", "false")
        .set("max.in.flight.requests.per.connection", "1")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "30000");
    c
}

/// How long a client-facing publish waits for the broker's ack before the edge answers
/// "unavailable, retry" (HTTP 503, gRPC `UNAVAILABLE`): without a bound the client waits for the
/// whole `message.timeout.ms` (30 s) while the broker is down, which it sees as a hang.
pub const EDGE_PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes one record and waits for the broker's ack, at most `within`. On time-out the record
/// may still be delivered later by the producer's own retries: callers publish records whose id
/// derives from their source (a client's retry maps onto the same message), so a late copy is
/// harmless. The producer's own `message.timeout.ms` stays long, so a broker back within it still
/// gets the record without the client's help.
pub async fn publish_acked(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
    within: Duration,
) -> Result<(), rdkafka::error::KafkaError> {
    let send = producer.send(
        rdkafka::producer::FutureRecord::to(topic)
            .key(key)
            .payload(payload),
        within,
    );
    match tokio::time::timeout(within, send).await {
        Ok(r) => r.map(|_| ()).map_err(|(e, _)| e),
        Err(_) => Err(rdkafka::error::KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut,
        )),
    }
}

/// A client-facing topic: records keyed (a client id keeps its order), each publish waiting for
/// the broker's ack at most [`EDGE_PUBLISH_TIMEOUT`]. The web chat, Telegram, email and the gRPC
/// `ClientService` all publish `inbound.messages` through one of these.
#[derive(Clone)]
pub struct EdgeTopic {
    producer: rdkafka::producer::FutureProducer,
    topic: String,
}

impl EdgeTopic {
    pub fn new(brokers: &str, topic: String) -> Result<Self, rdkafka::error::KafkaError> {
        Ok(Self {
            producer: producer_config(brokers).create()?,
            topic,
        })
    }

    /// Returns once the broker acknowledged the record (or the bound ran out).
    pub async fn publish(
        &self,
        key: &str,
        payload: &[u8],
    ) -> Result<(), rdkafka::error::KafkaError> {
        publish_acked(
            &self.producer,
            &self.topic,
            key,
            payload,
            EDGE_PUBLISH_TIMEOUT,
        )
        .await
    }
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

/// `fetch.wait.max.ms` for a consumer: `var` from the environment if it is set, else `default_ms`.
///
/// The local broker (Tansu 0.6) answers a fetch only after the whole wait, whether it found
/// records or not, and reads every partition of the request from SQLite once per fetch. So a
/// record waits between one and two waits per hop, and a short wait costs broker CPU: ~40 % of a
/// core per consumer of a 4-partition topic at 10 ms (`make bench` at 1 msg/s: Tansu at 79 % with
/// the gateway's and communication's tails). Apache Kafka answers as soon as a record arrives; set
/// the variables to librdkafka's default (500) there.
pub fn fetch_wait_ms(var: &str, default_ms: u32) -> String {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(default_ms)
        .to_string()
}

/// A consumer positioned at the end of every partition of `topic`, without a consumer group: each
/// process sees every new record (wake-ups for streams, not work to share). Fetches wait
/// `INBOX_KAFKA_TAIL_WAIT_MS` (default 10, see [`fetch_wait_ms`]).
pub fn tail(brokers: &str, topic: &str) -> Result<rdkafka::consumer::StreamConsumer, KafkaError> {
    tail_with_wait(
        brokers,
        topic,
        &fetch_wait_ms("INBOX_KAFKA_TAIL_WAIT_MS", 10),
    )
}

/// [`tail`] with fetches that wait `wait_ms` (see [`fetch_wait_ms`]).
pub fn tail_with_wait(
    brokers: &str,
    topic: &str,
    wait_ms: &str,
) -> Result<rdkafka::consumer::StreamConsumer, KafkaError> {
    use rdkafka::consumer::Consumer;
    let consumer: rdkafka::consumer::StreamConsumer = config(brokers)
        // librdkafka wants a group id; manual assignment joins no group.
        .set("group.id", format!("inbox-tail-{topic}"))
        .set("enable.auto.commit", "false")
        // A wake-up is only as good as it is prompt: with librdkafka's default (500 ms) a fetch
        // is held that long on the local broker, so a new record waited up to 500 ms (measured
        // with `stream-bench`: p50 ~450 ms).
        .set("fetch.wait.max.ms", wait_ms)
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
