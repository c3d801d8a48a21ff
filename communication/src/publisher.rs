//! Publishes normalised client messages to Kafka `inbound.messages`, keyed by client id so one
//! client's messages keep their order. `publish` returns only after the broker acknowledged.

use prost::Message as _;
use rdkafka::producer::FutureProducer;

#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    topic: String,
}

impl Publisher {
    pub fn new(brokers: &str, topic: String) -> Result<Self, rdkafka::error::KafkaError> {
        Ok(Self {
            producer: platform::kafka::producer_config(brokers).create()?,
            topic,
        })
    }

    pub async fn publish(
        &self,
        m: &proto::v1::InboundMessage,
    ) -> Result<(), rdkafka::error::KafkaError> {
        platform::kafka::publish_acked(
            &self.producer,
            &self.topic,
            &m.client_id,
            &m.encode_to_vec(),
            platform::kafka::EDGE_PUBLISH_TIMEOUT,
        )
        .await
    }
}
