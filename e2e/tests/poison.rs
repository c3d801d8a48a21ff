//! Records that can never be processed do not stall the clients behind them: between good
//! records on one partition of `inbound.messages`, one the database refuses (an external id too
//! large for its index) and one no ticket could carry (a client id longer than a Temporal workflow
//! id allows) go to `inbound.messages.dlq` with their reason, and the good ones around them, one
//! with a NUL in its display name, are served.

use std::time::Duration;

use anyhow::Context;
use e2e::{Engine, Stack, eventually};
use prost::Message as _;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

fn record(
    client_id: &str,
    client_name: &str,
    external_id: &str,
    body: &str,
) -> proto::v1::InboundMessage {
    proto::v1::InboundMessage {
        message_id: Uuid::new_v4().to_string(),
        client_id: client_id.to_owned(),
        channel: "web".into(),
        external_id: external_id.to_owned(),
        body: body.into(),
        client_name: client_name.to_owned(),
        received_at_unix_ms: chrono::Utc::now().timestamp_millis(),
        sealed_body: Vec::new(),
        attachments: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_go_to_the_dead_letters_and_the_good_ones_around_them_are_served()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let engine = Engine::start(&stack).await?;
    let prefix = engine.env("INBOX_TOPIC_PREFIX").context("topic prefix")?;
    let topics = platform::kafka::Topics::with_prefix(&prefix);
    let run = Uuid::new_v4().simple().to_string();

    // Incompressible, so the database cannot squeeze it into its index.
    let huge_external_id: String = (0..1000)
        .map(|_| Uuid::new_v4().simple().to_string())
        .collect();
    let records = [
        record(
            &format!("good-1-{run}"),
            "Ivan",
            &format!("g1-{run}"),
            "first good message",
        ),
        record(
            &format!("db-{run}"),
            "Petr",
            &huge_external_id,
            "refused by the database",
        ),
        record(
            &"c".repeat(2000),
            "Anna",
            &format!("long-{run}"),
            "no ticket can carry me",
        ),
        record(
            &format!("good-2-{run}"),
            "Ol\0ga",
            &format!("g2-{run}"),
            "second good message",
        ),
    ];
    let producer: FutureProducer = platform::kafka::producer_config(&stack.kafka()).create()?;
    for r in &records {
        // One key: one partition, in this order.
        producer
            .send(
                FutureRecord::to(&topics.inbound_messages)
                    .key("one-partition")
                    .payload(&r.encode_to_vec()),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }

    // Both good messages are stored and their tickets take them (checked or not, they are in).
    let db = sqlx::PgPool::connect(&engine.database_url).await?;
    let good: Vec<String> = vec![records[0].message_id.clone(), records[3].message_id.clone()];
    let ids: Vec<Uuid> = good
        .iter()
        .map(|i| Uuid::parse_str(i))
        .collect::<Result<_, _>>()?;
    eventually(WAIT, "both good messages checked into their tickets", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM messages WHERE id = ANY($1) AND afc_status = 'passed' AND ticket_id IS NOT NULL",
        )
        .bind(&ids)
        .fetch_one(&db)
        .await?;
        Ok((n == 2).then_some(()))
    })
    .await?;
    let name: String = sqlx::query_scalar("SELECT display_name FROM clients WHERE id = $1")
        .bind(&records[3].client_id)
        .fetch_one(&db)
        .await?;
    assert_eq!(
        name, "Ol ga",
        "a NUL in a display name is cleaned, the message kept"
    );

    // The two poison records are in the dead letters, with their reasons and origin.
    let consumer: StreamConsumer = platform::kafka::config(&stack.kafka())
        .set("group.id", format!("poison-test-{run}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topics.inbound_dead_letters.as_str()])?;
    let mut dead = Vec::new();
    while dead.len() < 2 {
        let m = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .context("the poison records never reached the dead letters")??;
        let payload = proto::v1::InboundMessage::decode(m.payload().unwrap_or_default())?;
        let headers = m.headers().context("a dead letter without headers")?;
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        assert_eq!(header("dead-letter-topic"), topics.inbound_messages);
        dead.push((payload.message_id, header("dead-letter-reason")));
    }
    dead.sort_by_key(|(id, _)| {
        [&records[1].message_id, &records[2].message_id]
            .iter()
            .position(|x| *x == id)
    });
    assert_eq!(dead[0].0, records[1].message_id);
    assert!(dead[0].1.contains("database refused"), "{}", dead[0].1);
    assert_eq!(dead[1].0, records[2].message_id);
    assert!(dead[1].1.contains("client id longer than"), "{}", dead[1].1);
    Ok(())
}
