//! A ticket spec compiled for checking messages: its AFC rules and classification patterns built
//! once per spec version, not once per check. The inbound transaction checks with it
//! ([`tickets::inbound::MessageCheck`]), or holds the messages for the bank's AFC system
//! when the spec's provider is Kafka, whose verdicts the verdict consumer applies with it; the
//! workflow's check activity takes the same compiled spec from [`Compiled`] by version.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tickets::external_afc::ExternalCheck;
use tickets::inbound::MessageCheck;
use tickets::{TicketClassification, Verdict};

use crate::{AfcProvider, TicketSpec};
use tickets::screening::Rules;

/// A spec ready to check messages with.
pub struct CheckedSpec {
    pub spec: TicketSpec,
    rules: Rules,
    patterns: Vec<Option<regex::Regex>>,
}

impl CheckedSpec {
    pub fn compile(spec: &TicketSpec) -> Result<Self, regex::Error> {
        Ok(Self {
            rules: Rules::compile(&spec.afc_rules)?,
            patterns: spec.classify_patterns(),
            spec: spec.clone(),
        })
    }
}

impl MessageCheck for CheckedSpec {
    fn version(&self) -> &str {
        &self.spec.version
    }

    fn verdict(&self, body: &str) -> Verdict {
        self.rules.check(body)
    }

    fn verdict_after(&self, previous: Option<&str>, body: &str) -> Verdict {
        self.rules.check_after(previous, body)
    }

    fn classify(&self, body: &str) -> TicketClassification {
        let c = self.spec.classify_by(body, &self.patterns);
        TicketClassification {
            category: c.category,
            priority: c.priority.level(),
            queue: c.queue,
            fields: serde_json::to_value(c.fields).unwrap_or_default(),
        }
    }

    fn blocked_warning(&self) -> &str {
        &self.spec.blocked_warning
    }

    fn external(&self) -> Option<ExternalCheck> {
        match self.spec.afc_provider {
            AfcProvider::Builtin => None,
            AfcProvider::Kafka {
                timeout_ms,
                check_manager_replies,
            } => Some(ExternalCheck {
                timeout_ms,
                replies: check_manager_replies,
            }),
        }
    }
}

/// What the inbound transaction checks client messages with: the current spec, compiled, and its
/// bot commands (which belong to no ticket's spec: a command is matched before any ticket).
pub struct InboundCheck {
    pub spec: Arc<CheckedSpec>,
    pub bots: crate::Bots,
}

impl MessageCheck for InboundCheck {
    fn version(&self) -> &str {
        self.spec.version()
    }
    fn verdict(&self, body: &str) -> Verdict {
        self.spec.verdict(body)
    }
    fn verdict_after(&self, previous: Option<&str>, body: &str) -> Verdict {
        self.spec.verdict_after(previous, body)
    }
    fn classify(&self, body: &str) -> TicketClassification {
        self.spec.classify(body)
    }
    fn blocked_warning(&self) -> &str {
        self.spec.blocked_warning()
    }
    fn external(&self) -> Option<ExternalCheck> {
        self.spec.external()
    }
    fn command(&self, body: &str) -> Option<tickets::bots::BotCall> {
        self.bots.call(body)
    }
}

/// Compiled specs by version, shared by the activities of every ticket. A handful of versions
/// live at once (the current one and those of tickets started before an edit), so the map is kept
/// whole; it is never iterated inside a workflow.
#[derive(Default, Clone)]
pub struct Compiled {
    by_version: Arc<Mutex<BTreeMap<String, Arc<CheckedSpec>>>>,
}

impl Compiled {
    /// The compiled form of `spec`, compiled at its version's first use.
    pub fn of(&self, spec: &TicketSpec) -> Result<Arc<CheckedSpec>, regex::Error> {
        let mut map = self
            .by_version
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = map.get(&spec.version).filter(|c| c.spec == *spec) {
            return Ok(c.clone());
        }
        let c = Arc::new(CheckedSpec::compile(spec)?);
        map.insert(spec.version.clone(), c.clone());
        Ok(c)
    }
}
