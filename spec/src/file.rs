//! `workflows.yaml` as written: the shapes the YAML deserializer fills (unknown keys refused, with
//! their line and column), before [`crate::validate`] checks what they refer to and compiles them.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::calendar::Weekday;
use crate::duration::{Millis, TimerEntry, some_duration};
use crate::ticket::Classification;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpecFile {
    pub(crate) version: u32,
    #[serde(default)]
    pub(crate) fields: BTreeMap<String, FieldDef>,
    #[serde(default)]
    pub(crate) queues: BTreeMap<String, QueueDef>,
    #[serde(default)]
    pub(crate) calendars: BTreeMap<String, CalendarDef>,
    pub(crate) afc: AfcSection,
    #[serde(default)]
    pub(crate) classify: ClassifySection,
    #[serde(default)]
    pub(crate) assignment: AssignmentSection,
    #[serde(default)]
    pub(crate) timers: TimersSection,
    #[serde(default)]
    pub(crate) on_close: OnCloseSection,
    #[serde(default)]
    pub(crate) canned_responses: Vec<CannedEntry>,
    #[serde(default)]
    pub(crate) bots: BotsSection,
}

/// Commands for the bank's bot worker (`/status`), queued to it over Kafka.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct BotsSection {
    /// How long a command waits for the bot's answer unless its entry says otherwise.
    #[serde(default, deserialize_with = "some_duration")]
    pub(crate) timeout: Option<Millis>,
    #[serde(default)]
    pub(crate) on_timeout: Option<BotTimeout>,
    /// Told to the client when the bot did not answer in time.
    #[serde(default)]
    pub(crate) timeout_message: Option<String>,
    /// Told instead when a manager takes the command over.
    #[serde(default)]
    pub(crate) hand_over_message: Option<String>,
    #[serde(default)]
    pub(crate) commands: Vec<BotCommandEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BotCommandEntry {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) description: String,
    #[serde(default, deserialize_with = "some_duration")]
    pub(crate) timeout: Option<Millis>,
    #[serde(default)]
    pub(crate) on_timeout: Option<BotTimeout>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BotTimeout {
    Reply,
    HandOver,
}

/// A reply a manager inserts by its shortcut (`/greeting` in the console's reply box).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CannedEntry {
    pub(crate) shortcut: String,
    #[serde(default)]
    pub(crate) title: String,
    pub(crate) text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FieldDef {
    #[serde(rename = "type")]
    pub(crate) kind: FieldType,
    #[serde(default)]
    pub(crate) values: Vec<String>,
    pub(crate) default: serde_json::Value,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FieldType {
    String,
    Enum,
    Int,
    Bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueDef {
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CalendarDef {
    pub(crate) timezone: String,
    pub(crate) weekdays: Vec<Weekday>,
    /// `"09:00-18:00"`
    pub(crate) hours: String,
    #[serde(default)]
    pub(crate) holidays: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AfcSection {
    pub(crate) provider: Provider,
    #[serde(default = "default_warning")]
    pub(crate) blocked_warning: String,
    #[serde(default)]
    pub(crate) rules: Vec<RuleEntry>,
    /// Kafka provider: how long a message may wait for its verdict before an alert.
    #[serde(default, deserialize_with = "some_duration")]
    pub(crate) timeout: Option<Millis>,
    /// Kafka provider: what happens on timeout (only `hold`: fail-closed).
    #[serde(default)]
    pub(crate) on_timeout: Option<OnTimeout>,
    /// Kafka provider: send manager replies to AFC as well (`fromClient: false`).
    #[serde(default)]
    pub(crate) check_manager_replies: Option<bool>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Provider {
    Builtin,
    Kafka,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OnTimeout {
    /// Keep the message held (never shown unchecked), raise an alert, apply the verdict whenever
    /// it comes.
    Hold,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleEntry {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) detector: Option<Detector>,
    #[serde(default)]
    pub(crate) pattern: Option<String>,
    /// For `detector: iban`: the countries (ISO 3166 alpha-2) whose IBANs it blocks; all if
    /// empty.
    #[serde(default)]
    pub(crate) countries: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Detector {
    CardNumber,
    Cvv,
    OneTimeCode,
    Iban,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClassifySection {
    #[serde(default)]
    pub(crate) default: Classification,
    #[serde(default)]
    pub(crate) rules: Vec<ClassifyRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClassifyRule {
    pub(crate) name: String,
    /// Any of these words, case-insensitive.
    #[serde(default)]
    pub(crate) keywords: Vec<String>,
    #[serde(default)]
    pub(crate) pattern: Option<String>,
    pub(crate) set: Classification,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssignmentSection {
    #[serde(default = "default_capacity")]
    pub(crate) capacity: i32,
    /// Queues a manager serves unless their entry says otherwise; empty means every queue.
    #[serde(default)]
    pub(crate) queues: Vec<String>,
    #[serde(default)]
    pub(crate) managers: BTreeMap<String, ManagerEntry>,
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
pub(crate) struct ManagerEntry {
    #[serde(default)]
    pub(crate) capacity: Option<i32>,
    #[serde(default)]
    pub(crate) queues: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct TimersSection {
    #[serde(default)]
    pub(crate) escalate_after: Option<TimerEntry>,
    #[serde(default)]
    pub(crate) first_response_within: Option<TimerEntry>,
    #[serde(default)]
    pub(crate) auto_close_after_client_silence: Option<TimerEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OnCloseSection {
    #[serde(default = "default_closing")]
    pub(crate) message: String,
    #[serde(default)]
    pub(crate) satisfaction_prompt: Option<String>,
    #[serde(default = "default_auto_close")]
    pub(crate) auto_close_message: String,
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

pub(crate) fn default_warning() -> String {
    "Your message was blocked by our security check and was not delivered. Please never send card numbers or other secrets in the chat.".into()
}
pub(crate) fn default_closing() -> String {
    "Your request was resolved. Write to us any time to open a new one.".into()
}
pub(crate) fn default_auto_close() -> String {
    "We closed this request as we have not heard from you. Write to us any time to open a new one."
        .into()
}
pub(crate) fn default_capacity() -> i32 {
    3
}
