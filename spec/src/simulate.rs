//! A dry run of a changed lifecycle: what a spec would have done to tickets the engine recorded
//! ([`tickets::simulation::TicketFacts`]), decided as the ticket workflow decides
//! (`workflow::lifecycle`, with [`TimerSpec::deadline_ms`] for every deadline, business
//! calendars included), and how that differs from what happened. Pure: every instant is given,
//! nothing is read or written here.
//!
//! What the replay keeps from the record, since no spec decides it: the client's messages and
//! their verdicts, who took the ticket and when, when the manager answered and when a manager
//! resolved it. What it decides again: the classification of the first passed message (queue,
//! category, priority), the escalation rounds until the first assignment (priority one level up
//! per round, up to urgent), the first-response SLA until the first reply, and the close on the
//! client's silence after the manager's last reply.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tickets::simulation::TicketFacts;
use uuid::Uuid;

use crate::{TicketSpec, TimerSpec};

/// The highest priority level (urgent): escalation stops raising there.
const MAX_PRIORITY: i32 = 3;
/// Silence checks a ticket's timer may take before the replay gives up on it: each moves the
/// deadline to a later reply or to the check before one, so about two per reply are taken.
const MAX_SILENCE_CHECKS: usize = 100_000;

/// What the spec would have done to one ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Simulated {
    pub queue: String,
    pub category: String,
    /// 0 low .. 3 urgent, after the escalations.
    pub priority: i32,
    pub escalations: u32,
    pub sla_breached: bool,
    /// When the client's silence would have closed it.
    pub auto_closed_at: Option<DateTime<Utc>>,
}

/// The spec's name of a priority level.
pub fn priority_name(level: i32) -> &'static str {
    match level {
        i32::MIN..=0 => "low",
        1 => "normal",
        2 => "high",
        _ => "urgent",
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn instant(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Escalation rounds that fall due before `until`: the largest `k` with the `k`-th deadline
/// before it (deadlines grow with `k`, and are at least `k` periods of wall time away, so the
/// search is bounded).
fn rounds_before(timer: &TimerSpec, from: i64, until: i64) -> u32 {
    if timer.after_ms == 0 || until <= from {
        return 0;
    }
    let span = u64::try_from(until - from).unwrap_or(0);
    let mut hi = u32::try_from(span / timer.after_ms + 1).unwrap_or(u32::MAX);
    let mut lo = 0u32;
    // Invariant: round `lo` is due before `until` (0 trivially), round `hi` is not.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if timer.deadline_ms(from, mid) < until {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The smallest `k` ≥ 1 whose `k`-th period from `from` ends at or after `at` (a deadline is
/// at least `k` periods of wall time away, which bounds the search).
fn first_round_at_or_after(timer: &TimerSpec, from: i64, at: i64) -> u32 {
    if timer.after_ms == 0 {
        return 1;
    }
    let span = u64::try_from(at - from).unwrap_or(0);
    let mut hi = u32::try_from(span.div_ceil(timer.after_ms).max(1)).unwrap_or(u32::MAX);
    let mut lo = 0u32;
    // Invariant: round `hi` ends at or after `at`, round `lo` (0: none) before it.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if timer.deadline_ms(from, mid) >= at {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// When the silence timer would close the ticket, judged up to `horizon` (ms). The workflow arms
/// it at the first reply; when it fires it asks the store for the last reply and whether the
/// client wrote since: the client wrote → count again from now; a later reply whose period has
/// not passed → count from that reply; else close (`workflow::lifecycle::silence_deadline_moved`).
fn silence_close(
    timer: &TimerSpec,
    replies: &[i64],
    client_messages: &[i64],
    horizon: i64,
) -> Option<i64> {
    let mut since = *replies.first()?;
    for _ in 0..MAX_SILENCE_CHECKS {
        let at = timer.deadline_ms(since, 1);
        if at > horizon {
            return None;
        }
        let last = replies[..replies.partition_point(|r| *r <= at)]
            .last()
            .copied()
            .unwrap_or(since);
        let wrote = client_messages.iter().any(|c| *c > last && *c <= at);
        if wrote {
            // The client waits for an answer: every check a period apart says so until one at
            // or after the next reply, so skip to the check before it (none: it stays open).
            let next = *replies.get(replies.partition_point(|r| *r <= at))?;
            let k = first_round_at_or_after(timer, at, next);
            since = if k <= 1 {
                at
            } else {
                timer.deadline_ms(at, k - 1)
            };
        } else if timer.deadline_ms(last, 1) > at {
            since = last;
        } else {
            return Some(at);
        }
    }
    None
}

/// What `spec` would have done to the ticket of `facts`, judged up to `as_of` for what is still
/// open. None for a ticket no message of which passed the AFC check: it was never classified or
/// queued, under any spec.
pub fn simulate_ticket(
    spec: &TicketSpec,
    patterns: &[Option<regex::Regex>],
    facts: &TicketFacts,
    as_of: DateTime<Utc>,
) -> Option<Simulated> {
    let text = facts.first_text.as_deref()?;
    let class = spec.classify_by(text, patterns);
    let timers = &spec.timers;
    let queued = ms(facts.queued_at.unwrap_or(facts.created_at));
    let as_of = ms(as_of);
    let replies: Vec<i64> = facts.replies.iter().copied().map(ms).collect();
    let client: Vec<i64> = facts.client_messages.iter().copied().map(ms).collect();
    // How long the conversation could have gone on in this ticket: a manager's resolve stands;
    // after an auto-close the client's next message would have landed here instead.
    let horizon = match facts.closed_at {
        Some(_) if facts.auto_closed() => facts.client_wrote_again_at.map_or(as_of, ms),
        Some(closed) => ms(closed),
        None => as_of,
    };
    let auto_closed_at = match (
        &timers.auto_close_after_client_silence,
        facts.first_assigned_at,
    ) {
        (Some(timer), Some(_)) => silence_close(timer, &replies, &client, horizon),
        _ => None,
    };
    let end = auto_closed_at.unwrap_or(if facts.auto_closed() {
        horizon
    } else {
        facts.closed_at.map_or(as_of, ms)
    });
    let wait_end = facts.first_assigned_at.map_or(end, |a| ms(a).min(end));
    let escalations = timers
        .escalate_after
        .as_ref()
        .map_or(0, |t| rounds_before(t, queued, wait_end));
    let answered_by = facts.first_response_at.map_or(end, |r| ms(r).min(end));
    let sla_breached = timers
        .first_response_within
        .as_ref()
        .is_some_and(|t| t.deadline_ms(queued, 1) < answered_by);
    let raised = i32::try_from(escalations).unwrap_or(i32::MAX);
    Some(Simulated {
        queue: class.queue,
        category: class.category,
        priority: class
            .priority
            .level()
            .saturating_add(raised)
            .min(MAX_PRIORITY),
        escalations,
        sla_breached,
        auto_closed_at: auto_closed_at.map(instant),
    })
}

/// A kind of difference between what happened and what the spec would have done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    QueueChanged,
    PriorityChanged,
    EscalationsAdded,
    EscalationsAvoided,
    SlaBreachAdded,
    SlaBreachAvoided,
    AutoCloseAdded,
    AutoCloseAvoided,
}

impl DifferenceKind {
    pub const ALL: [DifferenceKind; 8] = [
        Self::QueueChanged,
        Self::PriorityChanged,
        Self::EscalationsAdded,
        Self::EscalationsAvoided,
        Self::SlaBreachAdded,
        Self::SlaBreachAvoided,
        Self::AutoCloseAdded,
        Self::AutoCloseAvoided,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueChanged => "queue_changed",
            Self::PriorityChanged => "priority_changed",
            Self::EscalationsAdded => "escalations_added",
            Self::EscalationsAvoided => "escalations_avoided",
            Self::SlaBreachAdded => "sla_breach_added",
            Self::SlaBreachAvoided => "sla_breach_avoided",
            Self::AutoCloseAdded => "auto_close_added",
            Self::AutoCloseAvoided => "auto_close_avoided",
        }
    }
}

/// One ticket a difference is about: what happened, and what would have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    pub ticket_id: Uuid,
    pub before: String,
    pub after: String,
}

/// The tickets of one kind of difference: how many, and the first few.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub kind: DifferenceKind,
    pub tickets: u64,
    pub examples: Vec<Example>,
}

/// Figures over the replayed tickets, as recorded or as the spec would have made them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Escalation rounds, and the tickets escalated at least once.
    pub escalations: u64,
    pub escalated_tickets: u64,
    pub sla_breaches: u64,
    pub auto_closes: u64,
}

/// The result of a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DryRun {
    /// Tickets read, and of those the ones replayed (the others never had a passed message).
    pub scanned: u64,
    pub simulated: u64,
    /// More tickets were opened in the period than were read.
    pub truncated: bool,
    /// Open tickets are judged up to this instant.
    pub as_of: DateTime<Utc>,
    pub before: Totals,
    pub after: Totals,
    /// Every kind, in [`DifferenceKind::ALL`]'s order (none: a count of 0).
    pub differences: Vec<Difference>,
}

impl DryRun {
    pub fn difference(&self, kind: DifferenceKind) -> Option<&Difference> {
        self.differences.iter().find(|d| d.kind == kind)
    }
}

fn add_totals(t: &mut Totals, escalations: u32, breached: bool, auto_closed: bool) {
    t.escalations += u64::from(escalations);
    t.escalated_tickets += u64::from(escalations > 0);
    t.sla_breaches += u64::from(breached);
    t.auto_closes += u64::from(auto_closed);
}

fn recorded_close(f: &TicketFacts) -> String {
    match (&f.closed_at, &f.close_reason) {
        (Some(at), Some(reason)) => format!("{reason} at {}", at.to_rfc3339()),
        (Some(at), None) => format!("closed at {}", at.to_rfc3339()),
        _ => "open".into(),
    }
}

/// Replays `tickets` through `spec` and gathers the differences, with at most `examples`
/// ticket ids per kind (in the order of `tickets`).
pub fn dry_run(
    spec: &TicketSpec,
    tickets: &[TicketFacts],
    as_of: DateTime<Utc>,
    truncated: bool,
    examples: usize,
) -> DryRun {
    let patterns = spec.classify_patterns();
    let mut run = DryRun {
        scanned: u64::try_from(tickets.len()).unwrap_or(u64::MAX),
        simulated: 0,
        truncated,
        as_of,
        before: Totals::default(),
        after: Totals::default(),
        differences: DifferenceKind::ALL
            .iter()
            .map(|&kind| Difference {
                kind,
                tickets: 0,
                examples: Vec::new(),
            })
            .collect(),
    };
    for f in tickets {
        let Some(s) = simulate_ticket(spec, &patterns, f, as_of) else {
            continue;
        };
        run.simulated += 1;
        add_totals(
            &mut run.before,
            f.escalations,
            f.sla_breached,
            f.auto_closed(),
        );
        add_totals(
            &mut run.after,
            s.escalations,
            s.sla_breached,
            s.auto_closed_at.is_some(),
        );
        let breach = |b: bool| if b { "breached" } else { "met" }.to_owned();
        let mut found = Vec::new();
        if s.queue != f.queue {
            found.push((
                DifferenceKind::QueueChanged,
                f.queue.clone(),
                s.queue.clone(),
            ));
        }
        if s.priority != f.priority {
            found.push((
                DifferenceKind::PriorityChanged,
                priority_name(f.priority).into(),
                priority_name(s.priority).into(),
            ));
        }
        if s.escalations != f.escalations {
            let kind = if s.escalations > f.escalations {
                DifferenceKind::EscalationsAdded
            } else {
                DifferenceKind::EscalationsAvoided
            };
            found.push((kind, f.escalations.to_string(), s.escalations.to_string()));
        }
        if s.sla_breached != f.sla_breached {
            let kind = if s.sla_breached {
                DifferenceKind::SlaBreachAdded
            } else {
                DifferenceKind::SlaBreachAvoided
            };
            found.push((kind, breach(f.sla_breached), breach(s.sla_breached)));
        }
        match (f.auto_closed(), s.auto_closed_at) {
            (false, Some(at)) => found.push((
                DifferenceKind::AutoCloseAdded,
                recorded_close(f),
                format!("auto-closed at {}", at.to_rfc3339()),
            )),
            (true, None) => found.push((
                DifferenceKind::AutoCloseAvoided,
                recorded_close(f),
                match f.client_wrote_again_at {
                    Some(w) => format!("open when the client wrote again at {}", w.to_rfc3339()),
                    None => "open".into(),
                },
            )),
            _ => {}
        }
        for (kind, before, after) in found {
            if let Some(d) = run.differences.iter_mut().find(|d| d.kind == kind) {
                d.tickets += 1;
                if d.examples.len() < examples {
                    d.examples.push(Example {
                        ticket_id: f.ticket_id,
                        before,
                        after,
                    });
                }
            }
        }
    }
    run
}

/// Reads the recorded tickets of `period` (at most `max_tickets`, oldest first, in a read-only
/// transaction) and replays them through `spec`.
pub async fn dry_run_recorded(
    store: &tickets::PgStore,
    spec: &TicketSpec,
    period: &tickets::simulation::SimulationPeriod,
    max_tickets: usize,
    examples: usize,
) -> Result<DryRun, tickets::StoreError> {
    let recorded = store.recorded_tickets(period, max_tickets).await?;
    Ok(dry_run(
        spec,
        &recorded.tickets,
        recorded.as_of,
        recorded.truncated,
        examples,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    /// Monday 2026-11-23 10:00 UTC.
    fn t0() -> DateTime<Utc> {
        "2026-11-23T10:00:00Z".parse().expect("an instant")
    }

    fn min(n: i64) -> DateTime<Utc> {
        t0() + Duration::minutes(n)
    }

    fn spec(body: &str) -> TicketSpec {
        let text = format!("version: 1\nafc:\n  provider: kafka\n  timeout: 30s\n{body}");
        match crate::Spec::parse("new.yaml", &text) {
            Ok(s) => s.ticket,
            Err(e) => panic!("test spec: {e}"),
        }
    }

    const CLASSIFY: &str = "queues:\n  general: {}\n  cards: {}\n\
        classify:\n  default: { category: general, priority: normal, queue: general }\n  rules:\n\
        \x20   - name: cards\n      keywords: [card]\n      set: { category: cards, priority: high, queue: cards }\n";

    /// A ticket queued at t0 with "hello", in `general` at normal priority, assigned after
    /// `assigned` minutes, first answered after `answered` minutes, resolved after 10 hours.
    fn facts(assigned: Option<i64>, answered: Option<i64>) -> TicketFacts {
        TicketFacts {
            ticket_id: Uuid::from_u128(1),
            client_id: "web:c1".into(),
            created_at: t0(),
            queued_at: Some(t0()),
            first_text: Some("hello".into()),
            queue: "general".into(),
            category: "general".into(),
            priority: 1,
            escalations: 0,
            sla_breached: false,
            first_assigned_at: assigned.map(min),
            first_response_at: answered.map(min),
            replies: answered.map(min).into_iter().collect(),
            client_messages: vec![t0()],
            closed_at: Some(min(600)),
            close_reason: Some("resolved by m1".into()),
            client_wrote_again_at: None,
        }
    }

    fn diff(run: &DryRun, kind: DifferenceKind) -> (u64, Vec<(String, String)>) {
        let d = run.difference(kind).expect("every kind is listed");
        (
            d.tickets,
            d.examples
                .iter()
                .map(|e| (e.before.clone(), e.after.clone()))
                .collect(),
        )
    }

    fn no_other_difference(run: &DryRun, except: &[DifferenceKind]) {
        for d in &run.differences {
            if !except.contains(&d.kind) {
                assert_eq!(d.tickets, 0, "{:?}: {:?}", d.kind, d.examples);
            }
        }
    }

    #[test]
    fn a_first_message_a_new_rule_matches_changes_queue_and_priority() {
        let mut f = facts(Some(5), Some(6));
        f.first_text = Some("My CARD is blocked".into());
        let run = dry_run(&spec(CLASSIFY), &[f], min(700), false, 5);
        assert_eq!(
            diff(&run, DifferenceKind::QueueChanged),
            (1, vec![("general".into(), "cards".into())])
        );
        assert_eq!(
            diff(&run, DifferenceKind::PriorityChanged),
            (1, vec![("normal".into(), "high".into())])
        );
        no_other_difference(
            &run,
            &[
                DifferenceKind::QueueChanged,
                DifferenceKind::PriorityChanged,
            ],
        );
        assert_eq!((run.scanned, run.simulated), (1, 1));
    }

    #[test]
    fn a_ticket_without_a_passed_message_is_not_replayed() {
        let mut f = facts(None, None);
        f.first_text = None;
        let run = dry_run(&spec(CLASSIFY), &[f], min(700), false, 5);
        assert_eq!((run.scanned, run.simulated), (1, 0));
        no_other_difference(&run, &[]);
    }

    #[test]
    fn a_shorter_escalation_period_adds_rounds_and_a_longer_one_avoids_them() {
        // Taken after 25 minutes: 10m gives rounds at 10 and 20, 5m at 5, 10, 15, 20.
        let mut f = facts(Some(25), Some(26));
        f.escalations = 2;
        f.priority = 3;
        let shorter = dry_run(
            &spec("timers:\n  escalate_after: 5m\n"),
            std::slice::from_ref(&f),
            min(700),
            false,
            5,
        );
        assert_eq!(
            diff(&shorter, DifferenceKind::EscalationsAdded),
            (1, vec![("2".into(), "4".into())])
        );
        assert_eq!(
            (shorter.before.escalations, shorter.after.escalations),
            (2, 4)
        );
        no_other_difference(&shorter, &[DifferenceKind::EscalationsAdded]);

        let longer = dry_run(
            &spec("timers:\n  escalate_after: 30m\n"),
            &[f],
            min(700),
            false,
            5,
        );
        assert_eq!(
            diff(&longer, DifferenceKind::EscalationsAvoided),
            (1, vec![("2".into(), "0".into())])
        );
        assert_eq!(
            diff(&longer, DifferenceKind::PriorityChanged),
            (1, vec![("urgent".into(), "normal".into())])
        );
        assert_eq!(longer.after.escalated_tickets, 0);
    }

    #[test]
    fn an_open_ticket_nobody_took_escalates_up_to_now() {
        let mut f = facts(None, None);
        f.closed_at = None;
        f.close_reason = None;
        let run = dry_run(
            &spec("timers:\n  escalate_after: 10m\n"),
            &[f],
            min(35),
            false,
            5,
        );
        assert_eq!(
            diff(&run, DifferenceKind::EscalationsAdded),
            (1, vec![("0".into(), "3".into())])
        );
        assert_eq!(
            diff(&run, DifferenceKind::PriorityChanged),
            (1, vec![("normal".into(), "urgent".into())]),
            "three rounds from normal: urgent is the top"
        );
    }

    #[test]
    fn the_sla_is_breached_or_met_by_the_recorded_first_reply() {
        // Answered after 20 minutes.
        let f = facts(Some(1), Some(20));
        let tight = dry_run(
            &spec("timers:\n  first_response_within: 15m\n"),
            std::slice::from_ref(&f),
            min(700),
            false,
            5,
        );
        assert_eq!(
            diff(&tight, DifferenceKind::SlaBreachAdded),
            (1, vec![("met".into(), "breached".into())])
        );
        let mut breached = f;
        breached.sla_breached = true;
        let loose = dry_run(
            &spec("timers:\n  first_response_within: 30m\n"),
            &[breached],
            min(700),
            false,
            5,
        );
        assert_eq!(
            diff(&loose, DifferenceKind::SlaBreachAvoided),
            (1, vec![("breached".into(), "met".into())])
        );
        no_other_difference(&loose, &[DifferenceKind::SlaBreachAvoided]);
    }

    #[test]
    fn business_hours_do_not_count_a_night_or_a_weekend_against_the_sla() {
        const OFFICE: &str = "calendars:\n  office:\n    timezone: Europe/Moscow\n\
            \x20   weekdays: [mon, tue, wed, thu, fri]\n    hours: \"09:00-18:00\"\n";
        let plain = spec(&format!("{OFFICE}timers:\n  first_response_within: 1h\n"));
        let office = spec(&format!(
            "{OFFICE}timers:\n  first_response_within: {{ after: 1h, calendar: office }}\n"
        ));
        // Friday 2026-11-27 17:30 Moscow (14:30 UTC); answered Monday 09:20 Moscow (06:20 UTC):
        // 30 minutes on Friday and 20 on Monday in business hours, 63 hours on the clock.
        let friday: DateTime<Utc> = "2026-11-27T14:30:00Z".parse().expect("an instant");
        let monday: DateTime<Utc> = "2026-11-30T06:20:00Z".parse().expect("an instant");
        let mut f = facts(None, None);
        f.queued_at = Some(friday);
        f.created_at = friday;
        f.first_assigned_at = Some(friday + Duration::minutes(1));
        f.first_response_at = Some(monday);
        f.replies = vec![monday];
        f.closed_at = Some(monday + Duration::minutes(5));
        f.sla_breached = true;
        let as_of = monday + Duration::hours(1);
        let run = dry_run(&office, std::slice::from_ref(&f), as_of, false, 5);
        assert_eq!(
            diff(&run, DifferenceKind::SlaBreachAvoided).0,
            1,
            "the weekend is not business time"
        );
        // The same ticket answered Monday 10:00 Moscow: 90 business minutes, a breach either way.
        let late = monday + Duration::minutes(40);
        f.first_response_at = Some(late);
        f.replies = vec![late];
        f.closed_at = Some(late + Duration::minutes(5));
        assert_eq!(
            diff(
                &dry_run(&office, std::slice::from_ref(&f), as_of, false, 5),
                DifferenceKind::SlaBreachAvoided
            )
            .0,
            0
        );
        f.sla_breached = false;
        assert_eq!(
            diff(
                &dry_run(&plain, &[f], as_of, false, 5),
                DifferenceKind::SlaBreachAdded
            )
            .0,
            1,
            "on the clock the weekend counts"
        );
    }

    #[test]
    fn the_silence_timer_adds_an_auto_close_before_the_managers_resolve() {
        // Replied at 10 minutes, resolved by the manager at 10 hours, the client silent.
        let f = facts(Some(5), Some(10));
        let run = dry_run(
            &spec("timers:\n  auto_close_after_client_silence: 2h\n"),
            &[f],
            min(700),
            false,
            5,
        );
        let (n, ex) = diff(&run, DifferenceKind::AutoCloseAdded);
        assert_eq!(n, 1);
        assert_eq!(ex[0].1, format!("auto-closed at {}", min(130).to_rfc3339()));
        assert_eq!((run.before.auto_closes, run.after.auto_closes), (0, 1));
    }

    #[test]
    fn the_client_writing_back_moves_the_silence_as_the_store_check_does() {
        // Replies at 10, 70 and 210, the client writes at 100 and 200; with 2h the timer fires
        // at 130 (the client wrote after the reply at 70: count again from 130), at 250 (a
        // reply at 210 since: count from it) and closes at 330.
        let mut f = facts(Some(5), Some(10));
        f.replies = vec![min(10), min(70), min(210)];
        f.client_messages = vec![t0(), min(100), min(200)];
        let timer = spec("timers:\n  auto_close_after_client_silence: 2h\n");
        let patterns = timer.classify_patterns();
        let s = simulate_ticket(&timer, &patterns, &f, min(700)).expect("replayed");
        assert_eq!(s.auto_closed_at, Some(min(330)));
    }

    #[test]
    fn a_client_waiting_for_an_answer_is_checked_a_period_apart_until_the_next_reply() {
        // Replies at 10 and 400, the client at 20; 1h: checks at 70, 130, .. 370 find the
        // client waiting, the one at 430 finds the reply at 400 and the close comes at 460.
        let mut f = facts(Some(5), Some(10));
        f.replies = vec![min(10), min(400)];
        f.client_messages = vec![t0(), min(20)];
        let timer = spec("timers:\n  auto_close_after_client_silence: 1h\n");
        let patterns = timer.classify_patterns();
        let s = simulate_ticket(&timer, &patterns, &f, min(700)).expect("replayed");
        assert_eq!(s.auto_closed_at, Some(min(460)));
        // No reply after the client's message: it never closes on silence, however long.
        f.replies = vec![min(10)];
        f.client_messages = vec![t0(), min(10) + Duration::seconds(30)];
        f.closed_at = None;
        f.close_reason = None;
        let fast = spec("timers:\n  auto_close_after_client_silence: 1m\n");
        let s = simulate_ticket(&fast, &patterns, &f, t0() + Duration::days(31)).expect("replayed");
        assert_eq!(s.auto_closed_at, None);
    }

    #[test]
    fn a_longer_silence_avoids_an_auto_close_when_the_client_wrote_back_in_time() {
        // Auto-closed 24h after the reply at 10; the client wrote again 30 hours after it.
        let mut f = facts(Some(5), Some(10));
        f.closed_at = Some(min(10 + 24 * 60));
        f.close_reason = Some("auto_closed: client silent".into());
        f.client_wrote_again_at = Some(min(10 + 30 * 60));
        let as_of = min(10 + 40 * 60);
        let same = dry_run(
            &spec("timers:\n  auto_close_after_client_silence: 24h\n"),
            std::slice::from_ref(&f),
            as_of,
            false,
            5,
        );
        no_other_difference(&same, &[]);
        assert_eq!((same.before.auto_closes, same.after.auto_closes), (1, 1));
        let longer = dry_run(
            &spec("timers:\n  auto_close_after_client_silence: 48h\n"),
            std::slice::from_ref(&f),
            as_of,
            false,
            5,
        );
        assert_eq!(diff(&longer, DifferenceKind::AutoCloseAvoided).0, 1);
        let none = dry_run(
            &spec("timers:\n  escalate_after: 10m\n"),
            &[f],
            as_of,
            false,
            5,
        );
        assert_eq!(
            diff(&none, DifferenceKind::AutoCloseAvoided).0,
            1,
            "no silence timer: nothing closes on silence"
        );
    }

    #[test]
    fn examples_are_capped_and_counts_are_not() {
        let tickets: Vec<TicketFacts> = (0..5)
            .map(|i| {
                let mut f = facts(Some(1), Some(2));
                f.ticket_id = Uuid::from_u128(i);
                f.first_text = Some("card".into());
                f
            })
            .collect();
        let run = dry_run(&spec(CLASSIFY), &tickets, min(700), true, 2);
        let d = run
            .difference(DifferenceKind::QueueChanged)
            .expect("listed");
        assert_eq!(d.tickets, 5);
        assert_eq!(
            d.examples.iter().map(|e| e.ticket_id).collect::<Vec<_>>(),
            vec![Uuid::from_u128(0), Uuid::from_u128(1)]
        );
        assert!(run.truncated);
    }
}
