//! Publishes normalised client messages to Kafka `inbound.messages`, keyed by client id so one
//! client's messages keep their order. `publish` returns only after the broker acknowledged.

use std::time::Duration;

use prost::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};

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
        let bytes = m.encode_to_vec();
        self.producer
            .send(
                FutureRecord::to(&self.topic)
                    .key(&m.client_id)
                    .payload(&bytes),
                Duration::from_secs(10),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}
