//! Publishes normalised client messages to Kafka `inbound.messages`, keyed by client id so one
//! client's messages keep their order. `publish` returns only after the broker acknowledged.

use prost::Message as _;

#[derive(Clone)]
pub struct Publisher(platform::kafka::EdgeTopic);

impl Publisher {
    pub fn new(
        kafka: &platform::kafka::KafkaSettings,
        topic: String,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        platform::kafka::EdgeTopic::new(kafka, topic).map(Self)
    }

    pub async fn publish(
        &self,
        m: &proto::v1::InboundMessage,
    ) -> Result<(), rdkafka::error::KafkaError> {
        self.0.publish(&m.client_id, &m.encode_to_vec()).await
    }
}
