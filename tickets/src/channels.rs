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

/// A delivery that did not go through, with what its event is about.
#[derive(sqlx::FromRow)]
struct Undelivered {
    event_seq: i64,
    client_id: String,
    resends: i32,
    kind: String,
    ticket_id: Option<uuid::Uuid>,
    manager_id: Option<String>,
}

/// How [`PgStore::claim_delivery_in_order`] claimed a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Send it now.
    Send,
    /// Queued behind an earlier delivery to the same client that waits for a retry.
    Queued,
    /// Claimed before (sent, failed, waiting or interrupted): never again from here.
    Taken,
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
        rows.iter().map(event_of).collect()
    }
}

fn event_of(r: &sqlx::postgres::PgRow) -> Result<Event> {
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
}

impl PgStore {
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

    /// At start-up: deliveries a crash left in flight are marked `unknown` (never re-sent on
    /// their own), each with a `delivery_unknown` event for the ticket's manager, who may ask for
    /// a resend ([`PgStore::request_resend`]).
    pub async fn mark_interrupted_deliveries(&self, channel: &str) -> Result<u64> {
        let mut tx = self.begin_writing(false).await?;
        let interrupted: Vec<Undelivered> = sqlx::query_as(
            "WITH d AS (
                     UPDATE deliveries SET status = 'unknown', updated_at = now(),
                            detail = 'interrupted by a restart; the channel may or may not have it'
                     WHERE channel = $1 AND status = 'sending'
                     RETURNING event_seq, client_id, resends)
                 SELECT d.event_seq, d.client_id, d.resends, e.kind, e.ticket_id, t.manager_id
                 FROM d JOIN events e ON e.seq = d.event_seq
                 LEFT JOIN tickets t ON t.id = e.ticket_id
                 ORDER BY d.event_seq",
        )
        .bind(channel)
        .fetch_all(&mut *tx)
        .await?;
        for d in &interrupted {
            insert_event(
                &mut tx,
                &d.client_id,
                &TicketEvent::DeliveryUnknown {
                    channel,
                    event_seq: d.event_seq,
                    event_kind: &d.kind,
                    ticket_id: d.ticket_id,
                    manager_id: d.manager_id.as_deref(),
                    round: d.resends,
                },
            )
            .await?;
        }
        self.commit_writing(tx).await?;
        Ok(interrupted.len() as u64)
    }

    /// The ticket's manager asks for delivery `event_seq` of their ticket to be sent again (its
    /// outcome unknown, or it failed). None when there is no such delivery on a ticket of theirs
    /// that may be resent (a sent one is never sent twice). Returns the channel.
    pub async fn request_resend(
        &self,
        manager_id: &str,
        ticket_id: uuid::Uuid,
        event_seq: i64,
    ) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "UPDATE deliveries d SET status = 'resend', resends = d.resends + 1, attempts = 0,
                    updated_at = now(), detail = 'resend asked by the manager'
             FROM events e JOIN tickets t ON t.id = e.ticket_id
             WHERE d.event_seq = $3 AND e.seq = d.event_seq AND t.id = $2 AND t.manager_id = $1
               AND d.status IN ('unknown', 'failed')
             RETURNING d.channel",
        )
        .bind(manager_id)
        .bind(ticket_id)
        .bind(event_seq)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The deliveries of `channel` due now (a retry whose time came, or a resend a manager
    /// asked for), claimed for sending (status `sending` again, so a crash now marks them
    /// unknown), oldest first, each with the attempts made so far.
    pub async fn take_due_deliveries(
        &self,
        channel: &str,
        limit: i64,
    ) -> Result<Vec<(Event, i32)>> {
        let rows = sqlx::query(
            "WITH r AS (
                 UPDATE deliveries SET status = 'sending', updated_at = now()
                 WHERE (event_seq, channel) IN (
                     SELECT event_seq, channel FROM deliveries
                     WHERE channel = $1
                       AND (status = 'resend' OR (status = 'retry' AND next_attempt_at <= now()))
                     ORDER BY event_seq LIMIT $2
                     FOR UPDATE SKIP LOCKED)
                 RETURNING event_seq, attempts)
             SELECT e.seq, e.kind, e.ticket_id, e.client_id, e.manager_id, e.client_visible,
                    e.payload, e.created_at, r.attempts
             FROM events e JOIN r ON r.event_seq = e.seq ORDER BY e.seq",
        )
        .bind(channel)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((event_of(r)?, r.try_get("attempts")?)))
            .collect()
    }

    /// Claims the delivery of event `seq` on `channel` in the client's order: to send now, or,
    /// while an earlier delivery to the client waits for a retry, queued behind it (due with
    /// it). [`Claim::Taken`] when it was claimed before: never twice.
    pub async fn claim_delivery_in_order(
        &self,
        seq: i64,
        channel: &str,
        client_id: &str,
    ) -> Result<Claim> {
        let status: Option<String> = sqlx::query_scalar(
            "WITH waiting AS (
                 SELECT max(next_attempt_at) AS at, count(*) AS n FROM deliveries
                 WHERE channel = $2 AND client_id = $3 AND status IN ('retry', 'resend'))
             INSERT INTO deliveries (event_seq, channel, client_id, status, next_attempt_at)
             SELECT $1, $2, $3,
                    CASE WHEN n > 0 THEN 'retry' ELSE 'sending' END,
                    CASE WHEN n > 0 THEN coalesce(at, now()) END
             FROM waiting
             ON CONFLICT DO NOTHING RETURNING status",
        )
        .bind(seq)
        .bind(channel)
        .bind(client_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(match status.as_deref() {
            None => Claim::Taken,
            Some("sending") => Claim::Send,
            Some(_) => Claim::Queued,
        })
    }

    /// A claimed delivery waits `after` for its next attempt (`attempts` made so far).
    pub async fn schedule_retry(
        &self,
        seq: i64,
        channel: &str,
        attempts: i32,
        detail: &str,
        after: std::time::Duration,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE deliveries SET status = 'retry', attempts = $3, detail = $4, updated_at = now(),
                    next_attempt_at = now() + make_interval(secs => $5)
             WHERE event_seq = $1 AND channel = $2",
        )
        .bind(seq)
        .bind(channel)
        .bind(attempts)
        .bind(detail)
        .bind(after.as_secs_f64())
        .execute(self.pool())
        .await?;
        Ok(())
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
        let failed: Option<Undelivered> = sqlx::query_as(
            "WITH d AS (
                     UPDATE deliveries SET status = 'failed', attempts = $3, detail = $4,
                            updated_at = now()
                     WHERE event_seq = $1 AND channel = $2
                     RETURNING event_seq, client_id, resends)
                 SELECT d.event_seq, d.client_id, d.resends, e.kind, e.ticket_id, t.manager_id
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
        if let Some(d) = failed {
            insert_event(
                &mut tx,
                &d.client_id,
                &TicketEvent::DeliveryFailed {
                    channel,
                    event_seq: seq,
                    event_kind: &d.kind,
                    ticket_id: d.ticket_id,
                    manager_id: d.manager_id.as_deref(),
                    attempts,
                    detail,
                    round: d.resends,
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
