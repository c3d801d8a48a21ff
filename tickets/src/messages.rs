//! Client messages in the store: stored as `pending`, their AFC verdicts applied (a passed
//! message becomes visible to the ticket's manager in the transaction that records its verdict, a
//! blocked one never does and leaves the client a warning), system messages in the chat.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use crate::attachments::{ATTACHMENTS_OF_M, CHECKED_TEXT_OF_M, block_files_in, refs_of};
use crate::bots::NOT_HELD_COMMAND_M;
use crate::domain::{
    Assignment, AttachmentRef, NewClientMessage, TicketClassification, TicketStatus, Verdict,
    message_id_for,
};
use crate::managers::match_waiting;
use crate::meters::{self, Timings};
use crate::screening::{self, AuditSeal, ScreeningPort, redact_blocked};
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
            self.audit_seal(),
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

/// The body of [`PgStore::apply_verdicts`] inside a writing transaction, for a ticket locked with
/// its `status` and `manager_id`: the rule of [`crate::screening`] applied over
/// [`PgScreening`]. Matching is the caller's (once per transaction); `assigned` is left None.
/// Each message made visible adds its age to `timings`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn apply_verdicts_in(
    tx: &mut Transaction<'_, Postgres>,
    ticket_id: Uuid,
    status: TicketStatus,
    manager_id: Option<&str>,
    verdicts: &[(Uuid, Verdict)],
    warning: &str,
    classification: Option<&TicketClassification>,
    audit: Option<&dyn AuditSeal>,
    timings: &mut Timings,
) -> Result<VerdictsApplied> {
    let mut port = PgScreening {
        tx,
        ticket_id,
        warning,
        classification,
        audit,
        timings,
    };
    let s = screening::apply(&mut port, status, manager_id, verdicts).await?;
    Ok(VerdictsApplied {
        passed: s.passed,
        blocked: s.blocked,
        queued: s.queued,
        assigned: None,
    })
}

/// The screening port over one PostgreSQL transaction, for one ticket.
struct PgScreening<'a, 't> {
    tx: &'a mut Transaction<'t, Postgres>,
    ticket_id: Uuid,
    warning: &'a str,
    classification: Option<&'a TicketClassification>,
    audit: Option<&'a dyn AuditSeal>,
    timings: &'a mut Timings,
}

/// A client message whose verdict [`PgScreening`] recorded.
struct Recorded {
    client_id: String,
    body: String,
    created_at: DateTime<Utc>,
    attachments: Vec<AttachmentRef>,
    /// Seconds since it arrived (the visibility latency, when it is shown now).
    age: f64,
}

/// A blocked message's text is kept only redacted (no card number or other digit in clear),
/// the original sealed for audit if the store has a seal, and the client's echo of it
/// (`message_accepted`) redacted alike: what a database dump shows holds no card data.
async fn redact_in(
    tx: &mut Transaction<'_, Postgres>,
    audit: Option<&dyn AuditSeal>,
    message_id: Uuid,
    original: &str,
) -> Result<()> {
    block_files_in(tx, message_id).await?;
    let redacted = redact_blocked(original);
    let sealed = audit.and_then(|a| a.seal(original.as_bytes()));
    sqlx::query("UPDATE messages SET body = $2, sealed_body = $3 WHERE id = $1")
        .bind(message_id)
        .bind(&redacted)
        .bind(sealed)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE events SET payload = jsonb_set(payload, '{body}', to_jsonb($2::text)) - 'attachments'
         WHERE dedup_key = $1",
    )
    .bind(format!("accepted:{message_id}"))
    .bind(&redacted)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Takes back a client message that passed (its verdict is now `rule`'s block): the first half
/// of a number the client's next message completed. Its text is redacted as a blocked one's, and
/// the client and the ticket's manager are told (`message_withdrawn`), so no view keeps it. A
/// message not (or no longer) passed is left as it is.
pub(crate) async fn withdraw_in(
    tx: &mut Transaction<'_, Postgres>,
    audit: Option<&dyn AuditSeal>,
    message_id: Uuid,
    rule: &str,
) -> Result<bool> {
    let Some(row) = sqlx::query(
        "UPDATE messages m SET afc_status = 'blocked', afc_rule = $2
         FROM tickets t
         WHERE m.id = $1 AND m.afc_status = 'passed' AND t.id = m.ticket_id
         RETURNING m.client_id, m.ticket_id, m.body, t.manager_id",
    )
    .bind(message_id)
    .bind(rule)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(false);
    };
    let client_id: String = row.try_get("client_id")?;
    let manager_id: Option<String> = row.try_get("manager_id")?;
    redact_in(tx, audit, message_id, &row.try_get::<String, _>("body")?).await?;
    // A manager's feed read again (a resumed stream) shows nothing of it, not even masked.
    sqlx::query(
        "UPDATE events SET payload = payload || jsonb_build_object('body', '', 'withdrawn', true)
         WHERE dedup_key = $1",
    )
    .bind(format!("visible:{message_id}"))
    .execute(&mut **tx)
    .await?;
    insert_event(
        tx,
        &client_id,
        &TicketEvent::MessageWithdrawn {
            message_id,
            ticket_id: row.try_get("ticket_id")?,
            manager_id: manager_id.as_deref(),
        },
    )
    .await?;
    Ok(true)
}

impl ScreeningPort for PgScreening<'_, '_> {
    type Error = StoreError;
    type Message = Recorded;

    async fn record(&mut self, message_id: Uuid, verdict: &Verdict) -> Result<Option<Recorded>> {
        let (afc_status, rule) = match verdict {
            Verdict::Passed => ("passed", None),
            Verdict::Blocked { rule } => ("blocked", Some(rule.as_str())),
        };
        let sql = format!(
            "UPDATE messages m SET ticket_id = $2, afc_status = $3, afc_rule = $4
                 WHERE m.id = $1 AND m.afc_status = 'pending'
                 RETURNING m.client_id, m.body, m.created_at, {ATTACHMENTS_OF_M} AS attachments,
                           extract(epoch FROM clock_timestamp() - m.created_at)::float8 AS age"
        );
        let updated = sqlx::query(&sql)
            .bind(message_id)
            .bind(self.ticket_id)
            .bind(afc_status)
            .bind(rule)
            .fetch_optional(&mut **self.tx)
            .await?;
        if let (Some(m), Verdict::Blocked { .. }) = (&updated, verdict) {
            redact_in(
                self.tx,
                self.audit,
                message_id,
                &m.try_get::<String, _>("body")?,
            )
            .await?;
        }
        updated
            .map(|m| {
                Ok(Recorded {
                    client_id: m.try_get("client_id")?,
                    body: m.try_get("body")?,
                    created_at: m.try_get("created_at")?,
                    attachments: refs_of(&m)?,
                    age: m.try_get("age")?,
                })
            })
            .transpose()
    }

    async fn show_to(&mut self, manager: &str, message_id: Uuid, m: Recorded) -> Result<()> {
        self.timings.visible.push(m.age);
        insert_event(
            self.tx,
            &m.client_id,
            &TicketEvent::MessageVisible {
                manager_id: manager,
                message_id,
                ticket_id: self.ticket_id,
                body: &m.body,
                created_at: m.created_at,
                attachments: &m.attachments,
            },
        )
        .await
    }

    async fn warn_client(&mut self, message_id: Uuid, m: Recorded) -> Result<()> {
        let warning_id = insert_system_message(
            self.tx,
            &format!("blocked:{message_id}"),
            self.ticket_id,
            &m.client_id,
            self.warning,
        )
        .await?;
        insert_event(
            self.tx,
            &m.client_id,
            &TicketEvent::MessageBlocked {
                message_id,
                ticket_id: self.ticket_id,
                warning: self.warning,
                warning_message_id: warning_id,
            },
        )
        .await
    }

    async fn queue_ticket(&mut self) -> Result<()> {
        sqlx::query("UPDATE tickets SET status = 'waiting', waiting_since = now() WHERE id = $1")
            .bind(self.ticket_id)
            .execute(&mut **self.tx)
            .await?;
        if let Some(c) = self.classification {
            sqlx::query(
                "UPDATE tickets SET category = $2, priority = $3, queue = $4, fields = $5 WHERE id = $1",
            )
            .bind(self.ticket_id)
            .bind(&c.category)
            .bind(c.priority.clamp(0, 3))
            .bind(&c.queue)
            .bind(&c.fields)
            .execute(&mut **self.tx)
            .await?;
        }
        Ok(())
    }
}

/// Pending messages read at a time: a caller that gets a full page reads again after applying it.
pub const PENDING_PAGE: i64 = 500;

/// The client's messages still waiting for their AFC verdict, oldest first (at most
/// [`PENDING_PAGE`]), on `db` (the pool, or a transaction).
pub(crate) async fn pending_client_messages_in<'e>(
    db: impl sqlx::PgExecutor<'e>,
    client_id: &str,
) -> Result<Vec<(Uuid, String)>> {
    let sql = format!(
        "SELECT m.id, {CHECKED_TEXT_OF_M} AS body FROM messages m
         WHERE m.client_id = $1 AND m.author = 'client' AND m.afc_status = 'pending'
           AND {NOT_HELD_COMMAND_M}
         ORDER BY m.created_at, m.id LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(client_id)
        .bind(PENDING_PAGE)
        .fetch_all(db)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("body")?)))
        .collect()
}
