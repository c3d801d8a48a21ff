//! The inbound consumer: Kafka `inbound.messages` → store → signal-with-start of the client's ticket.
//! The offset moves (in PostgreSQL, see `source`) only after both succeeded; until then the message
//! is retried, never skipped, so a crash anywhere redelivers it and the idempotent store makes
//! that harmless. Records are handled in batches (whatever a poll has ready): one store
//! transaction and one signal per distinct client per batch, the signals concurrently.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};
use prost::Message as _;
use rdkafka::Message as _;
use rdkafka::message::BorrowedMessage;
use tickets::inbound_batch::MAX_INBOUND_BATCH;
use tickets::{MessageBody, NewClientMessage, PgStore, ticket_id_opened_by};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::client::Tickets;
use crate::source::LeasedSource;
use crate::spec::TicketSpec;

#[derive(Clone)]
pub struct Inbound {
    pub kafka: platform::kafka::KafkaSettings,
    /// `fetch.wait.max.ms` of its source.
    pub wait_ms: u32,
    pub topic: String,
    pub store: PgStore,
    pub tickets: Tickets,
    pub spec: TicketSpec,
    pub history_limit: Option<u32>,
}

/// Why a record can never be processed (it is logged and skipped, not retried).
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
}

fn parse(payload: &[u8]) -> Result<NewClientMessage, Poison> {
    let m = proto::v1::InboundMessage::decode(payload)?;
    if m.client_id.is_empty() {
        return Err(Poison::NoClient);
    }
    Ok(NewClientMessage {
        id: Uuid::parse_str(&m.message_id)?,
        body: MessageBody::parse(m.body)?.into_inner(),
        client_id: m.client_id,
        client_name: m.client_name,
        channel: m.channel,
        external_id: m.external_id,
    })
}

/// Signal-with-starts in flight at once: one per distinct client of a batch. The Temporal
/// frontend takes them concurrently; sequential calls made its round trip the consumer's ceiling.
const SIGNAL_CONCURRENCY: usize = 64;

/// A poll's worth of records: what to store, and where each partition resumes once it is handled.
#[derive(Default)]
struct Batch {
    msgs: Vec<NewClientMessage>,
    next_offsets: Vec<(i32, i64)>,
}

impl Batch {
    fn take(&mut self, record: &BorrowedMessage<'_>) {
        match parse(record.payload().unwrap_or_default()) {
            Ok(msg) => self.msgs.push(msg),
            Err(e) => tracing::error!(
                topic = record.topic(), partition = record.partition(), offset = record.offset(),
                error = %e, "skipping a record that can never be processed"
            ),
        }
        self.next_offsets
            .push((record.partition(), record.offset() + 1));
    }

    fn len(&self) -> usize {
        self.next_offsets.len()
    }

    /// One wake-up per client, in first-seen order: the client's first message of the batch
    /// proposes the ticket id (as it would have alone), and the workflow's check takes every
    /// pending message of the client anyway.
    fn clients(&self) -> Vec<&NewClientMessage> {
        let mut seen = BTreeSet::new();
        self.msgs
            .iter()
            .filter(|m| seen.insert(m.client_id.as_str()))
            .collect()
    }
}

impl Inbound {
    /// Reads what the broker has ready (up to [`MAX_INBOUND_BATCH`] records across the leased
    /// partitions), stores it in one transaction, wakes each client's ticket once, then moves the
    /// offsets. The next batch starts only after that, so a client's messages are stored and
    /// signalled in their Kafka order, and an offset never passes a message not yet signalled.
    pub async fn run(self, shutdown: CancellationToken) {
        let Some(source) = LeasedSource::start_retrying(
            &self.kafka,
            self.wait_ms,
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
                Ok(r) => batch.take(&r),
                Err(e) => {
                    tracing::warn!(error = %e, "kafka receive failed; retrying");
                    continue;
                }
            }
            // Whatever else is already fetched, without waiting for more.
            while batch.len() < MAX_INBOUND_BATCH {
                match source.recv().now_or_never() {
                    Some(Ok(r)) => batch.take(&r),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "kafka receive failed; retrying");
                        break;
                    }
                    None => break,
                }
            }
            if !self.deliver(&batch, &shutdown).await {
                return; // shutting down: the offsets stay where they were
            }
            if let Err(e) = source.done_upto(&batch.next_offsets).await {
                tracing::warn!(error = %e, "offsets not saved; the records may be redelivered");
            }
        }
    }

    /// Stores the batch and wakes its tickets, retrying each step until it succeeded. False on
    /// shutdown.
    async fn deliver(&self, batch: &Batch, shutdown: &CancellationToken) -> bool {
        if batch.msgs.is_empty() {
            return true;
        }
        let stored = retrying(shutdown, || async {
            self.store
                .record_inbound_batch(&batch.msgs)
                .await
                .map_err(|e| {
                    tracing::warn!(
                        messages = batch.msgs.len(), error = %e,
                        "inbound messages not yet stored; retrying"
                    );
                })
        })
        .await;
        if stored.is_none() {
            return false;
        }
        let wakes: Vec<_> = batch
            .clients()
            .into_iter()
            .map(|msg| retrying(shutdown, move || self.wake(msg)))
            .collect();
        let signalled: Vec<Option<()>> = futures::stream::iter(wakes)
            .buffer_unordered(SIGNAL_CONCURRENCY)
            .collect()
            .await;
        signalled.iter().all(Option::is_some)
    }

    async fn wake(&self, msg: &NewClientMessage) -> Result<(), ()> {
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
                    "ticket not yet woken; retrying"
                );
            })?;
        tracing::debug!(message_id = %msg.id, client_id = %msg.client_id, "inbound message delivered");
        Ok(())
    }
}

/// Runs `attempt` until it succeeds (backing off up to 5 s); None on shutdown.
async fn retrying<T, F, Fut>(shutdown: &CancellationToken, mut attempt: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ()>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        if let Ok(v) = attempt().await {
            return Some(v);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
