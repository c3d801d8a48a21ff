//! A report as CSV, what `AdminService.ExportReport` returns: RFC 4180 (the `csv` crate quotes),
//! a header row, one row per group. Text cells that a spreadsheet would run as a formula (`=`,
//! `+`, `-`, `@`, tab, carriage return first: a manager's display name comes from the identity
//! provider, not from the bank's staff) are prefixed with `'`.

use tickets::reports::{Durations, GroupBy, Report, ReportRow};

pub const CONTENT_TYPE: &str = "text/csv; charset=utf-8";

/// The header row (README "Reports" describes each column).
pub fn header(group_by: GroupBy) -> Vec<String> {
    let mut h = vec![group_by.as_str().to_owned()];
    if group_by == GroupBy::Manager {
        h.push("manager_name".into());
    }
    h.extend(["opened", "closed"].map(String::from));
    for span in ["first_response", "resolution", "waiting"] {
        h.push(format!("{span}_count"));
        for figure in ["avg", "p50", "p90"] {
            h.push(format!("{span}_{figure}_seconds"));
        }
    }
    h.extend(
        [
            "escalations",
            "sla_breaches",
            "csat_count",
            "csat_avg",
            "csat_satisfied_percent",
        ]
        .map(String::from),
    );
    h
}

/// Text a spreadsheet shows as text.
fn text(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

/// A figure with `decimals` digits after the point; empty when there is none.
fn figure(v: Option<f64>, decimals: usize) -> String {
    v.map(|v| format!("{v:.decimals$}")).unwrap_or_default()
}

fn record(group_by: GroupBy, r: &ReportRow) -> Vec<String> {
    let mut rec = vec![text(&r.key)];
    if group_by == GroupBy::Manager {
        rec.push(text(&r.name));
    }
    rec.extend([r.opened.to_string(), r.closed.to_string()]);
    let spans: [&Durations; 3] = [&r.first_response, &r.resolution, &r.waiting];
    for d in spans {
        rec.push(d.count.to_string());
        rec.extend([d.avg_secs, d.p50_secs, d.p90_secs].map(|s| figure(s, 1)));
    }
    rec.extend([
        r.escalations.to_string(),
        r.sla_breaches.to_string(),
        r.csat.count.to_string(),
        figure(r.csat.average, 2),
        figure(r.csat.satisfied_percent(), 1),
    ]);
    rec
}

/// The report's rows as CSV (the total is not a row: a tool sums what it needs, and the
/// percentiles of the whole period are in `GetReport`).
pub fn write(report: &Report) -> Result<Vec<u8>, csv::Error> {
    let group_by = report.query.group_by();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header(group_by))?;
    for row in &report.rows {
        w.write_record(record(group_by, row))?;
    }
    w.into_inner().map_err(|e| e.into_error().into())
}

/// `report-<grouping>-<first day>-<last day>.csv`, the days local to the report's time zone.
pub fn filename(report: &Report) -> String {
    let q = &report.query;
    let tz = q.time_zone();
    let first = q.start().with_timezone(&tz).date_naive();
    let last = (q.end() - chrono::Duration::nanoseconds(1))
        .with_timezone(&tz)
        .date_naive();
    format!("report-{}-{first}-{last}.csv", q.group_by().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickets::reports::{Csat, ReportQuery};

    fn report(group_by: GroupBy, rows: Vec<ReportRow>) -> Report {
        let start = "2026-03-01T00:00:00Z".parse().expect("an instant");
        let end = "2026-03-08T00:00:00Z".parse().expect("an instant");
        Report {
            query: ReportQuery::new(start, end, group_by, chrono_tz::Tz::UTC).expect("a period"),
            rows,
            total: ReportRow::default(),
            truncated: false,
        }
    }

    #[test]
    fn a_manager_report_quotes_names_and_defuses_formulas() -> anyhow::Result<()> {
        let row = |key: &str, name: &str| ReportRow {
            key: key.into(),
            name: name.into(),
            opened: 2,
            first_response: Durations {
                count: 2,
                avg_secs: Some(105.0),
                p50_secs: Some(105.0),
                p90_secs: Some(117.04),
            },
            csat: Csat {
                count: 3,
                average: Some(4.0 + 1.0 / 3.0),
                satisfied: 2,
            },
            ..ReportRow::default()
        };
        let r = report(
            GroupBy::Manager,
            vec![
                row("alice", "Smith, \"Ali\""),
                row("eve", "=HYPERLINK(\"x\")"),
            ],
        );
        let bytes = write(&r)?;
        let mut read = csv::Reader::from_reader(bytes.as_slice());
        assert_eq!(
            read.headers()?.iter().take(5).collect::<Vec<_>>(),
            [
                "manager",
                "manager_name",
                "opened",
                "closed",
                "first_response_count"
            ]
        );
        let rows: Vec<csv::StringRecord> = read.records().collect::<Result<_, _>>()?;
        assert_eq!(rows.len(), 2);
        assert_eq!(
            &rows[0][1], "Smith, \"Ali\"",
            "quoted, read back as written"
        );
        assert_eq!(&rows[1][1], "'=HYPERLINK(\"x\")");
        assert_eq!(&rows[0][5], "105.0");
        assert_eq!(&rows[0][7], "117.0");
        assert_eq!(&rows[0][8], "0", "no closes");
        assert_eq!(&rows[0][9], "", "no resolution time without closes");
        assert_eq!(&rows[0][19], "4.33");
        assert_eq!(&rows[0][20], "66.7");
        assert_eq!(rows[0].len(), header(GroupBy::Manager).len());
        Ok(())
    }

    #[test]
    fn a_file_is_named_after_the_grouping_and_the_days_it_covers() {
        let r = report(GroupBy::Queue, Vec::new());
        assert_eq!(filename(&r), "report-queue-2026-03-01-2026-03-07.csv");
    }
}
