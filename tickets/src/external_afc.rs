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

use crate::domain::{Author, TicketStatus, Verdict};
use crate::inbound::{MessageCheck, open_ticket_in};
use crate::managers::match_waiting;
use crate::messages::{apply_verdicts_in, pending_client_messages_in};
use crate::meters::{self, Timings};
use crate::store::{PgStore, Result, StoreError, insert_event, status_of};
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

/// A spec whose messages the bank's AFC system checks (see [`MessageCheck::external`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalCheck {
    /// How long the AFC system has for a verdict before the operators are alerted.
    pub timeout_ms: u64,
    /// The ticket's manager replies go to the AFC system too (after they were delivered).
    pub replies: bool,
}

/// Queues held client messages of `ticket_id` for the AFC system, inside the transaction that
/// holds them; a message already queued stays as it is. Returns how many were queued now.
pub(crate) async fn hold_for_afc(
    tx: &mut Transaction<'_, Postgres>,
    ticket_id: Uuid,
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
    pub ticket_id: Uuid,
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

/// A message row (`id`, `client_id`, `body`, `author`) as the AFC system receives it.
fn outgoing_of(r: &sqlx::postgres::PgRow) -> Result<AfcOutgoing> {
    let author: String = r.try_get("author")?;
    Ok(AfcOutgoing {
        id: r.try_get("id")?,
        client_id: r.try_get("client_id")?,
        body: r.try_get("body")?,
        from_client: author == "client",
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
    let rows = sqlx::query(
        "SELECT m.id, m.body, v.status FROM messages m JOIN afc_verdicts v ON v.message_id = m.id
         WHERE m.client_id = $1 AND m.author = 'client' AND m.afc_status = 'pending'
         ORDER BY m.created_at, m.id LIMIT 500",
    )
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

/// The store's path (see the module doc): the AFC outbox and the verdicts applied here.
impl PgStore {
    /// The next rows of the AFC outbox not yet published, in the order they were queued.
    pub async fn afc_outbox_unsent(&self, limit: i64) -> Result<Vec<AfcQueued>> {
        let rows = sqlx::query(
            "SELECT o.id AS row, m.id, m.client_id, m.body, m.author
             FROM afc_outbox o JOIN messages m ON m.id = o.message_id
             WHERE o.sent_at IS NULL ORDER BY o.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AfcQueued {
                    row: r.try_get("row")?,
                    message: outgoing_of(r)?,
                })
            })
            .collect()
    }

    /// Marks outbox rows published (the first time only): their verdicts are due `timeout_ms`
    /// from now. Two relays publishing the same row is harmless (the first verdict is final).
    pub async fn mark_afc_outbox_sent(&self, sent: &[AfcQueued]) -> Result<()> {
        let rows: Vec<i64> = sent.iter().map(|q| q.row).collect();
        let ids: Vec<Uuid> = sent.iter().map(|q| q.message.id).collect();
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "UPDATE afc_outbox SET sent_at = now(),
                    due_at = now() + timeout_ms * interval '1 millisecond'
             WHERE id = ANY($1) AND sent_at IS NULL",
        )
        .bind(&rows)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE messages SET afc_sent_at = now() WHERE id = ANY($1) AND afc_sent_at IS NULL",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// When the next verdict of a published client message falls due, if one is awaited.
    pub async fn next_afc_due(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar(
            "SELECT min(due_at) FROM afc_outbox WHERE alerted_at IS NULL AND due_at IS NOT NULL",
        )
        .fetch_one(self.pool())
        .await?)
    }

    /// Raises one `afc_timeout` alert (operators only) for each published client message whose
    /// verdict is overdue and that is still held, at most `limit` per call; the message stays held
    /// until its verdict. Returns the messages alerted about.
    pub async fn raise_overdue_afc(&self, limit: i64) -> Result<Vec<AfcOverdue>> {
        let mut tx = self.begin_writing(false).await?;
        let rows = sqlx::query(
            "UPDATE afc_outbox o SET alerted_at = now()
             FROM messages m
             WHERE o.id IN (SELECT id FROM afc_outbox
                            WHERE alerted_at IS NULL AND due_at <= now()
                            ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)
               AND m.id = o.message_id
             RETURNING o.message_id, o.ticket_id, o.timeout_ms, m.client_id,
                       m.afc_status = 'pending' AS held",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            // Nothing fell due: nothing to commit (the relay asks on every wake-up).
            return Ok(Vec::new());
        }
        let mut overdue = Vec::new();
        for r in &rows {
            if !r.try_get::<bool, _>("held")? {
                continue;
            }
            let o = AfcOverdue {
                message_id: r.try_get("message_id")?,
                ticket_id: r.try_get("ticket_id")?,
                client_id: r.try_get("client_id")?,
                timeout_ms: u64::try_from(r.try_get::<Option<i64>, _>("timeout_ms")?.unwrap_or(0))
                    .unwrap_or(0),
            };
            insert_event(
                &mut tx,
                &o.client_id,
                &TicketEvent::AfcTimeout {
                    message_id: o.message_id,
                    ticket_id: o.ticket_id,
                    timeout_ms: o.timeout_ms,
                },
            )
            .await?;
            overdue.push(o);
        }
        self.commit_writing(tx).await?;
        Ok(overdue)
    }

    /// Records the AFC verdict on a client message and, when the client's open ticket is the
    /// store's to check at `check`'s spec version, applies it (with every other verdict recorded
    /// for the client's held messages) in the same transaction: a passed message becomes visible
    /// to the ticket's manager, a blocked one is replaced by the warning, the first passed message
    /// classifies and queues the ticket (`ticket_queued`) and ready managers are matched. A client
    /// with no open ticket (it closed while the message was held) gets one, as a new message
    /// would. The first verdict is final; a contradicting one changes nothing.
    pub async fn take_afc_verdict(
        &self,
        message_id: Uuid,
        client_id: &str,
        status: AfcStatus,
        token: &str,
        check: &dyn MessageCheck,
    ) -> Result<AfcTaken> {
        // The matching lock first (a passed message may match a manager), as every matcher does.
        let mut tx = self.begin_writing(true).await?;
        let duplicate = match insert_verdict(&mut tx, message_id, client_id, status, token).await? {
            VerdictRecord::New => false,
            VerdictRecord::Duplicate => true,
            VerdictRecord::Contradicts { earlier } => return Ok(AfcTaken::Contradicts { earlier }),
        };
        let row = sqlx::query(
            "SELECT id, status, manager_id, spec_version, checked_in_store FROM tickets
             WHERE client_id = $1 AND status <> 'closed' FOR UPDATE",
        )
        .bind(client_id)
        .fetch_optional(&mut *tx)
        .await?;
        let decided = decided_pending(&mut *tx, client_id).await?;
        let unchanged = AfcTaken::Applied {
            duplicate,
            passed: 0,
            blocked: 0,
            queued: false,
        };
        let (ticket_id, ticket_status, manager_id) = match row {
            Some(r) => {
                let version: String = r.try_get("spec_version")?;
                if !(r.try_get::<bool, _>("checked_in_store")? && version == check.version()) {
                    self.commit_writing(tx).await?;
                    return Ok(AfcTaken::Workflow { duplicate });
                }
                let manager_id: Option<String> = r.try_get("manager_id")?;
                (r.try_get::<Uuid, _>("id")?, status_of(&r)?, manager_id)
            }
            None if decided.is_empty() => {
                self.commit_writing(tx).await?;
                return Ok(unchanged);
            }
            None => {
                let pending = pending_client_messages_in(&mut *tx, client_id).await?;
                let Some(t) = open_ticket_in(&mut tx, client_id, &pending, check).await? else {
                    // Opened meanwhile by a workflow that checks its own messages.
                    self.commit_writing(tx).await?;
                    return Ok(AfcTaken::Workflow { duplicate });
                };
                if let Some(external) = check.external() {
                    let undecided: Vec<Uuid> = pending
                        .iter()
                        .map(|(id, _)| *id)
                        .filter(|id| decided.iter().all(|(d, _, _)| d != id))
                        .collect();
                    hold_for_afc(&mut tx, t.id, &undecided, external.timeout_ms).await?;
                }
                (t.id, t.status, t.manager_id)
            }
        };
        if decided.is_empty() {
            self.commit_writing(tx).await?;
            return Ok(unchanged);
        }
        let verdicts: Vec<(Uuid, Verdict)> = decided
            .iter()
            .map(|(id, _, s)| (*id, s.verdict()))
            .collect();
        let classification = (ticket_status == TicketStatus::Open)
            .then(|| {
                decided
                    .iter()
                    .find(|(_, _, s)| *s == AfcStatus::Ok)
                    .map(|(_, body, _)| check.classify(body))
            })
            .flatten();
        let mut timings = Timings::default();
        let applied = apply_verdicts_in(
            &mut tx,
            ticket_id,
            ticket_status,
            manager_id.as_deref(),
            &verdicts,
            check.blocked_warning(),
            classification.as_ref(),
            &mut timings,
        )
        .await?;
        if applied.queued {
            insert_event(&mut tx, client_id, &TicketEvent::TicketQueued { ticket_id }).await?;
            match_waiting(&mut tx, &mut timings).await?;
        }
        self.commit_writing(tx).await?;
        meters::verdicts_applied(applied.passed, applied.blocked);
        timings.report();
        Ok(AfcTaken::Applied {
            duplicate,
            passed: applied.passed,
            blocked: applied.blocked,
            queued: applied.queued,
        })
    }
}
