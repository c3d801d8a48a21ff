//! Store side of the external AFC provider (Kafka): which messages were handed to the AFC system,
//! the verdicts it sent (one per message, ever), and the alerts raised while it is silent.
//!
//! Two paths, as for the builtin check:
//! - the store's (tickets the inbound transaction opens): the inbound transaction holds a message
//!   and queues it in `afc_outbox` ([`hold_for_afc`]); the AFC relay publishes the queue
//!   ([`PgStore::afc_outbox_unsent`], [`PgStore::mark_afc_outbox_sent`]) and raises the timeout
//!   alerts when they fall due ([`PgStore::raise_overdue_afc`]); the verdict consumer records a
//!   verdict and applies it with the ticket's spec in one transaction
//!   ([`PgStore::take_afc_verdict`]). No Temporal call per message.
//! - the workflow's (tickets started before that path, or of another spec version): the ticket
//!   workflow hands messages over and applies recorded verdicts through
//!   [`PgStore::apply_verdicts`] with its own spec.
//!
//! Fail-closed: a message becomes visible only in the transaction that applies the signed verdict
//! the AFC system sent for it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use sqlx::{Postgres, Transaction};

use crate::bots::{NOT_HELD_COMMAND_M, release_held_command_in};
use crate::domain::{Author, TicketStatus, Verdict};
use crate::inbound::{MessageCheck, open_ticket_in};
use crate::managers::match_waiting;
use crate::messages::{apply_verdicts_in, pending_client_messages_in};
use crate::meters::{self, Timings};
use crate::store::{PgStore, Result, StoreError, insert_event, status_of};
use crate::ticket_event::TicketEvent;

mod handover;
mod queue;

/// Event kinds of the AFC provider; neither is shown to a client or a manager (operator alerts).
pub mod afc_event {
    pub use crate::event_kind::{AFC_REPLY_FLAGGED, AFC_TIMEOUT};
}

/// The AFC system's answer about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfcStatus {
    Ok,
    Suspicious,
}

impl AfcStatus {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(Self::Ok),
            "suspicious" => Some(Self::Suspicious),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Suspicious => "suspicious",
        }
    }

    /// The verdict applied to the message: `suspicious` blocks it under the rule name `afc`.
    pub fn verdict(self) -> Verdict {
        match self {
            Self::Ok => Verdict::Passed,
            Self::Suspicious => Verdict::Blocked { rule: "afc".into() },
        }
    }
}

/// A spec whose messages the bank's AFC system checks (see [`MessageCheck::external`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalCheck {
    /// How long the AFC system has for a verdict before the operators are alerted.
    pub timeout_ms: u64,
    /// The ticket's manager replies go to the AFC system too (after they were delivered).
    pub replies: bool,
}

/// Queues held client messages of `ticket_id` (None: commands, of no ticket) for the AFC system,
/// inside the transaction that holds them; a message already queued stays as it is. Returns how
/// many were queued now.
pub(crate) async fn hold_for_afc(
    tx: &mut Transaction<'_, Postgres>,
    ticket_id: Option<Uuid>,
    message_ids: &[Uuid],
    timeout_ms: u64,
) -> Result<usize> {
    let queued = sqlx::query(
        "INSERT INTO afc_outbox (message_id, ticket_id, timeout_ms)
         SELECT id, $2, $3 FROM unnest($1::uuid[]) WITH ORDINALITY AS m(id, ord) ORDER BY ord
         ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(message_ids)
    .bind(ticket_id)
    .bind(i64::try_from(timeout_ms).unwrap_or(i64::MAX))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(usize::try_from(queued).unwrap_or(usize::MAX))
}

/// Queues a manager reply of `ticket_id` for the AFC system (no timeout: it was delivered).
pub(crate) async fn queue_reply_for_afc(
    tx: &mut Transaction<'_, Postgres>,
    ticket_id: Uuid,
    message_id: Uuid,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO afc_outbox (message_id, ticket_id) VALUES ($1, $2)
         ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(message_id)
    .bind(ticket_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A row of the AFC outbox to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfcQueued {
    /// Its place in the outbox (what [`PgStore::mark_afc_outbox_sent`] takes).
    pub row: i64,
    pub message: AfcOutgoing,
}

/// A client message whose verdict is overdue: one `afc_timeout` alert was raised for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfcOverdue {
    pub message_id: Uuid,
    /// None for a command (of no ticket).
    pub ticket_id: Option<Uuid>,
    pub client_id: String,
    pub timeout_ms: u64,
}

/// What taking a verdict did ([`PgStore::take_afc_verdict`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfcTaken {
    /// Recorded and applied here (`duplicate`: recorded before; anything it left is applied now).
    Applied {
        duplicate: bool,
        passed: usize,
        blocked: usize,
        queued: bool,
    },
    /// Recorded; the client's open ticket is its workflow's to apply it to (signal it).
    Workflow { duplicate: bool },
    /// Recorded on a held bot command and applied: passed, it is queued for the bot.
    Command { duplicate: bool },
    /// Another verdict was recorded before: this one is refused and nothing changed.
    Contradicts { earlier: AfcStatus },
}

/// A message to hand to the AFC system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfcOutgoing {
    pub id: Uuid,
    pub client_id: String,
    pub body: String,
    pub from_client: bool,
    /// The files the message carries, by name, type, size and hash (the AFC system checks
    /// them against its lists; the bytes stay in the object store).
    pub files: Vec<AfcFile>,
}

/// A file of a message handed to the AFC system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfcFile {
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
}

/// A client message handed to AFC and still waiting for its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldMessage {
    pub id: Uuid,
    pub sent_at_ms: i64,
}

/// What recording a verdict did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerdictRecord {
    New,
    /// The same verdict was recorded before: nothing changes.
    Duplicate,
    /// Another verdict was recorded before: this one is refused.
    Contradicts {
        earlier: AfcStatus,
    },
}

/// The message a verdict names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictSubject {
    pub client_id: String,
    pub author: Author,
    pub ticket_id: Option<Uuid>,
}

/// A message row (`id`, `client_id`, `body`, `author`) as the AFC system receives it.
fn outgoing_of(r: &sqlx::postgres::PgRow) -> Result<AfcOutgoing> {
    let author: String = r.try_get("author")?;
    Ok(AfcOutgoing {
        id: r.try_get("id")?,
        client_id: r.try_get("client_id")?,
        body: r.try_get("body")?,
        from_client: author == "client",
        files: match r.try_get::<Option<serde_json::Value>, _>("files")? {
            Some(v) => serde_json::from_value(v).map_err(|e| crate::StoreError::Corrupt {
                column: "attachments",
                value: e.to_string(),
            })?,
            None => Vec::new(),
        },
    })
}

/// Records a verdict inside `tx` (the first is final) and takes the message's outbox row out.
async fn insert_verdict(
    tx: &mut Transaction<'_, Postgres>,
    message_id: Uuid,
    client_id: &str,
    status: AfcStatus,
    token: &str,
) -> Result<VerdictRecord> {
    let inserted = sqlx::query(
        "INSERT INTO afc_verdicts (message_id, client_id, status, token) VALUES ($1, $2, $3, $4)
         ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(message_id)
    .bind(client_id)
    .bind(status.as_str())
    .bind(token)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let recorded = if inserted == 1 {
        VerdictRecord::New
    } else {
        let earlier: String =
            sqlx::query_scalar("SELECT status FROM afc_verdicts WHERE message_id = $1")
                .bind(message_id)
                .fetch_one(&mut **tx)
                .await?;
        let earlier = AfcStatus::parse(&earlier).ok_or(StoreError::Corrupt {
            column: "afc_verdicts.status",
            value: earlier,
        })?;
        if earlier == status {
            VerdictRecord::Duplicate
        } else {
            return Ok(VerdictRecord::Contradicts { earlier });
        }
    };
    sqlx::query("DELETE FROM afc_outbox WHERE message_id = $1")
        .bind(message_id)
        .execute(&mut **tx)
        .await?;
    Ok(recorded)
}

/// The client's pending messages that have a recorded verdict, with their bodies, oldest first.
async fn decided_pending<'e>(
    db: impl sqlx::PgExecutor<'e>,
    client_id: &str,
) -> Result<Vec<(Uuid, String, AfcStatus)>> {
    let rows = sqlx::query(&format!(
        "SELECT m.id, m.body, v.status FROM messages m JOIN afc_verdicts v ON v.message_id = m.id
         WHERE m.client_id = $1 AND m.author = 'client' AND m.afc_status = 'pending'
           AND {NOT_HELD_COMMAND_M}
         ORDER BY m.created_at, m.id LIMIT 500"
    ))
    .bind(client_id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            let s: String = r.try_get("status")?;
            let status = AfcStatus::parse(&s).ok_or(StoreError::Corrupt {
                column: "afc_verdicts.status",
                value: s,
            })?;
            Ok((r.try_get("id")?, r.try_get("body")?, status))
        })
        .collect()
}
