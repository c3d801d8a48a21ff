//! The JSON payload of each event: what streams, Kafka `ticket.events` and channel deliveries
//! carry. Audience fields (the manager an event is addressed to) stay out of it where readers
//! learn them from the stream they read.

use serde_json::{Value, json};

use super::TicketEvent;

impl TicketEvent<'_> {
    /// The JSON readers get (streams, Kafka `ticket.events`, channel deliveries).
    pub fn payload(&self) -> Value {
        use TicketEvent as E;
        match self {
            E::MessageAccepted {
                message_id,
                body,
                channel,
                created_at,
                attachments,
            } => with_files(
                json!({
                    "message_id": message_id, "body": body, "channel": channel,
                    "created_at": created_at,
                }),
                attachments,
            ),
            E::MessageBlocked {
                message_id,
                ticket_id,
                warning,
                warning_message_id,
            } => json!({
                "message_id": message_id, "ticket_id": ticket_id, "warning": warning,
                "warning_message_id": warning_message_id,
            }),
            E::SatisfactionRecorded {
                ticket_id,
                rating,
                message_id,
                ..
            } => json!({ "ticket_id": ticket_id, "rating": rating, "message_id": message_id }),
            E::BotReplied {
                message_id,
                command_message_id,
                command,
                body,
                created_at,
            } => json!({
                "message_id": message_id, "command_message_id": command_message_id,
                "command": command, "body": body, "created_at": created_at,
            }),
            E::BotTimedOut {
                message_id,
                command_message_id,
                command,
                body,
                created_at,
                handed_over,
            } => json!({
                "message_id": message_id, "command_message_id": command_message_id,
                "command": command, "body": body, "created_at": created_at,
                "handed_over": handed_over,
            }),
            E::MessageWithdrawn {
                message_id,
                ticket_id,
                ..
            } => json!({ "message_id": message_id, "ticket_id": ticket_id }),
            E::MessageVisible {
                message_id,
                ticket_id,
                body,
                created_at,
                attachments,
                ..
            } => with_files(
                json!({
                    "message_id": message_id, "ticket_id": ticket_id, "body": body,
                    "created_at": created_at,
                }),
                attachments,
            ),
            E::ManagerAssigned {
                ticket_id,
                manager_name,
                message_id,
                body,
                ..
            } => json!({
                "ticket_id": ticket_id, "manager_name": manager_name, "message_id": message_id,
                "body": body,
            }),
            E::ManagerTransferred {
                ticket_id,
                manager_name,
                message_id,
                body,
                ..
            } => json!({
                "ticket_id": ticket_id, "manager_name": manager_name, "message_id": message_id,
                "body": body, "transferred": true,
            }),
            E::ManagerReply {
                message_id,
                ticket_id,
                manager_name,
                body,
                created_at,
                attachments,
                ..
            } => with_files(
                json!({
                    "message_id": message_id, "ticket_id": ticket_id, "body": body,
                    "manager_name": manager_name, "created_at": created_at,
                }),
                attachments,
            ),
            E::TicketClosed {
                ticket_id,
                reason,
                message_id,
                body,
                ..
            } => json!({
                "ticket_id": ticket_id, "reason": reason, "message_id": message_id, "body": body,
            }),
            E::SatisfactionRequested {
                ticket_id,
                message_id,
                body,
            } => json!({ "ticket_id": ticket_id, "message_id": message_id, "body": body }),
            E::TicketAssigned {
                ticket_id,
                client_id,
                ..
            } => json!({ "ticket_id": ticket_id, "client_id": client_id }),
            E::TicketTransferredTo {
                ticket_id,
                client_id,
                from_manager_id,
                ..
            } => json!({
                "ticket_id": ticket_id, "client_id": client_id,
                "transferred_from": from_manager_id,
            }),
            E::TicketTransferredAway {
                ticket_id,
                to_manager_id,
                ..
            } => json!({ "ticket_id": ticket_id, "to_manager_id": to_manager_id }),
            E::NoteAdded {
                note_id,
                ticket_id,
                body,
                created_at,
                ..
            } => json!({
                "note_id": note_id, "ticket_id": ticket_id, "body": body, "created_at": created_at,
            }),
            E::TicketEscalated {
                ticket_id,
                priority,
                queue,
                round,
            } => json!({
                "ticket_id": ticket_id, "priority": priority, "queue": queue, "round": round,
            }),
            E::SlaBreached { ticket_id, .. }
            | E::TicketOpened { ticket_id }
            | E::TicketQueued { ticket_id } => json!({ "ticket_id": ticket_id }),
            E::TicketResponded {
                ticket_id,
                manager_id,
            }
            | E::ResolveRequested {
                ticket_id,
                manager_id,
            } => json!({ "ticket_id": ticket_id, "manager_id": manager_id }),
            E::AfcTimeout {
                message_id,
                ticket_id,
                timeout_ms,
            } => json!({
                "message_id": message_id, "ticket_id": ticket_id, "timeout_ms": timeout_ms,
            }),
            E::AfcReplyFlagged {
                message_id,
                ticket_id,
                manager_id,
            } => json!({
                "message_id": message_id, "ticket_id": ticket_id, "manager_id": manager_id,
            }),
            E::DeliveryFailed {
                channel,
                event_seq,
                event_kind,
                ticket_id,
                attempts,
                detail,
                ..
            } => json!({
                "channel": channel, "event_seq": event_seq, "event_kind": event_kind,
                "ticket_id": ticket_id, "attempts": attempts, "detail": detail,
            }),
            E::DeliveryUnknown {
                channel,
                event_seq,
                event_kind,
                ticket_id,
                round,
                ..
            } => json!({
                "channel": channel, "event_seq": event_seq, "event_kind": event_kind,
                "ticket_id": ticket_id, "round": round,
                "detail": "a restart interrupted the send: the client may or may not have it; ResendDelivery sends it again",
            }),
        }
    }
}

/// A message event's payload with its files (`attachments`: id, name, content_type, size), when
/// it has any: an event without files reads as it always did.
fn with_files(mut payload: Value, files: &[crate::domain::AttachmentRef]) -> Value {
    if !files.is_empty()
        && let Some(o) = payload.as_object_mut()
    {
        o.insert("attachments".into(), json!(files));
    }
    payload
}
