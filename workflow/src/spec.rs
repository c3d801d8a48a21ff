//! `workflows.yaml`: the lifecycle an operator writes. Parsed and validated here, outside any
//! workflow; each ticket receives the compiled [`TicketSpec`] (with its content hash as version) at
//! start and keeps it for life, so editing the file changes new tickets only.
//!
//! Every error names the file, line and column: syntax, unknown keys, wrong types and bad durations
//! come from the YAML deserializer; references to undefined calendars, queues or fields and
//! impossible combinations are checked afterwards and located through a map of node positions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

use platform::yaml::Marks;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::afc::{AfcRule, Check, Rules};
use crate::calendar::{Calendar, Weekday};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("{file}: cannot read: {reason}")]
    Read { file: String, reason: String },
    #[error("{file}:{line}:{column}: {message}")]
    At {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
}

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

struct DurationVisitor;

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    version: u32,
    #[serde(default)]
    fields: BTreeMap<String, FieldDef>,
    #[serde(default)]
    queues: BTreeMap<String, QueueDef>,
    #[serde(default)]
    calendars: BTreeMap<String, CalendarDef>,
    afc: AfcSection,
    #[serde(default)]
    classify: ClassifySection,
    #[serde(default)]
    assignment: AssignmentSection,
    #[serde(default)]
    timers: TimersSection,
    #[serde(default)]
    on_close: OnCloseSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldDef {
    #[serde(rename = "type")]
    kind: FieldType,
    #[serde(default)]
    values: Vec<String>,
    default: serde_json::Value,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum FieldType {
    String,
    Enum,
    Int,
    Bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct QueueDef {
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarDef {
    timezone: String,
    weekdays: Vec<Weekday>,
    /// `"09:00-18:00"`
    hours: String,
    #[serde(default)]
    holidays: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AfcSection {
    provider: Provider,
    #[serde(default = "default_warning")]
    blocked_warning: String,
    #[serde(default)]
    rules: Vec<RuleEntry>,
    /// Kafka provider: how long a message may wait for its verdict before an alert.
    #[serde(default, deserialize_with = "some_duration")]
    timeout: Option<Millis>,
    /// Kafka provider: what happens on timeout (only `hold`: fail-closed).
    #[serde(default)]
    on_timeout: Option<OnTimeout>,
    /// Kafka provider: send manager replies to AFC as well (`fromClient: false`).
    #[serde(default)]
    check_manager_replies: Option<bool>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Provider {
    Builtin,
    Kafka,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum OnTimeout {
    /// Keep the message held (never shown unchecked), raise an alert, apply the verdict whenever
    /// it comes.
    Hold,
}

fn some_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
    d.deserialize_any(DurationVisitor).map(Some)
}

/// The AFC timeout of the Kafka provider when the spec gives none.
pub const DEFAULT_AFC_TIMEOUT_MS: u64 = 30_000;

/// Which AFC check a ticket runs, fixed at its start like the rest of its spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "provider")]
pub enum AfcProvider {
    /// The rules in `afc_rules`, run in a local activity.
    #[default]
    Builtin,
    /// The bank's AFC system over Kafka: messages are held until its signed verdict arrives.
    Kafka {
        timeout_ms: u64,
        check_manager_replies: bool,
    },
}

impl AfcProvider {
    pub fn is_builtin(&self) -> bool {
        *self == Self::Builtin
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    name: String,
    #[serde(default)]
    detector: Option<Detector>,
    #[serde(default)]
    pattern: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Detector {
    CardNumber,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClassifySection {
    #[serde(default)]
    default: Classification,
    #[serde(default)]
    rules: Vec<ClassifyRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyRule {
    name: String,
    /// Any of these words, case-insensitive.
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    pattern: Option<String>,
    set: Classification,
}

/// What classification sets on a ticket; unset parts keep the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Classification {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub fn level(self) -> i32 {
        self as i32
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignmentSection {
    #[serde(default = "default_capacity")]
    capacity: i32,
    /// Queues a manager serves unless their entry says otherwise; empty means every queue.
    #[serde(default)]
    queues: Vec<String>,
    #[serde(default)]
    managers: BTreeMap<String, ManagerEntry>,
}

impl Default for AssignmentSection {
    fn default() -> Self {
        Self {
            capacity: default_capacity(),
            queues: Vec::new(),
            managers: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManagerEntry {
    #[serde(default)]
    capacity: Option<i32>,
    #[serde(default)]
    queues: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TimersSection {
    #[serde(default)]
    escalate_after: Option<TimerEntry>,
    #[serde(default)]
    first_response_within: Option<TimerEntry>,
    #[serde(default)]
    auto_close_after_client_silence: Option<TimerEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnCloseSection {
    #[serde(default = "default_closing")]
    message: String,
    #[serde(default)]
    satisfaction_prompt: Option<String>,
    #[serde(default = "default_auto_close")]
    auto_close_message: String,
}

impl Default for OnCloseSection {
    fn default() -> Self {
        Self {
            message: default_closing(),
            satisfaction_prompt: None,
            auto_close_message: default_auto_close(),
        }
    }
}

fn default_warning() -> String {
    "Your message was blocked by our security check and was not delivered. Please never send card numbers or other secrets in the chat.".into()
}
fn default_closing() -> String {
    "Your request was resolved. Write to us any time to open a new one.".into()
}
fn default_auto_close() -> String {
    "We closed this request as we have not heard from you. Write to us any time to open a new one."
        .into()
}
fn default_capacity() -> i32 {
    3
}

/// The name of the queue a ticket lands in when no rule and no default names one.
pub const DEFAULT_QUEUE: &str = "general";

/// A compiled classification rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassifyRuleSpec {
    pub name: String,
    pub keywords: Vec<String>,
    pub pattern: Option<String>,
    pub set: Classification,
}

/// A timer as a ticket runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerSpec {
    pub after_ms: u64,
    pub calendar: Option<Calendar>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    pub escalate_after: Option<TimerSpec>,
    pub first_response_within: Option<TimerSpec>,
    pub auto_close_after_client_silence: Option<TimerSpec>,
}

/// What a ticket workflow needs of the spec, fixed at the ticket's start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketSpec {
    /// Content hash of this spec: tickets record which version they run.
    pub version: String,
    pub afc_rules: Vec<AfcRule>,
    pub blocked_warning: String,
    pub classify_default: Classification,
    pub classify_rules: Vec<ClassifyRuleSpec>,
    /// Custom fields with their defaults.
    pub field_defaults: BTreeMap<String, serde_json::Value>,
    pub timers: Timers,
    pub closing_message: String,
    pub auto_close_message: String,
    pub satisfaction_prompt: Option<String>,
    /// Left out when builtin, so specs (and their version hashes) from before the Kafka provider
    /// serialize exactly as they did and recorded histories still decode.
    #[serde(default, skip_serializing_if = "AfcProvider::is_builtin")]
    pub afc_provider: AfcProvider,
}

/// The result of classifying a ticket's first message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketClass {
    pub category: String,
    pub priority: Priority,
    pub queue: String,
    pub fields: BTreeMap<String, serde_json::Value>,
    /// The rule that matched, if any.
    pub rule: Option<String>,
}

impl TicketSpec {
    /// Category, priority, queue and fields of a ticket from its first message.
    pub fn classify(&self, body: &str) -> TicketClass {
        self.classify_by(body, &self.classify_patterns())
    }

    /// The classification rules' patterns, compiled (None for a rule without one; a pattern was
    /// validated when the spec loaded).
    pub fn classify_patterns(&self) -> Vec<Option<regex::Regex>> {
        self.classify_rules
            .iter()
            .map(|r| r.pattern.as_deref().and_then(|p| regex::Regex::new(p).ok()))
            .collect()
    }

    /// [`TicketSpec::classify`] with the patterns compiled once ([`TicketSpec::classify_patterns`]).
    pub fn classify_by(&self, body: &str, patterns: &[Option<regex::Regex>]) -> TicketClass {
        let lower = body.to_lowercase();
        let hit = self.classify_rules.iter().enumerate().find(|(i, r)| {
            r.keywords.iter().any(|k| lower.contains(&k.to_lowercase()))
                || patterns
                    .get(*i)
                    .and_then(Option::as_ref)
                    .is_some_and(|re| re.is_match(body))
        });
        let hit = hit.map(|(_, r)| r);
        let d = &self.classify_default;
        let set = hit.map(|r| &r.set);
        let mut fields = self.field_defaults.clone();
        fields.extend(d.fields.clone());
        if let Some(s) = set {
            fields.extend(s.fields.clone());
        }
        TicketClass {
            category: set
                .and_then(|s| s.category.clone())
                .or_else(|| d.category.clone())
                .unwrap_or_else(|| "general".into()),
            priority: set
                .and_then(|s| s.priority)
                .or(d.priority)
                .unwrap_or(Priority::Normal),
            queue: set
                .and_then(|s| s.queue.clone())
                .or_else(|| d.queue.clone())
                .unwrap_or_else(|| DEFAULT_QUEUE.into()),
            fields,
            rule: hit.map(|r| r.name.clone()),
        }
    }
}

/// How one manager is routed: capacity and served queues (empty = every queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerPolicy {
    pub capacity: i32,
    pub queues: Vec<String>,
}

/// A validated spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub ticket: TicketSpec,
    pub capacity: i32,
    pub default_queues: Vec<String>,
    pub managers: BTreeMap<String, ManagerPolicy>,
}

impl Spec {
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::Read {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        Self::parse(&file, &text)
    }

    /// Capacity and queues of a manager: their own entry, else the defaults.
    pub fn manager_policy(&self, manager_id: &str) -> ManagerPolicy {
        self.managers
            .get(manager_id)
            .cloned()
            .unwrap_or_else(|| ManagerPolicy {
                capacity: self.capacity,
                queues: self.default_queues.clone(),
            })
    }

    pub fn parse(file: &str, text: &str) -> Result<Self, SpecError> {
        let raw: SpecFile = serde_yaml_ng::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            // The deserializer appends " at line L column C"; the prefix says it already.
            let message = e.to_string();
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(m, _)| m)
                .to_owned();
            SpecError::At {
                file: file.to_owned(),
                line,
                column,
                message,
            }
        })?;
        let marks = Marks::of(text);
        let err = |path: &str, message: String| {
            let (line, column) = marks.find(path);
            SpecError::At {
                file: file.to_owned(),
                line,
                column,
                message: format!("{path}: {message}"),
            }
        };
        Validator {
            raw: &raw,
            err: &err,
        }
        .build()
    }
}

struct Validator<'a, F: Fn(&str, String) -> SpecError> {
    raw: &'a SpecFile,
    err: &'a F,
}

impl<F: Fn(&str, String) -> SpecError> Validator<'_, F> {
    fn build(&self) -> Result<Spec, SpecError> {
        let raw = self.raw;
        let err = self.err;
        if raw.version != 1 {
            return Err(err(
                "version",
                format!("unsupported version {}; expected 1", raw.version),
            ));
        }
        let mut calendars = HashMap::new();
        for (name, c) in &raw.calendars {
            let path = format!("calendars.{name}");
            let cal = Calendar::new(&c.timezone, &c.weekdays, &c.hours, &c.holidays)
                .map_err(|e| err(&format!("{path}.{}", e.key), e.message))?;
            calendars.insert(name.clone(), cal);
        }
        let mut field_defaults = BTreeMap::new();
        for (name, f) in &raw.fields {
            let path = format!("fields.{name}");
            self.check_field_value(&path, "default", f, &f.default)?;
            if f.kind == FieldType::Enum && f.values.is_empty() {
                return Err(err(
                    &format!("{path}.values"),
                    "an enum field needs at least one value".into(),
                ));
            }
            if f.kind != FieldType::Enum && !f.values.is_empty() {
                return Err(err(
                    &format!("{path}.values"),
                    "only enum fields take `values`".into(),
                ));
            }
            field_defaults.insert(name.clone(), f.default.clone());
        }
        let queue_known =
            |q: &str| raw.queues.is_empty() && q == DEFAULT_QUEUE || raw.queues.contains_key(q);
        let queue_err = |path: &str, q: &str| {
            let known: Vec<&str> = if raw.queues.is_empty() {
                vec![DEFAULT_QUEUE]
            } else {
                raw.queues.keys().map(String::as_str).collect()
            };
            err(
                path,
                format!("undefined queue {q:?}; defined: {}", known.join(", ")),
            )
        };

        // AFC
        let mut names = BTreeSet::new();
        let mut rules = Vec::new();
        for (i, r) in raw.afc.rules.iter().enumerate() {
            let path = format!("afc.rules.{i}");
            if r.name.trim().is_empty() {
                return Err(err(&format!("{path}.name"), "must not be empty".into()));
            }
            if !names.insert(r.name.clone()) {
                return Err(err(
                    &format!("{path}.name"),
                    format!("duplicate rule name {:?}", r.name),
                ));
            }
            let check = match (&r.detector, &r.pattern) {
                (Some(Detector::CardNumber), None) => Check::CardNumber,
                (None, Some(p)) => {
                    regex::Regex::new(p).map_err(|e| {
                        err(&format!("{path}.pattern"), format!("invalid pattern: {e}"))
                    })?;
                    Check::Pattern(p.clone())
                }
                _ => {
                    return Err(err(
                        &path,
                        "give exactly one of `detector` or `pattern`".into(),
                    ));
                }
            };
            rules.push(AfcRule {
                name: r.name.clone(),
                check,
            });
        }
        Rules::compile(&rules).map_err(|e| err("afc.rules", e.to_string()))?;
        let afc_provider = self.afc_provider()?;

        // Classification
        self.check_classification(
            "classify.default",
            &raw.classify.default,
            &queue_known,
            &queue_err,
        )?;
        let mut classify_rules = Vec::new();
        for (i, r) in raw.classify.rules.iter().enumerate() {
            let path = format!("classify.rules.{i}");
            if r.keywords.is_empty() && r.pattern.is_none() {
                return Err(err(&path, "a rule needs `keywords` or `pattern`".into()));
            }
            if let Some(p) = &r.pattern {
                regex::Regex::new(p).map_err(|e| {
                    err(&format!("{path}.pattern"), format!("invalid pattern: {e}"))
                })?;
            }
            self.check_classification(&format!("{path}.set"), &r.set, &queue_known, &queue_err)?;
            classify_rules.push(ClassifyRuleSpec {
                name: r.name.clone(),
                keywords: r.keywords.clone(),
                pattern: r.pattern.clone(),
                set: r.set.clone(),
            });
        }

        // Assignment
        if raw.assignment.capacity < 1 {
            return Err(err("assignment.capacity", "must be at least 1".into()));
        }
        for (i, q) in raw.assignment.queues.iter().enumerate() {
            if !queue_known(q) {
                return Err(queue_err(&format!("assignment.queues.{i}"), q));
            }
        }
        let mut managers = BTreeMap::new();
        for (id, m) in &raw.assignment.managers {
            let path = format!("assignment.managers.{id}");
            let capacity = m.capacity.unwrap_or(raw.assignment.capacity);
            if capacity < 1 {
                return Err(err(
                    &format!("{path}.capacity"),
                    "must be at least 1".into(),
                ));
            }
            let queues = m
                .queues
                .clone()
                .unwrap_or_else(|| raw.assignment.queues.clone());
            for (i, q) in queues.iter().enumerate() {
                if !queue_known(q) {
                    return Err(queue_err(&format!("{path}.queues.{i}"), q));
                }
            }
            managers.insert(id.clone(), ManagerPolicy { capacity, queues });
        }

        // Timers
        let timer = |key: &str, t: &Option<TimerEntry>| -> Result<Option<TimerSpec>, SpecError> {
            let Some(t) = t else { return Ok(None) };
            let calendar = match &t.calendar {
                None => None,
                Some(name) => Some(calendars.get(name).cloned().ok_or_else(|| {
                    err(
                        &format!("timers.{key}.calendar"),
                        format!("undefined calendar {name:?}"),
                    )
                })?),
            };
            Ok(Some(TimerSpec {
                after_ms: t.after.0,
                calendar,
            }))
        };
        let timers = Timers {
            escalate_after: timer("escalate_after", &raw.timers.escalate_after)?,
            first_response_within: timer(
                "first_response_within",
                &raw.timers.first_response_within,
            )?,
            auto_close_after_client_silence: timer(
                "auto_close_after_client_silence",
                &raw.timers.auto_close_after_client_silence,
            )?,
        };
        if let (Some(esc), Some(sla)) = (&timers.escalate_after, &timers.first_response_within)
            && esc.calendar == sla.calendar
            && esc.after_ms >= sla.after_ms
        {
            return Err(err(
                "timers.escalate_after",
                "must be shorter than first_response_within, or the SLA is breached before anyone escalates".into(),
            ));
        }

        let mut ticket = TicketSpec {
            version: String::new(),
            afc_rules: rules,
            blocked_warning: raw.afc.blocked_warning.clone(),
            classify_default: raw.classify.default.clone(),
            classify_rules,
            field_defaults,
            timers,
            closing_message: raw.on_close.message.clone(),
            auto_close_message: raw.on_close.auto_close_message.clone(),
            satisfaction_prompt: raw.on_close.satisfaction_prompt.clone(),
            afc_provider,
        };
        let canonical = serde_json::to_vec(&ticket).unwrap_or_default();
        ticket.version = hex::encode(&Sha256::digest(&canonical)[..8]);
        Ok(Spec {
            ticket,
            capacity: raw.assignment.capacity,
            default_queues: raw.assignment.queues.clone(),
            managers,
        })
    }

    /// The AFC provider, with the keys each provider takes and no others.
    fn afc_provider(&self) -> Result<AfcProvider, SpecError> {
        let afc = &self.raw.afc;
        let err = self.err;
        match afc.provider {
            Provider::Builtin => {
                for (key, set) in [
                    ("timeout", afc.timeout.is_some()),
                    ("on_timeout", afc.on_timeout.is_some()),
                    ("check_manager_replies", afc.check_manager_replies.is_some()),
                ] {
                    if set {
                        return Err(err(
                            &format!("afc.{key}"),
                            "only the kafka provider takes this key".into(),
                        ));
                    }
                }
                Ok(AfcProvider::Builtin)
            }
            Provider::Kafka => {
                if !afc.rules.is_empty() {
                    return Err(err(
                        "afc.rules",
                        "rules belong to the builtin provider; with provider kafka the AFC system decides".into(),
                    ));
                }
                let OnTimeout::Hold = afc.on_timeout.unwrap_or(OnTimeout::Hold);
                Ok(AfcProvider::Kafka {
                    timeout_ms: afc.timeout.map_or(DEFAULT_AFC_TIMEOUT_MS, |t| t.0),
                    check_manager_replies: afc.check_manager_replies.unwrap_or(false),
                })
            }
        }
    }

    fn check_classification(
        &self,
        path: &str,
        c: &Classification,
        queue_known: &dyn Fn(&str) -> bool,
        queue_err: &dyn Fn(&str, &str) -> SpecError,
    ) -> Result<(), SpecError> {
        if let Some(q) = &c.queue
            && !queue_known(q)
        {
            return Err(queue_err(&format!("{path}.queue"), q));
        }
        for (name, value) in &c.fields {
            let def = self.raw.fields.get(name).ok_or_else(|| {
                (self.err)(
                    &format!("{path}.fields.{name}"),
                    format!("undefined field {name:?}"),
                )
            })?;
            self.check_field_value(&format!("{path}.fields"), name, def, value)?;
        }
        Ok(())
    }

    fn check_field_value(
        &self,
        path: &str,
        key: &str,
        def: &FieldDef,
        v: &serde_json::Value,
    ) -> Result<(), SpecError> {
        let ok = match def.kind {
            FieldType::String => v.is_string(),
            FieldType::Int => v.is_i64(),
            FieldType::Bool => v.is_boolean(),
            FieldType::Enum => v
                .as_str()
                .is_some_and(|s| def.values.iter().any(|x| x == s)),
        };
        if ok {
            Ok(())
        } else {
            let want = match def.kind {
                FieldType::String => "a string".to_owned(),
                FieldType::Int => "an integer".to_owned(),
                FieldType::Bool => "true or false".to_owned(),
                FieldType::Enum => format!("one of {}", def.values.join(", ")),
            };
            Err((self.err)(
                &format!("{path}.{key}"),
                format!("expected {want}, got {v}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Spec, SpecError> {
        Spec::parse("w.yaml", text)
    }

    fn at(r: Result<Spec, SpecError>) -> (usize, usize, String) {
        match r {
            Err(SpecError::At {
                line,
                column,
                message,
                ..
            }) => (line, column, message),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    const BASE: &str = "version: 1\nafc:\n  provider: builtin\n";

    #[test]
    fn the_default_workflows_yaml_is_valid() -> Result<(), SpecError> {
        let spec = Spec::load(&platform::workspace_root().join("workflows.yaml"))?;
        assert!(
            spec.ticket
                .afc_rules
                .iter()
                .any(|r| r.check == Check::CardNumber)
        );
        assert!(spec.ticket.timers.escalate_after.is_some());
        assert_eq!(spec.ticket.version.len(), 16);
        Ok(())
    }

    #[test]
    fn durations_parse_with_units_and_sums() {
        assert_eq!(parse_duration("5m"), Some(Millis(300_000)));
        assert_eq!(parse_duration("1h30m"), Some(Millis(5_400_000)));
        assert_eq!(parse_duration("250ms"), Some(Millis(250)));
        for bad in ["", "5", "m", "5x", "0s", "-1m"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_unknown_key_is_reported_with_line_and_column() {
        let (line, column, message) = at(parse(&format!("{BASE}  rulez: []\n")));
        assert_eq!((line, column), (4, 3), "{message}");
        assert!(message.contains("rulez"), "{message}");
    }

    #[test]
    fn a_bad_duration_names_its_path_line_and_column() {
        let (line, column, message) = at(parse(&format!(
            "{BASE}timers:\n  escalate_after: 5 minutes\n"
        )));
        assert_eq!(line, 5, "{message}");
        assert!(column >= 3, "{message}");
        assert!(message.contains("timers.escalate_after"), "{message}");
        assert!(
            message.contains(r#"expected a duration like "5m""#),
            "{message}"
        );
    }

    #[test]
    fn references_to_undefined_calendars_queues_and_fields_are_located() {
        let cal = at(parse(&format!(
            "{BASE}timers:\n  escalate_after: {{ after: 5m, calendar: office }}\n"
        )));
        assert_eq!(cal.0, 5, "{}", cal.2);
        assert!(cal.2.contains("undefined calendar \"office\""), "{}", cal.2);

        let queue = at(parse(&format!(
            "{BASE}queues:\n  general: {{}}\nclassify:\n  rules:\n    - name: c\n      keywords: [card]\n      set: {{ queue: cards }}\n"
        )));
        assert_eq!(queue.0, 10, "{}", queue.2);
        assert!(
            queue
                .2
                .contains("classify.rules.0.set.queue: undefined queue \"cards\""),
            "{}",
            queue.2
        );

        let field = at(parse(&format!(
            "{BASE}classify:\n  default:\n    fields: {{ vip: true }}\n"
        )));
        assert!(field.2.contains("undefined field \"vip\""), "{}", field.2);
        assert_eq!(field.0, 6, "{}", field.2);
    }

    #[test]
    fn impossible_combinations_are_rejected() {
        let (_, _, m) = at(parse(&format!(
            "{BASE}timers:\n  escalate_after: 30m\n  first_response_within: 10m\n"
        )));
        assert!(m.contains("timers.escalate_after: must be shorter"), "{m}");
        let (line, _, m) = at(parse(&format!(
            "{BASE}fields:\n  product: {{ type: enum, values: [a, b], default: c }}\n"
        )));
        assert!(
            m.contains("fields.product.default: expected one of a, b"),
            "{m}"
        );
        assert_eq!(line, 5, "{m}");
        let (_, _, m) = at(parse(&format!(
            "{BASE}calendars:\n  office: {{ timezone: Mars/Base, weekdays: [mon], hours: \"09:00-18:00\" }}\n"
        )));
        assert!(m.contains("calendars.office.timezone"), "{m}");
        let (_, _, m) = at(parse(&format!(
            "{BASE}  rules:\n    - name: x\n      pattern: a\n      detector: card_number\n"
        )));
        assert!(m.contains("afc.rules.0: give exactly one"), "{m}");
    }

    #[test]
    fn classification_takes_the_first_matching_rule_over_the_defaults() -> Result<(), SpecError> {
        let spec = parse(&format!(
            "{BASE}fields:\n  product: {{ type: enum, values: [cards, other], default: other }}\nqueues:\n  general: {{}}\n  cards: {{}}\nclassify:\n  default: {{ queue: general, priority: normal }}\n  rules:\n    - name: cards\n      keywords: [Card]\n      set: {{ queue: cards, priority: high, category: cards, fields: {{ product: cards }} }}\n"
        ))?;
        let c = spec.ticket.classify("my CARD is lost");
        assert_eq!(
            (c.queue.as_str(), c.priority, c.rule.as_deref()),
            ("cards", Priority::High, Some("cards"))
        );
        assert_eq!(c.fields.get("product"), Some(&serde_json::json!("cards")));
        let d = spec.ticket.classify("hello");
        assert_eq!(
            (d.queue.as_str(), d.priority, d.rule),
            ("general", Priority::Normal, None)
        );
        assert_eq!(d.fields.get("product"), Some(&serde_json::json!("other")));
        Ok(())
    }

    #[test]
    fn the_kafka_provider_takes_a_timeout_and_keeps_builtin_versions_unchanged()
    -> Result<(), SpecError> {
        let kafka = parse(
            "version: 1\nafc:\n  provider: kafka\n  timeout: 45s\n  on_timeout: hold\n  check_manager_replies: true\n",
        )?;
        assert_eq!(
            kafka.ticket.afc_provider,
            AfcProvider::Kafka {
                timeout_ms: 45_000,
                check_manager_replies: true
            }
        );
        let defaults = parse("version: 1\nafc: { provider: kafka }\n")?;
        assert_eq!(
            defaults.ticket.afc_provider,
            AfcProvider::Kafka {
                timeout_ms: DEFAULT_AFC_TIMEOUT_MS,
                check_manager_replies: false
            }
        );
        // A builtin spec serializes without the provider: its hash is what it was before.
        let builtin = parse(BASE)?;
        let json = serde_json::to_value(&builtin.ticket).map_err(|e| SpecError::Read {
            file: "json".into(),
            reason: e.to_string(),
        })?;
        assert!(json.get("afc_provider").is_none(), "{json}");
        Ok(())
    }

    #[test]
    fn provider_keys_are_checked_with_line_and_column() {
        let (line, column, m) = at(parse(&format!("{BASE}  timeout: 30s\n")));
        assert_eq!((line, column), (4, 12), "{m}");
        assert!(m.contains("afc.timeout: only the kafka provider"), "{m}");
        let (line, _, m) = at(parse(
            "version: 1\nafc:\n  provider: kafka\n  rules:\n    - name: c\n      detector: card_number\n",
        ));
        assert_eq!(line, 4, "{m}");
        assert!(
            m.contains("afc.rules: rules belong to the builtin provider"),
            "{m}"
        );
        let (line, _, m) = at(parse(
            "version: 1\nafc:\n  provider: kafka\n  timeout: soon\n",
        ));
        assert_eq!(line, 4, "{m}");
        assert!(m.contains("expected a duration"), "{m}");
        let (line, _, m) = at(parse(
            "version: 1\nafc:\n  provider: kafka\n  on_timeout: release\n",
        ));
        assert_eq!(line, 4, "{m}");
        assert!(m.contains("hold"), "{m}");
        let (_, _, m) = at(parse("version: 1\nafc:\n  provider: carrier_pigeon\n"));
        assert!(m.contains("builtin") && m.contains("kafka"), "{m}");
    }

    #[test]
    fn the_version_changes_with_the_content() -> Result<(), SpecError> {
        let a = parse(BASE)?;
        let b = parse(&format!("{BASE}on_close:\n  message: bye\n"))?;
        assert_ne!(a.ticket.version, b.ticket.version);
        assert_eq!(a.ticket.version, parse(BASE)?.ticket.version);
        Ok(())
    }
}
