//! Reading a Kafka topic without a consumer group: the partitions this process holds a lease on
//! (PostgreSQL advisory locks, see `tickets::offsets`), from the offsets stored in PostgreSQL.
//!
//! Every process reading the topic is a member (another advisory lock). A keeper task checks every
//! [`LEASE_CHECK`] how many members are alive and holds its fair share, `ceil(partitions /
//! members)`: it gives back partitions above the share (another member takes them) and takes free
//! ones up to it. So a second instance gets half of the partitions within seconds, and the
//! partitions of one that dies (its session ends, and with it its locks) are taken over.
//!
//! A lease ends with its database session, also when the database restarts: the holder would read
//! on without it, next to another member that took the partition over. So the keeper also stops
//! reading a partition whose lease ended and takes the free ones again from their stored offset.
//!
//! A quiet topic is not fetched ([`Fetch::idle_poll_ms`]): once no record came for
//! [`Fetch::quiet_after_ms`], the partitions are paused, and every `idle_poll_ms` one offsets
//! request per partition (no records read) tells whether records came; then fetching resumes
//! until the topic is quiet again. The local broker (Tansu 0.6)
//! holds every fetch for the whole `fetch.wait.max.ms` and reads its storage each time, so
//! continuous 10 ms fetches of an idle topic cost it about half a core; Apache Kafka answers a
//! long poll as soon as a record arrives (there: `fetch.wait.max.ms` 500 and `idle_poll_ms` 0).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};
use tickets::PgStore;
use tickets::offsets::{MemberLease, PartitionLease};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("store: {0}")]
    Store(#[from] tickets::StoreError),
}

/// How often the keeper checks the leases and the members, and rebalances.
pub const LEASE_CHECK: Duration = Duration::from_secs(2);
/// How long the keeper waits for one partition's watermarks (for the lag gauge).
const LAG_QUERY: Duration = Duration::from_millis(500);

/// How a source fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetch {
    /// `fetch.wait.max.ms` (`INBOX_KAFKA_SOURCE_WAIT_MS`).
    pub wait_ms: u32,
    /// While the topic is quiet, one fetch every this many ms (`INBOX_KAFKA_IDLE_POLL_MS`); 0
    /// fetches continuously.
    pub idle_poll_ms: u32,
    /// The topic is quiet once no record came for this long.
    pub quiet_after_ms: u32,
}

impl Default for Fetch {
    fn default() -> Self {
        Self {
            wait_ms: 10,
            idle_poll_ms: 100,
            quiet_after_ms: 1000,
        }
    }
}

/// Where the pace of fetching is (see the module doc).
struct Pace {
    last_record: tokio::time::Instant,
    paused: bool,
}

pub struct LeasedSource {
    consumer: Arc<StreamConsumer>,
    store: PgStore,
    topic: String,
    fetch: Fetch,
    pace: Mutex<Pace>,
    /// Owns the leases; aborted (dropping them) with the source.
    keeper: tokio::task::JoinHandle<()>,
}

impl Drop for LeasedSource {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

impl LeasedSource {
    /// Joins the members reading `topic`, leases free partitions up to its share and positions
    /// the consumer at their stored offsets (the beginning where none is stored). It may hold
    /// none yet (every partition held by others): the keeper takes its share as others give
    /// partitions back.
    pub async fn start(
        kafka: &platform::kafka::KafkaSettings,
        fetch: Fetch,
        store: PgStore,
        topic: &str,
    ) -> Result<Self, SourceError> {
        let consumer: StreamConsumer = platform::kafka::config(kafka)
            // librdkafka wants a group id; no group is joined with manual assignment.
            .set("group.id", format!("inbox-leased-{topic}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // The local broker (Tansu 0.6) answers a fetch only after the whole
            // `fetch.wait.max.ms`, records or not, and reads the partitions from SQLite once per
            // fetch: librdkafka's 500 ms default put half a second or more between the edge's ack
            // and the consumer seeing a message, and a short wait costs broker CPU. Apache Kafka
            // answers as soon as a record arrives (use 500 there). `INBOX_KAFKA_SOURCE_WAIT_MS`,
            // default 10.
            .set("fetch.wait.max.ms", fetch.wait_ms.to_string())
            .create()?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let member = store.join_consumers(topic).await?;
        let mut keeper = Keeper {
            consumer: Arc::new(consumer),
            store: store.clone(),
            topic: topic.to_owned(),
            partitions,
            member,
            leases: Vec::new(),
            taken: Vec::new(),
        };
        keeper.balance().await?;
        keeper.reassign().await?;
        tracing::info!(
            topic,
            slot = keeper.member.slot,
            partitions = keeper.leases.len(),
            of = keeper.partitions.len(),
            "joined the consumers"
        );
        let consumer = keeper.consumer.clone();
        Ok(Self {
            consumer,
            store,
            topic: topic.to_owned(),
            fetch,
            pace: Mutex::new(Pace {
                last_record: tokio::time::Instant::now(),
                paused: false,
            }),
            keeper: tokio::spawn(keeper.run()),
        })
    }

    /// [`Self::start`], retried every 2 s through broker or database outages; None on shutdown.
    pub async fn start_retrying(
        kafka: &platform::kafka::KafkaSettings,
        fetch: Fetch,
        store: PgStore,
        topic: &str,
        shutdown: &CancellationToken,
    ) -> Option<Self> {
        loop {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return None,
                r = Self::start(kafka, fetch, store.clone(), topic) => r,
            };
            match attempt {
                Ok(s) => return Some(s),
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

    /// The next record, at the pace of [`Fetch`]. Cancel-safe: dropped half-way, the next call
    /// carries on from the pace it left.
    pub async fn recv(&self) -> Result<BorrowedMessage<'_>, rdkafka::error::KafkaError> {
        if self.fetch.idle_poll_ms == 0 {
            return self.consumer.recv().await;
        }
        loop {
            let (last_record, paused) = {
                let p = self.pace();
                (p.last_record, p.paused)
            };
            if paused {
                let poll = Duration::from_millis(u64::from(self.fetch.idle_poll_ms));
                tokio::time::sleep(poll).await;
                if self.records_waiting().await {
                    self.set_paused(false);
                    // librdkafka's fetcher thread notices a resume at its next turn, up to a
                    // second later; a request of its own wakes it now.
                    self.records_waiting().await;
                    self.pace().last_record = tokio::time::Instant::now();
                }
            } else {
                let quiet = Duration::from_millis(u64::from(self.fetch.quiet_after_ms));
                tokio::select! {
                    biased;
                    r = self.consumer.recv() => return self.seen(r),
                    () = tokio::time::sleep_until(last_record + quiet) => self.set_paused(true),
                }
            }
        }
    }

    /// Whether a held partition has records past this source's position: one offsets request
    /// (ListOffsets, no records read) per partition. True when it cannot tell.
    async fn records_waiting(&self) -> bool {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        // `fetch_watermarks` waits for the broker: not on the async threads.
        let asked = tokio::task::spawn_blocking(move || {
            let assignment = consumer.assignment().ok()?;
            let positions = consumer.position().ok()?;
            assignment
                .elements_for_topic(&topic)
                .iter()
                .map(|e| {
                    let p = e.partition();
                    let (low, high) = consumer.fetch_watermarks(&topic, p, LAG_QUERY).ok()?;
                    let position = positions.find_partition(&topic, p).map(|x| x.offset());
                    Some((p, low, high, position))
                })
                .collect::<Option<Vec<_>>>()
        })
        .await;
        let Ok(Some(partitions)) = asked else {
            return true;
        };
        for (p, low, high, position) in partitions {
            let next = match position {
                Some(Offset::Offset(o)) => o,
                // Nothing read yet: from the stored offset, else from the beginning.
                _ => match self.store.kafka_offset(&self.topic, p).await {
                    Ok(o) => o.unwrap_or(low),
                    Err(_) => return true,
                },
            };
            if high > next {
                return true;
            }
        }
        false
    }

    /// Whether the source paused fetching (the topic was quiet).
    pub fn is_paused(&self) -> bool {
        self.pace().paused
    }

    fn pace(&self) -> std::sync::MutexGuard<'_, Pace> {
        self.pace
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn seen<T>(&self, r: T) -> T {
        self.pace().last_record = tokio::time::Instant::now();
        r
    }

    /// Pauses (or resumes) fetching every assigned partition. A reassignment meanwhile starts
    /// its partitions unpaused: at worst they are fetched until the topic is quiet again.
    fn set_paused(&self, paused: bool) {
        let result = self.consumer.assignment().and_then(|tpl| {
            if paused {
                self.consumer.pause(&tpl)
            } else {
                self.consumer.resume(&tpl)
            }
        });
        if let Err(e) = result {
            tracing::debug!(topic = self.topic, paused, error = %e, "fetch pace not changed");
        }
        self.pace().paused = paused;
    }

    /// Records that every record up to each `(partition, next_offset)` was fully handled: a
    /// restart resumes there.
    pub async fn done_upto(&self, next: &[(i32, i64)]) -> Result<(), SourceError> {
        self.store.save_kafka_offsets(&self.topic, next).await?;
        Ok(())
    }
}

/// What the keeper task owns: the membership, the partition leases, and the consumer it assigns.
struct Keeper {
    consumer: Arc<StreamConsumer>,
    store: PgStore,
    topic: String,
    partitions: Vec<i32>,
    member: MemberLease,
    leases: Vec<PartitionLease>,
    /// Partitions taken since the last successful reassignment: read from their stored offset.
    taken: Vec<i32>,
}

/// `ceil(partitions / members)`: no member holds more than that while others could read.
pub fn fair_share(partitions: usize, members: i64) -> usize {
    let members = usize::try_from(members.max(1)).unwrap_or(1);
    partitions.div_ceil(members)
}

impl Keeper {
    /// Every [`LEASE_CHECK`]: drops the partitions whose lease ended, balances to the fair share
    /// and reassigns the consumer when that changed what it may read.
    async fn run(mut self) {
        let mut tick = tokio::time::interval(LEASE_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut reassign = false;
        loop {
            tick.tick().await;
            reassign |= self.drop_ended_leases().await;
            match self.balance().await {
                Ok(changed) => reassign |= changed,
                Err(e) => {
                    tracing::warn!(topic = self.topic, error = %e, "cannot balance partitions; retrying")
                }
            }
            if reassign {
                match self.reassign().await {
                    Ok(()) => reassign = false,
                    Err(e) => {
                        tracing::warn!(topic = self.topic, error = %e, "cannot reassign; retrying")
                    }
                }
            }
            self.report_lag().await;
        }
    }

    /// `inbox_consumer_lag{topic,partition}`: records of each partition past this process's read
    /// position (before a partition's first record is read: its stored offset). A partition read
    /// elsewhere counts 0 here, so `max by (partition)` over instances is the reader's lag.
    async fn report_lag(&self) {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let held: Vec<i32> = self.leases.iter().map(|l| l.partition).collect();
        // `fetch_watermarks` waits for the broker: not on the async threads.
        let fetched = tokio::task::spawn_blocking(move || {
            let positions = consumer.position().ok()?;
            let watermarks: Vec<(i32, Option<(i64, i64)>)> = held
                .into_iter()
                .map(|p| (p, consumer.fetch_watermarks(&topic, p, LAG_QUERY).ok()))
                .collect();
            Some((positions, watermarks))
        })
        .await;
        let Ok(Some((positions, watermarks))) = fetched else {
            return;
        };
        for &p in &self.partitions {
            let lag = match watermarks.iter().find(|(q, _)| *q == p) {
                None => 0,
                Some((_, None)) => continue,
                Some(&(_, Some((low, high)))) => {
                    let next = match positions.find_partition(&self.topic, p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => Some(o),
                        // Nothing read yet: from the stored offset, else from the beginning.
                        _ => self
                            .store
                            .kafka_offset(&self.topic, p)
                            .await
                            .ok()
                            .map(|o| o.unwrap_or(low)),
                    };
                    let Some(next) = next else { continue };
                    (high - next).max(0)
                }
            };
            metrics::gauge!("inbox_consumer_lag", "topic" => self.topic.clone(), "partition" => p.to_string())
                .set(lag as f64);
        }
    }

    /// Forgets leases (and the membership) whose database session ended; true when a partition
    /// was lost.
    async fn drop_ended_leases(&mut self) -> bool {
        let mut lost = false;
        let mut held = Vec::with_capacity(self.leases.len());
        for mut lease in self.leases.drain(..) {
            if tokio::time::timeout(LEASE_CHECK, lease.is_held())
                .await
                .unwrap_or(false)
            {
                held.push(lease);
            } else {
                tracing::warn!(
                    topic = self.topic,
                    partition = lease.partition,
                    "partition lease ended with its database session; no longer reading it"
                );
                self.taken.retain(|p| *p != lease.partition);
                lost = true;
            }
        }
        self.leases = held;
        let member_alive = tokio::time::timeout(LEASE_CHECK, self.member.is_held())
            .await
            .unwrap_or(false);
        if !member_alive {
            match self.store.join_consumers(&self.topic).await {
                Ok(m) => {
                    tracing::info!(
                        topic = self.topic,
                        slot = m.slot,
                        "joined the consumers again"
                    );
                    self.member = m;
                }
                Err(e) => {
                    tracing::warn!(topic = self.topic, error = %e, "cannot rejoin the consumers")
                }
            }
        }
        lost
    }

    /// Gives back the partitions above the fair share and takes free ones up to it; true when
    /// the held set changed.
    async fn balance(&mut self) -> Result<bool, SourceError> {
        let members = self.store.live_consumers(&self.topic).await?;
        let share = fair_share(self.partitions.len(), members);
        let mut changed = false;
        if self.leases.len() > share {
            // Give back the highest-numbered ones; the consumer stops reading them at the
            // reassignment below, before their leases (dropped with `surplus`) are free.
            self.leases.sort_by_key(|l| l.partition);
            let surplus = self.leases.split_off(share);
            for lease in &surplus {
                self.taken.retain(|p| *p != lease.partition);
                tracing::info!(
                    topic = self.topic,
                    partition = lease.partition,
                    members,
                    share,
                    "giving a partition back to another member"
                );
            }
            self.reassign().await?;
            drop(surplus);
            return Ok(true);
        }
        for &p in &self.partitions {
            if self.leases.len() >= share {
                break;
            }
            if self.leases.iter().any(|l| l.partition == p) {
                continue;
            }
            if let Some(lease) = self.store.lease_partition(&self.topic, p).await? {
                tracing::info!(
                    topic = self.topic,
                    partition = p,
                    members,
                    share,
                    "partition leased"
                );
                self.leases.push(lease);
                self.taken.push(p);
                changed = true;
            }
        }
        Ok(changed)
    }

    async fn reassign(&mut self) -> Result<(), SourceError> {
        let tpl = assignment(
            &self.consumer,
            &self.store,
            &self.topic,
            &self.leases,
            &self.taken,
        )
        .await?;
        self.consumer.assign(&tpl)?;
        self.taken.clear();
        let mut held: Vec<i32> = self.leases.iter().map(|l| l.partition).collect();
        held.sort_unstable();
        tracing::info!(topic = self.topic, ?held, "reading leased partitions");
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::fair_share;

    #[test]
    fn the_fair_share_leaves_no_member_idle_while_another_holds_more() {
        assert_eq!(fair_share(4, 1), 4);
        assert_eq!(fair_share(4, 2), 2);
        assert_eq!(fair_share(4, 3), 2);
        assert_eq!(fair_share(12, 5), 3);
        assert_eq!(fair_share(4, 8), 1);
        assert_eq!(fair_share(4, 0), 4);
    }
}
