//! Publishes normalised client messages (every channel's, and the gRPC `ClientService`'s) to
//! Kafka `inbound.messages`, keyed by client id so one client's messages keep their order.
//! `publish` returns only after the broker acknowledged.

use prost::Message as _;
use tracing::Instrument as _;

#[derive(Clone)]
pub struct Publisher(platform::kafka::EdgeTopic);

impl Publisher {
    pub fn new(
        kafka: &platform::kafka::KafkaSettings,
        topic: String,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        platform::kafka::EdgeTopic::new(kafka, topic).map(Self)
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
        self.0
            .publish(&m.client_id, &m.encode_to_vec())
            .instrument(span)
            .await?;
        // Counted after the ack: a web retry answered from the store never gets here (a
        // redelivered Telegram update or a re-scanned mail does, and counts again).
        metrics::counter!("inbox_messages_accepted_total", "channel" => m.channel.clone())
            .increment(1);
        Ok(())
    }
}
