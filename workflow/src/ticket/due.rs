//! Firing a deadline that is due: an escalation round, the first-response SLA breach, the alert
//! for a late AFC verdict, or the close on client silence (after asking the store where the
//! silence stands, for a store-checked ticket).

use temporalio_sdk::{WorkflowContext, WorkflowResult};

use super::run::{Run, Step};
use super::{TicketOutcome, TicketWorkflow, close, external_afc, local};
use crate::activities::TicketActivities;
use crate::lifecycle::{Due, silence_deadline_moved};

/// Patch: the silence timer of a store-checked ticket asks the store for the last reply (replies
/// after the first are no longer signalled) instead of only whether the client wrote since.
const SILENCE_FROM_STORE: &str = "silence-from-store";

pub(super) async fn fire(
    ctx: &mut WorkflowContext<TicketWorkflow>,
    run: &mut Run,
    due: Due,
    now: i64,
) -> WorkflowResult<Step> {
    match due {
        Due::Escalate => {
            let round = run.life.escalations + 1;
            ctx.execute_local_activity(
                TicketActivities::escalate,
                (run.ticket_id, round),
                local(30),
            )
            .await?;
            run.life.escalations = round;
        }
        Due::Sla => {
            ctx.execute_local_activity(
                TicketActivities::report_sla_breach,
                run.ticket_id,
                local(30),
            )
            .await?;
            run.life.sla_reported = true;
        }
        Due::AfcTimeout => external_afc::alert_late(ctx, run, now).await?,
        Due::AutoClose => return auto_close(ctx, run, now).await,
    }
    run.publish(ctx);
    Ok(Step::Again)
}

/// The client stayed silent after the manager's last reply: close, unless the store says the
/// silence moved.
async fn auto_close(
    ctx: &mut WorkflowContext<TicketWorkflow>,
    run: &mut Run,
    now: i64,
) -> WorkflowResult<Step> {
    let store_checks = run.input.store_checks;
    // Client messages checked in the store wake no workflow, nor do replies after the first:
    // where the silence stands is the store's to say.
    if store_checks && ctx.patched(SILENCE_FROM_STORE) {
        let silence = ctx
            .execute_local_activity(TicketActivities::reply_silence, run.ticket_id, local(30))
            .await?;
        if let Some(since) = silence_deadline_moved(&run.input.spec, &silence, now) {
            run.life.silent_since_ms = Some(since);
            run.publish(ctx);
            return Ok(Step::Again);
        }
    } else if store_checks
        && ctx
            .execute_local_activity(
                TicketActivities::client_wrote_since_reply,
                run.ticket_id,
                local(30),
            )
            .await?
    {
        // Tickets whose silence timer fired before the patch: every reply was signalled to
        // them, and the next one re-arms it.
        run.life.silent_since_ms = None;
        run.publish(ctx);
        return Ok(Step::Again);
    }
    let ticket_id = run.ticket_id;
    close::close(ctx, run, "auto_closed: client silent", true)
        .await
        .map(|()| Step::Done(TicketOutcome::AutoClosed { ticket_id }))
}
