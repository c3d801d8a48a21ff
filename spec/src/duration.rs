//! Durations as an operator writes them (`500ms`, `30s`, `5m`, `2h`, `1d`, sums like `1h30m`) and
//! timer entries (a duration, or a duration on a business calendar).

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// A duration as written in the spec: `500ms`, `30s`, `5m`, `2h`, `1d`, or sums like `1h30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Millis(pub u64);

pub fn parse_duration(s: &str) -> Option<Millis> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(factor)?)?;
    }
    (total > 0).then_some(Millis(total))
}

pub(crate) struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Millis;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"a duration like "5m""#)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Millis, E> {
        parse_duration(v)
            .ok_or_else(|| E::custom(format!(r#"expected a duration like "5m", got {v:?}"#)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Millis, E> {
        Err(E::custom(format!(
            r#"expected a duration like "5m", got the number {v} (add a unit)"#
        )))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Millis, E> {
        Err(E::custom(format!(
            r#"expected a duration like "5m", got the number {v} (add a unit)"#
        )))
    }
}

/// A timer: `escalate_after: 10m` or `escalate_after: { after: 10m, calendar: business }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerEntry {
    pub after: Millis,
    pub calendar: Option<String>,
}

impl<'de> Deserialize<'de> for TimerEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TimerEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a duration like "5m" or a map with `after` and `calendar`"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TimerEntry, E> {
                Ok(TimerEntry {
                    after: DurationVisitor.visit_str(v)?,
                    calendar: None,
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TimerEntry, E> {
                DurationVisitor.visit_u64(v).map(|after| TimerEntry {
                    after,
                    calendar: None,
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TimerEntry, E> {
                DurationVisitor.visit_i64(v).map(|after| TimerEntry {
                    after,
                    calendar: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TimerEntry, A::Error> {
                let (mut after, mut calendar) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "after" => {
                            after = Some(
                                map.next_value::<String>()
                                    .and_then(|s| DurationVisitor.visit_str(&s))?,
                            )
                        }
                        "calendar" => calendar = Some(map.next_value::<String>()?),
                        other => {
                            return Err(de::Error::unknown_field(other, &["after", "calendar"]));
                        }
                    }
                }
                Ok(TimerEntry {
                    after: after.ok_or_else(|| de::Error::missing_field("after"))?,
                    calendar,
                })
            }
        }
        d.deserialize_any(V)
    }
}

pub(crate) fn some_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
    d.deserialize_any(DurationVisitor).map(Some)
}
