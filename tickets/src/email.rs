//! Store support for the email channel: the IMAP import position per mailbox (UIDVALIDITY and the
//! last imported UID), the Message-ID registry that threads mail to clients and tickets, and the
//! tickets a subject reference's short prefix may name.

use sqlx::Row;
use uuid::Uuid;

use crate::store::{PgStore, Result};

/// Where the import of one mailbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxPosition {
    pub uid_validity: i64,
    pub last_uid: i64,
}

/// Which way a mail went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailDirection {
    In,
    Out,
}

impl MailDirection {
    fn as_str(self) -> &'static str {
        match self {
            Self::In => "in",
            Self::Out => "out",
        }
    }
}

/// One Message-ID of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailRecord {
    /// Without angle brackets.
    pub message_id: String,
    pub client_id: String,
    pub direction: MailDirection,
    pub external_id: Option<String>,
    pub ticket_id: Option<Uuid>,
    pub event_seq: Option<i64>,
    pub subject: String,
    /// The mail's own References header (inbound), oldest first.
    pub references: Vec<String>,
}

/// The client's latest inbound mail: what the next outbound mail replies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastInbound {
    pub message_id: String,
    pub subject: String,
    pub references: Vec<String>,
}

impl PgStore {
    pub async fn email_mailbox(&self, name: &str) -> Result<Option<MailboxPosition>> {
        let row = sqlx::query("SELECT uid_validity, last_uid FROM email_mailboxes WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| {
            Ok(MailboxPosition {
                uid_validity: r.try_get("uid_validity")?,
                last_uid: r.try_get("last_uid")?,
            })
        })
        .transpose()
    }

    /// Starts (or restarts, after the server changed UIDVALIDITY) the import of a mailbox at UID 0.
    pub async fn reset_email_mailbox(&self, name: &str, uid_validity: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO email_mailboxes (name, uid_validity, last_uid) VALUES ($1, $2, 0)
             ON CONFLICT (name) DO UPDATE SET uid_validity = EXCLUDED.uid_validity, last_uid = 0,
                 updated_at = now()",
        )
        .bind(name)
        .bind(uid_validity)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Moves the mailbox's last imported UID to `uid`, never back, and only while its
    /// UIDVALIDITY is still `uid_validity`.
    pub async fn advance_email_mailbox(
        &self,
        name: &str,
        uid_validity: i64,
        uid: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE email_mailboxes SET last_uid = $3, updated_at = now()
             WHERE name = $1 AND uid_validity = $2 AND last_uid < $3",
        )
        .bind(name)
        .bind(uid_validity)
        .bind(uid)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records a Message-ID (idempotent: the first record of (direction, id, client) stays).
    pub async fn record_email(&self, r: &MailRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO email_messages
                 (message_id, client_id, direction, external_id, ticket_id, event_seq, subject, refs)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT ON CONSTRAINT email_messages_once DO NOTHING",
        )
        .bind(&r.message_id)
        .bind(&r.client_id)
        .bind(r.direction.as_str())
        .bind(&r.external_id)
        .bind(r.ticket_id)
        .bind(r.event_seq)
        .bind(&r.subject)
        .bind(&r.references)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The client of the first of `message_ids` (in the caller's order of preference) that the
    /// registry knows; our own outbound Message-IDs win over inbound ones of the same value.
    pub async fn email_thread_client(&self, message_ids: &[String]) -> Result<Option<String>> {
        if message_ids.is_empty() {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT message_id, client_id FROM email_messages WHERE message_id = ANY($1)
             ORDER BY (direction = 'out') DESC, id",
        )
        .bind(message_ids)
        .fetch_all(self.pool())
        .await?;
        let mut found = Vec::with_capacity(rows.len());
        for r in &rows {
            found.push((
                r.try_get::<String, _>("message_id")?,
                r.try_get::<String, _>("client_id")?,
            ));
        }
        Ok(message_ids
            .iter()
            .find_map(|id| found.iter().find(|(m, _)| m == id).map(|(_, c)| c.clone())))
    }

    pub async fn last_inbound_email(&self, client_id: &str) -> Result<Option<LastInbound>> {
        let row = sqlx::query(
            "SELECT message_id, subject, refs FROM email_messages
             WHERE client_id = $1 AND direction = 'in' ORDER BY id DESC LIMIT 1",
        )
        .bind(client_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(LastInbound {
                message_id: r.try_get("message_id")?,
                subject: r.try_get("subject")?,
                references: r.try_get("refs")?,
            })
        })
        .transpose()
    }

    /// Outbound Message-IDs sent to a client, oldest first (operators, tests).
    pub async fn outbound_emails_of(&self, client_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT message_id FROM email_messages
             WHERE client_id = $1 AND direction = 'out' ORDER BY id",
        )
        .bind(client_id)
        .fetch_all(self.pool())
        .await?)
    }
}

// Threading mail by a subject ticket reference: the candidates a short ticket prefix names, so
// the email channel can check the reference's tag against each full ticket id.
impl PgStore {
    /// Tickets whose id starts with `prefix` (hex, as in a subject reference) and whose client
    /// id starts with `client_prefix`, newest first, as (ticket id, client id). At most `limit`:
    /// 8 hex digits almost never collide, and a longer list only costs tag checks.
    pub async fn tickets_with_prefix(
        &self,
        prefix: &str,
        client_prefix: &str,
        limit: i64,
    ) -> Result<Vec<(uuid::Uuid, String)>> {
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(
            "SELECT id, client_id FROM tickets
             WHERE id::text LIKE $1 AND starts_with(client_id, $2)
             ORDER BY created_at DESC LIMIT $3",
        )
        .bind(format!("{}%", prefix.to_ascii_lowercase()))
        .bind(client_prefix)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }
}
