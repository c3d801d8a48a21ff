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

pub mod afc;
pub mod bots;
pub mod certs;
pub mod dns;
pub mod email;
pub mod load;
pub mod manager;
pub mod oidc;
pub mod private_stack;
pub mod secure_stack;
pub mod telegram;
pub mod webchat;

/// A free loopback port for a peer a test starts (dovecot, an OpenID provider, a private
/// PostgreSQL): picked at random *below* the kernel's ephemeral range and checked by binding it.
/// A port the kernel hands out (`bind(0)`) is in that range, so between our release and the
/// peer's bind any outgoing connection on the machine may be given it (CI saw dovecot fail with
/// "Address already in use" that way); below the range only another listener can take it.
pub fn free_port() -> anyhow::Result<u16> {
    free_port_except(&[])
}

/// [`free_port`], never one of `taken` (ports picked for peers that have not bound them yet).
pub fn free_port_except(taken: &[u16]) -> anyhow::Result<u16> {
    let (low, high) = listen_range();
    for _ in 0..500 {
        let r = uuid::Uuid::new_v4().as_u128();
        let span = u128::from(high - low);
        let port = low + u16::try_from(r % span).unwrap_or(0);
        if taken.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free loopback port found in {low}..{high}")
}

/// Where [`free_port`] picks: 10000 up to the start of the ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`, 32768 by default), or above its end when the range
/// starts too low to leave room.
fn listen_range() -> (u16, u16) {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32_768, 60_999));
    match ephemeral {
        (start, _) if start >= 12_000 => (10_000, start),
        (_, end) if end <= 63_000 => (end + 1, 65_535),
        _ => (10_000, 32_000),
    }
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
    /// The stack's broker, plain text, with the partition count the engine is given
    /// (`INBOX_KAFKA_PARTITIONS` of `config/dev.env`, or the test's own).
    pub fn kafka(&self) -> platform::kafka::KafkaSettings {
        let mut kafka = platform::kafka::KafkaSettings::plaintext(&self.kafka_brokers);
        if let Some(p) = std::env::var("INBOX_KAFKA_PARTITIONS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            kafka.partitions = p;
        }
        kafka
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
        Ok(edge::auth::issue_dev_token(
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
    /// The gateway's web console and gRPC-Web origin (`http://host:port`).
    pub console: String,
    pub database_url: String,
    envs: Vec<(String, String)>,
    _children: Vec<Child>,
    /// Ops listeners (`http://host:port`), in [`Service`] order.
    ops: [String; 3],
}

/// `msg` with the bearer `token` in its `authorization` metadata.
pub fn authed<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Ok(v) = tonic::metadata::MetadataValue::try_from(format!("Bearer {token}")) {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

/// The object store directory of the engine started with `tag`.
fn attachment_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join("inbox-e2e-attachments").join(tag)
}

/// A service of the engine, in the order it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Workflow = 0,
    Communication = 1,
    Gateway = 2,
}

impl Service {
    pub const ALL: [Service; 3] = [Self::Workflow, Self::Communication, Self::Gateway];
}

/// What every service logs once its ops listener (`/livez`, `/readyz`, `/metrics`) is bound.
const OPS_MARKER: &str = "ops listening on ";
/// What the gateway logs, before it is ready, of its console listener.
const CONSOLE_MARKER: &str = "console and gRPC-Web on ";

/// A started service: its process, the rest of its ready line (its address) and its ops listener.
struct Spawned {
    child: Child,
    addr: String,
    ops: String,
    /// The gateway's console listener (empty for the other services).
    console: String,
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
            "{} is missing: build it with `cargo build --workspace --bins --features communication/test-hooks` (make test does)",
            path.display()
        );
    }
    Ok(path)
}

/// Starts `name` and waits until its log prints `ready_marker` and its ops listener's address.
async fn spawn(name: &str, envs: &[(&str, String)], ready_marker: &str) -> anyhow::Result<Spawned> {
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
    let after = |line: &str, marker: &str| {
        line.find(marker).map(|i| {
            line[i + marker.len()..]
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
    };
    let ready = tokio::time::timeout(Duration::from_secs(120), async {
        let (mut addr, mut ops, mut console) = (None, None, None);
        while let Some(line) = rx.recv().await {
            addr = addr.or_else(|| after(&line, ready_marker));
            ops = ops.or_else(|| after(&line, OPS_MARKER));
            console = console.or_else(|| after(&line, CONSOLE_MARKER));
            if let (Some(addr), Some(ops)) = (&addr, &ops) {
                return Some((addr.clone(), ops.clone(), console.unwrap_or_default()));
            }
        }
        None
    })
    .await;
    match ready {
        Ok(Some((addr, ops, console))) => Ok(Spawned {
            child,
            addr,
            ops,
            console,
        }),
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
        let stack_env = [
            ("INBOX_DATABASE_URL", database_url.clone()),
            ("INBOX_KAFKA_BROKERS", stack.kafka_brokers.clone()),
            ("INBOX_TEMPORAL_URL", stack.temporal_url.clone()),
            ("INBOX_JWT_SECRET", stack.jwt_secret.clone()),
            ("INBOX_JWT_ISSUER", stack.jwt_issuer.clone()),
            // Required whenever the email channel is on; a test may set its own in `extra`.
            (
                "INBOX_EMAIL_REF_SECRET",
                "e2e-email-ref-secret-0123456789".into(),
            ),
        ];
        let extra: Vec<(&str, String)> =
            stack_env.into_iter().chain(extra.iter().cloned()).collect();
        Self::launch(tag, database_url, &extra, true).await
    }

    /// Starts the engine on endpoints of the caller's own (`secure_stack`, a production-profile
    /// test): `env` names the database (`database_url` is the same URL, for the test's own use),
    /// the brokers, Temporal, the identity provider. Nothing of the shared stack is passed, and no
    /// dev secret: every other `INBOX_*` variable of the test's environment (`config/dev.env`'s,
    /// exported by `scripts/stack.sh env`) is passed empty, which the services read as unset.
    pub async fn start_on(database_url: &str, env: &[(&str, String)]) -> anyhow::Result<Self> {
        let tag = format!("e2e_{}", uuid::Uuid::new_v4().simple());
        Self::launch(tag, database_url.to_owned(), env, false).await
    }

    /// The per-test settings (topic prefix and task queue `tag`, listeners on free ports), then
    /// `extra`; with `inherit`, the services also see the test's own `INBOX_*` environment.
    async fn launch(
        tag: String,
        database_url: String,
        extra: &[(&str, String)],
        inherit: bool,
    ) -> anyhow::Result<Self> {
        let spec = platform::workspace_root().join("workflows.yaml");
        let envs = vec![
            ("INBOX_TOPIC_PREFIX", format!("{tag}.")),
            ("INBOX_TASK_QUEUE", tag.clone()),
            ("INBOX_SPEC", spec.display().to_string()),
            ("INBOX_HTTP_ADDR", "127.0.0.1:0".into()),
            ("INBOX_GRPC_ADDR", "127.0.0.1:0".into()),
            ("INBOX_CONSOLE_ADDR", "127.0.0.1:0".into()),
            (
                "INBOX_WEB_ROOT",
                platform::workspace_root()
                    .join("web/dist")
                    .display()
                    .to_string(),
            ),
            ("INBOX_COMMUNICATION_OPS_ADDR", "127.0.0.1:0".into()),
            ("INBOX_GATEWAY_OPS_ADDR", "127.0.0.1:0".into()),
            ("INBOX_WORKFLOW_OPS_ADDR", "127.0.0.1:0".into()),
            // Each engine its own object store (a directory; see `Engine::attachment_dir`).
            (
                "INBOX_ATTACHMENT_STORE",
                format!("file://{}", attachment_dir(&tag).display()),
            ),
        ];
        let envs: Vec<(&str, String)> = envs.into_iter().chain(extra.iter().cloned()).collect();
        // Not inherited: blanked first, so any value given above wins.
        let blanked: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| !inherit && k.starts_with("INBOX_") && !envs.iter().any(|(e, _)| e == k))
            .collect();
        let envs: Vec<(&str, String)> = blanked
            .iter()
            .map(|k| (k.as_str(), String::new()))
            .chain(envs)
            .collect();
        // The workflow service migrates the database and creates the topics first.
        let workflow = spawn("workflow", &envs, "workflow service ready").await?;
        let communication = spawn("communication", &envs, "communication listening on ").await?;
        let gateway = spawn("gateway", &envs, "gateway listening on ").await?;
        Ok(Self {
            http: communication.addr,
            grpc: gateway.addr.replace("grpc://", "http://"),
            console: gateway.console,
            database_url,
            envs: envs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            _children: vec![workflow.child, communication.child, gateway.child],
            ops: [workflow.ops, communication.ops, gateway.ops],
        })
    }

    /// Kills the gateway (SIGKILL) and starts a new one on the same database and topics; `grpc`
    /// then points at the new one.
    pub async fn crash_and_restart_gateway(&mut self) -> anyhow::Result<()> {
        let (grpc, console) = self
            .crash_and_restart(2, "gateway", "gateway listening on ")
            .await?;
        self.grpc = grpc.replace("grpc://", "http://");
        self.console = console;
        Ok(())
    }

    /// Kills `communication` (SIGKILL: no graceful shutdown) and starts it again on the same
    /// settings; returns once the new process is ready. Its HTTP address changes.
    pub async fn crash_and_restart_communication(&mut self) -> anyhow::Result<()> {
        (self.http, _) = self
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
    ) -> anyhow::Result<(String, String)> {
        self._children[index].kill().await?;
        let envs: Vec<(&str, String)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let started = spawn(name, &envs, marker).await?;
        self._children[index] = started.child;
        self.ops[index] = started.ops;
        Ok((started.addr, started.console))
    }
}

impl Engine {
    /// The environment the services were started with (after the test's own, when inherited).
    pub fn envs(&self) -> &[(String, String)] {
        &self.envs
    }

    /// The files in the engine's attachment store (a `file://` directory), every level down.
    pub fn stored_objects(&self) -> anyhow::Result<Vec<PathBuf>> {
        let url = self
            .envs
            .iter()
            .rev()
            .find(|(k, _)| k == "INBOX_ATTACHMENT_STORE")
            .map(|(_, v)| v.clone())
            .context("no attachment store")?;
        let root = PathBuf::from(url.trim_start_matches("file://"));
        let mut found = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries {
                let path = e?.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    found.push(path);
                }
            }
        }
        Ok(found)
    }

    /// The ops listener of `service` (`http://host:port`: `/livez`, `/readyz`, `/metrics`).
    pub fn ops(&self, service: Service) -> &str {
        &self.ops[service as usize]
    }

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
        let communication = spawn("communication", &envs, "communication listening on ").await?;
        self._children[1] = communication.child;
        self.ops[1] = communication.ops;
        self.http = communication.addr;
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

pub use testkit::eventually;

/// The client id of a web client whose token's subject is `subject` (a fresh identity of the
/// engine's one identity provider).
pub fn web_client(subject: &str) -> String {
    tickets::domain::web_client_id("", subject, false)
}

/// A second instance of each service on the same database, topics and task queue.
pub struct Replicas {
    pub http: String,
    pub grpc: String,
    pub console: String,
    children: Vec<Child>,
    ops: [String; 3],
}

impl Replicas {
    /// Process ids (workflow, communication, gateway).
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.children.iter().map(Child::id).collect()
    }
}

impl Engine {
    /// The value of a setting the services were started with.
    pub fn env(&self, key: &str) -> Option<String> {
        self.envs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// Starts a second instance of each service with the same settings (scale-out).
    pub async fn start_replicas(&self) -> anyhow::Result<Replicas> {
        let envs: Vec<(&str, String)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let workflow = spawn("workflow", &envs, "workflow service ready").await?;
        let communication = spawn("communication", &envs, "communication listening on ").await?;
        let gateway = spawn("gateway", &envs, "gateway listening on ").await?;
        Ok(Replicas {
            http: communication.addr,
            grpc: gateway.addr.replace("grpc://", "http://"),
            console: gateway.console,
            children: vec![workflow.child, communication.child, gateway.child],
            ops: [workflow.ops, communication.ops, gateway.ops],
        })
    }

    /// SIGKILLs the first instance of every service; the replicas carry on and `http`/`grpc` now
    /// point at them (call `Load::follow` so clients and managers reconnect there).
    pub async fn kill_first_instances(&mut self, replicas: Replicas) -> anyhow::Result<()> {
        for child in &mut self._children {
            child.kill().await?;
        }
        self._children = replicas.children;
        self.ops = replicas.ops;
        self.http = replicas.http;
        self.grpc = replicas.grpc;
        self.console = replicas.console;
        Ok(())
    }
}

impl Engine {
    /// Sends `service` (`workflow`, `communication` or `gateway`) SIGTERM, as Kubernetes does,
    /// and waits at most `within` for it to exit; returns its exit status.
    pub async fn terminate(
        &mut self,
        service: &str,
        within: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let index = ["workflow", "communication", "gateway"]
            .iter()
            .position(|s| *s == service)
            .with_context(|| format!("no service {service}"))?;
        let child = &mut self._children[index];
        let pid = child
            .id()
            .with_context(|| format!("{service} is not running"))?;
        // `kill` rather than libc: the workspace forbids unsafe code.
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        tokio::time::timeout(within, child.wait())
            .await
            .with_context(|| format!("{service} did not exit within {within:?} of SIGTERM"))?
            .map_err(Into::into)
    }
}

/// Waits (at most `within`) for the WebSocket's close frame, skipping the events before it.
pub async fn ws_close_frame<S>(
    ws: &mut S,
    within: Duration,
) -> anyhow::Result<Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>>
where
    S: futures::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures::StreamExt;
    tokio::time::timeout(within, async {
        while let Some(frame) = ws.next().await {
            if let tokio_tungstenite::tungstenite::Message::Close(frame) = frame? {
                return Ok(frame);
            }
        }
        bail!("the WebSocket ended without a close frame")
    })
    .await
    .with_context(|| format!("no close frame within {within:?}"))?
}

/// Waits (at most `within`) for a gRPC stream to end with a status, skipping its items.
pub async fn stream_end_status<S, T>(
    stream: &mut S,
    within: Duration,
) -> anyhow::Result<tonic::Status>
where
    S: futures::Stream<Item = Result<T, tonic::Status>> + Unpin,
{
    use futures::StreamExt;
    tokio::time::timeout(within, async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return Ok(status),
                None => bail!("the stream ended without a status"),
            }
        }
    })
    .await
    .with_context(|| format!("the stream did not end within {within:?}"))?
}
