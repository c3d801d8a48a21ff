//! The built-in anti-financial-crime rules and their detectors (a card number, [`super::card`];
//! a pattern): pure functions from a message body to a verdict. Every detector sees the message
//! as a person reads it ([`super::text::normalize`]); a pattern is matched against both the
//! message and that reading, so invisible characters cannot split a word it looks for. The spec names which
//! rules a ticket runs (`afc.rules` in `workflows.yaml`); the inbound transaction runs them.

use super::card::card_in;
use super::text::normalize;
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
    /// A payment card number, however it is written (see `screening::card`).
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
        let seen = normalize(body);
        for (name, rule) in &self.rules {
            let hit = match rule {
                Compiled::CardNumber => card_in(&seen),
                Compiled::Pattern(re) => re.is_match(body) || re.is_match(&seen),
            };
            if hit {
                return Verdict::Blocked { rule: name.clone() };
            }
        }
        Verdict::Passed
    }
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

    #[test]
    fn invisible_characters_and_other_scripts_hide_nothing_from_a_rule() {
        let card = Verdict::Blocked {
            rule: "card".into(),
        };
        assert_eq!(
            rules().check("4111\u{200b}1111\u{200b}1111\u{200b}1111"),
            card
        );
        assert_eq!(rules().check("карта ٤١١١ ١١١١ ١١١١ ١١١١"), card);
        assert_eq!(
            rules().check("４１１１－１１１１－１１１１－１１１１"),
            card
        );
        assert_eq!(
            rules().check("what is c\u{200b}v\u{ad}v?"),
            Verdict::Blocked { rule: "cvv".into() }
        );
        // A 20-digit account number is what the bank asks for, not a card.
        assert_eq!(
            rules().check("account 40817810099910004312"),
            Verdict::Passed
        );
    }
}
