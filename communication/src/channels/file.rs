//! `channels.yaml` as written: the sections the YAML deserializer fills (unknown keys refused),
//! before the resolver applies the environment and checks them.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRoot {
    #[serde(default)]
    pub(super) web: WebSection,
    #[serde(default)]
    pub(super) telegram: TelegramSection,
    #[serde(default)]
    pub(super) email: EmailSection,
    #[serde(default)]
    pub(super) attachments: AttachmentsSection,
}

/// `attachments`: the files clients may send on every channel.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AttachmentsSection {
    pub(super) max_bytes: Option<u64>,
    pub(super) max_per_message: Option<u64>,
    pub(super) types: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebSection {
    #[serde(default = "yes")]
    pub(super) enabled: bool,
}

impl Default for WebSection {
    fn default() -> Self {
        Self { enabled: true }
    }
}

pub(super) fn yes() -> bool {
    true
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum TelegramMode {
    #[default]
    Polling,
    Webhook,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TelegramSection {
    #[serde(default)]
    pub(super) enabled: Option<bool>,
    #[serde(default)]
    pub(super) mode: Option<TelegramMode>,
    pub(super) api_url: Option<String>,
    #[serde(default)]
    pub(super) polling: PollingSection,
    #[serde(default)]
    pub(super) webhook: WebhookSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PollingSection {
    pub(super) timeout_secs: Option<u64>,
    pub(super) idle_delay_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookSection {
    pub(super) path: Option<String>,
    pub(super) public_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EmailSection {
    #[serde(default)]
    pub(super) enabled: Option<bool>,
    #[serde(default)]
    pub(super) imap: ImapSection,
    #[serde(default)]
    pub(super) smtp: SmtpSection,
    #[serde(default)]
    pub(super) auth: AuthSection,
}

/// `email.auth`: sender authentication of imported mail.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthSection {
    pub(super) policy: Option<String>,
    pub(super) without_dmarc: Option<String>,
    pub(super) trusted_received_by: Option<String>,
    pub(super) dns: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImapSection {
    pub(super) addr: Option<String>,
    pub(super) tls: Option<String>,
    pub(super) ca_file: Option<String>,
    pub(super) user: Option<String>,
    pub(super) mailbox: Option<String>,
    pub(super) poll_secs: Option<u64>,
    pub(super) idle_secs: Option<u64>,
    pub(super) max_mail_bytes: Option<u64>,
    pub(super) card_mail: Option<String>,
    pub(super) quarantine: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SmtpSection {
    pub(super) addr: Option<String>,
    pub(super) tls: Option<String>,
    pub(super) ca_file: Option<String>,
    pub(super) user: Option<String>,
    pub(super) from: Option<String>,
    pub(super) timeout_secs: Option<u64>,
    #[serde(default)]
    pub(super) retry: RetrySection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetrySection {
    pub(super) attempts: Option<u64>,
    pub(super) backoff_ms: Option<u64>,
    pub(super) max_backoff_ms: Option<u64>,
}
