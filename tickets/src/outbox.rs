//! Outbox reads: for the relay, publishing (by `published_at`) and the workflow signaller (by its
//! own cursor), which run independently; and the wake-up tail every stream-serving process
//! follows ([`OutboxTail`]), with the `LISTEN` wake-ups they all wait on ([`Numbered`]).

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row as _;
use sqlx::postgres::PgListener;

use crate::domain::Event;
use crate::store::{EVENTS_CHANNEL, PgStore, Result, event_of};
use crate::visibility;

/// Wake-ups when events are numbered (`LISTEN` on [`EVENTS_CHANNEL`], notified by
/// `inbox_sequence_events`), with a poll every second as a safety net: a notification sent while
/// the listener reconnects is lost.
#[derive(Default)]
pub struct Numbered {
    listener: Option<PgListener>,
}

impl Numbered {
    /// Until the next numbering, or a second.
    pub async fn wait(&mut self, store: &PgStore) {
        if self.listener.is_none() {
            self.listener = match PgListener::connect_with(store.pool()).await {
                Ok(mut l) => match l.listen(EVENTS_CHANNEL).await {
                    Ok(()) => Some(l),
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN failed; polling");
                        None
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open a listener; polling");
                    None
                }
            };
        }
        let notified = async {
            match self.listener.as_mut() {
                Some(l) => l.recv().await.map(|_| ()),
                None => std::future::pending().await,
            }
        };
        let failed = tokio::select! {
            r = notified => r.is_err(),
            _ = tokio::time::sleep(Duration::from_secs(1)) => false,
        };
        if failed {
            self.listener = None;
        }
    }
}

/// A newly numbered event: who it is for, and the event itself as each of them may read it, so a
/// stream that keeps up is handed it without reading it again.
#[derive(Debug, Clone, PartialEq)]
pub struct Numbering {
    pub seq: i64,
    pub client_id: String,
    pub client_visible: bool,
    pub manager_id: Option<String>,
    /// The event as its manager reads it (`PgStore::manager_events_after`).
    pub event: Arc<Event>,
    /// The event as its client reads it (`PgStore::client_events_after`), if client-visible.
    pub client_event: Option<Arc<Event>>,
}

/// Follows the outbox from its newest event: every process that serves streams sees every event
/// numbered after it started, in `seq` order. It replaced a Kafka tail of `ticket.events` per
/// process: the numbering already notifies, so a wake-up costs one indexed read per numbering
/// instead of a broker fetch every few milliseconds whether or not anything happened (the local
/// broker answers each fetch only after its full wait, at a third of a core per tail), and no
/// fetch wait delays it.
pub struct OutboxTail {
    store: PgStore,
    after: Option<i64>,
    numbered: Numbered,
}

/// Events a tail read takes at most.
const TAIL_PAGE: i64 = 1000;

impl OutboxTail {
    /// A tail from the newest event when it is first read.
    pub fn new(store: PgStore) -> Self {
        Self {
            store,
            after: None,
            numbered: Numbered::default(),
        }
    }

    /// A tail from the event after `seq`.
    pub fn after(store: PgStore, seq: i64) -> Self {
        Self {
            after: Some(seq),
            ..Self::new(store)
        }
    }

    /// Where the tail starts: every event after the returned `seq` is in the batches of
    /// [`Self::next`], none at or before it. Read from the outbox (its newest event) on first use.
    pub async fn start(&mut self) -> Result<i64> {
        if let Some(a) = self.after {
            return Ok(a);
        }
        let newest: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM events")
            .fetch_one(self.store.pool())
            .await?;
        Ok(*self.after.insert(newest.unwrap_or(0)))
    }

    /// The events numbered since the last call (at the first: since [`Self::start`]), oldest
    /// first; waits for the next numbering while there are none. An error is the store's (call
    /// again).
    pub async fn next(&mut self) -> Result<Vec<Numbering>> {
        let mut after = self.start().await?;
        let sql = format!(
            "SELECT e.seq, e.kind, e.ticket_id, e.client_id, e.manager_id, e.client_visible,
                    e.payload, e.created_at,
                    CASE WHEN e.client_visible THEN {client_payload} END AS client_payload
             FROM events e WHERE e.seq > $1 ORDER BY e.seq LIMIT $2",
            client_payload = crate::visibility::CLIENT_EVENT_PAYLOAD,
        );
        loop {
            let rows = sqlx::query(&sql)
                .bind(after)
                .bind(TAIL_PAGE)
                .fetch_all(self.store.pool())
                .await?;
            let batch = rows
                .iter()
                .map(|r| {
                    let event = event_of(r)?;
                    let client_payload: Option<serde_json::Value> = r.try_get("client_payload")?;
                    Ok(Numbering {
                        seq: event.seq,
                        client_id: event.client_id.clone(),
                        client_visible: event.client_visible,
                        manager_id: event.manager_id.clone(),
                        client_event: client_payload.map(|payload| {
                            Arc::new(Event {
                                payload,
                                ..event.clone()
                            })
                        }),
                        event: Arc::new(event),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if let Some(last) = batch.last() {
                after = last.seq;
                self.after = Some(after);
                return Ok(batch);
            }
            self.numbered.wait(&self.store).await;
        }
    }
}

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

impl PgStore {
    /// The client's events after `after_seq`, oldest first: one continuous chat across tickets.
    pub async fn client_events_after(
        &self,
        client_id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Event>> {
        let sql = format!(
            "SELECT e.seq, e.kind, e.ticket_id, e.client_id, e.manager_id, e.client_visible,
                    {payload} AS payload, e.created_at
             FROM events e WHERE {events} AND e.seq > $2 ORDER BY e.seq LIMIT $3",
            payload = visibility::CLIENT_EVENT_PAYLOAD,
            events = visibility::CLIENT_EVENTS
        );
        let rows = sqlx::query(&sql)
            .bind(client_id)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(event_of).collect()
    }

    /// Outbox rows not yet published, oldest first.
    pub async fn unpublished_events(&self, limit: i64) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT seq, kind, ticket_id, client_id, manager_id, client_visible, payload, created_at
             FROM events WHERE published_at IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(event_of).collect()
    }

    pub async fn mark_published(&self, seqs: &[i64]) -> Result<()> {
        sqlx::query("UPDATE events SET published_at = now() WHERE seq = ANY($1)")
            .bind(seqs)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
