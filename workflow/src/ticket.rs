//! The ticket workflow: one per client conversation, id `conversation-<client id>`.
//!
//! A small state machine, open → waiting → assigned → closed, with the spec's timers raced against
//! signals: `escalate_after` while waiting (raise priority, emit an event, repeat), the
//! `first_response_within` SLA, and `auto_close_after_client_silence` after the manager's last
//! reply. Deadlines are absolute instants computed from the workflow clock (business-hours
//! calendars included).
//!
//! Two message paths, chosen by the ticket's input (`store_checks`):
//! - the store's (every ticket the inbound transaction opens): messages are checked and attached
//!   in PostgreSQL; the workflow hears only lifecycle changes (`opened`, `assigned`, the first
//!   `manager_replied`, `resolve`), takes its state from the store when it starts, asks the store
//!   for the last reply and whether the client wrote since before closing on silence, and keeps
//!   one timer per deadline, cancelled when a signal moves it;
//!   With an external AFC system the store holds the messages and hands them over, and the
//!   verdict consumer applies the verdicts: the workflow hears `ticket_queued` as with the builtin
//!   rules, and the AFC timeout alert is the store's (the AFC relay), not a workflow timer;
//! - the workflow's own (tickets started before the store's path existed, and tickets of another
//!   spec version than the running service's, until they close): a message signal is a wake-up, the check activity takes every
//!   pending message of the client from the store, so a duplicate signal changes nothing and
//!   messages that arrive while the ticket closes are carried into the next ticket. Its timer
//!   pattern is the recorded one (a losing timer is re-armed for the same instant).
//!
//! Deterministic: no clock, randomness, I/O or hash-map iteration here; every side effect is an
//! activity.

use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, CancellableFuture, ContinueAsNewOptions, LocalActivityOptions,
    SyncWorkflowContext, TimerResult, WorkflowContext, WorkflowContextView, WorkflowResult,
};
use uuid::Uuid;

use crate::activities::{CheckInput, CloseInput, TicketActivities};
use crate::afc_activities::{AfcActivities, PublishInput, TimeoutInput};
pub use crate::lifecycle::Lifecycle;
use crate::lifecycle::{Due, silence_deadline_moved};
use spec::{AfcProvider, TicketSpec};
use tickets::external_afc::HeldMessage;

/// Workflow id of a client's conversation: signal-with-start on it reaches the open ticket or
/// starts a new one once the last closed.
pub fn workflow_id(client_id: &str) -> String {
    format!("conversation-{client_id}")
}

/// The ticket that follows `ticket_id` when messages arrive while it closes.
pub fn next_ticket_id(ticket_id: Uuid) -> Uuid {
    Uuid::new_v5(&ticket_id, b"next")
}

/// History length after which a ticket continues as new (Temporal's hard limit is 51,200 events).
pub const DEFAULT_HISTORY_LIMIT: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketInput {
    pub ticket_id: Uuid,
    pub client_id: String,
    pub spec: TicketSpec,
    /// Messages may be pending (carried from a closing ticket or across continue-as-new): check
    /// them at once.
    #[serde(default)]
    pub carried_messages: bool,
    /// The lifecycle so far, when this run continues an earlier one.
    #[serde(default)]
    pub state: Option<Lifecycle>,
    /// Continue as new once the history is this long (tests use a low value).
    #[serde(default)]
    pub history_limit: Option<u32>,
    /// The store runs this ticket's message path: the inbound transaction opened the ticket and
    /// checks its messages, and the workflow hears only lifecycle changes (`opened`, assignment,
    /// replies, resolve). False in every input from before that path existed: those tickets check
    /// their own messages, as they did, until they close. Keyed by the input rather than a patch
    /// marker so that a workflow started by the earlier code but not yet run takes the earlier
    /// path too.
    #[serde(default)]
    pub store_checks: bool,
    /// What the store said of the ticket before this run started (carried by the run that heard
    /// it while closing).
    #[serde(default)]
    pub announced: Option<TicketOpened>,
}

/// The store opened `ticket_id` for the client (`ticket_opened`), or queued it for a manager
/// (`ticket_queued`, `queued` true).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketOpened {
    pub ticket_id: Uuid,
    pub queued: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveRequest {
    pub ticket_id: Uuid,
    pub manager_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketSignal {
    pub ticket_id: Uuid,
    pub manager_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TicketOutcome {
    Resolved {
        ticket_id: Uuid,
        by: String,
    },
    AutoClosed {
        ticket_id: Uuid,
    },
    /// Woken only by messages already handled elsewhere: no ticket was opened.
    NothingToDo,
}

#[workflow]
pub struct TicketWorkflow {
    input: TicketInput,
    ticket_id: Option<Uuid>,
    /// Bumped by every signal: the run loop re-evaluates when it changes.
    version: u64,
    wakeups: u64,
    replies: u64,
    /// Bumped by every AFC verdict signal (Kafka provider).
    verdicts: u64,
    assigned: Option<String>,
    resolve: Option<ResolveRequest>,
    lifecycle: Lifecycle,
    /// The store announced this ticket open / queued (`opened` signals for it).
    announced_open: bool,
    announced_queued: bool,
    /// The store opened another ticket for the client: this one closed (or is closing), and the
    /// next run serves that one.
    next_ticket: Option<Uuid>,
}

fn local(timeout_secs: u64) -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(timeout_secs))
        .build()
}

/// Publishing to the AFC system is external I/O: a regular activity, retried until Kafka takes it.
fn publish_options() -> ActivityOptions {
    ActivityOptions::start_to_close_timeout(Duration::from_secs(60))
}

fn now_ms(ctx: &WorkflowContext<TicketWorkflow>) -> i64 {
    ctx.workflow_time()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Patch: the silence timer of a store-checked ticket asks the store for the last reply (replies
/// after the first are no longer signalled) instead of only whether the client wrote since.
const SILENCE_FROM_STORE: &str = "silence-from-store";

/// A timer kept across loop passes (see `armed` in the run loop).
type ArmedTimer<'a> = std::pin::Pin<Box<dyn CancellableFuture<Output = TimerResult> + 'a>>;

impl TicketWorkflow {
    fn hear_opened(&mut self, o: &TicketOpened) {
        if self.ticket_id == Some(o.ticket_id) {
            self.announced_open = true;
            self.announced_queued |= o.queued;
        } else {
            self.next_ticket = Some(o.ticket_id);
        }
    }
}

#[workflow_methods]
impl TicketWorkflow {
    /// The ticket id is known before any signal of the first task is applied (a signal-with-start
    /// delivers both at once), so a signal about another ticket is never taken for this one's.
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: TicketInput) -> Self {
        let mut me = Self {
            ticket_id: Some(input.ticket_id),
            input: input.clone(),
            version: 0,
            wakeups: 0,
            replies: 0,
            verdicts: 0,
            assigned: None,
            resolve: None,
            lifecycle: Lifecycle::default(),
            announced_open: false,
            announced_queued: false,
            next_ticket: None,
        };
        if let Some(a) = &input.announced {
            me.hear_opened(a);
        }
        me
    }

    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<TicketOutcome> {
        let input = ctx.state(|s| s.input.clone());
        let mut ticket_id = input.ticket_id;
        let spec = input.spec.clone();
        let mut life = input.state.clone().unwrap_or_default();
        let kafka_afc = !spec.afc_provider.is_builtin();
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
        let (mut seen_wakeups, mut seen_replies, mut seen_version) = (0, 0, 0);
        // One timer per deadline (store-checked tickets): kept while its deadline stands,
        // cancelled when a signal moves it. Earlier tickets keep their recorded timer pattern.
        let timers = ctx.clone();
        let mut armed: Option<(i64, ArmedTimer<'_>)> = None;
        // Kafka AFC provider: messages handed over and waiting for their verdict, and those an
        // alert was raised for. Both are rebuilt by the publish activity after continue-as-new.
        let kafka = match &spec.afc_provider {
            AfcProvider::Kafka {
                timeout_ms,
                check_manager_replies,
            } => Some((*timeout_ms, *check_manager_replies)),
            AfcProvider::Builtin => None,
        };
        let mut held: Vec<HeldMessage> = Vec::new();
        let mut alerted: BTreeSet<Uuid> = BTreeSet::new();
        let mut seen_verdicts = 0;
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
            seen_version = seen_version.max(version);
            let (announced_open, announced_queued) =
                ctx.state(|s| (s.announced_open, s.announced_queued));
            if announced_open || announced_queued {
                life.opened = true;
            }
            if announced_queued && life.queued_at_ms.is_none() {
                life.queued_at_ms = Some(now);
            }

            if let Some(r) = resolve.filter(|r| r.ticket_id == ticket_id) {
                let reason = format!("resolved by {}", r.manager_id);
                return Self::close(ctx, &input, ticket_id, &reason, false, seen_wakeups)
                    .await
                    .map(|()| TicketOutcome::Resolved {
                        ticket_id,
                        by: r.manager_id,
                    });
            }
            if let Some(m) = assigned
                && life.manager.is_none()
            {
                life.manager = Some(m);
            }
            if replies > seen_replies {
                seen_replies = replies;
                life.responded = true;
                life.silent_since_ms = Some(now);
                // A store-checked ticket's replies were queued for AFC by their transaction.
                if let Some((_, true)) = kafka
                    && !input.store_checks
                {
                    let out = ctx
                        .execute_activity(
                            AfcActivities::publish_pending,
                            PublishInput {
                                ticket_id,
                                client_id: input.client_id.clone(),
                                spec_version: spec.version.clone(),
                                replies_of: Some(ticket_id),
                            },
                            publish_options(),
                        )
                        .await?;
                    held = out.held;
                }
            }
            if wakeups > seen_wakeups
                && let Some((_, replies_too)) = kafka
            {
                // Kafka provider: hand the messages over; they stay held until their verdicts.
                seen_wakeups = wakeups;
                let out = ctx
                    .execute_activity(
                        AfcActivities::publish_pending,
                        PublishInput {
                            ticket_id,
                            client_id: input.client_id.clone(),
                            spec_version: spec.version.clone(),
                            replies_of: replies_too.then_some(ticket_id),
                        },
                        publish_options(),
                    )
                    .await?;
                if out.published > 0 {
                    // The client wrote: they are not silent.
                    life.silent_since_ms = None;
                }
                if !out.held.is_empty() {
                    life.opened = true;
                }
                held = out.held;
                if !life.opened
                    && ctx.state(|s| s.wakeups == seen_wakeups && s.verdicts == seen_verdicts)
                {
                    return Ok(TicketOutcome::NothingToDo);
                }
                ctx.state_mut(|s| s.lifecycle = life.clone());
                continue;
            }
            if verdicts > seen_verdicts {
                // Verdicts recorded by the consumer: apply them with this ticket's spec.
                seen_verdicts = verdicts;
                let out = ctx
                    .execute_local_activity(
                        AfcActivities::apply_afc_verdicts,
                        CheckInput {
                            ticket_id,
                            client_id: input.client_id.clone(),
                            spec: spec.clone(),
                        },
                        local(60),
                    )
                    .await?;
                life.checked(&out.outcome, now);
                if !out.held.is_empty() {
                    life.opened = true;
                }
                held = out.held;
                if !life.opened
                    && ctx.state(|s| s.wakeups == seen_wakeups && s.verdicts == seen_verdicts)
                {
                    return Ok(TicketOutcome::NothingToDo);
                }
                ctx.state_mut(|s| s.lifecycle = life.clone());
                continue;
            }
            if wakeups > seen_wakeups {
                seen_wakeups = wakeups;
                let out = ctx
                    .execute_local_activity(
                        TicketActivities::check_pending,
                        CheckInput {
                            ticket_id,
                            client_id: input.client_id.clone(),
                            spec: spec.clone(),
                        },
                        local(60),
                    )
                    .await?;
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
                if !life.opened && ctx.state(|s| s.wakeups == seen_wakeups) {
                    return Ok(TicketOutcome::NothingToDo);
                }
                ctx.state_mut(|s| s.lifecycle = life.clone());
                continue;
            }

            // Fire what is due, earliest first.
            let mut deadlines = life.deadlines(&spec);
            if let Some((timeout_ms, _)) = kafka
                && let Some(at) = held
                    .iter()
                    .filter(|h| !alerted.contains(&h.id))
                    .map(|h| h.sent_at_ms.saturating_add_unsigned(timeout_ms))
                    .min()
            {
                deadlines.push((at, Due::AfcTimeout));
            }
            deadlines.sort_by_key(|(at, _)| *at);
            if let Some((at, due)) = deadlines.first()
                && *at <= now
            {
                match due {
                    Due::Escalate => {
                        let round = life.escalations + 1;
                        ctx.execute_local_activity(
                            TicketActivities::escalate,
                            (ticket_id, round),
                            local(30),
                        )
                        .await?;
                        life.escalations = round;
                    }
                    Due::Sla => {
                        ctx.execute_local_activity(
                            TicketActivities::report_sla_breach,
                            ticket_id,
                            local(30),
                        )
                        .await?;
                        life.sla_reported = true;
                    }
                    Due::AfcTimeout => {
                        let timeout_ms = kafka.map_or(0, |(t, _)| t);
                        let due: Vec<Uuid> = held
                            .iter()
                            .filter(|h| {
                                !alerted.contains(&h.id)
                                    && h.sent_at_ms.saturating_add_unsigned(timeout_ms) <= now
                            })
                            .map(|h| h.id)
                            .collect();
                        ctx.execute_local_activity(
                            AfcActivities::report_afc_timeout,
                            TimeoutInput {
                                ticket_id,
                                client_id: input.client_id.clone(),
                                message_ids: due.clone(),
                                timeout_ms,
                            },
                            local(30),
                        )
                        .await?;
                        // Alerted once per message; it stays held until its verdict.
                        alerted.extend(due);
                    }
                    Due::AutoClose => {
                        // Client messages checked in the store wake no workflow, nor do replies
                        // after the first: where the silence stands is the store's to say.
                        if input.store_checks && ctx.patched(SILENCE_FROM_STORE) {
                            let silence = ctx
                                .execute_local_activity(
                                    TicketActivities::reply_silence,
                                    ticket_id,
                                    local(30),
                                )
                                .await?;
                            if let Some(since) = silence_deadline_moved(&spec, &silence, now) {
                                life.silent_since_ms = Some(since);
                                ctx.state_mut(|s| s.lifecycle = life.clone());
                                continue;
                            }
                        } else if input.store_checks
                            && ctx
                                .execute_local_activity(
                                    TicketActivities::client_wrote_since_reply,
                                    ticket_id,
                                    local(30),
                                )
                                .await?
                        {
                            // Tickets whose silence timer fired before the patch: every reply
                            // was signalled to them, and the next one re-arms it.
                            life.silent_since_ms = None;
                            ctx.state_mut(|s| s.lifecycle = life.clone());
                            continue;
                        }
                        return Self::close(
                            ctx,
                            &input,
                            ticket_id,
                            "auto_closed: client silent",
                            true,
                            seen_wakeups,
                        )
                        .await
                        .map(|()| TicketOutcome::AutoClosed { ticket_id });
                    }
                }
                ctx.state_mut(|s| s.lifecycle = life.clone());
                continue;
            }

            // A long ticket continues as new before Temporal's per-execution limits.
            let limit = input.history_limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
            if ctx.history_length() >= limit || ctx.continue_as_new_suggested() {
                ctx.continue_as_new(
                    TicketInput {
                        ticket_id,
                        client_id: input.client_id.clone(),
                        spec: spec.clone(),
                        carried_messages: true,
                        state: Some(life.clone()),
                        history_limit: input.history_limit,
                        store_checks: input.store_checks,
                        announced: None,
                    },
                    ContinueAsNewOptions::default(),
                )?;
            }

            // Sleep until a signal or the next deadline, with the lifecycle query up to date.
            ctx.state_mut(|s| s.lifecycle = life.clone());
            let mut changed = ctx.wait_condition(move |s: &Self| s.version > seen_version);
            if input.store_checks {
                let next = deadlines.first().map(|(at, _)| *at);
                if armed.as_ref().map(|(at, _)| *at) != next {
                    if let Some((_, superseded)) = armed.take() {
                        superseded.cancel();
                    }
                    armed = next.map(|at| {
                        let wait =
                            Duration::from_millis(u64::try_from(at - now).unwrap_or(1).max(1));
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

    /// Closes the ticket; messages that came in meanwhile go to a new ticket (continue-as-new).
    async fn close(
        ctx: &mut WorkflowContext<Self>,
        input: &TicketInput,
        ticket_id: Uuid,
        reason: &str,
        auto: bool,
        seen_wakeups: u64,
    ) -> WorkflowResult<()> {
        let spec = &input.spec;
        ctx.execute_local_activity(
            TicketActivities::close_ticket,
            CloseInput {
                ticket_id,
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
        if ctx.state(|s| s.wakeups) > seen_wakeups {
            ctx.continue_as_new(
                TicketInput {
                    ticket_id: next_ticket_id(ticket_id),
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

    /// A client message was stored: check every pending message of the client.
    #[signal]
    pub fn message_arrived(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _message_id: Uuid) {
        self.wakeups += 1;
        self.version += 1;
    }

    /// The store opened a ticket for the client or queued it (sent by the outbox relay for
    /// `ticket_opened` / `ticket_queued`).
    #[signal]
    pub fn opened(&mut self, _ctx: &mut SyncWorkflowContext<Self>, o: TicketOpened) {
        self.hear_opened(&o);
        self.version += 1;
    }

    /// The AFC verdict consumer recorded a verdict for one of the client's messages.
    #[signal]
    pub fn afc_verdict(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _message_id: Uuid) {
        self.verdicts += 1;
        self.version += 1;
    }

    /// A manager took the ticket (sent by the outbox relay after the assignment committed).
    #[signal]
    pub fn assigned(&mut self, _ctx: &mut SyncWorkflowContext<Self>, s: TicketSignal) {
        if self.ticket_id == Some(s.ticket_id) {
            self.assigned = Some(s.manager_id);
            self.version += 1;
        }
    }

    /// The manager replied (sent by the outbox relay).
    #[signal]
    pub fn manager_replied(&mut self, _ctx: &mut SyncWorkflowContext<Self>, s: TicketSignal) {
        if self.ticket_id == Some(s.ticket_id) {
            self.replies += 1;
            self.version += 1;
        }
    }

    /// The assigned manager resolved the ticket.
    #[signal]
    pub fn resolve(&mut self, _ctx: &mut SyncWorkflowContext<Self>, req: ResolveRequest) {
        self.resolve = Some(req);
        self.version += 1;
    }

    /// Where the ticket is in its life.
    #[query]
    pub fn lifecycle(&self, _ctx: &WorkflowContextView) -> Lifecycle {
        self.lifecycle.clone()
    }
}
