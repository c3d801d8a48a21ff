//! `workflows.yaml`: the lifecycle an operator writes. Parsed and validated here, outside any
//! workflow; each ticket receives the compiled [`TicketSpec`] at start and keeps it for life.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::afc::{AfcRule, Check, Rules};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("{file}: cannot read: {reason}")]
    Read { file: String, reason: String },
    /// Syntax, unknown keys and wrong types, as the YAML parser reports them.
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A value that parses but makes no sense, named by its path.
    #[error("{file}: {path}: {message}")]
    Invalid {
        file: String,
        path: String,
        message: String,
    },
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    pub version: u32,
    pub afc: AfcSection,
    #[serde(default)]
    pub assignment: AssignmentSection,
    #[serde(default)]
    pub on_close: OnCloseSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfcSection {
    pub provider: Provider,
    /// Sent to the client in place of a blocked message.
    #[serde(default = "default_warning")]
    pub blocked_warning: String,
    #[serde(default)]
    pub rules: Vec<RuleEntry>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Builtin,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleEntry {
    pub name: String,
    /// A built-in detector: `card_number`.
    #[serde(default)]
    pub detector: Option<Detector>,
    /// A regular expression.
    #[serde(default)]
    pub pattern: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    CardNumber,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentSection {
    /// How many open tickets one manager holds at most (N of rule 3).
    #[serde(default = "default_capacity")]
    pub capacity: i32,
}

impl Default for AssignmentSection {
    fn default() -> Self {
        Self {
            capacity: default_capacity(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnCloseSection {
    #[serde(default = "default_closing")]
    pub message: String,
}

impl Default for OnCloseSection {
    fn default() -> Self {
        Self {
            message: default_closing(),
        }
    }
}

fn default_warning() -> String {
    "Your message was blocked by our security check and was not delivered. Please never send card numbers or other secrets in the chat.".into()
}
fn default_closing() -> String {
    "Your request was resolved. Write to us any time to open a new one.".into()
}
fn default_capacity() -> i32 {
    3
}

/// What a ticket workflow needs of the spec, fixed at the ticket's start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketSpec {
    pub afc_rules: Vec<AfcRule>,
    pub blocked_warning: String,
    pub closing_message: String,
}

/// A validated spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub ticket: TicketSpec,
    pub capacity: i32,
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

    pub fn parse(file: &str, text: &str) -> Result<Self, SpecError> {
        let raw: SpecFile = serde_yaml_ng::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            SpecError::Parse {
                file: file.to_owned(),
                line,
                column,
                message: e.to_string(),
            }
        })?;
        let invalid = |path: String, message: String| SpecError::Invalid {
            file: file.to_owned(),
            path,
            message,
        };
        if raw.version != 1 {
            return Err(invalid(
                "version".into(),
                format!("unsupported version {}; expected 1", raw.version),
            ));
        }
        let mut names = BTreeSet::new();
        let mut rules = Vec::new();
        for (i, r) in raw.afc.rules.iter().enumerate() {
            let path = format!("afc.rules[{i}]");
            if r.name.trim().is_empty() {
                return Err(invalid(format!("{path}.name"), "must not be empty".into()));
            }
            if !names.insert(r.name.clone()) {
                return Err(invalid(
                    format!("{path}.name"),
                    format!("duplicate rule name {:?}", r.name),
                ));
            }
            let check = match (&r.detector, &r.pattern) {
                (Some(Detector::CardNumber), None) => Check::CardNumber,
                (None, Some(p)) => Check::Pattern(p.clone()),
                _ => {
                    return Err(invalid(
                        path,
                        "give exactly one of `detector` or `pattern`".into(),
                    ));
                }
            };
            rules.push(AfcRule {
                name: r.name.clone(),
                check,
            });
        }
        if let Err(e) = Rules::compile(&rules) {
            return Err(invalid("afc.rules".into(), format!("invalid pattern: {e}")));
        }
        if raw.assignment.capacity < 1 {
            return Err(invalid(
                "assignment.capacity".into(),
                "must be at least 1".into(),
            ));
        }
        Ok(Self {
            ticket: TicketSpec {
                afc_rules: rules,
                blocked_warning: raw.afc.blocked_warning,
                closing_message: raw.on_close.message,
            },
            capacity: raw.assignment.capacity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_workflows_yaml_is_valid_and_blocks_card_numbers() -> Result<(), SpecError> {
        let spec = Spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows.yaml"))?;
        assert!(
            spec.ticket
                .afc_rules
                .iter()
                .any(|r| r.check == Check::CardNumber)
        );
        assert!(spec.capacity >= 1);
        Ok(())
    }

    #[test]
    fn an_unknown_key_is_reported_with_line_and_column() {
        let text = "version: 1\nafc:\n  provider: builtin\n  rulez: []\n";
        match Spec::parse("w.yaml", text) {
            Err(SpecError::Parse {
                line,
                column,
                message,
                ..
            }) => {
                assert_eq!((line, column), (4, 3), "{message}");
                assert!(message.contains("rulez"), "{message}");
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn a_bad_pattern_and_a_rule_with_two_checks_are_rejected_by_path() {
        let bad =
            "version: 1\nafc:\n  provider: builtin\n  rules:\n    - name: x\n      pattern: '('\n";
        assert!(
            matches!(Spec::parse("w", bad), Err(SpecError::Invalid { path, .. }) if path == "afc.rules")
        );
        let two = "version: 1\nafc:\n  provider: builtin\n  rules:\n    - name: x\n      pattern: a\n      detector: card_number\n";
        assert!(
            matches!(Spec::parse("w", two), Err(SpecError::Invalid { path, .. }) if path == "afc.rules[0]")
        );
    }
}
