//! The built-in anti-financial-crime rules and their detectors (a card number, [`super::card`];
//! a CVV or one-time code in context, [`super::context`]; an IBAN, [`super::iban`]; a pattern):
//! pure functions from a message body to a verdict. Every detector sees the message
//! as a person reads it ([`super::text::normalize`]); a pattern is matched against both the
//! message and that reading, so invisible characters cannot split a word it looks for. The spec names which
//! rules a ticket runs (`afc.rules` in `workflows.yaml`); the inbound transaction runs them.

use super::card::card_in;
use super::context::{CVV, ONE_TIME_CODE};
use super::iban::iban_in;
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
    /// A card verification code (3-4 digits) next to words that name it.
    Cvv,
    /// A one-time password or confirmation code (4-8 digits) next to words that name it.
    OneTimeCode,
    /// An IBAN with a valid checksum; of these countries only, when any are named.
    Iban { countries: Vec<String> },
    /// A regular expression (Rust `regex` syntax).
    Pattern(String),
}

/// A rule set ready to run: patterns compiled once.
pub struct Rules {
    rules: Vec<(String, Compiled)>,
}

enum Compiled {
    CardNumber,
    Cvv,
    OneTimeCode,
    Iban(Vec<String>),
    Pattern(Regex),
}

impl Compiled {
    /// Whether the rule finds what it looks for in `body`, read as `seen`.
    fn hit(&self, body: &str, seen: &str) -> bool {
        match self {
            Compiled::CardNumber => card_in(seen),
            Compiled::Cvv => CVV.found_in(seen),
            Compiled::OneTimeCode => ONE_TIME_CODE.found_in(seen),
            Compiled::Iban(countries) => iban_in(seen, countries),
            Compiled::Pattern(re) => re.is_match(body) || re.is_match(seen),
        }
    }

    /// A number of this kind may be split over two messages (half in each).
    fn splits(&self) -> bool {
        matches!(self, Compiled::CardNumber | Compiled::Iban(_))
    }
}

impl Rules {
    pub fn compile(rules: &[AfcRule]) -> Result<Self, regex::Error> {
        let rules = rules
            .iter()
            .map(|r| {
                let c = match &r.check {
                    Check::CardNumber => Compiled::CardNumber,
                    Check::Cvv => Compiled::Cvv,
                    Check::OneTimeCode => Compiled::OneTimeCode,
                    Check::Iban { countries } => Compiled::Iban(countries.clone()),
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
            if rule.hit(body, &seen) {
                return Verdict::Blocked { rule: name.clone() };
            }
        }
        Verdict::Passed
    }

    /// [`Rules::check`] of a message written right after `previous` (the same client's last
    /// message, within a short window): a number split over the two (its first half at the end
    /// of `previous`, the rest here) blocks this message, as it completes what a manager must not
    /// read. The half already shown passed on its own: it is not a number by itself.
    pub fn check_after(&self, previous: Option<&str>, body: &str) -> Verdict {
        let alone = self.check(body);
        let Some(previous) = previous else {
            return alone;
        };
        if alone != Verdict::Passed {
            return alone;
        }
        let before = normalize(previous);
        let joined = format!("{before} {}", normalize(body));
        for (name, rule) in &self.rules {
            if rule.splits() && rule.hit(&joined, &joined) && !rule.hit(previous, &before) {
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
    fn a_card_split_over_two_messages_blocks_the_second() {
        let card = Verdict::Blocked {
            rule: "card".into(),
        };
        let r = rules();
        assert_eq!(r.check("4111 1111"), Verdict::Passed);
        assert_eq!(r.check_after(Some("my card 4111 1111"), "1111 1111"), card);
        assert_eq!(r.check_after(Some("4111 1111 1111"), "\u{200b}1111"), card);
        assert_eq!(r.check_after(Some("hello"), "1111 1111"), Verdict::Passed);
        assert_eq!(r.check_after(None, "1111 1111"), Verdict::Passed);
        // A card in the previous message was blocked then: this one is judged alone.
        assert_eq!(
            r.check_after(Some("4111 1111 1111 1111"), "thanks"),
            Verdict::Passed
        );
    }

    #[test]
    fn cvv_codes_and_ibans_are_their_own_detectors() {
        let r = Rules::compile(&[
            AfcRule {
                name: "cvv".into(),
                check: Check::Cvv,
            },
            AfcRule {
                name: "otp".into(),
                check: Check::OneTimeCode,
            },
            AfcRule {
                name: "iban".into(),
                check: Check::Iban { countries: vec![] },
            },
        ])
        .expect("valid rules");
        let blocked = |rule: &str| Verdict::Blocked { rule: rule.into() };
        assert_eq!(r.check("cvv 123"), blocked("cvv"));
        assert_eq!(r.check("code from sms 4821"), blocked("otp"));
        assert_eq!(r.check("DE89 3704 0044 0532 0130 00"), blocked("iban"));
        assert_eq!(
            r.check_after(Some("DE89 3704 0044"), "0532 0130 00"),
            blocked("iban")
        );
        assert_eq!(r.check("what is cvv? I have 3 cards"), Verdict::Passed);
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
