//! Queued bot commands (`workflows.yaml` `bots`) between the engine and the bank's bot worker,
//! over Kafka, with no Temporal call:
//! - [`BotRelay`] hands the commands the inbound transaction queued (`bot_commands`) to the bot
//!   on `bot.commands`, and settles those whose answer did not come by their due time: the client
//!   is told so and, when the spec says `hand_over`, a manager gets the command as a message. The
//!   due time is the row's, in PostgreSQL; the relay wakes at the next one.
//! - [`BotReplies`] reads the bot's answers from `bot.replies` (offsets in PostgreSQL, as the
//!   inbound consumer) and applies each in one transaction: the client's chat gets it (a
//!   `bot_replied` event, delivered on the client's channel). An answer that can never be applied
//!   (not JSON, no such command, another client's) goes to `bot.replies.dlq` with the reason.
//!
//! The wire format is JSON, keyed by client id (see [`CommandRecord`], [`ReplyRecord`]); the
//! correlation id is the command message's id, so a command published twice (a crash between the
//! publish and its mark) is answered once: the first answer of a command is its only one.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use rdkafka::Message as _;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::FutureProducer;
use serde::{Deserialize, Serialize};
use spec::checker::InboundCheck;
use tickets::PgStore;
use tickets::bots::{BotReplyTaken, QueuedCommand};
use tickets::outbox::Numbered;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::source::{Fetch, LeasedSource};

/// Commands published (and timeouts settled) per round at most.
const BATCH: i64 = 500;

/// The largest answer record read; a larger one is dead-lettered.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// The topics, each after the deployment's prefix (`INBOX_BOT_*_TOPIC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotTopics {
    pub commands: String,
    pub replies: String,
    pub dlq: String,
}

impl BotTopics {
    pub fn from_env(env: &platform::settings::Env, prefix: &str) -> Self {
        use crate::settings::{BOT_COMMANDS_TOPIC, BOT_DLQ_TOPIC, BOT_REPLIES_TOPIC};
        Self {
            commands: format!("{prefix}{}", env.text(&BOT_COMMANDS_TOPIC)),
            replies: format!("{prefix}{}", env.text(&BOT_REPLIES_TOPIC)),
            dlq: format!("{prefix}{}", env.text(&BOT_DLQ_TOPIC)),
        }
    }

    pub fn all(&self) -> [&str; 3] {
        [&self.commands, &self.replies, &self.dlq]
    }
}

/// A command as the bot worker receives it on `bot.commands` (key: the client id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandRecord {
    /// Answer with this id.
    pub correlation_id: Uuid,
    /// The command's name, lowercase, without the `/`.
    pub command: String,
    /// What followed the command on its line (may be empty).
    pub args: String,
    /// The client (`web:…`, `tg:…`, `email:…`): the bot answers for this client only.
    pub client_id: String,
    /// The channel the client wrote on (the answer goes back there).
    pub channel: String,
    pub sent_at: DateTime<Utc>,
    /// An answer after this instant is not shown: the client was told the bot did not answer.
    pub deadline: DateTime<Utc>,
}

impl From<&QueuedCommand> for CommandRecord {
    fn from(q: &QueuedCommand) -> Self {
        Self {
            correlation_id: q.id,
            command: q.command.clone(),
            args: q.args.clone(),
            client_id: q.client_id.clone(),
            channel: q.channel.clone(),
            sent_at: q.created_at,
            deadline: q.due_at,
        }
    }
}

/// The bot's answer on `bot.replies` (key: the client id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplyRecord {
    pub correlation_id: Uuid,
    /// The command's client, as the command named it.
    pub client_id: String,
    /// What the client reads (trimmed; cut at 4,096 characters).
    #[serde(default)]
    pub text: String,
    /// The bot cannot help: after `text` (if any), a manager takes the command over.
    #[serde(default)]
    pub hand_over: bool,
}

/// Why an answer record can never be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyRejection {
    #[error("the record is larger than {MAX_REPLY_BYTES} bytes")]
    TooLarge,
    #[error("not a bot answer: {0}")]
    Malformed(String),
    #[error("an answer needs `text` or `handOver: true`")]
    Empty,
    #[error("no command {0} of this client")]
    UnknownCommand(Uuid),
}

/// An answer record read and checked (its command not yet looked up).
pub fn parse_reply(value: &[u8]) -> Result<ReplyRecord, ReplyRejection> {
    if value.len() > MAX_REPLY_BYTES {
        return Err(ReplyRejection::TooLarge);
    }
    let r: ReplyRecord =
        serde_json::from_slice(value).map_err(|e| ReplyRejection::Malformed(e.to_string()))?;
    if r.text.trim().is_empty() && !r.hand_over {
        return Err(ReplyRejection::Empty);
    }
    Ok(r)
}

/// Hands queued commands to the bot and settles those that timed out.
#[derive(Clone)]
pub struct BotRelay {
    pub store: PgStore,
    pub producer: FutureProducer,
    pub topic: String,
    /// Hand-overs are routed with the current spec.
    pub check: Arc<InboundCheck>,
}

impl BotRelay {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut commits = Numbered::default();
        let mut backoff = Duration::from_millis(100);
        loop {
            let wait = match self.round().await {
                Ok(true) => continue,
                Ok(false) => {
                    backoff = Duration::from_millis(100);
                    match self.store.next_bot_due().await {
                        Ok(due) => due.map(|at| (at - Utc::now()).to_std().unwrap_or_default()),
                        Err(e) => {
                            tracing::warn!(error = %e, "next bot deadline not read");
                            Some(Duration::from_secs(1))
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "bot commands not handed over; retrying");
                    let b = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    Some(b)
                }
            };
            let due = async {
                match wait {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                () = commits.wait(&self.store) => {}
                () = due => {}
            }
        }
    }

    /// Publishes what is queued and settles what fell due; true if a full batch was found.
    async fn round(&self) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
        let queued = self.store.bot_commands_unsent(BATCH).await?;
        if !queued.is_empty() {
            let sends = queued.iter().map(|q| async move {
                let value = serde_json::to_vec(&CommandRecord::from(q))?;
                platform::kafka::publish_acked(
                    &self.producer,
                    &self.topic,
                    &q.client_id,
                    &value,
                    Duration::from_secs(30),
                )
                .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            });
            for r in futures::future::join_all(sends).await {
                r?;
            }
            let ids: Vec<Uuid> = queued.iter().map(|q| q.id).collect();
            self.store.mark_bot_commands_sent(&ids).await?;
            tracing::info!(commands = queued.len(), "commands handed to the bot");
        }
        let timed_out = self
            .store
            .time_out_bot_commands(BATCH, self.check.as_ref())
            .await?;
        for t in &timed_out {
            tracing::warn!(
                command_id = %t.id, client_id = %t.client_id, command = %t.command,
                handed_over = t.handed_over, "the bot did not answer in time"
            );
        }
        if !timed_out.is_empty() {
            metrics::counter!("inbox_bot_timeouts_total").increment(timed_out.len() as u64);
        }
        Ok(queued.len() as i64 == BATCH || timed_out.len() as i64 == BATCH)
    }
}

/// Reads the bot's answers and applies them.
#[derive(Clone)]
pub struct BotReplies {
    pub kafka: platform::kafka::KafkaSettings,
    pub fetch: Fetch,
    pub topic: String,
    pub store: PgStore,
    pub dead_letters: platform::kafka::DeadLetters,
    pub check: Arc<InboundCheck>,
}

/// Answers handled before their offsets are saved at most.
const MAX_BATCH: usize = 256;

impl BotReplies {
    pub async fn run(self, shutdown: CancellationToken) {
        let Some(source) = LeasedSource::start_retrying(
            &self.kafka,
            self.fetch,
            self.store.clone(),
            &self.topic,
            &shutdown,
        )
        .await
        else {
            return;
        };
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = source.recv() => r,
            };
            let mut next_offsets = Vec::new();
            let mut record = Some(first);
            while let Some(r) = record.take() {
                match r {
                    Ok(r) => {
                        if !self.handle_retrying(&r, &shutdown).await {
                            return; // shutting down: the offsets stay, the answers come again
                        }
                        next_offsets.push((r.partition(), r.offset() + 1));
                    }
                    Err(e) => tracing::warn!(error = %e, "kafka receive failed; retrying"),
                }
                if next_offsets.len() < MAX_BATCH {
                    record = source.recv().now_or_never();
                }
            }
            if let Err(e) = source.done_upto(&next_offsets).await {
                tracing::warn!(error = %e, "offsets not saved; the answers may come again");
            }
        }
    }

    async fn handle_retrying(
        &self,
        record: &BorrowedMessage<'_>,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.handle(record).await {
                Ok(()) => return true,
                Err(e) => tracing::warn!(
                    partition = record.partition(), offset = record.offset(), error = %e,
                    "bot answer not yet handled; retrying"
                ),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// One answer; an error is transient (database, dead-letter publish) and retried.
    async fn handle(
        &self,
        record: &BorrowedMessage<'_>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let value = record.payload().unwrap_or_default();
        let reply = match parse_reply(value) {
            Ok(r) => r,
            Err(reason) => return self.dead_letter(record, &reason).await,
        };
        let taken = self
            .store
            .take_bot_reply(
                reply.correlation_id,
                &reply.client_id,
                &reply.text,
                reply.hand_over,
                self.check.as_ref(),
            )
            .await?;
        match taken {
            BotReplyTaken::Unknown => {
                self.dead_letter(
                    record,
                    &ReplyRejection::UnknownCommand(reply.correlation_id),
                )
                .await?
            }
            outcome => {
                let label = match outcome {
                    BotReplyTaken::Delivered { .. } => "delivered",
                    BotReplyTaken::Duplicate => "duplicate",
                    _ => "late",
                };
                metrics::counter!("inbox_bot_replies_total", "outcome" => label).increment(1);
                tracing::info!(
                command_id = %reply.correlation_id, client_id = %reply.client_id, ?outcome,
                "bot answer handled"
                )
            }
        }
        Ok(())
    }

    async fn dead_letter(
        &self,
        record: &BorrowedMessage<'_>,
        reason: &ReplyRejection,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let origin = platform::kafka::Origin {
            topic: record.topic(),
            partition: record.partition(),
            offset: record.offset(),
            key: record.key().unwrap_or_default(),
            value: record.payload().unwrap_or_default(),
        };
        self.dead_letters
            .publish(&origin, &reason.to_string())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_json_with_text_or_a_hand_over() {
        let id = Uuid::new_v4();
        let r = parse_reply(
            format!(r#"{{"correlationId":"{id}","clientId":"web:a","text":"Fine","extra":1}}"#)
                .as_bytes(),
        )
        .expect("valid");
        assert_eq!(
            (r.correlation_id, r.text.as_str(), r.hand_over),
            (id, "Fine", false)
        );
        let r = parse_reply(
            format!(r#"{{"correlationId":"{id}","clientId":"web:a","handOver":true}}"#).as_bytes(),
        )
        .expect("valid");
        assert!(r.hand_over && r.text.is_empty());
        assert_eq!(
            parse_reply(
                format!(r#"{{"correlationId":"{id}","clientId":"web:a","text":" "}}"#).as_bytes()
            ),
            Err(ReplyRejection::Empty)
        );
        assert!(matches!(
            parse_reply(b"not json"),
            Err(ReplyRejection::Malformed(_))
        ));
        assert!(matches!(
            parse_reply(br#"{"correlationId":"nope","clientId":"web:a","text":"x"}"#),
            Err(ReplyRejection::Malformed(_))
        ));
        assert_eq!(
            parse_reply(&vec![b' '; MAX_REPLY_BYTES + 1]),
            Err(ReplyRejection::TooLarge)
        );
    }

    #[test]
    fn a_command_record_names_its_fields_in_camel_case() {
        let q = QueuedCommand {
            id: Uuid::nil(),
            client_id: "tg:42".into(),
            channel: "telegram".into(),
            command: "status".into(),
            args: "".into(),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            due_at: DateTime::<Utc>::UNIX_EPOCH,
        };
        let v = serde_json::to_value(CommandRecord::from(&q)).expect("valid");
        for key in [
            "correlationId",
            "command",
            "args",
            "clientId",
            "channel",
            "sentAt",
            "deadline",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
    }
}
