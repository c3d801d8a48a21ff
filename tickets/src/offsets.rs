//! Kafka read positions kept in PostgreSQL, and leases on partitions.
//!
//! Consumers of the engine do not use Kafka consumer groups: the local broker does not evict a
//! member killed with SIGKILL, so its partitions would stall until the group times out (if ever).
//! Instead a process reads a partition while it holds a session advisory lock on it (released the
//! moment its connection dies), and stores the next offset here after each handled record.

use sqlx::{Connection, PgConnection};

use crate::store::{PgStore, Result};

/// A claim on one partition: held as long as this value (and its connection) lives.
pub struct PartitionLease {
    conn: PgConnection,
    pub topic: String,
    pub partition: i32,
}

impl PartitionLease {
    /// Whether the lease still holds. A session advisory lock ends only with its session, so the
    /// lease holds exactly while its connection answers; a database restart ends it silently.
    pub async fn is_held(&mut self) -> bool {
        sqlx::query("SELECT 1")
            .execute(&mut self.conn)
            .await
            .is_ok()
    }
}

fn lease_key(topic: &str, partition: i32) -> i64 {
    // FNV-1a: stable across processes and releases, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("kafka-lease\0{topic}\0{partition}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

impl PgStore {
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
                conn,
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
