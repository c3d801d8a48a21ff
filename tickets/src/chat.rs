//! A client's chat as the client sees it: one continuous history across all of their tickets,
//! paged by an opaque cursor, and the read cursor with the unread count. Every read filters with
//! `visibility::CLIENT_MESSAGES`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::attachments::{ATTACHMENTS_OF_M, refs_of};
use crate::domain::{AttachmentRef, Author};
use crate::store::{PgStore, Result, StoreError};
use crate::visibility;

/// A position in a client's chat: the chat is ordered by (created_at, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatCursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a chat cursor: {0:?}")]
pub struct BadCursor(pub String);

impl ChatCursor {
    /// The opaque text form handed to clients (`<unix micros>.<message id>`).
    pub fn encode(&self) -> String {
        format!(
            "{}.{}",
            self.created_at.timestamp_micros(),
            self.id.simple()
        )
    }

    pub fn decode(s: &str) -> Result<Self, BadCursor> {
        let bad = || BadCursor(s.to_owned());
        let (micros, id) = s.split_once('.').ok_or_else(bad)?;
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        Ok(Self {
            created_at: DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
            id: Uuid::parse_str(id).map_err(|_| bad())?,
        })
    }
}

/// One entry of a client's chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub id: Uuid,
    pub ticket_id: Option<Uuid>,
    pub author: Author,
    pub body: String,
    /// The files it carries (a blocked message carries none: only its warning is shown).
    pub attachments: Vec<AttachmentRef>,
    /// For the client's own messages: `pending` until checked, then `delivered`. Empty otherwise.
    pub status: &'static str,
    pub channel: String,
    pub created_at: DateTime<Utc>,
}

impl ChatMessage {
    pub fn cursor(&self) -> ChatCursor {
        ChatCursor {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

/// One page of history, oldest first, and whether older messages exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatPage {
    pub messages: Vec<ChatMessage>,
    pub has_more: bool,
}

/// Where a client's reading stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadState {
    pub read_up_to: Option<Uuid>,
    /// Messages to the client (manager replies, service messages) after the read cursor.
    pub unread: i64,
}

impl PgStore {
    /// The newest `limit` messages of the client's chat before `before` (or the newest of all),
    /// returned oldest first.
    pub async fn client_history(
        &self,
        client_id: &str,
        before: Option<ChatCursor>,
        limit: i64,
    ) -> Result<ChatPage> {
        let sql = format!(
            "SELECT m.id, m.ticket_id, m.author, m.body, m.afc_status, m.channel, m.created_at,
                    {ATTACHMENTS_OF_M} AS attachments
             FROM messages m
             WHERE {} AND ($2::timestamptz IS NULL OR (m.created_at, m.id) < ($2, $3))
             ORDER BY m.created_at DESC, m.id DESC LIMIT $4",
            visibility::CLIENT_MESSAGES
        );
        let rows = sqlx::query(&sql)
            .bind(client_id)
            .bind(before.map(|c| c.created_at))
            .bind(before.map(|c| c.id))
            .bind(limit + 1)
            .fetch_all(self.pool())
            .await?;
        let has_more = rows.len() as i64 > limit;
        let mut messages = rows
            .iter()
            .take(limit.max(0) as usize)
            .map(chat_message_of)
            .collect::<Result<Vec<_>>>()?;
        messages.reverse();
        Ok(ChatPage { messages, has_more })
    }

    /// Moves the client's read cursor forward to `message_id` (never back). `None` when the message
    /// is not part of the client's chat.
    pub async fn mark_read(&self, client_id: &str, message_id: Uuid) -> Result<Option<ReadState>> {
        let sql = format!(
            "SELECT m.created_at FROM messages m WHERE {} AND m.id = $2",
            visibility::CLIENT_MESSAGES
        );
        let created_at: Option<DateTime<Utc>> = sqlx::query_scalar(&sql)
            .bind(client_id)
            .bind(message_id)
            .fetch_optional(self.pool())
            .await?;
        let Some(created_at) = created_at else {
            return Ok(None);
        };
        sqlx::query(
            "INSERT INTO client_read_cursors (client_id, message_created_at, message_id)
             VALUES ($1, $2, $3)
             ON CONFLICT (client_id) DO UPDATE
                SET message_created_at = EXCLUDED.message_created_at,
                    message_id = EXCLUDED.message_id, updated_at = now()
             WHERE (client_read_cursors.message_created_at, client_read_cursors.message_id)
                 < (EXCLUDED.message_created_at, EXCLUDED.message_id)",
        )
        .bind(client_id)
        .bind(created_at)
        .bind(message_id)
        .execute(self.pool())
        .await?;
        self.read_state(client_id).await.map(Some)
    }

    /// The client's read cursor and how many messages to them came after it.
    pub async fn read_state(&self, client_id: &str) -> Result<ReadState> {
        let sql = format!(
            "SELECT r.message_id AS read_up_to,
                    (SELECT count(*) FROM messages m
                     WHERE {} AND m.author <> 'client'
                       AND (r.client_id IS NULL
                            OR (m.created_at, m.id) > (r.message_created_at, r.message_id)))
                        AS unread
             FROM (SELECT 1) one
             LEFT JOIN client_read_cursors r ON r.client_id = $1",
            visibility::CLIENT_MESSAGES
        );
        let row = sqlx::query(&sql)
            .bind(client_id)
            .fetch_one(self.pool())
            .await?;
        Ok(ReadState {
            read_up_to: row.try_get("read_up_to")?,
            unread: row.try_get("unread")?,
        })
    }
}

fn chat_message_of(row: &PgRow) -> Result<ChatMessage> {
    let author: String = row.try_get("author")?;
    let author = Author::parse(&author).ok_or(StoreError::Corrupt {
        column: "messages.author",
        value: author,
    })?;
    let afc_status: String = row.try_get("afc_status")?;
    let status = match (author, afc_status.as_str()) {
        (Author::Client, "pending") => "pending",
        (Author::Client, _) => "delivered",
        _ => "",
    };
    Ok(ChatMessage {
        id: row.try_get("id")?,
        ticket_id: row.try_get("ticket_id")?,
        author,
        body: row.try_get("body")?,
        attachments: refs_of(row)?,
        status,
        channel: row.try_get("channel")?,
        created_at: row.try_get("created_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_its_text_form_and_garbage_is_refused() {
        let c = ChatCursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("valid"),
            id: Uuid::new_v4(),
        };
        assert_eq!(ChatCursor::decode(&c.encode()), Ok(c));
        for bad in ["", "12", "x.y", "12.not-a-uuid", "99999999999999999999.00"] {
            assert!(ChatCursor::decode(bad).is_err(), "{bad}");
        }
    }
}
