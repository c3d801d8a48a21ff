//! Reading a Kafka topic without a consumer group: the partitions this process holds a lease on
//! (PostgreSQL advisory locks, see `tickets::offsets`), from the offsets stored in PostgreSQL.
//! Another instance waits as a hot standby and takes over a partition as soon as its holder's
//! database session ends, e.g. because the process was killed.
//!
//! A lease ends with its database session, also when the database restarts: the holder would read
//! on without it, next to a standby that took the partition over. So a keeper task checks the
//! leases every [`LEASE_CHECK`], stops reading a partition whose lease ended, and takes any free
//! partition (its own back once the database answers again, or one another instance let go of),
//! reading it from its stored offset.

use std::sync::Arc;
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

/// How often the keeper checks the leases and looks for free partitions.
pub const LEASE_CHECK: Duration = Duration::from_secs(2);

pub struct LeasedSource {
    consumer: Arc<StreamConsumer>,
    store: PgStore,
    topic: String,
    /// Owns the leases; aborted (dropping them) with the source.
    keeper: tokio::task::JoinHandle<()>,
}

impl Drop for LeasedSource {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

impl LeasedSource {
    /// Leases every free partition of `topic` (waiting while all are held elsewhere) and positions
    /// the consumer at the stored offsets (the beginning where none is stored).
    pub async fn start(
        kafka: &platform::kafka::KafkaSettings,
        wait_ms: u32,
        store: PgStore,
        topic: &str,
        shutdown: &CancellationToken,
    ) -> Result<Self, SourceError> {
        let consumer: StreamConsumer = platform::kafka::config(kafka)
            // librdkafka wants a group id; no group is joined with manual assignment.
            .set("group.id", format!("inbox-leased-{topic}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // The local broker holds every fetch for the whole `fetch.wait.max.ms`, so
            // librdkafka's 500 ms default put half a second or more between the edge's ack and
            // the consumer seeing a message; each fetch costs it CPU too (see
            // `platform::kafka::tail`). `INBOX_KAFKA_SOURCE_WAIT_MS`, default 10.
            .set("fetch.wait.max.ms", wait_ms.to_string())
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
            for &p in &partitions {
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
                let consumer = Arc::new(consumer);
                let keeper = tokio::spawn(keep_leases(
                    consumer.clone(),
                    store.clone(),
                    topic.to_owned(),
                    partitions,
                    leases,
                ));
                return Ok(Self {
                    consumer,
                    store,
                    topic: topic.to_owned(),
                    keeper,
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
        kafka: &platform::kafka::KafkaSettings,
        wait_ms: u32,
        store: PgStore,
        topic: &str,
        shutdown: &CancellationToken,
    ) -> Option<Self> {
        loop {
            match Self::start(kafka, wait_ms, store.clone(), topic, shutdown).await {
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

    /// Records that every record up to each `(partition, next_offset)` was fully handled: a
    /// restart resumes there.
    pub async fn done_upto(&self, next: &[(i32, i64)]) -> Result<(), SourceError> {
        self.store.save_kafka_offsets(&self.topic, next).await?;
        Ok(())
    }

    /// Records that `record` was fully handled: a restart resumes after it.
    pub async fn done(&self, record: &BorrowedMessage<'_>) -> Result<(), SourceError> {
        self.store
            .save_kafka_offset(&self.topic, record.partition(), record.offset() + 1)
            .await?;
        Ok(())
    }
}

/// Checks the leases every [`LEASE_CHECK`]: drops the partitions whose lease ended, takes the free
/// ones, and reassigns the consumer when that changed what it may read (kept partitions keep their
/// position; taken ones start at their stored offset).
async fn keep_leases(
    consumer: Arc<StreamConsumer>,
    store: PgStore,
    topic: String,
    partitions: Vec<i32>,
    mut leases: Vec<PartitionLease>,
) {
    let mut tick = tokio::time::interval(LEASE_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // Partitions taken since the last successful reassignment, and whether one is due.
    let mut taken: Vec<i32> = Vec::new();
    let mut reassign = false;
    loop {
        tick.tick().await;
        let mut held = Vec::with_capacity(leases.len());
        for mut lease in leases.drain(..) {
            let alive = tokio::time::timeout(LEASE_CHECK, lease.is_held())
                .await
                .unwrap_or(false);
            if alive {
                held.push(lease);
            } else {
                tracing::warn!(
                    topic,
                    partition = lease.partition,
                    "partition lease ended with its database session; no longer reading it"
                );
                taken.retain(|p| *p != lease.partition);
                reassign = true;
            }
        }
        leases = held;
        for &p in &partitions {
            if leases.iter().any(|l| l.partition == p) {
                continue;
            }
            match store.lease_partition(&topic, p).await {
                Ok(Some(lease)) => {
                    tracing::info!(topic, partition = p, "partition leased");
                    leases.push(lease);
                    taken.push(p);
                    reassign = true;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(topic, error = %e, "cannot check for free partitions; retrying");
                    break;
                }
            }
        }
        if !reassign {
            continue;
        }
        match assignment(&consumer, &store, &topic, &leases, &taken).await {
            Ok(tpl) => match consumer.assign(&tpl) {
                Ok(()) => {
                    tracing::info!(
                        topic,
                        partitions = leases.len(),
                        "reading leased partitions"
                    );
                    taken.clear();
                    reassign = false;
                }
                Err(e) => tracing::warn!(topic, error = %e, "cannot reassign; retrying"),
            },
            Err(e) => tracing::warn!(topic, error = %e, "cannot reassign; retrying"),
        }
    }
}

/// The consumer's assignment for `leases`: a partition read before (and not just taken) resumes at
/// the consumer's position; the others at their stored offset.
async fn assignment(
    consumer: &StreamConsumer,
    store: &PgStore,
    topic: &str,
    leases: &[PartitionLease],
    taken: &[i32],
) -> Result<TopicPartitionList, SourceError> {
    let positions = consumer.position()?;
    let mut tpl = TopicPartitionList::new();
    for lease in leases {
        let p = lease.partition;
        let position = positions
            .find_partition(topic, p)
            .map(|e| e.offset())
            .filter(|o| matches!(o, Offset::Offset(_)) && !taken.contains(&p));
        let offset = match position {
            Some(o) => o,
            None => match store.kafka_offset(topic, p).await? {
                Some(o) => Offset::Offset(o),
                None => Offset::Beginning,
            },
        };
        tpl.add_partition_offset(topic, p, offset)?;
    }
    Ok(tpl)
}
