//! What a dry run of a changed lifecycle reads: the recorded facts of the tickets opened in a
//! period (their classification, queueing, assignment, replies, client messages, escalations, SLA
//! breach and close), in one read-only query. The replay itself is `spec::simulate`, a pure
//! function of these facts and a spec; nothing here writes.

use chrono::{DateTime, Duration, Utc};
use sqlx::Row;
use uuid::Uuid;

use crate::domain::event_kind as kind;
use crate::store::{PgStore, Result};

/// The longest period a dry run covers.
pub const MAX_PERIOD_DAYS: i64 = 31;
/// The most tickets a dry run reads when the caller gives no bound.
pub const DEFAULT_MAX_TICKETS: usize = 10_000;

/// The close reason the engine writes when the client's silence closed a ticket.
pub const AUTO_CLOSE_REASON_PREFIX: &str = "auto_closed";

/// What the engine recorded of one ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketFacts {
    pub ticket_id: Uuid,
    pub client_id: String,
    pub created_at: DateTime<Utc>,
    /// When its first passed message queued it (`tickets.waiting_since`); None: never queued.
    pub queued_at: Option<DateTime<Utc>>,
    /// The body of its first passed client message: what classification read.
    pub first_text: Option<String>,
    /// The ticket's row now: its queue, category and priority (0 low .. 3 urgent, after the
    /// recorded escalations).
    pub queue: String,
    pub category: String,
    pub priority: i32,
    /// `ticket_escalated` events recorded.
    pub escalations: u32,
    /// A `sla_breached` event was recorded.
    pub sla_breached: bool,
    /// The first `ticket_assigned` (a transfer is one too, and does not count).
    pub first_assigned_at: Option<DateTime<Utc>>,
    /// The first manager reply (`tickets.first_response_at`).
    pub first_response_at: Option<DateTime<Utc>>,
    /// Every manager reply and every client message of the ticket until its close, in order
    /// (the answer to the rating question, recorded on the closed ticket, is not one: without
    /// the close it would not have been asked).
    pub replies: Vec<DateTime<Utc>>,
    pub client_messages: Vec<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub close_reason: Option<String>,
    /// The client's first message after the close in another ticket (or none: a bot command).
    pub client_wrote_again_at: Option<DateTime<Utc>>,
}

impl TicketFacts {
    /// The client's silence closed it.
    pub fn auto_closed(&self) -> bool {
        self.close_reason
            .as_deref()
            .is_some_and(|r| r.starts_with(AUTO_CLOSE_REASON_PREFIX))
    }
}

/// Why a dry run cannot cover the period asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimulationError {
    #[error("the period must end after it starts")]
    EmptyPeriod,
    #[error("the period may be at most {MAX_PERIOD_DAYS} days")]
    PeriodTooLong,
}

/// The tickets opened in `[start, end)`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulationPeriod {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl SimulationPeriod {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, SimulationError> {
        if end <= start {
            return Err(SimulationError::EmptyPeriod);
        }
        if end - start > Duration::days(MAX_PERIOD_DAYS) {
            return Err(SimulationError::PeriodTooLong);
        }
        Ok(Self { start, end })
    }
}

/// The facts of a period's tickets, with the instant they were read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedTickets {
    pub tickets: Vec<TicketFacts>,
    /// More tickets were opened in the period than asked for: these are the oldest.
    pub truncated: bool,
    /// The database's clock when the facts were read: open tickets are judged up to here.
    pub as_of: DateTime<Utc>,
}

impl PgStore {
    /// The recorded facts of the tickets opened in the period, at most `max_tickets` (oldest
    /// first), read in one read-only transaction.
    pub async fn recorded_tickets(
        &self,
        period: &SimulationPeriod,
        max_tickets: usize,
    ) -> Result<RecordedTickets> {
        let sql = format!(
            "SELECT t.id, t.client_id, t.created_at, t.waiting_since, t.queue, t.category,
                    t.priority, t.first_response_at, t.closed_at, t.close_reason,
                    (SELECT m.body FROM messages m
                      WHERE m.ticket_id = t.id AND m.author = 'client' AND m.afc_status = 'passed'
                      ORDER BY m.created_at, m.id LIMIT 1) AS first_text,
                    (SELECT count(*) FROM events e
                      WHERE e.ticket_id = t.id AND e.kind = '{escalated}')::int8 AS escalations,
                    EXISTS (SELECT 1 FROM events e
                      WHERE e.ticket_id = t.id AND e.kind = '{breached}') AS breached,
                    (SELECT min(e.created_at) FROM events e
                      WHERE e.ticket_id = t.id AND e.kind = '{assigned}') AS first_assigned_at,
                    ARRAY(SELECT m.created_at FROM messages m
                      WHERE m.ticket_id = t.id AND m.author = 'manager'
                      ORDER BY m.created_at) AS replies,
                    ARRAY(SELECT m.created_at FROM messages m
                      WHERE m.ticket_id = t.id AND m.author = 'client'
                        AND (t.closed_at IS NULL OR m.created_at <= t.closed_at)
                      ORDER BY m.created_at) AS client_messages,
                    (SELECT min(m.created_at) FROM messages m
                      WHERE m.client_id = t.client_id AND m.author = 'client'
                        AND m.created_at > t.closed_at
                        AND m.ticket_id IS DISTINCT FROM t.id) AS wrote_again_at
             FROM tickets t
             WHERE t.created_at >= $1 AND t.created_at < $2
             ORDER BY t.created_at, t.id
             LIMIT $3",
            escalated = kind::TICKET_ESCALATED,
            breached = kind::SLA_BREACHED,
            assigned = kind::TICKET_ASSIGNED,
        );
        let limit = i64::try_from(max_tickets.saturating_add(1)).unwrap_or(i64::MAX);
        let mut tx = self.pool().begin().await?;
        sqlx::query("SET TRANSACTION READ ONLY")
            .execute(&mut *tx)
            .await?;
        let as_of: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut *tx)
            .await?;
        let rows = sqlx::query(&sql)
            .bind(period.start)
            .bind(period.end)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut tickets = Vec::with_capacity(rows.len());
        for r in &rows {
            let escalations: i64 = r.try_get("escalations")?;
            tickets.push(TicketFacts {
                ticket_id: r.try_get("id")?,
                client_id: r.try_get("client_id")?,
                created_at: r.try_get("created_at")?,
                queued_at: r.try_get("waiting_since")?,
                first_text: r.try_get("first_text")?,
                queue: r.try_get("queue")?,
                category: r.try_get("category")?,
                priority: r.try_get("priority")?,
                escalations: u32::try_from(escalations).unwrap_or(u32::MAX),
                sla_breached: r.try_get("breached")?,
                first_assigned_at: r.try_get("first_assigned_at")?,
                first_response_at: r.try_get("first_response_at")?,
                replies: r.try_get("replies")?,
                client_messages: r.try_get("client_messages")?,
                closed_at: r.try_get("closed_at")?,
                close_reason: r.try_get("close_reason")?,
                client_wrote_again_at: r.try_get("wrote_again_at")?,
            });
        }
        let truncated = tickets.len() > max_tickets;
        tickets.truncate(max_tickets);
        Ok(RecordedTickets {
            tickets,
            truncated,
            as_of,
        })
    }
}
