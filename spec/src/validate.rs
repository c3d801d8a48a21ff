//! Checks what the YAML deserializer cannot (references to calendars, queues and fields, patterns
//! that compile, impossible combinations), each error located by its key path, and compiles the
//! result into a [`Spec`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sha2::{Digest, Sha256};

use crate::calendar::Calendar;
use crate::duration::TimerEntry;
use crate::file::*;
use crate::ticket::*;
use crate::{ManagerPolicy, Spec, SpecError};
use tickets::screening::{AfcRule, Check, Rules};

/// How long a command waits for its bot unless the spec says otherwise, and the bounds.
const DEFAULT_BOT_TIMEOUT_MS: u64 = 10_000;
const MIN_BOT_TIMEOUT_MS: u64 = 100;
const MAX_BOT_TIMEOUT_MS: u64 = 600_000;

pub(crate) struct Validator<'a, F: Fn(&str, String) -> SpecError> {
    pub(crate) raw: &'a SpecFile,
    pub(crate) err: &'a F,
}

impl<F: Fn(&str, String) -> SpecError> Validator<'_, F> {
    pub(crate) fn build(&self) -> Result<Spec, SpecError> {
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
            if r.countries.is_some() && r.detector != Some(Detector::Iban) {
                return Err(err(
                    &format!("{path}.countries"),
                    "`countries` belongs to `detector: iban`".into(),
                ));
            }
            let check = match (&r.detector, &r.pattern) {
                (Some(Detector::CardNumber), None) => Check::CardNumber,
                (Some(Detector::Cvv), None) => Check::Cvv,
                (Some(Detector::OneTimeCode), None) => Check::OneTimeCode,
                (Some(Detector::Iban), None) => {
                    let countries = r.countries.clone().unwrap_or_default();
                    for (k, c) in countries.iter().enumerate() {
                        if c.len() != 2 || !c.chars().all(|c| c.is_ascii_uppercase()) {
                            return Err(err(
                                &format!("{path}.countries.{k}"),
                                format!(
                                    "{c:?} is not a country code (two capital letters, ISO 3166)"
                                ),
                            ));
                        }
                    }
                    Check::Iban { countries }
                }
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
            canned_responses: self.canned_responses()?,
            bots: self.bots()?,
        })
    }

    /// The bot commands: names well formed and unique, timeouts a client can wait, messages that
    /// fit a message.
    fn bots(&self) -> Result<crate::Bots, SpecError> {
        use tickets::bots::OnBotTimeout;
        let err = self.err;
        let b = &self.raw.bots;
        let timeout_ok = |path: &str, ms: u64| {
            if (MIN_BOT_TIMEOUT_MS..=MAX_BOT_TIMEOUT_MS).contains(&ms) {
                Ok(())
            } else {
                Err(err(
                    path,
                    "a command waits 100ms to 10m for its answer".into(),
                ))
            }
        };
        let default_timeout = b.timeout.map_or(DEFAULT_BOT_TIMEOUT_MS, |t| t.0);
        timeout_ok("bots.timeout", default_timeout)?;
        let message = |key: &str, given: &Option<String>, default: &str| {
            let text = given.clone().unwrap_or_else(|| default.to_owned());
            tickets::MessageBody::parse(&text)
                .map_err(|e| err(&format!("bots.{key}"), e.to_string()))?;
            Ok::<_, SpecError>(text)
        };
        let timeout_message = message(
            "timeout_message",
            &b.timeout_message,
            "Our assistant did not answer in time. Please try the command again later.",
        )?;
        let hand_over_message = message(
            "hand_over_message",
            &b.hand_over_message,
            "Our assistant did not answer in time, so a manager will answer you here.",
        )?;
        let mut seen = BTreeSet::new();
        let mut commands = Vec::new();
        for (i, c) in b.commands.iter().enumerate() {
            let path = format!("bots.commands.{i}");
            let name = c.name.trim().trim_start_matches('/');
            let well_formed = (1..=32).contains(&name.len())
                && name
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
            if !well_formed {
                return Err(err(
                    &format!("{path}.name"),
                    format!("{name:?}: 1 to 32 of a-z, 0-9, `_` (the client writes /{name})"),
                ));
            }
            if !seen.insert(name.to_owned()) {
                return Err(err(
                    &format!("{path}.name"),
                    format!("`{name}` is already an earlier command"),
                ));
            }
            let timeout_ms = c.timeout.map_or(default_timeout, |t| t.0);
            timeout_ok(&format!("{path}.timeout"), timeout_ms)?;
            let on_timeout = match c.on_timeout.or(b.on_timeout).unwrap_or(BotTimeout::Reply) {
                BotTimeout::Reply => OnBotTimeout::Reply,
                BotTimeout::HandOver => OnBotTimeout::HandOver,
            };
            if c.description.chars().count() > 200 {
                return Err(err(
                    &format!("{path}.description"),
                    "at most 200 characters".into(),
                ));
            }
            commands.push(crate::BotCommandSpec {
                name: name.to_owned(),
                description: c.description.trim().to_owned(),
                timeout_ms,
                on_timeout,
            });
        }
        Ok(crate::Bots {
            commands,
            timeout_message,
            hand_over_message,
        })
    }

    /// The canned responses: shortcuts well formed and unique, texts that fit a message.
    fn canned_responses(&self) -> Result<Vec<crate::CannedResponse>, SpecError> {
        let err = self.err;
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (i, c) in self.raw.canned_responses.iter().enumerate() {
            let path = format!("canned_responses.{i}");
            let shortcut = c.shortcut.trim();
            let well_formed = (1..=32).contains(&shortcut.len())
                && shortcut.chars().all(|ch| {
                    ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_'
                });
            if !well_formed {
                return Err(err(
                    &format!("{path}.shortcut"),
                    format!("{shortcut:?}: 1 to 32 of a-z, 0-9, `-`, `_`"),
                ));
            }
            if !seen.insert(shortcut.to_owned()) {
                return Err(err(
                    &format!("{path}.shortcut"),
                    format!("`{shortcut}` is already the shortcut of an earlier response"),
                ));
            }
            if let Err(e) = tickets::MessageBody::parse(&c.text) {
                return Err(err(&format!("{path}.text"), e.to_string()));
            }
            if c.title.chars().count() > 100 {
                return Err(err(
                    &format!("{path}.title"),
                    "at most 100 characters".into(),
                ));
            }
            out.push(crate::CannedResponse {
                shortcut: shortcut.to_owned(),
                title: if c.title.trim().is_empty() {
                    shortcut.to_owned()
                } else {
                    c.title.trim().to_owned()
                },
                text: c.text.clone(),
            });
        }
        Ok(out)
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
