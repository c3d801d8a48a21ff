//! One cancellation token per process: SIGINT or SIGTERM cancels it (readiness goes false,
//! listeners stop accepting, streams are told to reconnect, loops commit and stop); the process
//! exits when that is done, or at the deadline whatever is left; a second signal exits at once.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::settings::{Kind, Setting};

pub static SHUTDOWN_SECS: Setting = Setting::new(
    "INBOX_SHUTDOWN_SECS",
    Kind::Int,
    "20",
    "on SIGTERM: drain for at most this long, then exit (keep `terminationGracePeriodSeconds` above it)",
);

/// The token, with no deadline (tools).
pub fn on_signal() -> CancellationToken {
    on_signal_within(None)
}

/// The token; `deadline` after the first signal the process exits (status 1) if it has not
/// finished by itself.
pub fn on_signal_within(deadline: Option<Duration>) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(?deadline, "shutting down (a second signal exits at once)");
        t.cancel();
        match deadline {
            Some(d) => {
                tokio::select! {
                    _ = wait_for_signal() => {}
                    _ = tokio::time::sleep(d) => {
                        tracing::error!(?d, "shutdown deadline passed; exiting with work left");
                        std::process::exit(1);
                    }
                }
            }
            None => wait_for_signal().await,
        }
        std::process::exit(130);
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
