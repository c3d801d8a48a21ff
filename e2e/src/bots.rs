//! The bank's bot worker as a process: the example `bot-worker` binary next to the test, on the
//! stack's broker under the engine's topic prefix.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::Stack;

/// How long the worker has to say it consumes.
const READY: Duration = Duration::from_secs(60);

/// A running `bot-worker`; killed when dropped.
pub struct BotWorker {
    child: Child,
}

impl BotWorker {
    /// Starts the worker, answering each command after `delay`, and waits until it consumes.
    /// Its log lines are echoed with `[bot-worker]`.
    pub async fn start(stack: &Stack, prefix: &str, delay: Duration) -> anyhow::Result<Self> {
        let bin = crate::binary("bot-worker")?;
        let mut child = Command::new(bin)
            .arg("--delay")
            .arg(format!("{}ms", delay.as_millis()))
            .env("INBOX_KAFKA_BROKERS", &stack.kafka_brokers)
            .env("INBOX_TOPIC_PREFIX", prefix)
            .env("RUST_LOG", "info,rdkafka=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting bot-worker")?;
        let mut lines = BufReader::new(child.stderr.take().context("no stderr")?).lines();
        let ready = tokio::time::timeout(READY, async {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[bot-worker] {line}");
                if line.contains("bot worker ready") {
                    return true;
                }
            }
            false
        })
        .await;
        if ready != Ok(true) {
            bail!("bot-worker was not ready: {:?}", child.try_wait());
        }
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[bot-worker] {line}");
            }
        });
        Ok(Self { child })
    }

    /// Kills it (the bot goes down) and waits for it to end.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
