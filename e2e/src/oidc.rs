//! A real OpenID provider for the tests: npm `oidc-provider` (a certified implementation) run by
//! `scripts/oidc-provider.js` on loopback, and access tokens from it through the authorization
//! code flow with PKCE (`scripts/oidc-token.js`): the engine verifies them as it would a bank's
//! Keycloak's, through the provider's JWKS.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `aud` of the provider's access tokens (the engine's `INBOX_JWT_AUDIENCE`).
pub const AUDIENCE: &str = "inbox-api";

/// A running provider; stopped when dropped.
pub struct Provider {
    pub issuer: String,
    /// CA of its HTTPS certificate, when it serves HTTPS.
    pub ca: Option<PathBuf>,
    keys: PathBuf,
    tls: Option<(PathBuf, PathBuf)>,
    port: u16,
    /// The console redirect URI its `inbox-console` client accepts, if registered.
    console: Option<String>,
    child: Option<Child>,
}

fn node_env(cmd: &mut Command) {
    let prefix = std::env::var("INBOX_NPM_PREFIX").unwrap_or_else(|_| {
        let cache = std::env::var("INBOX_CACHE").unwrap_or_else(|_| {
            format!(
                "{}/.cache/inbox-engine",
                std::env::var("HOME").unwrap_or_default()
            )
        });
        format!("{cache}/npm")
    });
    cmd.env("INBOX_NPM_PREFIX", prefix);
}

impl Provider {
    /// Starts a provider with the keys in `keys` (a JWKS file of private keys; generated when
    /// missing, so a new file is a key rotation), on HTTPS when `tls` (certificate, key, CA) is
    /// given. Fails loudly when Node or the package is missing (`make test` installs both).
    pub async fn start(
        keys: &Path,
        tls: Option<(PathBuf, PathBuf, PathBuf)>,
    ) -> anyhow::Result<Self> {
        Self::start_for_console(keys, tls, None).await
    }

    /// [`Provider::start`] that also registers the web console's public client `inbox-console`
    /// with the redirect URI `console` (the console's origin + `/`), its login page an HTML form.
    pub async fn start_for_console(
        keys: &Path,
        tls: Option<(PathBuf, PathBuf, PathBuf)>,
        console: Option<String>,
    ) -> anyhow::Result<Self> {
        let port = crate::free_port()?;
        let mut me = Self {
            issuer: String::new(),
            ca: tls.as_ref().map(|(_, _, ca)| ca.clone()),
            keys: keys.to_owned(),
            tls: tls.map(|(c, k, _)| (c, k)),
            port,
            console,
            child: None,
        };
        me.spawn().await?;
        Ok(me)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let script = platform::workspace_root().join("scripts/oidc-provider.js");
        let mut cmd = Command::new("node");
        cmd.arg(&script)
            .args(["--port", &self.port.to_string(), "--audience", AUDIENCE])
            .arg("--keys")
            .arg(&self.keys)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some((cert, key)) = &self.tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        if let Some(redirect) = &self.console {
            cmd.arg("--console-redirect").arg(redirect);
        }
        node_env(&mut cmd);
        let mut child = cmd
            .spawn()
            .context("starting node scripts/oidc-provider.js")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(issuer) = line.strip_prefix("oidc-provider ready ") {
                    return Ok::<_, std::io::Error>(Some(issuer.trim().to_owned()));
                }
            }
            Ok(None)
        })
        .await;
        match ready {
            Ok(Ok(Some(issuer))) => self.issuer = issuer,
            Ok(_) => bail!(
                "oidc-provider exited before it was ready: {:?}",
                child.wait().await
            ),
            Err(_) => bail!("oidc-provider was not ready within 30 s"),
        }
        self.child = Some(child);
        Ok(())
    }

    /// Stops it and starts it again on the same port with the keys in `keys` (a new file: new
    /// keys, the old ones gone from its JWKS).
    pub async fn restart_with_keys(&mut self, keys: &Path) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().await?;
        }
        self.keys = keys.to_owned();
        self.spawn().await
    }

    /// Where its keys are served.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// The settings that make the engine trust this provider (and nothing else).
    pub fn engine_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("INBOX_JWKS_URL", self.jwks_url()),
            ("INBOX_JWT_ISSUER", self.issuer.clone()),
            ("INBOX_JWT_AUDIENCE", AUDIENCE.to_owned()),
        ];
        if let Some(ca) = &self.ca {
            env.push(("INBOX_JWKS_CA_FILE", ca.display().to_string()));
        }
        env
    }

    /// An access token for `user` with `roles`, through the code flow; `ttl` seconds (the
    /// provider's default, 300, when `None`); `es256` signs with the provider's EC key.
    pub async fn token(
        &self,
        user: &str,
        roles: &[&str],
        name: &str,
        ttl: Option<u32>,
        es256: bool,
    ) -> anyhow::Result<String> {
        let script = platform::workspace_root().join("scripts/oidc-token.js");
        let mut cmd = Command::new("node");
        cmd.arg(&script)
            .args(["--issuer", &self.issuer, "--user", user, "--name", name])
            .args(["--roles", &roles.join(",")]);
        if let Some(ttl) = ttl {
            cmd.args(["--ttl", &ttl.to_string()]);
        }
        if es256 {
            cmd.args(["--alg", "ES256"]);
        }
        if let Some(ca) = &self.ca {
            cmd.arg("--ca").arg(ca);
        }
        node_env(&mut cmd);
        let out = cmd
            .output()
            .await
            .context("running scripts/oidc-token.js")?;
        if !out.status.success() {
            bail!(
                "oidc-token for {user}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }
}
