//! The inbound consumer: Kafka `inbound.messages` → one PostgreSQL transaction per batch
//! (whatever a poll has ready) that stores the messages, checks them against the AFC rules and
//! attaches them to their tickets (`PgStore::intake_batch`). The ticket workflow hears of it only
//! through the outbox, when a lifecycle changes: a message costs no Temporal call. With an external
//! AFC system the transaction holds the messages and queues them for it (the AFC relay hands them
//! over; the verdict consumer applies the verdicts). Tickets whose workflow checks its own
//! messages (opened before this path, another spec version) are woken with one signal-with-start
//! per distinct client per batch, concurrently.
//! The offset moves (in PostgreSQL, see `source`) only after all of that succeeded; until then the
//! message is retried, never skipped, so a crash anywhere redelivers it and the idempotent store
//! makes that harmless.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};
use platform::telemetry;
use prost::Message as _;
use rdkafka::Message as _;
use rdkafka::message::BorrowedMessage;
use tickets::inbound::MAX_INBOUND_BATCH;
use tickets::{MessageBody, NewClientMessage, PgStore, ticket_id_opened_by};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, Span};
use uuid::Uuid;

use crate::client::Tickets;
use crate::source::LeasedSource;
use platform::kafka::DeadLetters;
use spec::TicketSpec;
use spec::checker::InboundCheck;

#[derive(Clone)]
pub struct Inbound {
    pub kafka: platform::kafka::KafkaSettings,
    /// How its source fetches.
    pub fetch: crate::source::Fetch,
    pub topic: String,
    pub store: PgStore,
    pub tickets: Tickets,
    pub spec: TicketSpec,
    /// The spec compiled to check messages in the inbound transaction (or hold them for the
    /// external AFC system); None wakes every client's workflow to check its own.
    pub check: Option<Arc<InboundCheck>>,
    pub history_limit: Option<u32>,
    /// Where records that can never be processed go (`inbound.messages.dlq`).
    pub dead_letters: DeadLetters,
    /// Opens the sealed bodies (INBOX_DATA_KEY).
    pub data_key: Option<platform::seal::SealKey>,
}

/// The longest client id a ticket can carry: its workflow id, `conversation-<client id>`, must
/// fit the 1,000 bytes Temporal allows.
pub const MAX_CLIENT_ID_BYTES: usize = 1000 - "conversation-".len();

/// Why a record can never be processed: it goes to the dead letters, not round again.
#[derive(Debug, thiserror::Error)]
enum Poison {
    #[error("undecodable protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("bad message id: {0}")]
    Id(#[from] uuid::Error),
    #[error("bad body: {0}")]
    Body(#[from] tickets::BodyError),
    #[error("empty client id")]
    NoClient,
    #[error("client id longer than {MAX_CLIENT_ID_BYTES} bytes or with control characters")]
    ClientId,
    #[error("sealed body but INBOX_DATA_KEY is not set")]
    NoKey,
    #[error("sealed body does not open with INBOX_DATA_KEY: {0}")]
    Sealed(#[from] platform::seal::SealError),
    #[error("sealed body is not UTF-8")]
    SealedUtf8,
}

/// The message in a record; a sealed body is opened with `key` (a clear one, from an edge
/// without the key or from before sealing, is taken as it is).
fn parse(
    payload: &[u8],
    key: Option<&platform::seal::SealKey>,
) -> Result<NewClientMessage, Poison> {
    let mut m = proto::v1::InboundMessage::decode(payload)?;
    if !m.sealed_body.is_empty() {
        let plain = key.ok_or(Poison::NoKey)?.open(&m.sealed_body)?;
        m.body = String::from_utf8(plain).map_err(|_| Poison::SealedUtf8)?;
    }
    if m.client_id.is_empty() {
        return Err(Poison::NoClient);
    }
    if m.client_id.len() > MAX_CLIENT_ID_BYTES || m.client_id.chars().any(char::is_control) {
        return Err(Poison::ClientId);
    }
    let attachments = m
        .attachments
        .iter()
        .map(|a| {
            Ok(tickets::AttachmentRef {
                id: Uuid::parse_str(&a.id)?,
                name: a.name.clone(),
                content_type: a.content_type.clone(),
                size: a.size,
            })
        })
        .collect::<Result<Vec<_>, Poison>>()?;
    Ok(NewClientMessage {
        id: Uuid::parse_str(&m.message_id)?,
        body: MessageBody::parse_with_files(m.body, attachments.len())?.into_inner(),
        attachments,
        client_id: m.client_id,
        // A display name is only shown: one with control characters (a NUL cannot even be
        // stored) is cleaned rather than losing the message.
        client_name: m
            .client_name
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
        channel: m.channel,
        external_id: m.external_id,
    })
}

/// Signal-with-starts in flight at once: one per distinct client of a batch. The Temporal
/// frontend takes them concurrently; sequential calls made its round trip the consumer's ceiling.
const SIGNAL_CONCURRENCY: usize = 64;

/// How often a step refused for good (the data, not an outage) is tried before its record is
/// dead-lettered: the refusal is classified by its error code, so a few tries only guard against
/// a misclassified one.
const PERMANENT_ATTEMPTS: u32 = 3;

/// Where a record came from, kept to dead-letter it as it was.
struct Record {
    partition: i32,
    offset: i64,
    key: Vec<u8>,
    value: Vec<u8>,
    /// The message's span, a child of the trace context in the record's headers; the stored
    /// message keeps its context. `Span::none()` while span export is off.
    span: Span,
}

/// A poll's worth of records: what to store, what can never be, and where each partition
/// resumes once it is handled.
#[derive(Default)]
struct Batch {
    /// The messages to store, and where each came from (`records[i]` is `msgs[i]`'s).
    msgs: Vec<NewClientMessage>,
    records: Vec<Record>,
    dead: Vec<(Record, String)>,
    next_offsets: Vec<(i32, i64)>,
    /// Clients whose ticket workflow checks their messages: woken once the batch is stored.
    wake: BTreeSet<String>,
}

impl Batch {
    fn take(&mut self, record: &BorrowedMessage<'_>, key: Option<&platform::seal::SealKey>) {
        let payload = record.payload().unwrap_or_default();
        let mut kept = Record {
            partition: record.partition(),
            offset: record.offset(),
            key: record.key().unwrap_or_default().to_vec(),
            value: payload.to_vec(),
            span: Span::none(),
        };
        match parse(payload, key) {
            Ok(msg) => {
                if telemetry::enabled() {
                    kept.span = tracing::info_span!(
                        "inbound_message",
                        client_id = %msg.client_id,
                        message_id = %msg.id,
                        partition = kept.partition,
                        offset = kept.offset,
                    );
                    if let Some(parent) = telemetry::kafka_traceparent(record) {
                        telemetry::set_parent(&kept.span, parent);
                    }
                }
                self.msgs.push(msg);
                self.records.push(kept);
            }
            Err(e) => self.dead.push((kept, e.to_string())),
        }
        self.next_offsets
            .push((record.partition(), record.offset() + 1));
    }

    fn len(&self) -> usize {
        self.next_offsets.len()
    }

    /// Moves the messages `dead` picks to the dead letters, with `reason`.
    fn kill(&mut self, dead: impl Fn(&NewClientMessage) -> bool, reason: &str) {
        let msgs = std::mem::take(&mut self.msgs);
        let records = std::mem::take(&mut self.records);
        for (m, r) in msgs.into_iter().zip(records) {
            if dead(&m) {
                self.dead.push((r, reason.to_owned()));
            } else {
                self.msgs.push(m);
                self.records.push(r);
            }
        }
    }

    /// One wake-up per client to wake, in first-seen order: the client's first message of the
    /// batch proposes the ticket id (as it would have alone), and the workflow's check takes
    /// every pending message of the client anyway. With the span of that message.
    fn wakes(&self) -> Vec<(NewClientMessage, Span)> {
        let mut seen = BTreeSet::new();
        self.msgs
            .iter()
            .zip(&self.records)
            .filter(|(m, _)| self.wake.contains(&m.client_id) && seen.insert(m.client_id.as_str()))
            .map(|(m, r)| (m.clone(), r.span.clone()))
            .collect()
    }

    /// The span of storing the batch: a child of its first message's span, linked to the others'
    /// (one transaction for all of them). `Span::none()` while span export is off.
    fn store_span(&self) -> Span {
        let Some((first, others)) = self.records.split_first().filter(|_| telemetry::enabled())
        else {
            return Span::none();
        };
        let span =
            tracing::info_span!(parent: &first.span, "store_inbound", messages = self.msgs.len());
        for r in others {
            span.follows_from(&r.span);
        }
        span
    }

    /// Each message's trace context, to store with it; empty while span export is off.
    fn trace_parents(&self) -> Vec<Option<String>> {
        if !telemetry::enabled() {
            return Vec::new();
        }
        self.records
            .iter()
            .map(|r| telemetry::traceparent(&r.span))
            .collect()
    }
}

/// How one try of a step went wrong.
enum Failure {
    /// An outage (database, broker, Temporal unreachable): tried again until it passes.
    Transient,
    /// Refused for good, with the reason: after [`PERMANENT_ATTEMPTS`], dead-lettered.
    Permanent(String),
}

impl Inbound {
    /// Reads what the broker has ready (up to [`MAX_INBOUND_BATCH`] records across the leased
    /// partitions), stores it in one transaction, wakes each client's ticket once, then moves the
    /// offsets. The next batch starts only after that, so a client's messages are stored and
    /// signalled in their Kafka order, and an offset never passes a message not yet signalled.
    /// A record that can never be processed goes to the dead letters and the partition moves on.
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
            let record = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = source.recv() => r,
            };
            let mut batch = Batch::default();
            match record {
                Ok(r) => batch.take(&r, self.data_key.as_ref()),
                Err(e) => {
                    tracing::warn!(error = %e, "kafka receive failed; retrying");
                    continue;
                }
            }
            // Whatever else is already fetched, without waiting for more.
            while batch.len() < MAX_INBOUND_BATCH {
                match source.recv().now_or_never() {
                    Some(Ok(r)) => batch.take(&r, self.data_key.as_ref()),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "kafka receive failed; retrying");
                        break;
                    }
                    None => break,
                }
            }
            if !self.deliver(&mut batch, &shutdown).await {
                return; // shutting down: the offsets stay where they were
            }
            if let Err(e) = source.done_upto(&batch.next_offsets).await {
                tracing::warn!(error = %e, "offsets not saved; the records may be redelivered");
            }
        }
    }

    /// Stores the batch and wakes its tickets, retrying each step through outages, then
    /// dead-letters what can never be processed. False on shutdown.
    async fn deliver(&self, batch: &mut Batch, shutdown: &CancellationToken) -> bool {
        if !batch.msgs.is_empty() && !self.store_batch(batch, shutdown).await {
            return false;
        }
        let wakes: Vec<_> = batch
            .wakes()
            .into_iter()
            .map(|(msg, span)| {
                let wake = if telemetry::enabled() {
                    tracing::info_span!(parent: &span, "wake_ticket", client_id = %msg.client_id)
                } else {
                    Span::none()
                };
                async move {
                    let r = retrying(shutdown, || self.wake(&msg)).await;
                    (msg, r)
                }
                .instrument(wake)
            })
            .collect();
        let woken: Vec<(NewClientMessage, Option<Result<(), String>>)> =
            futures::stream::iter(wakes)
                .buffer_unordered(SIGNAL_CONCURRENCY)
                .collect()
                .await;
        for (msg, r) in woken {
            match r {
                None => return false,
                Some(Ok(())) => {}
                // Every message of that client in the batch would be refused the same way. They
                // stay stored as pending (never shown to anyone); the records go to the dead
                // letters for an operator.
                Some(Err(reason)) => batch.kill(|m| m.client_id == msg.client_id, &reason),
            }
        }
        for (record, reason) in &batch.dead {
            let origin = platform::kafka::Origin {
                topic: &self.topic,
                partition: record.partition,
                offset: record.offset,
                key: &record.key,
                value: &record.value,
            };
            let sent = retrying(shutdown, || async {
                self.dead_letters
                    .publish(&origin, reason)
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %e, "dead letter not yet published; retrying");
                        Failure::Transient
                    })
            })
            .await;
            if sent.is_none() {
                return false;
            }
        }
        true
    }

    /// Stores the batch in one transaction; when the database refuses it for good (one bad
    /// record), stores its messages one by one and dead-letters the ones refused. False on
    /// shutdown.
    async fn store_batch(&self, batch: &mut Batch, shutdown: &CancellationToken) -> bool {
        let traces = batch.trace_parents();
        let stored = retrying(shutdown, || self.store(&batch.msgs, &traces))
            .instrument(batch.store_span())
            .await;
        match stored {
            None => false,
            Some(Ok(wake)) => {
                batch.wake.extend(wake);
                true
            }
            Some(Err(_)) => {
                let mut refused = Vec::new();
                for (i, m) in batch.msgs.iter().enumerate() {
                    let trace = traces.get(i..=i).unwrap_or_default();
                    match retrying(shutdown, || self.store(std::slice::from_ref(m), trace)).await {
                        None => return false,
                        Some(Ok(wake)) => batch.wake.extend(wake),
                        Some(Err(reason)) => refused.push((m.id, reason)),
                    }
                }
                for (id, reason) in refused {
                    batch.kill(|x| x.id == id, &reason);
                }
                true
            }
        }
    }

    /// One inbound transaction; the clients whose ticket workflow is to be woken.
    async fn store(
        &self,
        msgs: &[NewClientMessage],
        trace_parents: &[Option<String>],
    ) -> Result<Vec<String>, Failure> {
        let check = self
            .check
            .as_deref()
            .map(|c| c as &dyn tickets::inbound::MessageCheck);
        self.store
            .intake_batch(msgs, trace_parents, check)
            .await
            .map(|intake| intake.wake)
            .map_err(|e| {
                tracing::warn!(messages = msgs.len(), error = %e, "inbound messages not stored");
                if e.is_permanent() {
                    Failure::Permanent(format!("the database refused it: {e}"))
                } else {
                    Failure::Transient
                }
            })
    }

    async fn wake(&self, msg: &NewClientMessage) -> Result<(), Failure> {
        self.tickets
            .message_arrived(
                &msg.client_id,
                msg.id,
                ticket_id_opened_by(msg.id),
                &self.spec,
                self.history_limit,
            )
            .await
            .map_err(|e| {
                tracing::warn!(
                    message_id = %msg.id, client_id = %msg.client_id, error = %e,
                    "ticket not yet woken"
                );
                match e {
                    crate::client::TemporalError::Rejected(r) => Failure::Permanent(r),
                    _ => Failure::Transient,
                }
            })?;
        tracing::debug!(message_id = %msg.id, client_id = %msg.client_id, "inbound message delivered");
        Ok(())
    }
}

/// Runs `attempt` until it succeeds (backing off up to 5 s) through transient failures, or until
/// it failed for good [`PERMANENT_ATTEMPTS`] times (`Err(reason)`); None on shutdown.
async fn retrying<T, F, Fut>(
    shutdown: &CancellationToken,
    mut attempt: F,
) -> Option<Result<T, String>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut backoff = Duration::from_millis(100);
    let mut refused = 0;
    loop {
        match attempt().await {
            Ok(v) => return Some(Ok(v)),
            Err(Failure::Permanent(reason)) => {
                refused += 1;
                if refused >= PERMANENT_ATTEMPTS {
                    return Some(Err(reason));
                }
            }
            Err(Failure::Transient) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
