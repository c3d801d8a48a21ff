//! The store's path (see the module doc): the AFC outbox the relay publishes, the alerts it raises
//! when verdicts are overdue, and the transaction that applies a verdict with the ticket's spec.

use super::*;
use crate::attachments::AFC_FILES_OF_M;

/// The store's path (see the module doc): the AFC outbox and the verdicts applied here.
impl PgStore {
    /// The next rows of the AFC outbox not yet published, in the order they were queued.
    pub async fn afc_outbox_unsent(&self, limit: i64) -> Result<Vec<AfcQueued>> {
        let rows = sqlx::query(&format!(
            "SELECT o.id AS row, m.id, m.client_id, m.body, m.author, {AFC_FILES_OF_M} AS files
                 FROM afc_outbox o JOIN messages m ON m.id = o.message_id
                 WHERE o.sent_at IS NULL ORDER BY o.id LIMIT $1"
        ))
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
        // A held command of no ticket: passed, it is the bot's; blocked, it is blocked on the
        // client's ticket below as any message.
        let passed = status.verdict() == Verdict::Passed;
        if release_held_command_in(&mut tx, message_id, passed).await? {
            self.commit_writing(tx).await?;
            return Ok(AfcTaken::Command { duplicate });
        }
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
                    hold_for_afc(&mut tx, Some(t.id), &undecided, external.timeout_ms).await?;
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
            self.audit_seal(),
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
