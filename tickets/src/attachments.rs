//! Attachments in the store: the references to files in the object store, who uploaded them,
//! the message that carries each, and who may fetch one.
//!
//! The bytes are never here (nor on Kafka): the edges put them in the object store and record a
//! row. A file goes on a message only by its uploader (a client's upload on their own message, a
//! manager's on their reply to the ticket it was uploaded for), once. Fetching follows the
//! message, through [`crate::visibility`]: a manager fetches a client's file only once its message
//! passed the AFC check on a ticket assigned to them. A blocked message's files are blocked with
//! it: never fetched again, their text dropped, their names masked, and their objects listed for
//! deletion ([`PgStore::blocked_attachments_to_purge`]).

use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use crate::domain::AttachmentRef;
use crate::store::{PgStore, Result};
use crate::visibility;

/// An upload that no message took within this long is deleted (object and row); a message may
/// only take uploads younger than this.
pub const ABANDONED_AFTER_SECS: i64 = 24 * 3600;

/// A file just put in the object store, to be recorded.
#[derive(Debug, Clone)]
pub struct NewAttachment<'a> {
    pub id: Uuid,
    pub object_key: &'a str,
    pub name: &'a str,
    pub content_type: &'a str,
    pub size: i64,
    pub sha256: &'a str,
    /// A text file's content: the AFC check reads it with the message that carries the file.
    pub text: Option<&'a str>,
}

/// Who uploaded a file: only they may put it on a message.
#[derive(Debug, Clone, Copy)]
pub enum Uploader<'a> {
    Client(&'a str),
    /// A manager, for their reply on this ticket.
    Manager {
        manager_id: &'a str,
        ticket_id: Uuid,
    },
}

/// Who asks for a file.
#[derive(Debug, Clone, Copy)]
pub enum Reader<'a> {
    Client(&'a str),
    Manager(&'a str),
    /// The supervisor view: any file of a message a manager may read (never a pending or
    /// blocked client message's).
    Supervisor,
}

/// A file the reader may fetch: its reference and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetchable {
    pub attachment: AttachmentRef,
    pub object_key: String,
    pub sha256: String,
}

/// The attachments of a message (alias `m`) as a JSON array of references, in order; a blocked
/// one is not listed. Selected `AS attachments` and read by [`refs_of`].
pub(crate) const ATTACHMENTS_OF_M: &str = "COALESCE((SELECT jsonb_agg(jsonb_build_object(
        'id', a.id, 'name', a.file_name, 'content_type', a.content_type, 'size', a.size_bytes)
        ORDER BY a.position)
    FROM attachments a WHERE a.message_id = m.id AND a.blocked_at IS NULL), '[]'::jsonb)";

/// What the AFC check reads of a message (alias `m`): its text, then each attachment's name and,
/// for a text file, its content. A card number in a file name or a text file blocks the message.
pub(crate) const CHECKED_TEXT_OF_M: &str = "m.body || COALESCE((SELECT string_agg(
        E'\\n' || a.file_name || COALESCE(E'\\n' || a.text_content, ''), '' ORDER BY a.position)
    FROM attachments a WHERE a.message_id = m.id), '')";

/// The files of a message (alias `m`) as the bank's AFC system receives them: name, type, size
/// and SHA-256 each (never the bytes), a JSON array, or NULL without files.
pub(crate) const AFC_FILES_OF_M: &str = "(SELECT jsonb_agg(jsonb_build_object(
        'name', a.file_name, 'content_type', a.content_type, 'size', a.size_bytes,
        'sha256', a.sha256) ORDER BY a.position)
    FROM attachments a WHERE a.message_id = m.id)";

/// The references in a row's `attachments` column ([`ATTACHMENTS_OF_M`]); a query that does not
/// select it (a list of tickets, a count) has none.
pub(crate) fn refs_of(row: &PgRow) -> Result<Vec<AttachmentRef>> {
    let Ok(Some(json)) = row.try_get::<Option<serde_json::Value>, _>("attachments") else {
        return Ok(Vec::new());
    };
    serde_json::from_value(json).map_err(|e| crate::StoreError::Corrupt {
        column: "attachments",
        value: e.to_string(),
    })
}

impl PgStore {
    /// Records an upload of `by` (not on any message yet).
    pub async fn add_attachment(
        &self,
        by: Uploader<'_>,
        a: &NewAttachment<'_>,
    ) -> Result<AttachmentRef> {
        let (client, manager, ticket) = match by {
            Uploader::Client(c) => (Some(c), None, None),
            Uploader::Manager {
                manager_id,
                ticket_id,
            } => (None, Some(manager_id), Some(ticket_id)),
        };
        sqlx::query(
            "INSERT INTO attachments (id, client_id, manager_id, ticket_id, file_name, content_type,
                                      size_bytes, sha256, object_key, text_content)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(a.id)
        .bind(client)
        .bind(manager)
        .bind(ticket)
        .bind(a.name)
        .bind(a.content_type)
        .bind(a.size)
        .bind(a.sha256)
        .bind(a.object_key)
        .bind(a.text)
        .execute(self.pool())
        .await?;
        Ok(AttachmentRef {
            id: a.id,
            name: a.name.to_owned(),
            content_type: a.content_type.to_owned(),
            size: a.size,
        })
    }

    /// Of `ids`, in that order, the uploads of `by` that a message may still take (on no message,
    /// not abandoned). An id missing from the answer is not theirs, already sent, or too old.
    pub async fn unsent_attachments(
        &self,
        by: Uploader<'_>,
        ids: &[Uuid],
    ) -> Result<Vec<AttachmentRef>> {
        let (owner_column, owner, ticket) = match by {
            Uploader::Client(c) => ("client_id", c, None),
            Uploader::Manager {
                manager_id,
                ticket_id,
            } => ("manager_id", manager_id, Some(ticket_id)),
        };
        let sql = format!(
            "SELECT a.id, a.file_name, a.content_type, a.size_bytes
             FROM unnest($1::uuid[]) WITH ORDINALITY AS x(id, ord)
             JOIN attachments a ON a.id = x.id
             WHERE a.{owner_column} = $2 AND a.message_id IS NULL AND a.blocked_at IS NULL
               AND ($3::uuid IS NULL OR a.ticket_id = $3)
               AND a.created_at > now() - make_interval(secs => $4)
             ORDER BY x.ord"
        );
        let rows = sqlx::query(&sql)
            .bind(ids)
            .bind(owner)
            .bind(ticket)
            .bind(ABANDONED_AFTER_SECS as f64)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(ref_of).collect()
    }

    /// The file `id` if `reader` may fetch it now (None: no such file, or not theirs to read:
    /// the two are not told apart).
    pub async fn fetchable_attachment(
        &self,
        reader: Reader<'_>,
        id: Uuid,
    ) -> Result<Option<Fetchable>> {
        let (rule, who) = match reader {
            Reader::Client(c) => (visibility::CLIENT_ATTACHMENTS, c),
            Reader::Manager(m) => (visibility::MANAGER_ATTACHMENTS, m),
            Reader::Supervisor => (visibility::SUPERVISOR_ATTACHMENTS, ""),
        };
        let sql = format!(
            "SELECT a.id, a.file_name, a.content_type, a.size_bytes, a.object_key, a.sha256
             FROM attachments a
             LEFT JOIN messages m ON m.id = a.message_id
             LEFT JOIN tickets t ON t.id = m.ticket_id
             WHERE a.id = $2 AND a.blocked_at IS NULL AND a.purged_at IS NULL AND ({rule})"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(who)
            .bind(id)
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Fetchable {
            attachment: ref_of(&row)?,
            object_key: row.try_get("object_key")?,
            sha256: row.try_get("sha256")?,
        }))
    }

    /// Files of blocked messages whose objects are still in the store (id, object key), oldest
    /// first: delete each object, then [`PgStore::mark_attachments_purged`].
    pub async fn blocked_attachments_to_purge(&self, limit: i64) -> Result<Vec<(Uuid, String)>> {
        Ok(sqlx::query_as(
            "SELECT id, object_key FROM attachments
             WHERE purged_at IS NULL AND blocked_at IS NOT NULL
             ORDER BY created_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn mark_attachments_purged(&self, ids: &[Uuid]) -> Result<()> {
        sqlx::query("UPDATE attachments SET purged_at = now() WHERE id = ANY($1)")
            .bind(ids)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Forgets uploads no message took within [`ABANDONED_AFTER_SECS`] and returns their object
    /// keys to delete. Forgotten first: a message can no longer take one whose object goes.
    pub async fn forget_abandoned_attachments(&self, limit: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "DELETE FROM attachments WHERE id IN (
                 SELECT id FROM attachments
                 WHERE message_id IS NULL AND purged_at IS NULL
                   AND created_at < now() - make_interval(secs => $1)
                 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING object_key",
        )
        .bind(ABANDONED_AFTER_SECS as f64)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }
}

fn ref_of(row: &PgRow) -> Result<AttachmentRef> {
    Ok(AttachmentRef {
        id: row.try_get("id")?,
        name: row.try_get("file_name")?,
        content_type: row.try_get("content_type")?,
        size: row.try_get("size_bytes")?,
    })
}

/// Puts the clients' uploads on the messages just stored: `(message, client, files)` each; a file
/// that is not that client's unsent upload stays off (the message is stored without it).
pub(crate) async fn attach_client_files_in(
    tx: &mut Transaction<'_, Postgres>,
    messages: &[(Uuid, &str, &[AttachmentRef])],
) -> Result<()> {
    let mut files = Vec::new();
    let mut owners = Vec::new();
    let mut clients = Vec::new();
    let mut positions = Vec::new();
    for (message, client, refs) in messages {
        for (i, r) in refs.iter().enumerate() {
            files.push(r.id);
            owners.push(*message);
            clients.push(*client);
            positions.push(i32::try_from(i).unwrap_or(i32::MAX));
        }
    }
    if files.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE attachments a SET message_id = x.message_id, position = x.pos
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int4[]) AS x(id, message_id, client_id, pos)
         WHERE a.id = x.id AND a.client_id = x.client_id AND a.message_id IS NULL
           AND a.blocked_at IS NULL",
    )
    .bind(&files)
    .bind(&owners)
    .bind(&clients)
    .bind(&positions)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Puts a manager's uploads for `ticket_id` on their reply `message_id`, in order; answers the
/// references of those it took (a file not theirs for this ticket, or sent already, is left off).
pub(crate) async fn attach_manager_files_in(
    tx: &mut Transaction<'_, Postgres>,
    manager_id: &str,
    ticket_id: Uuid,
    message_id: Uuid,
    files: &[Uuid],
) -> Result<Vec<AttachmentRef>> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "UPDATE attachments a SET message_id = $1, position = x.ord
         FROM unnest($2::uuid[]) WITH ORDINALITY AS x(id, ord)
         WHERE a.id = x.id AND a.manager_id = $3 AND a.ticket_id = $4 AND a.message_id IS NULL
         RETURNING a.id, a.file_name, a.content_type, a.size_bytes, x.ord",
    )
    .bind(message_id)
    .bind(files)
    .bind(manager_id)
    .bind(ticket_id)
    .fetch_all(&mut **tx)
    .await?;
    let mut taken: Vec<(i64, AttachmentRef)> = rows
        .iter()
        .map(|r| Ok((r.try_get("ord")?, ref_of(r)?)))
        .collect::<Result<_>>()?;
    taken.sort_by_key(|(ord, _)| *ord);
    Ok(taken.into_iter().map(|(_, r)| r).collect())
}

/// Blocks the files of a blocked (or withdrawn) message: never fetched again, a text file's
/// content dropped, the digits of its name masked (a card number as a file name), its object
/// left for the purge.
pub(crate) async fn block_files_in(
    tx: &mut Transaction<'_, Postgres>,
    message_id: Uuid,
) -> Result<()> {
    sqlx::query(
        "UPDATE attachments SET blocked_at = now(), text_content = NULL,
                file_name = regexp_replace(file_name, '[0-9]', '*', 'g')
         WHERE message_id = $1 AND blocked_at IS NULL",
    )
    .bind(message_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
