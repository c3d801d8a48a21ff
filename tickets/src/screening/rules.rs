//! The built-in anti-financial-crime rules and their detectors (a card number by the Luhn
//! checksum, a pattern): pure functions from a message body to a verdict. The spec names which
//! rules a ticket runs (`afc.rules` in `workflows.yaml`); the inbound transaction runs them.

use crate::domain::Verdict;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// One built-in rule, as handed to each ticket in its spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfcRule {
    pub name: String,
    pub check: Check,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// A payment card number: 13 to 19 digits, optionally grouped by spaces or dashes, passing the
    /// Luhn checksum.
    CardNumber,
    /// A regular expression (Rust `regex` syntax).
    Pattern(String),
}

/// A rule set ready to run: patterns compiled once.
pub struct Rules {
    rules: Vec<(String, Compiled)>,
}

enum Compiled {
    CardNumber,
    Pattern(Regex),
}

impl Rules {
    pub fn compile(rules: &[AfcRule]) -> Result<Self, regex::Error> {
        let rules = rules
            .iter()
            .map(|r| {
                let c = match &r.check {
                    Check::CardNumber => Compiled::CardNumber,
                    Check::Pattern(p) => Compiled::Pattern(Regex::new(p)?),
                };
                Ok((r.name.clone(), c))
            })
            .collect::<Result<_, regex::Error>>()?;
        Ok(Self { rules })
    }

    /// The first rule that matches blocks the message.
    pub fn check(&self, body: &str) -> Verdict {
        for (name, rule) in &self.rules {
            let hit = match rule {
                Compiled::CardNumber => contains_card_number(body),
                Compiled::Pattern(re) => re.is_match(body),
            };
            if hit {
                return Verdict::Blocked { rule: name.clone() };
            }
        }
        Verdict::Passed
    }
}

/// True if `text` holds a digit run (single spaces or dashes allowed between digits) with a
/// Luhn-valid card number of 13 to 19 digits in it.
pub fn contains_card_number(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let mut digits = Vec::new();
        while i < chars.len() {
            let c = chars[i];
            if let Some(d) = c.to_digit(10).filter(|_| c.is_ascii_digit()) {
                digits.push(d as u8);
                i += 1;
            } else if (c == ' ' || c == '-') && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit())
            {
                i += 1;
            } else {
                break;
            }
        }
        if run_has_card(&digits) {
            return true;
        }
    }
    false
}

/// A run of 13 to 19 digits is checked whole; a longer run (digits glued to other numbers) is
/// searched for a 16-digit card, the common length. Shorter windows would flag every long number.
fn run_has_card(digits: &[u8]) -> bool {
    match digits.len() {
        13..=19 => luhn_valid(digits),
        n if n > 19 => digits.windows(16).any(luhn_valid),
        _ => false,
    }
}

fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules::compile(&[
            AfcRule {
                name: "card".into(),
                check: Check::CardNumber,
            },
            AfcRule {
                name: "cvv".into(),
                check: Check::Pattern(r"(?i)\bcvv\b".into()),
            },
        ])
        .expect("valid rules")
    }

    #[test]
    fn card_numbers_in_common_layouts_are_blocked() {
        for body in [
            "my card 4111111111111111 please",
            "4111 1111 1111 1111",
            "card: 5500-0000-0000-0004.",
        ] {
            assert_eq!(
                rules().check(body),
                Verdict::Blocked {
                    rule: "card".into()
                },
                "{body}"
            );
        }
    }

    #[test]
    fn ordinary_numbers_and_text_pass() {
        for body in [
            "hello, my order 1234567890123 is late",
            "call me at +7 999 123 45 67",
            "4111 1111 1111 1112",
            "",
        ] {
            assert_eq!(rules().check(body), Verdict::Passed, "{body}");
        }
    }

    #[test]
    fn the_first_matching_rule_names_the_block() {
        assert_eq!(
            rules().check("what is CVV?"),
            Verdict::Blocked { rule: "cvv".into() }
        );
    }
}
