//! Kafka read positions kept in PostgreSQL, and leases on partitions.
//!
//! Consumers of the engine do not use Kafka consumer groups: the local broker does not evict a
//! member killed with SIGKILL, so its partitions would stall until the group times out (if ever).
//! Instead a process reads a partition while it holds a session advisory lock on it (released the
//! moment its connection dies), and stores the next offset here after each handled record. The
//! processes reading a topic are members (another advisory lock each), so each can take its fair
//! share of the partitions and give back what is above it when another joins.

use sqlx::{Connection, PgConnection};

use crate::store::{PgStore, Result};

/// A session advisory lock, on a connection of its own.
struct SessionLock(PgConnection);

impl SessionLock {
    /// A session advisory lock ends only with its session, so it holds exactly while its
    /// connection answers; a database restart ends it silently.
    async fn is_held(&mut self) -> bool {
        sqlx::query("SELECT 1").execute(&mut self.0).await.is_ok()
    }
}

/// A claim on one partition: held as long as this value (and its connection) lives.
pub struct PartitionLease {
    lock: SessionLock,
    pub topic: String,
    pub partition: i32,
}

impl PartitionLease {
    /// Whether the lease still holds (see [`SessionLock`]).
    pub async fn is_held(&mut self) -> bool {
        self.lock.is_held().await
    }
}

/// A process's membership among the consumers of one topic: held as long as this value (and its
/// connection) lives. The members of a topic are counted from `pg_locks`, so every instance sees
/// at once when one joins or dies, and each holds about its share of the partitions.
pub struct MemberLease {
    lock: SessionLock,
    pub topic: String,
    /// This member's slot (0, 1, ...): the lowest free one when it joined.
    pub slot: i32,
}

impl MemberLease {
    /// Whether the membership still holds (see [`SessionLock`]).
    pub async fn is_held(&mut self) -> bool {
        self.lock.is_held().await
    }
}

/// Most members a topic can have (more would not get a partition anyway).
const MAX_MEMBERS: i32 = 1024;

/// The first key of the two-key advisory locks that mark members of `topic`'s consumers; the
/// second key is the slot. Non-negative, so it compares equal to `pg_locks.classid` as a number.
fn member_class(topic: &str) -> i32 {
    let h = fnv1a(&format!("kafka-members\0{topic}"));
    i32::try_from(h & 0x7fff_ffff).unwrap_or(0)
}

fn fnv1a(s: &str) -> u64 {
    // FNV-1a: stable across processes and releases, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn lease_key(topic: &str, partition: i32) -> i64 {
    let h = fnv1a(&format!("kafka-lease\0{topic}\0{partition}"));
    i64::from_ne_bytes(h.to_ne_bytes())
}

impl PgStore {
    /// Joins the consumers of `topic`: takes the lowest free member slot.
    pub async fn join_consumers(&self, topic: &str) -> Result<MemberLease> {
        let mut conn = self.pool().acquire().await?.detach();
        let class = member_class(topic);
        for slot in 0..MAX_MEMBERS {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                .bind(class)
                .bind(slot)
                .fetch_one(&mut conn)
                .await?;
            if got {
                return Ok(MemberLease {
                    lock: SessionLock(conn),
                    topic: topic.to_owned(),
                    slot,
                });
            }
        }
        Err(crate::StoreError::TooManyConsumers(format!(
            "{topic} has {MAX_MEMBERS} already"
        )))
    }

    /// How many processes are members of `topic`'s consumers now (at least 1 for a caller that
    /// is one).
    pub async fn live_consumers(&self, topic: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks
             WHERE locktype = 'advisory' AND objsubid = 2 AND granted AND classid::bigint = $1
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .bind(i64::from(member_class(topic)))
        .fetch_one(self.pool())
        .await?)
    }

    /// Takes the lease on a partition if nobody holds it.
    pub async fn lease_partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<PartitionLease>> {
        let mut conn = self.pool().acquire().await?.detach();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(lease_key(topic, partition))
            .fetch_one(&mut conn)
            .await?;
        if got {
            Ok(Some(PartitionLease {
                lock: SessionLock(conn),
                topic: topic.to_owned(),
                partition,
            }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    /// The next offset to read on a partition, if one was stored.
    pub async fn kafka_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT next_offset FROM kafka_offsets WHERE topic = $1 AND partition = $2",
        )
        .bind(topic)
        .bind(partition)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Records that every record before `next_offset` was handled (never moves back).
    pub async fn save_kafka_offset(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO kafka_offsets (topic, partition, next_offset) VALUES ($1, $2, $3)
             ON CONFLICT (topic, partition) DO UPDATE
             SET next_offset = GREATEST(kafka_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()",
        )
        .bind(topic)
        .bind(partition)
        .bind(next_offset)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
