//! The run loop: take in what the signals changed, one step at a time (resolve, replies, the
//! client's messages, AFC verdicts), fire what is due, continue as new before the history grows
//! too long, and sleep until a signal or the next deadline.
//!
//! Every step keeps the order of activities and timers that recorded histories have: a step
//! moved between modules is fine, a step reordered is a change under running tickets (patch it).

use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::Duration;

use temporalio_sdk::{
    CancellableFuture, ContinueAsNewOptions, TimerResult, WorkflowContext, WorkflowResult,
};
use uuid::Uuid;

use super::{
    DEFAULT_HISTORY_LIMIT, TicketInput, TicketOutcome, TicketWorkflow, close, due, external_afc,
    local, now_ms, own_messages,
};
use crate::activities::{CheckInput, TicketActivities};
use crate::lifecycle::{Due, Lifecycle};
use spec::AfcProvider;
use tickets::external_afc::HeldMessage;

/// A timer kept across loop passes (see `armed` in [`run`]).
type ArmedTimer<'a> = Pin<Box<dyn CancellableFuture<Output = TimerResult> + 'a>>;

/// What one run knows beyond the workflow's signalled state.
pub(super) struct Run {
    pub input: TicketInput,
    /// The ticket this run serves (the store's, for a store-checked ticket).
    pub ticket_id: Uuid,
    pub life: Lifecycle,
    /// How many of each signal this run has taken in.
    pub seen: Seen,
    /// External AFC provider: its verdict timeout (ms) and whether manager replies are checked.
    pub kafka: Option<(u64, bool)>,
    /// External AFC provider: messages handed over and waiting for their verdict, and those an
    /// alert was raised for. Both are rebuilt by the publish activity after continue-as-new.
    pub held: Vec<HeldMessage>,
    pub alerted: BTreeSet<Uuid>,
}

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Seen {
    pub version: u64,
    pub wakeups: u64,
    pub replies: u64,
    pub verdicts: u64,
}

/// What a step leaves the loop to do.
pub(super) enum Step {
    /// Look at the state again.
    Again,
    /// The run ends.
    Done(TicketOutcome),
}

impl Run {
    /// The lifecycle query answers what this run knows.
    pub fn publish(&self, ctx: &mut WorkflowContext<TicketWorkflow>) {
        let life = self.life.clone();
        ctx.state_mut(|s| s.lifecycle = life);
    }

    /// After a check that opened no ticket: nothing was signalled since, so the run ends.
    /// Otherwise the loop goes on with the lifecycle published.
    pub fn after_check(
        &self,
        ctx: &mut WorkflowContext<TicketWorkflow>,
        verdicts_too: bool,
    ) -> Step {
        let Seen {
            wakeups, verdicts, ..
        } = self.seen;
        if !self.life.opened
            && ctx.state(|s| s.wakeups == wakeups && (!verdicts_too || s.verdicts == verdicts))
        {
            return Step::Done(TicketOutcome::NothingToDo);
        }
        self.publish(ctx);
        Step::Again
    }

    /// What the check activities take: this ticket, its client and spec.
    pub fn check_input(&self) -> CheckInput {
        CheckInput {
            ticket_id: self.ticket_id,
            client_id: self.input.client_id.clone(),
            spec: self.input.spec.clone(),
        }
    }

    /// Every deadline, earliest first: the spec's timers and (external AFC) the next alert.
    fn deadlines(&self) -> Vec<(i64, Due)> {
        let mut deadlines = self.life.deadlines(&self.input.spec);
        if let Some(at) = external_afc::next_alert(self) {
            deadlines.push((at, Due::AfcTimeout));
        }
        deadlines.sort_by_key(|(at, _)| *at);
        deadlines
    }
}

pub(super) async fn run(
    ctx: &mut WorkflowContext<TicketWorkflow>,
) -> WorkflowResult<TicketOutcome> {
    let input = ctx.state(|s| s.input.clone());
    let mut ticket_id = input.ticket_id;
    let mut life = input.state.clone().unwrap_or_default();
    let kafka_afc = !input.spec.afc_provider.is_builtin();
    // The store hands a store-checked ticket's messages to an external AFC system and applies
    // its verdicts: nothing is carried for this run to do (a combination no earlier code ran).
    let carried = input.carried_messages && !(input.store_checks && kafka_afc);
    ctx.state_mut(|s| {
        s.ticket_id = Some(ticket_id);
        s.lifecycle = life.clone();
        if carried {
            s.wakeups += 1;
            // Verdicts recorded while the last run ended are applied too.
            if kafka_afc {
                s.verdicts += 1;
            }
            s.version += 1;
        }
    });
    // The store runs the message path: the ticket's state is the store's. A run started for a
    // ticket that closed meanwhile (a signal repeated by the outbox relay) has nothing to do.
    if input.store_checks && !input.carried_messages {
        let Some(t) = ctx
            .execute_local_activity(
                TicketActivities::open_ticket_of,
                input.client_id.clone(),
                local(30),
            )
            .await?
        else {
            return Ok(TicketOutcome::NothingToDo);
        };
        ticket_id = t.ticket_id;
        life.opened = true;
        if t.queued && life.queued_at_ms.is_none() {
            life.queued_at_ms = Some(now_ms(ctx));
        }
        if life.manager.is_none() {
            life.manager = t.manager_id;
        }
        ctx.state_mut(|s| {
            s.ticket_id = Some(ticket_id);
            s.lifecycle = life.clone();
        });
    }
    let kafka = match &input.spec.afc_provider {
        AfcProvider::Kafka {
            timeout_ms,
            check_manager_replies,
        } => Some((*timeout_ms, *check_manager_replies)),
        AfcProvider::Builtin => None,
    };
    let mut run = Run {
        input,
        ticket_id,
        life,
        seen: Seen::default(),
        kafka,
        held: Vec::new(),
        alerted: BTreeSet::new(),
    };
    // One timer per deadline (store-checked tickets): kept while its deadline stands,
    // cancelled when a signal moves it. Earlier tickets keep their recorded timer pattern.
    let timers = ctx.clone();
    let mut armed: Option<(i64, ArmedTimer<'_>)> = None;
    loop {
        let now = now_ms(ctx);
        let (version, wakeups, replies, verdicts, assigned, resolve) = ctx.state(|s| {
            (
                s.version,
                s.wakeups,
                s.replies,
                s.verdicts,
                s.assigned.clone(),
                s.resolve.clone(),
            )
        });
        run.seen.version = run.seen.version.max(version);
        let (announced_open, announced_queued) =
            ctx.state(|s| (s.announced_open, s.announced_queued));
        if announced_open || announced_queued {
            run.life.opened = true;
        }
        if announced_queued && run.life.queued_at_ms.is_none() {
            run.life.queued_at_ms = Some(now);
        }

        if let Some(r) = resolve.filter(|r| r.ticket_id == run.ticket_id) {
            let reason = format!("resolved by {}", r.manager_id);
            let ticket_id = run.ticket_id;
            return close::close(ctx, &run, &reason, false).await.map(|()| {
                TicketOutcome::Resolved {
                    ticket_id,
                    by: r.manager_id,
                }
            });
        }
        if let Some(m) = assigned
            && run.life.manager.is_none()
        {
            run.life.manager = Some(m);
        }
        if replies > run.seen.replies {
            run.seen.replies = replies;
            run.life.responded = true;
            run.life.silent_since_ms = Some(now);
            // A store-checked ticket's replies were queued for AFC by their transaction.
            if let Some((_, true)) = run.kafka
                && !run.input.store_checks
            {
                external_afc::hand_over_replies(ctx, &mut run).await?;
            }
        }
        let step = if wakeups > run.seen.wakeups && run.kafka.is_some() {
            run.seen.wakeups = wakeups;
            Some(external_afc::hand_over(ctx, &mut run).await?)
        } else if verdicts > run.seen.verdicts {
            run.seen.verdicts = verdicts;
            Some(external_afc::apply_verdicts(ctx, &mut run, now).await?)
        } else if wakeups > run.seen.wakeups {
            run.seen.wakeups = wakeups;
            Some(own_messages::check(ctx, &mut run, now).await?)
        } else {
            None
        };
        match step {
            Some(Step::Again) => continue,
            Some(Step::Done(outcome)) => return Ok(outcome),
            None => {}
        }

        // Fire what is due, earliest first.
        let deadlines = run.deadlines();
        if let Some(&(at, due)) = deadlines.first()
            && at <= now
        {
            match due::fire(ctx, &mut run, due, now).await? {
                Step::Again => continue,
                Step::Done(outcome) => return Ok(outcome),
            }
        }

        // A long ticket continues as new before Temporal's per-execution limits.
        let limit = run.input.history_limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
        if ctx.history_length() >= limit || ctx.continue_as_new_suggested() {
            ctx.continue_as_new(
                TicketInput {
                    ticket_id: run.ticket_id,
                    client_id: run.input.client_id.clone(),
                    spec: run.input.spec.clone(),
                    carried_messages: true,
                    state: Some(run.life.clone()),
                    history_limit: run.input.history_limit,
                    store_checks: run.input.store_checks,
                    announced: None,
                },
                ContinueAsNewOptions::default(),
            )?;
        }

        // Sleep until a signal or the next deadline, with the lifecycle query up to date.
        run.publish(ctx);
        let seen_version = run.seen.version;
        let mut changed = ctx.wait_condition(move |s: &TicketWorkflow| s.version > seen_version);
        if run.input.store_checks {
            let next = deadlines.first().map(|(at, _)| *at);
            if armed.as_ref().map(|(at, _)| *at) != next {
                if let Some((_, superseded)) = armed.take() {
                    superseded.cancel();
                }
                armed = next.map(|at| {
                    let wait = Duration::from_millis(u64::try_from(at - now).unwrap_or(1).max(1));
                    let timer: ArmedTimer<'_> = Box::pin(timers.timer(wait));
                    (at, timer)
                });
            }
            let mut fired = false;
            match armed.as_mut() {
                Some((_, timer)) => {
                    let mut timer = timer.as_mut();
                    temporalio_sdk::workflows::select! {
                        r = changed => r?,
                        _ = timer => fired = true,
                    }
                }
                None => changed.await?,
            }
            if fired {
                armed = None;
            }
            continue;
        }
        match deadlines.first() {
            Some((at, _)) => {
                let wait = Duration::from_millis(u64::try_from(at - now).unwrap_or(1).max(1));
                temporalio_sdk::workflows::select! {
                    r = changed => r?,
                    _ = ctx.timer(wait) => {}
                }
            }
            None => changed.await?,
        }
    }
}
