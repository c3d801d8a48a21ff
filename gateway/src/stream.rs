//! `StreamEvents` for managers and clients. PostgreSQL (the outbox) is the source of truth: a stream
//! reads the caller's events after its cursor from there, and the outbox tail
//! (`tickets::outbox::OutboxTail`, woken by the numbering's `NOTIFY`) only wakes it up. So a
//! reconnect with the last cursor resumes with no gap and no duplicate, also across a gateway
//! restart, and nothing is ever lost from a memory buffer.
//!
//! Each stream has its own task and a bounded buffer; the tail never waits for a stream (a
//! wake-up is a `watch` value: the latest seq, overwritten, never queued). A consumer that does
//! not take an event for `max_stall` is cut off with `RESOURCE_EXHAUSTED` naming its cursor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tickets::outbox::{Numbering, OutboxTail};
use tickets::{Event, PgStore};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use crate::manager::EventStream;
use crate::{convert, status};

/// Whose events a stream carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Audience {
    Client(String),
    Manager(String),
}

impl Audience {
    /// The metrics label: the kind of audience, never whose.
    fn label(&self) -> &'static str {
        match self {
            Self::Client(_) => "client",
            Self::Manager(_) => "manager",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Events buffered per stream between its task and the connection.
    pub buffer: usize,
    /// Events read from PostgreSQL at a time.
    pub page: i64,
    /// How long a consumer may leave a full buffer untouched before it is cut off.
    pub max_stall: Duration,
    /// Re-read even without a wake-up: covers a wake-up lost with a broker hiccup.
    pub reread: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            buffer: 64,
            page: 200,
            max_stall: Duration::from_secs(10),
            reread: Duration::from_secs(5),
        }
    }
}

/// Wake-ups per audience: the highest seq announced for it.
#[derive(Default)]
pub struct Hub {
    audiences: Mutex<HashMap<Audience, watch::Sender<i64>>>,
}

impl Hub {
    pub fn subscribe(&self, a: Audience) -> watch::Receiver<i64> {
        let mut map = self
            .audiences
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(a)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn bump(map: &mut HashMap<Audience, watch::Sender<i64>>, a: Audience, seq: i64) {
        if let Some(tx) = map.get(&a) {
            if tx.receiver_count() == 0 {
                map.remove(&a);
            } else {
                tx.send_if_modified(|v| {
                    let newer = seq > *v;
                    if newer {
                        *v = seq;
                    }
                    newer
                });
            }
        }
    }

    /// Wakes the streams that may see `e`.
    pub fn notify(&self, e: &Numbering) {
        let mut map = self
            .audiences
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if e.client_visible {
            Self::bump(&mut map, Audience::Client(e.client_id.clone()), e.seq);
        }
        if let Some(m) = &e.manager_id {
            Self::bump(&mut map, Audience::Manager(m.clone()), e.seq);
        }
    }

    /// Streams currently subscribed (for the benchmark and tests).
    pub fn audiences(&self) -> usize {
        self.audiences
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// Follows the outbox from its newest event (every gateway sees every event) and wakes the
/// streams each event concerns, until `shutdown`. A failed read is retried a second later; a
/// stream re-reads on its own meanwhile (`StreamConfig::reread`).
pub async fn listen(store: PgStore, hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut tail = OutboxTail::new(store);
    loop {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => return,
            b = tail.next() => b,
        };
        match batch {
            Ok(events) => events.iter().for_each(|e| hub.notify(e)),
            Err(e) => {
                tracing::warn!(error = %e, "outbox tail failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Opens event streams: the store, the hub and the limits they share.
#[derive(Clone)]
pub struct Streams {
    pub store: PgStore,
    pub hub: Arc<Hub>,
    pub config: StreamConfig,
    pub shutdown: CancellationToken,
}

impl Streams {
    async fn read(&self, who: &Audience, after: i64) -> Result<Vec<Event>, tickets::StoreError> {
        match who {
            Audience::Client(id) => {
                self.store
                    .client_events_after(id, after, self.config.page)
                    .await
            }
            Audience::Manager(id) => {
                self.store
                    .manager_events_after(id, after, self.config.page)
                    .await
            }
        }
    }

    /// The events of `who` after `cursor`, then live ones, until the caller hangs up, falls too far
    /// behind, its token expires (after `token_valid`) or the gateway shuts down (all of which
    /// end with the cursor to resume from).
    pub fn open(&self, who: Audience, mut cursor: i64, token_valid: Duration) -> EventStream {
        let (tx, rx) = mpsc::channel(self.config.buffer.max(1));
        let me = self.clone();
        tokio::spawn(async move {
            let _live = platform::ops::GaugeGuard::hold(
                metrics::gauge!("inbox_live_streams", "audience" => who.label()),
            );
            let expiry = tokio::time::sleep(token_valid);
            tokio::pin!(expiry);
            let mut wake = me.hub.subscribe(who.clone());
            loop {
                if expiry.is_elapsed() {
                    let _ = tx.try_send(Err(token_expired(cursor)));
                    return;
                }
                wake.borrow_and_update();
                let events = match me.read(&who, cursor).await {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = tx.send(Err(status::store(e))).await;
                        return;
                    }
                };
                let full_page = i64::try_from(events.len()).unwrap_or(i64::MAX) >= me.config.page;
                for e in events {
                    let seq = e.seq;
                    match tx
                        .send_timeout(Ok(convert::event(e)), me.config.max_stall)
                        .await
                    {
                        Ok(()) => cursor = seq,
                        Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                            tracing::info!(?who, cursor, "slow event consumer cut off");
                            // Delivered after what the buffer still holds, if the caller reads on.
                            let cut = status::resume_from(
                                Code::ResourceExhausted,
                                cursor,
                                "consumer fell too far behind",
                            );
                            let _ = tx.send_timeout(Err(cut), me.config.max_stall).await;
                            return;
                        }
                        Err(mpsc::error::SendTimeoutError::Closed(_)) => return,
                    }
                }
                if full_page {
                    continue;
                }
                tokio::select! {
                    changed = wake.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(me.config.reread) => {}
                    _ = tx.closed() => return,
                    _ = me.shutdown.cancelled() => {
                        let bye = status::resume_from(Code::Unavailable, cursor, "gateway shutting down");
                        let _ = tx.try_send(Err(bye));
                        return;
                    }
                    () = &mut expiry => {
                        let _ = tx.try_send(Err(token_expired(cursor)));
                        return;
                    }
                }
            }
        });
        Box::pin(ReceiverStream::new(rx)) as EventStream
    }
}

fn token_expired(cursor: i64) -> Status {
    status::resume_from(
        Code::Unauthenticated,
        cursor,
        "token expired: reconnect with a fresh token",
    )
}

/// A stream status that tells the caller where to resume, if it is one.
pub fn resume_cursor(s: &Status) -> Option<i64> {
    use tonic_types::StatusExt;
    s.get_details_error_info()?
        .metadata
        .get("resume_after_cursor")?
        .parse()
        .ok()
}
