//! Business-hours calendars: timers "counted in business hours" end when that much working time
//! has passed in the calendar's time zone, skipping nights, weekends and holidays. Pure functions
//! of their inputs, so workflow code may call them with the workflow's deterministic clock.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    fn of(d: chrono::Weekday) -> Self {
        match d {
            chrono::Weekday::Mon => Self::Mon,
            chrono::Weekday::Tue => Self::Tue,
            chrono::Weekday::Wed => Self::Wed,
            chrono::Weekday::Thu => Self::Thu,
            chrono::Weekday::Fri => Self::Fri,
            chrono::Weekday::Sat => Self::Sat,
            chrono::Weekday::Sun => Self::Sun,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calendar {
    pub timezone: String,
    pub weekdays: Vec<Weekday>,
    /// Working hours as minutes after local midnight: `[start, end)`.
    pub start_minute: u32,
    pub end_minute: u32,
    pub holidays: Vec<NaiveDate>,
}

#[derive(Debug)]
pub struct CalendarError {
    /// The key of the calendar entry that is wrong.
    pub key: &'static str,
    pub message: String,
}

fn minute_of(s: &str) -> Option<u32> {
    let t = NaiveTime::parse_from_str(s.trim(), "%H:%M").ok()?;
    Some(chrono::Timelike::hour(&t) * 60 + chrono::Timelike::minute(&t))
}

impl Calendar {
    pub fn new(
        timezone: &str,
        weekdays: &[Weekday],
        hours: &str,
        holidays: &[String],
    ) -> Result<Self, CalendarError> {
        let bad = |key, message: String| CalendarError { key, message };
        timezone.parse::<chrono_tz::Tz>().map_err(|_| {
            bad(
                "timezone",
                format!("unknown time zone {timezone:?} (use an IANA name like Europe/Moscow)"),
            )
        })?;
        if weekdays.is_empty() {
            return Err(bad(
                "weekdays",
                "a calendar needs at least one working day".into(),
            ));
        }
        let (start, end) = hours
            .split_once('-')
            .and_then(|(a, b)| Some((minute_of(a)?, minute_of(b)?)))
            .ok_or_else(|| {
                bad(
                    "hours",
                    format!(r#"expected working hours like "09:00-18:00", got {hours:?}"#),
                )
            })?;
        if end <= start {
            return Err(bad(
                "hours",
                format!("working hours {hours:?} end before they start"),
            ));
        }
        let holidays = holidays
            .iter()
            .map(|h| {
                NaiveDate::parse_from_str(h, "%Y-%m-%d").map_err(|_| {
                    bad(
                        "holidays",
                        format!("expected a date like 2026-01-01, got {h:?}"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            timezone: timezone.to_owned(),
            weekdays: weekdays.to_vec(),
            start_minute: start,
            end_minute: end,
            holidays,
        })
    }

    /// The instant at which `business` of working time has passed since `from`.
    pub fn add(&self, from: DateTime<Utc>, business: Duration) -> DateTime<Utc> {
        let Ok(tz) = self.timezone.parse::<chrono_tz::Tz>() else {
            return from + business;
        };
        let mut left = business;
        let mut cursor = from;
        // Ten years of days bound the walk even for a calendar with one working day a week.
        for _ in 0..3660 {
            let local_day = cursor.with_timezone(&tz).date_naive();
            let at = |minute: u32| {
                let naive =
                    local_day.and_time(NaiveTime::MIN) + Duration::minutes(i64::from(minute));
                tz.from_local_datetime(&naive)
                    .earliest()
                    .map_or(naive.and_utc(), |t| t.with_timezone(&Utc))
            };
            let working = self.weekdays.contains(&Weekday::of(local_day.weekday()))
                && !self.holidays.contains(&local_day);
            if working {
                let (open, close) = (at(self.start_minute), at(self.end_minute));
                let start = cursor.max(open);
                if start < close {
                    let available = close - start;
                    if left <= available {
                        return start + left;
                    }
                    left -= available;
                }
            }
            cursor = at(24 * 60);
        }
        from + business
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn office() -> Calendar {
        Calendar::new(
            "Europe/Moscow",
            &[
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            "09:00-18:00",
            &["2026-11-24".into()],
        )
        .expect("valid calendar")
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }

    #[test]
    fn time_inside_working_hours_counts_as_is() {
        // Monday 2026-11-23 10:00 Moscow = 07:00 UTC.
        assert_eq!(
            office().add(utc("2026-11-23T07:00:00Z"), Duration::minutes(30)),
            utc("2026-11-23T07:30:00Z")
        );
    }

    #[test]
    fn nights_holidays_and_weekends_are_skipped() {
        // Monday 17:30 Moscow + 1h: 30 min on Monday, Tuesday is a holiday, 30 min on Wednesday.
        assert_eq!(
            office().add(utc("2026-11-23T14:30:00Z"), Duration::hours(1)),
            utc("2026-11-25T06:30:00Z")
        );
        // Saturday night + 10 min: Monday 09:10 Moscow.
        assert_eq!(
            office().add(utc("2026-11-28T20:00:00Z"), Duration::minutes(10)),
            utc("2026-11-30T06:10:00Z")
        );
    }

    #[test]
    fn bad_calendars_name_the_wrong_key() {
        let wd = [Weekday::Mon];
        assert_eq!(
            Calendar::new("Nowhere/City", &wd, "09:00-18:00", &[])
                .map_err(|e| e.key)
                .err(),
            Some("timezone")
        );
        assert_eq!(
            Calendar::new("UTC", &wd, "18:00-09:00", &[])
                .map_err(|e| e.key)
                .err(),
            Some("hours")
        );
        assert_eq!(
            Calendar::new("UTC", &[], "09:00-18:00", &[])
                .map_err(|e| e.key)
                .err(),
            Some("weekdays")
        );
        assert_eq!(
            Calendar::new("UTC", &wd, "09:00-18:00", &["1 Jan".into()])
                .map_err(|e| e.key)
                .err(),
            Some("holidays")
        );
    }
}
