//! Outbox reads for a relay that keeps publishing while earlier batches are still being confirmed.

use crate::domain::Event;
use crate::store::{PgStore, Result, event_of};

impl PgStore {
    /// Outbox rows not yet published with `seq` above `after`, oldest first. A relay passes the
    /// highest `seq` it already handed on, so rows whose publishing is still being confirmed are
    /// not read again; `seq` is commit order (events lock), so nothing below `after` can still
    /// appear.
    pub async fn unpublished_events_after(&self, after: i64, limit: i64) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT seq, kind, ticket_id, client_id, manager_id, client_visible, payload, created_at
             FROM events WHERE published_at IS NULL AND seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(event_of).collect()
    }
}
