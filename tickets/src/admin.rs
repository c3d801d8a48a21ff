//! What the bank's back office (role `admin`) reads: managers with their readiness and load, tickets
//! by status and age, and one ticket's audit trail. Admins see every ticket and every event (that is
//! the role's visibility rule, checked by the gateway); nothing here is shown to a client or manager.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::chat::ChatCursor;
use crate::desk::Page;
use crate::domain::{Event, Ticket, TicketStatus};
use crate::store::{PgStore, Result, event_of, ticket_of};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerLoad {
    pub id: String,
    pub display_name: String,
    pub capacity: i32,
    pub ready_slots: i32,
    pub open_tickets: i32,
    pub ready_since: Option<DateTime<Utc>>,
}

/// A ticket with the lifecycle fields only the back office needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRecord {
    pub ticket: Ticket,
    pub close_reason: Option<String>,
}

/// The AFC verdict of one client message of the ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictRecord {
    pub message_id: Uuid,
    pub afc_status: String,
    pub rule: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Every lifecycle decision about one ticket: its events in commit order and its AFC verdicts.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditTrail {
    pub ticket: TicketRecord,
    pub events: Vec<Event>,
    pub verdicts: Vec<VerdictRecord>,
}

/// [`crate::store::TICKET_COLUMNS`] and the close reason.
pub(crate) const TICKET_COLUMNS: &str = "t.id, t.client_id, c.display_name AS client_name, \
    t.status, t.manager_id, t.created_at, t.assigned_at, t.queue, t.category, t.priority, \
    t.fields, t.waiting_since, t.first_response_at, t.closed_at, t.rating, t.close_reason";

pub(crate) fn record_of(row: &PgRow) -> Result<TicketRecord> {
    Ok(TicketRecord {
        ticket: ticket_of(row)?,
        close_reason: row.try_get("close_reason")?,
    })
}

impl PgStore {
    /// Every manager with readiness and load, by id.
    pub async fn managers_overview(&self) -> Result<Vec<ManagerLoad>> {
        let rows = sqlx::query(
            "SELECT m.id, m.display_name, m.capacity, m.ready_slots, m.ready_since,
                    (SELECT count(*) FROM tickets t
                     WHERE t.manager_id = m.id AND t.status = 'assigned')::int AS open_tickets
             FROM managers m ORDER BY m.id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ManagerLoad {
                    id: r.try_get("id")?,
                    display_name: r.try_get("display_name")?,
                    capacity: r.try_get("capacity")?,
                    ready_slots: r.try_get("ready_slots")?,
                    open_tickets: r.try_get("open_tickets")?,
                    ready_since: r.try_get("ready_since")?,
                })
            })
            .collect()
    }

    /// Tickets oldest first, after `after` (exclusive); `statuses` empty means all;
    /// `created_before` keeps only tickets older than that instant. See
    /// [`PgStore::tickets_filtered`] for the queue filter too.
    pub async fn tickets_overview(
        &self,
        statuses: &[crate::TicketStatus],
        created_before: Option<DateTime<Utc>>,
        after: Option<ChatCursor>,
        limit: i64,
    ) -> Result<Page<TicketRecord>> {
        let filter = TicketFilter {
            statuses: statuses.to_vec(),
            queues: Vec::new(),
            created_before,
        };
        self.tickets_filtered(&filter, after, limit).await
    }

    /// The audit trail of a ticket, `None` when there is no such ticket.
    pub async fn audit_trail(&self, ticket_id: Uuid) -> Result<Option<AuditTrail>> {
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets t JOIN clients c ON c.id = t.client_id
             WHERE t.id = $1"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(ticket_id)
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        let ticket = record_of(&row)?;
        let events = sqlx::query(
            "SELECT seq, kind, ticket_id, client_id, manager_id, client_visible, payload, created_at
             FROM events WHERE ticket_id = $1 AND seq IS NOT NULL ORDER BY seq",
        )
        .bind(ticket_id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(event_of)
        .collect::<Result<Vec<_>>>()?;
        let verdicts = sqlx::query(
            "SELECT id, afc_status, afc_rule, created_at FROM messages
             WHERE ticket_id = $1 AND author = 'client' ORDER BY created_at, id",
        )
        .bind(ticket_id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(VerdictRecord {
                message_id: r.try_get("id")?,
                afc_status: r.try_get("afc_status")?,
                rule: r.try_get("afc_rule")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(AuditTrail {
            ticket,
            events,
            verdicts,
        }))
    }
}

// The listing with every filter (status, queue, age): one query, so the filters combine and
// paging stays stable whatever is set.
/// Which tickets an admin lists; an empty list or `None` does not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketFilter {
    pub statuses: Vec<TicketStatus>,
    /// Queue names as stored on the ticket (from the spec the ticket started with).
    pub queues: Vec<String>,
    /// Only tickets created before this instant.
    pub created_before: Option<DateTime<Utc>>,
}

impl PgStore {
    /// Tickets matching `filter`, oldest first, after `after` (exclusive).
    pub async fn tickets_filtered(
        &self,
        filter: &TicketFilter,
        after: Option<ChatCursor>,
        limit: i64,
    ) -> Result<Page<TicketRecord>> {
        let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        let sql = format!(
            "SELECT {TICKET_COLUMNS}
             FROM tickets t JOIN clients c ON c.id = t.client_id
             WHERE (cardinality($1::text[]) = 0 OR t.status = ANY($1))
               AND (cardinality($2::text[]) = 0 OR t.queue = ANY($2))
               AND ($3::timestamptz IS NULL OR t.created_at < $3)
               AND ($4::timestamptz IS NULL OR (t.created_at, t.id) > ($4, $5))
             ORDER BY t.created_at, t.id LIMIT $6"
        );
        let rows = sqlx::query(&sql)
            .bind(&statuses)
            .bind(&filter.queues)
            .bind(filter.created_before)
            .bind(after.map(|c| c.created_at))
            .bind(after.map(|c| c.id))
            .bind(limit + 1)
            .fetch_all(self.pool())
            .await?;
        let limit = usize::try_from(limit.max(0)).unwrap_or(0);
        Ok(Page {
            has_more: rows.len() > limit,
            items: rows
                .iter()
                .take(limit)
                .map(record_of)
                .collect::<Result<Vec<_>>>()?,
        })
    }
}

/// One queue now, for the supervisor view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueNow {
    pub queue: String,
    pub waiting: i32,
    pub oldest_wait_secs: i64,
}

/// What the supervisor view draws of a period (see [`PgStore::stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub queues: Vec<QueueNow>,
    /// (queue, bucket start, tickets waiting then), oldest first.
    pub waiting: Vec<(String, DateTime<Utc>, i32)>,
    pub bucket_secs: i64,
    /// Queued to first manager reply, of the tickets first answered in the period, ascending.
    pub first_response_secs: Vec<i64>,
    /// `ratings[i]`: clients who rated i + 1 in the period.
    pub ratings: [i32; 5],
}

/// Points of the waiting series: one bucket per this share of the period, at least 5 minutes.
const WAITING_POINTS: i64 = 48;
/// First-response times kept of a period (the most recent).
const MAX_FIRST_RESPONSES: i64 = 10_000;

impl PgStore {
    /// The supervisor's figures of the last `hours` hours, from what the tickets record (queued,
    /// assigned, first answered, closed, rated).
    pub async fn stats(&self, hours: i32) -> Result<Stats> {
        let bucket_secs = (i64::from(hours) * 3600 / WAITING_POINTS).max(300);
        let queues = sqlx::query_as::<_, (String, i32, i64)>(
            "SELECT queue, count(*)::int,
                    extract(epoch FROM now() - min(waiting_since))::bigint
             FROM tickets WHERE status = 'waiting' GROUP BY queue ORDER BY queue",
        )
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .map(|(queue, waiting, oldest)| QueueNow {
            queue,
            waiting,
            oldest_wait_secs: oldest.max(0),
        })
        .collect();
        // A ticket waits from its queueing until its assignment (or close).
        let waiting = sqlx::query_as::<_, (String, DateTime<Utc>, i32)>(
            "WITH period AS (SELECT now() - make_interval(hours => $1) AS since),
                  seen AS (
                      SELECT t.id, t.queue, t.waiting_since,
                             coalesce(t.assigned_at, t.closed_at, 'infinity') AS until
                      FROM tickets t, period
                      WHERE t.waiting_since IS NOT NULL
                        AND coalesce(t.assigned_at, t.closed_at, 'infinity') >= period.since)
             SELECT q.queue, b.at, count(s.id)::int
             FROM period,
                  generate_series(period.since, now(), make_interval(secs => $2)) AS b(at)
                  CROSS JOIN (SELECT DISTINCT queue FROM seen) q
                  LEFT JOIN seen s ON s.queue = q.queue AND s.waiting_since <= b.at AND s.until > b.at
             GROUP BY q.queue, b.at ORDER BY b.at, q.queue",
        )
        .bind(hours)
        .bind(bucket_secs as f64)
        .fetch_all(self.pool())
        .await?;
        let mut first_response_secs: Vec<i64> = sqlx::query_scalar(
            "SELECT greatest(extract(epoch FROM first_response_at - waiting_since), 0)::bigint
             FROM tickets
             WHERE first_response_at >= now() - make_interval(hours => $1)
               AND waiting_since IS NOT NULL
             ORDER BY first_response_at DESC LIMIT $2",
        )
        .bind(hours)
        .bind(MAX_FIRST_RESPONSES)
        .fetch_all(self.pool())
        .await?;
        first_response_secs.sort_unstable();
        let mut ratings = [0i32; 5];
        for (rating, n) in sqlx::query_as::<_, (i16, i32)>(
            "SELECT rating, count(*)::int FROM tickets
             WHERE rated_at >= now() - make_interval(hours => $1) GROUP BY rating",
        )
        .bind(hours)
        .fetch_all(self.pool())
        .await?
        {
            if let Some(slot) = usize::try_from(rating - 1)
                .ok()
                .and_then(|i| ratings.get_mut(i))
            {
                *slot = n;
            }
        }
        Ok(Stats {
            queues,
            waiting,
            bucket_secs,
            first_response_secs,
            ratings,
        })
    }
}
