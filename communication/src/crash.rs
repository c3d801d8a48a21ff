//! TEST-ONLY fault injection: `INBOX_TEST_CRASH_AFTER_PUBLISH` makes the process abort right after
//! Kafka acknowledged an inbound message and before the channel's own acknowledgement is stored
//! (the Telegram offset, the IMAP `\Seen` flag and last UID, the webhook's or web chat's 200/202).
//! The crash tests use it to hit the one window where a message is in Kafka but its source does
//! not know: the restart must then neither lose nor duplicate it.
//!
//! Value: `1` or `all` for every channel, or a comma list of channels (`telegram`,
//! `telegram-webhook`, `email`, `web`). Never set it outside tests: the service logs an error at
//! start when it is armed.

use std::sync::OnceLock;

pub const VAR: &str = "INBOX_TEST_CRASH_AFTER_PUBLISH";

fn armed() -> &'static Option<Vec<String>> {
    static ARMED: OnceLock<Option<Vec<String>>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var(VAR)
            .ok()
            .filter(|v| !v.is_empty() && v != "0")
            .map(|v| v.split(',').map(|c| c.trim().to_owned()).collect())
    })
}

/// Logs loudly when the knob is set (call once at start).
pub fn warn_if_armed() {
    if let Some(channels) = armed() {
        tracing::error!(
            ?channels,
            "{VAR} is set: this process ABORTS after the first inbound publish (test-only knob)"
        );
    }
}

/// Aborts the process if the knob names `channel`. Called right after the broker's ack.
pub fn after_publish(channel: &str) {
    if let Some(channels) = armed()
        && channels
            .iter()
            .any(|c| c == "1" || c == "all" || c == channel)
    {
        tracing::error!(
            channel,
            "{VAR}: aborting after the Kafka ack, before the channel's acknowledgement"
        );
        std::process::abort();
    }
}
