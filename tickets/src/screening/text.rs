//! A message as a person reads it, for the detectors: formatting that changes how text is stored
//! but not what a reader sees is taken away, so a number cannot slip past a detector in disguise.
//! - Unicode NFKC: fullwidth, circled, superscript and mathematical digits become ASCII digits,
//!   no-break and thin spaces become spaces;
//! - invisible characters go (general category `Cf`: zero-width spaces and joiners, the soft
//!   hyphen, bidi controls, the byte-order mark), and so do combining marks (`Mn`, `Me`: a
//!   strike-through or keycap over a digit, variation selectors);
//! - a decimal digit of any script (Arabic-Indic, Devanagari, Thai, …) becomes its ASCII digit;
//! - a letter that looks like a digit (`O`/`o` and their Cyrillic and Greek twins as `0`;
//!   `l`, `I`, `|` and their twins as `1`) becomes that digit where it stands in a number: in a
//!   run of digits and such letters that holds a digit and is not glued to a word, or as a whole
//!   group of such letters between groups of that number (`4111 llll 1111 1111`). So `ООО`
//!   (a company's form) or `Hello` stay words, and `411l 1111 1111 1111` is a number.
//!
//! The normalised text is only matched against; what is stored and shown is the message itself.

use dec_from_char::DecimalExtended;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::general_category::{GeneralCategory, UnicodeGeneralCategory};

/// `text` as a person sees it (see the module's doc).
pub fn normalize(text: &str) -> String {
    let mut chars: Vec<char> = text
        .nfkc()
        .filter(|c| {
            !matches!(
                c.general_category(),
                GeneralCategory::Format
                    | GeneralCategory::NonspacingMark
                    | GeneralCategory::EnclosingMark
            )
        })
        .map(|c| {
            if c.is_ascii() {
                c
            } else {
                c.normalize_decimal().unwrap_or(c)
            }
        })
        .collect();
    digitise_look_alikes(&mut chars);
    chars.into_iter().collect()
}

/// The digit a letter is mistaken for, if it is one (see the module's doc).
fn look_alike(c: char) -> Option<char> {
    match c {
        'O' | 'o' | 'О' | 'о' | 'Ο' | 'ο' => Some('0'),
        'l' | 'I' | '|' | 'І' | 'і' | 'ӏ' | 'Ι' => Some('1'),
        _ => None,
    }
}

/// Longest run of separators between two digit groups of one number.
pub(crate) const MAX_SEPARATORS: usize = 3;

/// What may stand between two digit groups of one number.
pub(crate) fn is_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '-' | '.' | '_' | '\u{2010}'..='\u{2015}' | '\u{2212}')
}

/// Turns the look-alike letters of `chars` that stand in a number into digits.
fn digitise_look_alikes(chars: &mut [char]) {
    // Runs of digits and look-alikes, not glued to another letter: (start, end, holds a digit).
    let mut runs = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if !(c.is_ascii_digit() || look_alike(c).is_some()) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_digit() || look_alike(chars[i]).is_some()) {
            i += 1;
        }
        let glued = |at: Option<&char>| at.is_some_and(|c| c.is_alphabetic());
        let before = start.checked_sub(1).and_then(|b| chars.get(b));
        if glued(before) || glued(chars.get(i)) {
            continue;
        }
        let has_digit = chars[start..i].iter().any(char::is_ascii_digit);
        runs.push((start, i, has_digit));
    }
    // A run is a number's when it holds a digit, or when it is a group next to one that is.
    let mut numeric: Vec<bool> = runs.iter().map(|r| r.2).collect();
    let adjacent = |a: &(usize, usize, bool), b: &(usize, usize, bool)| {
        let gap = &chars[a.1..b.0];
        !gap.is_empty() && gap.len() <= MAX_SEPARATORS && gap.iter().all(|c| is_separator(*c))
    };
    loop {
        let mut grew = false;
        for k in 0..runs.len() {
            if numeric[k] {
                continue;
            }
            let left = k > 0 && numeric[k - 1] && adjacent(&runs[k - 1], &runs[k]);
            let right = k + 1 < runs.len() && numeric[k + 1] && adjacent(&runs[k], &runs[k + 1]);
            if left || right {
                numeric[k] = true;
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    for (run, _) in runs.iter().zip(&numeric).filter(|(_, n)| **n) {
        for c in &mut chars[run.0..run.1] {
            if let Some(d) = look_alike(*c) {
                *c = d;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disguised_digits_and_invisible_characters_read_as_a_person_reads_them() {
        for (disguised, seen) in [
            ("４１１１", "4111"),                           // fullwidth
            ("٤١١١", "4111"),                               // Arabic-Indic
            ("४१११", "4111"),                               // Devanagari
            ("4\u{200b}1\u{200d}1\u{ad}1", "4111"),         // zero-width space, joiner, soft hyphen
            ("4\u{2060}1\u{feff}11", "4111"),               // word joiner, byte-order mark
            ("4\u{336}1\u{336}1\u{336}1\u{336}", "4111"),   // strike-through
            ("4\u{fe0f}\u{20e3}1", "41"),                   // keycap
            ("①②", "12"),                                   // circled
            ("4111\u{a0}1111", "4111 1111"),                // no-break space
            ("Привет, мир", "Привет, мир"),                 // words stay words
            ("411l 1111 I111 1111", "4111 1111 1111 1111"), // look-alike letters in a number
            ("5500 OOOO оооо 0004", "5500 0000 0000 0004"), // whole groups of them, Cyrillic too
            ("4|11-1111", "4111-1111"),
            ("ООО Ромашка, Hello, lol", "ООО Ромашка, Hello, lol"), // words stay words
            ("Hello1 IO", "Hello1 IO"), // glued to a word, or no digit near
            ("room 1O", "room 10"),
        ] {
            assert_eq!(normalize(disguised), seen, "{disguised:?}");
        }
    }
}
