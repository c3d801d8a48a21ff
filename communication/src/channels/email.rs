//! The email channel's settings: IMAP in and SMTP out, their TLS, retries, the reference secret
//! and the sender authentication of imported mail (`email.auth`).

use std::time::Duration;

use super::ChannelsError;
use super::file::*;
use super::resolver::{Origin, Resolver};
use crate::delivery::RetryPolicy;
use crate::email::{
    AuthPolicy, AuthSettings, CardMailPolicy, DEFAULT_MAX_MAIL_BYTES, DEFAULT_QUARANTINE,
    DnsServer, EmailSettings, ImapSettings, MAX_MAIL_BYTES_RANGE, REF_SECRET_VAR, RefKey,
    SmtpSettings, TlsMode, TlsSettings, WithoutDmarc,
};

/// The TLS settings of one mail server: `<section>.tls` (`none`, `starttls`, `implicit`) and
/// `<section>.ca_file` (extra trusted CA certificates, PEM; read now so a bad file stops the start).
pub(super) fn mail_tls(
    r: &Resolver<'_>,
    (tls_var, tls_path, tls): (&'static str, &str, Option<&String>),
    (ca_var, ca_path, ca): (&'static str, &str, Option<&String>),
) -> Result<TlsSettings, ChannelsError> {
    let mode = match r.text(tls_var, tls_path, tls) {
        None => TlsMode::None,
        Some((v, origin)) => TlsMode::parse(&v)
            .ok_or_else(|| r.error(origin, &v, "expected none, starttls or implicit"))?,
    };
    let ca_file = match r.text(ca_var, ca_path, ca) {
        None => None,
        Some((v, origin)) => {
            let path = std::path::PathBuf::from(&v);
            crate::email::tls::read_ca_file(&path)
                .map_err(|e| r.error(origin, &v, e.to_string()))?;
            Some(path)
        }
    };
    Ok(TlsSettings { mode, ca_file })
}

/// `email.imap.max_mail_bytes`, `email.imap.card_mail` and `email.imap.quarantine`, checked:
/// the size within [`MAX_MAIL_BYTES_RANGE`], a known policy, and a folder name IMAP can carry
/// that is not the imported mailbox itself (mail moved there would be imported again, forever).
fn imap_limits(
    r: &Resolver<'_>,
    imap: &ImapSection,
    mailbox: &str,
) -> Result<(u64, CardMailPolicy, String), ChannelsError> {
    let max_mail_bytes = r.number(
        "INBOX_IMAP_MAX_MAIL_BYTES",
        "email.imap.max_mail_bytes",
        imap.max_mail_bytes,
        DEFAULT_MAX_MAIL_BYTES,
    )?;
    if !MAX_MAIL_BYTES_RANGE.contains(&max_mail_bytes) {
        let origin = if r.env("INBOX_IMAP_MAX_MAIL_BYTES").is_some() {
            Origin::Env("INBOX_IMAP_MAX_MAIL_BYTES")
        } else {
            Origin::File("email.imap.max_mail_bytes")
        };
        return Err(r.error(
            origin,
            &max_mail_bytes.to_string(),
            format!(
                "expected {} to {} bytes",
                MAX_MAIL_BYTES_RANGE.start(),
                MAX_MAIL_BYTES_RANGE.end()
            ),
        ));
    }
    let card_mail = match r.text(
        "INBOX_IMAP_CARD_MAIL",
        "email.imap.card_mail",
        imap.card_mail.as_ref(),
    ) {
        None => CardMailPolicy::default(),
        Some((v, origin)) => CardMailPolicy::parse(&v)
            .ok_or_else(|| r.error(origin, &v, "expected quarantine, expunge or keep"))?,
    };
    let (quarantine, origin) = r
        .text(
            "INBOX_IMAP_QUARANTINE",
            "email.imap.quarantine",
            imap.quarantine.as_ref(),
        )
        .unwrap_or_else(|| {
            (
                DEFAULT_QUARANTINE.to_owned(),
                Origin::Default("email.imap.quarantine"),
            )
        });
    // IMAP carries other names in modified UTF-7, which the import does not write.
    let printable = quarantine.chars().all(|c| c == ' ' || c.is_ascii_graphic());
    if quarantine.trim().is_empty() || !printable {
        return Err(r.error(
            origin,
            &quarantine,
            "expected a folder name: printable ASCII, not blank",
        ));
    }
    // IMAP names INBOX case-insensitively; other names differing only in case are rare enough
    // that refusing them too costs nothing.
    if quarantine.eq_ignore_ascii_case(mailbox) {
        return Err(r.error(
            origin,
            &quarantine,
            "must differ from email.imap.mailbox (mail moved there would be imported again)",
        ));
    }
    Ok((max_mail_bytes, card_mail, quarantine))
}

/// `email.auth`: the policy for unauthenticated mail, how mail of a domain without DMARC counts,
/// the bank's MX (whose `Received:` gives SPF its IP) and the resolver, each a known value.
fn auth(r: &Resolver<'_>, a: &AuthSection) -> Result<AuthSettings, ChannelsError> {
    let policy = match r.text(
        "INBOX_EMAIL_AUTH_POLICY",
        "email.auth.policy",
        a.policy.as_ref(),
    ) {
        None => AuthPolicy::default(),
        Some((v, origin)) => AuthPolicy::parse(&v)
            .ok_or_else(|| r.error(origin, &v, "expected separate, quarantine or accept"))?,
    };
    let without_dmarc = match r.text(
        "INBOX_EMAIL_AUTH_WITHOUT_DMARC",
        "email.auth.without_dmarc",
        a.without_dmarc.as_ref(),
    ) {
        None => WithoutDmarc::default(),
        Some((v, origin)) => WithoutDmarc::parse(&v)
            .ok_or_else(|| r.error(origin, &v, "expected accept or policy"))?,
    };
    let trusted_received_by = match r.text(
        "INBOX_EMAIL_AUTH_TRUSTED_RECEIVED_BY",
        "email.auth.trusted_received_by",
        a.trusted_received_by.as_ref(),
    ) {
        None => None,
        Some((v, origin)) => Some(crate::email::auth::host_name(&v).ok_or_else(|| {
            r.error(
                origin,
                &v,
                "expected a host name: the bank's MX as it writes itself after `by` in Received:",
            )
        })?),
    };
    let dns = match r.text("INBOX_EMAIL_AUTH_DNS", "email.auth.dns", a.dns.as_ref()) {
        None => DnsServer::default(),
        Some((v, origin)) => DnsServer::parse(&v).ok_or_else(|| {
            r.error(
                origin,
                &v,
                "expected system or a resolver's IP address with an optional port (127.0.0.1:5353)",
            )
        })?,
    };
    Ok(AuthSettings {
        policy,
        without_dmarc,
        trusted_received_by,
        dns,
    })
}

pub(super) fn email(
    r: &Resolver<'_>,
    e: &EmailSection,
    has_file: bool,
) -> Result<EmailSettings, ChannelsError> {
    let imap_addr = r.text("INBOX_IMAP_ADDR", "email.imap.addr", e.imap.addr.as_ref());
    let smtp_addr = r.text("INBOX_SMTP_ADDR", "email.smtp.addr", e.smtp.addr.as_ref());
    let enabled = match r.flag("INBOX_EMAIL_ENABLED", e.enabled)? {
        Some(on) => on,
        // No file: an address switches its half on, as before the file existed.
        None => !has_file && (imap_addr.is_some() || smtp_addr.is_some()),
    };
    if !enabled {
        return Ok(EmailSettings::default());
    }
    if imap_addr.is_none() && smtp_addr.is_none() {
        let origin = if r.env("INBOX_EMAIL_ENABLED").is_some() {
            Origin::Env("INBOX_EMAIL_ENABLED")
        } else {
            Origin::Default("email.enabled")
        };
        return Err(r.error(
            origin,
            "true",
            "email is on but neither email.imap.addr nor email.smtp.addr is set",
        ));
    }
    let switch = if r.env("INBOX_EMAIL_ENABLED").is_some() {
        Origin::Env("INBOX_EMAIL_ENABLED")
    } else if has_file {
        Origin::Default("email.enabled")
    } else {
        Origin::Env(if imap_addr.is_some() {
            "INBOX_IMAP_ADDR"
        } else {
            "INBOX_SMTP_ADDR"
        })
    };
    let secret = r.required_secret(REF_SECRET_VAR, switch, "email")?;
    if secret.len() < crate::email::reference::MIN_SECRET_LEN {
        return Err(r.error(
            Origin::Env(REF_SECRET_VAR),
            "<not shown>",
            format!(
                "at least {} characters (it keys the unforgeable ticket references in mail)",
                crate::email::reference::MIN_SECRET_LEN
            ),
        ));
    }
    let ref_key = RefKey::new(secret.as_bytes());
    let imap = match imap_addr {
        None => None,
        Some((addr, origin)) => {
            let user = r
                .text("INBOX_IMAP_USER", "email.imap.user", e.imap.user.as_ref())
                .map(|(u, _)| u)
                .ok_or_else(|| {
                    r.error(
                        Origin::Default("email.imap.user"),
                        "",
                        "required with email.imap.addr (or INBOX_IMAP_USER)",
                    )
                })?;
            let password = r.required_secret("INBOX_IMAP_PASSWORD", origin, "IMAP")?;
            let tls = mail_tls(
                r,
                ("INBOX_IMAP_TLS", "email.imap.tls", e.imap.tls.as_ref()),
                (
                    "INBOX_IMAP_CA_FILE",
                    "email.imap.ca_file",
                    e.imap.ca_file.as_ref(),
                ),
            )?;
            let mailbox = r
                .text(
                    "INBOX_IMAP_MAILBOX",
                    "email.imap.mailbox",
                    e.imap.mailbox.as_ref(),
                )
                .map_or_else(|| "INBOX".to_owned(), |(m, _)| m);
            let (max_mail_bytes, card_mail, quarantine) = imap_limits(r, &e.imap, &mailbox)?;
            let auth = auth(r, &e.auth)?;
            Some(ImapSettings {
                addr,
                tls,
                ref_key: ref_key.clone(),
                user,
                password,
                mailbox,
                poll_interval: Duration::from_secs(r.number(
                    "INBOX_IMAP_POLL_SECS",
                    "email.imap.poll_secs",
                    e.imap.poll_secs,
                    30,
                )?),
                idle_timeout: Duration::from_secs(r.number(
                    "INBOX_IMAP_IDLE_SECS",
                    "email.imap.idle_secs",
                    e.imap.idle_secs,
                    25 * 60,
                )?),
                max_mail_bytes,
                card_mail,
                quarantine,
                auth,
            })
        }
    };
    let smtp = match smtp_addr {
        None => None,
        Some((addr, _)) => {
            let (from, origin) = r
                .text("INBOX_MAIL_FROM", "email.smtp.from", e.smtp.from.as_ref())
                .ok_or_else(|| {
                    r.error(
                        Origin::Default("email.smtp.from"),
                        "",
                        "required with email.smtp.addr (or INBOX_MAIL_FROM)",
                    )
                })?;
            let domain = from
                .parse::<lettre::Address>()
                .map_err(|err| r.error(origin, &from, format!("not a mail address: {err}")))?
                .domain()
                .to_owned();
            let tls = mail_tls(
                r,
                ("INBOX_SMTP_TLS", "email.smtp.tls", e.smtp.tls.as_ref()),
                (
                    "INBOX_SMTP_CA_FILE",
                    "email.smtp.ca_file",
                    e.smtp.ca_file.as_ref(),
                ),
            )?;
            let attempts = r.number(
                "INBOX_SMTP_RETRY_ATTEMPTS",
                "email.smtp.retry.attempts",
                e.smtp.retry.attempts,
                u64::from(RetryPolicy::default().max_attempts),
            )?;
            let attempts = match u32::try_from(attempts) {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => {
                    let origin = if r.env("INBOX_SMTP_RETRY_ATTEMPTS").is_some() {
                        Origin::Env("INBOX_SMTP_RETRY_ATTEMPTS")
                    } else {
                        Origin::File("email.smtp.retry.attempts")
                    };
                    return Err(r.error(origin, &attempts.to_string(), "expected 1 to 100"));
                }
            };
            let default = RetryPolicy::default();
            let retry = RetryPolicy {
                max_attempts: attempts,
                initial_backoff: Duration::from_millis(r.number(
                    "INBOX_SMTP_RETRY_BACKOFF_MS",
                    "email.smtp.retry.backoff_ms",
                    e.smtp.retry.backoff_ms,
                    u64::try_from(default.initial_backoff.as_millis()).unwrap_or(500),
                )?),
                max_backoff: Duration::from_millis(r.number(
                    "INBOX_SMTP_RETRY_MAX_BACKOFF_MS",
                    "email.smtp.retry.max_backoff_ms",
                    e.smtp.retry.max_backoff_ms,
                    u64::try_from(default.max_backoff.as_millis()).unwrap_or(30_000),
                )?),
            };
            Some(SmtpSettings {
                addr,
                tls,
                ref_key: ref_key.clone(),
                retry,
                user: r
                    .text("INBOX_SMTP_USER", "email.smtp.user", e.smtp.user.as_ref())
                    .map(|(u, _)| u),
                password: r.secret("INBOX_SMTP_PASSWORD"),
                from,
                domain,
                timeout: Duration::from_secs(r.number(
                    "INBOX_SMTP_TIMEOUT_SECS",
                    "email.smtp.timeout_secs",
                    e.smtp.timeout_secs,
                    30,
                )?),
            })
        }
    };
    Ok(EmailSettings { imap, smtp })
}
