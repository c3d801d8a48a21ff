//! What every crate's tests share and no release build contains: the one way to wait for state
//! that notifies nothing ([`Poll`], and [`eventually`] over it), so no test hand-rolls a poll loop
//! or sleeps in place of a wait; and the domain values most tests start from ([`fixtures`]).

pub mod fixtures;

use std::future::Future;
use std::time::Duration;

use anyhow::bail;
use tokio::time::{Instant, Interval, MissedTickBehavior};

/// The tries of a wait: the first at once, then one per `every`, until `within` has passed (one
/// try is made after the deadline, so a slow last probe still counts).
///
/// ```ignore
/// let mut poll = Poll::new(within, Duration::from_millis(200));
/// while poll.next().await {
///     if let Some(v) = look().await? { return Ok(v) }
/// }
/// bail!("not within {:?}", poll.within())
/// ```
pub struct Poll {
    within: Duration,
    deadline: Instant,
    interval: Interval,
    expired: bool,
}

impl Poll {
    pub fn new(within: Duration, every: Duration) -> Self {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            within,
            deadline: Instant::now() + within,
            interval,
            expired: false,
        }
    }

    /// Waits for the next try; false once the try after the deadline was made.
    pub async fn next(&mut self) -> bool {
        if self.expired {
            return false;
        }
        self.interval.tick().await;
        self.expired = Instant::now() >= self.deadline;
        true
    }

    /// How long the wait may take in all (for failure messages).
    pub fn within(&self) -> Duration {
        self.within
    }
}

/// Polls `probe` (every 100 ms) until it yields a value; fails naming `what` once `within` has
/// passed. For state that notifies nothing (a mailbox, a ledger row, `pg_locks`).
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let mut poll = Poll::new(within, Duration::from_millis(100));
    while poll.next().await {
        if let Some(v) = probe().await? {
            return Ok(v);
        }
    }
    bail!("{what}: not within {within:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_tries_at_once_then_each_interval_and_once_after_the_deadline() {
        let start = Instant::now();
        let mut poll = Poll::new(Duration::from_millis(250), Duration::from_millis(100));
        let mut tries = Vec::new();
        while poll.next().await {
            tries.push(start.elapsed().as_millis());
        }
        assert_eq!(tries, vec![0, 100, 200, 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn eventually_returns_the_first_value_and_names_what_it_waited_for_when_late() {
        let mut n = 0;
        let got = eventually(Duration::from_secs(1), "third try", || {
            n += 1;
            let v = (n == 3).then_some(n);
            async move { Ok(v) }
        })
        .await;
        assert_eq!(got.ok(), Some(3));
        let late = eventually(Duration::from_millis(300), "never", || async {
            Ok(None::<()>)
        })
        .await;
        assert!(late.is_err_and(|e| e.to_string().starts_with("never: not within")));
    }
}
