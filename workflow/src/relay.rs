//! The outbox relay: publishes committed events to Kafka `ticket.events` in `seq` order, then marks
//! them published. A crash between the two republishes; consumers dedup by `seq`.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::postgres::PgListener;
use tickets::{Event, PgStore, event_kind, store::EVENTS_CHANNEL};
use tokio_util::sync::CancellationToken;

pub struct Relay {
    pub store: PgStore,
    /// Assignments and replies are also signalled to the ticket's workflow (its timers depend on them).
    pub tickets: crate::client::Tickets,
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
    pub async fn run(self, shutdown: CancellationToken) {
        let mut listener = None;
        loop {
            if listener.is_none() {
                listener = match PgListener::connect_with(self.store.pool()).await {
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
            let published = match self.publish_batch().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay failed; retrying");
                    0
                }
            };
            if published > 0 {
                continue;
            }
            // Nothing to publish: wait for a commit notification (or poll, as a safety net).
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            let listener_failed = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = notified => r.is_err(),
                _ = tokio::time::sleep(Duration::from_secs(1)) => false,
            };
            if listener_failed {
                listener = None;
            }
        }
    }

    async fn publish_batch(&self) -> Result<usize, Box<dyn std::error::Error>> {
        let batch = self.store.unpublished_events(500).await?;
        if batch.is_empty() {
            return Ok(0);
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
        let sends = payloads.iter().map(|(key, bytes)| {
            self.producer.send(
                FutureRecord::to(&self.topic).key(key).payload(bytes),
                Duration::from_secs(30),
            )
        });
        for res in futures::future::join_all(sends).await {
            res.map_err(|(e, _)| e)?;
        }
        for e in &batch {
            let (Some(ticket_id), Some(manager_id)) = (e.ticket_id, e.manager_id.as_deref()) else {
                continue;
            };
            match e.kind.as_str() {
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
                _ => Ok(()),
            }
            .or_else(ignore_closed)?;
        }
        let seqs: Vec<i64> = batch.iter().map(|e| e.seq).collect();
        self.store.mark_published(&seqs).await?;
        Ok(seqs.len())
    }
}

/// A ticket whose workflow already ended needs no signal.
fn ignore_closed(e: crate::client::TemporalError) -> Result<(), crate::client::TemporalError> {
    let text = e.to_string().to_lowercase();
    if text.contains("not found") || text.contains("already completed") {
        Ok(())
    } else {
        Err(e)
    }
}
