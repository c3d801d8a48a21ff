//! Reading a Kafka topic without a consumer group: the partitions this process holds a lease on
//! (PostgreSQL advisory locks, see `tickets::offsets`), from the offsets stored in PostgreSQL.
//! Another instance waits as a hot standby and takes over a partition as soon as its holder's
//! database session ends, e.g. because the process was killed.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tickets::PgStore;
use tickets::offsets::PartitionLease;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("store: {0}")]
    Store(#[from] tickets::StoreError),
    #[error("shut down before a partition of {0} was free")]
    Shutdown(String),
}

pub struct LeasedSource {
    consumer: StreamConsumer,
    store: PgStore,
    topic: String,
    _leases: Vec<PartitionLease>,
}

impl LeasedSource {
    /// Leases every free partition of `topic` (waiting while all are held elsewhere) and positions
    /// the consumer at the stored offsets (the beginning where none is stored).
    pub async fn start(
        brokers: &str,
        store: PgStore,
        topic: &str,
        shutdown: &CancellationToken,
    ) -> Result<Self, SourceError> {
        let consumer: StreamConsumer = platform::kafka::config(brokers)
            // librdkafka wants a group id; no group is joined with manual assignment.
            .set("group.id", format!("inbox-leased-{topic}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()?;
        loop {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            let mut leases = Vec::new();
            let mut tpl = TopicPartitionList::new();
            for p in partitions {
                if let Some(lease) = store.lease_partition(topic, p).await? {
                    let offset = match store.kafka_offset(topic, p).await? {
                        Some(o) => Offset::Offset(o),
                        None => Offset::Beginning,
                    };
                    tpl.add_partition_offset(topic, p, offset)?;
                    leases.push(lease);
                }
            }
            if !leases.is_empty() {
                consumer.assign(&tpl)?;
                tracing::info!(
                    topic,
                    partitions = leases.len(),
                    "reading leased partitions"
                );
                return Ok(Self {
                    consumer,
                    store,
                    topic: topic.to_owned(),
                    _leases: leases,
                });
            }
            tracing::info!(
                topic,
                "every partition is held by another instance; standing by"
            );
            tokio::select! {
                _ = shutdown.cancelled() => return Err(SourceError::Shutdown(topic.to_owned())),
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    /// [`Self::start`], retried every 2 s through broker or database outages; None on shutdown.
    pub async fn start_retrying(
        brokers: &str,
        store: PgStore,
        topic: &str,
        shutdown: &CancellationToken,
    ) -> Option<Self> {
        loop {
            match Self::start(brokers, store.clone(), topic, shutdown).await {
                Ok(s) => return Some(s),
                Err(SourceError::Shutdown(_)) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read {topic}; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
            }
        }
    }

    pub async fn recv(&self) -> Result<BorrowedMessage<'_>, rdkafka::error::KafkaError> {
        self.consumer.recv().await
    }

    /// Records that `record` was fully handled: a restart resumes after it.
    pub async fn done(&self, record: &BorrowedMessage<'_>) -> Result<(), SourceError> {
        self.store
            .save_kafka_offset(&self.topic, record.partition(), record.offset() + 1)
            .await?;
        Ok(())
    }
}
