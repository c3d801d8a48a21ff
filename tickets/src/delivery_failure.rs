//! A delivery that was given up on (the channel refused, or retries ran out) is not only a ledger
//! row: it is also a `delivery_failed` event, so the ticket's manager (and operators reading the
//! outbox) learn that the client did not get a reply, in the same transaction as the ledger row.

use crate::store::{PgStore, Result, insert_event};
use crate::ticket_event::TicketEvent;

impl PgStore {
    /// Marks the delivery of event `seq` on `channel` failed and appends one `delivery_failed`
    /// event (not client-visible; addressed to the ticket's manager, if any). Idempotent: the
    /// event's dedup key is the (channel, event) pair.
    pub async fn fail_delivery(
        &self,
        seq: i64,
        channel: &str,
        attempts: i32,
        detail: &str,
    ) -> Result<()> {
        let mut tx = self.begin_writing(false).await?;
        let failed: Option<(String, String, Option<uuid::Uuid>, Option<String>)> = sqlx::query_as(
            "WITH d AS (
                     UPDATE deliveries SET status = 'failed', attempts = $3, detail = $4,
                            updated_at = now()
                     WHERE event_seq = $1 AND channel = $2
                     RETURNING event_seq, client_id)
                 SELECT d.client_id, e.kind, e.ticket_id, t.manager_id
                 FROM d JOIN events e ON e.seq = d.event_seq
                 LEFT JOIN tickets t ON t.id = e.ticket_id",
        )
        .bind(seq)
        .bind(channel)
        .bind(attempts)
        .bind(detail)
        .fetch_optional(&mut *tx)
        .await?;
        let recorded = failed.is_some();
        if let Some((client_id, kind, ticket_id, manager_id)) = failed {
            insert_event(
                &mut tx,
                &client_id,
                &TicketEvent::DeliveryFailed {
                    channel,
                    event_seq: seq,
                    event_kind: &kind,
                    ticket_id,
                    manager_id: manager_id.as_deref(),
                    attempts,
                    detail,
                },
            )
            .await?;
        }
        self.commit_writing(tx).await?;
        if recorded {
            metrics::counter!(crate::meters::DELIVERIES_FAILED, "channel" => channel.to_owned())
                .increment(1);
        }
        Ok(())
    }
}
