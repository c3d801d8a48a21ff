//! Store support for the channel adapters (Telegram, email): named cursors (a bot's update
//! offset, a delivery worker's position in the outbox) and the outbound delivery ledger that
//! makes every send happen at most once per (event, channel).

use serde_json::Value;
use sqlx::Row;

use crate::domain::Event;
use crate::store::{PgStore, Result, insert_event};
use crate::ticket_event::TicketEvent;
use crate::visibility;

/// What became of one outbound delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Sent,
    /// Given up: the channel refused (blocked by the user, no such chat) or retries ran out.
    Failed,
}

impl DeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }
}

/// One row of the delivery ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub event_seq: i64,
    pub channel: String,
    pub client_id: String,
    pub status: String,
    pub attempts: i32,
    pub detail: Option<String>,
    pub external_id: Option<String>,
}

impl PgStore {
    pub async fn channel_cursor(&self, name: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT position FROM channel_cursors WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Moves the cursor to `position`, never back.
    pub async fn advance_channel_cursor(&self, name: &str, position: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO channel_cursors (name, position) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()
             WHERE channel_cursors.position < EXCLUDED.position",
        )
        .bind(name)
        .bind(position)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Client-visible events of `kinds` after `after_seq` for clients whose id starts with
    /// `client_prefix` (one channel's clients, e.g. `tg:`), oldest first.
    pub async fn channel_events_after(
        &self,
        client_prefix: &str,
        kinds: &[&str],
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Event>> {
        // The visibility rule binds the client as $1; here it is every client of the channel.
        let rule = visibility::CLIENT_EVENTS.replace("e.client_id = $1", "e.client_id LIKE $1");
        let sql = format!(
            "SELECT e.seq, e.kind, e.ticket_id, e.client_id, e.manager_id, e.client_visible,
                    e.payload, e.created_at
             FROM events e WHERE {rule} AND e.kind = ANY($2) AND e.seq > $3
             ORDER BY e.seq LIMIT $4"
        );
        let pattern = format!("{}%", client_prefix.replace('%', "\\%").replace('_', "\\_"));
        let rows = sqlx::query(&sql)
            .bind(pattern)
            .bind(kinds)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Event {
                    seq: r.try_get("seq")?,
                    kind: r.try_get("kind")?,
                    ticket_id: r.try_get("ticket_id")?,
                    client_id: r.try_get("client_id")?,
                    manager_id: r.try_get("manager_id")?,
                    client_visible: r.try_get("client_visible")?,
                    payload: r.try_get::<Value, _>("payload")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Claims the delivery of event `seq` on `channel`. False when it was claimed before (sent,
    /// failed, or interrupted): the caller must not send it again.
    pub async fn claim_delivery(&self, seq: i64, channel: &str, client_id: &str) -> Result<bool> {
        let res = sqlx::query(
            "INSERT INTO deliveries (event_seq, channel, client_id, status)
             VALUES ($1, $2, $3, 'sending') ON CONFLICT DO NOTHING",
        )
        .bind(seq)
        .bind(channel)
        .bind(client_id)
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected() == 1)
    }

    pub async fn finish_delivery(
        &self,
        seq: i64,
        channel: &str,
        status: DeliveryStatus,
        attempts: i32,
        detail: Option<&str>,
        external_id: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE deliveries SET status = $3, attempts = $4, detail = $5, external_id = $6,
                    updated_at = now()
             WHERE event_seq = $1 AND channel = $2",
        )
        .bind(seq)
        .bind(channel)
        .bind(status.as_str())
        .bind(attempts)
        .bind(detail)
        .bind(external_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// At start-up: deliveries a crash left in flight are marked `unknown` (never re-sent).
    pub async fn mark_interrupted_deliveries(&self, channel: &str) -> Result<u64> {
        let res = sqlx::query(
            "UPDATE deliveries SET status = 'unknown', updated_at = now(),
                    detail = 'interrupted by a restart; the channel may or may not have it'
             WHERE channel = $1 AND status = 'sending'",
        )
        .bind(channel)
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected())
    }

    /// The delivery ledger of one client on one channel, oldest first (operators, tests).
    pub async fn deliveries_of(&self, channel: &str, client_id: &str) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(
            "SELECT event_seq, channel, client_id, status, attempts, detail, external_id
             FROM deliveries WHERE channel = $1 AND client_id = $2 ORDER BY event_seq",
        )
        .bind(channel)
        .bind(client_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Delivery {
                    event_seq: r.try_get("event_seq")?,
                    channel: r.try_get("channel")?,
                    client_id: r.try_get("client_id")?,
                    status: r.try_get("status")?,
                    attempts: r.try_get("attempts")?,
                    detail: r.try_get("detail")?,
                    external_id: r.try_get("external_id")?,
                })
            })
            .collect()
    }
}

// A delivery given up on (the channel refused, or retries ran out) is not only a ledger row: it is
// also a `delivery_failed` event, so the ticket's manager (and operators reading the outbox) learn
// that the client did not get a reply, in the same transaction as the ledger row.
impl PgStore {
    /// Marks the delivery of event `seq` on `channel` failed and appends one `delivery_failed`
    /// event (not client-visible; addressed to the ticket's manager, if any). Idempotent: the
    /// event's dedup key is the (channel, event) pair.
    pub async fn fail_delivery(
        &self,
        seq: i64,
        channel: &str,
        attempts: i32,
        detail: &str,
    ) -> Result<()> {
        let mut tx = self.begin_writing(false).await?;
        let failed: Option<(String, String, Option<uuid::Uuid>, Option<String>)> = sqlx::query_as(
            "WITH d AS (
                     UPDATE deliveries SET status = 'failed', attempts = $3, detail = $4,
                            updated_at = now()
                     WHERE event_seq = $1 AND channel = $2
                     RETURNING event_seq, client_id)
                 SELECT d.client_id, e.kind, e.ticket_id, t.manager_id
                 FROM d JOIN events e ON e.seq = d.event_seq
                 LEFT JOIN tickets t ON t.id = e.ticket_id",
        )
        .bind(seq)
        .bind(channel)
        .bind(attempts)
        .bind(detail)
        .fetch_optional(&mut *tx)
        .await?;
        let recorded = failed.is_some();
        if let Some((client_id, kind, ticket_id, manager_id)) = failed {
            insert_event(
                &mut tx,
                &client_id,
                &TicketEvent::DeliveryFailed {
                    channel,
                    event_seq: seq,
                    event_kind: &kind,
                    ticket_id,
                    manager_id: manager_id.as_deref(),
                    attempts,
                    detail,
                },
            )
            .await?;
        }
        self.commit_writing(tx).await?;
        if recorded {
            metrics::counter!(crate::meters::DELIVERIES_FAILED, "channel" => channel.to_owned())
                .increment(1);
        }
        Ok(())
    }
}
