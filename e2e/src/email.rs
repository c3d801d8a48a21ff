//! The mail peers of one test, on loopback: Dovecot (IMAP, passwd-file users, maildirs in a
//! temporary directory) and an SMTP server that hands each mail to Dovecot's LDA
//! (`scripts/smtp-to-dovecot.py`, PyPI aiosmtpd in the project venv). `make test` installs both
//! (`scripts/stack.sh install`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::TryStreamExt;
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Every test user's password.
pub const PASSWORD: &str = "secret";

pub struct MailServer {
    /// `127.0.0.1:<port>`
    pub imap_addr: String,
    pub smtp_addr: String,
    dir: PathBuf,
    _dovecot: Child,
    _smtp: Child,
}

/// One mail of a mailbox.
#[derive(Debug, Clone)]
pub struct Mail {
    pub uid: u32,
    pub seen: bool,
    pub raw: Vec<u8>,
}

fn venv_python() -> anyhow::Result<PathBuf> {
    let cache = match std::env::var("INBOX_CACHE") {
        Ok(c) => PathBuf::from(c),
        Err(_) => PathBuf::from(std::env::var("HOME").context("HOME is not set")?)
            .join(".cache/inbox-engine"),
    };
    let python = cache.join("venv/bin/python");
    if !python.exists() {
        bail!(
            "{} is missing: run `scripts/stack.sh install` (make test does)",
            python.display()
        );
    }
    Ok(python)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn dovecot_conf(dir: &Path, imap_port: u16) -> String {
    let d = dir.display();
    // Blocks span several lines: Dovecot rejects `name { key = value }` on one line.
    format!(
        "base_dir = {d}/run
state_dir = {d}/state
log_path = /dev/stderr
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{d}/mail/%u
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"
    )
}

impl MailServer {
    /// Starts Dovecot with `users` (full addresses, password [`PASSWORD`]) and the SMTP server.
    pub async fn start(users: &[&str]) -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("inbox-mail-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("mail"))?;
        std::fs::create_dir_all(dir.join("run"))?;
        {
            use std::os::unix::fs::PermissionsExt;
            // Mail is written as `nobody`.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
            std::fs::set_permissions(dir.join("mail"), std::fs::Permissions::from_mode(0o777))?;
        }
        let passwd: String = users
            .iter()
            .map(|u| format!("{u}:{{PLAIN}}{PASSWORD}::::::\n"))
            .collect();
        std::fs::write(dir.join("passwd"), passwd)?;
        let conf = dir.join("dovecot.conf");
        let imap_port = free_port()?;
        std::fs::write(&conf, dovecot_conf(&dir, imap_port))?;
        if !Path::new("/usr/sbin/dovecot").exists() {
            bail!("dovecot is not installed: run `scripts/stack.sh install` (make test does)");
        }
        let dovecot = Command::new("/usr/sbin/dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting dovecot")?;
        let imap_addr = format!("127.0.0.1:{imap_port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(&imap_addr).await.is_err() {
            if tokio::time::Instant::now() >= deadline {
                bail!("dovecot did not listen on {imap_addr} within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/smtp-to-dovecot.py");
        let mut smtp = Command::new(venv_python()?)
            .arg(&script)
            .arg(&conf)
            .arg("0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the SMTP server")?;
        let stdout = smtp.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(p) = line.strip_prefix("smtp listening on ") {
                    return Ok::<_, anyhow::Error>(p.trim().to_owned());
                }
            }
            bail!("the SMTP server exited before it was ready")
        })
        .await
        .context("the SMTP server was not ready within 20 s")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            imap_addr,
            smtp_addr: format!("127.0.0.1:{port}"),
            dir,
            _dovecot: dovecot,
            _smtp: smtp,
        })
    }

    /// Sends a raw mail from `from` to `to` through the SMTP server (into `to`'s mailbox).
    pub async fn send(&self, from: &str, to: &str, raw: &[u8]) -> anyhow::Result<()> {
        let (host, port) = self.smtp_addr.rsplit_once(':').context("smtp address")?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port.parse()?)
            .build();
        let envelope = Envelope::new(Some(from.parse()?), vec![to.parse()?])?;
        transport.send_raw(&envelope, raw).await?;
        Ok(())
    }

    /// Every mail of `user`'s INBOX, in UID order, without marking anything seen.
    pub async fn mails(&self, user: &str) -> anyhow::Result<Vec<Mail>> {
        let tcp = tokio::net::TcpStream::connect(&self.imap_addr).await?;
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await?.context("no greeting")?;
        let mut session = client.login(user, PASSWORD).await.map_err(|(e, _)| e)?;
        session.select("INBOX").await?;
        let fetched: Vec<_> = session
            .uid_fetch("1:*", "(UID FLAGS BODY.PEEK[])")
            .await?
            .try_collect()
            .await?;
        let mut mails: Vec<Mail> = fetched
            .iter()
            .filter_map(|f| {
                Some(Mail {
                    uid: f.uid?,
                    seen: f
                        .flags()
                        .any(|fl| matches!(fl, async_imap::types::Flag::Seen)),
                    raw: f.body()?.to_vec(),
                })
            })
            .collect();
        drop(fetched);
        session.logout().await?;
        mails.sort_by_key(|m| m.uid);
        Ok(mails)
    }

    /// Waits until `user`'s INBOX holds a mail `pred` accepts; returns it.
    pub async fn wait_for_mail(
        &self,
        user: &str,
        within: Duration,
        pred: impl Fn(&Mail) -> bool,
    ) -> anyhow::Result<Mail> {
        let deadline = tokio::time::Instant::now() + within;
        let mut poll = tokio::time::interval(Duration::from_millis(200));
        loop {
            poll.tick().await;
            let mails = self.mails(user).await?;
            if let Some(m) = mails.iter().find(|m| pred(m)) {
                return Ok(m.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                let texts: Vec<String> = mails
                    .iter()
                    .map(|m| String::from_utf8_lossy(&m.raw).into_owned())
                    .collect();
                bail!("no matching mail for {user} within {within:?}; mailbox: {texts:#?}");
            }
        }
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
