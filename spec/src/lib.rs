//! The lifecycle spec, `workflows.yaml`: what an operator writes, parsed and validated outside any
//! workflow. Each ticket receives the compiled [`TicketSpec`] (with its content hash as version) at
//! start and keeps it for life, so editing the file changes new tickets only. The checks it
//! defines live here too: business calendars ([`calendar`]) and the compiled specs by version that
//! the store's transactions check messages with ([`checker`], which runs the AFC rules the spec
//! names: `tickets::screening::rules`), and the dry run of a changed spec over recorded tickets
//! ([`simulate`]).
//!
//! Every error names the file, line and column: syntax, unknown keys, wrong types and bad durations
//! come from the YAML deserializer; references to undefined calendars, queues or fields and
//! impossible combinations are checked afterwards and located through a map of node positions.
//! The workflow service and the gateway both read it; neither depends on the other for it.

pub mod calendar;
pub mod checker;
mod duration;
mod file;
pub mod simulate;
mod ticket;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

use platform::settings::{Kind, Setting};
use platform::yaml::Marks;

/// Where the spec is read from, by every service that reads it.
pub static SPEC_FILE: Setting = Setting::new(
    "INBOX_SPEC",
    Kind::Path,
    "workflows.yaml",
    "the lifecycle spec (`workflow validate <file>` checks one)",
);

pub use duration::{Millis, TimerEntry, parse_duration};
pub use ticket::*;

/// A spec that cannot be read, or an error at its line and column.
pub type SpecError = platform::yaml::FileError;

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
    /// Replies managers insert by shortcut, in the spec's order. Not part of a ticket's spec:
    /// a change applies to every console at once and changes no ticket's version.
    pub canned_responses: Vec<CannedResponse>,
    /// Commands for the bank's bot worker. Not part of a ticket's spec either: commands are
    /// matched before any ticket, in the inbound transaction.
    pub bots: Bots,
}

/// The `bots` section: the commands a client may send to the bank's bot worker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bots {
    pub commands: Vec<BotCommandSpec>,
    /// Told to the client when the bot did not answer in time.
    pub timeout_message: String,
    /// Told instead when a manager takes the command over.
    pub hand_over_message: String,
}

/// One command of the `bots` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotCommandSpec {
    /// Lowercase ASCII letters, digits and `_`, at most 32 (written `/name`).
    pub name: String,
    pub description: String,
    pub timeout_ms: u64,
    pub on_timeout: tickets::bots::OnBotTimeout,
}

impl Bots {
    /// The commands as clients are offered them: `(name, description)`, in the spec's order.
    pub fn offered(&self) -> impl Iterator<Item = (&str, &str)> {
        self.commands
            .iter()
            .map(|c| (c.name.as_str(), c.description.as_str()))
    }

    /// `body` as one of these commands, with what its timeout tells the client.
    pub fn call(&self, body: &str) -> Option<tickets::bots::BotCall> {
        use tickets::bots::{BotCall, OnBotTimeout, parse_command};
        let text = parse_command(body)?;
        let c = self.commands.iter().find(|c| c.name == text.name)?;
        Some(BotCall {
            command: c.name.clone(),
            args: text.args,
            timeout_ms: c.timeout_ms,
            on_timeout: c.on_timeout,
            timeout_message: match c.on_timeout {
                OnBotTimeout::Reply => self.timeout_message.clone(),
                OnBotTimeout::HandOver => self.hand_over_message.clone(),
            },
        })
    }
}

/// A reply a manager inserts by its shortcut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CannedResponse {
    /// Lowercase letters, digits, `-` and `_`, at most 32.
    pub shortcut: String,
    /// What the console lists (the shortcut when the spec gives none).
    pub title: String,
    pub text: String,
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
        let raw: file::SpecFile =
            serde_yaml_ng::from_str(text).map_err(|e| SpecError::deserializing(file, &e))?;
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
        validate::Validator {
            raw: &raw,
            err: &err,
        }
        .build()
    }
}
