//! The payment-card detector. A card number is a whole number as a person writes it, not a
//! window inside a longer one: the text (normalised by [`super::text`]) is read as number tokens,
//! digit groups joined by short runs of separators (spaces, dashes, dots, underscores, line
//! breaks), and a token is a card when its digits are:
//! - 13 to 19 of them, with an issuer prefix of that length (13: Visa's `4`; 14:
//!   `30`/`36`/`38`, Diners; 15: `34`/`37`, Amex; 16-19: `2`-`6`, the banking and financial
//!   industries) and a valid Luhn checksum;
//! - or such a number followed by at most 4 more digits in a differently sized group (the expiry
//!   or the CVV written after it: `4111 1111 1111 1111 12/25`, `… 1111 123`).
//!
//! So a 20-digit account number, a grouped account number (`4081 7810 0999 1000 4312`), a
//! phone number (`+49 1512 3456789`), or digits glued to letters (a UUID, `INV20240611`) are not
//! cards, whatever their checksum.

use super::text::{MAX_SEPARATORS, is_separator};

/// True when `text` holds a payment card number (see the module's doc).
pub fn contains_card_number(text: &str) -> bool {
    card_in(&super::text::normalize(text))
}

/// [`contains_card_number`] of a text normalised already.
pub(crate) fn card_in(normalized: &str) -> bool {
    !card_positions(normalized).is_empty()
}

/// Each card number of a normalised text, as the char positions of its digits (the expiry or
/// CVV after it left out).
pub(crate) fn card_positions(normalized: &str) -> Vec<Vec<usize>> {
    let chars: Vec<char> = normalized.chars().collect();
    tokens(&chars)
        .iter()
        .filter_map(|groups| {
            let k = card_groups(groups)?;
            Some(groups[..k].iter().flatten().map(|(at, _)| *at).collect())
        })
        .collect()
}

/// A digit of a number token: its char position in the text and its value.
type Digit = (usize, u8);

/// The number tokens of `chars`, each as its digit groups. A group glued to a letter belongs to a
/// word and is left out; a token after a `+` is a phone number and is left out whole.
fn tokens(chars: &[char]) -> Vec<Vec<Vec<Digit>>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let before = i.checked_sub(1).map(|b| chars[b]);
        let mut groups = vec![Vec::new()];
        while i < chars.len() {
            let c = chars[i];
            if c.is_ascii_digit() {
                if let Some(g) = groups.last_mut() {
                    g.push((i, c as u8 - b'0'));
                }
                i += 1;
                continue;
            }
            let run = chars[i..].iter().take_while(|c| is_separator(**c)).count();
            if run > 0
                && run <= MAX_SEPARATORS
                && chars.get(i + run).is_some_and(char::is_ascii_digit)
            {
                groups.push(Vec::new());
                i += run;
                continue;
            }
            break;
        }
        let after = chars.get(i).copied();
        if before == Some('+') {
            continue;
        }
        if before.is_some_and(char::is_alphabetic) {
            groups.remove(0);
        }
        if after.is_some_and(char::is_alphabetic) {
            groups.pop();
        }
        if !groups.is_empty() {
            out.push(groups);
        }
    }
    out
}

/// How many leading groups of a number token are a card number, if any.
fn card_groups(groups: &[Vec<Digit>]) -> Option<usize> {
    let digits = |gs: &[Vec<Digit>]| -> Vec<u8> { gs.iter().flatten().map(|(_, d)| *d).collect() };
    if is_card_number(&digits(groups)) {
        return Some(groups.len());
    }
    // A card with its expiry or CVV after it: the trailer is short and grouped differently
    // (a uniformly grouped number is one number).
    let uniform = groups.windows(2).all(|w| w[0].len() == w[1].len());
    if uniform {
        return None;
    }
    (1..groups.len()).find(|&k| {
        let trailer: usize = groups[k..].iter().map(Vec::len).sum();
        trailer <= 4 && is_card_number(&digits(&groups[..k]))
    })
}

/// Every number token of a normalised text with at least `min` and at most `max` digits that is
/// one group, as the char positions of its digits (for the detectors that look at short codes).
pub(crate) fn short_numbers(chars: &[char], min: usize, max: usize) -> Vec<(usize, usize)> {
    tokens(chars)
        .iter()
        .filter(|groups| groups.len() == 1 && (min..=max).contains(&groups[0].len()))
        .filter_map(|groups| Some((groups[0].first()?.0, groups[0].last()?.0)))
        .collect()
}

fn is_card_number(digits: &[u8]) -> bool {
    let issuer = match (digits.len(), digits) {
        (13, [4, ..]) | (14, [3, 0 | 6 | 8, ..]) | (15, [3, 4 | 7, ..]) => true,
        (16..=19, [d, ..]) => (2..=6).contains(d),
        _ => false,
    };
    issuer && luhn_valid(digits)
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
    use proptest::prelude::*;

    /// A card number of `len` digits starting with `prefix`, completed with its Luhn digit.
    fn card(prefix: u8, len: usize, body: &[u8]) -> Vec<u8> {
        let mut d = vec![prefix];
        d.extend(body.iter().take(len - 2).map(|b| b % 10));
        let check = (0..10).find(|c| luhn_valid(&[d.as_slice(), &[*c]].concat()));
        d.push(check.unwrap_or(0));
        d
    }

    /// Digits in a script (0: ASCII, else the code point of that script's zero).
    fn in_script(d: u8, zero: u32) -> char {
        if zero == 0 {
            char::from(b'0' + d)
        } else {
            char::from_u32(zero + u32::from(d)).unwrap_or('?')
        }
    }

    const SCRIPTS: [u32; 6] = [0, 0xFF10, 0x0660, 0x06F0, 0x0966, 0x0E50];
    const SEPARATORS: [&str; 9] = [" ", "-", ".", "  ", " - ", "_", "\u{a0}", "\n", "\u{2009}"];
    const INVISIBLE: [&str; 6] = ["", "\u{200b}", "\u{200d}", "\u{ad}", "\u{2060}", "\u{feff}"];
    const LAYOUTS: [&[usize]; 4] = [&[4, 4, 4, 4], &[4, 6, 5], &[19], &[4, 4, 4, 4, 3]];

    fn disguise(digits: &[u8], groups: &[usize], sep: &str, zero: u32, hide: &str) -> String {
        let mut out = String::new();
        let mut at = 0;
        for (n, size) in groups.iter().enumerate() {
            if n > 0 {
                out.push_str(sep);
            }
            for d in digits.iter().skip(at).take(*size) {
                out.push(in_script(*d, zero));
                out.push_str(hide);
            }
            at += size;
        }
        for d in digits.iter().skip(at) {
            out.push(in_script(*d, zero));
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// However a person writes a card number (groups, separators, another script's digits,
        /// letters that look like digits, invisible characters between them, an expiry or CVV
        /// after it), it is found.
        #[test]
        fn a_card_number_in_any_disguise_is_found(
            issuer in prop::sample::select(vec![(4u8, 16usize), (5, 16), (2, 16), (6, 19), (4, 13)]),
            body in prop::collection::vec(any::<u8>(), 18),
            layout in 0..LAYOUTS.len(),
            sep in prop::sample::select(SEPARATORS.to_vec()),
            zero in prop::sample::select(SCRIPTS.to_vec()),
            hide in prop::sample::select(INVISIBLE.to_vec()),
            frame in prop::sample::select(vec!["{}", "my card is {} thanks", "{}, exp 12/25", "{} 123", "карта:{}"]),
            look_alikes in prop::sample::select(vec![None, Some(('O', 'l')), Some(('о', 'I')), Some(('ο', '|'))]),
        ) {
            let (prefix, len) = issuer;
            let digits = card(prefix, len, &body);
            let groups: Vec<usize> = match LAYOUTS[layout] {
                g if g.iter().sum::<usize>() == len => g.to_vec(),
                _ => vec![4; len / 4].into_iter().chain([len % 4].into_iter().filter(|r| *r > 0)).collect(),
            };
            let mut written = disguise(&digits, &groups, sep, zero, hide);
            if let Some((zero, one)) = look_alikes {
                written = written.replace('0', &zero.to_string()).replace('1', &one.to_string());
            }
            let text = frame.replace("{}", &written);
            prop_assert!(contains_card_number(&text), "missed: {:?}", text);
        }
    }

    /// Writes one sample of a kind of text, given a maker of random digit strings.
    type Maker = Box<dyn FnMut(&mut dyn FnMut(usize) -> String) -> String>;

    /// What clients of a bank write that is not a card, by kind: how often each is taken for one.
    fn false_positive_rates() -> Vec<(&'static str, f64)> {
        let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            // xorshift: a fixed corpus, the same on every run.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut digits = |k: usize| {
            (0..k)
                .map(|_| char::from(b'0' + next(10) as u8))
                .collect::<String>()
        };
        let kinds: Vec<(&str, Maker)> = vec![
            (
                "20-digit account",
                Box::new(|d| format!("my account 40817{}", d(15))),
            ),
            (
                "grouped account",
                Box::new(|d| {
                    let a = format!("40817{}", d(15));
                    format!(
                        "account {} {} {} {} {}",
                        &a[0..4],
                        &a[4..8],
                        &a[8..12],
                        &a[12..16],
                        &a[16..20]
                    )
                }),
            ),
            (
                "account 5-3-1-4-7",
                Box::new(|d| format!("счёт 40817 810 {} {} {}", d(1), d(4), d(7))),
            ),
            (
                "phone +7",
                Box::new(|d| format!("call +7 9{} {}-{}-{}", d(2), d(3), d(2), d(2))),
            ),
            (
                "phone +49",
                Box::new(|d| format!("+49 15{} {}", d(2), d(7))),
            ),
            (
                "phone 8-800",
                Box::new(|d| format!("8 800 {} {} {}", d(3), d(2), d(2))),
            ),
            (
                "amount",
                Box::new(|d| format!("{} {} {},{} RUB", d(1), d(3), d(3), d(2))),
            ),
            (
                "date and time",
                Box::new(|d| format!("on 2024-{}-{} at 1{}:{}", d(2), d(2), d(1), d(2))),
            ),
            (
                "uuid",
                Box::new(|d| {
                    format!(
                        "ref {}e{}-e{}b-4{}-a{}-{}",
                        d(3),
                        d(4),
                        d(2),
                        d(3),
                        d(3),
                        d(12)
                    )
                }),
            ),
            ("order id", Box::new(|d| format!("order ORD-2024-{}", d(8)))),
            // Words of look-alike letters beside numbers stay words.
            (
                "company and tax id",
                Box::new(|d| format!("ООО Ромашка ИНН 77{} КПП 77{}", d(8), d(7))),
            ),
            (
                "letters and numbers",
                Box::new(|d| format!("I lost 1 of {} I had, IO {} ok", d(4), d(9))),
            ),
            ("INN 12", Box::new(|d| format!("ИНН {}", d(12)))),
            ("OGRN", Box::new(|d| format!("ОГРН 1{}", d(12)))),
            // 3, then the registration year (2000-2029), then 12 digits.
            (
                "OGRNIP",
                Box::new(|d| format!("ОГРНИП 3{}{}", d(1).as_bytes()[0] % 3, d(13))),
            ),
            (
                "SNILS",
                Box::new(|d| format!("СНИЛС {}-{}-{} {}", d(3), d(3), d(3), d(2))),
            ),
            (
                "passport",
                Box::new(|d| format!("паспорт {} {} {}", d(2), d(2), d(6))),
            ),
            (
                "16-digit reference",
                Box::new(|d| format!("transfer 2024{}", d(12))),
            ),
        ];
        let mut out = Vec::new();
        for (kind, mut make) in kinds {
            let n = 2000;
            let hits = (0..n)
                .filter(|_| contains_card_number(&make(&mut digits)))
                .count();
            out.push((kind, hits as f64 / n as f64));
        }
        out
    }

    #[test]
    fn what_clients_write_that_is_not_a_card_is_rarely_taken_for_one() {
        let rates = false_positive_rates();
        for (kind, rate) in &rates {
            println!("false positives, {kind}: {:.2} %", rate * 100.0);
            if *kind == "16-digit reference" {
                // Sixteen digits with a card issuer's prefix: by its form it is a card number
                // (the Luhn check passes one in ten); the bank should not ask for it in chat.
                assert!(*rate < 0.15, "{kind}: {rate}");
            } else {
                assert_eq!(*rate, 0.0, "{kind} taken for a card");
            }
        }
    }

    #[test]
    fn known_layouts() {
        for card in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "5500-0000-0000-0004.",
            "3782 822463 10005",
            "4111 1111 1111 1111 12/25",
            "4111\n1111\n1111\n1111",
            "ref A1 4111 1111 1111 1111",
        ] {
            assert!(contains_card_number(card), "{card}");
        }
        for not_card in [
            "4111 1111 1111 1112",
            "40817810099910004312",
            "+4111111111111111",
            "550e8400-e29b-41d4-a716-446655440000",
            "INV4111111111111111",
            "1234567890123",
        ] {
            assert!(!contains_card_number(not_card), "{not_card}");
        }
    }
}
