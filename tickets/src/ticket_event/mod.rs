//! Every event the engine writes, typed: its kind, its dedup key (what makes a retried write
//! change nothing), its audience (the client, one manager, or supervisors only) and its payload, in
//! one place. Writers build a [`TicketEvent`]; the store turns it into an outbox row. Readers see
//! the kind strings of [`crate::event_kind`] and the JSON payloads these produce.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{AttachmentRef, event_kind};

mod payload;

/// One event, as a writer states it. Strings are borrowed from the writer.
#[derive(Debug, Clone, PartialEq)]
pub enum TicketEvent<'a> {
    /// To the client: their message was taken in (not yet checked).
    MessageAccepted {
        message_id: Uuid,
        body: &'a str,
        channel: &'a str,
        created_at: DateTime<Utc>,
        attachments: &'a [AttachmentRef],
    },
    /// To the client: their message was blocked by the AFC check; `warning` replaces it.
    MessageBlocked {
        message_id: Uuid,
        ticket_id: Uuid,
        warning: &'a str,
        warning_message_id: Uuid,
    },
    /// To the ticket's manager: a client message passed the AFC check.
    MessageVisible {
        manager_id: &'a str,
        message_id: Uuid,
        ticket_id: Uuid,
        body: &'a str,
        created_at: DateTime<Utc>,
        attachments: &'a [AttachmentRef],
    },
    /// To the client and the ticket's manager (if any): a message that passed is taken back, as
    /// the first half of a number the client's next message completed (a card number split over
    /// two messages). It is blocked now, its text masked; a view that shows it drops it.
    MessageWithdrawn {
        message_id: Uuid,
        ticket_id: Uuid,
        manager_id: Option<&'a str>,
    },
    /// To the client: a manager joined (`body` is the service message telling them).
    ManagerAssigned {
        ticket_id: Uuid,
        manager_id: &'a str,
        manager_name: &'a str,
        message_id: Uuid,
        body: &'a str,
    },
    /// To the client: their ticket was handed to another manager (`transfer` names the hand-over).
    ManagerTransferred {
        transfer: Uuid,
        ticket_id: Uuid,
        manager_name: &'a str,
        message_id: Uuid,
        body: &'a str,
    },
    /// To the client, and to the manager who wrote it.
    ManagerReply {
        message_id: Uuid,
        ticket_id: Uuid,
        manager_id: &'a str,
        manager_name: &'a str,
        body: &'a str,
        created_at: DateTime<Utc>,
        attachments: &'a [AttachmentRef],
    },
    /// To the client and the ticket's manager (if any).
    TicketClosed {
        ticket_id: Uuid,
        manager_id: Option<&'a str>,
        reason: &'a str,
        message_id: Uuid,
        body: &'a str,
    },
    /// To the client after a close, when the spec asks for a rating.
    SatisfactionRequested {
        ticket_id: Uuid,
        message_id: Uuid,
        body: &'a str,
    },
    /// To the client and the ticket's manager: the client rated the closed ticket (1 to 5).
    SatisfactionRecorded {
        ticket_id: Uuid,
        manager_id: Option<&'a str>,
        rating: i16,
        message_id: Uuid,
    },
    /// To the manager: a ticket was assigned to them.
    TicketAssigned {
        ticket_id: Uuid,
        manager_id: &'a str,
        client_id: &'a str,
    },
    /// To the manager a ticket was handed to.
    TicketTransferredTo {
        transfer: Uuid,
        ticket_id: Uuid,
        manager_id: &'a str,
        client_id: &'a str,
        from_manager_id: &'a str,
    },
    /// To the manager who handed the ticket over: it is no longer theirs.
    TicketTransferredAway {
        transfer: Uuid,
        ticket_id: Uuid,
        manager_id: &'a str,
        to_manager_id: &'a str,
    },
    /// To the manager who wrote it: an internal note on their ticket.
    NoteAdded {
        note_id: Uuid,
        ticket_id: Uuid,
        manager_id: &'a str,
        body: &'a str,
        created_at: DateTime<Utc>,
    },
    /// Supervisors: nobody took the ticket in time; its priority rose (escalation `round`).
    TicketEscalated {
        ticket_id: Uuid,
        priority: i32,
        queue: &'a str,
        round: u32,
    },
    /// Supervisors and the ticket's manager: the first response did not come within the SLA.
    SlaBreached {
        ticket_id: Uuid,
        manager_id: Option<&'a str>,
    },
    /// Supervisors: a message waited longer than the spec's AFC timeout; it stays held.
    AfcTimeout {
        message_id: Uuid,
        /// None for a bot command (held of no ticket).
        ticket_id: Option<Uuid>,
        timeout_ms: u64,
    },
    /// Supervisors: the AFC system found a manager reply suspicious.
    AfcReplyFlagged {
        message_id: Uuid,
        ticket_id: Option<Uuid>,
        manager_id: Option<&'a str>,
    },
    /// To the ticket's manager: event `event_seq` could not be delivered on the client's channel.
    DeliveryFailed {
        channel: &'a str,
        event_seq: i64,
        event_kind: &'a str,
        ticket_id: Option<Uuid>,
        manager_id: Option<&'a str>,
        attempts: i32,
        detail: &'a str,
        /// Resends asked for before this failure (0: the first send).
        round: i32,
    },
    /// To the ticket's manager: the outcome of the send of event `event_seq` is unknown (a
    /// restart interrupted it); `ResendDelivery` sends it again.
    DeliveryUnknown {
        channel: &'a str,
        event_seq: i64,
        event_kind: &'a str,
        ticket_id: Option<Uuid>,
        manager_id: Option<&'a str>,
        round: i32,
    },
    /// To the client: the bot answered their command `command_message_id` with the system
    /// message `message_id`.
    BotReplied {
        message_id: Uuid,
        command_message_id: Uuid,
        command: &'a str,
        body: &'a str,
        created_at: DateTime<Utc>,
    },
    /// To the client: no answer to their command came in time; `body` (the spec's message) says
    /// so, and whether a manager takes over.
    BotTimedOut {
        message_id: Uuid,
        command_message_id: Uuid,
        command: &'a str,
        body: &'a str,
        created_at: DateTime<Utc>,
        handed_over: bool,
    },
    /// Lifecycle (the ticket's workflow, supervisors): the inbound transaction opened a ticket.
    TicketOpened { ticket_id: Uuid },
    /// Lifecycle: the ticket's first passed message queued it for a manager.
    TicketQueued { ticket_id: Uuid },
    /// Lifecycle (the ticket's workflow, supervisors): `manager_id` answered the ticket for the
    /// first time (its SLA is met). Later replies change no timer the workflow keeps: its silence
    /// timer reads the last reply from the store when it fires.
    TicketResponded {
        ticket_id: Uuid,
        manager_id: &'a str,
    },
    /// Lifecycle: the assigned manager asked to resolve the ticket; its workflow closes it. Sent
    /// through the outbox, after the ticket's `ticket_opened` and assignment, so the workflow
    /// exists when it hears it and no request is lost while Temporal is away.
    ResolveRequested {
        ticket_id: Uuid,
        manager_id: &'a str,
    },
}

impl TicketEvent<'_> {
    pub fn kind(&self) -> &'static str {
        use TicketEvent as E;
        match self {
            E::MessageAccepted { .. } => event_kind::MESSAGE_ACCEPTED,
            E::MessageBlocked { .. } => event_kind::MESSAGE_BLOCKED,
            E::MessageVisible { .. } => event_kind::MESSAGE_VISIBLE,
            E::MessageWithdrawn { .. } => event_kind::MESSAGE_WITHDRAWN,
            E::ManagerAssigned { .. } | E::ManagerTransferred { .. } => {
                event_kind::MANAGER_ASSIGNED
            }
            E::ManagerReply { .. } => event_kind::MANAGER_REPLY,
            E::TicketClosed { .. } => event_kind::TICKET_CLOSED,
            E::SatisfactionRequested { .. } => event_kind::SATISFACTION_REQUESTED,
            E::SatisfactionRecorded { .. } => event_kind::SATISFACTION_RECORDED,
            E::TicketAssigned { .. } | E::TicketTransferredTo { .. } => event_kind::TICKET_ASSIGNED,
            E::TicketTransferredAway { .. } => event_kind::TICKET_TRANSFERRED_AWAY,
            E::NoteAdded { .. } => event_kind::NOTE_ADDED,
            E::TicketEscalated { .. } => event_kind::TICKET_ESCALATED,
            E::SlaBreached { .. } => event_kind::SLA_BREACHED,
            E::AfcTimeout { .. } => event_kind::AFC_TIMEOUT,
            E::AfcReplyFlagged { .. } => event_kind::AFC_REPLY_FLAGGED,
            E::DeliveryFailed { .. } => event_kind::DELIVERY_FAILED,
            E::DeliveryUnknown { .. } => event_kind::DELIVERY_UNKNOWN,
            E::TicketOpened { .. } => event_kind::TICKET_OPENED,
            E::TicketQueued { .. } => event_kind::TICKET_QUEUED,
            E::TicketResponded { .. } => event_kind::TICKET_RESPONDED,
            E::ResolveRequested { .. } => event_kind::RESOLVE_REQUESTED,
            E::BotReplied { .. } => event_kind::BOT_REPLIED,
            E::BotTimedOut { .. } => event_kind::BOT_TIMED_OUT,
        }
    }

    /// Unique per fact: writing the same fact again (a retry, a redelivery) changes nothing.
    pub fn dedup_key(&self) -> String {
        use TicketEvent as E;
        match self {
            E::MessageAccepted { message_id, .. } => format!("accepted:{message_id}"),
            E::MessageBlocked { message_id, .. } => format!("blocked:{message_id}"),
            E::MessageVisible { message_id, .. } => format!("visible:{message_id}"),
            E::MessageWithdrawn { message_id, .. } => format!("withdrawn:{message_id}"),
            E::ManagerAssigned {
                ticket_id,
                manager_id,
                ..
            } => format!("assigned:{ticket_id}:{manager_id}"),
            E::ManagerTransferred { transfer, .. } => format!("transfer-client:{transfer}"),
            E::ManagerReply { message_id, .. } => format!("reply:{message_id}"),
            E::TicketClosed { ticket_id, .. } => format!("closed:{ticket_id}"),
            E::SatisfactionRequested { ticket_id, .. } => format!("satisfaction:{ticket_id}"),
            E::SatisfactionRecorded { ticket_id, .. } => format!("rated:{ticket_id}"),
            E::TicketAssigned {
                ticket_id,
                manager_id,
                ..
            } => format!("ticket-assigned:{ticket_id}:{manager_id}"),
            E::TicketTransferredTo { transfer, .. } => format!("transfer-to:{transfer}"),
            E::TicketTransferredAway { transfer, .. } => format!("transfer-away:{transfer}"),
            E::NoteAdded { note_id, .. } => format!("note:{note_id}"),
            E::TicketEscalated {
                ticket_id, round, ..
            } => format!("escalated:{ticket_id}:{round}"),
            E::SlaBreached { ticket_id, .. } => format!("sla:{ticket_id}"),
            E::AfcTimeout { message_id, .. } => format!("afc_timeout:{message_id}"),
            E::AfcReplyFlagged { message_id, .. } => format!("afc_reply_flagged:{message_id}"),
            // A resent delivery may fail (or be interrupted) again: one event per round.
            E::DeliveryFailed {
                channel,
                event_seq,
                round: 0,
                ..
            } => format!("delivery_failed:{channel}:{event_seq}"),
            E::DeliveryFailed {
                channel,
                event_seq,
                round,
                ..
            } => format!("delivery_failed:{channel}:{event_seq}:r{round}"),
            E::DeliveryUnknown {
                channel,
                event_seq,
                round,
                ..
            } => format!("delivery_unknown:{channel}:{event_seq}:r{round}"),
            E::TicketOpened { ticket_id } => format!("opened:{ticket_id}"),
            E::TicketQueued { ticket_id } => format!("queued:{ticket_id}"),
            E::TicketResponded { ticket_id, .. } => format!("responded:{ticket_id}"),
            E::ResolveRequested { ticket_id, .. } => format!("resolve:{ticket_id}"),
            // One outcome per command, ever: an answer or a timeout, whichever came first.
            E::BotReplied {
                command_message_id, ..
            }
            | E::BotTimedOut {
                command_message_id, ..
            } => format!("bot:{command_message_id}"),
        }
    }

    /// The ticket the event is about, if any.
    pub fn ticket_id(&self) -> Option<Uuid> {
        use TicketEvent as E;
        match self {
            E::MessageAccepted { .. } | E::BotReplied { .. } | E::BotTimedOut { .. } => None,
            E::AfcReplyFlagged { ticket_id, .. }
            | E::AfcTimeout { ticket_id, .. }
            | E::DeliveryFailed { ticket_id, .. }
            | E::DeliveryUnknown { ticket_id, .. } => *ticket_id,
            E::MessageBlocked { ticket_id, .. }
            | E::MessageVisible { ticket_id, .. }
            | E::MessageWithdrawn { ticket_id, .. }
            | E::ManagerAssigned { ticket_id, .. }
            | E::ManagerTransferred { ticket_id, .. }
            | E::ManagerReply { ticket_id, .. }
            | E::TicketClosed { ticket_id, .. }
            | E::SatisfactionRequested { ticket_id, .. }
            | E::SatisfactionRecorded { ticket_id, .. }
            | E::TicketAssigned { ticket_id, .. }
            | E::TicketTransferredTo { ticket_id, .. }
            | E::TicketTransferredAway { ticket_id, .. }
            | E::NoteAdded { ticket_id, .. }
            | E::TicketEscalated { ticket_id, .. }
            | E::SlaBreached { ticket_id, .. }
            | E::TicketOpened { ticket_id }
            | E::TicketQueued { ticket_id }
            | E::TicketResponded { ticket_id, .. }
            | E::ResolveRequested { ticket_id, .. } => Some(*ticket_id),
        }
    }

    /// The client sees it in their chat.
    pub fn client_visible(&self) -> bool {
        use TicketEvent as E;
        matches!(
            self,
            E::MessageAccepted { .. }
                | E::MessageBlocked { .. }
                | E::MessageWithdrawn { .. }
                | E::ManagerAssigned { .. }
                | E::ManagerTransferred { .. }
                | E::ManagerReply { .. }
                | E::TicketClosed { .. }
                | E::SatisfactionRequested { .. }
                | E::SatisfactionRecorded { .. }
                | E::BotReplied { .. }
                | E::BotTimedOut { .. }
        )
    }

    /// The one manager it is addressed to, if any (supervisors see every event).
    pub fn manager_id(&self) -> Option<&str> {
        use TicketEvent as E;
        match self {
            E::MessageVisible { manager_id, .. }
            | E::ManagerReply { manager_id, .. }
            | E::TicketAssigned { manager_id, .. }
            | E::TicketTransferredTo { manager_id, .. }
            | E::TicketTransferredAway { manager_id, .. }
            | E::NoteAdded { manager_id, .. } => Some(manager_id),
            E::TicketClosed { manager_id, .. }
            | E::MessageWithdrawn { manager_id, .. }
            | E::SatisfactionRecorded { manager_id, .. }
            | E::SlaBreached { manager_id, .. }
            | E::DeliveryFailed { manager_id, .. }
            | E::DeliveryUnknown { manager_id, .. } => *manager_id,
            // Addressed to supervisors only; the manager named is what it is about.
            E::AfcReplyFlagged { .. } => None,
            E::MessageAccepted { .. }
            | E::MessageBlocked { .. }
            | E::ManagerAssigned { .. }
            | E::ManagerTransferred { .. }
            | E::SatisfactionRequested { .. }
            | E::TicketEscalated { .. }
            | E::AfcTimeout { .. }
            | E::TicketOpened { .. }
            | E::TicketQueued { .. }
            // Lifecycle: the manager is in the payload (their stream has the reply itself).
            | E::TicketResponded { .. }
            | E::ResolveRequested { .. }
            // Commands are the client's and the bot's: no manager sees them.
            | E::BotReplied { .. }
            | E::BotTimedOut { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests;
