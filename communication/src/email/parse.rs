//! MIME → the text a manager reads: text/plain preferred, HTML-only mail turned into text,
//! attachments kept (name, declared type, bytes) for the object store, quoted reply history stripped where it can be
//! recognised. Also the identity of a mail: Message-ID plus a content hash.

use std::sync::LazyLock;

use mail_parser::{MessageParser, MimeHeaders};
use regex::Regex;
use sha2::{Digest, Sha256};
use tickets::MAX_BODY_CHARS;

/// What the email channel keeps of one inbound mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMail {
    /// Without angle brackets; `None` when the mail has none.
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    /// Oldest first, as in the header.
    pub references: Vec<String>,
    /// Lowercased sender address; never one with a `:` (only a quoted local part can hold
    /// one, and it would collide with the `email:unverified:` namespace of client ids).
    pub from_address: Option<String>,
    pub from_name: String,
    pub subject: String,
    /// The new text of the mail (quoted history stripped).
    pub body: String,
    /// Its attachments, in order: taken into the object store by the import (checked like any
    /// upload), or named in the body when refused.
    pub files: Vec<MailFile>,
    /// Hex SHA-256 of the mail's content (sender, subject, full text, attachments), independent of
    /// the transport headers a redelivery changes.
    pub content_hash: String,
}

/// An attachment of a mail.
#[derive(Clone, PartialEq, Eq)]
pub struct MailFile {
    /// Cleaned of control characters (the store cleans paths off it).
    pub name: String,
    /// As the part declares it.
    pub content_type: String,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for MailFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailFile")
            .field("name", &self.name)
            .field("content_type", &self.content_type)
            .field("bytes", &self.data.len())
            .finish()
    }
}

impl ParsedMail {
    /// The external id of the stored message: a hash of the Message-ID and the content hash, so a
    /// redelivered mail maps onto the same message while a reused Message-ID with other content
    /// is a new message.
    pub fn external_id(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.message_id.as_deref().unwrap_or_default().as_bytes());
        h.update([0]);
        h.update(self.content_hash.as_bytes());
        hex::encode(h.finalize())
    }

    /// Message-IDs this mail answers, most specific first: In-Reply-To, then References from the
    /// newest back.
    pub fn thread_candidates(&self) -> Vec<String> {
        let mut ids = self.in_reply_to.clone();
        ids.extend(self.references.iter().rev().cloned());
        let mut seen = std::collections::HashSet::new();
        ids.retain(|id| seen.insert(id.clone()));
        ids
    }

    /// The text of the client message this mail becomes: the body, or the subject when the body
    /// is blank, or a placeholder; always a valid message body (not blank, no NUL, not too long).
    pub fn message_body(&self) -> String {
        if !self.body.trim().is_empty() {
            self.body.clone()
        } else if !self.subject.trim().is_empty() {
            self.subject.clone()
        } else {
            "(empty email)".to_owned()
        }
    }

    /// The short ticket id of a `[#xxxxxxxx]` (or tagged `[#xxxxxxxx-tttttttt]`) reference in
    /// the subject, if any.
    pub fn subject_ticket_ref(&self) -> Option<String> {
        ticket_ref_in(&self.subject)
    }

    /// The subject's ticket reference as (short ticket id, tag); the tag is `None` when the
    /// reference has none (which never threads: see `reference.rs`).
    pub fn subject_ticket_ref_tagged(&self) -> Option<(String, Option<String>)> {
        tagged_ticket_ref_in(&self.subject)
    }
}

/// The part of a larger mail that is read (bytes): its beginning (headers, the text) still
/// arrives, with a note that the rest was not read.
pub const MAX_MAIL_BYTES: usize = 25 * 1024 * 1024;
/// Longest Message-ID kept as is (characters; a PostgreSQL btree entry must stay under ~2.7 kB).
/// A longer one is replaced by a hash of itself, so it still matches itself in References.
pub const MAX_ID_CHARS: usize = 500;
/// References kept (the newest).
pub const MAX_REFERENCES: usize = 100;
pub const MAX_SUBJECT_CHARS: usize = 1000;
pub const MAX_NAME_CHARS: usize = 200;
/// RFC 5321's limit for a path; a longer "address" is no address.
pub const MAX_ADDRESS_CHARS: usize = 254;

/// One line of header text: controls (NUL included: PostgreSQL text cannot hold it) become
/// spaces, runs of whitespace one space, at most `max` characters.
fn clean_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 4));
    for word in s
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    truncate_chars(&out, max).to_owned()
}

/// Text for a person: NUL and other control characters dropped except newlines and tabs.
fn clean_text(s: &str) -> String {
    s.chars()
        .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
        .collect()
}

fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A Message-ID as kept: no whitespace or controls; a very long one replaced by its hash.
fn clean_id(s: &str) -> Option<String> {
    let id: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect();
    if id.is_empty() {
        None
    } else if id.chars().count() > MAX_ID_CHARS {
        Some(format!(
            "long-{}",
            hex::encode(Sha256::digest(id.as_bytes()))
        ))
    } else {
        Some(id)
    }
}

/// `text` cut to at most `MAX_BODY_CHARS` characters, saying so at the end when it was cut.
fn fit_body(text: String) -> String {
    let chars = text.chars().count();
    if chars <= MAX_BODY_CHARS {
        return text;
    }
    let note = format!("\n[cut: the mail's text has {chars} characters]");
    let keep = MAX_BODY_CHARS.saturating_sub(note.chars().count());
    format!("{}{note}", truncate_chars(&text, keep))
}

/// `None` for input that is not a mail at all. Every string of the result is safe to store
/// (no NUL, bounded), and [`ParsedMail::message_body`] is always a valid message body.
pub fn parse(raw: &[u8]) -> Option<ParsedMail> {
    let cut = raw.len() > MAX_MAIL_BYTES;
    let raw = &raw[..raw.len().min(MAX_MAIL_BYTES)];
    // mail-parser 0.11 panics on some broken nestings (found by tests/mime_fuzz.rs: "Invalid part
    // ID, could not find multipart"). A panic here would end the import task and, the mail being
    // fetched again after a restart, stop the mailbox for good: keep what the headers say instead.
    match std::panic::catch_unwind(|| parse_mail(raw, cut)) {
        Ok(mail) => mail,
        Err(_) => {
            tracing::warn!(
                bytes = raw.len(),
                "email: the MIME parser failed on a mail; \
                keeping its headers and a note"
            );
            let head = header_block(raw);
            let mut mail = std::panic::catch_unwind(|| parse_mail(head, false))
                .ok()
                .flatten()?;
            mail.body = "[this mail's MIME structure is broken and could not be read; \
                         the original is in the mailbox]"
                .to_owned();
            // Two broken mails with the same headers are still two mails.
            mail.content_hash = hex::encode(Sha256::digest(raw));
            Some(mail)
        }
    }
}

/// The header section of a mail, up to and including the blank line after it.
fn header_block(raw: &[u8]) -> &[u8] {
    let crlf = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => &raw[..a.min(b)],
        (Some(a), None) | (None, Some(a)) => &raw[..a],
        (None, None) => raw,
    }
}

fn parse_mail(raw: &[u8], cut: bool) -> Option<ParsedMail> {
    let msg = MessageParser::default().parse(raw)?;
    let ids = |v: &mail_parser::HeaderValue<'_>| -> Vec<String> {
        let mut ids: Vec<String> = match v {
            mail_parser::HeaderValue::Text(t) => clean_id(t).into_iter().collect(),
            mail_parser::HeaderValue::TextList(l) => l.iter().filter_map(|t| clean_id(t)).collect(),
            _ => Vec::new(),
        };
        // The newest (last) references matter for threading.
        if ids.len() > MAX_REFERENCES {
            ids.drain(..ids.len() - MAX_REFERENCES);
        }
        ids
    };
    let from = msg.from().and_then(|a| a.first());
    let from_address = from
        .and_then(|a| a.address.as_deref())
        .map(|a| a.trim().to_lowercase())
        .filter(|a| {
            !a.is_empty()
                && a.chars().count() <= MAX_ADDRESS_CHARS
                && !a
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == ':')
        });
    let from_name = from
        .and_then(|a| a.name.as_deref())
        .map(|n| clean_line(n, MAX_NAME_CHARS))
        .filter(|n| !n.is_empty())
        .or_else(|| from_address.clone())
        .unwrap_or_default();
    let subject = clean_line(msg.subject().unwrap_or_default(), MAX_SUBJECT_CHARS);

    // text_body lists the text/plain part of each alternative, or the HTML one where a mail has
    // no text/plain; body_text turns such HTML into text.
    let full_text = (0..msg.text_body_count())
        .filter_map(|i| msg.body_text(i))
        .map(|t| t.replace("\r\n", "\n"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut attachments = Vec::new();
    let mut hash = Sha256::new();
    for part in msg.attachments() {
        let ctype = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_owned(),
            })
            .unwrap_or_else(|| "application/octet-stream".into());
        let ctype = clean_line(&ctype, MAX_NAME_CHARS);
        let name = part
            .attachment_name()
            .or_else(|| part.message().and_then(|m| m.subject()))
            .map(|n| clean_line(n, MAX_NAME_CHARS))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "attachment".into());
        let contents = part.contents();
        hash.update(Sha256::digest(contents));
        attachments.push(MailFile {
            name,
            content_type: ctype,
            data: contents.to_vec(),
        });
    }
    for field in [
        from_address.as_deref().unwrap_or_default(),
        &subject,
        &full_text,
    ] {
        hash.update(field.as_bytes());
        hash.update([0]);
    }
    if msg.message_id().is_none() {
        // Without a Message-ID the date tells two mails with the same text apart.
        hash.update(msg.header_raw("Date").unwrap_or_default().as_bytes());
    }
    let mut body = strip_quoted(&clean_text(&full_text));
    if cut {
        body.push_str(&format!(
            "\n[the mail is larger than {} MB; only its beginning was read]",
            MAX_MAIL_BYTES / (1024 * 1024)
        ));
    }
    Some(ParsedMail {
        message_id: msg.message_id().and_then(clean_id),
        in_reply_to: ids(msg.in_reply_to()),
        references: ids(msg.references()),
        from_address,
        from_name,
        subject,
        body: fit_body(body),
        files: attachments,
        content_hash: hex::encode(hash.finalize()),
    })
}

static ATTRIBUTION: LazyLock<Regex> = LazyLock::new(|| {
    // "On Mon, 3 Jun 2024 at 10:00, Bank <support@bank>" ... "wrote:" (Gmail, Apple Mail,
    // Thunderbird), also in German, French and Russian clients.
    Regex::new(r"(?is)^(on|am|le)\s.{0,300}\s(wrote|schrieb|a écrit)\s*:$|^.{0,300}\sпишет\s*:$")
        .expect("a valid regex")
});
static ORIGINAL_MESSAGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^-{2,}\s*(original message|forwarded message|исходное сообщение)\s*-{2,}$")
        .expect("a valid regex")
});
static TICKET_REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\[#([0-9a-fA-F]{8})(?:-([0-9a-fA-F]{1,16}))?\]").expect("a valid regex")
});

/// The short ticket id of a `[#xxxxxxxx]` or `[#xxxxxxxx-tag]` reference in `subject`.
pub fn ticket_ref_in(subject: &str) -> Option<String> {
    tagged_ticket_ref_in(subject).map(|(short, _)| short)
}

/// The first ticket reference in `subject` as (short ticket id, tag if any), lowercased.
pub fn tagged_ticket_ref_in(subject: &str) -> Option<(String, Option<String>)> {
    TICKET_REF.captures(subject).map(|c| {
        (
            c[1].to_ascii_lowercase(),
            c.get(2).map(|t| t.as_str().to_ascii_lowercase()),
        )
    })
}

/// `subject` without its ticket references (tagged or not).
pub fn without_ticket_refs(subject: &str) -> String {
    TICKET_REF.replace_all(subject, "").trim().to_owned()
}

/// The new text of a reply: everything from the first attribution line ("On … wrote:", which
/// mail clients may wrap over two lines) or "-----Original Message-----" on is cut, lines quoted
/// with ">" are dropped, and surrounding blank lines are trimmed.
pub fn strip_quoted(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut kept: Vec<&str> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if ORIGINAL_MESSAGE.is_match(t) || ATTRIBUTION.is_match(t) {
            break;
        }
        if let Some(next) = lines.get(i + 1) {
            let joined = format!("{t} {}", next.trim());
            if t.len() > 3 && ATTRIBUTION.is_match(&joined) && !ATTRIBUTION.is_match(t) {
                break;
            }
        }
        if t.starts_with('>') {
            continue;
        }
        kept.push(line.trim_end());
    }
    while kept.last().is_some_and(|l| l.is_empty()) {
        kept.pop();
    }
    let start = kept.iter().take_while(|l| l.is_empty()).count();
    let stripped = kept[start..].join("\n");
    if stripped.is_empty() {
        // A mail that is nothing but a quote: keep it rather than lose it.
        text.trim().to_owned()
    } else {
        stripped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crlf(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    #[test]
    fn text_plain_is_preferred_over_its_html_alternative() {
        let raw = crlf(
            "From: Ivan <ivan@example.com>\nTo: bank@inbox.local\nSubject: hi\n\
             Message-ID: <a1@example.com>\nMIME-Version: 1.0\n\
             Content-Type: multipart/alternative; boundary=\"b\"\n\n\
             --b\nContent-Type: text/plain; charset=utf-8\n\nplain version\n\
             --b\nContent-Type: text/html; charset=utf-8\n\n<p>html <b>version</b></p>\n--b--\n",
        );
        let m = parse(&raw).expect("a mail");
        assert_eq!(m.body, "plain version");
        assert_eq!(m.message_id.as_deref(), Some("a1@example.com"));
        assert_eq!(m.from_address.as_deref(), Some("ivan@example.com"));
        assert_eq!(m.from_name, "Ivan");
    }

    #[test]
    fn an_html_only_mail_becomes_text() {
        let raw = crlf(
            "From: IVAN@Example.COM\nSubject: =?UTF-8?B?0J/RgNC40LLQtdGC?=\n\
             Content-Type: text/html; charset=utf-8\n\n\
             <html><body><p>Привет, <b>банк</b>!</p><p>Second&nbsp;line</p></body></html>\n",
        );
        let m = parse(&raw).expect("a mail");
        assert!(m.body.contains("Привет, банк!"), "{:?}", m.body);
        assert!(m.body.contains("Second"), "{:?}", m.body);
        assert!(!m.body.contains('<'), "{:?}", m.body);
        assert_eq!(m.subject, "Привет");
        assert_eq!(m.from_address.as_deref(), Some("ivan@example.com"));
    }

    #[test]
    fn attachments_are_kept_with_their_name_type_and_bytes() {
        let raw = crlf(
            "From: ivan@example.com\nSubject: statement\nMIME-Version: 1.0\n\
             Content-Type: multipart/mixed; boundary=\"m\"\n\n\
             --m\nContent-Type: text/plain; charset=utf-8\n\nsee attached\n\
             --m\nContent-Type: application/pdf; name=\"statement.pdf\"\n\
             Content-Disposition: attachment; filename=\"statement.pdf\"\n\
             Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--m--\n",
        );
        let m = parse(&raw).expect("a mail");
        assert_eq!(m.body, "see attached");
        assert_eq!(
            m.files,
            [MailFile {
                name: "statement.pdf".into(),
                content_type: "application/pdf".into(),
                data: b"%PDF-1.4\n".to_vec(),
            }]
        );
    }

    #[test]
    fn quoted_history_is_stripped_in_its_common_forms() {
        let gmail = "Thanks, that worked.\n\nOn Mon, 3 Jun 2024 at 10:00, Bank Support\n<support@bank.test> wrote:\n> Let me check\n> ok";
        assert_eq!(strip_quoted(gmail), "Thanks, that worked.");
        let one_line = "Still broken\r\nOn 03.06.2024 Bank wrote:\r\n> hi";
        assert_eq!(
            strip_quoted(&one_line.replace("\r\n", "\n")),
            "Still broken"
        );
        let outlook =
            "See below\n\n-----Original Message-----\nFrom: Bank\nSent: Monday\n\nLet me check";
        assert_eq!(strip_quoted(outlook), "See below");
        let interleaved = "> question one?\nanswer one\n> question two?\nanswer two";
        assert_eq!(strip_quoted(interleaved), "answer one\nanswer two");
        let only_quote = "> just a quote";
        assert_eq!(strip_quoted(only_quote), "> just a quote");
        let russian = "Спасибо\n\n3 июня 2024 г., 10:00 пользователь Банк пишет:\n> текст";
        assert_eq!(strip_quoted(russian), "Спасибо");
    }

    #[test]
    fn a_reused_message_id_with_other_content_is_another_message() {
        let mail = |body: &str, received: &str| {
            crlf(&format!(
                "Received: {received}\nFrom: ivan@example.com\nSubject: s\n\
                 Message-ID: <same@example.com>\n\n{body}\n"
            ))
        };
        let a = parse(&mail("first", "by mx1")).expect("a mail");
        let redelivered = parse(&mail("first", "by mx2")).expect("a mail");
        let b = parse(&mail("second", "by mx1")).expect("a mail");
        assert_eq!(a.external_id(), redelivered.external_id());
        assert_ne!(a.external_id(), b.external_id());
    }

    #[test]
    fn no_sender_address_holds_a_colon() {
        for from in [
            "\"unverified:ivan\"@example.com",
            "<unverified:ivan@example.com>",
            "unverified:ivan@example.com",
            "Ivan <\"a:b\"@example.com>",
        ] {
            let raw = crlf(&format!("From: {from}\nSubject: s\n\nhi\n"));
            let m = parse(&raw).expect("a mail");
            assert!(
                !m.from_address.as_deref().unwrap_or_default().contains(':'),
                "{from}: {:?}",
                m.from_address
            );
        }
    }

    #[test]
    fn thread_candidates_prefer_in_reply_to_then_the_newest_reference() {
        let raw = crlf(
            "From: ivan@example.com\nSubject: Re: help [#0a1b2c3d]\n\
             In-Reply-To: <r2@bank>\nReferences: <r0@bank> <r1@bank>\n <r2@bank>\n\nok\n",
        );
        let m = parse(&raw).expect("a mail");
        assert_eq!(m.thread_candidates(), ["r2@bank", "r1@bank", "r0@bank"]);
        assert_eq!(m.subject_ticket_ref().as_deref(), Some("0a1b2c3d"));
    }
}
