//! The manager's desk beyond the spine: paged ticket and message lists, internal notes, transfers
//! between managers and the manager's event feed. Every read filters with the `visibility` rules.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::chat::ChatCursor;
use crate::domain::{
    Assignment, Author, Caller, Event, Message, Ticket, TicketStatus, message_id_for,
};
use crate::managers::{manager_load, managers_ticket_shared};
use crate::messages::insert_system_message;
use crate::store::{
    PgStore, Result, StoreError, TICKET_COLUMNS, event_of, insert_event, status_filter, status_of,
    ticket_of,
};
use crate::ticket_event::TicketEvent;
use crate::visibility;

/// Event kinds written by this module.
pub mod kind {
    pub use crate::event_kind::{NOTE_ADDED, TICKET_TRANSFERRED_AWAY};
}

/// One page of a listing and whether more follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

/// An entry of a ticket as its manager reads it: a message or an internal note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskMessage {
    pub message: Message,
    /// An internal note (author is the manager who wrote it): never shown to the client.
    pub is_note: bool,
    pub manager_id: Option<String>,
}

impl DeskMessage {
    pub fn cursor(&self) -> ChatCursor {
        ChatCursor {
            created_at: self.message.created_at,
            id: self.message.id,
        }
    }
}

pub fn ticket_cursor(t: &Ticket) -> ChatCursor {
    ChatCursor {
        created_at: t.created_at,
        id: t.id,
    }
}

/// Which way a page of a ticket's messages goes from its cursor.
#[derive(Clone, Copy)]
enum Direction {
    After(Option<ChatCursor>),
    Before(Option<ChatCursor>),
}

fn page<T>(rows: &[PgRow], limit: i64, f: impl Fn(&PgRow) -> Result<T>) -> Result<Page<T>> {
    let limit = usize::try_from(limit.max(0)).unwrap_or(0);
    Ok(Page {
        has_more: rows.len() > limit,
        items: rows.iter().take(limit).map(f).collect::<Result<Vec<_>>>()?,
    })
}

fn desk_message_of(row: &PgRow) -> Result<DeskMessage> {
    let author: String = row.try_get("author")?;
    Ok(DeskMessage {
        message: Message {
            id: row.try_get("id")?,
            ticket_id: row.try_get("ticket_id")?,
            author: Author::parse(&author).ok_or(StoreError::Corrupt {
                column: "messages.author",
                value: author,
            })?,
            body: row.try_get("body")?,
            attachments: crate::attachments::refs_of(row)?,
            created_at: row.try_get("created_at")?,
        },
        is_note: row.try_get("is_note")?,
        manager_id: row.try_get("manager_id")?,
    })
}

impl PgStore {
    /// The manager's tickets, newest first, after `after` (exclusive); `statuses` empty means every
    /// status but closed.
    pub async fn manager_tickets_page(
        &self,
        manager_id: &str,
        statuses: &[TicketStatus],
        after: Option<ChatCursor>,
        limit: i64,
    ) -> Result<Page<Ticket>> {
        let statuses = status_filter(statuses);
        let sql = format!(
            "SELECT {TICKET_COLUMNS}
             FROM tickets t JOIN clients c ON c.id = t.client_id
             WHERE {} AND t.status = ANY($2)
               AND ($3::timestamptz IS NULL OR (t.created_at, t.id) < ($3, $4))
             ORDER BY t.created_at DESC, t.id DESC LIMIT $5",
            visibility::MANAGER_TICKETS
        );
        let rows = sqlx::query(&sql)
            .bind(manager_id)
            .bind(&statuses)
            .bind(after.map(|c| c.created_at))
            .bind(after.map(|c| c.id))
            .bind(limit + 1)
            .fetch_all(self.pool())
            .await?;
        page(&rows, limit, ticket_of)
    }

    /// What the manager may read of one of their tickets (messages that passed the AFC check,
    /// replies and internal notes), oldest first, after `after` (exclusive). `TicketNotFound` when
    /// the ticket is not theirs.
    pub async fn manager_messages_page(
        &self,
        manager_id: &str,
        ticket_id: Uuid,
        after: Option<ChatCursor>,
        limit: i64,
    ) -> Result<Page<DeskMessage>> {
        self.manager_messages_dir(manager_id, ticket_id, Direction::After(after), limit)
            .await
    }

    /// [`PgStore::manager_messages_page`] backwards: the `limit` messages just before `before`
    /// (None: the newest), oldest first; `has_more` says older ones exist (a console shows the
    /// newest page first and reads older pages as the manager scrolls up).
    pub async fn manager_messages_before(
        &self,
        manager_id: &str,
        ticket_id: Uuid,
        before: Option<ChatCursor>,
        limit: i64,
    ) -> Result<Page<DeskMessage>> {
        let mut page = self
            .manager_messages_dir(manager_id, ticket_id, Direction::Before(before), limit)
            .await?;
        page.items.reverse();
        Ok(page)
    }

    async fn manager_messages_dir(
        &self,
        manager_id: &str,
        ticket_id: Uuid,
        direction: Direction,
        limit: i64,
    ) -> Result<Page<DeskMessage>> {
        let (cursor, past, order) = match direction {
            Direction::After(c) => (c, ">", "x.created_at, x.id"),
            Direction::Before(c) => (c, "<", "x.created_at DESC, x.id DESC"),
        };
        let sql = format!(
            "SELECT * FROM (
                SELECT m.id, m.ticket_id, m.author, m.body, m.created_at, false AS is_note,
                       m.manager_id, {files} AS attachments
                FROM messages m JOIN tickets t ON t.id = m.ticket_id
                WHERE {tickets} AND t.id = $2 AND {messages}
                UNION ALL
                SELECT n.id, n.ticket_id, 'manager' AS author, n.body, n.created_at, true AS is_note,
                       n.manager_id, '[]'::jsonb AS attachments
                FROM notes n JOIN tickets t ON {notes}
                WHERE {tickets} AND t.id = $2
             ) x
             WHERE ($3::timestamptz IS NULL OR (x.created_at, x.id) {past} ($3, $4))
             ORDER BY {order} LIMIT $5",
            tickets = visibility::MANAGER_TICKETS,
            messages = visibility::MANAGER_MESSAGES,
            notes = visibility::MANAGER_NOTES,
            files = crate::attachments::ATTACHMENTS_OF_M,
        );
        let rows = sqlx::query(&sql)
            .bind(manager_id)
            .bind(ticket_id)
            .bind(cursor.map(|c| c.created_at))
            .bind(cursor.map(|c| c.id))
            .bind(limit + 1)
            .fetch_all(self.pool())
            .await?;
        if rows.is_empty() {
            // Tell "nothing (more) to read" from "not your ticket".
            self.manager_ticket(manager_id, ticket_id).await?;
        }
        page(&rows, limit, desk_message_of)
    }

    /// Adds an internal note to a ticket assigned to the manager. The same idempotency key on the
    /// same ticket returns the same note and stores nothing new; on another ticket it is another
    /// note. The note's event goes to the manager only.
    pub async fn add_note(
        &self,
        manager: &Caller,
        ticket_id: Uuid,
        idempotency_key: &str,
        body: &str,
    ) -> Result<Uuid> {
        let note_id = message_id_for(
            "note",
            &format!("{}/{ticket_id}/{idempotency_key}", manager.user_id),
        );
        let mut tx = self.begin_writing(false).await?;
        let (client_id, status) = managers_ticket_shared(&mut tx, ticket_id, manager).await?;
        let existing: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM notes WHERE manager_id = $1 AND ticket_id = $2 AND idempotency_key = $3",
        )
        .bind(&manager.user_id)
        .bind(ticket_id)
        .bind(idempotency_key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = existing {
            return Ok(id);
        }
        if status == TicketStatus::Closed {
            return Err(StoreError::TicketClosed);
        }
        // The same key sent twice at once: the second waits for the first's commit, then
        // stores nothing.
        let Some(created_at) = sqlx::query_scalar::<_, DateTime<Utc>>(
            "INSERT INTO notes (id, ticket_id, manager_id, idempotency_key, body)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING created_at",
        )
        .bind(note_id)
        .bind(ticket_id)
        .bind(&manager.user_id)
        .bind(idempotency_key)
        .bind(body)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(note_id);
        };
        insert_event(
            &mut tx,
            &client_id,
            &TicketEvent::NoteAdded {
                note_id,
                ticket_id,
                manager_id: &manager.user_id,
                body,
                created_at,
            },
        )
        .await?;
        self.commit_writing(tx).await?;
        Ok(note_id)
    }

    /// Hands an assigned ticket of `from` to `to_manager_id`, who must be ready (a ready slot,
    /// which this consumes, exactly as matching does). From then on only the new manager sees the
    /// ticket. Runs under the matching lock, so it never races an assignment or a readiness change.
    pub async fn transfer_ticket(
        &self,
        from: &Caller,
        ticket_id: Uuid,
        to_manager_id: &str,
    ) -> Result<Assignment> {
        let mut tx = self.begin_writing(true).await?;
        let row = sqlx::query(
            "SELECT client_id, status FROM tickets WHERE id = $1 AND manager_id = $2 FOR UPDATE",
        )
        .bind(ticket_id)
        .bind(&from.user_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::TicketNotFound)?;
        if status_of(&row)? != TicketStatus::Assigned {
            return Err(StoreError::TicketClosed);
        }
        let client_id: String = row.try_get("client_id")?;
        let not_ready = || StoreError::ManagerNotReady(to_manager_id.to_owned());
        if to_manager_id == from.user_id {
            return Err(not_ready());
        }
        let to_name: String = sqlx::query_scalar("SELECT display_name FROM managers WHERE id = $1")
            .bind(to_manager_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(not_ready)?;
        let (capacity, ready_slots, open_tickets) = manager_load(&mut tx, to_manager_id).await?;
        if ready_slots == 0 || open_tickets >= capacity {
            return Err(not_ready());
        }
        sqlx::query("UPDATE tickets SET manager_id = $2, assigned_at = now() WHERE id = $1")
            .bind(ticket_id)
            .bind(to_manager_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE managers SET ready_slots = ready_slots - 1,
                    ready_since = CASE WHEN ready_slots = 1 THEN NULL ELSE ready_since END,
                    updated_at = now()
             WHERE id = $1",
        )
        .bind(to_manager_id)
        .execute(&mut *tx)
        .await?;
        let transfer = Uuid::new_v4();
        let text = format!("{to_name} took over your chat and will help you.");
        let message_id = insert_system_message(
            &mut tx,
            &format!("transferred:{transfer}"),
            ticket_id,
            &client_id,
            &text,
        )
        .await?;
        insert_event(
            &mut tx,
            &client_id,
            &TicketEvent::ManagerTransferred {
                transfer,
                ticket_id,
                manager_name: &to_name,
                message_id,
                body: &text,
            },
        )
        .await?;
        insert_event(
            &mut tx,
            &client_id,
            &TicketEvent::TicketTransferredAway {
                transfer,
                ticket_id,
                manager_id: &from.user_id,
                to_manager_id,
            },
        )
        .await?;
        insert_event(
            &mut tx,
            &client_id,
            &TicketEvent::TicketTransferredTo {
                transfer,
                ticket_id,
                manager_id: to_manager_id,
                client_id: &client_id,
                from_manager_id: &from.user_id,
            },
        )
        .await?;
        self.commit_writing(tx).await?;
        Ok(Assignment {
            ticket_id,
            client_id,
            manager_id: to_manager_id.to_owned(),
            manager_name: to_name,
        })
    }

    /// The manager's events after `after_seq`, oldest first.
    pub async fn manager_events_after(
        &self,
        manager_id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Event>> {
        let sql = format!(
            "SELECT e.seq, e.kind, e.ticket_id, e.client_id, e.manager_id, e.client_visible,
                    e.payload, e.created_at
             FROM events e WHERE {} AND e.seq > $2 ORDER BY e.seq LIMIT $3",
            visibility::MANAGER_EVENTS
        );
        let rows = sqlx::query(&sql)
            .bind(manager_id)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(event_of).collect()
    }
}
