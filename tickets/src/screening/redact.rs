//! What is kept of a message that holds card data (PCI DSS: a card number is never stored in
//! clear). The masked form keeps what a person needs to recognise the card (the first four and
//! last four digits of a 16-19 digit number, the last four of a shorter one); a blocked message
//! keeps no other digit at all, since what blocked it (a CVV, a code, a number the bank's
//! rules forbid) may be any of them. The original, when the bank's audit needs it, is sealed
//! with a key the store is given ([`AuditSeal`]), never kept readable.

use super::card::card_positions;
use super::text::normalize;

/// Encrypts the original of a blocked message for the audit trail. None: no audit copy is kept.
pub trait AuditSeal: Send + Sync {
    fn seal(&self, plain: &[u8]) -> Option<Vec<u8>>;
}

const MASK: char = '*';

/// `text` as a person reads it with every card number masked; None when it holds none.
pub fn mask_cards(text: &str) -> Option<String> {
    let seen = normalize(text);
    let cards = card_positions(&seen);
    if cards.is_empty() {
        return None;
    }
    let hidden: std::collections::BTreeSet<usize> =
        cards.iter().flat_map(|c| hidden_digits(c)).collect();
    Some(mask_at(&seen, |at, _| hidden.contains(&at)))
}

/// The stored form of a blocked message: as a person reads it, every digit masked but the
/// first and last four of a card number.
pub fn redact_blocked(text: &str) -> String {
    let seen = normalize(text);
    let shown: std::collections::BTreeSet<usize> = card_positions(&seen)
        .iter()
        .flat_map(|c| {
            let hidden: std::collections::BTreeSet<usize> = hidden_digits(c).collect();
            c.iter().copied().filter(move |p| !hidden.contains(p))
        })
        .collect();
    mask_at(&seen, |at, c| c.is_ascii_digit() && !shown.contains(&at))
}

/// The digits of a card (their positions) that are masked.
fn hidden_digits(card: &[usize]) -> impl Iterator<Item = usize> + '_ {
    let keep_first = if card.len() >= 16 { 4 } else { 0 };
    let keep_last = 4;
    card.iter()
        .enumerate()
        .filter(move |(i, _)| *i >= keep_first && *i + keep_last < card.len())
        .map(|(_, p)| *p)
}

fn mask_at(text: &str, hide: impl Fn(usize, char) -> bool) -> String {
    text.chars()
        .enumerate()
        .map(|(at, c)| if hide(at, c) { MASK } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_keeps_its_first_and_last_four_digits() {
        assert_eq!(
            mask_cards("card 4111 1111 1111 1111 thanks").as_deref(),
            Some("card 4111 **** **** 1111 thanks")
        );
        assert_eq!(
            mask_cards("4111\u{200b}1111-1111-1111").as_deref(),
            Some("4111****-****-1111")
        );
        // A 15-digit Amex: only the last four.
        assert_eq!(
            mask_cards("3782 822463 10005").as_deref(),
            Some("**** ****** *0005")
        );
        assert_eq!(mask_cards("order 1234, call +7 999 123 45 67"), None);
    }

    #[test]
    fn a_blocked_message_keeps_no_other_digit() {
        assert_eq!(
            redact_blocked("card ４１１１ 1111 1111 1111, cvv 123, exp 12/25"),
            "card 4111 **** **** 1111, cvv ***, exp **/**"
        );
        assert_eq!(redact_blocked("my pin is 0000"), "my pin is ****");
    }

    #[test]
    fn no_digit_of_a_disguised_card_survives_masking() {
        let card = "4111111111111111";
        for text in [
            "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
            "٤١١١ ١١١١ ١١١١ ١١١١",
            "4111.1111.1111.1111",
        ] {
            let masked = mask_cards(text).unwrap_or_default();
            let digits: String = masked.chars().filter(char::is_ascii_digit).collect();
            assert_eq!(digits, "41111111", "{text} -> {masked}");
            assert!(!masked.contains(card));
        }
    }
}
