//! No secret in the file: a secret-looking key is an error naming the variable to set instead.

use platform::yaml::{FileError, Marks};

use super::ChannelsError;
use crate::email::REF_SECRET_VAR;

/// Keys that hold secrets, wherever they appear in the file: each names the variable to use.
pub(super) const SECRET_KEYS: &[(&str, &str)] = &[
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
pub(super) const SECRET_WORDS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "secret_token",
    "api_key",
];

pub(super) fn check_no_secrets(file: &str, marks: &Marks) -> Result<(), ChannelsError> {
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
            return Err(FileError::At {
                file: file.to_owned(),
                line,
                column,
                message: format!(
                    "{path}: secrets are not allowed in this file; set {var} in the environment"
                ),
            }
            .into());
        }
    }
    Ok(())
}
