//! IMAP import: one mailbox, in UID order, IDLE where the server offers it, polling otherwise.
//!
//! Per mail: parse, decide the client (thread first), record its Message-ID, publish to Kafka;
//! only after the broker acknowledged: set `\Seen`, then move the stored last UID. A crash
//! anywhere before the last step imports the mail again under the same message id, which the
//! inbound consumer drops as a duplicate.

use futures::TryStreamExt;
use tickets::{MailDirection, MailRecord, MailboxPosition, PgStore, message_id_for};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::parse::{self, ParsedMail};
use super::tls::{self as mail_tls, TlsMode};
use super::{CHANNEL, CLIENT_PREFIX, ImapSettings, RefKey, client_id};
use crate::telegram::{Backoff, sleep_or_cancel};
use edge::publish::Publisher;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("imap: {0}")]
    Imap(#[from] async_imap::error::Error),
    #[error("imap connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("imap: {0}")]
    Protocol(String),
    #[error(transparent)]
    Store(#[from] tickets::StoreError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("imap {0}")]
    Tls(#[from] mail_tls::TlsError),
}

/// A connection to the server: plain TCP or TLS over it.
pub trait ImapStream: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> ImapStream for T {}

type Session = async_imap::Session<Box<dyn ImapStream>>;

/// Imports mail until `shutdown`, reconnecting with backoff after any failure.
pub async fn run(
    settings: ImapSettings,
    store: PgStore,
    publisher: Publisher,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new();
    while !shutdown.is_cancelled() {
        match session(&settings, &store, &publisher, &shutdown, &mut backoff).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, mailbox = %settings.cursor_name(),
                    "email import interrupted; reconnecting");
                backoff.wait(&shutdown).await;
            }
        }
    }
}

/// The TLS handshake over `tcp`, checking the server's certificate for the host of `addr`.
async fn handshake(
    tcp: TcpStream,
    settings: &ImapSettings,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ImportError> {
    let config = mail_tls::client_config(settings.tls.ca_file.as_deref())?;
    let name = mail_tls::server_name(&settings.addr)?;
    let tls = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| {
        ImportError::Protocol(format!("TLS handshake with {} timed out", settings.addr))
    })??;
    Ok(tls)
}

async fn read_greeting<T: ImapStream>(
    client: &mut async_imap::Client<T>,
) -> Result<(), ImportError> {
    client
        .read_response()
        .await?
        .ok_or_else(|| ImportError::Protocol("closed before the greeting".into()))?;
    Ok(())
}

async fn connect(settings: &ImapSettings) -> Result<Session, ImportError> {
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        TcpStream::connect(&settings.addr),
    )
    .await
    .map_err(|_| ImportError::Protocol(format!("connecting to {} timed out", settings.addr)))??;
    let client = match settings.tls.mode {
        TlsMode::None => {
            let mut client = async_imap::Client::new(Box::new(tcp) as Box<dyn ImapStream>);
            // The server speaks first; login before reading the greeting confuses the parser.
            read_greeting(&mut client).await?;
            client
        }
        TlsMode::Implicit => {
            let tls = handshake(tcp, settings).await?;
            let mut client = async_imap::Client::new(Box::new(tls) as Box<dyn ImapStream>);
            read_greeting(&mut client).await?;
            client
        }
        TlsMode::Starttls => {
            let mut plain = async_imap::Client::new(tcp);
            read_greeting(&mut plain).await?;
            plain.run_command_and_check_ok("STARTTLS", None).await?;
            // Nothing follows the tagged OK until the handshake, so nothing is lost in the
            // plain client's buffer. The server sends no second greeting.
            let tls = handshake(plain.into_inner(), settings).await?;
            async_imap::Client::new(Box::new(tls) as Box<dyn ImapStream>)
        }
    };
    client
        .login(&settings.user, &settings.password)
        .await
        .map_err(|(e, _)| ImportError::Imap(e))
}

/// One connection's life: returns Ok only on shutdown.
async fn session(
    settings: &ImapSettings,
    store: &PgStore,
    publisher: &Publisher,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
) -> Result<(), ImportError> {
    let mut session = connect(settings).await?;
    let idle = session.capabilities().await?.has_str("IDLE");
    let mailbox = session.select(&settings.mailbox).await?;
    let uid_validity = i64::from(
        mailbox
            .uid_validity
            .ok_or_else(|| ImportError::Protocol("the server sent no UIDVALIDITY".into()))?,
    );
    let name = settings.cursor_name();
    let mut position = match store.email_mailbox(&name).await? {
        Some(p) if p.uid_validity == uid_validity => p,
        previous => {
            if previous.is_some() {
                tracing::warn!(mailbox = %name, uid_validity,
                    "UIDVALIDITY changed: importing the mailbox again (known mail dedups)");
            }
            store.reset_email_mailbox(&name, uid_validity).await?;
            MailboxPosition {
                uid_validity,
                last_uid: 0,
            }
        }
    };
    tracing::info!(mailbox = %name, idle, last_uid = position.last_uid, "email import connected");
    backoff.reset();
    loop {
        position.last_uid = import_new(&mut session, settings, store, publisher, position).await?;
        // Mail that arrived during the import is announced (EXISTS) in the answers to its
        // commands, which async-imap files as unsolicited: fetch again before going idle, or
        // IDLE would not mention that mail again.
        let mut news = false;
        while session.unsolicited_responses.try_recv().is_ok() {
            news = true;
        }
        if shutdown.is_cancelled() {
            let _ = session.logout().await;
            return Ok(());
        }
        if news {
            continue;
        }
        if idle {
            let unsolicited = session.unsolicited_responses.clone();
            let mut handle = session.idle();
            handle.init().await?;
            // Mail that arrived since the fetch is announced (EXISTS) before the server's "+
            // idling", and async-imap files that under unsolicited responses, not as a wake-up.
            if !unsolicited.is_empty() {
                session = handle.done().await?;
                continue;
            }
            let woke = {
                let (wait, _stop) = handle.wait_with_timeout(settings.idle_timeout);
                tokio::select! {
                    r = wait => Some(r),
                    _ = shutdown.cancelled() => None,
                }
            };
            session = handle.done().await?;
            match woke {
                Some(r) => {
                    r?;
                }
                None => {
                    let _ = session.logout().await;
                    return Ok(());
                }
            }
        } else {
            sleep_or_cancel(settings.poll_interval, shutdown).await;
        }
    }
}

/// Imports every mail above `position.last_uid`; returns the new last UID.
async fn import_new(
    session: &mut Session,
    settings: &ImapSettings,
    store: &PgStore,
    publisher: &Publisher,
    position: MailboxPosition,
) -> Result<i64, ImportError> {
    let mut last_uid = position.last_uid;
    // `n:*` always includes the newest mail even when its UID is below n: filter below.
    let mut fetched: Vec<(i64, Vec<u8>)> = session
        .uid_fetch(format!("{}:*", last_uid + 1), "(UID BODY.PEEK[])")
        .await?
        .try_filter_map(|f| async move {
            Ok(f.uid
                .map(|uid| (i64::from(uid), f.body().unwrap_or_default().to_vec())))
        })
        .try_collect()
        .await?;
    fetched.retain(|(uid, _)| *uid > last_uid);
    fetched.sort_by_key(|(uid, _)| *uid);
    for (uid, raw) in fetched {
        match parse::parse(&raw) {
            Some(mail) => {
                let m = inbound_message(store, &mail, &settings.ref_key).await?;
                publisher.publish(&m).await?;
                tracing::info!(message_id = %m.message_id, client_id = %m.client_id, uid,
                    "email accepted");
                crate::crash::after_publish(CHANNEL);
            }
            None => tracing::warn!(uid, mailbox = %settings.cursor_name(),
                "email: not a parsable mail; skipped"),
        }
        // Kafka has it: now it may look read to a person watching the mailbox.
        session
            .uid_store(uid.to_string(), "+FLAGS.SILENT (\\Seen)")
            .await?
            .try_collect::<Vec<_>>()
            .await?;
        store
            .advance_email_mailbox(&settings.cursor_name(), position.uid_validity, uid)
            .await?;
        last_uid = uid;
    }
    Ok(last_uid)
}

/// The client a mail belongs to: the client of the thread it answers (In-Reply-To, then
/// References), else of the ticket its subject names, else its sender. A reply from another
/// address of the same client thus stays with that client.
///
/// A subject reference counts only with a valid tag (`[#<ticket>-<tag>]`, see `reference.rs`): an
/// untagged or wrongly tagged one is ignored, so nobody can join another client's ticket by
/// writing its short id into a subject.
pub async fn client_of(
    store: &PgStore,
    mail: &ParsedMail,
    key: &RefKey,
) -> Result<Option<String>, ImportError> {
    if let Some(c) = store.email_thread_client(&mail.thread_candidates()).await? {
        return Ok(Some(c));
    }
    if let Some((short, Some(tag))) = mail.subject_ticket_ref_tagged() {
        for (ticket, client) in store.tickets_with_prefix(&short, CLIENT_PREFIX, 16).await? {
            if key.verify_subject_tag(ticket, &tag) {
                return Ok(Some(client));
            }
        }
        tracing::info!(reference = %short, "email: subject reference with a wrong tag ignored");
    }
    Ok(mail.from_address.as_deref().map(client_id))
}

/// The normalised message of a mail; records its Message-ID for threading on the way.
async fn inbound_message(
    store: &PgStore,
    mail: &ParsedMail,
    key: &RefKey,
) -> Result<proto::v1::InboundMessage, ImportError> {
    let external_id = mail.external_id();
    let client_id = match client_of(store, mail, key).await? {
        Some(c) => c,
        // No sender and no thread: still a client message; keep it under its own identity.
        None => client_id(&format!("unknown-sender-{}", &external_id[..16])),
    };
    if let Some(message_id) = &mail.message_id {
        store
            .record_email(&MailRecord {
                message_id: message_id.clone(),
                client_id: client_id.clone(),
                direction: MailDirection::In,
                external_id: Some(external_id.clone()),
                ticket_id: None,
                event_seq: None,
                subject: mail.subject.clone(),
                references: mail.references.clone(),
            })
            .await?;
    }
    let body = mail.message_body();
    Ok(proto::v1::InboundMessage {
        message_id: message_id_for(CHANNEL, &external_id).to_string(),
        client_id,
        channel: CHANNEL.into(),
        external_id,
        body,
        client_name: mail.from_name.clone(),
        received_at_unix_ms: chrono::Utc::now().timestamp_millis(),
    })
}
