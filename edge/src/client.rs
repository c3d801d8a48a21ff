//! A client's chat: the one implementation of what a client may do (send, history, read cursor,
//! event stream), under both client APIs, the web chat's HTTP and WebSocket routes and the gRPC
//! `ClientService`. The admission (a verified token with role `client`, the per-client rate
//! limit), the validation of every field, the idempotency of sends and the visibility of what is
//! read are written here once; an adapter only takes its protocol's fields apart and says the
//! outcome in its protocol (field names, status codes, close frames).

use std::time::Duration;

use tickets::attachments::{Reader, Uploader};
use tickets::{
    AttachmentRef, Caller, ChatCursor, ChatMessage, MessageBody, PgStore, ReadState, Role,
    StoreError, message_id_for, web_external_id,
};
use uuid::Uuid;

use crate::auth::{AuthError, Verified, Verifier};
use crate::files::{Files, Upload};
use crate::publish::Publisher;
use crate::ratelimit::RateLimiter;
use crate::stream::{Audience, Events, Streams};

/// The page of history a client gets when it does not ask for a size.
pub const DEFAULT_PAGE: i64 = 50;
/// Largest history page a client may ask for.
pub const MAX_PAGE: i64 = 500;

/// The channel of a message a client sends through an API (web chat or gRPC: one chat, one id
/// space, so a retry on the other API is still the same message).
const CHANNEL: &str = "web";

/// A field of a client's request, as the core knows it; each adapter names it in its protocol
/// (`client_message_id` on HTTP is `idempotency_key` on gRPC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Body,
    IdempotencyKey,
    PageSize,
    PageToken,
    Cursor,
    Attachments,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("too many requests; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("{message}")]
    Invalid { field: Field, message: String },
    /// The idempotency key was used before for a different message.
    #[error("the idempotency key was already used for a different message")]
    KeyReused,
    /// Not part of the caller's chat (or not at all: the two are not told apart).
    #[error("no such message in your chat")]
    NoSuchMessage,
    #[error("no such file in your chat")]
    NoSuchAttachment,
    /// A file refused (size, type, content), or the object store failing.
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    #[error(transparent)]
    TooManyStreams(#[from] crate::stream::TooManyStreams),
    #[error("message bus unavailable: {0}")]
    Bus(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: Field, message: impl Into<String>) -> ClientError {
    ClientError::Invalid {
        field,
        message: message.into(),
    }
}

/// A message the core accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub message_id: Uuid,
    /// Published now (false: a retry of a message already stored, answered from the store).
    pub published: bool,
}

/// One page of the client's chat, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub messages: Vec<ChatMessage>,
    /// The cursor of the next (older) page, if there is one.
    pub next_before: Option<String>,
}

/// A command of the bank's bot a client may send (the spec's `bots.commands`), as apps offer it:
/// the widget's hints, Telegram's command menu, `ClientService.ListCommands`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BotCommand {
    /// Without the slash: the client writes `/name`.
    pub name: String,
    pub description: String,
}

impl BotCommand {
    /// The list of `(name, description)` pairs, in their order.
    pub fn list<'a>(named: impl IntoIterator<Item = (&'a str, &'a str)>) -> std::sync::Arc<[Self]> {
        named
            .into_iter()
            .map(|(name, description)| Self {
                name: name.to_owned(),
                description: description.to_owned(),
            })
            .collect()
    }
}

#[derive(Clone)]
pub struct ClientChat {
    pub store: PgStore,
    pub publisher: Publisher,
    pub verifier: Verifier,
    pub limiter: RateLimiter,
    pub streams: Streams,
    pub files: Files,
    /// The spec's bot commands, in its order (the same for every client).
    pub commands: std::sync::Arc<[BotCommand]>,
}

impl ClientChat {
    /// The client of a bearer `Authorization` header value: verified (with a JWKS this may fetch
    /// the identity provider's keys), with role `client`, within its rate.
    pub async fn admit_header(&self, header: Option<&str>) -> Result<Verified, ClientError> {
        self.admit(self.verifier.verify_header_token_async(header).await?)
            .await
    }

    /// [`Self::admit_header`] of a bare token (a browser's WebSocket cannot set headers).
    pub async fn admit_token(&self, token: &str) -> Result<Verified, ClientError> {
        self.admit(self.verifier.verify_token_async(token).await?)
            .await
    }

    /// The token's caller as a client: their client id is their identity's
    /// ([`PgStore::web_client`]: `web:<subject>`, or the id they had before the prefixes), so
    /// no subject can name a Telegram, email or other provider's client.
    async fn admit(&self, mut token: Verified) -> Result<Verified, ClientError> {
        crate::auth::require(&token.caller, Role::Client)?;
        self.limiter
            .check(&format!("{}\0{}", token.issuer, token.caller.user_id))
            .map_err(|wait| ClientError::RateLimited {
                retry_after_secs: retry_after_secs(wait),
            })?;
        token.caller.user_id = self
            .store
            .web_client(&token.issuer, &token.caller.user_id)
            .await?;
        Ok(token)
    }

    /// Sends `body` with `files` (the client's uploads, [`Self::upload`]; the body may then be
    /// empty) as the client's message `key` (their idempotency key): published to Kafka,
    /// answered after the broker's ack. A retry of a message already stored is answered from
    /// the store and not published again; the same key with another body is refused.
    pub async fn send(
        &self,
        client: &Caller,
        body: &str,
        key: Uuid,
        files: &[Uuid],
    ) -> Result<Sent, ClientError> {
        self.files
            .check_count(files.len())
            .map_err(|e| invalid(Field::Attachments, e.to_string()))?;
        let body = MessageBody::parse_with_files(body, files.len())
            .map_err(|e| invalid(Field::Body, e.to_string()))?;
        let external_id = web_external_id(&client.user_id, key);
        let message_id = message_id_for(CHANNEL, &external_id);
        if let Some(stored) = self.store.client_message_body(message_id).await? {
            if stored != body.as_str() {
                return Err(ClientError::KeyReused);
            }
            return Ok(Sent {
                message_id,
                published: false,
            });
        }
        let attachments = self.unsent_files(client, files).await?;
        let msg = proto::v1::InboundMessage {
            attachments: attachments
                .iter()
                .map(crate::publish::attachment_ref)
                .collect(),
            message_id: message_id.to_string(),
            client_id: client.user_id.clone(),
            channel: CHANNEL.into(),
            external_id,
            body: body.into_inner(),
            client_name: client.display_name.clone(),
            received_at_unix_ms: chrono::Utc::now().timestamp_millis(),
            sealed_body: Vec::new(),
        };
        self.publisher.publish(&msg).await?;
        tracing::info!(%message_id, client_id = %client.user_id, "client message accepted");
        Ok(Sent {
            message_id,
            published: true,
        })
    }

    /// The client's uploads `ids`, each once, that a message may still take.
    async fn unsent_files(
        &self,
        client: &Caller,
        ids: &[Uuid],
    ) -> Result<Vec<AttachmentRef>, ClientError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let distinct: std::collections::BTreeSet<&Uuid> = ids.iter().collect();
        if distinct.len() != ids.len() {
            return Err(invalid(Field::Attachments, "names a file twice"));
        }
        let refs = self
            .store
            .unsent_attachments(Uploader::Client(&client.user_id), ids)
            .await?;
        if refs.len() != ids.len() {
            return Err(invalid(
                Field::Attachments,
                "names a file that is not an upload of yours, or that was sent already",
            ));
        }
        Ok(refs)
    }

    /// Checks and stores a file for the client's next message (its id goes in
    /// [`Self::send`]'s `files`); kept a day when no message takes it.
    pub async fn upload(
        &self,
        client: &Caller,
        upload: Upload,
    ) -> Result<AttachmentRef, ClientError> {
        Ok(self
            .files
            .accept(&self.store, Uploader::Client(&client.user_id), upload)
            .await?)
    }

    /// A file of the client's chat (or their own upload), with its bytes.
    pub async fn download(
        &self,
        client: &Caller,
        id: Uuid,
    ) -> Result<(AttachmentRef, bytes::Bytes), ClientError> {
        self.files
            .fetch(&self.store, Reader::Client(&client.user_id), id)
            .await?
            .ok_or(ClientError::NoSuchAttachment)
    }

    /// The client is typing: the manager of their assigned ticket sees it (`typing` on their
    /// stream), at most once per [`TYPING_EVERY`] per client; more often, or with nobody to tell,
    /// nothing happens (a typing indicator is best effort).
    pub async fn typing(&self, client: &Caller) -> Result<(), ClientError> {
        if typing_throttle().check(&client.user_id).is_ok() {
            self.store.client_typing(&client.user_id).await?;
        }
        Ok(())
    }

    /// The page of the client's chat (all of their tickets) before the cursor `before` (a
    /// previous page's `next_before`; None: the newest), `limit` messages (None: the default).
    pub async fn history(
        &self,
        client: &Caller,
        before: Option<&str>,
        limit: Option<i64>,
    ) -> Result<History, ClientError> {
        let limit = page_size(limit)?;
        let before = before
            .map(ChatCursor::decode)
            .transpose()
            .map_err(|_| invalid(Field::PageToken, "is not a cursor this API returned"))?;
        let page = self
            .store
            .client_history(&client.user_id, before, limit)
            .await?;
        let next_before = page
            .has_more
            .then(|| page.messages.first().map(|m| m.cursor().encode()))
            .flatten();
        Ok(History {
            messages: page.messages,
            next_before,
        })
    }

    /// Moves the client's read cursor forward to `message_id`, a message of their chat.
    pub async fn mark_read(
        &self,
        client: &Caller,
        message_id: Uuid,
    ) -> Result<ReadState, ClientError> {
        self.store
            .mark_read(&client.user_id, message_id)
            .await?
            .ok_or(ClientError::NoSuchMessage)
    }

    /// The bot commands a client may send, in the spec's order (each adapter admits the caller
    /// first, as for every read).
    pub fn commands(&self) -> &[BotCommand] {
        &self.commands
    }

    pub async fn read_state(&self, client: &Caller) -> Result<ReadState, ClientError> {
        Ok(self.store.read_state(&client.user_id).await?)
    }

    /// The client's events after `after` (the last event id they saw; 0: all), then live ones,
    /// until the token expires, the consumer falls behind or the service stops.
    pub fn events(&self, token: &Verified, after: i64) -> Result<Events, ClientError> {
        if after < 0 {
            return Err(invalid(Field::Cursor, "must not be negative"));
        }
        Ok(self.streams.open(
            Audience::Client(token.caller.user_id.clone()),
            after,
            token.remaining(),
        )?)
    }
}

/// A history page size: None takes the default.
pub fn page_size(limit: Option<i64>) -> Result<i64, ClientError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(invalid(
            Field::PageSize,
            format!("must be 1 to {MAX_PAGE} (or absent: {DEFAULT_PAGE})"),
        )),
    }
}

/// Whole seconds to wait, at least one (what `Retry-After` and gRPC's `RetryInfo` carry).
pub fn retry_after_secs(wait: Duration) -> u64 {
    // Saturating float-to-int cast: a wait of any length gives a finite number.
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// The shortest interval between two typing signals of one sender that are passed on.
/// Clients send one every 2 s while typing; the margin keeps their timer's jitter from dropping
/// every other one.
pub const TYPING_EVERY: std::time::Duration = std::time::Duration::from_millis(1500);

/// One typing signal per sender per [`TYPING_EVERY`] (this process's; clients and managers).
pub fn typing_throttle() -> &'static crate::ratelimit::RateLimiter {
    static THROTTLE: std::sync::OnceLock<crate::ratelimit::RateLimiter> =
        std::sync::OnceLock::new();
    THROTTLE.get_or_init(|| {
        crate::ratelimit::RateLimiter::new(crate::ratelimit::RateLimit {
            burst: 1,
            per_second: 1.0 / TYPING_EVERY.as_secs_f64(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_size_is_one_to_the_maximum_and_absent_means_the_default() {
        assert_eq!(page_size(None).ok(), Some(DEFAULT_PAGE));
        assert_eq!(page_size(Some(1)).ok(), Some(1));
        assert_eq!(page_size(Some(MAX_PAGE)).ok(), Some(MAX_PAGE));
        for bad in [0, -1, MAX_PAGE + 1] {
            assert!(matches!(
                page_size(Some(bad)),
                Err(ClientError::Invalid {
                    field: Field::PageSize,
                    ..
                })
            ));
        }
    }

    #[test]
    fn a_wait_rounds_up_to_whole_seconds_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_200)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }
}
