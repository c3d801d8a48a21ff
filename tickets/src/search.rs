//! Full-text search over messages, always through the visibility rules: a manager finds only what
//! they may read (passed client messages and replies of tickets assigned to them), a supervisor
//! what any manager may read; blocked and pending text is not even indexed (migration 1600).
//! PostgreSQL full-text search with the Russian and English configurations: no second store to
//! keep in step with the messages, and the index changes in the transaction that changes a
//! message's verdict.

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use crate::store::{PgStore, Result};
use crate::visibility;

/// Whose view a search runs in.
#[derive(Debug, Clone, Copy)]
pub enum SearchScope<'a> {
    /// The tickets assigned to this manager.
    Manager(&'a str),
    /// Every ticket (role admin).
    Supervisor,
}

/// One message found.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub message_id: Uuid,
    pub ticket_id: Uuid,
    pub client_id: String,
    pub author: String,
    pub body: String,
    /// The body's matching passage, the matches between `[` and `]`.
    pub snippet: String,
    pub created_at: DateTime<Utc>,
}

/// The longest query taken (characters).
pub const MAX_QUERY_CHARS: usize = 200;

impl PgStore {
    /// The messages of `scope` that match `query` (web-search syntax: words, "phrases", -not,
    /// or), best match first, at most `limit`.
    pub async fn search_messages(
        &self,
        scope: SearchScope<'_>,
        query: &str,
        limit: i64,
    ) -> Result<Vec<SearchHit>> {
        let (tickets, manager) = match scope {
            SearchScope::Manager(id) => (visibility::MANAGER_TICKETS, id),
            SearchScope::Supervisor => ("$1::text IS NOT NULL", ""),
        };
        let sql = format!(
            "SELECT m.id, m.ticket_id, t.client_id, m.author, m.body, m.created_at,
                    ts_headline('simple', m.body, q.q,
                                'StartSel=[, StopSel=], MaxFragments=2, MaxWords=20, MinWords=5')
                        AS snippet
             FROM (SELECT websearch_to_tsquery('russian', $2)
                          || websearch_to_tsquery('english', $2) AS q) q,
                  messages m JOIN tickets t ON t.id = m.ticket_id
             WHERE m.search @@ q.q AND {tickets} AND {messages}
             ORDER BY ts_rank(m.search, q.q) DESC, m.created_at DESC, m.id
             LIMIT $3",
            messages = visibility::MANAGER_MESSAGES,
        );
        let rows = sqlx::query(&sql)
            .bind(manager)
            .bind(query)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SearchHit {
                    message_id: r.try_get("id")?,
                    ticket_id: r.try_get("ticket_id")?,
                    client_id: r.try_get("client_id")?,
                    author: r.try_get("author")?,
                    body: r.try_get("body")?,
                    snippet: r.try_get("snippet")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }
}
