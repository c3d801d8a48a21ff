//! The bank's AFC system as a process: the `afc-emulator` binary next to the test (or bench)
//! binary, on the stack's broker under a topic prefix, with its keys in a directory of its own
//! (it writes its signing key pair there on first start; the engine reads the public half).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::Stack;

/// How long the emulator has to say it consumes.
const READY: Duration = Duration::from_secs(60);

/// The public PEM the emulator writes in its key directory (kept in step with
/// `workflow::afc_kafka::PUBLIC_KEY_FILE`).
pub const PUBLIC_KEY_FILE: &str = "afc-signing.pub.pem";

/// A running `afc-emulator`; killed when dropped.
pub struct AfcEmulator {
    child: Child,
}

impl AfcEmulator {
    /// Starts the emulator and waits until it consumes. `aes_key` seals the messages (64 hex
    /// digits, the engine's `INBOX_AFC_KEY`); its log lines are echoed with `[afc-emulator]`
    /// unless `quiet`.
    pub async fn start(
        stack: &Stack,
        prefix: &str,
        key_dir: &Path,
        aes_key: &str,
        quiet: bool,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let bin = exe
            .parent()
            .and_then(|d| {
                if d.ends_with("deps") {
                    d.parent()
                } else {
                    Some(d)
                }
            })
            .context("cannot locate the target directory")?
            .join("afc-emulator");
        if !bin.exists() {
            bail!(
                "{} is missing: `cargo build --workspace --bins` (make test does)",
                bin.display()
            );
        }
        let mut child = Command::new(bin)
            .env("INBOX_KAFKA_BROKERS", &stack.kafka_brokers)
            .env("INBOX_TOPIC_PREFIX", prefix)
            .env("INBOX_AFC_KEY_DIR", key_dir)
            .env("INBOX_AFC_KEY", aes_key)
            .env("RUST_LOG", "info,rdkafka=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting afc-emulator")?;
        let mut lines = BufReader::new(child.stderr.take().context("no stderr")?).lines();
        let ready = tokio::time::timeout(READY, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if !quiet {
                    eprintln!("[afc-emulator] {line}");
                }
                if line.contains("afc emulator ready") {
                    return true;
                }
            }
            false
        })
        .await;
        if ready != Ok(true) {
            bail!("afc-emulator was not ready: {:?}", child.try_wait());
        }
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if !quiet {
                    eprintln!("[afc-emulator] {line}");
                }
            }
        });
        Ok(Self { child })
    }

    /// The verdict-signing public key it wrote in `key_dir` (the engine's
    /// `INBOX_AFC_PUBLIC_KEY`).
    pub fn public_key(key_dir: &Path) -> PathBuf {
        key_dir.join(PUBLIC_KEY_FILE)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills it (AFC goes down) and waits for it to end.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
