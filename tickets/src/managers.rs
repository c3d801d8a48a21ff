//! Managers in the store: readiness and capacity, the tickets and messages a manager may read,
//! replies, and matching waiting tickets to ready managers (under the matching lock).

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use crate::attachments::{ATTACHMENTS_OF_M, attach_manager_files_in};
use crate::domain::{
    Assignment, Caller, Message, Readiness, Routing, Ticket, TicketStatus, message_id_for,
};
use crate::matching::{self, Capacities, MatchingPort, ReadyManager, WaitingTicket};
use crate::messages::insert_system_message;
use crate::meters::Timings;
use crate::store::{
    PgStore, Result, StoreError, TICKET_COLUMNS, insert_event, message_of, status_filter,
    status_of, ticket_of,
};
use crate::ticket_event::TicketEvent;
use crate::visibility;

impl PgStore {
    /// "I can take one more client": one more ready slot, up to the manager's capacity, then the
    /// longest-waiting tickets are matched.
    pub async fn set_ready(&self, manager: &Caller, default_capacity: i32) -> Result<Readiness> {
        let routing = Routing {
            capacity: default_capacity,
            queues: Vec::new(),
        };
        self.set_ready_routed(manager, &routing).await
    }

    /// [`Self::set_ready`] with the manager's capacity and queues from the spec (updated each call).
    pub async fn set_ready_routed(&self, manager: &Caller, routing: &Routing) -> Result<Readiness> {
        let mut tx = self.begin_writing(true).await?;
        sqlx::query(
            "INSERT INTO managers (id, display_name, capacity, queues, seen_at)
             VALUES ($1, $2, $3, $4, now())
             ON CONFLICT (id) DO UPDATE SET display_name = EXCLUDED.display_name,
                 capacity = EXCLUDED.capacity, queues = EXCLUDED.queues, updated_at = now(),
                 seen_at = now()",
        )
        .bind(&manager.user_id)
        .bind(&manager.display_name)
        .bind(routing.capacity)
        .bind(&routing.queues)
        .execute(&mut *tx)
        .await?;
        let (capacity, ready_slots, open_tickets) = manager_load(&mut tx, &manager.user_id).await?;
        if open_tickets + ready_slots >= capacity {
            return Err(StoreError::AtCapacity {
                open_tickets,
                ready_slots,
                capacity,
            });
        }
        sqlx::query(
            "UPDATE managers SET ready_slots = ready_slots + 1,
                    ready_since = coalesce(ready_since, now()), updated_at = now()
             WHERE id = $1",
        )
        .bind(&manager.user_id)
        .execute(&mut *tx)
        .await?;
        let mut timings = Timings::default();
        let assigned = match_waiting(&mut tx, &mut timings)
            .await?
            .into_iter()
            .find(|a| a.manager_id == manager.user_id);
        let (capacity, ready_slots, open_tickets) = manager_load(&mut tx, &manager.user_id).await?;
        self.commit_writing(tx).await?;
        timings.report();
        Ok(Readiness {
            ready_slots,
            open_tickets,
            capacity,
            assigned,
        })
    }

    /// Withdraws every ready slot of the manager; their open tickets stay theirs.
    pub async fn set_not_ready(&self, manager_id: &str) -> Result<()> {
        let mut tx = self.begin_writing(true).await?;
        sqlx::query(
            "UPDATE managers SET ready_slots = 0, ready_since = NULL, updated_at = now() WHERE id = $1",
        )
        .bind(manager_id)
        .execute(&mut *tx)
        .await?;
        self.commit_writing(tx).await?;
        Ok(())
    }

    /// Records that these managers are present (their console's stream is open).
    pub async fn touch_managers(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query("UPDATE managers SET seen_at = now() WHERE id = ANY($1)")
            .bind(ids)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Ready slots lapse for every manager absent longer than `absent_for` (no open stream, no
    /// `SetReady`): they stop receiving clients until they say "ready" again. Returns who lapsed.
    pub async fn lapse_absent_ready(&self, absent_for: std::time::Duration) -> Result<Vec<String>> {
        // Under the matching lock: a round that read their slots may be about to use one.
        let mut tx = self.begin_writing(true).await?;
        let lapsed: Vec<String> = sqlx::query_scalar(
            "UPDATE managers SET ready_slots = 0, ready_since = NULL, updated_at = now()
             WHERE ready_slots > 0
               AND coalesce(seen_at, updated_at) < now() - make_interval(secs => $1)
             RETURNING id",
        )
        .bind(absent_for.as_secs_f64())
        .fetch_all(&mut *tx)
        .await?;
        self.commit_writing(tx).await?;
        Ok(lapsed)
    }

    /// Every known manager's capacity and queues, as the spec in force gives them
    /// (`routing_of`): lowering a capacity takes effect at once, not at their next `SetReady`.
    pub async fn apply_routings(&self, routing_of: impl Fn(&str) -> Routing) -> Result<usize> {
        let mut tx = self.begin_writing(true).await?;
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM managers ORDER BY id FOR UPDATE")
            .fetch_all(&mut *tx)
            .await?;
        let mut changed = 0;
        for id in &ids {
            let r = routing_of(id);
            changed += sqlx::query(
                "UPDATE managers SET capacity = $2, queues = $3
                 WHERE id = $1 AND (capacity <> $2 OR queues <> $3)",
            )
            .bind(id)
            .bind(r.capacity)
            .bind(&r.queues)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        self.commit_writing(tx).await?;
        Ok(usize::try_from(changed).unwrap_or(usize::MAX))
    }

    /// The manager's tickets, newest first; `statuses` empty means every status but closed.
    pub async fn manager_tickets(
        &self,
        manager_id: &str,
        statuses: &[TicketStatus],
    ) -> Result<Vec<Ticket>> {
        let statuses = status_filter(statuses);
        let sql = format!(
            "SELECT {TICKET_COLUMNS}
             FROM tickets t JOIN clients c ON c.id = t.client_id
             WHERE {} AND t.status = ANY($2)
             ORDER BY t.created_at DESC, t.id",
            visibility::MANAGER_TICKETS
        );
        let rows = sqlx::query(&sql)
            .bind(manager_id)
            .bind(&statuses)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(ticket_of).collect()
    }

    /// One of the manager's tickets, or `TicketNotFound` if it is not theirs.
    pub async fn manager_ticket(&self, manager_id: &str, ticket_id: Uuid) -> Result<Ticket> {
        let sql = format!(
            "SELECT {TICKET_COLUMNS}
             FROM tickets t JOIN clients c ON c.id = t.client_id
             WHERE {} AND t.id = $2",
            visibility::MANAGER_TICKETS
        );
        let row = sqlx::query(&sql)
            .bind(manager_id)
            .bind(ticket_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::TicketNotFound)?;
        ticket_of(&row)
    }

    /// The messages of one of the manager's tickets that the manager may read, oldest first.
    pub async fn manager_messages(
        &self,
        manager_id: &str,
        ticket_id: Uuid,
    ) -> Result<Vec<Message>> {
        let sql = format!(
            "SELECT m.id, m.ticket_id, m.author, m.body, m.created_at,
                    {ATTACHMENTS_OF_M} AS attachments
             FROM messages m JOIN tickets t ON t.id = m.ticket_id
             WHERE {} AND t.id = $2 AND {}
             ORDER BY m.created_at, m.id",
            visibility::MANAGER_TICKETS,
            visibility::MANAGER_MESSAGES
        );
        let rows = sqlx::query(&sql)
            .bind(manager_id)
            .bind(ticket_id)
            .fetch_all(self.pool())
            .await?;
        if rows.is_empty() {
            // Tell "no messages" from "not your ticket".
            self.manager_ticket(manager_id, ticket_id).await?;
        }
        rows.iter().map(message_of).collect()
    }

    /// Stores a manager's reply to a ticket assigned to them. The same idempotency key on the same
    /// ticket returns the same message and stores nothing new, even after the ticket closed; on
    /// another ticket it is another reply.
    pub async fn send_reply(
        &self,
        manager: &Caller,
        ticket_id: Uuid,
        idempotency_key: &str,
        body: &str,
    ) -> Result<Uuid> {
        self.send_reply_with_files(manager, ticket_id, idempotency_key, body, &[])
            .await
    }

    /// [`PgStore::send_reply`] carrying `files`: the manager's uploads for this ticket
    /// ([`crate::attachments::Uploader::Manager`]), in order. A file that is not such an upload
    /// (another's, another ticket's, sent already) refuses the whole reply
    /// (`AttachmentNotFound`); a retry of a reply already stored returns it as it was.
    pub async fn send_reply_with_files(
        &self,
        manager: &Caller,
        ticket_id: Uuid,
        idempotency_key: &str,
        body: &str,
        files: &[Uuid],
    ) -> Result<Uuid> {
        let external_id = format!("{}/{ticket_id}/{idempotency_key}", manager.user_id);
        // Replies stored before keys were scoped to the ticket: found again for their own ticket.
        let earlier_id = format!("{}/{idempotency_key}", manager.user_id);
        let message_id = message_id_for("manager", &external_id);
        let mut tx = self.begin_writing(false).await?;
        let row = sqlx::query(
            // NO KEY UPDATE, not SHARE: the reply updates the ticket below, and two replies
            // that both held SHARE would deadlock upgrading it.
            "SELECT client_id, status, first_response_at IS NULL AS first, afc_checks_replies
             FROM tickets WHERE id = $1 AND manager_id = $2 FOR NO KEY UPDATE",
        )
        .bind(ticket_id)
        .bind(&manager.user_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::TicketNotFound)?;
        let existing: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM messages WHERE channel = 'manager'
                 AND (external_id = $1 OR (external_id = $2 AND ticket_id = $3))",
        )
        .bind(&external_id)
        .bind(&earlier_id)
        .bind(ticket_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = existing {
            return Ok(id);
        }
        if status_of(&row)? == TicketStatus::Closed {
            return Err(StoreError::TicketClosed);
        }
        let client_id: String = row.try_get("client_id")?;
        // Nothing serialises two writers any more: the same key sent twice at once is told apart
        // here (the second waits for the first's commit, then stores nothing).
        let Some(created_at) = sqlx::query_scalar::<_, DateTime<Utc>>(
            "INSERT INTO messages (id, client_id, ticket_id, author, manager_id, channel, external_id,
                                   body, afc_status)
             VALUES ($1, $2, $3, 'manager', $4, 'manager', $5, $6, 'not_checked')
             ON CONFLICT DO NOTHING RETURNING created_at",
        )
        .bind(message_id)
        .bind(&client_id)
        .bind(ticket_id)
        .bind(&manager.user_id)
        .bind(&external_id)
        .bind(body)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(message_id);
        };
        let attachments =
            attach_manager_files_in(&mut tx, &manager.user_id, ticket_id, message_id, files)
                .await?;
        if attachments.len() != files.len() {
            return Err(StoreError::AttachmentNotFound);
        }
        if row.try_get::<bool, _>("afc_checks_replies")? {
            crate::external_afc::queue_reply_for_afc(&mut tx, ticket_id, message_id).await?;
        }
        if row.try_get::<bool, _>("first")? {
            sqlx::query("UPDATE tickets SET first_response_at = now() WHERE id = $1")
                .bind(ticket_id)
                .execute(&mut *tx)
                .await?;
            insert_event(
                &mut tx,
                &client_id,
                &TicketEvent::TicketResponded {
                    ticket_id,
                    manager_id: &manager.user_id,
                },
            )
            .await?;
        }
        insert_event(
            &mut tx,
            &client_id,
            &TicketEvent::ManagerReply {
                message_id,
                ticket_id,
                manager_id: &manager.user_id,
                manager_name: &manager.display_name,
                body,
                created_at,
                attachments: &attachments,
            },
        )
        .await?;
        self.commit_writing(tx).await?;
        Ok(message_id)
    }
}

/// (capacity, ready slots, open tickets) of a manager, locking the manager's row.
pub(crate) async fn manager_load(
    tx: &mut Transaction<'_, Postgres>,
    manager_id: &str,
) -> Result<(i32, i32, i32)> {
    let row = sqlx::query(
        "SELECT m.capacity, m.ready_slots,
                (SELECT count(*) FROM tickets t WHERE t.manager_id = m.id AND t.status = 'assigned')::int
                    AS open_tickets
         FROM managers m WHERE m.id = $1 FOR UPDATE",
    )
    .bind(manager_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok((
        row.try_get("capacity")?,
        row.try_get("ready_slots")?,
        row.try_get("open_tickets")?,
    ))
}

/// Matches waiting tickets to ready managers by the rule of [`crate::matching`] and writes each
/// assignment (the ticket, the manager's slot, the client's service message and the events).
/// Runs under the matching lock: the candidates cannot change under it but for a ticket closed
/// meanwhile, which the lock on the fetched tickets leaves out.
pub(crate) async fn match_waiting(
    tx: &mut Transaction<'_, Postgres>,
    timings: &mut Timings,
) -> Result<Vec<Assignment>> {
    let mut port = PgMatching {
        tx,
        timings,
        made: Vec::new(),
    };
    matching::assign_waiting(&mut port).await?;
    Ok(port.made)
}

/// The matching port over one PostgreSQL transaction; `made` collects the assignments written.
struct PgMatching<'a, 't> {
    tx: &'a mut Transaction<'t, Postgres>,
    timings: &'a mut Timings,
    made: Vec<Assignment>,
}

impl MatchingPort for PgMatching<'_, '_> {
    type Error = StoreError;

    async fn ready_managers(&mut self) -> Result<Vec<ReadyManager>> {
        let rows = sqlx::query(
            "SELECT m.id, m.display_name, m.queues, m.ready_slots, m.ready_since, m.capacity,
                    (SELECT count(*) FROM tickets o WHERE o.manager_id = m.id AND o.status = 'assigned')
                        AS open_tickets
             FROM managers m WHERE m.ready_slots > 0",
        )
        .fetch_all(&mut **self.tx)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ReadyManager {
                    id: row.try_get("id")?,
                    name: row.try_get("display_name")?,
                    queues: row.try_get("queues")?,
                    ready_slots: row.try_get("ready_slots")?,
                    open_tickets: row.try_get("open_tickets")?,
                    ready_since: row.try_get("ready_since")?,
                    capacity: row.try_get("capacity")?,
                })
            })
            .collect()
    }

    async fn waiting_tickets(&mut self, caps: &Capacities) -> Result<Vec<WaitingTicket>> {
        let rows = sqlx::query(
            "SELECT t.id, t.client_id, wi.subject AS client_subject, t.queue, t.priority,
                    t.waiting_since
             FROM tickets t LEFT JOIN web_identities wi ON wi.client_id = t.client_id
             WHERE t.status = 'waiting' AND t.id IN (
                 SELECT w.id FROM (
                     SELECT id, queue, row_number() OVER (
                         PARTITION BY queue ORDER BY priority DESC, waiting_since, id) AS n
                     FROM tickets WHERE status = 'waiting'
                 ) w
                 LEFT JOIN unnest($1::text[], $2::bigint[]) AS c(queue, cap) USING (queue)
                 WHERE w.n <= coalesce(c.cap, $3))
             FOR UPDATE OF t",
        )
        .bind(&caps.queues)
        .bind(&caps.limits)
        .bind(caps.any_other)
        .fetch_all(&mut **self.tx)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(WaitingTicket {
                    id: row.try_get("id")?,
                    client_id: row.try_get("client_id")?,
                    client_subject: row.try_get("client_subject")?,
                    queue: row.try_get("queue")?,
                    priority: row.try_get("priority")?,
                    waiting_since: row.try_get("waiting_since")?,
                })
            })
            .collect()
    }

    async fn assign(&mut self, ticket: &WaitingTicket, manager: &ReadyManager) -> Result<()> {
        let tx = &mut *self.tx;
        let a = Assignment {
            ticket_id: ticket.id,
            client_id: ticket.client_id.clone(),
            manager_id: manager.id.clone(),
            manager_name: manager.name.clone(),
        };
        let waited: Option<f64> = sqlx::query_scalar(
            "UPDATE tickets SET status = 'assigned', manager_id = $2, assigned_at = now() WHERE id = $1
             RETURNING extract(epoch FROM clock_timestamp() - waiting_since)::float8",
        )
        .bind(a.ticket_id)
        .bind(&a.manager_id)
        .fetch_one(&mut **tx)
        .await?;
        self.timings.assignment_wait.extend(waited);
        // The ticket's passed messages (those that arrived while it waited) become visible now.
        let ages: Vec<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM clock_timestamp() - created_at)::float8 FROM messages
             WHERE ticket_id = $1 AND author = 'client' AND afc_status = 'passed'",
        )
        .bind(a.ticket_id)
        .fetch_all(&mut **tx)
        .await?;
        self.timings.visible.extend(ages);
        sqlx::query(
            "UPDATE managers SET ready_slots = ready_slots - 1,
                    ready_since = CASE WHEN ready_slots = 1 THEN NULL ELSE ready_since END,
                    updated_at = now()
             WHERE id = $1",
        )
        .bind(&a.manager_id)
        .execute(&mut **tx)
        .await?;
        let text = format!("{} joined the chat and will help you.", a.manager_name);
        let message_id = insert_system_message(
            tx,
            &format!("assigned:{}:{}", a.ticket_id, a.manager_id),
            a.ticket_id,
            &a.client_id,
            &text,
        )
        .await?;
        insert_event(
            tx,
            &a.client_id,
            &TicketEvent::ManagerAssigned {
                ticket_id: a.ticket_id,
                manager_id: &a.manager_id,
                manager_name: &a.manager_name,
                message_id,
                body: &text,
            },
        )
        .await?;
        insert_event(
            tx,
            &a.client_id,
            &TicketEvent::TicketAssigned {
                ticket_id: a.ticket_id,
                manager_id: &a.manager_id,
                client_id: &a.client_id,
            },
        )
        .await?;
        self.made.push(a);
        Ok(())
    }
}

/// The ticket assigned to `manager`, share-locked by `tx` (it stays theirs and open until the
/// commit): its client and status. `TicketNotFound` when it is not theirs.
pub(crate) async fn managers_ticket_shared(
    tx: &mut Transaction<'_, Postgres>,
    ticket_id: Uuid,
    manager: &Caller,
) -> Result<(String, TicketStatus)> {
    let row = sqlx::query(
        "SELECT client_id, status FROM tickets WHERE id = $1 AND manager_id = $2 FOR SHARE",
    )
    .bind(ticket_id)
    .bind(&manager.user_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::TicketNotFound)?;
    Ok((row.try_get("client_id")?, status_of(&row)?))
}
