//! A stack of its own for a test that stops and restarts PostgreSQL, the Temporal dev server and the
//! broker (Tansu): the shared dev stack serves every other test running in parallel, so it is never
//! touched. Everything lives in a temporary directory and listens on free loopback ports chosen
//! outside the kernel's ephemeral range (so no outgoing connection can take a port while its
//! component is down); the ports stay the same across restarts, so the services keep their URLs.
//!
//! The recipes (and their pitfalls) are those of `scripts/stack.sh`: `initdb`/`pg_ctl` as the
//! `postgres` user with every parent directory traversable, `fsync=off`; the Temporal dev server on
//! an SQLite file with WAL, so its state survives a restart; Tansu on SQLite in its own directory
//! with a clean environment.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::Connection;
use tokio::process::{Child, Command};

use crate::Stack;

/// How long a component may take to become ready or to stop.
const READY: Duration = Duration::from_secs(60);
const STOP: Duration = Duration::from_secs(20);
/// Pause between readiness probes (pacing of a poll that has its own deadline).
const PROBE: Duration = Duration::from_millis(100);

/// How a component goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM (PostgreSQL: `pg_ctl -m fast`): it closes its connections and flushes its state.
    Graceful,
    /// SIGKILL (PostgreSQL: `pg_ctl -m immediate`, which is a crash of every backend followed by
    /// WAL recovery at the next start; a SIGKILLed postmaster would leave orphan backends holding
    /// its shared memory, which is an operator's problem, not a crash of the database).
    Crash,
}

/// One daemon of the stack that runs as a child of the test.
pub(crate) struct Daemon {
    pub(crate) name: &'static str,
    pub(crate) child: Option<Child>,
    pub(crate) log: PathBuf,
}

impl Daemon {
    pub(crate) async fn stop(&mut self, how: Stop) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if how == Stop::Graceful {
            if let Some(pid) = child.id() {
                // `kill` rather than libc: the workspace forbids unsafe code.
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            if tokio::time::timeout(STOP, child.wait()).await.is_ok() {
                return Ok(());
            }
            eprintln!(
                "[private-stack] {} did not exit {STOP:?} after SIGTERM: SIGKILL",
                self.name
            );
        }
        child.kill().await.context(self.name)?;
        Ok(())
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
    /// Starts `cmd` with its output appended to the daemon's log.
    pub(crate) fn spawn(&mut self, cmd: &mut Command) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    /// Polls `ready` until it holds; fails (with the log's tail) if the daemon exits or [`READY`]
    /// passes first.
    pub(crate) async fn wait_ready<F: Future<Output = bool>>(
        &mut self,
        mut ready: impl FnMut() -> F,
    ) -> anyhow::Result<()> {
        let mut poll = testkit::Poll::new(READY, PROBE);
        while poll.next().await {
            if ready().await {
                return Ok(());
            }
            if let Some(st) = self.exited() {
                bail!(
                    "{} exited during start-up ({st})\n{}",
                    self.name,
                    tail(&self.log)
                );
            }
        }
        bail!(
            "{} not ready after {READY:?}\n{}",
            self.name,
            tail(&self.log)
        )
    }
}

/// The last lines of a log file, for an error message.
pub(crate) fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(30);
    format!("---- {} ----\n{}", path.display(), lines[from..].join("\n"))
}

pub(crate) fn require_binary(path: &Path, var: &str) -> anyhow::Result<PathBuf> {
    if !path.is_file() {
        bail!(
            "{} is missing (set {var}, or run the tests with `make test`, which installs it and \
             exports its path via `scripts/stack.sh env`)",
            path.display()
        );
    }
    Ok(path.to_owned())
}

pub(crate) fn binary_from_env(var: &str, default: &str) -> anyhow::Result<PathBuf> {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let path = std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.replace("$HOME", &home));
    require_binary(Path::new(&path), var)
}

/// A free loopback port below the ephemeral range, so that while its component is down no
/// outgoing connection (ours or Temporal's internal ones) is given it.
pub(crate) fn free_port(taken: &[u16]) -> anyhow::Result<u16> {
    crate::free_port_except(taken)
}

pub(crate) async fn run_checked(cmd: &mut Command, what: &str, log: &Path) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(log)
        );
    }
    Ok(())
}

/// Whether this process runs as root (then PostgreSQL's tools run as the `postgres` user).
pub(crate) fn running_as_root() -> anyhow::Result<bool> {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .context("running id -u")
}

/// PostgreSQL 15 cluster owned by the `postgres` user (initdb refuses to run as root).
pub(crate) struct Postgres {
    pub(crate) bin: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
    pub(crate) as_root: bool,
    /// The superuser connects over the Unix socket (in `dir`) rather than TCP: a cluster whose TCP
    /// connections all need TLS and a password (`secure_stack`).
    pub(crate) admin_over_socket: bool,
    /// Every commit reaches the disk (`fsync`, `full_page_writes`, `synchronous_commit` on);
    /// test clusters run without (their data is disposable).
    pub(crate) durable: bool,
}

impl Postgres {
    pub(crate) fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `pg_ctl stop -m <mode>` from a `Drop` (blocking, errors ignored): the postmaster is not a
    /// child of the test, so it does not die with it.
    pub(crate) fn stop_from_drop(&self, mode: &str) {
        let _ = self
            .std_command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", mode, "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn log(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// `tool args...`, as the `postgres` user when we are root, from `/` (runuser keeps the working
    /// directory, which that user may not be able to enter).
    pub(crate) fn std_command(&self, tool: &str) -> std::process::Command {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            std::process::Command::new(exe)
        };
        cmd.current_dir("/");
        cmd
    }

    fn command(&self, tool: &str) -> Command {
        Command::from(self.std_command(tool))
    }

    pub(crate) async fn init(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        if self.as_root {
            // Every directory above the cluster must be traversable by the postgres user.
            let mut dirs: Vec<&Path> = self.dir.ancestors().skip(1).collect();
            dirs.reverse();
            for d in dirs {
                let ok = std::process::Command::new("runuser")
                    .args(["-u", "postgres", "--", "test", "-x"])
                    .arg(d)
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    bail!(
                        "the postgres user cannot enter {} (needed to reach {}): chmod o+x it",
                        d.display(),
                        self.dir.display()
                    );
                }
            }
            let st = std::process::Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&self.dir)
                .status()?;
            if !st.success() {
                bail!("chown postgres {} failed", self.dir.display());
            }
        }
        run_checked(
            self.command("initdb").arg("-D").arg(self.data()).args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
            ]),
            "initdb",
            &self.log(),
        )
        .await
    }

    pub(crate) async fn start(&self) -> anyhow::Result<()> {
        // fsync off: disposable data; a crash of the server process (not of the OS) loses nothing.
        let durability = if self.durable {
            "-c fsync=on -c full_page_writes=on -c synchronous_commit=on"
        } else {
            "-c fsync=off -c full_page_writes=off"
        };
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 {durability}",
            self.port,
            self.dir.display()
        );
        run_checked(
            self.command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.log())
                .args(["-w", "-t", "60", "-o", &opts, "start"])
                .stdout(Stdio::null()),
            "pg_ctl start",
            &self.log(),
        )
        .await?;
        let url = self.url();
        let mut poll = testkit::Poll::new(READY, PROBE);
        let mut last = String::new();
        while poll.next().await {
            match sqlx::PgConnection::connect(&url).await {
                Ok(c) => {
                    let _ = c.close().await;
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
        }
        bail!(
            "postgres not ready after {READY:?}: {last}\n{}",
            tail(&self.log())
        )
    }

    async fn stop(&self, how: Stop) -> anyhow::Result<()> {
        let mode = match how {
            Stop::Graceful => "fast",
            Stop::Crash => "immediate",
        };
        // -w waits until postmaster.pid is gone, which the postmaster removes on any exit it
        // controls, immediate included; a start right after does not trip over a stale pid file.
        run_checked(
            self.command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", mode, "-w", "-t", "60", "stop"])
                .stdout(Stdio::null()),
            "pg_ctl stop",
            &self.log(),
        )
        .await
    }

    /// The superuser's URL (how the readiness check and the tests' admin connect).
    pub(crate) fn url(&self) -> String {
        if self.admin_over_socket {
            format!(
                "postgres://postgres@localhost:{}/postgres?host={}&sslmode=disable",
                self.port,
                self.dir.display()
            )
        } else {
            format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
        }
    }
}

/// PostgreSQL, Temporal and the broker of one test. Dropping it kills all three and removes the
/// directory (kept when the test panics, or with `INBOX_KEEP_PRIVATE_STACK=1`).
pub struct PrivateStack {
    dir: PathBuf,
    pg: Postgres,
    pg_running: bool,
    temporal_bin: PathBuf,
    temporal_ports: [u16; 3],
    temporal: Daemon,
    tansu_bin: PathBuf,
    kafka_port: u16,
    kafka: Daemon,
    stack: Stack,
}

/// Where the stack's components are installed (`scripts/stack.sh install`).
pub(crate) struct Binaries {
    pub(crate) pg_bin: PathBuf,
    pub(crate) tansu_bin: PathBuf,
    pub(crate) temporal_bin: PathBuf,
}

impl Binaries {
    /// Fails loudly when one is missing.
    pub(crate) fn find() -> anyhow::Result<Self> {
        let pg_bin = PathBuf::from(
            std::env::var("INBOX_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
        );
        require_binary(&pg_bin.join("initdb"), "INBOX_PG_BIN")?;
        require_binary(&pg_bin.join("pg_ctl"), "INBOX_PG_BIN")?;
        Ok(Self {
            pg_bin,
            tansu_bin: binary_from_env(
                "INBOX_TANSU_BIN",
                "$HOME/.cache/inbox-engine/tansu/bin/tansu",
            )?,
            temporal_bin: binary_from_env(
                "INBOX_TEMPORAL_BIN",
                "$HOME/.cache/inbox-engine/venv/bin/temporal",
            )?,
        })
    }
}

impl PrivateStack {
    /// Starts the three components; fails loudly (with the log's tail) if a binary is missing or a
    /// component is not ready in time.
    pub async fn start() -> anyhow::Result<Self> {
        let Binaries {
            pg_bin,
            tansu_bin,
            temporal_bin,
        } = Binaries::find()?;
        let as_root = running_as_root()?;

        let dir = std::env::temp_dir().join(format!(
            "inbox-private-stack-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        let pg_port = free_port(&[])?;
        let kafka_port = free_port(&[pg_port])?;
        let t0 = free_port(&[pg_port, kafka_port])?;
        let t1 = free_port(&[pg_port, kafka_port, t0])?;
        let t2 = free_port(&[pg_port, kafka_port, t0, t1])?;
        let defaults = Stack::dev_defaults();
        let mut me = Self {
            pg: Postgres {
                bin: pg_bin,
                dir: dir.join("pg"),
                port: pg_port,
                as_root,
                admin_over_socket: false,
                durable: false,
            },
            pg_running: false,
            temporal_bin,
            temporal_ports: [t0, t1, t2],
            temporal: Daemon {
                name: "temporal",
                child: None,
                log: dir.join("temporal.log"),
            },
            tansu_bin,
            kafka_port,
            kafka: Daemon {
                name: "tansu",
                child: None,
                log: dir.join("kafka.log"),
            },
            stack: Stack {
                database_url: format!("postgres://postgres@127.0.0.1:{pg_port}/postgres"),
                kafka_brokers: format!("127.0.0.1:{kafka_port}"),
                temporal_url: format!("http://127.0.0.1:{t0}"),
                ..defaults
            },
            dir,
        };
        // PostgreSQL first: Temporal binds ephemeral ports for its internal services.
        me.pg.init().await?;
        me.start_postgres().await?;
        me.start_temporal().await?;
        me.start_kafka().await?;
        Ok(me)
    }

    /// The endpoints, for [`crate::Engine::start_with`].
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub async fn start_postgres(&mut self) -> anyhow::Result<()> {
        self.pg.start().await?;
        self.pg_running = true;
        Ok(())
    }

    pub async fn stop_postgres(&mut self, how: Stop) -> anyhow::Result<()> {
        self.pg.stop(how).await?;
        self.pg_running = false;
        Ok(())
    }

    pub async fn start_temporal(&mut self) -> anyhow::Result<()> {
        let [port, http, metrics] = self.temporal_ports;
        self.temporal.spawn(
            Command::new(&self.temporal_bin)
                .args(["server", "start-dev", "--headless", "--db-filename"])
                .arg(self.dir.join("temporal.db"))
                .args(["--port", &port.to_string()])
                .args(["--http-port", &http.to_string()])
                .args(["--metrics-port", &metrics.to_string()])
                .args(["--ip", "127.0.0.1", "--log-level", "warn"])
                // WAL: a killed server keeps every committed transaction (only an OS crash loses).
                .args(["--sqlite-pragma", "journal_mode=wal"])
                .args(["--sqlite-pragma", "synchronous=normal"])
                .current_dir(&self.dir),
        )?;
        let address = format!("127.0.0.1:{port}");
        let bin = self.temporal_bin.clone();
        self.temporal
            .wait_ready(|| {
                let health = Command::new(&bin)
                    .args(["operator", "cluster", "health", "--address", &address])
                    .stdin(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .output();
                async move {
                    matches!(
                        tokio::time::timeout(Duration::from_secs(5), health).await,
                        Ok(Ok(out)) if String::from_utf8_lossy(&out.stdout).contains("SERVING")
                    )
                }
            })
            .await
    }

    pub async fn stop_temporal(&mut self, how: Stop) -> anyhow::Result<()> {
        self.temporal.stop(how).await
    }

    pub async fn start_kafka(&mut self) -> anyhow::Result<()> {
        let dir = self.dir.join("kafka");
        std::fs::create_dir_all(&dir)?;
        let url = format!("tcp://127.0.0.1:{}", self.kafka_port);
        // A clean environment and a directory of its own: tansu reads LISTENER_URL,
        // STORAGE_ENGINE, ... and a ./.env.
        self.kafka.spawn(
            Command::new(&self.tansu_bin)
                .env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .env(
                    "HOME",
                    std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
                )
                // A panic in its storage task leaves the broker listening but dead: say where.
                .env("RUST_BACKTRACE", "1")
                .args(["broker", "--listener-url", &url])
                // Without the advertised URL equal to the listener's, clients hang silently.
                .args(["--advertised-listener-url", &url])
                .args(["--storage-engine", "sqlite://tansu.db"])
                .current_dir(&dir),
        )?;
        let port = self.kafka_port;
        self.kafka
            .wait_ready(|| async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            })
            .await
    }

    pub async fn stop_kafka(&mut self, how: Stop) -> anyhow::Result<()> {
        self.kafka.stop(how).await
    }

    pub async fn restart_postgres(&mut self, how: Stop) -> anyhow::Result<()> {
        self.stop_postgres(how).await?;
        self.start_postgres().await
    }

    pub async fn restart_temporal(&mut self, how: Stop) -> anyhow::Result<()> {
        self.stop_temporal(how).await?;
        self.start_temporal().await
    }

    pub async fn restart_kafka(&mut self, how: Stop) -> anyhow::Result<()> {
        self.stop_kafka(how).await?;
        self.start_kafka().await
    }
}

/// A durable PostgreSQL cluster of its own (every commit flushed to disk), in a temporary
/// directory on a free loopback port: what `make bench` measures against, since the dev cluster
/// runs `fsync=off`. Dropping it stops the cluster and removes the directory.
pub struct DurablePostgres {
    pg: Postgres,
}

impl DurablePostgres {
    pub async fn start() -> anyhow::Result<Self> {
        let pg_bin = Binaries::find()?.pg_bin;
        let as_root = running_as_root()?;
        let dir = std::env::temp_dir().join(format!(
            "inbox-durable-pg-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let me = Self {
            pg: Postgres {
                bin: pg_bin,
                dir,
                port: free_port(&[])?,
                as_root,
                admin_over_socket: false,
                durable: true,
            },
        };
        me.pg.init().await?;
        me.pg.start().await?;
        Ok(me)
    }

    /// The superuser's URL.
    pub fn url(&self) -> String {
        self.pg.url()
    }

    /// The postmaster's pid file (its first line is the pid; the backends are its children).
    pub fn pid_file(&self) -> PathBuf {
        self.pg.data().join("postmaster.pid")
    }
}

impl Drop for DurablePostgres {
    fn drop(&mut self) {
        self.pg.stop_from_drop("fast");
        let _ = std::fs::remove_dir_all(&self.pg.dir);
    }
}

impl Drop for PrivateStack {
    fn drop(&mut self) {
        // The daemons die with their `Child` (kill_on_drop); the postmaster is not our child.
        if self.pg_running {
            self.pg.stop_from_drop("immediate");
        }
        for d in [&mut self.temporal, &mut self.kafka] {
            if let Some(c) = d.child.as_mut() {
                let _ = c.start_kill();
            }
        }
        if std::thread::panicking() || std::env::var_os("INBOX_KEEP_PRIVATE_STACK").is_some() {
            eprintln!(
                "[private-stack] logs and data kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
