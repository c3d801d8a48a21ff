//! The PostgreSQL store: its connection, errors, the writing transaction (events numbered after
//! commit) and row decoding. What it holds is in the modules named after it: `messages`,
//! `lifecycle` (tickets), `managers`, `outbox` (events), `desk`, `chat`, `channels`, `email`...
//!
//! Every state change and the events it causes commit in one transaction. Every write is idempotent
//! (unique keys, `ON CONFLICT DO NOTHING`, guarded updates), so Kafka redeliveries, Temporal activity
//! retries and client retries change nothing the second time.

use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};

use crate::domain::{Author, Event, Message, Ticket, TicketStatus};
use crate::ticket_event::TicketEvent;

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
    /// A file to send is not the sender's upload for this message (or was sent already).
    #[error("attachment not found")]
    AttachmentNotFound,
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
    /// Every client id a web identity could have belongs to another identity.
    #[error("no client id is free for this identity: {0}")]
    IdentityTaken(String),
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

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    numbering: std::sync::Arc<Numbering>,
    /// Seals the original of a blocked message for the bank's audit; None: none is kept.
    audit: Option<std::sync::Arc<dyn crate::screening::AuditSeal>>,
    /// Web identities already resolved (`identities`): a binding never changes once made, so
    /// a client's requests after the first need no query for it.
    pub(crate) web_ids: crate::identities::WebIds,
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
            audit: None,
            web_ids: crate::identities::WebIds::default(),
        }
    }

    /// The store sealing the original of every blocked message it records with `seal` (in
    /// `messages.sealed_body`); without one, only the redacted text is kept.
    pub fn with_audit_seal(
        mut self,
        seal: std::sync::Arc<dyn crate::screening::AuditSeal>,
    ) -> Self {
        self.audit = Some(seal);
        self
    }

    pub(crate) fn audit_seal(&self) -> Option<&dyn crate::screening::AuditSeal> {
        self.audit.as_deref()
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

pub(crate) fn status_of(row: &PgRow) -> Result<TicketStatus> {
    let s: String = row.try_get("status")?;
    TicketStatus::parse(&s).ok_or(StoreError::Corrupt {
        column: "tickets.status",
        value: s,
    })
}

/// What [`ticket_of`] reads, from `tickets t JOIN clients c ON c.id = t.client_id`.
pub(crate) const TICKET_COLUMNS: &str = "t.id, t.client_id, c.display_name AS client_name, \
    t.status, t.manager_id, t.created_at, t.assigned_at, t.queue, t.category, t.priority, \
    t.fields, t.waiting_since, t.first_response_at, t.closed_at, t.rating";

/// The statuses a ticket filter names, as stored; none named: every status but closed.
pub(crate) fn status_filter(statuses: &[TicketStatus]) -> Vec<&'static str> {
    if statuses.is_empty() {
        vec!["open", "waiting", "assigned"]
    } else {
        statuses.iter().map(|s| s.as_str()).collect()
    }
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
        queue: row.try_get("queue")?,
        category: row.try_get("category")?,
        priority: row.try_get("priority")?,
        fields: row.try_get("fields")?,
        waiting_since: row.try_get("waiting_since")?,
        first_response_at: row.try_get("first_response_at")?,
        closed_at: row.try_get("closed_at")?,
        rating: row.try_get("rating")?,
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
        attachments: crate::attachments::refs_of(row)?,
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
