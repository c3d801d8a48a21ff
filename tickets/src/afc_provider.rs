//! Store side of the external AFC provider (Kafka): which messages were handed to the AFC system,
//! the verdicts it sent (one per message, ever), and the alerts raised while it is silent.
//!
//! Fail-closed: nothing here makes a message visible. Verdicts are only recorded; the ticket
//! workflow applies them through [`PgStore::apply_verdicts`] with its own spec.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{Author, Verdict};
use crate::store::{PgStore, Result, StoreError, insert_event};
use crate::ticket_event::TicketEvent;

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

/// A message to hand to the AFC system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfcOutgoing {
    pub id: Uuid,
    pub client_id: String,
    pub body: String,
    pub from_client: bool,
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

impl PgStore {
    /// Messages not yet handed to AFC: the client's pending messages, plus the manager replies of
    /// `replies_of` when the spec checks replies too. Oldest first.
    pub async fn afc_unsent(
        &self,
        client_id: &str,
        replies_of: Option<Uuid>,
    ) -> Result<Vec<AfcOutgoing>> {
        let rows = sqlx::query(
            "SELECT id, client_id, body, author FROM messages
             WHERE afc_sent_at IS NULL AND (
                   (client_id = $1 AND author = 'client' AND afc_status = 'pending')
                OR (ticket_id = $2 AND author = 'manager'))
             ORDER BY created_at, id LIMIT 500",
        )
        .bind(client_id)
        .bind(replies_of)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let author: String = r.try_get("author")?;
                Ok(AfcOutgoing {
                    id: r.try_get("id")?,
                    client_id: r.try_get("client_id")?,
                    body: r.try_get("body")?,
                    from_client: author == "client",
                })
            })
            .collect()
    }

    /// Marks messages as handed to AFC (the first time only).
    pub async fn mark_afc_sent(&self, ids: &[Uuid]) -> Result<()> {
        sqlx::query(
            "UPDATE messages SET afc_sent_at = now() WHERE id = ANY($1) AND afc_sent_at IS NULL",
        )
        .bind(ids)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The client's messages handed to AFC and still held (no verdict applied), oldest first.
    pub async fn afc_held(&self, client_id: &str) -> Result<Vec<HeldMessage>> {
        let rows = sqlx::query(
            "SELECT id, afc_sent_at FROM messages
             WHERE client_id = $1 AND author = 'client' AND afc_status = 'pending'
               AND afc_sent_at IS NOT NULL
             ORDER BY afc_sent_at, id LIMIT 500",
        )
        .bind(client_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let at: DateTime<Utc> = r.try_get("afc_sent_at")?;
                Ok(HeldMessage {
                    id: r.try_get("id")?,
                    sent_at_ms: at.timestamp_millis(),
                })
            })
            .collect()
    }

    /// The message a verdict is about, if it exists.
    pub async fn afc_verdict_subject(&self, message_id: Uuid) -> Result<Option<VerdictSubject>> {
        let row = sqlx::query("SELECT client_id, author, ticket_id FROM messages WHERE id = $1")
            .bind(message_id)
            .fetch_optional(self.pool())
            .await?;
        let Some(r) = row else { return Ok(None) };
        let author: String = r.try_get("author")?;
        Ok(Some(VerdictSubject {
            client_id: r.try_get("client_id")?,
            author: Author::parse(&author).ok_or(StoreError::Corrupt {
                column: "messages.author",
                value: author,
            })?,
            ticket_id: r.try_get("ticket_id")?,
        }))
    }

    /// Records the AFC verdict on a message; the first verdict is final.
    pub async fn record_afc_verdict(
        &self,
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
        .execute(self.pool())
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(VerdictRecord::New);
        }
        let earlier: String =
            sqlx::query_scalar("SELECT status FROM afc_verdicts WHERE message_id = $1")
                .bind(message_id)
                .fetch_one(self.pool())
                .await?;
        let earlier = AfcStatus::parse(&earlier).ok_or(StoreError::Corrupt {
            column: "afc_verdicts.status",
            value: earlier,
        })?;
        Ok(if earlier == status {
            VerdictRecord::Duplicate
        } else {
            VerdictRecord::Contradicts { earlier }
        })
    }

    /// The recorded AFC verdict of a message, if any.
    pub async fn afc_verdict_of(&self, message_id: Uuid) -> Result<Option<AfcStatus>> {
        let s: Option<String> =
            sqlx::query_scalar("SELECT status FROM afc_verdicts WHERE message_id = $1")
                .bind(message_id)
                .fetch_optional(self.pool())
                .await?;
        Ok(s.as_deref().and_then(AfcStatus::parse))
    }

    /// The client's pending messages that have a recorded verdict, with their bodies, oldest first.
    pub async fn afc_decided_pending(
        &self,
        client_id: &str,
    ) -> Result<Vec<(Uuid, String, AfcStatus)>> {
        let rows = sqlx::query(
            "SELECT m.id, m.body, v.status FROM messages m JOIN afc_verdicts v ON v.message_id = m.id
             WHERE m.client_id = $1 AND m.author = 'client' AND m.afc_status = 'pending'
             ORDER BY m.created_at, m.id LIMIT 500",
        )
        .bind(client_id)
        .fetch_all(self.pool())
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

    /// Raises an `afc_timeout` alert for each of `ids` still held (once per message). Returns the
    /// ids that are still held.
    pub async fn record_afc_timeout(
        &self,
        ticket_id: Uuid,
        client_id: &str,
        ids: &[Uuid],
        timeout_ms: u64,
    ) -> Result<Vec<Uuid>> {
        let mut tx = self.begin_writing(false).await?;
        let held: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM messages WHERE id = ANY($1) AND afc_status = 'pending' ORDER BY id",
        )
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?;
        for id in &held {
            insert_event(
                &mut tx,
                client_id,
                &TicketEvent::AfcTimeout {
                    message_id: *id,
                    ticket_id,
                    timeout_ms,
                },
            )
            .await?;
        }
        self.commit_writing(tx).await?;
        Ok(held)
    }

    /// Raises an `afc_reply_flagged` alert for a manager reply AFC found suspicious (once).
    pub async fn record_flagged_reply(&self, message_id: Uuid) -> Result<()> {
        let mut tx = self.begin_writing(false).await?;
        let row = sqlx::query(
            "SELECT client_id, ticket_id, manager_id FROM messages WHERE id = $1 AND author = 'manager'",
        )
        .bind(message_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(r) = row {
            let client_id: String = r.try_get("client_id")?;
            let ticket_id: Option<Uuid> = r.try_get("ticket_id")?;
            let manager_id: Option<String> = r.try_get("manager_id")?;
            insert_event(
                &mut tx,
                &client_id,
                &TicketEvent::AfcReplyFlagged {
                    message_id,
                    ticket_id,
                    manager_id: manager_id.as_deref(),
                },
            )
            .await?;
        }
        self.commit_writing(tx).await?;
        Ok(())
    }
}
