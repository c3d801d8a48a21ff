//! Kafka client configuration and topics. The same settings point at the local Tansu broker or at
//! Apache Kafka in production. Topics are created at start-up (the local broker does not auto-create).

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::settings::{Env, ExposeSecret, Refusals, SecretString, SettingError};

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
    /// Inbound records that can never be processed (see [`DeadLetters`]).
    pub inbound_dead_letters: String,
    pub ticket_events: String,
}

/// How to reach the brokers: addresses, TLS, SASL, and the shape of the topics the engine creates.
#[derive(Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    /// librdkafka's `security.protocol`: `plaintext`, `ssl`, `sasl_plaintext`, `sasl_ssl`.
    pub security_protocol: String,
    pub ca_file: Option<String>,
    /// Client certificate and key files (mutual TLS).
    pub client_cert: Option<(String, String)>,
    /// Mechanism, user name and password, with the `sasl_*` protocols.
    pub sasl: Option<(String, String, SecretString)>,
    /// Partitions per topic: per-client order only needs the key, this bounds consumer parallelism.
    pub partitions: i32,
    pub replication: i32,
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("security_protocol", &self.security_protocol)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl KafkaSettings {
    /// Plain-text brokers, as tools and tests on the local broker use them: one partition per
    /// topic, as the local stack runs (`config/dev.env`).
    pub fn plaintext(brokers: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            security_protocol: "plaintext".into(),
            ca_file: None,
            client_cert: None,
            sasl: None,
            partitions: 1,
            replication: 1,
        }
    }

    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
        use crate::settings::common::*;
        let security_protocol: String = env.parse(&KAFKA_SECURITY_PROTOCOL)?;
        let sasl = if security_protocol.starts_with("sasl_") {
            let user = env.opt(&KAFKA_SASL_USERNAME).ok_or_else(|| {
                env.error(
                    &KAFKA_SASL_USERNAME,
                    "",
                    format!("required with security protocol {security_protocol}"),
                )
            })?;
            let password = env.secret(&KAFKA_SASL_PASSWORD).ok_or_else(|| {
                env.error(
                    &KAFKA_SASL_PASSWORD,
                    "",
                    format!("required with security protocol {security_protocol}"),
                )
            })?;
            Some((env.parse(&KAFKA_SASL_MECHANISM)?, user, password))
        } else {
            None
        };
        let client_cert = match (env.opt(&KAFKA_CERT_FILE), env.opt(&KAFKA_KEY_FILE)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(env.error(&KAFKA_KEY_FILE, "", "required with INBOX_KAFKA_CERT_FILE"));
            }
            (None, Some(_)) => {
                return Err(env.error(&KAFKA_CERT_FILE, "", "required with INBOX_KAFKA_KEY_FILE"));
            }
        };
        let tls = security_protocol.ends_with("ssl");
        if !tls && (client_cert.is_some() || env.is_set(&KAFKA_CA_FILE)) {
            return Err(env.error(
                &KAFKA_SECURITY_PROTOCOL,
                &security_protocol,
                "a CA or client certificate needs `ssl` or `sasl_ssl`",
            ));
        }
        let partitions: i32 = env.parse(&KAFKA_PARTITIONS)?;
        if partitions < 1 {
            return Err(env.error(&KAFKA_PARTITIONS, &partitions.to_string(), "at least 1"));
        }
        let replication: i32 = env.parse(&KAFKA_REPLICATION)?;
        if replication < 1 {
            return Err(env.error(&KAFKA_REPLICATION, &replication.to_string(), "at least 1"));
        }
        Ok(Self {
            brokers: env.text(&KAFKA_BROKERS),
            security_protocol,
            ca_file: env.opt(&KAFKA_CA_FILE),
            client_cert,
            sasl,
            partitions,
            replication,
        })
    }

    pub fn refusals(&self, r: &mut Refusals) {
        r.check(
            !self.security_protocol.ends_with("ssl"),
            format!(
                "INBOX_KAFKA_SECURITY_PROTOCOL={} is plain text: use ssl or sasl_ssl",
                self.security_protocol
            ),
        );
        r.check(
            self.sasl
                .as_ref()
                .is_some_and(|(_, _, pw)| crate::settings::is_dev_secret(pw.expose_secret())),
            "INBOX_KAFKA_SASL_PASSWORD is a dev secret",
        );
    }
}

impl Topics {
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            inbound_messages: format!("{prefix}inbound.messages"),
            inbound_dead_letters: format!("{prefix}inbound.messages.dlq"),
            ticket_events: format!("{prefix}ticket.events"),
        }
    }

    pub fn all(&self) -> [&str; 3] {
        [
            &self.inbound_messages,
            &self.inbound_dead_letters,
            &self.ticket_events,
        ]
    }
}

/// Base client configuration: brokers, TLS and SASL.
pub fn config(kafka: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers)
        .set("socket.keepalive.enable", "true")
        .set("log_level", "4")
        .set("security.protocol", &kafka.security_protocol);
    if kafka.security_protocol.ends_with("ssl") {
        // Host name verification is librdkafka's default since 2.0; said here so it stays on.
        c.set("ssl.endpoint.identification.algorithm", "https");
        if let Some(ca) = &kafka.ca_file {
            c.set("ssl.ca.location", ca);
        }
        if let Some((cert, key)) = &kafka.client_cert {
            c.set("ssl.certificate.location", cert)
                .set("ssl.key.location", key);
        }
    }
    if let Some((mechanism, user, password)) = &kafka.sasl {
        c.set("sasl.mechanisms", mechanism)
            .set("sasl.username", user)
            .set("sasl.password", password.expose_secret());
    }
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
pub fn producer_config(kafka: &KafkaSettings) -> ClientConfig {
    let mut c = config(kafka);
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
/// gets the record without the client's help. With the span export on, the record carries the
/// current span's trace context (a `traceparent` header).
pub async fn publish_acked(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
    within: Duration,
) -> Result<(), rdkafka::error::KafkaError> {
    let mut record = rdkafka::producer::FutureRecord::to(topic)
        .key(key)
        .payload(payload);
    if let Some(headers) = crate::telemetry::kafka_headers(&tracing::Span::current()) {
        record = record.headers(headers);
    }
    let send = producer.send(record, within);
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
    pub fn new(kafka: &KafkaSettings, topic: String) -> Result<Self, rdkafka::error::KafkaError> {
        Ok(Self {
            producer: producer_config(kafka).create()?,
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

/// Creates the topics if they are missing, with the configured partitions and replication.
pub async fn ensure_topics(kafka: &KafkaSettings, topics: &[&str]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = config(kafka).create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                kafka.partitions,
                TopicReplication::Fixed(kafka.replication),
            )
        })
        .collect();
    // Both bounds: without the request timeout librdkafka waits its own 60 s for a broker it
    // cannot reach (a TLS handshake refused by a wrong CA looked like a silent minute-long hang).
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(15)));
    for res in admin.create_topics(new.iter(), &opts).await? {
        match res {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaError::CreateTopic { topic, code }),
        }
    }
    Ok(())
}

/// A readiness probe of the brokers: the metadata of `topic`, fetched with a client made once.
pub fn probe(kafka: &KafkaSettings, topic: &str) -> Result<crate::ops::Probe, KafkaError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: std::sync::Arc<BaseConsumer> = std::sync::Arc::new(
        config(kafka)
            .set("group.id", "inbox-readiness-probe")
            .create()?,
    );
    let topic = topic.to_owned();
    Ok(std::sync::Arc::new(move || {
        let client = client.clone();
        let topic = topic.clone();
        Box::pin(async move {
            // librdkafka's metadata call blocks its thread.
            tokio::task::spawn_blocking(move || {
                client
                    .fetch_metadata(Some(&topic), Duration::from_secs(2))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())?
        })
    }))
}

/// Where records that can never be processed go, so their partition moves on: the original key
/// and value, unchanged, with the reason and origin in headers (`dead-letter-reason`,
/// `dead-letter-topic`, `dead-letter-partition`, `dead-letter-offset`), as Kafka Connect does.
/// Each is logged and counted (`inbox_dead_letters_total{topic}`): what an operator alerts on.
#[derive(Clone)]
pub struct DeadLetters {
    producer: rdkafka::producer::FutureProducer,
    topic: String,
}

/// Where a dead letter came from.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl DeadLetters {
    pub fn new(kafka: &KafkaSettings, topic: String) -> Result<Self, rdkafka::error::KafkaError> {
        Ok(Self {
            producer: producer_config(kafka).create()?,
            topic,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes one dead letter and waits for the broker's ack (at most 30 s).
    pub async fn publish(
        &self,
        origin: &Origin<'_>,
        reason: &str,
    ) -> Result<(), rdkafka::error::KafkaError> {
        use rdkafka::message::{Header, OwnedHeaders};
        let partition = origin.partition.to_string();
        let offset = origin.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "dead-letter-reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "dead-letter-topic",
                value: Some(origin.topic),
            })
            .insert(Header {
                key: "dead-letter-partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "dead-letter-offset",
                value: Some(&offset),
            });
        let record = rdkafka::producer::FutureRecord::to(&self.topic)
            .key(origin.key)
            .payload(origin.value)
            .headers(headers);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)?;
        metrics::counter!("inbox_dead_letters_total", "topic" => origin.topic.to_owned())
            .increment(1);
        tracing::error!(
            topic = origin.topic, partition = origin.partition, offset = origin.offset, reason,
            dead_letters = %self.topic, "a record that can never be processed was dead-lettered"
        );
        Ok(())
    }
}
