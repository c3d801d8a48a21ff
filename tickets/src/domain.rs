//! Domain types and their rules. No database, Kafka, gRPC or Temporal types appear here.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace for the deterministic ids of this engine (UUID v5).
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b1d_4c1e_9f3a_4e57_a1d2_0c5e_7b9a_3f10);

/// Longest message body accepted from a client or a manager, in characters.
pub const MAX_BODY_CHARS: usize = 4096;

/// Who is calling, as read from a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub user_id: String,
    pub roles: Vec<Role>,
    pub display_name: String,
}

impl Caller {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Client,
    Manager,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client" => Some(Self::Client),
            "manager" => Some(Self::Manager),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Manager => "manager",
            Self::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketStatus {
    /// Created, no message has passed the AFC check yet.
    Open,
    /// Waiting for a ready manager.
    Waiting,
    Assigned,
    Closed,
}

impl TicketStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Waiting => "waiting",
            Self::Assigned => "assigned",
            Self::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "waiting" => Some(Self::Waiting),
            "assigned" => Some(Self::Assigned),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Author {
    Client,
    Manager,
    System,
}

impl Author {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Manager => "manager",
            Self::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client" => Some(Self::Client),
            "manager" => Some(Self::Manager),
            "system" => Some(Self::System),
            _ => None,
        }
    }
}

/// The outcome of the anti-financial-crime check of one client message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Passed,
    /// Blocked by the named rule: never shown to a manager; the client gets a warning.
    Blocked {
        rule: String,
    },
}

/// A message body that is not blank and not longer than [`MAX_BODY_CHARS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body must not be empty")]
    Empty,
    #[error("body is {0} characters long; at most {MAX_BODY_CHARS} are allowed")]
    TooLong(usize),
    /// PostgreSQL text cannot hold U+0000: accepted, such a body could never be stored.
    #[error("body must not contain NUL characters")]
    Nul,
}

impl MessageBody {
    pub fn parse(s: impl Into<String>) -> Result<Self, BodyError> {
        let s = s.into();
        if s.trim().is_empty() {
            return Err(BodyError::Empty);
        }
        let chars = s.chars().count();
        if chars > MAX_BODY_CHARS {
            return Err(BodyError::TooLong(chars));
        }
        if s.contains('\0') {
            return Err(BodyError::Nul);
        }
        Ok(Self(s))
    }

    /// The text of a message that carries `files` attachments: it may then be empty (a photo
    /// without a caption), and is otherwise held to [`MessageBody::parse`]'s rules.
    pub fn parse_with_files(s: impl Into<String>, files: usize) -> Result<Self, BodyError> {
        let s = s.into();
        if files > 0 && s.trim().is_empty() {
            return Ok(Self(String::new()));
        }
        Self::parse(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// The id of a message is a function of where it came from, so a retried delivery maps onto the
/// same row instead of a new one.
/// Every client id starts with its source: `tg:` (a Telegram chat), `email:` (a mail address),
/// `web:` (an identity provider's subject, through [`web_client_id`]); no identity of one source
/// can equal one of another. Ids without one are web clients from before the prefixes (kept as
/// they were: see `tickets::identities`).
pub const CLIENT_ID_PREFIXES: &[&str] = &["tg:", "email:", "web:"];

/// The client id of subject `subject` of the identity provider `issuer` (a token's `iss` and
/// `sub`): `web:<subject>`; `taken` (that id belongs to another issuer's subject already) gives
/// `web:<issuer tag>:<subject>`, the tag a hash of the issuer, so two providers' subjects never
/// meet in one client.
pub fn web_client_id(issuer: &str, subject: &str, taken: bool) -> String {
    if taken {
        let tag = Uuid::new_v5(&ID_NAMESPACE, format!("issuer\0{issuer}").as_bytes()).simple();
        format!("web:{}:{subject}", &tag.to_string()[..8])
    } else {
        format!("web:{subject}")
    }
}

/// How long after a close a client's answer to the satisfaction question counts as a rating.
pub const RATING_WINDOW_SECS: i64 = 24 * 3600;

/// A satisfaction rating as a client writes it: a digit 1 to 5 (`4`, `4/5`), or one to five
/// stars (`★★★★★`, `⭐⭐⭐`). Anything else is a message.
pub fn parse_rating(body: &str) -> Option<i16> {
    let t = body.trim();
    let t = t.strip_suffix("/5").unwrap_or(t).trim_end();
    if let Ok(n) = t.parse::<i16>()
        && (1..=5).contains(&n)
        && t.len() == 1
    {
        return Some(n);
    }
    let stars = t.chars().filter(|c| !matches!(c, '\u{fe0f}' | ' ')).count();
    let all_stars = t
        .chars()
        .all(|c| matches!(c, '★' | '⭐' | '\u{fe0f}' | ' '));
    (all_stars && (1..=5).contains(&stars)).then_some(stars as i16)
}

pub fn message_id_for(channel: &str, external_id: &str) -> Uuid {
    Uuid::new_v5(
        &ID_NAMESPACE,
        format!("msg\0{channel}\0{external_id}").as_bytes(),
    )
}

/// A ticket opened by a message gets an id derived from that message: redelivering the message
/// proposes the same ticket instead of a second one.
pub fn ticket_id_opened_by(message_id: Uuid) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("ticket\0{message_id}").as_bytes())
}

/// The external id of a web-chat message: the client's own message id, scoped to the client so two
/// clients can never collide.
pub fn web_external_id(client_id: &str, client_message_id: Uuid) -> String {
    format!("{client_id}/{client_message_id}")
}

/// A new client message as the inbound consumer stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClientMessage {
    pub id: Uuid,
    pub client_id: String,
    pub client_name: String,
    pub channel: String,
    pub external_id: String,
    /// Empty when the message is only its attachments.
    pub body: String,
    /// Files the message carries (already in the object store), in the order the client sent them.
    pub attachments: Vec<AttachmentRef>,
}

/// A file a message carries, as the message refers to it: the bytes are in the object store
/// (`tickets::attachments` keeps where), fetched only by whoever may read the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    pub id: Uuid,
    pub name: String,
    pub content_type: String,
    pub size: i64,
}

impl NewClientMessage {
    /// A message of `channel` that its source calls `external_id`: the id derives from both
    /// ([`message_id_for`]), so every redelivery of it is the same message.
    pub fn from_source(
        channel: &str,
        external_id: String,
        client_id: &str,
        client_name: &str,
        body: &str,
    ) -> Self {
        Self {
            id: message_id_for(channel, &external_id),
            client_id: client_id.into(),
            client_name: client_name.into(),
            channel: channel.into(),
            external_id,
            body: body.into(),
            attachments: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ticket {
    pub id: Uuid,
    pub client_id: String,
    pub client_name: String,
    pub status: TicketStatus,
    pub manager_id: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub assigned_at: Option<chrono::DateTime<chrono::Utc>>,
    /// What classification decided (`general`, `""`, normal and the spec's field defaults until
    /// the first message passes).
    pub queue: String,
    pub category: String,
    pub priority: i32,
    pub fields: serde_json::Value,
    /// When it was queued for a manager.
    pub waiting_since: Option<chrono::DateTime<chrono::Utc>>,
    pub first_response_at: Option<chrono::DateTime<chrono::Utc>>,
    pub closed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The client's satisfaction rating after the close, 1 to 5.
    pub rating: Option<i16>,
}

impl Ticket {
    /// The channel of the ticket's client, from the source their id names.
    pub fn channel(&self) -> &'static str {
        channel_of_client(&self.client_id)
    }
}

/// The channel a client id comes from (`tg:` Telegram, `email:` email, otherwise web).
pub fn channel_of_client(client_id: &str) -> &'static str {
    if client_id.starts_with("tg:") {
        "telegram"
    } else if client_id.starts_with("email:") {
        "email"
    } else {
        "web"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub id: Uuid,
    pub ticket_id: Option<Uuid>,
    pub author: Author,
    pub body: String,
    pub attachments: Vec<AttachmentRef>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// What classification decided for a ticket from its first message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketClassification {
    pub category: String,
    /// 0 low, 1 normal, 2 high, 3 urgent.
    pub priority: i32,
    pub queue: String,
    pub fields: serde_json::Value,
}

/// How a manager is routed: capacity N and the queues they serve (empty = every queue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routing {
    pub capacity: i32,
    pub queues: Vec<String>,
}

/// A ticket given to a manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub ticket_id: Uuid,
    pub client_id: String,
    pub manager_id: String,
    pub manager_name: String,
}

/// What `SetReady` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready_slots: i32,
    pub open_tickets: i32,
    pub capacity: i32,
    pub assigned: Option<Assignment>,
}

/// One event of the outbox, as streams deliver it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub seq: i64,
    pub kind: String,
    pub ticket_id: Option<Uuid>,
    pub client_id: String,
    pub manager_id: Option<String>,
    pub client_visible: bool,
    pub payload: serde_json::Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Event kinds (written through [`crate::ticket_event::TicketEvent`]). Clients see the first
/// five; managers see the ones addressed to them.
pub mod event_kind {
    pub const MESSAGE_ACCEPTED: &str = "message_accepted";
    pub const MESSAGE_BLOCKED: &str = "message_blocked";
    pub const MANAGER_ASSIGNED: &str = "manager_assigned";
    pub const MANAGER_REPLY: &str = "manager_reply";
    pub const TICKET_CLOSED: &str = "ticket_closed";
    /// To the client: the bank's bot answered their command (`body`).
    pub const BOT_REPLIED: &str = "bot_replied";
    /// To the client: the bot did not answer their command in time (`body` says so).
    pub const BOT_TIMED_OUT: &str = "bot_timed_out";
    /// To the manager: a client message passed the AFC check.
    pub const MESSAGE_VISIBLE: &str = "message_visible";
    /// To the client and the ticket's manager: a passed message is taken back (the first half of
    /// a card number its successor completed); views drop it.
    pub const MESSAGE_WITHDRAWN: &str = "message_withdrawn";
    /// To the manager: a ticket was assigned to them.
    pub const TICKET_ASSIGNED: &str = "ticket_assigned";
    /// Nobody took the ticket in time: its priority rose.
    pub const TICKET_ESCALATED: &str = "ticket_escalated";
    /// The first manager response did not come within the SLA.
    pub const SLA_BREACHED: &str = "sla_breached";
    /// To the client after a close, when the spec asks for a rating.
    pub const SATISFACTION_REQUESTED: &str = "satisfaction_requested";
    /// To the client and the ticket's manager: the client's answer rated the closed ticket.
    pub const SATISFACTION_RECORDED: &str = "satisfaction_recorded";
    /// To the ticket's manager: a reply or service message could not be delivered on the client's
    /// channel (refused, or retries exhausted); the client did not get it.
    pub const DELIVERY_FAILED: &str = "delivery_failed";
    /// To the ticket's manager: a send was in flight when communication stopped; the client may
    /// or may not have it. Resent only when the manager asks (`ResendDelivery`).
    pub const DELIVERY_UNKNOWN: &str = "delivery_unknown";
    /// Lifecycle, for the ticket's workflow (and supervisors): the inbound transaction opened a
    /// ticket for a client who had none.
    pub const TICKET_OPENED: &str = "ticket_opened";
    /// Lifecycle: the ticket's first passed message queued it for a manager.
    pub const TICKET_QUEUED: &str = "ticket_queued";
    /// Lifecycle: the ticket's first manager reply (its SLA is met).
    pub const TICKET_RESPONDED: &str = "ticket_responded";
    /// Lifecycle: the assigned manager asked to resolve the ticket (for its workflow).
    pub const RESOLVE_REQUESTED: &str = "resolve_requested";
    /// To the manager who wrote it: an internal note was added to their ticket.
    pub const NOTE_ADDED: &str = "note_added";
    /// To the manager who handed the ticket over: it is no longer theirs.
    pub const TICKET_TRANSFERRED_AWAY: &str = "ticket_transferred_away";
    /// A message waited longer than the spec's AFC timeout; it stays held.
    pub const AFC_TIMEOUT: &str = "afc_timeout";
    /// AFC found a manager reply suspicious (when the spec sends replies to AFC).
    pub const AFC_REPLY_FLAGGED: &str = "afc_reply_flagged";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_web_client_id_names_its_source_and_another_issuers_subject_gets_its_own() {
        assert_eq!(web_client_id("https://idp", "tg:42", false), "web:tg:42");
        let a = web_client_id("https://idp-a", "ivan", true);
        let b = web_client_id("https://idp-b", "ivan", true);
        assert!(a.starts_with("web:") && a.ends_with(":ivan"), "{a}");
        assert_ne!(a, b);
        assert_ne!(a, web_client_id("https://idp-a", "ivan", false));
        assert_eq!(a, web_client_id("https://idp-a", "ivan", true), "stable");
    }

    #[test]
    fn a_rating_is_a_digit_from_one_to_five_or_as_many_stars() {
        for (text, rating) in [
            ("5", 5),
            (" 1 ", 1),
            ("4/5", 4),
            ("★★★", 3),
            ("⭐⭐⭐⭐⭐", 5),
        ] {
            assert_eq!(parse_rating(text), Some(rating), "{text}");
        }
        for text in ["0", "6", "10", "55", "5 stars", "five", "", "★★★★★★", "1.5"] {
            assert_eq!(parse_rating(text), None, "{text}");
        }
    }

    #[test]
    fn blank_and_oversized_bodies_are_rejected() {
        assert_eq!(MessageBody::parse("  \n"), Err(BodyError::Empty));
        assert_eq!(
            MessageBody::parse("я".repeat(MAX_BODY_CHARS + 1)),
            Err(BodyError::TooLong(MAX_BODY_CHARS + 1))
        );
        assert!(MessageBody::parse("я".repeat(MAX_BODY_CHARS)).is_ok());
        assert_eq!(MessageBody::parse("hello\0world"), Err(BodyError::Nul));
    }

    #[test]
    fn ids_are_deterministic_per_source_and_distinct_across_sources() {
        let a = message_id_for("web", "c1/x");
        assert_eq!(a, message_id_for("web", "c1/x"));
        assert_ne!(a, message_id_for("telegram", "c1/x"));
        assert_ne!(ticket_id_opened_by(a), a);
        assert_eq!(ticket_id_opened_by(a), ticket_id_opened_by(a));
    }
}
