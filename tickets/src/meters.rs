//! The Prometheus metrics the store itself reports (names here, recorded by the process that runs
//! the write: the workflow service, the gateway or `communication`). Figures measured inside a
//! transaction are reported only after it committed: a rolled-back and retried write counts once.

/// Counter, label `outcome` (`passed`, `blocked`): client messages whose verdict was applied.
pub const AFC_VERDICTS: &str = "inbox_afc_verdicts_total";
/// Histogram: seconds from a client message's `created_at` until its manager may read it.
pub const MESSAGE_VISIBLE: &str = "inbox_message_visible_seconds";
/// Histogram: seconds a ticket waited in the queue (`waiting_since`) before a manager took it.
pub const ASSIGNMENT_WAIT: &str = "inbox_assignment_wait_seconds";
/// Counter, label `channel`: outbound deliveries given up on.
pub const DELIVERIES_FAILED: &str = "inbox_deliveries_failed_total";

/// Durations measured in a transaction (by PostgreSQL's clock, which wrote the timestamps), to
/// [`Timings::report`] once it committed.
#[derive(Debug, Default)]
pub(crate) struct Timings {
    pub(crate) visible: Vec<f64>,
    pub(crate) assignment_wait: Vec<f64>,
}

impl Timings {
    pub(crate) fn report(self) {
        for s in self.visible {
            metrics::histogram!(MESSAGE_VISIBLE).record(s);
        }
        for s in self.assignment_wait {
            metrics::histogram!(ASSIGNMENT_WAIT).record(s);
        }
    }
}

pub(crate) fn verdicts_applied(passed: usize, blocked: usize) {
    for (outcome, n) in [("passed", passed), ("blocked", blocked)] {
        if n > 0 {
            metrics::counter!(AFC_VERDICTS, "outcome" => outcome).increment(n as u64);
        }
    }
}
