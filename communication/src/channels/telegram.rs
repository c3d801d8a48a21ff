//! The Telegram channel's settings: polling or webhook, from the file and the environment.

use std::time::Duration;

use super::file::*;
use super::resolver::{Origin, Resolver};
use super::{ChannelsError, DEFAULT_WEBHOOK_PATH};
use crate::telegram::{TelegramSettings, WebhookSettings};

pub(super) fn telegram(
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
