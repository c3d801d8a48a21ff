//! Which client channels `communication` runs, and how: a YAML file of its own (path from
//! `INBOX_CHANNELS`, default `channels.yaml`), with environment variables as overrides.
//!
//! Precedence, key by key: built-in default < file < environment. Secrets (the bot token, the
//! webhook secret, mailbox passwords) come only from the environment: a secret-looking key in the
//! file is an error, so a token can never end up in a file under git. Every error in the file
//! names file, line, column and key path; `communication` refuses to start on any of them.
//!
//! Without a file (the default path absent and `INBOX_CHANNELS` unset), the environment alone
//! decides, as before the file existed: Telegram is on when `INBOX_TELEGRAM_TOKEN` is set, IMAP
//! when `INBOX_IMAP_ADDR` is, SMTP when `INBOX_SMTP_ADDR` is. With a file, only `enabled` (or
//! `INBOX_<CHANNEL>_ENABLED`) switches a channel on: a secret is never a switch.

use std::path::Path;
use std::time::Duration;

use platform::settings::SettingError;
use platform::yaml::{Marks, located};
use serde::Deserialize;

use crate::delivery::RetryPolicy;
use crate::email::{
    EmailSettings, ImapSettings, REF_SECRET_VAR, RefKey, SmtpSettings, TlsMode, TlsSettings,
};
use crate::telegram::{TelegramSettings, WebhookSettings};

/// The default file, relative to the working directory.
pub const DEFAULT_FILE: &str = "channels.yaml";
/// Where a webhook listens unless configured otherwise.
pub const DEFAULT_WEBHOOK_PATH: &str = "/v1/telegram/webhook";

#[derive(Debug, thiserror::Error)]
pub enum ChannelsError {
    #[error("{file}: cannot read: {reason}")]
    Read { file: String, reason: String },
    #[error("{file}:{line}:{column}: {message}")]
    At {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A setting that came from the environment (or is missing from it).
    #[error(transparent)]
    Env(#[from] SettingError),
}

/// The resolved channel settings.
#[derive(Debug, Clone)]
pub struct Channels {
    /// The web-chat client API (`/v1/messages`, `/v1/read`, `/v1/ws`).
    pub web: bool,
    pub telegram: Option<TelegramSettings>,
    pub email: EmailSettings,
    /// The file they came from, if any (for the start-up log).
    pub file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoot {
    #[serde(default)]
    web: WebSection,
    #[serde(default)]
    telegram: TelegramSection,
    #[serde(default)]
    email: EmailSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebSection {
    #[serde(default = "yes")]
    enabled: bool,
}

impl Default for WebSection {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TelegramMode {
    #[default]
    Polling,
    Webhook,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TelegramSection {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    mode: Option<TelegramMode>,
    api_url: Option<String>,
    #[serde(default)]
    polling: PollingSection,
    #[serde(default)]
    webhook: WebhookSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PollingSection {
    timeout_secs: Option<u64>,
    idle_delay_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookSection {
    path: Option<String>,
    public_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailSection {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    imap: ImapSection,
    #[serde(default)]
    smtp: SmtpSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImapSection {
    addr: Option<String>,
    tls: Option<String>,
    ca_file: Option<String>,
    user: Option<String>,
    mailbox: Option<String>,
    poll_secs: Option<u64>,
    idle_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpSection {
    addr: Option<String>,
    tls: Option<String>,
    ca_file: Option<String>,
    user: Option<String>,
    from: Option<String>,
    timeout_secs: Option<u64>,
    #[serde(default)]
    retry: RetrySection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetrySection {
    attempts: Option<u64>,
    backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
}

/// Keys that hold secrets, wherever they appear in the file: each names the variable to use.
const SECRET_KEYS: &[(&str, &str)] = &[
    ("telegram.token", "INBOX_TELEGRAM_TOKEN"),
    ("telegram.bot_token", "INBOX_TELEGRAM_TOKEN"),
    ("telegram.webhook.secret", "INBOX_TELEGRAM_WEBHOOK_SECRET"),
    (
        "telegram.webhook.secret_token",
        "INBOX_TELEGRAM_WEBHOOK_SECRET",
    ),
    ("email.imap.password", "INBOX_IMAP_PASSWORD"),
    ("email.smtp.password", "INBOX_SMTP_PASSWORD"),
    ("email.ref_secret", REF_SECRET_VAR),
];

/// Last path segments that look like a secret anywhere else.
const SECRET_WORDS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "secret_token",
    "api_key",
];

/// Where a value came from: the file (located by its key path) or an environment variable.
enum Origin<'a> {
    File(&'a str),
    Env(&'static str),
    /// The built-in default, or nothing at all: reported against the file's key path.
    Default(&'a str),
}

struct Resolver<'a> {
    file: Option<(&'a str, Marks)>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Resolver<'_> {
    fn env(&self, name: &'static str) -> Option<String> {
        (self.env)(name).filter(|v| !v.is_empty())
    }

    /// An error about the value at `origin`.
    fn error(&self, origin: Origin<'_>, value: &str, reason: impl Into<String>) -> ChannelsError {
        let reason = reason.into();
        match (origin, &self.file) {
            (Origin::Env(name), _) => SettingError {
                name: name.into(),
                value: value.into(),
                reason,
            }
            .into(),
            (Origin::File(path) | Origin::Default(path), Some((file, marks))) => {
                let (line, column) = marks.find(path);
                ChannelsError::At {
                    file: (*file).to_owned(),
                    line,
                    column,
                    message: format!("{path}: {reason}"),
                }
            }
            (Origin::File(path) | Origin::Default(path), None) => SettingError {
                name: path.into(),
                value: value.into(),
                reason,
            }
            .into(),
        }
    }

    /// The environment's value of `var`, else the file's, else `None`.
    fn text<'p>(
        &self,
        var: &'static str,
        path: &'p str,
        file: Option<&String>,
    ) -> Option<(String, Origin<'p>)> {
        match self.env(var) {
            Some(v) => Some((v, Origin::Env(var))),
            None => file.map(|v| (v.clone(), Origin::File(path))),
        }
    }

    /// `_path` names the file key the value would come from (read at the call site).
    fn number(
        &self,
        var: &'static str,
        _path: &str,
        file: Option<u64>,
        default: u64,
    ) -> Result<u64, ChannelsError> {
        match self.env(var) {
            Some(v) => v.parse().map_err(|e: std::num::ParseIntError| {
                self.error(Origin::Env(var), &v, e.to_string())
            }),
            None => Ok(file.unwrap_or(default)),
        }
    }

    fn flag(&self, var: &'static str, file: Option<bool>) -> Result<Option<bool>, ChannelsError> {
        match self.env(var) {
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(Some(true)),
                "0" | "false" | "no" | "off" => Ok(Some(false)),
                _ => Err(self.error(Origin::Env(var), &v, "expected true or false")),
            },
            None => Ok(file),
        }
    }

    /// A secret from the environment; never printed.
    fn secret(&self, var: &'static str) -> Option<String> {
        self.env(var)
    }

    fn required_secret(
        &self,
        var: &'static str,
        because: Origin<'_>,
        what: &str,
    ) -> Result<String, ChannelsError> {
        self.secret(var).ok_or_else(|| {
            self.error(
                because,
                "",
                format!(
                    "{what} is on but {var} is not set (secrets come only from the environment)"
                ),
            )
        })
    }
}

impl Channels {
    /// Reads the file `INBOX_CHANNELS` names (default `channels.yaml`, which may be absent) and
    /// applies the environment.
    pub fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ChannelsError> {
        let explicit = env("INBOX_CHANNELS").filter(|p| !p.is_empty());
        let path = explicit.clone().unwrap_or_else(|| DEFAULT_FILE.to_owned());
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            // Only the default may be missing: a file someone named must exist.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => None,
            Err(e) => {
                return Err(ChannelsError::Read {
                    file: path,
                    reason: e.to_string(),
                });
            }
        };
        Self::resolve(text.as_deref().map(|t| (path.as_str(), t)), env)
    }

    /// Reads a file by path (`workflow validate`-style checks and tests).
    pub fn load_file(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ChannelsError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ChannelsError::Read {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        Self::resolve(Some((&file, &text)), env)
    }

    /// The settings of `file` (name and text; `None`: no file) under the environment `env`.
    pub fn resolve(
        file: Option<(&str, &str)>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ChannelsError> {
        let (root, marks) = match file {
            None => (None, None),
            Some((name, text)) => {
                let marks = Marks::of(text);
                check_no_secrets(name, &marks)?;
                // An empty file is a file with every default.
                let root: FileRoot = if text.trim().is_empty() {
                    FileRoot::default()
                } else {
                    serde_yaml_ng::from_str(text).map_err(|e| {
                        let (line, column, message) = located(&e);
                        ChannelsError::At {
                            file: name.to_owned(),
                            line,
                            column,
                            message,
                        }
                    })?
                };
                (Some(root), Some((name, marks)))
            }
        };
        let r = Resolver { file: marks, env };
        let has_file = root.is_some();
        let root = root.unwrap_or_default();

        let web = r
            .flag("INBOX_WEB_ENABLED", Some(root.web.enabled))?
            .unwrap_or(true);
        let telegram = telegram(&r, &root.telegram, has_file)?;
        let email = email(&r, &root.email, has_file)?;
        Ok(Self {
            web,
            telegram,
            email,
            file: file.map(|(n, _)| n.to_owned()),
        })
    }
}

fn check_no_secrets(file: &str, marks: &Marks) -> Result<(), ChannelsError> {
    for (path, (line, column)) in marks.paths() {
        let last = path.rsplit('.').next().unwrap_or(path);
        let var = SECRET_KEYS
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, v)| *v)
            .or_else(|| {
                SECRET_WORDS
                    .contains(&last)
                    .then_some("an INBOX_* variable")
            });
        if let Some(var) = var {
            return Err(ChannelsError::At {
                file: file.to_owned(),
                line,
                column,
                message: format!(
                    "{path}: secrets are not allowed in this file; set {var} in the environment"
                ),
            });
        }
    }
    Ok(())
}

fn telegram(
    r: &Resolver<'_>,
    t: &TelegramSection,
    has_file: bool,
) -> Result<Option<TelegramSettings>, ChannelsError> {
    let enabled = r.flag("INBOX_TELEGRAM_ENABLED", t.enabled)?;
    let enabled = match enabled {
        Some(on) => on,
        // No file: the token alone switches the channel on, as before the file existed.
        None => !has_file && r.secret("INBOX_TELEGRAM_TOKEN").is_some(),
    };
    if !enabled {
        if has_file && r.secret("INBOX_TELEGRAM_TOKEN").is_some() {
            tracing::warn!(
                "INBOX_TELEGRAM_TOKEN is set but Telegram is off in the channels file \
                 (telegram.enabled or INBOX_TELEGRAM_ENABLED=true turns it on)"
            );
        }
        return Ok(None);
    }
    let switch = if r.env("INBOX_TELEGRAM_ENABLED").is_some() {
        Origin::Env("INBOX_TELEGRAM_ENABLED")
    } else {
        Origin::Default("telegram.enabled")
    };
    let token = r.required_secret("INBOX_TELEGRAM_TOKEN", switch, "telegram")?;
    let api_url = match r.text(
        "INBOX_TELEGRAM_API_URL",
        "telegram.api_url",
        t.api_url.as_ref(),
    ) {
        None => "https://api.telegram.org"
            .parse::<reqwest::Url>()
            .map_err(|e| r.error(Origin::Default("telegram.api_url"), "", e.to_string()))?,
        Some((v, origin)) => v
            .parse::<reqwest::Url>()
            .map_err(|e| r.error(origin, &v, format!("not a URL: {e}")))?,
    };
    let mode = match r.env("INBOX_TELEGRAM_MODE") {
        Some(v) => match v.as_str() {
            "polling" => TelegramMode::Polling,
            "webhook" => TelegramMode::Webhook,
            _ => {
                return Err(r.error(
                    Origin::Env("INBOX_TELEGRAM_MODE"),
                    &v,
                    "expected polling or webhook",
                ));
            }
        },
        None => t.mode.unwrap_or_default(),
    };
    let webhook = match mode {
        TelegramMode::Polling => None,
        TelegramMode::Webhook => {
            let mode_origin = if r.env("INBOX_TELEGRAM_MODE").is_some() {
                Origin::Env("INBOX_TELEGRAM_MODE")
            } else {
                Origin::File("telegram.mode")
            };
            let secret = r.required_secret(
                "INBOX_TELEGRAM_WEBHOOK_SECRET",
                mode_origin,
                "telegram webhook mode",
            )?;
            // Telegram's rule for `secret_token`: 1-256 of A-Z a-z 0-9 _ -.
            if secret.len() > 256
                || !secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(r.error(
                    Origin::Env("INBOX_TELEGRAM_WEBHOOK_SECRET"),
                    "<not shown>",
                    "1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)",
                ));
            }
            let path = match r.text(
                "INBOX_TELEGRAM_WEBHOOK_PATH",
                "telegram.webhook.path",
                t.webhook.path.as_ref(),
            ) {
                None => DEFAULT_WEBHOOK_PATH.to_owned(),
                Some((p, origin)) => {
                    if !p.starts_with('/') || p.contains(['?', '#', ' ']) || p.contains("/:") {
                        return Err(r.error(
                            origin,
                            &p,
                            "expected an absolute path like /v1/telegram/webhook",
                        ));
                    }
                    p
                }
            };
            let public_url = match r.text(
                "INBOX_TELEGRAM_WEBHOOK_URL",
                "telegram.webhook.public_url",
                t.webhook.public_url.as_ref(),
            ) {
                None => None,
                Some((v, origin)) => Some(
                    v.parse::<reqwest::Url>()
                        .map_err(|e| r.error(origin, &v, format!("not a URL: {e}")))?,
                ),
            };
            Some(WebhookSettings {
                path,
                public_url,
                secret,
            })
        }
    };
    Ok(Some(TelegramSettings {
        token,
        api_url,
        poll_timeout: Duration::from_secs(r.number(
            "INBOX_TELEGRAM_POLL_TIMEOUT_SECS",
            "telegram.polling.timeout_secs",
            t.polling.timeout_secs,
            20,
        )?),
        idle_delay: Duration::from_millis(r.number(
            "INBOX_TELEGRAM_IDLE_DELAY_MS",
            "telegram.polling.idle_delay_ms",
            t.polling.idle_delay_ms,
            200,
        )?),
        webhook,
    }))
}

/// The TLS settings of one mail server: `<section>.tls` (`none`, `starttls`, `implicit`) and
/// `<section>.ca_file` (extra trusted CA certificates, PEM; read now so a bad file stops the start).
fn mail_tls(
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

fn email(
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
            Some(ImapSettings {
                addr,
                tls,
                ref_key: ref_key.clone(),
                user,
                password,
                mailbox: r
                    .text(
                        "INBOX_IMAP_MAILBOX",
                        "email.imap.mailbox",
                        e.imap.mailbox.as_ref(),
                    )
                    .map_or_else(|| "INBOX".to_owned(), |(m, _)| m),
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

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
            Err(ChannelsError::At {
                file,
                line,
                column,
                message,
            }) => {
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
        assert!(
            local.telegram.is_some() && local.email.imap.is_some() && local.email.smtp.is_some()
        );
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
}
