//! Bad input at the email edge: the MIME parse path (`email::parse`) over arbitrary bytes and over
//! structured but mangled mail (bad or missing boundaries, broken transfer encodings and charsets,
//! huge headers, deep nesting, invalid UTF-8, NULs). It never panics, is deterministic, and what
//! it yields is always storable: the message body is a valid `MessageBody` (not blank, no NUL, at
//! most `MAX_BODY_CHARS`), so the inbound consumer never drops a mail as poison, and every header
//! string is NUL-free and bounded (PostgreSQL text and btree limits).
//!
//! `make test` runs a few hundred cases (seconds); a longer hunt:
//! `PROPTEST_CASES=20000 cargo nextest run -p communication --test mime_fuzz`.

use communication::email::parse::{
    self, MAX_ADDRESS_CHARS, MAX_ID_CHARS, MAX_NAME_CHARS, MAX_REFERENCES, MAX_SUBJECT_CHARS,
    ParsedMail,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tickets::{MAX_BODY_CHARS, MessageBody};

fn config(default_cases: u32) -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default_cases),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Everything a parsed mail must satisfy, whatever the input.
fn check(raw: &[u8]) -> Result<(), TestCaseError> {
    let Some(m) = parse::parse(raw) else {
        return Ok(());
    };
    let body = m.message_body();
    prop_assert!(
        MessageBody::parse(body.clone()).is_ok(),
        "not a valid message body: {:?}",
        body
    );
    prop_assert!(!m.body.contains('\0'));
    prop_assert!(m.body.chars().count() <= MAX_BODY_CHARS);
    let ParsedMail {
        message_id,
        in_reply_to,
        references,
        from_address,
        from_name,
        subject,
        ..
    } = &m;
    prop_assert!(subject.chars().count() <= MAX_SUBJECT_CHARS && !subject.contains('\0'));
    // The name falls back to the address.
    prop_assert!(from_name.chars().count() <= MAX_NAME_CHARS.max(MAX_ADDRESS_CHARS));
    prop_assert!(!from_name.contains('\0'));
    if let Some(a) = from_address {
        prop_assert!(a.chars().count() <= MAX_ADDRESS_CHARS && !a.contains('\0'));
        prop_assert!(!a.is_empty() && !a.chars().any(char::is_whitespace));
    }
    prop_assert!(in_reply_to.len() <= MAX_REFERENCES && references.len() <= MAX_REFERENCES);
    for id in message_id.iter().chain(in_reply_to).chain(references) {
        // "long-" + 64 hex digits is what a longer id becomes.
        prop_assert!(!id.is_empty() && id.chars().count() <= MAX_ID_CHARS.max(69));
        prop_assert!(!id.contains('\0') && !id.chars().any(char::is_whitespace));
    }
    // Deterministic: a re-import maps onto the same message.
    let again = parse::parse(raw);
    prop_assert_eq!(
        again.as_ref().map(ParsedMail::external_id),
        Some(m.external_id())
    );
    Ok(())
}

fn nasty_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..60),
        "[ -~\u{e9}\u{44f}\u{1F600}]{0,60}".prop_map(String::into_bytes),
        Just(b"\0\0\0".to_vec()),
        Just(vec![0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1]),
        Just(b"=?UTF-8?B?!!!not-base64?=".to_vec()),
        Just(b"=?x-unknown?Q?=ZZ=?=".to_vec()),
        Just(b"=?UTF-8?B?AA==?=".to_vec()),
        Just("x".repeat(20_000).into_bytes()),
        Just(b"a\r\n b\r\n\tc".to_vec()),
    ]
}

fn header_name() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("From"),
        Just("Subject"),
        Just("Message-ID"),
        Just("In-Reply-To"),
        Just("References"),
        Just("Content-Type"),
        Just("Content-Transfer-Encoding"),
        Just("Content-Disposition"),
        Just("Date"),
        Just("X-Junk"),
    ]
}

fn content_type() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("text/plain; charset=utf-8".to_owned()),
        Just("text/plain; charset=koi8-r".to_owned()),
        Just("text/plain; charset=bogus-charset".to_owned()),
        Just("text/html; charset=utf-8".to_owned()),
        Just("application/octet-stream; name=\"a\0b.bin\"".to_owned()),
        Just("message/rfc822".to_owned()),
        Just("multipart/mixed".to_owned()),
        Just("multipart/mixed; boundary=\"\"".to_owned()),
        Just("multipart/alternative; boundary=b".to_owned()),
        "[ -~]{0,40}",
    ]
}

fn encoding() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("7bit"),
        Just("8bit"),
        Just("base64"),
        Just("quoted-printable"),
        Just("x-uuencode"),
        Just("binary"),
        Just("garbage"),
    ]
}

fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..400),
        "[ -~\n\u{44f}]{0,400}".prop_map(String::into_bytes),
        Just(b"=ZZ=\r\n=\r\n=4".to_vec()),
        Just(b"!!!!====AAAA\r\n@@@".to_vec()),
        Just("<html><body><p>hi<b>unclosed<script>x</script>&#0;&#xD800;&amp".into()),
        Just("\0".repeat(100).into_bytes()),
        Just("я".repeat(5000).into_bytes()),
        Just("> quoted\n".repeat(50).into_bytes()),
    ]
}

/// A MIME part: leaf or multipart, nested up to `depth`, with boundaries that may be wrong.
fn part(depth: u32) -> BoxedStrategy<Vec<u8>> {
    let leaf = (content_type(), encoding(), body_bytes())
        .prop_map(|(ct, enc, body)| {
            let mut out = format!("Content-Type: {ct}\r\nContent-Transfer-Encoding: {enc}\r\n\r\n")
                .into_bytes();
            out.extend(body);
            out
        })
        .boxed();
    if depth == 0 {
        return leaf;
    }
    let multi = (
        "[a-zA-Z0-9'()+_,./:=? -]{0,20}",
        proptest::collection::vec(part(depth - 1), 0..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(boundary, parts, close, lie)| {
            // `lie`: the parts are separated by another boundary than the one declared.
            let used = if lie {
                format!("{boundary}x")
            } else {
                boundary.clone()
            };
            let mut out = format!(
                "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\npreamble\r\n"
            )
            .into_bytes();
            for p in parts {
                out.extend(format!("--{used}\r\n").into_bytes());
                out.extend(p);
                out.extend(b"\r\n");
            }
            if close {
                out.extend(format!("--{used}--\r\n").into_bytes());
            }
            out
        })
        .boxed();
    prop_oneof![leaf.clone(), multi].boxed()
}

fn mangled_mail() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec((header_name(), nasty_line()), 0..12),
        part(3),
        any::<bool>(),
    )
        .prop_map(|(headers, body, lf_only)| {
            let mut out = Vec::new();
            for (name, value) in headers {
                out.extend(name.as_bytes());
                out.extend(b": ");
                out.extend(value);
                out.extend(b"\r\n");
            }
            out.extend(b"From: Ivan <ivan@example.com>\r\n");
            out.extend(body);
            if lf_only {
                out.retain(|&b| b != b'\r');
            }
            out
        })
}

#[test]
fn arbitrary_bytes_never_panic_and_yield_only_storable_mail() {
    let mut runner = TestRunner::new(config(300));
    let result = runner.run(&proptest::collection::vec(any::<u8>(), 0..2000), |raw| {
        check(&raw)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn mangled_mime_never_panics_and_yields_only_storable_mail() {
    let mut runner = TestRunner::new(config(300));
    if let Err(e) = runner.run(&mangled_mail(), |raw| check(&raw)) {
        panic!("{e}");
    }
}

#[test]
fn pathological_mails_are_cut_to_size_not_dropped() {
    // A text longer than a message may be: cut, and said so, rather than lost as poison.
    let long = format!(
        "From: ivan@example.com\r\nSubject: long\r\nMessage-ID: <long@example.com>\r\n\r\n{}\r\n",
        "word ".repeat(3000)
    );
    let m = parse::parse(long.as_bytes()).expect("a mail");
    assert!(m.body.chars().count() <= MAX_BODY_CHARS);
    assert!(
        m.body.ends_with("characters]"),
        "{}",
        &m.body[m.body.len() - 80..]
    );
    assert!(MessageBody::parse(m.message_body()).is_ok());

    // NULs in the text, subject and sender name are dropped; a huge header is bounded.
    let nul = format!(
        "From: \"Iv\0an\" <ivan@example.com>\r\nSubject: a\0b{}\r\nMessage-ID: <{}@x>\r\n\r\nhel\0lo\r\n",
        "s".repeat(100_000),
        "i".repeat(10_000)
    );
    let m = parse::parse(nul.as_bytes()).expect("a mail");
    assert_eq!(m.body, "hello");
    assert_eq!(m.from_name, "Iv an");
    assert!(m.subject.starts_with("a b") && m.subject.chars().count() == MAX_SUBJECT_CHARS);
    let id = m.message_id.expect("an id");
    assert!(id.starts_with("long-") && id.len() == 69, "{id}");

    // Deep nesting: a thousand multiparts inside each other.
    let mut deep = String::from("From: ivan@example.com\r\nSubject: deep\r\n");
    for i in 0..1000 {
        deep.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    deep.push_str("Content-Type: text/plain\r\n\r\ninnermost\r\n");
    check(deep.as_bytes()).expect("storable");
    let mut nested = String::from("From: ivan@example.com\r\nSubject: rfc822\r\n");
    for _ in 0..1000 {
        nested.push_str("Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n");
    }
    nested.push_str("\r\ninnermost\r\n");
    check(nested.as_bytes()).expect("storable");

    // Broken nesting that makes mail-parser 0.11.9 panic ("Invalid part ID, could not find
    // multipart"): the mail still arrives, with its sender and a note.
    let broken = b"From: Ivan <ivan@example.com>\r\nSubject: broken\r\n\
        Content-Type: multipart/mixed; boundary=\"a\"\r\n\r\npreamble\r\n--a\r\n\
        Content-Type: multipart/mixed; boundary=\"a\"\r\n\r\npreamble\r\n--a\r\n\
        Content-Type: multipart/mixed; boundary=\"0\"\r\n\r\npreamble\r\n--0\r\n\
        Content-Type: message/rfc822\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n\x0e\r\n--0\r\n\
        Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\n=ZZ=\r\n=\r\n=4\r\n--0\r\n\
        Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n\r\n\
        --0--\r\n\r\n\r\n";
    let m = parse::parse(broken).expect("a mail");
    assert_eq!(m.from_address.as_deref(), Some("ivan@example.com"));
    assert_eq!(m.subject, "broken");
    assert!(m.body.contains("could not be read"), "{}", m.body);
    check(broken).expect("storable");

    // A blank mail still becomes a message.
    let m = parse::parse(b"From: ivan@example.com\r\nSubject: \0\r\n\r\n \0 \r\n").expect("a mail");
    assert_eq!(m.message_body(), "(empty email)");
}
