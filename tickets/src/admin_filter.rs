//! The back office's ticket listing with every filter (status, queue, age): one query, so the
//! filters combine and paging stays stable whatever is set.

use chrono::{DateTime, Utc};

use crate::admin::{TICKET_COLUMNS, TicketRecord, record_of};
use crate::chat::ChatCursor;
use crate::desk::Page;
use crate::domain::TicketStatus;
use crate::store::{PgStore, Result};

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
