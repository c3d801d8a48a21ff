//! The AFC relay: hands the AFC outbox (`afc_outbox`: client messages the inbound transaction
//! held, and manager replies when the ticket's spec checks them) to the bank's AFC system on
//! `afc.msgs`, in the order they were queued, then marks them sent; and raises one `afc_timeout`
//! alert for each client message whose verdict falls due while it is still held (the message
//! stays held until its verdict). Woken by the numbering of events (every inbound transaction and
//! reply numbers its own) and by the next due instant, with a poll a second as a safety net.
//!
//! No Temporal call: the timeout is the row's `due_at` in PostgreSQL, not a workflow timer. A
//! timer per ticket would have to be told of each newly held message (a signal for nearly every
//! message, as each is usually answered before the next arrives), which is the per-message
//! Temporal cost this path removes. A crash between the publish and the mark publishes the rows
//! again (two relays may too): harmless, the first verdict of a message is final.

use std::time::Duration;

use tickets::PgStore;
use tickets::external_afc::AfcQueued;
use tickets::outbox::Numbered;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::activities::follow_messages;
use crate::afc_activities::{AfcPublisher, count_afc_timeouts};
use crate::afc_kafka::AfcMessage;

/// Rows published (and alerts raised) per round at most.
const BATCH: usize = 500;

#[derive(Clone)]
pub struct AfcRelay {
    pub store: PgStore,
    pub publisher: AfcPublisher,
}

impl AfcRelay {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut commits = Numbered::default();
        let mut backoff = Duration::from_millis(100);
        loop {
            let round = self.round().await;
            let wait = match round {
                Ok(true) => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(false) => {
                    backoff = Duration::from_millis(100);
                    match self.store.next_afc_due().await {
                        Ok(due) => {
                            due.map(|at| (at - chrono::Utc::now()).to_std().unwrap_or_default())
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "next AFC deadline not read");
                            None
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "AFC outbox not handed over; retrying");
                    let b = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    Some(b)
                }
            };
            let due = async {
                match wait {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                () = commits.wait(&self.store) => {}
                () = due => {}
            }
        }
    }

    /// Publishes what is queued and raises what fell due; true if a full batch was found (more
    /// may be waiting).
    async fn round(&self) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
        let queued = self.store.afc_outbox_unsent(BATCH as i64).await?;
        if !queued.is_empty() {
            let span = tracing::info_span!("afc_publish", messages = queued.len());
            follow_messages(&self.store, &span, queued.iter().map(|q| q.message.id)).await;
            self.hand_over(&queued).instrument(span).await?;
        }
        let overdue = self.store.raise_overdue_afc(BATCH as i64).await?;
        if !overdue.is_empty() {
            let total = count_afc_timeouts(overdue.len() as u64);
            for o in &overdue {
                tracing::warn!(
                    ticket_id = ?o.ticket_id, client_id = %o.client_id, message_id = %o.message_id,
                    timeout_ms = o.timeout_ms, afc_timeouts_total = total,
                    "AFC verdict overdue: the message stays held"
                );
            }
        }
        Ok(queued.len() == BATCH || overdue.len() == BATCH)
    }

    async fn hand_over(
        &self,
        queued: &[AfcQueued],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let messages: Vec<AfcMessage> = queued
            .iter()
            .map(|q| AfcMessage {
                id: q.message.id,
                chat_id: q.message.client_id.clone(),
                body: q.message.body.clone(),
                from_client: q.message.from_client,

                attachments: q.message.files.iter().map(Into::into).collect(),
            })
            .collect();
        self.publisher.publish(&messages).await?;
        self.store.mark_afc_outbox_sent(queued).await?;
        let clients = queued.iter().filter(|q| q.message.from_client).count();
        tracing::info!(
            messages = clients,
            replies = queued.len() - clients,
            "messages handed to AFC"
        );
        Ok(())
    }
}
