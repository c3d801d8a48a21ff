//! The inbound consumer: Kafka `inbound.messages` → store → signal-with-start of the client's ticket.
//! The offset moves (in PostgreSQL, see `source`) only after both succeeded; until then the message
//! is retried, never skipped, so a crash anywhere redelivers it and the idempotent store makes
//! that harmless.

use std::time::Duration;

use prost::Message as _;
use rdkafka::Message as _;
use tickets::{MessageBody, NewClientMessage, PgStore, ticket_id_opened_by};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::client::Tickets;
use crate::source::LeasedSource;
use crate::spec::TicketSpec;

pub struct Inbound {
    pub brokers: String,
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

impl Inbound {
    pub async fn run(self, shutdown: CancellationToken) {
        let Some(source) =
            LeasedSource::start_retrying(&self.brokers, self.store.clone(), &self.topic, &shutdown)
                .await
        else {
            return;
        };
        loop {
            let record = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = source.recv() => r,
            };
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "kafka receive failed; retrying");
                    continue;
                }
            };
            match parse(record.payload().unwrap_or_default()) {
                Ok(msg) => {
                    if !self.handle(&msg, &shutdown).await {
                        return; // shutting down: the offset stays uncommitted
                    }
                }
                Err(e) => tracing::error!(
                    topic = record.topic(), partition = record.partition(), offset = record.offset(),
                    error = %e, "skipping a record that can never be processed"
                ),
            }
            if let Err(e) = source.done(&record).await {
                tracing::warn!(error = %e, "offset not saved; the record may be redelivered");
            }
        }
    }

    /// Stores the message and wakes its ticket, retrying until both succeeded. False on shutdown.
    async fn handle(&self, msg: &NewClientMessage, shutdown: &CancellationToken) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.try_handle(msg).await {
                Ok(()) => return true,
                Err(e) => tracing::warn!(
                    message_id = %msg.id, client_id = %msg.client_id, error = %e,
                    "inbound message not yet delivered; retrying"
                ),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn try_handle(&self, msg: &NewClientMessage) -> Result<(), Box<dyn std::error::Error>> {
        self.store.record_inbound(msg).await?;
        self.tickets
            .message_arrived(
                &msg.client_id,
                msg.id,
                ticket_id_opened_by(msg.id),
                &self.spec,
                self.history_limit,
            )
            .await?;
        tracing::debug!(message_id = %msg.id, client_id = %msg.client_id, "inbound message delivered");
        Ok(())
    }
}
