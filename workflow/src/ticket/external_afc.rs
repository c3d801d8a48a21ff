//! The steps of a ticket screened by the bank's own AFC system (`afc_provider: kafka`) on the
//! workflow's message path: messages (and, if the spec says so, manager replies) are handed over
//! and stay held until their verdicts; the verdicts the consumer recorded are applied with this
//! ticket's spec; a message whose verdict is late raises one alert and stays held. A
//! store-checked ticket does none of this here: the store hands its messages over and applies
//! the verdicts, and the AFC relay raises the alert.

use temporalio_sdk::{WorkflowContext, WorkflowResult};

use super::run::{Run, Step};
use super::{TicketWorkflow, local, publish_options};
use crate::afc_activities::{AfcActivities, PublishInput, PublishOutcome, TimeoutInput};

/// Hands the manager's pending replies over (the spec checks replies too).
pub(super) async fn hand_over_replies(
    ctx: &mut WorkflowContext<TicketWorkflow>,
    run: &mut Run,
) -> WorkflowResult<()> {
    run.held = publish(ctx, run, true).await?.held;
    Ok(())
}

/// Hands the client's pending messages over (and the replies, if the spec checks them).
pub(super) async fn hand_over(
    ctx: &mut WorkflowContext<TicketWorkflow>,
    run: &mut Run,
) -> WorkflowResult<Step> {
    let replies_too = run.kafka.is_some_and(|(_, replies)| replies);
    let out = publish(ctx, run, replies_too).await?;
    if out.published > 0 {
        // The client wrote: they are not silent.
        run.life.silent_since_ms = None;
    }
    if !out.held.is_empty() {
        run.life.opened = true;
    }
    run.held = out.held;
    Ok(run.after_check(ctx, true))
}

/// The publish activity: the client's pending messages, and the ticket's replies if `replies`.
async fn publish(
    ctx: &mut WorkflowContext<TicketWorkflow>,
    run: &Run,
    replies: bool,
) -> WorkflowResult<PublishOutcome> {
    Ok(ctx
        .execute_activity(
            AfcActivities::publish_pending,
            PublishInput {
                ticket_id: run.ticket_id,
                client_id: run.input.client_id.clone(),
                spec_version: run.input.spec.version.clone(),
                replies_of: replies.then_some(run.ticket_id),
            },
            publish_options(),
        )
        .await?)
}

/// Applies the verdicts the consumer recorded, with this ticket's spec.
pub(super) async fn apply_verdicts(
    ctx: &mut WorkflowContext<TicketWorkflow>,
    run: &mut Run,
    now: i64,
) -> WorkflowResult<Step> {
    let out = ctx
        .execute_local_activity(
            AfcActivities::apply_afc_verdicts,
            run.check_input(),
            local(60),
        )
        .await?;
    run.life.checked(&out.outcome, now);
    if !out.held.is_empty() {
        run.life.opened = true;
    }
    run.held = out.held;
    Ok(run.after_check(ctx, true))
}

/// When the first held message not yet alerted for is late.
pub(super) fn next_alert(run: &Run) -> Option<i64> {
    let (timeout_ms, _) = run.kafka?;
    run.held
        .iter()
        .filter(|h| !run.alerted.contains(&h.id))
        .map(|h| h.sent_at_ms.saturating_add_unsigned(timeout_ms))
        .min()
}

/// Raises the alert for every held message late at `now`, once per message; they stay held
/// until their verdicts.
pub(super) async fn alert_late(
    ctx: &mut WorkflowContext<TicketWorkflow>,
    run: &mut Run,
    now: i64,
) -> WorkflowResult<()> {
    let timeout_ms = run.kafka.map_or(0, |(t, _)| t);
    let due: Vec<_> = run
        .held
        .iter()
        .filter(|h| {
            !run.alerted.contains(&h.id) && h.sent_at_ms.saturating_add_unsigned(timeout_ms) <= now
        })
        .map(|h| h.id)
        .collect();
    ctx.execute_local_activity(
        AfcActivities::report_afc_timeout,
        TimeoutInput {
            ticket_id: run.ticket_id,
            client_id: run.input.client_id.clone(),
            message_ids: due.clone(),
            timeout_ms,
        },
        local(30),
    )
    .await?;
    run.alerted.extend(due);
    Ok(())
}
