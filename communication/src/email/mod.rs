//! Email: IMAP in, SMTP out, threading.
//!
//! In (`imap.rs`): one mailbox is imported in UID order; UIDVALIDITY and the last imported UID
//! are kept in PostgreSQL and move only after Kafka acknowledged the mail, and `\Seen` is set
//! only then too (mail is fetched with `BODY.PEEK[]`). A mail's message id derives from its
//! Message-ID plus a content hash, so a re-import maps onto the stored message. The client is the
//! thread's client (In-Reply-To/References, then a `[#ticket]` subject reference), else
//! `email:<lowercased sender>`. Memory is bounded whatever the mailbox holds: sizes are listed
//! first and mail is fetched one at a time; a mail over `max_mail_bytes` is never downloaded but
//! moved to the quarantine folder. A mail holding a card number leaves the mailbox once imported
//! (`card_mail`): the bank must not keep card data in a place nobody screens.
//! Sender authentication (`auth.rs`): each mail's From: domain is checked (DKIM, SPF where the
//! connecting IP is known, DMARC) before it may speak for an address; an unproven one gets
//! `email.auth.policy`: a client of its own (`email:unverified:<address>`, never threaded into
//! another client's ticket), the quarantine folder, or acceptance as before.
//! Out (`smtp.rs`): the delivery worker (`delivery.rs`) mails the client-visible events of
//! `email:` clients; each mail's Message-ID names its ticket and event and answers the client's
//! latest mail (In-Reply-To/References).

pub mod auth;
pub mod imap;
pub mod parse;
pub mod reference;
pub mod smtp;
pub mod tls;

use std::time::Duration;

pub use auth::{AuthPolicy, AuthSettings, DnsServer, WithoutDmarc};
pub use reference::RefKey;
pub use tls::{TlsMode, TlsSettings};

use crate::delivery::RetryPolicy;

/// The variable holding the key of the ticket reference tags (see `reference.rs`).
pub const REF_SECRET_VAR: &str = "INBOX_EMAIL_REF_SECRET";

pub const CHANNEL: &str = "email";
pub const CLIENT_PREFIX: &str = "email:";

/// The client ids of senders whose mail was not authenticated (`email.auth.policy: separate`):
/// `email:unverified:<address>`. Still under [`CLIENT_PREFIX`], so the delivery worker mails the
/// replies to the address (to its real owner, whoever wrote); yet never equal to the id of a
/// proven sender, as a From: address the import keys on holds no `:` (see `parse.rs`).
pub const UNVERIFIED_PREFIX: &str = "email:unverified:";

/// The client id of a sender address.
pub fn client_id(address: &str) -> String {
    format!("{CLIENT_PREFIX}{}", address.trim().to_lowercase())
}

/// The client id of an address whose mail was not authenticated.
pub fn unverified_client_id(address: &str) -> String {
    format!("{UNVERIFIED_PREFIX}{}", address.trim().to_lowercase())
}

/// The mail address of an email client id, proven or not.
pub fn address_of(client_id: &str) -> Option<&str> {
    client_id
        .strip_prefix(UNVERIFIED_PREFIX)
        .or_else(|| client_id.strip_prefix(CLIENT_PREFIX))
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
    /// Largest mail (RFC822.SIZE) that is downloaded; a larger one goes to `quarantine` unasked.
    pub max_mail_bytes: u64,
    /// What becomes of an imported mail holding a card number (and of an oversized one).
    pub card_mail: CardMailPolicy,
    /// The folder quarantined mail is moved to (created at start when missing).
    pub quarantine: String,
    /// Sender authentication of imported mail (`email.auth`).
    pub auth: AuthSettings,
}

/// Default of [`ImapSettings::max_mail_bytes`]: 25 MiB, the common provider limit.
pub const DEFAULT_MAX_MAIL_BYTES: u64 = 25 * 1024 * 1024;
/// Bounds of [`ImapSettings::max_mail_bytes`]: below 1 KiB not even the headers of an ordinary
/// mail fit; above 256 MiB one mail would hold that much memory (async-imap refuses a response
/// over 512 MiB anyway).
pub const MAX_MAIL_BYTES_RANGE: std::ops::RangeInclusive<u64> = 1024..=256 * 1024 * 1024;
/// Default of [`ImapSettings::quarantine`].
pub const DEFAULT_QUARANTINE: &str = "Quarantine";

/// What the import does with a mail holding a payment card number once Kafka has it; the same
/// choice says whether an oversized mail leaves the mailbox (everything but `keep` moves it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CardMailPolicy {
    /// Moved to the quarantine folder (kept for the bank's own review, out of the inbox).
    #[default]
    Quarantine,
    /// Deleted from the mailbox (`\Deleted` + expunge).
    Expunge,
    /// Left where it is (a mailbox the bank screens by other means).
    Keep,
}

impl CardMailPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "quarantine" => Some(Self::Quarantine),
            "expunge" => Some(Self::Expunge),
            "keep" => Some(Self::Keep),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quarantine => "quarantine",
            Self::Expunge => "expunge",
            Self::Keep => "keep",
        }
    }
}

impl ImapSettings {
    /// Cursor name of this mailbox's import position.
    pub fn cursor_name(&self) -> String {
        format!("{}@{}/{}", self.user, self.addr, self.mailbox)
    }

    /// Whether the import may move mail to the quarantine folder (which it then creates).
    pub fn uses_quarantine(&self) -> bool {
        self.card_mail != CardMailPolicy::Keep || self.auth.policy == AuthPolicy::Quarantine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unverified_sender_never_shares_a_proven_senders_client_id() {
        assert_eq!(client_id(" Ivan@X.test"), "email:ivan@x.test");
        assert_eq!(
            unverified_client_id("Ivan@X.test"),
            "email:unverified:ivan@x.test"
        );
        assert_ne!(
            client_id("ivan@x.test"),
            unverified_client_id("ivan@x.test")
        );
        for id in ["email:ivan@x.test", "email:unverified:ivan@x.test"] {
            assert_eq!(address_of(id), Some("ivan@x.test"));
        }
        assert_eq!(address_of("tg:5"), None);
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
