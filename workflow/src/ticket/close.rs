//! Closing a ticket, and what comes after: the client's next ticket when the store opened one or
//! a message came in meanwhile (continue-as-new), else the end of the run.

use temporalio_sdk::{ContinueAsNewOptions, WorkflowContext, WorkflowResult};

use super::run::Run;
use super::{TicketInput, TicketWorkflow, local, next_ticket_id};
use crate::activities::{CloseInput, TicketActivities};

/// Closes the run's ticket (`auto`: by the silence timer) with the spec's closing message.
pub(super) async fn close(
    ctx: &mut WorkflowContext<TicketWorkflow>,
    run: &Run,
    reason: &str,
    auto: bool,
) -> WorkflowResult<()> {
    let input = &run.input;
    let spec = &input.spec;
    ctx.execute_local_activity(
        TicketActivities::close_ticket,
        CloseInput {
            ticket_id: run.ticket_id,
            reason: reason.to_owned(),
            closing_message: if auto {
                spec.auto_close_message.clone()
            } else {
                spec.closing_message.clone()
            },
            satisfaction_prompt: spec.satisfaction_prompt.clone(),
        },
        local(30),
    )
    .await?;
    // Checked after the close committed. The store opened the client's next ticket meanwhile:
    // the next run serves it (and asks the store for its state).
    if let Some(next) = ctx.state(|s| s.next_ticket) {
        ctx.continue_as_new(
            TicketInput {
                ticket_id: next,
                client_id: input.client_id.clone(),
                spec: spec.clone(),
                carried_messages: false,
                state: None,
                history_limit: input.history_limit,
                store_checks: true,
                announced: None,
            },
            ContinueAsNewOptions::default(),
        )?;
    }
    // A message signalled meanwhile (a ticket that checks its own messages) opens the next
    // ticket.
    if ctx.state(|s| s.wakeups) > run.seen.wakeups {
        ctx.continue_as_new(
            TicketInput {
                ticket_id: next_ticket_id(run.ticket_id),
                client_id: input.client_id.clone(),
                spec: spec.clone(),
                carried_messages: true,
                state: None,
                history_limit: input.history_limit,
                store_checks: input.store_checks,
                announced: None,
            },
            ContinueAsNewOptions::default(),
        )?;
    }
    Ok(())
}
