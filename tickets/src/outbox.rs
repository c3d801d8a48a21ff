//! Outbox reads for the relay: publishing (by `published_at`) and the workflow signaller (by its
//! own cursor), which run independently.

use crate::domain::Event;
use crate::store::{PgStore, Result, event_of};

impl PgStore {
    /// Outbox rows not yet published with `seq` above `after`, oldest first. A relay passes the
    /// highest `seq` it already handed on, so rows whose publishing is still being confirmed are
    /// not read again; `seq` is given after commit, in order (`PgStore::sequence_events`), so
    /// nothing below `after` can still appear.
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

    /// Lifecycle events (`kinds`) with `seq` above `after`, oldest first: what the relay's
    /// signaller sends the ticket workflows. `seq` is given after commit, in order
    /// (`PgStore::sequence_events`), so nothing below `after` can still appear.
    pub async fn events_of_kinds_after(
        &self,
        kinds: &[&str],
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT seq, kind, ticket_id, client_id, manager_id, client_visible, payload, created_at
             FROM events WHERE seq > $1 AND kind = ANY($2) ORDER BY seq LIMIT $3",
        )
        .bind(after)
        .bind(kinds)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(event_of).collect()
    }

    /// Where the outbox reader `name` is (0 before its first save).
    pub async fn outbox_cursor(&self, name: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT after_seq FROM outbox_cursors WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?
                .unwrap_or(0),
        )
    }

    /// Records that `name` handled every event up to `after_seq` (never moves back).
    pub async fn save_outbox_cursor(&self, name: &str, after_seq: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO outbox_cursors (name, after_seq) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE
             SET after_seq = GREATEST(outbox_cursors.after_seq, EXCLUDED.after_seq), updated_at = now()",
        )
        .bind(name)
        .bind(after_seq)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
