//! SMTP out (lettre): one plain-text mail per client-visible event, threaded into the client's
//! conversation. The delivery worker retries transient failures with backoff and records a
//! `failed` delivery for a permanent refusal or exhausted retries.

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tickets::{Event, MailDirection, MailRecord, PgStore};

use super::{CHANNEL, CLIENT_PREFIX, SmtpSettings, short_ticket_ref};
use crate::delivery::{Outbound, SendError};

#[derive(Clone)]
pub struct EmailOutbound {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    domain: String,
    store: PgStore,
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpSetupError {
    #[error("INBOX_SMTP_ADDR {0:?}: expected host:port")]
    Addr(String),
    #[error("INBOX_MAIL_FROM: {0}")]
    From(#[from] lettre::address::AddressError),
}

impl EmailOutbound {
    pub fn new(settings: &SmtpSettings, store: PgStore) -> Result<Self, SmtpSetupError> {
        let (host, port) = settings
            .addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| SmtpSetupError::Addr(settings.addr.clone()))?;
        // Plain SMTP: a local relay or the test server (see README for a real mailbox).
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(settings.timeout));
        if let (Some(user), Some(password)) = (&settings.user, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            from: settings.from.parse()?,
            domain: settings.domain.clone(),
            store,
        })
    }
}

/// The Message-ID (without brackets) of the mail carrying `event`: tied to its ticket and event,
/// so the same event always yields the same id.
pub fn message_id_of(event: &Event, domain: &str) -> String {
    match event.ticket_id {
        Some(t) => format!("ticket-{t}.{}@{domain}", event.seq),
        None => format!("event-{}@{domain}", event.seq),
    }
}

/// `Re: <the client's subject> [#<ticket>]`, without stacking prefixes or references.
pub fn reply_subject(client_subject: Option<&str>, ticket_ref: Option<&str>) -> String {
    let mut base = client_subject.unwrap_or_default().trim();
    loop {
        let lower = base.to_ascii_lowercase();
        if let Some(rest) = ["re:", "aw:", "fwd:", "fw:"]
            .iter()
            .find_map(|p| lower.starts_with(p).then(|| &base[p.len()..]))
        {
            base = rest.trim_start();
        } else {
            break;
        }
    }
    let base = match super::parse::ticket_ref_in(base) {
        Some(r) => base.replace(&format!("[#{r}]"), "").trim().to_owned(),
        None => base.to_owned(),
    };
    let subject = if base.is_empty() {
        "Your request to the bank".to_owned()
    } else {
        format!("Re: {base}")
    };
    match ticket_ref {
        Some(r) => format!("{subject} [#{r}]"),
        None => subject,
    }
}

impl Outbound for EmailOutbound {
    fn channel(&self) -> &'static str {
        CHANNEL
    }

    fn client_prefix(&self) -> &'static str {
        CLIENT_PREFIX
    }

    async fn send(&self, event: &Event, text: &str) -> Result<String, SendError> {
        let address = event
            .client_id
            .strip_prefix(CLIENT_PREFIX)
            .unwrap_or_default();
        let to: Mailbox = address
            .parse()
            .map_err(|e| SendError::Permanent(format!("not a mail address {address:?}: {e}")))?;
        let last = self
            .store
            .last_inbound_email(&event.client_id)
            .await
            .map_err(|e| SendError::Transient(format!("store: {e}")))?;
        let message_id = message_id_of(event, &self.domain);
        let ticket_ref = event.ticket_id.map(short_ticket_ref);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(reply_subject(
                last.as_ref().map(|l| l.subject.as_str()),
                ticket_ref.as_deref(),
            ))
            .message_id(Some(format!("<{message_id}>")));
        if let Some(last) = &last {
            let mut refs = last.references.clone();
            refs.push(last.message_id.clone());
            builder = builder
                .in_reply_to(format!("<{}>", last.message_id))
                .references(
                    refs.iter()
                        .map(|r| format!("<{r}>"))
                        .collect::<Vec<_>>()
                        .join(" "),
                );
        }
        let mail = builder
            .header(ContentType::TEXT_PLAIN)
            .body(text.to_owned())
            .map_err(|e| SendError::Permanent(format!("cannot build the mail: {e}")))?;
        // Known before it is sent: a reply that comes back fast still threads.
        self.store
            .record_email(&MailRecord {
                message_id: message_id.clone(),
                client_id: event.client_id.clone(),
                direction: MailDirection::Out,
                external_id: None,
                ticket_id: event.ticket_id,
                event_seq: Some(event.seq),
                subject: String::new(),
                references: Vec::new(),
            })
            .await
            .map_err(|e| SendError::Transient(format!("store: {e}")))?;
        match self.transport.send(mail).await {
            Ok(_) => Ok(format!("<{message_id}>")),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(format!("smtp: {e}"))),
            Err(e) => Err(SendError::Transient(format!("smtp: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_subject_carries_one_re_and_one_ticket_reference() {
        assert_eq!(
            reply_subject(Some("Re: RE: Card blocked [#0a1b2c3d]"), Some("0a1b2c3d")),
            "Re: Card blocked [#0a1b2c3d]"
        );
        assert_eq!(
            reply_subject(None, Some("0a1b2c3d")),
            "Your request to the bank [#0a1b2c3d]"
        );
        assert_eq!(reply_subject(Some("Привет"), None), "Re: Привет");
    }

    #[test]
    fn the_message_id_of_a_mail_names_its_ticket_and_event() {
        let ticket = uuid::Uuid::nil();
        let e = Event {
            seq: 42,
            kind: "manager_reply".into(),
            ticket_id: Some(ticket),
            client_id: "email:ivan@example.com".into(),
            manager_id: None,
            client_visible: true,
            payload: serde_json::json!({}),
            created_at: chrono::Utc::now(),
        };
        assert_eq!(
            message_id_of(&e, "inbox.local"),
            format!("ticket-{ticket}.42@inbox.local")
        );
    }
}
