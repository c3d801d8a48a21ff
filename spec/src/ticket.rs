//! What a ticket keeps of the spec for life ([`TicketSpec`], with the spec's content hash as its
//! version), and the classification of its first message. It travels in the ticket workflow's
//! input and recorded histories: its serialized form must not change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use tickets::screening::AfcRule;

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

impl TimerSpec {
    /// When the timer fires the `times`-th time (an escalation timer re-arms) counted from
    /// `from_ms` (milliseconds since the epoch), in its calendar's business hours if it has one.
    /// Pure: the ticket workflow arms its timers with it.
    pub fn deadline_ms(&self, from_ms: i64, times: u32) -> i64 {
        let total = self.after_ms.saturating_mul(u64::from(times.max(1)));
        let total_ms = i64::try_from(total).unwrap_or(i64::MAX);
        match (
            &self.calendar,
            chrono::DateTime::from_timestamp_millis(from_ms),
        ) {
            (Some(cal), Some(from)) => cal
                .add(from, chrono::Duration::milliseconds(total_ms))
                .timestamp_millis(),
            _ => from_ms.saturating_add(total_ms),
        }
    }
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
