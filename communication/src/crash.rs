//! TEST-ONLY fault injection: `INBOX_TEST_CRASH_AFTER_PUBLISH` makes the process abort right after
//! Kafka acknowledged an inbound message and before the channel's own acknowledgement is stored
//! (the Telegram offset, the IMAP `\Seen` flag and last UID, the webhook's or web chat's 200/202).
//! The crash tests use it to hit the one window where a message is in Kafka but its source does
//! not know: the restart must then neither lose nor duplicate it.
//!
//! Value: `1` or `all` for every channel, or a comma list of channels (`telegram`,
//! `telegram-webhook`, `email`, `web`). Never set it outside tests: the service logs an error at
//! start when it is armed.
//!
//! The hook is compiled in only with the cargo feature `test-hooks` (`make test` builds with
//! `--features communication/test-hooks`); a build without it, a release build, ignores the
//! variable and says so at start.

#[cfg(feature = "test-hooks")]
use std::sync::OnceLock;

pub const VAR: &str = "INBOX_TEST_CRASH_AFTER_PUBLISH";

#[cfg(feature = "test-hooks")]
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
#[cfg(feature = "test-hooks")]
pub fn warn_if_armed() {
    if let Some(channels) = armed() {
        tracing::error!(
            ?channels,
            "{VAR} is set: this process ABORTS after the first inbound publish (test-only knob)"
        );
    }
}

/// Without the hook compiled in, the variable changes nothing.
#[cfg(not(feature = "test-hooks"))]
pub fn warn_if_armed() {
    if std::env::var_os(VAR).is_some() {
        tracing::warn!("{VAR} is set but this build has no test hooks: ignored");
    }
}

/// Aborts the process if the knob names `channel`. Called right after the broker's ack.
#[cfg(feature = "test-hooks")]
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

/// A build without test hooks never aborts.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn after_publish(_channel: &str) {}
