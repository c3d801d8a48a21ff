//! Client commands for the bank's bot worker (`workflows.yaml` `bots`): a client message that is
//! one of the spec's commands (`/status`, `/balance 40817…`) and passed the AFC check is not
//! routed to a manager. The inbound transaction queues it in `bot_commands` (its own outbox and
//! timer); the workflow service publishes it to the bot's topic with the message id as the
//! correlation id, and applies the bot's answer ([`PgStore::take_bot_reply`]) or, past the
//! command's timeout, tells the client so and, when the spec says `hand_over`, routes the command
//! to a manager as an ordinary message ([`PgStore::time_out_bot_commands`]). Each command has one
//! outcome, ever: the first of an answer and a timeout; a late or repeated answer changes nothing.
//!
//! Under the bank's own AFC system (`afc.provider: kafka`) a command is held for its verdict like
//! any message, but of no ticket ([`hold_command_in`]); the verdict's transaction queues it for
//! the bot or blocks it ([`release_held_command_in`]).
//!
//! The command message and the bot's answer are part of the client's one chat (the answer is a
//! system message of channel `bot`), and of no ticket: no manager sees them, unless a timeout
//! hands the command over.

use chrono::{DateTime, Utc};
use sqlx::Row as _;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::domain::{TicketStatus, Verdict, message_id_for};
use crate::external_afc::hold_for_afc;
use crate::inbound::{MessageCheck, open_ticket_in};
use crate::managers::match_waiting;
use crate::messages::apply_verdicts_in;
use crate::meters::Timings;
use crate::store::{PgStore, Result, insert_event, status_of};
use crate::ticket_event::TicketEvent;

/// The longest message that can be a command (longer ones go to a manager).
pub const MAX_COMMAND_CHARS: usize = 512;

/// The longest answer of a bot shown to a client; a longer one is cut there (with `…`).
pub const MAX_REPLY_CHARS: usize = 4096;

/// A message read as a command: `/name` (ASCII letters, digits, `_`; case-insensitive), a
/// Telegram-style `@botname` suffix ignored, then its arguments. One line only: a message with
/// several lines (or files, whose names the checked text carries on lines of their own) is
/// not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandText {
    /// Lowercase.
    pub name: String,
    pub args: String,
}

/// `body` as a command, if it has the form of one (whether the spec defines it is the caller's).
pub fn parse_command(body: &str) -> Option<CommandText> {
    let t = body.trim();
    if t.chars().count() > MAX_COMMAND_CHARS || t.contains(['\n', '\r']) {
        return None;
    }
    let rest = t.strip_prefix('/')?;
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let (word, args) = rest.split_at(end);
    let name = word.split_once('@').map_or(word, |(n, _)| n);
    let well_formed = (1..=32).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    well_formed.then(|| CommandText {
        name: name.to_ascii_lowercase(),
        args: args.trim().to_owned(),
    })
}

/// What happens when the bot does not answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBotTimeout {
    /// The client is told (`timeout_message`); the command stays the bot's.
    Reply,
    /// The client is told and the command goes to a manager as an ordinary message.
    HandOver,
}

impl OnBotTimeout {
    fn as_str(self) -> &'static str {
        match self {
            Self::Reply => "reply",
            Self::HandOver => "hand_over",
        }
    }
}

/// A command of the spec, matched in a client's message: what the inbound transaction queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotCall {
    pub command: String,
    pub args: String,
    pub timeout_ms: u64,
    pub on_timeout: OnBotTimeout,
    pub timeout_message: String,
}

/// A queued command as the bot worker receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedCommand {
    /// The command message's id: the correlation id.
    pub id: Uuid,
    pub client_id: String,
    pub channel: String,
    pub command: String,
    pub args: String,
    pub created_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
}

/// What became of a bot's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotReplyTaken {
    /// Told to the client (and, when the bot asked, the conversation handed to a manager).
    Delivered { handed_over: bool },
    /// This command was already answered: the first answer stands.
    Duplicate,
    /// The command timed out before: the client was told so; the answer is only counted.
    Late,
    /// No command has this correlation id.
    Unknown,
}

/// A command whose bot did not answer in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOutCommand {
    pub id: Uuid,
    pub client_id: String,
    pub command: String,
    pub handed_over: bool,
}

/// Queues the passed client message `message_id` as `call` for the bot, in the inbound
/// transaction: the message is passed and of no ticket, its row due `timeout_ms` from now.
/// False when it was not pending (checked already).
pub(crate) async fn queue_command_in(
    tx: &mut Transaction<'_, Postgres>,
    message_id: Uuid,
    call: &BotCall,
) -> Result<bool> {
    let Some(row) = sqlx::query(
        "UPDATE messages SET afc_status = 'passed' WHERE id = $1 AND afc_status = 'pending'
         RETURNING client_id, channel",
    )
    .bind(message_id)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(false);
    };
    insert_command_in(tx, message_id, &row, call, "queued").await?;
    Ok(true)
}

/// Holds the pending client message `message_id`, a command, for the bank's AFC system's verdict
/// (`afc.provider: kafka`), in the inbound transaction: its `bot_commands` row waits in `held`
/// (not published, no timer) and the AFC outbox gets the message with no ticket: a command opens
/// none. The verdict decides ([`release_held_command_in`]). True when it was held now (a message
/// found again by a later batch is already held).
pub(crate) async fn hold_command_in(
    tx: &mut Transaction<'_, Postgres>,
    message_id: Uuid,
    call: &BotCall,
    afc_timeout_ms: u64,
) -> Result<bool> {
    let Some(row) = sqlx::query(
        "SELECT client_id, channel FROM messages WHERE id = $1 AND afc_status = 'pending'",
    )
    .bind(message_id)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(false);
    };
    insert_command_in(tx, message_id, &row, call, "held").await?;
    Ok(hold_for_afc(tx, None, &[message_id], afc_timeout_ms).await? > 0)
}

/// The `bot_commands` row of `call` (once per message), due its timeout from now.
async fn insert_command_in(
    tx: &mut Transaction<'_, Postgres>,
    message_id: Uuid,
    message: &sqlx::postgres::PgRow,
    call: &BotCall,
    status: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO bot_commands
             (id, client_id, channel, command, args, timeout_ms, on_timeout, timeout_message,
              status, due_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + $6 * interval '1 millisecond')
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(message_id)
    .bind(message.try_get::<String, _>("client_id")?)
    .bind(message.try_get::<String, _>("channel")?)
    .bind(&call.command)
    .bind(&call.args)
    .bind(i64::try_from(call.timeout_ms).unwrap_or(i64::MAX))
    .bind(call.on_timeout.as_str())
    .bind(&call.timeout_message)
    .bind(status)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies the AFC verdict on `message_id` if it is a held command, in the verdict's transaction:
/// passed, the message is passed (of no ticket) and the command queued for the bot, its timeout
/// starting now; blocked, the command is `blocked` and the message stays pending with its verdict,
/// to be blocked (and the client warned) on the client's ticket as any message. True when the
/// command went to the bot: nothing else is left to do with the verdict.
pub(crate) async fn release_held_command_in(
    tx: &mut Transaction<'_, Postgres>,
    message_id: Uuid,
    passed: bool,
) -> Result<bool> {
    let released = sqlx::query(
        "UPDATE bot_commands
            SET status = CASE WHEN $2 THEN 'queued' ELSE 'blocked' END,
                due_at = now() + timeout_ms * interval '1 millisecond',
                settled_at = CASE WHEN $2 THEN NULL ELSE now() END
          WHERE id = $1 AND status = 'held'",
    )
    .bind(message_id)
    .bind(passed)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if released == 0 || !passed {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE messages SET afc_status = 'passed' WHERE id = $1 AND afc_status = 'pending'",
    )
    .bind(message_id)
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

/// SQL: the message `m` is not a command held for the AFC verdict (those are no ticket's).
pub(crate) const NOT_HELD_COMMAND_M: &str =
    "NOT EXISTS (SELECT 1 FROM bot_commands b WHERE b.id = m.id AND b.status = 'held')";

/// The bot's answer as the client reads it: trimmed, at most [`MAX_REPLY_CHARS`].
fn shown_reply(text: &str) -> String {
    let t = text.trim();
    if t.chars().count() <= MAX_REPLY_CHARS {
        return t.to_owned();
    }
    let mut cut: String = t.chars().take(MAX_REPLY_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// A system message of channel `bot` in the client's chat (of no ticket), once per `external_id`.
async fn insert_bot_message(
    tx: &mut Transaction<'_, Postgres>,
    external_id: &str,
    client_id: &str,
    body: &str,
) -> Result<(Uuid, DateTime<Utc>)> {
    let id = message_id_for("bot", external_id);
    let created_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO messages (id, client_id, author, channel, external_id, body, afc_status)
         VALUES ($1, $2, 'system', 'bot', $3, $4, 'not_checked')
         ON CONFLICT (channel, external_id) DO UPDATE SET body = messages.body
         RETURNING created_at",
    )
    .bind(id)
    .bind(client_id)
    .bind(external_id)
    .bind(body)
    .fetch_one(&mut **tx)
    .await?;
    Ok((id, created_at))
}

impl PgStore {
    /// Commands not yet handed to the bot, oldest first, at most `limit`.
    pub async fn bot_commands_unsent(&self, limit: i64) -> Result<Vec<QueuedCommand>> {
        let rows = sqlx::query(
            "SELECT id, client_id, channel, command, args, created_at, due_at FROM bot_commands
             WHERE published_at IS NULL AND status = 'queued' ORDER BY created_at, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QueuedCommand {
                    id: r.try_get("id")?,
                    client_id: r.try_get("client_id")?,
                    channel: r.try_get("channel")?,
                    command: r.try_get("command")?,
                    args: r.try_get("args")?,
                    created_at: r.try_get("created_at")?,
                    due_at: r.try_get("due_at")?,
                })
            })
            .collect()
    }

    /// Marks commands handed to the bot. Publishing one twice (a crash before this mark, two
    /// relays) is harmless: its first answer is the one shown.
    pub async fn mark_bot_commands_sent(&self, ids: &[Uuid]) -> Result<()> {
        sqlx::query(
            "UPDATE bot_commands SET published_at = now()
             WHERE id = ANY($1) AND published_at IS NULL",
        )
        .bind(ids)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// When the next queued command falls due, if any.
    pub async fn next_bot_due(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(
            sqlx::query_scalar("SELECT min(due_at) FROM bot_commands WHERE status = 'queued'")
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// Applies the bot's answer `text` to the command `id` of `client_id` (the client the bot
    /// names must be the command's). With `hand_over` the bot asks a manager to take over: the
    /// answer is shown, then the command is routed as an ordinary message (checked with `check`).
    pub async fn take_bot_reply(
        &self,
        id: Uuid,
        client_id: &str,
        text: &str,
        hand_over: bool,
        check: &dyn MessageCheck,
    ) -> Result<BotReplyTaken> {
        let mut tx = self.begin_writing(hand_over).await?;
        let Some(row) = sqlx::query(
            "SELECT status, command FROM bot_commands WHERE id = $1 AND client_id = $2 FOR UPDATE",
        )
        .bind(id)
        .bind(client_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(BotReplyTaken::Unknown);
        };
        let status: String = row.try_get("status")?;
        match status.as_str() {
            "answered" => return Ok(BotReplyTaken::Duplicate),
            // Never handed to the bot: held for the AFC verdict, or blocked by it.
            "held" | "blocked" => return Ok(BotReplyTaken::Unknown),
            "timed_out" => {
                sqlx::query(
                    "UPDATE bot_commands SET late_replies = late_replies + 1 WHERE id = $1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(BotReplyTaken::Late);
            }
            _ => {}
        }
        let command: String = row.try_get("command")?;
        let body = shown_reply(text);
        let (message_id, created_at) =
            insert_bot_message(&mut tx, &format!("reply:{id}"), client_id, &body).await?;
        insert_event(
            &mut tx,
            client_id,
            &TicketEvent::BotReplied {
                message_id,
                command_message_id: id,
                command: &command,
                body: &body,
                created_at,
            },
        )
        .await?;
        let handed_over = hand_over && hand_over_in(&mut tx, self, id, client_id, check).await?;
        sqlx::query(
            "UPDATE bot_commands SET status = 'answered', settled_at = now(), handed_over = $2
             WHERE id = $1",
        )
        .bind(id)
        .bind(handed_over)
        .execute(&mut *tx)
        .await?;
        self.commit_writing(tx).await?;
        Ok(BotReplyTaken::Delivered { handed_over })
    }

    /// Settles the queued commands whose bot did not answer by their due time, at most `limit`
    /// per call: each client is told the command's timeout message; a `hand_over` command is
    /// routed to a manager as an ordinary message (checked with `check`).
    pub async fn time_out_bot_commands(
        &self,
        limit: i64,
        check: &dyn MessageCheck,
    ) -> Result<Vec<TimedOutCommand>> {
        let mut tx = self.begin_writing(true).await?;
        let rows = sqlx::query(
            "UPDATE bot_commands SET status = 'timed_out', settled_at = now()
             WHERE id IN (SELECT id FROM bot_commands WHERE status = 'queued' AND due_at <= now()
                          ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING id, client_id, command, on_timeout, timeout_message",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: Uuid = r.try_get("id")?;
            let client_id: String = r.try_get("client_id")?;
            let command: String = r.try_get("command")?;
            let body: String = r.try_get("timeout_message")?;
            let hand_over =
                r.try_get::<String, _>("on_timeout")? == OnBotTimeout::HandOver.as_str();
            let (message_id, created_at) =
                insert_bot_message(&mut tx, &format!("timeout:{id}"), &client_id, &body).await?;
            // Told before the hand-over's own events (a manager joining), in the client's order.
            insert_event(
                &mut tx,
                &client_id,
                &TicketEvent::BotTimedOut {
                    message_id,
                    command_message_id: id,
                    command: &command,
                    body: &body,
                    created_at,
                    handed_over: hand_over,
                },
            )
            .await?;
            let handed_over =
                hand_over && hand_over_in(&mut tx, self, id, &client_id, check).await?;
            if handed_over {
                sqlx::query("UPDATE bot_commands SET handed_over = true WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            out.push(TimedOutCommand {
                id,
                client_id,
                command,
                handed_over,
            });
        }
        self.commit_writing(tx).await?;
        Ok(out)
    }
}

/// Routes the command message `message_id` of `client_id` to a manager as an ordinary message
/// that passed the AFC check: onto the client's open ticket, or a new one (classified by the
/// command's text and queued), with ready managers matched. The transaction holds the matching
/// lock. False when the message is no longer a command's (already routed).
async fn hand_over_in(
    tx: &mut Transaction<'_, Postgres>,
    store: &PgStore,
    message_id: Uuid,
    client_id: &str,
    check: &dyn MessageCheck,
) -> Result<bool> {
    // Back to pending (of no ticket yet), so the screening records its verdict as for any message.
    let Some(body) = sqlx::query_scalar::<_, String>(
        "UPDATE messages SET afc_status = 'pending'
         WHERE id = $1 AND client_id = $2 AND afc_status = 'passed' AND ticket_id IS NULL
         RETURNING body",
    )
    .bind(message_id)
    .bind(client_id)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(false);
    };
    let open = sqlx::query(
        "SELECT id, status, manager_id FROM tickets
         WHERE client_id = $1 AND status <> 'closed' FOR UPDATE",
    )
    .bind(client_id)
    .fetch_optional(&mut **tx)
    .await?;
    let (ticket_id, status, manager_id) = match open {
        Some(r) => (
            r.try_get::<Uuid, _>("id")?,
            status_of(&r)?,
            r.try_get::<Option<String>, _>("manager_id")?,
        ),
        None => {
            let messages = [(message_id, body.clone())];
            let Some(t) = open_ticket_in(tx, client_id, &messages, check).await? else {
                return Ok(false);
            };
            (t.id, t.status, t.manager_id)
        }
    };
    let classification = (status == TicketStatus::Open).then(|| check.classify(&body));
    let mut timings = Timings::default();
    let applied = apply_verdicts_in(
        tx,
        ticket_id,
        status,
        manager_id.as_deref(),
        &[(message_id, Verdict::Passed)],
        check.blocked_warning(),
        classification.as_ref(),
        store.audit_seal(),
        &mut timings,
    )
    .await?;
    if applied.queued {
        insert_event(tx, client_id, &TicketEvent::TicketQueued { ticket_id }).await?;
        match_waiting(tx, &mut timings).await?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_a_slash_a_name_and_its_arguments_on_one_line() {
        let c = parse_command("  /Balance 40817 810  ").expect("a command");
        assert_eq!((c.name.as_str(), c.args.as_str()), ("balance", "40817 810"));
        let c = parse_command("/status@InboxBankBot").expect("a command");
        assert_eq!((c.name.as_str(), c.args.as_str()), ("status", ""));
        assert_eq!(
            parse_command("/rates_today").expect("a command").name,
            "rates_today"
        );
    }

    #[test]
    fn text_that_only_looks_like_a_command_is_a_message() {
        for text in [
            "status",
            "/",
            "/ status",
            "//status",
            "/статус",
            "/status\nand my card is lost",
            "/bal-ance",
            "a /status in the middle",
            &format!("/{}", "a".repeat(33)),
            &format!("/status {}", "x".repeat(MAX_COMMAND_CHARS)),
        ] {
            assert_eq!(parse_command(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_long_answer_is_cut_to_the_limit() {
        let long = "я".repeat(MAX_REPLY_CHARS + 10);
        let shown = shown_reply(&long);
        assert_eq!(shown.chars().count(), MAX_REPLY_CHARS);
        assert!(shown.ends_with('…'));
        assert_eq!(shown_reply("  fine  "), "fine");
    }
}
