//! The outbox relay: publishes committed events to Kafka `ticket.events` in `seq` order, then marks
//! them published (and numbers the events of a writer that died before it could). A crash between the two republishes; consumers dedup by `seq`. Beside it, the
//! signaller sends lifecycle events (a ticket opened or queued by the inbound transaction,
//! assignments, replies) to their ticket's workflow from a cursor of its own (`outbox_cursors`):
//! the outbox is how a store commit and its workflow signal both happen, and publishing never
//! waits for Temporal.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tickets::outbox::Numbered;
use tickets::{Event, PgStore, event_kind};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, Span};
use uuid::Uuid;

#[derive(Clone)]
pub struct Relay {
    pub store: PgStore,
    /// Lifecycle events are also signalled to the ticket's workflow.
    pub signals: WorkflowSignals,
    pub producer: FutureProducer,
    pub topic: String,
}

pub fn to_proto(e: &Event) -> proto::v1::TicketEvent {
    proto::v1::TicketEvent {
        seq: e.seq,
        kind: e.kind.clone(),
        ticket_id: e.ticket_id.map(|t| t.to_string()).unwrap_or_default(),
        client_id: e.client_id.clone(),
        manager_id: e.manager_id.clone().unwrap_or_default(),
        client_visible: e.client_visible,
        payload_json: e.payload.to_string(),
        created_at_unix_ms: e.created_at.timestamp_millis(),
    }
}

impl Relay {
    /// Publishes batches as they commit (marking them published once Kafka has them) and, beside
    /// it, signals the lifecycle events to their workflows from a cursor of its own. Neither
    /// waits for the other: signals are Temporal round trips, and while the first batch of a
    /// burst of new tickets was signalled every event committed meanwhile (the next
    /// `message_visible`) used to wait with it.
    pub async fn run(self, shutdown: CancellationToken) {
        let me = Arc::new(self);
        let signaller = tokio::spawn(me.clone().signal_loop(shutdown.clone()));
        me.publish_loop(&shutdown).await;
        let _ = signaller.await;
    }

    async fn publish_loop(&self, shutdown: &CancellationToken) {
        let mut commits = Numbered::default();
        // The highest `seq` published (and being marked): not read again.
        let mut after = 0;
        loop {
            let published = match self.publish_batch(after).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay failed; retrying");
                    Vec::new()
                }
            };
            if let Some(last) = published.last() {
                after = last.seq;
                let seqs: Vec<i64> = published.iter().map(|e| e.seq).collect();
                // Unmarked rows are published again at the next start (consumers dedup by seq).
                if !retrying(shutdown, "events not yet marked published", || {
                    self.store.mark_published(&seqs)
                })
                .await
                {
                    return;
                }
                continue;
            }
            // The sweep: events of a writer that died between its commit and their numbering
            // (`PgStore::commit_writing`) are numbered here, within a second.
            match self.store.sequence_events().await {
                Ok(0) => {}
                Ok(_) => continue,
                Err(e) => tracing::warn!(error = %e, "events not numbered; retrying"),
            }
            if !numbered(&mut commits, &self.store, shutdown).await {
                return;
            }
        }
    }

    /// Sends the lifecycle events' signals in `seq` order (per client; clients concurrently),
    /// then moves its cursor; a crash between the two signals them again (signals are
    /// idempotent for the workflow).
    async fn signal_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut commits = Numbered::default();
        let mut after = None;
        loop {
            let from = match after {
                Some(a) => a,
                None => match self.store.outbox_cursor(SIGNALS_CURSOR).await {
                    Ok(a) => {
                        after = Some(a);
                        a
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "signaller position not read; retrying");
                        if !numbered(&mut commits, &self.store, &shutdown).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            let batch = match self
                .store
                .events_of_kinds_after(LIFECYCLE_KINDS, from, 500)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "lifecycle events not read; retrying");
                    Vec::new()
                }
            };
            let Some(last) = batch.last().map(|e| e.seq) else {
                if !numbered(&mut commits, &self.store, &shutdown).await {
                    return;
                }
                continue;
            };
            if !retrying(&shutdown, "lifecycle events not yet signalled", || {
                self.signals.send(&batch)
            })
            .await
            {
                return;
            }
            if !retrying(&shutdown, "signaller position not saved", || {
                self.store.save_outbox_cursor(SIGNALS_CURSOR, last)
            })
            .await
            {
                return;
            }
            after = Some(last);
        }
    }

    /// Publishes the next outbox rows after `after` to Kafka; returns them once Kafka has them.
    async fn publish_batch(&self, after: i64) -> Result<Vec<Event>, Box<dyn std::error::Error>> {
        let batch = self.store.unpublished_events_after(after, 500).await?;
        if batch.is_empty() {
            return Ok(batch);
        }
        let payloads: Vec<(String, Vec<u8>)> = batch
            .iter()
            .map(|e| {
                (
                    e.client_id.clone(),
                    prost::Message::encode_to_vec(&to_proto(e)),
                )
            })
            .collect();
        let spans = self.spans(&batch).await;
        let sends = payloads.iter().enumerate().map(|(i, (key, bytes))| {
            let span = spans.get(i).cloned().unwrap_or_else(Span::none);
            let mut record = FutureRecord::to(&self.topic).key(key).payload(bytes);
            if let Some(headers) = platform::telemetry::kafka_headers(&span) {
                record = record.headers(headers);
            }
            self.producer
                .send(record, Duration::from_secs(30))
                .instrument(span)
        });
        for res in futures::future::join_all(sends).await {
            res.map_err(|(e, _)| e)?;
        }
        Ok(batch)
    }

    /// One span per event of `batch` about a client message, a child of the message's stored
    /// trace context; the record carries that span's context (`traceparent` header) to the event's
    /// readers. Empty while span export is off.
    async fn spans(&self, batch: &[Event]) -> Vec<Span> {
        if !platform::telemetry::enabled() {
            return Vec::new();
        }
        let seqs: Vec<i64> = batch.iter().map(|e| e.seq).collect();
        let traces: BTreeMap<i64, String> = match self.store.event_trace_parents(&seqs).await {
            Ok(t) => t.into_iter().collect(),
            Err(e) => {
                tracing::debug!(error = %e, "trace contexts of the events not read");
                return Vec::new();
            }
        };
        batch
            .iter()
            .map(|e| {
                let Some(parent) = traces.get(&e.seq) else {
                    return Span::none();
                };
                let span = tracing::info_span!(
                    "relay_publish",
                    kind = %e.kind,
                    event_id = e.seq,
                    client_id = %e.client_id,
                    ticket_id = tracing::field::Empty,
                    manager_id = tracing::field::Empty,
                );
                platform::telemetry::set_parent(&span, parent);
                if let Some(t) = e.ticket_id {
                    span.record("ticket_id", tracing::field::display(t));
                }
                if let Some(m) = &e.manager_id {
                    span.record("manager_id", m.as_str());
                }
                span
            })
            .collect()
    }
}

/// What the ticket workflows hear of committed events: lifecycle changes (a ticket opened or
/// queued by the inbound transaction, assignments, the first reply, a resolve request) become
/// signals; their timers
/// depend on them. An opened or queued ticket's workflow is started with `spec` if it is not
/// running. Tickets that check their own messages (an external AFC system, or started before
/// the store's path) hear every reply instead of the first: their AFC reply checks and silence
/// timer count on it.
#[derive(Clone)]
pub struct WorkflowSignals {
    /// Tells which tickets the store checks (`tickets.checked_in_store`).
    pub store: PgStore,
    pub tickets: crate::client::Tickets,
    pub spec: spec::TicketSpec,
    pub history_limit: Option<u32>,
}

impl WorkflowSignals {
    /// Sends the signals of `batch`: per client in `seq` order (an assignment before the replies
    /// that follow it), clients concurrently.
    pub async fn send(&self, batch: &[Event]) -> Result<(), SignalError> {
        let replied: Vec<Uuid> = batch
            .iter()
            .filter(|e| {
                e.kind == event_kind::MANAGER_REPLY || e.kind == event_kind::TICKET_RESPONDED
            })
            .filter_map(|e| e.ticket_id)
            .collect();
        let checked_here: BTreeSet<Uuid> = if replied.is_empty() {
            BTreeSet::new()
        } else {
            self.store
                .checked_in_store(&replied)
                .await?
                .into_iter()
                .collect()
        };
        let mut per_client: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
        for e in batch {
            let here = e.ticket_id.is_some_and(|t| checked_here.contains(&t));
            let lifecycle = match e.kind.as_str() {
                event_kind::TICKET_ASSIGNED => e.manager_id.is_some(),
                event_kind::MANAGER_REPLY => e.manager_id.is_some() && !here,
                event_kind::TICKET_RESPONDED => here,
                event_kind::TICKET_OPENED
                | event_kind::TICKET_QUEUED
                | event_kind::RESOLVE_REQUESTED => true,
                _ => false,
            };
            if lifecycle && e.ticket_id.is_some() {
                per_client.entry(&e.client_id).or_default().push(e);
            }
        }
        let signals: Vec<_> = per_client
            .into_values()
            .map(|events| self.signal_in_order(events))
            .collect();
        let results: Vec<_> = futures::stream::iter(signals)
            .buffer_unordered(SIGNAL_CONCURRENCY)
            .collect()
            .await;
        Ok(results.into_iter().collect::<Result<(), _>>()?)
    }

    async fn signal_in_order(
        &self,
        events: Vec<&Event>,
    ) -> Result<(), crate::client::TemporalError> {
        let mut events = events.into_iter().peekable();
        while let Some(e) = events.next() {
            let Some(ticket_id) = e.ticket_id else {
                continue;
            };
            let manager_id = e.manager_id.as_deref().unwrap_or_default();
            match e.kind.as_str() {
                event_kind::TICKET_OPENED | event_kind::TICKET_QUEUED => {
                    // A ticket opened and queued by one transaction is one signal-with-start.
                    let queued = e.kind == event_kind::TICKET_QUEUED
                        || events
                            .next_if(|n| {
                                n.kind == event_kind::TICKET_QUEUED
                                    && n.ticket_id == Some(ticket_id)
                            })
                            .is_some();
                    let opened = crate::ticket::TicketOpened { ticket_id, queued };
                    self.tickets
                        .opened(&e.client_id, opened, &self.spec, self.history_limit)
                        .await
                }
                event_kind::TICKET_ASSIGNED => {
                    self.tickets
                        .assigned(&e.client_id, ticket_id, manager_id)
                        .await
                }
                event_kind::MANAGER_REPLY => {
                    self.tickets
                        .manager_replied(&e.client_id, ticket_id, manager_id)
                        .await
                }
                event_kind::TICKET_RESPONDED => {
                    let manager_id = e.payload["manager_id"].as_str().unwrap_or_default();
                    self.tickets
                        .manager_replied(&e.client_id, ticket_id, manager_id)
                        .await
                }
                event_kind::RESOLVE_REQUESTED => {
                    let manager_id = e.payload["manager_id"].as_str().unwrap_or_default();
                    self.tickets
                        .resolve(&e.client_id, ticket_id, manager_id)
                        .await
                }
                _ => Ok(()),
            }
            .or_else(ignore_closed)?;
        }
        Ok(())
    }
}

/// The signaller's row in `outbox_cursors`.
const SIGNALS_CURSOR: &str = "workflow-signals";

/// The events a ticket workflow is signalled for.
const LIFECYCLE_KINDS: &[&str] = &[
    event_kind::TICKET_OPENED,
    event_kind::TICKET_QUEUED,
    event_kind::TICKET_ASSIGNED,
    event_kind::MANAGER_REPLY,
    event_kind::TICKET_RESPONDED,
    event_kind::RESOLVE_REQUESTED,
];

/// Why lifecycle events were not signalled (retried by the signaller).
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error(transparent)]
    Temporal(#[from] crate::client::TemporalError),
    #[error(transparent)]
    Store(#[from] tickets::StoreError),
}

/// Until the next numbering of events (or a second); false on shutdown.
async fn numbered(n: &mut Numbered, store: &PgStore, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        () = n.wait(store) => true,
    }
}

/// Runs `attempt` until it succeeds, backing off up to 5 s; false on shutdown.
async fn retrying<T, E, F, Fut>(shutdown: &CancellationToken, what: &str, mut attempt: F) -> bool
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(_) => return true,
            Err(e) => tracing::warn!(error = %e, "{what}; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Workflow signals in flight at once (one chain per client).
const SIGNAL_CONCURRENCY: usize = 64;

/// A ticket whose workflow already ended needs no signal.
fn ignore_closed(e: crate::client::TemporalError) -> Result<(), crate::client::TemporalError> {
    let text = e.to_string().to_lowercase();
    if text.contains("not found") || text.contains("already completed") {
        Ok(())
    } else {
        Err(e)
    }
}
