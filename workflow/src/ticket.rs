//! The ticket workflow: one per client conversation, id `conversation-<client id>`.
//!
//! Deterministic: no clock, randomness or I/O here; the store is touched only through activities.
//! A message signal is only a wake-up: the check activity takes every pending message of the client
//! from the store, so a duplicate signal changes nothing and a message that arrives while the ticket
//! closes is carried into the next ticket.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ContinueAsNewOptions, LocalActivityOptions, SyncWorkflowContext, WorkflowContext,
    WorkflowResult,
};
use uuid::Uuid;

use crate::activities::{CheckInput, CloseInput, TicketActivities};
use crate::spec::TicketSpec;

/// Workflow id of a client's conversation: signal-with-start on it reaches the open ticket or
/// starts a new one once the last closed.
pub fn workflow_id(client_id: &str) -> String {
    format!("conversation-{client_id}")
}

/// The ticket that follows `ticket_id` when messages arrive while it closes.
pub fn next_ticket_id(ticket_id: Uuid) -> Uuid {
    Uuid::new_v5(&ticket_id, b"next")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketInput {
    pub ticket_id: Uuid,
    pub client_id: String,
    pub spec: TicketSpec,
    /// Messages arrived while the previous ticket closed: check them at once.
    #[serde(default)]
    pub carried_messages: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveRequest {
    pub ticket_id: Uuid,
    pub manager_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TicketOutcome {
    Resolved {
        ticket_id: Uuid,
        by: String,
    },
    /// Woken only by messages already handled elsewhere: no ticket was opened.
    NothingToDo,
}

#[workflow]
#[derive(Default)]
pub struct TicketWorkflow {
    wakeups: u64,
    resolve: Option<ResolveRequest>,
}

fn local(timeout_secs: u64) -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(timeout_secs))
        .build()
}

#[workflow_methods]
impl TicketWorkflow {
    #[run]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: TicketInput,
    ) -> WorkflowResult<TicketOutcome> {
        let ticket_id = input.ticket_id;
        if input.carried_messages {
            ctx.state_mut(|s| s.wakeups += 1);
        }
        let mut handled = 0;
        let mut opened = false;
        loop {
            ctx.wait_condition(|s| {
                s.wakeups > handled || s.resolve.as_ref().is_some_and(|r| r.ticket_id == ticket_id)
            })
            .await?;
            let resolve = ctx.state(|s| s.resolve.clone().filter(|r| r.ticket_id == ticket_id));
            if let Some(r) = resolve {
                ctx.execute_local_activity(
                    TicketActivities::close_ticket,
                    CloseInput {
                        ticket_id,
                        reason: format!("resolved by {}", r.manager_id),
                        closing_message: input.spec.closing_message.clone(),
                    },
                    local(30),
                )
                .await?;
                if ctx.state(|s| s.wakeups > handled) {
                    // Messages that came in while closing belong to a new ticket.
                    ctx.continue_as_new(
                        TicketInput {
                            ticket_id: next_ticket_id(ticket_id),
                            client_id: input.client_id.clone(),
                            spec: input.spec.clone(),
                            carried_messages: true,
                        },
                        ContinueAsNewOptions::default(),
                    )?;
                }
                return Ok(TicketOutcome::Resolved {
                    ticket_id,
                    by: r.manager_id,
                });
            }
            let seen = ctx.state(|s| s.wakeups);
            let checked = ctx
                .execute_local_activity(
                    TicketActivities::check_pending,
                    CheckInput {
                        ticket_id,
                        client_id: input.client_id.clone(),
                        rules: input.spec.afc_rules.clone(),
                        blocked_warning: input.spec.blocked_warning.clone(),
                    },
                    local(60),
                )
                .await?;
            handled = seen;
            opened |= checked.checked > 0;
            if !opened && ctx.state(|s| s.wakeups == handled) {
                return Ok(TicketOutcome::NothingToDo);
            }
        }
    }

    /// A client message was stored: check every pending message of the client.
    #[signal]
    pub fn message_arrived(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _message_id: Uuid) {
        self.wakeups += 1;
    }

    /// The assigned manager resolved the ticket.
    #[signal]
    pub fn resolve(&mut self, _ctx: &mut SyncWorkflowContext<Self>, req: ResolveRequest) {
        self.resolve = Some(req);
    }
}
