//! Activities: every side effect of the ticket workflow. Each is idempotent, so Temporal's retries
//! are harmless.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tickets::PgStore;
use uuid::Uuid;

use crate::afc::{AfcRule, Rules};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckInput {
    pub ticket_id: Uuid,
    pub client_id: String,
    pub rules: Vec<AfcRule>,
    pub blocked_warning: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// Messages checked by this call (0 when every one was already handled).
    pub checked: usize,
    pub passed: usize,
    pub blocked: usize,
    pub assigned_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseInput {
    pub ticket_id: Uuid,
    pub reason: String,
    pub closing_message: String,
}

pub struct TicketActivities {
    pub store: PgStore,
}

#[activities]
impl TicketActivities {
    /// Runs the AFC check over every pending message of the client and records the verdicts on the
    /// ticket, opening it first if needed. The first passed message queues the ticket for a manager.
    #[activity]
    pub async fn check_pending(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: CheckInput,
    ) -> Result<CheckOutcome, ActivityError> {
        let pending = self.store.pending_client_messages(&input.client_id).await?;
        if pending.is_empty() {
            return Ok(CheckOutcome::default());
        }
        let rules = Rules::compile(&input.rules)?;
        let verdicts: Vec<_> = pending
            .iter()
            .map(|(id, body)| (*id, rules.check(body)))
            .collect();
        self.store
            .open_ticket(input.ticket_id, &input.client_id)
            .await?;
        let applied = self
            .store
            .apply_verdicts(input.ticket_id, &verdicts, &input.blocked_warning)
            .await?;
        tracing::info!(
            ticket_id = %input.ticket_id, client_id = %input.client_id,
            passed = applied.passed, blocked = applied.blocked,
            "afc verdicts applied"
        );
        Ok(CheckOutcome {
            checked: verdicts.len(),
            passed: applied.passed,
            blocked: applied.blocked,
            assigned_to: applied.assigned.map(|a| a.manager_id),
        })
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
            .close_ticket(input.ticket_id, &input.reason, &input.closing_message)
            .await?;
        tracing::info!(ticket_id = %input.ticket_id, reason = %input.reason, "ticket closed");
        Ok(closed)
    }
}
