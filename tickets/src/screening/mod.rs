//! Banking rule 1 as decisions: what an AFC verdict does to a client's message and its ticket. A
//! blocked message is never shown to a manager and the client gets the warning; a passed message
//! is shown to the manager who has the ticket, or, while no one has it, when it is assigned; the
//! first passed message of a new ticket puts it in the queue. Pure functions ([`consequence`],
//! [`queues_ticket`]) and the step that applies them ([`apply`]) through a port
//! ([`ScreeningPort`]), which the store implements in the verdict's transaction
//! (`messages::PgScreening`).
//!
//! Who screens: the built-in rules and detectors ([`rules`], run inside the inbound transaction),
//! or a bank's own AFC system, which gets the sealed messages through `tickets::external_afc`'s
//! outbox and answers on Kafka.

pub mod card;
pub mod context;
pub mod iban;
pub mod redact;
pub mod rules;
pub mod text;

pub use card::contains_card_number;
pub use redact::{AuditSeal, mask_cards, redact_blocked};
pub use rules::{AfcRule, Check, Rules};

use uuid::Uuid;

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

/// What applying verdicts needs from the store, for one ticket inside the verdict's transaction.
/// `tickets::messages` implements it over PostgreSQL, the tests below over vectors.
// Called with static dispatch only, inside this workspace: the futures need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait ScreeningPort {
    type Error;
    /// A message whose verdict was just recorded, as the store needs it to carry the verdict out.
    type Message;
    /// Records `verdict` for a pending message and attaches it to the ticket. None: the message
    /// has its verdict already (a redelivery), and nothing more happens to it.
    async fn record(
        &mut self,
        message_id: Uuid,
        verdict: &Verdict,
    ) -> Result<Option<Self::Message>, Self::Error>;
    /// Shows a passed message to the manager who has the ticket.
    async fn show_to(
        &mut self,
        manager: &str,
        message_id: Uuid,
        message: Self::Message,
    ) -> Result<(), Self::Error>;
    /// Leaves the client the warning that stands for their blocked message.
    async fn warn_client(
        &mut self,
        message_id: Uuid,
        message: Self::Message,
    ) -> Result<(), Self::Error>;
    /// Puts the ticket in the queue for a manager, classified.
    async fn queue_ticket(&mut self) -> Result<(), Self::Error>;
}

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Screened {
    pub passed: usize,
    pub blocked: usize,
    /// The verdicts put the ticket in the queue (its first passed message).
    pub queued: bool,
}

/// Applies the verdicts of a ticket's messages (the ticket in `status`, held by `manager`):
/// each recorded, then shown, held for the assignment, or replaced by the client's warning; the
/// ticket queued by its first passed message. A message that had its verdict already counts for
/// nothing, so a redelivered verdict changes nothing.
pub async fn apply<P: ScreeningPort>(
    port: &mut P,
    status: TicketStatus,
    manager: Option<&str>,
    verdicts: &[(Uuid, Verdict)],
) -> Result<Screened, P::Error> {
    let mut out = Screened::default();
    for (message_id, verdict) in verdicts {
        let Some(message) = port.record(*message_id, verdict).await? else {
            continue;
        };
        match consequence(verdict, status, manager) {
            Consequence::ShowTo(m) => {
                out.passed += 1;
                port.show_to(m, *message_id, message).await?;
            }
            Consequence::ShownOnAssignment => out.passed += 1,
            Consequence::WarnClient => {
                out.blocked += 1;
                port.warn_client(*message_id, message).await?;
            }
        }
    }
    if queues_ticket(status, out.passed) {
        port.queue_ticket().await?;
        out.queued = true;
    }
    Ok(out)
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

    /// The store as vectors: what applying the verdicts wrote.
    #[derive(Default)]
    struct Ledger {
        /// Messages that have a verdict already.
        decided: Vec<Uuid>,
        shown: Vec<(String, Uuid)>,
        warned: Vec<Uuid>,
        queued: usize,
    }

    impl ScreeningPort for Ledger {
        type Error = std::convert::Infallible;
        type Message = ();
        async fn record(&mut self, id: Uuid, _: &Verdict) -> Result<Option<()>, Self::Error> {
            if self.decided.contains(&id) {
                return Ok(None);
            }
            self.decided.push(id);
            Ok(Some(()))
        }
        async fn show_to(&mut self, manager: &str, id: Uuid, (): ()) -> Result<(), Self::Error> {
            self.shown.push((manager.to_owned(), id));
            Ok(())
        }
        async fn warn_client(&mut self, id: Uuid, (): ()) -> Result<(), Self::Error> {
            self.warned.push(id);
            Ok(())
        }
        async fn queue_ticket(&mut self) -> Result<(), Self::Error> {
            self.queued += 1;
            Ok(())
        }
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[tokio::test]
    async fn a_blocked_message_is_never_shown_and_warns_the_client() {
        let mut ledger = Ledger::default();
        let verdicts = [(id(1), blocked()), (id(2), Verdict::Passed)];
        let out = apply(&mut ledger, TicketStatus::Assigned, Some("m"), &verdicts).await;
        assert_eq!(
            out,
            Ok(Screened {
                passed: 1,
                blocked: 1,
                queued: false
            })
        );
        assert_eq!(ledger.shown, vec![("m".to_owned(), id(2))]);
        assert_eq!(ledger.warned, vec![id(1)]);
        assert_eq!(ledger.queued, 0);
    }

    #[tokio::test]
    async fn a_new_ticket_is_queued_once_by_its_passed_messages_and_shows_nothing_yet() {
        let mut ledger = Ledger::default();
        let verdicts = [(id(1), Verdict::Passed), (id(2), Verdict::Passed)];
        let out = apply(&mut ledger, TicketStatus::Open, None, &verdicts).await;
        assert_eq!(out.map(|o| (o.passed, o.queued)), Ok((2, true)));
        assert!(
            ledger.shown.is_empty(),
            "shown only when a manager takes it"
        );
        assert_eq!(ledger.queued, 1);
    }

    #[tokio::test]
    async fn a_ticket_of_only_blocked_messages_is_not_queued() {
        let mut ledger = Ledger::default();
        let out = apply(&mut ledger, TicketStatus::Open, None, &[(id(1), blocked())]).await;
        assert_eq!(out.map(|o| o.queued), Ok(false));
        assert_eq!(ledger.queued, 0);
        assert_eq!(ledger.warned, vec![id(1)]);
    }

    #[tokio::test]
    async fn a_redelivered_verdict_changes_nothing() {
        let mut ledger = Ledger {
            decided: vec![id(1)],
            ..Ledger::default()
        };
        let out = apply(&mut ledger, TicketStatus::Open, None, &[(id(1), blocked())]).await;
        assert_eq!(out, Ok(Screened::default()));
        assert!(ledger.warned.is_empty() && ledger.shown.is_empty());
        assert_eq!(ledger.queued, 0);
    }
}
