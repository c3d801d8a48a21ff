//! Outbound delivery: replies and service messages back on the client's own channel.
//!
//! One worker per channel reads, in outbox order, the client-visible events its clients should get
//! (client ids with the channel's prefix), claims each in the `deliveries` ledger before sending
//! (so a restart never sends twice: a send a crash interrupted is marked `unknown`, not repeated,
//! and its ticket's manager gets a `delivery_unknown` event; `ResendDelivery` sends it again),
//! retries what may succeed later (rate limits with the server's `retry_after`, network errors with
//! backoff, per the channel's [`RetryPolicy`]) and records a `failed` delivery otherwise, together
//! with a `delivery_failed` event for the ticket's manager. A retry waits in the ledger (`retry`,
//! `next_attempt_at`), not in the worker, and clients are served at once: a slow or throttled
//! recipient delays only their own messages (kept in order behind the one that waits). Never silently dropped: every event it
//! passes has a ledger row. Wake-ups from `ticket.events` make it prompt; a periodic re-read covers
//! a lost wake-up.

use std::future::Future;
use std::time::Duration;

use tickets::{Claim, DeliveryStatus, Event, PgStore, event_kind};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::events::Wakeups;
use crate::telegram::Backoff;

/// Event kinds a client receives on their channel. `message_accepted` is not sent: on Telegram
/// and email the client's own message is already in their chat.
pub const DELIVERED_KINDS: &[&str] = &[
    event_kind::MANAGER_REPLY,
    event_kind::MESSAGE_BLOCKED,
    event_kind::MANAGER_ASSIGNED,
    event_kind::TICKET_CLOSED,
    event_kind::BOT_REPLIED,
    event_kind::BOT_TIMED_OUT,
];

/// Longest `retry_after` honoured in place; a longer one is a failure to record.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// How often, and how patiently, one delivery is tried before it is recorded as failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub max_attempts: u32,
    /// The wait after the first transient failure; it doubles after each further one.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait after the `failures`-th transient failure (1-based).
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The channel refused for good (blocked by the user, unknown recipient).
    #[error("{0}")]
    Permanent(String),
    /// Rate limited: try again after this long.
    #[error("rate limited; retry after {0:?}")]
    RetryAfter(Duration),
    /// Network or server trouble: try again with backoff.
    #[error("{0}")]
    Transient(String),
}

/// A channel's sender.
pub trait Outbound: Send + Sync + 'static {
    fn channel(&self) -> &'static str;
    /// The client-id prefix of this channel's clients (`tg:`, `email:`).
    fn client_prefix(&self) -> &'static str;
    /// Sends `text` for `event`; returns the channel's id of what was sent.
    fn send(
        &self,
        event: &Event,
        text: &str,
    ) -> impl Future<Output = Result<String, SendError>> + Send;
}

/// The text a client reads for an event, or `None` for a kind not delivered.
pub fn text_of(event: &Event) -> Option<String> {
    let field = match event.kind.as_str() {
        event_kind::MESSAGE_BLOCKED => "warning",
        k if DELIVERED_KINDS.contains(&k) => "body",
        _ => return None,
    };
    // A manager's files (`attachments`) go as files of their own: each channel's sender sends
    // them with this text.
    Some(event.payload[field].as_str()?.to_owned())
}

/// Runs the delivery worker of `outbound` until `shutdown`, with the default retry policy.
pub async fn run<O: Outbound>(
    outbound: O,
    store: PgStore,
    wakeups: Wakeups,
    shutdown: CancellationToken,
) {
    run_with(outbound, store, wakeups, shutdown, RetryPolicy::default()).await
}

/// Runs the delivery worker of `outbound` until `shutdown`, retrying each delivery per `policy`.
pub async fn run_with<O: Outbound>(
    outbound: O,
    store: PgStore,
    wakeups: Wakeups,
    shutdown: CancellationToken,
    policy: RetryPolicy,
) {
    let channel = outbound.channel();
    let cursor_name = format!("delivery:{channel}");
    let mut wake = wakeups.subscribe();
    let mut backoff = Backoff::new();
    match store.mark_interrupted_deliveries(channel).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            channel,
            n,
            "deliveries interrupted by a restart marked unknown"
        ),
        Err(e) => tracing::warn!(channel, error = %e, "cannot mark interrupted deliveries"),
    }
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        // Retries whose time came and resends managers asked for go first.
        match store.take_due_deliveries(channel, 100).await {
            Ok(due) => {
                let items = due
                    .into_iter()
                    .map(|(event, attempts)| Item {
                        event,
                        attempts,
                        claimed: true,
                    })
                    .collect();
                if let Err(e) = deliver_all(&outbound, &store, items, &policy).await {
                    tracing::warn!(channel, error = %e, "delivery: store error on retries");
                }
            }
            Err(e) => tracing::warn!(channel, error = %e, "delivery: cannot read due retries"),
        }
        let after = match store.channel_cursor(&cursor_name).await {
            Ok(c) => c.unwrap_or(0),
            Err(e) => {
                tracing::warn!(channel, error = %e, "delivery: cannot read cursor");
                backoff.wait(&shutdown).await;
                continue;
            }
        };
        let events = match store
            .channel_events_after(outbound.client_prefix(), DELIVERED_KINDS, after, 100)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(channel, error = %e, "delivery: cannot read events");
                backoff.wait(&shutdown).await;
                continue;
            }
        };
        backoff.reset();
        let Some(last) = events.last().map(|e| e.seq) else {
            wait_for_news(&mut wake, outbound.client_prefix(), &shutdown).await;
            continue;
        };
        let items = events
            .into_iter()
            .map(|event| Item {
                event,
                attempts: 0,
                claimed: false,
            })
            .collect();
        if let Err(e) = deliver_all(&outbound, &store, items, &policy).await {
            tracing::warn!(channel, error = %e, "delivery: store error");
            backoff.wait(&shutdown).await;
            continue;
        }
        if let Err(e) = store.advance_channel_cursor(&cursor_name, last).await {
            tracing::warn!(channel, error = %e, "delivery: cannot store cursor");
        }
    }
}

/// Clients whose deliveries are sent at once: one slow recipient (a hanging connection, a chat
/// the channel throttles) holds up only its own messages, never the others of the channel.
const CLIENTS_AT_ONCE: usize = 16;

/// One delivery to make: its event, the attempts made so far, and whether it is claimed already
/// (a due retry or resend) or still to be claimed (new in the outbox).
struct Item {
    event: Event,
    attempts: i32,
    claimed: bool,
}

/// Delivers `items` (in outbox order): each client's in order, one after another; clients at
/// once. Each delivery is attempted once here; one that may succeed later waits as a retry
/// (the worker never sleeps on a recipient), and the client's later ones wait behind it.
async fn deliver_all<O: Outbound>(
    outbound: &O,
    store: &PgStore,
    items: Vec<Item>,
    policy: &RetryPolicy,
) -> Result<(), tickets::StoreError> {
    use futures::StreamExt as _;
    let mut by_client: std::collections::BTreeMap<String, Vec<Item>> = Default::default();
    for item in items {
        by_client
            .entry(item.event.client_id.clone())
            .or_default()
            .push(item);
    }
    let results: Vec<Result<(), tickets::StoreError>> =
        futures::stream::iter(by_client.into_values())
            .map(|items| deliver_client(outbound, store, items, policy))
            .buffer_unordered(CLIENTS_AT_ONCE)
            .collect()
            .await;
    results.into_iter().collect()
}

/// One client's deliveries, in order.
async fn deliver_client<O: Outbound>(
    outbound: &O,
    store: &PgStore,
    items: Vec<Item>,
    policy: &RetryPolicy,
) -> Result<(), tickets::StoreError> {
    let channel = outbound.channel();
    let mut behind: Option<Duration> = None;
    for item in items {
        let event = &item.event;
        if let Some(wait) = behind {
            // An earlier one waits for a retry: this one waits behind it.
            if item.claimed {
                store
                    .schedule_retry(
                        event.seq,
                        channel,
                        item.attempts,
                        "waiting behind an earlier delivery to this client",
                        wait,
                    )
                    .await?;
            } else {
                store
                    .claim_delivery_in_order(event.seq, channel, &event.client_id)
                    .await?;
            }
            continue;
        }
        if !item.claimed {
            match store
                .claim_delivery_in_order(event.seq, channel, &event.client_id)
                .await?
            {
                Claim::Send => {}
                // Waiting behind an earlier one, or claimed before: never twice.
                Claim::Queued | Claim::Taken => continue,
            }
        }
        behind = attempt(outbound, store, event, item.attempts, policy).await?;
    }
    Ok(())
}

/// One attempt at a claimed delivery, its outcome recorded: sent, failed for good, or waiting
/// for a retry (returns how long).
async fn attempt<O: Outbound>(
    outbound: &O,
    store: &PgStore,
    event: &Event,
    attempts_before: i32,
    policy: &RetryPolicy,
) -> Result<Option<Duration>, tickets::StoreError> {
    let channel = outbound.channel();
    let Some(text) = text_of(event) else {
        store
            .fail_delivery(event.seq, channel, 0, "event without text")
            .await?;
        return Ok(None);
    };
    let attempts = attempts_before.saturating_add(1);
    let max_attempts = i32::try_from(policy.max_attempts.max(1)).unwrap_or(i32::MAX);
    let failed = |detail: String| async move {
        tracing::warn!(channel, seq = event.seq, client_id = %event.client_id, %detail,
            "delivery failed");
        // The ledger row and a `delivery_failed` event for the ticket's manager, together.
        store
            .fail_delivery(event.seq, channel, attempts, &detail)
            .await
            .map(|()| None)
    };
    match outbound.send(event, &text).await {
        Ok(id) => {
            tracing::info!(channel, seq = event.seq, client_id = %event.client_id, attempts,
                "delivered");
            store
                .finish_delivery(
                    event.seq,
                    channel,
                    DeliveryStatus::Sent,
                    attempts,
                    None,
                    Some(&id),
                )
                .await?;
            Ok(None)
        }
        Err(SendError::Permanent(e)) => failed(e).await,
        Err(e) if attempts >= max_attempts => {
            failed(format!("gave up after {attempts} attempts: {e}")).await
        }
        Err(SendError::RetryAfter(d)) if d > MAX_RETRY_AFTER => {
            failed(format!("rate limited for {d:?}")).await
        }
        Err(e) => {
            let wait = match &e {
                SendError::RetryAfter(d) => *d,
                _ => policy.backoff(u32::try_from(attempts).unwrap_or(u32::MAX)),
            };
            tracing::info!(channel, seq = event.seq, attempts, ?wait, error = %e,
                "delivery not through yet; retrying later");
            store
                .schedule_retry(event.seq, channel, attempts, &e.to_string(), wait)
                .await?;
            Ok(Some(wait))
        }
    }
}

async fn wait_for_news(
    wake: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<str>>,
    prefix: &str,
    shutdown: &CancellationToken,
) {
    // Also the longest a due retry waits for its turn.
    let deadline = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = &mut deadline => return,
            w = wake.recv() => match w {
                Ok(client) if client.starts_with(prefix) => return,
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => return,
                Err(RecvError::Closed) => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, payload: serde_json::Value) -> Event {
        Event {
            seq: 1,
            kind: kind.into(),
            ticket_id: None,
            client_id: "tg:1".into(),
            manager_id: None,
            client_visible: true,
            payload,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_blocked_message_is_delivered_only_as_its_warning() {
        let e = event(
            event_kind::MESSAGE_BLOCKED,
            json!({ "warning": "Never send card numbers.", "body": "4111..." }),
        );
        assert_eq!(text_of(&e).as_deref(), Some("Never send card numbers."));
        let reply = event(event_kind::MANAGER_REPLY, json!({ "body": "hello" }));
        assert_eq!(text_of(&reply).as_deref(), Some("hello"));
        let accepted = event(event_kind::MESSAGE_ACCEPTED, json!({ "body": "mine" }));
        assert_eq!(text_of(&accepted), None);
    }

    #[test]
    fn a_replys_files_are_sent_as_files_not_named_in_its_text() {
        let files = json!([{ "id": "x", "name": "form.pdf", "content_type": "application/pdf", "size": 9 }]);
        let only = event(
            event_kind::MANAGER_REPLY,
            json!({ "body": "", "attachments": files }),
        );
        assert_eq!(text_of(&only).as_deref(), Some(""));
        let with = event(
            event_kind::MANAGER_REPLY,
            json!({ "body": "here", "attachments": files }),
        );
        assert_eq!(text_of(&with).as_deref(), Some("here"));
    }

    #[test]
    fn the_retry_backoff_doubles_from_the_first_wait_up_to_the_longest() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(300),
        };
        let waits: Vec<u128> = (1..=5).map(|n| p.backoff(n).as_millis()).collect();
        assert_eq!(waits, [50, 100, 200, 300, 300]);
        assert_eq!(p.backoff(u32::MAX), Duration::from_millis(300));
    }
}
