//! Batched storing of inbound client messages (the inbound consumer's hot path) against a real
//! PostgreSQL; `#[sqlx::test]` gives each test its own migrated database.

use sqlx::PgPool;
use tickets::{NewClientMessage, PgStore};
use uuid::Uuid;

fn message(client: &str, name: &str, body: &str) -> NewClientMessage {
    NewClientMessage::from_source(
        "web",
        format!("{client}/{}", Uuid::new_v4()),
        client,
        name,
        body,
    )
}

async fn accepted_events(pool: &PgPool, client: &str) -> anyhow::Result<Vec<Uuid>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT payload->>'message_id' FROM events
         WHERE kind = 'message_accepted' AND client_id = $1 ORDER BY seq",
    )
    .bind(client)
    .fetch_all(pool)
    .await?;
    Ok(ids.iter().map(|s| s.parse()).collect::<Result<_, _>>()?)
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_batch_keeps_each_clients_messages_in_their_kafka_order(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool.clone());
    // Interleaved clients; ids are hashes, so id order says nothing about the written order.
    let batch: Vec<NewClientMessage> = (0..40)
        .map(|i| message(["ana", "bo"][i % 2], "", &format!("message {i}")))
        .collect();
    assert_eq!(store.record_inbound_batch(&batch).await?, 40);

    for client in ["ana", "bo"] {
        let written: Vec<Uuid> = batch
            .iter()
            .filter(|m| m.client_id == client)
            .map(|m| m.id)
            .collect();
        let pending: Vec<Uuid> = store
            .pending_client_messages(client)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(pending, written, "pending order of {client}");
        assert_eq!(
            accepted_events(&pool, client).await?,
            written,
            "event order of {client}"
        );
    }
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_later_batch_of_the_same_client_sorts_after_the_earlier_one(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    let first: Vec<_> = (0..200)
        .map(|i| message("ana", "", &format!("a{i}")))
        .collect();
    let second: Vec<_> = (0..3)
        .map(|i| message("ana", "", &format!("b{i}")))
        .collect();
    store.record_inbound_batch(&first).await?;
    store.record_inbound_batch(&second).await?;
    let pending: Vec<Uuid> = store
        .pending_client_messages("ana")
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let written: Vec<Uuid> = first.iter().chain(&second).map(|m| m.id).collect();
    assert_eq!(pending, written);
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_redelivered_batch_and_duplicates_within_one_are_stored_once(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool.clone());
    let a = message("ana", "Ana", "hello");
    let b = message("ana", "Ana", "again");
    // One already stored message by message, the batch repeating `b` as a producer retry would.
    store.record_inbound(&a).await?;
    let batch = vec![a.clone(), b.clone(), b.clone()];
    assert_eq!(store.record_inbound_batch(&batch).await?, 1);
    assert_eq!(store.record_inbound_batch(&batch).await?, 0);

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE client_id = 'ana'")
        .fetch_one(&pool)
        .await?;
    assert_eq!(stored, 2);
    assert_eq!(accepted_events(&pool, "ana").await?, vec![a.id, b.id]);
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_batch_keeps_the_last_non_empty_client_name(pool: PgPool) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool.clone());
    let batch = vec![
        message("ana", "Ana", "1"),
        message("ana", "Ana P.", "2"),
        message("ana", "", "3"),
    ];
    store.record_inbound_batch(&batch).await?;
    let name: String = sqlx::query_scalar("SELECT display_name FROM clients WHERE id = 'ana'")
        .fetch_one(&pool)
        .await?;
    assert_eq!(name, "Ana P.");
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn saved_offsets_take_the_highest_per_partition_and_never_move_back(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    store
        .save_kafka_offsets("t", &[(0, 5), (1, 3), (0, 9), (0, 7)])
        .await?;
    assert_eq!(store.kafka_offset("t", 0).await?, Some(9));
    assert_eq!(store.kafka_offset("t", 1).await?, Some(3));
    store.save_kafka_offsets("t", &[(0, 4), (1, 8)]).await?;
    assert_eq!(store.kafka_offset("t", 0).await?, Some(9));
    assert_eq!(store.kafka_offset("t", 1).await?, Some(8));
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_message_keeps_its_trace_context_for_the_stages_that_pick_it_up_from_the_store(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool.clone());
    let batch: Vec<NewClientMessage> = (0..3)
        .map(|i| message("ana", "", &format!("message {i}")))
        .collect();
    let trace = |i: u8| format!("00-{:032x}-{:016x}-01", u128::from(i) + 1, u64::from(i) + 1);
    // The third message came without one (a producer with the export off).
    let traces = vec![Some(trace(0)), Some(trace(1))];
    assert_eq!(store.record_inbound_batch_traced(&batch, &traces).await?, 3);

    let ids: Vec<Uuid> = batch.iter().map(|m| m.id).rev().collect();
    assert_eq!(
        store.message_trace_parents(&ids).await?,
        vec![trace(0), trace(1)],
        "oldest message first, only those with a context"
    );
    let seqs: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM events WHERE client_id = 'ana' ORDER BY seq")
            .fetch_all(&pool)
            .await?;
    // An event about no message (a payload without a UUID `message_id`) is simply not traced.
    sqlx::query(
        "INSERT INTO events (dedup_key, kind, client_id, client_visible, payload)
         VALUES ('other', 'ticket_closed', 'ana', true, '{\"message_id\": \"not-a-uuid\"}')",
    )
    .execute(&pool)
    .await?;
    store.sequence_events().await?;
    let other: i64 = sqlx::query_scalar("SELECT seq FROM events WHERE dedup_key = 'other'")
        .fetch_one(&pool)
        .await?;
    let all: Vec<i64> = seqs.iter().copied().chain([other]).collect();
    let mut traced = store.event_trace_parents(&all).await?;
    traced.sort();
    assert_eq!(
        traced,
        vec![(seqs[0], trace(0)), (seqs[1], trace(1))],
        "each message_accepted event leads to its message's trace"
    );

    // Without contexts (export off) nothing is kept.
    let untraced = message("bo", "", "hello");
    store
        .record_inbound_batch(std::slice::from_ref(&untraced))
        .await?;
    assert!(
        store
            .message_trace_parents(&[untraced.id])
            .await?
            .is_empty()
    );
    Ok(())
}
