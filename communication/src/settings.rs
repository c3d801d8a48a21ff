//! The settings of `communication`: every `INBOX_*` variable it reads, declared once (see
//! `platform::settings`). The channel variables are resolved with the channels file by
//! `channels.rs` (file < environment); they are declared here so `--print-config`, the README and
//! the production profile know them.

use platform::settings::{
    Common, Env, ExposeSecret, Kind, Refusals, Setting, SettingError, common, is_dev_secret,
};

use crate::channels;

pub static HTTP_ADDR: Setting = Setting::new(
    "INBOX_HTTP_ADDR",
    Kind::Addr,
    "127.0.0.1:18480",
    "`communication`: client HTTP API and WebSocket listener (port 0: any free port)",
);
pub static OPS_ADDR: Setting =
    platform::ops::ops_addr_setting("INBOX_COMMUNICATION_OPS_ADDR", "127.0.0.1:18481");
pub static CHANNELS: Setting = Setting::new(
    "INBOX_CHANNELS",
    Kind::Path,
    "channels.yaml",
    "the channels file (may be absent when not set)",
);
pub static TEST_CRASH_AFTER_PUBLISH: Setting = Setting::optional(
    crate::crash::VAR,
    Kind::Text,
    "TESTS ONLY: abort after the Kafka ack of an inbound message (refused in production)",
);

/// Channel variables (resolved by `channels.rs` with the channels file; see the README).
macro_rules! channel_settings {
    ($($id:ident $name:literal $kind:expr, $doc:literal;)*) => {
        $(pub static $id: Setting = Setting::optional($name, $kind, $doc);)*
        static CHANNEL_SETTINGS: &[&Setting] = &[$(&$id),*];
    };
}

channel_settings! {
    WEB_ENABLED "INBOX_WEB_ENABLED" Kind::Bool, "web chat API on (`web.enabled`, default true)";
    TELEGRAM_ENABLED "INBOX_TELEGRAM_ENABLED" Kind::Bool, "Telegram on (`telegram.enabled`)";
    TELEGRAM_TOKEN "INBOX_TELEGRAM_TOKEN" Kind::Secret, "the bot's token";
    TELEGRAM_API_URL "INBOX_TELEGRAM_API_URL" Kind::Url, "Bot API (`telegram.api_url`, default https://api.telegram.org)";
    TELEGRAM_MODE "INBOX_TELEGRAM_MODE" Kind::Choice(&["polling", "webhook"]), "`telegram.mode` (default polling)";
    TELEGRAM_POLL_TIMEOUT_SECS "INBOX_TELEGRAM_POLL_TIMEOUT_SECS" Kind::Int, "long-poll timeout (`telegram.polling.timeout_secs`, default 20)";
    TELEGRAM_IDLE_DELAY_MS "INBOX_TELEGRAM_IDLE_DELAY_MS" Kind::Int, "pause after an empty poll (`telegram.polling.idle_delay_ms`, default 200)";
    TELEGRAM_WEBHOOK_SECRET "INBOX_TELEGRAM_WEBHOOK_SECRET" Kind::Secret, "webhook mode: `X-Telegram-Bot-Api-Secret-Token`";
    TELEGRAM_WEBHOOK_PATH "INBOX_TELEGRAM_WEBHOOK_PATH" Kind::Text, "webhook route (`telegram.webhook.path`)";
    TELEGRAM_WEBHOOK_URL "INBOX_TELEGRAM_WEBHOOK_URL" Kind::Url, "public URL registered with `setWebhook` (`telegram.webhook.public_url`)";
    EMAIL_ENABLED "INBOX_EMAIL_ENABLED" Kind::Bool, "email on (`email.enabled`)";
    EMAIL_REF_SECRET "INBOX_EMAIL_REF_SECRET" Kind::Secret, "keys the ticket references in mail subjects (≥ 16 characters; required with email)";
    IMAP_ADDR "INBOX_IMAP_ADDR" Kind::Addr, "IMAP server (`email.imap.addr`)";
    IMAP_TLS "INBOX_IMAP_TLS" Kind::Choice(&["none", "starttls", "implicit"]), "`email.imap.tls` (default none)";
    IMAP_CA_FILE "INBOX_IMAP_CA_FILE" Kind::Path, "extra CA for IMAP (`email.imap.ca_file`)";
    IMAP_USER "INBOX_IMAP_USER" Kind::Text, "IMAP login (`email.imap.user`)";
    IMAP_PASSWORD "INBOX_IMAP_PASSWORD" Kind::Secret, "IMAP password";
    IMAP_MAILBOX "INBOX_IMAP_MAILBOX" Kind::Text, "`email.imap.mailbox` (default INBOX)";
    IMAP_POLL_SECS "INBOX_IMAP_POLL_SECS" Kind::Int, "`email.imap.poll_secs` (default 30)";
    IMAP_IDLE_SECS "INBOX_IMAP_IDLE_SECS" Kind::Int, "`email.imap.idle_secs` (default 1500)";
    IMAP_MAX_MAIL_BYTES "INBOX_IMAP_MAX_MAIL_BYTES" Kind::Int, "`email.imap.max_mail_bytes`: larger mail is never downloaded, it goes to the quarantine folder (default 26214400, 25 MiB)";
    IMAP_CARD_MAIL "INBOX_IMAP_CARD_MAIL" Kind::Choice(&["quarantine", "expunge", "keep"]), "`email.imap.card_mail`: an imported mail with a card number is moved to the quarantine folder, expunged or kept (default quarantine)";
    IMAP_QUARANTINE "INBOX_IMAP_QUARANTINE" Kind::Text, "`email.imap.quarantine`: folder of quarantined mail, created when missing (default Quarantine)";
    EMAIL_AUTH_POLICY "INBOX_EMAIL_AUTH_POLICY" Kind::Choice(&["separate", "quarantine", "accept"]), "`email.auth.policy`: an imported mail whose From: is not authenticated (DKIM/SPF/DMARC) becomes a client of its own, `email:unverified:<address>`, marked \"(unverified sender)\" (separate), is moved to the quarantine folder unimported (quarantine) or is taken as its From: says (accept) (default separate)";
    EMAIL_AUTH_WITHOUT_DMARC "INBOX_EMAIL_AUTH_WITHOUT_DMARC" Kind::Choice(&["accept", "policy"]), "`email.auth.without_dmarc`: a mail from a domain that publishes no DMARC record, with no valid signature of it, is accepted or gets `email.auth.policy` (default accept)";
    EMAIL_AUTH_TRUSTED_RECEIVED_BY "INBOX_EMAIL_AUTH_TRUSTED_RECEIVED_BY" Kind::Text, "`email.auth.trusted_received_by`: the bank's MX as named after `by` in Received:; its topmost header gives SPF the connecting IP (unset: no SPF, DMARC rests on DKIM)";
    EMAIL_AUTH_DNS "INBOX_EMAIL_AUTH_DNS" Kind::Text, "`email.auth.dns`: the resolver of the sender checks, `system` or an IP address with an optional port (default system)";
    SMTP_ADDR "INBOX_SMTP_ADDR" Kind::Addr, "SMTP server (`email.smtp.addr`)";
    SMTP_TLS "INBOX_SMTP_TLS" Kind::Choice(&["none", "starttls", "implicit"]), "`email.smtp.tls` (default none)";
    SMTP_CA_FILE "INBOX_SMTP_CA_FILE" Kind::Path, "extra CA for SMTP (`email.smtp.ca_file`)";
    SMTP_USER "INBOX_SMTP_USER" Kind::Text, "SMTP login (`email.smtp.user`)";
    SMTP_PASSWORD "INBOX_SMTP_PASSWORD" Kind::Secret, "SMTP password";
    MAIL_FROM "INBOX_MAIL_FROM" Kind::Text, "From address of outbound mail (`email.smtp.from`)";
    SMTP_TIMEOUT_SECS "INBOX_SMTP_TIMEOUT_SECS" Kind::Int, "`email.smtp.timeout_secs` (default 30)";
    SMTP_RETRY_ATTEMPTS "INBOX_SMTP_RETRY_ATTEMPTS" Kind::Int, "`email.smtp.retry.attempts` (default 6)";
    SMTP_RETRY_BACKOFF_MS "INBOX_SMTP_RETRY_BACKOFF_MS" Kind::Int, "`email.smtp.retry.backoff_ms` (default 500)";
    SMTP_RETRY_MAX_BACKOFF_MS "INBOX_SMTP_RETRY_MAX_BACKOFF_MS" Kind::Int, "`email.smtp.retry.max_backoff_ms` (default 30000)";
}

static OWN: &[&Setting] = &[
    &HTTP_ADDR,
    &OPS_ADDR,
    &CHANNELS,
    &spec::SPEC_FILE,
    &TEST_CRASH_AFTER_PUBLISH,
];

/// Every setting of `communication`, in `--print-config` order.
pub fn declared() -> Vec<&'static [&'static Setting]> {
    vec![
        common::ALL,
        platform::telemetry::SETTINGS,
        OWN,
        edge::SETTINGS,
        CHANNEL_SETTINGS,
    ]
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: Common,
    pub http_addr: String,
    /// The widget's files, CORS for the pages that embed it, the request-head timeout.
    pub browser: edge::web::WebSettings,
    pub ops_addr: String,
    pub rate_limit: edge::ratelimit::RateLimit,
    pub streams: edge::stream::StreamConfig,
    /// The web-chat client API; on unless the channels file (or `INBOX_WEB_ENABLED`) says off.
    pub web: bool,
    /// Off unless the channels file (or the environment) switches it on; see `channels.rs`.
    pub telegram: Option<crate::telegram::TelegramSettings>,
    /// IMAP in and SMTP out, each when configured; see `channels.rs`.
    pub email: crate::email::EmailSettings,
    /// Attachments: the object store, and the limits of the channels file.
    pub files: edge::files::Files,
    /// The lifecycle spec: its `bots` commands are offered to clients (hints, Telegram's menu).
    pub spec_path: std::path::PathBuf,
}

/// Why the settings are unusable: the service refuses to start with this message.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Env(#[from] SettingError),
    #[error(transparent)]
    Channels(#[from] channels::ChannelsError),
}

impl Settings {
    /// The environment plus the channels file (`INBOX_CHANNELS`, default `channels.yaml`).
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let channels = channels::Channels::load(&env.lookup())?;
        if let Some(file) = &channels.file {
            tracing::info!(%file, "channels file loaded (environment variables override it)");
        } else {
            tracing::info!("no channels file: channels from the environment only");
        }
        let files = edge::files::Files::from_env_with(env, channels.attachments.clone())?;
        Ok(Self {
            files,
            common: Common::from_env(env)?,
            http_addr: env.text(&HTTP_ADDR),
            browser: edge::web::WebSettings::from_env(env)?,
            ops_addr: env.text(&OPS_ADDR),
            rate_limit: edge::ratelimit::RateLimit::from_env(env)?,
            streams: edge::stream::StreamConfig::from_env(env)?,
            web: channels.web,
            telegram: channels.telegram,
            email: channels.email,
            spec_path: env.text(&spec::SPEC_FILE).into(),
        })
    }

    /// What the production profile refuses.
    pub fn refusals(&self, env: &Env) -> Refusals {
        let mut r = Refusals::new();
        self.common.refusals(&mut r);
        platform::telemetry::refusals(env, &mut r);
        r.check(
            env.is_set(&TEST_CRASH_AFTER_PUBLISH),
            format!("{} is a test-only fault injection", crate::crash::VAR),
        );
        if let Some(tg) = &self.telegram {
            r.check(
                tg.api_url.scheme() != "https",
                format!("INBOX_TELEGRAM_API_URL={} is not https://", tg.api_url),
            );
        }
        if let Some(secret) = env.secret(&EMAIL_REF_SECRET) {
            r.check(
                is_dev_secret(secret.expose_secret()),
                "INBOX_EMAIL_REF_SECRET is the dev secret committed in the repository",
            );
        }
        if let Some(imap) = &self.email.imap {
            r.check(
                imap.tls.mode == crate::email::TlsMode::None,
                "INBOX_IMAP_TLS is none: mailbox passwords and mail would cross the network in clear",
            );
        }
        if let Some(smtp) = &self.email.smtp {
            r.check(
                smtp.tls.mode == crate::email::TlsMode::None,
                "INBOX_SMTP_TLS is none: mail would cross the network in clear",
            );
        }
        r
    }
}
