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

mod email;
mod file;
mod resolver;
mod secrets;
mod telegram;
#[cfg(test)]
mod tests;

use std::path::Path;

use platform::settings::SettingError;
use platform::yaml::{FileError, Marks};

use crate::email::EmailSettings;
use crate::telegram::TelegramSettings;
use file::FileRoot;
use resolver::Resolver;
use secrets::check_no_secrets;

/// The default file, relative to the working directory.
pub const DEFAULT_FILE: &str = "channels.yaml";
/// Where a webhook listens unless configured otherwise.
pub const DEFAULT_WEBHOOK_PATH: &str = "/v1/telegram/webhook";

#[derive(Debug, thiserror::Error)]
pub enum ChannelsError {
    /// The file: unreadable, or an error at its line and column.
    #[error(transparent)]
    File(#[from] FileError),
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
    /// What files clients may send (every channel).
    pub attachments: edge::files::Limits,
    /// The file they came from, if any (for the start-up log).
    pub file: Option<String>,
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
                return Err(FileError::Read {
                    file: path,
                    reason: e.to_string(),
                }
                .into());
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
        let text = std::fs::read_to_string(path).map_err(|e| FileError::Read {
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
                    serde_yaml_ng::from_str(text).map_err(|e| FileError::deserializing(name, &e))?
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
        let telegram = telegram::telegram(&r, &root.telegram, has_file)?;
        let email = email::email(&r, &root.email, has_file)?;
        let attachments = attachments(&r, &root.attachments)?;
        Ok(Self {
            web,
            telegram,
            email,
            attachments,
            file: file.map(|(n, _)| n.to_owned()),
        })
    }
}

/// `attachments`, each key overridden by its `INBOX_ATTACHMENT_*` variable.
fn attachments(
    r: &Resolver<'_>,
    s: &file::AttachmentsSection,
) -> Result<edge::files::Limits, ChannelsError> {
    let d = edge::files::Limits::default();
    let max_bytes = r.number(
        "INBOX_ATTACHMENT_MAX_BYTES",
        "attachments.max_bytes",
        s.max_bytes,
        d.max_bytes,
    )?;
    if max_bytes == 0 {
        return Err(r.error(
            resolver::Origin::Default("attachments.max_bytes"),
            "0",
            "must be at least 1",
        ));
    }
    let max_per_message = r.number(
        "INBOX_ATTACHMENT_MAX_PER_MESSAGE",
        "attachments.max_per_message",
        s.max_per_message,
        d.max_per_message as u64,
    )?;
    let listed = s.types.as_ref().map(|t| t.join(","));
    let types = match r.text(
        "INBOX_ATTACHMENT_TYPES",
        "attachments.types",
        listed.as_ref(),
    ) {
        Some((v, origin)) => edge::files::parse_types(&v).map_err(|e| r.error(origin, &v, e))?,
        None => d.types,
    };
    Ok(edge::files::Limits {
        max_bytes,
        types,
        max_per_message: usize::try_from(max_per_message).unwrap_or(usize::MAX),
    })
}
