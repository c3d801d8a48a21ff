//! The workflow's path (see the module doc): the messages a ticket workflow hands to the AFC
//! system, the verdicts it records, the timeout alerts and flagged replies it raises.

use super::*;
use crate::attachments::AFC_FILES_OF_M;

/// The workflow's path.
impl PgStore {
    /// Messages not yet handed to AFC: the client's pending messages, plus the manager replies of
    /// `replies_of` when the spec checks replies too. Oldest first.
    pub async fn afc_unsent(
        &self,
        client_id: &str,
        replies_of: Option<Uuid>,
    ) -> Result<Vec<AfcOutgoing>> {
        let sql = format!(
            "SELECT m.id, m.client_id, m.body, m.author, {AFC_FILES_OF_M} AS files FROM messages m
             WHERE m.afc_sent_at IS NULL AND {NOT_HELD_COMMAND_M} AND (
                   (m.client_id = $1 AND m.author = 'client' AND m.afc_status = 'pending')
                OR (m.ticket_id = $2 AND m.author = 'manager'))
             ORDER BY m.created_at, m.id LIMIT 500"
        );
        let rows = sqlx::query(&sql)
            .bind(client_id)
            .bind(replies_of)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(outgoing_of).collect()
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

    /// Records the AFC verdict on a message; the first verdict is final. Its outbox row (if any)
    /// leaves: the AFC system answered.
    pub async fn record_afc_verdict(
        &self,
        message_id: Uuid,
        client_id: &str,
        status: AfcStatus,
        token: &str,
    ) -> Result<VerdictRecord> {
        let mut tx = self.pool().begin().await?;
        let recorded = insert_verdict(&mut tx, message_id, client_id, status, token).await?;
        if !matches!(recorded, VerdictRecord::Contradicts { .. }) {
            tx.commit().await?;
        }
        Ok(recorded)
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
        decided_pending(self.pool(), client_id).await
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
                    ticket_id: Some(ticket_id),
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
