//! Banking rules 3 and 4 as a choice: which waiting ticket goes to which ready manager. A pure
//! function over the candidates ([`plan`]) and the round that applies it ([`assign_waiting`])
//! through a port ([`MatchingPort`]): the store only fetches and locks the candidates and writes
//! each assignment (`managers::PgMatching`, under the matching lock).
//!
//! The rule: take the first waiting ticket (higher priority first, then the one waiting longest)
//! that some ready manager serving its queue can take, and give it to the manager with the fewest
//! open tickets (then the one ready longest, then by id); repeat until no waiting ticket can be
//! taken. A manager is ready while they have ready slots (they said "ready" that many times); each
//! assignment uses one, and a manager whose last slot is used is no longer ready.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A waiting ticket the rule may assign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingTicket {
    pub id: Uuid,
    pub client_id: String,
    /// The identity provider's subject of a web client (their client id is `web:<subject>`, or
    /// the subject itself for one from before the prefixes): the same person as the manager of
    /// that user id.
    pub client_subject: Option<String>,
    pub queue: String,
    pub priority: i32,
    pub waiting_since: Option<DateTime<Utc>>,
}

impl WaitingTicket {
    /// Whether the ticket is the client ticket of user `user_id` (a manager's id is their
    /// subject).
    pub fn is_of(&self, user_id: &str) -> bool {
        self.client_id == user_id || self.client_subject.as_deref() == Some(user_id)
    }
}

/// A manager with ready slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyManager {
    pub id: String,
    /// Shown to the client when the manager joins.
    pub name: String,
    /// The queues they serve; empty: every queue.
    pub queues: Vec<String>,
    pub ready_slots: i32,
    pub open_tickets: i64,
    pub ready_since: Option<DateTime<Utc>>,
    /// Open tickets they may hold at most, per the spec in force (it may have been lowered since
    /// they said "ready").
    pub capacity: i32,
}

impl ReadyManager {
    fn serves(&self, queue: &str) -> bool {
        self.queues.is_empty() || self.queues.iter().any(|q| q == queue)
    }

    /// The tickets they can take now: their ready slots, never beyond their capacity.
    pub fn usable_slots(&self) -> i32 {
        let room = i64::from(self.capacity) - self.open_tickets;
        i32::try_from(room.clamp(0, i64::from(self.ready_slots.max(0)))).unwrap_or(0)
    }
}

/// One choice of the rule: `waiting[ticket]` goes to `ready[manager]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub ticket: usize,
    pub manager: usize,
}

/// Every assignment the rule makes now, in the order it makes them. The candidates may come in
/// any order. No ticket is assigned twice and no manager beyond their ready slots.
pub fn plan(waiting: &[WaitingTicket], ready: &[ReadyManager]) -> Vec<Match> {
    // The waiting order: priority (higher first), waiting longest (a ticket without a
    // `waiting_since` last, as PostgreSQL sorts NULLs), then id.
    let mut order: Vec<usize> = (0..waiting.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&waiting[a], &waiting[b]);
        b.priority
            .cmp(&a.priority)
            .then_with(|| nulls_last(a.waiting_since, b.waiting_since))
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut slots: Vec<i32> = ready.iter().map(ReadyManager::usable_slots).collect();
    let mut open: Vec<i64> = ready.iter().map(|m| m.open_tickets).collect();
    let mut out = Vec::new();
    // One pass is the whole loop: an assignment only takes slots away, so a ticket no manager
    // could take stays untakeable, and a ticket taken never blocks one before it.
    for t in order {
        let best = (0..ready.len())
            .filter(|&m| {
                slots[m] > 0
                    && ready[m].serves(&waiting[t].queue)
                    // A user holding both roles never serves their own ticket.
                    && !waiting[t].is_of(&ready[m].id)
            })
            .min_by(|&a, &b| {
                open[a]
                    .cmp(&open[b])
                    .then_with(|| nulls_last(ready[a].ready_since, ready[b].ready_since))
                    .then_with(|| ready[a].id.cmp(&ready[b].id))
            });
        if let Some(m) = best {
            slots[m] -= 1;
            open[m] += 1;
            out.push(Match {
                ticket: t,
                manager: m,
            });
        }
    }
    out
}

/// What a matching round needs from the store, inside the transaction that holds the matching
/// lock. `tickets::managers` implements it over PostgreSQL, the tests below over vectors.
// Called with static dispatch only, inside this workspace: the futures need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait MatchingPort {
    type Error;
    /// Every manager with ready slots.
    async fn ready_managers(&mut self) -> Result<Vec<ReadyManager>, Self::Error>;
    /// The waiting tickets, locked until the round ends, at most `caps` of each queue (the first
    /// ones in waiting order: all [`plan`] can use).
    async fn waiting_tickets(
        &mut self,
        caps: &Capacities,
    ) -> Result<Vec<WaitingTicket>, Self::Error>;
    /// Gives `ticket` to `manager`: one of their ready slots used, the client told, the ticket's
    /// passed messages shown to them.
    async fn assign(
        &mut self,
        ticket: &WaitingTicket,
        manager: &ReadyManager,
    ) -> Result<(), Self::Error>;
}

/// One matching round: every assignment [`plan`] makes over the store's candidates, written in
/// the order it makes them. Returns how many were made. No ready manager: no ticket is fetched.
pub async fn assign_waiting<P: MatchingPort>(port: &mut P) -> Result<usize, P::Error> {
    let ready = port.ready_managers().await?;
    if ready.is_empty() {
        return Ok(0);
    }
    let waiting = port.waiting_tickets(&Capacities::of(&ready)).await?;
    let matches = plan(&waiting, &ready);
    for m in &matches {
        port.assign(&waiting[m.ticket], &ready[m.manager]).await?;
    }
    Ok(matches.len())
}

/// Earlier first, an unknown time last (PostgreSQL's `ORDER BY` default for ascending order).
fn nulls_last(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

/// How many tickets of each queue this round could assign at most: the ready slots of the
/// managers serving it, plus one per such manager (the ticket a manager may not take, their own
/// as a client). The store fetches no more than that many waiting tickets per queue (the
/// first ones in waiting order), which is all [`plan`] can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacities {
    /// Every queue some ready manager names, with its limit in `limits` (same order).
    pub queues: Vec<String>,
    pub limits: Vec<i64>,
    /// The limit of any queue not named: the slots of the managers who serve every queue.
    pub any_other: i64,
}

impl Capacities {
    pub fn of(ready: &[ReadyManager]) -> Self {
        let named: std::collections::BTreeSet<&str> = ready
            .iter()
            .flat_map(|m| m.queues.iter().map(String::as_str))
            .collect();
        let slots = |serves: &dyn Fn(&ReadyManager) -> bool| -> i64 {
            ready
                .iter()
                .filter(|m| serves(m))
                .map(|m| i64::from(m.usable_slots()) + 1)
                .sum()
        };
        Self {
            limits: named.iter().map(|q| slots(&|m| m.serves(q))).collect(),
            queues: named.into_iter().map(str::to_owned).collect(),
            any_other: slots(&|m| m.queues.is_empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(1_700_000_000 + minute * 60, 0)
    }

    fn ticket(n: u128, queue: &str, priority: i32, since: i64) -> WaitingTicket {
        WaitingTicket {
            id: Uuid::from_u128(n),
            client_id: format!("client-{n}"),
            client_subject: None,
            queue: queue.into(),
            priority,
            waiting_since: at(since),
        }
    }

    fn manager(id: &str, queues: &[&str], slots: i32, open: i64, since: i64) -> ReadyManager {
        ReadyManager {
            id: id.into(),
            name: id.to_uppercase(),
            queues: queues.iter().map(|q| (*q).to_owned()).collect(),
            ready_slots: slots,
            open_tickets: open,
            ready_since: at(since),
            capacity: 100,
        }
    }

    /// The plan as (ticket id, manager id) pairs.
    fn pairs(waiting: &[WaitingTicket], ready: &[ReadyManager]) -> Vec<(u128, String)> {
        plan(waiting, ready)
            .into_iter()
            .map(|m| (waiting[m.ticket].id.as_u128(), ready[m.manager].id.clone()))
            .collect()
    }

    #[test]
    fn no_ticket_goes_to_a_manager_who_is_not_ready() {
        let waiting = [ticket(1, "general", 1, 0)];
        assert!(plan(&waiting, &[]).is_empty());
        assert!(plan(&waiting, &[manager("m", &[], 0, 0, 0)]).is_empty());
    }

    #[test]
    fn higher_priority_first_then_the_ticket_waiting_longest() {
        let waiting = [
            ticket(1, "general", 1, 0),
            ticket(2, "general", 3, 5),
            ticket(3, "general", 1, -5),
        ];
        let ready = [manager("m", &[], 2, 0, 0)];
        assert_eq!(
            pairs(&waiting, &ready),
            vec![(2, "m".into()), (3, "m".into())],
            "two slots: the urgent ticket, then the older of the two normal ones"
        );
    }

    #[test]
    fn the_manager_with_fewest_open_tickets_then_ready_longest_takes_the_ticket() {
        let waiting = [ticket(1, "general", 1, 0)];
        let busy_early = manager("a", &[], 1, 3, -10);
        let free_late = manager("b", &[], 1, 1, 0);
        let free_early = manager("c", &[], 1, 1, -5);
        assert_eq!(
            pairs(&waiting, &[busy_early, free_late, free_early]),
            vec![(1, "c".into())]
        );
    }

    #[test]
    fn each_assignment_counts_against_the_manager_so_load_spreads() {
        let waiting: Vec<_> = (1..=4).map(|n| ticket(n, "general", 1, n as i64)).collect();
        let ready = [manager("a", &[], 3, 0, 0), manager("b", &[], 3, 1, 1)];
        // a (0 open) takes the first; both at 1, a was ready longer; b has fewer; both at 2 again.
        assert_eq!(
            pairs(&waiting, &ready),
            vec![
                (1, "a".into()),
                (2, "a".into()),
                (3, "b".into()),
                (4, "a".into())
            ]
        );
    }

    #[test]
    fn a_ticket_of_a_queue_nobody_ready_serves_waits_and_the_next_one_is_taken() {
        let waiting = [
            ticket(1, "fraud", 3, 0),
            ticket(2, "general", 1, 1),
            ticket(3, "fraud", 1, 2),
        ];
        let ready = [manager("g", &["general"], 5, 0, 0)];
        assert_eq!(pairs(&waiting, &ready), vec![(2, "g".into())]);
        let both = [
            manager("g", &["general"], 1, 0, 0),
            manager("f", &["fraud", "cards"], 1, 0, 0),
        ];
        assert_eq!(
            pairs(&waiting, &both),
            vec![(1, "f".into()), (2, "g".into())],
            "each queue's first ticket; the second fraud ticket waits for a slot"
        );
    }

    #[test]
    fn slots_bound_the_assignments_and_no_ticket_is_assigned_twice() {
        let waiting: Vec<_> = (1..=10)
            .map(|n| ticket(n, "general", 1, n as i64))
            .collect();
        let ready = [
            manager("a", &[], 2, 0, 0),
            manager("b", &["general"], 1, 0, 0),
        ];
        let plan = plan(&waiting, &ready);
        assert_eq!(plan.len(), 3);
        let mut tickets: Vec<usize> = plan.iter().map(|m| m.ticket).collect();
        tickets.dedup();
        assert_eq!(tickets.len(), 3);
        assert_eq!(plan.iter().filter(|m| m.manager == 0).count(), 2);
    }

    #[test]
    fn a_queues_capacity_is_the_slots_of_those_who_serve_it_and_one_more_each() {
        let ready = [
            manager("any", &[], 2, 0, 0),
            manager("f", &["fraud"], 3, 0, 0),
        ];
        let caps = Capacities::of(&ready);
        assert_eq!(caps.queues, vec!["fraud"]);
        assert_eq!(
            caps.limits,
            vec![7],
            "fraud: 2 + 3 slots, 2 own tickets skipped"
        );
        assert_eq!(caps.any_other, 3, "general, which nobody names");
    }

    #[test]
    fn a_lowered_capacity_bounds_the_slots_a_manager_said_ready_with() {
        let waiting = [
            ticket(1, "general", 0, 0),
            ticket(2, "general", 0, 1),
            ticket(3, "general", 0, 2),
        ];
        // Ready with 3 slots and 1 open ticket when the capacity was 5; it is 2 now.
        let mut m = manager("m", &[], 3, 1, 0);
        m.capacity = 2;
        assert_eq!(m.usable_slots(), 1);
        assert_eq!(pairs(&waiting, &[m.clone()]), vec![(1, "m".to_string())]);
        m.open_tickets = 4;
        assert_eq!(
            m.usable_slots(),
            0,
            "above capacity: nothing more, never negative"
        );
        assert!(pairs(&waiting, &[m]).is_empty());
    }

    #[test]
    fn a_user_holding_both_roles_is_never_given_their_own_ticket() {
        let mut own = ticket(1, "general", 9, 0);
        own.client_id = "web:alice".into();
        own.client_subject = Some("alice".into());
        let mut legacy = ticket(3, "general", 0, 2);
        legacy.client_id = "alice".into();
        let waiting = [own, ticket(2, "general", 0, 1), legacy];
        let ready = [manager("alice", &[], 2, 0, 0)];
        assert_eq!(pairs(&waiting, &ready), vec![(2, "alice".to_string())]);
        // Another manager takes it.
        let ready = [manager("alice", &[], 2, 0, 0), manager("bob", &[], 1, 5, 9)];
        assert_eq!(
            pairs(&waiting, &ready),
            vec![(1, "bob".to_string()), (2, "alice".to_string())]
        );
    }

    /// The store as vectors: what a round fetched and wrote.
    #[derive(Default)]
    struct Board {
        ready: Vec<ReadyManager>,
        waiting: Vec<WaitingTicket>,
        asked_for: Option<Capacities>,
        assigned: Vec<(u128, String)>,
    }

    impl MatchingPort for Board {
        type Error = std::convert::Infallible;
        async fn ready_managers(&mut self) -> Result<Vec<ReadyManager>, Self::Error> {
            Ok(self.ready.clone())
        }
        async fn waiting_tickets(
            &mut self,
            caps: &Capacities,
        ) -> Result<Vec<WaitingTicket>, Self::Error> {
            self.asked_for = Some(caps.clone());
            Ok(self.waiting.clone())
        }
        async fn assign(
            &mut self,
            ticket: &WaitingTicket,
            manager: &ReadyManager,
        ) -> Result<(), Self::Error> {
            self.assigned
                .push((ticket.id.as_u128(), manager.id.clone()));
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_round_without_a_ready_manager_fetches_no_ticket() {
        let mut board = Board {
            waiting: vec![ticket(1, "general", 1, 0)],
            ..Board::default()
        };
        assert_eq!(assign_waiting(&mut board).await, Ok(0));
        assert_eq!(board.asked_for, None);
        assert!(board.assigned.is_empty());
    }

    #[tokio::test]
    async fn a_round_asks_for_what_the_slots_can_take_and_writes_the_plan_in_order() {
        let mut board = Board {
            ready: vec![
                manager("cards", &["cards"], 1, 0, 0),
                manager("any", &[], 2, 0, 1),
            ],
            waiting: vec![
                ticket(1, "general", 1, 0),
                ticket(2, "cards", 3, 5),
                ticket(3, "general", 1, 1),
                ticket(4, "general", 1, 2),
            ],
            ..Board::default()
        };
        assert_eq!(assign_waiting(&mut board).await, Ok(3));
        let caps = board.asked_for.clone().expect("the round fetched tickets");
        assert_eq!(caps.queues, vec!["cards".to_owned()]);
        assert_eq!(caps.limits, vec![5]);
        assert_eq!(caps.any_other, 3);
        assert_eq!(
            board.assigned,
            vec![
                (2, "cards".to_owned()),
                (1, "any".to_owned()),
                (3, "any".to_owned()),
            ]
        );
        assert_eq!(
            board.assigned,
            pairs(&board.waiting, &board.ready),
            "the round writes exactly the plan"
        );
    }
}
