//! Supervisors' reports of a period, computed from what the engine recorded: tickets opened and
//! closed, first-response, resolution and waiting times (average, median, 90th percentile),
//! escalations, SLA breaches and satisfaction ratings, grouped by queue, manager, channel or
//! local day. One SQL query per report (`percentile_cont` per group and over all of them).
//!
//! Each figure is dated by the fact it counts, so a period's figures are those of what happened
//! in it: a ticket opened last week and closed today counts in today's closes. The facts are the
//! lifecycle events (`ticket_assigned`, `ticket_responded`, `ticket_closed`, `ticket_escalated`,
//! `sla_breached`, `satisfaction_recorded`) and, for opening and queueing, the ticket's own row
//! (`created_at`, `waiting_since`): a ticket checked by its workflow rather than the inbound
//! transaction writes no `ticket_opened` or `ticket_queued` event, while every ticket has a row.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::domain::event_kind as kind;
use crate::store::{PgStore, Result};

/// The longest period a report covers.
pub const MAX_PERIOD_DAYS: i64 = 366;
/// The most groups a report returns (more are cut, and the report says so).
pub const MAX_GROUPS: usize = 1000;
/// A period not given: this many local days, today included.
pub const DEFAULT_DAYS: u32 = 7;

/// What the rows of a report are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// One row per local day of the time zone, every day of the period (empty ones too).
    Day,
    /// The ticket's queue.
    Queue,
    /// The manager the fact is about (see [`PgStore::report`]); `""`: nobody.
    Manager,
    /// The client's channel (`web`, `telegram`, `email`: [`crate::channel_of_client`]).
    Channel,
}

impl GroupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Day => "day",
            GroupBy::Queue => "queue",
            GroupBy::Manager => "manager",
            GroupBy::Channel => "channel",
        }
    }
}

/// Why a report cannot be made as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("the period must end after it starts")]
    EmptyPeriod,
    #[error("the period may be at most {MAX_PERIOD_DAYS} days")]
    PeriodTooLong,
    #[error("unknown time zone {0:?}: an IANA name such as Europe/Moscow (empty: UTC)")]
    UnknownTimeZone(String),
}

/// A time zone by its IANA name; empty means UTC.
pub fn time_zone(name: &str) -> Result<Tz, ReportError> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>()
        .map_err(|_| ReportError::UnknownTimeZone(name.to_owned()))
}

/// The first instant of local day `date` in `tz` (midnight, or the first minute that exists
/// where a clock change skips midnight).
fn day_start(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    (0..24 * 4)
        .find_map(|quarter| {
            let t = date.and_time(NaiveTime::MIN) + Duration::minutes(15 * quarter);
            tz.from_local_datetime(&t).earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        // No zone skips a whole day's first 24 hours; the UTC midnight is a harmless fallback.
        .unwrap_or_else(|| date.and_time(NaiveTime::MIN).and_utc())
}

/// A report to make: the period `[start, end)`, the grouping and the time zone of days.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportQuery {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    group_by: GroupBy,
    tz: Tz,
    max_groups: usize,
}

impl ReportQuery {
    /// The period `[start, end)`, at most [`MAX_PERIOD_DAYS`] long.
    pub fn new(
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        group_by: GroupBy,
        tz: Tz,
    ) -> Result<Self, ReportError> {
        if end <= start {
            return Err(ReportError::EmptyPeriod);
        }
        if end - start > Duration::days(MAX_PERIOD_DAYS) {
            return Err(ReportError::PeriodTooLong);
        }
        Ok(Self {
            start,
            end,
            group_by,
            tz,
            max_groups: MAX_GROUPS,
        })
    }

    /// The start of the default period ending at `end`: the local midnight [`DEFAULT_DAYS`] − 1
    /// days before `end`'s local day (so the period is that many days, the last one so far).
    pub fn default_start(end: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let today = end.with_timezone(&tz).date_naive();
        day_start(
            tz,
            today - Duration::days(i64::from(DEFAULT_DAYS.saturating_sub(1))),
        )
    }

    /// At most `n` groups (1 to [`MAX_GROUPS`]).
    pub fn with_max_groups(mut self, n: usize) -> Self {
        self.max_groups = n.clamp(1, MAX_GROUPS);
        self
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }
    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }
    pub fn group_by(&self) -> GroupBy {
        self.group_by
    }
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The local days of the period: (first instant in the period, local date), in order. The
    /// first starts at `start`, each next at a local midnight before `end`.
    pub fn days(&self) -> Vec<(DateTime<Utc>, NaiveDate)> {
        let mut date = self.start.with_timezone(&self.tz).date_naive();
        let mut days = vec![(self.start, date)];
        loop {
            date = match date.succ_opt() {
                Some(d) => d,
                None => return days,
            };
            let at = day_start(self.tz, date);
            if at >= self.end {
                return days;
            }
            if at > self.start {
                days.push((at, date));
            }
        }
    }
}

/// A span's figures: how many, their average, median and 90th percentile (seconds; `None`
/// when there are none).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Durations {
    pub count: i64,
    pub avg_secs: Option<f64>,
    pub p50_secs: Option<f64>,
    pub p90_secs: Option<f64>,
}

/// Satisfaction ratings given (1 to 5).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Csat {
    pub count: i64,
    pub average: Option<f64>,
    /// Ratings of 4 or 5.
    pub satisfied: i64,
}

impl Csat {
    /// The share of ratings of 4 or 5, in percent; `None` without ratings.
    pub fn satisfied_percent(&self) -> Option<f64> {
        (self.count > 0).then(|| self.satisfied as f64 * 100.0 / self.count as f64)
    }
}

/// One group's figures (or all of them: [`Report::total`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportRow {
    /// The queue, the manager's id (`""`: none), the channel, or the local date (`YYYY-MM-DD`).
    pub key: String,
    /// The manager's display name; otherwise the key.
    pub name: String,
    pub opened: i64,
    pub closed: i64,
    /// Queued → first manager reply, of the first replies in the period.
    pub first_response: Durations,
    /// Opened → closed, of the closes in the period.
    pub resolution: Durations,
    /// Queued → first assigned, of the first assignments in the period.
    pub waiting: Durations,
    pub escalations: i64,
    pub sla_breaches: i64,
    pub csat: Csat,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub query: ReportQuery,
    /// By key (days in order).
    pub rows: Vec<ReportRow>,
    pub total: ReportRow,
    /// More groups than [`ReportQuery::with_max_groups`] allowed: the rows are the first ones.
    pub truncated: bool,
}

/// Where the channel of a ticket comes from, in SQL: the prefix of its client's id, as
/// [`crate::channel_of_client`] says.
const CHANNEL_SQL: &str = "CASE WHEN starts_with(client_id, 'tg:') THEN 'telegram' \
     WHEN starts_with(client_id, 'email:') THEN 'email' ELSE 'web' END";

fn durations(row: &PgRow, prefix: &str) -> Result<Durations> {
    Ok(Durations {
        count: row.try_get(format!("{prefix}_n").as_str())?,
        avg_secs: row.try_get(format!("{prefix}_avg").as_str())?,
        p50_secs: row.try_get(format!("{prefix}_p50").as_str())?,
        p90_secs: row.try_get(format!("{prefix}_p90").as_str())?,
    })
}

fn row_of(row: &PgRow) -> Result<ReportRow> {
    let key: String = row.try_get("key")?;
    let name: Option<String> = row.try_get("name")?;
    Ok(ReportRow {
        name: name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| key.clone()),
        key,
        opened: row.try_get("opened")?,
        closed: row.try_get("closed")?,
        first_response: durations(row, "fr")?,
        resolution: durations(row, "res")?,
        waiting: durations(row, "wait")?,
        escalations: row.try_get("escalations")?,
        sla_breaches: row.try_get("breaches")?,
        csat: Csat {
            count: row.try_get("csat_n")?,
            average: row.try_get("csat_avg")?,
            satisfied: row.try_get("csat_good")?,
        },
    })
}

/// The aggregates of one span fact, as columns `<prefix>_n`, `_avg`, `_p50`, `_p90`.
fn span_columns(prefix: &str, fact: &str) -> String {
    format!(
        "count(secs) FILTER (WHERE fact = '{fact}') AS {prefix}_n,
         avg(secs) FILTER (WHERE fact = '{fact}') AS {prefix}_avg,
         percentile_cont(0.5) WITHIN GROUP (ORDER BY secs) FILTER (WHERE fact = '{fact}') AS {prefix}_p50,
         percentile_cont(0.9) WITHIN GROUP (ORDER BY secs) FILTER (WHERE fact = '{fact}') AS {prefix}_p90"
    )
}

impl PgStore {
    /// The report of `query`. Each fact of a ticket counts in the period (and the day) it
    /// happened in, and for the manager it names: who replied first (first response), who got
    /// the ticket first (waiting), who held it at the close, the rating or the breach; opening
    /// and escalations (before anyone has it), and a breach while unassigned, count for the
    /// ticket's manager now. Queue and channel are the ticket's.
    pub async fn report(&self, query: &ReportQuery) -> Result<Report> {
        let days = query.days();
        let day_starts: Vec<DateTime<Utc>> = days.iter().map(|(at, _)| *at).collect();
        // The kinds are literals so that the partial index of migration 1800 applies.
        let sql = format!(
            "WITH facts AS (
                 SELECT 'opened' AS fact, t.id, t.queue, t.client_id, t.created_at AS at,
                        NULL::float8 AS secs, NULL::int AS rating, t.manager_id
                 FROM tickets t WHERE t.created_at >= $1 AND t.created_at < $2
                 UNION ALL
                 SELECT e.kind, t.id, t.queue, t.client_id, e.created_at,
                        -- A transaction's now() is its start: an assignment that began before
                        -- the queueing committed is dated a little before it.
                        CASE WHEN span.secs < 0 THEN 0 ELSE span.secs END,
                        CASE WHEN e.kind = '{rated}' THEN (e.payload->>'rating')::int END,
                        coalesce(CASE WHEN e.kind = '{responded}' THEN e.payload->>'manager_id' END,
                                 e.manager_id, t.manager_id)
                 FROM events e JOIN tickets t ON t.id = e.ticket_id
                      CROSS JOIN LATERAL (SELECT extract(epoch FROM e.created_at - CASE e.kind
                          WHEN '{closed}' THEN t.created_at
                          WHEN '{assigned}' THEN t.waiting_since
                          WHEN '{responded}' THEN t.waiting_since END)::float8 AS secs) span
                 WHERE e.kind IN ('{assigned}', '{responded}', '{closed}', '{escalated}',
                                  '{breached}', '{rated}')
                   AND e.created_at >= $1 AND e.created_at < $2
                   -- A transfer is a ticket_assigned too: only the first one ends the wait.
                   AND (e.kind <> '{assigned}' OR NOT EXISTS (
                        SELECT 1 FROM events p
                        WHERE p.ticket_id = e.ticket_id AND p.kind = '{assigned}' AND p.id < e.id))
             ),
             keyed AS (
                 SELECT f.*,
                        CASE WHEN $3 = 'day' THEN width_bucket(f.at, $4::timestamptz[]) ELSE 0 END
                            AS day,
                        CASE $3 WHEN 'queue' THEN f.queue
                                WHEN 'manager' THEN coalesce(f.manager_id, '')
                                WHEN 'channel' THEN {channel}
                                ELSE '' END AS key
                 FROM facts f
             ),
             grouped AS (
                 SELECT GROUPING(day, key) <> 0 AS is_total, day, coalesce(key, '') AS key,
                        count(*) FILTER (WHERE fact = 'opened') AS opened,
                        count(*) FILTER (WHERE fact = '{closed}') AS closed,
                        {fr}, {res}, {wait},
                        count(*) FILTER (WHERE fact = '{escalated}') AS escalations,
                        count(*) FILTER (WHERE fact = '{breached}') AS breaches,
                        count(rating) AS csat_n, avg(rating)::float8 AS csat_avg,
                        count(*) FILTER (WHERE rating >= 4) AS csat_good
                 FROM keyed GROUP BY GROUPING SETS ((day, key), ())
             )
             SELECT g.*, m.display_name AS name
             FROM grouped g LEFT JOIN managers m ON $3 = 'manager' AND m.id = g.key
             ORDER BY g.is_total DESC, g.day, g.key
             LIMIT $5",
            assigned = kind::TICKET_ASSIGNED,
            responded = kind::TICKET_RESPONDED,
            closed = kind::TICKET_CLOSED,
            escalated = kind::TICKET_ESCALATED,
            breached = kind::SLA_BREACHED,
            rated = kind::SATISFACTION_RECORDED,
            channel = CHANNEL_SQL,
            fr = span_columns("fr", kind::TICKET_RESPONDED),
            res = span_columns("res", kind::TICKET_CLOSED),
            wait = span_columns("wait", kind::TICKET_ASSIGNED),
        );
        // The total row, the groups, and one more to tell a cut.
        let limit = i64::try_from(query.max_groups + 2).unwrap_or(i64::MAX);
        // The planner's estimate of the per-event lookups is far above what they cost and would
        // have the query JIT-compiled: on 100,000 tickets that took 440 ms of a 640 ms report.
        let mut tx = self.pool().begin().await?;
        sqlx::query("SET TRANSACTION READ ONLY")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SET LOCAL jit = off").execute(&mut *tx).await?;
        let rows = sqlx::query(&sql)
            .bind(query.start)
            .bind(query.end)
            .bind(query.group_by.as_str())
            .bind(&day_starts)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut total = ReportRow::default();
        let mut groups = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut row = row_of(r)?;
            if r.try_get::<bool, _>("is_total")? {
                row.key.clear();
                row.name.clear();
                total = row;
                continue;
            }
            if query.group_by == GroupBy::Day {
                let bucket: Option<i32> = r.try_get("day")?;
                let date = bucket
                    .and_then(|b| usize::try_from(b).ok())
                    .and_then(|b| b.checked_sub(1))
                    .and_then(|i| days.get(i))
                    .map(|(_, d)| d.to_string())
                    .unwrap_or_default();
                row.name.clone_from(&date);
                row.key = date;
            }
            groups.push(row);
        }
        let truncated = groups.len() > query.max_groups;
        groups.truncate(query.max_groups);
        if query.group_by == GroupBy::Day {
            groups = every_day(&days, groups);
        }
        Ok(Report {
            query: query.clone(),
            rows: groups,
            total,
            truncated,
        })
    }
}

/// One row per day of the period, in order: the days without a fact as zeros.
fn every_day(days: &[(DateTime<Utc>, NaiveDate)], rows: Vec<ReportRow>) -> Vec<ReportRow> {
    let mut rows = rows.into_iter().peekable();
    days.iter()
        .map(|(_, date)| {
            let key = date.to_string();
            match rows.next_if(|r| r.key == key) {
                Some(row) => row,
                None => ReportRow {
                    name: key.clone(),
                    key,
                    ..ReportRow::default()
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("a test instant")
    }

    #[test]
    fn a_period_must_end_after_it_starts_and_last_at_most_a_year_and_a_day() {
        let t = at("2026-03-02T00:00:00Z");
        assert_eq!(
            ReportQuery::new(t, t, GroupBy::Day, Tz::UTC),
            Err(ReportError::EmptyPeriod)
        );
        assert_eq!(
            ReportQuery::new(t, t + Duration::days(367), GroupBy::Day, Tz::UTC),
            Err(ReportError::PeriodTooLong)
        );
        assert!(ReportQuery::new(t, t + Duration::days(366), GroupBy::Day, Tz::UTC).is_ok());
    }

    #[test]
    fn a_time_zone_is_an_iana_name_and_empty_is_utc() {
        assert_eq!(time_zone(""), Ok(Tz::UTC));
        assert_eq!(time_zone("Europe/Moscow"), Ok(Tz::Europe__Moscow));
        assert_eq!(
            time_zone("Mars/Olympus"),
            Err(ReportError::UnknownTimeZone("Mars/Olympus".into()))
        );
    }

    #[test]
    fn days_are_local_days_with_the_first_from_the_periods_start() {
        let q = ReportQuery::new(
            at("2026-03-02T00:00:00Z"),
            at("2026-03-04T00:00:00Z"),
            GroupBy::Day,
            Tz::America__New_York,
        )
        .expect("a valid period");
        let days: Vec<(String, String)> = q
            .days()
            .into_iter()
            .map(|(at, d)| (at.to_rfc3339(), d.to_string()))
            .collect();
        assert_eq!(
            days,
            [
                ("2026-03-02T00:00:00+00:00".into(), "2026-03-01".into()),
                ("2026-03-02T05:00:00+00:00".into(), "2026-03-02".into()),
                ("2026-03-03T05:00:00+00:00".into(), "2026-03-03".into()),
            ]
        );
    }

    #[test]
    fn a_day_after_a_clock_change_starts_at_its_own_midnight() {
        // Berlin moves to summer time on 2026-03-29: that day has 23 hours.
        let q = ReportQuery::new(
            at("2026-03-28T23:00:00Z"),
            at("2026-03-30T22:00:00Z"),
            GroupBy::Day,
            Tz::Europe__Berlin,
        )
        .expect("a valid period");
        let starts: Vec<String> = q.days().iter().map(|(at, _)| at.to_rfc3339()).collect();
        assert_eq!(
            starts,
            ["2026-03-28T23:00:00+00:00", "2026-03-29T22:00:00+00:00"]
        );
    }

    #[test]
    fn the_default_period_is_the_last_seven_local_days_today_included() {
        let now = at("2026-03-10T15:30:00Z");
        assert_eq!(
            ReportQuery::default_start(now, Tz::UTC),
            at("2026-03-04T00:00:00Z")
        );
        assert_eq!(
            ReportQuery::default_start(now, Tz::Europe__Moscow),
            at("2026-03-03T21:00:00Z")
        );
    }

    #[test]
    fn a_satisfied_share_is_of_the_ratings_given() {
        let csat = Csat {
            count: 4,
            average: Some(3.5),
            satisfied: 3,
        };
        assert_eq!(csat.satisfied_percent(), Some(75.0));
        assert_eq!(Csat::default().satisfied_percent(), None);
    }
}
