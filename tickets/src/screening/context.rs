//! Detectors of short secrets that are only secrets in context: a CVV/CVC (3 or 4 digits) or a
//! one-time code (4 to 8 digits) is an ordinary number ("3 cards", "order 1234") unless the
//! words around it say what it is. A detector is a set of keywords and a digit count; it finds a
//! whole number of that size (one group: not a piece of a longer number, not glued to letters)
//! within [`REACH`] characters before or after a keyword, in the text as a person reads it
//! ([`super::text::normalize`]), case-insensitive.

use super::card::short_numbers;

/// A keyword and its number are at most this many characters apart ("CVV code on the back: 123").
pub const REACH: usize = 24;

/// A secret recognised by the words around a short number.
pub struct InContext {
    /// Lowercase keywords; one of them must be near the number.
    pub keywords: &'static [&'static str],
    pub min_digits: usize,
    pub max_digits: usize,
}

/// The card verification code printed on the back of a card.
pub const CVV: InContext = InContext {
    keywords: &[
        "cvv",
        "cvc",
        "cvv2",
        "cvc2",
        "cid",
        "security code",
        "код безопасности",
        "код на обороте",
        "код с обратной стороны",
        "код с оборота",
        "трёхзначный код",
        "трехзначный код",
    ],
    min_digits: 3,
    max_digits: 4,
};

/// A one-time password or confirmation code sent by SMS or push.
pub const ONE_TIME_CODE: InContext = InContext {
    keywords: &[
        "otp",
        "one-time",
        "one time",
        "sms code",
        "code from",
        "verification code",
        "confirmation code",
        "смс",
        "sms",
        "код из",
        "код подтверждения",
        "одноразовый",
        "пароль из",
        "код пришел",
        "код пришёл",
    ],
    min_digits: 4,
    max_digits: 8,
};

impl InContext {
    /// True when a normalised text holds such a number near one of the keywords.
    pub fn found_in(&self, normalized: &str) -> bool {
        !self.positions(normalized).is_empty()
    }

    /// The char positions (first, last) of every such number in a normalised text.
    pub(crate) fn positions(&self, normalized: &str) -> Vec<(usize, usize)> {
        // Lowercasing may change a char's length in bytes, never the number of chars for the
        // scripts the keywords are in; positions are counted in chars of the lowercased text.
        let lower: Vec<char> = normalized.chars().flat_map(char::to_lowercase).collect();
        let spans = self.keyword_spans(&lower);
        if spans.is_empty() {
            return Vec::new();
        }
        short_numbers(&lower, self.min_digits, self.max_digits)
            .into_iter()
            .filter(|(first, last)| {
                spans.iter().any(|(start, end)| {
                    (*end <= *first && first - end <= REACH)
                        || (*last < *start && start - last <= REACH)
                })
            })
            .collect()
    }

    /// Where the keywords stand, as (first char, one past the last), each a whole word.
    fn keyword_spans(&self, lower: &[char]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for word in self.keywords {
            let w: Vec<char> = word.chars().collect();
            for start in 0..lower.len().saturating_sub(w.len() - 1) {
                if lower[start..].starts_with(&w) {
                    let end = start + w.len();
                    let before = start.checked_sub(1).map(|b| lower[b]);
                    // A keyword may be followed by digits ("cvv2", "cvv:123"), not by letters.
                    let glued_before = before.is_some_and(char::is_alphabetic);
                    let glued_after = lower.get(end).is_some_and(|c| c.is_alphabetic());
                    if !glued_before && !glued_after {
                        out.push((start, end));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::screening::text::normalize;

    fn cvv(t: &str) -> bool {
        CVV.found_in(&normalize(t))
    }

    fn otp(t: &str) -> bool {
        ONE_TIME_CODE.found_in(&normalize(t))
    }

    #[test]
    fn a_cvv_near_its_name_is_found() {
        for t in [
            "cvv 123",
            "CVV: 123",
            "my cvv2 is 1234",
            "the security code on the back is 456",
            "код безопасности 789",
            "123 - это cvc",
            "C\u{200b}V\u{200b}V ١٢٣",
        ] {
            assert!(cvv(t), "{t}");
        }
    }

    #[test]
    fn short_numbers_without_the_words_pass() {
        for t in [
            "what is cvv?",
            "I have 3 cards and 123 problems",
            "cvv is on the back of the card, I paid 12345 rubles",
            "order 1234",
            "cvv? my branch is number 123456",
        ] {
            assert!(!cvv(t), "{t}");
        }
        for t in ["sms did not arrive", "order 1234", "I got 3 sms"] {
            assert!(!otp(t), "{t}");
        }
    }

    #[test]
    fn a_one_time_code_near_its_name_is_found() {
        for t in [
            "the code from sms: 4821",
            "OTP 493021",
            "код из смс 5521",
            "код подтверждения 77-12",
            "4821 - одноразовый пароль",
        ] {
            let found = otp(t);
            if t.contains("77-12") {
                // Two groups: not one code as written; the pattern rule catches spaced codes.
                assert!(!found, "{t}");
            } else {
                assert!(found, "{t}");
            }
        }
    }

    #[test]
    fn a_number_far_from_the_word_is_not_the_code() {
        let far = format!("cvv {} 123", "x".repeat(REACH + 5));
        assert!(!cvv(&far));
    }
}
