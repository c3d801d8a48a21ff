//! Outbound delivery: replies and service messages back on the client's own channel.
//!
//! One worker per channel reads, in outbox order, the client-visible events its clients should get
//! (client ids with the channel's prefix), claims each in the `deliveries` ledger before sending
//! (so a restart never sends twice: a send a crash interrupted is marked `unknown`, not repeated),
//! retries what may succeed later (rate limits with the server's `retry_after`, network errors with
//! backoff, per the channel's [`RetryPolicy`]) and records a `failed` delivery otherwise, together
//! with a `delivery_failed` event for the ticket's manager. Never silently dropped: every event it
//! passes has a ledger row. Wake-ups from `ticket.events` make it prompt; a periodic re-read covers
//! a lost wake-up.

use std::future::Future;
use std::time::Duration;

use tickets::{DeliveryStatus, Event, PgStore, event_kind};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::events::Wakeups;
use crate::telegram::{Backoff, sleep_or_cancel};

/// Event kinds a client receives on their channel. `message_accepted` is not sent: on Telegram
/// and email the client's own message is already in their chat.
pub const DELIVERED_KINDS: &[&str] = &[
    event_kind::MANAGER_REPLY,
    event_kind::MESSAGE_BLOCKED,
    event_kind::MANAGER_ASSIGNED,
    event_kind::TICKET_CLOSED,
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
    event.payload[field].as_str().map(str::to_owned)
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
        if events.is_empty() {
            wait_for_news(&mut wake, outbound.client_prefix(), &shutdown).await;
            continue;
        }
        for event in events {
            if let Err(e) = deliver(&outbound, &store, &event, &policy, &shutdown).await {
                tracing::warn!(channel, seq = event.seq, error = %e, "delivery: store error");
                backoff.wait(&shutdown).await;
                break;
            }
            if shutdown.is_cancelled() {
                return;
            }
            if let Err(e) = store.advance_channel_cursor(&cursor_name, event.seq).await {
                tracing::warn!(channel, error = %e, "delivery: cannot store cursor");
                break;
            }
        }
    }
}

async fn deliver<O: Outbound>(
    outbound: &O,
    store: &PgStore,
    event: &Event,
    policy: &RetryPolicy,
    shutdown: &CancellationToken,
) -> Result<(), tickets::StoreError> {
    let channel = outbound.channel();
    if !store
        .claim_delivery(event.seq, channel, &event.client_id)
        .await?
    {
        return Ok(()); // claimed before: sent, failed or interrupted; never twice
    }
    let Some(text) = text_of(event) else {
        return store
            .fail_delivery(event.seq, channel, 0, "event without text")
            .await;
    };
    let max_attempts = policy.max_attempts.max(1);
    let mut attempts: u32 = 0;
    let mut transient_failures: u32 = 0;
    let outcome = loop {
        attempts += 1;
        match outbound.send(event, &text).await {
            Ok(id) => break Ok(id),
            Err(SendError::Permanent(e)) => break Err(e),
            Err(e) if attempts >= max_attempts => {
                break Err(format!("gave up after {attempts} attempts: {e}"));
            }
            Err(SendError::RetryAfter(d)) if d > MAX_RETRY_AFTER => {
                break Err(format!("rate limited for {d:?}"));
            }
            Err(SendError::RetryAfter(d)) => {
                tracing::info!(
                    channel,
                    seq = event.seq,
                    ?d,
                    "delivery rate limited; waiting"
                );
                sleep_or_cancel(d, shutdown).await;
            }
            Err(SendError::Transient(e)) => {
                transient_failures += 1;
                let wait = policy.backoff(transient_failures);
                tracing::warn!(channel, seq = event.seq, attempts, ?wait, error = %e,
                    "delivery failed; retrying");
                sleep_or_cancel(wait, shutdown).await;
            }
        }
        if shutdown.is_cancelled() {
            break Err("stopped before the send succeeded".into());
        }
    };
    let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
    match outcome {
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
                .await
        }
        Err(detail) => {
            tracing::warn!(channel, seq = event.seq, client_id = %event.client_id,
                %detail, "delivery failed");
            // The ledger row and a `delivery_failed` event for the ticket's manager, together.
            store
                .fail_delivery(event.seq, channel, attempts, &detail)
                .await
        }
    }
}

async fn wait_for_news(
    wake: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<str>>,
    prefix: &str,
    shutdown: &CancellationToken,
) {
    let deadline = tokio::time::sleep(Duration::from_secs(2));
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
