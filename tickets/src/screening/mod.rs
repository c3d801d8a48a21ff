//! Banking rule 1 as decisions: what an AFC verdict does to a client's message and its ticket. A
//! blocked message is never shown to a manager and the client gets the warning; a passed message
//! is shown to the manager who has the ticket, or, while no one has it, when it is assigned; the
//! first passed message of a new ticket puts it in the queue. Pure functions: the store applies
//! their outcome in the verdict's transaction (`messages::apply_verdicts_in`).
//!
//! Who screens: the built-in rules and detectors ([`rules`], run inside the inbound transaction),
//! or a bank's own AFC system, which gets the sealed messages through `tickets::external_afc`'s
//! outbox and answers on Kafka.

pub mod rules;

pub use rules::{AfcRule, Check, Rules, contains_card_number};

use crate::domain::{TicketStatus, Verdict};

/// What a verdict does to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consequence<'m> {
    /// Passed, on a ticket a manager has: shown to them now.
    ShowTo(&'m str),
    /// Passed, on a ticket no manager has yet: shown with the ticket when it is assigned.
    ShownOnAssignment,
    /// Blocked: never shown to a manager; the client gets the warning.
    WarnClient,
}

/// The consequence of `verdict` for a message of a ticket in `status`, held by `manager`.
pub fn consequence<'m>(
    verdict: &Verdict,
    status: TicketStatus,
    manager: Option<&'m str>,
) -> Consequence<'m> {
    match (verdict, status, manager) {
        (Verdict::Blocked { .. }, _, _) => Consequence::WarnClient,
        (Verdict::Passed, TicketStatus::Assigned, Some(m)) => Consequence::ShowTo(m),
        (Verdict::Passed, _, _) => Consequence::ShownOnAssignment,
    }
}

/// Whether the verdicts put the ticket in the queue for a manager: a new (`open`) ticket with at
/// least one passed message. A ticket of only blocked messages never reaches a manager.
pub fn queues_ticket(status: TicketStatus, passed: usize) -> bool {
    status == TicketStatus::Open && passed > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUSES: [TicketStatus; 4] = [
        TicketStatus::Open,
        TicketStatus::Waiting,
        TicketStatus::Assigned,
        TicketStatus::Closed,
    ];

    fn blocked() -> Verdict {
        Verdict::Blocked {
            rule: "card_number".into(),
        }
    }

    #[test]
    fn a_blocked_message_is_never_shown_to_a_manager_whatever_the_ticket() {
        for status in STATUSES {
            for manager in [None, Some("m1")] {
                assert_eq!(
                    consequence(&blocked(), status, manager),
                    Consequence::WarnClient,
                    "{status:?} {manager:?}"
                );
            }
        }
    }

    #[test]
    fn a_passed_message_is_shown_only_to_the_manager_who_has_the_ticket() {
        assert_eq!(
            consequence(&Verdict::Passed, TicketStatus::Assigned, Some("m1")),
            Consequence::ShowTo("m1")
        );
        for status in [TicketStatus::Open, TicketStatus::Waiting] {
            assert_eq!(
                consequence(&Verdict::Passed, status, None),
                Consequence::ShownOnAssignment
            );
        }
    }

    #[test]
    fn only_a_new_ticket_with_a_passed_message_is_queued() {
        assert!(queues_ticket(TicketStatus::Open, 1));
        assert!(!queues_ticket(TicketStatus::Open, 0), "only blocked ones");
        for status in [
            TicketStatus::Waiting,
            TicketStatus::Assigned,
            TicketStatus::Closed,
        ] {
            assert!(
                !queues_ticket(status, 3),
                "{status:?} is queued already or done"
            );
        }
    }
}
