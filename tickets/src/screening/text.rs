//! A message as a person reads it, for the detectors: formatting that changes how text is stored
//! but not what a reader sees is taken away, so a number cannot slip past a detector in disguise.
//! - Unicode NFKC: fullwidth, circled, superscript and mathematical digits become ASCII digits,
//!   no-break and thin spaces become spaces;
//! - invisible characters go (general category `Cf`: zero-width spaces and joiners, the soft
//!   hyphen, bidi controls, the byte-order mark), and so do combining marks (`Mn`, `Me`: a
//!   strike-through or keycap over a digit, variation selectors);
//! - a decimal digit of any script (Arabic-Indic, Devanagari, Thai, …) becomes its ASCII digit.
//!
//! The normalised text is only matched against; what is stored and shown is the message itself.

use dec_from_char::DecimalExtended;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::general_category::{GeneralCategory, UnicodeGeneralCategory};

/// `text` as a person sees it (see the module's doc).
pub fn normalize(text: &str) -> String {
    text.nfkc()
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
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disguised_digits_and_invisible_characters_read_as_a_person_reads_them() {
        for (disguised, seen) in [
            ("４１１１", "4111"),                         // fullwidth
            ("٤١١١", "4111"),                             // Arabic-Indic
            ("४१११", "4111"),                             // Devanagari
            ("4\u{200b}1\u{200d}1\u{ad}1", "4111"),       // zero-width space, joiner, soft hyphen
            ("4\u{2060}1\u{feff}11", "4111"),             // word joiner, byte-order mark
            ("4\u{336}1\u{336}1\u{336}1\u{336}", "4111"), // strike-through
            ("4\u{fe0f}\u{20e3}1", "41"),                 // keycap
            ("①②", "12"),                                 // circled
            ("4111\u{a0}1111", "4111 1111"),              // no-break space
            ("Привет, мир", "Привет, мир"),               // words stay words
        ] {
            assert_eq!(normalize(disguised), seen, "{disguised:?}");
        }
    }
}
