//! Email: IMAP in, SMTP out, threading.
//!
//! In (`imap.rs`): one mailbox is imported in UID order; UIDVALIDITY and the last imported UID
//! are kept in PostgreSQL and move only after Kafka acknowledged the mail, and `\Seen` is set
//! only then too (mail is fetched with `BODY.PEEK[]`). A mail's message id derives from its
//! Message-ID plus a content hash, so a re-import maps onto the stored message. The client is the
//! thread's client (In-Reply-To/References, then a `[#ticket]` subject reference), else
//! `email:<lowercased sender>`.
//! Out (`smtp.rs`): the delivery worker (`delivery.rs`) mails the client-visible events of
//! `email:` clients; each mail's Message-ID names its ticket and event and answers the client's
//! latest mail (In-Reply-To/References).

pub mod imap;
pub mod parse;
pub mod reference;
pub mod smtp;
pub mod tls;

use std::time::Duration;

pub use reference::RefKey;
pub use tls::{TlsMode, TlsSettings};

use crate::delivery::RetryPolicy;

/// The variable holding the key of the ticket reference tags (see `reference.rs`).
pub const REF_SECRET_VAR: &str = "INBOX_EMAIL_REF_SECRET";

pub const CHANNEL: &str = "email";
pub const CLIENT_PREFIX: &str = "email:";

/// The client id of a sender address.
pub fn client_id(address: &str) -> String {
    format!("{CLIENT_PREFIX}{}", address.trim().to_lowercase())
}

/// The short ticket reference put in subjects: the ticket id's first 8 hex digits.
pub fn short_ticket_ref(ticket_id: uuid::Uuid) -> String {
    ticket_id.simple().to_string()[..8].to_owned()
}

#[derive(Debug, Clone)]
pub struct ImapSettings {
    /// `host:port`.
    pub addr: String,
    pub tls: TlsSettings,
    /// Checks the tags of subject ticket references.
    pub ref_key: RefKey,
    pub user: String,
    pub password: String,
    pub mailbox: String,
    /// Between checks when the server offers no IDLE.
    pub poll_interval: Duration,
    /// Longest IDLE before a re-check (servers drop IDLE after 30 min; RFC 2177 says re-issue
    /// at least every 29).
    pub idle_timeout: Duration,
}

impl ImapSettings {
    /// Cursor name of this mailbox's import position.
    pub fn cursor_name(&self) -> String {
        format!("{}@{}/{}", self.user, self.addr, self.mailbox)
    }
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// `host:port`.
    pub addr: String,
    pub tls: TlsSettings,
    /// Tags subject ticket references and Message-IDs.
    pub ref_key: RefKey,
    /// Attempts and backoff of one mail before it is a failed delivery.
    pub retry: RetryPolicy,
    pub user: Option<String>,
    pub password: Option<String>,
    /// The From address of every outbound mail.
    pub from: String,
    /// The right-hand side of outbound Message-IDs (the From address's domain).
    pub domain: String,
    pub timeout: Duration,
}

/// The email channel: inbound when `INBOX_IMAP_ADDR` is set, outbound when `INBOX_SMTP_ADDR` is.
#[derive(Debug, Clone, Default)]
pub struct EmailSettings {
    pub imap: Option<ImapSettings>,
    pub smtp: Option<SmtpSettings>,
}
