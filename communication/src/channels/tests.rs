use std::collections::HashMap;
use std::time::Duration;

use platform::yaml::FileError;

use super::*;
use crate::delivery::RetryPolicy;
use crate::email::TlsMode;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn parse(text: &str, vars: &[(&str, &str)]) -> Result<Channels, ChannelsError> {
    Channels::resolve(Some(("channels.yaml", text)), &env(vars))
}

/// (line, column, message) of an error in the file.
fn at(r: Result<Channels, ChannelsError>) -> (usize, usize, String) {
    match r {
        Err(ChannelsError::File(FileError::At {
            file,
            line,
            column,
            message,
        })) => {
            assert_eq!(file, "channels.yaml");
            (line, column, message)
        }
        other => panic!("expected a located error, got {other:?}"),
    }
}

const SECRETS: &[(&str, &str)] = &[
    ("INBOX_TELEGRAM_TOKEN", "42:abc"),
    ("INBOX_TELEGRAM_WEBHOOK_SECRET", "s3cret_-X"),
    ("INBOX_IMAP_PASSWORD", "pw"),
    ("INBOX_EMAIL_REF_SECRET", "dev-ref-secret-0123456789"),
];

#[test]
fn the_committed_channel_files_are_valid() -> Result<(), ChannelsError> {
    let root = platform::workspace_root();
    let default = Channels::load_file(&root.join("channels.yaml"), &env(&[]))?;
    assert!(default.web && default.telegram.is_none());
    assert!(default.email.imap.is_none() && default.email.smtp.is_none());
    let local = Channels::load_file(&root.join("config/channels.local.yaml"), &env(SECRETS))?;
    assert!(local.telegram.is_some() && local.email.imap.is_some() && local.email.smtp.is_some());
    Ok(())
}

#[test]
fn a_secret_in_the_file_is_an_error_naming_the_variable_to_use() {
    let (line, column, m) = at(parse(
        "telegram:\n  enabled: true\n  token: \"42:abc\"\n",
        SECRETS,
    ));
    assert_eq!((line, column), (3, 10), "{m}");
    assert!(
        m.starts_with("telegram.token: ") && m.contains("INBOX_TELEGRAM_TOKEN"),
        "{m}"
    );
    let (line, _, m) = at(parse(
        "email:\n  enabled: true\n  imap:\n    addr: a:1\n    user: u\n    password: pw\n",
        SECRETS,
    ));
    assert_eq!(line, 6, "{m}");
    assert!(
        m.contains("email.imap.password") && m.contains("INBOX_IMAP_PASSWORD"),
        "{m}"
    );
    // Even where the key would be unknown anyway, the message says why.
    let (line, _, m) = at(parse("web:\n  api_key: x\n", &[]));
    assert_eq!(line, 2, "{m}");
    assert!(m.contains("secrets are not allowed"), "{m}");
}

#[test]
fn an_unknown_key_is_reported_with_its_path_line_and_column() {
    let (line, column, m) = at(parse(
        "telegram:\n  enabled: false\n  mode: polling\n  pollling: {}\n",
        &[],
    ));
    assert_eq!((line, column), (4, 3), "{m}");
    assert!(
        m.contains("telegram") && m.contains("unknown field `pollling`"),
        "{m}"
    );
}

#[test]
fn a_bad_value_is_reported_with_its_path_line_and_column() {
    let (line, _, m) = at(parse("telegram:\n  mode: push\n", &[]));
    assert_eq!(line, 2, "{m}");
    assert!(m.contains("telegram.mode") && m.contains("polling"), "{m}");
    let (line, column, m) = at(parse(
        "telegram:\n  enabled: true\n  api_url: not a url\n",
        SECRETS,
    ));
    assert_eq!((line, column), (3, 12), "{m}");
    assert!(m.starts_with("telegram.api_url: not a URL"), "{m}");
    let (line, _, m) = at(parse(
        "email:\n  enabled: true\n  smtp:\n    addr: a:25\n    from: nobody\n",
        SECRETS,
    ));
    assert_eq!(line, 5, "{m}");
    assert!(m.starts_with("email.smtp.from: not a mail address"), "{m}");
    let (line, _, m) = at(parse(
        "telegram:\n  polling:\n    timeout_secs: soon\n",
        &[],
    ));
    assert_eq!(line, 3, "{m}");
    assert!(m.contains("telegram.polling.timeout_secs"), "{m}");
    let (line, _, m) = at(parse("web: [\n", &[]));
    assert!(line >= 1 && !m.is_empty());
}

#[test]
fn a_channel_switched_on_without_its_secret_names_the_switch_and_the_variable() {
    let (line, column, m) = at(parse(
        "web:\n  enabled: true\ntelegram:\n  enabled: true\n",
        &[],
    ));
    assert_eq!((line, column), (4, 12), "{m}");
    assert!(m.contains("INBOX_TELEGRAM_TOKEN"), "{m}");
    let (line, _, m) = at(parse(
        "telegram:\n  enabled: true\n  mode: webhook\n",
        &[("INBOX_TELEGRAM_TOKEN", "1:a")],
    ));
    assert_eq!(line, 3, "{m}");
    assert!(m.contains("INBOX_TELEGRAM_WEBHOOK_SECRET"), "{m}");
    let (line, _, m) = at(parse("email:\n  enabled: true\n", &[]));
    assert_eq!(line, 2, "{m}");
}

#[test]
fn the_file_decides_and_the_environment_overrides_key_by_key() -> Result<(), ChannelsError> {
    let file = "web:\n  enabled: false\ntelegram:\n  enabled: true\n  mode: webhook\n  \
                api_url: http://127.0.0.1:1\n  webhook:\n    path: /v1/telegram/hook\n\
                email:\n  enabled: true\n  imap:\n    addr: 127.0.0.1:143\n    user: support\n";
    let c = parse(file, SECRETS)?;
    assert!(!c.web);
    let tg = c.telegram.as_ref().expect("telegram on");
    assert_eq!(tg.api_url.as_str(), "http://127.0.0.1:1/");
    let hook = tg.webhook.as_ref().expect("webhook mode");
    assert_eq!(
        (hook.path.as_str(), hook.secret.as_str()),
        ("/v1/telegram/hook", "s3cret_-X")
    );
    let imap = c.email.imap.as_ref().expect("imap on");
    assert_eq!(
        (imap.addr.as_str(), imap.password.as_str()),
        ("127.0.0.1:143", "pw")
    );
    assert!(c.email.smtp.is_none());

    let c = parse(
        file,
        &[
            SECRETS,
            &[
                ("INBOX_WEB_ENABLED", "true"),
                ("INBOX_TELEGRAM_MODE", "polling"),
                ("INBOX_TELEGRAM_API_URL", "http://127.0.0.1:2"),
                ("INBOX_IMAP_ADDR", "127.0.0.1:993"),
                ("INBOX_EMAIL_ENABLED", "false"),
            ],
        ]
        .concat(),
    )?;
    assert!(c.web);
    let tg = c.telegram.as_ref().expect("telegram on");
    assert!(tg.webhook.is_none());
    assert_eq!(tg.api_url.as_str(), "http://127.0.0.1:2/");
    assert!(c.email.imap.is_none(), "INBOX_EMAIL_ENABLED=false wins");

    // A bad override names the variable.
    let err = parse(
        file,
        &[SECRETS, &[("INBOX_TELEGRAM_MODE", "push")]].concat(),
    )
    .expect_err("a bad mode");
    assert!(err.to_string().contains("INBOX_TELEGRAM_MODE"), "{err}");
    Ok(())
}

#[test]
fn with_a_file_a_secret_alone_never_switches_a_channel_on_but_without_one_it_does()
-> Result<(), ChannelsError> {
    let c = parse("telegram:\n  enabled: false\n", SECRETS)?;
    assert!(c.telegram.is_none());
    let c = Channels::resolve(
        None,
        &env(&[
            ("INBOX_TELEGRAM_TOKEN", "1:a"),
            ("INBOX_SMTP_ADDR", "a:25"),
            ("INBOX_MAIL_FROM", "s@bank.test"),
            ("INBOX_EMAIL_REF_SECRET", "dev-ref-secret-0123456789"),
        ]),
    )?;
    assert!(c.web && c.telegram.is_some() && c.email.smtp.is_some() && c.email.imap.is_none());
    Ok(())
}

#[test]
fn email_tls_ca_file_and_smtp_retries_come_from_the_file_and_the_environment()
-> Result<(), ChannelsError> {
    let ca = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/test-ca.pem")
        .display()
        .to_string();
    let file = format!(
        "email:\n  enabled: true\n  imap:\n    addr: imap.example.com:993\n    tls: implicit\n\
         \x20   ca_file: {ca}\n    user: support\n  smtp:\n    addr: smtp.example.com:587\n\
         \x20   tls: starttls\n    from: support@bank.test\n    retry:\n      attempts: 3\n\
         \x20     backoff_ms: 50\n"
    );
    let c = parse(&file, SECRETS)?;
    let imap = c.email.imap.as_ref().expect("imap on");
    assert_eq!(imap.tls.mode, TlsMode::Implicit);
    assert_eq!(imap.tls.ca_file.as_deref(), Some(std::path::Path::new(&ca)));
    let smtp = c.email.smtp.as_ref().expect("smtp on");
    assert_eq!(
        (smtp.tls.mode, smtp.tls.ca_file.as_ref()),
        (TlsMode::Starttls, None)
    );
    assert_eq!(
        smtp.retry,
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: RetryPolicy::default().max_backoff,
        }
    );
    let c = parse(
        &file,
        &[
            SECRETS,
            &[
                ("INBOX_SMTP_TLS", "implicit"),
                ("INBOX_SMTP_RETRY_ATTEMPTS", "1"),
            ],
        ]
        .concat(),
    )?;
    let smtp = c.email.smtp.as_ref().expect("smtp on");
    assert_eq!(
        (smtp.tls.mode, smtp.retry.max_attempts),
        (TlsMode::Implicit, 1)
    );

    let (line, _, m) = at(parse(&file.replace("tls: starttls", "tls: ssl"), SECRETS));
    assert_eq!(line, 10, "{m}");
    assert!(
        m.starts_with("email.smtp.tls: ") && m.contains("starttls"),
        "{m}"
    );
    let (line, _, m) = at(parse(&file.replace(&ca, "/nonexistent/ca.pem"), SECRETS));
    assert_eq!(line, 6, "{m}");
    assert!(
        m.contains("email.imap.ca_file") && m.contains("/nonexistent/ca.pem"),
        "{m}"
    );
    let (line, _, m) = at(parse(&file.replace("attempts: 3", "attempts: 0"), SECRETS));
    assert_eq!(line, 13, "{m}");
    assert!(m.contains("email.smtp.retry.attempts"), "{m}");
    Ok(())
}

#[test]
fn email_is_refused_without_a_strong_enough_reference_secret() {
    let file = "email:\n  enabled: true\n  smtp:\n    addr: a:25\n    from: s@bank.test\n";
    let (line, _, m) = at(parse(file, &[]));
    assert_eq!(line, 2, "{m}");
    assert!(m.contains("INBOX_EMAIL_REF_SECRET"), "{m}");
    let err = parse(file, &[("INBOX_EMAIL_REF_SECRET", "short")]).expect_err("too short");
    assert!(err.to_string().contains("INBOX_EMAIL_REF_SECRET"), "{err}");
    let (line, _, m) = at(parse(
        "email:\n  enabled: false\n  ref_secret: x\n",
        SECRETS,
    ));
    assert_eq!(line, 3, "{m}");
    assert!(m.contains("INBOX_EMAIL_REF_SECRET"), "{m}");
}

#[test]
fn imap_size_limit_card_mail_policy_and_quarantine_folder_come_from_the_file_and_the_environment()
-> Result<(), ChannelsError> {
    use crate::email::{CardMailPolicy, DEFAULT_MAX_MAIL_BYTES};
    let base = "email:\n  enabled: true\n  imap:\n    addr: 127.0.0.1:143\n    user: support\n";
    let imap = |c: &Channels| c.email.imap.clone().expect("imap on");
    let c = imap(&parse(base, SECRETS)?);
    assert_eq!(
        (c.max_mail_bytes, c.card_mail, c.quarantine.as_str()),
        (
            DEFAULT_MAX_MAIL_BYTES,
            CardMailPolicy::Quarantine,
            "Quarantine"
        )
    );
    assert_eq!(DEFAULT_MAX_MAIL_BYTES, 26_214_400);

    let file = format!(
        "{base}    max_mail_bytes: 65536\n    card_mail: expunge\n    quarantine: INBOX.Held\n"
    );
    let c = imap(&parse(&file, SECRETS)?);
    assert_eq!(
        (c.max_mail_bytes, c.card_mail, c.quarantine.as_str()),
        (65_536, CardMailPolicy::Expunge, "INBOX.Held")
    );
    let c = imap(&parse(
        &file,
        &[
            SECRETS,
            &[
                ("INBOX_IMAP_MAX_MAIL_BYTES", "2048"),
                ("INBOX_IMAP_CARD_MAIL", "keep"),
                ("INBOX_IMAP_QUARANTINE", "Card mail"),
            ],
        ]
        .concat(),
    )?);
    assert_eq!(
        (c.max_mail_bytes, c.card_mail, c.quarantine.as_str()),
        (2048, CardMailPolicy::Keep, "Card mail")
    );

    // Bad values in the file: located at their key.
    let (line, column, m) = at(parse(&file.replace("expunge", "shred"), SECRETS));
    assert_eq!((line, column), (7, 16), "{m}");
    assert!(
        m.starts_with("email.imap.card_mail: ") && m.contains("quarantine, expunge or keep"),
        "{m}"
    );
    let (line, _, m) = at(parse(&file.replace("65536", "0"), SECRETS));
    assert_eq!(line, 6, "{m}");
    assert!(
        m.starts_with("email.imap.max_mail_bytes: expected 1024 to "),
        "{m}"
    );
    let (line, _, m) = at(parse(&file.replace("65536", "big"), SECRETS));
    assert_eq!(line, 6, "{m}");
    assert!(m.contains("email.imap.max_mail_bytes"), "{m}");
    let (line, _, m) = at(parse(&file.replace("INBOX.Held", "inbox"), SECRETS));
    assert_eq!(line, 8, "{m}");
    assert!(
        m.starts_with("email.imap.quarantine: must differ from email.imap.mailbox"),
        "{m}"
    );
    let (line, _, m) = at(parse(&file.replace("INBOX.Held", "Карантин"), SECRETS));
    assert_eq!(line, 8, "{m}");
    assert!(m.contains("printable ASCII"), "{m}");

    // Bad values in the environment: named by their variable.
    for (var, value) in [
        ("INBOX_IMAP_CARD_MAIL", "delete"),
        ("INBOX_IMAP_MAX_MAIL_BYTES", "-1"),
        ("INBOX_IMAP_MAX_MAIL_BYTES", "999999999999"),
    ] {
        let err = parse(&file, &[SECRETS, &[(var, value)]].concat()).expect_err(value);
        assert!(err.to_string().contains(var), "{var}={value}: {err}");
    }
    Ok(())
}

#[test]
fn email_auth_policy_dmarc_rule_trusted_mx_and_resolver_come_from_the_file_and_the_environment()
-> Result<(), ChannelsError> {
    use crate::email::{AuthPolicy, AuthSettings, DnsServer, WithoutDmarc};
    let base = "email:\n  enabled: true\n  imap:\n    addr: 127.0.0.1:143\n    user: support\n";
    let auth = |c: &Channels| c.email.imap.clone().expect("imap on").auth;
    // Defaults: unauthenticated mail kept apart, plain mail of domains without DMARC accepted,
    // no SPF (no trusted MX), the system's resolver.
    assert_eq!(auth(&parse(base, SECRETS)?), AuthSettings::default());
    assert_eq!(AuthSettings::default().policy, AuthPolicy::Separate);

    let file = format!(
        "{base}  auth:\n    policy: quarantine\n    without_dmarc: policy\n\
         \x20   trusted_received_by: MX.Bank.example.\n    dns: 127.0.0.1:5353\n"
    );
    assert_eq!(
        auth(&parse(&file, SECRETS)?),
        AuthSettings {
            policy: AuthPolicy::Quarantine,
            without_dmarc: WithoutDmarc::Policy,
            trusted_received_by: Some("mx.bank.example".into()),
            dns: DnsServer::At("127.0.0.1:5353".parse().expect("addr")),
        }
    );
    let c = auth(&parse(
        &file,
        &[
            SECRETS,
            &[
                ("INBOX_EMAIL_AUTH_POLICY", "accept"),
                ("INBOX_EMAIL_AUTH_WITHOUT_DMARC", "accept"),
                ("INBOX_EMAIL_AUTH_TRUSTED_RECEIVED_BY", "mx2.bank.example"),
                ("INBOX_EMAIL_AUTH_DNS", "system"),
            ],
        ]
        .concat(),
    )?);
    assert_eq!(
        (
            c.policy,
            c.without_dmarc,
            c.trusted_received_by.as_deref(),
            c.dns
        ),
        (
            AuthPolicy::Accept,
            WithoutDmarc::Accept,
            Some("mx2.bank.example"),
            DnsServer::System
        )
    );

    // Bad values in the file: located at their key.
    let (line, column, m) = at(parse(&file.replace("quarantine", "reject"), SECRETS));
    assert_eq!((line, column), (7, 13), "{m}");
    assert!(
        m.starts_with("email.auth.policy: ") && m.contains("separate, quarantine or accept"),
        "{m}"
    );
    let (line, _, m) = at(parse(
        &file.replace("without_dmarc: policy", "without_dmarc: x"),
        SECRETS,
    ));
    assert_eq!(line, 8, "{m}");
    assert!(m.starts_with("email.auth.without_dmarc: "), "{m}");
    let (line, _, m) = at(parse(&file.replace("MX.Bank.example.", "mx bank"), SECRETS));
    assert_eq!(line, 9, "{m}");
    assert!(m.starts_with("email.auth.trusted_received_by: "), "{m}");
    let (line, column, m) = at(parse(
        &file.replace("127.0.0.1:5353", "dns.example"),
        SECRETS,
    ));
    assert_eq!((line, column), (10, 10), "{m}");
    assert!(m.starts_with("email.auth.dns: expected system or"), "{m}");
    let (line, _, m) = at(parse(
        &format!("{base}  auth:\n    polcy: accept\n"),
        SECRETS,
    ));
    assert_eq!(line, 7, "{m}");
    assert!(m.contains("unknown field `polcy`"), "{m}");

    // Bad values in the environment: named by their variable.
    for (var, value) in [
        ("INBOX_EMAIL_AUTH_POLICY", "drop"),
        ("INBOX_EMAIL_AUTH_WITHOUT_DMARC", "reject"),
        ("INBOX_EMAIL_AUTH_DNS", "localhost"),
        ("INBOX_EMAIL_AUTH_TRUSTED_RECEIVED_BY", "-mx"),
    ] {
        let err = parse(&file, &[SECRETS, &[(var, value)]].concat()).expect_err(value);
        assert!(err.to_string().contains(var), "{var}={value}: {err}");
    }
    Ok(())
}
