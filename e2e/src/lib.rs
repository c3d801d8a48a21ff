//! Test harness for end-to-end tests: the three services as real processes on the real stack
//! (PostgreSQL, Kafka, Temporal) that `make test` starts. Each test gets its own database, topic
//! prefix and task queue, so tests share the stack without seeing each other.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub mod certs;
pub mod email;
pub mod load;
pub mod manager;
pub mod oidc;
pub mod private_stack;
pub mod telegram;

/// A free loopback port (bound and released; the kernel does not hand it out again at once).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The stack endpoints, from the environment `make test` exports (config/dev.env).
#[derive(Debug, Clone)]
pub struct Stack {
    pub database_url: String,
    pub kafka_brokers: String,
    pub temporal_url: String,
    pub jwt_secret: String,
    pub jwt_issuer: String,
}

impl Stack {
    /// The endpoints from the environment (config/dev.env), unchecked.
    pub fn dev_defaults() -> Self {
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        Self {
            database_url: var(
                "INBOX_DATABASE_URL",
                "postgres://postgres@127.0.0.1:15432/inbox",
            ),
            kafka_brokers: var("INBOX_KAFKA_BROKERS", "127.0.0.1:19093"),
            temporal_url: var("INBOX_TEMPORAL_URL", "http://127.0.0.1:17240"),
            jwt_secret: var("INBOX_JWT_SECRET", "dev-secret-change-me-0123456789abcdef"),
            jwt_issuer: var("INBOX_JWT_ISSUER", "inbox-dev"),
        }
    }

    /// Fails loudly when a service of the stack is not reachable.
    pub async fn from_env() -> anyhow::Result<Self> {
        let s = Self::dev_defaults();
        let temporal_host = s.temporal_url.trim_start_matches("http://").to_owned();
        for (name, addr) in [
            ("Kafka", s.kafka_brokers.clone()),
            ("Temporal", temporal_host),
        ] {
            tokio::net::TcpStream::connect(&addr).await.with_context(|| {
                format!("{name} is not reachable at {addr}: run the tests with `make test`, which starts the stack")
            })?;
        }
        sqlx::PgConnection::connect(&s.database_url)
            .await
            .with_context(|| {
                format!(
                    "PostgreSQL is not reachable at {}: run the tests with `make test`",
                    s.database_url
                )
            })?;
        Ok(s)
    }

    /// A fresh database on the stack's server; the services migrate it at start.
    pub async fn fresh_database(&self, name: &str) -> anyhow::Result<String> {
        let mut conn = sqlx::PgConnection::connect(&self.database_url).await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await?;
        let base = self
            .database_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .context("database url has no database name")?;
        Ok(format!("{base}/{name}"))
    }

    /// The stack's broker, plain text, as the services reach it.
    pub fn kafka(&self) -> platform::kafka::KafkaSettings {
        platform::kafka::KafkaSettings::plaintext(&self.kafka_brokers)
    }

    /// The stack's Temporal frontend, plain text, for a test of its own task queue.
    pub fn temporal(
        &self,
        task_queue: &str,
    ) -> anyhow::Result<platform::settings::temporal::TemporalSettings> {
        Ok(platform::settings::temporal::TemporalSettings::plain(
            self.temporal_url.parse()?,
            task_queue,
        ))
    }

    pub fn token(&self, role: tickets::Role, user: &str, name: &str) -> anyhow::Result<String> {
        Ok(platform::auth::issue_dev_token(
            self.jwt_secret.as_bytes(),
            &self.jwt_issuer,
            user,
            Some(name),
            &[role],
            3600,
        )?)
    }
}

/// The three services of one test, with their own database, topics and task queue.
pub struct Engine {
    pub http: String,
    pub grpc: String,
    pub database_url: String,
    envs: Vec<(String, String)>,
    _children: Vec<Child>,
}

/// A binary of the workspace, built next to the running test.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    // Tests run from <target>/debug/deps and the benchmark from <target>/debug; the binaries sit
    // in <target>/debug.
    let exe = std::env::current_exe()?;
    let here = exe.parent().context("cannot locate the target directory")?;
    let dir = match here.parent() {
        Some(up) if !here.join(name).exists() => up,
        _ => here,
    };
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build it with `cargo build --workspace --bins` (make test does)",
            path.display()
        );
    }
    Ok(path)
}

/// Starts `name` and waits until its log prints `ready_marker`; returns the rest of that line.
async fn spawn(
    name: &str,
    envs: &[(&str, String)],
    ready_marker: &str,
) -> anyhow::Result<(Child, String)> {
    let mut cmd = Command::new(binary(name)?);
    // Defaults first, so a caller's `RUST_LOG` in `envs` wins.
    cmd.env("RUST_LOG", "info,rdkafka=warn,temporalio_sdk_core=warn")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    let stderr = child.stderr.take().context("no stderr")?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let tag = name.to_owned();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[{tag}] {line}");
            let _ = tx.send(line);
        }
    });
    let ready = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = rx.recv().await {
            if let Some(i) = line.find(ready_marker) {
                return Some(
                    line[i + ready_marker.len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
        None
    })
    .await;
    match ready {
        Ok(Some(rest)) => Ok((child, rest)),
        Ok(None) => bail!(
            "{name} exited before it was ready: {:?}",
            child.wait().await
        ),
        Err(_) => bail!("{name} was not ready within 120 s"),
    }
}

impl Engine {
    pub async fn start(stack: &Stack) -> anyhow::Result<Self> {
        Self::start_with(stack, &[]).await
    }

    /// Starts the engine with `extra` environment for the services (channel settings, ...).
    pub async fn start_with(stack: &Stack, extra: &[(&str, String)]) -> anyhow::Result<Self> {
        let tag = format!("e2e_{}", uuid::Uuid::new_v4().simple());
        let database_url = stack.fresh_database(&tag).await?;
        let spec = platform::workspace_root().join("workflows.yaml");
        let envs = vec![
            ("INBOX_DATABASE_URL", database_url.clone()),
            ("INBOX_KAFKA_BROKERS", stack.kafka_brokers.clone()),
            ("INBOX_TOPIC_PREFIX", format!("{tag}.")),
            ("INBOX_TEMPORAL_URL", stack.temporal_url.clone()),
            ("INBOX_TASK_QUEUE", tag.clone()),
            ("INBOX_JWT_SECRET", stack.jwt_secret.clone()),
            ("INBOX_JWT_ISSUER", stack.jwt_issuer.clone()),
            ("INBOX_SPEC", spec.display().to_string()),
            ("INBOX_HTTP_ADDR", "127.0.0.1:0".into()),
            ("INBOX_GRPC_ADDR", "127.0.0.1:0".into()),
            ("INBOX_COMMUNICATION_OPS_ADDR", "127.0.0.1:0".into()),
            ("INBOX_GATEWAY_OPS_ADDR", "127.0.0.1:0".into()),
            ("INBOX_WORKFLOW_OPS_ADDR", "127.0.0.1:0".into()),
            // Required whenever the email channel is on; a test may set its own in `extra`.
            (
                "INBOX_EMAIL_REF_SECRET",
                "e2e-email-ref-secret-0123456789".into(),
            ),
        ];
        let envs: Vec<(&str, String)> = envs.into_iter().chain(extra.iter().cloned()).collect();
        // The workflow service migrates the database and creates the topics first.
        let (workflow, _) = spawn("workflow", &envs, "workflow service ready").await?;
        let (communication, http) =
            spawn("communication", &envs, "communication listening on ").await?;
        let (gateway, grpc) = spawn("gateway", &envs, "gateway listening on ").await?;
        Ok(Self {
            http,
            grpc: grpc.replace("grpc://", "http://"),
            database_url,
            envs: envs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            _children: vec![workflow, communication, gateway],
        })
    }

    /// Kills the gateway (SIGKILL) and starts a new one on the same database and topics; `grpc`
    /// then points at the new one.
    pub async fn crash_and_restart_gateway(&mut self) -> anyhow::Result<()> {
        let grpc = self
            .crash_and_restart(2, "gateway", "gateway listening on ")
            .await?;
        self.grpc = grpc.replace("grpc://", "http://");
        Ok(())
    }

    /// Kills `communication` (SIGKILL: no graceful shutdown) and starts it again on the same
    /// settings; returns once the new process is ready. Its HTTP address changes.
    pub async fn crash_and_restart_communication(&mut self) -> anyhow::Result<()> {
        self.http = self
            .crash_and_restart(1, "communication", "communication listening on ")
            .await?;
        Ok(())
    }

    /// Kills the workflow service (SIGKILL: worker, consumer and relay die mid-flight) and starts
    /// it again; returns once the new process is ready.
    pub async fn crash_and_restart_workflow(&mut self) -> anyhow::Result<()> {
        self.crash_and_restart(0, "workflow", "workflow service ready")
            .await?;
        Ok(())
    }

    async fn crash_and_restart(
        &mut self,
        index: usize,
        name: &str,
        marker: &str,
    ) -> anyhow::Result<String> {
        self._children[index].kill().await?;
        let envs: Vec<(&str, String)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let (child, addr) = spawn(name, &envs, marker).await?;
        self._children[index] = child;
        Ok(addr)
    }
}

impl Engine {
    /// Process ids of the running services, by name (for resource figures in the benchmark).
    pub fn pids(&self) -> Vec<(&'static str, Option<u32>)> {
        ["workflow", "communication", "gateway"]
            .into_iter()
            .zip(self._children.iter().map(Child::id))
            .collect()
    }

    /// Kills `communication` (SIGKILL) and leaves it down until [`Engine::start_communication`].
    pub async fn kill_communication(&mut self) -> anyhow::Result<()> {
        self._children[1].kill().await?;
        Ok(())
    }

    /// Starts `communication` again on the same settings; returns once it is ready.
    pub async fn start_communication(&mut self) -> anyhow::Result<()> {
        let envs: Vec<(&str, String)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let (communication, http) =
            spawn("communication", &envs, "communication listening on ").await?;
        self._children[1] = communication;
        self.http = http;
        Ok(())
    }
}

impl Engine {
    /// Sets (`Some`) or removes (`None`) an environment variable for the services started from
    /// now on (e.g. to disarm a crash knob before [`Engine::start_communication`]).
    pub fn set_env(&mut self, key: &str, value: Option<String>) {
        self.envs.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.envs.push((key.to_owned(), v));
        }
    }

    /// Waits until `communication` exits on its own (a crash knob fired); returns its status.
    pub async fn wait_communication_exit(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        tokio::time::timeout(within, self._children[1].wait())
            .await
            .with_context(|| format!("communication did not exit within {within:?}"))?
            .context("waiting for communication")
    }
}

/// Polls `probe` (every 100 ms) until it yields a value; fails naming `what` once `within` has
/// passed. For state that notifies nothing (a mailbox, a ledger row, `pg_locks`).
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        poll.tick().await;
        if let Some(v) = probe().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{what}: not within {within:?}");
        }
    }
}
