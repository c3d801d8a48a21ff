//! Publishes normalised client messages (every channel's, and the gRPC `ClientService`'s) to
//! Kafka `inbound.messages`, keyed by client id so one client's messages keep their order.
//! `publish` returns only after the broker acknowledged. With a data key the body travels sealed
//! (`sealed_body`): what a client types, a card number included, is never on the bus in clear.

use prost::Message as _;
use tracing::Instrument as _;

#[derive(Clone)]
pub struct Publisher {
    topic: platform::kafka::EdgeTopic,
    key: Option<platform::seal::SealKey>,
}

impl Publisher {
    /// `key` (INBOX_DATA_KEY) seals every body; None publishes them in clear (dev without a key).
    pub fn new(
        kafka: &platform::kafka::KafkaSettings,
        topic: String,
        key: Option<platform::seal::SealKey>,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        Ok(Self {
            topic: platform::kafka::EdgeTopic::new(kafka, topic)?,
            key,
        })
    }

    /// With the span export on, in a span of its own (every channel's message starts or
    /// continues its trace here); the record carries its context to the inbound consumer.
    pub async fn publish(
        &self,
        m: &proto::v1::InboundMessage,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let span = if platform::telemetry::enabled() {
            tracing::info_span!(
                "publish_message",
                client_id = %m.client_id,
                message_id = %m.message_id,
                channel = %m.channel,
            )
        } else {
            tracing::Span::none()
        };
        let record = match &self.key {
            Some(key) => proto::v1::InboundMessage {
                sealed_body: key.seal(m.body.as_bytes()),
                body: String::new(),
                ..m.clone()
            }
            .encode_to_vec(),
            None => m.encode_to_vec(),
        };
        self.topic
            .publish(&m.client_id, &record)
            .instrument(span)
            .await?;
        // Counted after the ack: a web retry answered from the store never gets here (a
        // redelivered Telegram update or a re-scanned mail does, and counts again).
        metrics::counter!("inbox_messages_accepted_total", "channel" => m.channel.clone())
            .increment(1);
        Ok(())
    }
}

/// A file reference as the bus carries it.
pub fn attachment_ref(a: &tickets::AttachmentRef) -> proto::v1::AttachmentRef {
    proto::v1::AttachmentRef {
        id: a.id.to_string(),
        name: a.name.clone(),
        content_type: a.content_type.clone(),
        size: a.size,
    }
}
