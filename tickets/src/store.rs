//! The PostgreSQL store: tickets, messages, managers and the event outbox.
//!
//! Every state change and the events it causes commit in one transaction. Every write is idempotent
//! (unique keys, `ON CONFLICT DO NOTHING`, guarded updates), so Kafka redeliveries, Temporal activity
//! retries and client retries change nothing the second time.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use crate::domain::{
    Assignment, Author, Caller, Event, Message, NewClientMessage, Readiness, Routing, Ticket,
    TicketClassification, TicketStatus, Verdict, message_id_for,
};
use crate::meters::{self, Timings};
use crate::ticket_event::TicketEvent;
use crate::visibility;

/// Serialises matching of waiting tickets to ready managers (one at a time, whoever triggers it).
pub(crate) const MATCH_LOCK: i64 = 0x1e_b0c5_0001;
/// Channel notified when events were given their `seq` (by `inbox_sequence_events`, migration
/// 0800): wakes the outbox relay and every stream.
pub const EVENTS_CHANNEL: &str = "inbox_events";
/// Events numbered per call of `inbox_sequence_events`.
const SEQUENCE_BATCH: i32 = 5000;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The embedded migrations (also for `#[sqlx::test(migrator = "tickets::store::MIGRATOR")]`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The ticket does not exist or the caller may not see it: the two are not told apart, so
    /// existence does not leak.
    #[error("ticket not found")]
    TicketNotFound,
    #[error("ticket is closed")]
    TicketClosed,
    #[error(
        "manager is at capacity: {open_tickets} open tickets and {ready_slots} ready slots of {capacity}"
    )]
    AtCapacity {
        open_tickets: i32,
        ready_slots: i32,
        capacity: i32,
    },
    #[error("client {0} already has another open ticket")]
    OtherTicketOpen(String),
    /// The manager a ticket should go to is not ready or has no free capacity.
    #[error("manager {0} is not ready to take a ticket")]
    ManagerNotReady(String),
    /// Every member slot of a topic's consumers is taken.
    #[error("too many consumers: {0}")]
    TooManyConsumers(String),
    #[error("unexpected value in column {column}: {value}")]
    Corrupt { column: &'static str, value: String },
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether the same write can never succeed, however often it is retried: the database
    /// refused the data itself (SQLSTATE class 22, data exception: a NUL, a string too long; 23,
    /// integrity; 54, a limit such as an index row too large), not the connection or the load.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Db(sqlx::Error::Database(e)) => e
                .code()
                .is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c.starts_with("54")),
            Self::Db(sqlx::Error::Encode(_)) => true,
            _ => false,
        }
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

/// A client's open ticket, as [`PgStore::open_ticket_of`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTicketState {
    pub ticket_id: Uuid,
    pub status: TicketStatus,
    pub manager_id: Option<String>,
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    numbering: std::sync::Arc<Numbering>,
}

/// Coalesces the numberings this process's writers ask for after their commits: one runs at a
/// time, and it covers every commit whose ask came before it started, so concurrent writers
/// share one call instead of queueing on the database's numbering lock one by one (which capped
/// writes at ~800/s). Written here because it is the store's own ordering rule.
#[derive(Default)]
struct Numbering {
    /// Asks so far (each after its writer's commit).
    asked: std::sync::atomic::AtomicU64,
    /// Every ask up to this one was followed by a completed numbering.
    covered: std::sync::atomic::AtomicU64,
    running: tokio::sync::Mutex<()>,
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(Self::from_pool(pool))
    }

    /// A service's store: [`Self::connect_with`] as `inbox-<service> <pid>` in
    /// `pg_stat_activity`, then the migrations applied.
    pub async fn open(
        service: &str,
        url: &str,
        password: Option<&str>,
        max_connections: u32,
    ) -> Result<Self> {
        let name = format!("inbox-{service} {}", std::process::id());
        let store = Self::connect_with(url, password, max_connections, &name).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects with a pool of `max_connections`; `password`, when given, replaces the URL's (so
    /// it can come from a secret of its own). TLS is the URL's: `sslmode=verify-full` with
    /// `sslrootcert=`, and `sslcert=`/`sslkey=` for a client certificate.
    /// `application_name` names the process in `pg_stat_activity` (who holds which lock).
    pub async fn connect_with(
        url: &str,
        password: Option<&str>,
        max_connections: u32,
        application_name: &str,
    ) -> Result<Self> {
        let mut options: sqlx::postgres::PgConnectOptions = url.parse()?;
        options = options.application_name(application_name);
        if let Some(pw) = password {
            options = options.password(pw);
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self::from_pool(pool))
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            numbering: std::sync::Arc::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Begins a transaction that may write events; end it with [`Self::commit_writing`]. Lock
    /// order, the same in every transaction: the matching lock (if `matching`), then rows.
    pub(crate) async fn begin_writing(
        &self,
        matching: bool,
    ) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        if matching {
            advisory_lock(&mut tx, MATCH_LOCK).await?;
        }
        Ok(tx)
    }

    /// Commits a writing transaction, then numbers its events (and those of every writer that
    /// committed meanwhile) so streams and the relay see them. The write has committed even if
    /// the numbering fails: the relay's sweep ([`Self::sequence_events`]) numbers them then.
    pub(crate) async fn commit_writing(&self, tx: Transaction<'static, Postgres>) -> Result<()> {
        tx.commit().await?;
        if let Err(e) = self.sequence_after_commit().await {
            tracing::warn!(error = %e, "events committed but not yet numbered; the relay will");
        }
        Ok(())
    }

    /// Returns once a numbering that started after this call has completed (see [`Numbering`]).
    async fn sequence_after_commit(&self) -> Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let n = &self.numbering;
        let me = n.asked.fetch_add(1, SeqCst) + 1;
        // FIFO: a writer whose ask an earlier numbering covered finds it done and returns; a
        // numbering cancelled half-way leaves the next writer to run one.
        let _running = n.running.lock().await;
        if n.covered.load(SeqCst) >= me {
            return Ok(());
        }
        let target = n.asked.load(SeqCst);
        self.sequence_events().await?;
        n.covered.fetch_max(target, SeqCst);
        Ok(())
    }

    /// Gives every committed event without a `seq` its place in the outbox order (insertion
    /// order, after every event numbered before) and wakes the outbox's listeners. Writers call
    /// it after their commit; the relay calls it as a sweep for a writer that died in between.
    /// Returns how many events it numbered.
    pub async fn sequence_events(&self) -> Result<u64> {
        let mut numbered = 0;
        loop {
            let n: i32 = sqlx::query_scalar("SELECT inbox_sequence_events($1)")
                .bind(SEQUENCE_BATCH)
                .fetch_one(&self.pool)
                .await?;
            numbered += u64::try_from(n).unwrap_or(0);
            if n < SEQUENCE_BATCH {
                return Ok(numbered);
            }
        }
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// [`Self::ping`] of an owned handle (a probe's future must own what it uses).
    pub async fn ping_owned(self) -> Result<()> {
        self.ping().await
    }

    /// Applies the embedded migrations; safe to run from several processes at once.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

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
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn ticket_exists(&self, ticket_id: Uuid) -> Result<bool> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tickets WHERE id = $1)")
                .bind(ticket_id)
                .fetch_one(&self.pool)
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
        .fetch_optional(&self.pool)
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
        .fetch_one(&self.pool)
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
        .fetch_all(&self.pool)
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
        .execute(&self.pool)
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

    /// The client's messages still waiting for their AFC verdict, oldest first.
    pub async fn pending_client_messages(&self, client_id: &str) -> Result<Vec<(Uuid, String)>> {
        pending_client_messages_in(&self.pool, client_id).await
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
            "INSERT INTO managers (id, display_name, capacity, queues) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET display_name = EXCLUDED.display_name,
                 capacity = EXCLUDED.capacity, queues = EXCLUDED.queues, updated_at = now()",
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

    /// The manager's tickets, newest first; `statuses` empty means every status but closed.
    pub async fn manager_tickets(
        &self,
        manager_id: &str,
        statuses: &[TicketStatus],
    ) -> Result<Vec<Ticket>> {
        let statuses: Vec<&str> = if statuses.is_empty() {
            vec!["open", "waiting", "assigned"]
        } else {
            statuses.iter().map(|s| s.as_str()).collect()
        };
        let sql = format!(
            "SELECT t.id, t.client_id, c.display_name AS client_name, t.status, t.manager_id,
                    t.created_at, t.assigned_at
             FROM tickets t JOIN clients c ON c.id = t.client_id
             WHERE {} AND t.status = ANY($2)
             ORDER BY t.created_at DESC, t.id",
            visibility::MANAGER_TICKETS
        );
        let rows = sqlx::query(&sql)
            .bind(manager_id)
            .bind(&statuses)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(ticket_of).collect()
    }

    /// One of the manager's tickets, or `TicketNotFound` if it is not theirs.
    pub async fn manager_ticket(&self, manager_id: &str, ticket_id: Uuid) -> Result<Ticket> {
        let sql = format!(
            "SELECT t.id, t.client_id, c.display_name AS client_name, t.status, t.manager_id,
                    t.created_at, t.assigned_at
             FROM tickets t JOIN clients c ON c.id = t.client_id
             WHERE {} AND t.id = $2",
            visibility::MANAGER_TICKETS
        );
        let row = sqlx::query(&sql)
            .bind(manager_id)
            .bind(ticket_id)
            .fetch_optional(&self.pool)
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
            "SELECT m.id, m.ticket_id, m.author, m.body, m.created_at
             FROM messages m JOIN tickets t ON t.id = m.ticket_id
             WHERE {} AND t.id = $2 AND {}
             ORDER BY m.created_at, m.id",
            visibility::MANAGER_TICKETS,
            visibility::MANAGER_MESSAGES
        );
        let rows = sqlx::query(&sql)
            .bind(manager_id)
            .bind(ticket_id)
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() {
            // Tell "no messages" from "not your ticket".
            self.manager_ticket(manager_id, ticket_id).await?;
        }
        rows.iter().map(message_of).collect()
    }

    /// Stores a manager's reply to a ticket assigned to them. The same idempotency key returns the
    /// same message and stores nothing new, even after the ticket closed.
    pub async fn send_reply(
        &self,
        manager: &Caller,
        ticket_id: Uuid,
        idempotency_key: &str,
        body: &str,
    ) -> Result<Uuid> {
        let external_id = format!("{}/{idempotency_key}", manager.user_id);
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
            "SELECT id FROM messages WHERE channel = 'manager' AND external_id = $1",
        )
        .bind(&external_id)
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
        if row.try_get::<bool, _>("afc_checks_replies")? {
            crate::afc_provider::queue_reply_for_afc(&mut tx, ticket_id, message_id).await?;
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
            },
        )
        .await?;
        self.commit_writing(tx).await?;
        Ok(message_id)
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
        .fetch_optional(&self.pool)
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

    /// The client's events after `after_seq`, oldest first: one continuous chat across tickets.
    pub async fn client_events_after(
        &self,
        client_id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Event>> {
        let sql = format!(
            "SELECT e.seq, e.kind, e.ticket_id, e.client_id, e.manager_id, e.client_visible,
                    {payload} AS payload, e.created_at
             FROM events e WHERE {events} AND e.seq > $2 ORDER BY e.seq LIMIT $3",
            payload = visibility::CLIENT_EVENT_PAYLOAD,
            events = visibility::CLIENT_EVENTS
        );
        let rows = sqlx::query(&sql)
            .bind(client_id)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_of).collect()
    }

    /// Outbox rows not yet published, oldest first.
    pub async fn unpublished_events(&self, limit: i64) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT seq, kind, ticket_id, client_id, manager_id, client_visible, payload, created_at
             FROM events WHERE published_at IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_of).collect()
    }

    pub async fn mark_published(&self, seqs: &[i64]) -> Result<()> {
        sqlx::query("UPDATE events SET published_at = now() WHERE seq = ANY($1)")
            .bind(seqs)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// See [`PgStore::reply_silence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplySilence {
    pub last_reply_ms: Option<i64>,
    pub client_wrote_since: bool,
}

pub(crate) async fn advisory_lock(tx: &mut Transaction<'_, Postgres>, key: i64) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Writes `event` about `client_id` to the outbox (once: its dedup key makes a retry a no-op),
/// without its `seq` until [`PgStore::commit_writing`] numbers it.
pub(crate) async fn insert_event(
    tx: &mut Transaction<'_, Postgres>,
    client_id: &str,
    event: &TicketEvent<'_>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO events (dedup_key, kind, ticket_id, client_id, client_visible, manager_id, payload)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(event.dedup_key())
    .bind(event.kind())
    .bind(event.ticket_id())
    .bind(client_id)
    .bind(event.client_visible())
    .bind(event.manager_id())
    .bind(event.payload())
    .execute(&mut **tx)
    .await?;
    Ok(())
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

/// Gives waiting tickets, longest-waiting first, to ready managers: the one with the fewest open
/// tickets, then the one ready longest. Runs under `MATCH_LOCK`, so it never races itself; a manager
/// holds at most `capacity` tickets because slots are only granted below capacity. Each assignment
/// adds its queue wait and the age of the passed messages it makes visible to `timings`.
/// The body of [`PgStore::apply_verdicts`] inside a writing transaction, for a ticket locked with
/// its `status` and `manager_id`: verdicts recorded, visible/blocked events written, the ticket
/// classified and queued by its first passed message. Matching is the caller's (once per
/// transaction); `assigned` is left None.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn apply_verdicts_in(
    tx: &mut Transaction<'_, Postgres>,
    ticket_id: Uuid,
    status: TicketStatus,
    manager_id: Option<&str>,
    verdicts: &[(Uuid, Verdict)],
    warning: &str,
    classification: Option<&TicketClassification>,
    timings: &mut Timings,
) -> Result<VerdictsApplied> {
    let mut out = VerdictsApplied::default();
    for (message_id, verdict) in verdicts {
        let (afc_status, rule) = match verdict {
            Verdict::Passed => ("passed", None),
            Verdict::Blocked { rule } => ("blocked", Some(rule.as_str())),
        };
        let updated = sqlx::query(
            "UPDATE messages SET ticket_id = $2, afc_status = $3, afc_rule = $4
                 WHERE id = $1 AND afc_status = 'pending'
                 RETURNING client_id, body, created_at,
                           extract(epoch FROM clock_timestamp() - created_at)::float8 AS age",
        )
        .bind(message_id)
        .bind(ticket_id)
        .bind(afc_status)
        .bind(rule)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(m) = updated else { continue };
        let client_id: String = m.try_get("client_id")?;
        match verdict {
            Verdict::Passed => {
                out.passed += 1;
                if let (Some(manager), TicketStatus::Assigned) = (manager_id, status) {
                    let body: String = m.try_get("body")?;
                    let created_at: DateTime<Utc> = m.try_get("created_at")?;
                    timings.visible.push(m.try_get("age")?);
                    insert_event(
                        tx,
                        &client_id,
                        &TicketEvent::MessageVisible {
                            manager_id: manager,
                            message_id: *message_id,
                            ticket_id,
                            body: &body,
                            created_at,
                        },
                    )
                    .await?;
                }
            }
            Verdict::Blocked { .. } => {
                out.blocked += 1;
                let warning_id = insert_system_message(
                    tx,
                    &format!("blocked:{message_id}"),
                    ticket_id,
                    &client_id,
                    warning,
                )
                .await?;
                insert_event(
                    tx,
                    &client_id,
                    &TicketEvent::MessageBlocked {
                        message_id: *message_id,
                        ticket_id,
                        warning,
                        warning_message_id: warning_id,
                    },
                )
                .await?;
            }
        }
    }
    if out.passed > 0 && status == TicketStatus::Open {
        sqlx::query("UPDATE tickets SET status = 'waiting', waiting_since = now() WHERE id = $1")
            .bind(ticket_id)
            .execute(&mut **tx)
            .await?;
        if let Some(c) = classification {
            sqlx::query(
                    "UPDATE tickets SET category = $2, priority = $3, queue = $4, fields = $5 WHERE id = $1",
                )
                .bind(ticket_id)
                .bind(&c.category)
                .bind(c.priority.clamp(0, 3))
                .bind(&c.queue)
                .bind(&c.fields)
                .execute(&mut **tx)
                .await?;
        }
        out.queued = true;
    }
    Ok(out)
}

pub(crate) async fn match_waiting(
    tx: &mut Transaction<'_, Postgres>,
    timings: &mut Timings,
) -> Result<Vec<Assignment>> {
    let mut out = Vec::new();
    loop {
        // The first waiting ticket (higher priority first, then longest waiting) that some ready
        // manager serving its queue can take; that manager has the fewest open tickets, then has
        // been ready longest.
        let row = sqlx::query(
            "SELECT t.id, t.client_id, m.id AS manager_id, m.display_name
             FROM tickets t
             CROSS JOIN LATERAL (
                 SELECT m.id, m.display_name FROM managers m
                 WHERE m.ready_slots > 0 AND (cardinality(m.queues) = 0 OR t.queue = ANY(m.queues))
                 ORDER BY (SELECT count(*) FROM tickets o WHERE o.manager_id = m.id AND o.status = 'assigned'),
                          m.ready_since, m.id
                 LIMIT 1
             ) m
             WHERE t.status = 'waiting'
             ORDER BY t.priority DESC, t.waiting_since, t.id
             LIMIT 1 FOR UPDATE OF t",
        )
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else { break };
        let a = Assignment {
            ticket_id: row.try_get("id")?,
            client_id: row.try_get("client_id")?,
            manager_id: row.try_get("manager_id")?,
            manager_name: row.try_get("display_name")?,
        };
        let waited: Option<f64> = sqlx::query_scalar(
            "UPDATE tickets SET status = 'assigned', manager_id = $2, assigned_at = now() WHERE id = $1
             RETURNING extract(epoch FROM clock_timestamp() - waiting_since)::float8",
        )
        .bind(a.ticket_id)
        .bind(&a.manager_id)
        .fetch_one(&mut **tx)
        .await?;
        timings.assignment_wait.extend(waited);
        // The ticket's passed messages (those that arrived while it waited) become visible now.
        let ages: Vec<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM clock_timestamp() - created_at)::float8 FROM messages
             WHERE ticket_id = $1 AND author = 'client' AND afc_status = 'passed'",
        )
        .bind(a.ticket_id)
        .fetch_all(&mut **tx)
        .await?;
        timings.visible.extend(ages);
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
        out.push(a);
    }
    Ok(out)
}

/// The client's messages still waiting for their AFC verdict, oldest first (at most 500), on
/// `db` (the pool, or a transaction).
pub(crate) async fn pending_client_messages_in<'e>(
    db: impl sqlx::PgExecutor<'e>,
    client_id: &str,
) -> Result<Vec<(Uuid, String)>> {
    let rows = sqlx::query(
        "SELECT id, body FROM messages
         WHERE client_id = $1 AND author = 'client' AND afc_status = 'pending'
         ORDER BY created_at, id LIMIT 500",
    )
    .bind(client_id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("body")?)))
        .collect()
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

pub(crate) fn status_of(row: &PgRow) -> Result<TicketStatus> {
    let s: String = row.try_get("status")?;
    TicketStatus::parse(&s).ok_or(StoreError::Corrupt {
        column: "tickets.status",
        value: s,
    })
}

pub(crate) fn ticket_of(row: &PgRow) -> Result<Ticket> {
    Ok(Ticket {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        client_name: row.try_get("client_name")?,
        status: status_of(row)?,
        manager_id: row.try_get("manager_id")?,
        created_at: row.try_get("created_at")?,
        assigned_at: row.try_get("assigned_at")?,
    })
}

pub(crate) fn message_of(row: &PgRow) -> Result<Message> {
    let author: String = row.try_get("author")?;
    Ok(Message {
        id: row.try_get("id")?,
        ticket_id: row.try_get("ticket_id")?,
        author: Author::parse(&author).ok_or(StoreError::Corrupt {
            column: "messages.author",
            value: author,
        })?,
        body: row.try_get("body")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(crate) fn event_of(row: &PgRow) -> Result<Event> {
    Ok(Event {
        seq: row.try_get("seq")?,
        kind: row.try_get("kind")?,
        ticket_id: row.try_get("ticket_id")?,
        client_id: row.try_get("client_id")?,
        manager_id: row.try_get("manager_id")?,
        client_visible: row.try_get("client_visible")?,
        payload: row.try_get("payload")?,
        created_at: row.try_get("created_at")?,
    })
}
