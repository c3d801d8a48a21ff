use super::*;

fn every_variant() -> Vec<TicketEvent<'static>> {
    let (t, m, at) = (
        Uuid::from_u128(1),
        Uuid::from_u128(2),
        DateTime::<Utc>::UNIX_EPOCH,
    );
    vec![
        TicketEvent::MessageAccepted {
            message_id: m,
            body: "b",
            channel: "web",
            created_at: at,
            attachments: &[],
        },
        TicketEvent::MessageBlocked {
            message_id: m,
            ticket_id: t,
            warning: "w",
            warning_message_id: m,
        },
        TicketEvent::MessageVisible {
            manager_id: "a",
            message_id: m,
            ticket_id: t,
            body: "b",
            created_at: at,
            attachments: &[],
        },
        TicketEvent::SatisfactionRecorded {
            ticket_id: t,
            manager_id: Some("a"),
            rating: 5,
            message_id: m,
        },
        TicketEvent::MessageWithdrawn {
            message_id: m,
            ticket_id: t,
            manager_id: Some("a"),
        },
        TicketEvent::ManagerAssigned {
            ticket_id: t,
            manager_id: "a",
            manager_name: "A",
            message_id: m,
            body: "b",
        },
        TicketEvent::ManagerTransferred {
            transfer: m,
            ticket_id: t,
            manager_name: "A",
            message_id: m,
            body: "b",
        },
        TicketEvent::ManagerReply {
            message_id: m,
            ticket_id: t,
            manager_id: "a",
            manager_name: "A",
            body: "b",
            created_at: at,
            attachments: &[],
        },
        TicketEvent::TicketClosed {
            ticket_id: t,
            manager_id: Some("a"),
            reason: "r",
            message_id: m,
            body: "b",
        },
        TicketEvent::SatisfactionRequested {
            ticket_id: t,
            message_id: m,
            body: "b",
        },
        TicketEvent::TicketAssigned {
            ticket_id: t,
            manager_id: "a",
            client_id: "c",
        },
        TicketEvent::TicketTransferredTo {
            transfer: m,
            ticket_id: t,
            manager_id: "b",
            client_id: "c",
            from_manager_id: "a",
        },
        TicketEvent::TicketTransferredAway {
            transfer: m,
            ticket_id: t,
            manager_id: "a",
            to_manager_id: "b",
        },
        TicketEvent::NoteAdded {
            note_id: m,
            ticket_id: t,
            manager_id: "a",
            body: "b",
            created_at: at,
        },
        TicketEvent::TicketEscalated {
            ticket_id: t,
            priority: 2,
            queue: "q",
            round: 1,
        },
        TicketEvent::SlaBreached {
            ticket_id: t,
            manager_id: None,
        },
        TicketEvent::AfcTimeout {
            message_id: m,
            ticket_id: Some(t),
            timeout_ms: 5,
        },
        TicketEvent::AfcReplyFlagged {
            message_id: m,
            ticket_id: Some(t),
            manager_id: Some("a"),
        },
        TicketEvent::DeliveryFailed {
            channel: "email",
            event_seq: 7,
            event_kind: "manager_reply",
            ticket_id: Some(t),
            manager_id: Some("a"),
            attempts: 3,
            detail: "d",
            round: 0,
        },
        TicketEvent::DeliveryUnknown {
            channel: "telegram",
            event_seq: 8,
            event_kind: "manager_reply",
            ticket_id: Some(t),
            manager_id: Some("a"),
            round: 1,
        },
        TicketEvent::TicketOpened { ticket_id: t },
        TicketEvent::TicketQueued { ticket_id: t },
        TicketEvent::TicketResponded {
            ticket_id: t,
            manager_id: "a",
        },
        TicketEvent::ResolveRequested {
            ticket_id: t,
            manager_id: "a",
        },
    ]
}

#[test]
fn every_event_about_a_ticket_names_it_in_its_payload_and_keys_differ_per_kind_of_fact() {
    let events = every_variant();
    let mut keys = std::collections::BTreeSet::new();
    for e in &events {
        if let Some(t) = e.ticket_id() {
            assert_eq!(e.payload()["ticket_id"], t.to_string(), "{e:?}");
        }
        assert!(
            keys.insert(e.dedup_key()),
            "two facts share a dedup key: {e:?}"
        );
    }
}

#[test]
fn clients_see_their_chat_and_nothing_addressed_to_managers_or_supervisors() {
    for e in every_variant() {
        if e.client_visible() {
            assert!(
                !matches!(
                    e,
                    TicketEvent::MessageVisible { .. }
                        | TicketEvent::NoteAdded { .. }
                        | TicketEvent::AfcTimeout { .. }
                        | TicketEvent::AfcReplyFlagged { .. }
                        | TicketEvent::TicketOpened { .. }
                        | TicketEvent::TicketResponded { .. }
                ),
                "{e:?}"
            );
        }
    }
    let visible: Vec<&str> = every_variant()
        .iter()
        .filter(|e| e.client_visible())
        .map(|e| e.kind())
        .collect();
    assert_eq!(
        visible,
        [
            event_kind::MESSAGE_ACCEPTED,
            event_kind::MESSAGE_BLOCKED,
            event_kind::SATISFACTION_RECORDED,
            event_kind::MESSAGE_WITHDRAWN,
            event_kind::MANAGER_ASSIGNED,
            event_kind::MANAGER_ASSIGNED,
            event_kind::MANAGER_REPLY,
            event_kind::TICKET_CLOSED,
            event_kind::SATISFACTION_REQUESTED,
        ]
    );
}
