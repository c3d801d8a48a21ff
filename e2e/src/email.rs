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
    /// With [`MailOptions::tls`]: IMAP over implicit TLS (like 993).
    pub imaps_addr: Option<String>,
    /// With [`MailOptions::tls`]: SMTP that requires STARTTLS before MAIL FROM (like 587).
    pub smtp_starttls_addr: Option<String>,
    /// With [`MailOptions::tls`]: the PEM of the test CA that signed both servers' certificate
    /// (for `127.0.0.1` and `localhost`).
    pub ca_file: Option<PathBuf>,
    dir: PathBuf,
    _dovecot: Child,
    _smtp: Child,
}

/// How [`MailServer::start_with`] sets the peers up.
#[derive(Debug, Clone, Copy, Default)]
pub struct MailOptions {
    /// Also serve IMAP over TLS and SMTP with STARTTLS, with a certificate from a fresh test CA.
    pub tls: bool,
}

/// One mail of a mailbox.
#[derive(Debug, Clone)]
pub struct Mail {
    pub uid: u32,
    pub seen: bool,
    pub raw: Vec<u8>,
}

impl Mail {
    /// The raw value of header `name`, trimmed.
    pub fn header(&self, name: &str) -> Option<String> {
        let m = mail_parser::MessageParser::default().parse(&self.raw)?;
        m.header_raw(name).map(|v| v.trim().to_owned())
    }

    /// The text body (an HTML-only mail's text rendering).
    pub fn text(&self) -> String {
        mail_parser::MessageParser::default()
            .parse(&self.raw)
            .and_then(|m| m.body_text(0).map(|t| t.into_owned()))
            .unwrap_or_default()
    }
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

fn dovecot_conf(
    dir: &Path,
    imap_port: u16,
    tls: Option<(u16, &Path, &Path)>,
    without_move: bool,
) -> String {
    let d = dir.display();
    // Dovecot's own list (2.3) less MOVE and UIDPLUS; it still understands them if sent.
    let capability = if without_move {
        "imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ UNSELECT \
         CHILDREN NAMESPACE"
    } else {
        ""
    };
    // Plain IMAP stays on for the harness's own reads; TLS is offered on the imaps port.
    let (ssl, imaps) = match tls {
        None => ("ssl = no".to_owned(), "port = 0".to_owned()),
        Some((port, cert, key)) => (
            format!(
                "ssl = yes\nssl_cert = <{}\nssl_key = <{}",
                cert.display(),
                key.display()
            ),
            format!("address = 127.0.0.1\n    port = {port}\n    ssl = yes"),
        ),
    };
    // Blocks span several lines: Dovecot rejects `name { key = value }` on one line.
    format!(
        "base_dir = {d}/run
state_dir = {d}/state
log_path = /dev/stderr
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
{capability}
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
    {imaps}
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
        Self::start_with(users, MailOptions::default()).await
    }

    /// [`MailServer::start`] with options (TLS).
    pub async fn start_with(users: &[&str], options: MailOptions) -> anyhow::Result<Self> {
        Self::launch(users, options, false).await
    }

    /// [`MailServer::start`] with an IMAP server that advertises neither MOVE (RFC 6851) nor
    /// UIDPLUS (RFC 4315), like an older one: a client must copy, flag `\Deleted` and `EXPUNGE`.
    pub async fn start_without_move(users: &[&str]) -> anyhow::Result<Self> {
        Self::launch(users, MailOptions::default(), true).await
    }

    async fn launch(
        users: &[&str],
        options: MailOptions,
        without_move: bool,
    ) -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("inbox-mail-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("mail"))?;
        std::fs::create_dir_all(dir.join("run"))?;
        std::fs::create_dir_all(dir.join("smtp-control"))?;
        let certs = if options.tls {
            Some(crate::certs::make_certificates(&dir)?)
        } else {
            None
        };
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
        let imap_port = crate::free_port()?;
        let imaps_port = crate::free_port_except(&[imap_port])?;
        let tls = certs
            .as_ref()
            .map(|(_, cert, key)| (imaps_port, cert.as_path(), key.as_path()));
        std::fs::write(&conf, dovecot_conf(&dir, imap_port, tls, without_move))?;
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
        let imaps_addr = certs.as_ref().map(|_| format!("127.0.0.1:{imaps_port}"));
        for addr in std::iter::once(&imap_addr).chain(imaps_addr.as_ref()) {
            testkit::eventually(Duration::from_secs(20), "dovecot listening", || async {
                Ok(tokio::net::TcpStream::connect(addr).await.ok().map(drop))
            })
            .await?;
        }

        let script = platform::workspace_root().join("scripts/smtp-to-dovecot.py");
        let mut smtp = Command::new(venv_python()?);
        smtp.arg(&script)
            .arg(&conf)
            .arg("0")
            .arg("--control-dir")
            .arg(dir.join("smtp-control"));
        if let Some((_, cert, key)) = &certs {
            smtp.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        let mut smtp = smtp
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the SMTP server")?;
        let stdout = smtp.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let want_tls = certs.is_some();
        let (port, tls_port) = tokio::time::timeout(Duration::from_secs(20), async {
            let (mut port, mut tls_port) = (None, None);
            while let Some(line) = lines.next_line().await? {
                if let Some(p) = line.strip_prefix("smtp listening on ") {
                    port = Some(p.trim().to_owned());
                } else if let Some(p) = line.strip_prefix("smtp starttls listening on ") {
                    tls_port = Some(p.trim().to_owned());
                }
                if let Some(p) = &port
                    && (!want_tls || tls_port.is_some())
                {
                    return Ok::<_, anyhow::Error>((p.clone(), tls_port));
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
            imaps_addr,
            smtp_starttls_addr: tls_port.map(|p| format!("127.0.0.1:{p}")),
            ca_file: certs.map(|(ca, _, _)| ca),
            dir,
            _dovecot: dovecot,
            _smtp: smtp,
        })
    }

    /// From now on the SMTP server answers mail to `rcpt` with `code` (e.g. 451: try again
    /// later; 550: refused), `times` times (`None`: always), then accepts it again.
    pub fn refuse(&self, rcpt: &str, code: u16, times: Option<u32>) -> anyhow::Result<()> {
        let path = self.dir.join("smtp-control").join(rcpt.to_lowercase());
        let count = times.map_or_else(|| "always".to_owned(), |n| n.to_string());
        let tmp = self
            .dir
            .join("smtp-control")
            .join(format!("{}.tmp", rcpt.to_lowercase()));
        std::fs::write(&tmp, format!("{code} {count}\n"))?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// Every SMTP attempt for `rcpt` so far, oldest first: `refused <code>` or `accepted`.
    pub fn smtp_attempts(&self, rcpt: &str) -> anyhow::Result<Vec<String>> {
        let path = self
            .dir
            .join("smtp-control")
            .join(format!("{}.log", rcpt.to_lowercase()));
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text.lines().map(str::to_owned).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
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
        mailbox(&self.imap_addr, user, PASSWORD).await
    }

    /// Every mail of `user`'s `folder`, in UID order, without marking anything seen; none while
    /// the folder does not exist.
    pub async fn mails_in(&self, user: &str, folder: &str) -> anyhow::Result<Vec<Mail>> {
        folder_of(&self.imap_addr, user, PASSWORD, folder).await
    }

    /// Waits until `user`'s INBOX holds a mail `pred` accepts; returns it.
    pub async fn wait_for_mail(
        &self,
        user: &str,
        within: Duration,
        pred: impl Fn(&Mail) -> bool,
    ) -> anyhow::Result<Mail> {
        let mut poll = testkit::Poll::new(within, Duration::from_millis(200));
        let mut mails = Vec::new();
        while poll.next().await {
            mails = self.mails(user).await?;
            if let Some(m) = mails.iter().find(|m| pred(m)) {
                return Ok(m.clone());
            }
        }
        let texts: Vec<String> = mails
            .iter()
            .map(|m| String::from_utf8_lossy(&m.raw).into_owned())
            .collect();
        bail!("no matching mail for {user} within {within:?}; mailbox: {texts:#?}")
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every mail of `user`'s INBOX on the IMAP server at `imap_addr`, in UID order, without marking
/// anything seen.
pub async fn mailbox(imap_addr: &str, user: &str, password: &str) -> anyhow::Result<Vec<Mail>> {
    folder_of(imap_addr, user, password, "INBOX").await
}

/// Every mail of `user`'s `folder` on the IMAP server at `imap_addr`, in UID order, without
/// marking anything seen (`EXAMINE`: read-only); none when the server says the folder does not
/// exist.
pub async fn folder_of(
    imap_addr: &str,
    user: &str,
    password: &str,
    folder: &str,
) -> anyhow::Result<Vec<Mail>> {
    let tcp = tokio::net::TcpStream::connect(imap_addr).await?;
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await?.context("no greeting")?;
    let mut session = client.login(user, password).await.map_err(|(e, _)| e)?;
    match session.examine(folder).await {
        Ok(_) => {}
        // Dovecot: `NO Mailbox doesn't exist`.
        Err(async_imap::error::Error::No(_)) => {
            session.logout().await?;
            return Ok(Vec::new());
        }
        Err(e) => return Err(e.into()),
    }
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

/// A sending domain of a test that signs its mail (DKIM, RSA-SHA256, a 2048-bit key made here):
/// publish its key with [`SigningDomain::publish`], then [`SigningDomain::sign`] each mail.
pub struct SigningDomain {
    pub domain: String,
    pub selector: String,
    signer: mail_auth::dkim::DkimSigner<
        mail_auth::common::crypto::RsaKey<mail_auth::common::crypto::Sha256>,
        mail_auth::dkim::Done,
    >,
    public_key: String,
}

impl SigningDomain {
    /// A fresh key for `domain`, under `selector`; it signs From, To, Subject, Message-ID, Date,
    /// In-Reply-To and References (relaxed canonicalisation).
    pub fn new(domain: &str, selector: &str) -> anyhow::Result<Self> {
        use mail_auth::dkim::{Canonicalization, DkimSigner};
        let pair = mail_auth::dkim::generate::DkimKeyPair::generate_rsa(2048)
            .map_err(|e| anyhow::anyhow!("generating a DKIM key: {e}"))?;
        let public_key = pair.encoded_public_key();
        let (private, _) = pair.into_inner();
        let key = mail_auth::common::crypto::RsaKey::from_key_der(
            rustls_pki_types::PrivateKeyDer::Pkcs1(private.into()),
        )
        .map_err(|e| anyhow::anyhow!("loading the DKIM key: {e}"))?;
        let signer = DkimSigner::from_key(key)
            .domain(domain)
            .selector(selector)
            .headers([
                "From",
                "To",
                "Subject",
                "Message-ID",
                "Date",
                "In-Reply-To",
                "References",
            ])
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        Ok(Self {
            domain: domain.to_owned(),
            selector: selector.to_owned(),
            signer,
            public_key,
        })
    }

    /// The key's record, at `<selector>._domainkey.<domain>`.
    pub fn publish(&self, dns: &crate::dns::DnsServer) {
        dns.txt(
            &format!("{}._domainkey.{}", self.selector, self.domain),
            &format!("v=DKIM1; k=rsa; p={}", self.public_key),
        );
    }

    /// `raw` with a `DKIM-Signature:` of this key on top.
    pub fn sign(&self, raw: &[u8]) -> anyhow::Result<Vec<u8>> {
        use mail_auth::common::headers::HeaderWriter;
        let signature = self
            .signer
            .sign(raw)
            .map_err(|e| anyhow::anyhow!("signing a mail: {e}"))?;
        let mut signed = signature.to_header().into_bytes();
        signed.extend_from_slice(raw);
        Ok(signed)
    }
}
