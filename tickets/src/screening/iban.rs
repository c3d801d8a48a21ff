//! The IBAN detector (ISO 13616), for a bank whose policy keeps account identifiers out of chat:
//! two letters of a country, two check digits and up to 30 letters or digits, written whole or in
//! groups of four, whose ISO 7064 mod-97 checksum is 1. Optionally only for some countries.

/// True when a normalised text holds a valid IBAN (of one of `countries`, when not empty).
pub fn iban_in(normalized: &str, countries: &[String]) -> bool {
    let chars: Vec<char> = normalized.chars().map(|c| c.to_ascii_uppercase()).collect();
    (0..chars.len()).any(|start| {
        let glued = start
            .checked_sub(1)
            .is_some_and(|b| chars[b].is_ascii_alphanumeric());
        !glued && iban_at(&chars[start..], countries)
    })
}

/// Whether an IBAN starts at the first char of `chars`: the longest run of groups that checks.
fn iban_at(chars: &[char], countries: &[String]) -> bool {
    let [a, b, c, d, ..] = chars else {
        return false;
    };
    if !(a.is_ascii_uppercase()
        && b.is_ascii_uppercase()
        && c.is_ascii_digit()
        && d.is_ascii_digit())
    {
        return false;
    }
    let country: String = [*a, *b].iter().collect();
    if !countries.is_empty() && !countries.iter().any(|c| c.eq_ignore_ascii_case(&country)) {
        return false;
    }
    // Collect letters and digits, allowing one space between groups, up to 34 of them; check
    // every length a national format may have (15 to 34), so trailing words do not hide it.
    let mut text = Vec::new();
    let mut i = 0;
    while i < chars.len() && text.len() < 34 {
        let ch = chars[i];
        if ch.is_ascii_alphanumeric() {
            text.push(ch);
        } else if ch == ' ' && chars.get(i + 1).is_some_and(char::is_ascii_alphanumeric) {
            // A space inside an IBAN only between groups of four.
            if text.len() % 4 != 0 {
                break;
            }
        } else {
            break;
        }
        i += 1;
        if text.len() >= 15 {
            let next = chars.get(i).copied();
            let ends_here = next.is_none_or(|n| !n.is_ascii_alphanumeric());
            if ends_here && mod97(&text) == Some(1) {
                return true;
            }
        }
    }
    false
}

/// The ISO 7064 mod-97 remainder of an IBAN: the first four chars moved to the end, letters as
/// numbers 10 to 35.
fn mod97(iban: &[char]) -> Option<u32> {
    let (head, rest) = iban.split_at(4);
    let mut r: u32 = 0;
    for ch in rest.iter().chain(head) {
        let v = ch.to_digit(36)?;
        let shifted = if v < 10 { r * 10 + v } else { r * 100 + v };
        r = shifted % 97;
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ibans_are_found_in_any_grouping() {
        for t in [
            "DE89370400440532013000",
            "my iban is DE89 3704 0044 0532 0130 00, thanks",
            "gb82 west 1234 5698 7654 32",
            "FR1420041010050500013M02606",
        ] {
            assert!(iban_in(t, &[]), "{t}");
        }
    }

    #[test]
    fn wrong_checksums_and_other_codes_pass() {
        for t in [
            "DE89370400440532013001",
            "order AB12 3456 7890 1234 5",
            "ticket XY00-1234",
            "call me",
        ] {
            assert!(!iban_in(t, &[]), "{t}");
        }
    }

    #[test]
    fn countries_limit_the_detector() {
        let de = ["DE".to_string()];
        assert!(iban_in("DE89370400440532013000", &de));
        assert!(!iban_in("GB82WEST12345698765432", &de));
    }
}
