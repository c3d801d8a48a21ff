//! The ticket lifecycle's decisions, as pure functions of the state and the spec: which timers a
//! ticket has armed in its state and when each falls due (escalation while it waits, the first
//! response SLA, closing on the client's silence after the manager's last reply), in business
//! time where the spec names a calendar, and what the store's answer about a silence means (close
//! now, or count again from a later instant). The workflow (`ticket.rs`) keeps the state, races
//! the timers against the signals and runs the side effects as activities; these functions are
//! deterministic (no clock: every instant is given) and tested here without Temporal.

use serde::{Deserialize, Serialize};
use spec::{TicketSpec, TimerSpec};

use crate::activities::CheckOutcome;

/// Where a ticket is in its life; carried across continue-as-new.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// A message was checked for this ticket: the ticket exists in the store.
    pub opened: bool,
    /// When the first passed message queued the ticket (ms since the epoch, workflow clock).
    pub queued_at_ms: Option<i64>,
    pub manager: Option<String>,
    pub escalations: u32,
    pub responded: bool,
    pub sla_reported: bool,
    /// Where the silence period counts from: the manager's last reply, while the client has not
    /// written since. A store-checked ticket hears only the first reply and asks the store when
    /// the period ends; while its client waits for an answer this is when it last asked.
    pub silent_since_ms: Option<i64>,
}

/// The instant `times` × the timer's duration after `from`, in business time if it has a calendar.
pub(crate) fn deadline(timer: &TimerSpec, from_ms: i64, times: u32) -> i64 {
    timer.deadline_ms(from_ms, times)
}

/// When the silence timer fires, what the store says of the silence: None to close the ticket
/// now (the client has been silent since the last reply for the whole period), or the instant to
/// count the period from again. A later reply moves the deadline to that reply; a client who
/// wrote after the last reply waits for an answer, so the store is asked again a period from now
/// (any reply in between is then at most a period old, and its deadline not yet past).
pub(crate) fn silence_deadline_moved(
    spec: &TicketSpec,
    silence: &tickets::ReplySilence,
    now: i64,
) -> Option<i64> {
    let timer = spec.timers.auto_close_after_client_silence.as_ref()?;
    match silence.last_reply_ms {
        _ if silence.client_wrote_since => Some(now),
        Some(last) if deadline(timer, last, 1) > now => Some(last),
        _ => None,
    }
}

/// Which timer fell due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    Escalate,
    Sla,
    AutoClose,
    AfcTimeout,
}

impl Lifecycle {
    /// Takes in what an AFC check did (builtin rules or applied Kafka verdicts).
    pub(crate) fn checked(&mut self, out: &CheckOutcome, now: i64) {
        if out.checked > 0 || out.opened {
            self.opened = true;
        }
        if out.queued {
            self.queued_at_ms = Some(now);
        }
        if let Some(m) = &out.assigned_to
            && self.manager.is_none()
        {
            self.manager = Some(m.clone());
        }
    }
}

impl Lifecycle {
    /// The timers armed in this state, with their deadlines.
    pub(crate) fn deadlines(&self, spec: &TicketSpec) -> Vec<(i64, Due)> {
        let t = &spec.timers;
        let mut out = Vec::new();
        if let (Some(timer), Some(q), None) = (&t.escalate_after, self.queued_at_ms, &self.manager)
        {
            out.push((deadline(timer, q, self.escalations + 1), Due::Escalate));
        }
        if let (Some(timer), Some(q), false, false) = (
            &t.first_response_within,
            self.queued_at_ms,
            self.responded,
            self.sla_reported,
        ) {
            out.push((deadline(timer, q, 1), Due::Sla));
        }
        if let (Some(timer), Some(since), Some(_)) = (
            &t.auto_close_after_client_silence,
            self.silent_since_ms,
            &self.manager,
        ) {
            out.push((deadline(timer, since, 1), Due::AutoClose));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn spec(timers: &str) -> TicketSpec {
        // The smallest spec the checker takes (AFC by the bank's system), with the timers given.
        let text =
            format!("version: 1\nafc:\n  provider: kafka\n  timeout: 30s\ntimers:\n{timers}");
        match spec::Spec::parse("timers.yaml", &text) {
            Ok(s) => s.ticket,
            Err(e) => panic!("test spec: {e}"),
        }
    }

    fn due(life: &Lifecycle, spec: &TicketSpec) -> Vec<(i64, Due)> {
        life.deadlines(spec)
    }

    #[test]
    fn a_waiting_ticket_escalates_each_period_until_a_manager_has_it() {
        let spec = spec("  escalate_after: 10m\n");
        let mut life = Lifecycle {
            queued_at_ms: Some(0),
            ..Lifecycle::default()
        };
        assert_eq!(due(&life, &spec), vec![(10 * MIN, Due::Escalate)]);
        life.escalations = 2;
        assert_eq!(
            due(&life, &spec),
            vec![(30 * MIN, Due::Escalate)],
            "the third round"
        );
        life.manager = Some("m1".into());
        assert!(due(&life, &spec).is_empty(), "assigned: no more escalation");
        assert!(
            due(&Lifecycle::default(), &spec).is_empty(),
            "not queued: nothing armed"
        );
    }

    #[test]
    fn the_sla_is_armed_from_the_queueing_until_the_first_response_or_its_breach() {
        let spec = spec("  first_response_within: 30m\n");
        let mut life = Lifecycle {
            queued_at_ms: Some(5 * MIN),
            manager: Some("m1".into()),
            ..Lifecycle::default()
        };
        assert_eq!(due(&life, &spec), vec![(35 * MIN, Due::Sla)]);
        life.sla_reported = true;
        assert!(due(&life, &spec).is_empty(), "a breach is reported once");
        life.sla_reported = false;
        life.responded = true;
        assert!(due(&life, &spec).is_empty(), "answered in time");
    }

    #[test]
    fn silence_closes_only_a_ticket_a_manager_has_a_period_after_the_last_reply() {
        let spec = spec("  auto_close_after_client_silence: 24h\n");
        let mut life = Lifecycle {
            queued_at_ms: Some(0),
            silent_since_ms: Some(MIN),
            ..Lifecycle::default()
        };
        assert!(
            due(&life, &spec).is_empty(),
            "no manager: never closed on silence"
        );
        life.manager = Some("m1".into());
        assert_eq!(
            due(&life, &spec),
            vec![(MIN + 24 * 60 * MIN, Due::AutoClose)]
        );
    }

    #[test]
    fn a_deadline_in_business_time_skips_the_closed_hours() {
        let spec = spec(
            "  first_response_within: { after: 30m, calendar: office }\n\
             calendars:\n  office:\n    timezone: UTC\n    weekdays: [mon, tue, wed, thu, fri]\n    hours: \"09:00-18:00\"\n",
        );
        let timer = match &spec.timers.first_response_within {
            Some(t) => t.clone(),
            None => panic!("no timer"),
        };
        // Friday 2026-12-04 17:50 UTC: 10 minutes that day, 20 on Monday from 09:00.
        let friday = chrono::DateTime::parse_from_rfc3339("2026-12-04T17:50:00Z")
            .map(|t| t.timestamp_millis())
            .unwrap_or_default();
        let monday = chrono::DateTime::parse_from_rfc3339("2026-12-07T09:20:00Z")
            .map(|t| t.timestamp_millis())
            .unwrap_or_default();
        assert_eq!(deadline(&timer, friday, 1), monday);
        let plain = TimerSpec {
            calendar: None,
            ..timer
        };
        assert_eq!(
            deadline(&plain, friday, 2),
            friday + 60 * MIN,
            "twice the period"
        );
    }

    #[test]
    fn the_stores_answer_about_a_silence_closes_or_counts_again() {
        let spec = spec("  auto_close_after_client_silence: 1h\n");
        let now = 10 * 60 * MIN;
        let silence = |last: Option<i64>, wrote: bool| tickets::ReplySilence {
            last_reply_ms: last,
            client_wrote_since: wrote,
        };
        assert_eq!(
            silence_deadline_moved(&spec, &silence(Some(now - 2 * 60 * MIN), false), now),
            None,
            "silent for longer than the period: close"
        );
        assert_eq!(
            silence_deadline_moved(&spec, &silence(Some(now - 10 * MIN), false), now),
            Some(now - 10 * MIN),
            "a later reply: count from it"
        );
        assert_eq!(
            silence_deadline_moved(&spec, &silence(Some(now - 2 * 60 * MIN), true), now),
            Some(now),
            "the client wrote: they wait for an answer, ask again a period from now"
        );
        let no_timer = self::spec("  escalate_after: 10m\n");
        assert_eq!(
            silence_deadline_moved(&no_timer, &silence(None, false), now),
            None
        );
    }
}
