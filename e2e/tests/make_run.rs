//! `make run CHANNELS=local` as a newcomer runs it: `scripts/run.sh` brings up the services and
//! the local channel peers (Telegram emulator, Dovecot, SMTP), a client writes on each channel,
//! a manager answers each, and every answer comes back on the channel its ticket came from; a
//! command is answered by the example bot worker it starts.
//! Ctrl-C (SIGTERM here) stops everything the script started.
//!
//! The script runs with its own ports, database, topic prefix, task queue and peer directory
//! (overrides of config/dev.env through the environment), so it neither disturbs a developer's
//! `make run` nor the other tests on the shared stack.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use e2e::manager::Manager;
use e2e::telegram::Emulator;
use e2e::{Stack, eventually};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor, address::Envelope};
use tickets::Role;
use uuid::Uuid;

/// Start-up takes seconds; the margin is for a loaded 2-core machine.
const START: Duration = Duration::from_secs(120);
const STOP: Duration = Duration::from_secs(40);
/// The dev secrets `scripts/run.sh` gives the local peers.
const TELEGRAM_TOKEN: &str = "4242:dev";
const MAIL_PASSWORD: &str = "dev";

/// `scripts/run.sh`, stopped with SIGTERM (what Ctrl-C does) when dropped.
struct MakeRun {
    child: std::process::Child,
    log: PathBuf,
}

impl MakeRun {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// SIGTERM, then waits for the script (which stops its services from its trap) up to
    /// [`STOP`]; past that, SIGKILL. Blocks the calling thread.
    fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        let pid = self.child.id();
        signal(pid, "TERM")?;
        let child = &mut self.child;
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            s.spawn(move || tx.send(child.wait()));
            match rx.recv_timeout(STOP) {
                Ok(status) => Ok(status?),
                Err(_) => {
                    // The waiting thread returns once the script is gone.
                    let _ = signal(pid, "KILL");
                    bail!("run.sh did not stop within {STOP:?}")
                }
            }
        })
    }
}

impl Drop for MakeRun {
    fn drop(&mut self) {
        // No service may outlive the test holding a port.
        let _ = self.stop();
    }
}

fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()?;
    anyhow::ensure!(status.success(), "kill -{name} {pid}: {status}");
    Ok(())
}

/// A directory for the peers' state, removed at the end.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn wait_healthy(run: &mut MakeRun, http: &str, grpc: &str) -> anyhow::Result<()> {
    let mut poll = testkit::Poll::new(START, Duration::from_millis(250));
    let client = reqwest::Client::new();
    while poll.next().await {
        if let Some(status) = run.child.try_wait()? {
            bail!(
                "make run exited during start-up ({status}):\n{}",
                run.log_tail()
            );
        }
        let http_up = client
            .get(format!("{http}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        let grpc_up = tokio::net::TcpStream::connect(grpc).await.is_ok();
        if http_up && grpc_up {
            return Ok(());
        }
    }
    bail!(
        "make run was not serving within {START:?}:\n{}",
        run.log_tail()
    )
}

fn port_open(addr: &str) -> bool {
    std::net::TcpStream::connect(addr).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_run_with_local_channels_answers_each_client_on_its_own_channel() -> anyhow::Result<()>
{
    let stack = Stack::from_env().await?;
    let tag = format!("makerun_{}", Uuid::new_v4().simple());
    let database_url = stack.fresh_database(&tag).await?;
    let dir = TempDir(std::env::temp_dir().join(&tag));
    std::fs::create_dir_all(&dir.0)?;
    let short = &tag[8..16];
    let client_mail = format!("c{short}@client.test");
    let mut ports = Vec::new();
    for _ in 0..5 {
        ports.push(e2e::free_port_except(&ports)?);
    }
    let [http_port, grpc_port, tg_port, imap_port, smtp_port] = ports[..] else {
        bail!("five ports were picked: {ports:?}");
    };
    let http = format!("http://127.0.0.1:{http_port}");
    let grpc = format!("127.0.0.1:{grpc_port}");
    let imap = format!("127.0.0.1:{imap_port}");

    let log = dir.0.join("make-run.log");
    let out = std::fs::File::create(&log)?;
    let script = platform::workspace_root().join("scripts/run.sh");
    let child = std::process::Command::new("bash")
        .arg(&script)
        .env("CHANNELS", "local")
        // The suite built the binaries; a build from here would relink them under the feet of
        // the tests running beside this one.
        .env("INBOX_RUN_NO_BUILD", "1")
        .env("INBOX_DATABASE_URL", &database_url)
        .env("INBOX_TOPIC_PREFIX", format!("{tag}."))
        .env("INBOX_TASK_QUEUE", &tag)
        .env("INBOX_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("INBOX_GRPC_ADDR", &grpc)
        .env("INBOX_COMMUNICATION_OPS_ADDR", "127.0.0.1:0")
        .env("INBOX_GATEWAY_OPS_ADDR", "127.0.0.1:0")
        .env("INBOX_WORKFLOW_OPS_ADDR", "127.0.0.1:0")
        .env("INBOX_LOCAL_TELEGRAM_PORT", tg_port.to_string())
        .env("INBOX_LOCAL_IMAP_PORT", imap_port.to_string())
        .env("INBOX_LOCAL_SMTP_PORT", smtp_port.to_string())
        .env("INBOX_LOCAL_CHANNELS_DIR", dir.0.join("channels"))
        .env("INBOX_LOCAL_MAIL_USERS", &client_mail)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("starting scripts/run.sh")?;
    let mut run = MakeRun { child, log };
    let t0 = std::time::Instant::now();
    wait_healthy(&mut run, &http, &grpc).await?;
    eprintln!("make run serving after {:?}", t0.elapsed());

    // A client on each channel. Fresh identities: workflow ids are per client and the Temporal
    // namespace is shared.
    let chat = i64::from(u32::from_str_radix(short, 16)? >> 1) + 1_000_000;
    let mut telegram = Emulator::attach(&format!("http://127.0.0.1:{tg_port}"));
    telegram
        .user_says(TELEGRAM_TOKEN, chat, "Olga", "Hello from Telegram")
        .await?;

    let mail = format!(
        "From: {client_mail}\r\nTo: support@bank.test\r\nSubject: Card question\r\n\
         Message-ID: <{tag}@client.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nHello from email\r\n"
    );
    let smtp = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(smtp_port)
        .build();
    let envelope = Envelope::new(
        Some(client_mail.parse()?),
        vec!["support@bank.test".parse()?],
    )?;
    smtp.send_raw(&envelope, mail.as_bytes()).await?;

    let web_user = format!("web-{short}");
    let web_token = stack.token(Role::Client, &web_user, "Web Client")?;
    let http_client = reqwest::Client::new();
    let posted = http_client
        .post(format!("{http}/v1/messages"))
        .bearer_auth(&web_token)
        .json(&serde_json::json!({
            "body": "Hello from the web",
            "client_message_id": Uuid::new_v4(),
        }))
        .send()
        .await?;
    assert_eq!(posted.status().as_u16(), 202, "{}", posted.text().await?);

    // One manager takes all three (capacity 3 in workflows.yaml) and answers each.
    let token = stack.token(Role::Manager, &format!("olga-{short}"), "Olga")?;
    let mut manager = Manager::connect(&format!("http://{grpc}"), token).await?;
    for _ in 0..3 {
        manager.set_ready().await?;
    }
    let clients = [
        (format!("tg:{chat}"), "Hello from Telegram"),
        (format!("email:{client_mail}"), "Hello from email"),
        (e2e::web_client(&web_user), "Hello from the web"),
    ];
    for (client_id, body) in &clients {
        let (ticket, _) = manager.wait_for_message(client_id, body).await?;
        manager
            .reply(&ticket, &format!("Answer to {client_id}"), client_id)
            .await?;
    }

    eprintln!("the manager answered all three after {:?}", t0.elapsed());

    // Each answer goes back on the channel the ticket came from.
    telegram
        .wait_for_bot_text(
            TELEGRAM_TOKEN,
            chat,
            &format!("Answer to tg:{chat}"),
            e2e::manager::WAIT,
        )
        .await?;
    let answer = format!("Answer to email:{client_mail}");
    eventually(
        e2e::manager::WAIT,
        &format!("{answer:?} in {client_mail}'s mailbox"),
        || async {
            let mails = e2e::email::mailbox(&imap, &client_mail, MAIL_PASSWORD).await?;
            Ok(mails
                .iter()
                .any(|m| String::from_utf8_lossy(&m.raw).contains(&answer))
                .then_some(()))
        },
    )
    .await?;
    let history: serde_json::Value = http_client
        .get(format!("{http}/v1/messages"))
        .bearer_auth(&web_token)
        .send()
        .await?
        .json()
        .await?;
    let answer = format!("Answer to {}", e2e::web_client(&web_user));
    assert!(
        history.to_string().contains(&answer),
        "the web client's history lacks {answer:?}: {history}"
    );

    eprintln!("every answer arrived after {:?}", t0.elapsed());

    // A command goes to the example bot worker `make run` started, and its answer comes back
    // on Telegram (not through the manager, whose ticket it is not).
    telegram
        .user_says(TELEGRAM_TOKEN, chat, "Olga", "/status")
        .await?;
    telegram
        .wait_for_bot_text(
            TELEGRAM_TOKEN,
            chat,
            "All bank services are working normally.",
            e2e::manager::WAIT,
        )
        .await?;
    eprintln!("the bot answered after {:?}", t0.elapsed());

    // Ctrl-C: the script stops the services and the peers it started, and says it was stopped.
    let status = tokio::task::block_in_place(|| run.stop())?;
    assert_eq!(status.code(), Some(143), "{}", run.log_tail());
    for (what, addr) in [
        ("communication", format!("127.0.0.1:{http_port}")),
        ("gateway", grpc.clone()),
        ("Telegram emulator", format!("127.0.0.1:{tg_port}")),
        ("Dovecot", imap.clone()),
        ("SMTP", format!("127.0.0.1:{smtp_port}")),
    ] {
        assert!(
            !port_open(&addr),
            "{what} still listens on {addr} after make run stopped"
        );
    }
    Ok(())
}
