//! The workflow's own message path (tickets started before the store's path existed, and tickets
//! of another spec version than the running service's, until they close): a message signal is a
//! wake-up, and the check activity takes every pending message of the client from the store, so
//! a duplicate signal changes nothing.

use temporalio_sdk::{WorkflowContext, WorkflowResult};

use super::TicketWorkflow;
use super::local;
use super::run::{Run, Step};
use crate::activities::TicketActivities;

/// Checks the client's pending messages with the built-in rules.
pub(super) async fn check(
    ctx: &mut WorkflowContext<TicketWorkflow>,
    run: &mut Run,
    now: i64,
) -> WorkflowResult<Step> {
    let out = ctx
        .execute_local_activity(
            TicketActivities::check_pending,
            run.check_input(),
            local(60),
        )
        .await?;
    let life = &mut run.life;
    if out.checked > 0 {
        life.opened = true;
        // The client wrote: they are not silent.
        life.silent_since_ms = None;
    }
    if out.opened {
        life.opened = true;
    }
    if out.queued {
        life.queued_at_ms = Some(now);
    }
    if let Some(m) = out.assigned_to
        && life.manager.is_none()
    {
        life.manager = Some(m);
    }
    Ok(run.after_check(ctx, false))
}
