//! Card data at rest (PCI DSS): after a client typed card numbers — plainly, disguised with
//! another script's digits and invisible characters, and split over two messages — no row of any
//! table of the engine's database and no record of any of its Kafka topics holds one of them in
//! clear (not even the first half of the split one, taken back once the rest arrived). What is
//! kept is the masked form, and the original only sealed with `INBOX_DATA_KEY`.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use e2e::{Engine, Stack, eventually, webchat};
use rdkafka::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::Row as _;
use tickets::Role;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

/// What a client types, and the card digits in it (none: it must pass).
const MESSAGES: &[(&str, Option<&str>)] = &[
    ("hello, I have a question about my card", None),
    (
        "my card is 4111 1111 1111 1111, exp 12/25",
        Some("4111111111111111"),
    ),
    (
        "карта ５５００\u{200b}0000\u{200b}0000\u{200b}0004",
        Some("5500000000000004"),
    ),
    ("amex: 3782-822463-10005 cvv 1234", Some("378282246310005")),
    // Split over two messages: the first half passes (it is no card by itself); the second
    // completes the number and is blocked, and the first is then taken back (blocked too).
    ("the new one starts with 4000 0566", None),
    ("5566 5556", Some("4000056655665556")),
];

/// The first half of the split card (message 4): taken back from the database once the rest
/// came. Kafka keeps what was published while it passed (the client's echo on `ticket.events`):
/// eight digits of sixteen, no card number.
const SPLIT_HALF: (usize, &str) = (4, "40000566");

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_table_and_no_topic_holds_a_blocked_card_number_in_clear() -> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let engine = Engine::start(&stack).await?;
    let client_id = format!("cards-{}", Uuid::new_v4().simple());
    let token = stack.token(Role::Client, &client_id, "Card Holder")?;
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for (body, _) in MESSAGES {
        let (status, answer) = webchat::post_message(&http, &engine, &token, body).await?;
        anyhow::ensure!(status == 202, "{body:?} refused: {status} {answer}");
        let id: Uuid = answer["message_id"]
            .as_str()
            .context("no message_id")?
            .parse()?;
        ids.push(id);
    }
    let db = sqlx::PgPool::connect(&engine.database_url).await?;
    let verdicts: Vec<(Uuid, String, String)> = eventually(WAIT, "every message checked", || {
        let db = db.clone();
        let ids = ids.clone();
        async move {
            let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
                "SELECT id, afc_status, body FROM messages WHERE id = ANY($1) AND afc_status <> 'pending'",
            )
            .bind(&ids)
            .fetch_all(&db)
            .await?;
            Ok((rows.len() == ids.len()).then_some(rows))
        }
    })
    .await?;
    for (n, ((text, card), id)) in MESSAGES.iter().zip(&ids).enumerate() {
        let (_, status, _) = verdicts
            .iter()
            .find(|(v, _, _)| v == id)
            .context("a message was lost")?;
        let expected = if card.is_some() || n == SPLIT_HALF.0 {
            "blocked"
        } else {
            "passed"
        };
        assert_eq!(status, expected, "{text:?}");
    }

    // The stored text of a blocked message is masked; the original is sealed with the data key.
    let key = platform::seal::SealKey::from_hex(
        &std::env::var("INBOX_DATA_KEY").context("the dev INBOX_DATA_KEY is not exported")?,
    )?;
    let row = sqlx::query("SELECT body, sealed_body FROM messages WHERE id = $1")
        .bind(ids[1])
        .fetch_one(&db)
        .await?;
    assert_eq!(
        row.try_get::<String, _>("body")?,
        "my card is 4111 **** **** 1111, exp **/**"
    );
    let sealed: Vec<u8> = row
        .try_get::<Option<Vec<u8>>, _>("sealed_body")?
        .context("no audit copy")?;
    assert_eq!(key.open(&sealed)?, MESSAGES[1].0.as_bytes());

    // Every outbox row is published before the topics are read.
    eventually(WAIT, "the outbox published", || {
        let db = db.clone();
        async move {
            let left: i64 =
                sqlx::query_scalar("SELECT count(*) FROM events WHERE published_at IS NULL")
                    .fetch_one(&db)
                    .await?;
            Ok((left == 0).then_some(()))
        }
    })
    .await?;

    let cards: Vec<&str> = MESSAGES.iter().filter_map(|(_, c)| *c).collect();
    // The database: every row of every table, as text, its digits only.
    let in_db: Vec<&str> = cards.iter().copied().chain([SPLIT_HALF.1]).collect();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(&db)
            .await?;
    assert!(tables.iter().any(|t| t == "messages"), "{tables:?}");
    let mut rows_seen = 0;
    for table in &tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM \"{table}\" t"))
            .fetch_all(&db)
            .await?;
        for row in rows {
            rows_seen += 1;
            let d = digits(&row);
            for card in &in_db {
                assert!(!d.contains(card), "table {table} holds {card}: {row}");
            }
        }
    }
    assert!(rows_seen > MESSAGES.len());

    // Kafka: every record of every topic of this engine (its topic prefix).
    let prefix = engine
        .env("INBOX_TOPIC_PREFIX")
        .context("no topic prefix")?;
    let consumer: BaseConsumer = platform::kafka::config(&stack.kafka())
        .set("group.id", format!("card-scan-{}", Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    let mut partitions = TopicPartitionList::new();
    let mut ends = Vec::new();
    for topic in metadata
        .topics()
        .iter()
        .filter(|t| t.name().starts_with(&prefix))
    {
        for p in topic.partitions() {
            let (low, high) =
                consumer.fetch_watermarks(topic.name(), p.id(), Duration::from_secs(10))?;
            if high > low {
                partitions.add_partition_offset(topic.name(), p.id(), Offset::Beginning)?;
                ends.push((topic.name().to_owned(), p.id(), high));
            }
        }
    }
    let scanned: BTreeSet<String> = ends.iter().map(|(t, _, _)| t.clone()).collect();
    assert!(
        scanned.iter().any(|t| t.ends_with("inbound.messages")),
        "no inbound records among {scanned:?}"
    );
    assert!(
        scanned.iter().any(|t| t.ends_with("ticket.events")),
        "no ticket events among {scanned:?}"
    );
    consumer.assign(&partitions)?;
    let mut open = ends.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !open.is_empty() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "topics not read to their end: {open:?}"
        );
        let Some(record) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let record = record?;
        let text = String::from_utf8_lossy(record.payload().unwrap_or_default()).into_owned();
        let d = digits(&text);
        for card in &cards {
            assert!(
                !d.contains(card),
                "topic {} holds {card}: {text}",
                record.topic()
            );
        }
        open.retain(|(t, p, high)| {
            !(t == record.topic() && *p == record.partition() && record.offset() + 1 >= *high)
        });
    }
    Ok(())
}
