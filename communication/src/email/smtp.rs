//! SMTP out (lettre): one plain-text mail per client-visible event, threaded into the client's
//! conversation; a manager's files ride along as MIME attachments (read from the object store as
//! the client may read them). The delivery worker retries transient failures with backoff and records a
//! `failed` delivery for a permanent refusal or exhausted retries.

use lettre::message::header::ContentTransferEncoding;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Body, Mailbox, Message, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tickets::{Event, MailDirection, MailRecord, PgStore};

use super::tls::{TlsMode, host_of};
use super::{CHANNEL, CLIENT_PREFIX, RefKey, SmtpSettings};
use crate::delivery::{Outbound, SendError};

#[derive(Clone)]
pub struct EmailOutbound {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    domain: String,
    ref_key: RefKey,
    store: PgStore,
    files: edge::files::Files,
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpSetupError {
    #[error("INBOX_SMTP_ADDR {0:?}: expected host:port")]
    Addr(String),
    #[error("INBOX_MAIL_FROM: {0}")]
    From(#[from] lettre::address::AddressError),
    #[error("smtp tls: {0}")]
    Tls(String),
}

impl EmailOutbound {
    pub fn new(
        settings: &SmtpSettings,
        store: PgStore,
        files: edge::files::Files,
    ) -> Result<Self, SmtpSetupError> {
        let port = settings
            .addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .ok_or_else(|| SmtpSetupError::Addr(settings.addr.clone()))?;
        let host = host_of(&settings.addr).to_owned();
        // `builder_dangerous` only means "no TLS unless set below".
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .timeout(Some(settings.timeout));
        if settings.tls.mode != TlsMode::None {
            let mut params = TlsParameters::builder(host);
            if let Some(path) = &settings.tls.ca_file {
                let pem = std::fs::read(path)
                    .map_err(|e| SmtpSetupError::Tls(format!("{}: {e}", path.display())))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| SmtpSetupError::Tls(format!("{}: {e}", path.display())))?;
                params = params.add_root_certificate(cert);
            }
            // rustls explicitly: the workspace may also enable lettre's native-tls elsewhere.
            let params = params
                .build_rustls()
                .map_err(|e| SmtpSetupError::Tls(e.to_string()))?;
            builder = builder.tls(match settings.tls.mode {
                TlsMode::Implicit => Tls::Wrapper(params),
                // No fallback to plain text: a server without STARTTLS is an error.
                _ => Tls::Required(params),
            });
        }
        if let (Some(user), Some(password)) = (&settings.user, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            from: settings.from.parse()?,
            domain: settings.domain.clone(),
            ref_key: settings.ref_key.clone(),
            store,
            files,
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

/// [`message_id_of`] with a keyed tag before the `@`, so nobody outside can compute the id of a
/// mail we sent (naming it in In-Reply-To threads a mail into that client's conversation).
pub fn tagged_message_id_of(event: &Event, domain: &str, key: &RefKey) -> String {
    let tag = key.message_id_tag(event.ticket_id, event.seq);
    match event.ticket_id {
        Some(t) => format!("ticket-{t}.{}.{tag}@{domain}", event.seq),
        None => format!("event-{}.{tag}@{domain}", event.seq),
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
    let base = super::parse::without_ticket_refs(base);
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

impl EmailOutbound {
    /// The files an event names, as MIME parts: each read from the store as the client may read
    /// it (one they may not read is left out and logged).
    async fn attachments(&self, event: &Event) -> Result<Vec<SinglePart>, SendError> {
        let mut parts = Vec::new();
        for a in event.payload["attachments"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(id) = a["id"].as_str().and_then(|s| uuid::Uuid::parse_str(s).ok()) else {
                continue;
            };
            let fetched = self
                .files
                .fetch(
                    &self.store,
                    tickets::attachments::Reader::Client(&event.client_id),
                    id,
                )
                .await
                .map_err(|e| SendError::Transient(format!("attachment store: {e}")))?;
            let Some((r, data)) = fetched else {
                tracing::warn!(attachment_id = %id, client_id = %event.client_id,
                    "email: a file of the event is not the client's to read; not attached");
                continue;
            };
            let ctype = ContentType::parse(&r.content_type)
                .or_else(|_| ContentType::parse("application/octet-stream"))
                .map_err(|e| SendError::Permanent(format!("attachment type: {e}")))?;
            // Base64 always: a file's bytes must arrive as they are (lettre would pick 7bit or
            // quoted-printable for a text-like PDF, which turns its line ends into CRLF).
            let body = Body::new_with_encoding(data.to_vec(), ContentTransferEncoding::Base64)
                .map_err(|_| SendError::Permanent("attachment encoding".into()))?;
            parts.push(Attachment::new(r.name.clone()).body(body, ctype));
        }
        Ok(parts)
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
        // An unverified sender's replies go to the address too: to its real owner.
        let address = super::address_of(&event.client_id).unwrap_or_default();
        let to: Mailbox = address
            .parse()
            .map_err(|e| SendError::Permanent(format!("not a mail address {address:?}: {e}")))?;
        let last = self
            .store
            .last_inbound_email(&event.client_id)
            .await
            .map_err(|e| SendError::Transient(format!("store: {e}")))?;
        let message_id = tagged_message_id_of(event, &self.domain, &self.ref_key);
        let ticket_ref = event.ticket_id.map(|t| self.ref_key.subject_ref(t));
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
        let attached = self.attachments(event).await?;
        let mail = if attached.is_empty() {
            builder
                .header(ContentType::TEXT_PLAIN)
                .body(text.to_owned())
        } else {
            let mut parts = MultiPart::mixed().singlepart(SinglePart::plain(text.to_owned()));
            for part in attached {
                parts = parts.singlepart(part);
            }
            builder.multipart(parts)
        }
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
            reply_subject(
                Some("Re: Card blocked [#0a1b2c3d-00ff00ff] [#0a1b2c3d]"),
                Some("0a1b2c3d-1234abcd")
            ),
            "Re: Card blocked [#0a1b2c3d-1234abcd]"
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
