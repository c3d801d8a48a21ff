//! The spec loader on bad input: `Spec::parse` never panics, whatever the text, and every error it
//! returns points at a real place in the text (line and column from 1, the line within the text).
//! Inputs: arbitrary text, random edits of the real `workflows.yaml`, and YAML made of the spec's
//! own keys with values of the wrong kinds.
//!
//! `make test` runs a few hundred cases of each (seconds); a longer hunt:
//! `PROPTEST_CASES=20000 cargo nextest run -p workflow --test spec_fuzz`.

use proptest::prelude::*;
use proptest::test_runner::Config;
use spec::{Spec, SpecError};

const DEFAULT_SPEC: &str = include_str!("../../workflows.yaml");

fn config() -> Config {
    // PROPTEST_CASES overrides the default for longer runs.
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Parses and checks that an error names a place inside `text`.
fn parse_points_into_text(text: &str) -> Result<(), TestCaseError> {
    match Spec::parse("fuzz.yaml", text) {
        Ok(_) => Ok(()),
        Err(SpecError::At {
            file,
            line,
            column,
            message,
        }) => {
            prop_assert_eq!(file, "fuzz.yaml");
            prop_assert!(line >= 1 && column >= 1, "{line}:{column}: {message}");
            // One past the last line is where an unexpected end of input is reported. Lines as
            // YAML counts them: a lone `\r` breaks a line too (as in an editor), not only `\n`.
            let breaks = text.replace("\r\n", "\n").matches(['\n', '\r']).count();
            let lines = breaks + 2;
            prop_assert!(line <= lines, "line {line} of {lines}: {message}");
            prop_assert!(!message.is_empty());
            Ok(())
        }
        Err(other) => Err(TestCaseError::fail(format!(
            "parse returned a non-located error: {other}"
        ))),
    }
}

/// One edit of a text: a character or a line inserted, removed or replaced.
#[derive(Debug, Clone)]
enum Edit {
    InsertChar(usize, char),
    RemoveChar(usize),
    DuplicateLine(usize),
    RemoveLine(usize),
    ReplaceLine(usize, String),
    Indent(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let line_text = prop_oneof![
        "[ -~]{0,40}",
        Just("  - ".to_owned()),
        Just(": :".to_owned()),
        Just("\t".to_owned()),
        Just("&a [*a, *a]".to_owned()),
        Just("capacity: -1".to_owned()),
        Just("escalate_after: 5 minutes".to_owned()),
    ];
    prop_oneof![
        (any::<usize>(), any::<char>()).prop_map(|(i, c)| Edit::InsertChar(i, c)),
        any::<usize>().prop_map(Edit::RemoveChar),
        any::<usize>().prop_map(Edit::DuplicateLine),
        any::<usize>().prop_map(Edit::RemoveLine),
        (any::<usize>(), line_text).prop_map(|(i, l)| Edit::ReplaceLine(i, l)),
        (any::<usize>(), 0usize..8).prop_map(|(i, n)| Edit::Indent(i, n)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let s: String = chars.iter().collect();
        let mut lines: Vec<String> = s.split('\n').map(str::to_owned).collect();
        let n = lines.len().max(1);
        match e {
            Edit::InsertChar(i, c) => {
                let at = i % (chars.len() + 1);
                chars.insert(at, *c);
                continue;
            }
            Edit::RemoveChar(i) => {
                if !chars.is_empty() {
                    let at = i % chars.len();
                    chars.remove(at);
                }
                continue;
            }
            Edit::DuplicateLine(i) => {
                let l = lines.get(i % n).cloned().unwrap_or_default();
                lines.insert(i % n, l);
            }
            Edit::RemoveLine(i) => {
                if !lines.is_empty() {
                    lines.remove(i % lines.len());
                }
            }
            Edit::ReplaceLine(i, l) => {
                if let Some(x) = lines.get_mut(i % n) {
                    *x = l.clone();
                }
            }
            Edit::Indent(i, k) => {
                if let Some(x) = lines.get_mut(i % n) {
                    *x = format!("{}{x}", " ".repeat(*k));
                }
            }
        }
        chars = lines.join("\n").chars().collect();
    }
    chars.into_iter().collect()
}

/// YAML built from the spec's own keys, with values of any kind in any place.
fn spec_like() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("version"),
        Just("fields"),
        Just("queues"),
        Just("calendars"),
        Just("afc"),
        Just("provider"),
        Just("rules"),
        Just("detector"),
        Just("pattern"),
        Just("classify"),
        Just("assignment"),
        Just("capacity"),
        Just("managers"),
        Just("timers"),
        Just("escalate_after"),
        Just("first_response_within"),
        Just("auto_close_after_client_silence"),
        Just("on_close"),
        Just("timezone"),
        Just("hours"),
        Just("weekdays"),
        Just("after"),
        Just("calendar"),
        Just("type"),
        Just("values"),
        Just("default"),
    ];
    let scalar = prop_oneof![
        Just("1".to_owned()),
        Just("-3".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("5m".to_owned()),
        Just("0s".to_owned()),
        Just("1h30m".to_owned()),
        Just("\"25:99-00:00\"".to_owned()),
        Just("Mars/Olympus".to_owned()),
        Just("true".to_owned()),
        Just("null".to_owned()),
        Just("[".to_owned()),
        Just("\"(unclosed\"".to_owned()),
        Just("{}".to_owned()),
        Just("[]".to_owned()),
        "[a-z0-9 ]{0,12}",
    ];
    let line = (0usize..4, key, prop::option::of(scalar)).prop_map(|(depth, k, v)| match v {
        Some(v) => format!("{}{k}: {v}", "  ".repeat(depth)),
        None => format!("{}{k}:", "  ".repeat(depth)),
    });
    prop::collection::vec(line, 0..30).prop_map(|l| l.join("\n"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics_and_errors_point_into_it(text in any::<String>()) {
        parse_points_into_text(&text)?;
    }

    #[test]
    fn edits_of_the_default_spec_never_panic_and_errors_point_into_it(
        edits in prop::collection::vec(edit(), 1..6)
    ) {
        parse_points_into_text(&apply(DEFAULT_SPEC, &edits))?;
    }

    #[test]
    fn spec_keys_with_values_of_any_kind_never_panic(text in spec_like()) {
        parse_points_into_text(&text)?;
    }
}

#[test]
fn the_default_spec_parses() {
    assert!(Spec::parse("workflows.yaml", DEFAULT_SPEC).is_ok());
}
