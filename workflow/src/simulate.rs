//! `workflow simulate`: a dry run of a changed `workflows.yaml` over the tickets recorded in a
//! period (`spec::simulate`), printed as a table or as JSON. Reads only: the database is asked
//! in one read-only transaction, no workflow is started or signalled.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use spec::simulate::{DifferenceKind, DryRun};
use tickets::simulation::SimulationPeriod;

/// `--since` / `--until`: an RFC 3339 instant, or a duration before `now` (`7d`, `36h`).
pub fn instant(arg: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(arg.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    let Some(ago) = spec::parse_duration(arg) else {
        bail!(
            r#"expected a duration like "7d" or an instant like 2026-11-01T00:00:00Z, got {arg:?}"#
        );
    };
    let ms = i64::try_from(ago.0).context("duration too long")?;
    Ok(now - Duration::milliseconds(ms))
}

/// What `--json` prints: the period, the spec's version and the dry run.
#[derive(Debug, Serialize)]
pub struct Output<'a> {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub spec_version: &'a str,
    #[serde(flatten)]
    pub run: &'a DryRun,
}

/// How the table names each kind of difference.
fn label(kind: DifferenceKind) -> &'static str {
    match kind {
        DifferenceKind::QueueChanged => "queue changed",
        DifferenceKind::PriorityChanged => "priority changed",
        DifferenceKind::EscalationsAdded => "escalations added",
        DifferenceKind::EscalationsAvoided => "escalations avoided",
        DifferenceKind::SlaBreachAdded => "SLA breach added",
        DifferenceKind::SlaBreachAvoided => "SLA breach avoided",
        DifferenceKind::AutoCloseAdded => "auto-close added",
        DifferenceKind::AutoCloseAvoided => "auto-close avoided",
    }
}

/// The human summary: the period, before/after totals, and one row per kind of difference with
/// its example tickets.
pub fn render(period: &SimulationPeriod, run: &DryRun) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Dry run of tickets opened {} .. {} (open tickets judged up to {})",
        period.start.to_rfc3339(),
        period.end.to_rfc3339(),
        run.as_of.to_rfc3339()
    );
    let _ = writeln!(
        out,
        "{} tickets read, {} replayed ({} never had a passed message){}",
        run.scanned,
        run.simulated,
        run.scanned - run.simulated,
        if run.truncated {
            "; TRUNCATED: more tickets were opened in the period, narrow it or raise --max-tickets"
        } else {
            ""
        }
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<22} {:>10} {:>10}", "", "recorded", "new spec");
    let rows = [
        ("escalations", run.before.escalations, run.after.escalations),
        (
            "tickets escalated",
            run.before.escalated_tickets,
            run.after.escalated_tickets,
        ),
        (
            "SLA breaches",
            run.before.sla_breaches,
            run.after.sla_breaches,
        ),
        ("auto-closes", run.before.auto_closes, run.after.auto_closes),
    ];
    for (name, before, after) in rows {
        let _ = writeln!(out, "{name:<22} {before:>10} {after:>10}");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<22} {:>10}  examples", "difference", "tickets");
    for d in &run.differences {
        let _ = writeln!(out, "{:<22} {:>10}", label(d.kind), d.tickets);
        for e in &d.examples {
            let _ = writeln!(
                out,
                "{:<35}{}  {} -> {}",
                "", e.ticket_id, e.before, e.after
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_duration_back_from_now_or_an_instant() {
        let now: DateTime<Utc> = "2026-12-03T12:00:00Z".parse().expect("an instant");
        assert_eq!(
            instant("7d", now).expect("a duration"),
            now - Duration::days(7)
        );
        assert_eq!(
            instant("2026-11-01T00:00:00+03:00", now).expect("an instant"),
            "2026-10-31T21:00:00Z"
                .parse::<DateTime<Utc>>()
                .expect("an instant")
        );
        assert!(instant("last week", now).is_err());
    }
}
