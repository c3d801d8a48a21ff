//! A ticket's lifecycle in the store: opened for a client, queued, escalated, its SLA breach and
//! reply silence read by the workflow's timers, a resolve requested, closed.

use serde_json::json;
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use crate::domain::{Caller, TicketStatus};
use crate::managers::managers_ticket_shared;
use crate::messages::insert_system_message;
use crate::store::{PgStore, Result, StoreError, insert_event, status_of};
use crate::ticket_event::TicketEvent;

impl PgStore {
    pub async fn ticket_exists(&self, ticket_id: Uuid) -> Result<bool> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tickets WHERE id = $1)")
                .bind(ticket_id)
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// The client's open ticket: its id, status and manager (a ticket workflow starting on the
    /// store's word takes its state from here, so a lost or stale signal cannot mislead it).
    pub async fn open_ticket_of(&self, client_id: &str) -> Result<Option<OpenTicketState>> {
        let row = sqlx::query(
            "SELECT id, status, manager_id FROM tickets WHERE client_id = $1 AND status <> 'closed'",
        )
        .bind(client_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(OpenTicketState {
                ticket_id: r.try_get("id")?,
                status: status_of(&r)?,
                manager_id: r.try_get("manager_id")?,
            })
        })
        .transpose()
    }

    /// Where the ticket's silence stands: its manager's last reply (ms since the epoch, store
    /// clock) and whether the client wrote after it. The silence timer of a ticket checked in the
    /// store asks when it fires: neither client messages nor replies after the first wake its
    /// workflow.
    pub async fn reply_silence(&self, ticket_id: Uuid) -> Result<ReplySilence> {
        let row = sqlx::query(
            "SELECT (extract(epoch FROM r.at) * 1000)::int8 AS last_reply_ms,
                    EXISTS (SELECT 1 FROM messages c
                            WHERE c.ticket_id = $1 AND c.author = 'client'
                              AND c.created_at > COALESCE(r.at, '-infinity')) AS client_wrote
             FROM (SELECT max(created_at) AS at FROM messages
                   WHERE ticket_id = $1 AND author = 'manager') r",
        )
        .bind(ticket_id)
        .fetch_one(self.pool())
        .await?;
        Ok(ReplySilence {
            last_reply_ms: row.try_get("last_reply_ms")?,
            client_wrote_since: row.try_get("client_wrote")?,
        })
    }

    /// Which of `ticket_ids` the store checks the messages of (`tickets.checked_in_store`).
    pub async fn checked_in_store(&self, ticket_ids: &[Uuid]) -> Result<Vec<Uuid>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM tickets WHERE id = ANY($1) AND checked_in_store ORDER BY id",
        )
        .bind(ticket_ids)
        .fetch_all(self.pool())
        .await?)
    }

    /// Creates the ticket if it does not exist yet.
    pub async fn open_ticket(
        &self,
        ticket_id: Uuid,
        client_id: &str,
        spec_version: &str,
    ) -> Result<()> {
        let res = sqlx::query(
            "INSERT INTO tickets (id, client_id, status, spec_version) VALUES ($1, $2, 'open', $3)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(ticket_id)
        .bind(client_id)
        .bind(spec_version)
        .execute(self.pool())
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e))
                if e.constraint() == Some("tickets_one_open_per_client") =>
            {
                Err(StoreError::OtherTicketOpen(client_id.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The ticket's manager asks to resolve it: a `resolve_requested` event the outbox relay
    /// signals to the ticket's workflow, which closes it (after the ticket's earlier lifecycle
    /// events, so the workflow exists by then). Asking again changes nothing. Returns false when
    /// the ticket is already closed.
    pub async fn request_resolve(&self, manager: &Caller, ticket_id: Uuid) -> Result<bool> {
        let mut tx = self.begin_writing(false).await?;
        let (client_id, status) = managers_ticket_shared(&mut tx, ticket_id, manager).await?;
        if status == TicketStatus::Closed {
            return Ok(false);
        }
        insert_event(
            &mut tx,
            &client_id,
            &TicketEvent::ResolveRequested {
                ticket_id,
                manager_id: &manager.user_id,
            },
        )
        .await?;
        self.commit_writing(tx).await?;
        Ok(true)
    }

    /// Closes the ticket, frees the manager's capacity and tells the client with `closing_text`.
    /// Returns false if it was already closed.
    pub async fn close_ticket(
        &self,
        ticket_id: Uuid,
        reason: &str,
        closing_text: &str,
        satisfaction_prompt: Option<&str>,
    ) -> Result<bool> {
        let mut tx = self.begin_writing(false).await?;
        let row = sqlx::query(
            "SELECT client_id, status, manager_id FROM tickets WHERE id = $1 FOR UPDATE",
        )
        .bind(ticket_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::TicketNotFound)?;
        if status_of(&row)? == TicketStatus::Closed {
            return Ok(false);
        }
        let client_id: String = row.try_get("client_id")?;
        let manager_id: Option<String> = row.try_get("manager_id")?;
        sqlx::query(
            "UPDATE tickets SET status = 'closed', closed_at = now(), close_reason = $2 WHERE id = $1",
        )
        .bind(ticket_id)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        let message_id = insert_system_message(
            &mut tx,
            &format!("closed:{ticket_id}"),
            ticket_id,
            &client_id,
            closing_text,
        )
        .await?;
        insert_event(
            &mut tx,
            &client_id,
            &TicketEvent::TicketClosed {
                ticket_id,
                manager_id: manager_id.as_deref(),
                reason,
                message_id,
                body: closing_text,
            },
        )
        .await?;
        if let Some(prompt) = satisfaction_prompt {
            let message_id = insert_system_message(
                &mut tx,
                &format!("satisfaction:{ticket_id}"),
                ticket_id,
                &client_id,
                prompt,
            )
            .await?;
            insert_event(
                &mut tx,
                &client_id,
                &TicketEvent::SatisfactionRequested {
                    ticket_id,
                    message_id,
                    body: prompt,
                },
            )
            .await?;
        }
        self.commit_writing(tx).await?;
        Ok(true)
    }

    /// Raises the priority of a ticket still waiting for a manager (one level, up to urgent) and
    /// records the escalation. Returns the new priority, or None if it no longer waits. `round`
    /// makes a retried escalation a no-op.
    pub async fn escalate(&self, ticket_id: Uuid, round: u32) -> Result<Option<i32>> {
        let mut tx = self.begin_writing(false).await?;
        let row = sqlx::query(
            "UPDATE tickets SET priority = LEAST(priority + 1, 3), escalations = escalations + 1
             WHERE id = $1 AND status = 'waiting' AND escalations < $2
             RETURNING client_id, priority, queue",
        )
        .bind(ticket_id)
        .bind(i32::try_from(round).unwrap_or(i32::MAX))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let client_id: String = row.try_get("client_id")?;
        let priority: i32 = row.try_get("priority")?;
        let queue: String = row.try_get("queue")?;
        insert_event(
            &mut tx,
            &client_id,
            &TicketEvent::TicketEscalated {
                ticket_id,
                priority,
                queue: &queue,
                round,
            },
        )
        .await?;
        self.commit_writing(tx).await?;
        Ok(Some(priority))
    }

    /// Records that the first manager response did not come in time (once per ticket).
    pub async fn record_sla_breach(&self, ticket_id: Uuid) -> Result<bool> {
        let mut tx = self.begin_writing(false).await?;
        let row = sqlx::query(
            "UPDATE tickets SET sla_breached_at = now()
             WHERE id = $1 AND sla_breached_at IS NULL AND first_response_at IS NULL AND status <> 'closed'
             RETURNING client_id, manager_id",
        )
        .bind(ticket_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        let client_id: String = row.try_get("client_id")?;
        let manager_id: Option<String> = row.try_get("manager_id")?;
        insert_event(
            &mut tx,
            &client_id,
            &TicketEvent::SlaBreached {
                ticket_id,
                manager_id: manager_id.as_deref(),
            },
        )
        .await?;
        self.commit_writing(tx).await?;
        Ok(true)
    }

    /// Category, priority, queue, fields and spec version of a ticket (for tests and admins).
    pub async fn ticket_lifecycle(&self, ticket_id: Uuid) -> Result<serde_json::Value> {
        let row = sqlx::query(
            "SELECT status, manager_id, category, priority, queue, fields, spec_version, escalations,
                    first_response_at IS NOT NULL AS responded, sla_breached_at IS NOT NULL AS breached,
                    close_reason
             FROM tickets WHERE id = $1",
        )
        .bind(ticket_id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::TicketNotFound)?;
        Ok(json!({
            "status": row.try_get::<String, _>("status")?,
            "manager_id": row.try_get::<Option<String>, _>("manager_id")?,
            "category": row.try_get::<String, _>("category")?,
            "priority": row.try_get::<i32, _>("priority")?,
            "queue": row.try_get::<String, _>("queue")?,
            "fields": row.try_get::<serde_json::Value, _>("fields")?,
            "spec_version": row.try_get::<String, _>("spec_version")?,
            "escalations": row.try_get::<i32, _>("escalations")?,
            "responded": row.try_get::<bool, _>("responded")?,
            "sla_breached": row.try_get::<bool, _>("breached")?,
            "close_reason": row.try_get::<Option<String>, _>("close_reason")?,
        }))
    }
}

/// A client's open ticket, as [`PgStore::open_ticket_of`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTicketState {
    pub ticket_id: Uuid,
    pub status: TicketStatus,
    pub manager_id: Option<String>,
}

/// See [`PgStore::reply_silence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplySilence {
    pub last_reply_ms: Option<i64>,
    pub client_wrote_since: bool,
}

/// Rates `client_id`'s last closed ticket with `rating`, the answer (message `message_id`, still
/// pending) to its satisfaction question: only a ticket whose close asked the question, closed
/// within [`crate::domain::RATING_WINDOW_SECS`] and not rated yet. The answer joins that ticket
/// (checked, passed) and the client and its manager hear of it (`satisfaction_recorded`).
/// Returns false, changing nothing, when there is no such ticket: the message is a message.
pub(crate) async fn record_rating_in(
    tx: &mut Transaction<'_, Postgres>,
    client_id: &str,
    message_id: Uuid,
    rating: i16,
) -> Result<bool> {
    let Some(row) = sqlx::query(
        "SELECT id, manager_id, rating IS NULL AS unrated,
                closed_at > now() - make_interval(secs => $2) AS recent,
                EXISTS (SELECT 1 FROM events e WHERE e.dedup_key = 'satisfaction:' || t.id::text)
                    AS asked
         FROM tickets t WHERE client_id = $1 AND status = 'closed'
         ORDER BY closed_at DESC NULLS LAST, id DESC LIMIT 1 FOR UPDATE",
    )
    .bind(client_id)
    .bind(crate::domain::RATING_WINDOW_SECS as f64)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(false);
    };
    let rateable = row.try_get::<bool, _>("unrated")?
        && row.try_get::<Option<bool>, _>("recent")?.unwrap_or(false)
        && row.try_get::<bool, _>("asked")?;
    if !rateable {
        return Ok(false);
    }
    let ticket_id: Uuid = row.try_get("id")?;
    let manager_id: Option<String> = row.try_get("manager_id")?;
    sqlx::query("UPDATE tickets SET rating = $2, rated_at = now() WHERE id = $1")
        .bind(ticket_id)
        .bind(rating)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE messages SET ticket_id = $2, afc_status = 'passed'
         WHERE id = $1 AND afc_status = 'pending'",
    )
    .bind(message_id)
    .bind(ticket_id)
    .execute(&mut **tx)
    .await?;
    insert_event(
        tx,
        client_id,
        &TicketEvent::SatisfactionRecorded {
            ticket_id,
            manager_id: manager_id.as_deref(),
            rating,
            message_id,
        },
    )
    .await?;
    Ok(true)
}
