//! The Telegram Bot API emulator (npm `telegram-test-api` behind `scripts/telegram-emulator.js`),
//! one per test on a free loopback port. `make test` installs it (`scripts/stack.sh install`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Emulator {
    pub url: String,
    http: reqwest::Client,
    /// The bot's messages read so far, per chat, in order.
    seen: std::collections::HashMap<i64, Vec<String>>,
    /// None for an emulator someone else started ([`Emulator::attach`]).
    _child: Option<Child>,
}

fn node_modules() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var("INBOX_NODE_MODULES") {
        Ok(d) => PathBuf::from(d),
        Err(_) => PathBuf::from(std::env::var("HOME").context("HOME is not set")?)
            .join(".cache/inbox-engine/npm/node_modules"),
    };
    if !dir.join("telegram-test-api").is_dir() {
        bail!(
            "telegram-test-api is not installed in {}: run `scripts/stack.sh install` (make test does)",
            dir.display()
        );
    }
    Ok(dir)
}

/// A file the bot sent to a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentFile {
    /// `sendDocument` or `sendPhoto`.
    pub method: String,
    pub name: String,
    pub caption: String,
    pub data: Vec<u8>,
}

impl Emulator {
    pub async fn start() -> anyhow::Result<Self> {
        let script = platform::workspace_root().join("scripts/telegram-emulator.js");
        let mut child = Command::new("node")
            .arg(&script)
            .arg("0")
            .env("NODE_PATH", node_modules()?)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting node (the Telegram emulator)")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(p) = line.strip_prefix("telegram emulator listening on ") {
                    return Ok::<_, anyhow::Error>(p.trim().to_owned());
                }
            }
            bail!("the Telegram emulator exited before it was ready")
        })
        .await
        .context("the Telegram emulator was not ready within 20 s")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            seen: Default::default(),
            _child: Some(child),
        })
    }

    /// An emulator already running at `url` (e.g. the one `make run CHANNELS=local` starts).
    pub fn attach(url: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            seen: Default::default(),
            _child: None,
        }
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let res = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await?;
        let status = res.status();
        let v: Value = res.json().await?;
        if !status.is_success() {
            bail!("emulator {path}: {status} {v}");
        }
        Ok(v)
    }

    /// The user of chat `chat` sends `text` to the bot.
    pub async fn user_says(
        &self,
        token: &str,
        chat: i64,
        name: &str,
        text: &str,
    ) -> anyhow::Result<()> {
        let user = json!({ "id": chat, "is_bot": false, "first_name": name });
        self.post(
            "/sendMessage",
            json!({
                "botToken": token,
                "from": user,
                "chat": { "id": chat, "type": "private", "first_name": name },
                "date": chrono::Utc::now().timestamp(),
                "text": text,
            }),
        )
        .await?;
        Ok(())
    }

    /// The user of chat `chat` sends a file with `caption`: a document named `name` of type
    /// `mime`, or with `photo` a photo (Telegram names photos itself).
    #[allow(clippy::too_many_arguments)]
    pub async fn user_sends_file(
        &self,
        token: &str,
        chat: i64,
        name: &str,
        mime: &str,
        data: &[u8],
        caption: &str,
        photo: bool,
    ) -> anyhow::Result<()> {
        use base64::Engine as _;
        let file = self
            .post(
                "/control/file",
                json!({
                    "token": token, "name": name, "mime": mime,
                    "base64": base64::engine::general_purpose::STANDARD.encode(data),
                }),
            )
            .await?["result"]
            .clone();
        let user = json!({ "id": chat, "is_bot": false, "first_name": "User" });
        let mut message = json!({
            "botToken": token,
            "from": user,
            "chat": { "id": chat, "type": "private", "first_name": "User" },
            "date": chrono::Utc::now().timestamp(),
            "caption": caption,
        });
        if photo {
            let mut size = file.clone();
            size["width"] = json!(1);
            size["height"] = json!(1);
            message["photo"] = json!([size]);
        } else {
            let mut doc = file.clone();
            doc["file_name"] = json!(name);
            doc["mime_type"] = json!(mime);
            message["document"] = doc;
        }
        self.post("/sendMessage", message).await?;
        Ok(())
    }

    /// The files the bot sent to `chat` (sendDocument, sendPhoto), oldest first.
    pub async fn sent_files(&self, token: &str, chat: i64) -> anyhow::Result<Vec<SentFile>> {
        use base64::Engine as _;
        let got = self
            .post(
                "/control/sent-files",
                json!({ "token": token, "chatId": chat }),
            )
            .await?;
        got["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                Ok(SentFile {
                    method: f["method"].as_str().unwrap_or_default().to_owned(),
                    name: f["name"].as_str().unwrap_or_default().to_owned(),
                    caption: f["caption"].as_str().unwrap_or_default().to_owned(),
                    data: base64::engine::general_purpose::STANDARD
                        .decode(f["base64"].as_str().unwrap_or_default())?,
                })
            })
            .collect()
    }

    /// Waits until the bot has sent `text` to `chat`; returns everything it sent there so far.
    pub async fn wait_for_bot_text(
        &mut self,
        token: &str,
        chat: i64,
        text: &str,
        within: Duration,
    ) -> anyhow::Result<Vec<String>> {
        self.wait_for_bot_text_where(token, chat, &format!("{text:?}"), |t| t == text, within)
            .await
    }

    /// [`Self::wait_for_bot_text`] of a text that `wanted` accepts (`what` names it in errors).
    pub async fn wait_for_bot_text_where(
        &mut self,
        token: &str,
        chat: i64,
        what: &str,
        wanted: impl Fn(&str) -> bool,
        within: Duration,
    ) -> anyhow::Result<Vec<String>> {
        let mut poll = testkit::Poll::new(within, Duration::from_millis(100));
        while poll.next().await {
            let got = self
                .post("/getUpdates", json!({ "token": token, "chatId": chat }))
                .await?;
            let texts = got["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| u["message"]["text"].as_str().map(str::to_owned));
            let seen = self.seen.entry(chat).or_default();
            seen.extend(texts);
            if seen.iter().any(|t| wanted(t)) {
                return Ok(seen.clone());
            }
        }
        let seen = self.seen.get(&chat).cloned().unwrap_or_default();
        bail!("the bot did not send {what} to chat {chat} within {within:?}; it sent {seen:?}")
    }

    /// From now on, sending to `chat` fails with 403 (the user blocked the bot).
    pub async fn block(&self, chat: i64) -> anyhow::Result<()> {
        self.post("/control/block", json!({ "chatId": chat }))
            .await
            .map(|_| ())
    }

    /// The next `n` sends to `chat` fail with 429 and `retry_after: 1`.
    pub async fn rate_limit(&self, chat: i64, n: u32) -> anyhow::Result<()> {
        self.post("/control/rate-limit", json!({ "chatId": chat, "n": n }))
            .await
            .map(|_| ())
    }

    /// Every update of the bot is delivered again (as after a lost offset); returns how many.
    pub async fn redeliver(&self, token: &str) -> anyhow::Result<u64> {
        let v = self
            .post("/control/redeliver", json!({ "token": token }))
            .await?;
        Ok(v["result"].as_u64().unwrap_or_default())
    }
}

impl Emulator {
    /// The bot's command menu (`getMyCommands`): `(command, description)` pairs in order.
    pub async fn bot_commands(&self, token: &str) -> anyhow::Result<Vec<(String, String)>> {
        let v = self
            .post(&format!("/bot{token}/getMyCommands"), json!({}))
            .await?;
        Ok(v["result"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
                        (text("command"), text("description"))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The webhook URL the bot registered (`setWebhook`), empty when none.
    pub async fn webhook_url(&self, token: &str) -> anyhow::Result<String> {
        let v = self
            .post(&format!("/bot{token}/getWebhookInfo"), json!({}))
            .await?;
        Ok(v["result"]["url"].as_str().unwrap_or_default().to_owned())
    }
}
