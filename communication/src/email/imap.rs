//! IMAP import: one mailbox, in UID order, IDLE where the server offers it, polling otherwise.
//!
//! New mail is listed with its size first (`UID RFC822.SIZE`) and fetched one mail at a time, so
//! memory is bounded by `max_mail_bytes` whatever the mailbox holds. A mail over that size is never
//! downloaded: it is moved to the quarantine folder (left in place with `card_mail: keep`) and the
//! stored last UID moves past it.
//!
//! Per mail: parse, check the sender (`auth.rs`: DKIM, SPF, DMARC) and apply `email.auth.policy`
//! to an unproven one (quarantine: moved to the quarantine folder unread, not imported; separate:
//! its own `email:unverified:` client, no threading), decide the client (thread first), record
//! its Message-ID, publish to Kafka;
//! only after the broker acknowledged: set `\Seen`, then, if the mail's text holds a card number,
//! move it to the quarantine folder or expunge it (`card_mail`), then move the stored last UID.
//! A crash anywhere before the last step imports the mail again under the same message id, which
//! the inbound consumer drops as a duplicate; a mail already moved away is not seen again.
//! The card mail leaves the mailbox before the position moves, so no crash can leave it behind
//! for good.

use futures::TryStreamExt;
use tickets::{MailDirection, MailRecord, MailboxPosition, PgStore, message_id_for};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::auth::{AUTH_TOTAL, Decision, UNVERIFIED_MARK, Verifier};
use super::parse::{self, ParsedMail};
use super::tls::{self as mail_tls, TlsMode};
use super::{
    CHANNEL, CLIENT_PREFIX, CardMailPolicy, ImapSettings, RefKey, client_id, unverified_client_id,
};
use crate::telegram::{Backoff, sleep_or_cancel};
use edge::publish::Publisher;
use edge::ratelimit::RateLimiter;

/// Counter, label `reason` (`too_large`, `unparsable`, `rate_limited`): mail the import did not
/// turn into a message.
pub const SKIPPED: &str = "inbox_email_skipped_total";
/// Counter, label `action` (`quarantine`, `expunge`, `keep`): imported mail whose text holds a
/// payment card number, by what became of it in the mailbox.
pub const CARD_MAIL: &str = "inbox_email_card_mail_total";

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
    #[error("attachment store: {0}")]
    Files(String),
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
    limiter: RateLimiter,
    files: edge::files::Files,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new();
    // Without a resolver no sender can be checked: mail waits in the mailbox rather than being
    // imported unchecked.
    let verifier = loop {
        match Verifier::new(&settings.auth) {
            Ok(v) => break v,
            Err(e) => {
                tracing::error!(error = %e, mailbox = %settings.cursor_name(),
                    "email import cannot check senders; retrying");
                backoff.wait(&shutdown).await;
                if shutdown.is_cancelled() {
                    return;
                }
            }
        }
    };
    backoff.reset();
    let import = Import {
        settings: &settings,
        limiter: &limiter,
        verifier: &verifier,
        store: &store,
        publisher: &publisher,
        files: &files,
    };
    while !shutdown.is_cancelled() {
        match session(&import, &shutdown, &mut backoff).await {
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

/// What every connection of one import works with.
struct Import<'a> {
    settings: &'a ImapSettings,
    /// The per-client budget of every write path (web chat, Telegram, email).
    limiter: &'a RateLimiter,
    verifier: &'a Verifier,
    store: &'a PgStore,
    publisher: &'a Publisher,
    /// Where attachments go (checked like any upload).
    files: &'a edge::files::Files,
}

/// One connection's life: returns Ok only on shutdown.
async fn session(
    import: &Import<'_>,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
) -> Result<(), ImportError> {
    let (settings, store) = (import.settings, import.store);
    let mut session = connect(settings).await?;
    let caps = session.capabilities().await?;
    let idle = caps.has_str("IDLE");
    let server = Server {
        moves: caps.has_str("MOVE"),
        uidplus: caps.has_str("UIDPLUS"),
    };
    if settings.uses_quarantine() {
        ensure_folder(&mut session, &settings.quarantine).await?;
    }
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
        position.last_uid = import_new(&mut session, import, server, position).await?;
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

/// What the server offers for taking a mail out of the mailbox.
#[derive(Debug, Clone, Copy)]
struct Server {
    /// `UID MOVE` (RFC 6851).
    moves: bool,
    /// `UID EXPUNGE` (RFC 4315).
    uidplus: bool,
}

/// `name` quoted as an IMAP string (`LIST` takes its pattern as written).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

async fn folder_exists(session: &mut Session, name: &str) -> Result<bool, ImportError> {
    let names: Vec<_> = session
        .list(Some(""), Some(&quoted(name)))
        .await?
        .try_collect()
        .await?;
    Ok(names.iter().any(|n| n.name() == name))
}

/// Creates the folder `name` unless it exists.
async fn ensure_folder(session: &mut Session, name: &str) -> Result<(), ImportError> {
    if folder_exists(session, name).await? {
        return Ok(());
    }
    match session.create(name).await {
        Ok(()) => {
            tracing::info!(folder = %name, "email: quarantine folder created");
            Ok(())
        }
        // Another replica (or a person) may have created it since the LIST: servers answer NO,
        // with `[ALREADYEXISTS]` (RFC 5530) or in words of their own, so look again.
        Err(async_imap::error::Error::No(reason)) => {
            if folder_exists(session, name).await? {
                Ok(())
            } else {
                Err(ImportError::Protocol(format!(
                    "cannot create the quarantine folder {name:?}: {reason}"
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Flags `uid` `\Deleted` and expunges it: `UID EXPUNGE` with UIDPLUS, else a plain `EXPUNGE`,
/// which also removes any other mail someone flagged `\Deleted` (the only command such a server
/// has).
async fn expunge(session: &mut Session, server: Server, uid: i64) -> Result<(), ImportError> {
    session
        .uid_store(uid.to_string(), "+FLAGS.SILENT (\\Deleted)")
        .await?
        .try_collect::<Vec<_>>()
        .await?;
    if server.uidplus {
        session
            .uid_expunge(uid.to_string())
            .await?
            .try_collect::<Vec<_>>()
            .await?;
    } else {
        session.expunge().await?.try_collect::<Vec<_>>().await?;
    }
    Ok(())
}

/// Moves `uid` into `folder`: `UID MOVE`, else `UID COPY` and [`expunge`]. A crash between the
/// copy and the expunge leaves the mail in both; it is imported again (a duplicate the consumer
/// drops) and copied once more, so the quarantine may hold it twice but the inbox not at all.
async fn quarantine(
    session: &mut Session,
    server: Server,
    uid: i64,
    folder: &str,
) -> Result<(), ImportError> {
    if server.moves {
        session.uid_mv(uid.to_string(), folder).await?;
        return Ok(());
    }
    session.uid_copy(uid.to_string(), folder).await?;
    expunge(session, server, uid).await
}

/// One mail's content, fetched alone.
enum Body {
    Mail(Vec<u8>),
    /// Larger than the limit after all (a server that under-reported its size).
    TooLarge,
    /// Expunged since it was listed.
    Gone,
}

/// Fetches mail `uid`, at most `limit + 1` bytes of it: even a server whose RFC822.SIZE lied
/// cannot make the import hold more than the limit.
/// A mail that is not imported (too large, its sender over their rate) goes to the quarantine
/// folder, or stays unread and unflagged where it is under `card_mail: keep`: a person may
/// still look at it either way.
async fn hold_back(
    session: &mut Session,
    server: Server,
    uid: i64,
    settings: &ImapSettings,
) -> Result<(), ImportError> {
    if settings.card_mail != CardMailPolicy::Keep {
        quarantine(session, server, uid, &settings.quarantine).await?;
    }
    Ok(())
}

async fn fetch_body(session: &mut Session, uid: i64, limit: u64) -> Result<Body, ImportError> {
    let want = u32::try_from(uid).ok();
    let mut bodies: Vec<Vec<u8>> = session
        .uid_fetch(
            uid.to_string(),
            format!("(UID BODY.PEEK[]<0.{}>)", limit.saturating_add(1)),
        )
        .await?
        // Unsolicited FETCHes of other mail (flag changes) may come along: keep ours only.
        .try_filter_map(|f| async move {
            Ok((f.uid.is_some() && f.uid == want).then(|| f.body().unwrap_or_default().to_vec()))
        })
        .try_collect()
        .await?;
    Ok(match bodies.pop() {
        None => Body::Gone,
        Some(raw) if u64::try_from(raw.len()).unwrap_or(u64::MAX) > limit => Body::TooLarge,
        Some(raw) => Body::Mail(raw),
    })
}

/// Imports every mail above `position.last_uid`; returns the new last UID.
async fn import_new(
    session: &mut Session,
    import: &Import<'_>,
    server: Server,
    position: MailboxPosition,
) -> Result<i64, ImportError> {
    let (settings, store, publisher) = (import.settings, import.store, import.publisher);
    let mut last_uid = position.last_uid;
    // UIDs and sizes only (a few bytes per mail); each body is fetched on its own below.
    // `n:*` always includes the newest mail even when its UID is below n: filter below.
    let mut listed: Vec<(i64, Option<u32>)> = session
        .uid_fetch(format!("{}:*", last_uid + 1), "(UID RFC822.SIZE)")
        .await?
        .try_filter_map(|f| async move { Ok(f.uid.map(|uid| (i64::from(uid), f.size))) })
        .try_collect()
        .await?;
    listed.retain(|(uid, _)| *uid > last_uid);
    listed.sort_by_key(|(uid, _)| *uid);
    listed.dedup_by_key(|(uid, _)| *uid);
    for (uid, size) in listed {
        let limit = settings.max_mail_bytes;
        let body = if size.is_some_and(|s| u64::from(s) > limit) {
            Body::TooLarge
        } else {
            fetch_body(session, uid, limit).await?
        };
        match body {
            Body::Gone => {}
            Body::TooLarge => {
                // Uid and size only: nothing of the mail was read, and nothing of it is logged.
                tracing::warn!(uid, size, limit, mailbox = %settings.cursor_name(),
                    policy = settings.card_mail.as_str(),
                    "email over the size limit: not downloaded");
                metrics::counter!(SKIPPED, "reason" => "too_large").increment(1);
                hold_back(session, server, uid, settings).await?;
            }
            Body::Mail(raw) => {
                // `None`: held back (quarantined) and not imported.
                let card = match parse::parse(&raw) {
                    Some(mail) => {
                        let verdict = import
                            .verifier
                            .verify(&raw, mail.from_address.as_deref())
                            .await;
                        let decision = settings.auth.decide(verdict.result);
                        // Results and the From: domain only: nothing of the mail's text.
                        tracing::info!(uid, mailbox = %settings.cursor_name(),
                            result = verdict.result.as_str(), domain = %verdict.domain,
                            dkim = %verdict.dkim, spf = %verdict.spf,
                            dmarc_policy = verdict.dmarc_policy.as_deref().unwrap_or("-"),
                            action = decision.as_str(), "email sender checked");
                        metrics::counter!(AUTH_TOTAL, "result" => verdict.result.as_str())
                            .increment(1);
                        if decision == Decision::Quarantine {
                            // Left unread there for the bank's review; nothing reached Kafka.
                            quarantine(session, server, uid, &settings.quarantine).await?;
                            None
                        } else {
                            let unverified = decision == Decision::Separate;
                            let client =
                                mail_client(store, &mail, &settings.ref_key, unverified).await?;
                            if let Err(wait) = import.limiter.check(&client) {
                                // No answer by mail: the sender of a flood may be forged, and
                                // a reply to each mail would pass the flood on to them.
                                tracing::warn!(uid, mailbox = %settings.cursor_name(),
                                    client_id = %client,
                                    retry_after_secs = edge::client::retry_after_secs(wait),
                                    policy = settings.card_mail.as_str(),
                                    "email: sender over its rate; not imported");
                                metrics::counter!(SKIPPED, "reason" => "rate_limited").increment(1);
                                hold_back(session, server, uid, settings).await?;
                                store
                                    .advance_email_mailbox(
                                        &settings.cursor_name(),
                                        position.uid_validity,
                                        uid,
                                    )
                                    .await?;
                                last_uid = uid;
                                continue;
                            }
                            let m = inbound_message(store, import.files, &mail, client, unverified)
                                .await?;
                            publisher.publish(&m).await?;
                            tracing::info!(message_id = %m.message_id, client_id = %m.client_id,
                                uid, "email accepted");
                            crate::crash::after_publish(CHANNEL);
                            Some(tickets::screening::contains_card_number(&format!(
                                "{}\n{}",
                                mail.subject, mail.body
                            )))
                        }
                    }
                    None => {
                        tracing::warn!(uid, mailbox = %settings.cursor_name(),
                            "email: not a parsable mail; skipped");
                        metrics::counter!(SKIPPED, "reason" => "unparsable").increment(1);
                        // Unreadable as a mail, yet a card number may show in its raw text.
                        Some(tickets::screening::contains_card_number(
                            &String::from_utf8_lossy(&raw),
                        ))
                    }
                };
                drop(raw);
                let Some(card) = card else {
                    store
                        .advance_email_mailbox(&settings.cursor_name(), position.uid_validity, uid)
                        .await?;
                    last_uid = uid;
                    continue;
                };
                // Kafka has it: now it may look read to a person watching the mailbox.
                session
                    .uid_store(uid.to_string(), "+FLAGS.SILENT (\\Seen)")
                    .await?
                    .try_collect::<Vec<_>>()
                    .await?;
                if card {
                    // Before the position moves: a crash in between imports it again (a
                    // duplicate) rather than leave card data in the mailbox for good.
                    match settings.card_mail {
                        CardMailPolicy::Quarantine => {
                            quarantine(session, server, uid, &settings.quarantine).await?;
                        }
                        CardMailPolicy::Expunge => expunge(session, server, uid).await?,
                        CardMailPolicy::Keep => {}
                    }
                    tracing::info!(uid, mailbox = %settings.cursor_name(),
                        action = settings.card_mail.as_str(), "email with a card number");
                    metrics::counter!(CARD_MAIL, "action" => settings.card_mail.as_str())
                        .increment(1);
                }
            }
        }
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

/// The client of a mail. An `unverified` mail (its sender not authenticated, `email.auth.policy:
/// separate`) is its address's unverified client's, whatever thread it names: the references of
/// a thread are known to everyone who saw its mail, so they cannot let an unproven sender into a
/// ticket.
async fn mail_client(
    store: &PgStore,
    mail: &ParsedMail,
    key: &RefKey,
    unverified: bool,
) -> Result<String, ImportError> {
    // No sender and no thread: still a client message; keep it under its own identity.
    let unknown = || format!("unknown-sender-{}", &mail.external_id()[..16]);
    Ok(if unverified {
        unverified_client_id(mail.from_address.as_deref().unwrap_or(&unknown()))
    } else {
        match client_of(store, mail, key).await? {
            Some(c) => c,
            None => client_id(&unknown()),
        }
    })
}

/// The normalised message of `client_id`'s mail; records its Message-ID for threading on the
/// way.
async fn inbound_message(
    store: &PgStore,
    files: &edge::files::Files,
    mail: &ParsedMail,
    client_id: String,
    unverified: bool,
) -> Result<proto::v1::InboundMessage, ImportError> {
    let external_id = mail.external_id();
    // The manager sees it in the name: the schema has no other place for it.
    let client_name = if unverified {
        format!("{} {UNVERIFIED_MARK}", mail.from_name)
            .trim_start()
            .to_owned()
    } else {
        mail.from_name.clone()
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
    // Attachments into the object store as the client's uploads (a re-import uploads again;
    // what its message does not take is purged after a day); a refused one is named instead.
    let mut refs = Vec::new();
    let mut refused = Vec::new();
    for (i, f) in mail.files.iter().enumerate() {
        let outcome = if i >= files.limits.max_per_message {
            Err(edge::files::FileError::TooMany(
                files.limits.max_per_message,
            ))
        } else {
            let upload = edge::files::Upload {
                name: f.name.clone(),
                content_type: f.content_type.clone(),
                data: f.data.clone().into(),
            };
            files
                .accept(
                    store,
                    tickets::attachments::Uploader::Client(&client_id),
                    upload,
                )
                .await
        };
        match outcome {
            Ok(r) => refs.push(edge::publish::attachment_ref(&r)),
            Err(e) if e.is_refusal() => {
                refused.push(format!("[attachment not accepted: {}: {e}]", f.name))
            }
            Err(e) => return Err(ImportError::Files(e.to_string())),
        }
    }
    let mut body = mail.message_body();
    if !refused.is_empty() {
        // The subject or placeholder stands when the mail had no text: keep it, then the names.
        body = format!("{body}\n{}", refused.join("\n"));
        body = tickets::MessageBody::parse(&body)
            .map(|b| b.as_str().to_owned())
            .unwrap_or_else(|_| mail.message_body());
    }
    Ok(proto::v1::InboundMessage {
        message_id: message_id_for(CHANNEL, &external_id).to_string(),
        client_id,
        channel: CHANNEL.into(),
        external_id,
        body,
        client_name,
        received_at_unix_ms: chrono::Utc::now().timestamp_millis(),
        sealed_body: Vec::new(),
        attachments: refs,
    })
}
