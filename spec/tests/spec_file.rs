//! `workflows.yaml` parsing and validation: every error has its line and column, compiled specs
//! classify, and the default file is valid.

use spec::*;
use tickets::screening::Check;

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
fn the_kafka_provider_takes_a_timeout_and_keeps_builtin_versions_unchanged() -> Result<(), SpecError>
{
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

#[test]
fn detectors_are_named_and_parameterised_with_errors_at_their_place() -> Result<(), SpecError> {
    let spec = parse(&format!(
        "{BASE}  rules:\n    - name: cvv\n      detector: cvv\n    - name: otp\n      detector: one_time_code\n    - name: iban\n      detector: iban\n      countries: [DE, FR]\n"
    ))?;
    let checks: Vec<_> = spec
        .ticket
        .afc_rules
        .iter()
        .map(|r| r.check.clone())
        .collect();
    assert_eq!(
        checks,
        vec![
            Check::Cvv,
            Check::OneTimeCode,
            Check::Iban {
                countries: vec!["DE".into(), "FR".into()]
            }
        ]
    );
    let (line, _, m) = at(parse(&format!(
        "{BASE}  rules:\n    - name: iban\n      detector: iban\n      countries: [DE, germany]\n"
    )));
    assert!(m.contains("afc.rules.0.countries.1"), "{m}");
    assert!(m.contains("not a country code"), "{m}");
    assert_eq!(line, 7, "{m}");
    let (_, _, m) = at(parse(&format!(
        "{BASE}  rules:\n    - name: c\n      detector: card_number\n      countries: [DE]\n"
    )));
    assert!(m.contains("`countries` belongs to `detector: iban`"), "{m}");
    let (_, _, m) = at(parse(&format!(
        "{BASE}  rules:\n    - name: c\n      detector: passport\n"
    )));
    assert!(m.contains("unknown variant"), "{m}");
    Ok(())
}

#[test]
fn canned_responses_are_listed_in_order_with_errors_at_their_place() -> Result<(), SpecError> {
    let spec = parse(&format!(
        "{BASE}canned_responses:\n  - shortcut: hello\n    title: Greeting\n    text: Hello! How can I help?\n  - shortcut: wait-1\n    text: One moment, please.\n"
    ))?;
    let got: Vec<(&str, &str)> = spec
        .canned_responses
        .iter()
        .map(|c| (c.shortcut.as_str(), c.title.as_str()))
        .collect();
    assert_eq!(got, [("hello", "Greeting"), ("wait-1", "wait-1")]);
    let (line, column, m) = at(parse(&format!(
        "{BASE}canned_responses:\n  - shortcut: hello\n    text: a\n  - shortcut: hello\n    text: b\n"
    )));
    assert!(
        m.contains("canned_responses.1.shortcut") && m.contains("already"),
        "{m}"
    );
    assert_eq!((line, column), (7, 15), "{m}");
    let (_, _, m) = at(parse(&format!(
        "{BASE}canned_responses:\n  - shortcut: Hello There\n    text: a\n"
    )));
    assert!(m.contains("a-z, 0-9"), "{m}");
    let (_, _, m) = at(parse(&format!(
        "{BASE}canned_responses:\n  - shortcut: blank\n    text: \"  \"\n"
    )));
    assert!(m.contains("canned_responses.0.text"), "{m}");
    let (_, _, m) = at(parse(&format!(
        "{BASE}canned_responses:\n  - shortcut: x\n    text: a\n    body: b\n"
    )));
    assert!(m.contains("unknown field"), "{m}");
    Ok(())
}

#[test]
fn bot_commands_are_matched_by_name_with_their_timeouts_and_errors_at_their_place()
-> Result<(), SpecError> {
    use tickets::bots::OnBotTimeout;
    let spec = parse(&format!(
        "{BASE}bots:\n  timeout: 3s\n  on_timeout: hand_over\n  commands:\n    - name: status\n      on_timeout: reply\n    - name: /balance\n      timeout: 500ms\n"
    ))?;
    let status = spec.bots.call("/STATUS now").expect("a command");
    assert_eq!(
        (
            status.command.as_str(),
            status.args.as_str(),
            status.timeout_ms
        ),
        ("status", "now", 3000)
    );
    assert_eq!(status.on_timeout, OnBotTimeout::Reply);
    assert!(status.timeout_message.contains("did not answer"));
    let balance = spec.bots.call("/balance").expect("a command");
    assert_eq!(
        (balance.timeout_ms, balance.on_timeout),
        (500, OnBotTimeout::HandOver)
    );
    assert_eq!(balance.timeout_message, spec.bots.hand_over_message);
    assert_eq!(spec.bots.call("/rates"), None, "not a command of this spec");
    assert_eq!(spec.bots.call("status"), None);
    // No `bots` section: no commands.
    assert!(parse(BASE)?.bots.call("/status").is_none());

    let (line, column, m) = at(parse(&format!(
        "{BASE}bots:\n  commands:\n    - name: status\n    - name: status\n"
    )));
    assert!(
        m.contains("bots.commands.1.name") && m.contains("already"),
        "{m}"
    );
    assert_eq!((line, column), (7, 13), "{m}");
    let (_, _, m) = at(parse(&format!(
        "{BASE}bots:\n  commands:\n    - name: Check Balance\n"
    )));
    assert!(m.contains("a-z, 0-9"), "{m}");
    let (line, _, m) = at(parse(&format!(
        "{BASE}bots:\n  commands:\n    - name: slow\n      timeout: 1h\n"
    )));
    assert!(
        m.contains("bots.commands.0.timeout") && m.contains("10m"),
        "{m}"
    );
    assert_eq!(line, 7, "{m}");
    let (_, _, m) = at(parse(&format!(
        "{BASE}bots:\n  commands:\n    - name: x\n      on_timeout: retry\n"
    )));
    assert!(m.contains("unknown variant"), "{m}");
    let (_, _, m) = at(parse(&format!("{BASE}bots:\n  timeout_message: \"  \"\n")));
    assert!(m.contains("bots.timeout_message"), "{m}");
    Ok(())
}
