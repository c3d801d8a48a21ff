//! The leased Kafka source against the real broker and PostgreSQL: a quiet topic is fetched at a
//! slower pace (its partitions paused between fetches), and nothing produced meanwhile is lost,
//! duplicated or reordered. Every wait is on a record, with a deadline.

use std::time::Duration;

use anyhow::Context;
use rdkafka::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use tickets::PgStore;
use uuid::Uuid;
use workflow::source::{Fetch, LeasedSource};

const WAIT: Duration = Duration::from_secs(30);

async fn produce(producer: &FutureProducer, topic: &str, value: &str) -> anyhow::Result<()> {
    producer
        .send(
            FutureRecord::to(topic).key("one-key").payload(value),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    Ok(())
}

async fn next(source: &LeasedSource) -> anyhow::Result<String> {
    let record = tokio::time::timeout(WAIT, source.recv())
        .await
        .context("no record within the deadline")??;
    Ok(String::from_utf8_lossy(record.payload().unwrap_or_default()).into_owned())
}

/// Reads on while nothing is produced, past the quiet period: nothing comes, and the source pauses.
async fn quiet(source: &LeasedSource) -> anyhow::Result<()> {
    let nothing = tokio::time::timeout(Duration::from_millis(400), source.recv()).await;
    anyhow::ensure!(
        nothing.is_err(),
        "a record came from a topic nobody wrote to"
    );
    anyhow::ensure!(source.is_paused(), "a quiet topic is no longer fetched");
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn records_that_arrive_while_a_quiet_topic_is_paused_are_all_read_once_in_order(
    pool: PgPool,
) -> anyhow::Result<()> {
    let brokers = platform::kafka::KafkaSettings::plaintext(
        &std::env::var("INBOX_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19093".into()),
    );
    let topic = format!("sourcetest_{}", Uuid::new_v4().simple());
    platform::kafka::ensure_topics(&brokers, &[&topic])
        .await
        .context("Kafka is not reachable: run the tests with `make test`, which starts it")?;
    let producer: FutureProducer = platform::kafka::producer_config(&brokers).create()?;
    let fetch = Fetch {
        wait_ms: 10,
        idle_poll_ms: 50,
        quiet_after_ms: 100,
    };
    let source = LeasedSource::start(&brokers, fetch, PgStore::from_pool(pool), &topic).await?;

    // One at a time: each is produced once the source paused, the topic quiet.
    for i in 0..10 {
        quiet(&source).await?;
        let value = format!("single-{i}");
        produce(&producer, &topic, &value).await?;
        assert_eq!(next(&source).await?, value);
    }
    quiet(&source).await?;
    // A burst while it is paused: every record, in order, once.
    let burst: Vec<String> = (0..50).map(|i| format!("burst-{i}")).collect();
    for v in &burst {
        produce(&producer, &topic, v).await?;
    }
    let mut read = Vec::new();
    for _ in &burst {
        read.push(next(&source).await?);
    }
    assert_eq!(read, burst);
    // Nothing more: a sentinel is the next record, not a repeat.
    produce(&producer, &topic, "sentinel").await?;
    assert_eq!(next(&source).await?, "sentinel");
    Ok(())
}
