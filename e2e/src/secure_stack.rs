//! The engine's dependencies as a production deployment reaches them, on loopback: TLS on every
//! connection, every certificate from one test CA, passwords or client certificates everywhere.
//! For the test of the production profile (`e2e/tests/production.rs`).
//!
//! - **PostgreSQL 15**, a cluster of its own (started as in [`crate::private_stack`]): TLS only
//!   (`hostssl ... scram-sha-256`; every plain TCP connection is rejected by `hostnossl ...
//!   reject`), a role `inbox` with a password owning database `inbox`. The superuser connects over
//!   the Unix socket only.
//! - **Tansu 0.6.0**, a broker of its own, with SASL SCRAM-SHA-512 required (`--authentication`).
//!   Tansu has no working TLS (its `--cert`/`--key` are parsed but the listener never uses them),
//!   so an nginx `stream` proxy terminates TLS in front of it and Tansu advertises the proxy's
//!   address. `tansu user create` speaks no SASL: the user is created while the broker runs
//!   without `--authentication`, then the broker restarts with it on the same SQLite file.
//! - **The shared stack's Temporal** (`INBOX_TEMPORAL_URL`; the dev server has no TLS) behind nginx
//!   `grpc_pass` with TLS and a client certificate required (mutual TLS).
//!
//! nginx (Debian `nginx-light` + `libnginx-mod-stream`, from `scripts/stack.sh install`) runs in
//! the foreground (`daemon off`) as a child of the test, with a prefix, pid file, logs and temp
//! paths inside the stack's directory.
//!
//! Tansu limit: it announces 60 s SASL sessions but rejects re-authentication (KIP-368), so
//! librdkafka drops each connection at ~54 s, logs in again and reports transient
//! `_AUTHENTICATION` / `_ALL_BROKERS_DOWN` errors meanwhile.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::Connection;
use tokio::process::Command;

use crate::private_stack::{Binaries, Daemon, Postgres, Stop, free_port, run_checked};

/// A PostgreSQL role that logs in with a client certificate only.
const CERT_USER: &str = "inbox_cert";

/// The PostgreSQL role and database, and the Kafka (SASL) user of the engine; also the CN of the
/// client certificate the engine presents to Temporal.
pub const USER: &str = "inbox";

const NGINX: &str = "/usr/sbin/nginx";
const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// Files of the test CA ([`crate::certs`]).
#[derive(Debug, Clone)]
pub struct Certs {
    pub ca: PathBuf,
    /// Server certificate for `localhost` and `127.0.0.1`, signed by `ca`.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Client certificate, CN = [`USER`], signed by `ca`.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// PostgreSQL, the broker and the TLS proxies of one test; dropping it stops them all and removes
/// the directory (kept when the test panics, or with `INBOX_KEEP_PRIVATE_STACK=1`).
pub struct SecureStack {
    dir: PathBuf,
    certs: Certs,
    pg: Postgres,
    pg_running: bool,
    kafka: Daemon,
    nginx: Daemon,
    /// Tansu's own (plain, SASL) listener; clients go through `kafka_tls_port`.
    kafka_port: u16,
    kafka_tls_port: u16,
    temporal_tls_port: u16,
    /// Temporal over TLS with an API key instead of a client certificate (Temporal Cloud style).
    temporal_api_key_port: u16,
    temporal_api_key: String,
    database_password: String,
    kafka_password: String,
}

/// A free loopback port (below the ephemeral range), free on `::1` too when the host has IPv6:
/// `localhost` may resolve to `::1` first, so the proxies listen on both.
fn free_dual_port(taken: &[u16], ipv6: bool) -> anyhow::Result<u16> {
    let mut taken = taken.to_vec();
    for _ in 0..50 {
        let port = free_port(&taken)?;
        if !ipv6 || std::net::TcpListener::bind(("::1", port)).is_ok() {
            return Ok(port);
        }
        taken.push(port);
    }
    bail!("no loopback port free on both 127.0.0.1 and ::1")
}

impl SecureStack {
    /// Starts everything and checks each endpoint the way the engine will use it (a TLS login to
    /// PostgreSQL, a topic created over SASL_SSL, a Temporal health check over mutual TLS); fails
    /// loudly (with the log's tail) when a tool is missing or a component is not ready in time.
    pub async fn start() -> anyhow::Result<Self> {
        let Binaries {
            pg_bin,
            tansu_bin,
            temporal_bin,
        } = Binaries::find()?;
        for (file, what) in [
            (NGINX, "nginx (Debian nginx-light)"),
            (
                NGINX_STREAM_MODULE,
                "nginx's stream module (libnginx-mod-stream)",
            ),
        ] {
            if !Path::new(file).is_file() {
                bail!("{file} is missing: install {what} with `scripts/stack.sh install`");
            }
        }
        let as_root = crate::private_stack::running_as_root()?;
        let temporal_upstream = crate::Stack::dev_defaults()
            .temporal_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();

        let dir = std::env::temp_dir().join(format!(
            "inbox-secure-stack-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(dir.join("certs"))?;
        let (ca, server_cert, server_key) = crate::certs::make_certificates(&dir.join("certs"))?;
        let (client_cert, client_key) =
            crate::certs::make_client_certificate(&dir.join("certs"), USER)?;
        let certs = Certs {
            ca,
            server_cert,
            server_key,
            client_cert,
            client_key,
        };
        let ipv6 = std::net::TcpListener::bind(("::1", 0)).is_ok();
        let pg_port = free_port(&[])?;
        let kafka_port = free_port(&[pg_port])?;
        let kafka_tls_port = free_dual_port(&[pg_port, kafka_port], ipv6)?;
        let temporal_tls_port = free_dual_port(&[pg_port, kafka_port, kafka_tls_port], ipv6)?;
        let temporal_api_key_port = free_dual_port(
            &[pg_port, kafka_port, kafka_tls_port, temporal_tls_port],
            ipv6,
        )?;
        let mut me = Self {
            pg: Postgres {
                bin: pg_bin,
                dir: dir.join("pg"),
                port: pg_port,
                as_root,
                admin_over_socket: true,
                durable: false,
            },
            pg_running: false,
            kafka: Daemon {
                name: "tansu",
                child: None,
                log: dir.join("kafka.log"),
            },
            nginx: Daemon {
                name: "nginx",
                child: None,
                log: dir.join("nginx.log"),
            },
            kafka_port,
            kafka_tls_port,
            temporal_tls_port,
            temporal_api_key_port,
            temporal_api_key: uuid::Uuid::new_v4().simple().to_string(),
            database_password: uuid::Uuid::new_v4().simple().to_string(),
            kafka_password: uuid::Uuid::new_v4().simple().to_string(),
            certs,
            dir,
        };
        me.start_postgres().await?;
        me.start_kafka(&tansu_bin).await?;
        me.start_nginx(&temporal_upstream, ipv6).await?;
        me.check_kafka().await?;
        me.check_temporal(&temporal_bin).await?;
        Ok(me)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn certs(&self) -> &Certs {
        &self.certs
    }

    /// The engine's database URL (verified TLS; the password is separate:
    /// `INBOX_DATABASE_PASSWORD`), with `ca` as the trusted root.
    pub fn database_url_with_ca(&self, ca: &Path) -> String {
        format!(
            "postgres://{USER}@localhost:{}/{USER}?sslmode=verify-full&sslrootcert={}",
            self.pg.port,
            ca.display()
        )
    }

    pub fn database_url(&self) -> String {
        self.database_url_with_ca(&self.certs.ca)
    }

    /// A database URL for the role that logs in with a client certificate (`sslcert`/`sslkey`,
    /// no password); without the certificate when `with_cert` is false.
    pub fn database_url_with_client_certificate(&self, with_cert: bool) -> anyhow::Result<String> {
        let mut url = format!(
            "postgres://{CERT_USER}@localhost:{}/{USER}?sslmode=verify-full&sslrootcert={}",
            self.pg.port,
            self.certs.ca.display()
        );
        if with_cert {
            let (cert, key) =
                crate::certs::make_client_certificate(&self.dir.join("certs"), CERT_USER)?;
            url.push_str(&format!(
                "&sslcert={}&sslkey={}",
                cert.display(),
                key.display()
            ));
        }
        Ok(url)
    }

    /// The superuser, over the Unix socket (for checks the engine's role may not make).
    pub fn admin_url(&self) -> String {
        self.pg.url()
    }

    /// Temporal through the API-key endpoint: TLS with the test CA, `api_key` as the key.
    pub fn temporal_with_api_key(
        &self,
        api_key: Option<&str>,
    ) -> anyhow::Result<platform::settings::temporal::TemporalSettings> {
        let mut t = platform::settings::temporal::TemporalSettings::plain(
            format!("https://localhost:{}", self.temporal_api_key_port).parse()?,
            "api-key-check",
        );
        t.ca_file = Some(self.certs.ca.clone());
        t.api_key = api_key.map(|k| platform::settings::SecretString::from(k.to_owned()));
        Ok(t)
    }

    /// The key the API-key endpoint takes.
    pub fn temporal_api_key(&self) -> &str {
        &self.temporal_api_key
    }

    /// The engine's settings for these endpoints: PostgreSQL, Kafka and Temporal, each over TLS.
    pub fn engine_env(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Path| p.display().to_string();
        vec![
            ("INBOX_DATABASE_URL", self.database_url()),
            ("INBOX_DATABASE_PASSWORD", self.database_password.clone()),
            (
                "INBOX_KAFKA_BROKERS",
                format!("localhost:{}", self.kafka_tls_port),
            ),
            ("INBOX_KAFKA_SECURITY_PROTOCOL", "sasl_ssl".into()),
            ("INBOX_KAFKA_CA_FILE", path(&self.certs.ca)),
            ("INBOX_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".into()),
            ("INBOX_KAFKA_SASL_USERNAME", USER.into()),
            ("INBOX_KAFKA_SASL_PASSWORD", self.kafka_password.clone()),
            // One broker: no replicas; one partition per topic keeps Tansu's polling cost low.
            ("INBOX_KAFKA_PARTITIONS", "1".into()),
            ("INBOX_KAFKA_REPLICATION", "1".into()),
            (
                "INBOX_TEMPORAL_URL",
                format!("https://localhost:{}", self.temporal_tls_port),
            ),
            ("INBOX_TEMPORAL_CA_FILE", path(&self.certs.ca)),
            ("INBOX_TEMPORAL_CERT_FILE", path(&self.certs.client_cert)),
            ("INBOX_TEMPORAL_KEY_FILE", path(&self.certs.client_key)),
        ]
    }

    async fn start_postgres(&mut self) -> anyhow::Result<()> {
        // The server's files sit next to the cluster, so init() hands them to the postgres user;
        // PostgreSQL reads its key only when nobody else can (0600).
        let tls = self.pg.dir.join("tls");
        std::fs::create_dir_all(&tls)?;
        for (from, to) in [
            (&self.certs.server_cert, "server.crt"),
            (&self.certs.server_key, "server.key"),
            (&self.certs.ca, "root.crt"),
        ] {
            std::fs::copy(from, tls.join(to))
                .with_context(|| format!("copying {}", from.display()))?;
        }
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                tls.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )?;
        }
        self.pg.init().await?;
        let data = self.pg.data();
        let t = |f: &str| tls.join(f).display().to_string();
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?;
        std::io::Write::write_all(
            &mut conf,
            format!(
                "\n# secure_stack: TLS only\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n\
                 ssl_ca_file = '{}'\nssl_min_protocol_version = 'TLSv1.2'\n\
                 password_encryption = 'scram-sha-256'\n",
                t("server.crt"),
                t("server.key"),
                t("root.crt"),
            )
            .as_bytes(),
        )?;
        // The first matching line wins: the superuser over the socket only; the engine's role
        // over TLS with its password; anything else over TCP without TLS is rejected.
        std::fs::write(
            data.join("pg_hba.conf"),
            format!(
                "local all postgres trust\n\
                 hostssl {USER} {USER} 127.0.0.1/32 scram-sha-256\n\
                 hostssl {USER} {USER} ::1/128 scram-sha-256\n\
                 hostssl {USER} {CERT_USER} 127.0.0.1/32 cert\n\
                 hostssl {USER} {CERT_USER} ::1/128 cert\n\
                 hostnossl all all 0.0.0.0/0 reject\n\
                 hostnossl all all ::/0 reject\n"
            ),
        )?;
        self.pg.start().await?;
        self.pg_running = true;
        let mut admin = sqlx::PgConnection::connect(&self.pg.url()).await?;
        sqlx::query(&format!(
            "CREATE ROLE {USER} LOGIN PASSWORD '{}'",
            self.database_password
        ))
        .execute(&mut admin)
        .await?;
        sqlx::query(&format!("CREATE DATABASE {USER} OWNER {USER}"))
            .execute(&mut admin)
            .await?;
        // A role that logs in with a client certificate (CN = role) and no password.
        sqlx::query(&format!("CREATE ROLE {CERT_USER} LOGIN"))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        // The engine's way in: verified TLS, its password.
        let options: sqlx::postgres::PgConnectOptions = self.database_url().parse()?;
        let mut conn = sqlx::PgConnection::connect_with(&options.password(&self.database_password))
            .await
            .context("a TLS login of the engine's role")?;
        let ssl: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&mut conn)
                .await?;
        if !ssl {
            bail!("the engine's connection to PostgreSQL is not TLS");
        }
        conn.close().await?;
        Ok(())
    }

    fn tansu(&self, bin: &Path) -> Command {
        // A clean environment and a directory of its own: tansu reads LISTENER_URL,
        // STORAGE_ENGINE, ... and a ./.env.
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env(
                "HOME",
                std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
            )
            .env("RUST_BACKTRACE", "1")
            .current_dir(self.dir.join("kafka"));
        cmd
    }

    async fn run_tansu(&mut self, bin: &Path, advertised: &str, auth: bool) -> anyhow::Result<()> {
        // An IP, not a name: a host name makes Tansu bind every interface.
        let listener = format!("tcp://127.0.0.1:{}", self.kafka_port);
        let mut cmd = self.tansu(bin);
        cmd.args(["broker", "--listener-url", &listener])
            .args(["--advertised-listener-url", advertised])
            .args(["--storage-engine", "sqlite://tansu.db"]);
        if auth {
            cmd.arg("--authentication");
        }
        self.kafka.spawn(&mut cmd)?;
        let port = self.kafka_port;
        self.kafka
            .wait_ready(|| async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            })
            .await
    }

    async fn start_kafka(&mut self, bin: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.dir.join("kafka"))?;
        // 1. Without authentication, to create the SCRAM user.
        let plain = format!("tcp://127.0.0.1:{}", self.kafka_port);
        self.run_tansu(bin, &plain, false).await?;
        run_checked(
            self.tansu(bin)
                .args([
                    "user",
                    "create",
                    "--broker",
                    &plain,
                    USER,
                    &self.kafka_password,
                ])
                .args(["--mechanism", "scram512"]),
            "tansu user create",
            &self.kafka.log,
        )
        .await?;
        self.kafka.stop(Stop::Graceful).await?;
        // 2. With authentication required, advertising the TLS proxy (clients that were handed
        // the plain listener would bypass TLS, or hang).
        let advertised = format!("tcp://localhost:{}", self.kafka_tls_port);
        self.run_tansu(bin, &advertised, true).await
    }

    async fn start_nginx(&mut self, temporal: &str, ipv6: bool) -> anyhow::Result<()> {
        let n = self.dir.join("nginx");
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(n.join("tmp").join(sub))?;
        }
        let p = |x: &Path| x.display().to_string();
        let listen = |port: u16, extra: &str| {
            let mut l = format!("listen 127.0.0.1:{port} ssl{extra};");
            if ipv6 {
                l.push_str(&format!(" listen [::1]:{port} ssl{extra};"));
            }
            l
        };
        let (cert, key, ca) = (
            p(&self.certs.server_cert),
            p(&self.certs.server_key),
            p(&self.certs.ca),
        );
        let tmp = p(&n.join("tmp"));
        let conf = format!(
            r#"load_module {NGINX_STREAM_MODULE};
daemon off;
worker_processes 1;
pid {pid};
error_log {log} warn;
events {{ worker_connections 256; }}

# Kafka: TLS in front of Tansu (SASL runs end to end between the client and the broker).
stream {{
  ssl_certificate     {cert};
  ssl_certificate_key {key};
  ssl_protocols TLSv1.2 TLSv1.3;
  proxy_timeout 1h;                 # idle Kafka connections (default 10 min)
  server {{ {kafka_listen} proxy_pass 127.0.0.1:{kafka}; }}
}}

# Temporal: gRPC over TLS with a client certificate required, to the plain dev server.
http {{
  access_log {access};
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  upstream temporal {{ server {temporal}; keepalive 16; }}
  # Workers' long polls (~60-70 s) outlive nginx's 60 s defaults.
  grpc_read_timeout 300s; grpc_send_timeout 300s; client_body_timeout 300s;
  client_max_body_size 0;
  keepalive_timeout 600s;
  ssl_certificate     {cert};
  ssl_certificate_key {key};
  ssl_protocols TLSv1.2 TLSv1.3;
  server {{
    {temporal_listen}
    ssl_client_certificate {ca};
    ssl_verify_client on;
    ssl_verify_depth 2;
    # nginx completes the handshake without a certificate and answers HTTP 496 (none) or 495
    # (bad): answer as gRPC, UNAUTHENTICATED.
    error_page 495 496 = @unauthenticated;
    location @unauthenticated {{
      internal;
      default_type application/grpc;
      add_header grpc-status 16 always;
      add_header grpc-message "client certificate required" always;
      return 200 "";
    }}
    location / {{ grpc_pass grpc://temporal; }}
  }}
  # The same with an API key (`authorization: Bearer <key>`) instead of a client certificate.
  map $http_authorization $api_key_ok {{ "Bearer {api_key}" 1; default 0; }}
  server {{
    {api_key_listen}
    error_page 401 = @bad_key;
    location @bad_key {{
      internal;
      default_type application/grpc;
      add_header grpc-status 16 always;
      add_header grpc-message "missing or invalid API key" always;
      return 200 "";
    }}
    location / {{
      if ($api_key_ok = 0) {{ return 401; }}
      grpc_set_header authorization "";
      grpc_pass grpc://temporal;
    }}
  }}
}}
"#,
            pid = p(&n.join("nginx.pid")),
            log = p(&n.join("error.log")),
            access = p(&n.join("access.log")),
            kafka_listen = listen(self.kafka_tls_port, ""),
            kafka = self.kafka_port,
            temporal_listen = listen(self.temporal_tls_port, " http2"),
            api_key_listen = listen(self.temporal_api_key_port, " http2"),
            api_key = self.temporal_api_key,
        );
        let conf_path = n.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        // -e: the error log before the configuration is read (the built-in one is stderr).
        self.nginx.spawn(
            Command::new(NGINX)
                .arg("-p")
                .arg(&n)
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(n.join("error.log")),
        )?;
        let ports = [
            self.kafka_tls_port,
            self.temporal_tls_port,
            self.temporal_api_key_port,
        ];
        let error_log = n.join("error.log");
        self.nginx
            .wait_ready(|| async move {
                for port in ports {
                    if tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .is_err()
                    {
                        return false;
                    }
                }
                true
            })
            .await
            .with_context(|| crate::private_stack::tail(&error_log))
    }

    /// A topic created over SASL_SSL through the proxy, with the engine's Kafka client.
    async fn check_kafka(&self) -> anyhow::Result<()> {
        let kafka = platform::kafka::KafkaSettings {
            brokers: format!("localhost:{}", self.kafka_tls_port),
            security_protocol: "sasl_ssl".into(),
            ca_file: Some(self.certs.ca.display().to_string()),
            client_cert: None,
            sasl: Some((
                "SCRAM-SHA-512".into(),
                USER.into(),
                self.kafka_password.clone().into(),
            )),
            partitions: 1,
            replication: 1,
        };
        tokio::time::timeout(
            Duration::from_secs(30),
            platform::kafka::ensure_topics(&kafka, &["secure-stack.probe"]),
        )
        .await
        .context("Kafka over SASL_SSL: no answer within 30 s")?
        .with_context(|| {
            format!(
                "Kafka over SASL_SSL through the proxy\n{}",
                crate::private_stack::tail(&self.kafka.log)
            )
        })
    }

    /// `temporal operator cluster health` through the proxy, with the client certificate.
    async fn check_temporal(&self, bin: &Path) -> anyhow::Result<()> {
        let out = Command::new(bin)
            .args(["operator", "cluster", "health", "--address"])
            .arg(format!("localhost:{}", self.temporal_tls_port))
            .arg("--tls-ca-path")
            .arg(&self.certs.ca)
            .arg("--tls-cert-path")
            .arg(&self.certs.client_cert)
            .arg("--tls-key-path")
            .arg(&self.certs.client_key)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(20), out)
            .await
            .context("Temporal health over mutual TLS: no answer within 20 s")??;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !stdout.contains("SERVING") {
            bail!(
                "Temporal over mutual TLS through the proxy is not serving: {stdout}{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                crate::private_stack::tail(&self.dir.join("nginx/error.log"))
            );
        }
        Ok(())
    }
}

impl Drop for SecureStack {
    fn drop(&mut self) {
        // nginx first, with SIGTERM: its master stops the workers and waits for them (a
        // SIGKILLed master would leave its worker serving the ports).
        if let Some(child) = self.nginx.child.as_mut() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = child.start_kill();
        }
        if let Some(c) = self.kafka.child.as_mut() {
            let _ = c.start_kill();
        }
        // The postmaster is not our child.
        if self.pg_running {
            self.pg.stop_from_drop("immediate");
        }
        if std::thread::panicking() || std::env::var_os("INBOX_KEEP_PRIVATE_STACK").is_some() {
            eprintln!(
                "[secure-stack] logs and data kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
