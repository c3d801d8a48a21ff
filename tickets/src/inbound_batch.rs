//! Storing a poll's worth of inbound client messages in one transaction, and moving several Kafka
//! read positions at once: the inbound consumer's hot path.
//!
//! One transaction per message made the consumer hold the global events lock once per message
//! (a handful of round trips and a commit each); a batch holds it once, with a fixed number of
//! statements whatever its size.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::domain::{NewClientMessage, event_kind};
use crate::store::{EVENTS_CHANNEL, PgStore, Result};

/// Messages per batch at most. Rows of one batch get `created_at` = transaction start + their
/// position in microseconds (they all share `now()`, and a client's chat and pending queue are
/// ordered by `created_at, id`); the bound keeps that spread (< 1 ms) below the time any batch
/// takes to commit, so the next batch of the same partition still starts later.
pub const MAX_INBOUND_BATCH: usize = 256;

impl PgStore {
    /// Stores client messages as `pending`, in order, with their `message_accepted` events, in one
    /// transaction. Messages already stored (a redelivery, or a duplicate within `msgs`) change
    /// nothing. Returns how many were new. At most [`MAX_INBOUND_BATCH`] messages.
    pub async fn record_inbound_batch(&self, msgs: &[NewClientMessage]) -> Result<usize> {
        self.record_inbound_batch_traced(msgs, &[]).await
    }

    /// [`PgStore::record_inbound_batch`], keeping each message's trace context:
    /// `trace_parents[i]` is the `traceparent` of `msgs[i]` (see `trace_context`). Shorter than
    /// `msgs` (empty when span export is off): the rest have none (`unnest` pads with NULLs).
    pub async fn record_inbound_batch_traced(
        &self,
        msgs: &[NewClientMessage],
        trace_parents: &[Option<String>],
    ) -> Result<usize> {
        if msgs.is_empty() {
            return Ok(0);
        }
        debug_assert!(msgs.len() <= MAX_INBOUND_BATCH);
        // One row per client: an upsert may not touch the same row twice in one statement.
        // The last non-empty name wins, as it would message by message.
        let mut names: BTreeMap<&str, &str> = BTreeMap::new();
        for m in msgs {
            let name = names.entry(&m.client_id).or_insert("");
            if !m.client_name.is_empty() {
                *name = &m.client_name;
            }
        }
        let (client_ids, client_names): (Vec<&str>, Vec<&str>) = names.into_iter().unzip();

        let mut tx = self.begin_writing(false).await?;
        sqlx::query(
            "INSERT INTO clients (id, display_name)
             SELECT * FROM unnest($1::text[], $2::text[])
             ON CONFLICT (id) DO UPDATE SET display_name = EXCLUDED.display_name
             WHERE EXCLUDED.display_name <> '' AND clients.display_name <> EXCLUDED.display_name",
        )
        .bind(&client_ids)
        .bind(&client_names)
        .execute(&mut *tx)
        .await?;

        let ids: Vec<Uuid> = msgs.iter().map(|m| m.id).collect();
        let owners: Vec<&str> = msgs.iter().map(|m| m.client_id.as_str()).collect();
        let channels: Vec<&str> = msgs.iter().map(|m| m.channel.as_str()).collect();
        let external: Vec<&str> = msgs.iter().map(|m| m.external_id.as_str()).collect();
        let bodies: Vec<&str> = msgs.iter().map(|m| m.body.as_str()).collect();
        let inserted: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
            "INSERT INTO messages (id, client_id, author, channel, external_id, body, afc_status, created_at, trace_parent)
             SELECT id, client_id, 'client', channel, external_id, body, 'pending',
                    now() + (ord - 1) * interval '1 microsecond', trace_parent
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                  WITH ORDINALITY AS m(id, client_id, channel, external_id, body, trace_parent, ord)
             ORDER BY ord
             ON CONFLICT DO NOTHING
             RETURNING id, created_at",
        )
        .bind(&ids)
        .bind(&owners)
        .bind(&channels)
        .bind(&external)
        .bind(&bodies)
        .bind(&trace_parents[..trace_parents.len().min(msgs.len())])
        .fetch_all(&mut *tx)
        .await?;
        if inserted.is_empty() {
            // Nothing new: the whole batch was a redelivery.
            return Ok(0);
        }

        // Events in message order, so each client's stream shows them as they were written.
        let created: BTreeMap<Uuid, DateTime<Utc>> = inserted.iter().copied().collect();
        let mut seen = BTreeSet::new();
        let mut keys = Vec::with_capacity(inserted.len());
        let mut event_clients = Vec::with_capacity(inserted.len());
        let mut payloads = Vec::with_capacity(inserted.len());
        for m in msgs {
            // A duplicate within the batch was inserted once: its event is written once.
            let Some(created_at) = created.get(&m.id) else {
                continue;
            };
            if !seen.insert(m.id) {
                continue;
            }
            keys.push(format!("accepted:{}", m.id));
            event_clients.push(m.client_id.as_str());
            payloads.push(json!({
                "message_id": m.id,
                "body": m.body,
                "channel": m.channel,
                "created_at": created_at,
            }));
        }
        sqlx::query(
            "INSERT INTO events (dedup_key, kind, ticket_id, client_id, client_visible, manager_id, payload)
             SELECT key, $3, NULL, client_id, true, NULL, payload
             FROM unnest($1::text[], $2::text[], $4::jsonb[]) WITH ORDINALITY AS e(key, client_id, payload, ord)
             ORDER BY ord
             ON CONFLICT (dedup_key) DO NOTHING",
        )
        .bind(&keys)
        .bind(&event_clients)
        .bind(event_kind::MESSAGE_ACCEPTED)
        .bind(&payloads)
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(EVENTS_CHANNEL)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(inserted.len())
    }

    /// [`PgStore::save_kafka_offset`] for several partitions of `topic` in one statement: each
    /// `(partition, next_offset)` records that every record before it was handled (never moves
    /// back).
    pub async fn save_kafka_offsets(&self, topic: &str, next: &[(i32, i64)]) -> Result<()> {
        if next.is_empty() {
            return Ok(());
        }
        // One row per partition (the highest), as an upsert may not touch a row twice.
        let mut by_partition: BTreeMap<i32, i64> = BTreeMap::new();
        for &(p, o) in next {
            let e = by_partition.entry(p).or_insert(o);
            *e = (*e).max(o);
        }
        let (partitions, offsets): (Vec<i32>, Vec<i64>) = by_partition.into_iter().unzip();
        sqlx::query(
            "INSERT INTO kafka_offsets (topic, partition, next_offset)
             SELECT $1, p, o FROM unnest($2::int4[], $3::int8[]) AS x(p, o)
             ON CONFLICT (topic, partition) DO UPDATE
             SET next_offset = GREATEST(kafka_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()",
        )
        .bind(topic)
        .bind(&partitions)
        .bind(&offsets)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
