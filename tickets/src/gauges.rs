//! Point-in-time figures of the backlog for the operators' gauges (the workflow service reads them
//! periodically). Each query reads a partial index of the rows it counts (the pending messages,
//! the tickets not closed, the unpublished outbox rows), so its cost follows the backlog it
//! measures, not the history kept.

use sqlx::Row;

use crate::store::{PgStore, Result};

/// The backlog at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backlog {
    /// Age of the oldest client message still waiting for its AFC verdict (0: none waits).
    pub afc_pending_oldest_seconds: f64,
    /// Tickets not closed, by queue and status.
    pub open_tickets: Vec<QueueCount>,
    /// Managers with at least one ready slot ("I can take one more client").
    pub ready_managers: i64,
    /// Outbox rows the relay has not published yet, and the age of the oldest (0: none).
    pub outbox_unpublished: i64,
    pub outbox_oldest_unpublished_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCount {
    pub queue: String,
    /// `open`, `waiting` or `assigned`.
    pub status: String,
    pub count: i64,
}

impl PgStore {
    /// The backlog now: two statements, each over partial indexes (`messages_afc_pending`,
    /// `events_unpublished`, `tickets_one_open_per_client`); `managers` holds one row per manager.
    pub async fn backlog(&self) -> Result<Backlog> {
        let row = sqlx::query(
            "SELECT
                 (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
                  FROM messages WHERE afc_status = 'pending') AS afc_pending_oldest,
                 (SELECT count(*) FROM managers WHERE ready_slots > 0) AS ready_managers,
                 (SELECT count(*) FROM events WHERE published_at IS NULL) AS outbox_unpublished,
                 (SELECT extract(epoch FROM now() - min(created_at))::float8
                  FROM events WHERE published_at IS NULL) AS outbox_oldest",
        )
        .fetch_one(self.pool())
        .await?;
        let open_tickets = sqlx::query(
            "SELECT queue, status, count(*) AS n FROM tickets WHERE status <> 'closed'
             GROUP BY queue, status ORDER BY queue, status",
        )
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(QueueCount {
                queue: r.try_get("queue")?,
                status: r.try_get("status")?,
                count: r.try_get("n")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        Ok(Backlog {
            afc_pending_oldest_seconds: row.try_get("afc_pending_oldest")?,
            open_tickets,
            ready_managers: row.try_get("ready_managers")?,
            outbox_unpublished: row.try_get("outbox_unpublished")?,
            outbox_oldest_unpublished_seconds: row
                .try_get::<Option<f64>, _>("outbox_oldest")?
                .unwrap_or(0.0),
        })
    }
}
