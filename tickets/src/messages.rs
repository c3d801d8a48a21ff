//! Client messages in the store: stored as `pending`, their AFC verdicts applied (a passed
//! message becomes visible to the ticket's manager in the transaction that records its verdict, a
//! blocked one never does and leaves the client a warning), system messages in the chat.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use crate::domain::{
    Assignment, NewClientMessage, TicketClassification, TicketStatus, Verdict, message_id_for,
};
use crate::managers::match_waiting;
use crate::meters::{self, Timings};
use crate::screening::{self, Consequence};
use crate::store::{PgStore, Result, StoreError, insert_event, status_of};
use crate::ticket_event::TicketEvent;

impl PgStore {
    /// Stores a client message as `pending` (not yet checked). Returns false if it was already
    /// stored: the redelivery changes nothing.
    pub async fn record_inbound(&self, m: &NewClientMessage) -> Result<bool> {
        Ok(self.record_inbound_batch(std::slice::from_ref(m)).await? > 0)
    }

    /// The body of a stored client message, if it exists.
    pub async fn client_message_body(&self, id: Uuid) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT body FROM messages WHERE id = $1 AND author = 'client'")
                .bind(id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// The client's messages still waiting for their AFC verdict, oldest first.
    pub async fn pending_client_messages(&self, client_id: &str) -> Result<Vec<(Uuid, String)>> {
        pending_client_messages_in(self.pool(), client_id).await
    }

    /// Attaches checked messages to the ticket and records their verdicts. A passed message becomes
    /// visible to the ticket's manager; a blocked one never does and the client gets `warning`.
    /// The first passed message puts the ticket in the queue for a manager.
    pub async fn apply_verdicts(
        &self,
        ticket_id: Uuid,
        verdicts: &[(Uuid, Verdict)],
        warning: &str,
        classification: Option<&TicketClassification>,
    ) -> Result<VerdictsApplied> {
        let any_passed = verdicts.iter().any(|(_, v)| *v == Verdict::Passed);
        let mut tx = self.begin_writing(any_passed).await?;
        let row = sqlx::query("SELECT status, manager_id FROM tickets WHERE id = $1 FOR UPDATE")
            .bind(ticket_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::TicketNotFound)?;
        let status = status_of(&row)?;
        let manager_id: Option<String> = row.try_get("manager_id")?;
        let mut timings = Timings::default();
        let mut out = apply_verdicts_in(
            &mut tx,
            ticket_id,
            status,
            manager_id.as_deref(),
            verdicts,
            warning,
            classification,
            &mut timings,
        )
        .await?;
        if out.queued {
            let assigned = match_waiting(&mut tx, &mut timings).await?;
            out.assigned = assigned.into_iter().find(|a| a.ticket_id == ticket_id);
        }
        self.commit_writing(tx).await?;
        meters::verdicts_applied(out.passed, out.blocked);
        timings.report();
        Ok(out)
    }
}

/// The result of applying AFC verdicts to a ticket's messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerdictsApplied {
    pub passed: usize,
    pub blocked: usize,
    /// This call put the ticket in the queue for a manager (its first passed message).
    pub queued: bool,
    /// Set when this call put the ticket in the queue and a ready manager took it at once.
    pub assigned: Option<Assignment>,
}

/// A message from the engine to the client (warning, manager joined, closed), part of their chat.
pub(crate) async fn insert_system_message(
    tx: &mut Transaction<'_, Postgres>,
    external_id: &str,
    ticket_id: Uuid,
    client_id: &str,
    body: &str,
) -> Result<Uuid> {
    let id = message_id_for("system", external_id);
    sqlx::query(
        "INSERT INTO messages (id, client_id, ticket_id, author, channel, external_id, body, afc_status)
         VALUES ($1, $2, $3, 'system', 'system', $4, $5, 'not_checked')
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(client_id)
    .bind(ticket_id)
    .bind(external_id)
    .bind(body)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// Gives waiting tickets, longest-waiting first, to ready managers: the one with the fewest open
/// tickets, then the one ready longest. Runs under `MATCH_LOCK`, so it never races itself; a manager
/// holds at most `capacity` tickets because slots are only granted below capacity. Each assignment
/// adds its queue wait and the age of the passed messages it makes visible to `timings`.
/// The body of [`PgStore::apply_verdicts`] inside a writing transaction, for a ticket locked with
/// its `status` and `manager_id`: verdicts recorded, visible/blocked events written, the ticket
/// classified and queued by its first passed message. Matching is the caller's (once per
/// transaction); `assigned` is left None.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn apply_verdicts_in(
    tx: &mut Transaction<'_, Postgres>,
    ticket_id: Uuid,
    status: TicketStatus,
    manager_id: Option<&str>,
    verdicts: &[(Uuid, Verdict)],
    warning: &str,
    classification: Option<&TicketClassification>,
    timings: &mut Timings,
) -> Result<VerdictsApplied> {
    let mut out = VerdictsApplied::default();
    for (message_id, verdict) in verdicts {
        let (afc_status, rule) = match verdict {
            Verdict::Passed => ("passed", None),
            Verdict::Blocked { rule } => ("blocked", Some(rule.as_str())),
        };
        let updated = sqlx::query(
            "UPDATE messages SET ticket_id = $2, afc_status = $3, afc_rule = $4
                 WHERE id = $1 AND afc_status = 'pending'
                 RETURNING client_id, body, created_at,
                           extract(epoch FROM clock_timestamp() - created_at)::float8 AS age",
        )
        .bind(message_id)
        .bind(ticket_id)
        .bind(afc_status)
        .bind(rule)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(m) = updated else { continue };
        let client_id: String = m.try_get("client_id")?;
        match screening::consequence(verdict, status, manager_id) {
            Consequence::ShowTo(manager) => {
                out.passed += 1;
                let body: String = m.try_get("body")?;
                let created_at: DateTime<Utc> = m.try_get("created_at")?;
                timings.visible.push(m.try_get("age")?);
                insert_event(
                    tx,
                    &client_id,
                    &TicketEvent::MessageVisible {
                        manager_id: manager,
                        message_id: *message_id,
                        ticket_id,
                        body: &body,
                        created_at,
                    },
                )
                .await?;
            }
            Consequence::ShownOnAssignment => out.passed += 1,
            Consequence::WarnClient => {
                out.blocked += 1;
                let warning_id = insert_system_message(
                    tx,
                    &format!("blocked:{message_id}"),
                    ticket_id,
                    &client_id,
                    warning,
                )
                .await?;
                insert_event(
                    tx,
                    &client_id,
                    &TicketEvent::MessageBlocked {
                        message_id: *message_id,
                        ticket_id,
                        warning,
                        warning_message_id: warning_id,
                    },
                )
                .await?;
            }
        }
    }
    if screening::queues_ticket(status, out.passed) {
        sqlx::query("UPDATE tickets SET status = 'waiting', waiting_since = now() WHERE id = $1")
            .bind(ticket_id)
            .execute(&mut **tx)
            .await?;
        if let Some(c) = classification {
            sqlx::query(
                    "UPDATE tickets SET category = $2, priority = $3, queue = $4, fields = $5 WHERE id = $1",
                )
                .bind(ticket_id)
                .bind(&c.category)
                .bind(c.priority.clamp(0, 3))
                .bind(&c.queue)
                .bind(&c.fields)
                .execute(&mut **tx)
                .await?;
        }
        out.queued = true;
    }
    Ok(out)
}

/// The client's messages still waiting for their AFC verdict, oldest first (at most 500), on
/// `db` (the pool, or a transaction).
pub(crate) async fn pending_client_messages_in<'e>(
    db: impl sqlx::PgExecutor<'e>,
    client_id: &str,
) -> Result<Vec<(Uuid, String)>> {
    let rows = sqlx::query(
        "SELECT id, body FROM messages
         WHERE client_id = $1 AND author = 'client' AND afc_status = 'pending'
         ORDER BY created_at, id LIMIT 500",
    )
    .bind(client_id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("body")?)))
        .collect()
}
