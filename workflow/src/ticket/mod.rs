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
//!   one timer per deadline, cancelled when a signal moves it. With an external AFC system the
//!   store holds the messages and hands them over, and the verdict consumer applies the
//!   verdicts: the workflow hears `ticket_queued` as with the built-in rules, and the AFC timeout
//!   alert is the store's (the AFC relay), not a workflow timer;
//! - the workflow's own (tickets started before the store's path existed, and tickets of another
//!   spec version than the running service's, until they close): a message signal is a wake-up
//!   ([`own_messages`], or [`external_afc`] with the bank's AFC system), and messages that arrive
//!   while the ticket closes are carried into the next ticket. Its timer pattern is the recorded
//!   one (a losing timer is re-armed for the same instant).
//!
//! Here: the inputs, signals and query; [`run`] the loop, [`due`] what a deadline does, [`close`]
//! the close and the next ticket.
//!
//! Deterministic: no clock, randomness, I/O or hash-map iteration here; every side effect is an
//! activity.

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, LocalActivityOptions, SyncWorkflowContext, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};
use uuid::Uuid;

pub use crate::lifecycle::Lifecycle;
use spec::TicketSpec;

mod close;
mod due;
mod external_afc;
mod own_messages;
mod run;

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

pub(super) fn local(timeout_secs: u64) -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(timeout_secs))
        .build()
}

/// Publishing to the AFC system is external I/O: a regular activity, retried until Kafka takes it.
pub(super) fn publish_options() -> ActivityOptions {
    ActivityOptions::start_to_close_timeout(Duration::from_secs(60))
}

pub(super) fn now_ms(ctx: &WorkflowContext<TicketWorkflow>) -> i64 {
    ctx.workflow_time()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

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
        run::run(ctx).await
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
