//! Activities: every side effect of the ticket workflow. Each is idempotent, so Temporal's retries
//! are harmless.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tickets::inbound::MessageCheck as _;
use tickets::{PgStore, ReplySilence, TicketClassification, Verdict};
use tracing::Instrument as _;
use uuid::Uuid;

use spec::TicketSpec;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckInput {
    pub ticket_id: Uuid,
    pub client_id: String,
    pub spec: TicketSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// Messages checked by this call (0 when every one was already handled).
    pub checked: usize,
    pub passed: usize,
    pub blocked: usize,
    /// The first passed message queued the ticket for a manager.
    pub queued: bool,
    pub assigned_to: Option<String>,
    /// The ticket exists in the store. Set when nothing was pending: a check that ran before a
    /// worker crash and is replayed finds its messages handled, yet the ticket is open and must
    /// live on (histories recorded before this field read it as false).
    #[serde(default)]
    pub opened: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseInput {
    pub ticket_id: Uuid,
    pub reason: String,
    pub closing_message: String,
    pub satisfaction_prompt: Option<String>,
}

/// The client's open ticket as the store has it, for a workflow starting on the store's word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreTicket {
    pub ticket_id: Uuid,
    /// Its first passed message queued it (waiting or assigned).
    pub queued: bool,
    pub manager_id: Option<String>,
}

pub struct TicketActivities {
    pub store: PgStore,
    /// Specs compiled by version (rules and classification patterns built once).
    pub compiled: spec::checker::Compiled,
}

#[activities]
impl TicketActivities {
    /// Runs the AFC check over every pending message of the client (one batch per workflow task)
    /// and records the verdicts on the ticket, opening it first if needed. The first passed message
    /// classifies the ticket and queues it for a manager.
    #[activity]
    pub async fn check_pending(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: CheckInput,
    ) -> Result<CheckOutcome, ActivityError> {
        self.check_all_pending(input).await
    }

    /// Raises a waiting ticket's priority (escalation round `.1`); a no-op once it was assigned.
    #[activity]
    pub async fn escalate(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: (Uuid, u32),
    ) -> Result<Option<i32>, ActivityError> {
        let (ticket_id, round) = input;
        let priority = self.store.escalate(ticket_id, round).await?;
        tracing::info!(%ticket_id, round, ?priority, "ticket escalated");
        Ok(priority)
    }

    /// Records a breach of the first-response SLA.
    #[activity]
    pub async fn report_sla_breach(
        self: Arc<Self>,
        _ctx: ActivityContext,
        ticket_id: Uuid,
    ) -> Result<bool, ActivityError> {
        let recorded = self.store.record_sla_breach(ticket_id).await?;
        tracing::info!(%ticket_id, recorded, "first-response SLA breached");
        Ok(recorded)
    }

    /// The client's open ticket, if any: a workflow the store started (`ticket_opened`) takes
    /// its state from here, so a signal lost or repeated around a close cannot mislead it.
    #[activity]
    pub async fn open_ticket_of(
        self: Arc<Self>,
        _ctx: ActivityContext,
        client_id: String,
    ) -> Result<Option<StoreTicket>, ActivityError> {
        Ok(self
            .store
            .open_ticket_of(&client_id)
            .await?
            .map(|t| StoreTicket {
                ticket_id: t.ticket_id,
                queued: t.status != tickets::TicketStatus::Open,
                manager_id: t.manager_id,
            }))
    }

    /// Whether the client wrote on the ticket since its manager's last reply (the silence timer
    /// asks when it fires: client messages checked in the store wake no workflow).
    #[activity]
    pub async fn client_wrote_since_reply(
        self: Arc<Self>,
        _ctx: ActivityContext,
        ticket_id: Uuid,
    ) -> Result<bool, ActivityError> {
        Ok(self
            .store
            .reply_silence(ticket_id)
            .await?
            .client_wrote_since)
    }

    /// The manager's last reply and whether the client wrote after it: the silence timer of a
    /// ticket checked in the store asks when it fires (replies after the first are not signalled).
    #[activity]
    pub async fn reply_silence(
        self: Arc<Self>,
        _ctx: ActivityContext,
        ticket_id: Uuid,
    ) -> Result<ReplySilence, ActivityError> {
        Ok(self.store.reply_silence(ticket_id).await?)
    }

    /// Closes the ticket and tells the client; closing twice is a no-op.
    #[activity]
    pub async fn close_ticket(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: CloseInput,
    ) -> Result<bool, ActivityError> {
        let closed = self
            .store
            .close_ticket(
                input.ticket_id,
                &input.reason,
                &input.closing_message,
                input.satisfaction_prompt.as_deref(),
            )
            .await?;
        tracing::info!(ticket_id = %input.ticket_id, reason = %input.reason, "ticket closed");
        Ok(closed)
    }
}

impl TicketActivities {
    /// [`TicketActivities::check_pending`]: page by page until none is left, so a backlog larger
    /// than a page ([`tickets::messages::PENDING_PAGE`]) is checked whole, not a page per wake-up.
    pub async fn check_all_pending(
        &self,
        input: CheckInput,
    ) -> Result<CheckOutcome, ActivityError> {
        let mut total: Option<CheckOutcome> = None;
        loop {
            let pending = self.store.pending_client_messages(&input.client_id).await?;
            if pending.is_empty() {
                return Ok(match total {
                    Some(t) => t,
                    None => CheckOutcome {
                        opened: self.store.ticket_exists(input.ticket_id).await?,
                        ..CheckOutcome::default()
                    },
                });
            }
            let full =
                i64::try_from(pending.len()).unwrap_or(i64::MAX) >= tickets::messages::PENDING_PAGE;
            let span = tracing::info_span!(
                "check_pending",
                ticket_id = %input.ticket_id,
                client_id = %input.client_id,
                messages = pending.len(),
                manager_id = tracing::field::Empty,
            );
            follow_messages(&self.store, &span, pending.iter().map(|(id, _)| *id)).await;
            let page = self.check(input.clone(), pending).instrument(span).await?;
            let t = total.get_or_insert_with(CheckOutcome::default);
            t.checked += page.checked;
            t.passed += page.passed;
            t.blocked += page.blocked;
            t.queued |= page.queued;
            t.assigned_to = t.assigned_to.take().or(page.assigned_to);
            t.opened |= page.opened;
            if !full {
                return Ok(total.unwrap_or_default());
            }
        }
    }

    /// The check of [`TicketActivities::check_pending`] over `pending` (not empty).
    async fn check(
        &self,
        input: CheckInput,
        pending: Vec<(Uuid, String)>,
    ) -> Result<CheckOutcome, ActivityError> {
        let spec = &input.spec;
        let check = self.compiled.of(spec)?;
        let verdicts: Vec<_> = pending
            .iter()
            .map(|(id, body)| (*id, check.verdict(body)))
            .collect();
        let classification = pending
            .iter()
            .zip(&verdicts)
            .find(|(_, (_, v))| *v == Verdict::Passed)
            .map(|((_, body), _)| check.classify(body));
        self.store
            .open_ticket(input.ticket_id, &input.client_id, &spec.version)
            .await?;
        apply_checked(&self.store, &input, &verdicts, classification.as_ref()).await
    }
}

/// Applies the verdicts of a check (the built-in rules' or the bank's AFC system's) with the
/// ticket's spec, and says what they did.
pub(crate) async fn apply_checked(
    store: &PgStore,
    input: &CheckInput,
    verdicts: &[(Uuid, Verdict)],
    classification: Option<&TicketClassification>,
) -> Result<CheckOutcome, ActivityError> {
    let applied = store
        .apply_verdicts(
            input.ticket_id,
            verdicts,
            &input.spec.blocked_warning,
            classification,
        )
        .await?;
    if let Some(a) = &applied.assigned {
        tracing::Span::current().record("manager_id", a.manager_id.as_str());
    }
    tracing::info!(
        ticket_id = %input.ticket_id, client_id = %input.client_id,
        passed = applied.passed, blocked = applied.blocked, queued = applied.queued,
        "afc verdicts applied"
    );
    Ok(CheckOutcome {
        checked: verdicts.len(),
        passed: applied.passed,
        blocked: applied.blocked,
        queued: applied.queued,
        assigned_to: applied.assigned.map(|a| a.manager_id),
        opened: true,
    })
}

/// Makes `span` (not yet entered) a child of the trace context stored with the first of
/// `messages` and links it to the others': the client message's trace goes on through the
/// activity that checks it. One query, only while span export is on.
pub(crate) async fn follow_messages(
    store: &PgStore,
    span: &tracing::Span,
    messages: impl IntoIterator<Item = Uuid>,
) {
    if !platform::telemetry::enabled() {
        return;
    }
    let ids: Vec<Uuid> = messages.into_iter().collect();
    match store.message_trace_parents(&ids).await {
        Ok(traces) => platform::telemetry::follow(span, traces.iter().map(String::as_str)),
        Err(e) => tracing::debug!(error = %e, "trace contexts of the messages not read"),
    }
}
