//! Live event streams for managers and clients: the one core under the gRPC `StreamEvents` of both
//! services and the web chat's WebSocket. PostgreSQL (the outbox) is the source of truth: a stream
//! reads the caller's events after its cursor from there, and the outbox tail
//! (`tickets::outbox::OutboxTail`, woken by the numbering's `NOTIFY`, which reads every new event
//! once) hands each audience its newest events ([`Recent`]). A stream that keeps up takes them from
//! there; one that is behind them (it just opened, resumed from an old cursor, or fell more than
//! [`RECENT`] events behind) reads the store. So a reconnect with the last cursor resumes with no
//! gap and no duplicate, also across a gateway restart, and a stream that keeps up costs no query
//! per event.
//!
//! Each stream has its own task and a bounded buffer; the tail never waits for a stream (a
//! wake-up is a `watch` value, overwritten, never queued). A consumer that does not take an event
//! for `max_stall` is cut off ([`EndReason::TooSlow`]). Every end says the cursor to resume from;
//! each adapter says it in its own protocol (a gRPC status, a WebSocket close frame).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::future::Future;

use tickets::outbox::{Numbering, OutboxTail};
use tickets::{Event, PgStore, StoreError};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

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
    /// Streams one caller may hold open at once in this process (a console in a few tabs); one
    /// more is refused, so a leaking or hostile client cannot hold unbounded tasks and buffers.
    pub max_per_caller: usize,
}

/// Refused: the caller holds [`StreamConfig::max_per_caller`] streams already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many open event streams ({open}); close one first")]
pub struct TooManyStreams {
    pub open: usize,
}

pub const DEFAULT_MAX_STREAMS_PER_CALLER: usize = 8;

pub static MAX_STREAMS_PER_CALLER: platform::settings::Setting = platform::settings::Setting::new(
    "INBOX_MAX_STREAMS_PER_CALLER",
    platform::settings::Kind::Int,
    "8",
    "event streams (WebSocket or gRPC) one client or manager may hold open at once per instance",
);

impl StreamConfig {
    pub fn from_env(
        env: &platform::settings::Env,
    ) -> Result<Self, platform::settings::SettingError> {
        Ok(Self {
            max_per_caller: env.parse(&MAX_STREAMS_PER_CALLER)?,
            ..Self::default()
        })
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            buffer: 64,
            page: 200,
            max_stall: Duration::from_secs(10),
            reread: Duration::from_secs(5),
            max_per_caller: DEFAULT_MAX_STREAMS_PER_CALLER,
        }
    }
}

/// Why a stream ended before its caller hung up; the caller resumes after [`StreamEnd::cursor`].
#[derive(Debug)]
pub enum EndReason {
    /// The caller's token expired: come back with a fresh one.
    TokenExpired,
    /// The caller left a full buffer untouched for `max_stall`.
    TooSlow,
    /// The service is shutting down: come back (to another replica).
    ShuttingDown,
    /// The store failed.
    Store(StoreError),
}

#[derive(Debug)]
pub struct StreamEnd {
    pub reason: EndReason,
    /// Every event up to this one was handed to the caller.
    pub cursor: i64,
}

impl StreamEnd {
    fn new(reason: EndReason, cursor: i64) -> Self {
        Self { reason, cursor }
    }
}

/// What a stream yields: its audience's events in order, then, if it ends first, why.
pub type Events = mpsc::Receiver<Result<Event, StreamEnd>>;

/// Events the hub keeps per audience: a stream further behind reads the store.
pub const RECENT: usize = 32;

/// An audience's newest events, as the tail read them: every event of the audience after
/// `complete_after` is here (None: the tail has not started, nothing is known).
#[derive(Debug, Clone)]
pub struct Recent {
    complete_after: Option<i64>,
    /// Oldest first, at most [`RECENT`].
    events: VecDeque<Arc<Event>>,
    /// The newest typing signal for the audience, numbered so each stream shows it once. Not an
    /// event of the outbox: cursor 0, never resumed.
    typing: (u64, Option<Arc<Event>>),
}

impl Recent {
    fn new(complete_after: Option<i64>) -> Self {
        Self {
            complete_after,
            events: VecDeque::new(),
            typing: (0, None),
        }
    }

    fn push(&mut self, e: Arc<Event>) {
        if self.events.len() == RECENT
            && let Some(dropped) = self.events.pop_front()
        {
            self.complete_after = Some(dropped.seq);
        }
        self.events.push_back(e);
    }

    /// The newest seq every event up to which is known (here or before `complete_after`).
    fn horizon(&self) -> Option<i64> {
        self.events.back().map(|e| e.seq).or(self.complete_after)
    }

    /// The audience's events after `covered`, if the hub has all of them.
    fn after(&self, covered: i64) -> Option<Vec<Event>> {
        self.complete_after.is_some_and(|c| covered >= c).then(|| {
            self.events
                .iter()
                .filter(|e| e.seq > covered)
                .map(|e| Event::clone(e))
                .collect()
        })
    }
}

/// The newest events per audience, and how far the tail has handed them out.
#[derive(Default)]
pub struct Hub {
    inner: Mutex<Audiences>,
}

#[derive(Default)]
struct Audiences {
    by: HashMap<Audience, watch::Sender<Recent>>,
    /// Every event up to this seq was handed out (None until the tail starts).
    delivered: Option<i64>,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Audiences> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn subscribe(&self, a: Audience) -> watch::Receiver<Recent> {
        self.subscribe_at_most(a, usize::MAX)
            .unwrap_or_else(|_| watch::channel(Recent::new(None)).1)
    }

    /// [`Hub::subscribe`] unless `a` already holds `max` subscriptions (its open streams).
    pub fn subscribe_at_most(
        &self,
        a: Audience,
        max: usize,
    ) -> Result<watch::Receiver<Recent>, TooManyStreams> {
        let mut inner = self.lock();
        if let Some(tx) = inner.by.get(&a) {
            let open = tx.receiver_count();
            if open >= max {
                return Err(TooManyStreams { open });
            }
        }
        // Until the tail starts, no event is known: the streams read the store.
        let from = inner.delivered;
        Ok(inner
            .by
            .entry(a)
            .or_insert_with(|| watch::channel(Recent::new(from)).0)
            .subscribe())
    }

    /// The tail (re)starts after `seq`: what the hub held before may miss events since, so the
    /// streams read the store up to `seq` and take from the hub after it.
    pub fn started(&self, seq: i64) {
        let mut inner = self.lock();
        inner.delivered = Some(seq);
        for tx in inner.by.values() {
            tx.send_modify(|r| {
                let typing = r.typing.0;
                *r = Recent::new(Some(seq));
                r.typing.0 = typing;
            });
        }
    }

    /// Hands a typing signal to the streams of `t`'s other side open in this process.
    pub fn typing(&self, t: &tickets::typing::Typing) {
        let (audience, event) = typing_event(t);
        let inner = self.lock();
        if let Some(tx) = inner.by.get(&audience) {
            let event = Arc::new(event);
            tx.send_modify(|r| r.typing = (r.typing.0 + 1, Some(event)));
        }
    }

    fn push(by: &mut HashMap<Audience, watch::Sender<Recent>>, a: Audience, e: &Arc<Event>) {
        if let Some(tx) = by.get(&a) {
            if tx.receiver_count() == 0 {
                by.remove(&a);
            } else {
                tx.send_modify(|r| r.push(e.clone()));
            }
        }
    }

    /// Hands `e` to the streams that may see it, as each may read it.
    pub fn notify(&self, e: &Numbering) {
        let mut inner = self.lock();
        if let Some(client_event) = &e.client_event {
            Self::push(
                &mut inner.by,
                Audience::Client(e.client_id.clone()),
                client_event,
            );
        }
        if let Some(m) = &e.manager_id {
            Self::push(&mut inner.by, Audience::Manager(m.clone()), &e.event);
        }
        inner.delivered = Some(e.seq);
    }

    /// The managers with an open stream in this process (their console is there).
    pub fn present_managers(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .lock()
            .by
            .iter()
            .filter(|(_, tx)| tx.receiver_count() > 0)
            .filter_map(|(a, _)| match a {
                Audience::Manager(id) => Some(id.clone()),
                Audience::Client(_) => None,
            })
            .collect();
        ids.sort();
        ids
    }

    /// Streams currently subscribed (for the benchmark and tests).
    pub fn audiences(&self) -> usize {
        self.lock().by.len()
    }
}

/// Follows the outbox from its newest event (every instance sees every event) and hands each event
/// to the streams it concerns, then each batch to `then` (the service's own use of the tail, such
/// as waking its channel deliveries), until `shutdown`. A failed read is retried a second later;
/// a stream re-reads on its own meanwhile (`StreamConfig::reread`).
pub async fn listen<F, Fut>(store: PgStore, hub: Arc<Hub>, shutdown: CancellationToken, mut then: F)
where
    F: FnMut(Vec<Numbering>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tail = OutboxTail::new(store);
    loop {
        let started = tokio::select! {
            _ = shutdown.cancelled() => return,
            s = tail.start() => s,
        };
        match started {
            Ok(seq) => {
                hub.started(seq);
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbox tail not started; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    loop {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => return,
            b = tail.next() => b,
        };
        match batch {
            Ok(events) => {
                events.iter().for_each(|e| hub.notify(e));
                then(events).await;
            }
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
    async fn read(&self, who: &Audience, after: i64) -> Result<Vec<Event>, StoreError> {
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
    /// behind, its token expires (after `token_valid`) or the service shuts down (all of which
    /// end with the cursor to resume from).
    pub fn open(
        &self,
        who: Audience,
        mut cursor: i64,
        token_valid: Duration,
    ) -> Result<Events, TooManyStreams> {
        let mut wake = self
            .hub
            .subscribe_at_most(who.clone(), self.config.max_per_caller.max(1))?;
        let (tx, rx) = mpsc::channel(self.config.buffer.max(1));
        let me = self.clone();
        tokio::spawn(async move {
            let _live = platform::ops::GaugeGuard::hold(
                metrics::gauge!("inbox_live_streams", "audience" => who.label()),
            );
            let expiry = tokio::time::sleep(token_valid);
            tokio::pin!(expiry);
            // Every event of `who` up to here was sent (or precedes the cursor).
            let mut covered = cursor;
            // Typing signals from before the stream opened are not shown.
            let mut typing_seen = wake.borrow().typing.0;
            loop {
                if expiry.is_elapsed() {
                    let _ = tx.try_send(Err(StreamEnd::new(EndReason::TokenExpired, cursor)));
                    return;
                }
                // What the hub has, and how far it knows, before any read: an event the hub
                // knew of was numbered before the read below, so the read has it.
                let (pushed, horizon, typing) = {
                    let recent = wake.borrow_and_update();
                    let typing = match &recent.typing {
                        (n, Some(e)) if *n > typing_seen => {
                            typing_seen = *n;
                            Some(Event::clone(e))
                        }
                        _ => None,
                    };
                    (recent.after(covered), recent.horizon(), typing)
                };
                // Best effort: a full buffer drops it; the cursor stays where the events left it.
                if let Some(t) = typing {
                    let _ = tx.try_send(Ok(t));
                }
                let (events, full_page) = match pushed {
                    Some(events) => (events, false),
                    None => match me.read(&who, cursor).await {
                        Ok(e) => {
                            let full = i64::try_from(e.len()).unwrap_or(i64::MAX) >= me.config.page;
                            (e, full)
                        }
                        Err(e) => {
                            let _ = tx
                                .send(Err(StreamEnd::new(EndReason::Store(e), cursor)))
                                .await;
                            return;
                        }
                    },
                };
                for e in events {
                    let seq = e.seq;
                    match tx.send_timeout(Ok(e), me.config.max_stall).await {
                        Ok(()) => cursor = seq,
                        Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                            tracing::info!(?who, cursor, "slow event consumer cut off");
                            // Delivered after what the buffer still holds, if the caller reads on.
                            let cut = StreamEnd::new(EndReason::TooSlow, cursor);
                            let _ = tx.send_timeout(Err(cut), me.config.max_stall).await;
                            return;
                        }
                        Err(mpsc::error::SendTimeoutError::Closed(_)) => return,
                    }
                }
                if full_page {
                    covered = cursor;
                    continue;
                }
                covered = horizon.map_or(cursor, |h| cursor.max(h));
                tokio::select! {
                    changed = wake.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(me.config.reread) => {}
                    _ = tx.closed() => return,
                    _ = me.shutdown.cancelled() => {
                        let _ = tx.try_send(Err(StreamEnd::new(EndReason::ShuttingDown, cursor)));
                        return;
                    }
                    () = &mut expiry => {
                        let _ = tx.try_send(Err(StreamEnd::new(EndReason::TokenExpired, cursor)));
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

/// The kind of the ephemeral typing event (cursor 0: not part of the feed, never resumed from).
pub const TYPING: &str = "typing";

/// A typing signal as the recipient's stream shows it.
fn typing_event(t: &tickets::typing::Typing) -> (Audience, Event) {
    let audience = if t.by_client {
        Audience::Manager(t.manager_id.clone())
    } else {
        Audience::Client(t.client_id.clone())
    };
    let by = if t.by_client { "client" } else { "manager" };
    let event = Event {
        seq: 0,
        kind: TYPING.into(),
        ticket_id: Some(t.ticket_id),
        client_id: t.client_id.clone(),
        manager_id: Some(t.manager_id.clone()),
        client_visible: !t.by_client,
        payload: if t.by_client {
            serde_json::json!({ "ticket_id": t.ticket_id, "by": by })
        } else {
            serde_json::json!({ "ticket_id": t.ticket_id, "by": by, "manager_name": t.manager_name })
        },
        created_at: chrono::Utc::now(),
    };
    (audience, event)
}

/// Hands every typing signal of the database (`tickets::typing`) to this process's streams,
/// until `shutdown`; reconnects after a failure (signals meanwhile are lost: they are ephemeral).
pub async fn listen_typing(store: PgStore, hub: Arc<Hub>, shutdown: CancellationToken) {
    loop {
        let mut listener = match store.typing_listener().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "typing listener not started; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let n = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = listener.recv() => n,
            };
            match n {
                Ok(n) => match serde_json::from_str::<tickets::typing::Typing>(n.payload()) {
                    Ok(t) => hub.typing(&t),
                    Err(e) => tracing::warn!(error = %e, "a typing signal that does not parse"),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "typing listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(seq: i64, client: &str, manager: Option<&str>, visible: bool) -> Numbering {
        let event = Event {
            seq,
            kind: "k".into(),
            ticket_id: None,
            client_id: client.into(),
            manager_id: manager.map(str::to_owned),
            client_visible: visible,
            payload: serde_json::json!({"view": "manager"}),
            created_at: chrono::Utc::now(),
        };
        Numbering {
            seq,
            client_id: client.into(),
            client_visible: visible,
            manager_id: manager.map(str::to_owned),
            client_event: visible.then(|| {
                Arc::new(Event {
                    payload: serde_json::json!({"view": "client"}),
                    ..event.clone()
                })
            }),
            event: Arc::new(event),
        }
    }

    fn seqs(events: &[Event]) -> Vec<i64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn an_audience_is_handed_its_own_events_after_the_tail_started_each_as_it_may_read_them() {
        let hub = Hub::default();
        let client = hub.subscribe(Audience::Client("c1".into()));
        let manager = hub.subscribe(Audience::Manager("m1".into()));
        // Before the tail starts nothing is known: a stream reads the store.
        assert!(client.borrow().after(0).is_none());
        hub.started(10);
        hub.notify(&numbered(11, "c1", Some("m1"), true));
        hub.notify(&numbered(12, "c2", Some("m1"), true));
        hub.notify(&numbered(13, "c1", Some("m2"), false));
        hub.notify(&numbered(14, "c1", None, true));

        let mine = client.borrow().after(10).unwrap_or_default();
        assert_eq!(seqs(&mine), vec![11, 14]);
        assert!(mine.iter().all(|e| e.payload["view"] == "client"));
        let theirs = manager.borrow().after(10).unwrap_or_default();
        assert_eq!(seqs(&theirs), vec![11, 12]);
        assert!(theirs.iter().all(|e| e.payload["view"] == "manager"));
        assert_eq!(client.borrow().horizon(), Some(14));
        // A stream behind the tail's start reads the store.
        assert!(client.borrow().after(9).is_none());
        assert_eq!(
            seqs(&client.borrow().after(11).unwrap_or_default()),
            vec![14]
        );
    }

    #[test]
    fn a_stream_more_than_the_kept_events_behind_reads_the_store_and_a_restarted_tail_forgets() {
        let hub = Hub::default();
        let rx = hub.subscribe(Audience::Client("c".into()));
        hub.started(0);
        let n = i64::try_from(RECENT).unwrap_or(i64::MAX) + 5;
        for seq in 1..=n {
            hub.notify(&numbered(seq, "c", None, true));
        }
        assert!(rx.borrow().after(0).is_none(), "the first five are gone");
        assert!(rx.borrow().after(4).is_none());
        let kept = rx.borrow().after(5).unwrap_or_default();
        assert_eq!(kept.len(), RECENT);
        assert_eq!(kept.first().map(|e| e.seq), Some(6));

        // A tail started again after 100 may have missed events after `n`.
        hub.started(100);
        assert!(rx.borrow().after(n).is_none());
        assert_eq!(rx.borrow().after(100).map(|e| e.len()), Some(0));
    }
}
