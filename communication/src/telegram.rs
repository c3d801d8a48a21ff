//! Telegram: long polling in, replies and service messages out (teloxide's Bot API client).
//!
//! In: each chat is a client (`tg:<chat id>`); a message's id derives from (chat id, message id),
//! so a redelivered update maps onto the stored message. Updates are published to Kafka in order
//! and the update offset (kept in PostgreSQL and confirmed to Telegram by the next `getUpdates`)
//! moves past an update only after the broker acknowledged it; an update at or below the stored
//! offset is skipped. A message's documents and photos are fetched into the object store first
//! (`telegram_files`). Out: the delivery worker (`delivery.rs`) sends the client-visible events of
//! `tg:` clients to their chat, a manager's files as documents or photos.

use std::time::Duration;

use teloxide::payloads::{GetUpdatesSetters, SendMessageSetters};
use teloxide::prelude::Requester;
use teloxide::types::{AllowedUpdate, ChatId, Message, UpdateKind};
use teloxide::{Bot, RequestError};
use tickets::{PgStore, message_id_for};
use tokio_util::sync::CancellationToken;

use crate::delivery::{Outbound, SendError};
use crate::telegram_files::{files_of, has_files, send_files, take_files};
use edge::files::Files;
use edge::publish::Publisher;
use edge::ratelimit::RateLimiter;

pub const CHANNEL: &str = "telegram";
pub const CLIENT_PREFIX: &str = "tg:";

#[derive(Debug, Clone)]
pub struct TelegramSettings {
    pub token: String,
    /// The Bot API server; `https://api.telegram.org` in production, the emulator in tests.
    pub api_url: reqwest::Url,
    /// Long-poll timeout handed to `getUpdates`.
    pub poll_timeout: Duration,
    /// Pause after an empty answer, for servers that do not hold the long poll (the emulator).
    pub idle_delay: Duration,
    /// Webhook mode (`None`: long polling).
    pub webhook: Option<WebhookSettings>,
}

/// Webhook mode: Telegram POSTs each update to `path` on the HTTP listener.
#[derive(Clone)]
pub struct WebhookSettings {
    /// The route on `communication`'s HTTP listener, e.g. `/v1/telegram/webhook`.
    pub path: String,
    /// When set, registered with Telegram (`setWebhook`) at start; otherwise the operator did it.
    pub public_url: Option<reqwest::Url>,
    /// Telegram sends it in `X-Telegram-Bot-Api-Secret-Token`; requests without it are refused.
    pub secret: String,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("path", &self.path)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl TelegramSettings {
    pub fn bot(&self) -> Result<Bot, reqwest::Error> {
        // The HTTP timeout must outlast the long poll, or every idle poll fails.
        let client = teloxide::net::default_reqwest_settings()
            .timeout(self.poll_timeout + Duration::from_secs(10))
            .build()?;
        Ok(Bot::with_client(&self.token, client).set_api_url(self.api_url.clone()))
    }

    /// Cursor name of this bot's update offset (the token's bot id part, never the secret).
    fn offset_cursor(&self) -> String {
        let bot_id = self.token.split(':').next().unwrap_or_default();
        format!("telegram:offset:{bot_id}")
    }
}

/// The client id of a Telegram chat.
pub fn client_id(chat: ChatId) -> String {
    format!("{CLIENT_PREFIX}{}", chat.0)
}

fn chat_of(client_id: &str) -> Option<ChatId> {
    client_id
        .strip_prefix(CLIENT_PREFIX)
        .and_then(|id| id.parse().ok())
        .map(ChatId)
}

/// The normalised message of a Telegram message, or `None` for what carries nothing to store
/// (a sticker, a service message). Its documents and photos are not in it yet
/// ([`take_message`] fetches them); a voice message is named only.
pub fn inbound_message(msg: &Message) -> Option<proto::v1::InboundMessage> {
    let mut body = msg
        .text()
        .or_else(|| msg.caption())
        .unwrap_or_default()
        .to_owned();
    if let Some(v) = msg.voice() {
        if !body.is_empty() {
            body.push('\n');
        }
        body.push_str(&format!(
            "[attachment: voice message ({} bytes)]",
            v.file.size
        ));
    }
    if body.trim().is_empty() && files_of(msg).is_empty() {
        return None;
    }
    let external_id = format!("{}/{}", msg.chat.id.0, msg.id.0);
    let client_name = msg
        .from
        .as_ref()
        .map(|u| u.full_name())
        .or_else(|| msg.chat.username().map(str::to_owned))
        .unwrap_or_default();
    Some(proto::v1::InboundMessage {
        message_id: message_id_for(CHANNEL, &external_id).to_string(),
        client_id: client_id(msg.chat.id),
        channel: CHANNEL.into(),
        external_id,
        body,
        client_name,
        received_at_unix_ms: chrono::Utc::now().timestamp_millis(),
        sealed_body: Vec::new(),
        attachments: Vec::new(),
    })
}

/// What the Telegram intake (long polling or webhook) needs to take a message in.
#[derive(Clone)]
pub struct Intake {
    pub bot: Bot,
    pub store: PgStore,
    pub publisher: Publisher,
    pub limiter: RateLimiter,
    pub files: Files,
}

/// What became of one Telegram message.
pub enum Took {
    /// Published (its id).
    Published(proto::v1::InboundMessage),
    /// Over the client's rate: refused and told.
    Refused,
    /// Nothing to store.
    Empty,
}

impl Intake {
    /// Takes `msg` in: within the client's rate, its files fetched into the object store, then
    /// published. An error (the Bot API, the store, the broker) leaves it to be taken again.
    pub async fn take_message(&self, msg: &Message) -> Result<Took, String> {
        let Some(mut m) = inbound_message(msg) else {
            return Ok(Took::Empty);
        };
        if !admitted(&self.limiter, &self.bot, msg, &m.client_id) {
            return Ok(Took::Refused);
        }
        let list = files_of(msg);
        if !list.is_empty() {
            let taken = take_files(&self.bot, &self.files, &self.store, &m.client_id, &list)
                .await
                .map_err(|e| e.to_string())?;
            m.attachments = taken.refs;
            if !taken.refused.is_empty() {
                for line in &taken.refused {
                    if !m.body.is_empty() {
                        m.body.push('\n');
                    }
                    m.body.push_str(line);
                }
                let (bot, chat) = (self.bot.clone(), msg.chat.id);
                let notice = format!(
                    "Some of your files were not accepted:\n{}",
                    taken.refused.join("\n")
                );
                tokio::spawn(async move {
                    if let Err(e) = bot.send_message(chat, notice).await {
                        tracing::warn!(error = %e, "telegram: the file notice was not sent");
                    }
                });
            }
        }
        self.publisher
            .publish(&m)
            .await
            .map_err(|e| format!("kafka: {e}"))?;
        Ok(Took::Published(m))
    }
}

/// What a client over their rate is told in their chat (the message itself is not taken).
pub fn too_fast(retry_after_secs: u64) -> String {
    format!(
        "You are sending messages too fast: this one was not delivered. Please send it again in {retry_after_secs} s."
    )
}

/// Whether a client's message may go on within their rate budget (the web chat's: one budget per
/// client id). Over it, the message is not published and the client is told so in the chat, in
/// the background: a slow Bot API never holds the intake up.
pub(crate) fn admitted(limiter: &RateLimiter, bot: &Bot, msg: &Message, client_id: &str) -> bool {
    let Err(wait) = limiter.check(client_id) else {
        return true;
    };
    let secs = edge::client::retry_after_secs(wait);
    metrics::counter!("inbox_messages_rate_limited_total", "channel" => CHANNEL).increment(1);
    tracing::info!(
        client_id,
        retry_after_secs = secs,
        "telegram: client over its rate; message refused"
    );
    let (bot, chat) = (bot.clone(), msg.chat.id);
    tokio::spawn(async move {
        if let Err(e) = bot.send_message(chat, too_fast(secs)).await {
            tracing::warn!(error = %e, "telegram: the rate notice was not sent");
        }
    });
    false
}

/// Sets the bot's command menu (`setMyCommands`) to the spec's bot commands, once, retrying
/// until the Bot API takes it (or refuses it outright) or `shutdown`: the menu is a convenience,
/// so a Bot API that is down at start never stops the channel. An empty list clears the menu.
pub async fn publish_commands(
    bot: Bot,
    commands: std::sync::Arc<[edge::client::BotCommand]>,
    shutdown: CancellationToken,
) {
    let menu: Vec<teloxide::types::BotCommand> = commands
        .iter()
        .map(|c| {
            // Telegram wants 1 to 256 characters of description.
            let description: String = c.description.trim().chars().take(256).collect();
            let description = if description.is_empty() {
                format!("/{}", c.name)
            } else {
                description
            };
            teloxide::types::BotCommand::new(c.name.clone(), description)
        })
        .collect();
    let mut backoff = Backoff::new();
    loop {
        let sent = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = bot.set_my_commands(menu.clone()).into_future() => r,
        };
        match sent {
            Ok(_) => {
                tracing::info!(commands = menu.len(), "telegram: command menu set");
                return;
            }
            Err(RequestError::RetryAfter(s)) => sleep_or_cancel(s.duration(), &shutdown).await,
            // The Bot API refused the menu itself (a token without the right, a rule of its own
            // we do not know): asking again cannot help. The channel works without the menu.
            Err(RequestError::Api(e)) => {
                tracing::error!(error = %e, "telegram: setMyCommands refused; no command menu");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "telegram: setMyCommands failed; retrying");
                backoff.wait(&shutdown).await;
            }
        }
    }
}

/// Polls updates until `shutdown`, publishing each message and then moving the offset.
pub async fn poll_updates(settings: TelegramSettings, intake: Intake, shutdown: CancellationToken) {
    let (bot, store) = (intake.bot.clone(), intake.store.clone());
    let cursor = settings.offset_cursor();
    let mut backoff = Backoff::new();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let offset = match store.channel_cursor(&cursor).await {
            Ok(o) => o.unwrap_or(0),
            Err(e) => {
                tracing::warn!(error = %e, "telegram: cannot read the update offset");
                backoff.wait(&shutdown).await;
                continue;
            }
        };
        let request = bot
            .get_updates()
            .offset(i32::try_from(offset).unwrap_or(i32::MAX))
            .timeout(settings.poll_timeout.as_secs() as u32)
            .allowed_updates(vec![AllowedUpdate::Message]);
        let updates = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = request.into_future() => r,
        };
        let updates = match updates {
            Ok(u) => u,
            Err(RequestError::RetryAfter(s)) => {
                sleep_or_cancel(s.duration(), &shutdown).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "telegram: getUpdates failed");
                backoff.wait(&shutdown).await;
                continue;
            }
        };
        backoff.reset();
        if updates.is_empty() {
            sleep_or_cancel(settings.idle_delay, &shutdown).await;
            continue;
        }
        for update in updates {
            let update_id = i64::from(update.id.0);
            // A server that ignores `offset` (or a retry after a crash) repeats updates: skip any
            // at or below the stored offset. The message id dedups what slips past this.
            if update_id < offset {
                continue;
            }
            if let UpdateKind::Message(msg) = &update.kind {
                match intake.take_message(msg).await {
                    Err(e) => {
                        // Not taken: the offset stays, the update comes again.
                        tracing::warn!(error = %e, "telegram: message not taken; will retry");
                        backoff.wait(&shutdown).await;
                        break;
                    }
                    Ok(Took::Published(m)) => {
                        tracing::info!(message_id = %m.message_id, client_id = %m.client_id,
                            update_id, files = m.attachments.len(), "telegram message accepted");
                        crate::crash::after_publish(CHANNEL);
                    }
                    Ok(Took::Refused) => {}
                    Ok(Took::Empty) => {
                        tracing::debug!(update_id, "telegram: update without content")
                    }
                }
            }
            if let Err(e) = store.advance_channel_cursor(&cursor, update_id + 1).await {
                tracing::warn!(error = %e, "telegram: cannot store the update offset");
                break;
            }
        }
    }
}

/// Sends client-visible events to Telegram chats.
#[derive(Clone)]
pub struct TelegramOutbound {
    bot: Bot,
    /// A manager's files are read from the store as the client may read them.
    files: Files,
    store: PgStore,
}

impl TelegramOutbound {
    pub fn new(
        settings: &TelegramSettings,
        files: Files,
        store: PgStore,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            bot: settings.bot()?,
            files,
            store,
        })
    }
}

impl Outbound for TelegramOutbound {
    fn channel(&self) -> &'static str {
        CHANNEL
    }

    fn client_prefix(&self) -> &'static str {
        CLIENT_PREFIX
    }

    async fn send(&self, event: &tickets::Event, text: &str) -> Result<String, SendError> {
        let chat = chat_of(&event.client_id)
            .ok_or_else(|| SendError::Permanent(format!("not a chat: {}", event.client_id)))?;
        let sent = async {
            // Files with the text as the first one's caption when it fits; else the text first.
            // A retry after a partial send repeats what was sent (at least once).
            if has_files(event) {
                let fits = !text.is_empty() && text.chars().count() <= 1024;
                let mut first = None;
                if !fits && !text.is_empty() {
                    first = Some(self.bot.send_message(chat, text).await?.id.0.to_string());
                }
                let caption = if fits { text } else { "" };
                let (file_id, _) =
                    send_files(&self.bot, &self.files, &self.store, event, chat, caption).await?;
                if let Some(id) = first.or(file_id) {
                    return Ok(id);
                }
            }
            self.bot
                .send_message(chat, text)
                .protect_content(false)
                .await
                .map(|m| m.id.0.to_string())
        };
        match sent.await {
            Ok(id) => Ok(id),
            Err(RequestError::RetryAfter(s)) => Err(SendError::RetryAfter(s.duration())),
            // Telegram answered and refused (blocked by the user, chat not found, ...).
            Err(RequestError::Api(e)) => Err(SendError::Permanent(format!("telegram: {e}"))),
            Err(RequestError::MigrateToChatId(id)) => Err(SendError::Permanent(format!(
                "telegram: the group moved to chat {}",
                id.0
            ))),
            Err(e) => Err(SendError::Transient(format!("telegram: {e}"))),
        }
    }
}

/// Exponential backoff for a retry loop: 0.5 s doubling to 30 s.
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Self {
        Self(Duration::from_millis(500))
    }

    pub(crate) fn reset(&mut self) {
        *self = Self::new();
    }

    pub(crate) async fn wait(&mut self, shutdown: &CancellationToken) {
        sleep_or_cancel(self.0, shutdown).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(30));
    }
}

pub(crate) async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(json: serde_json::Value) -> Message {
        serde_json::from_value(json).expect("a valid Telegram message")
    }

    #[test]
    fn the_same_telegram_message_always_maps_to_the_same_message_of_the_chat_client() {
        let m = message(serde_json::json!({
            "message_id": 7, "date": 1_700_000_000,
            "chat": { "id": 42, "type": "private", "first_name": "Ivan" },
            "from": { "id": 42, "is_bot": false, "first_name": "Ivan", "last_name": "Petrov" },
            "text": "/start"
        }));
        let (a, b) = (inbound_message(&m), inbound_message(&m));
        let a = a.expect("a text message is stored");
        assert_eq!(Some(&a.message_id), b.as_ref().map(|b| &b.message_id));
        assert_eq!(
            (
                a.client_id.as_str(),
                a.external_id.as_str(),
                a.body.as_str()
            ),
            ("tg:42", "42/7", "/start")
        );
        assert_eq!(a.client_name, "Ivan Petrov");
    }

    #[test]
    fn a_document_is_a_file_to_fetch_not_a_line_of_the_text() {
        let m = message(serde_json::json!({
            "message_id": 8, "date": 1_700_000_000,
            "chat": { "id": 42, "type": "private", "first_name": "Ivan" },
            "caption": "my statement",
            "document": { "file_id": "f", "file_unique_id": "u", "file_name": "statement.pdf",
                          "mime_type": "application/pdf", "file_size": 1234 }
        }));
        let body = inbound_message(&m).map(|m| m.body);
        assert_eq!(body.as_deref(), Some("my statement"));
        let files = files_of(&m);
        assert_eq!(
            files
                .iter()
                .map(|f| (f.name.as_str(), f.content_type.as_str(), f.size))
                .collect::<Vec<_>>(),
            [("statement.pdf", "application/pdf", 1234)]
        );
        // Without a caption the message is still taken: it is its file.
        let bare = message(serde_json::json!({
            "message_id": 9, "date": 1_700_000_000,
            "chat": { "id": 42, "type": "private", "first_name": "Ivan" },
            "document": { "file_id": "f", "file_unique_id": "u", "file_size": 10 }
        }));
        assert_eq!(inbound_message(&bare).map(|m| m.body), Some(String::new()));
    }
}
